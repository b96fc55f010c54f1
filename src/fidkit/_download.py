"""The one downloader: stream a URL into a file of the cache, hashing as it goes, and rename only a complete,
accepted file into place.

Network weights (:mod:`fidkit.extractors.weights`) and published reference statistics (:mod:`fidkit.registry`)
both fetch through :func:`download`; each wraps :class:`DownloadError` into its own error with its own advice.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from fidkit._io import atomic_write

_CHUNK = 1 << 20


class DownloadError(Exception):
    """A transfer failed (unreachable host, HTTP error, connection closed early); nothing was saved."""


def downloads_allowed() -> bool:
    """``FIDKIT_OFFLINE=1`` (or ``true``/``yes``) forbids every download fidkit would start by itself."""
    return os.environ.get("FIDKIT_OFFLINE", "").strip().lower() not in ("1", "true", "yes")


_sha_cache: dict[tuple[str, int, int], str] = {}


def sha256_of(path: str | os.PathLike) -> str:
    """The file's sha256 (hex), remembered per (path, size, mtime) so a large file is hashed once per process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def download(url: str, dest: str | os.PathLike, *, check: Callable[[str], None] | None = None,
             timeout: float = 60.0) -> str:
    """Fetch ``url`` into ``dest`` and return its sha256.

    The bytes go to a temporary file beside ``dest``; ``check(sha256)`` may raise to refuse the file (a hash that
    does not match), and the temporary file is removed.  A body shorter than the server's ``Content-Length`` is a
    truncated transfer (:class:`DownloadError`), so a dropped connection never leaves a file in the cache.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_write(dest) as out:
            expected = response.headers.get("Content-Length")
            h, received = hashlib.sha256(), 0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
                received += len(chunk)
            if expected is not None and expected.isdigit() and received != int(expected):
                raise DownloadError(f"truncated transfer: {received} of {int(expected)} bytes received")
            digest = h.hexdigest()
            if check is not None:
                check(digest)
    except DownloadError:
        raise
    except http.client.IncompleteRead as e:  # the connection closed before Content-Length bytes arrived
        raise DownloadError(f"truncated transfer: {len(e.partial)} more bytes then the connection closed") from e
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        raise DownloadError(str(e)) from e
    return digest
