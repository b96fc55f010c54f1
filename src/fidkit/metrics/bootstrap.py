"""How much a score moves with the sample: bootstrap intervals and the FID noise floor.

**What the FID interval covers.**  :func:`fid_bootstrap` gives an interval for
the *expected FID at this sample size*: ``E[FID_N]``, the average over fresh
draws of ``N`` generated samples of the FID against the fixed real statistics,
``N`` being the number of rows of ``fake_features``.  That is the quantity a
reported FID estimates (FID_N is an unbiased estimate of it), and the one two
models evaluated with the same ``N`` are compared on.  It is *not* the
population Fréchet distance (``N -> infinity``): FID_N exceeds that by a bias
close to ``c / N`` (Chong & Forsyth 2020), which no resampling of one set
removes reliably; :func:`fidkit.metrics.fid_infinity` estimates that limit.

Only the generated side is resampled: the real side is fixed statistics (a
reference file may hold nothing but a mean and a covariance), so the interval
says nothing about the sampling noise of the reference set.

**Why not the plain percentile interval.**  A resample drawn with
replacement holds about 0.63 N distinct rows, and the Fréchet distance is
biased upward by duplicated and small samples, so the resampled FIDs sit above
the estimate by roughly that bias; their plain percentiles then cover
``E[FID_N]`` far less often than stated and can even exclude the estimate.

**The interval used: bias-shifted percentiles.**  The bootstrap supplies only
the spread and shape of the estimate's error (Efron & Tibshirani 1993, ch. 10
and 13): ``FID_N - E[FID_N]`` is taken to be distributed like ``FID* - m``,
``m`` being the mean of the resampled FIDs ``FID*`` (the expected FID at N of
the resampling world), and the resampled distribution is moved by its bias
``m - FID_N`` so that it is centred on the estimate.  With ``q_lo``, ``q_hi``
the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
resampled FIDs (numpy's linear interpolation)::

    low  = max(FID_N + (q_lo - m), 0)        high = FID_N + (q_hi - m)

The interval always contains FID_N (``q_lo <= m <= q_hi``); ``low`` is cut at
0, below which no FID lies (this cannot lower the coverage).

Coverage was measured by simulation on Gaussians with a known ``E[FID_N]``
(d = 4-8, N = 200-500, 300-400 repetitions, 200 resamples;
``tests/metrics/test_metrics_bootstrap_coverage.py``): 0.95-0.96 for the nominal 0.95
when the distance is clearly non-zero, where the plain percentiles gave
0.92-0.93; conservative (0.975-0.99, and 1.0 for identical distributions: wider
than needed) when the generated and real distributions nearly coincide, where
the plain percentiles gave 0.28-0.71.  There the resampled FIDs also vary
through the estimate's own error (the bootstrap overstates the spread of a
statistic at a point where its derivative vanishes).  The mirrored ("basic")
interval ``FID_N - (q - m)`` was measured too and fell below nominal (0.91)
for a pure mean shift in few dimensions, whose error distribution is skewed.
``std`` is the standard deviation of the resampled FIDs (ddof=1), the bootstrap
standard error of FID_N.

Resample ``r`` is ``rng.integers(0, N, size=N)`` from one
``np.random.default_rng(seed)``, so :func:`fid_bootstrap` and
:func:`bootstrap_interval` with the same seed see the same resamples.

:func:`bootstrap_interval` is the plain percentile bootstrap, meant for scores
that are sample means (precision, recall, density, coverage): a mean has no
resampling bias, and there the percentile interval is sound.

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
#: Bytes of resampled covariances held at once (a batch shares one eigenvalue call).
_BATCH_BYTES = 64 * 2 ** 20
_EPS = np.finfo(np.float64).eps


@dataclasses.dataclass(frozen=True)
class BootstrapInterval:
    """Interval ``[low, high]`` at ``confidence``; ``std``: bootstrap standard error; ``values``: resampled scores.

    From :func:`bootstrap_interval` a percentile interval; from
    :func:`fid_bootstrap` a bias-shifted percentile interval for the expected FID at N.
    """

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
    """Interval for the expected FID at N samples (module docstring), resampling ``fake_features``.

    ``values`` are the FIDs of the resamples (drawn with replacement, real
    statistics fixed); ``low``/``high`` are their percentiles shifted by their
    bias (``mean(values) - FID``), not the plain percentiles.  A resample is represented by how often each
    row was drawn, and its mean and covariance are weighted sums over the
    original rows: no resampled copy of the features is ever built.
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
    distance = _FixedReferenceDistance(real_stats.mean, real_stats.cov)
    # The estimate goes through the same arithmetic as the resamples, so the bias shift compares like with like.
    estimate = float(distance(center[None], (centred.T @ centred)[None] / (n - 1))[0])
    rng = np.random.default_rng(seed)
    per_batch = max(1, _BATCH_BYTES // (8 * d * d))
    values: list[float] = []
    while len(values) < resamples:
        size = min(per_batch, resamples - len(values))
        means, covs = np.empty((size, d)), np.empty((size, d, d))
        for i in range(size):
            means[i], covs[i] = _weighted_moments(centred, np.bincount(_resample_indices(rng, n), minlength=n))
        values.extend(float(v) for v in distance(center + means, covs))
    return _bias_shifted_interval(estimate, values, confidence)


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


def _weighted_moments(centred: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean shift and covariance (ddof=1) of the rows of ``centred`` repeated ``counts`` times."""
    n, d = centred.shape
    rows = np.flatnonzero(counts)
    weights = counts[rows].astype(np.float64)
    shift = np.zeros(d)
    m2 = np.zeros((d, d))
    # Only the distinct rows drawn (about 0.63 N), a bounded block at a time.
    for start in range(0, rows.size, _CHUNK_ROWS):
        block = centred[rows[start:start + _CHUNK_ROWS]]
        w = weights[start:start + _CHUNK_ROWS]
        shift += w @ block
        m2 += (block * w[:, None]).T @ block
    shift /= n
    return shift, (m2 - n * np.outer(shift, shift)) / (n - 1)


class _FixedReferenceDistance:
    """Fréchet distances of many (mean, covariance) pairs to one fixed reference, batched.

    The same identity as :mod:`fidkit.metrics.frechet` (``tr sqrt(S R) = tr
    sqrt(G^T S G)`` for ``R = G G^T``), with the reference factored once: each
    resample then costs one symmetric eigenvalue solve, done for a whole
    batch in one call instead of one call per resample.
    """

    def __init__(self, mean: np.ndarray, cov: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
        w, v = np.linalg.eigh(cov)
        keep = w > w.max(initial=0.0) * w.size * _EPS   # a singular reference keeps its non-zero part only
        self.factor = v[:, keep] * np.sqrt(w[keep])
        self.trace = float(np.trace(cov))

    def __call__(self, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
        diff = means - self.mean
        if self.factor.shape[1] == 0:  # a zero reference covariance: the product is zero
            root_trace = np.zeros(len(means))
        else:
            eig = np.linalg.eigvalsh(self.factor.T @ covs @ self.factor)
            # Eigenvalues below rounding level are zero, not NaN square roots.
            tol = np.abs(eig).max(axis=-1, keepdims=True) * eig.shape[-1] * _EPS
            root_trace = np.sqrt(np.where(eig > tol, eig, 0.0)).sum(axis=-1)
        value = np.einsum("bi,bi->b", diff, diff) + np.trace(covs, axis1=1, axis2=2) + self.trace - 2 * root_trace
        # As in frechet_distance_from_moments: a tiny negative is rounding, not a distance.
        return np.maximum(value, 0.0)


def _bias_shifted_interval(estimate: float, values: list[float], confidence: float) -> BootstrapInterval:
    v = np.asarray(values, dtype=np.float64)
    q_low, q_high = np.quantile(v, [(1 - confidence) / 2, (1 + confidence) / 2])
    shift = estimate - v.mean()
    return BootstrapInterval(low=float(max(q_low + shift, 0.0)), high=float(q_high + shift),
                             std=float(v.std(ddof=1)), confidence=confidence, values=tuple(float(x) for x in v))
