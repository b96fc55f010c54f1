"""Kernel Inception Distance (Bińkowski et al. 2018), reproducing torch-fidelity 0.4.0.

KID is the unbiased estimate of the squared maximum mean discrepancy under the
polynomial kernel ``k(x, y) = (gamma x.y + coef0)^degree`` (``gamma = 1/d``,
``coef0 = 1``, ``degree = 3``)::

    MMD^2 = [sum_{i!=j} k(a_i, a_j) + sum_{i!=j} k(b_i, b_j)] / (m (m-1)) - 2 sum_{i,j} k(a_i, b_j) / m^2

averaged over ``subsets`` random subsets of ``m`` samples from each side,
drawn without replacement.  The estimate is unbiased, so it can be slightly
negative when the two distributions are close.

Argument order and randomness (``metric_kid.py: kid_features_to_metric``):
``features_a`` is torch-fidelity's ``input1`` (``features_1``; generated
samples in its usual calls) and ``features_b`` its ``input2``.  One
``np.random.RandomState(seed)`` draws, per subset, first the ``a`` indices and
then the ``b`` indices, each with ``choice(n, m, replace=False)``.  The formula
is symmetric, but swapping the arguments changes which subsets are drawn.
``std`` is the population standard deviation (``np.std``).  torch-fidelity's
own default seed is 2020 (its shared ``rng_seed``); pass ``seed=2020`` to
reproduce a default torch-fidelity run.
"""

from __future__ import annotations

import warnings

import numpy as np

from fidkit.errors import BadInputError, FidkitWarning
from fidkit.metrics._common import ScoreWithSpread, as_finite_2d, positive_int


def kernel_inception_distance(features_a, features_b, *, subsets: int = 100, subset_size: int = 1000,
                              degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                              seed: int = 0) -> ScoreWithSpread:
    """KID between two ``N x d`` feature sets (numpy or torch), in float64.

    ``subset_size`` larger than the smaller set is reduced to its size, with a
    :class:`~fidkit.FidkitWarning` (torch-fidelity refuses instead; clean-fid
    and StyleGAN reduce too).  The result's ``subset_size`` is the size used.
    Memory is O(subset_size^2) whatever the number of samples.
    """
    a = as_finite_2d(features_a, "features_a", keep_float32=True)
    b = as_finite_2d(features_b, "features_b", keep_float32=True)
    if a.shape[1] != b.shape[1]:
        raise BadInputError(f"features_a has dimension {a.shape[1]} but features_b has {b.shape[1]}")
    subsets = positive_int(subsets, "subsets")
    subset_size = positive_int(subset_size, "subset_size")
    degree = positive_int(degree, "degree")
    n_a, n_b = a.shape[0], b.shape[0]
    smallest = min(n_a, n_b)
    if smallest < 2:
        raise BadInputError(f"KID needs at least 2 samples on each side, got features_a: {n_a}, features_b: {n_b}")
    if subset_size < 2:
        raise BadInputError(f"subset_size must be at least 2 (the unbiased estimate divides by m - 1), got {subset_size}")
    if subset_size > smallest:
        warnings.warn(f"KID subset_size={subset_size} exceeds the smaller sample set ({smallest}); using "
                      f"subset_size={smallest} (values are comparable only at equal subset sizes)",
                      FidkitWarning, stacklevel=2)
        subset_size = smallest
    if gamma is None:
        gamma = 1.0 / a.shape[1]
    elif not gamma > 0:
        raise BadInputError(f"gamma must be positive, got {gamma!r}")

    def kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x @ y.T * gamma + coef0) ** degree

    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(n_a, subset_size, replace=False)].astype(np.float64)
        y = b[rng.choice(n_b, subset_size, replace=False)].astype(np.float64)
        values.append(unbiased_mmd2(x, y, kernel))
    return ScoreWithSpread.from_values(values, subset_size)


def unbiased_mmd2(x: np.ndarray, y: np.ndarray, kernel) -> float:
    """Unbiased MMD^2 of two equally sized samples; one ``m x m`` kernel matrix alive at a time."""
    m = x.shape[0]
    k = kernel(x, x)
    within = k.sum() - np.trace(k)
    k = kernel(y, y)
    within += k.sum() - np.trace(k)
    k = kernel(x, y)
    return float(within / (m * (m - 1)) - 2.0 * k.sum() / (m * m))
