"""Small pieces the metric modules share: a result type and argument checks."""

from __future__ import annotations

import dataclasses

import numpy as np

from fidkit.errors import BadInputError
from fidkit.stats.moments import _as_2d_float64


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
