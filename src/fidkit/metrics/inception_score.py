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

import math
import warnings

import numpy as np
import torch

from fidkit.errors import BadInputError, FidkitWarning
from fidkit.metrics._common import ScoreWithSpread, as_finite_2d, positive_int


def inception_score(logits, *, splits: int = 10, shuffle: bool = True, seed: int = 2020) -> ScoreWithSpread:
    """Inception Score of ``N x C`` logits (numpy or torch), equal to torch-fidelity's ``isc``.

    ``splits``: number of parts (10 by convention); needs ``N >= splits``.
    ``shuffle``/``seed``: permute rows with ``np.random.RandomState(seed)``
    first, as torch-fidelity does; ``shuffle=False`` splits in the given order.
    """
    x = as_finite_2d(logits, "logits", keep_float32=True)  # rows become float64 one split at a time
    n = x.shape[0]
    splits = positive_int(splits, "splits")
    if n < splits:
        raise BadInputError(f"logits has {n} rows, fewer than splits={splits}: pass more samples or fewer splits")
    _warn_if_probabilities(x)
    order = np.random.RandomState(seed).permutation(n) if shuffle else np.arange(n)
    scores = []
    for i in range(splits):
        rows = np.asarray(x[order[i * n // splits:(i + 1) * n // splits]], dtype=np.float64)
        scores.append(_split_score(torch.from_numpy(rows).log_softmax(dim=1)))
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
