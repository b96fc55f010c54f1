"""Make the README's report example: a checkpoint sweep evaluated with a random-weight Inception, logged one JSON
line per checkpoint, rendered by `fidkit report`, and photographed in headless Chromium.

    PYTHONPATH=src python docs/make_report_example.py --out /tmp/report-example --screenshot docs/report.png

"Training" is simulated: each checkpoint's samples are other images of the reference's kind, blurred and noised
less as the step grows, so the distances fall and precision/recall rise as they would over a real run.  The
network has random weights (no download), so the numbers illustrate the page, not any published value.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from fidkit import compute_reference, evaluate
from fidkit._io import append_log
from fidkit.testing import write_random_inception_weights

STEPS = (0, 2000, 4000, 6000, 8000, 10000)


def images(n: int, size: int, seed: int) -> list[Image.Image]:
    """Smooth colour fields with fine noise: structure at several scales."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.int32) + rng.integers(-25, 26, (size, size, 3))
        out.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return out


def checkpoint_samples(step: int, n: int, size: int) -> list[Image.Image]:
    """Samples 'at' a step: blur and noise shrink as training goes on."""
    progress = step / STEPS[-1]
    rng = np.random.default_rng(step + 1)
    out = []
    for im in images(n, size, seed=1000 + step):
        im = im.filter(ImageFilter.GaussianBlur(radius=3.0 * (1 - progress)))
        pixels = np.asarray(im, dtype=np.float64) + rng.normal(0, 60 * (1 - progress) + 2, (size, size, 3))
        out.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return out


def write(folder: Path, ims: list[Image.Image]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(ims):
        im.save(folder / f"{i:04d}.png")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("report-example"))
    ap.add_argument("--n", type=int, default=64, help="images per side")
    ap.add_argument("--screenshot", type=Path, default=None, help="PNG of the page in headless Chromium")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    weights = write_random_inception_weights(out / "inception-random.pth")
    real = write(out / "real", images(args.n, 48, seed=0))
    reference = compute_reference(real, keep_features=True, weights=weights, progress=False)
    log = out / "train.jsonl"
    log.unlink(missing_ok=True)
    for step in STEPS:
        fake = write(out / f"step-{step:05d}", checkpoint_samples(step, args.n, 48))
        last = step == STEPS[-1]  # the per-sample views (which need the reference's images) for the last one
        result = evaluate(real if last else reference, fake, metrics="fid,kid,prdc,fid_inf,noise_floor",
                          weights=weights, bootstrap=20, progress=False, keep_examples=8 if last else None)
        append_log(str(log), {**result.to_dict(), "step": step})   # what a training loop's logger would add
        print(f"step {step}: FID {result['fid']:.3f}", file=sys.stderr)
    page = out / "report.html"
    subprocess.run([sys.executable, "-m", "fidkit", "report", str(log), "-o", str(page),
                    "--title", "fidkit report: a simulated checkpoint sweep"], check=True)
    if args.screenshot:
        screenshot(page, args.screenshot)


def screenshot(page: Path, target: Path, width: int = 1280, height: int = 1500) -> None:
    """The top of the page as Debian's headless Chromium draws it, networking off."""
    import shutil
    from selenium import webdriver
    from selenium.webdriver.support.ui import WebDriverWait
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                 f"--window-size={width},{height}", "--host-resolver-rules=MAP * ~NOTFOUND"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
    try:
        driver.get(page.resolve().as_uri())
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.fidkitReady === true"))
        target.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(target))
    finally:
        driver.quit()
    print(json.dumps({"page": str(page), "screenshot": str(target)}))


if __name__ == "__main__":
    main()
