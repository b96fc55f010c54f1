"""WebDataset tar shards read as a stream: members front to back, once, never written to disk.

A sample is the run of consecutive members that share a key, the member name up to the first dot of its file name
(``train/0001.jpg`` and ``train/0001.cls`` are sample ``train/0001`` with the extensions ``jpg`` and ``cls``), as
WebDataset groups them.  Each sample gives one image: the member whose extension is an image type (``jpg``,
``png``, ``webp``, ...), or the extension ``image_key`` names (``--image-column seg.png``).  A tar of plain image
files is a WebDataset whose samples each hold one image, so any tar shard reads this way.  Images come in the
order they are stored (not sorted by name, which would need the whole shard first); samples without an image are
counted and reported, never dropped silently.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import zlib
from typing import BinaryIO, Callable, Iterator

from fidkit.errors import BadInputError, FidkitError
from fidkit.data.images import IMAGE_SUFFIXES, decode_image
from fidkit.data.archives import MAX_MEMBER_BYTES, MAX_TAR_BUFFER_BYTES
from fidkit.data.files import _with_suffix_tag
from fidkit.data.shards import open_stream
from fidkit.data.source import Loader, printable

#: Extensions whose small content is kept as a sample's metadata (class label, caption) when cheap to read.
METADATA_KEYS = ("cls", "txt", "json")
#: The largest label or caption member read (bigger ones are passed over).
MAX_METADATA_BYTES = 64 << 10


def split_key(name: str) -> tuple[str, str]:
    """``(key, extension)`` of a member name, as WebDataset splits it: ``a/b.seg.png`` is ``("a/b", "seg.png")``."""
    folder, base = posixpath.split(name)
    stem, dot, ext = base.partition(".")
    return (posixpath.join(folder, stem) if folder else stem), ext


def _is_image_ext(ext: str) -> bool:
    return os.path.splitext("x." + ext)[1].lower() in IMAGE_SUFFIXES


def tar_samples(url: str, stream: Callable[[], BinaryIO], *, image_key: str | None = None,
                notes: Callable[[str], None], metadata: Callable[[str, dict], None] | None = None,
                ) -> Iterator[tuple[str, Loader]]:
    """``(name, loader)`` of every sample's image in one tar shard, in stored order; ``name`` is
    ``URL:member``.  A read that fails (a dropped connection, a truncated or corrupt shard) is an error naming the
    shard and the last member read."""
    where = printable(url)
    last = "its first member"
    without_image: list[str] = []
    f = open_stream(stream, where)
    tail = _Tail(f)
    try:
        with f, tarfile.open(fileobj=tail, mode="r|*") as t:
            key, group, held = None, {}, 0
            for m in _members(t, where, lambda: last):
                k, ext = split_key(m.name)
                if k != key:
                    if key is not None:
                        yield from _emit(where, key, group, image_key, without_image, metadata)
                    key, group, held = k, {}, 0
                if not m.isfile():
                    if (m.issym() or m.islnk()) and _is_image_ext(ext):
                        raise BadInputError(f"{where}:{printable(m.name)}: a link; a streamed shard cannot follow "
                                            "it (store the image itself)")
                    continue
                wanted = (ext == image_key if image_key is not None else _is_image_ext(ext)) or \
                    (ext in METADATA_KEYS and m.size <= MAX_METADATA_BYTES and metadata is not None)
                if not wanted:
                    continue
                if m.size > MAX_MEMBER_BYTES:
                    raise BadInputError(f"{where}:{printable(m.name)}: declares {m.size:,} bytes, more than fidkit "
                                        f"reads for one image ({MAX_MEMBER_BYTES:,})")
                held += m.size
                if held > MAX_TAR_BUFFER_BYTES:
                    raise BadInputError(f"{where}: sample {printable(k)!r} holds more than "
                                        f"{MAX_TAR_BUFFER_BYTES:,} bytes of images")
                member = t.extractfile(m)
                data = member.read() if member is not None else b""
                if len(data) != m.size:
                    raise BadInputError(f"{where}:{printable(m.name)}: {len(data):,} of {m.size:,} bytes; the shard "
                                        "is truncated")
                group[ext] = (m.name, data)
                last = m.name
            if key is not None:
                yield from _emit(where, key, group, image_key, without_image, metadata)
            if getattr(t.fileobj, "comptype", "tar") == "tar" and not tail.zeros_at(t.offset):
                # tarfile ends quietly at a missing or damaged header; a whole shard ends with a zero block
                raise BadInputError(f"{where}: ends after {printable(last)} without the end-of-archive block; the "
                                    "shard is truncated (or damaged there)")
    except FidkitError:
        raise
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"{where}: reading failed after {printable(last)} ({type(e).__name__}: {e}); is the "
                            "shard truncated, or did the connection drop?") from None
    if without_image:
        wanted = f"the extension {image_key!r}" if image_key is not None else "an image extension"
        notes(f"{where}: {len(without_image)} sample(s) hold no member with {wanted} and were left out (first: "
              f"{printable(without_image[0])!r})")


class _Tail:
    """A read-only stream that remembers its last bytes, to look at the block where a tar stream ended."""

    KEEP = 1 << 16

    def __init__(self, f: BinaryIO):
        self.f, self.total, self.last = f, 0, b""

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.total += len(data)
        self.last = (self.last + data)[-self.KEEP:]
        return data

    def zeros_at(self, offset: int) -> bool:
        start = offset - (self.total - len(self.last))
        block = self.last[start:start + tarfile.BLOCKSIZE] if start >= 0 else b""
        return len(block) == tarfile.BLOCKSIZE and not block.strip(b"\0")


def _members(t: tarfile.TarFile, where: str, last: Callable[[], str]):
    while True:
        try:
            m = t.next()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise BadInputError(f"{where}: cannot read the shard after {printable(last())} ({e}); is it "
                                "truncated, or did the connection drop?") from None
        if m is None:
            return
        yield m


def _emit(where: str, key: str, group: dict, image_key: str | None, without_image: list[str],
          metadata: Callable[[str, dict], None] | None) -> Iterator[tuple[str, Loader]]:
    images = [ext for ext in group if (ext == image_key if image_key is not None else _is_image_ext(ext))]
    if not images:
        without_image.append(key)
        return
    if len(images) > 1:
        raise BadInputError(f"{where}: sample {printable(key)!r} holds several images ({', '.join(images)}); name "
                            "the one to use with --image-column EXT (image_column='EXT')")
    member, data = group[images[0]]
    name = f"{where}:{printable(member)}"
    if metadata is not None:
        meta = {k: group[k][1].decode("utf-8", "replace").strip() for k in METADATA_KEYS if k in group}
        if meta:
            metadata(name, meta)
    yield name, (lambda: _with_suffix_tag(decode_image(data, name), member))
