"""CMMD (Jayasumana et al. 2024): maximum mean discrepancy of CLIP embeddings, Gaussian RBF kernel.

As google-research ``cmmd/distance.py`` defines it::

    k(a, b) = exp(-|a - b|^2 / (2 sigma^2)),  sigma = 10
    CMMD    = scale * [mean K_xx + mean K_yy - 2 mean K_xy],  scale = 1000

the biased (minimum-variance, V-statistic) estimate of MMD^2, diagonals
included, so the two sets may differ in size and ``cmmd(x, x) == 0``.  The
protocol's embeddings are CLIP ViT-L/14@336px image embeddings (projected,
768-d), L2-normalised; this function takes whatever it is given and normalises
nothing.

The reference computes ``|a - b|^2`` as ``|a|^2 + |b|^2 - 2 a.b`` in float32
(JAX).  Here the same expanded form is computed in float64, clamped at 0, and the
kernel enters as ``k - 1 = expm1(.)``: the constant 1 in each of the three means
cancels exactly, and for unit-norm embeddings (``|a - b|^2 <= 4``, so
``k >= 0.98``) expm1 keeps the digits that ``exp`` would spend on it.

Memory: the kernel matrices are never held whole.  They are summed tile by tile,
``block x block`` (128 MiB in float64 at the default 4096), with only the rows of
the current tiles converted to float64, so float32 arrays or memory maps of any
length can be passed as they are.  ``K_xx`` and ``K_yy`` are symmetric: only
tiles on or above the diagonal are computed.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import BadInputError
from ._common import as_finite_2d, positive_int

DEFAULT_BLOCK = 4096


def cmmd(x, y, *, sigma: float = 10.0, scale: float = 1000.0, block: int = DEFAULT_BLOCK) -> float:
    """CMMD between embeddings ``x`` (``n x d``) and ``y`` (``m x d``), numpy, memory map or torch.

    The value is symmetric in ``x`` and ``y``, and 0 for a set against itself.
    ``block`` bounds the working memory (``block^2`` float64 values) and does not
    change the value beyond rounding.
    """
    a = as_finite_2d(x, "x", keep_float32=True)
    b = as_finite_2d(y, "y", keep_float32=True)
    if a.shape[1] != b.shape[1]:
        raise BadInputError(f"x has dimension {a.shape[1]} but y has {b.shape[1]}")
    if not (isinstance(sigma, numbers.Real) and math.isfinite(sigma) and sigma > 0):
        raise BadInputError(f"sigma must be a positive finite number, got {sigma!r}")
    if not (isinstance(scale, numbers.Real) and math.isfinite(scale)):
        raise BadInputError(f"scale must be a finite number, got {scale!r}")
    block = positive_int(block, "block")
    gamma = 1.0 / (2.0 * float(sigma) ** 2)

    excess_xx = _kernel_excess_sum_within(a, gamma, block) / a.shape[0] ** 2
    excess_yy = _kernel_excess_sum_within(b, gamma, block) / b.shape[0] ** 2
    excess_xy = _kernel_excess_sum_between(a, b, gamma, block) / (a.shape[0] * b.shape[0])
    return float(scale) * (excess_xx + excess_yy - 2.0 * excess_xy)


def _kernel_excess_sum_within(a: np.ndarray, gamma: float, block: int) -> float:
    """``sum_ij (k(a_i, a_j) - 1)`` over all ordered pairs, from the tiles on and above the diagonal."""
    spans = _spans(a.shape[0], block)
    tile_sums = []
    for i, (start, stop) in enumerate(spans):
        rows, sq = _rows(a, start, stop)
        tile_sums.append(_tile_excess_sum(rows, sq, rows, sq, gamma))
        for col_start, col_stop in spans[i + 1:]:
            cols, col_sq = _rows(a, col_start, col_stop)
            tile_sums.append(2.0 * _tile_excess_sum(rows, sq, cols, col_sq, gamma))
    return math.fsum(tile_sums)


def _kernel_excess_sum_between(a: np.ndarray, b: np.ndarray, gamma: float, block: int) -> float:
    """``sum_ij (k(a_i, b_j) - 1)``."""
    tile_sums = []
    for start, stop in _spans(a.shape[0], block):
        rows, sq = _rows(a, start, stop)
        for col_start, col_stop in _spans(b.shape[0], block):
            cols, col_sq = _rows(b, col_start, col_stop)
            tile_sums.append(_tile_excess_sum(rows, sq, cols, col_sq, gamma))
    return math.fsum(tile_sums)


def _tile_excess_sum(rows: np.ndarray, rows_sq: np.ndarray, cols: np.ndarray, cols_sq: np.ndarray,
                     gamma: float) -> float:
    # exponent -gamma |r - c|^2 = 2 gamma r.c - gamma |r|^2 - gamma |c|^2, built in place in one tile
    t = (rows * (2.0 * gamma)) @ cols.T
    t -= (gamma * rows_sq)[:, None]
    t -= (gamma * cols_sq)[None, :]
    # rounding can leave a squared distance slightly below 0 (e.g. a point against itself)
    np.minimum(t, 0.0, out=t)
    np.expm1(t, out=t)
    return float(t.sum())


def _rows(a: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.asarray(a[start:stop], dtype=np.float64)
    return rows, np.einsum("ij,ij->i", rows, rows)


def _spans(n: int, block: int) -> list[tuple[int, int]]:
    return [(start, min(start + block, n)) for start in range(0, n, block)]
