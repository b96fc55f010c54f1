"""Images from arrays: ``.npz``/``.npy`` files (streamed in chunks), numpy arrays, tensors and iterables of
batches."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from fidkit.errors import BadInputError
from fidkit.stats.reference import Reference
from fidkit.data.source import FeaturesSource, ImageSource, NUMPY_FILE_ERRORS, Source, StatsSource, printable
from fidkit.data.pixels import to_uint8_nchw, to_uint8_nhwc


def _npz(path: Path, value_range, limit) -> Source:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if Reference.is_statistics(keys):
                # fidkit's own statistics, or pytorch-fid / clean-fid / TTUR / ADM reference files.  ADM's also
                # hold an image batch in arr_0: its FID/sFID use the stored whole-dataset moments, its IS and
                # precision/recall the images, so the images come along for per-sample metrics.
                reference = Reference.from_npz(z, printable(str(path)))
                images = "arr_0" in keys
    except NUMPY_FILE_ERRORS as e:
        raise BadInputError(f"{printable(str(path))}: cannot read .npz ({type(e).__name__}: {e})") from e
    if Reference.is_statistics(keys):
        batch = _stored_images(path, value_range, limit) if images else None
        return StatsSource(printable(str(path)), reference, batch)
    key = "arr_0" if "arr_0" in keys else (keys[0] if len(keys) == 1 else None)
    if key is None:
        raise BadInputError(f"{printable(str(path))}: expected 'arr_0' (images or features) or 'mu'/'sigma' "
                            f"(statistics); found {keys}")
    try:
        member = _NpzMember(path, key)
    except NUMPY_FILE_ERRORS as e:
        raise BadInputError(f"{printable(str(path))}: cannot read .npz member {key!r} ({type(e).__name__}: {e})") from e
    return _array_file(member, f"{printable(str(path))}[{key}]", value_range, limit)

def _stored_images(path: Path, value_range, limit) -> ImageSource | None:
    """The 4-D ``arr_0`` image batch stored beside statistics, streamed; None when ``arr_0`` is not images."""
    try:
        member = _NpzMember(path, "arr_0")
    except NUMPY_FILE_ERRORS as e:
        raise BadInputError(f"{printable(str(path))}: cannot read .npz member 'arr_0' ({type(e).__name__}: {e})") from e
    if member.ndim != 4:
        return None
    return _array_file(member, f"{printable(str(path))}[arr_0]", value_range, limit)

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
