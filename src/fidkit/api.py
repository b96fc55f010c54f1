"""The Python API: ``evaluate``, ``fid``, ``compute_stats``.  The CLI is a thin layer over these.

Every metric is fed by one feature pass per source: ``evaluate`` works out which
network taps each side needs (streamed statistics for FID and sFID, per-sample
features for KID, precision/recall and IS), runs the network once per image,
and hands the results to the pure functions in :mod:`fidkit.metrics`.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from typing import Any, Iterable

import numpy as np

from . import metrics as M
from .errors import BadInputError, FidkitWarning
from .extract import extract
from .features import InceptionExtractor
from .features.inception import TAPS
from .preprocess import DEFAULT_MODE, get_mode
from .provenance import Provenance
from .reference import Reference
from .result import EvalResult, FIDResult
from .sources import FeaturesSource, ImageSource, Source, StatsSource, open_source
from .stats import FeatureStats

#: Below this many samples the 2048-d covariance is singular and FID strongly biased.
MIN_RELIABLE_N = 2048

DEFAULT_METRICS = ("fid", "kid", "is", "sfid", "prdc")
ALL_METRICS = DEFAULT_METRICS + ("fid_inf", "is_inf", "noise_floor")
_ALIASES = {"pr": ("pr",), "dc": ("dc",), "prdc": ("pr", "dc")}

# What each metric needs from each side: (streamed taps, kept taps) for real (a) and fake (b).
_NEEDS = {
    "fid": ({"pool3"}, set(), {"pool3"}, set()),
    "sfid": ({"spatial"}, set(), {"spatial"}, set()),
    "kid": (set(), {"pool3"}, set(), {"pool3"}),
    "pr": (set(), {"pool3"}, set(), {"pool3"}),
    "dc": (set(), {"pool3"}, set(), {"pool3"}),
    "is": (set(), set(), set(), {"logits_unbiased"}),
    "fid_inf": ({"pool3"}, set(), set(), {"pool3"}),
    "is_inf": (set(), set(), set(), {"logits_unbiased"}),
    "noise_floor": (set(), {"pool3"}, set(), set()),
}


@dataclasses.dataclass(frozen=True)
class MetricOptions:
    """Options of the sample-based metrics; one ``seed`` drives every random choice."""

    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    pr_k: int = 3
    dc_k: int = 5
    bootstrap: int = 0            # resamples for a FID confidence interval (0: none)
    confidence: float = 0.95
    seed: int = 2020              # torch-fidelity's default: IS shuffle and KID subsets equal its values


def parse_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    out: list[str] = []
    for raw in names:
        name = raw.strip().lower().replace("-", "_")
        if not name:
            continue
        if name == "all":
            expanded: Iterable[str] = [m for a in ALL_METRICS for m in _ALIASES.get(a, (a,))]
        elif name in _ALIASES:
            expanded = _ALIASES[name]
        elif name in _NEEDS:
            expanded = (name,)
        else:
            raise BadInputError(f"unknown metric {raw!r}; choose from {', '.join(ALL_METRICS + ('pr', 'dc', 'all'))}")
        out.extend(m for m in expanded if m not in out)
    if not out:
        raise BadInputError("no metric requested")
    return tuple(out)


@dataclasses.dataclass
class _Side:
    """What one source contributes: streamed statistics and kept features per tap."""

    description: str
    stats: dict[str, FeatureStats]
    features: dict[str, np.ndarray]
    count: int | None = None  # when known without statistics or features (images seen but no tap needed)

    @property
    def n(self) -> int | None:
        if self.count is not None:
            return self.count
        for s in self.stats.values():
            return s.n
        for f in self.features.values():
            return len(f)
        return None


def _emit(messages: list[str]) -> None:
    for m in messages:
        warnings.warn(m, FidkitWarning, stacklevel=3)


def _choose_mode(mode: str | None, sources: list[Source]) -> str:
    """An explicit mode wins; else the mode recorded in given statistics; else ``tf``."""
    if mode is not None:
        return get_mode(mode).name
    recorded = {s.stats.provenance.mode for s in sources if isinstance(s, StatsSource)} - {None}
    if len(recorded) == 1:
        return recorded.pop()
    return DEFAULT_MODE


def _side(source: Source, label: str, stream: set[str], keep: set[str], extractor_args: dict, mode: str,
          run: dict, notes: list[str], extractor=None) -> _Side:
    if not stream and not keep:  # this side feeds none of the requested metrics (IS needs generated images only)
        return _Side(source.description, {}, {})
    if isinstance(source, ImageSource):
        extractor = extractor if extractor is not None else InceptionExtractor.get(**extractor_args)
        out = extract(source, extractor, get_mode(mode), stream=tuple(sorted(stream)), keep=tuple(sorted(keep)),
                      **run)
        notes.extend(out.warnings)
        return _Side(source.description, out.stats, out.features)
    if isinstance(source, FeaturesSource):
        if (stream | keep) - {"pool3"}:
            raise BadInputError(f"{source.description}: precomputed features can serve FID, KID, precision/recall "
                                f"and density/coverage, not metrics needing {sorted((stream | keep) - {'pool3'})}")
        return _Side(source.description, {"pool3": source.stats()} if stream else {},
                     {"pool3": np.asarray(source.features, dtype=np.float32)} if keep else {})
    ref = source.reference
    missing = sorted((stream - set(ref.stats)) | (keep - set(ref.features)))
    if missing:
        what = {"pool3": "per-sample pool3 features (write them with 'fidkit stats SOURCE -o FILE --features')",
                "spatial": "spatial (sFID) statistics", "logits_unbiased": "logits"}
        raise BadInputError(f"{source.description} ({label}) lacks " + "; ".join(what[m] for m in missing))
    return _Side(source.description, {t: ref.stats[t] for t in stream}, {t: ref.features[t] for t in keep})


def _planned_provenance(source: Source, tap: str, extractor, mode: str) -> Provenance | None:
    """What the statistics of ``source`` at ``tap`` will record; ``extractor`` is a zero-argument callable."""
    if isinstance(source, StatsSource):
        s = source.reference.stats.get(tap)
        return None if s is None else s.provenance
    if isinstance(source, FeaturesSource):
        return source.provenance
    return extractor().provenance(mode, tap, source.description)


def _needs(names: tuple[str, ...], opts: MetricOptions) -> list[set[str]]:
    """Streamed and kept taps of the reference and generated sides: [a_stream, a_keep, b_stream, b_keep]."""
    needs: list[set[str]] = [set(), set(), set(), set()]
    for name in names:
        for i, taps in enumerate(_NEEDS[name]):
            needs[i] |= taps
    if opts.bootstrap:
        needs[3].add("pool3")
    return needs


def _options(options: MetricOptions | None, overrides: dict) -> MetricOptions:
    try:
        return dataclasses.replace(options or MetricOptions(), **overrides)
    except TypeError as e:
        raise BadInputError(f"unknown option: {e}") from None


def _metric_values(names: tuple[str, ...], real: _Side, fake: _Side, opts: MetricOptions, force: bool,
                   notes: list[str]) -> dict[str, Any]:
    """Checks that need both sides, then every requested metric; warnings are appended to ``notes``."""
    for side in (real, fake):
        if side.n is not None and side.n < 2:
            raise BadInputError(f"{side.description}: {side.n} sample(s); the metrics need at least 2")
    for tap in real.stats.keys() & fake.stats.keys():
        notes.extend(real.stats[tap].provenance.check_comparable(fake.stats[tap].provenance, force=force))
        if real.stats[tap].dim != fake.stats[tap].dim:
            raise BadInputError(f"feature dimensions differ: {real.stats[tap].dim} ({real.description}) vs "
                                f"{fake.stats[tap].dim} ({fake.description})")
    notes.extend(_sample_count_notes(real, fake))
    values: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FidkitWarning)
        for name in names:
            values.update(_compute(name, real, fake, opts))
    notes.extend(str(w.message) for w in caught if issubclass(w.category, FidkitWarning))
    return values


def _result(values: dict[str, Any], names, real: _Side, fake: _Side, mode: str, uses_net: bool, notes: list[str],
            start: float, opts: MetricOptions, device) -> EvalResult:
    prov = next((s.provenance for side in (real, fake) for s in side.stats.values() if s.provenance.known),
                Provenance.unknown())
    return EvalResult(values=values, n_a=real.n, n_b=fake.n, a=real.description, b=fake.description,
                      mode=mode if uses_net or prov.mode else None, provenance=prov, warnings=notes,
                      seconds=time.perf_counter() - start, metrics=names, options=dataclasses.asdict(opts),
                      device=str(device) if uses_net and device is not None else None)


def evaluate(a, b, *, metrics: str | Iterable[str] = DEFAULT_METRICS, mode: str | None = None,
             weights: str | os.PathLike | None = None, device=None, batch_size: int = 32,
             workers: int | None = None, limit: int | None = None, value_range=None, force: bool = False,
             progress: bool = False, distributed: bool = False, options: MetricOptions | None = None,
             **option_overrides) -> EvalResult:
    """Every requested metric of ``b`` (generated) against ``a`` (reference) from one feature pass per image.

    ``a`` and ``b`` take every source :func:`fid` takes.  Metric options
    (``kid_subsets``, ``kid_subset_size``, ``is_splits``, ``pr_k``, ``dc_k``,
    ``bootstrap``, ``confidence``, ``seed``) may be given as keywords or as a
    :class:`MetricOptions`.  With ``distributed=True`` and an initialised
    ``torch.distributed`` process group, every process must make the same call:
    each extracts every world-th image, and every process returns the result of
    the whole sources (what ``torchrun -m fidkit eval`` does).
    """
    start = time.perf_counter()
    opts = _options(options, option_overrides)
    names = parse_metrics(metrics)
    sources = [open_source(s, value_range=value_range, limit=limit) for s in (a, b)]
    mode = _choose_mode(mode, sources)
    extractor_args = dict(weights=weights, device=device)
    needs = _needs(names, opts)

    # Refuse incomparable inputs before spending minutes on the feature pass.
    for tap in sorted(needs[0] | needs[1]):
        planned = [_planned_provenance(s, tap, lambda: InceptionExtractor.get(**extractor_args), mode)
                   for s in sources]
        if None not in planned:
            planned[0].check_comparable(planned[1], force=force)

    notes: list[str] = []
    run = dict(batch_size=batch_size, workers=workers, progress=progress, distributed=distributed)
    real = _side(sources[0], "REAL", needs[0], needs[1], extractor_args, mode, run, notes)
    fake = _side(sources[1], "FAKE", needs[2], needs[3], extractor_args, mode, run, notes)
    values = _metric_values(names, real, fake, opts, force, notes)
    _emit(notes)
    uses_net = any(isinstance(s, ImageSource) for s in sources)
    return _result(values, names, real, fake, mode, uses_net, notes, start, opts,
                   InceptionExtractor.get(**extractor_args).device if uses_net else None)


def _compute(name: str, real: _Side, fake: _Side, o: MetricOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name == "fid":
        out["fid"] = M.frechet_distance(real.stats["pool3"], fake.stats["pool3"], force=True)
        if o.bootstrap:
            ci = M.fid_bootstrap(fake.features["pool3"], real.stats["pool3"], resamples=o.bootstrap,
                                 confidence=o.confidence, seed=o.seed)
            out["fid_ci"] = [ci.low, ci.high]
    elif name == "sfid":
        out["sfid"] = M.frechet_distance(real.stats["spatial"], fake.stats["spatial"], force=True)
    elif name == "kid":
        # torch-fidelity's order (generated first): with the same seed its subsets, hence its value.
        k = M.kernel_inception_distance(fake.features["pool3"], real.features["pool3"], subsets=o.kid_subsets,
                                        subset_size=o.kid_subset_size, seed=o.seed)
        out.update(kid=k.mean, kid_std=k.std, kid_subset_size=k.subset_size)
    elif name == "is":
        s = M.inception_score(fake.features["logits_unbiased"], splits=o.is_splits, seed=o.seed)
        out.update({"is": s.mean, "is_std": s.std})
    elif name == "pr":
        pr = M.precision_recall(real.features["pool3"], fake.features["pool3"], k=o.pr_k)
        out.update(precision=pr.precision, recall=pr.recall)
        out.update(_mean_intervals(o, precision=pr.fake_inside, recall=pr.real_inside))
    elif name == "dc":
        dc = M.density_coverage(real.features["pool3"], fake.features["pool3"], k=o.dc_k)
        out.update(density=dc.density, coverage=dc.coverage)
        out.update(_mean_intervals(o, density=dc.fake_ball_counts / o.dc_k, coverage=dc.real_covered))
    elif name == "fid_inf":
        e = M.fid_infinity(fake.features["pool3"], real.stats["pool3"], seed=o.seed)
        out.update(fid_inf=e.value, fid_inf_sizes=[int(n) for n in e.sizes])
    elif name == "is_inf":
        e = M.is_infinity(fake.features["logits_unbiased"], seed=o.seed)
        out.update(is_inf=e.value, is_inf_sizes=[int(n) for n in e.sizes])
    elif name == "noise_floor":
        n = min(fake.n if fake.n is not None else len(real.features["pool3"]), len(real.features["pool3"]) // 2)
        out.update(noise_floor=M.fid_noise_floor(real.features["pool3"], n, seed=o.seed), noise_floor_n=n)
    else:
        raise AssertionError(name)
    return out


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
        ci = M.bootstrap_interval(lambda idx, v=v: v[idx].mean(), len(v), resamples=o.bootstrap,
                                  confidence=o.confidence, seed=o.seed)
        out[f"{key}_ci"] = [ci.low, ci.high]
    return out


def _sample_count_notes(real: _Side, fake: _Side) -> list[str]:
    notes = []
    for side in (real, fake):
        dim = next(iter(side.stats.values())).dim if side.stats else TAPS["pool3"]
        threshold = MIN_RELIABLE_N if dim == TAPS["pool3"] else dim
        if side.n is not None and side.n < threshold:
            notes.append(
                f"{side.description}: N={side.n} is below {threshold}: the covariance is singular and FID is strongly "
                "biased upwards at small N; compare only FIDs computed at the same N (50,000 is the convention)")
    if real.n is not None and fake.n is not None and real.n != fake.n:
        notes.append(f"the two sides have different sample counts (N={real.n} vs N={fake.n}); FID depends on N, so "
                     "report both and compare only results computed with the same counts")
    return notes


def fid(a, b, *, mode: str | None = None, weights: str | os.PathLike | None = None, device=None,
        batch_size: int = 32, workers: int | None = None, limit: int | None = None, value_range=None,
        force: bool = False, progress: bool = False, distributed: bool = False) -> FIDResult:
    """Fréchet Inception Distance between two sources.

    ``a`` and ``b`` may each be a folder, archive, ``.npz``/``.npy`` (images,
    features or statistics), a saved statistics name, a tensor (NCHW) or array
    (NHWC) of images, an iterable of such batches, or :class:`FeatureStats`.
    Float images need ``value_range`` = ``(0, 1)``, ``(-1, 1)`` or ``(0, 255)``.
    Statistics with different provenance are refused unless ``force``.
    """
    r = evaluate(a, b, metrics=("fid",), mode=mode, weights=weights, device=device, batch_size=batch_size,
                 workers=workers, limit=limit, value_range=value_range, force=force, progress=progress,
                 distributed=distributed)
    return FIDResult(**{f.name: getattr(r, f.name) for f in dataclasses.fields(r)})


def compute_reference(source, *, features: bool = False, spatial: bool = True, mode: str | None = None,
                      weights: str | os.PathLike | None = None, device=None, batch_size: int = 32,
                      workers: int | None = None, limit: int | None = None, value_range=None,
                      progress: bool = False, distributed: bool = False) -> Reference:
    """Everything later evaluations need from a reference set, from one pass.

    Pool3 statistics always; spatial (sFID) statistics unless ``spatial=False``;
    per-sample pool3 features (KID, precision/recall, noise floor) if ``features``.
    ``distributed`` shares the work between the processes of a ``torch.distributed``
    group, as in :func:`evaluate`.
    """
    src = open_source(source, value_range=value_range, limit=limit)
    mode = _choose_mode(mode, [src])
    stream = {"pool3"} | ({"spatial"} if spatial and isinstance(src, ImageSource) else set())
    notes: list[str] = []
    side = _side(src, "SOURCE", stream, {"pool3"} if features else set(), dict(weights=weights, device=device),
                 mode, dict(batch_size=batch_size, workers=workers, progress=progress, distributed=distributed), notes)
    _emit(notes)
    return Reference(side.stats, side.features, side.description)


def compute_stats(source, *, mode: str | None = None, weights: str | os.PathLike | None = None,
                  device=None, batch_size: int = 32, workers: int | None = None, limit: int | None = None,
                  value_range=None, progress: bool = False) -> FeatureStats:
    """Pool3 statistics of ``source`` (any source kind ``fid`` accepts)."""
    return compute_reference(source, spatial=False, mode=mode, weights=weights, device=device,
                             batch_size=batch_size, workers=workers, limit=limit, value_range=value_range,
                             progress=progress).stats["pool3"]
