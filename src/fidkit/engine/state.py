"""What one side of an evaluation (reference or generated) has accumulated, and how processes combine it.

A :class:`SideState` holds, per feature space (``extractor/tap``), streamed
statistics (O(d^2) memory, for Fréchet distances) and/or kept per-sample
features (float32, spilled to disk when large, for KID, precision/recall, IS,
CMMD), plus each kept row's global sample index.  :class:`Side` is what a side
contributes to the metrics once accumulation is over, whatever it came from
(images, a reference file, precomputed features).  The offline feature pass and the online :class:`~fidkit.Evaluator`
fill the same object, so both combine processes, checkpoint and compute metrics
the same way.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from fidkit.engine import distributed as D
from fidkit.errors import BadInputError
from fidkit.stats.provenance import Provenance
from fidkit.stats.moments import FeatureStats, _check_covariance
from fidkit.engine.store import FeatureStore


@dataclasses.dataclass
class Side:
    """What one side contributes to the metrics: streamed statistics and kept features per feature space."""

    description: str
    stats: dict[str, FeatureStats]
    features: dict[str, np.ndarray]
    count: int | None = None  # when known without statistics or features (images seen but no tap needed)
    #: provenance of every space this side serves, including spaces that are only kept (features)
    provenance: dict[str, Provenance] = dataclasses.field(default_factory=dict)
    #: files left out because they could not be read (``skip_bad``), "name: reason"
    skipped: list[str] = dataclasses.field(default_factory=list)
    #: how many samples carried each conversion tag (``jpeg``: decoded from a JPEG file)
    tags: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int | None:
        if self.count is not None:
            return self.count
        for s in self.stats.values():
            return s.n
        for f in self.features.values():
            return len(f)
        return None


def moments_contradict_count(n: int, mean: np.ndarray, m2: np.ndarray) -> str:
    """Why a co-moment matrix cannot come from ``n`` samples ("" when it can): no samples have zero moments, one
    sample a zero co-moment, and ``n`` samples a co-moment of rank at most ``n - 1``."""
    if n < 0:
        return "a count cannot be negative"
    if n == 0:
        return "" if not (np.any(mean) or np.any(m2)) else "no samples have zero mean and co-moment"
    scale = float(np.abs(m2).max()) if m2.size else 0.0
    if n == 1:
        return "" if scale == 0.0 else "one sample has a zero co-moment"
    d = len(mean)
    if n > d or scale == 0.0:
        return ""
    # The rank of m2 (at most n - 1 for n samples) from a random projection onto n + 4 directions: cheap for the
    # small n where it can be exceeded, and exact rank deficiency shows as singular values at rounding level.
    k = min(d, n + 4)
    omega = np.random.default_rng(0).standard_normal((d, k))
    sv = np.linalg.svd(m2 @ omega, compute_uv=False)
    rank = int((sv > sv[0] * 1e-9).sum())
    return "" if rank <= n - 1 else f"their co-moment has rank {rank} (at most {n - 1} for {n} samples)"


class SideState:
    """Accumulates one side.  ``stream``/``keep`` are feature-space keys; ``dims`` their dimensions."""

    def __init__(self, stream, keep, provenance: dict[str, Provenance], dims: dict[str, int]):
        self.stream, self.keep = tuple(sorted(stream)), tuple(sorted(keep))
        self._provenance = dict(provenance)
        self._dims = dict(dims)
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.stats = {s: FeatureStats.empty(self._dims[s], self._provenance[s]) for s in self.stream}
        self.stores = {s: FeatureStore(self._dims[s]) for s in self.keep}
        self._indices: list[np.ndarray] = []

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.stream, *self.keep)))

    def taps_of(self, extractor: str) -> tuple[str, ...]:
        """The taps of ``extractor`` this side needs (feature spaces are ``extractor/tap``)."""
        prefix = extractor + "/"
        return tuple(s[len(prefix):] for s in self.spaces if s.startswith(prefix))

    def add(self, feats: dict[str, torch.Tensor], b: int, indices=None) -> None:
        """Fold the features of ``b`` samples in; ``indices`` are their global indices (default: unknown)."""
        for t in self.stream:
            self.stats[t].update(feats[t])
        for t in self.keep:
            self.stores[t].append(feats[t])
        idx = np.full(b, -1, np.int64) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) != b:
            raise BadInputError(f"{len(idx)} sample indices for a batch of {b}")
        self._indices.append(idx)
        self.n += b

    def indices(self) -> np.ndarray:
        return np.concatenate(self._indices) if self._indices else np.empty(0, np.int64)

    def combined(self, distributed: bool, group=None) -> tuple[int, dict[str, FeatureStats], dict[str, np.ndarray]]:
        """Count, statistics and features over every process (collective when ``distributed``).

        Kept rows come in global sample order when every row carries its index,
        otherwise in rank order.
        """
        features = {t: s.array() for t, s in self.stores.items()}
        if not (distributed and D.is_distributed(group)):
            idx = self.indices()
            if len(idx) and (idx >= 0).all():
                order = np.argsort(idx, kind="stable")
                if not (order == np.arange(len(order))).all():
                    features = {t: np.asarray(f)[order] for t, f in features.items()}
            return self.n, {t: s.copy() for t, s in self.stats.items()}, features
        stats = {t: D.merge_across_processes(s, group) for t, s in self.stats.items()}
        all_idx = D.gather_rows(self.indices()[:, None], group)[:, 0]
        n = len(all_idx)
        known = bool((all_idx >= 0).all())
        gathered = {}
        for t, f in features.items():
            rows = D.gather_rows(np.asarray(f), group)
            gathered[t] = rows[np.argsort(all_idx, kind="stable")] if known else rows
        return n, stats, gathered

    # checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Tensors and plain values only: loadable with ``torch.load(..., weights_only=True)``."""
        return {
            "n": self.n,
            "stream": list(self.stream), "keep": list(self.keep),
            "stats": {t: {"n": s.n, "mean": torch.from_numpy(s.mean.copy()), "m2": torch.from_numpy(s._m2.copy())}
                      for t, s in self.stats.items()},
            "features": {t: torch.from_numpy(np.array(s.array(), dtype=np.float32)) for t, s in self.stores.items()},
            "indices": torch.from_numpy(self.indices()),
        }

    def empty_like(self) -> "SideState":
        return SideState(self.stream, self.keep, self._provenance, self._dims)

    def load_state_dict(self, state: dict, what: str) -> None:
        if list(state.get("stream", ())) != list(self.stream) or list(state.get("keep", ())) != list(self.keep):
            raise BadInputError(f"{what}: the checkpoint holds taps {state.get('stream')}/{state.get('keep')}, this "
                                f"evaluator needs {list(self.stream)}/{list(self.keep)}: build it with the same metrics")
        self.reset()
        for t, s in state["stats"].items():
            m2 = s["m2"].numpy().astype(np.float64)
            mean = s["mean"].numpy().astype(np.float64)
            if not (np.isfinite(m2).all() and np.isfinite(mean).all()):
                raise BadInputError(f"{what}: the checkpoint's {t} statistics contain NaN or Inf")
            if m2.shape != (len(mean), len(mean)) or len(mean) != self._dims[t]:
                raise BadInputError(f"{what}: the checkpoint's {t} statistics have shapes {mean.shape}/{m2.shape}, "
                                    f"expected dimension {self._dims[t]}")
            try:
                _check_covariance(m2)  # a co-moment is a scaled covariance: the same necessary conditions
            except BadInputError as e:
                raise BadInputError(f"{what}: the checkpoint's {t} statistics are invalid: {e}") from None
            n_t = int(s["n"])
            problem = moments_contradict_count(n_t, mean, m2)
            if problem:
                raise BadInputError(f"{what}: the checkpoint's {t} statistics say n = {n_t}, but {problem}; "
                                    "it was damaged or edited")
            self.stats[t] = FeatureStats(n_t, mean, m2, self._provenance[t])
        for t, f in state["features"].items():
            if not torch.isfinite(f).all():
                raise BadInputError(f"{what}: the checkpoint's {t} features contain NaN or Inf")
            self.stores[t].append(f.numpy())
        self._indices = [state["indices"].numpy().astype(np.int64)]
        self.n = int(state["n"])
        counts = {f"{t} statistics": s.n for t, s in self.stats.items()}
        counts.update({f"{t} features": s.n for t, s in self.stores.items()})
        counts["sample indices"] = len(self._indices[0])
        if set(counts.values()) != {self.n}:
            listed = ", ".join(f"{k}: {v}" for k, v in counts.items())
            raise BadInputError(f"{what}: inconsistent sample counts in the checkpoint (n = {self.n}; {listed}); "
                                "it was damaged or edited")
