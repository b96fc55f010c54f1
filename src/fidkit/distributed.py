"""Combining results across processes with ``torch.distributed`` (torchrun, Accelerate, Lightning).

Building blocks for multi-process evaluation: statistics are gathered and
merged with the same exact pairwise update used for batches and shards (not
summed raw moments, which lose digits), in rank order, so every process gets
bit-identical results; per-sample features are gathered with uneven per-process
counts.  Nothing is sent when ``torch.distributed`` is not initialised.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from .stats import FeatureStats


def is_distributed(group=None) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def _device_for(group) -> torch.device:
    # NCCL moves CUDA tensors only; gloo and others CPU tensors.
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def merge_across_processes(stats: FeatureStats, group=None) -> FeatureStats:
    """Every process's statistics merged exactly; the same result on every process."""
    if not is_distributed(group):
        return stats.copy()
    if stats.n is None:
        raise ValueError("cannot merge statistics whose sample count is unknown")
    dev = _device_for(group)
    world = dist.get_world_size(group)
    packed = torch.cat([torch.tensor([float(stats.n)], dtype=torch.float64),
                        torch.from_numpy(stats.mean), torch.from_numpy(stats._m2).reshape(-1)]).to(dev)
    parts = [torch.empty_like(packed) for _ in range(world)]
    dist.all_gather(parts, packed, group=group)
    d = stats.dim
    merged = FeatureStats.empty(d, stats.provenance)
    for p in parts:  # rank order: identical arithmetic, identical result, on every process
        p = p.cpu().numpy()
        merged = merged.merge(FeatureStats(int(p[0]), p[1:1 + d], p[1 + d:].reshape(d, d), stats.provenance))
    return merged


def gather_rows(rows: np.ndarray, group=None) -> np.ndarray:
    """Concatenate every process's ``n_i x d`` rows in rank order (counts may differ between processes)."""
    if not is_distributed(group):
        return np.asarray(rows)
    dev = _device_for(group)
    world = dist.get_world_size(group)
    local = torch.from_numpy(np.ascontiguousarray(rows)).to(dev)
    count = torch.tensor([local.shape[0]], dtype=torch.int64, device=dev)
    counts = [torch.empty_like(count) for _ in range(world)]
    dist.all_gather(counts, count, group=group)
    counts = [int(c) for c in counts]
    padded = torch.zeros((max(counts),) + tuple(local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).cpu().numpy()
