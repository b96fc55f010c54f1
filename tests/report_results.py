"""Result dicts for the report's tests, shaped as a real ``fidkit eval --metrics all --bootstrap 20 --json`` run
writes them (keys, nesting and types copied from such a run's output), with values chosen per test, and
per-sample ``examples`` (interface A) holding real PNG thumbnails."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from helpers import smooth_images


def thumb(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).resize((32, 32)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def result(*, fid: float, step: int | None = None, name: str | None = None, ci: float | None = 1.0,
           noise_floor: float | None = 2.0, fd_dinov2: float | None = None, precision: float = 0.7,
           recall: float = 0.6, density: float = 0.9, coverage: float = 0.8, fid_inf: float | None = None,
           terms: bool = False, n: int = 60) -> dict:
    """One result as `fidkit eval --json` prints it (the metadata of a real run; the values given)."""
    r: dict = {"fid": fid}
    if ci is not None:
        r["fid_ci"] = [fid - ci, fid + ci]
    if terms:
        r["fid_mean_term"], r["fid_cov_term"] = 0.25 * fid, 0.75 * fid
    r.update({"kid": fid / 1000, "kid_std": 1e-4, "kid_subset_size": n, "precision": precision, "recall": recall,
              "precision_ci": [precision - 0.05, precision + 0.05], "recall_ci": [recall - 0.05, recall + 0.05],
              "density": density, "coverage": coverage})
    if fid_inf is not None:
        sizes = [int(v) for v in np.linspace(6, n, 15)]
        slope = 300.0
        r.update({"fid_inf": fid_inf, "fid_inf_sizes": sizes, "fid_inf_r2": 0.94,
                  "fid_inf_scores": [fid_inf + slope / s for s in sizes], "fid_inf_slope": slope})
    if noise_floor is not None:
        r.update({"noise_floor": noise_floor, "noise_floor_n": n // 2})
    if fd_dinov2 is not None:
        r["fd_dinov2"] = fd_dinov2
    r.update({"n_a": n, "n_b": n, "a": "/data/real", "b": f"/data/fake-{step}", "mode": "tf",
              "metrics": ["fd", "kd", "pr", "dc", "noise_floor"],
              "options": {"bootstrap": 20, "confidence": 0.95, "seed": 2020},
              "extractor": "inception-2015-12-05", "layer": "pool3", "weights_sha256": "25ce0b9c" + "0" * 56,
              "device": "cpu", "seconds": 38.6,
              "warnings": ["/data/real: N=60 is below 2048, the feature dimension"],
              "fidkit_version": "0.1.0", "skipped": {}, "jpeg_samples": {},
              "verdict": {"protocol": None, "comparable": False, "summary": "no published protocol applies",
                          "deviations": [], "unchecked": [], "basis": "", "caveats": [], "uncovered": []},
              "feature_spaces": {"inception/pool3": {"extractor": "inception-2015-12-05",
                                                     "weights_sha256": "25ce0b9c" + "0" * 56, "layer": "pool3",
                                                     "preprocessing": "tf", "published_weights": False}}})
    if step is not None:
        r["step"] = step
    if name is not None:
        r["name"] = name
    return r


def examples(k: int = 3, grid: int = 8, nearest: int = 4, directions: int = 2) -> dict:
    """Per-sample views as interface A describes them, with real thumbnails; sample 0 is a near copy."""
    images = smooth_images(max(grid, 2 * k, nearest, 4), 16, seed=3)
    t = [thumb(im) for im in images]
    return {"space": "inception/pool3",
            "realism": {"most_realistic": [{"index": i, "score": 1.5 - 0.1 * i, "thumb": t[i]} for i in range(k)],
                        "least_realistic": [{"index": k + i, "score": 0.2 + 0.1 * i, "thumb": t[k + i]}
                                            for i in range(k)]},
            "nearest": [{"index": i, "thumb": t[i], "near_copy": i == 0,
                         "neighbours": [{"ref_index": 10 + j, "distance": 0.5 + i + j, "thumb": t[(i + j) % len(t)]}
                                        for j in range(2)]} for i in range(nearest)],
            "near_copy_threshold": 1.0,
            "directions": [{"eigenvalue": 3.0 - d, "explained": 0.4 / (d + 1), "low": t[:3], "high": t[3:6]}
                           for d in range(directions)],
            "grid": t[:grid]}


def sweep(steps: int = 5, **kw) -> list[dict]:
    """A checkpoint sweep: FID falls, precision and recall rise."""
    return [result(fid=30.0 - 5 * i, step=1000 * i, precision=0.5 + 0.05 * i, recall=0.4 + 0.05 * i, **kw)
            for i in range(steps)]
