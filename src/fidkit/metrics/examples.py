"""Per-sample views of an evaluation: how realistic each generated sample is, which reference images it is
closest to, and along which directions the generated spread differs from the real one.  Pure functions of
features and covariances; the report picks the samples to show from what they return.

Realism score (Kynkäänniemi et al. 2019, "Improved Precision and Recall", Sec. 5)::

    R(g) = max over kept real r of  NND_k(r) / (|g - r| + eps)

``NND_k(r)`` is the distance from ``r`` to its k-th nearest other real sample (k = 3, as precision/recall), and
the real samples whose radius is above the median radius are left out (their code: ``clamp_to_percentile=50``,
which sets those radii to 0), so that a few isolated outliers with huge balls do not make everything look real.
R >= 1 means that ``g`` lies inside at least one kept real ball.  The paper writes the ratio of distances; the
authors' code (``ManifoldEstimator.evaluate``) returns the ratio of *squared* distances, the square of this score
up to ``eps`` (same order, same threshold 1).  ``eps`` = 1e-5 as in their code keeps an exact copy finite.

Near copies: a generated sample whose nearest reference is closer than ``alpha`` times the median distance
between a reference sample and its own nearest other reference sample (alpha = 1/3): closer to a reference
image than reference images are to each other, by a wide margin.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from fidkit.errors import BadInputError

#: Realism: the real samples kept are those whose k-NN radius is at most this percentile of all radii.
REALISM_PERCENTILE = 50.0
REALISM_EPS = 1e-5
#: Near copy: nearest-reference distance below ``NEAR_COPY_ALPHA`` x the reference's median 1-NN distance.
NEAR_COPY_ALPHA = 1.0 / 3.0
#: The reference's median 1-NN distance is estimated from at most this many reference samples (each searched
#: against the whole reference), which bounds the cost at this many rows times N.
NEAR_COPY_QUERIES = 5000
_BLOCK = 1024


@dataclasses.dataclass(frozen=True)
class Neighbours:
    """For each query row: the indices of its ``n`` nearest reference rows (nearest first) and their Euclidean
    distances."""

    indices: np.ndarray      # queries x n, int64
    distances: np.ndarray    # queries x n, float64


def _rows(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    if t.ndim != 2 or t.shape[0] == 0:
        raise BadInputError(f"{name} must be a non-empty 2-D array (samples x dimensions), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise BadInputError(f"{name} contains NaN or Inf")
    return t


def _distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances, float64 (exact enough for ties that matter to a view, not a metric)."""
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")


def kth_neighbour_radii(real, *, k: int = 3) -> np.ndarray:
    """Distance from each row to its k-th nearest other row (itself excluded; duplicates count)."""
    x = _rows(real, "real features")
    if x.shape[0] < k + 1:
        raise BadInputError(f"real features: {x.shape[0]} samples; a k-th neighbour radius with k={k} needs "
                            f"at least {k + 1}")
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for start in range(0, x.shape[0], _BLOCK):
        d = _distances(x[start:start + _BLOCK], x)
        rows = torch.arange(d.shape[0])
        d[rows, rows + start] = float("inf")
        out[start:start + d.shape[0]] = d.topk(k, dim=1, largest=False).values[:, -1]
    return out.numpy()


def realism_scores(real, fake, *, k: int = 3, percentile: float = REALISM_PERCENTILE,
                   eps: float = REALISM_EPS) -> np.ndarray:
    """The realism score of every generated row (module docstring), float64."""
    radii = kth_neighbour_radii(real, k=k)
    kept = radii <= np.percentile(radii, percentile)
    x = _rows(real, "real features")[torch.from_numpy(kept)]
    r = torch.from_numpy(radii[kept])
    y = _rows(fake, "generated features")
    if y.shape[1] != x.shape[1]:
        raise BadInputError(f"real features have dimension {x.shape[1]}, generated {y.shape[1]}")
    out = torch.empty(y.shape[0], dtype=torch.float64)
    for start in range(0, y.shape[0], _BLOCK):
        d = _distances(y[start:start + _BLOCK], x)
        out[start:start + d.shape[0]] = (r[None, :] / (d + eps)).max(dim=1).values
    return out.numpy()


def nearest_neighbours(query, reference, *, n: int = 3, exclude_self: bool = False) -> Neighbours:
    """The ``n`` nearest reference rows of every query row (brute force, blocked).  ``exclude_self``: query and
    reference are the same rows and a row is not its own neighbour."""
    q, ref = _rows(query, "query features"), _rows(reference, "reference features")
    if q.shape[1] != ref.shape[1]:
        raise BadInputError(f"query features have dimension {q.shape[1]}, reference {ref.shape[1]}")
    n = min(n, ref.shape[0] - (1 if exclude_self else 0))
    if n < 1:
        raise BadInputError("the reference holds no other sample to be a neighbour")
    idx = np.empty((q.shape[0], n), dtype=np.int64)
    dist = np.empty((q.shape[0], n), dtype=np.float64)
    for start in range(0, q.shape[0], _BLOCK):
        d = _distances(q[start:start + _BLOCK], ref)
        if exclude_self:
            rows = torch.arange(d.shape[0])
            d[rows, rows + start] = float("inf")
        v, i = d.topk(n, dim=1, largest=False)
        idx[start:start + d.shape[0]], dist[start:start + d.shape[0]] = i.numpy(), v.numpy()
    return Neighbours(idx, dist)


def near_copy_threshold(reference, *, alpha: float = NEAR_COPY_ALPHA, queries: int = NEAR_COPY_QUERIES,
                        seed: int = 0) -> float:
    """``alpha`` x the median distance from a reference row to its nearest other reference row (over at most
    ``queries`` rows drawn without replacement with ``seed``, each searched against the whole reference)."""
    ref = np.asarray(reference)
    if ref.shape[0] < 2:
        raise BadInputError("a near-copy threshold needs at least 2 reference samples")
    rows = np.arange(ref.shape[0])
    if ref.shape[0] > queries:
        rows = np.sort(np.random.default_rng(seed).choice(ref.shape[0], queries, replace=False))
    x = _rows(ref, "reference features")
    sub = x[torch.from_numpy(rows)]
    nearest = np.empty(len(rows))
    for start in range(0, len(rows), _BLOCK):
        d = _distances(sub[start:start + _BLOCK], x)
        block = torch.arange(d.shape[0])
        d[block, torch.from_numpy(rows[start:start + _BLOCK])] = float("inf")
        nearest[start:start + d.shape[0]] = d.min(dim=1).values.numpy()
    return float(alpha * np.median(nearest))


@dataclasses.dataclass(frozen=True)
class Direction:
    """An eigenvector of ``S_gen - S_real``: its eigenvalue (> 0: the generated samples spread more along it,
    < 0: less), its share of the sum of |eigenvalues|, and the unit vector."""

    eigenvalue: float
    explained: float
    vector: np.ndarray


def covariance_directions(cov_fake, cov_real, *, n: int = 4) -> list[Direction]:
    """The ``n`` eigenvectors of ``cov_fake - cov_real`` with the largest |eigenvalue|, largest first; each signed
    so that its largest-magnitude entry is positive (eigenvectors have no sign of their own: this fixes which
    end of a projection is "high")."""
    a, b = np.asarray(cov_fake, dtype=np.float64), np.asarray(cov_real, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise BadInputError(f"covariances must be square and of one shape, got {a.shape} and {b.shape}")
    w, v = np.linalg.eigh(a - b)
    total = float(np.abs(w).sum())
    order = np.argsort(-np.abs(w), kind="stable")[:n]
    out = []
    for i in order:
        vec = v[:, i] * (1.0 if v[np.argmax(np.abs(v[:, i])), i] >= 0 else -1.0)
        out.append(Direction(float(w[i]), float(abs(w[i]) / total) if total > 0 else 0.0, vec))
    return out
