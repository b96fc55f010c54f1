#!/usr/bin/env python
"""Feature-space benchmark: FD-DINOv2 and CLIP-FID in fidkit next to torch-fidelity and clean-fid, and
``fidkit eval --features inception,dinov2`` (one decode) against running two tools one after the other.

Every library loads the *same* random weights in the published formats
(``fidkit.testing``; real weights cannot be downloaded everywhere, and speed and
memory do not depend on the values).  Each run is its own subprocess, so peak
memory is per run.

    python benchmarks/bench_features.py --quick     # 2 x 24 images: checks the script (~10 min on 2 cores)
    python benchmarks/bench_features.py             # 2 x 100 images (~40 min on 2 cores)

Rows:

* ``dinov2``: FD-DINOv2 (ViT-L/14) by fidkit (dgm-eval preprocessing, the
  published protocol; and EDM2's batched resize) and by torch-fidelity's
  ``dinov2-vit-l-14`` (its TF1 bilinear squash: a different resize, so a
  different value by design), torch-fidelity fed the official DINOv2 code
  (PyPI ``dinov2``) through a patched ``torch.hub.load``;
* ``clip``: CLIP-FID (ViT-B/32) by fidkit and by clean-fid
  ``compute_fid(model_name="clip_vit_b_32")``, clean-fid fed the same weight file
  through a patched ``clip.load``; the two values must agree;
* ``one-decode``: fidkit FID + FD-DINOv2 in one call against fidkit FID and
  fidkit FD-DINOv2 as two calls, and against torch-fidelity's FID followed by
  its FD-DINOv2 (the way users run two tools today);
* ``memory``: fidkit FD-DINOv2 statistics on N and 3N images (flat in N).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_fid as B  # noqa: E402  (shared: subprocess measurement, images, machine description)

MARKER = B.RESULT_MARKER
_row = B.comparison_row


# ----------------------------------------------------------------------------------------------
# children (each in its own process)
# ----------------------------------------------------------------------------------------------

def _official_dinov2(weights: str):
    """The official DINOv2 ViT-L/14 (PyPI ``dinov2``) with ``weights`` loaded, as torch.hub would build it."""
    import torch
    from dinov2.models.vision_transformer import vit_large
    model = vit_large(patch_size=14, img_size=518, init_values=1.0, block_chunks=0)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def child(task: str, spec: dict) -> dict:
    import torch
    torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    real, fake = spec["real"], spec["fake"]
    t0 = time.perf_counter()
    if task.startswith("fidkit"):
        import fidkit
        w = spec["weights"]
        if task == "fidkit-stats":
            s = fidkit.compute_stats(real, extractor="dinov2", weights=w, device="cpu")
            return {"values": {"n": s.n}, "seconds": time.perf_counter() - t0}
        metrics, features, mode = {"fidkit-dinov2": ("fd", "dinov2", None),
                                   "fidkit-dinov2-edm2": ("fd", "dinov2", "dinov2=edm2"),
                                   "fidkit-clip": ("fd", "clip", None),
                                   "fidkit-fid": ("fid", "inception", None),
                                   "fidkit-fid+dinov2": ("fd", "inception,dinov2", None)}[task]
        r = fidkit.evaluate(real, fake, metrics=metrics, features=features, preprocessing=mode, weights=w, device="cpu",
                            batch_size=spec["batch"])
        return {"values": r.values, "seconds": time.perf_counter() - t0}
    if task.startswith("torch-fidelity"):
        import torch_fidelity
        if "dinov2" in task:
            torch.hub.load = lambda repo, name, *a, **k: _official_dinov2(spec["weights"]["dinov2-vitl14"])
            kw = dict(feature_extractor="dinov2-vit-l-14")
        else:
            kw = dict(feature_extractor_weights_path=spec["weights"]["inception"])
        r = torch_fidelity.calculate_metrics(input1=fake, input2=real, fid=True, cuda=False, verbose=False,
                                             batch_size=spec["batch"], save_cpu_ram=True, **kw)
        return {"values": {"fd": r["frechet_inception_distance"]}, "seconds": time.perf_counter() - t0}
    if task == "clean-fid-clip":
        from fidkit.testing import import_openai_clip
        clip = import_openai_clip()
        original = clip.load
        clip.load = lambda name, device="cpu", jit=False, **k: original(spec["weights"]["clip-vitb32"],
                                                                       device=device, jit=False)
        from cleanfid import fid as cfid
        v = cfid.compute_fid(real, fake, mode="clean", model_name="clip_vit_b_32", device=torch.device("cpu"),
                             num_workers=0, batch_size=spec["batch"], verbose=False)
        return {"values": {"fd": float(v)}, "seconds": time.perf_counter() - t0}
    raise SystemExit(f"unknown task {task}")


# ----------------------------------------------------------------------------------------------
# parent
# ----------------------------------------------------------------------------------------------

def _weights(workdir: Path) -> dict:
    from fidkit.testing import write_random_dinov2_weights, write_random_inception_weights
    out = {}
    w = workdir / "weights"
    w.mkdir(exist_ok=True)
    if not (w / "inception.pth").exists():
        write_random_inception_weights(w / "inception.pth", seed=0)
    if not (w / "dinov2_vitl14_pretrain.pth").exists():
        write_random_dinov2_weights(w / "dinov2_vitl14_pretrain.pth", "vitl14", seed=0)
    if not (w / "ViT-B-32.pt").exists():
        from fidkit.extractors.clip import write_random_openai_clip
        write_random_openai_clip(w / "ViT-B-32.pt", "ViT-B/32", seed=0)
    out["inception"] = str(w / "inception.pth")
    out["dinov2-vitl14"] = str(w / "dinov2_vitl14_pretrain.pth")
    out["clip-vitb32"] = str(w / "ViT-B-32.pt")
    return out


def _measure(task: str, spec: dict, log, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--run-one", task, "--spec", json.dumps(spec)]
    return B.run_measured(cmd, task, log, timeout, None, MARKER)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="images per side")
    p.add_argument("--quick", action="store_true", help="24 images per side")
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workdir", type=Path, default=None, help="images and weights (kept and reused)")
    p.add_argument("--out", type=Path, default=Path("bench-out/features.json"))
    p.add_argument("--skip", default="", help="comma-separated: dinov2,clip,one-decode,memory")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_one:
        B.report_simple_child(child(args.run_one, json.loads(args.spec)))
        return 0
    n = 24 if args.quick else args.n
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fidkit-bench-features-"))
    workdir.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    procs = max(1, min(os.cpu_count() or 1, 8))
    real = B.make_image_set(workdir / f"real{n}", n, seed=1, variant=0, procs=procs)
    fake = B.make_image_set(workdir / f"fake{n}", n, seed=2, variant=1, procs=procs)
    spec = {"real": str(real), "fake": str(fake), "weights": _weights(workdir), "batch": args.batch,
            "threads": args.threads}
    results: dict = {"config": {"n": n, "batch": args.batch, **B.machine_info(args.threads)}}
    lines = [f"2 x {n} PNG images of {B.IMAGE_SIZE} px, same random weights for every library, batch {args.batch}, "
             f"each run in its own process (seconds include loading the network).", ""]
    header = ["| run | value | seconds | img/s (both sides) | speed vs first row | peak RSS |",
              "|---|---|---|---|---|---|"]
    with open(args.out.with_suffix(".log"), "w") as log:
        def run(task):
            results[task] = _measure(task, spec, log, args.timeout)
            return results[task]
        if "dinov2" not in skip:
            anchor = run("torch-fidelity-dinov2")
            ours, edm2 = run("fidkit-dinov2"), run("fidkit-dinov2-edm2")
            base = anchor.get("seconds")
            lines += ["FD-DINOv2 (ViT-L/14):", ""] + header + [
                _row("torch-fidelity 0.4.0 `dinov2-vit-l-14` (TF1 bilinear squash)", anchor, "fd", 2 * n, None),
                _row("fidkit `fd_dinov2`, dgm-eval preprocessing (default)", ours, "fd_dinov2", 2 * n, base),
                _row("fidkit `fd_dinov2`, `dinov2=edm2`", edm2, "fd_dinov2", 2 * n, base), ""]
        if "clip" not in skip:
            anchor, ours = run("clean-fid-clip"), run("fidkit-clip")
            lines += ["CLIP-FID (ViT-B/32):", ""] + header + [
                _row("clean-fid 0.1.35 `clip_vit_b_32`", anchor, "fd", 2 * n, None),
                _row("fidkit `fd_clip`", ours, "fd_clip", 2 * n, anchor.get("seconds")), ""]
            if "values" in anchor and "values" in ours:
                a, b = anchor["values"]["fd"], ours["values"]["fd_clip"]
                lines += [f"CLIP-FID relative difference fidkit vs clean-fid: {abs(a - b) / abs(a):.2e}", ""]
        if "one-decode" not in skip:
            both, fid, dino = run("fidkit-fid+dinov2"), run("fidkit-fid"), results.get("fidkit-dinov2") or run(
                "fidkit-dinov2")
            tf_fid, tf_dino = run("torch-fidelity-fid"), results.get("torch-fidelity-dinov2") or run(
                "torch-fidelity-dinov2")
            ok = all("seconds" in r for r in (both, fid, dino, tf_fid, tf_dino))
            lines += ["FID and FD-DINOv2 of the same images:", "", "| run | seconds | vs one call |", "|---|---|---|"]
            if ok:
                s = both["seconds"]
                lines += [f"| fidkit `eval --features inception,dinov2` (one decode, one call) | {s:.1f} | 1.00x |",
                          f"| fidkit `fid`, then fidkit `fd_dinov2` (two calls) | {fid['seconds'] + dino['seconds']:.1f} "
                          f"| {(fid['seconds'] + dino['seconds']) / s:.2f}x |",
                          f"| torch-fidelity FID, then torch-fidelity FD-DINOv2 | "
                          f"{tf_fid['seconds'] + tf_dino['seconds']:.1f} | "
                          f"{(tf_fid['seconds'] + tf_dino['seconds']) / s:.2f}x |", ""]
        if "memory" not in skip:
            big = B.make_image_set(workdir / f"real{3 * n}", 3 * n, seed=3, variant=0, procs=procs)
            small_r = run("fidkit-stats")
            results["fidkit-stats-3n"] = _measure("fidkit-stats", dict(spec, real=str(big)), log, args.timeout)
            if "peak_rss_gb" in small_r and "peak_rss_gb" in results["fidkit-stats-3n"]:
                lines += [f"fidkit DINOv2 statistics, peak RSS: {small_r['peak_rss_gb']:.2f} GB at N={n}, "
                          f"{results['fidkit-stats-3n']['peak_rss_gb']:.2f} GB at N={3 * n}.", ""]
    args.out.write_text(json.dumps(results, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
