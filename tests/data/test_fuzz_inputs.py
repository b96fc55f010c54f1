"""Damaged inputs of every kind a source can be: each ends in a BadInputError naming the file, or in a normal
result, never in another exception (a traceback) or a hang."""

import io
import os
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from fidkit.data.sources import open_source
from fidkit.errors import BadInputError

from helpers import smooth_images


def _encoded(fmt: str, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(smooth_images(1, 24, seed=seed)[0]).save(buf, format=fmt)
    return buf.getvalue()


def _write(kind: str, path) -> None:
    if kind in ("png", "jpeg", "bmp", "webp", "gif", "tiff"):
        path.write_bytes(_encoded(kind.upper() if kind != "jpeg" else "JPEG", 1))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for i in range(3):
                z.writestr(f"{i}.png", _encoded("PNG", i))
    elif kind in ("tar", "tar.gz"):
        with tarfile.open(path, "w:gz" if kind == "tar.gz" else "w") as t:
            for i in range(3):
                data = _encoded("PNG", i)
                info = tarfile.TarInfo(f"{i}.png")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    elif kind == "npz":
        np.savez_compressed(path, arr_0=smooth_images(3, 16, seed=1))
    elif kind == "npy":
        np.save(path, smooth_images(3, 16, seed=1))
    elif kind == "stats":
        np.savez(path, mu=np.zeros(4), sigma=np.eye(4))


KINDS = {"png": "x.png", "jpeg": "x.jpg", "bmp": "x.bmp", "webp": "x.webp", "gif": "x.gif", "tiff": "x.tiff",
         "zip": "x.zip", "tar": "x.tar", "tar.gz": "x.tar.gz", "npz": "x.npz", "npy": "x.npy", "stats": "s.npz"}


def _consume(path) -> None:
    src = open_source(path, value_range=None)
    for _, loader in getattr(src, "items", lambda: [])():
        loader()


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("damage", ["truncate", "flip", "zero"])
def test_damaged_files_fail_cleanly(kind, damage, tmp_path):
    import zlib
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{damage}".encode()))  # the same damage on every run
    for trial in range(12):
        name = KINDS[kind]
        path = (tmp_path / str(trial)) / name if kind not in ("png", "jpeg", "bmp", "webp", "gif", "tiff") \
            else tmp_path / str(trial) / "folder" / name
        path.parent.mkdir(parents=True)
        _write(kind, path)
        raw = bytearray(path.read_bytes())
        if damage == "truncate":
            raw = raw[: int(rng.integers(0, len(raw)))]
        elif damage == "flip":
            for i in rng.integers(0, len(raw), size=8):
                raw[i] ^= int(rng.integers(1, 256))
        else:
            start = int(rng.integers(0, len(raw)))
            raw[start:start + 32] = bytes(min(32, len(raw) - start))
        path.write_bytes(bytes(raw))
        target = path.parent if path.parent.name == "folder" else path
        try:
            _consume(target)
        except BadInputError as e:
            assert str(path.name) in str(e) or str(target) in str(e), str(e)
