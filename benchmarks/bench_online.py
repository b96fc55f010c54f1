#!/usr/bin/env python
"""Online (training-loop) benchmark: ``fidkit.Evaluator`` vs torchmetrics' FID + KID + IS metric objects.

Both libraries are fed the *same* uint8 NCHW batches, the way a training loop feeds them: the real side
batch by batch, the generated side batch by batch, then ``compute()``.  Each measurement runs in a fresh
subprocess, so its peak RSS (``ru_maxrss``) belongs to one library, one part and one N.

    python benchmarks/bench_online.py --quick       # tiny N, for checking the script (a few minutes)
    python benchmarks/bench_online.py --wait-idle 1800 --retries 2
                                                    # part 1 at N=500, part 2 at 5000 and 20000 (see README)

Part 1 (``pipeline``): the full pipeline with the real (random-weight) Inception network in both libraries,
N images per side (``--n``).  fidkit runs one network for the three metrics; torchmetrics runs one per metric
object (FID and KID on both sides, IS on the generated side).  Reports seconds per evaluation (update every
batch of both sides + compute, network loading excluded), images/s, peak RSS and the three metric values side
by side with their differences.

Part 2 (``state``): the metric state alone at ``--state-n`` samples per side.  The Inception network is
replaced by a cheap STAND-IN (average pool + fixed random projections, the same function in both libraries),
so time and memory are what the metric objects keep and compute, not the network.

All networks load the same random Inception weights (``fidkit.testing.write_random_inception_weights``), so
the values are comparable with each other, never with published numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fid import BUSY_WARN, busy_note, machine_info, run_measured  # noqa: E402

RESULT_MARKER = "@@ONLINE-RESULT@@ "
LIBS = ("fidkit", "torchmetrics")
PARTS = ("pipeline", "state")
METRICS = ("fid", "kid", "is")
BATCH = 50
PIPELINE_SIZE = 64      # part 1 images: 64 x 64, resized to 299 by each library (TF1 bilinear in both)
STATE_SIZE = 299        # part 2 images: already 299 x 299, so neither library spends time resizing
STANDIN_POOL = 16       # the stand-in averages each 299 x 299 image down to 3 x 16 x 16 = 768 numbers
TAP_DIMS = {"pool3": 2048, "logits_unbiased": 1008, "spatial": 2023}


# ----------------------------------------------------------------------------------------------
# images: deterministic, generated batch by batch in the child (generation is not timed)
# ----------------------------------------------------------------------------------------------

def make_batch(stream: int, index: int, count: int, size: int):
    """``count`` uint8 NCHW images, a pure function of (stream, index, size).

    Stream 0 is the real side; streams 1, 2, ... are the generated side of checkpoints 0, 1, ...  The two
    distributions differ in the scale of their structure (6 x 6 vs 9 x 9 random colour grid, upsampled).
    """
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(1_000_003 * (stream + 1) + 7919 * size + index)
    grid = 6 if stream == 0 else 9
    coarse = torch.rand((count, 3, grid, grid), generator=g) * 255
    if size <= 128:  # part 1: bicubic plus a little pixel noise
        x = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
        x = x + torch.randint(-12, 13, x.shape, generator=g, dtype=torch.int16).float()
    else:            # part 2 (299 px): bilinear, no noise, so that generating 2 x 20000 images stays cheap
        x = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def image_batches(stream: int, n: int, size: int, batch: int = BATCH):
    for index, start in enumerate(range(0, n, batch)):
        yield make_batch(stream, index, min(batch, n - start), size)


# ----------------------------------------------------------------------------------------------
# the stand-in network of part 2 (one function, wrapped for each library)
# ----------------------------------------------------------------------------------------------

class StandinCore:
    """Cheap deterministic features of a float32 N x 3 x 299 x 299 batch in [-1, 1].

    Average-pool to 3 x 16 x 16, then one fixed random projection per tap: ``|h W|`` for pool3 (2048-d,
    non-negative like Inception's pool3) and the spatial tap (2023-d), ``4 h W`` for the 1008 logits.
    It costs ~1 ms per image; it is *not* Inception and its metric values mean nothing in themselves.
    """

    def __init__(self, seed: int = 0):
        import torch
        g = torch.Generator().manual_seed(seed)
        d_in = 3 * STANDIN_POOL * STANDIN_POOL
        self.proj = {tap: torch.randn((d_in, d), generator=g) / d_in ** 0.5 for tap, d in TAP_DIMS.items()}
        self.seconds = 0.0
        self.images = 0

    def __call__(self, x, taps):
        import torch.nn.functional as F
        t0 = time.perf_counter()
        h = F.adaptive_avg_pool2d(x.float(), STANDIN_POOL).flatten(1)
        out = {}
        for tap in taps:
            y = h @ self.proj[tap].to(h.device)
            out[tap] = 4 * y if tap == "logits_unbiased" else y.abs()
        self.seconds += time.perf_counter() - t0
        self.images += x.shape[0]
        return out


class FidkitStandin:
    """The stand-in as a fidkit ``extractor=``: float32 N x 3 x 299 x 299 in [-1, 1] -> {tap: N x d}."""

    name = "bench-standin-avgpool16-projection"

    def __init__(self, core: StandinCore):
        import torch
        self.core = core
        self.device = torch.device("cpu")

    def provenance(self, mode, layer, source=None):
        import fidkit
        return fidkit.Provenance(extractor=self.name, weights_sha256="standin", layer=layer, mode=mode,
                                 source=source)

    def __call__(self, batch, taps):
        return self.core(batch, tuple(taps))


def torchmetrics_standin(core: StandinCore, tap: str):
    """The stand-in as a torchmetrics ``feature=`` module: uint8 N x 3 x H x W -> N x d.

    It does what fidkit does before calling its extractor: [0, 255] floats, TF1 bilinear resize to 299
    (a no-op for part 2's 299 px images), ``(x - 128) / 128``.  ``num_features`` is set so that
    torchmetrics' FID does not probe the module with a dummy image.
    """
    import torch

    class Standin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tap = tap
            self.num_features = TAP_DIMS[tap]

        def forward(self, imgs):
            x = imgs.float()
            if x.shape[-2:] != (299, 299):
                from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
                x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
            return core((x - 128) / 128, (self.tap,))[self.tap]

    return Standin()


# ----------------------------------------------------------------------------------------------
# the two libraries behind one small interface
# ----------------------------------------------------------------------------------------------

class TorchmetricsTrio:
    """torchmetrics FrechetInceptionDistance + KernelInceptionDistance + InceptionScore, as in a training loop."""

    def __init__(self, spec: dict, device, core: StandinCore | None):
        from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
        from torchmetrics.image.inception import InceptionScore
        from torchmetrics.image.kid import KernelInceptionDistance
        import torchmetrics
        self.version = torchmetrics.__version__
        kid_kw = dict(subsets=spec["kid_subsets"], subset_size=spec["kid_subset_size"], reset_real_features=False)
        if core is not None:
            self.fid = FrechetInceptionDistance(feature=torchmetrics_standin(core, "pool3"), reset_real_features=False)
            self.kid = KernelInceptionDistance(feature=torchmetrics_standin(core, "pool3"), **kid_kw)
            self.isc = InceptionScore(feature=torchmetrics_standin(core, "logits_unbiased"),
                                      splits=spec["is_splits"])
        else:
            # Every network loads the local random weights; antialias=False selects torch-fidelity's TF1 bilinear
            # resize (what fidkit's default mode does) in all three.  KID and IS take no weights path, so they get
            # torchmetrics' own NoTrainInceptionV3 module, which passes it on to torch-fidelity's extractor.
            w = spec["weights"]
            self.fid = FrechetInceptionDistance(feature=2048, reset_real_features=False,
                                                feature_extractor_weights_path=w, antialias=False)
            self.kid = KernelInceptionDistance(
                feature=NoTrainInceptionV3("inception-v3-compat", ["2048"], w, antialias=False), **kid_kw)
            self.isc = InceptionScore(
                feature=NoTrainInceptionV3("inception-v3-compat", ["logits_unbiased"], w, antialias=False),
                splits=spec["is_splits"])
        wanted = spec.get("metrics", METRICS)
        self.fid = self.fid if "fid" in wanted else None  # objects of metrics not asked for are dropped unused
        self.kid = self.kid if "kid" in wanted else None
        self.isc = self.isc if "is" in wanted else None
        self.objects = [m for m in (self.fid, self.kid, self.isc) if m is not None]
        for m in self.objects:
            m.to(device)
        self.n = {True: 0, False: 0}

    def update(self, x, real: bool) -> None:
        if self.fid is not None:
            self.fid.update(x, real=real)
        if self.kid is not None:
            self.kid.update(x, real=real)
        if self.isc is not None and not real:
            self.isc.update(x)
        self.n[real] += x.shape[0]

    def compute(self) -> dict:
        out, times = {}, {}
        t0 = time.perf_counter()
        if self.fid is not None:
            out["fid"] = float(self.fid.compute())
            times["fid"] = time.perf_counter() - t0
        if self.kid is not None:
            t = time.perf_counter()
            kid_mean, kid_std = self.kid.compute()
            out.update(kid=float(kid_mean), kid_std=float(kid_std))
            times["kid"] = time.perf_counter() - t
        if self.isc is not None:
            t = time.perf_counter()
            is_mean, is_std = self.isc.compute()
            out.update({"is": float(is_mean), "is_std": float(is_std)})
            times["is"] = time.perf_counter() - t
        if self.fid is not None:
            out.update(n_a=int(self.fid.real_features_num_samples), n_b=int(self.fid.fake_features_num_samples))
        else:  # what the objects were fed (KID and IS keep no public count)
            out.update(n_a=self.n[True], n_b=self.n[False])
        return dict(out, compute_breakdown_s=times)

    def reset(self) -> None:  # FID and KID keep the real side (reset_real_features=False)
        for m in self.objects:
            m.reset()
        self.n[False] = 0

    def cross_checks(self, spec: dict) -> dict:
        """IS of torchmetrics' own logits with torch-fidelity's (and fidkit's) split protocol: numpy seed 2020."""
        out = {}
        if self.isc is None:
            return out
        try:
            import torch
            from torch_fidelity.metric_isc import isc_features_to_metric
            logits = torch.cat(list(self.isc.features)).cpu()
            m = isc_features_to_metric(logits, splits=spec["is_splits"], shuffle=True, rng_seed=2020)
            out["is_seed2020_splits"] = float(m["inception_score_mean"])
        except Exception as e:  # a check, not the measurement
            out["is_seed2020_splits_error"] = f"{type(e).__name__}: {e}"
        return out


class FidkitOnline:
    """fidkit.Evaluator with the three metrics."""

    def __init__(self, spec: dict, device, core: StandinCore | None):
        import fidkit
        self.version = fidkit.__version__
        from fidkit import Evaluator
        kw = dict(metrics=tuple(spec.get("metrics", METRICS)), reference=None, device=str(device),
                  kid_subset_size=spec["kid_subset_size"])
        if spec["kid_subsets"] != 100:  # fidkit's default; only passed when changed (not in the spec'd signature)
            kw["kid_subsets"] = spec["kid_subsets"]
        if spec["is_splits"] != 10:
            kw["is_splits"] = spec["is_splits"]
        if core is not None:
            kw["extractor"] = FidkitStandin(core)
        else:
            kw["weights"] = spec["weights"]
        self.ev = Evaluator(**kw)

    def update(self, x, real: bool) -> None:
        self.ev.update(x, real=real)

    def compute(self) -> dict:
        res = self.ev.compute()
        vals = getattr(res, "values", {}) or {}
        out = {"n_a": res.n_a, "n_b": res.n_b}
        for k in ("fid", "kid", "is", "kid_std", "is_std"):
            if k in vals:
                out[k] = float(vals[k])
        return out

    def reset(self) -> None:
        self.ev.reset()

    def cross_checks(self, spec: dict) -> dict:
        return {}


ADAPTERS = {"fidkit": FidkitOnline, "torchmetrics": TorchmetricsTrio}


# ----------------------------------------------------------------------------------------------
# child: one (library, part, N) measurement, result printed as one JSON line
# ----------------------------------------------------------------------------------------------

def _vm_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_child(spec: dict) -> dict:
    import torch
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    lib, part, n = spec["lib"], spec["part"], spec["n"]
    info = {"lib": lib, "part": part, "n": n, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    module = {"fidkit": "fidkit", "torchmetrics": "torchmetrics"}[lib]
    if importlib.util.find_spec(module) is None:
        return dict(info, skipped=f"{lib} is not installed")
    device = torch.device(spec.get("device", "cpu") if part == "pipeline" else "cpu")
    cuda = device.type == "cuda"
    size = PIPELINE_SIZE if part == "pipeline" else STATE_SIZE
    core = StandinCore(seed=0) if part == "state" else None

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    caught: list[str] = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        info["rss_after_import_mb"] = _vm_rss_mb()
        t0 = time.perf_counter()
        adapter = ADAPTERS[lib](spec, device, core)
        sync()
        info["construct_s"] = time.perf_counter() - t0  # loads the network(s); excluded from every other time
        info["version"] = adapter.version
        info["rss_before_updates_mb"] = _vm_rss_mb()
        info["peak_rss_before_updates_mb"] = _peak_rss_mb()

        digests = {"real": hashlib.sha256()}
        real_s = 0.0
        for x in image_batches(0, n, size):
            if part == "pipeline":
                digests["real"].update(x.numpy().tobytes())
            x = x.to(device)
            t0 = time.perf_counter()
            adapter.update(x, real=True)
            sync()
            real_s += time.perf_counter() - t0
        rounds = []
        for c in range(spec["checkpoints"]):
            reset_s = 0.0
            if c:
                t0 = time.perf_counter()
                adapter.reset()
                reset_s = time.perf_counter() - t0
            digest = digests.setdefault(f"fake{c}", hashlib.sha256())
            fake_s = 0.0
            for x in image_batches(1 + c, n, size):
                if part == "pipeline":
                    digest.update(x.numpy().tobytes())
                x = x.to(device)
                t0 = time.perf_counter()
                adapter.update(x, real=False)
                sync()
                fake_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            values = adapter.compute()
            compute_s = time.perf_counter() - t0
            rounds.append({"checkpoint": c, "reset_s": reset_s, "fake_update_s": fake_s, "compute_s": compute_s,
                           "values": values})
            if part == "pipeline":  # untimed, on this checkpoint's state (N x 1008 logits: a few MB at part 1's N)
                rounds[-1]["cross_checks"] = adapter.cross_checks(spec)
        # the measurement ends here (the per-checkpoint IS cross-check above is untimed and a few MB)
        info["peak_rss_mb"] = _peak_rss_mb()
        if cuda:
            info["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        if core is not None:
            info["standin_s"] = core.seconds
            info["standin_images"] = core.images
        if part == "pipeline":
            info["image_sha256"] = {k: d.hexdigest()[:16] for k, d in digests.items()}
        caught = sorted({f"{type(w.message).__name__}: {str(w.message)[:300]}" for w in rec})
    first = rounds[0]
    info.update(real_update_s=real_s, rounds=rounds, values=first["values"],
                eval_s=real_s + first["fake_update_s"] + first["compute_s"], warnings=caught)
    return info


# ----------------------------------------------------------------------------------------------
# parent: launching children (with the CPU-contention checks of bench_fid.py), tables
# ----------------------------------------------------------------------------------------------

def _launch_once(spec: dict, log, timeout: float, quiet: tuple[float, float]) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--run-one", json.dumps(spec)]
    res = run_measured(cmd, f"{spec['part']} {spec['lib']} N={spec['n']}", log, timeout, quiet, RESULT_MARKER)
    if "error" in res:
        return res
    if "skipped" in res:
        print(f" skipped: {res['skipped']}")
    else:
        print(f" {res['eval_s']:.1f} s per evaluation, peak RSS {res['peak_rss_mb'] / 1024:.2f} GB "
              f"({res['process_wall_s']:.0f} s wall{busy_note(res)})")
    return res


def launch(spec: dict, log, timeout: float, quiet: tuple[float, float], retries: int) -> dict:
    for attempt in range(retries + 1):
        res = _launch_once(spec, log, timeout, quiet)
        if "error" in res or res.get("foreign_cpu_share", 0) <= BUSY_WARN or attempt == retries:
            res["attempts"] = attempt + 1
            return res
        print("  ... repeating: the machine was shared")
    raise AssertionError("unreachable")


def _gb(mb) -> str:
    return "—" if mb is None else f"{mb / 1024:.2f} GB"


def _ratio(num, den) -> str:
    return "—" if not num or not den else f"{num / den:.2f}x"


def _rel(a, b) -> str:
    if a is None or b is None:
        return "—"
    scale = max(abs(a), abs(b))
    return "0" if scale == 0 else f"{abs(a - b) / scale:.1e}"


def _ok(r: dict | None) -> bool:
    return bool(r) and "error" not in r and "skipped" not in r


def _why(r: dict | None) -> str:
    if not r:
        return "not run"
    return r.get("error") or r.get("skipped") or "?"


def render(results: dict) -> str:
    cfg = results["config"]
    lines: list[str] = []
    runs = results["runs"]

    def get(part, lib, n):
        return runs.get(f"{part}:{lib}:{n}")

    machine = (f"{cfg['cpu_count']} cores ({cfg['cpu']}), torch {cfg['torch']}, {cfg['torch_threads']} threads")
    chosen = list(cfg.get("metrics", METRICS))
    if chosen != list(METRICS):
        lines += [f"**Metrics in this run: {', '.join(chosen)} only** (fidkit `Evaluator(metrics={tuple(chosen)})`; "
                  "torchmetrics: only the matching metric objects).", ""]
    if "pipeline" in cfg["parts"]:
        dev = cfg["device"]
        lines.append(f"### Part 1: online evaluation, full pipeline, random-weight Inception in both libraries "
                     f"({dev}; {machine})")
        lines.append("")
        lines.append(f"Same uint8 NCHW batches ({PIPELINE_SIZE} x {PIPELINE_SIZE} px, batch {BATCH}) fed to both: "
                     "real side, generated side, `compute()`. fidkit: one `Evaluator(metrics=(fid, kid, is))`, one "
                     "network; torchmetrics: `FrechetInceptionDistance` + `KernelInceptionDistance` + "
                     "`InceptionScore`, one network each. Network loading is excluded (`construct s`).")
        lines.append("")
        lines.append("| library | N per side | s / evaluation | img/s | real-side updates s | generated-side "
                     "updates s | compute s | construct s | peak RSS | RSS before updates |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for n in cfg["n"]:
            for lib in cfg["libs"]:
                r = get("pipeline", lib, n)
                if not _ok(r):
                    lines.append(f"| {lib} | {n} | {_why(r)} | | | | | | | |")
                    continue
                r0 = r["rounds"][0]
                lines.append(f"| {lib} {r.get('version', '')} | {n} | {r['eval_s']:.1f} | {2 * n / r['eval_s']:.1f} | "
                             f"{r['real_update_s']:.1f} | {r0['fake_update_s']:.1f} | {r0['compute_s']:.2f} | "
                             f"{r['construct_s']:.1f} | {_gb(r['peak_rss_mb'])} | {_gb(r.get('rss_before_updates_mb'))} |")
        lines.append("")
        ratio_rows = []
        for n in cfg["n"]:
            fk, tm = get("pipeline", "fidkit", n), get("pipeline", "torchmetrics", n)
            if not (_ok(fk) and _ok(tm)):
                continue
            row = f"| {n} | {_ratio(tm['eval_s'], fk['eval_s'])} | {_ratio(tm['peak_rss_mb'], fk['peak_rss_mb'])} |"
            if cfg["checkpoints"] > 1:
                def later(r):
                    rr = r["rounds"][1:]
                    return sum(x["reset_s"] + x["fake_update_s"] + x["compute_s"] for x in rr) / len(rr)
                row += f" {_ratio(later(tm), later(fk))} (fidkit {later(fk):.1f} s, torchmetrics {later(tm):.1f} s) |"
            ratio_rows.append(row)
        if ratio_rows:
            lines.append("| N per side | fidkit speed-up (torchmetrics s / fidkit s) | peak RSS ratio "
                         "(torchmetrics / fidkit) |" + (" later checkpoints: reset + generated side + compute |"
                                                        if cfg["checkpoints"] > 1 else ""))
            lines.append("|---|---|---|" + ("---|" if cfg["checkpoints"] > 1 else ""))
            lines += ratio_rows
            lines.append("")
        lines += _breakdown_lines(results, "pipeline")
        lines += _values_table(results, "pipeline")
    if "state" in cfg["parts"]:
        lines.append(f"### Part 2: metric state vs N, STAND-IN network instead of Inception (CPU; {machine})")
        lines.append("")
        lines.append(f"The network is replaced by the same cheap stand-in in both libraries (average pool to 3 x "
                     f"{STANDIN_POOL} x {STANDIN_POOL}, fixed random projections to 2048 pool3 / 1008 logits; "
                     f"{STATE_SIZE} px uint8 inputs, so no resize), so these rows measure what the metric objects keep "
                     "and compute, not Inception. fidkit: `Evaluator(extractor=stand-in)`; torchmetrics: the stand-in "
                     "as `feature=` module of each of its three metric objects (it runs three times per image there). "
                     "The values are metrics of stand-in features: only their agreement means something.")
        lines.append("")
        lines.append("| library | N per side | update s (both sides) | of which stand-in s | compute s | total s | "
                     "peak RSS | peak RSS - RSS before updates |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for n in cfg["state_n"]:
            for lib in cfg["libs"]:
                r = get("state", lib, n)
                if not _ok(r):
                    lines.append(f"| {lib} | {n} | {_why(r)} | | | | | |")
                    continue
                r0 = r["rounds"][0]
                upd = r["real_update_s"] + r0["fake_update_s"]
                growth = r["peak_rss_mb"] - (r.get("rss_before_updates_mb") or 0)
                lines.append(f"| {lib} | {n} | {upd:.1f} | {r.get('standin_s', 0):.1f} | {r0['compute_s']:.1f} | "
                             f"{r['eval_s']:.1f} | {_gb(r['peak_rss_mb'])} | {growth:.0f} MB |")
        lines.append("")
        ratio_rows = []
        for n in cfg["state_n"]:
            fk, tm = get("state", "fidkit", n), get("state", "torchmetrics", n)
            if not (_ok(fk) and _ok(tm)):
                continue

            def growth(r):
                return r["peak_rss_mb"] - (r.get("rss_before_updates_mb") or 0)
            ratio_rows.append(f"| {n} | {_ratio(tm['eval_s'], fk['eval_s'])} | "
                              f"{_ratio(tm['rounds'][0]['compute_s'], fk['rounds'][0]['compute_s'])} | "
                              f"{_ratio(tm['peak_rss_mb'], fk['peak_rss_mb'])} | {_ratio(growth(tm), growth(fk))} |")
        if ratio_rows:
            lines.append("| N per side | fidkit speed-up (torchmetrics s / fidkit s) | compute speed-up | peak RSS ratio "
                         "(torchmetrics / fidkit) | RSS growth ratio |")
            lines.append("|---|---|---|---|---|")
            lines += ratio_rows
            lines.append("")
        lines += _breakdown_lines(results, "state")
        lines += _values_table(results, "state")
    lines += _notes(results)
    return "\n".join(lines)


def _values_table(results: dict, part: str) -> list[str]:
    cfg = results["config"]
    ns = cfg["n"] if part == "pipeline" else cfg["state_n"]
    out = [f"Metric values ({'random-weight Inception' if part == 'pipeline' else 'stand-in features'}), "
           "fidkit vs torchmetrics, first evaluation:", "",
           "| N per side | metric | fidkit | torchmetrics | abs difference | rel difference |",
           "|---|---|---|---|---|---|"]
    rows = 0
    for n in ns:
        fk, tm = results["runs"].get(f"{part}:fidkit:{n}"), results["runs"].get(f"{part}:torchmetrics:{n}")
        if not (_ok(fk) and _ok(tm)):
            continue
        a, b = fk["values"], tm["values"]
        names = [("fid", "FID"), ("kid", "KID mean"), ("kid_std", "KID std"), ("is", "IS mean"), ("is_std", "IS std")]
        for key, label in names:
            if a.get(key) is None and b.get(key) is None:
                continue
            x, y = a.get(key), b.get(key)
            diff = "—" if x is None or y is None else f"{abs(x - y):.3g}"
            out.append(f"| {n} | {label} | {_v(x)} | {_v(y)} | {diff} | {_rel(x, y)} |")
            rows += 1
        chk = tm["rounds"][0].get("cross_checks", {})
        if "is_seed2020_splits" in chk:
            y = chk["is_seed2020_splits"]
            out.append(f"| {n} | IS mean, torchmetrics' logits split with seed 2020 (torch-fidelity's protocol) | "
                       f"{_v(a.get('is'))} | {_v(y)} | {abs(a['is'] - y):.3g} | {_rel(a.get('is'), y)} |")
        for k in ("n_a", "n_b"):
            if a.get(k) != b.get(k):
                out.append(f"| {n} | {k} (sample count) | {a.get(k)} | {b.get(k)} | **differs** | |")
        if part == "pipeline" and fk.get("image_sha256") != tm.get("image_sha256"):
            out.append(f"| {n} | input images | {fk.get('image_sha256')} | {tm.get('image_sha256')} | "
                       "**not the same batches** | |")
    if not rows:
        return []
    kid_note = (f"KID: {cfg['kid_subsets']} subsets of min(N, {cfg['kid_subset_size']}); when the subset size equals N "
                "every subset is the whole set, so both libraries compute the same number (fidkit in float64, "
                "torchmetrics in float32); when it is smaller they draw different random subsets (fidkit: numpy "
                "seed 2020, torchmetrics: torch's global RNG), so their KIDs differ by sampling noise of the order of "
                "KID std / sqrt(subsets). KID std is rounding noise (~0) when every subset is the whole set.")
    is_note = (f"IS: {cfg['is_splits']} splits after a shuffle, numpy seed 2020 in fidkit (torch-fidelity's protocol), "
               "`torch.randperm` in torchmetrics: the splits differ, so IS means differ by split noise; the "
               "seed-2020 row recomputes IS from torchmetrics' own logits with fidkit's protocol and isolates the "
               "features. IS std: fidkit population std, torchmetrics sample std.")
    fid_note = ("FID: torchmetrics accumulates sum and X^T X in float64 and takes `eigvals(S1 S2)`; fidkit "
                "streams Chan updates and uses a symmetric eigenproblem.")
    return out + ["", f"- {fid_note}", f"- {kid_note}", f"- {is_note}", ""]


def _breakdown_lines(results: dict, part: str) -> list[str]:
    """torchmetrics' compute() split by metric object (fidkit computes its three in one call)."""
    cfg = results["config"]
    parts = []
    for n in (cfg["n"] if part == "pipeline" else cfg["state_n"]):
        r = results["runs"].get(f"{part}:torchmetrics:{n}")
        b = r["rounds"][0]["values"].get("compute_breakdown_s") if _ok(r) else None
        if b:
            parts.append(f"N={n}: " + ", ".join(f"{k.upper()} {v:.2f} s" for k, v in b.items()))
    if not parts:
        return []
    return [f"torchmetrics `compute()` by metric object ({cfg['kid_subsets']} KID subsets): " + "; ".join(parts)
            + ". FID's share is `torch.linalg.eigvals` of the 2048 x 2048 product, whatever N is.", ""]


def _v(x) -> str:
    return "—" if x is None else f"{x:.7g}"


def _notes(results: dict) -> list[str]:
    out = []
    runs = results["runs"]
    shares = [(k, r["foreign_cpu_share"]) for k, r in runs.items() if r.get("foreign_cpu_share") is not None]
    if shares:
        out.append("Other processes' share of the machine's CPU while each measurement ran: "
                   + ", ".join(f"{k} {x:.0%}" for k, x in shares) + ".")
        busy = [k for k, x in shares if x > BUSY_WARN]
        if busy:
            out.append(f"**WARNING: the machine was shared during {', '.join(busy)}; those timings are not "
                       "representative (run again with --wait-idle 1800 --retries 2 on a quiet machine).**")
        out.append("")
    problems = results.get("problems", [])
    if problems:
        out.append("Problems:")
        out += [f"- {p}" for p in problems]
        out.append("")
    return out


def check_problems(results: dict) -> list[str]:
    """Behaviour that contradicts what the benchmark expects (reported, never worked around)."""
    cfg = results["config"]
    out = []
    for key, r in results["runs"].items():
        if "error" in r:
            out.append(f"{key}: failed: {r['error']}")
            continue
        if "skipped" in r:
            continue
        n = r["n"]
        for rr in r["rounds"]:
            v = rr["values"]
            if v.get("n_a") != n or v.get("n_b") != n:
                out.append(f"{key}: checkpoint {rr['checkpoint']}: sample counts n_a={v.get('n_a')}, "
                           f"n_b={v.get('n_b')}, expected {n} and {n}"
                           + (" (reset() should keep the real side and clear the generated side)"
                              if rr["checkpoint"] else ""))
            bad = [k for k in cfg.get("metrics", METRICS) if v.get(k) is None or v[k] != v[k]]
            if bad:
                out.append(f"{key}: checkpoint {rr['checkpoint']}: no finite value for {', '.join(bad)}")
    for n in cfg["n"]:
        fk, tm = results["runs"].get(f"pipeline:fidkit:{n}"), results["runs"].get(f"pipeline:torchmetrics:{n}")
        if _ok(fk) and _ok(tm):
            if fk.get("image_sha256") != tm.get("image_sha256"):
                out.append(f"pipeline N={n}: the two libraries were not fed the same images")
            for c, (a, b) in enumerate(zip(fk["rounds"], tm["rounds"])):
                va, vb = a["values"], b["values"]
                checks = [("FID", va["fid"], vb["fid"])] if "fid" in va else []
                if cfg["kid_subset_size"] >= n and "kid" in va:  # every KID subset is the whole set: the same number in both
                    checks.append(("KID (subset size = N)", va["kid"], vb["kid"]))
                seeded = b.get("cross_checks", {}).get("is_seed2020_splits")
                if seeded is not None:
                    checks.append(("IS (torchmetrics' logits, seed-2020 splits)", va["is"], seeded))
                for label, x, y in checks:
                    rel = abs(x - y) / max(abs(x), abs(y), 1e-12)
                    if rel > 1e-3:
                        out.append(f"pipeline N={n}, checkpoint {c}: {label} differs by {rel:.1e} relative "
                                   f"(fidkit {x:.7g}, torchmetrics {y:.7g}; same weights, same images)")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", default="500",
                   help="images per side for part 1 (comma-separated list allowed; 5000 is usual on a GPU)")
    p.add_argument("--state-n", default="5000,20000", help="samples per side for part 2 (comma-separated)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS))
    p.add_argument("--metrics", default=",".join(METRICS),
                   help="comma-separated subset of fid,kid,is (fid alone shows the streaming state)")
    p.add_argument("--libs", default=",".join(LIBS), help="comma-separated subset of " + ",".join(LIBS))
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for checking the script: --n 60 --state-n 200,400 --checkpoints 2 --kid-subsets 10")
    p.add_argument("--checkpoints", type=int, default=1,
                   help="evaluations per process: the first feeds both sides; each further one calls reset() "
                        "(the real side is kept), feeds a new generated side and computes again")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="capped at N (same in both libraries)")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--is-splits", type=int, default=10)
    p.add_argument("--device", default="cpu", help="device of part 1 (part 2 always runs on the CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own default)")
    p.add_argument("--out", type=Path, default=Path("bench-out/online.json"),
                   help="JSON results (child logs go next to it, .log)")
    p.add_argument("--weights", type=Path, default=None,
                   help="Inception weights in torch-fidelity's format for part 1 (default: random weights, seed 0, "
                        "written to a temporary folder)")
    p.add_argument("--timeout", type=float, default=7200, help="seconds per child before it is abandoned")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="before each measurement wait up to this long for other processes to stop using the CPU")
    p.add_argument("--retries", type=int, default=0,
                   help=f"repeat a measurement (up to this many times) when others used > {BUSY_WARN * 100:.0f}%% of the CPU")
    p.add_argument("--idle-threshold", type=float, default=0.05,
                   help="share of the machine's CPU used by others below which it counts as quiet")
    p.add_argument("--render", type=Path, metavar="JSON", help="only print the tables of an earlier run's JSON")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.run_one:
        res = run_child(json.loads(args.run_one))
        sys.stdout.write(RESULT_MARKER + json.dumps(res) + "\n")
        sys.stdout.flush()
        return 0
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0

    if args.quick:
        args.n, args.state_n, args.checkpoints, args.kid_subsets = "60", "200,400", max(args.checkpoints, 2), 10
    ns = [int(x) for x in args.n.split(",") if x.strip()]
    state_ns = [int(x) for x in args.state_n.split(",") if x.strip()]
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    libs = [x.strip() for x in args.libs.split(",") if x.strip()]
    metrics = [x.strip() for x in args.metrics.split(",") if x.strip()]
    for name, got, allowed in (("--parts", parts, PARTS), ("--libs", libs, LIBS), ("--metrics", metrics, METRICS)):
        if set(got) - set(allowed):
            p.error(f"{name}: unknown {sorted(set(got) - set(allowed))}; choose from {allowed}")
    if min(ns + state_ns) < max(2, args.is_splits):
        p.error(f"every N must be at least {max(2, args.is_splits)} (IS splits)")

    cfg = {"n": ns, "state_n": state_ns, "parts": parts, "libs": libs, "metrics": metrics,
           "checkpoints": args.checkpoints,
           "kid_subset_size": args.kid_subset_size, "kid_subsets": args.kid_subsets, "is_splits": args.is_splits,
           "device": args.device, "batch": BATCH, **machine_info(args.threads)}
    results: dict = {"config": cfg, "runs": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.out.with_suffix(".log")
    t_start = time.perf_counter()
    print(f"online benchmark: parts {parts}, part 1 N={ns}, part 2 N={state_ns}, libs {libs}; log {log_path}")

    with tempfile.TemporaryDirectory(prefix="fidkit-bench-online-") as tmp:
        weights = args.weights
        if weights is None and "pipeline" in parts:
            from fidkit.testing import write_random_inception_weights
            weights = Path(tmp) / "random-inception-seed0.pth"
            write_random_inception_weights(weights, seed=0)
        quiet = (args.idle_threshold, args.wait_idle)
        with open(log_path, "w") as log:
            for part in parts:
                for n in (ns if part == "pipeline" else state_ns):
                    for lib in libs:
                        spec = {"lib": lib, "part": part, "n": n, "threads": args.threads, "device": args.device,
                                "weights": str(weights) if weights else None, "checkpoints": args.checkpoints,
                                "kid_subset_size": min(args.kid_subset_size, n), "kid_subsets": args.kid_subsets,
                                "is_splits": args.is_splits, "metrics": metrics}
                        results["runs"][f"{part}:{lib}:{n}"] = launch(spec, log, args.timeout, quiet, args.retries)
                        args.out.write_text(json.dumps(results, indent=1, default=str))  # partial results survive

    cfg["total_wall_s"] = time.perf_counter() - t_start
    results["problems"] = check_problems(results)
    text = render(results)
    results["markdown"] = text
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print()
    print(text)
    print(f"total {cfg['total_wall_s'] / 60:.1f} min; JSON in {args.out}, child logs in {log_path}")
    return 1 if any("error" in r for r in results["runs"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
