"""Shard lists: brace and glob expansion of a source string into URLs or paths, in a fixed order, and a content
identity per shard.

``expand("s3://bucket/eval-{000000..000019}.tar")`` gives twenty URLs in that order; ``{a,b,c}`` lists and several
braces in one string expand left to right (the leftmost brace varies slowest, as in bash); a glob (``*``, ``?``,
``[...]``) is listed through the file system and sorted.  Remote file systems come from fsspec (the ``cloud``
extra), which also finds the credentials: its usual environment variables and configuration files, or
``storage_options`` passed along (an S3 endpoint, for example, from ``FSSPEC_S3_ENDPOINT_URL``, which s3fs reads).
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fidkit.errors import BadInputError, FidkitError

#: What makes a source string a URL: ``scheme://``, the scheme two letters or more (so ``C:\\`` stays a path).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_GLOB = re.compile(r"[*?\[]")
#: The most names one brace expression may produce (a typo such as ``{0..99999999}`` should not eat the memory).
MAX_EXPANDED = 1_000_000
#: Threads that look up the shards' sizes and versions at once (one request each).
INFO_THREADS = 16


def is_url(spec: str) -> bool:
    return bool(_URL.match(spec))


def is_pattern(spec: str) -> bool:
    """Whether a string asks for expansion: a brace expression or a glob."""
    return "{" in spec or bool(_GLOB.search(_path_part(spec)))


def _path_part(spec: str) -> str:
    # the query string of an https URL (``?download=true``) is no glob
    return spec.split("?", 1)[0] if spec.startswith(("http://", "https://")) else spec


def filesystem(url: str, storage_options: dict[str, Any] | None = None):
    """The fsspec file system that serves ``url`` and the path within it."""
    try:
        import fsspec
    except ImportError:
        raise BadInputError(f"{url}: reading URLs needs fsspec; pip install 'fidkit[cloud]'") from None
    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as e:  # fsspec names the package the protocol needs (s3fs, gcsfs, aiohttp)
        raise BadInputError(f"{url}: {e}; pip install 'fidkit[cloud]' (gs:// also needs gcsfs)") from None
    except ValueError as e:  # an unknown protocol
        raise BadInputError(f"{url}: {e}") from None
    return fs, path


def expand_braces(spec: str) -> list[str]:
    """Every string a brace expression stands for, in order.  ``{000..012}`` is a range (zero padding kept when
    an end is written with leading zeros; a descending range counts down; ``{0..10..5}`` has a step), ``{a,b}``
    a list; nested or unbalanced braces, an empty or one-item brace are errors naming the brace."""
    start = spec.find("{")
    close = spec.find("}")
    if start < 0:
        if close >= 0:
            raise BadInputError(f"{spec}: '}}' without a '{{' at character {close + 1}")
        return [spec]
    end = spec.find("}", start)
    if end < 0:
        raise BadInputError(f"{spec}: '{{' at character {start + 1} is never closed")
    inner = spec[start + 1:end]
    if close < start:
        raise BadInputError(f"{spec}: '}}' without a '{{' at character {close + 1}")
    if "{" in inner:
        raise BadInputError(f"{spec}: nested braces after character {start + 1} ({spec[start:]!r}) are not "
                            "supported; write the names as one list or one range")
    choices = _brace_choices(inner, spec)
    rest = expand_braces(spec[end + 1:])
    if len(choices) * len(rest) > MAX_EXPANDED:
        raise BadInputError(f"{spec}: stands for {len(choices) * len(rest):,} names, more than {MAX_EXPANDED:,}")
    head = spec[:start]
    return [head + c + r for c in choices for r in rest]


def _brace_choices(inner: str, spec: str) -> list[str]:
    where = f"{spec}: {{{inner}}}"
    if "," in inner:
        items = inner.split(",")
        if any(i == "" for i in items):
            raise BadInputError(f"{where}: an empty item in the list")
        return items
    m = re.fullmatch(r"(-?\d+)\.\.(-?\d+)(?:\.\.(\d+))?", inner)
    if m is None:
        if not inner:
            raise BadInputError(f"{where}: empty braces")
        raise BadInputError(f"{where}: neither a list (a,b,c) nor a range of integers (000..099)")
    lo, hi = int(m.group(1)), int(m.group(2))
    step = int(m.group(3) or 1)
    if step == 0:
        raise BadInputError(f"{where}: a step of 0")
    padded = any(re.match(r"-?0\d", g) for g in (m.group(1), m.group(2)))
    width = max(len(m.group(1)), len(m.group(2))) if padded else 0
    count = abs(hi - lo) // step + 1
    if count > MAX_EXPANDED:
        raise BadInputError(f"{where}: {count:,} names, more than {MAX_EXPANDED:,}")
    values = range(lo, hi + 1, step) if lo <= hi else range(lo, hi - 1, -step)
    return [str(v).zfill(width) if v >= 0 else "-" + str(-v).zfill(width - 1) for v in values]


def expand(spec: str, *, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The shards a source string names, in a deterministic order: brace expressions expanded in their written
    order, each glob's matches sorted by name (a glob that matches nothing is an error naming it).  Names are
    not checked to exist here (see :func:`check_exist`).  A name listed twice is an error: it would count twice."""
    out: list[str] = []
    for name in expand_braces(spec):
        if not _GLOB.search(_path_part(name)) or (not is_url(name) and os.path.lexists(name)):
            out.append(name)
            continue
        if is_url(name):
            fs, path = filesystem(name, storage_options)
            found = sorted(fs.unstrip_protocol(p) for p in fs.glob(path) if not fs.isdir(p))
        else:
            found = sorted(p for p in glob.glob(os.path.expanduser(name)) if not os.path.isdir(p))
        if not found:
            raise BadInputError(f"{name}: the pattern matches no file")
        out.extend(found)
    seen: set[str] = set()
    twice = [n for n in out if n in seen or seen.add(n)]
    if twice:
        raise BadInputError(f"{spec}: names {', '.join(sorted(set(twice))[:5])} more than once; each shard would "
                            "count as often as it is named")
    return out


def _info(url: str, storage_options: dict[str, Any] | None) -> dict:
    if not is_url(url):
        try:
            st = os.stat(url)
        except FileNotFoundError:
            raise BadInputError(f"{url}: no such shard") from None
        except OSError as e:
            raise BadInputError(f"{url}: cannot look at it ({e.strerror or e})") from None
        if not os.path.isfile(url):
            raise BadInputError(f"{url}: not a file")
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    fs, path = filesystem(url, storage_options)
    try:
        fs.invalidate_cache(path)  # a listing cached by an earlier glob would hide a replaced shard
        info = fs.info(path)
    except FileNotFoundError:
        raise BadInputError(f"{url}: no such shard") from None
    except Exception as e:  # noqa: BLE001  (every transport has its own errors: name the shard, whatever it was)
        raise BadInputError(f"{url}: cannot look it up ({type(e).__name__}: {e})") from None
    if info.get("type") == "directory":
        raise BadInputError(f"{url}: a folder, not a shard")
    return info


def fingerprint(url: str, *, storage_options: dict[str, Any] | None = None) -> str:
    """A shard's content identity: ``SIZE:etag=...`` (object stores and HTTP servers that send one), else
    ``SIZE:mtime=...`` (local files: nanoseconds; servers: Last-Modified), else ``SIZE:sha256=...`` of the whole
    content (read once, for a server that tells neither).  A replaced shard gets a new one."""
    return _fingerprint(url, _info(url, storage_options), storage_options)


def _fingerprint(url: str, info: dict, storage_options: dict[str, Any] | None) -> str:
    size = info.get("size")
    size = "?" if size is None else str(int(size))
    if "mtime_ns" in info:
        return f"{size}:mtime={info['mtime_ns']}"
    for key in ("ETag", "etag", "md5Hash", "Content-MD5", "Digest", "generation"):
        if info.get(key):
            return f"{size}:etag={str(info[key]).strip(chr(34))}"
    for key in ("LastModified", "Last-Modified", "updated", "mtime", "last_modified"):
        value = info.get(key)
        if value:
            if isinstance(value, datetime.datetime):
                value = value.isoformat()
            return f"{size}:mtime={value}"
    return f"{size}:sha256={_content_hash(url, storage_options)}"


def _content_hash(url: str, storage_options: dict[str, Any] | None) -> str:
    fs, path = filesystem(url, storage_options)
    h = hashlib.sha256()
    try:
        with fs.open(path, "rb", block_size=0 if url.startswith(("http://", "https://")) else None) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"{url}: cannot read it to fingerprint its content ({type(e).__name__}: {e})") from None
    return h.hexdigest()


def fingerprints(urls: list[str], *, storage_options: dict[str, Any] | None = None) -> dict[str, str]:
    """:func:`fingerprint` of every shard, looked up :data:`INFO_THREADS` at a time; missing or unreadable shards
    are an error naming them (the first five, in list order), so a typo in a shard list shows before any work."""
    if len(urls) <= 1:
        return {u: fingerprint(u, storage_options=storage_options) for u in urls}
    with ThreadPoolExecutor(max_workers=INFO_THREADS, thread_name_prefix="fidkit-info") as pool:
        found = list(pool.map(lambda u: _safe(u, storage_options), urls))
    bad = [str(r) for r in found if isinstance(r, BadInputError)]
    if len(bad) == 1:
        raise BadInputError(bad[0])
    if bad:
        raise BadInputError(f"{len(bad)} of {len(urls)} shards cannot be used: " + "; ".join(bad[:5])
                            + (" ..." if len(bad) > 5 else ""))
    return dict(zip(urls, found))


def _safe(url: str, storage_options: dict[str, Any] | None) -> str | BadInputError:
    try:
        return fingerprint(url, storage_options=storage_options)
    except BadInputError as e:
        return e


def open_stream(stream, where: str):
    """``stream()``, a shard's byte stream opened; a transport's own error (every fsspec backend has its own) is a
    :class:`BadInputError` naming the shard ``where``."""
    try:
        return stream()
    except FidkitError:
        raise
    except Exception as e:  # noqa: BLE001  (every transport has its own errors: name the shard, whatever it was)
        raise BadInputError(f"{where}: cannot open ({type(e).__name__}: {e})") from None
