#!/usr/bin/env python
"""Video benchmark: FVD (I3D) in fidkit next to content-debiased FVD (``cd-fvd``'s ``cdfvd``).

Both load the *same* random I3D weights, written by cd-fvd's own ``InceptionI3d``
in the format of its published ``i3d_pretrained_400.pt`` (real weights cannot be
downloaded everywhere; speed and memory do not depend on the values).  Both read
the same ``N x T x H x W x 3`` uint8 arrays.  Each run is its own subprocess, so
peak memory is per run.

    python benchmarks/bench_video.py --quick     # 2 x 4 clips: checks the script (~2 min on 2 cores)
    python benchmarks/bench_video.py             # 2 x 16 clips of 16 frames (~6 min on 2 cores)

Rows: cd-fvd ``compute_fvd`` (torch bilinear resize, its default batch of 16);
fidkit with ``mode="cd-fvd"`` (the same preprocessing: the values must agree up to
cd-fvd's covariance, which divides by N where fidkit, TF-GAN and scipy divide by
N - 1); fidkit with its default ``tf`` preprocessing (TF1 bilinear, the original
FVD protocol); and fidkit's statistics over N and 3N clips (memory flat in N).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_fid as B  # noqa: E402  (shared: subprocess measurement, machine description)

MARKER = B.RESULT_MARKER
_row = B.comparison_row


def make_clips(path: Path, n: int, frames: int, size: int, seed: int) -> Path:
    """``n`` clips of a smooth random colour field panning at a per-clip speed, plus noise, as one ``.npy``."""
    if path.exists():
        return path
    from PIL import Image
    rng = np.random.default_rng(seed)
    out = np.empty((n, frames, size, size, 3), dtype=np.uint8)
    for i in range(n):
        dy, dx = rng.integers(0, 4, size=2)
        canvas = np.asarray(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
                            .resize((size + 4 * frames, size + 4 * frames), Image.BICUBIC), dtype=np.int16)
        for f in range(frames):
            out[i, f] = np.clip(canvas[f * dy:f * dy + size, f * dx:f * dx + size]
                                + rng.integers(-12, 13, (size, size, 3)), 0, 255)
    np.save(path, out)
    return path


def child(task: str, spec: dict) -> dict:
    import torch
    torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    t0 = time.perf_counter()
    if task == "cd-fvd":
        from cdfvd.fvd import cdfvd
        real, fake = np.load(spec["real"]), np.load(spec["fake"])
        ev = cdfvd("i3d", ckpt_path=spec["weights"], device="cpu", n_real="full", n_fake="full")
        v = ev.compute_fvd(real, fake)
        return {"values": {"fvd": float(v)}, "seconds": time.perf_counter() - t0}
    import fidkit
    if task == "fidkit-stats":
        s = fidkit.compute_stats(spec["real"], extractor="i3d", weights=spec["weights"], device="cpu",
                                 batch_size=spec["batch"])
        return {"values": {"n": s.n}, "seconds": time.perf_counter() - t0}
    if task == "fidkit-parity":  # cd-fvd's convention: covariance divided by N (StyleGAN-ADA's FeatureStats)
        from fidkit.metrics.frechet import frechet_distance_from_moments
        a, b = (fidkit.compute_stats(spec[k], extractor="i3d", preprocessing="cd-fvd", weights=spec["weights"],
                                     device="cpu", batch_size=spec["batch"]) for k in ("real", "fake"))
        v = frechet_distance_from_moments(a.mean, a.cov * (a.n - 1) / a.n, b.mean, b.cov * (b.n - 1) / b.n)
        return {"values": {"fvd": v}, "seconds": time.perf_counter() - t0}
    mode = {"fidkit-cd-fvd": "cd-fvd", "fidkit-tf": "tf"}[task]
    r = fidkit.evaluate(spec["real"], spec["fake"], metrics="fvd", preprocessing=mode, weights=spec["weights"], device="cpu",
                        batch_size=spec["batch"])
    return {"values": r.values, "seconds": time.perf_counter() - t0}


def _weights(workdir: Path) -> str:
    path = workdir / "i3d_pretrained_400.pt"
    if not path.exists():
        import torch
        from cdfvd.third_party.i3d.pytorch_i3d import InceptionI3d
        net = InceptionI3d(400, in_channels=3)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, t in net.state_dict().items():
                if name.endswith("conv3d.weight"):
                    t.copy_(torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5)
                elif name.endswith("running_var"):
                    t.copy_(0.2 + 2 * torch.rand(t.shape, generator=g))
                elif not name.endswith("num_batches_tracked"):
                    t.copy_(torch.randn(t.shape, generator=g) * 0.2 + (1.0 if name.endswith("bn.weight") else 0))
        torch.save(net.state_dict(), path)
    return str(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=16, help="clips per side")
    p.add_argument("--quick", action="store_true", help="4 clips per side")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=128, help="frame size before the resize to 224")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workdir", type=Path, default=None, help="clips and weights (kept and reused)")
    p.add_argument("--out", type=Path, default=Path("bench-out/video.json"))
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_one:
        B.report_simple_child(child(args.run_one, json.loads(args.spec)))
        return 0
    n = 4 if args.quick else args.n
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fidkit-bench-video-"))
    workdir.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    real = make_clips(workdir / f"real{n}.npy", n, args.frames, args.size, seed=1)
    fake = make_clips(workdir / f"fake{n}.npy", n, args.frames, args.size, seed=2)
    spec = {"real": str(real), "fake": str(fake), "weights": _weights(workdir), "batch": args.batch,
            "threads": args.threads}
    results: dict = {"config": {"n": n, "frames": args.frames, "size": args.size, "batch": args.batch,
                                **B.machine_info(args.threads)}}

    def run(task, s=spec):
        cmd = [sys.executable, __file__, "--run-one", task, "--spec", json.dumps(s)]
        return B.run_measured(cmd, task, log, args.timeout, None, MARKER)

    with open(args.out.with_suffix(".log"), "w") as log:
        anchor = results["cd-fvd"] = run("cd-fvd")
        same = results["fidkit-cd-fvd"] = run("fidkit-cd-fvd")
        tf = results["fidkit-tf"] = run("fidkit-tf")
        parity = results["fidkit-parity"] = run("fidkit-parity")
        big = make_clips(workdir / f"real{3 * n}.npy", 3 * n, args.frames, args.size, seed=3)
        small_stats = results["fidkit-stats"] = run("fidkit-stats")
        big_stats = results["fidkit-stats-3n"] = run("fidkit-stats", dict(spec, real=str(big)))
    base = anchor.get("seconds")
    lines = [f"2 x {n} clips of {args.frames} frames at {args.size} px (resized to 224), same random I3D weights, "
             f"fidkit batch {args.batch}, cd-fvd its default 16; each run in its own process (seconds include "
             "loading the network).", "",
             "| run | FVD | seconds | clips/s (both sides) | speed vs cd-fvd | peak RSS |", "|---|---|---|---|---|---|",
             _row("cd-fvd 0.1.1 `compute_fvd` (torch bilinear)", anchor, "fvd", 2 * n, None),
             _row("fidkit `fvd`, `mode='cd-fvd'` (same preprocessing)", same, "fvd", 2 * n, base),
             _row("fidkit `fvd`, default `tf` (TF1 bilinear, the original protocol)", tf, "fvd", 2 * n, base), ""]
    if "values" in anchor and "values" in same:
        a, b = anchor["values"]["fvd"], same["values"]["fvd"]
        lines += [f"FVD relative difference fidkit (cd-fvd mode) vs cd-fvd: {abs(a - b) / abs(a):.2e} "
                  f"(cd-fvd's covariance divides by N = {n}, fidkit's by N - 1)"]
        if "values" in parity:
            c = parity["values"]["fvd"]
            lines += [f"fidkit's features with cd-fvd's covariance convention (divided by N): FVD {c:.6f}, "
                      f"relative difference to cd-fvd {abs(a - c) / abs(a):.2e}"]
        lines += [""]
    if "peak_rss_gb" in small_stats and "peak_rss_gb" in big_stats:
        lines += [f"fidkit I3D statistics, peak RSS: {small_stats['peak_rss_gb']:.2f} GB at N={n}, "
                  f"{big_stats['peak_rss_gb']:.2f} GB at N={3 * n}.", ""]
    args.out.write_text(json.dumps(results, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
