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

import dataclasses
import os
import stat
import tarfile
import threading
import zipfile
import tokenize
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from fidkit import cache
from fidkit.errors import BadInputError
from fidkit.data.images import IMAGE_SUFFIXES, JPEG_SUFFIXES, decode_image
from fidkit.stats.provenance import Provenance
from fidkit.stats.reference import Reference
from fidkit.stats.moments import FeatureStats

Loaded = tuple[np.ndarray, frozenset]
Loader = Callable[[], Loaded]

#: What a damaged .npy/.npz can raise while numpy parses it: its header is a Python literal (SyntaxError,
#: tokenize errors), its container a zip (BadZipFile, zlib.error, NotImplementedError for unknown versions).
NUMPY_FILE_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, SyntaxError, NotImplementedError,
                     zipfile.BadZipFile, zlib.error, tokenize.TokenError)

#: How float inputs are declared: the pixel values that mean black and white.
VALUE_RANGES = {(0, 1), (-1, 1), (0, 255)}


def check_value_range(value_range) -> tuple[float, float]:
    """The one rule for a declared value range, whatever the source: ``(0, 1)``, ``(-1, 1)`` or ``(0, 255)``.
    It describes float images; uint8 images are always [0, 255]."""
    try:
        pair = tuple(float(v) for v in value_range)
    except (TypeError, ValueError):
        raise BadInputError(f"value_range={value_range!r}: use (0, 1), (-1, 1) or (0, 255)") from None
    if pair not in VALUE_RANGES:
        raise BadInputError(f"value_range={pair}: use (0, 1), (-1, 1) or (0, 255)")
    return pair


@dataclasses.dataclass
class ImageSource:
    description: str
    count: int | None
    items: Callable[[], Iterator[tuple[str, Loader]]]
    #: In-memory images: uint8 ``N x 3 x H x W`` batches (on the tensor's device) with their tags and a name,
    #: for the batched preprocessing path; ``None`` for files, which are decoded per image in worker threads.
    batches: Callable[[], Iterator[tuple[torch.Tensor, frozenset, str]]] | None = None
    #: "image" (loaders return ``H x W x 3``, batches are ``N x 3 x H x W``) or "video" (``T x H x W x 3`` clips,
    #: ``N x T x 3 x H x W`` batches; see :mod:`fidkit.data.video`)
    modality: str = "image"
    #: An item's content identity for resume and cross-process checks, by item name (archive members: size and
    #: CRC or mtime); ``None``, or None for a name, where the item names a file or folder that is stamped itself
    #: (:func:`fidkit.engine.progress.item_stamp`) or is a row of an in-memory array.
    stamp: Callable[[str], str | None] | None = None


@dataclasses.dataclass
class StatsSource:
    description: str
    reference: Reference

    @property
    def stats(self) -> FeatureStats:
        """The Inception pool3 statistics (what FID needs)."""
        return self.reference.stats["inception/pool3"]


@dataclasses.dataclass
class FeaturesSource:
    description: str
    features: np.ndarray  # may be a memory map

    @property
    def provenance(self) -> Provenance:
        # Precomputed features are comparable with other precomputed features
        # (the user vouches for their origin), never with network features.
        return Provenance(extractor="features", source=self.description)

    def stats(self) -> FeatureStats:
        out = FeatureStats.empty(self.features.shape[1], self.provenance)
        for i in range(0, self.features.shape[0], 4096):
            out.update(np.asarray(self.features[i:i + 4096], dtype=np.float64))
        return out


Source = ImageSource | StatsSource | FeaturesSource


def open_source(spec, *, value_range: tuple[float, float] | None = None, limit: int | None = None,
                modality: str = "image", clip=None, layout: str | None = None) -> Source:
    """``modality="video"`` reads videos instead (:mod:`fidkit.data.video`: files, frame folders, 5-D arrays and
    tensors), sampled as ``clip`` (a :class:`~fidkit.data.video.ClipOptions`) says; statistics and features are
    read alike for both."""
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
        return _open_path(Path(spec), str(spec), value_range, limit)
    if isinstance(spec, (torch.Tensor, np.ndarray)):
        return _array_images([spec], _describe_array(spec), value_range, limit, count=len(spec), in_memory=True)
    if isinstance(spec, Iterable):
        return _array_images(spec, "batches", value_range, limit, count=None, in_memory=True)
    raise BadInputError(f"cannot use {type(spec).__name__} as a source: pass a path, a tensor, an array, "
                        "an iterable of batches, or FeatureStats")


def _holds_statistics_or_features(path: Path) -> bool:
    """Whether a path given as videos is in fact a saved statistics name, a statistics file or 2-D features."""
    name = path.name.lower()
    if not path.exists():
        return cache.is_stats_name(str(path))
    if path.is_dir() or not name.endswith((".npz", ".npy")):
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


def _describe_array(a) -> str:
    return f"{type(a).__module__.split('.')[0]} array {tuple(a.shape)} {str(a.dtype).replace('torch.', '')}"


# --- paths ------------------------------------------------------------------------

def _open_path(path: Path, text: str, value_range, limit) -> Source:
    if not path.exists():
        if cache.is_stats_name(text):
            named = cache.named_stats_path(text)
            if named.is_file():
                return StatsSource(f"{text} ({named})", Reference.load(named))
            names = cache.list_named_stats()
            hint = f"; saved names: {', '.join(names)}" if names else ""
            raise BadInputError(f"{text}: no such file, folder or saved statistics name{hint}")
        raise BadInputError(f"{text}: no such file or folder")
    if path.is_dir():
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
            raise BadInputError(f"{path}: cannot read .npy ({type(e).__name__}: {e})") from e
        return _array_file(arr, str(path), value_range, limit)
    raise BadInputError(f"{path}: unsupported file type; expected a folder, .zip, .tar, .npz or .npy")


def _limited(paths: list, limit):
    return paths if limit is None else paths[:limit]


def _check_nonempty(names: list, where: str) -> None:
    if not names:
        raise BadInputError(f"{where}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _require_regular_file(path: Path) -> None:
    """A FIFO, socket or device would be read forever (or block): refuse it by name."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        raise BadInputError(f"{path}: not a regular file (a FIFO, socket or device): refused")


def _folder(root: Path, limit) -> ImageSource:
    """Every image file below ``root``, following symbolic links, in sorted order (see :func:`walk_files`)."""
    files = walk_files(root, _is_image, "images")
    _check_nonempty(files, str(root))
    files = _limited(files, limit)

    def items():
        for p in files:
            yield str(p), (lambda p=p: _decode_file(p))
    return ImageSource(str(root), len(files), items)


def walk_files(root: Path, wanted: Callable[[str], bool], what: str) -> list[Path]:
    """The files below ``root`` whose names ``wanted`` accepts, following symbolic links, sorted by relative path.

    Nothing wanted is left out silently: an unreadable sub-folder, a broken link, a FIFO or device with a wanted
    name, and a folder reached twice through links (its files would count twice) are errors that name the path;
    ``what`` names the files in those messages ("images", "videos").
    """
    def unreadable(e: OSError):
        raise BadInputError(f"{e.filename}: cannot list this folder ({e.strerror}); its {what} would be left out")

    files: list[Path] = []
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            raise BadInputError(f"{dirpath}: the same folder as {seen[real]} (through a symbolic link); its {what} "
                                "would be counted twice")
        seen[real] = dirpath
        dirnames.sort()
        for name in filenames:
            if not wanted(name):
                continue
            p = Path(dirpath) / name
            if not p.exists():
                raise BadInputError(f"{p}: broken symbolic link")
            _require_regular_file(p)
            files.append(p)
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    return files


def _decode_file(p: Path) -> Loaded:
    try:
        data = p.read_bytes()
    except OSError as e:
        raise BadInputError(f"{p}: cannot read ({e})") from e
    return _with_suffix_tag(decode_image(data, str(p)), p.name)


def _with_suffix_tag(loaded: Loaded, name: str) -> Loaded:
    arr, tags = loaded
    if os.path.splitext(name)[1].lower() in JPEG_SUFFIXES:
        tags = tags | {"jpeg"}
    return arr, tags


def _zip(path: Path, limit) -> ImageSource:
    try:
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir() and _is_image(i.filename)]
    except (zipfile.BadZipFile, OSError) as e:
        raise BadInputError(f"{path}: not a readable zip archive ({e})") from e
    for i in infos:
        _check_member_size(path, i.filename, i.file_size)
    names = sorted(i.filename for i in infos)
    _check_nonempty(names, str(path))
    names = _limited(names, limit)
    local = threading.local()  # one handle per worker thread: ZipFile reads are not thread-safe

    def read(member: str) -> Loaded:
        if not hasattr(local, "zip"):
            local.zip = zipfile.ZipFile(path)
        where = f"{path}:{member}"
        try:
            data = local.zip.read(member)
        except (zipfile.BadZipFile, OSError, KeyError, RuntimeError, NotImplementedError, EOFError, zlib.error) as e:
            # RuntimeError: encrypted member; NotImplementedError: unsupported compression
            raise BadInputError(f"{where}: cannot read ({e})") from e
        return _with_suffix_tag(decode_image(data, where), member)

    def items():
        for m in names:
            yield f"{path}:{m}", (lambda m=m: read(m))
    stamps = {f"{path}:{i.filename}": f"{i.file_size}:crc{i.CRC:08x}" for i in infos}
    return ImageSource(str(path), len(names), items, stamp=stamps.get)


#: Largest uncompressed archive member read as an image (a 16k x 16k RGB bitmap is 768 MiB): a few-MB archive
#: must not be able to claim gigabytes of memory (a zip bomb).
MAX_MEMBER_BYTES = 1 << 30


def _check_member_size(path: Path, member: str, size: int) -> None:
    if size > MAX_MEMBER_BYTES:
        raise BadInputError(f"{path}:{member}: declares {size:,} bytes uncompressed, more than fidkit reads for one "
                            f"image ({MAX_MEMBER_BYTES:,}); extract it yourself if it is genuine")


def _tar(path: Path, limit) -> ImageSource:
    # Compressed tars cannot seek, so members are read in order by the producer
    # and only decoding runs in the workers.
    try:
        with tarfile.open(path) as t:
            members = [m for m in t.getmembers() if _is_image(m.name) and not m.isdir()]
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BadInputError(f"{path}: not a readable tar archive ({e})") from e
    for m in members:
        _check_member_size(path, m.name, m.size)
    for m in members:  # hard links are read (they are the same image again, as a copy would be); nothing is skipped
        if not (m.isfile() or m.islnk()):
            kind = "a symbolic link" if m.issym() else "not a regular file"
            raise BadInputError(f"{path}:{m.name}: {kind}; fidkit does not follow it (extract the archive, or "
                                "store the image itself)")
    names = sorted(m.name for m in members)
    _check_nonempty(names, str(path))
    names = _limited(names, limit)
    wanted = set(names)

    def items():
        # Sorted order: collect members in archive order, yield sorted.  Archives
        # written by tools are usually sorted already, so this rarely buffers.
        pending: dict[str, bytes] = {}
        order = iter(names)
        next_name = next(order, None)
        with tarfile.open(path) as t:
            for m in _tar_members(t, path):
                if m.name not in wanted:
                    continue
                try:
                    f = t.extractfile(m)
                    pending[m.name] = f.read() if f is not None else b""
                except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                    raise BadInputError(f"{path}:{m.name}: cannot read ({e}); is the archive truncated?") from e
                while next_name is not None and next_name in pending:
                    data = pending.pop(next_name)
                    where = f"{path}:{next_name}"
                    yield where, (lambda data=data, where=where, n=next_name:
                                  _with_suffix_tag(decode_image(data, where), n))
                    next_name = next(order, None)
    stamps = {f"{path}:{m.name}": f"{m.size}:mtime{int(m.mtime)}" for m in members}
    return ImageSource(str(path), len(names), items, stamp=stamps.get)


def _tar_members(t: tarfile.TarFile, path: Path):
    """The members of an open archive, with a truncated or corrupt stream named instead of a traceback."""
    while True:
        try:
            m = t.next()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise BadInputError(f"{path}: cannot read the archive ({e}); is it truncated?") from e
        if m is None:
            return
        yield m


def _npz(path: Path, value_range, limit) -> Source:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if Reference.is_statistics(keys):
                # fidkit's own statistics, or pytorch-fid / clean-fid / TTUR / ADM
                # reference files (ADM's also hold a 10k image batch in arr_0, but
                # its published FIDs use the stored whole-dataset moments).
                return StatsSource(str(path), Reference.from_npz(z, str(path)))
    except NUMPY_FILE_ERRORS as e:
        raise BadInputError(f"{path}: cannot read .npz ({type(e).__name__}: {e})") from e
    key = "arr_0" if "arr_0" in keys else (keys[0] if len(keys) == 1 else None)
    if key is None:
        raise BadInputError(f"{path}: expected 'arr_0' (images or features) or 'mu'/'sigma' (statistics); "
                            f"found {keys}")
    try:
        member = _NpzMember(path, key)
    except NUMPY_FILE_ERRORS as e:
        raise BadInputError(f"{path}: cannot read .npz member {key!r} ({type(e).__name__}: {e})") from e
    return _array_file(member, f"{path}[{key}]", value_range, limit)


class _NpzMember:
    """An array inside an ``.npz``, read in row chunks instead of all at once."""

    def __init__(self, path: Path, key: str):
        self.path, self.member = path, key + ".npy"
        with zipfile.ZipFile(path) as z, z.open(self.member) as f:
            self.shape, self.dtype, self._offset = _npy_header(f, f"{path}[{key}]")
        self.ndim = len(self.shape)

    def __len__(self):
        return self.shape[0]

    def chunks(self, n_rows: int, limit: int) -> Iterator[np.ndarray]:
        row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        with zipfile.ZipFile(self.path) as z, z.open(self.member) as f:
            f.read(self._offset)
            done = 0
            while done < limit:
                k = min(n_rows, limit - done)
                try:
                    buf = f.read(k * row_bytes)
                except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
                    raise BadInputError(f"{self.path}: {self.member} is corrupt ({e})") from e
                if len(buf) != k * row_bytes:
                    raise BadInputError(f"{self.path}: {self.member} is truncated")
                yield np.frombuffer(buf, dtype=self.dtype).reshape((k,) + tuple(self.shape[1:]))
                done += k

    def read_all(self) -> np.ndarray:
        try:
            with np.load(self.path, allow_pickle=False) as z:
                return z[self.member[:-4]]
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
            raise BadInputError(f"{self.path}: {self.member} is corrupt ({e})") from e


def _npy_header(f, where: str):
    try:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
    except NUMPY_FILE_ERRORS as e:
        raise BadInputError(f"{where}: not a readable .npy array ({type(e).__name__}: {e})") from e
    if dtype.hasobject:
        raise BadInputError(f"{where}: object arrays are not accepted (they would need pickle)")
    if fortran:
        raise BadInputError(f"{where}: Fortran-ordered arrays are not supported")
    return shape, dtype, f.tell()


def _array_file(arr, where: str, value_range, limit) -> Source:
    if arr.ndim == 2:
        if not np.issubdtype(arr.dtype, np.number):
            raise BadInputError(f"{where}: features must be numeric, got {arr.dtype}")
        feats = arr.read_all() if isinstance(arr, _NpzMember) else arr
        return FeaturesSource(where, feats[:limit])
    if arr.ndim != 4:
        raise BadInputError(f"{where}: array of shape {tuple(arr.shape)}; expected 4-D images (N x H x W x C) "
                            "or 2-D features (N x d)")
    n = len(arr) if limit is None else min(limit, len(arr))
    chunks = arr.chunks(256, n) if isinstance(arr, _NpzMember) else (arr[i:i + 256] for i in range(0, n, 256))
    return _array_images(chunks, where, value_range, None, count=n, channels_last=True)


# --- arrays and tensors -------------------------------------------------------------

def _array_images(batches: Iterable, where: str, value_range, limit, *, count: int | None,
                  channels_last: bool | None = None, in_memory: bool = False) -> ImageSource:
    if count is not None and limit is not None:
        count = min(count, limit)

    def tensor_batches():
        index = 0
        for batch in batches:
            if limit is not None and index >= limit:
                return
            u8, tags = to_uint8_nchw(batch, f"{where}[{index}:]", value_range, channels_last=channels_last)
            if limit is not None:
                u8 = u8[:limit - index]
            yield u8, tags, f"{where}[{index}:{index + len(u8)}]"
            index += len(u8)

    def items():
        index = 0
        for batch in batches:
            for img, tags in to_uint8_nhwc(batch, where, value_range, channels_last=channels_last):
                if limit is not None and index >= limit:
                    return
                yield f"{where}[{index}]", (lambda img=img, tags=tags: (img, tags))
                index += 1
    return ImageSource(where, count, items, tensor_batches if in_memory else None)


def to_uint8_nhwc(batch, where: str, value_range, *, channels_last: bool | None = None
                  ) -> list[tuple[np.ndarray, frozenset]]:
    """Check and convert one batch of images to uint8 ``H x W x 3`` arrays with tags (see :func:`to_uint8_nchw`)."""
    u8, tags = to_uint8_nchw(batch, where, value_range, channels_last=channels_last)
    arr = u8.cpu().permute(0, 2, 3, 1).numpy()
    return [(img, tags) for img in arr]


def to_uint8_nchw(batch, where: str, value_range, *, channels_last: bool | None = None
                  ) -> tuple[torch.Tensor, frozenset]:
    """Check and convert one batch of images to a uint8 ``N x 3 x H x W`` tensor, and its conversion tags.

    Tensors are NCHW and numpy arrays NHWC unless ``channels_last`` says
    otherwise; a tensor stays on its device.  One or four channels become three
    (tagged ``gray`` / ``alpha``).  uint8 is always [0, 255], whatever
    ``value_range`` says (it describes float inputs, so one setting serves a uint8
    reference and float samples).  Other integers must lie in 0..255.  Floats need a
    declared ``value_range``; they are mapped to [0, 255] and rounded, which is
    what saving them as PNG does; values that look like another range are tagged.
    """
    if isinstance(batch, torch.Tensor):
        x = batch.detach()
        nhwc = False if channels_last is None else channels_last
    elif isinstance(batch, np.ndarray):
        if not batch.dtype.isnative:  # big-endian .npy files: torch reads native byte order only
            batch = batch.astype(batch.dtype.newbyteorder("="))
        x = torch.from_numpy(np.require(batch, requirements="W"))  # read-only arrays (memory maps) are copied
        nhwc = True if channels_last is None else channels_last
    else:
        raise BadInputError(f"{where}: batch of type {type(batch).__name__}; expected a tensor or an array")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise BadInputError(f"{where}: images of shape {tuple(x.shape)}; expected a 4-D batch")
    if 0 in tuple(x.shape[1:]):
        raise BadInputError(f"{where}: images of shape {tuple(x.shape)} have no pixels")
    c_axis, other = (3, 1) if nhwc else (1, 3)
    if x.shape[c_axis] not in (1, 3, 4):
        hint = ""
        if x.shape[other] in (1, 3, 4):
            hint = (" (it looks channels-last: use .permute(0, 3, 1, 2))" if not nhwc
                    else " (it looks channels-first: use .transpose(0, 2, 3, 1))")
        raise BadInputError(f"{where}: {x.shape[c_axis]} channels in shape {tuple(x.shape)}; expected "
                            f"{'N x H x W x C' if nhwc else 'N x C x H x W'} with C = 1, 3 or 4{hint}")
    if nhwc:
        x = x.permute(0, 3, 1, 2)
    u8, tags = _to_uint8(x, where, value_range)
    if u8.shape[2] != u8.shape[3]:
        tags = tags | {"nonsquare"}
    if u8.shape[1] == 1:
        u8, tags = u8.expand(-1, 3, -1, -1), tags | {"gray"}
    elif u8.shape[1] == 4:
        u8, tags = u8[:, :3], tags | {"alpha"}
    return u8.contiguous(), frozenset(tags)


def _to_uint8(x: torch.Tensor, where: str, value_range) -> tuple[torch.Tensor, set]:
    if value_range is not None:
        value_range = tuple(float(v) for v in value_range)
        if value_range not in VALUE_RANGES:
            raise BadInputError(f"value_range={value_range}: use (0, 1), (-1, 1) or (0, 255)")
    if x.dtype == torch.uint8:  # always [0, 255]: a declared value_range describes float inputs only
        if x.numel() >= 3 * 16 * 16 and int(x.max()) <= 1:
            return x, {"range_uint8_01"}
        return x, set()
    if x.dtype == torch.bool or x.is_complex():
        raise BadInputError(f"{where}: images of dtype {x.dtype} are not supported")
    if not x.is_floating_point():
        lo, hi = (int(v) for v in x.aminmax()) if x.numel() else (0, 0)
        if lo < 0 or hi > 255:
            raise BadInputError(f"{where}: integer images must lie in 0..255, found {lo}..{hi}")
        return x.to(torch.uint8), set()
    x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise BadInputError(f"{where}: images contain NaN or Inf")
    if value_range is None:
        raise BadInputError(f"{where}: float images need a declared value range: value_range=(0, 1), (-1, 1) "
                            "or (0, 255) (CLI: --value-range 0,1)")
    lo, hi = (float(v) for v in x.aminmax()) if x.numel() else (0.0, 0.0)
    tags = set()
    a, b = value_range
    if value_range == (0.0, 1.0):
        if hi > 2.0:
            tags.add("range_looks_255")
        elif lo < -0.05:
            tags.add("range_looks_pm1")
    elif value_range == (-1.0, 1.0):
        if hi > 2.0:
            tags.add("range_looks_255")
        elif lo >= 0.0 and x.numel() >= 3 * 16 * 16:
            tags.add("range_looks_01")
    elif value_range == (0.0, 255.0) and hi <= 1.0 and x.numel() >= 3 * 16 * 16:
        tags.add("range_looks_01_as_255")
    tolerance = 1e-3 * (b - a)
    if lo < a - tolerance or hi > b + tolerance:
        tags.add("range_clipped")
    return torch.round((x - a) * (255.0 / (b - a))).clamp_(0, 255).to(torch.uint8), tags
