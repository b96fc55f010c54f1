"""Inception Score (Salimans et al. 2016), computed as torch-fidelity 0.4.0 computes it.

    IS = exp( E_x KL( p(y|x) || p(y) ) ),  p(y) = mean of p(y|x) over the split

per split, then mean and population standard deviation over the splits.  The
input is the 1008-way *unbiased* logits of the FID Inception network
(``pool3 @ fc.weight.T``, no bias), and the softmax runs over all 1008 classes.

Protocol (torch-fidelity ``metric_isc.py``): rows are shuffled with
``np.random.RandomState(seed).permutation(N)`` (seed 2020), split ``i`` is rows
``i*N//splits`` to ``(i+1)*N//splits``, everything is float64, and the spread is
``np.std`` (ddof=0).  StyleGAN uses the same splits without the shuffle
(``shuffle=False``); torchmetrics uses an unseeded permutation and Bessel's
correction, so its numbers are not reproducible this way.

This module also holds :class:`ScoreWithSpread` (shared with KID) and the
input check shared by the sample-based metrics.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import torch

from ..errors import BadInputError, FidkitWarning
from ..stats import _as_2d_float64


@dataclasses.dataclass(frozen=True)
class ScoreWithSpread:
    """A score computed on several parts of the samples (IS splits, KID subsets).

    ``mean`` and ``std`` summarise ``values`` (one per part); ``std`` is the
    population standard deviation (ddof=0), the convention of torch-fidelity,
    StyleGAN and clean-fid.  ``subset_size`` is the number of samples per part
    (for IS the smallest split: splits differ by at most one sample).
    """

    mean: float
    std: float
    values: tuple[float, ...]
    subset_size: int

    @property
    def parts(self) -> int:
        return len(self.values)

    def __float__(self) -> float:
        return self.mean

    @classmethod
    def from_values(cls, values, subset_size: int) -> "ScoreWithSpread":
        v = np.asarray(values, dtype=np.float64)
        return cls(float(v.mean()), float(v.std()), tuple(float(x) for x in v), int(subset_size))


def inception_score(logits, *, splits: int = 10, shuffle: bool = True, seed: int = 2020) -> ScoreWithSpread:
    """Inception Score of ``N x C`` logits (numpy or torch), equal to torch-fidelity's ``isc``.

    ``splits``: number of parts (10 by convention); needs ``N >= splits``.
    ``shuffle``/``seed``: permute rows with ``np.random.RandomState(seed)``
    first, as torch-fidelity does; ``shuffle=False`` splits in the given order.
    """
    x = as_finite_2d(logits, "logits")
    n = x.shape[0]
    splits = positive_int(splits, "splits")
    if n < splits:
        raise BadInputError(f"logits has {n} rows, fewer than splits={splits}: pass more samples or fewer splits")
    _warn_if_probabilities(x)
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    log_p = torch.from_numpy(x).log_softmax(dim=1)
    scores = [_split_score(log_p[i * n // splits:(i + 1) * n // splits]) for i in range(splits)]
    return ScoreWithSpread.from_values(scores, n // splits)


def _split_score(log_p: torch.Tensor) -> float:
    """``exp(mean_x KL(p(.|x) || mean_x p(.|x)))`` from log-probabilities (float64)."""
    p = log_p.exp()
    # log of the marginal via logsumexp: finite even where every p underflows,
    # so a class nobody predicts contributes 0 * finite = 0, not 0 * inf = NaN.
    log_marginal = torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])
    kl = (p * (log_p - log_marginal)).sum(dim=1)
    return float(kl.mean().exp())


def _warn_if_probabilities(x: np.ndarray) -> None:
    if x.min() >= 0 and np.allclose(x.sum(axis=1), 1.0, atol=1e-3):
        warnings.warn("logits: every row is non-negative and sums to 1, so these look like probabilities; "
                      "the Inception Score expects logits (it applies the softmax itself)",
                      FidkitWarning, stacklevel=3)


def as_finite_2d(a, name: str, *, keep_float32: bool = False) -> np.ndarray:
    """``a`` (numpy or torch, ``samples x dims``) as float64 numpy; refuses NaN/Inf and empty input.

    ``keep_float32`` leaves float32 input (e.g. a memory-mapped 50k x 2048 feature
    store) as it is instead of doubling its size; callers convert the rows they use.
    """
    if keep_float32:
        x = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
        if x.dtype != np.float32:
            x = _as_2d_float64(x, name)
        elif x.ndim != 2:
            raise BadInputError(f"{name} must be a 2-D array (samples x dimensions), got shape {x.shape}")
    else:
        x = _as_2d_float64(a, name)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise BadInputError(f"{name} is empty (shape {x.shape})")
    if not np.isfinite(x).all():
        raise BadInputError(f"{name} contains NaN or Inf")
    return x


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BadInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
