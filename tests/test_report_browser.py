"""The report page in a real browser: Debian's headless Chromium driven by selenium through chromedriver.

No console errors, every section with the expected number of points and images, a tooltip showing a value, a
screenshot that is not blank, and no request leaving the page (the browser runs with every host name resolving
to nothing and a dead proxy, and its network log is read).  CI installs chromium and chromium-driver (.ci/run).
"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fidkit.report.html import write_report
from fidkit.report.runs import Series
from report_results import examples, result

pytestmark = pytest.mark.slow
webdriver = pytest.importorskip("selenium.webdriver")
if not (shutil.which("chromium") and shutil.which("chromedriver")):
    pytest.skip("chromium and chromedriver are not installed (.ci/run installs them)", allow_module_level=True)

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

#: Schemes a self-contained page may use; anything else is a request leaving the machine.
LOCAL = ("file:", "data:", "about:", "blob:", "chrome:", "chrome-error:", "devtools:")


def start_browser(width: int = 1280, height: int = 2400):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", "--no-first-run", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # networking off: no name resolves and any proxied request goes nowhere
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
                 "--proxy-bypass-list=<-loopback>"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture(scope="module")
def browser():
    driver = start_browser()
    yield driver
    driver.quit()


def sweep_with_everything() -> list[dict]:
    dino = [50.0, 45.0, 47.0, 40.0, 38.0]            # rises at step 2000 while FID falls: one flag
    runs = [result(fid=30.0 - 5 * i, step=1000 * i, fd_dinov2=d, terms=True, fid_inf=20.0 - 4 * i,
                   precision=0.5 + 0.05 * i, recall=0.4 + 0.05 * i) for i, d in enumerate(dino)]
    runs[-1]["examples"] = examples(k=3, grid=8, nearest=4, directions=2)
    return runs


def open_page(driver, path):
    driver.get_log("browser")                      # start each page with empty logs
    driver.get_log("performance")
    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.fidkitReady === true"))


def test_the_report_renders_offline_with_every_section(browser, tmp_path):
    runs = sweep_with_everything()
    page = tmp_path / "report.html"
    write_report([Series("train", runs)], page)
    open_page(browser, page)

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe

    # every request was local: the page is self-contained
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert urls and all(u.startswith(LOCAL) for u in urls), [u for u in urls if not u.startswith(LOCAL)]

    for sid in ("curves", "decomposition", "fidelity_diversity", "fd_vs_n", "samples", "provenance", "ab"):
        assert browser.find_elements(By.CSS_SELECTOR, f"section[data-section={sid}]"), sid
    # curves: 5 checkpoints drawn, plus one disagreement marker on the FID and FD-DINOv2 figures
    for key, flags in (("fid", 1), ("fd_dinov2", 1), ("kid", 0)):
        fig = browser.find_element(By.CSS_SELECTOR, f'[data-figure="curve-{key}"]')
        points = fig.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace .points path")
        assert len(points) == len(runs) + flags, key
    # decomposition: two stacked bars per checkpoint; directions with their thumbnails
    bars = browser.find_elements(By.CSS_SELECTOR, '[data-figure="decomposition-fid-train"] .barlayer .point')
    assert len(bars) == 2 * len(runs)
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.directions img")) == 2 * (3 + 3)
    # fidelity vs diversity: one point per checkpoint on the precision/recall plane
    plane = browser.find_element(By.CSS_SELECTOR, '[data-figure="plane-precision"]')
    assert len(plane.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace .points path")) == len(runs)
    # FD vs N: the 15 subset sizes and the run's own N
    fdn = browser.find_element(By.CSS_SELECTOR, '[data-figure="fdn-fid_inf-train"]')
    assert len(fdn.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace .points path")) == 15 + 1
    # samples: the grid, 3 most and 3 least realistic, 4 generated samples with 2 neighbours, one near copy
    assert len(browser.find_elements(By.CSS_SELECTOR, ".grid img")) == 8
    assert len(browser.find_elements(By.CSS_SELECTOR, ".most-realistic img")) == 3
    assert len(browser.find_elements(By.CSS_SELECTOR, ".least-realistic img")) == 3
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.nearest img")) == 4 * (1 + 2)
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.near-copy")) == 1
    # every image decoded (a broken data URI has naturalWidth 0)
    assert browser.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    card = browser.find_element(By.CSS_SELECTOR, "table.provenance").text
    assert "inception-2015-12-05" in card and "not comparable" in card


def test_hovering_a_point_shows_its_value(browser, tmp_path):
    runs = sweep_with_everything()
    page = tmp_path / "report.html"
    write_report([Series("train", runs)], page)
    open_page(browser, page)
    fig = browser.find_element(By.CSS_SELECTOR, '[data-figure="curve-fid"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", fig)
    second = fig.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace .points path")[1]
    ActionChains(browser).move_to_element(second).pause(0.3).move_by_offset(1, 0).pause(0.3).perform()
    WebDriverWait(browser, 10).until(lambda d: fig.find_elements(By.CSS_SELECTOR, ".hoverlayer .hovertext"))
    text = fig.find_element(By.CSS_SELECTOR, ".hoverlayer").text
    assert "step 1000" in text and f"fid = {runs[1]['fid']:.4g}" in text


def test_screenshot_is_not_blank(browser, tmp_path):
    page = tmp_path / "report.html"
    write_report([Series("train", sweep_with_everything())], page)
    open_page(browser, page)
    pixels = np.asarray(Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("L"), dtype=np.float64)
    assert pixels.std() > 10                 # a blank or single-colour page has (almost) no spread
    # and the figures themselves drew: the first chart's area is not one colour
    fig = browser.find_element(By.CSS_SELECTOR, '[data-figure="curve-fid"]')
    chart = np.asarray(Image.open(io.BytesIO(fig.screenshot_as_png)).convert("L"), dtype=np.float64)
    assert chart.std() > 10


def test_a_real_eval_report_opens_in_the_browser(browser, tmp_path):
    """`fidkit eval --report` on a small real run (random-weight Inception): the page shows its values."""
    from helpers import smooth_images, write_folder
    from fidkit.cli import main
    from fidkit.testing import write_random_inception_weights
    weights = write_random_inception_weights(tmp_path / "inception.pth")
    real = write_folder(tmp_path / "real", smooth_images(24, 32, seed=0))
    fake = write_folder(tmp_path / "fake", smooth_images(24, 32, seed=1))
    page = tmp_path / "report.html"
    assert main(["eval", str(real), str(fake), "--weights", weights, "--metrics", "fid,fid_inf,prdc",
                 "--device", "cpu", "--quiet", "--json", "--report", str(page)]) == 0
    data = json.loads(page.with_suffix(".json").read_text())
    fdn = next(s for s in data["sections"] if s["id"] == "fd_vs_n")
    assert fdn["note"] is None            # the real result carries the per-N scores
    open_page(browser, page)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    fig = browser.find_element(By.CSS_SELECTOR, '[data-figure="fdn-fid_inf-run"]')
    assert len(fig.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace .points path")) == 15 + 1
    plane = browser.find_element(By.CSS_SELECTOR, '[data-figure="plane-precision"]')
    assert len(plane.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace .points path")) == 1
