"""Where a long pass stands: the fingerprint of the images it has seen, and checkpoints to resume it.

A :class:`Listing` chains a sha256 over item names and *stamps* in order, so two
processes (or a run and its resumption) can tell whether they saw the same
images.  A stamp identifies an item's content cheaply: for a resume, a file's
size and modification time (ns) and an archive member's size (with its CRC or
its mtime); across processes, where copies on different machines may have other
modification times, a file's size and a hash of its first and last 64 KiB.  A
:class:`Checkpoint` saves the accumulated state of an offline pass beside its
output now and then, with the name and stamp of every item already counted; a
rerun with the same settings checks that those items are unchanged (refusing,
with the changed files named, when they are not) and continues after them, with
the same result as an uninterrupted run (the batches fall on the same
boundaries, so the same samples go through the network together).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from pathlib import Path

import numpy as np
import torch

from fidkit._io import atomic_write
from fidkit.errors import BadInputError

FORMAT = "fidkit-checkpoint-v2"
#: bytes hashed at each end of a file for its content stamp (cross-process checks)
CONTENT_EDGE = 64 << 10
RESTART = "start over with --restart (or delete the checkpoint file; evaluate(): restart=True)"


class Listing:
    """A fingerprint of item names and stamps, in order; with ``keep`` it also keeps every (name, stamp)."""

    def __init__(self, digest: str = "", count: int = 0, keep: bool = False):
        self.digest, self.count = digest, count
        self.records: list[tuple[str, str]] | None = [] if keep else None

    def see(self, name: str, stamp: str = "") -> None:
        self.digest = hashlib.sha256(self.digest.encode() + _b(name) + b"\0" + _b(stamp)).hexdigest()
        self.count += 1
        if self.records is not None:
            self.records.append((name, stamp))

    @property
    def fingerprint(self) -> str:
        return f"{self.count}:{self.digest[:16]}"


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def path_stamp(path: str, content: bool = False) -> str | None:
    """The stamp of a file (``size:mtime_ns``, or with ``content`` ``size:hash`` of its first and last 64 KiB) or
    of a folder (over its files, one level: a frame folder); None when ``path`` names no file or folder."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if stat.S_ISDIR(st.st_mode):
        h = hashlib.blake2b(digest_size=8)
        try:
            entries = sorted(os.listdir(path))
        except OSError:
            return None
        for name in entries:
            sub = path_stamp(os.path.join(path, name), content) if os.path.isfile(os.path.join(path, name)) else None
            if sub is not None:
                h.update(_b(name) + b"\0" + sub.encode() + b"\0")
        return f"folder:{len(entries)}:{h.hexdigest()}"
    if not stat.S_ISREG(st.st_mode):
        return None
    if not content:
        return f"{st.st_size}:{st.st_mtime_ns}"
    h = hashlib.blake2b(digest_size=8)
    try:
        with open(path, "rb") as f:
            h.update(f.read(CONTENT_EDGE))
            if st.st_size > CONTENT_EDGE:
                f.seek(max(CONTENT_EDGE, st.st_size - CONTENT_EDGE))
                h.update(f.read(CONTENT_EDGE))
    except OSError:
        return f"{st.st_size}:unreadable"
    return f"{st.st_size}:{h.hexdigest()}"


def item_stamp(source, name: str, content: bool = False) -> str:
    """The stamp of one item of ``source``: what the source records for it (archive members), else that of the
    file or folder it names, else "" (in-memory and array rows, which the source's own stamp covers)."""
    own = getattr(source, "stamp", None)
    if own is not None:
        s = own(name)
        if s is not None:
            return s
    return path_stamp(name, content) or ""


def describe_stamp(stamp: str) -> str:
    parts = stamp.split(":")
    if parts[0] == "folder":
        return f"{parts[1]} entries, content {parts[2]}" if len(parts) == 3 else stamp
    if len(parts) == 2 and parts[0].isdigit():
        if parts[1].isdigit() and len(parts[1]) >= 15:  # nanoseconds since the epoch
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(parts[1]) / 1e9))
            return f"{int(parts[0]):,} bytes, modified {when}.{int(parts[1]) % 10**9:09d}"
        return f"{int(parts[0]):,} bytes, content {parts[1]}"
    return stamp or "no stamp"


def input_changes(saved: list[tuple[str, str]], current: list[tuple[str, str]], shown: int = 5) -> str:
    """What differs between the items a checkpoint counted and the items now at those positions ("" if nothing)."""
    if saved == current:
        return ""
    before, now = dict(saved), dict(current)
    changed = [n for n in before if n in now and before[n] != now[n]]
    gone = [n for n in before if n not in now]
    new = [n for n in now if n not in before]
    parts = []
    for what, names, how in (("changed", changed, True), ("no longer there (removed or renamed)", gone, False),
                             ("new among them (added or renamed)", new, False)):
        if names:
            listed = "; ".join(f"{n} ({describe_stamp(before[n])} -> {describe_stamp(now[n])})" if how else n
                               for n in names[:shown])
            parts.append(f"{len(names)} {what}: {listed}" + (" ..." if len(names) > shown else ""))
    if not parts:
        first = next(i for i, (a, b) in enumerate(zip(saved, current)) if a != b) if len(saved) == len(current) \
            else min(len(saved), len(current))
        parts.append(f"the order differs from item {first} on")
    return "; ".join(parts)


def encode_records(records: list[tuple[str, str]], root: str = "") -> torch.Tensor:
    """(name, stamp) pairs as one uint8 tensor (loadable with ``weights_only=True``); names below ``root`` are
    stored relative to it."""
    prefix = root.rstrip(os.sep) + os.sep if root else None
    out = bytearray()
    for name, stamp in records:
        if prefix and name.startswith(prefix):
            name = "\1" + name[len(prefix):]
        out += _b(name) + b"\0" + _b(stamp) + b"\0"
    return torch.from_numpy(np.frombuffer(bytes(out), dtype=np.uint8).copy())


def decode_records(data: torch.Tensor, root: str = "") -> list[tuple[str, str]]:
    prefix = root.rstrip(os.sep) + os.sep if root else ""
    parts = bytes(data.numpy().tobytes()).split(b"\0")[:-1]
    if len(parts) % 2:
        raise ValueError("odd number of fields")
    names = [p.decode("utf-8", "surrogateescape") for p in parts[0::2]]
    stamps = [p.decode("utf-8", "surrogateescape") for p in parts[1::2]]
    return [(prefix + n[1:] if n.startswith("\1") else n, s) for n, s in zip(names, stamps)]


class Checkpoint:
    """Progress of one offline pass, saved to ``path`` at most every ``every_s`` seconds (atomically)."""

    def __init__(self, path: str | os.PathLike, *, every_s: float = 60.0, discard_mismatch: bool = False):
        self.path = Path(path)
        self.every_s = every_s
        #: a checkpoint of other settings is removed (automatic checkpoints in the cache) instead of refused;
        #: one whose *inputs* changed is always refused
        self.discard_mismatch = discard_mismatch
        self._last = time.monotonic()

    def load(self, identity: dict) -> dict | None:
        """The saved progress if there is any; refuses a checkpoint of another computation."""
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (torch raises many kinds for a damaged file)
            raise BadInputError(f"{self.path}: not a readable fidkit checkpoint ({e}); delete it to start over") \
                from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            old = isinstance(saved, dict) and str(saved.get("format", "")).startswith("fidkit-checkpoint")
            if old and self.discard_mismatch:
                self.remove()
                return None
            raise BadInputError(f"{self.path}: not a fidkit checkpoint{' this version resumes' if old else ''}; "
                                "delete it, or pass --restart, to start over")
        theirs = saved.get("identity", {})
        diffs = [k for k in sorted(set(identity) | set(theirs)) if identity.get(k) != theirs.get(k)]
        if diffs and self.discard_mismatch:
            self.remove()
            return None
        if diffs:
            raise BadInputError(f"{self.path}: a checkpoint of another computation (it differs in "
                                f"{', '.join(diffs)}); delete it, or pass --restart, to start over")
        return saved

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def save(self, identity: dict, state: dict, listing: Listing, diagnostics: dict, *, root: str = "",
             input_stamp: str | None = None) -> None:
        with atomic_write(self.path) as f:
            torch.save({"format": FORMAT, "identity": identity, "state": state, "count": listing.count,
                        "digest": listing.digest, "records": encode_records(listing.records or [], root),
                        "input": input_stamp or "", "diagnostics": diagnostics}, f)
        self._last = time.monotonic()

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
