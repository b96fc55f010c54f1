"""k-nearest-neighbour manifold metrics: precision/recall and density/coverage.

Precision and recall (Kynkäänniemi et al. 2019): the manifold of a set is the
union of balls around its points, each with radius the distance to its k-th
nearest neighbour in the same set (self excluded; k = 3).  Precision is the
fraction of fake samples inside the real manifold, recall the fraction of real
samples inside the fake manifold; a point on a ball's boundary is inside
(``<=``), as in the paper's code and torch-fidelity.

Density and coverage (Naeem et al. 2020; clovaai/generative-evaluation-prdc,
dgm-eval): balls around real samples only (k = 5), strict ``<``.  Density is
``(1 / (k M)) sum_j #{i : |y_j - x_i| < r_i}`` over the ``M`` fakes ``y_j``
(it can exceed 1); coverage is the fraction of real ``x_i`` whose nearest fake
lies inside ``x_i``'s ball.

Distances are never held as a full matrix: ``block_size`` rows of one set at a
time against all of the other (memory ``block_size x N`` in ``dtype``, about
200 MB for 1024 x 50 000 in float32), on the device of the input tensors.
Comparisons use squared distances ``|x|^2 + |y|^2 - 2 x.y`` (clamped at 0),
which order points exactly as Euclidean distances do; in float32 a point
within about 1e-6 (relative) of a radius may fall either side, as in every
float32 implementation.  Pass ``dtype=torch.float64`` for exact ties.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from fidkit.errors import BadInputError
from fidkit.metrics._common import positive_int

DEFAULT_BLOCK_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float
    k: int
    #: per generated sample: inside the real manifold (precision is its mean)
    fake_inside: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    #: per real sample: inside the generated manifold (recall is its mean)
    real_inside: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def f_score(self) -> float:
        """Harmonic mean of precision and recall (0 when both are 0)."""
        total = self.precision + self.recall
        return 0.0 if total == 0 else 2.0 * self.precision * self.recall / total


@dataclasses.dataclass(frozen=True)
class DensityCoverage:
    density: float
    coverage: float
    k: int
    #: per generated sample: number of real balls containing it (density is their mean / k)
    fake_ball_counts: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    #: per real sample: its ball contains a generated sample (coverage is its mean)
    real_covered: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)


def precision_recall(real, fake, *, k: int = 3, block_size: int = DEFAULT_BLOCK_SIZE,
                     dtype: torch.dtype = torch.float32) -> PrecisionRecall:
    """Improved precision and recall of ``fake`` against ``real`` (``N x d`` arrays or tensors).

    Note the order: torch-fidelity's ``prc`` takes the generated set first
    (``input1``) and the real set second.
    """
    k = positive_int(k, "k")
    block_size = positive_int(block_size, "block_size")
    real_t, fake_t = _pair(real, fake, dtype)
    _require_neighbours(real_t, "real", k)
    _require_neighbours(fake_t, "fake", k)
    real_sq, fake_sq = _sq_norms(real_t), _sq_norms(fake_t)
    real_r2 = _kth_neighbour_sq_radii(real_t, real_sq, k, block_size)
    fake_r2 = _kth_neighbour_sq_radii(fake_t, fake_sq, k, block_size)
    fake_inside = torch.zeros(fake_t.shape[0], dtype=torch.bool, device=fake_t.device)
    real_inside = torch.zeros(real_t.shape[0], dtype=torch.bool, device=real_t.device)
    # One pass over fake-vs-real distances serves both directions.
    for start in range(0, fake_t.shape[0], block_size):
        stop = min(start + block_size, fake_t.shape[0])
        d2 = _sq_distances(fake_t[start:stop], fake_sq[start:stop], real_t, real_sq)
        fake_inside[start:stop] = (d2 <= real_r2[None, :]).any(dim=1)
        real_inside |= (d2 <= fake_r2[start:stop, None]).any(dim=0)
    return PrecisionRecall(precision=int(fake_inside.sum()) / fake_t.shape[0],
                           recall=int(real_inside.sum()) / real_t.shape[0], k=k,
                           fake_inside=fake_inside.cpu().numpy(), real_inside=real_inside.cpu().numpy())


def density_coverage(real, fake, *, k: int = 5, block_size: int = DEFAULT_BLOCK_SIZE,
                     dtype: torch.dtype = torch.float32) -> DensityCoverage:
    """Density and coverage of ``fake`` against ``real``; radii come from ``real`` only."""
    k = positive_int(k, "k")
    block_size = positive_int(block_size, "block_size")
    real_t, fake_t = _pair(real, fake, dtype)
    _require_neighbours(real_t, "real", k)
    real_sq, fake_sq = _sq_norms(real_t), _sq_norms(fake_t)
    real_r2 = _kth_neighbour_sq_radii(real_t, real_sq, k, block_size)
    counts = torch.zeros(fake_t.shape[0], dtype=torch.long, device=fake_t.device)
    nearest_fake_d2 = torch.full_like(real_r2, float("inf"))
    for start in range(0, fake_t.shape[0], block_size):
        stop = min(start + block_size, fake_t.shape[0])
        d2 = _sq_distances(fake_t[start:stop], fake_sq[start:stop], real_t, real_sq)
        counts[start:stop] = (d2 < real_r2[None, :]).sum(dim=1)
        nearest_fake_d2 = torch.minimum(nearest_fake_d2, d2.min(dim=0).values)
    covered = nearest_fake_d2 < real_r2
    return DensityCoverage(density=int(counts.sum()) / (k * fake_t.shape[0]),
                           coverage=int(covered.sum()) / real_t.shape[0], k=k,
                           fake_ball_counts=counts.cpu().numpy(), real_covered=covered.cpu().numpy())


def _kth_neighbour_sq_radii(x: torch.Tensor, x_sq: torch.Tensor, k: int, block_size: int) -> torch.Tensor:
    """Squared distance from each row to its k-th nearest other row (duplicates count as neighbours)."""
    n = x.shape[0]
    radii = torch.empty(n, dtype=x.dtype, device=x.device)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        d2 = _sq_distances(x[start:stop], x_sq[start:stop], x, x_sq)
        rows = torch.arange(stop - start, device=x.device)
        d2[rows, rows + start] = float("inf")  # a point is not its own neighbour
        radii[start:stop] = d2.topk(k, dim=1, largest=False).values[:, -1]
    return radii


def _sq_distances(x: torch.Tensor, x_sq: torch.Tensor, y: torch.Tensor, y_sq: torch.Tensor) -> torch.Tensor:
    # In place after the product: one block x N buffer, no broadcast temporary of the same size.
    d2 = x @ y.T
    d2.mul_(-2.0).add_(x_sq[:, None]).add_(y_sq[None, :])
    return d2.clamp_min_(0.0)


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    # Accumulated in float64: the norms carry the magnitude that the subtraction cancels.
    return x.double().square().sum(dim=1).to(x.dtype)


def _pair(real, fake, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if dtype not in (torch.float32, torch.float64):
        raise BadInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    real_t, fake_t = _as_tensor(real, "real", dtype), _as_tensor(fake, "fake", dtype)
    if real_t.shape[1] != fake_t.shape[1]:
        raise BadInputError(f"real has dimension {real_t.shape[1]} but fake has {fake_t.shape[1]}")
    if real_t.device != fake_t.device:
        raise BadInputError(f"real is on {real_t.device} but fake on {fake_t.device}; put both on one device")
    return _standardised(real_t, fake_t)


def _standardised(real_t: torch.Tensor, fake_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets divided by the power of two nearest to the real features' RMS magnitude.

    Every comparison these metrics make (a distance against a k-NN radius) is unchanged by a common scaling,
    and a power of two scales exactly (points on a radius stay on it), but features of extreme scale (1e-20,
    1e20) no longer underflow or overflow in ``|x|^2 + |y|^2 - 2 x.y``.
    """
    sq = 0.0
    for start in range(0, real_t.shape[0], 8192):  # float64 accumulation without a float64 copy of the set
        sq += float(real_t[start:start + 8192].double().square().sum())
    rms = (sq / real_t.numel()) ** 0.5 if real_t.numel() else 0.0
    if not np.isfinite(rms):
        raise BadInputError("real features are too large to compare (their magnitude overflows float64)")
    if rms == 0.0:
        if float(fake_t.abs().max()) == 0.0:
            raise BadInputError("all features are zero: k-nearest-neighbour radii are 0 and precision, recall, "
                                "density and coverage are undefined")
        return real_t, fake_t
    shift = -int(np.round(np.log2(rms)))
    if shift == 0:
        return real_t, fake_t
    return torch.ldexp(real_t, torch.tensor(shift)), torch.ldexp(fake_t, torch.tensor(shift))


def _as_tensor(a, name: str, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        arr = np.asarray(a)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise BadInputError(f"{name} must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise BadInputError(f"{name} must be a non-empty 2-D array (samples x dimensions), got shape {tuple(t.shape)}")
    if t.is_complex():
        raise BadInputError(f"{name} must be real-valued, got dtype {t.dtype}")
    t = t.to(dtype)
    if not torch.isfinite(t).all():
        raise BadInputError(f"{name} contains NaN or Inf")
    return t


def _require_neighbours(x: torch.Tensor, name: str, k: int) -> None:
    if x.shape[0] < k + 1:
        raise BadInputError(f"{name} has {x.shape[0]} samples; a k-th nearest neighbour radius with k={k} "
                            f"needs at least {k + 1}")
