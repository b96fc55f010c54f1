"""FidkitMetric (torchmetrics adapter): equal to fidkit's own Evaluator on the union of the samples, on one process
and on two (gloo), where torchmetrics' own synchronisation combines the states."""

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytest.importorskip("torchmetrics")  # CI installs it (tests/test_reference_packages.py)

import fidkit  # noqa: E402
from fidkit.errors import BadInputError  # noqa: E402
from fidkit.torchmetric import FidkitMetric  # noqa: E402

from helpers import smooth_images  # noqa: E402
import tiny_net  # noqa: E402  (registers the network, also in spawned processes)

K = tiny_net.KEY
METRICS = "fd,kd,prdc"
#: batch_size=1: every image alone through the network, so features are bitwise the same however images are split
OPTS = dict(features=tiny_net.NAME, device="cpu", batch_size=1, kid_subsets=4, kid_subset_size=8, pr_k=3, dc_k=3)
#: the generated images each process gets (uneven), and the real ones
FAKE_SPLIT, REAL_SPLIT = [(0, 13), (13, 30)], [(0, 20), (20, 26)]


def _images():
    real = torch.from_numpy(smooth_images(26, 20, seed=3)).permute(0, 3, 1, 2)
    fake = torch.from_numpy(smooth_images(30, (18, 22), seed=4)).permute(0, 3, 1, 2)
    return real, fake


def _evaluator_on_all(metrics=METRICS, reference=None):
    real, fake = _images()
    ev = fidkit.Evaluator(metrics, reference, **OPTS)
    if reference is None:
        ev.update(real, real=True)
    ev.update(fake)
    return ev.compute()


def _assert_same(got: dict, want: dict):
    assert got.keys() == want.keys()
    for k in want:   # sums of outer products vs Chan's co-moment updates: equal to float64 rounding
        np.testing.assert_allclose(float(got[k]), want[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_equals_the_evaluator_on_one_process():
    real, fake = _images()
    metric = FidkitMetric(METRICS, **OPTS)
    for lo, hi in REAL_SPLIT:
        metric.update(real[lo:hi], real=True)
    for lo, hi in FAKE_SPLIT:
        metric.update(fake[lo:hi])
    out = metric.compute()
    want = _evaluator_on_all()
    _assert_same(out, want.flat())
    assert {f"fd_{K}", f"kd_{K}", f"precision_{K}", "n_a", "n_b"} <= out.keys()
    assert metric.result.n_b == 30 and metric.result.provenance == want.provenance


def test_value_and_prefix_select_what_compute_returns(tmp_path):
    real, fake = _images()
    ref = tmp_path / "ref.npz"
    fidkit.compute_reference(real, features=tiny_net.NAME, device="cpu", batch_size=1).save(ref)
    metric = FidkitMetric("fd", ref, value=f"fd_{K}", prefix="val/", **OPTS)
    metric(fake[:10])           # forward only updates
    metric.update(fake[10:])
    value = metric.compute()
    assert isinstance(value, torch.Tensor) and value.ndim == 0 and value.dtype == torch.float64
    np.testing.assert_allclose(float(value), _evaluator_on_all("fd", str(ref))[f"fd_{K}"], rtol=1e-9)
    assert metric.result.n_b == 30


def test_reset_forgets_the_images_and_keeps_the_reference(tmp_path):
    real, fake = _images()
    metric = FidkitMetric("fd", real, **OPTS)   # an image reference, extracted once
    metric.update(fake[:4])
    metric.reset()
    metric.update(fake)
    _assert_same(metric.compute(), _evaluator_on_all("fd", real).flat())


def test_errors_name_the_problem():
    real, fake = _images()
    metric = FidkitMetric("fd", real, value="fid", **OPTS)   # the tiny network's value is fd_tiny_test_net
    with pytest.raises(BadInputError, match="fixed reference"):   # the Evaluator's own check
        metric.update(fake, real=True)
    metric.update(fake)
    with pytest.raises(BadInputError, match=f"no scalar 'fid'.*fd_{K}"):
        metric.compute()


# -- two processes ------------------------------------------------------------------------------------------------

def _worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        real, fake = _images()
        metric = FidkitMetric(METRICS, **OPTS)
        (rlo, rhi), (flo, fhi) = REAL_SPLIT[rank], FAKE_SPLIT[rank]
        metric.update(real[rlo:rhi], real=True)
        for lo in range(flo, fhi, 4):               # several updates, uneven last one
            metric.update(fake[lo:min(lo + 4, fhi)])
        local_n = int(metric.fake_count)
        out = {k: float(v) for k, v in metric.compute().items()}
        with open(os.path.join(out_dir, f"{rank}.json"), "w") as f:
            json.dump({"values": out, "local_n": local_n}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_two_processes_equal_the_evaluator_on_all_samples(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    want = _evaluator_on_all().flat()   # the Evaluator fed rank 0's images, then rank 1's: the same row order
    got = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert [g["local_n"] for g in got] == [13, 17]   # each process saw only its share ...
    for g in got:
        _assert_same(g["values"], want)               # ... and computed over everything
    assert got[0]["values"] == got[1]["values"]


def test_pickles_without_its_network_and_resumes():
    """What Lightning's spawn and torchmetrics' clone do: states travel, the Evaluator is rebuilt on arrival."""
    import pickle
    real, fake = _images()
    metric = FidkitMetric("fd,kd", **{**OPTS, "kid_subset_size": 10})
    metric.update(real, real=True)
    metric.update(fake[:12])
    payload = pickle.dumps(metric)
    assert len(payload) < 100_000                         # states, not the network's module objects
    copy = pickle.loads(payload)
    copy.update(fake[12:])
    ev = fidkit.Evaluator("fd,kd", **{**OPTS, "kid_subset_size": 10})
    ev.update(real, real=True)
    ev.update(fake)
    _assert_same(copy.compute(), ev.compute().flat())


@pytest.mark.slow   # Inception at 299 x 299 on CPU: 16 images through it
def test_any_space_inception_fid_and_kid(weights):
    real, fake = _images()
    opts = dict(features="inception", weights=weights, device="cpu", batch_size=1, kid_subsets=3, kid_subset_size=3)
    metric = FidkitMetric(metrics="fid,kid", **opts)
    metric.update(real[:4], real=True)
    metric.update(fake[:2])
    metric.update(fake[2:4])
    ev = fidkit.Evaluator("fid,kid", **opts)
    ev.update(real[:4], real=True)
    ev.update(fake[:4])
    _assert_same(metric.compute(), ev.compute().flat())
