"""Multi-process combination on CPU with the gloo backend: equal to one process on the same samples."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fidkit import FeatureStats, Provenance
from fidkit.engine.distributed import gather_rows, is_distributed, merge_across_processes

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


@pytest.mark.slow
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


# -- the evaluator and the CLI across processes ---------------------------------------------

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from helpers import smooth_images, write_folder  # noqa: E402

import fidkit  # noqa: E402
from fidkit import Evaluator, evaluate_generator  # noqa: E402

EV_OPTS = dict(metrics=("fid", "kid", "is", "sfid", "prdc"), kid_subsets=4, kid_subset_size=6, is_splits=2)
FAKE_SPLIT = [(0, 7), (7, 17), (17, 17)]   # the last process generates nothing
REAL_SPLIT = [(0, 5), (5, 5), (5, 14)]


def _ev_images():
    return smooth_images(14, 40, seed=21), smooth_images(17, 36, seed=22)


def _nchw(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)


def _evaluator_worker(rank, world, init_file, out_dir, weights):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        real, fake = _ev_images()
        ev = Evaluator(weights=weights, device="cpu", batch_size=4, **EV_OPTS)
        for (lo, hi), arr, is_real in ((REAL_SPLIT[rank], real, True), (FAKE_SPLIT[rank], fake, False)):
            if hi > lo:
                ev.update(_nchw(arr[lo:hi]), real=is_real)
        local = ev.state_dict()["fake"]
        n, stats, feats = ev._fake.combined(True)
        result = ev.compute()
        # A path is the same source on every process, so it is sharded (an in-memory tensor would be this
        # process's own share).
        gen = evaluate_generator(_toy_generator, n=11, batch_size=3, seed=5, reference=os.path.join(out_dir, "ref"),
                                 weights=weights, device="cpu", value_range=(0, 1), metrics=("fid", "kid"),
                                 kid_subsets=4, kid_subset_size=5)
        np.savez(os.path.join(out_dir, f"ev{rank}.npz"), local_pool3=local["features"]["inception/pool3"].numpy(),
                 n=n, mean=stats["inception/pool3"].mean, cov=stats["inception/pool3"].cov, spatial_cov=stats["inception/spatial"].cov,
                 gathered=feats["inception/pool3"], values=json.dumps(result.values), n_a=result.n_a, n_b=result.n_b,
                 gen=json.dumps(gen.values), gen_n=gen.n_b)
    finally:
        dist.destroy_process_group()


def _toy_generator(seeds):
    z = fidkit.seeded_randn(seeds, 3, 4, 4)
    img = torch.nn.functional.interpolate(z, size=32, mode="bilinear", align_corners=False)
    return (img.tanh() * 0.5 + 0.5).clamp(0, 1)


def _assert_values_close(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:  # network batches differ between runs: float32 features agree to rounding
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7, err_msg=k)


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_evaluator_three_processes_equal_one(tmp_path, weights):
    write_folder(tmp_path / "ref", _ev_images()[0])
    mp.spawn(_evaluator_worker, args=(3, str(tmp_path / "init"), str(tmp_path), weights), nprocs=3, join=True)
    real, fake = _ev_images()
    single = Evaluator(weights=weights, device="cpu", batch_size=4, **EV_OPTS)
    single.update(_nchw(real), real=True)
    single.update(_nchw(fake))
    n, stats, _ = single._fake.combined(False)
    expected = single.compute()
    gen_single = evaluate_generator(_toy_generator, n=11, batch_size=11, seed=5, reference=real, weights=weights,
                                    device="cpu", value_range=(0, 1), metrics=("fid", "kid"), kid_subsets=4,
                                    kid_subset_size=5)
    outs = [dict(np.load(tmp_path / f"ev{r}.npz", allow_pickle=False)) for r in range(3)]
    local_concat = np.concatenate([o["local_pool3"] for o in outs])
    for o in outs:
        assert int(o["n"]) == 17 and (int(o["n_a"]), int(o["n_b"])) == (14, 17)
        np.testing.assert_allclose(o["mean"], stats["inception/pool3"].mean, rtol=1e-9)
        np.testing.assert_allclose(o["cov"], stats["inception/pool3"].cov, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(o["spatial_cov"], stats["inception/spatial"].cov, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(o["gathered"], local_concat)  # every row once, in rank order, exact
        _assert_values_close(json.loads(str(o["values"])), expected.values)
        assert int(o["gen_n"]) == 11
        _assert_values_close(json.loads(str(o["gen"])), gen_single.values)
    for o in outs[1:]:  # every process holds the identical result
        assert str(o["values"]) == str(outs[0]["values"]) and str(o["gen"]) == str(outs[0]["gen"])
        np.testing.assert_array_equal(o["cov"], outs[0]["cov"])


def _torchrun(args, cwd, env=None, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "fidkit", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_torchrun_eval_and_stats_equal_one_process(tmp_path, weights, capsys):
    real = write_folder(tmp_path / "real", smooth_images(9, 40, seed=31))
    fake = write_folder(tmp_path / "fake", smooth_images(12, 40, seed=32))
    common = ["--weights", weights, "--device", "cpu", "--batch-size", "4"]
    eval_args = ["eval", str(real), str(fake), "--metrics", "fid,kid,is,sfid,pr", "--kid-subsets", "3",
                 "--kid-subset-size", "5", "--is-splits", "2", "--json", *common]
    out = _torchrun(eval_args, tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # only rank 0 prints
    multi = json.loads(lines[0])

    from fidkit.cli import main
    assert main(eval_args) == 0
    one = json.loads(capsys.readouterr().out)
    assert (multi["n_a"], multi["n_b"]) == (one["n_a"], one["n_b"]) == (9, 12)
    for key in ("fid", "kid", "is", "sfid", "precision", "recall"):
        # Float32 features differ by ~1e-6 between batch compositions (1 vs 2 processes); KID is a small
        # difference of kernel means of order 1, so that moves it by ~1e-7 absolute.
        np.testing.assert_allclose(multi[key], one[key], rtol=1e-6, atol=1e-6 if key == "kid" else 1e-7, err_msg=key)

    out = _torchrun(["stats", str(real), "-o", str(tmp_path / "multi.npz"), "--features", *common], tmp_path)
    assert out.returncode == 0, out.stderr
    assert main(["stats", str(real), "-o", str(tmp_path / "one.npz"), "--features", *common]) == 0
    multi_ref, one_ref = (fidkit.Reference.load(tmp_path / f) for f in ("multi.npz", "one.npz"))
    assert multi_ref.stats["inception/pool3"].n == 9
    # torchrun runs one thread per process: float32 convolutions round differently, features agree to ~1e-6.
    np.testing.assert_allclose(multi_ref.features["inception/pool3"], one_ref.features["inception/pool3"], rtol=1e-5, atol=1e-6)
    cov = one_ref.stats["inception/pool3"].cov
    np.testing.assert_allclose(multi_ref.stats["inception/pool3"].cov, cov, rtol=0, atol=1e-4 * np.abs(cov).max())

    bad = write_folder(tmp_path / "bad", smooth_images(4, 40, seed=33))
    (bad / "0003.png").write_bytes(b"not a png")
    out = _torchrun(["fid", str(real), str(bad), *common], tmp_path)
    # Every process stops with rank 0's message (no hang); torchrun itself exits 1 when a worker fails.
    assert out.returncode != 0 and out.stderr.count("fidkit: error:") == 1 and "0003.png" in out.stderr


def _listing_worker(rank, world, init_file, out_dir, weights):
    import fidkit
    from helpers import smooth_images, write_folder
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        # The "same" folder, but rank 1 sees one image more (a folder being written to, or another machine).
        from pathlib import Path
        folder = write_folder(Path(out_dir) / f"seen-by-{rank}", smooth_images(4 + rank, 24, seed=rank))
        try:
            fidkit.compute_reference(folder, spatial=False, weights=weights, device="cpu", batch_size=2,
                                     distributed=True)
            message = "no error"
        except fidkit.BadInputError as e:
            message = str(e)
        with open(os.path.join(out_dir, f"listing{rank}.txt"), "w") as f:
            f.write(message)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_processes_that_list_different_files_are_refused(tmp_path, weights):
    mp.spawn(_listing_worker, args=(2, str(tmp_path / "init"), str(tmp_path), weights), nprocs=2, join=True)
    messages = [(tmp_path / f"listing{r}.txt").read_text() for r in range(2)]
    assert messages[0] == messages[1]  # every process raises the same error, none hangs
    assert "saw different lists of images" in messages[0]
    assert "rank 0: 4 images" in messages[0] and "rank 1: 5 images" in messages[0]


def _crashing_worker(rank, world, init_file, out_dir, weights):
    import fidkit
    from helpers import smooth_images
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)

    def batches():
        yield smooth_images(4, 24, seed=rank)
        if rank == 1:
            raise RuntimeError("the data loader of rank 1 broke")
    try:
        try:
            fidkit.compute_reference(batches(), spatial=False, weights=weights, device="cpu", distributed=True)
            message = "no error"
        except Exception as e:  # noqa: BLE001
            message = f"{type(e).__name__}: {e}"
        with open(os.path.join(out_dir, f"crash{rank}.txt"), "w") as f:
            f.write(message)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_a_non_fidkit_error_in_one_process_reaches_every_process(tmp_path, weights):
    mp.spawn(_crashing_worker, args=(2, str(tmp_path / "init"), str(tmp_path), weights), nprocs=2, join=True)
    rank0, rank1 = ((tmp_path / f"crash{r}.txt").read_text() for r in range(2))
    assert rank1 == "RuntimeError: the data loader of rank 1 broke"  # its own exception, traceback intact
    assert rank0.startswith("FidkitError") and "process 1: RuntimeError: the data loader of rank 1 broke" in rank0
