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

from fidkit.errors import BadInputError
from fidkit.metrics.bootstrap import bootstrap_interval, fid_bootstrap, fid_noise_floor
from fidkit.metrics.cmmd import cmmd
from fidkit.metrics.frechet import frechet_terms_from_moments, frechet_terms_of_stats
from fidkit.metrics.inception_score import inception_score
from fidkit.metrics.infinity import fid_infinity, is_infinity
from fidkit.metrics.kid import kernel_inception_distance
from fidkit.metrics.prdc import density_coverage, precision_recall

STREAM, KEEP = "stream", "keep"


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a metric, declared with the metric: the CLI flag (``--kid-subsets``), the Python keyword
    (``kid_subsets=``), validation and help are all derived from it."""

    name: str
    type: type                              # int or float
    default: Any
    help: str = ""
    low: float | None = None                # inclusive bounds (None: unbounded)
    high: float | None = None
    strict: bool = False                    # bounds exclusive (confidence: strictly between 0 and 1)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def validate(self, value: Any) -> Any:
        """``value`` as this option's type, or a :class:`BadInputError` naming the option and its bounds."""
        kind = "an integer" if self.type is int else "a number"
        ok_type = (isinstance(value, (int, np.integer)) if self.type is int
                   else isinstance(value, (int, float, np.integer, np.floating)))
        if isinstance(value, bool) or not ok_type:
            raise BadInputError(f"{self.name} must be {kind}{self._bounds()}, got {value!r}")
        v = self.type(value)
        if self.type is float and not np.isfinite(v):
            raise BadInputError(f"{self.name} must be a finite number{self._bounds()}, got {value!r}")
        below = self.low is not None and (v <= self.low if self.strict else v < self.low)
        above = self.high is not None and (v >= self.high if self.strict else v > self.high)
        if below or above:
            raise BadInputError(f"{self.name} must be {kind}{self._bounds(below, above)}, got {value!r}")
        return v

    def _bounds(self, below: bool = True, above: bool = True) -> str:
        """The bounds in words: the violated one (both when the range is open at both ends)."""
        lo, hi = (None if b is None else (int(b) if float(b).is_integer() else b) for b in (self.low, self.high))
        if self.strict and lo is not None and hi is not None:
            return f" strictly between {lo} and {hi}"
        if lo is not None and below:
            return f" of at least {lo}"
        if hi is not None and above:
            return f" of at most {hi}"
        return ""


#: Options every metric shares: intervals and the seed of every random choice.
COMMON_OPTIONS = (
    Option("bootstrap", int, 0, "N bootstrap resamples for confidence intervals of FD (bias-shifted: covers the "
           "expected FD at this N), precision, recall, density and coverage (percentile); 0: none", low=0),
    Option("confidence", float, 0.95, "level of the bootstrap intervals", low=0, high=1, strict=True),
    # np.random.RandomState, which torch-fidelity's subsets and shuffles use, takes seeds below 2**32
    Option("seed", int, 2020, "seed of every random choice (the default is torch-fidelity's)", low=0,
           high=2 ** 32 - 1),
)


class MetricOptions:
    """The options of the metrics: one value per option declared by a registered metric (and the common
    ``bootstrap``, ``confidence``, ``seed``), validated when given.  Immutable; :meth:`replace` makes a changed
    copy.  ``MetricOptions(kid_subsets=50).kid_subsets``; an option nobody set reads as its declared default."""

    __slots__ = ("_values",)

    def __init__(self, **values: Any):
        known = declared_options()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise BadInputError(f"unknown option(s) {', '.join(unknown)}; the metrics' options: "
                                f"{', '.join(sorted(known))}")
        object.__setattr__(self, "_values", {k: known[k].validate(v) for k, v in values.items()})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            pass
        known = declared_options()
        if name in known:
            return known[name].default
        raise AttributeError(f"no metric declares an option {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("MetricOptions is immutable; use .replace(...)")

    def replace(self, **changes: Any) -> "MetricOptions":
        return MetricOptions(**{**self._values, **changes})

    def to_dict(self, metrics: "list[MetricSpec] | None" = None) -> dict[str, Any]:
        """Every option's value (given or default); with ``metrics``, only theirs and the common ones."""
        options = declared_options(metrics)
        return {name: getattr(self, name) for name in sorted(options)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MetricOptions) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))

    def __repr__(self) -> str:
        return "MetricOptions(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"


def declared_options(metrics: "list[MetricSpec] | None" = None) -> dict[str, Option]:
    """Options by name: the common ones and those of ``metrics`` (default: every registered metric)."""
    out = {o.name: o for o in COMMON_OPTIONS}
    for m in (METRICS.values() if metrics is None else metrics):
        for o in m.options:
            out.setdefault(o.name, o)
    return out


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What a metric gets: both sides' statistics and features in its feature space."""

    real_stats: Any
    real_features: np.ndarray | None
    fake_stats: Any
    fake_features: np.ndarray | None
    fake_n: int | None
    options: MetricOptions


@dataclasses.dataclass(frozen=True, eq=False)   # one object per registered metric: compared and hashed by identity
class MetricSpec:
    """A metric, declared once.

    ``role`` is the tap role it reads (``embedding``, ``logits``, ``spatial``, ``embedding_l2``); ``real`` and
    ``fake`` say how each side is read (:data:`STREAM`: streamed statistics, O(d^2) memory; :data:`KEEP`:
    per-sample features; ``None``: not read).  ``compute(Inputs)`` returns a dict whose keys are the generic
    ``outputs`` (and ``<output>_std``/``_ci``-style details of them); ``labels`` gives each output's printed name.
    ``options`` become keywords of :func:`fidkit.evaluate` and flags of ``fidkit eval``.
    """

    name: str                               # generic name, as requested: fd, kd, pr, dc, is, sfid, ...
    summary: str
    role: str                               # the tap role it reads
    real: str | None                        # STREAM, KEEP or None (this side is not used)
    fake: str | None
    compute: Callable[[Inputs], dict[str, Any]]
    extractors: tuple[str, ...] | None = None   # only these feature spaces (None: any with the role)
    inception_name: str | None = None       # its historic name in the Inception space (fd -> fid)
    fake_keep_for_bootstrap: bool = False   # the bootstrap resamples generated features
    options: tuple[Option, ...] = ()
    outputs: tuple[str, ...] = ()           # the values it returns (default: its name)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)   # output -> printed label
    inception_label: str | None = None      # printed label of its historic Inception name (FID)
    #: the fewest samples each side must hold under given options, ``(real, fake)`` (None: no minimum beyond 2),
    #: checked before the pass where a source's count is known
    min_samples: Callable[[MetricOptions], tuple[int | None, int | None]] | None = None

    def __post_init__(self):
        if not self.outputs:
            object.__setattr__(self, "outputs", (self.name,))

    def needs(self, bootstrap: bool) -> tuple[set[str], set[str]]:
        """How the real and the generated side are read: subsets of {STREAM, KEEP}."""
        real = {self.real} - {None}
        fake = {self.fake} - {None}
        if bootstrap and self.fake_keep_for_bootstrap:
            fake.add(KEEP)
        return real, fake


def _fd(x: Inputs) -> dict[str, Any]:
    o = x.options
    if o.fd_ddof == 0:
        return _frechet_biased("fd", x)
    out = _frechet("fd", x)
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
    # the per-size scores and the slope too, so a report can draw FD against N with the fitted a + b/N
    return {"fd_inf": e.value, "fd_inf_sizes": [int(n) for n in e.sizes], "fd_inf_r2": e.r_squared,
            "fd_inf_scores": [float(v) for v in e.scores], "fd_inf_slope": e.slope}


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
    return _frechet("sfid", x)


def _frechet(key: str, x: Inputs) -> dict[str, Any]:
    """A Fréchet distance with its two terms (``<key>_mean_term`` + ``<key>_cov_term`` = ``<key>``), from one
    computation: what moved, the means or the spreads, is kept in every result."""
    t = frechet_terms_of_stats(x.real_stats, x.fake_stats)
    return {key: t.value, f"{key}_mean_term": t.mean, f"{key}_cov_term": t.cov}


def _frechet_biased(key: str, x: Inputs) -> dict[str, Any]:
    """The Fréchet distance of covariances divided by N instead of N - 1 (``fd_ddof=0``: StyleGAN-V's and
    cd-FVD's FVD), from the same statistics scaled exactly by (N - 1) / N; both counts must be known."""
    if x.options.bootstrap:
        raise BadInputError("fd_ddof=0 (covariances divided by N) has no bootstrap interval in fidkit; leave "
                            "--bootstrap out, or use fd_ddof=1")
    scaled = []
    for side, st in (("reference", x.real_stats), ("generated", x.fake_stats)):
        if st.n is None:
            raise BadInputError(f"fd_ddof=0 needs the sample count of both sides; the {side} statistics "
                                f"({st.provenance.source or 'given'}) do not record theirs")
        scaled.append((st.mean, st.cov * ((st.n - 1) / st.n), st.n))
    (ma, ca, na), (mb, cb, nb) = scaled
    t = frechet_terms_from_moments(ma, ca, mb, cb, n_a=na, n_b=nb)
    return {key: t.value, f"{key}_mean_term": t.mean, f"{key}_cov_term": t.cov}


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


_K_PR = Option("pr_k", int, 3, "neighbours for precision/recall", low=1)
_K_DC = Option("dc_k", int, 5, "neighbours for density/coverage", low=1)

#: Every registered metric by generic name (:func:`register_metric` adds one).
METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec, *, replace: bool = False) -> MetricSpec:
    """Make ``spec`` available to every front end: ``evaluate(metrics=...)``, the ``Evaluator``, ``fidkit eval
    --metrics`` and its option flags, result names and printed labels."""
    if spec.name in METRICS and not replace and METRICS[spec.name] is not spec:
        raise BadInputError(f"a metric named {spec.name!r} is already registered (pass replace=True)")
    taken = {o.name: m.name for m in METRICS.values() if m.name != spec.name for o in m.options}
    taken.update({o.name: "every metric" for o in COMMON_OPTIONS})
    for o in spec.options:
        if o.name in taken and declared_options()[o.name] != o:
            raise BadInputError(f"metric {spec.name!r}: option {o.name!r} is already declared by {taken[o.name]} "
                                "with other settings")
    METRICS[spec.name] = spec
    return spec


for _m in (
    MetricSpec("fd", "Fréchet distance between Gaussian fits of the embeddings (FID in the Inception space)",
               "embedding", STREAM, STREAM, _fd, inception_name="fid", fake_keep_for_bootstrap=True,
               labels={"fd": "FD"}, inception_label="FID",
               options=(Option("fd_ddof", int, 1, "covariance divisor N - ddof: 1 (fidkit, pytorch-fid, clean-fid, "
                               "ADM, torch-fidelity, EDM2) or 0 (StyleGAN-V's and cd-FVD's FVD divide by N)",
                               low=0, high=1),)),
    MetricSpec("kd", "kernel distance: unbiased MMD² with a cubic polynomial kernel (KID in the Inception space)",
               "embedding", KEEP, KEEP, _kd, inception_name="kid", labels={"kd": "KD"}, inception_label="KID",
               options=(Option("kid_subsets", int, 100, "random subsets KD/KID averages over", low=1),
                        Option("kid_subset_size", int, 1000, "samples per subset (capped by N, with a warning)",
                               low=1))),
    MetricSpec("pr", "precision and recall (k-NN manifolds)", "embedding", KEEP, KEEP, _pr,
               outputs=("precision", "recall"), options=(_K_PR,),
               min_samples=lambda o: (o.pr_k + 1, o.pr_k + 1)),
    MetricSpec("dc", "density and coverage", "embedding", KEEP, KEEP, _dc, outputs=("density", "coverage"),
               options=(_K_DC,), min_samples=lambda o: (o.dc_k + 1, None)),
    MetricSpec("fd_inf", "Fréchet distance extrapolated to infinitely many samples", "embedding", STREAM, KEEP,
               _fd_inf, inception_name="fid_inf", labels={"fd_inf": "FD-inf"}, inception_label="FID-inf"),
    MetricSpec("noise_floor", "Fréchet distance between two random halves of the reference", "embedding", KEEP,
               None, _noise_floor, labels={"noise_floor": "noise floor (real vs real FD)"}),
    MetricSpec("is", "Inception Score", "logits", None, KEEP, _is, extractors=("inception",), labels={"is": "IS"},
               options=(Option("is_splits", int, 10, "splits of the generated samples for IS", low=1),),
               min_samples=lambda o: (None, o.is_splits)),
    MetricSpec("is_inf", "Inception Score extrapolated to infinitely many samples", "logits", None, KEEP, _is_inf,
               extractors=("inception",), labels={"is_inf": "IS-inf"}),
    MetricSpec("sfid", "Fréchet distance of spatial features (sFID)", "spatial", STREAM, STREAM, _sfid,
               extractors=("inception",), labels={"sfid": "sFID"}),
    MetricSpec("cmmd", "CLIP maximum mean discrepancy (Gaussian kernel, sigma 10, x1000)", "embedding_l2", KEEP,
               KEEP, _cmmd, extractors=("clip-vitl14-336",), labels={"cmmd": "CMMD"}),
):
    register_metric(_m)
del _m


#: Historic names and groups a user may type.
ALIASES = {"fid": ("fd",), "kid": ("kd",), "fid_inf": ("fd_inf",), "prdc": ("pr", "dc")}


def result_key(key: str, metric: MetricSpec, space_key: str, names: dict[str, str] | None = None) -> str:
    """The name of one value in a result: ``fd`` -> ``fid`` (Inception) or ``fd_dinov2``; ``fd_ci`` ->
    ``fid_ci`` or ``fd_dinov2_ci``; ``precision`` -> ``precision`` or ``precision_dinov2``.  ``names`` are the
    space's own names of generic metrics (I3D: ``fd`` -> ``fvd``, so ``fd_ci`` -> ``fvd_ci``)."""
    if metric.extractors is not None and len(metric.extractors) == 1:
        return key                                     # a metric of one space needs no suffix (is, sfid, cmmd)
    bases = sorted({metric.name, *metric.outputs}, key=len, reverse=True)
    base = next((b for b in bases if key == b or key.startswith(b + "_")), key)
    rest = key[len(base):]
    if names and base == metric.name and base in names:
        return names[base] + rest
    if not space_key:
        if metric.inception_name and base == metric.name:
            return metric.inception_name + rest
        return key
    return f"{base}_{space_key}{rest}"


def result_label(key: str, metric: MetricSpec, space_key: str, space_name: str,
                 names: dict[str, str] | None = None) -> str:
    """The printed label of the value ``key`` (a result name from :func:`result_key` of a generic output):
    the metric's declared label, in the Inception space its historic one, elsewhere with the space's network
    (``FD (dinov2-vitl14)``); a space's own metric names print in capitals (``FVD``)."""
    generic = next((o for o in sorted(metric.outputs, key=len, reverse=True)
                    if result_key(o, metric, space_key, names) == key), None)
    if generic is None:
        return key
    if names and generic in names:
        return names[generic].upper()
    label = metric.labels.get(generic, generic)
    if metric.extractors is not None and len(metric.extractors) == 1:
        return label
    if not space_key:
        return metric.inception_label or label if generic == metric.name else label
    return f"{label} ({space_name})"
