"""Published files in the cache: download once, record the sha256 of first use, refuse a file that differs later,
read into a :class:`~fidkit.stats.reference.Reference` with the entry's provenance.

Layout: ``<cache>/references/<name>/<published file name>``, and beside it ``<file>.sha256.json``, the record of
first use (URL, sha256, size, date).  The record outlives the file: a file deleted and downloaded again must hash
as it did the first time, so a file changed on the server is refused, naming both hashes.  Pickled formats are
converted once into fidkit's no-pickle ``.npz`` (``<name>.fidkit.npz``), tied to the source's sha256.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import fidkit.cache as cache
from fidkit._download import DownloadError, download, downloads_allowed, sha256_of
from fidkit._io import atomic_write
from fidkit.errors import BadInputError, ReferenceUnavailableError
from fidkit.registry.entry import HEX64, PICKLED, PublishedReference
from fidkit.stats.published import convert_published, read_published
from fidkit.stats.reference import Reference

#: A base URL serving the published files under their own names (a local mirror; tests' HTTP server).
MIRROR_ENV = "FIDKIT_REFERENCES_MIRROR"


def references_dir() -> Path:
    return cache.cache_dir() / "references"


def cache_path(entry: PublishedReference) -> Path:
    return references_dir() / entry.name / entry.filename


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def source_url(entry: PublishedReference) -> str:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{entry.filename}" if mirror else entry.url


def read_record(entry: PublishedReference) -> dict | None:
    """The record of first use, or None when the file was never used here."""
    path = record_path(cache_path(entry))
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ReferenceUnavailableError(f"{path}: unreadable record of first use ({e}); delete it to record the "
                                        "file's sha256 again") from None
    if not isinstance(record, dict) or not HEX64.match(str(record.get("sha256", ""))):
        raise ReferenceUnavailableError(f"{path}: not a record of first use (no sha256); delete it to record the "
                                        "file's sha256 again")
    return record


def _write_record(entry: PublishedReference, path: Path, digest: str, how: str, url: str) -> dict:
    record = {"name": entry.name, "url": url, "sha256": digest, "size_bytes": path.stat().st_size,
              "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "how": how}
    with atomic_write(record_path(path), "w") as f:
        json.dump(record, f, indent=1)
    return record


def check_sha256(text: str | None, what: str = "sha256") -> str | None:
    if text is None:
        return None
    value = text.strip().lower()
    if not HEX64.match(value):
        raise BadInputError(f"{what} {text!r}: expected the 64 hex digits of a sha256")
    return value


def _verify(entry: PublishedReference, digest: str, record: dict | None, given: str | None, where: str,
            after: str) -> None:
    """Refuse ``digest`` unless it matches every known expectation: the record of first use, the pinned value,
    the one the caller gave."""
    if record is not None and record["sha256"] != digest:
        rec = record_path(cache_path(entry))
        raise ReferenceUnavailableError(
            f"{where}: sha256 {digest} differs from {record['sha256']}, recorded at first use of {entry.name} "
            f"({record.get('recorded', 'date unknown')}, {rec}): the file changed since (on the server, or "
            f"truncated or damaged); {after}. If the publisher really replaced the file, delete {rec} to accept it.")
    for want, why in ((entry.sha256, f"pinned in the registry entry ({entry.origin})"), (given, "given (--sha256)")):
        if want is not None and want != digest:
            raise ReferenceUnavailableError(f"{where}: sha256 {digest} differs from {want}, {why}; {after}")


def fetch(entry: PublishedReference, *, sha256: str | None = None, download_allowed: bool | None = None,
          timeout: float = 60.0) -> tuple[Path, str, dict]:
    """The entry's file in the cache, downloaded if needed: ``(path, sha256, record of first use)``."""
    given = check_sha256(sha256)
    path = cache_path(entry)
    record = read_record(entry)
    if path.is_file():
        digest = sha256_of(path)
        _verify(entry, digest, record, given, str(path), f"delete {path} to download it again")
        if record is None:  # placed in the cache by hand (an offline machine): its first use is now
            record = _write_record(entry, path, digest, "placed in the cache", entry.url)
        return path, digest, record
    url = source_url(entry)
    if download_allowed is None:
        download_allowed = downloads_allowed()
    if not download_allowed:
        raise _unavailable(entry, url, path, "it is not in the cache and downloads are disabled (FIDKIT_OFFLINE is "
                                             "set)")
    try:
        digest = download(url, path, timeout=timeout, check=lambda d: _verify(
            entry, d, record, given, f"download from {url}", "nothing was saved"))
    except DownloadError as e:
        raise _unavailable(entry, url, path, f"download from {url} failed ({e}); nothing was saved") from e
    if record is None:
        record = _write_record(entry, path, digest, "first download", url)
    return path, digest, record


def _unavailable(entry: PublishedReference, url: str, path: Path, reason: str) -> ReferenceUnavailableError:
    pinned = f" (its sha256 must be {entry.sha256})" if entry.sha256 else ""
    return ReferenceUnavailableError(
        f"The published reference statistics {entry.name} are not available: {reason}.\n"
        f"  Download {url}\n"
        f"  (file name {entry.filename}){pinned} on a machine with internet access, and put it at\n"
        f"  {path}\n"
        f"  fidkit records its sha256 at first use and refuses a different file later; pass --sha256 HEX "
        f"(Python: sha256=) to check it against a value you trust.")


def read(entry: PublishedReference, path: Path, digest: str) -> Reference:
    """The statistics of the entry's file, each feature space with the provenance the entry declares (the
    publishers' formats are read by :mod:`fidkit.stats.published`, pickles through its allow-list)."""
    options = dict(spaces=entry.provenances(), n=entry.n, normaliser=entry.normaliser, source=entry.name)
    if entry.fmt not in PICKLED:
        return read_published(path, entry.fmt, **options)
    # a pickle is converted once; the .npz is tied to the source file's sha256 through the record
    converted = path.with_name(f"{entry.name}.fidkit.npz")
    tied = record_path(converted)
    if not (converted.is_file() and tied.is_file() and tied.read_text(encoding="utf-8").strip() == digest):
        convert_published(path, entry.fmt, converted, url=entry.url, **options)
        with atomic_write(tied, "w") as f:
            f.write(digest + "\n")
    return Reference.load(converted)
