#!/usr/bin/env python
"""fidkit on a CUDA GPU: extraction throughput next to the anchors, CUDA-vs-CPU feature agreement, the
differentiable FID and the online Evaluator.  One prepared run, about 5 minutes, on one GPU.

The command for a GPU machine without internet, from the repository root, with the anchors' wheels in ``.whl/``
(torch-fidelity 0.4.0, pytorch-fid 0.3.0, clean-fid 0.1.35; torch, torchvision, torchmetrics, scipy, numpy,
pillow and tqdm already installed; fidkit is imported from ``src/``, not installed):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src && PYTHONUNBUFFERED=1 TQDM_DISABLE=1 python3 benchmarks/bench_cuda.py --out $OUT/cuda.json 2>&1 | tee $OUT/cuda.log

Check the script on a CPU (same code paths, tiny sizes; the CUDA-vs-CPU comparisons are then CPU vs CPU):

    python benchmarks/bench_cuda.py --device cpu --quick --out /tmp/cuda-cpu.json

Every network loads random weights in the published format (``fidkit.testing``), the same file in every
library: speed does not depend on the weight values, and the libraries' statistics stay comparable.  Each
section runs in its own subprocesses (one per library where libraries are compared), under a share of
``--budget-s``; a measurement that would not fit its share runs on fewer images (the JSON and the tables say
how many) or is skipped with the reason.  A failing or timed-out part is recorded and the run goes on.  Results
are written to ``--out`` after every part, and printed as Markdown tables at the end (``--render`` prints them
again from the JSON).

Sections:

1. ``extract``: Inception pool3 statistics of N 256-px images (default 5000; ``--quick`` 64), images/s with the
   network already loaded (one warm-up pass first, ``torch.cuda.synchronize`` around every timed region):
   fidkit ``compute_stats`` on a folder of PNGs and on a uint8 tensor already on the GPU, at fidkit's default
   batch (32) and at 128; torch-fidelity (``fid_input_id_to_statistics``, its DataLoader), pytorch-fid
   (``compute_statistics_of_path``, min(cpus, 8) workers), clean-fid (``get_folder_features``, mode ``clean``,
   12 workers) on the folder and torchmetrics ``FrechetInceptionDistance.update`` on the GPU tensor, all at
   batch 128.  The ratio column is fidkit / anchor at the same batch and the same kind of input.  Each
   library's statistics are compared with fidkit's (Fréchet distance between the two), to show the same
   weights were used.
2. ``parity``: fidkit's features on the device vs on the CPU for the same 16 images (or clips): Inception pool3
   (``tf`` and ``clean``), DINOv2 ViT-L/14 and ViT-B/14, CLIP ViT-B/32, I3D (16-frame clips): largest
   difference relative to the largest feature, and the FID between two halves computed from device features vs
   CPU features.  Throughput on the device of the network alone (prepared batches) and of ``compute_stats`` on
   a uint8 tensor (decoding excluded, preprocessing included) for DINOv2 ViT-L/14, CLIP ViT-B/32 and I3D.
3. ``differentiable``: ``fidkit.DifferentiableFID`` forward + backward at b = 8, 32, 128 on 64-px images
   (time, peak CUDA memory), ``frechet_distance_torch`` with a ``FrechetReference`` on the device (float64 and
   float32) against the CPU float64 value and fidkit's exact CPU route, and a whole-set Fréchet distance
   (5000 x 2048 features) on the device against ``frechet_distance_from_moments`` on the CPU.
   (``fidkit.frechet_distance`` itself has no device path: it works on float64 numpy statistics on the CPU.)
4. ``online``: ``fidkit.Evaluator(metrics=("fid", "kid", "is"))`` against torchmetrics' FID + KID + IS metric
   objects (same weights, ``antialias=False`` = TF1 bilinear, fidkit's default protocol), both fed the same
   uint8 64-px batches of 128 already on the GPU, N per side (default 5000): update seconds, compute seconds,
   the metric values side by side.

Caveats: fidkit turns TF32 off for its networks (exact float32); the anchors run with PyTorch's defaults
(``torch.backends.cudnn.allow_tf32`` is True by default: TF32 convolutions), which the JSON records.
clean-fid normally runs NVIDIA's TorchScript Inception file; it cannot be made here with random weights, so
clean-fid's own copy of the same FID Inception network (``cleanfid.inception_pytorch``, eager PyTorch) runs
in its pipeline instead, fed ``(x - 128) / 128`` as the TorchScript model's ``layers`` are.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGE_SIZE = 256
SECTIONS = ("extract", "parity", "differentiable", "online")
# Share of the time budget per section, and per subprocess within a section.
SECTION_WEIGHT = {"extract": 0.42, "parity": 0.25, "differentiable": 0.10, "online": 0.23}
TASKS = {
    "extract": [("extract:fidkit", 2.6), ("extract:torch-fidelity", 1.0), ("extract:pytorch-fid", 1.0),
                ("extract:clean-fid", 1.2), ("extract:torchmetrics", 1.3)],
    "parity": [("parity", 1.0)],
    "differentiable": [("differentiable", 1.0)],
    "online": [("online:fidkit", 1.0), ("online:torchmetrics", 1.6)],
}
MODULE_OF = {"torch-fidelity": "torch_fidelity", "pytorch-fid": "pytorch_fid", "clean-fid": "cleanfid",
             "torchmetrics": "torchmetrics", "fidkit": "fidkit"}
GRACE_S = 8.0           # a subprocess is killed this long after its deadline
MIN_TASK_S = 6.0        # a subprocess with less time than this is not started


def _ensure_fidkit() -> None:
    """fidkit from the environment, else from this checkout's ``src/`` (the GPU machine runs it uninstalled)."""
    try:
        import fidkit  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(HERE.parent / "src"))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"),
                                                                 os.environ.get("PYTHONPATH")]))


def _atomic_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _err(e: BaseException) -> dict:
    return {"error": f"{type(e).__name__}: {e}"[:600], "traceback": traceback.format_exc()[-3000:]}


# ==============================================================================================
# images (deterministic, written once by the parent)
# ==============================================================================================

def make_image(seed: int, index: int, variant: int, size: int = IMAGE_SIZE):
    """A smooth random colour field (6 x 6 or 9 x 9 grid, bicubic) plus pixel noise: ``size`` px, uint8 RGB."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng([seed, index])
    grid = 6 if variant == 0 else 9
    coarse = rng.integers(0, 256, (grid, grid, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.int16)
    img = img + rng.integers(-12, 13, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_png_range(job):
    from PIL import Image
    folder, seed, variant, start, stop = job
    for i in range(start, stop):
        Image.fromarray(make_image(seed, i, variant)).save(Path(folder) / f"{i:05d}.png")
    return stop - start


def write_pngs(folder: Path, n: int, seed: int = 1, variant: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder), seed, variant, s, min(s + 100, n)) for s in range(0, n, 100)]
    procs = max(1, min(os.cpu_count() or 1, 16))
    if procs > 1 and len(jobs) > 1:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            pool.map(_write_png_range, jobs)
    else:
        for j in jobs:
            _write_png_range(j)


def subset_folder(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` PNGs of ``src`` as hard links (symlinks where links fail) in ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.png"))[:n]:
        if (dst / f.name).exists():
            continue
        try:
            os.link(f, dst / f.name)
        except OSError:
            (dst / f.name).symlink_to(f)
    return dst


def load_pngs(folder: str, n: int | None = None):
    """The folder's PNGs as one uint8 N x 3 x H x W tensor on the CPU (threads; not timed)."""
    import numpy as np
    import torch
    from concurrent.futures import ThreadPoolExecutor
    from PIL import Image
    files = sorted(Path(folder).glob("*.png"))[:n]
    with ThreadPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as pool:
        arrays = list(pool.map(lambda f: np.asarray(Image.open(f).convert("RGB")), files))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def smooth_batch(count: int, size: int, seed: int, variant: int = 0, device="cpu", frames: int | None = None):
    """Deterministic smooth uint8 images (``count x 3 x size x size``) or clips (``count x T x 3 x size x size``,
    the field panning by a per-clip step), generated with torch on ``device``."""
    import torch
    import torch.nn.functional as F
    g = torch.Generator(device="cpu").manual_seed(10_007 * seed + 31 * size + variant)
    grid = 6 if variant == 0 else 9
    if frames is None:
        coarse = (torch.rand((count, 3, grid, grid), generator=g) * 255).to(device)
        x = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
        x = x + (torch.rand(x.shape, generator=g) * 24 - 12).to(device)
        return x.round_().clamp_(0, 255).to(torch.uint8)
    pad = 3 * frames
    coarse = (torch.rand((count, 3, grid, grid), generator=g) * 255).to(device)
    canvas = F.interpolate(coarse, size=(size + pad, size + pad), mode="bicubic", align_corners=False)
    canvas = canvas.round_().clamp_(0, 255).to(torch.uint8)
    steps = torch.randint(0, 4, (count, 2), generator=g)
    out = torch.empty((count, frames, 3, size, size), dtype=torch.uint8, device=device)
    for dy in range(4):
        for dx in range(4):  # clips that pan by the same step, together
            idx = ((steps[:, 0] == dy) & (steps[:, 1] == dx)).nonzero().flatten().to(device)
            if len(idx):
                for t in range(frames):
                    out[idx, t] = canvas[idx, :, t * dy:t * dy + size, t * dx:t * dx + size]
    return out


# ==============================================================================================
# children: helpers
# ==============================================================================================

class Recorder:
    """Results of one subprocess, written to its JSON file after every measurement (so a kill keeps them)."""

    def __init__(self, path: Path, deadline: float, info: dict):
        self.path, self.deadline = path, deadline
        self.data: dict = {"info": info}
        self.save()

    def left(self) -> float:
        return self.deadline - time.time()

    def share(self, parts: float, reserve_s: float = 0.0) -> float:
        """Seconds for one of ``parts`` equal parts of the time left (minus ``reserve_s``)."""
        return max(0.0, (self.left() - reserve_s) / max(parts, 1.0))

    def save(self) -> None:
        _atomic_json(self.path, self.data)

    def put(self, key: str, value) -> None:
        self.data[key] = value
        self.save()

    def run(self, key: str, fn, need_s: float = 0.0):
        """``fn()`` recorded under ``key``: its dict, or the error; skipped when less than ``need_s`` is left."""
        if self.left() < need_s:
            self.put(key, {"skipped": f"time budget: {self.left():.0f} s left, ~{need_s:.0f} s needed"})
            return None
        print(f"[{time.strftime('%H:%M:%S')}]   {key} ...", flush=True)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as rec:
                warnings.simplefilter("always")
                value = fn()
            if isinstance(value, dict):
                msgs = sorted({str(w.message)[:200] for w in rec})
                if msgs:
                    value.setdefault("warnings", msgs[:8])
        except Exception as e:  # recorded, the next measurement runs
            value = _err(e)
            print(f"    failed: {value['error']}", flush=True)
        if isinstance(value, dict):
            value.setdefault("wall_s", time.perf_counter() - t0)
        self.put(key, value)
        _free_cuda()
        return value


def _free_cuda() -> None:
    try:
        import gc

        import torch
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


def _device(spec: dict):
    import torch
    return torch.device(spec["device"])


def _sync(dev) -> None:
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(dev, fn):
    """``fn()`` and its seconds, with the device synchronised before and after."""
    _sync(dev)
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    return out, time.perf_counter() - t0


def _torch_info(dev) -> dict:
    import torch
    info = {"torch": torch.__version__, "device": str(dev), "threads": torch.get_num_threads(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        info.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2 ** 30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def _stats_compare(mu, cov, n, ref_path: str | None) -> dict:
    """How far statistics (mu, cov of n samples) are from fidkit's folder statistics (same images)."""
    if not ref_path or not os.path.exists(ref_path):
        return {}
    import numpy as np
    import fidkit
    with np.load(ref_path) as f:
        mu_f, cov_f, n_f = f["mean"], f["cov"], int(f["n"])
    mu, cov = np.asarray(mu, np.float64), np.asarray(cov, np.float64)
    if n != n_f:
        return {"vs_fidkit": f"not compared: {n} images here, {n_f} in fidkit's statistics"}
    fd = fidkit.frechet_distance_from_moments(mu, cov, mu_f, cov_f, n_a=n, n_b=n_f)
    return {"fd_vs_fidkit_tf": float(fd),
            "mean_rel_diff_vs_fidkit_tf": float(np.linalg.norm(mu - mu_f) / max(np.linalg.norm(mu_f), 1e-30)),
            "trace_cov": float(np.trace(cov)), "trace_cov_fidkit": float(np.trace(cov_f))}


def measure_throughput(rec: Recorder, dev, run, sizes: list[tuple[int, object]], warm, n_warm: int,
                       warmups: int = 2, reserve_s: float = 0.0) -> dict:
    """Warm up on ``warm`` (``n_warm`` images), then time ``run`` on the largest input of ``sizes`` that fits.

    ``sizes``: ``(n, input)`` from largest to smallest.  The rate of the last warm-up pass (pessimistic: it
    still pays per-call costs) decides which size fits into the time left minus ``reserve_s``.
    """
    warm_s = []
    for _ in range(max(1, warmups)):
        _, s = timed(dev, lambda: run(warm))
        warm_s.append(s)
    rate = n_warm / max(warm_s[-1], 1e-9)
    budget = rec.left() - reserve_s
    for i, (n, inp) in enumerate(sizes):
        if n / rate * 1.3 + 1 < budget or i == len(sizes) - 1:
            break
    if n / rate > budget + 5:
        return {"skipped": f"time budget: ~{n / rate:.0f} s needed for {n} images at the warm-up rate "
                           f"({rate:.0f} img/s), {budget:.0f} s left", "warmup_s": warm_s}
    out, secs = timed(dev, lambda: run(inp))
    res = {"n": n, "seconds": secs, "img_per_s": n / secs, "warmup_s": warm_s, "warmup_img_per_s": rate}
    if n != sizes[0][0]:
        res["note"] = f"{n} images instead of {sizes[0][0]}: the larger set did not fit the time budget"
    return res, out


# ==============================================================================================
# section 1: extraction throughput
# ==============================================================================================

def _sizes_folder(spec):
    return [(spec["n"], spec["folder"]), (spec["n_small"], spec["folder_small"])]


def _dataloader_retry(fn, *args):
    """Run ``fn(workers, *args)``; when the DataLoader's worker processes fail (shared memory in containers),
    run it again in the main process and say so."""
    try:
        return fn(None, *args), None
    except Exception as e:
        text = f"{type(e).__name__}: {e}"
        if "worker" in text.lower() or "shared memory" in text.lower() or "shm" in text.lower():
            return fn(0, *args), f"its DataLoader workers failed ({text[:200]}); measured with num_workers=0"
        raise


def child_extract_fidkit(spec, rec: Recorder):
    import numpy as np
    import fidkit
    from fidkit.engine.extract import default_workers
    from fidkit.extractors import Extractor
    dev = _device(spec)
    w = spec["weights"]["inception"]
    _, load_s = timed(dev, lambda: Extractor.get("inception", w, dev))
    rec.put("load_s", load_s)
    rec.put("decode_threads", default_workers())
    ncpu = os.cpu_count() or 1
    big = spec["batches"][-1]
    # (key, input kind, batch, decode threads): in order of priority; each gets an equal share of the time left
    plan = [(f"folder_b{bs}", "folder", bs, None) for bs in spec["batches"]]
    plan += [(f"tensor_b{bs}", "tensor", bs, None) for bs in spec["batches"]]
    if ncpu > default_workers():
        plan.append((f"folder_b{big}_workers{ncpu}", "folder", big, ncpu))
    u8 = None

    def measurement(kind, bs, workers, remaining):
        def go():
            nonlocal u8
            run = lambda src: fidkit.compute_stats(src, weights=w, device=dev, batch_size=bs,  # noqa: E731
                                                   workers=workers)
            if kind == "folder":
                sizes, warm = _sizes_folder(spec), spec["folder_warm"]
            else:
                if u8 is None:  # the same images, decoded once (not timed), as a uint8 tensor on the device
                    u8 = load_pngs(spec["folder"]).to(dev)
                sizes, warm = [(spec["n"], u8), (spec["n_small"], u8[:spec["n_small"]])], u8[:spec["n_warm"]]
            r = measure_throughput(rec, dev, run, sizes, warm, spec["n_warm"], spec["warmups"],
                                   reserve_s=rec.left() - rec.share(remaining))
            if isinstance(r, dict):
                return r
            res, stats = r
            res.update(batch_size=bs, api=f"fidkit.compute_stats({kind}"
                       + (f", workers={workers})" if workers else ")"),
                       input="folder of PNGs" + (f", {workers} decode threads" if workers else "")
                       if kind == "folder" else f"uint8 tensor on {dev}")
            if kind == "folder" and bs == spec["batches"][0] and workers is None:
                np.savez(spec["fidkit_stats"], mean=stats.mean, cov=stats.cov, n=stats.n)
            else:
                res.update(_stats_compare(stats.mean, stats.cov, stats.n, spec["fidkit_stats"]))
            return res
        return go

    for i, (key, kind, bs, workers) in enumerate(plan):
        rec.run(key, measurement(kind, bs, workers, len(plan) - i), need_s=3)


def child_extract_torch_fidelity(spec, rec: Recorder):
    import torch_fidelity
    from torch_fidelity.metric_fid import fid_input_id_to_statistics
    from torch_fidelity.utils import create_feature_extractor
    dev = _device(spec)
    cuda = dev.type == "cuda"
    w = spec["weights"]["inception"]
    rec.put("version", torch_fidelity.__version__)
    fe, load_s = timed(dev, lambda: create_feature_extractor("inception-v3-compat", ["2048"], cuda=cuda,
                                                             feature_extractor_weights_path=w, verbose=False))
    rec.put("load_s", load_s)
    bs = 128

    def run_with(workers, folder):
        kw = dict(input1=folder, cuda=cuda, batch_size=bs, verbose=False, cache=False,
                  save_cpu_ram=workers == 0)
        return fid_input_id_to_statistics(1, fe, "2048", **kw)

    notes = []

    def run(folder):
        out, note = _dataloader_retry(run_with, folder)
        if note:
            notes.append(note)
        return out

    def go():
        r = measure_throughput(rec, dev, run, _sizes_folder(spec), spec["folder_warm"], spec["n_warm"],
                               spec["warmups"], reserve_s=2)
        if isinstance(r, dict):
            return r
        res, stats = r
        res.update(batch_size=bs, input="folder of PNGs",
                   api="torch_fidelity.metric_fid.fid_input_id_to_statistics (its DataLoader: min(4, 2 cpus) "
                       "workers, pin_memory)")
        res.update(_stats_compare(stats["mu"], stats["sigma"], res["n"], spec["fidkit_stats"]))
        if notes:
            res["note_workers"] = notes[-1]
        return res
    rec.run(f"folder_b{bs}", go, need_s=3)


def child_extract_pytorch_fid(spec, rec: Recorder):
    import torch
    import pytorch_fid
    import pytorch_fid.inception as pi
    w = spec["weights"]["inception"]
    pi.load_state_dict_from_url = lambda *a, **k: torch.load(w, map_location="cpu", weights_only=True)
    import pytorch_fid.fid_score as fs
    from pytorch_fid.inception import InceptionV3
    dev = _device(spec)
    rec.put("version", getattr(pytorch_fid, "__version__", "?"))
    model, load_s = timed(dev, lambda: InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(dev).eval())
    rec.put("load_s", load_s)
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count() or 1
    workers = min(ncpu, 8)  # its command line's default
    bs = 128
    notes = []

    def run_with(nw, folder):
        return fs.compute_statistics_of_path(folder, model, bs, 2048, dev, num_workers=workers if nw is None else nw)

    def run(folder):
        out, note = _dataloader_retry(run_with, folder)
        if note:
            notes.append(note)
        return out

    def go():
        r = measure_throughput(rec, dev, run, _sizes_folder(spec), spec["folder_warm"], spec["n_warm"],
                               spec["warmups"], reserve_s=2)
        if isinstance(r, dict):
            return r
        res, (mu, sigma) = r
        res.update(batch_size=bs, input="folder of PNGs",
                   api=f"pytorch_fid.fid_score.compute_statistics_of_path ({workers} workers)",
                   protocol_note="pytorch-fid resizes with F.interpolate bilinear: statistics differ from "
                                 "fidkit's tf mode by design")
        res.update(_stats_compare(mu, sigma, res["n"], spec["fidkit_stats"]))
        if notes:
            res["note_workers"] = notes[-1]
        return res
    rec.run(f"folder_b{bs}", go, need_s=3)


def child_extract_clean_fid(spec, rec: Recorder):
    import numpy as np
    import torch
    import cleanfid
    import cleanfid.inception_pytorch as cip
    w = spec["weights"]["inception"]
    cip.load_state_dict_from_url = lambda *a, **k: torch.load(w, map_location="cpu", weights_only=True)
    from cleanfid.fid import get_folder_features
    dev = _device(spec)
    rec.put("version", getattr(cleanfid, "__version__", "0.1.35?"))

    def build():
        # clean-fid's own FID Inception (pytorch-fid's network), no resize or normalisation inside: the
        # TorchScript model's ``layers`` take (x - 128) / 128 of 299 x 299 images.
        return cip.InceptionV3(output_blocks=[3], resize_input=False, normalize_input=False).to(dev).eval()
    net, load_s = timed(dev, build)
    rec.put("load_s", load_s)

    def model_fn(x):
        return net((x - 128) / 128)[0].squeeze(-1).squeeze(-1)
    bs, workers = 128, 12  # get_folder_features' and compute_fid's default workers
    notes = []

    def run_with(nw, folder):
        feats = get_folder_features(folder, model=model_fn, num_workers=workers if nw is None else nw,
                                    batch_size=bs, device=dev, mode="clean", verbose=False)
        return np.mean(feats, axis=0), np.cov(feats, rowvar=False)  # what compute_fid does next

    def run(folder):
        out, note = _dataloader_retry(run_with, folder)
        if note:
            notes.append(note)
        return out

    def go():
        r = measure_throughput(rec, dev, run, _sizes_folder(spec), spec["folder_warm"], spec["n_warm"],
                               spec["warmups"], reserve_s=2)
        if isinstance(r, dict):
            return r
        res, (mu, sigma) = r
        res.update(batch_size=bs, input="folder of PNGs",
                   api=f"cleanfid.fid.get_folder_features(mode='clean', {workers} workers) + np.mean/np.cov",
                   protocol_note="clean mode resizes with PIL bicubic on float32: statistics differ from fidkit's "
                                 "tf mode by design; network: cleanfid.inception_pytorch (eager) instead of "
                                 "NVIDIA's TorchScript file")
        res.update(_stats_compare(mu, sigma, res["n"], spec["fidkit_stats"]))
        if notes:
            res["note_workers"] = notes[-1]
        return res
    rec.run(f"folder_b{bs}", go, need_s=3)


def child_extract_torchmetrics(spec, rec: Recorder):
    import torch
    import torchmetrics
    from torchmetrics.image.fid import FrechetInceptionDistance
    dev = _device(spec)
    w = spec["weights"]["inception"]
    rec.put("version", torchmetrics.__version__)
    u8 = load_pngs(spec["folder"]).to(dev)
    sizes = [(spec["n"], u8), (spec["n_small"], u8[:spec["n_small"]])]
    bs = 128

    def variant(antialias: bool):
        def go():
            m, load_s = timed(dev, lambda: FrechetInceptionDistance(
                feature=2048, feature_extractor_weights_path=w, antialias=antialias).to(dev))

            def run(t):
                m.reset()
                for i in range(0, len(t), bs):
                    m.update(t[i:i + bs], real=True)
                return m

            r = measure_throughput(rec, dev, run, sizes, u8[:spec["n_warm"]], spec["n_warm"], spec["warmups"],
                                   reserve_s=2)
            if isinstance(r, dict):
                return r
            res, m = r
            n = int(m.real_features_num_samples)
            mean = (m.real_features_sum / n).double()
            cov = (m.real_features_cov_sum - n * torch.outer(mean, mean)) / (n - 1)
            res.update(batch_size=bs, input=f"uint8 tensor on {dev}", load_s=load_s,
                       api=f"FrechetInceptionDistance(feature_extractor_weights_path=..., antialias={antialias})"
                           ".update(real=True)",
                       protocol_note=("TF1 bilinear resize, fidkit's tf protocol" if not antialias else
                                      "torchmetrics' default anti-aliased resize: differs from the tf protocol"))
            res.update(_stats_compare(mean.cpu().numpy(), cov.cpu().numpy(), n, spec["fidkit_stats"]))
            return res
        return go

    rec.run(f"tensor_b{bs}_antialias_false", variant(False), need_s=3)
    rec.run(f"tensor_b{bs}_antialias_true", variant(True), need_s=3)


# ==============================================================================================
# section 2: CUDA vs CPU features, throughput of the other networks
# ==============================================================================================

def random_i3d_state_dict(seed: int = 0) -> dict:
    """Random weights with the keys and shapes of ``i3d_pretrained_400.pt`` (cd-fvd's layout): fidkit.testing's."""
    from fidkit.testing import random_i3d_state_dict as random_state
    return random_state(seed)


def _write_weights(kind: str, path: Path) -> str:
    if path.exists():
        return str(path)
    import torch
    from fidkit.testing import write_random_dinov2_weights
    tmp = path.with_name(path.name + ".part" + path.suffix)
    if kind == "dinov2-vitl14":
        write_random_dinov2_weights(tmp, "vitl14", seed=0)
    elif kind == "dinov2-vitb14":
        write_random_dinov2_weights(tmp, "vitb14", seed=0)
    elif kind == "clip-vitb32":
        from fidkit.extractors.clip import write_random_openai_clip
        write_random_openai_clip(tmp, "ViT-B/32", seed=0)
    elif kind == "i3d":
        torch.save(random_i3d_state_dict(0), tmp)
    else:
        raise ValueError(kind)
    os.replace(tmp, path)
    return str(path)


def _features(ext, prep, u8, dev, batch: int) -> "object":
    """Embedding features (float64, CPU) of uint8 images/clips ``u8`` through ``prep`` on ``dev``."""
    import torch
    out = []
    for i in range(0, len(u8), batch):
        x = prep.prepare_many(u8[i:i + batch].to(dev))
        f = ext(x)
        out.append(next(iter(f.values())).double().cpu())
    return torch.cat(out)


def _half_fd(feats, half: int) -> float:
    import fidkit
    a, b = feats[:half].numpy(), feats[half:].numpy()
    sa, sb = fidkit.FeatureStats.from_features(a), fidkit.FeatureStats.from_features(b)
    return fidkit.frechet_distance_from_moments(sa.mean, sa.cov, sb.mean, sb.cov, n_a=sa.n, n_b=sb.n)


def child_parity(spec, rec: Recorder):
    import torch
    import fidkit
    from fidkit.extractors import Extractor, get_spec
    dev = _device(spec)
    cpu = torch.device("cpu")
    same = dev.type == "cpu"
    wdir = Path(spec["workdir"]) / "weights"
    wdir.mkdir(exist_ok=True)
    n = spec["parity_n"]
    half = n // 2
    frames, clip_size = spec["clip_frames"], spec["clip_size"]
    # half from each distribution, so the FID between the halves is a real distance
    imgs = torch.cat([load_pngs(spec["folder"], half), load_pngs(spec["folder_b"], n - half)])
    clips = torch.cat([smooth_batch(half, clip_size, 5, 0, frames=frames),
                       smooth_batch(n - half, clip_size, 6, 1, frames=frames)])
    weights: dict[str, str] = {"inception": spec["weights"]["inception"]}

    def weight(kind):
        if kind not in weights:
            t0 = time.perf_counter()
            weights[kind] = _write_weights(kind, wdir / f"random-{kind}.pt")
            rec.data.setdefault("weights_written_s", {})[kind] = time.perf_counter() - t0
        return weights[kind]

    def parity(name, kind, variant, inputs):
        def go():
            s = get_spec(name)
            prep = s.variant(variant)
            w = weight(kind)
            batch = 8 if s.modality == "video" else 16
            ext_dev = Extractor.get(s, w, dev)
            f_dev, t_dev = timed(dev, lambda: _features(ext_dev, prep, inputs, dev, batch))
            res = {"n": len(inputs), "preprocessing": prep.name, "dim": int(f_dev.shape[1]),
                   "device_s": t_dev, "max_abs_feature": float(f_dev.abs().max()),
                   "fd_halves_device": _half_fd(f_dev, half)}
            if same:
                res["cpu"] = "the device is the CPU: nothing to compare"
                return res
            ext_cpu = Extractor.get(s, w, cpu)
            f_cpu, t_cpu = timed(cpu, lambda: _features(ext_cpu, prep, inputs, cpu, batch))
            diff = (f_dev - f_cpu).abs()
            scale = float(f_cpu.abs().max())
            fd_cpu = _half_fd(f_cpu, half)
            s_dev = fidkit.FeatureStats.from_features(f_dev.numpy())
            s_cpu = fidkit.FeatureStats.from_features(f_cpu.numpy())
            fd_between = fidkit.frechet_distance_from_moments(s_dev.mean, s_dev.cov, s_cpu.mean, s_cpu.cov,
                                                              n_a=s_dev.n, n_b=s_cpu.n)
            res.update(cpu_s=t_cpu, max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                       max_rel_diff=float(diff.max()) / scale if scale else None,
                       mean_abs_feature=float(f_cpu.abs().mean()), fd_halves_cpu=fd_cpu,
                       fd_halves_rel_diff=abs(res["fd_halves_device"] - fd_cpu) / fd_cpu if fd_cpu else None,
                       fd_device_stats_vs_cpu_stats=fd_between)
            return res
        return go

    def images(count):
        return smooth_batch(count, IMAGE_SIZE, 9, 0, device=dev)

    def videos(count):
        return smooth_batch(count, clip_size, 10, 0, device=dev, frames=frames)

    def throughput(name, kind, variant, make_inputs, batch, e2e_kwargs, remaining, network_only=True):
        """Items/s on the device: the network alone on a prepared batch, then ``compute_stats`` on a uint8
        tensor on the device (preprocessing + network + statistics), each sized to its share of the time."""
        def go():
            s = get_spec(name)
            prep = s.variant(variant)
            w = weight(kind)
            ext = Extractor.get(s, w, dev)
            share = min(spec["tp_seconds"], rec.share(2 * remaining, reserve_s=2))
            res = {}
            if network_only:
                x = prep.prepare_many(make_inputs(batch))
                ext(x)  # warm-up
                _, t1 = timed(dev, lambda: ext(x))
                reps = max(1, min(spec["tp_max_items"] // batch, int(share / max(t1, 1e-6))))
                _, secs = timed(dev, lambda: [ext(x) for _ in range(reps)])
                res["network_only"] = {"n": reps * batch, "batch": batch, "seconds": secs,
                                       "items_per_s": reps * batch / secs, "input": f"prepared {tuple(x.shape[1:])}"}
                del x
            else:
                res["network_only"] = {"skipped": "the same network as the row above"}

            def stats(u8):
                return fidkit.compute_stats(u8, extractor=name, preprocessing=variant, weights=w, device=dev,
                                            batch_size=batch, **e2e_kwargs)
            pilot = make_inputs(batch)
            stats(pilot)  # warm-up
            _, tp = timed(dev, lambda: stats(pilot))
            k = max(1, min(spec["tp_max_items"] // batch, int(share / max(tp, 1e-6))))
            if rec.left() - 2 < k * tp:
                res["compute_stats"] = {"skipped": f"time budget: {rec.left():.0f} s left, one batch takes {tp:.1f} s"}
                return res
            big = make_inputs(k * batch)
            st, secs = timed(dev, lambda: stats(big))
            res["compute_stats"] = {"n": st.n, "batch": batch, "seconds": secs, "items_per_s": st.n / secs,
                                    "preprocessing": prep.name,
                                    "input": f"uint8 {tuple(big.shape[1:])} tensor on {dev}"}
            return res
        return go

    tb, cb = spec["tp_batch"], spec["tp_clip_batch"]
    clip_kw = {"clip": {"length": frames}}
    jobs = [  # in order of priority
        ("parity_inception_tf", lambda r: parity("inception", "inception", "tf", imgs)),
        ("parity_inception_clean", lambda r: parity("inception", "inception", "clean", imgs)),
        ("parity_dinov2_vitl14", lambda r: parity("dinov2-vitl14", "dinov2-vitl14", None, imgs)),
        ("throughput_dinov2_vitl14", lambda r: throughput("dinov2-vitl14", "dinov2-vitl14", None, images, tb, {},
                                                          r)),
        ("parity_clip_vitb32", lambda r: parity("clip-vitb32", "clip-vitb32", None, imgs)),
        ("throughput_clip_vitb32", lambda r: throughput("clip-vitb32", "clip-vitb32", None, images, tb, {}, r)),
        ("parity_i3d", lambda r: parity("i3d", "i3d", "tf", clips)),
        ("throughput_i3d", lambda r: throughput("i3d", "i3d", "tf", videos, cb, clip_kw, r)),
        ("throughput_dinov2_vitl14_edm2", lambda r: throughput("dinov2-vitl14", "dinov2-vitl14", "edm2", images,
                                                               tb, {}, r, network_only=False)),
        ("parity_dinov2_vitb14", lambda r: parity("dinov2-vitb14", "dinov2-vitb14", None, imgs)),
    ]
    for i, (key, make) in enumerate(jobs):
        rec.run(key, make(len(jobs) - i), need_s=4)
        if i + 1 < len(jobs) and jobs[i + 1][0].split("_", 1)[1] != key.split("_", 1)[1]:
            Extractor._cache.clear()  # free this network unless the next job uses it


# ==============================================================================================
# section 3: the differentiable FID
# ==============================================================================================

def _reference_stats(spec):
    """fidkit's Inception statistics of section 1 (N images), else synthetic full-rank pool3-like moments."""
    import numpy as np
    import fidkit
    path = spec.get("fidkit_stats")
    if path and os.path.exists(path):
        with np.load(path) as f:
            return fidkit.FeatureStats.from_moments(f["mean"], f["cov"], n=int(f["n"])), \
                f"fidkit's Inception statistics of section 1 ({int(f['n'])} images)"
    feats = _synthetic_features(spec["fd_n"], 2048, seed=3, device="cpu").numpy()
    # moments without provenance, as a published mu/sigma file: accepted by DifferentiableFID (with a warning)
    return fidkit.FeatureStats.from_moments(feats.mean(0), np.cov(feats, rowvar=False), n=len(feats)), \
        f"synthetic pool3-like features ({len(feats)})"


def _synthetic_features(n: int, d: int, seed: int, device="cpu", scale: float = 1.0):
    """Non-negative correlated features with a decaying spectrum, like pool3 activations (float64)."""
    import torch
    g = torch.Generator(device="cpu").manual_seed(seed)
    spectrum = 1.0 / (1.0 + torch.arange(d, dtype=torch.float64)) ** 0.6
    mixing = (torch.randn((d, d), generator=g, dtype=torch.float64) * spectrum[:, None] * (4.0 / math.sqrt(d)))
    z = torch.randn((n, d), generator=g, dtype=torch.float64)
    return torch.relu(z.to(device) @ mixing.to(device) * scale)


def child_differentiable(spec, rec: Recorder):
    import numpy as np
    import torch
    import fidkit
    from fidkit.metrics.differentiable import FrechetReference, frechet_distance_torch
    dev = _device(spec)
    cuda = dev.type == "cuda"
    w = spec["weights"]["inception"]
    rec.put("frechet_distance_on_device", {
        "skipped": "fidkit.frechet_distance / frechet_distance_from_moments have no device path (float64 numpy "
                   "statistics, solved on the CPU); the torch route is frechet_distance_torch, timed below"})
    stats, where = _reference_stats(spec)
    rec.put("reference", where)
    with warnings.catch_warnings():  # the statistics carry no provenance: the warning says so, expected here
        warnings.simplefilter("ignore")
        loss, load_s = timed(dev, lambda: fidkit.DifferentiableFID(stats, weights=w, device=dev))
    rec.put("load_s", load_s)
    # the reference's eigen-decomposition, once, on the CPU (float64)
    ref_cpu, t_prep = timed(torch.device("cpu"), lambda: FrechetReference.from_stats(stats))
    rec.put("reference_prepare_cpu_s", t_prep)

    def images(b):
        return smooth_batch(b, 64, 20 + b, 1).to(dev).float().div_(255)

    def fwd_bwd(b, remaining, checkpointing=False):
        def go():
            mod = loss if not checkpointing else fidkit.DifferentiableFID(stats, weights=w, device=dev,
                                                                          checkpointing=True)
            share = rec.share(remaining, reserve_s=1)
            t_start = time.perf_counter()
            x0 = images(b)
            times = []
            peak = None
            for rep in range(spec["diff_repeats"] + 1):  # the first is the warm-up
                x = x0.clone().requires_grad_(True)
                if cuda:
                    torch.cuda.reset_peak_memory_stats(dev)
                    before = torch.cuda.memory_allocated(dev)
                v, secs = timed(dev, lambda: (lambda val: (val.backward(), val)[1])(mod(x)))
                if cuda:
                    peak = (torch.cuda.max_memory_allocated(dev) - before) / 2 ** 20
                if rep:
                    times.append(secs)
                spent = time.perf_counter() - t_start
                if spent + secs > share and (times or spent + 2 * secs > share + 5):
                    break  # no time for another repetition (a warm-up alone is kept only when no time for more)
            res = {"b": b, "checkpointing": checkpointing, "value": float(v.detach()),
                   "seconds_best": min(times) if times else secs, "seconds_all": times,
                   "grad_finite": bool(torch.isfinite(x.grad).all()), "grad_abs_max": float(x.grad.abs().max())}
            if not times:
                res["note"] = "only the warm-up pass fitted the time budget: its time includes first-call costs"
            if cuda:
                res["peak_cuda_mb_above_inputs"] = peak
                res["max_memory_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
            return res
        return go

    def values():
        b = 32 if 32 in spec["diff_batches"] else spec["diff_batches"][-1]
        x = images(b)
        with torch.no_grad():
            feats = loss.features(x).detach()
            v_module = float(loss(x))
        cpu64 = float(frechet_distance_torch(feats.cpu().double(), ref_cpu, dtype=torch.float64))
        dev64 = float(frechet_distance_torch(feats, ref_cpu.to(dev, torch.float64), dtype=torch.float64))
        dev32 = float(frechet_distance_torch(feats, ref_cpu.to(dev, torch.float32), dtype=torch.float32))
        f = feats.cpu().double().numpy()
        exact = fidkit.frechet_distance_from_moments(f.mean(0), np.cov(f, rowvar=False), stats.mean, stats.cov,
                                                     n_a=b, n_b=stats.n)
        res = {"b": b, "cpu_float64": cpu64, "device_float64": dev64, "device_float32": dev32,
               "fidkit_exact_cpu": exact, "module_value_device": v_module,
               "rel_diff_device64_vs_cpu64": abs(dev64 - cpu64) / abs(cpu64),
               "rel_diff_device32_vs_cpu64": abs(dev32 - cpu64) / abs(cpu64),
               "rel_diff_cpu64_vs_exact": abs(cpu64 - exact) / abs(exact)}
        if cuda:  # the whole module on the CPU for the same images: network + preprocessing differences too
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cpu_loss = fidkit.DifferentiableFID(stats, weights=w, device="cpu")
            with torch.no_grad():
                v_cpu_module = float(cpu_loss(x.cpu()))
            res.update(module_value_cpu=v_cpu_module,
                       rel_diff_module_device_vs_cpu=abs(v_module - v_cpu_module) / abs(v_cpu_module))
        return res

    def whole_set():
        n = spec["fd_n"]
        feats = _synthetic_features(n, 2048, seed=4, device=dev, scale=1.05)
        ref_dev = ref_cpu.to(dev, torch.float64)
        frechet_distance_torch(feats[:256], ref_dev)  # warm-up (solver initialisation)
        v_dev, t_dev = timed(dev, lambda: float(frechet_distance_torch(feats, ref_dev)))
        f = feats.cpu().numpy()
        (mu, cov), t_mom = timed(torch.device("cpu"), lambda: (f.mean(0), np.cov(f, rowvar=False)))
        v_cpu, t_cpu = timed(torch.device("cpu"), lambda: fidkit.frechet_distance_from_moments(
            mu, cov, stats.mean, stats.cov, n_a=n, n_b=stats.n))
        return {"n": n, "d": 2048, "device_value": v_dev, "device_s": t_dev, "cpu_value": v_cpu,
                "cpu_frechet_s": t_cpu, "cpu_moments_s": t_mom, "reference_prepare_cpu_s": t_prep,
                "rel_diff": abs(v_dev - v_cpu) / abs(v_cpu)}

    big = spec["diff_batches"][-1]
    jobs = [(f"fwd_bwd_b{b}", lambda r, b=b: fwd_bwd(b, r)) for b in spec["diff_batches"]]
    jobs += [("values_vs_cpu", lambda r: values), ("whole_set_fd", lambda r: whole_set),
             (f"fwd_bwd_b{big}_checkpointing", lambda r: fwd_bwd(big, r, checkpointing=True))]
    for i, (key, make) in enumerate(jobs):
        rec.run(key, make(len(jobs) - i), need_s=2)


# ==============================================================================================
# section 4: the online evaluator
# ==============================================================================================

def _online_batches(spec, dev):
    n, bs = spec["online_n"], spec["online_batch"]
    real = [smooth_batch(min(bs, n - s), 64, 100 + i, 0).to(dev) for i, s in enumerate(range(0, n, bs))]
    fake = [smooth_batch(min(bs, n - s), 64, 200 + i, 1).to(dev) for i, s in enumerate(range(0, n, bs))]
    return real, fake


def online_measure(spec, rec: Recorder, dev, build, update, compute, reset, compute_reserve_s: float) -> dict:
    """One training-loop evaluation: every real batch, every generated batch, then compute.

    The objects are built (network loading, timed apart), warmed up on 8 images per side, and timed on one batch
    per side; N per side is then what fits into the time left (at most ``online_n``), the state is reset, and
    the N images per side are fed and computed (timed).
    """
    bs = spec["online_batch"]
    real, fake = _online_batches(spec, dev)
    objs, load_s = timed(dev, lambda: build(min(1000, spec["online_n"])))
    update(objs, real[0][:8], True)
    update(objs, fake[0][:8], False)
    _, t1 = timed(dev, lambda: (update(objs, real[0], True), update(objs, fake[0], False)))
    rate = len(real[0]) / max(t1, 1e-9)  # pairs of images per second
    n = min(spec["online_n"], int((rec.left() - compute_reserve_s - 2) * rate / 1.3) // bs * bs)
    if n < bs:
        return {"skipped": f"time budget: one batch per side takes {t1:.1f} s, {rec.left():.0f} s left",
                "load_s": load_s}
    k = math.ceil(n / bs)
    objs = reset(objs, min(1000, n))

    def updates():
        for x in real[:k]:
            update(objs, x, True)
        for x in fake[:k]:
            update(objs, x, False)
    _, t_upd = timed(dev, updates)
    (vals, breakdown), t_cmp = timed(dev, lambda: compute(objs))
    n_used = sum(len(x) for x in real[:k])
    res = {"n_per_side": n_used, "batch": bs, "load_s": load_s, "update_s": t_upd, "compute_s": t_cmp,
           "total_s": t_upd + t_cmp, "img_per_s": 2 * n_used / (t_upd + t_cmp), "values": vals,
           "pilot_pairs_per_s": rate}
    if breakdown:
        res["compute_breakdown_s"] = breakdown
    if n_used != spec["online_n"]:
        res["note"] = f"{n_used} per side instead of {spec['online_n']}: time budget"
    return res


def child_online_fidkit(spec, rec: Recorder):
    import fidkit
    dev = _device(spec)
    w = spec["weights"]["inception"]
    bs = spec["online_batch"]
    rec.put("api", f"fidkit.Evaluator(metrics=('fid','kid','is'), device={dev}, batch_size={bs}); "
                   "update(real=True) per real batch, update() per generated batch, compute()")

    def build(subset):
        return fidkit.Evaluator(metrics=("fid", "kid", "is"), weights=w, device=dev, batch_size=bs,
                                kid_subset_size=subset)

    def update(ev, x, is_real):
        ev.update(x, real=is_real)

    def compute(ev):
        r = ev.compute()
        vals = {k: float(v) for k, v in (r.values or {}).items() if isinstance(v, (int, float))}
        return dict(vals, n_a=r.n_a, n_b=r.n_b), None

    def reset(ev, subset):
        return build(subset)  # the network is cached: a new evaluator costs nothing, and takes the subset size

    rec.run("evaluator", lambda: online_measure(spec, rec, dev, build, update, compute, reset, 4), need_s=4)


def child_online_torchmetrics(spec, rec: Recorder):
    import torchmetrics
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance
    dev = _device(spec)
    w = spec["weights"]["inception"]
    rec.put("version", torchmetrics.__version__)
    rec.put("api", "FrechetInceptionDistance(feature_extractor_weights_path=w, antialias=False), "
                   "KernelInceptionDistance and InceptionScore with NoTrainInceptionV3(..., w, antialias=False); "
                   "FID and KID updated with both sides, IS with the generated side")

    def build(subset):
        fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=w, antialias=False)
        kid = KernelInceptionDistance(feature=NoTrainInceptionV3("inception-v3-compat", ["2048"], w, antialias=False),
                                      subset_size=subset)
        isc = InceptionScore(feature=NoTrainInceptionV3("inception-v3-compat", ["logits_unbiased"], w,
                                                        antialias=False))
        return [m.to(dev) for m in (fid, kid, isc)]

    def update(objs, x, is_real):
        fid, kid, isc = objs
        fid.update(x, real=is_real)
        kid.update(x, real=is_real)
        if not is_real:
            isc.update(x)

    def compute(objs):
        fid, kid, isc = objs
        times, vals = {}, {}
        v, times["fid"] = timed(dev, fid.compute)
        vals["fid"] = float(v)
        (km, ks), times["kid"] = timed(dev, kid.compute)
        vals.update(kid=float(km), kid_std=float(ks))
        (im, is_), times["is"] = timed(dev, isc.compute)
        vals.update({"is": float(im), "is_std": float(is_)})
        return vals, times

    def reset(objs, subset):
        for m in objs:
            m.reset()  # reset_real_features=True (the default): both sides are forgotten
        objs[1].subset_size = subset
        return objs

    rec.run("metrics", lambda: online_measure(spec, rec, dev, build, update, compute, reset, 8), need_s=5)


CHILDREN = {
    "extract:fidkit": child_extract_fidkit,
    "extract:torch-fidelity": child_extract_torch_fidelity,
    "extract:pytorch-fid": child_extract_pytorch_fid,
    "extract:clean-fid": child_extract_clean_fid,
    "extract:torchmetrics": child_extract_torchmetrics,
    "parity": child_parity,
    "differentiable": child_differentiable,
    "online:fidkit": child_online_fidkit,
    "online:torchmetrics": child_online_torchmetrics,
}


def run_child(task: str, spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["results_dir"]) / (task.replace(":", "__") + ".json")
    _ensure_fidkit()
    import importlib.util

    import torch
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    dev = torch.device(spec["device"])
    info = {"task": task}
    try:
        info.update(_torch_info(dev))
    except Exception as e:
        info["torch_info_error"] = f"{type(e).__name__}: {e}"
    rec = Recorder(out, spec["deadline"], info)
    lib = task.split(":", 1)[1] if ":" in task else "fidkit"
    needed = [MODULE_OF[lib]] + (["torch_fidelity"] if lib == "torchmetrics" else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        rec.put("skipped", f"{', '.join(missing)} not importable (install its wheel)")
        return 0
    try:
        CHILDREN[task](spec, rec)
    except Exception as e:
        rec.put("failed", _err(e))
        print(f"  {task} failed: {e}", flush=True)
    return 0


# ==============================================================================================
# parent
# ==============================================================================================

class Run:
    def __init__(self, args):
        self.args = args
        self.start = time.time()
        self.pid = os.getpid()
        self.end = self.start + args.budget_s
        self.results: dict = {"config": {}, "sections": {}, "errors": []}

    def save(self):
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        _atomic_json(self.args.out, self.results)

    current: subprocess.Popen | None = None

    def on_signal(self, signum, _frame):
        """Killed from outside (a timeout): stop the running part, keep what was measured, print the tables."""
        if os.getpid() != self.pid:  # a forked image-writing worker being shut down by its pool
            os._exit(128 + signum)
        if self.current is not None:
            try:
                os.killpg(self.current.pid, signal.SIGKILL)
            except OSError:
                pass
        self.results["errors"].append(f"terminated by signal {signum} after {time.time() - self.start:.0f} s")
        self.results["config"]["total_wall_s"] = time.time() - self.start
        try:
            self.results["markdown"] = render(self.results)
            self.save()
            print(self.results["markdown"], flush=True)
        finally:
            os._exit(128 + signum)

    def launch(self, task: str, spec: dict, deadline: float) -> dict:
        spec = dict(spec, deadline=deadline)
        spec_path = Path(spec["results_dir"]) / (task.replace(":", "__") + ".spec.json")
        spec_path.write_text(json.dumps(spec))
        result_path = Path(spec["results_dir"]) / (task.replace(":", "__") + ".json")
        result_path.unlink(missing_ok=True)
        env = dict(os.environ, TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", task, "--spec", str(spec_path)]
        print(f"[{time.strftime('%H:%M:%S')}] {task}: {deadline - time.time():.0f} s", flush=True)
        t0 = time.time()
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        self.current = proc
        timed_out = False
        try:
            proc.wait(timeout=max(1.0, deadline - time.time() + GRACE_S))
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
        self.current = None
        data = {}
        if result_path.exists():
            try:
                data = json.loads(result_path.read_text())
            except ValueError as e:
                data = {"failed": {"error": f"unreadable result file: {e}"}}
        data["subprocess_s"] = time.time() - t0
        if timed_out:
            data["timed_out"] = f"killed {GRACE_S:.0f} s after its deadline; measurements above are complete"
        if proc.returncode not in (0, None) and not timed_out:
            data.setdefault("failed", {"error": f"exit status {proc.returncode} (see the log above)"})
        return data

    def section_deadline(self, section: str, remaining: list[str]) -> float:
        left = self.end - time.time()
        share = left * SECTION_WEIGHT[section] / sum(SECTION_WEIGHT[s] for s in remaining)
        return time.time() + max(0.0, share)


def build_config(args) -> dict:
    import platform
    cfg = {"argv": sys.argv[1:], "device": args.device, "quick": args.quick, "n": args.n,
           "budget_s": args.budget_s, "python": platform.python_version(), "machine": platform.machine(),
           "cpus": os.cpu_count()}
    try:
        st = os.statvfs("/dev/shm")
        cfg["dev_shm_gb"] = round(st.f_frsize * st.f_blocks / 2 ** 30, 2)
    except OSError:
        cfg["dev_shm_gb"] = None
    import importlib.metadata as md
    versions = {}
    for dist in ("torch", "torchvision", "torchmetrics", "torch-fidelity", "pytorch-fid", "clean-fid", "numpy",
                 "scipy", "pillow"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    try:
        import fidkit
        versions["fidkit"] = f"{fidkit.__version__} ({Path(fidkit.__file__).parent})"
    except Exception as e:
        versions["fidkit"] = f"not importable: {e}"
    cfg["versions"] = versions
    return cfg


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    default_out = Path(os.environ["OUT"]) / "cuda.json" if os.environ.get("OUT") else Path("bench-out/cuda.json")
    p.add_argument("--device", default="cuda", help="cuda (or cuda:K); cpu to check the script")
    p.add_argument("--quick", action="store_true", help="tiny sizes (N = 64) to check the script")
    p.add_argument("--n", type=int, default=None, help="images per throughput measurement (default 5000; quick 64)")
    p.add_argument("--budget-s", type=float, default=270.0,
                   help="wall-clock budget of the whole run, setup included; shared out between sections "
                        f"({', '.join(f'{k} {v:.0%}' for k, v in SECTION_WEIGHT.items())}, unused time passes on)".replace('%', '%%'))
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    p.add_argument("--out", type=Path, default=default_out, help="JSON results (written after every part)")
    p.add_argument("--workdir", type=Path, default=None, help="images, weights, partial results (default: temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary workdir")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads in every subprocess")
    p.add_argument("--render", type=Path, metavar="JSON", help="only print the tables of an earlier run")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        return run_child(args.child, args.spec)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    _ensure_fidkit()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if args.n is None:
        args.n = 64 if args.quick else 5000
    quick = args.quick
    run = Run(args)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, run.on_signal)
    cfg = build_config(args)
    run.results["config"] = cfg
    run.save()
    own_tmp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="fidkit-cuda-")) if own_tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    results_dir = workdir / "results"
    results_dir.mkdir(exist_ok=True)
    print(f"fidkit CUDA benchmark: device {args.device}, N = {args.n}, budget {args.budget_s:.0f} s, "
          f"workdir {workdir}, out {args.out}", flush=True)
    try:
        t0 = time.time()
        n = args.n
        n_warm = max(8, min(256, n // 4)) if not quick else 8
        n_small = max(n_warm, min(1000, n // 2))
        folder = workdir / f"images{n}"
        folder_b = workdir / "images_b"
        parity_n = 4 if quick else 16
        folder_small, folder_warm = workdir / f"images{n_small}", workdir / f"images{n_warm}"
        w_inc = workdir / "random-inception.pth"
        try:  # a failure here is recorded; the parts that need these files then fail on their own
            if not (folder / f"{n - 1:05d}.png").exists():
                write_pngs(folder, n, seed=1, variant=0)
            if not (folder_b / f"{parity_n - 1:05d}.png").exists():
                write_pngs(folder_b, parity_n, seed=2, variant=1)
            subset_folder(folder, folder_small, n_small)
            subset_folder(folder, folder_warm, n_warm)
            from fidkit.testing import write_random_inception_weights
            if not w_inc.exists():
                write_random_inception_weights(w_inc, seed=0)
        except Exception as e:
            run.results["errors"].append({"setup": _err(e)})
            print(f"  setup failed: {e}", flush=True)
        cfg["setup_s"] = time.time() - t0
        print(f"  {n} images and the Inception weights ready in {cfg['setup_s']:.0f} s", flush=True)
        spec = {
            "device": args.device, "threads": args.threads, "workdir": str(workdir), "results_dir": str(results_dir),
            "weights": {"inception": str(w_inc)}, "quick": quick,
            "n": n, "n_small": n_small, "n_warm": n_warm, "warmups": 1 if quick else 2,
            "folder": str(folder), "folder_small": str(folder_small), "folder_warm": str(folder_warm),
            "folder_b": str(folder_b), "batches": [32, 128],
            "fidkit_stats": str(workdir / "fidkit-folder-tf-stats.npz"),
            "parity_n": parity_n, "clip_frames": 10 if quick else 16, "clip_size": 64 if quick else 128,
            "tp_batch": 2 if quick else 128, "tp_clip_batch": 2 if quick else 16,
            "tp_seconds": 0.5 if quick else 3.0, "tp_max_items": 4 if quick else 4096,
            "diff_batches": [4, 8] if quick else [8, 32, 128], "diff_repeats": 1 if quick else 3,
            "fd_n": 256 if quick else 5000,
            "online_n": 32 if quick else n, "online_batch": 16 if quick else 128,
        }
        cfg.update({k: spec[k] for k in ("n_small", "n_warm", "parity_n", "clip_frames", "clip_size",
                                         "diff_batches", "online_n", "online_batch")})
        cfg["image_size"] = IMAGE_SIZE
        run.save()
        for i, section in enumerate(sections):
            sec_deadline = run.section_deadline(section, sections[i:])
            out = run.results["sections"].setdefault(section, {})
            tasks = TASKS[section]
            for j, (task, weight) in enumerate(tasks):
                left = sec_deadline - time.time()
                share = left * weight / sum(wt for _, wt in tasks[j:])
                if share < MIN_TASK_S:
                    out[task] = {"skipped": f"time budget: {max(share, 0):.0f} s for this part"}
                    run.save()
                    continue
                try:
                    out[task] = run.launch(task, spec, time.time() + share)
                except Exception as e:  # the launcher itself failed; record and go on
                    out[task] = {"failed": _err(e)}
                run.save()
    finally:
        if own_tmp and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    cfg["total_wall_s"] = time.time() - run.start
    text = render(run.results)
    run.results["markdown"] = text
    run.save()
    print()
    print(text)
    print(f"\ntotal {cfg['total_wall_s']:.0f} s; JSON in {args.out}")
    return 0


# ==============================================================================================
# tables
# ==============================================================================================

def _f(v, fmt=".3g", empty=""):
    if v is None:
        return empty
    if isinstance(v, (int, float)):
        return format(v, fmt)
    return str(v)


def _rate(v) -> str:
    """Items per second: whole numbers from 10 up, three significant digits below."""
    if not isinstance(v, (int, float)):
        return ""
    return f"{v:.0f}" if v >= 10 else f"{v:.3g}"


def _why(r) -> str | None:
    """The reason a result has no numbers (skipped, failed, timed out), or None."""
    if not isinstance(r, dict):
        return "not run (see the notes below)"
    for k in ("skipped", "error"):
        if k in r:
            return f"{k}: {r[k]}"[:160]
    if isinstance(r.get("failed"), dict):
        return f"failed: {r['failed'].get('error')}"[:160]
    return None


def _task_note(t: dict) -> str | None:
    if not isinstance(t, dict):
        return None
    for k in ("skipped", "timed_out"):
        if k in t:
            return f"{k}: {t[k]}"
    if isinstance(t.get("failed"), dict):
        return f"failed: {t['failed'].get('error')}"
    return None


def render(results: dict) -> str:
    cfg = results.get("config", {})
    secs = results.get("sections", {})
    lines = ["## fidkit on CUDA", ""]
    info = {}
    for sec in secs.values():
        for t in sec.values():
            if isinstance(t, dict) and isinstance(t.get("info"), dict) and t["info"].get("device"):
                info = t["info"]
                break
        if info:
            break
    v = cfg.get("versions", {})
    lines.append(f"Device {info.get('gpu') or info.get('device', cfg.get('device'))}"
                 + (f" ({info.get('gpu_memory_gb')} GB, CUDA {info.get('cuda')}, cuDNN {info.get('cudnn')})"
                    if info.get("gpu") else "")
                 + f"; torch {info.get('torch', v.get('torch'))}, {cfg.get('cpus')} CPUs, /dev/shm "
                   f"{cfg.get('dev_shm_gb')} GB; torch defaults: cudnn.allow_tf32={info.get('cudnn_allow_tf32')}, "
                   f"matmul.allow_tf32={info.get('matmul_allow_tf32')} (fidkit turns TF32 off in its networks).")
    lines.append("Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    lines.append(f"N = {cfg.get('n')} images of {cfg.get('image_size')} px per throughput measurement"
                 f"{' (quick)' if cfg.get('quick') else ''}; budget {cfg.get('budget_s')} s, "
                 f"setup {_f(cfg.get('setup_s'), '.0f')} s, total {_f(cfg.get('total_wall_s'), '.0f')} s.")
    lines.append("")

    ex = secs.get("extract")
    if ex:
        lines += ["### 1. Inception pool3 statistics: images/s, network loaded, one warm-up pass first", ""]
        lines.append("| library | input | batch | N | s | img/s | fidkit / anchor (same batch, same input) | "
                     "FD to fidkit's stats | note |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        fk = ex.get("extract:fidkit", {})
        base = {("folder", 128): fk.get("folder_b128"), ("tensor", 128): fk.get("tensor_b128"),
                ("folder", 32): fk.get("folder_b32"), ("tensor", 32): fk.get("tensor_b32")}
        rows = [("fidkit", key.split("_")[0], r) for key, r in fk.items()
                if key.startswith(("folder_b", "tensor_b"))]
        for lib in ("torch-fidelity", "pytorch-fid", "clean-fid"):
            rows.append((lib, "folder", ex.get(f"extract:{lib}", {}).get("folder_b128")))
        tm = ex.get("extract:torchmetrics", {})
        rows.append(("torchmetrics (antialias=False)", "tensor", tm.get("tensor_b128_antialias_false")))
        rows.append(("torchmetrics (antialias=True, its default)", "tensor", tm.get("tensor_b128_antialias_true")))
        for lib, kind, r in rows:
            why = _why(r)
            if why or r is None:
                lines.append(f"| {lib} | {kind} | | | | | | | {why or 'not run'} |")
                continue
            ratio = ""
            if not lib.startswith("fidkit"):
                b = base.get((kind, r.get("batch_size")))
                if b and "img_per_s" in b:
                    ratio = f"{b['img_per_s'] / r['img_per_s']:.2f}x"
                b32 = base.get((kind, 32))
                if b32 and "img_per_s" in b32:
                    ratio += f" (fidkit b=32: {b32['img_per_s'] / r['img_per_s']:.2f}x)"
            note = "; ".join(x for x in (r.get("note"), r.get("note_workers")) if x)
            fd = r.get("fd_vs_fidkit_tf")
            lines.append(f"| {lib} | {r.get('input', kind)} | {r.get('batch_size')} | {r.get('n')} | "
                         f"{_f(r.get('seconds'), '.2f')} | {_rate(r.get('img_per_s'))} | {ratio} | "
                         f"{_f(fd, '.3g')} | {note} |")
        for name, t in ex.items():
            note = _task_note(t)
            if note:
                lines.append(f"- {name}: {note}")
        lines.append("- FD to fidkit's stats: Fréchet distance between the library's statistics and fidkit's "
                     "(folder, tf mode) of the same images. Near 0 means the same network, weights and resize; "
                     "pytorch-fid (F.interpolate), clean-fid (PIL bicubic) and torchmetrics' default "
                     "(anti-aliased) resize differently by design. clean-fid ran its eager copy of the network, "
                     "not NVIDIA's TorchScript file.")
        lines.append("")

    par = secs.get("parity", {}).get("parity")
    if par:
        lines += ["### 2. fidkit features on the device vs on the CPU (same inputs)", ""]
        lines.append("| network | preprocessing | n | dim | max abs diff | / max abs feature | mean abs diff | "
                     "FID halves (device) | FID halves (CPU) | rel. diff | FD(device stats, CPU stats) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for key in ("inception_tf", "inception_clean", "dinov2_vitl14", "dinov2_vitb14", "clip_vitb32", "i3d"):
            r = par.get(f"parity_{key}")
            if r is None:
                continue
            why = _why(r)
            if why:
                lines.append(f"| {key} | | | | {why} | | | | | | |")
                continue
            lines.append(f"| {key} | {r.get('preprocessing')} | {r.get('n')} | {r.get('dim')} | "
                         f"{_f(r.get('max_abs_diff'), '.2e', r.get('cpu', ''))} | {_f(r.get('max_rel_diff'), '.2e')} | "
                         f"{_f(r.get('mean_abs_diff'), '.2e')} | {_f(r.get('fd_halves_device'), '.6g')} | "
                         f"{_f(r.get('fd_halves_cpu'), '.6g')} | {_f(r.get('fd_halves_rel_diff'), '.1e')} | "
                         f"{_f(r.get('fd_device_stats_vs_cpu_stats'), '.2e')} |")
        lines.append("")
        lines.append("Throughput on the device (items/s; I3D: clips of "
                     f"{cfg.get('clip_frames')} frames, {cfg.get('clip_size')} px; images {cfg.get('image_size')} px):")
        lines.append("")
        lines.append("| network | network only: items/s (N, batch) | compute_stats on a uint8 tensor: items/s (N) | "
                     "preprocessing |")
        lines.append("|---|---|---|---|")
        for key in ("dinov2_vitl14", "dinov2_vitl14_edm2", "clip_vitb32", "i3d"):
            r = par.get(f"throughput_{key}")
            if r is None:
                continue
            why = _why(r)
            if why:
                lines.append(f"| {key} | {why} | | |")
                continue
            a, b = r.get("network_only", {}), r.get("compute_stats", {})
            net = a.get("skipped") or f"{_rate(a.get('items_per_s'))} ({a.get('n')}, {a.get('batch')})"
            e2e = b.get("skipped") or f"{_rate(b.get('items_per_s'))} ({b.get('n')})"
            lines.append(f"| {key} | {net} | {e2e} | {b.get('preprocessing', '')} |")
        note = _task_note(secs.get("parity", {}).get("parity"))
        if note:
            lines.append(f"- {note}")
        if par.get("weights_written_s"):
            lines.append("- random weights written in: " + ", ".join(
                f"{k} {v:.1f} s" for k, v in par["weights_written_s"].items()))
        lines.append("")

    dif = secs.get("differentiable", {}).get("differentiable")
    if dif:
        lines += ["### 3. Differentiable FID on the device", ""]
        lines.append(f"Reference: {dif.get('reference')}. fidkit.frechet_distance on the device: "
                     f"{(dif.get('frechet_distance_on_device') or {}).get('skipped', '')}")
        lines.append("")
        lines.append("| DifferentiableFID, 64 px images | best s (fwd + bwd) | all s | peak CUDA MB above inputs | "
                     "value | grad finite |")
        lines.append("|---|---|---|---|---|---|")
        for key, r in dif.items():
            if not key.startswith("fwd_bwd"):
                continue
            why = _why(r)
            label = key.replace("fwd_bwd_", "")
            if why:
                lines.append(f"| {label} | {why} | | | | |")
                continue
            lines.append(f"| {label} | {_f(r.get('seconds_best'), '.4f')} | "
                         f"{', '.join(_f(x, '.4f') for x in r.get('seconds_all', [])) or 'warm-up only'} | "
                         f"{_f(r.get('peak_cuda_mb_above_inputs'), '.0f', 'n/a')} | {_f(r.get('value'), '.6g')} | "
                         f"{r.get('grad_finite')} |")
        vals = dif.get("values_vs_cpu")
        if vals:
            lines.append("")
            why = _why(vals)
            if why:
                lines.append(f"Values vs CPU: {why}")
            else:
                lines.append(f"frechet_distance_torch at b = {vals['b']}: CPU float64 {vals['cpu_float64']:.10g}; "
                             f"device float64 {vals['device_float64']:.10g} (rel. diff "
                             f"{vals['rel_diff_device64_vs_cpu64']:.1e}); device float32 "
                             f"{vals['device_float32']:.10g} ({vals['rel_diff_device32_vs_cpu64']:.1e}); fidkit's exact "
                             f"CPU route {vals['fidkit_exact_cpu']:.10g} (CPU float64 differs by "
                             f"{vals['rel_diff_cpu64_vs_exact']:.1e})."
                             + (f" Whole module, same images, device {vals['module_value_device']:.8g} vs CPU "
                                f"{vals['module_value_cpu']:.8g} (rel. diff {vals['rel_diff_module_device_vs_cpu']:.1e})."
                                if "module_value_cpu" in vals else ""))
        ws = dif.get("whole_set_fd")
        if ws:
            why = _why(ws)
            lines.append("")
            lines.append(f"Whole-set Fréchet distance: {why}" if why else
                         f"Whole-set Fréchet distance, {ws['n']} x {ws['d']} features vs the reference: "
                         f"frechet_distance_torch on the device {ws['device_s']:.3f} s ({ws['device_value']:.10g}); "
                         f"CPU: moments {ws['cpu_moments_s']:.2f} s + frechet_distance_from_moments "
                         f"{ws['cpu_frechet_s']:.2f} s ({ws['cpu_value']:.10g}); rel. diff {ws['rel_diff']:.1e} "
                         f"(reference prepared once on the CPU in {ws['reference_prepare_cpu_s']:.2f} s, not in the "
                         "device time).")
        note = _task_note(secs.get("differentiable", {}).get("differentiable"))
        if note:
            lines.append(f"- {note}")
        lines.append("")

    on = secs.get("online")
    if on:
        lines += ["### 4. Online evaluation: FID + KID + IS, uint8 64-px batches already on the device", ""]
        fk = on.get("online:fidkit", {}).get("evaluator")
        tm = on.get("online:torchmetrics", {}).get("metrics")
        lines.append("| library | N per side | update s | compute s | total s | img/s | FID | KID | IS | note |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for name, r in (("fidkit Evaluator", fk), ("torchmetrics FID+KID+IS", tm)):
            why = _why(r) if r is not None else "not run"
            if why:
                lines.append(f"| {name} | {why} | | | | | | | | |")
                continue
            vals = r.get("values", {})
            extra = r.get("note", "")
            if r.get("compute_breakdown_s"):
                extra = (extra + "; " if extra else "") + "compute: " + ", ".join(
                    f"{k} {x:.2f} s" for k, x in r["compute_breakdown_s"].items())
            lines.append(f"| {name} | {r.get('n_per_side')} | {_f(r.get('update_s'), '.2f')} | "
                         f"{_f(r.get('compute_s'), '.2f')} | {_f(r.get('total_s'), '.2f')} | "
                         f"{_rate(r.get('img_per_s'))} | {_f(vals.get('fid'), '.6g')} | "
                         f"{_f(vals.get('kid'), '.4g')} | {_f(vals.get('is'), '.5g')} | {extra} |")
        if fk and tm and not _why(fk) and not _why(tm):
            ratio = fk["img_per_s"] / tm["img_per_s"]
            lines.append("")
            lines.append(f"fidkit / torchmetrics speed: {ratio:.2f}x (img/s over update + compute). "
                         f"Update {tm['update_s'] / fk['update_s']:.2f}x, compute "
                         f"{tm['compute_s'] / max(fk['compute_s'], 1e-9):.2f}x faster in fidkit.")
            fv, tv = fk.get("values", {}), tm.get("values", {})
            if fv.get("fid") and tv.get("fid") and fk.get("n_per_side") == tm.get("n_per_side"):
                lines.append(f"FID relative difference {abs(fv['fid'] - tv['fid']) / abs(tv['fid']):.1e} (same "
                             "images, weights and resize; KID and IS draw different random subsets/splits).")
        for name, t in on.items():
            note = _task_note(t)
            if note:
                lines.append(f"- {name}: {note}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
