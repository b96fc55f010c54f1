"""Where a long pass stands: the fingerprint of the images it has seen, and checkpoints to resume it.

A :class:`Listing` chains a sha256 over item names in order, so two processes
(or a run and its resumption) can tell whether they saw the same images.  A
:class:`Checkpoint` saves the accumulated state of an offline pass beside its
output now and then; a rerun with the same settings continues after the images
already counted and gives the same result as an uninterrupted run (the batches
fall on the same boundaries, so the same samples go through the network
together).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

import torch

from fidkit._io import atomic_write
from fidkit.errors import BadInputError

FORMAT = "fidkit-checkpoint-v1"


class Listing:
    """A fingerprint of item names, in order; it can be restored from :attr:`state` and continued."""

    def __init__(self, digest: str = "", count: int = 0):
        self.digest, self.count = digest, count

    def see(self, name: str) -> None:
        self.digest = hashlib.sha256(self.digest.encode() + name.encode("utf-8", "surrogateescape")).hexdigest()
        self.count += 1

    @property
    def fingerprint(self) -> str:
        return f"{self.count}:{self.digest[:16]}"


class Checkpoint:
    """Progress of one offline pass, saved to ``path`` at most every ``every_s`` seconds (atomically)."""

    def __init__(self, path: str | os.PathLike, *, every_s: float = 60.0, discard_mismatch: bool = False):
        self.path = Path(path)
        self.every_s = every_s
        #: a checkpoint of other settings is removed (automatic checkpoints in the cache) instead of refused
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
            raise BadInputError(f"{self.path}: not a fidkit checkpoint; delete it to start over")
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

    def save(self, identity: dict, state: dict, listing: Listing, diagnostics: dict) -> None:
        with atomic_write(self.path) as f:
            torch.save({"format": FORMAT, "identity": identity, "state": state, "count": listing.count,
                        "digest": listing.digest, "diagnostics": diagnostics}, f)
        self._last = time.monotonic()

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
