"""``fidkit adm`` / ``fidkit.adm_evaluate`` end to end on small ADM batches with random Inception weights: the five
lines of evaluator.py, each equal to a NumPy re-implementation of evaluator.py fed with fidkit's features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

import fidkit
from fidkit.cli import main
from fidkit.errors import BadInputError
from fidkit.extractors import Extractor
from fidkit.extractors.inception import MODES
from helpers import smooth_images
from adm_numpy import np_adm_is, np_distance64, np_distance_block, np_manifold

TAPS = ("pool3", "spatial", "logits_unbiased")


def adm_frechet(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """evaluator.py's FIDStatistics.frechet_distance (TTUR's), with scipy's sqrtm."""
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def features(weights, images: np.ndarray) -> dict[str, np.ndarray]:
    """fidkit's Inception features of a batch (one network batch, as the command runs batches of 64)."""
    ext = Extractor.get("inception", weights, "cpu")
    out = ext(torch.stack([MODES["tf"].prepare(i) for i in images]), TAPS)
    return {k: v.numpy() for k, v in out.items()}


@pytest.fixture(scope="module")
def batches(tmp_path_factory, weights):
    """A 40-image reference batch whose mu/sigma/mu_s/sigma_s come from 50 other images (ADM stores moments of
    the whole dataset), and a 30-image sample batch."""
    d = tmp_path_factory.mktemp("adm")
    ref_images, whole, samples = smooth_images(40, 32, 11), smooth_images(50, 32, 12), smooth_images(30, 32, 13)
    fw = {k: v.astype(np.float64) for k, v in features(weights, whole).items()}
    np.savez(d / "ref.npz", arr_0=ref_images, arr_1=np.arange(40) % 7,
             mu=fw["pool3"].mean(0), sigma=np.cov(fw["pool3"], rowvar=False),
             mu_s=fw["spatial"].mean(0), sigma_s=np.cov(fw["spatial"], rowvar=False))
    np.savez(d / "sample.npz", arr_0=samples, arr_1=np.arange(30) % 7)
    return d, features(weights, ref_images), features(weights, samples)


@pytest.mark.slow
def test_cli_prints_evaluator_lines_equal_to_numpy_reimplementation(batches, weights, capsys):
    d, ref_f, sample_f = batches
    assert main(["adm", str(d / "ref.npz"), str(d / "sample.npz"), "--weights", weights, "--device", "cpu",
                 "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    labels = [line.split(": ")[0] for line in lines[:7]]
    assert labels == ["Inception Score", "FID", "sFID", "Precision", "Recall", "Precision (float64 definition)",
                      "Recall (float64 definition)"]
    assert lines[7].startswith("verdict: ") and "adm" in lines[7]  # after ADM's lines: scripts still read those
    assert any("N = 30 generated samples where adm uses 50,000" in line for line in lines[8:])
    got = [float(line.split(": ")[1]) for line in lines[:7]]

    with np.load(d / "ref.npz") as z:
        stored = {k: z[k] for k in ("mu", "sigma", "mu_s", "sigma_s")}
    pool, spatial = sample_f["pool3"].astype(np.float64), sample_f["spatial"].astype(np.float64)
    fid = adm_frechet(pool.mean(0), np.cov(pool, rowvar=False), stored["mu"], stored["sigma"])
    sfid = adm_frechet(spatial.mean(0), np.cov(spatial, rowvar=False), stored["mu_s"], stored["sigma_s"])
    p16, r16, _ = np_manifold(ref_f["pool3"], sample_f["pool3"], block=10_000, dist=np_distance_block)
    p64, r64, _ = np_manifold(ref_f["pool3"], sample_f["pool3"], block=10_000, dist=np_distance64)
    assert got[0] == pytest.approx(np_adm_is(sample_f["logits_unbiased"], 5000), rel=1e-5)
    assert got[1] == pytest.approx(fid, rel=1e-5)
    assert got[2] == pytest.approx(sfid, rel=1e-5)
    assert got[3:] == [p16, r16, p64, r64]


@pytest.mark.slow
def test_adm_evaluate_is_evaluate_with_the_adm_metrics(batches, weights):
    d, _, _ = batches
    ref, sample = d / "ref.npz", d / "sample.npz"
    a = fidkit.adm_evaluate(ref, sample, weights=weights, device="cpu")
    b = fidkit.evaluate(ref, sample, metrics="fid,sfid,adm_is,adm_pr", weights=weights, device="cpu")
    keys = ("fid", "sfid", "adm_is", "adm_precision", "adm_recall", "adm_precision_f64", "adm_recall_f64")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    # the stored moments serve FID (not the moments of the 40 arr_0 images)
    assert fidkit.evaluate(ref, sample, metrics="fid", weights=weights, device="cpu")["fid"] == a["fid"]


@pytest.mark.slow
def test_adm_by_registry_name_is_the_file_with_adms_provenance(batches, weights, isolated_cache):
    """ADM's batch named from the registry (here a user entry whose file was put in the cache by hand, as on an
    offline machine) gives the values of the file by path, judged against the adm card with known provenance."""
    import shutil
    import fidkit.registry as registry
    d, _, _ = batches
    (isolated_cache / "references.toml").write_text(
        '[[reference]]\nname = "test-adm"\ndataset = "test"\nresolution = 32\ncoverage = "whole"\n'
        'dataset_preprocessing = "none"\nnetwork = "inception"\npreprocessing = "tf"\nnormaliser = "n-1"\n'
        'spaces = ["inception/pool3", "inception/spatial"]\nmetrics = ["fid", "sfid", "adm_pr"]\n'
        'url = "https://publisher.invalid/ref.npz"\nlicence = "test"\nfmt = "adm-batch"\npublisher = "tests"\n')
    place = registry.cache_path(registry.lookup("test-adm"))
    place.parent.mkdir(parents=True)
    shutil.copy(d / "ref.npz", place)
    # the entry records the published Inception weights; these random ones differ: compared with force, and named
    by_name = fidkit.adm_evaluate("test-adm", d / "sample.npz", weights=weights, device="cpu", force=True)
    by_path = fidkit.adm_evaluate(d / "ref.npz", d / "sample.npz", weights=weights, device="cpu")
    keys = ("fid", "sfid", "adm_is", "adm_precision", "adm_recall", "adm_precision_f64", "adm_recall_f64")
    assert [by_name[k] for k in keys] == [by_path[k] for k in keys]
    assert by_name.verdict.protocol == by_path.verdict.protocol == "adm"
    assert not any("provenance" in w for w in by_name.warnings)
    assert any("weights" in line for line in by_name.verdict.deviations)
    assert any("provenance" in w for w in by_path.warnings)  # a path to a bare ADM file carries none


def test_warning_when_float16_and_float64_differ(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 2048))
    z_ref, z_fake = rng.standard_normal((80, 4)), 0.5 + 0.6 * rng.standard_normal((70, 4))
    np.save(tmp_path / "ref.npy", (3.5 + np.round(z_ref @ a * 0.24) / 8).astype(np.float32))
    np.save(tmp_path / "fake.npy", (3.5 + np.round(z_fake @ a * 0.24) / 8).astype(np.float32))
    with pytest.warns(fidkit.FidkitWarning, match="float16"):
        r = fidkit.evaluate(tmp_path / "ref.npy", tmp_path / "fake.npy", metrics="adm_pr", device="cpu")
    assert r["adm_recall"] - r["adm_recall_f64"] > 0.5
    assert any("ADM's float16 distances" in w for w in r.warnings)


@pytest.mark.parametrize("arr, match", [
    (np.zeros((4, 8, 8, 3), np.float32), "float32 of shape"),
    (np.zeros((4, 3, 8, 8), np.uint8), "channels first"),
    (np.zeros((4, 8, 8), np.uint8), "N x H x W x 3"),
])
def test_wrong_layout_or_dtype_is_a_named_error(tmp_path, arr, match, capsys):
    good = tmp_path / "good.npz"
    np.savez(good, arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    bad = tmp_path / "bad.npz"
    np.savez(bad, arr_0=arr)
    with pytest.raises(BadInputError, match=match) as e:
        fidkit.adm_evaluate(good, bad)
    assert "bad.npz (sample batch)" in str(e.value)
    assert main(["adm", str(bad), str(good)]) == 2
    assert "bad.npz (reference batch)" in capsys.readouterr().err


def test_reference_batch_with_some_moments_only_is_refused(tmp_path):
    ref = tmp_path / "ref.npz"
    np.savez(ref, arr_0=np.zeros((4, 8, 8, 3), np.uint8), mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(BadInputError, match="not mu_s, sigma_s"):
        fidkit.adm_evaluate(ref, ref)


def test_tf_preprocessing_is_what_adm_feeds_at_expand_dims():
    """ADM feeds ``ExpandDims:0`` the uint8 pixels as float32 0..255; the graph then resizes with TF1
    ResizeBilinear (align_corners=False, no half-pixel centres) to 299 and maps to (x - 128) / 128.  fidkit's
    ``tf`` preprocessing equals that chain, re-implemented here in NumPy."""
    img = smooth_images(1, (37, 53), 5)[0]
    x = img.astype(np.float64)
    h, w = x.shape[:2]

    def axis(n_in):
        src = np.arange(299) * (n_in / 299)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    top = x[y0][:, x0] + (x[y0][:, x1] - x[y0][:, x0]) * fx[None, :, None]
    bottom = x[y1][:, x0] + (x[y1][:, x1] - x[y1][:, x0]) * fx[None, :, None]
    expected = ((top + (bottom - top) * fy[:, None, None]) - 128) / 128
    got = MODES["tf"].prepare(img).numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(got, expected, atol=2e-6)
