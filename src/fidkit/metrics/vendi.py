"""The Vendi score: the effective number of distinct samples in a set (Friedman & Dieng, 2023).

With the cosine similarity kernel, ``K = X Xᵀ`` of the L2-normalised embeddings
``X`` (n x d), the score is the exponential of the Shannon entropy (order ``q``:
Rényi entropy) of the eigenvalues of ``K / n``.  Those are the nonzero
eigenvalues of the d x d matrix ``Xᵀ X / n``, which is what is computed here:
accumulated in row blocks, so memory is O(d²) whatever n is, float64
throughout.  It reads the generated side only: 1 when every sample is the
same, n when all are orthogonal.

This module is the whole of the metric: the function, and its declaration
(what it reads, its option, its output and label), which makes it available as
``metrics="vendi"`` in every feature space (``vendi_dinov2``, ...), as
``fidkit eval --metrics vendi --vendi-q Q``, and in the online ``Evaluator``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fidkit.errors import BadInputError
from fidkit.metrics._common import as_finite_2d
from fidkit.metrics.catalog import KEEP, Inputs, MetricSpec, Option, register_metric

_BLOCK = 4096


def vendi_score(features, q: float = 1.0) -> float:
    """The Vendi score of ``features`` (n x d, numpy or torch) under the cosine similarity kernel.

    ``q`` is the order of the entropy: 1 is Shannon's (the score of the paper and of the ``vendi-score``
    package), 0 counts nonzero eigenvalues, larger ``q`` weighs the dominant modes more.
    """
    x = as_finite_2d(features, "features", keep_float32=True)
    if not q >= 0 or not np.isfinite(q):
        raise BadInputError(f"vendi_q must be a finite number of at least 0, got {q!r}")
    n, d = x.shape
    gram = np.zeros((d, d))
    for start in range(0, n, _BLOCK):
        rows = np.asarray(x[start:start + _BLOCK], dtype=np.float64)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        if (norms == 0).any():
            raise BadInputError(f"features: row {start + int(np.argmax(norms[:, 0] == 0))} is all zeros; the "
                                "cosine kernel of the Vendi score is undefined for it")
        rows /= norms
        gram += rows.T @ rows
    eig = np.linalg.eigvalsh(gram / n)
    p = eig[eig > 0]
    p = p / p.sum()  # the trace is 1 up to rounding; the entropy is of a distribution
    if q == 1:
        entropy = -(p * np.log(p)).sum()
    else:
        entropy = np.log((p ** q).sum()) / (1 - q)
    return float(np.exp(entropy))


def _compute(x: Inputs) -> dict[str, Any]:
    return {"vendi": vendi_score(x.fake_features, q=x.options.vendi_q)}


SPEC = register_metric(MetricSpec(
    "vendi", "Vendi score: effective number of distinct generated samples (cosine kernel)", "embedding",
    None, KEEP, _compute, labels={"vendi": "Vendi score"},
    options=(Option("vendi_q", float, 1.0, "order of the entropy in the Vendi score (1: Shannon's)", low=0),)))
