"""The Fréchet distance between two Gaussians, exact and never complex.

    d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr sqrt(S_a S_b)

The eigenvalues of ``S_a S_b`` equal those of the symmetric positive
semi-definite ``F^T S_b F`` for any factor ``S_a = F F^T``, so the trace term is
the sum of square roots of the eigenvalues of a symmetric matrix: real, and
computed by a symmetric eigen-solver.  ``F`` is the Cholesky factor when ``S_a``
is numerically positive definite (fast), otherwise ``V sqrt(w)`` from an
eigen-decomposition restricted to the numerically non-zero eigenvalues (correct
for singular covariances, N < d).  Eigenvalues below the solver's rounding level
are treated as zero instead of producing NaN or imaginary parts.

This replaces SciPy's general matrix square root (slow, and version-dependent: scipy#19415)
and the ``eps`` retry of the TTUR code, and never discards an imaginary part.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from fidkit.errors import BadInputError
from fidkit.stats.moments import FeatureStats

_EPS = np.finfo(np.float64).eps


def frechet_distance(a: FeatureStats, b: FeatureStats, *, force: bool = False) -> float:
    """FID-style Fréchet distance between two :class:`FeatureStats`.

    Refuses (``IncomparableStatsError``) statistics with different provenance
    unless ``force``.  Use :func:`frechet_distance_from_moments` for raw arrays.
    """
    a.provenance.check_comparable(b.provenance, force=force)
    return frechet_distance_of_stats(a, b)


def frechet_distance_of_stats(a: FeatureStats, b: FeatureStats) -> float:
    """The Fréchet distance of two statistics whose comparability the caller has settled (fidkit's request
    checks it once, before the feature pass); errors name both sources."""
    return frechet_terms_of_stats(a, b).value


@dataclasses.dataclass(frozen=True)
class FrechetTerms:
    """The Fréchet distance as its two terms: ``mean`` = |mu_a - mu_b|^2 (the means differ) and ``cov`` =
    tr S_a + tr S_b - 2 tr sqrt(S_a S_b) (the spreads differ).  ``value`` is their sum, the distance itself."""

    mean: float
    cov: float

    @property
    def value(self) -> float:
        return self.mean + self.cov


def frechet_terms_of_stats(a: FeatureStats, b: FeatureStats) -> FrechetTerms:
    """:func:`frechet_distance_of_stats` as its mean and covariance terms; errors name both sources."""
    try:
        return frechet_terms_from_moments(a.mean, a.cov, b.mean, b.cov, n_a=a.n, n_b=b.n)
    except BadInputError as e:
        names = " and ".join(dict.fromkeys(p.source or "statistics" for p in (a.provenance, b.provenance)))
        raise BadInputError(f"{names}: {e}") from None


def frechet_distance_from_moments(mu_a, cov_a, mu_b, cov_b, *,
                                  n_a: int | None = None, n_b: int | None = None) -> float:
    """Fréchet distance from means and covariances (float64, any positive semi-definite input).

    ``n_a``/``n_b`` (sample counts, optional) only choose the faster route: a
    covariance from fewer than ``d + 1`` samples is known to be singular.
    """
    return frechet_terms_from_moments(mu_a, cov_a, mu_b, cov_b, n_a=n_a, n_b=n_b).value


def frechet_terms_from_moments(mu_a, cov_a, mu_b, cov_b, *,
                               n_a: int | None = None, n_b: int | None = None) -> FrechetTerms:
    """:func:`frechet_distance_from_moments` as its mean and covariance terms, from the same computation (the
    same trace-square-root route, low-rank included), so that the terms sum to the distance exactly."""
    mu_a, mu_b = (np.asarray(m, dtype=np.float64).reshape(-1) for m in (mu_a, mu_b))
    cov_a, cov_b = (np.asarray(c, dtype=np.float64) for c in (cov_a, cov_b))
    d = mu_a.size
    for name, m, c in (("a", mu_a, cov_a), ("b", mu_b, cov_b)):
        if m.size != d or c.shape != (d, d):
            raise BadInputError(f"shape mismatch: mean {name} has {m.size} entries, covariance {c.shape}, expected {d}")
        if not (np.isfinite(m).all() and np.isfinite(c).all()):
            raise BadInputError(f"mean or covariance {name} contains NaN or Inf")
    diff = mu_a - mu_b
    mean_term = float(diff @ diff)
    traces = float(np.trace(cov_a) + np.trace(cov_b))
    cov_term = traces - 2.0 * trace_sqrt_product(cov_a, cov_b, n_a=n_a, n_b=n_b)
    scale = mean_term + traces
    value = mean_term + cov_term
    # Identical inputs give 0 up to rounding; a tiny negative is rounding, not a distance.  A clearly negative
    # value can only come from covariances that are not positive semi-definite: an error, never a clamp.
    if value < -1e-9 * max(scale, 1.0):
        raise BadInputError(f"the Fréchet distance came out negative ({value:.6g}): a covariance is not positive "
                            "semi-definite")
    # The covariance term alone is >= 0 in exact arithmetic (tr sqrt(S_a S_b) <= (tr S_a + tr S_b) / 2); a
    # rounding-level negative is set to 0 so that neither term, nor their sum, is ever reported below zero.
    return FrechetTerms(mean_term, max(cov_term, 0.0))


def trace_sqrt_product(cov_a, cov_b, *, n_a: int | None = None, n_b: int | None = None) -> float:
    """``tr sqrt(cov_a @ cov_b)`` for symmetric positive semi-definite inputs."""
    sa = torch.from_numpy(np.ascontiguousarray(cov_a, dtype=np.float64))
    sb = torch.from_numpy(np.ascontiguousarray(cov_b, dtype=np.float64))
    d = sa.shape[0]
    deficient_a = n_a is not None and n_a - 1 < d
    deficient_b = n_b is not None and n_b - 1 < d
    if deficient_a and not deficient_b:
        # tr sqrt(AB) = tr sqrt(BA): factor the side that can be full rank.
        sa, sb, deficient_a = sb, sa, False
    # The LAPACK routines below read one triangle only (Cholesky, eigh and eigvalsh
    # use the lower one), so rounding-level asymmetry in the inputs is harmless and
    # no symmetrised copies are made.
    factor = None if deficient_a else _cholesky_if_well_conditioned(sa)
    if factor is None and deficient_a and n_a - 1 <= d // 4:
        # both sides from few samples: cov_a has rank at most n_a - 1, and Cholesky with full pivoting finds that
        # factor in O(d r^2) where the eigen-decomposition costs O(d^3) (12 s at d = 2048 on two cores)
        factor = _pivoted_cholesky(sa, n_a - 1)
    if factor is None:
        factor = _psd_factor(sa)
    if factor.shape[1] == 0:  # cov_a is zero (all samples identical): the product is zero
        return 0.0
    eig = torch.linalg.eigvalsh(factor.T @ (sb @ factor))
    if eig.numel() and eig.min() < -1e-6 * eig.abs().max():
        raise BadInputError(f"a covariance is not positive semi-definite (eigenvalue {float(eig.min()):.3g} of the "
                            "product)")
    tol = eig.abs().max() * eig.shape[0] * _EPS
    eig = torch.where(eig > tol, eig, torch.zeros_like(eig))
    return float(eig.sqrt().sum())


def _cholesky_if_well_conditioned(s: torch.Tensor) -> torch.Tensor | None:
    factor, info = torch.linalg.cholesky_ex(s)
    if int(info) != 0:
        return None
    # A pivot near rounding level means s is singular in all but name: the
    # eigen route then handles the null space exactly.
    pivots = torch.diagonal(factor) ** 2
    if pivots.min() <= s.diagonal().abs().max() * s.shape[0] * 1e3 * _EPS:
        return None
    return factor


def _pivoted_cholesky(s: torch.Tensor, max_rank: int) -> torch.Tensor | None:
    """``F`` (d x r) with ``F F^T = s`` for a positive semi-definite ``s`` of numerical rank ``r <= max_rank``, by
    Cholesky with full (diagonal) pivoting, stopping when every remaining pivot is at rounding level (the same
    threshold the eigen route uses for eigenvalues); ``None`` when ``s`` has more pivots than ``max_rank`` (it is
    then not of the rank its sample count implies) or a negative pivot, so the caller takes the eigen route."""
    d = s.shape[0]
    diag = s.diagonal().clone()
    tol = float(diag.abs().max()) * d * _EPS if d else 0.0
    factor = torch.zeros(d, max_rank, dtype=s.dtype)
    for k in range(max_rank + 1):
        j = int(torch.argmax(diag))
        pivot = float(diag[j])
        if pivot <= tol:
            if float(diag.min()) < -1e-6 * max(float(s.diagonal().abs().max()), tol):
                return None  # not positive semi-definite: the eigen route says so precisely
            return factor[:, :k]
        if k == max_rank:
            return None
        column = (s[:, j] - factor[:, :k] @ factor[j, :k]) / pivot ** 0.5
        factor[:, k] = column
        diag -= column * column
        diag[j] = 0.0
    return None


def _psd_factor(s: torch.Tensor) -> torch.Tensor:
    """``F`` with ``F F^T = s`` over the numerically non-zero eigenvalues (d x r)."""
    w, v = torch.linalg.eigh(s)
    tol = w.abs().max() * s.shape[0] * _EPS
    if w.numel() and w.min() < -1e-6 * w.abs().max():
        raise BadInputError(f"a covariance is not positive semi-definite (eigenvalue {float(w.min()):.3g}, "
                            f"largest {float(w.abs().max()):.3g})")
    keep = w > tol
    return v[:, keep] * w[keep].sqrt()
