"""Small file helpers shared by every writer: nothing is ever half-written, and nothing but a regular file is
ever replaced."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import stat
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterator

from fidkit.errors import BadInputError, OutputError


_umask_lock = threading.Lock()


def _umask() -> int:
    with _umask_lock:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a named pipe (fifo)"), (stat.S_ISSOCK, "a socket"))


def write_target(path: str | os.PathLike, what: str | None = None) -> Path:
    """Where an atomic write of ``path`` lands: ``path`` itself, or the file a symbolic link names (links are
    followed, so the link stays a link and every path through it sees the new content).

    Raises :class:`BadInputError` naming ``path`` when it is (or its link leads to) something other than a regular
    file or a missing name: a folder, a device node such as ``/dev/null``, a fifo or a socket would be replaced by
    a regular file.  Nothing is opened or created; callers check their outputs with it before computing.
    """
    label = f"{what} {path}" if what else str(path)
    given = Path(path).expanduser()
    try:
        target = Path(os.path.realpath(given, strict=False)) if given.is_symlink() else given
    except OSError as e:  # a loop of links
        raise BadInputError(f"{label}: cannot follow the symbolic link ({e.strerror or e})") from None
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):  # a new file (a file where a folder must be fails at mkdir)
        return target
    except OSError as e:
        raise BadInputError(f"{label}: cannot inspect the target ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        via = f" (the symbolic link leads to {target})" if target != given else ""
        raise BadInputError(f"{label}: is {kind}{via}; fidkit writes only regular files (it would be replaced "
                            "by one); name a file instead")
    return target


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only on success.

    A symbolic link is followed: the temporary file goes beside the file the link names and replaces that file,
    so the link stays a link (see :func:`write_target`).  A folder, device node, fifo or socket at ``path`` is
    refused with :class:`BadInputError` before anything is opened.

    The file gets the permissions an ordinary ``open`` would give it (``0o666`` less the umask), so shared
    caches and reference files stay readable by a team; ``mkstemp`` alone would make them private (0600).
    """
    path = write_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        write_target(path)  # checked again just before the rename: nothing but a regular file is replaced
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_output(path, what: str) -> Path | None:
    """Refuse an output that cannot be written before minutes of computation, not after; return where it lands.

    ``-o`` and ``--name`` are written to a temporary file renamed over the target: a symbolic link is followed
    (the file it names is replaced, the link stays), and a folder, device node, fifo or socket is refused rather
    than replaced by a regular file.  Missing folders of ``-o`` are created.  ``--log`` is appended to, so any
    appendable file is fine, but its folder must exist.
    """
    if not path:
        return None
    p = Path(path).expanduser()
    if what == "--log":
        target = Path(os.path.realpath(p))
        if target.is_dir():
            raise BadInputError(f"{what} {p}: is a folder")
        if not target.parent.is_dir():
            missing = next((a for a in reversed(target.parents) if not a.is_dir()), target.parent)
            raise BadInputError(f"{what} {p}: the folder {missing} does not exist (fidkit appends to the log "
                                "but creates no folders for it; create it first)")
        if target.exists():
            if not os.access(target, os.W_OK):
                raise BadInputError(f"{what} {p}: the file is not writable")
        elif not os.access(target.parent, os.W_OK | os.X_OK):
            raise BadInputError(f"{what} {p}: cannot write in {target.parent}")
        return target
    target = write_target(p, what)
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise BadInputError(f"{what} {p}: cannot write in {ancestor}")
    return target


def append_log(path: str | None, record: dict) -> None:
    """Append one JSON line in one write; a failed or short write is undone, so no line is ever torn."""
    if not path:
        return
    line = dict(record, time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                argv=sys.argv[1:])
    data = (json.dumps(line) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise OutputError(f"--log {path}: cannot open ({e.strerror or e}); the result above was not logged") from None
    try:
        before = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"only {written} of {len(data)} bytes written")
        except OSError as e:
            _remove_partial_line(fd, before, data)
            raise OutputError(f"--log {path}: cannot append ({getattr(e, 'strerror', None) or e}); the result "
                              "above was not logged, and the log holds no partial line") from None
    finally:
        os.close(fd)


def _remove_partial_line(fd: int, before: int, data: bytes) -> None:
    """If what follows ``before`` is a prefix of our line (nobody appended after it), cut it off."""
    try:
        now = os.fstat(fd).st_size
        if before < now <= before + len(data) and data.startswith(os.pread(fd, now - before, before)):
            os.ftruncate(fd, before)
    except OSError:
        pass
