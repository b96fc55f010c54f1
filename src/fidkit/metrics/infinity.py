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

Fit quality is reported with the value and never hidden: ``r_squared`` (the
share of the scores' variation across sizes that ``b / N`` explains) and
``residual_rms`` (root mean square of ``score - (a + b / N)``, in score units).
A :class:`~fidkit.FidkitWarning` is raised when the extrapolated value is
negative (impossible for FID or IS: the fit is extrapolating noise, and the
true limit is small compared with it) or when ``r_squared`` is below
``POOR_FIT_R_SQUARED`` (the scores are dominated by subset noise rather than
by the ``1/N`` trend, so ``a`` is poorly determined).  The value itself is
returned as fitted, never clamped.
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

#: Below this R^2 the 1/N trend explains too little of the scores for the intercept to be trusted.
POOR_FIT_R_SQUARED = 0.5


@dataclasses.dataclass(frozen=True)
class Extrapolation:
    """``value``: the fitted score at infinitely many samples (``a`` in ``score_N = a + b / N``).

    ``r_squared`` and ``residual_rms`` describe the fit (see the module
    docstring); NaN only when an ``Extrapolation`` is built by hand without them.
    """

    value: float
    slope: float
    sizes: tuple[int, ...]
    scores: tuple[float, ...]
    r_squared: float = float("nan")
    residual_rms: float = float("nan")

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
    residuals = y - design @ np.array([a, b])
    spread = float(np.sum((y - y.mean()) ** 2))
    # Scores that do not vary at all are fitted exactly: nothing is left unexplained.
    r_squared = 1.0 - float(residuals @ residuals) / spread if spread > 0 else 1.0
    result = Extrapolation(value=float(a), slope=float(b), sizes=tuple(int(v) for v in n),
                           scores=tuple(float(v) for v in y), r_squared=r_squared,
                           residual_rms=float(np.sqrt(np.mean(residuals ** 2))))
    _warn_if_doubtful(result)
    return result


def _warn_if_doubtful(e: Extrapolation) -> None:
    fit = f"fit of score = a + b/N over N = {min(e.sizes)}..{max(e.sizes)}: R^2 = {e.r_squared:.3f}, " \
          f"residual rms = {e.residual_rms:.4g}"
    if e.value < 0:
        warnings.warn(f"the score extrapolated to infinitely many samples is negative ({e.value:.4g}), which no "
                      f"FID or IS can be: the true limit is smaller than the noise of the {fit}; reported unclamped, "
                      f"read it as 'close to 0' and use more samples for a usable value", FidkitWarning, stacklevel=3)
    if e.r_squared < POOR_FIT_R_SQUARED:
        warnings.warn(f"poor {fit} (below {POOR_FIT_R_SQUARED}): the scores are dominated by subset noise, not by "
                      f"the 1/N trend, so the extrapolated value {e.value:.4g} is poorly determined", FidkitWarning,
                      stacklevel=3)


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
