"""A request, resolved once: what to compute, in which feature spaces, how, from which sources.

Every front end (:func:`fidkit.evaluate`, :func:`fidkit.compute_reference`,
:func:`fidkit.compute_stats`, :class:`fidkit.Evaluator`, the CLI) calls
:func:`resolve` once.  It parses every name (metrics, networks, preprocessing,
options), validates every argument by one rule whatever the source kind, opens
the sources, and checks comparability once before any feature pass.  What it
returns is frozen: downstream code reads it and never parses a name again.

How a feature pass runs (device, batch size, decoding threads, value range,
limit, clips, ...) is one object, :class:`RunOptions`, shared by every front
end instead of the same keywords copied into each signature.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable, Mapping, TypedDict

import torch

from fidkit.data.sources import FeaturesSource, Source, StatsSource, check_value_range, open_source
from fidkit.engine.plan import Plan, make_plan, with_crop
from fidkit.errors import BadInputError
from fidkit.extractors import get_spec
from fidkit.extractors import weights as _weights
from fidkit.extractors.base import Preprocessing
from fidkit.extractors.runtime import resolve_device
from fidkit.metrics.catalog import MetricOptions, declared_options
from fidkit.stats.provenance import Provenance

__all__ = ["RunOptions", "RunKeywords", "Request", "resolve"]

#: What an image source may be: a path (folder, archive, ``.npz``/``.npy``, statistics file or saved name),
#: a tensor (N x C x H x W) or array (N x H x W x C), an iterable of such batches, or statistics.
SourceLike = Any
#: A weight file, or one per network: ``{"dinov2": PATH}``.
WeightsLike = str | os.PathLike | Mapping[str, str | os.PathLike] | None
#: A torch device, its name (``"cuda:1"``), or ``None``: cuda if available, else cpu.
DeviceLike = str | torch.device | None
#: What black and white are in float images: ``(0, 1)``, ``(-1, 1)`` or ``(0, 255)``.
ValueRange = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a feature pass runs, validated when made.

    ``device`` (default cuda if available, else cpu); ``batch_size`` images per network batch; ``workers``
    decoding threads (default ``min(4, cores)``); ``limit`` the first N images of each source; ``value_range``
    of float image arrays; ``progress`` a progress bar; ``distributed`` share the work between the processes of
    a ``torch.distributed`` group; ``skip_bad`` leave unreadable files out (named in the result); ``crop``
    ``"center"`` to centre-crop every image to a square first; ``clip`` how frames are sampled from videos (a
    :class:`~fidkit.data.video.ClipOptions` or a dict of ``length``, ``stride``, ``start``); ``layout``
    ``"NCTHW"`` for video tensors of that layout; ``storage_options`` for fsspec when a source is a URL (an S3
    ``endpoint_url``, credentials); ``image_column`` the image column of Parquet/Arrow tables (or the image
    extension of WebDataset samples).
    """

    device: DeviceLike = None
    batch_size: int = 32
    workers: int | None = None
    limit: int | None = None
    value_range: ValueRange | None = None
    progress: bool = False
    distributed: bool = False
    skip_bad: bool = False
    crop: str | None = None
    clip: Any = None
    layout: str | None = None
    storage_options: dict[str, Any] | None = None
    image_column: str | None = None

    def __post_init__(self):
        for name, low in (("batch_size", 1), ("workers", 1), ("limit", 1)):
            v = getattr(self, name)
            if v is None and name != "batch_size":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise BadInputError(f"{name} must be an integer of at least {low}, got {v!r}")
        if self.value_range is not None:
            object.__setattr__(self, "value_range", check_value_range(self.value_range))
        if self.crop not in (None, "none", "center"):
            raise BadInputError(f"crop={self.crop!r}: use 'center' or None")
        if self.layout not in (None, "NTCHW", "NCTHW"):
            raise BadInputError(f"layout={self.layout!r}: use 'NTCHW' (the default) or 'NCTHW'")
        if self.device is not None:
            dev = resolve_device(self.device)
            if dev.type == "meta":
                raise BadInputError(f"device {self.device!r} holds no data: features cannot be computed on it")
        object.__setattr__(self, "clip", clip_options(self.clip))

    @classmethod
    def split(cls, run: "RunOptions | None", keywords: dict[str, Any]) -> tuple["RunOptions", dict[str, Any]]:
        """``run`` updated by the keywords that are its fields; the other keywords (the metrics' options) back."""
        fields = {f.name for f in dataclasses.fields(cls)}
        mine = {k: v for k, v in keywords.items() if k in fields}
        rest = {k: v for k, v in keywords.items() if k not in fields}
        base = run if run is not None else cls()
        if not isinstance(base, RunOptions):
            raise BadInputError(f"run must be a RunOptions, got {type(base).__name__}")
        return (dataclasses.replace(base, **mine) if mine else base), rest

    def extraction(self) -> dict[str, Any]:
        """The keywords of :func:`fidkit.engine.extract.extract`."""
        return dict(batch_size=self.batch_size, workers=self.workers, progress=self.progress,
                    distributed=self.distributed, skip_bad=self.skip_bad)


class RunKeywords(TypedDict, total=False):
    """The keywords every front end takes besides its own: the fields of :class:`RunOptions` and the metrics'
    options (:class:`~fidkit.metrics.catalog.MetricOptions`; metrics registered later add theirs)."""

    device: DeviceLike
    batch_size: int
    workers: int | None
    limit: int | None
    value_range: ValueRange | None
    progress: bool
    distributed: bool
    skip_bad: bool
    crop: str | None
    clip: Any
    layout: str | None
    storage_options: dict[str, Any] | None
    image_column: str | None
    kid_subsets: int
    kid_subset_size: int
    is_splits: int
    pr_k: int
    dc_k: int
    bootstrap: int
    confidence: float
    seed: int
    vendi_q: float


@dataclasses.dataclass(frozen=True)
class Request:
    """Everything a computation needs, resolved: the plan, each network's preprocessing object and weights, the
    metrics' options, how the pass runs, the clip sampling, the opened sources.  Provenance is built once per
    feature space (:meth:`provenance`), when first needed (comparing two statistics files loads no network)."""

    plan: Plan
    preprocessing: Mapping[str, Preprocessing]
    weights: Mapping[str, Any]
    options: MetricOptions
    run: RunOptions
    clip: Any
    force: bool
    sources: tuple[Source, ...]
    #: the protocol card the request follows (``protocol=``, ``--protocol``), and what applying it left to say
    protocol: Any = None
    protocol_notes: tuple[str, ...] = ()
    _provenance: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def modality(self) -> str:
        return self.plan.modality

    def weights_sha256(self, name: str) -> str | None:
        spec = get_spec(name)
        if spec.weights is None:
            return spec.weights_digest
        return _weights.resolve(spec.weights, self.weights.get(name))[1]

    def provenance(self, space: str) -> Provenance:
        """What statistics of ``space`` (``extractor/tap``) computed for this request record (without a source)."""
        if space not in self._provenance:
            name, tap = space.split("/", 1)
            spec = get_spec(name)
            p = spec.provenance(self.weights_sha256(name), tap, self.preprocessing[name].name)
            if self.clip is not None and spec.modality == "video":
                p = dataclasses.replace(p, clip=self.clip.describe())
            self._provenance[space] = p
        return self._provenance[space]

    def planned_provenance(self, source: Source | None, space: str) -> Provenance | None:
        """What the statistics of ``source`` in ``space`` will record (``None`` source: images fed later)."""
        if isinstance(source, StatsSource):
            s = source.reference.stats.get(space)
            return None if s is None else s.provenance
        if isinstance(source, FeaturesSource):
            return source.provenance
        p = self.provenance(space)
        return p if source is None else p.with_source(source.description)

    def check_comparable(self, a: Source | None, b: Source | None) -> list[str]:
        """Refuse incomparable inputs before a feature pass; the notes (unknown provenance, forced) come back."""
        real, fake = self.plan.real, self.plan.fake
        spaces = (real.spaces("stream") | real.spaces("keep")) & (fake.spaces("stream") | fake.spaces("keep"))
        notes: list[str] = []
        for space in sorted(spaces):
            planned = [self.planned_provenance(s, space) for s in (a, b)]
            if None not in planned:
                for n in planned[0].check_comparable(planned[1], force=self.force):
                    if n not in notes:
                        notes.append(n)
        return notes


def resolve(metrics: str | Iterable[str] | None = None, features: str | Iterable[str] | None = None,
            preprocessing: str | Mapping[str, str] | None = None, *, weights: WeightsLike = None,
            options: MetricOptions | None = None, run: RunOptions | None = None,
            sources: Iterable[SourceLike] = (), source_names: Iterable[str] | None = None, force: bool = False,
            bootstrap_keeps: bool | None = None, protocol: str | None = None, **option_overrides: Any) -> Request:
    """Resolve a request once: parse and validate every argument, open the sources, plan the pass.

    ``sources`` are opened in the request's modality with its value range, limit, clip sampling and layout.
    When ``preprocessing`` is None, each network takes the preprocessing that given statistics record (else its
    default).
    ``source_names`` name the arguments the sources came from, for errors (``a (REAL)``).
    ``protocol`` names a published protocol's card (:mod:`fidkit.protocols`): its metrics, networks,
    preprocessing, metric options and clip sampling are used wherever the caller chose none.
    """
    if not isinstance(force, bool):
        raise BadInputError(f"force must be True or False, got {force!r}")
    run = run if run is not None else RunOptions()
    if options is not None and not isinstance(options, MetricOptions):
        raise BadInputError(f"options must be a MetricOptions, got {type(options).__name__}")
    unknown = sorted(set(option_overrides) - set(declared_options()))
    if unknown:
        raise BadInputError(f"unknown option(s) {', '.join(unknown)}; run options: "
                            f"{', '.join(f.name for f in dataclasses.fields(RunOptions))}; metric options: "
                            f"{', '.join(sorted(declared_options()))}")
    # --- protocol card: fills what the caller left open (explicit choices stay, the verdict names them) ---
    card, card_notes, card_clip = None, (), None
    if protocol is not None:
        from fidkit.protocols import protocol as _card
        from fidkit.protocols.apply import apply_card, fill_options
        card = _card(protocol)
        # options set on a MetricOptions object count as given too (its _values are the ones set explicitly)
        given = set(option_overrides) | (set(options._values) if options is not None else set())
        applied = apply_card(card, metrics=metrics, features=features, preprocessing=preprocessing,
                             options_given=given)
        metrics, features, preprocessing = applied.metrics, applied.features, applied.preprocessing
        option_overrides = {**fill_options(applied.options, declared_options()), **option_overrides}
        card_notes, card_clip = applied.notes, applied.clip
    # --- end protocol card ---
    opts = (options or MetricOptions()).replace(**option_overrides)
    mode = preprocessing
    plan = make_plan(metrics, features, mode, bootstrap=opts.bootstrap > 0 if bootstrap_keeps is None
                     else bootstrap_keeps)
    clip = video_clip(plan, run.clip if run.clip is not None or plan.modality != "video" else card_clip)
    if run.layout is not None and plan.modality != "video":
        raise BadInputError(f"layout={run.layout!r} applies to videos; images are N x C x H x W")
    sources = list(sources)
    names = list(source_names) if source_names is not None else ["source"] * len(sources)
    opened = tuple(open_source(s, value_range=run.value_range, limit=run.limit, modality=plan.modality, clip=clip,
                               layout=run.layout, argument=name, storage_options=run.storage_options,
                               image_column=run.image_column) for s, name in zip(sources, names))
    if mode is None:  # the preprocessing recorded in given statistics, else each extractor's default
        plan.preprocessing.update({e: m for e, m in _recorded_modes(opened).items() if e in plan.preprocessing})
    plan.preprocessing = with_crop(plan.preprocessing, run.crop)
    preprocessing = {name: get_spec(name).preprocessing_named(chosen) for name, chosen in plan.preprocessing.items()}
    return Request(plan=plan, preprocessing=preprocessing, weights=_weights_by_extractor(weights, plan),
                   options=opts, run=run, clip=clip, force=force, sources=opened, protocol=card,
                   protocol_notes=card_notes)


def _recorded_modes(sources: Iterable[Source]) -> dict[str, str]:
    """Preprocessing recorded in given statistics, per extractor (used when the caller names none)."""
    found: dict[str, set] = {}
    for s in sources:
        if isinstance(s, StatsSource):
            for space, st in s.reference.stats.items():
                if st.provenance.known and st.provenance.mode:
                    found.setdefault(space.split("/", 1)[0], set()).add(st.provenance.mode)
    return {e: modes.pop() for e, modes in found.items() if len(modes) == 1}


def _weights_by_extractor(weights: WeightsLike, plan: Plan) -> dict[str, Any]:
    """A mapping names each network's file; a single path belongs to the only network of the plan, or else to
    Inception (fidkit 0.1's meaning)."""
    if weights is None:
        return {}
    if isinstance(weights, Mapping):
        return {get_spec(k).name: v for k, v in weights.items() if v is not None}
    names = plan.extractors
    if len(names) == 1:
        return {names[0]: weights}
    if "inception" in names:
        return {"inception": weights}
    raise BadInputError(f"weights={str(weights)!r} is one file for {len(names)} networks ({', '.join(names)}); "
                        "name each: weights={'dinov2': PATH, ...} (CLI: --weights dinov2=PATH,...)")


def video_clip(plan: Plan, clip):
    """The clip sampling of a video plan (default: 16 consecutive frames from the first); ``None`` for images."""
    if plan.modality != "video":
        if clip is not None:
            raise BadInputError("clip options (clip length, frame stride, clip start) apply to video networks "
                                f"(fvd, features='i3d' or 'videomae-v2'), not to {', '.join(plan.extractors)}")
        return None
    from fidkit.data.video import ClipOptions
    return clip_options(clip) or ClipOptions()


def clip_options(clip):
    """``clip`` (a :class:`~fidkit.data.video.ClipOptions`, a dict of ``length``/``stride``/``start``, or ``None``)
    as ClipOptions, or ``None``."""
    if clip is None:
        return None
    from fidkit.data.video import ClipOptions
    if isinstance(clip, ClipOptions):
        return clip
    if isinstance(clip, dict):
        unknown = set(clip) - {"length", "stride", "start"}
        if unknown:
            raise BadInputError(f"clip: unknown option(s) {', '.join(sorted(unknown))}; use length, stride, start")
        return ClipOptions(**clip)
    raise BadInputError(f"clip must be a ClipOptions or a dict of length/stride/start, got {type(clip).__name__}")


def preprocessing_argument(preprocessing, mode, where: str):
    """The ``preprocessing`` a front end was given; ``mode``, its name before fidkit 0.2, still works with a
    deprecation warning (the concept has one name now: ``preprocessing``, ``--preprocessing``)."""
    if mode is None:
        return preprocessing
    if preprocessing is not None:
        raise BadInputError(f"{where}: give preprocessing= only (mode= is its older name)")
    import warnings
    warnings.warn(f"{where}(mode=...) is now preprocessing=...", DeprecationWarning, stacklevel=3)
    return mode
