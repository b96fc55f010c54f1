"""Sharded reference statistics: one fidkit process over every shard vs Ray with 2 workers (one partial per shard,
merged exactly).

    python benchmarks/bench_shards.py                          # 10,000 images of 64 px in 20 tar shards, Inception
    python benchmarks/bench_shards.py --n 200 --shards 4 --features tiny      # a quick check

Shards are local tar files (the URL/S3 sources of the `cloud` extra take the same path: a shard is any source
string ``fidkit.partial`` reads).  Inception loads random weights (``fidkit.testing``): the numbers time the
pass, they are not published values.  Printed: wall time of each, the ratio, each worker's peak RSS, and the
largest difference between the two results' covariances (merging is exact: float64 rounding only).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import tarfile
import tempfile
import time

import numpy as np
from PIL import Image


def write_shards(root: str, n: int, shards: int, size: int) -> list[str]:
    rng = np.random.default_rng(0)
    bounds = np.linspace(0, n, shards + 1).astype(int)
    paths = []
    for s in range(shards):
        path = os.path.join(root, f"shard-{s:05d}.tar")
        with tarfile.open(path, "w") as t:
            for i in range(bounds[s], bounds[s + 1]):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
                info = tarfile.TarInfo(f"{i:08d}.png")
                info.size = buf.tell()
                buf.seek(0)
                t.addfile(info, buf)
        paths.append(path)
    return paths


def setup(features: str, weights_dir: str) -> None:
    """Per process: the stand-in network (tiny) or random Inception weights where fidkit looks for them."""
    from fidkit.testing import tiny_extractor, write_random_inception_weights
    if features == "tiny":
        tiny_extractor()
    else:
        path = os.path.join(weights_dir, "inception-random.pth")
        if not os.path.exists(path):
            write_random_inception_weights(path + ".tmp")
            os.replace(path + ".tmp", path)
        os.environ["FIDKIT_INCEPTION_WEIGHTS"] = path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--shards", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--features", default="inception", help="inception (random weights) or tiny")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    import fidkit
    import ray

    with tempfile.TemporaryDirectory() as root:
        paths = write_shards(root, args.n, args.shards, args.size)
        setup(args.features, root)
        opts = dict(features=args.features, spatial=False, batch_size=args.batch_size, workers=1, device="cpu")

        fidkit.partial(paths[0], **opts)  # warm-up (imports, first network load), as the workers' start below
        t0 = time.perf_counter()
        single = fidkit.merge([fidkit.partial(p, **opts) for p in paths])
        t_single = time.perf_counter() - t0
        single_peak = peak_mb()

        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(fidkit.__path__[0]),
                                                                  os.environ.get("PYTHONPATH")]))
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)

        @ray.remote(num_cpus=1)
        class Worker:
            def __init__(self):
                setup(args.features, root)
                import torch
                torch.set_num_threads(1)

            def run(self, path: str) -> bytes:
                return fidkit.partial(path, **opts).to_bytes()

            def peak(self) -> float:
                return peak_mb()

        workers = [Worker.remote() for _ in range(args.workers)]
        ray.get([w.peak.remote() for w in workers])  # started (and the network's weights written) before timing
        t0 = time.perf_counter()
        blobs = ray.get([workers[i % args.workers].run.remote(p) for i, p in enumerate(paths)])
        merged = fidkit.merge([fidkit.Partial.from_bytes(b) for b in blobs])
        t_ray = time.perf_counter() - t0
        peaks = ray.get([w.peak.remote() for w in workers])
        ray.shutdown()

    space = next(iter(single.stats))
    gap = float(np.abs(single.stats[space].cov - merged.stats[space].cov).max()
                / np.abs(single.stats[space].cov).max())
    print(f"{args.n} images of {args.size} px in {args.shards} tar shards, {space}, CPU, {os.cpu_count()} cores")
    print(f"  fidkit, one process:     {t_single:8.2f} s  ({args.n / t_single:7.1f} img/s), peak RSS {single_peak:.0f} MB")
    print(f"  Ray, {args.workers} workers:          {t_ray:8.2f} s  ({args.n / t_ray:7.1f} img/s), peak RSS per worker "
          + ", ".join(f"{p:.0f} MB" for p in peaks))
    print(f"  ratio one process / Ray: {t_single / t_ray:.2f}x;  covariance difference (relative): {gap:.1e}")


if __name__ == "__main__":
    sys.exit(main())
