#!/usr/bin/env python
"""FID benchmark: fidkit next to torch-fidelity and pytorch-fid, same images, same weights, one run.

Every library loads the *same* random Inception weights
(``fidkit.testing.write_random_inception_weights``), so the FIDs are
comparable (real weights cannot be downloaded everywhere; speed and memory do
not depend on the weight values).  Each measurement runs in its own Python
subprocess so that peak memory is per library.

    python benchmarks/bench_fid.py --quick          # 100/300 images, a few minutes
    python benchmarks/bench_fid.py                  # 2 x 1000 + 5000 images, ~15-20 min on 2 cores

What is measured (see benchmarks/README.md):

* main table: FID, feature-extraction throughput, Fréchet step, peak memory,
  one subprocess per library, the whole two-folder FID call;
* Fréchet distance at d=2048 on the same statistics: scipy ``sqrtm``
  (pytorch-fid), numpy ``eigvals`` (torch-fidelity), fidkit;
* memory scaling: fidkit ``compute_stats`` on N and on N_large images;
* feature parity: fidkit features vs torch-fidelity's and pytorch-fid's
  extractors on the same images.

Results are printed as Markdown tables and written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

RESULT_MARKER = "@@BENCH-RESULT@@ "
ANCHORS = ("torch-fidelity", "pytorch-fid")
LIBS = ("torch-fidelity", "pytorch-fid", "fidkit")
MODULE_OF = {"torch-fidelity": "torch_fidelity", "pytorch-fid": "pytorch_fid", "fidkit": "fidkit"}
IMAGE_SIZE = 256
BATCH_ANCHORS = 50  # what the anchors are usually run with (pytorch-fid's CLI default)
BUSY_WARN = 0.05  # flag measurements during which other processes used more than this share of the CPU


# ----------------------------------------------------------------------------------------------
# memory measurement (used inside the children)
# ----------------------------------------------------------------------------------------------

def _descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (scan of /proc; no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages (forked workers share torch with their parent) counted once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemorySampler:
    """Samples the PSS of this process plus all its descendants (data-loader workers) in a thread.

    Off by default (``--pss``): reading ``smaps_rollup`` walks the page tables under the
    process's mmap lock, which slows down libraries that map and unmap their large
    activation buffers on every batch (measured: torch-fidelity 9.3 -> 8.0 img/s).
    """

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.peak_kb = 0
        self.peak_procs = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = os.path.exists(f"/proc/{os.getpid()}/smaps_rollup")

    def _run(self):
        me = os.getpid()
        while not self._stop.is_set():
            pids = [me] + _descendants(me)
            total = sum(_pss_kb(p) for p in pids)
            if total > self.peak_kb:
                self.peak_kb, self.peak_procs = total, len(pids)
            self._stop.wait(self.interval)

    def __enter__(self):
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.available:
            self._thread.join()


def _memory_report(sampler: TreeMemorySampler | None, child_kb_before: int) -> dict:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest waited-for child
    # ``import torch`` already ran a helper process (its ru_maxrss, ~0.4 GB, is the importing process's size at
    # fork time); a larger value after the measured call comes from the library's own worker processes.
    rep = {"peak_rss_main_mb": self_kb / 1024,
           "peak_rss_largest_child_mb": child_kb / 1024 if child_kb > child_kb_before else 0.0,
           "peak_rss_children_before_call_mb": child_kb_before / 1024}
    if sampler is not None and sampler.available:
        rep["peak_pss_tree_mb"] = sampler.peak_kb / 1024
        rep["procs_at_peak"] = sampler.peak_procs
    return rep


# ----------------------------------------------------------------------------------------------
# children: one measurement each, result printed as one JSON line on stdout
# ----------------------------------------------------------------------------------------------

def _emit(result: dict) -> None:
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


def _torch_setup(threads: int | None) -> dict:
    import torch
    if threads:
        torch.set_num_threads(threads)
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}


class _Timer:
    """Accumulates the time spent in wrapped functions."""

    def __init__(self):
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn):
        def wrapped(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
        return wrapped


def child_fid_torch_fidelity(spec: dict) -> dict:
    import torch_fidelity
    import torch_fidelity.metric_fid as mf
    import torch_fidelity.metrics as mm

    extract, frechet = _Timer(), _Timer()
    features = []
    if spec.get("features_out"):  # keep a reference to the features (for the exact Fréchet reference)
        inner = mf.extract_featuresdict_from_input_id_cached

        def keep(*args, **kwargs):
            out = inner(*args, **kwargs)
            features.append(out["2048"])
            return out
        mf.extract_featuresdict_from_input_id_cached = keep
    # calculate_metrics(fid only) -> metric_fid.fid_inputs_to_metric, which looks these names up in its module.
    mf.fid_input_id_to_statistics_cached = extract.wrap(mf.fid_input_id_to_statistics_cached)
    mf.fid_statistics_to_metric = frechet.wrap(mf.fid_statistics_to_metric)
    mm.fid_statistics_to_metric = mf.fid_statistics_to_metric
    kwargs = dict(input1=spec["a"], input2=spec["b"], fid=True, feature_extractor="inception-v3-compat",
                  feature_extractor_weights_path=spec["weights"], cuda=False, batch_size=BATCH_ANCHORS,
                  verbose=False, cache=False)
    if spec.get("save_cpu_ram"):
        kwargs["save_cpu_ram"] = True
    t0 = time.perf_counter()
    metrics = torch_fidelity.calculate_metrics(**kwargs)
    total = time.perf_counter() - t0
    if extract.calls != 2 or frechet.calls != 1:
        raise RuntimeError(f"torch-fidelity instrumentation missed its calls (extract {extract.calls}, "
                           f"frechet {frechet.calls}); its internals changed")
    if spec.get("features_out") and len(features) == 2:
        import numpy as np
        np.savez(spec["features_out"], a=features[0].numpy(), b=features[1].numpy())
    return {"fid": float(metrics["frechet_inception_distance"]), "total_s": total, "extract_s": extract.seconds,
            "frechet_s": frechet.seconds, "frechet_route": "numpy eigvals",
            "loader": "DataLoader, 4 workers" if not spec.get("save_cpu_ram") else "DataLoader, 0 workers",
            "batch_size": BATCH_ANCHORS, "version": torch_fidelity.__version__}


def _patch_pytorch_fid_weights(weights: str) -> None:
    import torch
    import pytorch_fid.inception as pi
    pi.load_state_dict_from_url = lambda *a, **k: torch.load(weights, map_location="cpu", weights_only=True)


def child_fid_pytorch_fid(spec: dict) -> dict:
    import pytorch_fid
    _patch_pytorch_fid_weights(spec["weights"])
    import pytorch_fid.fid_score as fs

    extract, frechet = _Timer(), _Timer()
    fs.compute_statistics_of_path = extract.wrap(fs.compute_statistics_of_path)
    fs.calculate_frechet_distance = frechet.wrap(fs.calculate_frechet_distance)
    # pytorch-fid's command line default: min(#cpus, 8) data-loader workers.
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count() or 1
    workers = min(ncpu, 8)
    t0 = time.perf_counter()
    value = fs.calculate_fid_given_paths([spec["a"], spec["b"]], batch_size=BATCH_ANCHORS, device="cpu",
                                         dims=2048, num_workers=workers)
    total = time.perf_counter() - t0
    if extract.calls != 2 or frechet.calls != 1:
        raise RuntimeError(f"pytorch-fid instrumentation missed its calls (extract {extract.calls}, "
                           f"frechet {frechet.calls}); its internals changed")
    return {"fid": float(value), "total_s": total, "extract_s": extract.seconds, "frechet_s": frechet.seconds,
            "frechet_route": "scipy sqrtm", "loader": f"DataLoader, {workers} workers", "batch_size": BATCH_ANCHORS,
            "version": getattr(pytorch_fid, "__version__", "?")}


def child_fid_fidkit(spec: dict) -> dict:
    import numpy as np
    import fidkit
    from fidkit.extractors.runtime import InceptionExtractor

    w = spec["weights"]
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        # 1. the one-call API, end to end (loads the network, both feature passes, Fréchet step)
        t0 = time.perf_counter()
        result = fidkit.fid(spec["a"], spec["b"], weights=w, device="cpu")
        total = time.perf_counter() - t0
        # 2. the same work step by step, network already loaded, for the breakdown
        t0 = time.perf_counter()
        InceptionExtractor.get(weights=w, device="cpu")
        load_cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        sa = fidkit.compute_stats(spec["a"], weights=w, device="cpu")
        sb = fidkit.compute_stats(spec["b"], weights=w, device="cpu")
        extract = time.perf_counter() - t0
        t0 = time.perf_counter()
        value = fidkit.frechet_distance(sa, sb)
        frechet = time.perf_counter() - t0
        caught = sorted({str(x.message) for x in rec})
    if spec.get("stats_out"):
        np.savez(spec["stats_out"], mu_a=sa.mean, cov_a=sa.cov, n_a=sa.n, mu_b=sb.mean, cov_b=sb.cov, n_b=sb.n)
    from fidkit.engine.extract import default_workers
    return {"fid": float(result.fid), "fid_stepwise": float(value), "total_s": total, "extract_s": extract,
            "frechet_s": frechet, "frechet_route": "fidkit", "extractor_get_cached_s": load_cached,
            "loader": f"{default_workers()} decode threads", "batch_size": 32, "version": fidkit.__version__,
            "n_a": sa.n, "n_b": sb.n, "warnings": caught}


def child_scale_fidkit(spec: dict) -> dict:
    import fidkit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        stats = fidkit.compute_stats(spec["a"], weights=spec["weights"], device="cpu")
        total = time.perf_counter() - t0
    return {"n": stats.n, "total_s": total}


def child_scale_torch_fidelity(spec: dict) -> dict:
    res = child_fid_torch_fidelity(spec)
    return {"n": spec["n"], "total_s": res["total_s"], "fid": res["fid"]}


def _synthetic_features(d: int, n: int, seed: int):
    """``n`` correlated non-negative samples (their covariance is full rank when n > d)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return np.abs(rng.standard_normal((n, d)) @ mix + 0.3 * rng.standard_normal((n, d)))  # ReLU-ish, like pool3


def _exact_fd(fa, fb) -> float:
    """Fréchet distance of the samples' Gaussians without any matrix square root.

    With centred samples A (n_a x d), B (n_b x d), S_a = A'A/(n_a-1) and S_b = B'B/(n_b-1),
    the non-zero eigenvalues of S_a S_b are the squared singular values of A B' / sqrt((n_a-1)(n_b-1)),
    so tr sqrt(S_a S_b) is the sum of those singular values: computed directly, to relative
    accuracy, with no square roots of rounding-level eigenvalues.
    """
    import numpy as np
    fa, fb = np.asarray(fa, np.float64), np.asarray(fb, np.float64)
    a, b = fa - fa.mean(0), fb - fb.mean(0)
    tr_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    diff = fa.mean(0) - fb.mean(0)
    tr_a = (a * a).sum() / (len(a) - 1)
    tr_b = (b * b).sum() / (len(b) - 1)
    return float(diff @ diff + tr_a + tr_b - 2 * tr_sqrt)


def child_frechet(spec: dict) -> dict:
    import numpy as np
    import fidkit

    def moments(fa, fb):
        fa, fb = np.asarray(fa, np.float64), np.asarray(fb, np.float64)
        return fa.mean(0), np.cov(fa, rowvar=False), len(fa), fb.mean(0), np.cov(fb, rowvar=False), len(fb)

    cases = []  # (label, mu_a, cov_a, n_a, mu_b, cov_b, n_b, exact value or None)
    if spec.get("features") and os.path.exists(spec["features"]):
        with np.load(spec["features"]) as f:
            fa, fb = f["a"], f["b"]
        cases.append(("pool3 features of this run (torch-fidelity's), covariances singular",
                      *moments(fa, fb), _exact_fd(fa, fb)))
        del fa, fb
    elif spec.get("stats") and os.path.exists(spec["stats"]):
        with np.load(spec["stats"]) as f:
            cases.append(("pool3 statistics of this run (fidkit's)", f["mu_a"], f["cov_a"], int(f["n_a"]),
                          f["mu_b"], f["cov_b"], int(f["n_b"]), None))
    if spec.get("synthetic") or not cases:
        n = spec.get("synthetic_n", 4096)
        fa, fb = _synthetic_features(2048, n, 1), _synthetic_features(2048, n, 2)
        cases.append((f"synthetic, N={n}, full rank", *moments(fa, fb), _exact_fd(fa, fb)))
        del fa, fb

    have_scipy = importlib.util.find_spec("scipy") is not None
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance as scipy_route
        scipy_name = "pytorch_fid.fid_score.calculate_frechet_distance"
    except ImportError:
        scipy_name = None
        if not have_scipy:
            scipy_route = None
        else:
            from scipy import linalg

            def scipy_route(mu1, s1, mu2, s2):  # the same computation as pytorch-fid / TTUR
                covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
                covmean = covmean.real
                diff = mu1 - mu2
                return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
            scipy_name = "scipy.linalg.sqrtm (TTUR formula, local copy)"
    try:
        from torch_fidelity.metric_fid import fid_statistics_to_metric

        def eig_route(mu1, s1, mu2, s2):
            return fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2},
                                            False)["frechet_inception_distance"]
        eig_name = "torch_fidelity.metric_fid.fid_statistics_to_metric"
    except ImportError:
        def eig_route(mu1, s1, mu2, s2):
            diff = mu1 - mu2
            tr = np.sum(np.sqrt(np.linalg.eigvals(s1.dot(s2)).astype("complex128")).real)
            return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr)
        eig_name = "numpy eigvals (torch-fidelity formula, local copy)"

    repeats = max(1, int(spec.get("repeats", 1)))
    out = []
    for label, mu_a, cov_a, n_a, mu_b, cov_b, n_b, exact in cases:
        routes = []
        if scipy_route is not None:
            routes.append(("scipy sqrtm", scipy_name, lambda: scipy_route(mu_a, cov_a, mu_b, cov_b)))
        routes.append(("numpy eigvals", eig_name, lambda: eig_route(mu_a, cov_a, mu_b, cov_b)))
        routes.append(("fidkit", "fidkit.frechet_distance_from_moments",
                       lambda: fidkit.frechet_distance_from_moments(mu_a, cov_a, mu_b, cov_b, n_a=n_a, n_b=n_b)))
        rows = []
        for key, name, fn in routes:
            times, value = [], None
            for _ in range(repeats):
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    value = float(np.real(fn()))
                times.append(time.perf_counter() - t0)
            rows.append({"route": key, "impl": name, "seconds": min(times), "all_seconds": times, "value": value})
        ref = next(r for r in rows if r["route"] == "fidkit")
        for r in rows:
            r["speedup_of_fidkit"] = r["seconds"] / ref["seconds"]
            r["rel_diff_vs_fidkit"] = abs(r["value"] - ref["value"]) / abs(ref["value"]) if ref["value"] else None
            r["rel_error_vs_exact"] = abs(r["value"] - exact) / abs(exact) if exact else None
        out.append({"case": label, "d": int(mu_a.size), "n_a": n_a, "n_b": n_b, "exact": exact, "rows": rows})
    return {"cases": out}


def child_parity(spec: dict) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from fidkit.extractors.runtime import InceptionExtractor
    from fidkit.extractors.inception import MODES

    files = sorted(Path(spec["a"]).glob("*.png"))[: spec["n"]]
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])  # N x H x W x 3 uint8
    ext = InceptionExtractor(spec["weights"], "cpu")
    out = {"n": len(files)}

    def fidkit_features(mode: str):
        feats = []
        for i in range(0, len(imgs), 16):
            batch = torch.stack([MODES[mode].prepare(im) for im in imgs[i:i + 16]])
            feats.append(ext(batch)["pool3"].double())
        return torch.cat(feats)

    def compare(ours, theirs):
        diff = (ours - theirs).abs()
        return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                "max_abs_feature": float(theirs.abs().max()), "mean_abs_feature": float(theirs.abs().mean()),
                "max_rel_diff": float(diff.max() / theirs.abs().max())}

    if importlib.util.find_spec("torch_fidelity") is not None:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        fe = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                         feature_extractor_weights_path=spec["weights"])
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            theirs = torch.cat([fe(x[i:i + 16])[0].double() for i in range(0, len(x), 16)])
        out["torch-fidelity"] = dict(compare(fidkit_features("tf"), theirs), fidkit_mode="tf",
                                     anchor="FeatureExtractorInceptionV3 '2048'")
    else:
        out["torch-fidelity"] = {"skipped": "torch-fidelity not installed"}

    if importlib.util.find_spec("pytorch_fid") is not None:
        _patch_pytorch_fid_weights(spec["weights"])
        from pytorch_fid.inception import InceptionV3
        net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255  # what torchvision's ToTensor gives
        with torch.no_grad():
            theirs = torch.cat([net(x[i:i + 16])[0].flatten(1).double() for i in range(0, len(x), 16)])
        out["pytorch-fid"] = dict(compare(fidkit_features("pytorch"), theirs), fidkit_mode="pytorch",
                                  anchor="pytorch_fid.inception.InceptionV3 (2048)")
    else:
        out["pytorch-fid"] = {"skipped": "pytorch-fid not installed"}
    return out


CHILDREN = {
    "fid:torch-fidelity": child_fid_torch_fidelity,
    "fid:pytorch-fid": child_fid_pytorch_fid,
    "fid:fidkit": child_fid_fidkit,
    "scale:fidkit": child_scale_fidkit,
    "scale:torch-fidelity": child_scale_torch_fidelity,
    "frechet": child_frechet,
    "parity": child_parity,
}


def run_child(task: str, spec: dict) -> None:
    info = _torch_setup(spec.get("threads"))
    info["task"] = task
    lib = task.split(":", 1)[1] if ":" in task else None
    if lib and importlib.util.find_spec(MODULE_OF[lib]) is None:
        _emit(dict(info, skipped=f"{lib} is not installed (python -m pip install {lib})"))
        return
    sampler = TreeMemorySampler() if spec.get("pss") else None
    child_kb_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with sampler if sampler is not None else contextlib.nullcontext():
        t0 = time.perf_counter()
        result = CHILDREN[task](spec)
        result["child_wall_s"] = time.perf_counter() - t0
    result.update(_memory_report(sampler, child_kb_before))
    _emit(dict(info, **result))


def report_simple_child(result: dict) -> None:
    """A child of the simpler benchmarks (features, video): its result with its peak RSS, for ``run_measured``."""
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(RESULT_MARKER + json.dumps(result), flush=True)


def comparison_row(name: str, r: dict, key: str, items: int, base: float | None) -> str:
    """``| name | value | seconds | items/s | speed vs base | peak RSS |`` for one measured run."""
    if "error" in r:
        return f"| {name} | failed: {r['error'][:60]} | | | | |"
    value = r["values"].get(key, next(iter(r["values"].values())))
    ratio = f"{base / r['seconds']:.2f}x" if base else "1.00x"
    return (f"| {name} | {value:.6f} | {r['seconds']:.1f} | {items / r['seconds']:.2f} | {ratio} | "
            f"{r['peak_rss_gb']:.2f} GB |")


# ----------------------------------------------------------------------------------------------
# parent: images, weights, children, tables
# ----------------------------------------------------------------------------------------------

def _make_image(seed: int, index: int, variant: int):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng([seed, index])
    grid = 6 if variant == 0 else 9  # the two distributions differ in the scale of their structure
    coarse = rng.integers(0, 256, (grid, grid, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC), dtype=np.int16)
    img = img + rng.integers(-12, 13, img.shape, dtype=np.int16)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _write_images(job):
    folder, seed, variant, start, stop = job
    for i in range(start, stop):
        path = Path(folder) / f"{i:05d}.png"
        if not path.exists():
            _make_image(seed, i, variant).save(path)
    return stop - start


def make_image_set(folder: Path, n: int, seed: int, variant: int, procs: int) -> Path:
    """``n`` deterministic 256 px PNGs; reused when the folder already holds exactly them."""
    marker = folder / ".bench-set.json"
    want = {"n": n, "seed": seed, "variant": variant, "size": IMAGE_SIZE, "version": 1}
    if marker.exists() and json.loads(marker.read_text()) == want and len(list(folder.glob("*.png"))) == n:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    step = 100
    jobs = [(str(folder), seed, variant, s, min(s + step, n)) for s in range(0, n, step)]
    if procs > 1:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            pool.map(_write_images, jobs)
    else:
        for j in jobs:
            _write_images(j)
    marker.write_text(json.dumps(want))
    return folder


def _busy_cpu_s() -> float | None:
    """CPU seconds spent by the whole machine since boot (all processes, all cores)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_until_quiet(threshold: float, max_wait: float, quiet_for: float = 30.0, probe: float = 5.0) -> dict:
    """Wait (up to ``max_wait`` s) until other processes have used less than ``threshold`` of the
    machine's CPU for ``quiet_for`` seconds in a row."""
    ncpu = os.cpu_count() or 1
    t0 = time.perf_counter()
    announced = False
    quiet_since = None
    while True:
        b0 = _busy_cpu_s()
        time.sleep(probe)
        b1 = _busy_cpu_s()
        share = None if b0 is None or b1 is None else (b1 - b0) / (probe * ncpu)
        now = time.perf_counter()
        waited = now - t0
        if share is None:
            return {"waited_s": waited, "load_before": None}
        if share < threshold:
            quiet_since = quiet_since if quiet_since is not None else now - probe
        else:
            quiet_since = None
        quiet = quiet_since is not None and now - quiet_since >= quiet_for
        if quiet or waited >= max_wait:
            if announced:
                print(f" {'quiet' if quiet else 'still busy'} after {waited:.0f} s", flush=True)
            return {"waited_s": waited, "load_before": share}
        if not announced and share >= threshold:
            print(f"  waiting for other processes to finish (they use {share:.0%} of the CPU) ...", end="",
                  flush=True)
            announced = True


class MeasurementStore:
    """Clean measurements saved in the workdir as they finish, so that ``--resume`` can skip them."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled
        self.data = {}
        if enabled and path.exists():
            try:
                self.data = json.loads(path.read_text())
            except ValueError:
                self.data = {}

    @staticmethod
    def key(task: str, spec: dict) -> str:
        return task + " " + json.dumps(spec, sort_keys=True)

    def get(self, task: str, spec: dict) -> dict | None:
        res = self.data.get(self.key(task, spec)) if self.enabled else None
        outputs = [spec[k] for k in ("stats_out", "features_out") if spec.get(k)]
        if res is None or not all(os.path.exists(o) for o in outputs):
            return None
        return res

    def put(self, task: str, spec: dict, res: dict) -> None:
        if "error" in res or res.get("foreign_cpu_share", 0) > BUSY_WARN:
            return
        self.data[self.key(task, spec)] = res
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)


def launch(task: str, spec: dict, log, timeout: float | None, quiet: tuple[float, float] | None = None,
           retries: int = 0, store: MeasurementStore | None = None) -> dict:
    """Run one child; with ``retries``, run it again (after waiting for quiet) while others loaded the machine."""
    if store is not None:
        cached = store.get(task, spec)
        if cached is not None:
            print(f"  {task}: reusing the measurement saved in the workdir (--resume)")
            return dict(cached, reused=True)
    for attempt in range(retries + 1):
        res = _launch_once(task, spec, log, timeout, quiet)
        if res.get("foreign_cpu_share", 0) <= BUSY_WARN or "error" in res or attempt == retries:
            res["attempts"] = attempt + 1
            if store is not None:
                store.put(task, spec, res)
            return res
        print(f"  ... repeating {task}: the machine was shared")
    raise AssertionError("unreachable")


def machine_info(threads: int | None) -> dict:
    """What a result table needs to say about the machine and the run."""
    import torch
    info = {"cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": threads or torch.get_num_threads(),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), info["cpu"])
    except OSError:
        pass
    return info


def run_measured(cmd: list[str], label: str, log, timeout: float | None, quiet: tuple[float, float] | None,
                 marker: str = RESULT_MARKER) -> dict:
    """Run one measurement subprocess, after waiting for a quiet machine if asked.

    Returns the child's last ``marker`` line (a JSON object) with the wall time and the share of the machine's
    CPU that other processes used meanwhile, or ``{"error": ...}``.  The child's output goes to ``log``.
    """
    waited = wait_until_quiet(*quiet) if quiet and quiet[1] > 0 else None
    print(f"  [{time.strftime('%H:%M:%S')}] {label} ...", end="", flush=True)
    busy0, own0 = _busy_cpu_s(), _children_cpu_s()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f" TIMEOUT after {timeout:.0f} s")
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    busy1, own1 = _busy_cpu_s(), _children_cpu_s()
    log.write(f"===== {label} (rc={proc.returncode}, {wall:.1f} s)\n--- stdout\n{proc.stdout}\n--- stderr\n"
              f"{proc.stderr}\n")
    log.flush()
    results = [json.loads(line[len(marker):]) for line in proc.stdout.splitlines() if line.startswith(marker)]
    if proc.returncode != 0 or not results:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        print(f" FAILED (rc={proc.returncode}, {wall:.0f} s)\n{tail}")
        return {"error": f"rc={proc.returncode}: " + (tail.splitlines()[-1] if tail else "no output")}
    res = results[-1]
    res["process_wall_s"] = wall
    res["child_cpu_s"] = own1 - own0
    if busy0 is not None and busy1 is not None:
        # CPU time that other processes (not this benchmark) used while the child ran, as a share of the machine.
        res["foreign_cpu_share"] = max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall * (os.cpu_count() or 1))
    if waited:
        res.update(waited)
    return res


def busy_note(res: dict) -> str:
    share = res.get("foreign_cpu_share", 0)
    return f", WARNING: other processes used {share:.0%} of the CPU meanwhile" if share > BUSY_WARN else ""


def _launch_once(task: str, spec: dict, log, timeout: float | None, quiet: tuple[float, float] | None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--run-one", task, "--spec", json.dumps(spec)]
    res = run_measured(cmd, task, log, timeout, quiet)
    res["task"] = task
    if "error" not in res:
        print(f" {'skipped: ' + res['skipped'] if 'skipped' in res else 'done'} "
              f"({res['process_wall_s']:.0f} s{busy_note(res)})")
    return res


def _fmt(x, spec="", none="—"):
    return none if x is None else format(x, spec)


def _gb(mb):
    return None if not mb else f"{mb / 1024:.2f} GB"


def _contention_lines(results: dict) -> list[str]:
    """Other processes' CPU share during each measurement, and a warning when timings are not trustworthy."""
    measured = []
    for lib, r in results.get("fid", {}).items():
        measured.append((f"FID {lib}", r))
    if results.get("frechet"):
        measured.append(("Fréchet", results["frechet"]))
    for key, r in results.get("scaling", {}).items():
        if key.startswith("fidkit") or key.endswith(str(results["config"]["n_large"])):
            measured.append((f"scaling {key}", r))
    if results.get("parity"):
        measured.append(("parity", results["parity"]))
    shares = [(name, r["foreign_cpu_share"]) for name, r in measured if r.get("foreign_cpu_share") is not None]
    if not shares:
        return []
    busy = [(n, x) for n, x in shares if x > BUSY_WARN]
    out = ["Other processes' share of the machine's CPU while each measurement ran: "
           + ", ".join(f"{n} {x:.0%}" for n, x in shares) + "."]
    if busy:
        out.append(f"**WARNING: the machine was shared during {', '.join(n for n, _ in busy)}; those timings are "
                   "not representative (run again with --wait-idle 1800 on a quiet machine).**")
    out.append("")
    return out


def render(results: dict) -> str:
    lines = []
    cfg = results["config"]
    main = results["fid"]
    ok = {lib: r for lib, r in main.items() if "fid" in r}
    for r in ok.values():
        r["img_per_s"] = (r["n_images"] / r["extract_s"]) if r.get("extract_s") else None
    anchor_speeds = [ok[a]["img_per_s"] for a in ANCHORS if a in ok and ok[a].get("img_per_s")]
    fastest = max(anchor_speeds) if anchor_speeds else None
    ref_fid = ok.get("torch-fidelity", {}).get("fid")

    lines.append(f"### FID, 2 x {cfg['n']} PNG images of {IMAGE_SIZE} px, shared random Inception weights, CPU "
                 f"({cfg['cpu_count']} cores, torch {cfg['torch']}, {cfg['torch_threads']} threads)")
    lines.append("")
    pss = any(r.get("peak_pss_tree_mb") for r in ok.values())
    lines.append("| library | FID | extraction img/s | ratio vs fastest anchor | FD seconds | total s | "
                 "peak RSS (main process) | peak RSS (largest worker process) |" + (" peak PSS (process tree) |" if pss else ""))
    lines.append("|---|---|---|---|---|---|---|---|" + ("---|" if pss else ""))
    for lib in LIBS:
        r = main.get(lib)
        if r is None:
            continue
        if "fid" not in r:
            why = r.get("skipped") or r.get("error") or "not run"
            lines.append(f"| {lib} | {why} | | | | | | |" + (" |" if pss else ""))
            continue
        ratio = (r["img_per_s"] / fastest) if fastest and r.get("img_per_s") else None
        name = f"{lib} {r.get('version', '')}".strip()
        fid_txt = f"{r['fid']:.6f}"
        lines.append(
            f"| {name} | {fid_txt} | {_fmt(r['img_per_s'], '.1f')} | {_fmt(ratio, '.2f')}x | "
            f"{r['frechet_s']:.2f} ({r['frechet_route']}) | {r['total_s']:.0f} | {_gb(r.get('peak_rss_main_mb'))} | "
            f"{_gb(r.get('peak_rss_largest_child_mb')) or 'no workers'} |"
            + (f" {_gb(r.get('peak_pss_tree_mb'))} ({r.get('procs_at_peak', '?')} procs) |" if pss else ""))
    lines.append("")
    notes = []
    for lib, r in ok.items():
        notes.append(f"{lib}: batch {r.get('batch_size')}, {r.get('loader')}")
    if "fidkit" in ok:
        fk = ok["fidkit"]
        if ref_fid:
            notes.append(f"fidkit FID vs torch-fidelity FID: relative difference {abs(fk['fid'] - ref_fid) / ref_fid:.2e} "
                         "(same TF1 bilinear resize; pytorch-fid resizes differently, so its FID differs by design)")
        notes.append(f"fidkit.fid() on folders = {fk['fid']:.9g}; compute_stats + frechet_distance = "
                     f"{fk['fid_stepwise']:.9g}")
        exact = next((c.get("exact") for c in results.get("frechet", {}).get("cases", [])
                      if c.get("exact") and c["n_a"] == cfg["n"]), None)
        if exact and ref_fid:
            notes.append(f"exact Fréchet distance of torch-fidelity's own features = {exact:.9g}; torch-fidelity's "
                         f"FID differs from it by {abs(ref_fid - exact) / exact:.1e}, fidkit's FID (its own features "
                         f"and Fréchet route) by {abs(fk['fid'] - exact) / exact:.1e}; the Fréchet table below "
                         "separates the routes' share")
    lines.append("Extraction = both feature passes incl. decoding, resizing and statistics, network already loaded; "
                 "img/s = 2N / extraction s. total s = the whole one-call FID incl. network loading. "
                 "Peak RSS = ru_maxrss of the library's process, and of its largest data-loader worker process (a forked "
                 "worker also counts the pages it shares with its parent; fidkit decodes in threads)."
                 + (" Peak PSS = sampled sum over the process and its workers, shared pages counted once." if pss else ""))
    lines += [f"- {n}" for n in notes]
    lines.append("")
    lines += _contention_lines(results)

    fd = results.get("frechet", {})
    for case in fd.get("cases", []):
        lines.append(f"### Fréchet distance, d={case['d']}, {case['case']} (N_a={case['n_a']}, N_b={case['n_b']}), "
                     "same statistics for every route")
        lines.append("")
        exact = case.get("exact")
        lines.append("| route | seconds | fidkit speed-up | value | relative difference vs fidkit |"
                     + (" relative error vs exact |" if exact else ""))
        lines.append("|---|---|---|---|---|" + ("---|" if exact else ""))
        for r in case["rows"]:
            lines.append(f"| {r['route']} (`{r['impl']}`) | {r['seconds']:.2f} | {r['speedup_of_fidkit']:.1f}x | "
                         f"{r['value']:.10g} | {_fmt(r['rel_diff_vs_fidkit'], '.1e')} |"
                         + (f" {r['rel_error_vs_exact']:.1e} |" if exact else ""))
        if exact:
            lines.append("")
            lines.append(f"Exact value {exact:.10g}: tr sqrt(S_a S_b) as the sum of the singular values of the "
                         "centred cross-product A B^T / sqrt((n_a-1)(n_b-1)) of the features, in float64 "
                         "(no square roots of rounding-level eigenvalues).")
        lines.append("")
    if fd and "cases" not in fd:
        lines.append(f"Fréchet row: {fd.get('error') or fd.get('skipped')}\n")

    scale = results.get("scaling", {})
    if scale:
        lines.append("### Memory vs number of images (fidkit: `compute_stats` on one folder; torch-fidelity: FID "
                     f"of that folder vs the other {cfg['n']}-image set)")
        lines.append("")
        lines.append("| library | images | seconds | img/s | peak RSS (main process) | peak RSS (largest worker) |")
        lines.append("|---|---|---|---|---|---|")
        for key in sorted(scale, key=lambda k: (scale[k].get("lib", ""), scale[k].get("n", 0))):
            r = scale[key]
            if "error" in r or "skipped" in r:
                lines.append(f"| {key} | {r.get('error') or r.get('skipped')} | | | | |")
                continue
            n_img = r["n"] if r["lib"] == "fidkit" else f"{r['n']} + {cfg['n']}"
            n_tot = r["n"] if r["lib"] == "fidkit" else r["n"] + cfg["n"]
            lines.append(f"| {r['lib']} | {n_img} | {r['total_s']:.0f} | {n_tot / r['total_s']:.1f} | "
                         f"{_gb(r.get('peak_rss_main_mb'))} | {_gb(r.get('peak_rss_largest_child_mb')) or 'none'} |")
        fk = sorted((r for r in scale.values() if r.get("lib") == "fidkit" and "peak_rss_main_mb" in r),
                    key=lambda r: r["n"])
        if len(fk) >= 2:
            lines.append("")
            lines.append(f"fidkit peak RSS grows by {fk[-1]['peak_rss_main_mb'] - fk[0]['peak_rss_main_mb']:+.0f} MB "
                         f"from {fk[0]['n']} to {fk[-1]['n']} images "
                         f"({fk[-1]['peak_rss_main_mb'] / fk[0]['peak_rss_main_mb']:.2f}x).")
        lines.append("")

    par = results.get("parity", {})
    if par:
        lines.append(f"### Feature parity, pool3 (2048-d) on {par.get('n', '?')} of the generated images, same weights")
        lines.append("")
        lines.append("| fidkit mode | vs | max abs diff | max rel diff (/max |feature|) | mean |feature| |")
        lines.append("|---|---|---|---|---|")
        for lib in ANCHORS:
            r = par.get(lib)
            if not r:
                continue
            if "max_abs_diff" not in r:
                lines.append(f"| | {lib} | {r.get('skipped') or r.get('error')} | | |")
                continue
            lines.append(f"| {r['fidkit_mode']} | {lib} {r['anchor']} | {r['max_abs_diff']:.2e} | "
                         f"{r['max_rel_diff']:.2e} | {r['mean_abs_feature']:.4f} |")
        if "error" in par:
            lines.append(f"parity: {par['error']}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="images per side for the FID table")
    p.add_argument("--n-large", type=int, default=5000, help="images in the large set of the memory row")
    p.add_argument("--quick", action="store_true", help="100 per side, 300 in the large set")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where images and weights go (kept and reused); default: a temp dir, removed at the end")
    p.add_argument("--out", type=Path, default=Path("bench-out/results.json"), help="JSON results")
    p.add_argument("--libs", default=",".join(LIBS), help="comma-separated subset of " + ",".join(LIBS))
    p.add_argument("--skip", default="", help="comma-separated sections to skip: fid,frechet,scaling,parity")
    p.add_argument("--anchor-scaling", action="store_true",
                   help="also run torch-fidelity on the large set (adds ~N_large/10 s)")
    p.add_argument("--parity-n", type=int, default=64, help="images for the feature-parity row")
    p.add_argument("--fd-repeats", type=int, default=1, help="repetitions of each Fréchet route (min is reported)")
    p.add_argument("--no-synthetic-fd", action="store_true",
                   help="time the Fréchet routes only on this run's statistics, not also on synthetic full-rank ones")
    p.add_argument("--pss", action="store_true",
                   help="also sample the PSS of each library's process tree (main + data-loader workers, shared "
                        "pages counted once) every second; this slows the anchors' feature pass by ~15%%")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own default)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per child before it is abandoned")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="before each measurement wait up to this long for other processes to stop using the CPU "
                        "(timings on a shared 2-core machine are meaningless otherwise); 0: do not wait")
    p.add_argument("--retries", type=int, default=0,
                   help="run a measurement again (up to this many times) when other processes used more than "
                        f"{BUSY_WARN * 100:.0f}%% of the CPU while it ran")
    p.add_argument("--resume", action="store_true",
                   help="reuse the clean measurements an earlier (interrupted) run with the same --workdir saved")
    p.add_argument("--idle-threshold", type=float, default=0.05,
                   help="share of the machine's CPU used by others below which it counts as quiet")
    p.add_argument("--render", type=Path, metavar="JSON", help="only print the tables of an earlier run's JSON")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.run_one:
        run_child(args.run_one, json.loads(args.spec))
        return 0
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0

    if args.quick:
        args.n, args.n_large = 100, 300
    if args.resume and args.workdir is None:
        p.error("--resume needs --workdir (the saved measurements live there)")

    parent_pid = os.getpid()

    def on_signal(signum, _frame):
        if os.getpid() != parent_pid:  # a forked image-writing worker being shut down by its pool
            os._exit(128 + signum)
        print(f"\n[{time.strftime('%H:%M:%S')}] benchmark terminated by signal {signum}", file=sys.stderr, flush=True)
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    libs = [x.strip() for x in args.libs.split(",") if x.strip()]
    unknown = set(libs) - set(LIBS)
    if unknown:
        p.error(f"unknown libraries {sorted(unknown)}; choose from {LIBS}")
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    if importlib.util.find_spec("fidkit") is None:
        p.error("fidkit is not importable: run from the project's virtualenv (pip install -e .)")

    from fidkit.testing import write_random_inception_weights

    own_tmp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="fidkit-bench-")) if own_tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.out.with_suffix(".log")
    t_start = time.perf_counter()
    procs = max(1, min(os.cpu_count() or 1, 8))
    cfg = {"n": args.n, "n_large": args.n_large, "image_size": IMAGE_SIZE, "workdir": str(workdir),
           **machine_info(args.threads)}
    for lib in LIBS:
        mod = MODULE_OF[lib]
        cfg[f"have_{mod}"] = importlib.util.find_spec(mod) is not None
    results: dict = {"config": cfg, "fid": {}, "scaling": {}}
    print(f"fidkit benchmark: N={args.n} per side, N_large={args.n_large}, workdir {workdir}, log {log_path}")
    for lib in libs:
        if not cfg[f"have_{MODULE_OF[lib]}"]:
            print(f"  note: {lib} is not installed; its rows are skipped (pip install {lib})")

    try:
        t0 = time.perf_counter()
        set_a = make_image_set(workdir / f"a{args.n}", args.n, seed=1, variant=0, procs=procs)
        set_b = make_image_set(workdir / f"b{args.n}", args.n, seed=2, variant=1, procs=procs)
        set_large = None
        if "scaling" not in skip:
            set_large = make_image_set(workdir / f"large{args.n_large}", args.n_large, seed=3, variant=0, procs=procs)
        weights = workdir / "random-inception-seed0.pth"
        if not weights.exists():
            write_random_inception_weights(weights, seed=0)
        print(f"  images and weights ready ({time.perf_counter() - t0:.0f} s)")
        base = {"weights": str(weights), "threads": args.threads, "pss": args.pss}
        quiet = (args.idle_threshold, args.wait_idle)
        stats_path = workdir / f"fidkit-stats-{args.n}.npz"
        feats_path = workdir / f"torch-fidelity-features-{args.n}.npz"
        store = MeasurementStore(workdir / f"measurements-{args.n}-{args.n_large}.json", args.resume)
        if not args.resume:
            store.path.unlink(missing_ok=True)
            for stale in (stats_path, feats_path):
                stale.unlink(missing_ok=True)

        with open(log_path, "w") as log:
            if "fid" not in skip:
                for lib in libs:
                    spec = dict(base, a=str(set_a), b=str(set_b))
                    if lib == "fidkit":
                        spec["stats_out"] = str(stats_path)
                    if lib == "torch-fidelity":
                        spec["features_out"] = str(feats_path)
                    r = launch(f"fid:{lib}", spec, log, args.timeout, quiet, args.retries, store)
                    r["n_images"] = 2 * args.n
                    results["fid"][lib] = r
            if "frechet" not in skip:
                results["frechet"] = launch("frechet", dict(base, stats=str(stats_path), features=str(feats_path),
                                                            synthetic=not args.no_synthetic_fd,
                                                            repeats=args.fd_repeats), log, args.timeout, quiet, args.retries, store)
            if "scaling" not in skip:
                if "fidkit" in libs:
                    for n, folder in ((args.n, set_a), (args.n_large, set_large)):
                        r = launch("scale:fidkit", dict(base, a=str(folder)), log, args.timeout, quiet, args.retries, store)
                        results["scaling"][f"fidkit-{n}"] = dict(r, lib="fidkit", n=r.get("n", n))
                if args.anchor_scaling and "torch-fidelity" in libs:
                    r = launch("scale:torch-fidelity", dict(base, a=str(set_large), b=str(set_b), n=args.n_large),
                               log, args.timeout, quiet, args.retries, store)
                    results["scaling"][f"torch-fidelity-{args.n_large}"] = dict(r, lib="torch-fidelity",
                                                                                n=args.n_large)
                    tf = results["fid"].get("torch-fidelity")
                    if tf and "fid" in tf:  # the 1000 + 1000 point comes from the main table
                        results["scaling"][f"torch-fidelity-{args.n}"] = dict(
                            tf, lib="torch-fidelity", n=args.n)
            if "parity" not in skip:
                results["parity"] = launch("parity", dict(base, a=str(set_a), n=min(args.parity_n, args.n)),
                                           log, args.timeout, quiet, args.retries, store)
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)

    cfg["total_wall_s"] = time.perf_counter() - t_start
    text = render(results)
    results["markdown"] = text
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print()
    print(text)
    print(f"total {cfg['total_wall_s'] / 60:.1f} min; JSON in {args.out}, child logs in {log_path}")
    failed = [k for k, v in results["fid"].items() if "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
