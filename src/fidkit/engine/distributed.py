"""Combining results across processes with ``torch.distributed`` (torchrun, Accelerate, Lightning).

Statistics are reduced, not gathered: each process contributes its count, its
count-weighted mean and its co-moment taken about the *global* mean (Chan's
merge rewritten as three sums), so the traffic and memory per process are
O(d^2) whatever the number of processes, and no raw ``E[xx^T]`` cancellation
loses digits.  Per-sample features (KID, precision/recall, IS) are gathered
with uneven per-process counts and put back in global sample order when the
rows carry their sample indices.  Nothing is sent when ``torch.distributed`` is
not initialised.  Every function here is collective: all processes of the
group must call it.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import torch
import torch.distributed as dist

from fidkit.errors import FidkitError
from fidkit.stats.moments import FeatureStats


class ProcessLostError(FidkitError):
    """A collective failed: a process of the group exited, was killed, or stopped answering."""


@contextlib.contextmanager
def _collective(what: str, group=None):
    """Turn the backend's failure of a collective (a peer gone: connection closed, timeout) into a named error."""
    try:
        yield
    except (RuntimeError, OSError) as e:  # gloo/NCCL raise DistBackendError or RuntimeError subclasses
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        ranks = sorted({int(r) for r in re.findall(r"\brank[ :=]+(\d+)", str(e), flags=re.IGNORECASE)})
        try:
            me = dist.get_rank(group)
        except Exception:  # noqa: BLE001
            me = None
        ranks = [r for r in ranks if r != me]
        try:
            if not ranks and me is not None and dist.get_world_size(group) == 2:
                ranks = [1 - me]  # of two processes, the lost one is the other
        except Exception:  # noqa: BLE001
            pass
        who = (f"process{'es' if len(ranks) > 1 else ''} of rank {', '.join(map(str, ranks))}" if ranks
               else "a process of the torch.distributed group")
        raise ProcessLostError(
            f"{who} was lost during {what} (rank {me if me is not None else '?'} of "
            f"{_world_or_unknown(group)} waiting): it exited, was killed or stopped answering before joining this "
            f"collective; look at its own output for why ({type(e).__name__}: {text[:300]})") from None


def _world_or_unknown(group) -> str:
    try:
        return str(dist.get_world_size(group))
    except Exception:  # noqa: BLE001
        return "?"


def is_distributed(group=None) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def _device_for(group) -> torch.device:
    # NCCL moves CUDA tensors only; gloo and others CPU tensors.
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank_and_world(group=None) -> tuple[int, int]:
    if not is_distributed(group):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def merge_across_processes(stats: FeatureStats, group=None) -> FeatureStats:
    """Every process's statistics combined exactly; the same result on every process."""
    if not is_distributed(group):
        return stats.copy()
    if stats.n is None:
        raise ValueError("cannot merge statistics whose sample count is unknown")
    dev = _device_for(group)
    n_local = float(stats.n)
    n = torch.tensor([n_local], dtype=torch.float64, device=dev)
    weighted = torch.from_numpy(stats.mean * n_local).to(dev)
    with _collective("the all_reduce of statistics (count, mean)", group):
        dist.all_reduce(n, group=group)
        dist.all_reduce(weighted, group=group)
    n_total = int(n.item())
    if n_total == 0:
        return FeatureStats.empty(stats.dim, stats.provenance)
    mean = weighted.cpu().numpy() / n_total
    delta = stats.mean - mean
    m2 = torch.from_numpy(stats._m2 + np.outer(delta, delta) * n_local).to(dev)
    with _collective("the all_reduce of statistics (co-moment)", group):
        dist.all_reduce(m2, group=group)
    return FeatureStats(n_total, mean, m2.cpu().numpy(), stats.provenance)


def gather_rows(rows: np.ndarray, group=None, indices: np.ndarray | None = None) -> np.ndarray:
    """Every process's ``n_i x d`` rows (counts may differ between processes) on every process.

    Without ``indices`` the rows come in rank order.  With ``indices`` (each
    row's global sample index, unique across processes) they come sorted by
    index, i.e. in the order one process would have produced them.
    """
    rows = np.asarray(rows)
    if indices is not None and len(indices) != len(rows):
        raise ValueError(f"{len(indices)} indices for {len(rows)} rows")
    if not is_distributed(group):
        return rows if indices is None else rows[np.argsort(indices, kind="stable")]
    everything = _all_gather_uneven(torch.from_numpy(np.ascontiguousarray(rows)), group).numpy()
    if indices is None:
        return everything
    order = _all_gather_uneven(torch.from_numpy(np.asarray(indices, dtype=np.int64)), group).numpy()
    return everything[np.argsort(order, kind="stable")]


def _all_gather_uneven(local: torch.Tensor, group) -> torch.Tensor:
    dev = _device_for(group)
    world = dist.get_world_size(group)
    local = local.to(dev)
    count = torch.tensor([local.shape[0]], dtype=torch.int64, device=dev)
    counts = [torch.empty_like(count) for _ in range(world)]
    with _collective("the all_gather of per-sample feature counts", group):
        dist.all_gather(counts, count, group=group)
    counts = [int(c) for c in counts]
    padded = torch.zeros((max(counts),) + tuple(local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    with _collective("the all_gather of per-sample features", group):
        dist.all_gather(parts, padded, group=group)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).cpu()


def sum_int64(values, group=None) -> list[int]:
    """Element-wise sum of a short list of integers over every process."""
    t = torch.tensor(list(values), dtype=torch.int64, device=_device_for(group) if is_distributed(group) else "cpu")
    if is_distributed(group):
        with _collective("the all_reduce of counts", group):
            dist.all_reduce(t, group=group)
    return [int(v) for v in t.cpu()]


def all_strings(text: str, group=None) -> list[str]:
    """Every process's short string (up to 4000 bytes), in rank order, on every process."""
    if not is_distributed(group):
        return [text]
    return [p[1:].rstrip(b"\0").decode(errors="replace") for p in _all_gather_bytes(text.encode(), group)]


def _all_gather_bytes(data: bytes, group, flag: int = 1) -> list[bytes]:
    data = data[:4000]
    dev = _device_for(group)
    buf = torch.zeros(4096, dtype=torch.uint8, device=dev)
    buf[0] = flag
    if data:
        buf[1:1 + len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    parts = [torch.empty_like(buf) for _ in range(dist.get_world_size(group))]
    with _collective("the exchange of errors and file lists (all_gather)", group):
        dist.all_gather(parts, buf, group=group)
    return [bytes(p.cpu().numpy().tobytes()) for p in parts]
