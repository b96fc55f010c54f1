"""Which images each process reads under torch.distributed, node-local copies that differ, and a lost process.

gloo process groups spawned on the CPU, as in tests/engine/test_distributed.py.  The network is replaced by a cheap
deterministic function of the pixels: what is checked here is which images are counted, not the network."""

import datetime
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from PIL import Image

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")

WORLD = 2
PER_RANK = 6


def _features(self, batch, taps=None):
    f = F.adaptive_avg_pool2d(batch.float(), 27).flatten(1)[:, :2048]
    return {t: f for t in (taps or ("pool3",))}


def _cheap():
    from fidkit.extractors.runtime import Extractor
    Extractor.__call__ = _features


def _images(seed):
    from conftest import smooth_images
    return smooth_images(PER_RANK, 16, seed=seed)


def _nchw(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)


def _init(rank, init_file, seconds=60):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                           timeout=datetime.timedelta(seconds=seconds))


def _kw(weights):
    return dict(spatial=False, weights=weights, device="cpu", batch_size=4, workers=1)


# -- in-memory images are each process's own share; a path is sharded ---------------------------------------------

def _share_worker(rank, init_file, out_dir, weights, folder, same):
    import warnings
    import fidkit
    _cheap()
    _init(rank, init_file)
    try:
        mine = _images(100 if same else 100 + rank)  # this process's generated images
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            own = fidkit.compute_reference(_nchw(mine), distributed=True, **_kw(weights))
            r = fidkit.evaluate(folder, _nchw(mine), metrics="fid", distributed=True, weights=weights,
                                device="cpu", batch_size=4, workers=1)
        s = own.stats["inception/pool3"]
        np.savez(os.path.join(out_dir, f"share{rank}.npz"), n=s.n, mean=s.mean, cov=s.cov, n_a=r.n_a, n_b=r.n_b,
                 fid=r["fid"], warned=" | ".join(str(w.message) for w in caught))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("same", [False, True])
def test_in_memory_images_are_a_share_and_paths_are_sharded(same, tmp_path, weights, monkeypatch):
    import fidkit
    from conftest import smooth_images, write_folder
    folder = write_folder(tmp_path / "real", smooth_images(9, 16, seed=7))
    mp.spawn(_share_worker, args=(str(tmp_path / "init"), str(tmp_path), weights, str(folder), same),
             nprocs=WORLD, join=True)
    monkeypatch.setattr("fidkit.extractors.runtime.Extractor.__call__", _features)
    together = np.concatenate([_images(100 if same else 100 + r) for r in range(WORLD)])  # rank order
    one = fidkit.compute_reference(_nchw(together), **_kw(weights)).stats["inception/pool3"]
    one_fid = fidkit.evaluate(folder, _nchw(together), metrics="fid", weights=weights, device="cpu",
                              batch_size=4, workers=1)
    for rank in range(WORLD):
        with np.load(tmp_path / f"share{rank}.npz", allow_pickle=False) as z:
            assert int(z["n"]) == WORLD * PER_RANK == 12  # every image of every process, none dropped
            np.testing.assert_allclose(z["mean"], one.mean, rtol=1e-10)
            np.testing.assert_allclose(z["cov"], one.cov, rtol=1e-8, atol=1e-10)
            assert (int(z["n_a"]), int(z["n_b"])) == (9, 12)  # the folder is read once in all, not once each
            np.testing.assert_allclose(float(z["fid"]), one_fid["fid"], rtol=1e-8)
            warned = str(z["warned"])
            # Every process passing the same images is almost always a mistake (one seed on every rank): said so.
            assert ("every process passed the same" in warned) == same, warned


# -- node-local copies: the same names, other content ----------------------------------------------------------

def _node_local_worker(rank, init_file, out_dir, weights, variant):
    import fidkit
    from conftest import smooth_images
    _cheap()
    _init(rank, init_file)
    try:
        # Each process has its own copy of "imgs" (its own working folder, as each machine its local disk):
        # fidkit is given the same path on every process.
        node = Path(out_dir) / f"node{rank}"
        (node / "imgs").mkdir(parents=True)
        imgs = smooth_images(5, 16, seed=3)
        for i, img in enumerate(imgs):
            fmt = "BMP" if variant == "bmp-same-size" else "PNG"
            if rank == 1 and i == 2 and variant != "identical":
                img = 255 - img if variant == "bmp-same-size" else smooth_images(1, 16, seed=99)[0]
            p = node / "imgs" / f"{i:04d}.{fmt.lower()}"
            Image.fromarray(img).save(p, format=fmt)
            os.utime(p, ns=(10**18 + rank * 10**12, 10**18 + rank * 10**12))  # copies made at other times
        os.chdir(node)
        try:
            r = fidkit.compute_reference("imgs", distributed=True, **_kw(weights))
            message = f"ok n={r.stats['inception/pool3'].n}"
        except fidkit.BadInputError as e:
            message = str(e)
        Path(out_dir, f"node{rank}.txt").write_text(message)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("variant", ["bmp-same-size", "png-other-image", "identical"])
def test_node_local_copies_that_differ_are_refused(variant, tmp_path, weights):
    mp.spawn(_node_local_worker, args=(str(tmp_path / "init"), str(tmp_path), weights, variant), nprocs=WORLD,
             join=True)
    messages = [(tmp_path / f"node{r}.txt").read_text() for r in range(WORLD)]
    assert messages[0] == messages[1]  # every process stops with the same message
    if variant == "identical":
        # The same content copied at other times (cp without -p): accepted, every image counted once.
        assert messages[0] == "ok n=5"
    else:
        assert "saw different lists of images" in messages[0]
        assert f"imgs/0002.{'bmp' if variant.startswith('bmp') else 'png'}" in messages[0], messages[0]
        assert "0001" not in messages[0] and "0003" not in messages[0]  # the differing file, not its neighbours


# -- a process lost before a collective ---------------------------------------------------------------------------

def _lost_worker(rank, init_file, out_dir, weights, where):
    import fidkit
    from fidkit.engine.distributed import merge_across_processes
    from fidkit.stats.moments import FeatureStats
    from fidkit.stats.provenance import Provenance
    _cheap()
    _init(rank, init_file, seconds=10)
    if rank == 1:
        os._exit(0)  # killed: no exception, no goodbye
    start = time.monotonic()
    try:
        if where == "merge":
            merge_across_processes(FeatureStats.from_features(np.eye(4), Provenance(extractor="t")))
        else:
            fidkit.compute_reference(_nchw(_images(1)), distributed=True, **_kw(weights))
        message = "no error"
    except Exception as e:  # noqa: BLE001
        message = f"{type(e).__module__}.{type(e).__name__}|{isinstance(e, fidkit.FidkitError)}|{e}"
    Path(out_dir, "lost.txt").write_text(f"{time.monotonic() - start:.1f}|{message}")
    os._exit(0)  # the group cannot be destroyed cleanly without its peer


@pytest.mark.parametrize("where", ["merge", "extract"])
def test_a_lost_process_is_a_named_error(where, tmp_path, weights):
    start = time.monotonic()
    ctx = mp.start_processes(_lost_worker, args=(str(tmp_path / "init"), str(tmp_path), weights, where),
                             nprocs=WORLD, join=False, start_method="spawn")
    while not ctx.join(timeout=60):
        assert time.monotonic() - start < 120, "a process hangs"
    seconds, message = (tmp_path / "lost.txt").read_text().split("|", 1)
    cls, is_fidkit, text = message.split("|", 2)
    assert cls.endswith("ProcessLostError") and is_fidkit == "True", message
    assert "rank 1" in text and "was lost during" in text and ("all_gather" in text or "all_reduce" in text), text
    assert float(seconds) < 30
