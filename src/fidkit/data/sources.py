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

import collections
import dataclasses
import errno
import os
import posixpath
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

import fidkit.cache as cache
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
    #: Warnings about the source as a whole (repeated archive member names, files a video folder leaves out),
    #: reported with the result; reading may add some (an archive re-read because it is far out of name order).
    notes: list[str] = dataclasses.field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


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
                modality: str = "image", clip=None, layout: str | None = None, argument: str = "source") -> Source:
    """``modality="video"`` reads videos instead (:mod:`fidkit.data.video`: files, frame folders, 5-D arrays and
    tensors), sampled as ``clip`` (a :class:`~fidkit.data.video.ClipOptions`) says; statistics and features are
    read alike for both.  ``argument`` names the parameter in errors about the path itself (an empty one)."""
    check_path_text(spec, argument)
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
        where = _describe_array(spec)
        check_image_batch_shape(tuple(spec.shape), where, channels_last=isinstance(spec, np.ndarray))
        return _array_images([spec], where, value_range, limit, count=len(spec), in_memory=True)
    if isinstance(spec, Iterable):
        return _array_images(spec, "batches", value_range, limit, count=None, in_memory=True)
    raise BadInputError(f"cannot use {type(spec).__name__} as a source: pass a path, a tensor, an array, "
                        "an iterable of batches, or FeatureStats")


def check_path_text(spec, argument: str = "source") -> None:
    """An empty path (an unset shell variable: ``fidkit fid "" ref.npz``) would mean the current folder: refuse it."""
    if isinstance(spec, str) and not spec.strip():
        raise BadInputError(f"{argument}: empty path {spec!r} (an unset shell variable?); name a folder, an archive, "
                            "a .npz/.npy file or saved statistics (use '.' for the current folder)")


def printable(text: str) -> str:
    """``text`` with undecodable bytes of a file name (kept as surrogates by ``os.fsdecode``) written as ``\\xNN``:
    descriptions and names are printed, logged and saved as UTF-8, which refuses surrogates."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte produced
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def path_status(path: Path, text: str) -> os.stat_result | None:
    """``stat`` of a path given as a source: None when it does not exist, an error naming it when it cannot be
    looked at (a component longer than the file system allows, a permission problem), never an OSError."""
    try:
        return path.stat()
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        if e.errno == errno.ENAMETOOLONG:
            longest = max(len(os.fsencode(part)) for part in path.parts)
            shown = printable(text)
            shown = shown if len(shown) <= 120 else shown[:120] + "…"
            why = (f"{longest} bytes in one component; file systems allow 255" if longest > 255
                   else f"{len(os.fsencode(str(path))):,} bytes in all, more than the system allows")
            raise BadInputError(f"{shown}: file name too long ({why})") from None
        raise BadInputError(f"{printable(text)}: cannot look at it ({e.strerror or e})") from None
    except ValueError as e:  # an embedded NUL byte
        raise BadInputError(f"{printable(text)!r}: not a valid path ({e})") from None


def _holds_statistics_or_features(path: Path) -> bool:
    """Whether a path given as videos is in fact a saved statistics name, a statistics file or 2-D features."""
    name = path.name.lower()
    status = path_status(path, str(path))
    if status is None:
        return cache.is_stats_name(str(path))
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


def _describe_array(a) -> str:
    return f"{type(a).__module__.split('.')[0]} array {tuple(a.shape)} {str(a.dtype).replace('torch.', '')}"


# --- paths ------------------------------------------------------------------------

def _open_path(path: Path, text: str, value_range, limit) -> Source:
    status = path_status(path, text)
    if status is None:
        if cache.is_stats_name(text):
            named = cache.named_stats_path(text)
            if named.is_file():
                return StatsSource(f"{printable(text)} ({named})", Reference.load(named))
            names = cache.list_named_stats()
            hint = f"; saved names: {', '.join(names)}" if names else ""
            raise BadInputError(f"{printable(text)}: no such file, folder or saved statistics name{hint}")
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
    raise BadInputError(f"{printable(str(path))}: unsupported file type; expected a folder, .zip, .tar, .npz or .npy")


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
        raise BadInputError(f"{printable(str(path))}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        raise BadInputError(f"{printable(str(path))}: not a regular file (a FIFO, socket or device): refused")


def _folder(root: Path, limit) -> ImageSource:
    """Every image file below ``root``, following symbolic links, in sorted order (see :func:`walk_files`)."""
    files = walk_files(root, _is_image, "images")
    _check_nonempty(files, printable(str(root)))
    files = _limited(files, limit)

    def items():
        for p in files:
            yield printable(str(p)), (lambda p=p: _decode_file(p))
    return ImageSource(printable(str(root)), len(files), items)


def walk_files(root: Path, wanted: Callable[[str], bool], what: str, left_out: list[Path] | None = None
               ) -> list[Path]:
    """The files below ``root`` whose names ``wanted`` accepts, following symbolic links, sorted by relative path.

    Nothing wanted is left out silently: an unreadable sub-folder, a broken link, a FIFO or device with a wanted
    name, and a folder reached twice through links (its files would count twice) are errors that name the path;
    ``what`` names the files in those messages ("images", "videos").  The files that ``wanted`` refuses are
    appended to ``left_out`` (sorted like the result), when given.
    """
    def unreadable(e: OSError):
        raise BadInputError(f"{printable(str(e.filename))}: cannot list this folder ({e.strerror}); its {what} "
                            "would be left out")

    files: list[Path] = []
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            raise BadInputError(f"{printable(dirpath)}: the same folder as {printable(seen[real])} (through a "
                                f"symbolic link); its {what} would be counted twice")
        seen[real] = dirpath
        dirnames.sort()
        for name in filenames:
            if not wanted(name):
                if left_out is not None:
                    left_out.append(Path(dirpath) / name)
                continue
            p = Path(dirpath) / name
            if not p.exists():
                raise BadInputError(f"{printable(str(p))}: broken symbolic link")
            _require_regular_file(p)
            files.append(p)
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    if left_out is not None:
        left_out.sort(key=lambda p: p.relative_to(root).as_posix())
    return files


def _decode_file(p: Path) -> Loaded:
    try:
        data = p.read_bytes()
    except OSError as e:
        raise BadInputError(f"{printable(str(p))}: cannot read ({e})") from e
    return _with_suffix_tag(decode_image(data, printable(str(p))), p.name)


def _with_suffix_tag(loaded: Loaded, name: str) -> Loaded:
    arr, tags = loaded
    if os.path.splitext(name)[1].lower() in JPEG_SUFFIXES:
        tags = tags | {"jpeg"}
    return arr, tags


def _zip(path: Path, limit) -> ImageSource:
    desc = printable(str(path))
    try:
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir() and _is_image(i.filename)]
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as e:  # UnicodeDecodeError: a name flagged UTF-8 is not
        raise BadInputError(f"{desc}: not a readable zip archive ({e})") from e
    for i in infos:
        _check_member_size(desc, i.filename, i.file_size)
    # Members are read by their entries (ZipInfo), not by name: a name stored twice is two members, and reading
    # by name would return the last one twice.  Equal names keep their order in the archive (a stable sort).
    members = sorted(infos, key=lambda i: i.filename)
    _check_nonempty(members, desc)
    labels = _member_labels(desc, [i.filename for i in members])
    members = _limited(members, limit)
    local = threading.local()  # one handle per worker thread: ZipFile reads are not thread-safe

    def read(info: zipfile.ZipInfo, where: str) -> Loaded:
        try:
            if not hasattr(local, "zip"):
                local.zip = zipfile.ZipFile(path)
            data = local.zip.read(info)
        except (zipfile.BadZipFile, OSError, KeyError, RuntimeError, NotImplementedError, EOFError, zlib.error,
                UnicodeDecodeError) as e:
            # RuntimeError: encrypted member; NotImplementedError: unsupported compression
            raise BadInputError(f"{where}: cannot read ({e})") from e
        return _with_suffix_tag(decode_image(data, where), info.filename)

    def items():
        for info, where in zip(members, labels):
            yield where, (lambda info=info, where=where: read(info, where))
    # content identity of each member for resume (size and CRC), by the name its item is listed under
    stamps = {where: f"{i.file_size}:crc{i.CRC:08x}" for i, where in zip(members, labels)}
    return ImageSource(desc, len(members), items, notes=_repeated_names_notes(desc, [i.filename for i in infos]),
                       stamp=stamps.get)


def _member_key(name: str) -> str:
    """The file a member name extracts to: ``./a.png``, ``/a.png`` and ``x/../a.png`` are all ``a.png``."""
    return posixpath.normpath(name.lstrip("/")) if name.strip("/") else name


#: How many repeated member names (and files left out of a video folder) a warning shows.
SHOWN_NAMES = 10


def _repeated_names_notes(desc: str, names: list[str]) -> list[str]:
    """A warning when member names repeat (as stored, or once extracted), with the repeated names."""
    counts = collections.Counter(_member_key(n) for n in names)
    repeated = sorted(k for k, c in counts.items() if c > 1)
    if not repeated:
        return []
    shown = ", ".join(f"{printable(k)!r} ({counts[k]} times)" for k in repeated[:SHOWN_NAMES])
    more = f" and {len(repeated) - SHOWN_NAMES} more" if len(repeated) > SHOWN_NAMES else ""
    return [f"{desc}: member names repeat: {shown}{more}; every member is read once and counts as an image of its "
            "own (extracting the archive would keep only the last of each name); remove the copies if they are "
            "not meant to be there"]


def _member_labels(desc: str, names: list[str]) -> list[str]:
    """``archive:member`` for each member (sorted by name); a name stored k times gets ``(i of k)``."""
    counts = collections.Counter(names)
    seen: collections.Counter = collections.Counter()
    out = []
    for n in names:
        seen[n] += 1
        suffix = f" ({seen[n]} of {counts[n]})" if counts[n] > 1 else ""
        out.append(f"{desc}:{printable(n)}{suffix}")
    return out


#: Largest uncompressed archive member read as an image (a 16k x 16k RGB bitmap is 768 MiB): a few-MB archive
#: must not be able to claim gigabytes of memory (a zip bomb).
MAX_MEMBER_BYTES = 1 << 30

#: Most bytes of a tar's members held in memory while waiting for their turn in name order.  A member that would
#: exceed it is passed over and read again from the archive when its turn comes (a seek; a compressed archive is
#: decompressed again up to it), so a small archive stored far out of name order cannot claim gigabytes.
MAX_TAR_BUFFER_BYTES = 512 << 20


def _check_member_size(desc: str, member: str, size: int) -> None:
    if size > MAX_MEMBER_BYTES:
        raise BadInputError(f"{desc}:{printable(member)}: declares {size:,} bytes uncompressed, more than fidkit "
                            f"reads for one image ({MAX_MEMBER_BYTES:,}); extract it yourself if it is genuine")


def _tar(path: Path, limit) -> ImageSource:
    # Compressed tars are read front to back by the producer (only decoding runs in the workers); members are
    # yielded in name order, so those stored before their turn are held, up to MAX_TAR_BUFFER_BYTES in all.
    desc = printable(str(path))
    try:
        with tarfile.open(path) as t:
            everything = t.getmembers()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BadInputError(f"{desc}: not a readable tar archive ({e})") from e
    # Members are known by their position in the archive, not by name: a name stored twice is two members.
    indexed = [(pos, m) for pos, m in enumerate(everything) if _is_image(m.name) and not m.isdir()]
    for _, m in indexed:
        _check_member_size(desc, m.name, m.size)
    for _, m in indexed:  # hard links are read (they are the same image again, as a copy would be)
        if not (m.isfile() or m.islnk()):
            kind = "a symbolic link" if m.issym() else "not a regular file"
            raise BadInputError(f"{desc}:{printable(m.name)}: {kind}; fidkit does not follow it (extract the archive, "
                                "or store the image itself)")
    sizes = {}  # bytes each member yields (a hard link: its target's), to bound what is held before reading it
    latest: dict[str, int] = {}
    for pos, m in enumerate(everything):
        if m.islnk():
            sizes[pos] = latest.get(m.linkname, MAX_MEMBER_BYTES)
        else:
            sizes[pos] = m.size
            latest[m.name] = m.size
    chosen = sorted(indexed, key=lambda pm: pm[1].name)  # stable: equal names keep their order in the archive
    _check_nonempty(chosen, desc)
    labels = _member_labels(desc, [m.name for _, m in chosen])
    chosen = _limited(chosen, limit)
    label = {pos: where for (pos, _), where in zip(chosen, labels)}

    def read(t: tarfile.TarFile, m: tarfile.TarInfo, where: str) -> bytes:
        try:
            f = t.extractfile(m)
            return f.read() if f is not None else b""
        except (tarfile.TarError, OSError, EOFError, zlib.error, KeyError) as e:
            raise BadInputError(f"{where}: cannot read ({e}); is the archive truncated?") from e

    def loader(data: bytes, where: str, name: str) -> Loader:
        return lambda: _with_suffix_tag(decode_image(data, where), name)

    def items():
        pending: dict[int, bytes] = {}   # read, waiting for their turn
        passed: dict[int, tarfile.TarInfo] = {}   # not held (the bound): read again at their turn
        held, again, reread = 0, None, 0
        order = iter(chosen)
        turn = next(order, None)
        try:
            with tarfile.open(path) as t:
                for pos, m in enumerate(_tar_members(t, desc)):
                    if turn is None:
                        break
                    if pos not in label:
                        continue
                    if pos == turn[0] or held + sizes[pos] <= MAX_TAR_BUFFER_BYTES:
                        pending[pos] = read(t, m, label[pos])
                        held += len(pending[pos])
                    else:
                        passed[pos] = m
                    while turn is not None and (turn[0] in pending or turn[0] in passed):
                        where = label[turn[0]]
                        if turn[0] in pending:
                            data = pending.pop(turn[0])
                            held -= len(data)
                        else:
                            if again is None:
                                again = tarfile.open(path)
                            data = read(again, passed.pop(turn[0]), where)
                            reread += 1
                        yield where, loader(data, where, turn[1].name)
                        turn = next(order, None)
        finally:
            if again is not None:
                again.close()
        if turn is not None:
            raise BadInputError(f"{label[turn[0]]}: not found when reading the archive again; did it change?")
        if reread:
            source.note(f"{desc}: its members are stored far out of name order; holding them until their turn "
                        f"would take more than {MAX_TAR_BUFFER_BYTES:,} bytes, so {reread} were read a second time "
                        "from the archive (slow when it is compressed: extract it, or store the members in name "
                        "order)")
    stamps = {label[pos]: f"{m.size}:mtime{int(m.mtime)}" for pos, m in chosen}   # resume's content identity
    source = ImageSource(desc, len(chosen), items, notes=_repeated_names_notes(desc, [m.name for _, m in indexed]),
                         stamp=stamps.get)
    return source


def _tar_members(t: tarfile.TarFile, desc: str):
    """The members of an open archive, with a truncated or corrupt stream named instead of a traceback."""
    while True:
        try:
            m = t.next()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise BadInputError(f"{desc}: cannot read the archive ({e}); is it truncated?") from e
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
                return StatsSource(printable(str(path)), Reference.from_npz(z, printable(str(path))))
    except NUMPY_FILE_ERRORS as e:
        raise BadInputError(f"{printable(str(path))}: cannot read .npz ({type(e).__name__}: {e})") from e
    key = "arr_0" if "arr_0" in keys else (keys[0] if len(keys) == 1 else None)
    if key is None:
        raise BadInputError(f"{printable(str(path))}: expected 'arr_0' (images or features) or 'mu'/'sigma' "
                            f"(statistics); found {keys}")
    try:
        member = _NpzMember(path, key)
    except NUMPY_FILE_ERRORS as e:
        raise BadInputError(f"{printable(str(path))}: cannot read .npz member {key!r} ({type(e).__name__}: {e})") from e
    return _array_file(member, f"{printable(str(path))}[{key}]", value_range, limit)


class _NpzMember:
    """An array inside an ``.npz``, read in row chunks instead of all at once."""

    def __init__(self, path: Path, key: str):
        self.path, self.member = path, key + ".npy"
        with zipfile.ZipFile(path) as z, z.open(self.member) as f:
            self.shape, self.dtype, self._offset = _npy_header(f, f"{printable(str(path))}[{key}]")
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
    otherwise; a tensor stays on its device.  A batch is 4-D: a 3-D input is
    refused (see :func:`check_image_batch_shape`).  One or four channels become three
    (tagged ``gray`` / ``alpha``).  uint8 is always [0, 255], whatever
    ``value_range`` says (it describes float inputs, so one setting serves a uint8
    reference and float samples).  Every other integer type (int8 to int64, uint16 to
    uint64) must hold values in 0..255, which are taken as they are (not scaled from
    the type's range: scale 16-bit data to 8 bits yourself); any integer batch holding
    only 0 and 1 is tagged.  Floats need a
    declared ``value_range``; they are mapped to [0, 255] and rounded, which is
    what saving them as PNG does; values that look like another range are tagged.
    """
    if isinstance(batch, torch.Tensor):
        x = batch.detach()
        nhwc = False if channels_last is None else channels_last
    elif isinstance(batch, np.ndarray):
        if not batch.dtype.isnative:  # big-endian .npy files: torch reads native byte order only
            batch = batch.astype(batch.dtype.newbyteorder("="))
        try:
            x = torch.from_numpy(np.require(batch, requirements="W"))  # read-only arrays (memory maps) are copied
        except TypeError as e:  # a dtype torch has no type for (object, strings, datetimes)
            raise BadInputError(f"{where}: images of dtype {batch.dtype} are not supported ({e})") from None
        nhwc = True if channels_last is None else channels_last
    else:
        raise BadInputError(f"{where}: batch of type {type(batch).__name__}; expected a tensor or an array")
    check_image_batch_shape(tuple(x.shape), where, channels_last=nhwc)
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


def check_image_batch_shape(shape: tuple, where: str, *, channels_last: bool) -> None:
    """Images come as 4-D batches.  The rule for 3-D input: it is always refused, never guessed, because it has
    two readings that give different images: one image (``C x H x W``, ``H x W x C``) or a batch of grayscale
    images (``N x H x W``): a ``3 x H x W`` uint8 batch of three grayscale images would be read as one RGB image."""
    if len(shape) == 4:
        return
    layout = "N x H x W x C arrays" if channels_last else "N x C x H x W tensors"
    if len(shape) == 3:
        single, add_axis, gray = (("H x W x C", "x[..., None]", "N x H x W x 1") if channels_last
                                  else ("C x H x W", "x[:, None]", "N x 1 x H x W"))
        raise BadInputError(f"{where}: 3-D images of shape {shape} are ambiguous: one image ({single}) or a batch of "
                            f"{shape[0]} grayscale images (N x H x W); fidkit refuses 3-D input rather than guess. "
                            f"Pass a 4-D batch of {layout}: one image as x[None], grayscale images as {gray} "
                            f"({add_axis})")
    raise BadInputError(f"{where}: images of shape {shape}; expected a 4-D batch ({layout})")


#: Unsigned types torch cannot compare or reduce (NotImplementedError), and the signed type of their width: read
#: as that, values of 2**(bits-1) and more turn negative, so "within 0..255" is decided alike.
_UNSIGNED_AS_SIGNED = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}


def _to_uint8(x: torch.Tensor, where: str, value_range) -> tuple[torch.Tensor, set]:
    if value_range is not None:
        value_range = tuple(float(v) for v in value_range)
        if value_range not in VALUE_RANGES:
            raise BadInputError(f"value_range={value_range}: use (0, 1), (-1, 1) or (0, 255)")
    if x.dtype == torch.bool or x.is_complex():
        raise BadInputError(f"{where}: images of dtype {x.dtype} are not supported")
    if not x.is_floating_point():
        # uint8 is always [0, 255] (a declared value_range describes float inputs only); every other integer
        # type must hold values in 0..255, taken as they are.  The same range checks apply to every type.
        signed = _UNSIGNED_AS_SIGNED.get(x.dtype)
        comparable = x.view(signed) if signed is not None else x
        lo, hi = (int(v) for v in comparable.aminmax()) if x.numel() else (0, 0)
        if lo < 0 or hi > 255:
            if signed is not None:
                lo, hi = _unsigned_range(x)
            dtype = str(x.dtype).replace("torch.", "")
            raise BadInputError(f"{where}: {dtype} images must hold values in 0..255 (integers are taken as 8-bit "
                                f"values, not scaled from their type's range), found {lo}..{hi}; scale them to "
                                "0..255 first (16-bit data: v * 255 // 65535), or pass floats with a value_range")
        u8 = x if x.dtype == torch.uint8 else comparable.to(torch.uint8)
        if x.numel() >= 3 * 16 * 16 and hi <= 1:
            return u8, {"range_uint8_01"}
        return u8, set()
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


def _unsigned_range(x: torch.Tensor) -> tuple[int, int]:
    """Smallest and largest value of an unsigned tensor that torch cannot reduce (for an error message)."""
    a = x.detach().cpu().numpy()
    return int(a.min()), int(a.max())
