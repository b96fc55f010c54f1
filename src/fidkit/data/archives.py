"""``.zip`` and ``.tar``/``.tar.gz`` archives of images, read without unpacking: each member once, by position, in
name order, with bounded memory."""

from __future__ import annotations

import collections
import posixpath
import tarfile
import threading
import zipfile
import zlib
from pathlib import Path


from fidkit.errors import BadInputError
from fidkit.data.images import decode_image
from fidkit.data.source import ImageSource, Loaded, Loader, SHOWN_NAMES, _check_nonempty, _limited, printable
from fidkit.data.files import _is_image, _with_suffix_tag


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
