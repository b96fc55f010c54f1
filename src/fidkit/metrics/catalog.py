"""Every metric declared once: what it reads from each side, in which feature spaces, how it is computed.

A metric names a tap *role* (``embedding``, ``logits``, ``spatial``,
``embedding_l2``), and for each side whether the features are streamed into
statistics (O(d^2) memory, enough for Fréchet distances) or kept per sample
(KID, precision/recall, IS, CMMD).  The planner turns a request into one
forward per extractor per image from these declarations alone.

Results are named after the metric and its feature space: in the Inception
space the historic names (``fid``, ``kid``, ``precision``, ``fid_inf``), in any
other space the generic name with the space's key (``fd_dinov2``,
``kd_dinov2``, ``precision_dinov2``, ``fd_clip``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from fidkit.metrics.bootstrap import bootstrap_interval, fid_bootstrap, fid_noise_floor
from fidkit.metrics.cmmd import cmmd
from fidkit.metrics.frechet import frechet_distance
from fidkit.metrics.inception_score import inception_score
from fidkit.metrics.infinity import fid_infinity, is_infinity
from fidkit.metrics.kid import kernel_inception_distance
from fidkit.metrics.prdc import density_coverage, precision_recall

STREAM, KEEP = "stream", "keep"


@dataclasses.dataclass(frozen=True)
class MetricOptions:
    """Options of the sample-based metrics; one ``seed`` drives every random choice."""

    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    pr_k: int = 3
    dc_k: int = 5
    bootstrap: int = 0            # resamples for confidence intervals (0: none)
    confidence: float = 0.95
    seed: int = 2020              # torch-fidelity's default: IS shuffle and KID subsets equal its values


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What a metric gets: both sides' statistics and features in its feature space."""

    real_stats: Any
    real_features: np.ndarray | None
    fake_stats: Any
    fake_features: np.ndarray | None
    fake_n: int | None
    options: MetricOptions


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    name: str                               # generic name, as requested: fd, kd, pr, dc, is, sfid, ...
    summary: str
    role: str                               # the tap role it reads
    real: str | None                        # STREAM, KEEP or None (this side is not used)
    fake: str | None
    compute: Callable[[Inputs], dict[str, Any]]
    extractors: tuple[str, ...] | None = None   # only these feature spaces (None: any with the role)
    inception_name: str | None = None       # its historic name in the Inception space (fd -> fid)
    fake_keep_for_bootstrap: bool = False   # the bootstrap resamples generated features

    def needs(self, bootstrap: bool) -> tuple[set[str], set[str]]:
        """How the real and the generated side are read: subsets of {STREAM, KEEP}."""
        real = {self.real} - {None}
        fake = {self.fake} - {None}
        if bootstrap and self.fake_keep_for_bootstrap:
            fake.add(KEEP)
        return real, fake


def _fd(x: Inputs) -> dict[str, Any]:
    out = {"fd": frechet_distance(x.real_stats, x.fake_stats, force=True)}
    o = x.options
    if o.bootstrap:
        ci = fid_bootstrap(x.fake_features, x.real_stats, resamples=o.bootstrap, confidence=o.confidence,
                           seed=o.seed)
        out["fd_ci"] = [ci.low, ci.high]
    return out


def _kd(x: Inputs) -> dict[str, Any]:
    o = x.options
    # torch-fidelity's order (generated first): with the same seed its subsets, hence its value.
    k = kernel_inception_distance(x.fake_features, x.real_features, subsets=o.kid_subsets,
                                  subset_size=o.kid_subset_size, seed=o.seed)
    return {"kd": k.mean, "kd_std": k.std, "kd_subset_size": k.subset_size}


def _pr(x: Inputs) -> dict[str, Any]:
    o = x.options
    pr = precision_recall(x.real_features, x.fake_features, k=o.pr_k)
    return {"precision": pr.precision, "recall": pr.recall,
            **_mean_intervals(o, precision=pr.fake_inside, recall=pr.real_inside)}


def _dc(x: Inputs) -> dict[str, Any]:
    o = x.options
    dc = density_coverage(x.real_features, x.fake_features, k=o.dc_k)
    return {"density": dc.density, "coverage": dc.coverage,
            **_mean_intervals(o, density=dc.fake_ball_counts / o.dc_k, coverage=dc.real_covered)}


def _fd_inf(x: Inputs) -> dict[str, Any]:
    e = fid_infinity(x.fake_features, x.real_stats, seed=x.options.seed)
    return {"fd_inf": e.value, "fd_inf_sizes": [int(n) for n in e.sizes], "fd_inf_r2": e.r_squared}


def _noise_floor(x: Inputs) -> dict[str, Any]:
    real = x.real_features
    n = min(x.fake_n if x.fake_n is not None else len(real), len(real) // 2)
    return {"noise_floor": fid_noise_floor(real, n, seed=x.options.seed), "noise_floor_n": n}


def _is(x: Inputs) -> dict[str, Any]:
    s = inception_score(x.fake_features, splits=x.options.is_splits, seed=x.options.seed)
    return {"is": s.mean, "is_std": s.std}


def _is_inf(x: Inputs) -> dict[str, Any]:
    e = is_infinity(x.fake_features, seed=x.options.seed)
    return {"is_inf": e.value, "is_inf_sizes": [int(n) for n in e.sizes], "is_inf_r2": e.r_squared}


def _sfid(x: Inputs) -> dict[str, Any]:
    return {"sfid": frechet_distance(x.real_stats, x.fake_stats, force=True)}


def _cmmd(x: Inputs) -> dict[str, Any]:
    return {"cmmd": cmmd(x.real_features, x.fake_features)}


def _mean_intervals(o: MetricOptions, **per_sample: np.ndarray) -> dict[str, list[float]]:
    """Bootstrap intervals of metrics that are means of per-sample values.

    Precision and density average over generated samples (the real manifold held
    fixed), recall and coverage over real samples (the generated one held fixed).
    """
    if not o.bootstrap:
        return {}
    out = {}
    for key, values in per_sample.items():
        v = np.asarray(values, dtype=np.float64)
        ci = bootstrap_interval(lambda idx, v=v: v[idx].mean(), len(v), resamples=o.bootstrap,
                                confidence=o.confidence, seed=o.seed)
        out[f"{key}_ci"] = [ci.low, ci.high]
    return out


METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    MetricSpec("fd", "Fréchet distance between Gaussian fits of the embeddings (FID in the Inception space)",
               "embedding", STREAM, STREAM, _fd, inception_name="fid", fake_keep_for_bootstrap=True),
    MetricSpec("kd", "kernel distance: unbiased MMD² with a cubic polynomial kernel (KID in the Inception space)",
               "embedding", KEEP, KEEP, _kd, inception_name="kid"),
    MetricSpec("pr", "precision and recall (k-NN manifolds)", "embedding", KEEP, KEEP, _pr),
    MetricSpec("dc", "density and coverage", "embedding", KEEP, KEEP, _dc),
    MetricSpec("fd_inf", "Fréchet distance extrapolated to infinitely many samples", "embedding", STREAM, KEEP,
               _fd_inf, inception_name="fid_inf"),
    MetricSpec("noise_floor", "Fréchet distance between two random halves of the reference", "embedding", KEEP,
               None, _noise_floor),
    MetricSpec("is", "Inception Score", "logits", None, KEEP, _is, extractors=("inception",)),
    MetricSpec("is_inf", "Inception Score extrapolated to infinitely many samples", "logits", None, KEEP, _is_inf,
               extractors=("inception",)),
    MetricSpec("sfid", "Fréchet distance of spatial features (sFID)", "spatial", STREAM, STREAM, _sfid,
               extractors=("inception",)),
    MetricSpec("cmmd", "CLIP maximum mean discrepancy (Gaussian kernel, sigma 10, x1000)", "embedding_l2", KEEP,
               KEEP, _cmmd, extractors=("clip-vitl14-336",)),
)}

#: Historic names and groups a user may type.
ALIASES = {"fid": ("fd",), "kid": ("kd",), "fid_inf": ("fd_inf",), "prdc": ("pr", "dc")}


def result_key(key: str, metric: MetricSpec, space_key: str, names: dict[str, str] | None = None) -> str:
    """The name of one value in a result: ``fd`` -> ``fid`` (Inception) or ``fd_dinov2``; ``fd_ci`` ->
    ``fid_ci`` or ``fd_dinov2_ci``; ``precision`` -> ``precision`` or ``precision_dinov2``.  ``names`` are the
    space's own names of generic metrics (I3D: ``fd`` -> ``fvd``, so ``fd_ci`` -> ``fvd_ci``)."""
    if metric.extractors is not None and len(metric.extractors) == 1:
        return key                                     # a metric of one space needs no suffix (is, sfid, cmmd)
    bases = sorted({metric.name, "precision", "recall", "density", "coverage"}, key=len, reverse=True)
    base = next((b for b in bases if key == b or key.startswith(b + "_")), key)
    rest = key[len(base):]
    if names and base == metric.name and base in names:
        return names[base] + rest
    if not space_key:
        if metric.inception_name and base == metric.name:
            return metric.inception_name + rest
        return key
    return f"{base}_{space_key}{rest}"
