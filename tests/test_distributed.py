"""Multi-process combination on CPU with the gloo backend: equal to one process on the same samples."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fidkit import FeatureStats, Provenance
from fidkit.distributed import gather_rows, is_distributed, merge_across_processes

PROV = Provenance(extractor="test", layer="pool3", mode="tf")
SHARDS = [(0, 37), (37, 200), (200, 201)]  # uneven, one process with a single sample


def _features():
    rng = np.random.default_rng(5)
    return rng.standard_normal((201, 24)) * 3 + 100.0


def _worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        lo, hi = SHARDS[rank]
        x = _features()[lo:hi]
        merged = merge_across_processes(FeatureStats.from_features(x, PROV))
        rows = gather_rows(x.astype(np.float32))
        np.savez(os.path.join(out_dir, f"{rank}.npz"), n=merged.n, mean=merged.mean, cov=merged.cov, rows=rows)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_three_processes_equal_one(tmp_path):
    mp.spawn(_worker, args=(3, str(tmp_path / "init"), str(tmp_path)), nprocs=3, join=True)
    x = _features()
    whole = FeatureStats.from_features(x, PROV)
    results = []
    for rank in range(3):
        with np.load(tmp_path / f"{rank}.npz", allow_pickle=False) as z:
            results.append((int(z["n"]), z["mean"], z["cov"], z["rows"]))
    for n, mean, cov, rows in results:
        assert n == 201
        np.testing.assert_allclose(mean, whole.mean, rtol=1e-12)
        np.testing.assert_allclose(cov, whole.cov, rtol=1e-9)
        np.testing.assert_array_equal(rows, x.astype(np.float32))  # every row, once, in order
    for other in results[1:]:  # every process holds the identical result
        np.testing.assert_array_equal(other[2], results[0][2])


def test_single_process_is_a_no_op():
    assert not is_distributed()
    s = FeatureStats.from_features(np.eye(3), PROV)
    np.testing.assert_array_equal(merge_across_processes(s).cov, s.cov)
    np.testing.assert_array_equal(gather_rows(np.eye(3)), np.eye(3))
    assert torch  # the module works without an initialised process group
