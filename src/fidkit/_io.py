"""Small file helpers shared by every writer: nothing is ever half-written, and nothing but a regular file is
ever replaced."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterator

from fidkit.errors import BadInputError


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
