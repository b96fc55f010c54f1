"""The Python API: ``fid``, ``compute_stats``.  The CLI is a thin layer over these."""

from __future__ import annotations

import os
import time
import warnings

from .errors import BadInputError, FidkitWarning
from .extract import extract_stats
from .features import InceptionExtractor
from .features.inception import TAPS
from .metrics.frechet import frechet_distance
from .preprocess import DEFAULT_MODE, get_mode
from .result import FIDResult
from .sources import FeaturesSource, ImageSource, Source, StatsSource, open_source
from .stats import FeatureStats

#: Below this many samples the 2048-d covariance is singular and FID strongly biased.
MIN_RELIABLE_N = 2048


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


def _stats_of(source: Source, extractor_args: dict, mode: str, *, batch_size, workers, progress,
              notes: list[str]) -> FeatureStats:
    if isinstance(source, StatsSource):
        return source.stats
    if isinstance(source, FeaturesSource):
        return source.stats()
    extractor = InceptionExtractor.get(**extractor_args)
    stats, messages = extract_stats(source, extractor, get_mode(mode), batch_size=batch_size, workers=workers,
                                    progress=progress)
    notes.extend(messages)
    return stats["pool3"]


def _planned_provenance(source: Source, extractor_args: dict, mode: str):
    if isinstance(source, StatsSource):
        return source.stats.provenance
    if isinstance(source, FeaturesSource):
        return source.provenance
    return InceptionExtractor.get(**extractor_args).provenance(mode, "pool3", source.description)


def compute_stats(source, *, mode: str | None = None, weights: str | os.PathLike | None = None,
                  device=None, batch_size: int = 32, workers: int | None = None, limit: int | None = None,
                  value_range=None, progress: bool = False) -> FeatureStats:
    """Pool3 statistics of ``source`` (any source kind ``fid`` accepts)."""
    src = open_source(source, value_range=value_range, limit=limit)
    mode = _choose_mode(mode, [src])
    notes: list[str] = []
    stats = _stats_of(src, dict(weights=weights, device=device), mode, batch_size=batch_size, workers=workers,
                      progress=progress, notes=notes)
    _emit(notes)
    return stats


def fid(a, b, *, mode: str | None = None, weights: str | os.PathLike | None = None, device=None,
        batch_size: int = 32, workers: int | None = None, limit: int | None = None, value_range=None,
        force: bool = False, progress: bool = False) -> FIDResult:
    """Fréchet Inception Distance between two sources.

    ``a`` and ``b`` may each be a folder, archive, ``.npz``/``.npy`` (images,
    features or statistics), a saved statistics name, a tensor (NCHW) or array
    (NHWC) of images, an iterable of such batches, or :class:`FeatureStats`.
    Float images need ``value_range`` = ``(0, 1)``, ``(-1, 1)`` or ``(0, 255)``.
    Statistics with different provenance are refused unless ``force``.
    """
    start = time.perf_counter()
    sources = [open_source(s, value_range=value_range, limit=limit) for s in (a, b)]
    mode = _choose_mode(mode, sources)
    extractor_args = dict(weights=weights, device=device)
    notes: list[str] = []

    # Refuse incomparable inputs before spending minutes on the feature pass.
    planned = [_planned_provenance(s, extractor_args, mode) for s in sources]
    planned[0].check_comparable(planned[1], force=force)

    stats = [_stats_of(s, extractor_args, mode, batch_size=batch_size, workers=workers, progress=progress,
                       notes=notes) for s in sources]
    notes.extend(stats[0].provenance.check_comparable(stats[1].provenance, force=force))
    if stats[0].dim != stats[1].dim:
        raise BadInputError(f"feature dimensions differ: {stats[0].dim} ({sources[0].description}) vs "
                            f"{stats[1].dim} ({sources[1].description})")
    for s, src in zip(stats, sources):
        if s.n is not None and s.n < 2:
            raise BadInputError(f"{src.description}: {s.n} sample(s); a covariance needs at least 2")
    notes.extend(_sample_count_notes(stats, sources))
    value = frechet_distance(stats[0], stats[1], force=True)  # comparability was checked above
    _emit(notes)
    uses_net = any(isinstance(s, ImageSource) for s in sources)
    return FIDResult(
        fid=value, n_a=stats[0].n, n_b=stats[1].n, a=sources[0].description, b=sources[1].description,
        mode=mode if uses_net or any(s.provenance.mode for s in stats) else None,
        provenance=stats[0].provenance if stats[0].provenance.known else stats[1].provenance,
        warnings=notes, seconds=time.perf_counter() - start,
        device=str(InceptionExtractor.get(**extractor_args).device) if uses_net else None)


def _sample_count_notes(stats: list[FeatureStats], sources: list[Source]) -> list[str]:
    notes = []
    dim = stats[0].dim
    threshold = MIN_RELIABLE_N if dim == TAPS["pool3"] else dim
    for s, src in zip(stats, sources):
        if s.n is not None and s.n < threshold:
            notes.append(
                f"{src.description}: N={s.n} is below {threshold}: the covariance is singular and FID is strongly "
                "biased upwards at small N; compare only FIDs computed at the same N (50,000 is the convention)")
    n_a, n_b = stats[0].n, stats[1].n
    if n_a is not None and n_b is not None and n_a != n_b:
        notes.append(f"the two sides have different sample counts (N={n_a} vs N={n_b}); FID depends on N, so "
                     "report both and compare only results computed with the same counts")
    return notes
