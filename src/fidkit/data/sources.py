"""Sources: where images (or ready-made statistics, or features) come from.

``open_source`` turns whatever the user passed into one of three things:

* an :class:`ImageSource`: yields loaders (zero-argument callables returning a
  uint8 ``H x W x 3`` array and its conversion tags) so that decoding runs in
  worker threads, and never holds more than the batches in flight;
* a :class:`StatsSource`: statistics read from a file (fidkit's own, or any
  ``.npz`` with ``mu``/``sigma``);
* a :class:`FeaturesSource`: a 2-D array of precomputed features.

Paths: a folder (searched recursively, sorted), ``.zip``, ``.tar``/``.tar.gz``,
``.npy``/``.npz`` (4-D uint8 NHWC = images as in ADM's batches, 2-D = features,
``mu``/``sigma`` = statistics), or the name of statistics saved in the cache.
In memory: ``torch.Tensor`` (NCHW), ``numpy.ndarray`` (NHWC), an iterable of
such batches, or :class:`~fidkit.stats.FeatureStats`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

import fidkit.cache as cache
import fidkit.registry as registry
from fidkit.errors import BadInputError
from fidkit.stats.published import FORMATS, guess_format, read_published
from fidkit.stats.reference import Reference
from fidkit.stats.moments import FeatureStats
from fidkit.data.source import (FeaturesSource, ImageSource, Loaded, Loader, NUMPY_FILE_ERRORS, SHOWN_NAMES, Source,
                                StatsSource, _describe_array, check_path_text, path_status, printable)
from fidkit.data.pixels import (VALUE_RANGES, check_image_batch_shape, check_value_range, to_uint8_nchw, to_uint8_nhwc)
from fidkit.data.files import _decode_file, _folder, _require_regular_file, walk_files
from fidkit.data.archives import MAX_MEMBER_BYTES, MAX_TAR_BUFFER_BYTES, _tar, _zip
from fidkit.data.arrays import _NpzMember, _array_file, _array_images, _npz, _stored_images


def open_source(spec, *, value_range: tuple[float, float] | None = None, limit: int | None = None,
                modality: str = "image", clip=None, layout: str | None = None, argument: str = "source",
                storage_options: dict | None = None, image_column: str | None = None) -> Source:
    """``modality="video"`` reads videos instead (:mod:`fidkit.data.video`: files, frame folders, 5-D arrays and
    tensors), sampled as ``clip`` (a :class:`~fidkit.data.video.ClipOptions`) says; statistics and features are
    read alike for both.  ``argument`` names the parameter in errors about the path itself (an empty one).
    URLs, globs, brace lists and lists of shard names are read by :func:`fidkit.data.remote.open_shards`
    (``storage_options`` go to fsspec; ``image_column`` names a table's image column or a WebDataset extension)."""
    check_path_text(spec, argument)
    if _names_shards(spec):
        if modality != "image":
            raise BadInputError(f"{printable(str(spec))}: shards and URLs hold images; videos are read from files")
        from fidkit.data.remote import open_shards
        return open_shards(spec, limit=limit, storage_options=storage_options, image_column=image_column)
    if limit is not None and limit < 1:
        raise BadInputError(f"limit must be at least 1, got {limit}")
    if modality not in ("image", "video"):
        raise BadInputError(f"modality must be 'image' or 'video', got {modality!r}")
    if modality == "video" and not isinstance(spec, (FeatureStats, Reference)):
        if not (isinstance(spec, (str, os.PathLike)) and _holds_statistics_or_features(Path(spec))):
            from fidkit.data.video import ClipOptions, open_video_source
            return open_video_source(spec, clip=clip or ClipOptions(), value_range=value_range, limit=limit,
                                     layout=layout)
    elif layout is not None:
        raise BadInputError(f"layout={layout!r} applies to videos; images are N x C x H x W tensors or "
                            "N x H x W x C arrays")
    if isinstance(spec, FeatureStats):
        desc = spec.provenance.source or "statistics"
        return StatsSource(desc, Reference({spec.space: spec}, description=desc))
    if isinstance(spec, Reference):
        return StatsSource(spec.description, spec)
    if isinstance(spec, (str, os.PathLike)):
        return _open_path(Path(spec), str(spec), value_range, limit, image_column=image_column)
    if isinstance(spec, (torch.Tensor, np.ndarray)):
        where = _describe_array(spec)
        check_image_batch_shape(tuple(spec.shape), where, channels_last=isinstance(spec, np.ndarray))
        return _array_images([spec], where, value_range, limit, count=len(spec), in_memory=True)
    if isinstance(spec, Iterable):
        return _array_images(spec, "batches", value_range, limit, count=None, in_memory=True)
    raise BadInputError(f"cannot use {type(spec).__name__} as a source: pass a path, a tensor, an array, "
                        "an iterable of batches, or FeatureStats")

def _names_shards(spec) -> bool:
    """A URL, a glob or brace list that is not itself an existing path, or a list of such names."""
    if isinstance(spec, (list, tuple)):
        return bool(spec) and all(isinstance(s, str) for s in spec)
    if not isinstance(spec, str):
        return False
    from fidkit.data.shards import is_pattern, is_url
    return is_url(spec) or (is_pattern(spec) and not os.path.lexists(spec))


def _holds_statistics_or_features(path: Path) -> bool:
    """Whether a path given as videos is in fact a saved statistics name, a statistics file or 2-D features."""
    name = path.name.lower()
    status = path_status(path, str(path))
    if status is None:
        return cache.is_stats_name(str(path))
    if name.endswith(_PUBLISHED) and not stat.S_ISDIR(status.st_mode):
        return True
    if stat.S_ISDIR(status.st_mode) or not name.endswith((".npz", ".npy")):
        return False
    try:
        if name.endswith(".npy"):
            return np.load(path, mmap_mode="r", allow_pickle=False).ndim == 2
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
        if Reference.is_statistics(keys):
            return True
        key = "arr_0" if "arr_0" in keys else (keys[0] if len(keys) == 1 else None)
        return key is not None and _NpzMember(path, key).ndim == 2
    except (NUMPY_FILE_ERRORS + (BadInputError,)):
        return False  # the video reader names the problem

def open_named(name: str, *, sha256: str | None = None, limit: int | None = None) -> StatsSource:
    """Statistics saved with ``fidkit stats --name``, or a published reference of the registry.  A name that is
    both is refused rather than resolved silently one way; ``sha256`` (``--sha256``) checks a published file.
    A published ADM reference batch also serves its ``arr_0`` images (the first ``limit``) to per-sample metrics,
    as the file itself does when given by path."""
    named = cache.named_stats_path(name)
    entry = registry.lookup(name)
    if named.is_file() and entry is not None:
        raise BadInputError(f"{printable(name)} is both statistics you saved ({named}) and a published reference "
                            f"({entry.url}); pass the path {named} for yours, or rename that file to use the "
                            "published one")
    if named.is_file():
        if sha256 is not None:
            raise BadInputError(f"--sha256 checks published references; {printable(name)} is statistics you saved")
        return StatsSource(f"{printable(name)} ({named})", Reference.load(named))
    if entry is not None:
        ref = registry.open_published(name, sha256=sha256)
        images = _adm_images(registry.cache_path(entry), limit) if entry.fmt == "adm-batch" else None
        return StatsSource(ref.description, ref, images)
    names = cache.list_named_stats()
    close = registry.close_names(name)
    hint = (f"; saved names: {', '.join(names)}" if names else "") + \
        (f"; published references with close names: {', '.join(close)} (all: fidkit refs)" if close else "")
    raise BadInputError(f"{printable(name)}: no such file, folder or saved statistics name, nor a published "
                        f"reference{hint}")


def _adm_images(path: Path, limit: int | None):
    """The ``arr_0`` images of an ADM reference batch, when it holds them (a file of moments only holds none)."""
    with np.load(path, allow_pickle=False) as z:
        has_images = "arr_0" in z.files
    return _stored_images(path, None, limit) if has_images else None


def _open_path(path: Path, text: str, value_range, limit, *, image_column: str | None = None) -> Source:
    status = path_status(path, text)
    if status is None:
        if cache.is_stats_name(text):
            return open_named(text, limit=limit)
        raise BadInputError(f"{printable(text)}: no such file or folder")
    if stat.S_ISDIR(status.st_mode):
        return _folder(path, limit)
    _require_regular_file(path)
    name = path.name.lower()
    if name.endswith(".zip"):
        return _zip(path, limit)
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return _tar(path, limit)
    if name.endswith(".npz"):
        return _npz(path, value_range, limit)
    if name.endswith(".npy"):
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except NUMPY_FILE_ERRORS as e:
            raise BadInputError(f"{printable(str(path))}: cannot read .npy ({type(e).__name__}: {e})") from e
        return _array_file(arr, printable(str(path)), value_range, limit)
    if name.endswith(_PUBLISHED):
        return _published(path)
    if name.endswith((".parquet", ".arrow")):
        from fidkit.data.remote import open_shards
        return open_shards([str(path)], limit=limit, image_column=image_column)
    raise BadInputError(f"{printable(str(path))}: unsupported file type; expected a folder, .zip, .tar, .npz, .npy, "
                        ".parquet, .arrow, or published statistics (.pkl, .pth, .pt)")


_PUBLISHED = (".pkl", ".pth", ".pt")


def _published(path: Path) -> StatsSource:
    """A publisher's statistics pickle or ``torch.save`` file, read as data (never executed) when its layout
    tells its format; anything else is left to ``fidkit convert``, which is told the format."""
    fmt = guess_format(path)
    if fmt is None:
        raise BadInputError(f"{printable(str(path))}: fidkit cannot tell which publisher's layout this file has; "
                            f"run 'fidkit convert FILE --format FMT -o OUT.npz' (FMT one of {', '.join(FORMATS)}) "
                            "and use OUT.npz")
    return StatsSource(f"{printable(str(path))} ({fmt})", read_published(path, fmt))
