"""Streaming feature statistics: count, mean and co-moment in float64.

Memory is O(d^2) whatever the number of samples.  Batches are folded in with the
pairwise update of Chan, Golub & LeVeque (1979), which is exact in exact
arithmetic and numerically stable (no ``E[xx^T] - mu mu^T`` cancellation), and
the same formula merges shards, processes and checkpoints.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fidkit.errors import BadInputError
from fidkit.stats.provenance import Provenance, space_of


class FeatureStats:
    """Sufficient statistics of a set of feature vectors for the Fréchet distance.

    Build one with :meth:`empty` and :meth:`update`, or :meth:`from_features`, or
    from published moments with :meth:`from_moments`.  ``n`` is ``None`` only for
    moments whose sample count is unknown; such statistics can be compared but
    not merged.
    """

    def __init__(self, n: int | None, mean: np.ndarray, m2: np.ndarray | None,
                 provenance: Provenance | None = None, *, cov: np.ndarray | None = None):
        self.n = n
        self.mean = np.asarray(mean, dtype=np.float64)
        self._m2 = None if m2 is None else np.asarray(m2, dtype=np.float64)
        self._cov = None if cov is None else np.asarray(cov, dtype=np.float64)
        self.provenance = provenance if provenance is not None else Provenance()
        self._owned = False  # whether mean/_m2 are private arrays that update() may change in place

    # construction -----------------------------------------------------------------
    @classmethod
    def empty(cls, dim: int, provenance: Provenance | None = None) -> "FeatureStats":
        return cls(0, np.zeros(dim), np.zeros((dim, dim)), provenance)

    @classmethod
    def from_features(cls, features, provenance: Provenance | None = None) -> "FeatureStats":
        feats = _as_2d_float64(features, "features")
        stats = cls.empty(feats.shape[1], provenance)
        stats.update(feats)
        return stats

    @classmethod
    def from_moments(cls, mean, cov, n: int | None = None,
                     provenance: Provenance | None = None) -> "FeatureStats":
        """Statistics from a published mean and covariance (e.g. a pytorch-fid or ADM ``.npz``).

        ``cov`` is the unbiased sample covariance (divided by ``n - 1``), as
        ``np.cov`` and every reference implementation write it.
        """
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        cov = np.asarray(cov, dtype=np.float64)
        if cov.shape != (mean.size, mean.size):
            raise BadInputError(f"covariance of shape {cov.shape} does not match mean of length {mean.size}")
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise BadInputError("mean or covariance contains NaN or Inf")
        _check_covariance(cov)
        if provenance is None:
            provenance = Provenance.unknown()
        if n is None:
            return cls(None, mean, None, provenance, cov=cov)
        n = int(n)
        if n < 2:
            raise BadInputError(f"n={n}: a covariance needs at least 2 samples")
        return cls(n, mean, cov * (n - 1), provenance)

    # accumulation -----------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.mean.size

    def update(self, features) -> "FeatureStats":
        """Fold a batch of feature vectors (``b x d``, numpy or torch) into the statistics."""
        self._require_n("update")
        x = features.detach().to("cpu", torch.float64) if isinstance(features, torch.Tensor) \
            else torch.from_numpy(_as_2d_float64(features, "features"))
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise BadInputError(f"features of shape {tuple(x.shape)} do not match dimension {self.dim}")
        if x.shape[0] == 0:
            return self
        if not torch.isfinite(x).all():
            raise BadInputError("features contain NaN or Inf")
        b = x.shape[0]
        batch_mean = x.mean(0)
        xc = x - batch_mean
        if self.n == 0:
            self.n, self.mean, self._m2 = b, batch_mean.numpy(), (xc.T @ xc).numpy()
            self._owned = True
            return self
        if not self._owned:  # never change arrays the caller may still hold
            self.mean, self._m2 = np.array(self.mean), np.array(self._m2)
            self._owned = True
        # Chan's pairwise update, in place: two BLAS passes over the d x d co-moment and no d x d temporaries
        # (a rank-b update, then a rank-1 update), the same formula as merge().
        n = self.n + b
        mean, m2 = torch.from_numpy(self.mean), torch.from_numpy(self._m2)  # views: updated in place
        delta = batch_mean - mean
        m2.addmm_(xc.T, xc)
        m2.addr_(delta, delta, alpha=self.n * b / n)
        mean.add_(delta, alpha=b / n)
        self.n = n
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Exact combination of two disjoint sets of samples (returns a new object)."""
        self._require_n("merge")
        other._require_n("merge")
        if other.dim != self.dim:
            raise BadInputError(f"cannot merge statistics of dimension {self.dim} and {other.dim}")
        if self.n and other.n:
            self.provenance.check_comparable(other.provenance)
        if other.n == 0:
            return self.copy()
        if self.n == 0:
            return FeatureStats(other.n, other.mean.copy(), other._m2.copy(), self.provenance)
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self._m2 + other._m2 + np.outer(delta, delta) * (self.n * other.n / n)
        return FeatureStats(n, mean, m2, self.provenance)

    def copy(self) -> "FeatureStats":
        return FeatureStats(self.n, self.mean.copy(), None if self._m2 is None else self._m2.copy(),
                            self.provenance, cov=None if self._cov is None else self._cov.copy())

    @property
    def m2(self) -> np.ndarray:
        """The co-moment ``sum (x - mean)(x - mean)^T`` (float64): with ``n`` and ``mean``, what merges exactly."""
        self._require_n("read the co-moment of")
        return self._m2

    @property
    def cov(self) -> np.ndarray:
        """Unbiased sample covariance (divided by ``n - 1``)."""
        if self._cov is not None:
            return self._cov
        if self.n < 2:
            raise BadInputError(f"a covariance needs at least 2 samples, got {self.n}")
        return self._m2 / (self.n - 1)

    def _require_n(self, what: str) -> None:
        if self.n is None:
            raise BadInputError(f"cannot {what} statistics whose sample count is unknown (built from moments without n)")

    # persistence ------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.npz`` (no pickle).  Inception pool3 statistics go to ``mu``/``sigma`` as pytorch-fid and
        clean-fid read them; other feature spaces under their own names.  See :mod:`fidkit.stats.reference`."""
        return _file_format().save_stats(self, path)

    @property
    def space(self) -> str:
        """The feature space (``extractor/tap``) these statistics belong to: recorded in their provenance (files
        of older fidkit versions: derived from the network's identity, see :func:`~fidkit.stats.provenance.space_of`)."""
        return space_of(self.provenance)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        """Read statistics written by :meth:`save` (the only feature space of the file, else Inception pool3),
        or any ``.npz`` with ``mu`` and ``sigma``."""
        return _file_format().load_stats(path)

    def __repr__(self) -> str:
        return f"FeatureStats(n={self.n}, dim={self.dim}, provenance={self.provenance})"


#: The statistics file format (:mod:`fidkit.stats.reference`, which builds on this module and installs itself
#: here when ``fidkit.stats`` is imported): ``save_stats(stats, path)`` and ``load_stats(path)``.
_FILE_FORMAT = None


def _file_format():
    if _FILE_FORMAT is None:
        raise RuntimeError("fidkit.stats.reference is not loaded (import fidkit.stats)")
    return _FILE_FORMAT


def _check_covariance(cov: np.ndarray) -> None:
    """Refuse what no set of samples can produce: an asymmetric matrix, a negative variance, or a correlation
    beyond [-1, 1] (necessary conditions of positive semi-definiteness, O(d^2); the Fréchet distance checks
    the eigenvalues it computes anyway)."""
    scale = float(np.abs(cov).max()) if cov.size else 0.0
    tol = 1e-6 * scale
    asym = float(np.abs(cov - cov.T).max()) if cov.size else 0.0
    if asym > tol:
        raise BadInputError(f"the covariance is not symmetric (|S - S^T| up to {asym:.3g}, entries up to {scale:.3g})")
    diag = np.diagonal(cov)
    if diag.size and diag.min() < -tol:
        raise BadInputError(f"the covariance has a negative variance ({diag.min():.3g})")
    bound = np.sqrt(np.outer(np.clip(diag, 0, None), np.clip(diag, 0, None)))
    excess = float((np.abs(cov) - bound).max()) if cov.size else 0.0
    if excess > tol:
        raise BadInputError("the covariance is not positive semi-definite (a correlation exceeds 1 in magnitude)")


def _as_2d_float64(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim != 2:
        raise BadInputError(f"{name} must be a 2-D array (samples x dimensions), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number):
        raise BadInputError(f"{name} must be numeric, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    return a if a.flags.writeable else a.copy()  # torch.from_numpy needs writable memory
