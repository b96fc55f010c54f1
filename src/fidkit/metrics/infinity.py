"""FID-infinity and IS-infinity (Chong & Forsyth 2020): scores extrapolated to infinitely many samples.

FID and IS computed from N samples are biased, with a bias close to linear in
``1/N``.  Computing the score on random subsets of several sizes and fitting
``score_N = a + b / N`` by least squares gives ``a``, an estimate free of that
bias and comparable across sample counts.

Protocol (``mchong6/FID_IS_infinity: score_infinity.py``): 15 sizes
``np.linspace(n_min, N, 15)`` truncated to integers, ``n_min = 5000``; each
size is a fresh subset of the generated samples drawn without replacement;
FID against fixed statistics of the full real set; IS with one split.  Here
subsets come from one ``np.random.default_rng(seed)``, one
``choice(N, size, replace=False)`` per size in increasing order.  When there
are no more than ``n_min`` samples, ``n_min`` is lowered to
``max(N // 10, 2)`` (dgm-eval's rule) with a :class:`~fidkit.FidkitWarning`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import numpy as np

from fidkit.errors import BadInputError, FidkitWarning
from fidkit.stats.moments import FeatureStats
from fidkit.metrics.frechet import frechet_distance_from_moments
from fidkit.metrics._common import as_finite_2d, positive_int
from fidkit.metrics.inception_score import inception_score


@dataclasses.dataclass(frozen=True)
class Extrapolation:
    """``value``: the fitted score at infinitely many samples (``a`` in ``score_N = a + b / N``)."""

    value: float
    slope: float
    sizes: tuple[int, ...]
    scores: tuple[float, ...]

    def __float__(self) -> float:
        return self.value


def fid_infinity(fake_features, real_stats: FeatureStats, *, n_points: int = 15, n_min: int = 5000,
                 seed: int = 0) -> Extrapolation:
    """FID-infinity of generated ``fake_features`` (``N x d``) against the real set's statistics."""
    x = as_finite_2d(fake_features, "fake_features")
    if x.shape[1] != real_stats.dim:
        raise BadInputError(f"fake_features has dimension {x.shape[1]} but real_stats has {real_stats.dim}")
    real_mean, real_cov = real_stats.mean, real_stats.cov

    def fid_of(subset: np.ndarray) -> float:
        s = FeatureStats.from_features(subset)
        return frechet_distance_from_moments(s.mean, s.cov, real_mean, real_cov, n_a=s.n, n_b=real_stats.n)

    return _extrapolate(x, fid_of, n_points=n_points, n_min=n_min, seed=seed, name="fake_features")


def is_infinity(logits, *, n_points: int = 15, n_min: int = 5000, seed: int = 0) -> Extrapolation:
    """IS-infinity of ``N x 1008`` unbiased logits: Inception Score with one split per size."""
    x = as_finite_2d(logits, "logits")
    return _extrapolate(x, lambda subset: inception_score(subset, splits=1, shuffle=False).mean,
                        n_points=n_points, n_min=n_min, seed=seed, name="logits")


def extrapolate_to_infinity(sizes, scores) -> Extrapolation:
    """Least-squares fit of ``score = a + b / size``; ``a`` is the score at infinitely many samples."""
    n = np.asarray(sizes, dtype=np.float64).reshape(-1)
    y = np.asarray(scores, dtype=np.float64).reshape(-1)
    if n.size != y.size:
        raise BadInputError(f"sizes has {n.size} entries but scores has {y.size}")
    if not (np.isfinite(n).all() and (n > 0).all()):
        raise BadInputError("sizes must be positive and finite")
    if not np.isfinite(y).all():
        raise BadInputError("scores contains NaN or Inf")
    if np.unique(n).size < 2:
        raise BadInputError(f"sizes needs at least 2 distinct values to fit a line, got {sorted(set(n.tolist()))}")
    design = np.stack([np.ones_like(n), 1.0 / n], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    return Extrapolation(value=float(a), slope=float(b), sizes=tuple(int(v) for v in n),
                         scores=tuple(float(v) for v in y))


def _extrapolate(x: np.ndarray, score_of: Callable[[np.ndarray], float], *, n_points: int, n_min: int,
                 seed: int, name: str) -> Extrapolation:
    n = x.shape[0]
    n_points = positive_int(n_points, "n_points")
    n_min = positive_int(n_min, "n_min")
    if n_points < 2:
        raise BadInputError(f"n_points must be at least 2 to fit a line, got {n_points}")
    if n < 3:
        raise BadInputError(f"{name} has {n} samples; extrapolating needs at least 3 (two distinct sizes of 2 or more)")
    if n_min >= n:
        lowered = max(n // 10, 2)
        warnings.warn(f"{name} has {n} samples, not more than n_min={n_min}; using n_min={lowered} "
                      f"(extrapolations from small sets are noisy and not comparable to n_min={n_min})",
                      FidkitWarning, stacklevel=3)
        n_min = lowered
    if n_min < 2:
        raise BadInputError(f"n_min must be at least 2, got {n_min}")
    sizes = np.linspace(n_min, n, n_points).astype(np.int64)
    rng = np.random.default_rng(seed)
    scores = [score_of(x[rng.choice(n, int(size), replace=False)]) for size in sizes]
    return extrapolate_to_infinity(sizes, scores)
