"""One-pass evaluation benchmark: fidkit eval vs torch-fidelity and torchmetrics on the same images and weights.

    python benchmarks/bench_eval.py                 # 2 x 500 images, 50k-feature metric stage: ~15 min on 2 cores
    python benchmarks/bench_eval.py --n 1000 --n-metrics 50000

Rows (each measurement in its own process, so peak RSS belongs to one library):

* fidkit ``fid`` alone, and fidkit ``evaluate(fid, kid, is, sfid)``: the ratio shows that the extra metrics
  cost almost nothing, because one forward per image feeds them all;
* torch-fidelity ``calculate_metrics(fid=True, kid=True, isc=True)`` (one pass, features kept in RAM);
* torchmetrics ``FrechetInceptionDistance``, ``KernelInceptionDistance``, ``InceptionScore`` as three metric
  objects, each running its own network on the batches it is given (how they are used in training loops);
* the metric stage alone at ``--n-metrics`` samples per side (synthetic float32 pool3 features in fidkit's
  feature store): KID, precision/recall, density/coverage and FID statistics, with time and peak RSS.

Network loading is excluded from every time. All networks load the same random Inception weights
(``fidkit.testing``), so the values are comparable with each other, not with published numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
MARK = "@@RESULT@@"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_fidkit(spec: dict) -> dict:
    import fidkit
    from fidkit.extractors.runtime import InceptionExtractor
    InceptionExtractor.get(spec["weights"], "cpu")
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    if spec["metrics"] == "fid":
        r = fidkit.fid(spec["a"], spec["b"], weights=spec["weights"], device="cpu")
        values = {"fid": r.fid}
    else:
        r = fidkit.evaluate(spec["a"], spec["b"], metrics=spec["metrics"], weights=spec["weights"], device="cpu",
                            kid_subset_size=spec["kid_subset_size"])
        values = r.values
    return {"seconds": time.perf_counter() - t0, "values": values}


def child_torch_fidelity(spec: dict) -> dict:
    import torch_fidelity
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=spec["weights"])
    t0 = time.perf_counter()
    m = torch_fidelity.calculate_metrics(input1=spec["b"], input2=spec["a"], fid=True, kid=True, isc=True,
                                         kid_subset_size=spec["kid_subset_size"], cuda=False, verbose=False,
                                         feature_extractor_weights_path=spec["weights"])
    return {"seconds": time.perf_counter() - t0,
            "values": {"fid": m["frechet_inception_distance"], "kid": m["kernel_inception_distance_mean"],
                       "is": m["inception_score_mean"]}}


def child_torchmetrics(spec: dict) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    w = spec["weights"]
    fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=w, antialias=False)
    # antialias=False everywhere: the TF1 resize of FID's object (and of torch-fidelity and fidkit's tf mode);
    # NoTrainInceptionV3's own default is an antialiased resize, which would compare different features.
    kid = KernelInceptionDistance(feature=NoTrainInceptionV3("inception-v3-compat", ["2048"], w, antialias=False),
                                  subset_size=spec["kid_subset_size"])
    isc = InceptionScore(feature=NoTrainInceptionV3("inception-v3-compat", ["logits_unbiased"], w,
                                                    antialias=False))
    warnings.simplefilter("ignore")

    def batches(folder):
        files = sorted(Path(folder).glob("*.png"))
        for i in range(0, len(files), 50):
            arr = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files[i:i + 50]])
            yield torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

    t0 = time.perf_counter()
    for real, folder in ((True, spec["a"]), (False, spec["b"])):
        for x in batches(folder):
            fid.update(x, real=real)
            kid.update(x, real=real)
            if not real:
                isc.update(x)
    values = {"fid": float(fid.compute()), "kid": float(kid.compute()[0]), "is": float(isc.compute()[0])}
    return {"seconds": time.perf_counter() - t0, "values": values}


def child_metric_stage(spec: dict) -> dict:
    import numpy as np
    from fidkit import FeatureStats, metrics as M
    from fidkit.engine.store import FeatureStore
    n, d = spec["n_metrics"], 2048
    rng = np.random.default_rng(0)
    stores = []
    for shift in (0.0, 0.1):
        store, stats = FeatureStore(d), FeatureStats.empty(d)
        for i in range(0, n, 1000):  # as the extraction loop does, 1000 rows at a time
            rows = (rng.standard_normal((min(1000, n - i), d), dtype=np.float32) + shift)
            store.append(rows)
            stats.update(rows)
        stores.append((store.array(), stats, store.spilled))
    (real, real_stats, spilled), (fake, fake_stats, _) = stores
    times = {}
    t0 = time.perf_counter()
    M.frechet_distance(real_stats, fake_stats)
    times["fid"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    M.kernel_inception_distance(fake, real, subsets=100, subset_size=1000, seed=2020)
    times["kid"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    M.precision_recall(real, fake, k=3)
    times["pr"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    M.density_coverage(real, fake, k=5)
    times["dc"] = time.perf_counter() - t0
    return {"seconds": sum(times.values()), "times": times, "spilled": spilled, "n": n}


CHILDREN = {"fidkit": child_fidkit, "torch-fidelity": child_torch_fidelity, "torchmetrics": child_torchmetrics,
            "metric-stage": child_metric_stage}


def launch(task: str, spec: dict) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--run-one", task, "--spec", json.dumps(spec)]
    print(f"  [{time.strftime('%H:%M:%S')}] {task} {spec.get('metrics', '')} ...", end="", flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode or not lines:
        print(" FAILED\n" + "\n".join(proc.stderr.strip().splitlines()[-10:]))
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["no output"]}
    res = json.loads(lines[-1][len(MARK):])
    print(f" {res['seconds']:.0f} s, peak RSS {res['peak_rss_mb'] / 1024:.2f} GB")
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500, help="images per side (default 500)")
    p.add_argument("--n-metrics", type=int, default=50000, help="samples per side for the metric stage")
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default="bench-out/eval.json")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_one:
        res = CHILDREN[args.run_one](json.loads(args.spec))
        res["peak_rss_mb"] = _peak_rss_mb()
        print(MARK + json.dumps(res), flush=True)
        return 0

    from bench_fid import make_image_set
    from fidkit.testing import write_random_inception_weights
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fidkit-bench-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    a = make_image_set(work / "a", args.n, seed=1, variant=0, procs=2)
    b = make_image_set(work / "b", args.n, seed=2, variant=1, procs=2)
    weights = str(work / "weights.pth")
    write_random_inception_weights(weights, seed=0)
    base = {"a": str(a), "b": str(b), "weights": weights, "kid_subset_size": min(1000, args.n)}
    print(f"fidkit eval benchmark: 2 x {args.n} PNG images (256 px), metric stage at {args.n_metrics} per side")
    results = {
        "fidkit fid": launch("fidkit", dict(base, metrics="fid")),
        "fidkit eval": launch("fidkit", dict(base, metrics="fid,kid,is,sfid")),
        "torch-fidelity": launch("torch-fidelity", base),
        "torchmetrics": launch("torchmetrics", base),
        "metric stage": launch("metric-stage", dict(n_metrics=args.n_metrics)),
    }
    fidkit_eval = results["fidkit eval"].get("seconds")
    lines = [f"| run (2 x {args.n} images, CPU) | seconds | vs fidkit eval | peak RSS | FID | KID | IS |",
             "|---|---|---|---|---|---|---|"]
    for name in ("fidkit fid", "fidkit eval", "torch-fidelity", "torchmetrics"):
        r = results[name]
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | |")
            continue
        v = r["values"]
        label = {"fidkit fid": "fidkit `fid` (FID only)", "fidkit eval": "fidkit `eval` fid,kid,is,sfid",
                 "torch-fidelity": "torch-fidelity `calculate_metrics(fid, kid, isc)`",
                 "torchmetrics": "torchmetrics FID + KID + IS objects"}[name]
        fmt = lambda k: f"{v[k]:.6g}" if k in v else "—"  # noqa: E731
        lines.append(f"| {label} | {r['seconds']:.1f} | {r['seconds'] / fidkit_eval:.2f}x | "
                     f"{r['peak_rss_mb'] / 1024:.2f} GB | {fmt('fid')} | {fmt('kid')} | {fmt('is')} |")
    ms = results["metric stage"]
    if "error" not in ms:
        t = ms["times"]
        lines.append("")
        lines.append(f"Metric stage at {ms['n']} x 2048 features per side (features spilled to disk: "
                     f"{ms['spilled']}): FID {t['fid']:.1f} s, KID (100 x 1000) {t['kid']:.1f} s, "
                     f"precision/recall {t['pr']:.0f} s, density/coverage {t['dc']:.0f} s; "
                     f"peak RSS {ms['peak_rss_mb'] / 1024:.2f} GB.")
    table = "\n".join(lines)
    print("\n" + table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
