"""Sharded reference statistics: one fidkit process over every shard vs Ray with 2 workers (one partial per shard,
merged exactly).

    python benchmarks/bench_shards.py                          # 10,000 images of 64 px in 20 tar shards, Inception
    python benchmarks/bench_shards.py --n 200 --shards 4 --features tiny      # a quick check
    python benchmarks/bench_shards.py --s3          # the shards on a local S3 server (moto, 127.0.0.1), read by URL

Shards are local tar files, or with ``--s3`` objects on an S3-compatible server started here (moto's, the `cloud`
extra and ``moto[server]``) read as ``s3://bench/shard-NNNNN.tar`` by both runs, streamed.  Inception loads random weights (``fidkit.testing``): the numbers time the
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


_S3_ENV = ("FSSPEC_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def serve_on_s3(paths: list[str]):
    """Start moto's S3 server on 127.0.0.1, upload the shards to bucket ``bench``; return the server and the URLs.
    fsspec (s3fs) finds the server through the environment, as a user's configuration would."""
    import boto3
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"FSSPEC_S3_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    s3 = boto3.client("s3", endpoint_url=os.environ["FSSPEC_S3_ENDPOINT_URL"])
    s3.create_bucket(Bucket="bench")
    urls = []
    for p in paths:
        s3.upload_file(p, "bench", os.path.basename(p))
        urls.append(f"s3://bench/{os.path.basename(p)}")
    return server, urls


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
    ap.add_argument("--s3", action="store_true", help="serve the shards from a local S3 server and read them by URL")
    args = ap.parse_args()
    import fidkit
    import ray

    with tempfile.TemporaryDirectory() as root:
        paths = write_shards(root, args.n, args.shards, args.size)
        server = None
        if args.s3:
            server, paths = serve_on_s3(paths)
        setup(args.features, root)
        opts = dict(features=args.features, spatial=False, batch_size=args.batch_size, workers=1, device="cpu")

        fidkit.partial(paths[0], **opts)  # warm-up (imports, first network load), as the workers' start below
        t0 = time.perf_counter()
        single = fidkit.merge([fidkit.partial(p, **opts) for p in paths])
        t_single = time.perf_counter() - t0
        single_peak = peak_mb()

        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(fidkit.__path__[0]),
                                                                  os.environ.get("PYTHONPATH")]))
        env = {k: os.environ[k] for k in _S3_ENV if k in os.environ}
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": env} if env else None)

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
        if server is not None:
            server.stop()

    space = next(iter(single.stats))
    gap = float(np.abs(single.stats[space].cov - merged.stats[space].cov).max()
                / np.abs(single.stats[space].cov).max())
    where = "on a local S3 server (moto), read as s3:// URLs" if args.s3 else "local files"
    print(f"{args.n} images of {args.size} px in {args.shards} tar shards ({where}), {space}, CPU, "
          f"{os.cpu_count()} cores")
    print(f"  fidkit, one process:     {t_single:8.2f} s  ({args.n / t_single:7.1f} img/s), peak RSS {single_peak:.0f} MB")
    print(f"  Ray, {args.workers} workers:          {t_ray:8.2f} s  ({args.n / t_ray:7.1f} img/s), peak RSS per worker "
          + ", ".join(f"{p:.0f} MB" for p in peaks))
    print(f"  ratio one process / Ray: {t_single / t_ray:.2f}x;  covariance difference (relative): {gap:.1e}")


if __name__ == "__main__":
    sys.exit(main())
