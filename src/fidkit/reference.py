"""Reference files: everything precomputed about one side of a comparison, in one ``.npz``.

Layout (no pickle, readable by other tools):

=================================  =========================================================
``mu``, ``sigma``                  pool3 mean and covariance (pytorch-fid, clean-fid, ADM names)
``n``, ``provenance``              pool3 sample count and provenance (JSON)
``mu_s``, ``sigma_s``              spatial (sFID) mean and covariance (ADM's names)
``n_s``, ``provenance_s``          their sample count and provenance
``features_pool3``                 per-sample pool3 features, float32 (for KID, precision/recall)
``format``                         ``fidkit-stats-v1``
=================================  =========================================================

Only ``mu`` and ``sigma`` are required, so pytorch-fid, clean-fid, TTUR and ADM
files load too (with unknown provenance).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path

import numpy as np

from ._io import atomic_write
from .errors import BadInputError
from .provenance import Provenance
from .stats import FeatureStats

FORMAT = "fidkit-stats-v1"
_STAT_KEYS = {"pool3": ("mu", "sigma", "n", "provenance"), "spatial": ("mu_s", "sigma_s", "n_s", "provenance_s")}


@dataclasses.dataclass
class Reference:
    stats: dict[str, FeatureStats]
    features: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    description: str = "reference"

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT)}
        for tap, s in self.stats.items():
            mu, sigma, n, prov = _STAT_KEYS[tap]
            arrays[mu], arrays[sigma] = s.mean, s.cov
            arrays[prov] = np.array(s.provenance.to_json())
            if s.n is not None:
                arrays[n] = np.array(s.n, dtype=np.int64)
        for tap, f in self.features.items():
            arrays[f"features_{tap}"] = np.asarray(f, dtype=np.float32)
        with atomic_write(path) as out:
            np.savez(out, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Reference":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls.from_npz(z, str(path))
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise BadInputError(f"{path}: not a readable statistics file ({e})") from e

    @classmethod
    def from_npz(cls, z, source: str) -> "Reference":
        if "mu" not in z.files or "sigma" not in z.files:
            raise BadInputError(f"{source}: no 'mu' and 'sigma' arrays (found {sorted(z.files)})")
        stats = {}
        for tap, (mu, sigma, n, prov) in _STAT_KEYS.items():
            if mu not in z.files or sigma not in z.files:
                continue
            provenance = Provenance.from_json(str(z[prov])) if prov in z.files else Provenance.unknown(source)
            s = FeatureStats.from_moments(z[mu], z[sigma], int(z[n]) if n in z.files else None, provenance)
            s.provenance = provenance.with_source(provenance.source or source)
            stats[tap] = s
        features = {k[len("features_"):]: z[k] for k in z.files if k.startswith("features_")}
        return cls(stats, features, source)
