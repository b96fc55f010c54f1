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
``origin``                               where a converted file came from (JSON: the publisher's
                                         format, the source file's sha256, name and URL); optional
=======================================  =====================================================

Files of fidkit 0.1 (``fidkit-stats-v1``, ``features_pool3``) and files
holding only ``mu``/``sigma`` (pytorch-fid, clean-fid, TTUR, ADM, with unknown
provenance) load too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from fidkit._io import atomic_write, write_target
from fidkit.errors import BadInputError
import fidkit.stats.moments as _moments
from fidkit.stats.moments import FeatureStats
from fidkit.stats.provenance import Provenance, space_of

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
    #: where the statistics were converted from (:func:`fidkit.stats.published.convert_published`: the publisher's
    #: ``format``, the source file's ``sha256``, ``file`` and ``url``); ``None`` for statistics fidkit computed
    origin: dict | None = None

    @property
    def spaces(self) -> list[str]:
        return sorted(set(self.stats) | set(self.features))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ``.npz`` (atomically; see :func:`fidkit._io.atomic_write`) and return the path written.

        A name without the ``.npz`` suffix gets it, as ``numpy.savez`` does: fidkit reads statistics files by that
        suffix, so what is written can be read back.  A symbolic link is followed (the file it names is replaced);
        a folder, device, fifo or socket is refused, also when it is named without the suffix (``/dev/null``).
        """
        write_target(path)
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
        if self.origin is not None:
            arrays["origin"] = np.array(json.dumps(self.origin, sort_keys=True))
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
        """Read an open ``.npz``; every inconsistency that can be checked is a :class:`BadInputError` naming
        ``source`` and the key: a half of a mean/covariance pair, a count that is not one integer of at least 2,
        means and covariances that are not a ``d`` vector and a ``d x d`` matrix (``d >= 1``), provenance that is
        not one JSON string, features that are not a finite 2-D float array of the statistics' width, or whose
        rows disagree with the stored count or mean."""
        files = set(z.files)
        if not cls.is_statistics(sorted(files)):
            raise BadInputError(f"{source}: no 'mu' and 'sigma' arrays (found {sorted(files)})")
        spaces = set(_LEGACY) | {f[: -len("/mu")] for f in files if f.endswith("/mu")} \
            | {f[: -len("/sigma")] for f in files if f.endswith("/sigma")}
        stats, renamed = {}, {}
        for space in sorted(spaces):
            mu, sigma, n, prov = _keys(space)
            present = [k for k in (mu, sigma, n, prov) if k in files]
            if mu not in files or sigma not in files:
                if present:  # a pair cut in half, or a count without moments: never silently dropped
                    missing = [k for k in (mu, sigma) if k not in files]
                    raise BadInputError(f"{source}: has {', '.join(map(repr, present))} but no "
                                        f"{' or '.join(map(repr, missing))}")
                continue
            provenance = _provenance(z, prov, source) if prov in files else Provenance.unknown(source)
            count = _count(z, n, source) if n in files else None
            mean = _real_array(z, mu, source)
            if mean.ndim == 2 and 1 in mean.shape:  # a 1 x d or d x 1 mean written by hand
                mean = mean.reshape(-1)
            cov = _real_array(z, sigma, source)
            if mean.ndim != 1 or mean.size == 0:
                raise BadInputError(f"{source}: '{mu}' must be a vector of at least 1 value, got shape {mean.shape}")
            try:
                s = FeatureStats.from_moments(mean, cov, count, provenance)
            except (BadInputError, TypeError, ValueError) as e:
                raise BadInputError(f"{source}: invalid statistics '{mu}'/'{sigma}': {e}") from None
            s.provenance = provenance.with_source(provenance.source or source)
            # the space the statistics record, not the key they were stored under: files of fidkit before 0.2
            # stored some networks under their identity (``i3d-kinetics400/logits``)
            renamed[space] = space_of(s.provenance) if provenance.known else space
            stats[renamed[space]] = s
        features = {renamed.get(k, k): f for f in files if f.endswith("/features")
                    for k in [f[: -len("/features")]]}
        for legacy, space in _LEGACY_FEATURES.items():
            if legacy in files:
                features.setdefault(space, legacy)
        loaded = {}
        for space, key in features.items():
            f = _real_array(z, key, source)
            if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
                raise BadInputError(f"{source}: '{key}' must be a 2-D array of at least one row and one column "
                                    f"(samples x dimensions), got shape {f.shape}")
            if not np.isfinite(f).all():
                raise BadInputError(f"{source}: '{key}' contains NaN or Inf")
            st = stats.get(space)
            if st is not None:
                _check_features_match(f, st, key, _keys(space), source)
            loaded[space] = f
        origin = _origin(z, source) if "origin" in files else None
        return cls(stats, loaded, source, origin)


def _real_array(z, key: str, source: str) -> np.ndarray:
    a = z[key]
    if a.dtype.kind not in "fiu":  # bool, complex, strings, bytes, structured records
        raise BadInputError(f"{source}: '{key}' must hold real numbers, got dtype {a.dtype}")
    return a


def _count(z, key: str, source: str) -> int:
    a = z[key]
    if a.size != 1 or a.ndim > 1 or a.dtype.kind not in "fiu":
        raise BadInputError(f"{source}: '{key}' must be one integer sample count, got shape {a.shape} "
                            f"dtype {a.dtype}")
    v = a.reshape(()).item()
    if not (np.isfinite(v) and float(v) == int(v)):
        raise BadInputError(f"{source}: '{key}' = {v} is not a whole number of samples")
    if int(v) < 2:
        raise BadInputError(f"{source}: '{key}' = {int(v)}: a covariance needs at least 2 samples")
    return int(v)


def _provenance(z, key: str, source: str) -> Provenance:
    a = z[key]
    if a.dtype.kind != "U" or a.size != 1 or a.ndim > 1:
        raise BadInputError(f"{source}: '{key}' must be one JSON string, got shape {a.shape} dtype {a.dtype}")
    try:
        return Provenance.from_json(str(a.reshape(()).item()))
    except BadInputError as e:
        raise BadInputError(f"{source}: '{key}': {e}") from None


def _origin(z, source: str) -> dict:
    a = z["origin"]
    if a.dtype.kind != "U" or a.size != 1 or a.ndim > 1:
        raise BadInputError(f"{source}: 'origin' must be one JSON string, got shape {a.shape} dtype {a.dtype}")
    try:
        d = json.loads(str(a.reshape(()).item()))
    except ValueError as e:
        raise BadInputError(f"{source}: 'origin' is not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise BadInputError(f"{source}: 'origin' is a JSON {type(d).__name__}, not an object")
    return d


def _check_features_match(f: np.ndarray, st: FeatureStats, key: str, keys: tuple[str, ...], source: str) -> None:
    """Per-sample features stored beside statistics come from the same samples: same width, same count, same
    mean (up to the float32 rounding of the stored features)."""
    mu, _, n, _ = keys
    if f.shape[1] != st.dim:
        raise BadInputError(f"{source}: '{key}' has {f.shape[1]} columns but '{mu}' has {st.dim} values")
    if st.n is not None and f.shape[0] != st.n:
        raise BadInputError(f"{source}: '{key}' has {f.shape[0]} rows but '{n}' = {st.n}: the file was changed "
                            "or damaged")
    mean = f.mean(axis=0, dtype=np.float64)
    scale = max(float(np.abs(f).max()), float(np.abs(st.mean).max()), 1e-30)
    gap = float(np.abs(mean - st.mean).max())
    if gap > 1e-5 * scale:
        raise BadInputError(f"{source}: the mean of '{key}' differs from '{mu}' by up to {gap:.3g} (values up to "
                            f"{scale:.3g}): the file was changed or damaged")


def save_stats(stats: FeatureStats, path: str | os.PathLike) -> Path:
    """One feature space's statistics as a statistics file (:meth:`FeatureStats.save`)."""
    return Reference({stats.space: stats}).save(path)


def load_stats(path: str | os.PathLike) -> FeatureStats:
    """The only feature space of a statistics file, else its Inception pool3 (:meth:`FeatureStats.load`)."""
    stats = Reference.load(path).stats
    if len(stats) == 1:
        return next(iter(stats.values()))
    if POOL3 not in stats:
        raise BadInputError(f"{path}: holds statistics of {', '.join(sorted(stats))}; load it with "
                            "fidkit.Reference.load and pick one")
    return stats[POOL3]


_moments._FILE_FORMAT = sys.modules[__name__]   # FeatureStats.save/load read and write this format
