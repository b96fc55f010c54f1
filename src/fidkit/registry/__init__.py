"""Published reference statistics by name: ``fidkit fid imagenet256-adm samples.npz``,
``fidkit.evaluate("cifar10-train-clean", G)``.

Each entry (:class:`PublishedReference`) says what the file holds and how it was made (dataset, N and whether it
covers the whole dataset, the subset's seed, dataset preprocessing, network and resize, covariance normaliser),
where it is published and under which licence, and the provenance fidkit attaches to it, so the usual
comparability check applies to it as to fidkit's own files.  Files are downloaded on first use into the cache;
the sha256 of that first download is recorded and a later file that differs is refused (no publisher posts a
checksum).  Users add entries in ``<cache>/references.toml`` or files named by ``$FIDKIT_REFERENCES``.
"""

from __future__ import annotations

import difflib
from typing import NoReturn

from fidkit.errors import BadInputError
from fidkit.registry.builtin import BUILTIN
from fidkit.registry.entry import FORMATS, METRIC_NEEDS, NETWORKS, PublishedReference, check, problems
from fidkit.registry.files import MIRROR_ENV, cache_path, check_sha256, fetch, read, read_record, record_path
from fidkit.registry.user import ENV as USER_ENV
from fidkit.registry.user import user_entries, user_files
from fidkit.stats.reference import Reference

__all__ = ["PublishedReference", "lookup", "references", "open_published", "fetch", "close_names", "cached",
           "cache_path", "record_path", "check_sha256", "FORMATS", "METRIC_NEEDS", "NETWORKS", "MIRROR_ENV",
           "USER_ENV", "problems", "user_files"]

_BUILTIN = {e.name: check(e, "fidkit.registry.builtin") for e in BUILTIN}
if len(_BUILTIN) != len(BUILTIN):  # two generated entries with one name would hide one of them
    raise AssertionError("duplicate names among the built-in published references")


def references() -> list[PublishedReference]:
    """Every entry: the built-in ones, then the user's (read afresh, so an edit shows at once)."""
    return [*_BUILTIN.values(), *user_entries(_BUILTIN)]


def lookup(name: str) -> PublishedReference | None:
    """The entry called ``name``, or None.  The user's files are read (and validated) every time, so an entry
    that would shadow a built-in one is an error here too, never silently ignored."""
    users = user_entries(_BUILTIN)
    return _BUILTIN.get(name) or next((e for e in users if e.name == name), None)


def close_names(name: str, n: int = 5) -> list[str]:
    return difflib.get_close_matches(name.lower(), [e.name for e in references()], n=n, cutoff=0.6)


def cached(entry: PublishedReference) -> dict | None:
    """The record of first use of the entry's file (its sha256, URL, date), or None when never used here."""
    return read_record(entry)


def open_published(name: str, *, sha256: str | None = None, download: bool | None = None) -> Reference:
    """The statistics of the published reference ``name``: downloaded into the cache on first use (unless
    ``download=False`` or ``FIDKIT_OFFLINE=1``), checked against the sha256 recorded then (and against ``sha256``
    and the entry's pinned value when given), read with the entry's provenance (``Provenance.source`` is the
    registry name).  Usable wherever a source is: ``fidkit.evaluate(open_published("imagenet256-adm"), ...)``."""
    entry = lookup(name)
    if entry is None:
        raise_unknown(name, close_names(name))
    path, digest, record = fetch(entry, sha256=sha256, download_allowed=download)
    ref = read(entry, path, digest)
    ref.description = describe(entry, digest, record)
    return ref


def describe(entry: PublishedReference, digest: str, record: dict) -> str:
    """How a result names the file: registry name, file, sha256 and where that sha256 comes from."""
    how = "pinned" if entry.sha256 else f"recorded at first use {str(record.get('recorded', ''))[:10]}".rstrip()
    return f"{entry.name} ({entry.filename}, sha256 {digest}, {how})"


def raise_unknown(name: str, hint: list[str]) -> NoReturn:
    raise BadInputError(f"{name!r} is not a published reference in fidkit's registry"
                        + (f"; close names: {', '.join(hint)}" if hint else "") + " (list them: fidkit refs)")
