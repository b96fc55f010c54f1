"""How much a score moves with the sample: percentile bootstrap and the FID noise floor.

The bootstrap redraws the N samples with replacement ``resamples`` times and
reports the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of
the recomputed statistic (numpy's default linear interpolation) and its
standard deviation over the resamples (ddof=1, the bootstrap standard error).
Resample ``r`` is ``rng.integers(0, N, size=N)`` from one
``np.random.default_rng(seed)``, so :func:`fid_bootstrap` and
:func:`bootstrap_interval` with the same seed see the same resamples.

The noise floor is the FID between two disjoint random halves of the real
set: the value two samples of one distribution already differ by at that size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from fidkit.errors import BadInputError
from fidkit.stats.moments import FeatureStats
from fidkit.metrics.frechet import frechet_distance_from_moments
from fidkit.metrics._common import as_finite_2d, positive_int

#: Rows per matrix product in the weighted covariance (bounds the temporary copy).
_CHUNK_ROWS = 8192


@dataclasses.dataclass(frozen=True)
class BootstrapInterval:
    """Percentile interval ``[low, high]`` at ``confidence``; ``std`` is the bootstrap standard error."""

    low: float
    high: float
    std: float
    confidence: float
    values: tuple[float, ...]


def bootstrap_interval(statistic_fn: Callable[[np.ndarray], float], n: int, *, resamples: int = 100,
                       confidence: float = 0.95, seed: int = 0) -> BootstrapInterval:
    """Percentile bootstrap of ``statistic_fn(indices)`` over resamples of ``range(n)``.

    ``statistic_fn`` receives an integer array of ``n`` indices drawn with
    replacement and returns the statistic of those samples.
    """
    n = positive_int(n, "n")
    resamples, confidence = _check_options(resamples, confidence)
    rng = np.random.default_rng(seed)
    values = [float(statistic_fn(_resample_indices(rng, n))) for _ in range(resamples)]
    return _interval(values, confidence)


def fid_bootstrap(fake_features, real_stats: FeatureStats, *, resamples: int = 100, confidence: float = 0.95,
                  seed: int = 0) -> BootstrapInterval:
    """Bootstrap interval of FID(fake, real) over resamples of the fake features (real statistics fixed).

    A resample is represented by how often each row was drawn, and its mean
    and covariance are weighted sums over the original rows: no resampled
    copy of the features is ever built.  Each resample costs one weighted
    ``d x d`` co-moment over the distinct rows drawn (about 0.63 N) and one
    Fréchet distance.
    """
    x = as_finite_2d(fake_features, "fake_features")
    n, d = x.shape
    if d != real_stats.dim:
        raise BadInputError(f"fake_features has dimension {d} but real_stats has {real_stats.dim}")
    if n < 2:
        raise BadInputError(f"fake_features has {n} samples; a covariance needs at least 2")
    resamples, confidence = _check_options(resamples, confidence)
    center = x.mean(axis=0)
    # Centred once, so the weighted co-moment below sums small numbers (no E[xx^T] - mu mu^T cancellation).
    centred = x - center
    del x
    real_mean, real_cov = real_stats.mean, real_stats.cov
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        counts = np.bincount(_resample_indices(rng, n), minlength=n)
        rows = np.flatnonzero(counts)
        weights = counts[rows].astype(np.float64)
        shift = np.zeros(d)
        m2 = np.zeros((d, d))
        for start in range(0, rows.size, _CHUNK_ROWS):
            block = centred[rows[start:start + _CHUNK_ROWS]]
            w = weights[start:start + _CHUNK_ROWS]
            shift += w @ block
            m2 += (block * w[:, None]).T @ block
        shift /= n
        cov = (m2 - n * np.outer(shift, shift)) / (n - 1)
        values.append(frechet_distance_from_moments(center + shift, cov, real_mean, real_cov,
                                                    n_a=rows.size, n_b=real_stats.n))
    return _interval(values, confidence)


def fid_noise_floor(real_features, n: int, *, seed: int = 0) -> float:
    """FID between two disjoint random subsets of ``n`` real samples each.

    With ``perm = np.random.default_rng(seed).permutation(N)`` the halves are
    rows ``perm[:n]`` and ``perm[n:2n]``.  A model's FID at ``n`` samples is
    indistinguishable from a perfect model's below roughly this value.
    """
    x = as_finite_2d(real_features, "real_features")
    n = positive_int(n, "n")
    if n < 2:
        raise BadInputError(f"n must be at least 2 (a covariance needs 2 samples), got {n}")
    if 2 * n > x.shape[0]:
        raise BadInputError(f"n={n}: two disjoint halves need 2n={2 * n} samples but real_features has {x.shape[0]}")
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    a = FeatureStats.from_features(x[perm[:n]])
    b = FeatureStats.from_features(x[perm[n:2 * n]])
    return frechet_distance_from_moments(a.mean, a.cov, b.mean, b.cov, n_a=n, n_b=n)


def _resample_indices(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, n, size=n)


def _check_options(resamples, confidence) -> tuple[int, float]:
    resamples = positive_int(resamples, "resamples")
    if resamples < 2:
        raise BadInputError(f"resamples must be at least 2 for a spread, got {resamples}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise BadInputError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return resamples, float(confidence)


def _interval(values: list[float], confidence: float) -> BootstrapInterval:
    v = np.asarray(values, dtype=np.float64)
    low, high = np.quantile(v, [(1 - confidence) / 2, (1 + confidence) / 2])
    return BootstrapInterval(low=float(low), high=float(high), std=float(v.std(ddof=1)),
                             confidence=confidence, values=tuple(float(x) for x in v))
