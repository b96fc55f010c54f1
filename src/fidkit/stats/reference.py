"""Reference files: everything precomputed about one side of a comparison, in one ``.npz``, any number of
feature spaces.

Statistics and features are keyed by feature space, ``extractor/tap``
(``inception/pool3``, ``dinov2-vitl14/cls``).  Layout (no pickle, readable by
other tools):

=======================================  =====================================================
``mu``, ``sigma``                        ``inception/pool3`` mean and covariance (pytorch-fid,
                                         clean-fid, TTUR and ADM names)
``n``, ``provenance``                    its sample count and provenance (JSON)
``mu_s``, ``sigma_s``, ``n_s``, ...      ``inception/spatial`` (sFID; ADM's names)
``SPACE/mu``, ``SPACE/sigma``,           any other feature space
``SPACE/n``, ``SPACE/provenance``
``SPACE/features``                       per-sample features, float32 (KID, precision/recall, CMMD)
``format``                               ``fidkit-stats-v2``
=======================================  =====================================================

Files of fidkit 0.1 (``fidkit-stats-v1``, ``features_pool3``) and files
holding only ``mu``/``sigma`` (pytorch-fid, clean-fid, TTUR, ADM, with unknown
provenance) load too.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from fidkit._io import atomic_write
from fidkit.errors import BadInputError
from fidkit.stats.moments import FeatureStats
from fidkit.stats.provenance import Provenance

FORMAT = "fidkit-stats-v2"
POOL3, SPATIAL = "inception/pool3", "inception/spatial"
#: Feature spaces stored under the names other tools read.
_LEGACY = {POOL3: ("mu", "sigma", "n", "provenance"), SPATIAL: ("mu_s", "sigma_s", "n_s", "provenance_s")}
_LEGACY_FEATURES = {"features_pool3": POOL3}


def npz_path(path: str | os.PathLike) -> Path:
    """``path`` with the ``.npz`` suffix added when it lacks it (any letter case counts)."""
    path = Path(path)
    return path if path.name.lower().endswith(".npz") else path.with_name(path.name + ".npz")


def _keys(space: str) -> tuple[str, str, str, str]:
    return _LEGACY.get(space) or (f"{space}/mu", f"{space}/sigma", f"{space}/n", f"{space}/provenance")


@dataclasses.dataclass
class Reference:
    """Statistics and per-sample features of one source, per feature space."""

    stats: dict[str, FeatureStats]
    features: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    description: str = "reference"

    @property
    def spaces(self) -> list[str]:
        return sorted(set(self.stats) | set(self.features))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ``.npz`` (atomically; see :func:`fidkit._io.atomic_write`) and return the path written.

        A name without the ``.npz`` suffix gets it, as ``numpy.savez`` does: fidkit reads statistics files by that
        suffix, so what is written can be read back.  A symbolic link is followed (the file it names is replaced);
        a folder, device, fifo or socket is refused.
        """
        path = npz_path(path)
        arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT)}
        for space, s in self.stats.items():
            mu, sigma, n, prov = _keys(space)
            arrays[mu], arrays[sigma] = s.mean, s.cov
            arrays[prov] = np.array(s.provenance.to_json())
            if s.n is not None:
                arrays[n] = np.array(s.n, dtype=np.int64)
        for space, f in self.features.items():
            arrays[f"{space}/features"] = np.asarray(f, dtype=np.float32)
        with atomic_write(path) as out:
            np.savez(out, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Reference":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls.from_npz(z, str(path))
        except BadInputError:
            raise
        except Exception as e:  # noqa: BLE001  (numpy's parser raises many kinds for a damaged file)
            raise BadInputError(f"{path}: not a readable statistics file ({type(e).__name__}: {e})") from e

    @staticmethod
    def is_statistics(files: list[str]) -> bool:
        return ("mu" in files and "sigma" in files) or any(f.endswith("/mu") for f in files)

    @classmethod
    def from_npz(cls, z, source: str) -> "Reference":
        files = set(z.files)
        if not cls.is_statistics(sorted(files)):
            raise BadInputError(f"{source}: no 'mu' and 'sigma' arrays (found {sorted(files)})")
        spaces = set(_LEGACY) | {f[: -len("/mu")] for f in files if f.endswith("/mu")}
        stats = {}
        for space in sorted(spaces):
            mu, sigma, n, prov = _keys(space)
            if mu not in files or sigma not in files:
                continue
            try:
                provenance = Provenance.from_json(str(z[prov])) if prov in files else Provenance.unknown(source)
            except BadInputError as e:
                raise BadInputError(f"{source}: '{prov}': {e}") from None
            try:
                count = int(z[n]) if n in files else None
                s = FeatureStats.from_moments(z[mu], z[sigma], count, provenance)
            except (BadInputError, TypeError, ValueError) as e:
                raise BadInputError(f"{source}: invalid statistics '{mu}'/'{sigma}': {e}") from None
            s.provenance = provenance.with_source(provenance.source or source)
            stats[space] = s
        features = {f[: -len("/features")]: z[f] for f in files if f.endswith("/features")}
        for legacy, space in _LEGACY_FEATURES.items():
            if legacy in files:
                features.setdefault(space, z[legacy])
        return cls(stats, features, source)
