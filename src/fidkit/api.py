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
from pathlib import Path
from typing import Iterable

from fidkit.data.sources import ImageSource, open_source
from fidkit.engine.evaluation import Session, clip_options, emit, options_with
from fidkit.engine.progress import Checkpoint
from fidkit.engine.plan import ALL_METRICS, DEFAULT_METRICS, SideNeeds, make_plan, parse_features
from fidkit.errors import BadInputError
from fidkit.extractors import get_spec
from fidkit.metrics.catalog import MetricOptions
from fidkit.report.result import EvalResult, FIDResult
from fidkit.stats.moments import FeatureStats
from fidkit.stats.reference import Reference

__all__ = ["evaluate", "fid", "compute_reference", "compute_stats", "MetricOptions", "DEFAULT_METRICS",
           "ALL_METRICS"]

Weights = str | os.PathLike | dict | None


def evaluate(a, b, *, metrics: str | Iterable[str] | None = None, features: str | Iterable[str] | None = None,
             mode: str | dict | None = None, weights: Weights = None, device=None, batch_size: int = 32,
             workers: int | None = None, limit: int | None = None, value_range=None, force: bool = False,
             progress: bool = False, distributed: bool = False, options: MetricOptions | None = None,
             crop: str | None = None, skip_bad: bool = False, checkpoint_dir: str | os.PathLike | None = None,
             restart: bool = False, clip=None, layout: str | None = None, **option_overrides) -> EvalResult:
    """Every requested metric of ``b`` (generated) against ``a`` (reference) from one feature pass per image.

    ``a`` and ``b`` take every source :func:`fid` takes.  ``metrics`` defaults to
    fid, kid, is, sfid, prdc.  ``features`` lists feature extractors
    (``"inception,dinov2"``; default Inception): generic metrics (fd/fid,
    kd/kid, pr, dc, fd_inf, noise_floor) run in each, ``fd_dinov2``-style names
    pick one space, ``cmmd`` runs CLIP ViT-L/14@336.  ``mode`` picks
    preprocessing: a variant name (``clean``) or ``EXT=VARIANT`` pairs
    (``"dinov2=edm2"``); ``crop="center"`` centre-crops every image to a square
    first (recorded as ``VARIANT+center-crop``).  ``skip_bad`` leaves unreadable
    files out (listed in ``result.skipped`` and the warnings) instead of stopping.
    ``checkpoint_dir`` (one process) saves each side's extraction progress there;
    an interrupted call repeated with the same arguments continues from it (its
    result equals an uninterrupted one) and removes it on success; ``restart``
    discards it first.  ``weights`` is a path (Inception) or a dict per
    extractor.  Video metrics (``fvd``, ``kvd``, or any generic metric with
    ``features="i3d"`` or ``"videomae-v2"``) read videos (:mod:`fidkit.data.video`): files, frame
    folders, ``N x T x H x W x C`` arrays, ``N x T x C x H x W`` tensors (or
    ``layout="NCTHW"``), sampled as ``clip`` says (a
    :class:`~fidkit.data.video.ClipOptions` or a dict of ``length``, ``stride``,
    ``start``; default 16 consecutive frames from the first), which is recorded
    in the provenance.  Metric options (``kid_subsets``, ``kid_subset_size``,
    ``is_splits``, ``pr_k``, ``dc_k``, ``bootstrap``, ``confidence``, ``seed``)
    may be given as keywords or as a :class:`MetricOptions`.  With
    ``distributed=True`` and an initialised ``torch.distributed`` process group,
    every process must make the same call: each extracts every world-th image,
    and every process returns the result of the whole sources.
    """
    start = time.perf_counter()
    opts = options_with(options, option_overrides)
    modality = make_plan(metrics, features, mode).modality
    sources = [open_source(s, value_range=value_range, limit=limit, modality=modality, clip=clip_options(clip),
                           layout=layout) for s in (a, b)]
    session = Session(metrics, features, mode, weights, device, opts, sources, crop, clip)
    session.check_comparable(sources[0], sources[1], force)
    _check_known_counts(session.plan.metric_names, opts, sources)
    notes: list[str] = []
    run = dict(batch_size=batch_size, workers=workers, progress=progress, distributed=distributed, skip_bad=skip_bad)
    checkpoints = {label: _side_checkpoint(checkpoint_dir, s, label, distributed, restart)
                   for s, label in zip(sources, ("REAL", "FAKE"))}
    real = session.side(sources[0], "REAL", session.plan.real, dict(run, checkpoint=checkpoints["REAL"]), notes)
    fake = session.side(sources[1], "FAKE", session.plan.fake, dict(run, checkpoint=checkpoints["FAKE"]), notes)
    values = session.values(real, fake, force, notes)
    result = session.result(values, real, fake, any(isinstance(s, ImageSource) for s in sources), notes, start)
    for c in checkpoints.values():
        if c is not None:
            c.remove()
    emit(result.warnings)
    return result


def _check_known_counts(metrics: tuple[str, ...], opts: MetricOptions, sources) -> None:
    """Options that need more samples than a source holds are named now, not after its images are decoded.

    Only counts known before the pass are checked (files listed, arrays); skipped files can only lower them.
    """
    needs = []  # (side index, samples needed, why)
    if "pr" in metrics:
        needs += [(0, opts.pr_k + 1, f"precision/recall with pr_k={opts.pr_k}"),
                  (1, opts.pr_k + 1, f"precision/recall with pr_k={opts.pr_k}")]
    if "dc" in metrics:
        needs.append((0, opts.dc_k + 1, f"density/coverage with dc_k={opts.dc_k}"))
    if "is" in metrics:
        needs.append((1, opts.is_splits, f"the Inception Score with is_splits={opts.is_splits}"))
    for side, needed, why in needs:
        src = sources[side]
        count = src.count if isinstance(src, ImageSource) else None
        if count is not None and count < needed:
            raise BadInputError(f"{('REAL', 'FAKE')[side]} {src.description} holds {count} samples; {why} needs at "
                                f"least {needed}: pass more samples or lower the option")


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


def fid(a, b, *, mode: str | None = None, weights: Weights = None, device=None, batch_size: int = 32,
        workers: int | None = None, limit: int | None = None, value_range=None, force: bool = False,
        progress: bool = False, distributed: bool = False, crop: str | None = None,
        skip_bad: bool = False) -> FIDResult:
    """Fréchet Inception Distance between two sources.

    ``a`` and ``b`` may each be a folder, archive, ``.npz``/``.npy`` (images,
    features or statistics), a saved statistics name, a tensor (NCHW) or array
    (NHWC) of images, an iterable of such batches, :class:`FeatureStats` or a
    :class:`Reference`.  Float images need ``value_range`` = ``(0, 1)``,
    ``(-1, 1)`` or ``(0, 255)``.  Statistics with different provenance are
    refused unless ``force``.
    """
    r = evaluate(a, b, metrics=("fid",), mode=mode, weights=weights, device=device, batch_size=batch_size,
                 workers=workers, limit=limit, value_range=value_range, force=force, progress=progress,
                 distributed=distributed, crop=crop, skip_bad=skip_bad)
    return FIDResult(**{f.name: getattr(r, f.name) for f in dataclasses.fields(r)})


def compute_reference(source, *, features: bool = False, spatial: bool = True,
                      extractors: str | Iterable[str] | None = None, mode: str | dict | None = None,
                      weights: Weights = None, device=None, batch_size: int = 32, workers: int | None = None,
                      limit: int | None = None, value_range=None, progress: bool = False,
                      distributed: bool = False, crop: str | None = None,
                      checkpoint: str | os.PathLike | None = None, checkpoint_every_s: float = 60.0,
                      skip_bad: bool = False, clip=None, layout: str | None = None) -> Reference:
    """Everything later evaluations need from a reference set, from one pass (one decode per image).

    For each extractor (default Inception): the statistics of its embedding
    (and, for Inception, the spatial sFID statistics unless ``spatial=False``);
    with ``features``, the per-sample embeddings too (KID, precision/recall,
    noise floor; for CLIP ViT-L/14@336 the normalised embedding CMMD reads).
    ``distributed`` shares the work between the processes of a
    ``torch.distributed`` group, as in :func:`evaluate`.  ``checkpoint`` (a path;
    one process, files) saves the progress there every ``checkpoint_every_s``
    seconds; a call that finds a checkpoint of the same computation continues from
    it, with the result of an uninterrupted pass (delete the file once the result
    is saved; ``fidkit stats`` does).
    """
    specs = parse_features(extractors) or [get_spec("inception")]
    modality = make_plan(["fd"], specs).modality
    src = open_source(source, value_range=value_range, limit=limit, modality=modality, clip=clip_options(clip),
                      layout=layout)
    needs = SideNeeds()
    for spec in specs:
        for tap in spec.taps:
            if tap.role == "embedding":
                needs.add("stream", spec.name, tap.name)
                if features:
                    needs.add("keep", spec.name, tap.name)
            elif tap.role == "spatial" and spatial and isinstance(src, ImageSource):
                needs.add("stream", spec.name, tap.name)
            elif tap.role == "embedding_l2" and features:
                needs.add("keep", spec.name, tap.name)
    session = Session(["fd"], specs, mode, weights, device, MetricOptions(), [src], crop, clip)
    notes: list[str] = []
    run = dict(batch_size=batch_size, workers=workers, progress=progress, distributed=distributed, skip_bad=skip_bad)
    if checkpoint is not None:
        if not isinstance(src, ImageSource):
            raise BadInputError(f"{src.description}: only image sources are extracted, a checkpoint has nothing to do")
        run["checkpoint"] = Checkpoint(checkpoint, every_s=checkpoint_every_s)
    side = session.side(src, "SOURCE", needs, run, notes)
    emit(notes)
    if not side.stats and not side.features:
        raise BadInputError(f"{src.description}: nothing to compute")
    return Reference(side.stats, side.features, side.description)


def compute_stats(source, *, extractor: str = "inception", mode: str | None = None, weights: Weights = None,
                  device=None, batch_size: int = 32, workers: int | None = None, limit: int | None = None,
                  value_range=None, progress: bool = False, crop: str | None = None, clip=None,
                  layout: str | None = None) -> FeatureStats:
    """Statistics of the embedding of ``extractor`` (default Inception pool3) over ``source``."""
    spec = get_spec(extractor)
    ref = compute_reference(source, spatial=False, extractors=[spec.name], mode=mode, weights=weights,
                            device=device, batch_size=batch_size, workers=workers, limit=limit,
                            value_range=value_range, progress=progress, crop=crop, clip=clip, layout=layout)
    return ref.stats[spec.space(spec.defaults["embedding"])]
