"""The Python API: ``evaluate``, ``fid``, ``compute_reference``, ``compute_stats``.  The CLI is a thin layer.

Every metric is fed by one feature pass per source: ``evaluate`` works out
from the metric and extractor declarations which feature spaces each side needs
(streamed statistics for Fréchet distances, per-sample features for KID,
precision/recall, IS and CMMD), decodes each image once, runs each network
once per image, and hands the results to the pure functions in
:mod:`fidkit.metrics`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from fidkit.data.sources import ImageSource
from fidkit.report.notes import emit
from fidkit.session import Session
from fidkit.engine.progress import Checkpoint
from fidkit.engine.plan import ALL_METRICS, DEFAULT_METRICS, SideNeeds, parse_features
from fidkit.errors import BadInputError
from fidkit.extractors import get_spec
from fidkit.metrics.catalog import MetricOptions
from fidkit.request import RunKeywords, RunOptions, SourceLike, WeightsLike, preprocessing_argument, resolve
from fidkit.report.examples import keep_examples_request
from fidkit.report.result import EvalResult, FIDResult
from fidkit.stats.moments import FeatureStats
from fidkit.stats.reference import Reference

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["evaluate", "fid", "compute_reference", "compute_stats", "MetricOptions", "RunOptions",
           "DEFAULT_METRICS", "ALL_METRICS"]

def evaluate(a: SourceLike, b: SourceLike, *, metrics: str | Iterable[str] | None = None,
             features: str | Iterable[str] | None = None, preprocessing: str | Mapping[str, str] | None = None,
             weights: WeightsLike = None, force: bool = False, options: MetricOptions | None = None,
             checkpoint_dir: str | os.PathLike | None = None, restart: bool = False, run: RunOptions | None = None,
             mode: str | Mapping[str, str] | None = None, protocol: str | None = None,
             keep_examples: int | None = None, **keywords: Unpack[RunKeywords]) -> EvalResult:
    """Every requested metric of ``b`` (generated) against ``a`` (reference) from one feature pass per image.

    ``a`` and ``b`` take every source :func:`fid` takes.  ``metrics`` defaults to
    fid, kid, is, sfid, prdc.  ``features`` lists feature extractors
    (``"inception,dinov2"``; default Inception): generic metrics (fd/fid,
    kd/kid, pr, dc, fd_inf, noise_floor, vendi) run in each, ``fd_dinov2``-style names
    pick one space, ``cmmd`` runs CLIP ViT-L/14@336.  ``preprocessing`` picks each network's
    preprocessing by name (``clean``), as ``EXT=NAME`` pairs (``"dinov2=edm2"``) or a mapping (``mode`` is
    its older name).  ``checkpoint_dir`` (one process) saves each side's extraction progress there;
    an interrupted call repeated with the same arguments continues from it (its
    result equals an uninterrupted one; images it already counted must be
    unchanged: names, sizes, modification times, else it is refused naming
    them) and removes it on success; ``restart`` discards it first.  ``weights`` is a path (Inception, or the only network) or a mapping per
    extractor.  Statistics whose provenance differs are refused unless ``force``.

    How the pass runs is a :class:`~fidkit.request.RunOptions` (``run=``) or its fields as keywords:
    ``device``, ``batch_size``, ``workers``, ``limit``, ``value_range`` (float images: ``(0, 1)``,
    ``(-1, 1)`` or ``(0, 255)``), ``progress``, ``distributed``, ``skip_bad`` (leave unreadable files out,
    listed in ``result.skipped``), ``crop="center"`` (centre-crop to a square first, recorded as
    ``VARIANT+center-crop``), and for videos ``clip`` (a :class:`~fidkit.data.video.ClipOptions` or a dict
    of ``length``, ``stride``, ``start``; recorded in the provenance) and ``layout="NCTHW"``.  Video metrics
    (``fvd``, ``kvd``, or any generic metric with ``features="i3d"`` or ``"videomae-v2"``) read videos
    (:mod:`fidkit.data.video`).  The metrics' options (``kid_subsets``, ``kid_subset_size``, ``is_splits``,
    ``pr_k``, ``dc_k``, ``vendi_q``, ``bootstrap``, ``confidence``, ``seed``, and those of metrics registered
    later) may be given as keywords or as a :class:`MetricOptions`.  With ``distributed=True`` and an
    initialised ``torch.distributed`` process group,
    every process must make the call: a path (folder, archive, ``.npz``) is the
    same source on every process and each extracts every world-th image of it,
    while an in-memory tensor, array or iterable of batches is that process's
    own share (never re-sharded); every process returns the result over all.

    ``protocol`` names a published protocol (``"adm"``, ``"edm2"``, ...; :data:`fidkit.protocols.PROTOCOLS`):
    its metrics, networks, preprocessing and options apply wherever none is given here, and
    ``result.verdict`` says whether the values are comparable with that protocol's numbers (every result carries
    a verdict; without a protocol it judges against the reference's card, if the reference is a known one).

    ``keep_examples=K`` adds per-sample views to ``result.examples`` (:mod:`fidkit.report.examples`): a grid of
    generated samples, the K most and least realistic, the K closest to a reference image (near copies flagged)
    and the top directions of the covariance difference, with thumbnails.
    """
    start = time.perf_counter()
    run, overrides = RunOptions.split(run, keywords)
    preprocessing = preprocessing_argument(preprocessing, mode, "evaluate")
    request = resolve(metrics, features, preprocessing, weights=weights, options=options, run=run, sources=(a, b),
                      source_names=("a (REAL)", "b (FAKE)"), force=force, protocol=protocol, **overrides)
    notes = request.check_comparable(*request.sources)      # once, before the pass
    session = Session(request)
    sources = request.sources
    _check_known_counts(session.plan.tasks, request.options, sources)
    if keep_examples is not None and run.distributed:
        raise BadInputError("keep_examples runs in one process; evaluate without distributed=True for the views")
    views = keep_examples_request(keep_examples, session.plan, sources)
    checkpoints = {label: _side_checkpoint(checkpoint_dir, s, label, run.distributed, restart)
                   for s, label in zip(sources, ("REAL", "FAKE"))}
    extraction = run.extraction()
    real = session.side(sources[0], "REAL", session.plan.real, dict(extraction, checkpoint=checkpoints["REAL"]),
                        notes)
    fake = session.side(views.fake_source(sources[1]) if views else sources[1], "FAKE", session.plan.fake, dict(extraction, checkpoint=checkpoints["FAKE"]),
                        notes)
    values = session.values(real, fake, notes)
    result = session.result(values, real, fake, any(isinstance(s, ImageSource) for s in sources), notes, start)
    if views is not None:
        result.examples = views.build(real, fake, pr_k=request.options.pr_k, seed=request.options.seed)
    for c in checkpoints.values():
        if c is not None:
            c.remove()
    emit(result.warnings)
    return result


def _check_known_counts(tasks, opts: MetricOptions, sources) -> None:
    """Options that need more samples than a source holds are named now, not after its images are decoded
    (each metric declares its minimum, :attr:`~fidkit.metrics.catalog.MetricSpec.min_samples`).

    Only counts known before the pass are checked (files listed, arrays); skipped files can only lower them.
    """
    for metric in dict.fromkeys(t.metric for t in tasks):
        if metric.min_samples is None:
            continue
        options = ", ".join(f"{k}={v}" for k, v in opts.to_dict([metric]).items()
                            if k in {o.name for o in metric.options})
        for side, needed in enumerate(metric.min_samples(opts)):
            src = sources[side]
            count = src.count if isinstance(src, ImageSource) else None
            if needed is not None and count is not None and count < needed:
                raise BadInputError(f"{('REAL', 'FAKE')[side]} {src.description} holds {count} samples; "
                                    f"{metric.summary} with {options} needs at least {needed}: pass more samples or "
                                    "lower the option")


def _side_checkpoint(directory, source, label: str, distributed: bool, restart: bool) -> Checkpoint | None:
    """A checkpoint for one side of ``evaluate`` when it reads files in one process, else None."""
    if directory is None or distributed or not isinstance(source, ImageSource) or source.batches is not None:
        return None
    key = hashlib.sha256(f"{label}|{os.path.abspath(source.description)}".encode()).hexdigest()[:20]
    # Keyed by side and source only: a checkpoint of other settings (a fixed bad file, another metric) is
    # replaced, not refused.
    c = Checkpoint(Path(directory) / f"{label.lower()}-{key}.partial", every_s=120.0, discard_mismatch=True)
    if restart:
        c.remove()
    return c


def fid(a: SourceLike, b: SourceLike, *, preprocessing: str | None = None, weights: WeightsLike = None,
        force: bool = False, run: RunOptions | None = None, mode: str | None = None, protocol: str | None = None,
        keep_examples: int | None = None, **keywords: Unpack[RunKeywords]) -> FIDResult:
    """Fréchet Inception Distance between two sources.

    ``a`` and ``b`` may each be a folder, archive, ``.npz``/``.npy`` (images,
    features or statistics), a saved statistics name, a tensor (NCHW) or array
    (NHWC) of images, an iterable of such batches, :class:`FeatureStats` or a
    :class:`Reference`.  Float images need ``value_range`` = ``(0, 1)``,
    ``(-1, 1)`` or ``(0, 255)``.  Statistics with different provenance are
    refused unless ``force``.  The other keywords are :func:`evaluate`'s run options; ``protocol`` its (the
    card's Inception preprocessing applies; the metric stays FID).
    """
    r = evaluate(a, b, metrics=("fid",), features=("inception",),
                 preprocessing=preprocessing_argument(preprocessing, mode, "fid"),
                 weights=weights, force=force, run=run, protocol=protocol, keep_examples=keep_examples, **keywords)
    return FIDResult(**{f.name: getattr(r, f.name) for f in dataclasses.fields(r)})


def compute_reference(source: SourceLike, *, keep_features: bool = False, spatial: bool = True,
                      features: str | Iterable[str] | bool | None = None,
                      extractors: str | Iterable[str] | None = None,
                      preprocessing: str | Mapping[str, str] | None = None, weights: WeightsLike = None,
                      checkpoint: str | os.PathLike | None = None, checkpoint_every_s: float = 60.0,
                      run: RunOptions | None = None, mode: str | Mapping[str, str] | None = None,
                      protocol: str | None = None, **keywords: Unpack[RunKeywords]) -> Reference:
    """Everything later evaluations need from a reference set, from one pass (one decode per image).

    For each network of ``features`` (as in :func:`evaluate`: ``"inception,dinov2"``; default Inception;
    ``extractors`` is the older name): the statistics of its embedding
    (and, for Inception, the spatial sFID statistics unless ``spatial=False``);
    with ``keep_features``, the per-sample embeddings too (KID, precision/recall,
    noise floor; for CLIP ViT-L/14@336 the normalised embedding CMMD reads).  ``features=True``/``False``
    (its meaning before fidkit 0.2) still means ``keep_features``, with a deprecation warning.
    ``checkpoint`` (a path; one process, files) saves the progress there every ``checkpoint_every_s``
    seconds; a call that finds a checkpoint of the same computation continues from
    it, with the result of an uninterrupted pass, once it has checked that the
    images it counted are unchanged (names, sizes and modification times; else
    it is refused, naming them); delete the file once the result is saved
    (``fidkit stats`` does).  The run options (``device``, ``batch_size``, ``distributed``, ...) are
    :func:`evaluate`'s.  ``protocol`` (a published protocol's card) picks the networks, preprocessing and clip
    sampling where none is given.
    """
    run, overrides = RunOptions.split(run, keywords)
    if overrides:
        raise BadInputError(f"compute_reference computes no metric; unknown option(s) {', '.join(sorted(overrides))}")
    if isinstance(features, bool):
        warnings.warn("compute_reference(features=True/False) is now keep_features=...; features= names the "
                      "networks, as in evaluate()", DeprecationWarning, stacklevel=2)
        keep_features, features = features, None
    if features is not None and extractors is not None:
        raise BadInputError("give the networks once: features= (extractors= is its older name)")
    specs = parse_features(features if features is not None else extractors)
    if specs is None and protocol is None:
        specs = [get_spec("inception")]
    request = resolve(["fd"], specs, preprocessing_argument(preprocessing, mode, "compute_reference"),
                      weights=weights, run=run, sources=(source,), protocol=protocol)
    extraction = {}
    if checkpoint is not None:
        if not isinstance(request.sources[0], ImageSource):
            raise BadInputError(f"{request.sources[0].description}: only image sources are extracted, a checkpoint "
                                "has nothing to do")
        extraction["checkpoint"] = Checkpoint(checkpoint, every_s=checkpoint_every_s)
    return reference_of(Session(request), request.sources[0], features=keep_features, spatial=spatial,
                        **extraction)


def reference_needs(session: Session, *, keep_features: bool, spatial: bool) -> SideNeeds:
    """What a reference needs from images: each network's embedding streamed (and kept with ``keep_features``),
    Inception's spatial taps streamed with ``spatial``, CLIP's normalised embedding kept with ``keep_features``."""
    needs = SideNeeds()
    for name in session.plan.extractors:
        for tap in get_spec(name).taps:
            if tap.role == "embedding":
                needs.add("stream", name, tap.name)
                if keep_features:
                    needs.add("keep", name, tap.name)
            elif tap.role == "spatial" and spatial:
                needs.add("stream", name, tap.name)
            elif tap.role == "embedding_l2" and keep_features:
                needs.add("keep", name, tap.name)
    return needs


def reference_of(session: Session, src, *, features: bool, spatial: bool, checkpoint=None) -> Reference:
    """The :class:`Reference` of one opened source under a resolved request: each network's embedding
    statistics (spatial ones with ``spatial``), per-sample embeddings with ``features``."""
    needs = reference_needs(session, keep_features=features, spatial=spatial and isinstance(src, ImageSource))
    notes: list[str] = []
    side = session.side(src, "SOURCE", needs, dict(session.request.run.extraction(), checkpoint=checkpoint), notes)
    emit(notes)
    if not side.stats and not side.features:
        raise BadInputError(f"{src.description}: nothing to compute")
    return Reference(side.stats, side.features, side.description)


def compute_stats(source: SourceLike, *, extractor: str = "inception", preprocessing: str | None = None,
                  weights: WeightsLike = None, run: RunOptions | None = None, mode: str | None = None,
                  protocol: str | None = None, **keywords: Unpack[RunKeywords]) -> FeatureStats:
    """Statistics of the embedding of ``extractor`` (default Inception pool3) over ``source``; ``protocol``
    picks that network's preprocessing (and a video network's clip sampling) when none is given."""
    spec = get_spec(extractor)
    ref = compute_reference(source, spatial=False, features=[spec.name],
                            preprocessing=preprocessing_argument(preprocessing, mode, "compute_stats"),
                            weights=weights, run=run, protocol=protocol, **keywords)
    return ref.stats[spec.space(spec.defaults["embedding"])]
