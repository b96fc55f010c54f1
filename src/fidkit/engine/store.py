"""Per-sample features for the metrics that need them (KID, precision/recall, IS).

Rows are kept as float32 in memory up to a budget, then spilled to a
memory-mapped temporary file, so 50k x 2048 features cost a few hundred MB of
disk rather than of RAM.  The file is unlinked as soon as it is created: it
disappears with the process, even after a crash.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

#: Default in-memory budget before spilling to disk (per store).
SPILL_BYTES = 256 << 20


class FeatureStore:
    def __init__(self, dim: int, *, spill_bytes: int = SPILL_BYTES, directory: str | None = None):
        self.dim = dim
        self.spill_bytes = spill_bytes
        self.directory = directory
        self.n = 0
        self._chunks: list[np.ndarray] = []
        self._file = None

    def append(self, rows) -> None:
        if isinstance(rows, torch.Tensor):
            rows = rows.detach().to("cpu", torch.float32).numpy()
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"rows of shape {rows.shape} do not match dimension {self.dim}")
        if self._file is None and (self.n + len(rows)) * self.dim * 4 > self.spill_bytes:
            self._spill()
        if self._file is None:
            self._chunks.append(rows)
        else:
            self._file.write(rows.tobytes())
        self.n += len(rows)

    def _spill(self) -> None:
        fd, path = tempfile.mkstemp(prefix="fidkit-features-", suffix=".f32", dir=self.directory)
        os.unlink(path)  # the open descriptor keeps the data alive until we drop it
        self._file = os.fdopen(fd, "w+b")
        for chunk in self._chunks:
            self._file.write(chunk.tobytes())
        self._chunks = []

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def array(self) -> np.ndarray:
        """All rows as an ``n x dim`` float32 array (a read-only memory map once spilled)."""
        if self._file is None:
            if len(self._chunks) > 1:  # keep one copy, not chunks plus their concatenation
                self._chunks = [np.concatenate(self._chunks)]
            return self._chunks[0] if self._chunks else np.empty((0, self.dim), np.float32)
        self._file.flush()
        if self.n == 0:
            return np.empty((0, self.dim), np.float32)
        return np.memmap(self._file, dtype=np.float32, mode="r", shape=(self.n, self.dim))
