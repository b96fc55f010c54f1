#!/usr/bin/env python
"""Differentiable Fréchet distance for small batches: fidkit vs FastFID's algorithm vs scipy ``sqrtm``.

    python benchmarks/bench_differentiable.py --quick     # b = 8, 32 (sqrtm at b = 8 only): ~1-2 min on 2 cores
    python benchmarks/bench_differentiable.py             # b = 8, 32, 128, 512: ~4-5 min on 2 cores (sqrtm ~40 s per b)

Setting: d = 2048, a reference covariance from 5000 non-negative, correlated, non-isotropic samples (ReLU of
mixed Gaussians, like pool3 activations), batches of b samples from a slightly different distribution.

(a) The trace term ``tr sqrt(S_x S_r)``, forward only, with its absolute error against an exact value: the sum
    of the singular values of ``Xc L / sqrt(b - 1)`` (``S_r = L L^T``), by LAPACK's SVD in float64, which never
    squares the singular values.  Routes:
    * fidkit: ``nuclear_norm(Xc @ L / sqrt(b - 1))`` with the reference prepared once
      (``FrechetReference``; its eigen-decomposition is timed apart), float64 and float32 (the product in
      float32, the small eigenproblem in float64, as ``frechet_distance_torch`` does);
    * FastFID (Mathiasen & Hvilshøj 2020, arXiv:2009.14075), written here from its description: with
      ``C = Xc^T / sqrt(b - 1)``, ``M = C^T S_r C`` (``b x b``), the square roots of its ``b - 1`` largest
      singular values summed; float64 and float32 (its published code runs float32 on CUDA);
    * ``scipy.linalg.sqrtm`` of the ``d x d`` product ``S_x S_r`` (what pytorch-fid and clean-fid do), float64.
(b) Forward + backward of the whole distance with respect to the batch: ``frechet_distance_torch`` vs torch
    autograd through FastFID's route (``svdvals`` backward), float64 and float32, with the largest difference
    between the two gradients.
(c) Peak memory of (b): one subprocess per configuration; the increase of the peak resident size (``VmHWM``,
    reset just before) over the resident size before the first forward + backward (inputs already loaded).
(d) ``DifferentiableFID`` on images through the Inception network (random weights in the published format):
    one forward + backward, time and peak memory, with and without ``checkpointing=True``.

Times are the best of ``--repeats`` runs (one warm-up excluded), except sqrtm (one run).  On a shared machine
timings mean little: the share of CPU used by other processes is printed for every measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fid import _busy_cpu_s, busy_note, machine_info, run_measured  # noqa: E402

MARK = "@@DIFF-RESULT@@ "
N_REFERENCE = 5000


# ----------------------------------------------------------------------------------------------
# data and the routes being compared
# ----------------------------------------------------------------------------------------------

def make_data(d: int, batches: list[int], seed: int = 0):
    """Reference features (n x d) and one batch per size, all float64 numpy."""
    import numpy as np
    rng = np.random.default_rng(seed)
    spectrum = 1.0 / (1.0 + np.arange(d)) ** 0.6
    mixing = rng.standard_normal((d, d)) * spectrum[:, None] * (4.0 / math.sqrt(d))

    def sample(n, scale=1.0, shift=0.0):
        return np.maximum(rng.standard_normal((n, d)) @ mixing * scale + shift, 0.0)

    return sample(N_REFERENCE), {b: sample(b, 1.1, 0.02) for b in batches}


def fastfid_trace(xc, cov_r):
    """FastFID's trace term from its description: eigenvalues of S_x S_r as singular values of C^T S_r C."""
    import torch
    b = xc.shape[0]
    c = xc.mT / math.sqrt(b - 1)
    m = c.mT @ (cov_r @ c)
    return torch.linalg.svdvals(m)[: b - 1].sqrt().sum()  # sorted descending: the b - 1 largest


def fastfid_distance(x, mean_r, cov_r, trace_r):
    mean = x.mean(0)
    xc = x - mean
    diff = mean - mean_r
    return diff @ diff + xc.square().sum() / (x.shape[0] - 1) + trace_r - 2.0 * fastfid_trace(xc, cov_r)


def ours_trace(xc, factor):
    """What ``frechet_distance_torch`` computes for the trace term (the rank bound: centred batch, factor, d)."""
    from fidkit.metrics.differentiable import nuclear_norm
    b, d = xc.shape
    return nuclear_norm((xc @ factor / math.sqrt(b - 1)).double(), rank=min(b - 1, d, factor.shape[1]))


def best_of(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# ----------------------------------------------------------------------------------------------
# child: forward + backward of one (route, dtype, b), with its peak memory
# ----------------------------------------------------------------------------------------------

def _rss_kb() -> tuple[int, int]:
    """(current, peak) resident size of this process in KiB, from /proc/self/status.

    ``VmHWM`` rather than ``ru_maxrss``: Linux carries ``ru_maxrss`` over ``exec``, so a child started by a
    large parent begins with the parent's peak."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line[:5]] = int(line.split()[1])
    return values["VmRSS"], values["VmHWM"]


def _reset_peak_rss() -> None:
    try:  # Linux >= 4.0: "5" resets VmHWM to the current resident size
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _step(route: str, x, mean_r, matrix, trace_r):
    """One forward + backward of the whole distance; ``matrix`` is the factor (fidkit) or the covariance (FastFID)."""
    import torch
    from fidkit.metrics.differentiable import FrechetReference, frechet_distance_torch
    if route == "fidkit":
        ref = FrechetReference(mean_r, matrix, trace_r)
        return lambda: torch.autograd.grad(frechet_distance_torch(x, ref, dtype=x.dtype), x)[0]
    return lambda: torch.autograd.grad(fastfid_distance(x, mean_r, matrix, trace_r), x)[0]


def child_backward(spec: dict) -> dict:
    import numpy as np
    import torch
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    dtype = getattr(torch, spec["dtype"])
    work = Path(spec["work"])
    x = torch.from_numpy(np.load(work / f"batch_{spec['b']}.npy")).to(dtype).requires_grad_()
    mean_r = torch.from_numpy(np.load(work / "mean.npy")).to(dtype)
    trace_r = torch.tensor(float(np.load(work / "trace.npy")), dtype=dtype)
    matrix = torch.from_numpy(np.load(work / ("factor.npy" if spec["route"] == "fidkit" else "cov.npy"))).to(dtype)
    # The first call of each kernel pages in library code and starts the thread pool (~200 MB of RSS that
    # belongs to neither route): warm up on a tiny problem first.
    tiny = torch.rand(4, 8, dtype=dtype, requires_grad=True)
    _step(spec["route"], tiny, torch.zeros(8, dtype=dtype), torch.eye(8, dtype=dtype), torch.tensor(8.0, dtype=dtype))()
    step = _step(spec["route"], x, mean_r, matrix, trace_r)
    _reset_peak_rss()
    before_kb, _ = _rss_kb()
    grad = step()
    _, peak_kb = _rss_kb()
    seconds, _ = best_of(step, spec["repeats"])
    np.save(work / f"grad_{spec['route']}_{spec['dtype']}_{spec['b']}.npy", grad.double().numpy())
    return {"seconds": seconds, "peak_increase_mb": max(0, peak_kb - before_kb) / 1024,
            "rss_before_mb": before_kb / 1024, "torch_threads": torch.get_num_threads()}


def child_network(spec: dict) -> dict:
    """(d) ``DifferentiableFID`` on images: one forward + backward through the Inception network, with or without
    gradient checkpointing; random weights in the published format (speed and memory do not depend on them)."""
    import numpy as np
    import torch
    import fidkit
    from fidkit.testing import write_random_inception_weights
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    work = Path(spec["work"])
    weights = work / "inception.pth"
    if not weights.exists():
        write_random_inception_weights(weights, seed=0)
    ref = fidkit.FeatureStats.from_moments(np.load(work / "mean.npy"), np.load(work / "cov.npy"), n=N_REFERENCE)
    loss = fidkit.DifferentiableFID(ref, weights=str(weights), device="cpu", checkpointing=spec["checkpointing"],
                                    force=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(spec["b"], 3, 64, 64, generator=gen).requires_grad_()
    small = torch.rand(2, 3, 64, 64, generator=gen).requires_grad_()
    loss(small).backward()                     # warm-up: library pages, thread pool
    _reset_peak_rss()
    before_kb, _ = _rss_kb()
    t0 = time.perf_counter()
    loss(x).backward()
    seconds = time.perf_counter() - t0
    _, peak_kb = _rss_kb()
    return {"seconds": seconds, "peak_increase_mb": max(0, peak_kb - before_kb) / 1024}


# ----------------------------------------------------------------------------------------------
# parent
# ----------------------------------------------------------------------------------------------

def trace_table(data, reference, batches, sqrtm_at, repeats) -> tuple[list[dict], float]:
    """Part (a) in this process; returns the rows and the share of CPU other processes used meanwhile."""
    import numpy as np
    import scipy.linalg
    import torch
    mean_r, cov_r, factor = reference
    routes = {}
    for dtype in (torch.float64, torch.float32):
        name = "64" if dtype == torch.float64 else "32"
        f, c = torch.from_numpy(factor).to(dtype), torch.from_numpy(cov_r).to(dtype)
        routes[f"fidkit f{name}"] = (dtype, lambda xc, f=f: ours_trace(xc, f))
        routes[f"FastFID f{name}"] = (dtype, lambda xc, c=c: fastfid_trace(xc, c))
    busy0, own0, t0 = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
    rows = []
    for b in batches:
        x = data[b]
        xc = x - x.mean(0)
        exact = float(np.linalg.svd(xc @ factor / math.sqrt(b - 1), compute_uv=False).sum())
        for name, (dtype, fn) in routes.items():
            xt = torch.from_numpy(xc).to(dtype)
            seconds, value = best_of(lambda: fn(xt), repeats)
            rows.append({"b": b, "route": name, "seconds": seconds, "value": float(value), "exact": exact})
        if b in sqrtm_at:
            s_x = np.cov(x, rowvar=False)
            t = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:  # "Matrix is singular": S_x has rank b - 1
                warnings.simplefilter("always")
                root = scipy.linalg.sqrtm(s_x @ cov_r)  # no ``disp``: removed in SciPy 1.18
            value = np.trace(root)
            rows.append({"b": b, "route": "scipy sqrtm f64", "seconds": time.perf_counter() - t,
                         "value": float(value.real), "imag": float(np.imag(value)), "exact": exact,
                         "warned": bool(caught)})
    wall = time.perf_counter() - t0
    foreign = None
    if busy0 is not None:
        foreign = max(0.0, (_busy_cpu_s() - busy0) - (_own_cpu_s() - own0)) / (wall * (os.cpu_count() or 1))
    return rows, foreign


def _own_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _fmt_err(x: float | None) -> str:
    return "—" if x is None else ("0 (ref.)" if x == 0 else f"{x:.1e}")


def render(config, prep_s, rows, foreign, backward) -> str:
    d = config["d"]
    out = [f"(a) trace term tr sqrt(S_x S_r), forward only, d = {d}, reference from {N_REFERENCE} samples "
           f"(prepared once: {prep_s:.1f} s for FrechetReference, an eigen-decomposition of the {d} x {d} "
           f"covariance)", "",
           "| b | route | seconds | vs fidkit f64 | value | abs. error | rel. error |",
           "|---|---|---|---|---|---|---|"]
    ours = {r["b"]: r["seconds"] for r in rows if r["route"] == "fidkit f64"}
    for r in rows:
        err = r["value"] - r["exact"]
        extra = f" (imag {r['imag']:.2g})" if abs(r.get("imag", 0.0)) > 0 else ""
        extra += ", warned: singular" if r.get("warned") else ""
        out.append(f"| {r['b']} | {r['route']} | {r['seconds']:.4f} | {r['seconds'] / ours[r['b']]:.2f}x | "
                   f"{r['value']:.6f}{extra} | {err:+.3g} | {abs(err) / r['exact']:.1e} |")
    out.append("")
    out.append("Exact: sum of the singular values of Xc L / sqrt(b - 1) by LAPACK SVD in float64 "
               "(S_r = L L^T). float32 routes also carry the float32 rounding of their inputs."
               + (f" Other processes used {foreign:.0%} of the CPU meanwhile." if foreign is not None else ""))
    out += ["", f"(b), (c) forward + backward of the whole distance w.r.t. the batch, d = {d}", "",
            "| b | dtype | fidkit s | FastFID autograd s | FastFID / fidkit | fidkit peak +MB | FastFID peak +MB "
            "| FastFID / fidkit | fidkit grad error | FastFID grad error |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for (b, dtype), pair in backward.items():
        ours_r, fast_r = pair["fidkit"], pair["fastfid"]
        if "error" in ours_r or "error" in fast_r:
            out.append(f"| {b} | {dtype} | failed: {ours_r.get('error', '')} {fast_r.get('error', '')} |"
                       " | | | | | |")
            continue
        ratio_mem = fast_r["peak_increase_mb"] / ours_r["peak_increase_mb"] if ours_r["peak_increase_mb"] else math.nan
        out.append(f"| {b} | {dtype} | {ours_r['seconds']:.4f} | {fast_r['seconds']:.4f} | "
                   f"{fast_r['seconds'] / ours_r['seconds']:.2f}x | {ours_r['peak_increase_mb']:.1f} | "
                   f"{fast_r['peak_increase_mb']:.1f} | {ratio_mem:.2f}x | {_fmt_err(pair.get('grad_err_fidkit'))} | "
                   f"{_fmt_err(pair.get('grad_err_fastfid'))} |")
        for name, r in (("fidkit", ours_r), ("FastFID", fast_r)):
            note = busy_note(r)
            if note:
                notes.append(f"b={b} {dtype} {name}{note}")
    out.append("")
    out.append("Grad error: max |g - g_ref| / max |g_ref| over the batch, g_ref = fidkit's float64 gradient.")
    out.append("Peak +MB: peak resident size (VmHWM) during the first forward + backward minus the resident size "
               "just before it, "
               "one process per cell (inputs and reference already loaded: the d x d factor or covariance is "
               f"{d * d * 8 / 2**20:.0f} MB in float64).")
    out += notes
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="b = 8, 32 only, sqrtm at b = 8 only, fewer repeats")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (default 8,32,128,512)")
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default 5, quick 3)")
    p.add_argument("--no-sqrtm", action="store_true", help="skip scipy sqrtm (~40 s per batch size at d = 2048)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in the children (default: torch's)")
    p.add_argument("--no-network", action="store_true", help="skip (d), DifferentiableFID through the network")
    p.add_argument("--out", default="bench-out/differentiable.json")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_one:
        spec = json.loads(args.spec)
        res = child_network(spec) if args.run_one == "network" else child_backward(spec)
        print(MARK + json.dumps(res), flush=True)
        return 0

    import numpy as np
    import torch
    from fidkit.metrics.differentiable import FrechetReference
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else \
        ([8, 32] if args.quick else [8, 32, 128, 512])
    repeats = args.repeats or (3 if args.quick else 5)
    sqrtm_at = set() if args.no_sqrtm else ({batches[0]} if args.quick else set(batches))
    config = {"d": args.dim, "batches": batches, "repeats": repeats, "sqrtm_at": sorted(sqrtm_at),
              **machine_info(args.threads)}
    print(f"differentiable FD benchmark: d = {args.dim}, b = {batches}, {config['cpu_count']} CPUs, "
          f"torch {config['torch']} with {config['torch_threads']} threads, load average "
          f"{os.getloadavg()[0]:.1f}")

    ref_features, data = make_data(args.dim, batches)
    mean_r = ref_features.mean(0)
    cov_r = np.cov(ref_features, rowvar=False)
    t0 = time.perf_counter()
    prepared = FrechetReference.from_moments(mean_r, cov_r)
    prep_s = time.perf_counter() - t0
    factor = prepared.factor.numpy()
    print(f"  reference prepared in {prep_s:.1f} s (rank {factor.shape[1]})")

    print("  (a) trace term ...", flush=True)
    rows, foreign = trace_table(data, (mean_r, cov_r, factor), batches, sqrtm_at, repeats)

    backward = {}
    with tempfile.TemporaryDirectory(prefix="fidkit-bench-diff-") as work:
        work = Path(work)
        for name, arr in (("mean", mean_r), ("cov", cov_r), ("factor", factor), ("trace", np.trace(cov_r))):
            np.save(work / f"{name}.npy", arr)
        for b, x in data.items():
            np.save(work / f"batch_{b}.npy", x)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(Path(args.out).with_suffix(".log"), "w") as log:
            for b in batches:
                for dtype in ("float64", "float32"):
                    pair = {}
                    for route in ("fidkit", "fastfid"):
                        spec = {"route": route, "dtype": dtype, "b": b, "work": str(work), "repeats": repeats,
                                "threads": args.threads}
                        cmd = [sys.executable, os.path.abspath(__file__), "--run-one", route, "--spec",
                               json.dumps(spec)]
                        res = run_measured(cmd, f"(b) {route} {dtype} b={b}", log, timeout=600, quiet=None,
                                           marker=MARK)
                        if "error" not in res:
                            print(f" {res['seconds']:.4f} s, +{res['peak_increase_mb']:.0f} MB{busy_note(res)}")
                        pair[route] = res
                    backward[(b, dtype)] = pair
                ref_grad = work / f"grad_fidkit_float64_{b}.npy"
                for dtype in ("float64", "float32"):
                    for route in ("fidkit", "fastfid"):
                        grad = work / f"grad_{route}_{dtype}_{b}.npy"
                        if ref_grad.exists() and grad.exists():
                            g, g_ref = np.load(grad), np.load(ref_grad)
                            backward[(b, dtype)][f"grad_err_{route}"] = float(np.abs(g - g_ref).max()
                                                                              / np.abs(g_ref).max())

            network = {}
            if not args.no_network:
                for b in ([8] if args.quick else [8, 32]):
                    for ckpt in (False, True):
                        spec = {"b": b, "checkpointing": ckpt, "work": str(work), "threads": args.threads}
                        cmd = [sys.executable, os.path.abspath(__file__), "--run-one", "network", "--spec",
                               json.dumps(spec)]
                        res = run_measured(cmd, f"(d) DifferentiableFID b={b} checkpointing={ckpt}", log,
                                           timeout=1200, quiet=None, marker=MARK)
                        if "error" not in res:
                            print(f" {res['seconds']:.2f} s, +{res['peak_increase_mb']:.0f} MB{busy_note(res)}")
                        network[(b, ckpt)] = res

    table = render(config, prep_s, rows, foreign, backward)
    if network:
        table += ("\n\n(d) DifferentiableFID on 64 x 64 images (resized to 299 inside): one forward + backward "
                  "through the Inception network and the distance\n\n"
                  "| b | checkpointing | seconds | peak +MB | memory vs without |\n|---|---|---|---|---|")
        for (b, ckpt), r in network.items():
            if "error" in r:
                table += f"\n| {b} | {ckpt} | failed: {r['error'][:60]} | | |"
                continue
            base = network.get((b, False), {}).get("peak_increase_mb")
            rel = f"{r['peak_increase_mb'] / base:.2f}x" if base else ""
            table += f"\n| {b} | {'on' if ckpt else 'off'} | {r['seconds']:.2f} | {r['peak_increase_mb']:.0f} | {rel} |"
    print("\n" + table)
    Path(args.out).write_text(json.dumps({"config": config, "prepare_s": prep_s, "trace": rows,
                                          "trace_foreign_cpu_share": foreign,
                                          "backward": {f"{b} {dt}": v for (b, dt), v in backward.items()},
                                          "network": {f"{b} checkpointing={c}": v for (b, c), v in network.items()},
                                          "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
