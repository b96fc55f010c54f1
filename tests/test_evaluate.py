"""fidkit eval: every metric from one feature pass, equal to the references on the same images."""

import json

import numpy as np
import pytest

import fidkit
from fidkit import metrics as M
from fidkit.cli import main
from fidkit.errors import BadInputError
from fidkit.extractors.runtime import Extractor, InceptionExtractor
from fidkit.engine.store import FeatureStore

from helpers import smooth_images, write_folder


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    return (write_folder(base / "real", smooth_images(24, 40, seed=31)),
            write_folder(base / "fake", smooth_images(20, 40, seed=32)))


@pytest.fixture(scope="module")
def full(sets, weights):
    real, fake = sets
    return fidkit.evaluate(real, fake, metrics="all", weights=weights, device="cpu", kid_subset_size=12,
                           bootstrap=20)


@pytest.mark.parity
def test_fid_kid_is_equal_torch_fidelity(sets, weights, full):
    torch_fidelity = pytest.importorskip("torch_fidelity")
    real, fake = sets
    ref = torch_fidelity.calculate_metrics(input1=str(fake), input2=str(real), fid=True, kid=True, isc=True,
                                           kid_subset_size=12, cuda=False, verbose=False,
                                           feature_extractor_weights_path=weights)
    assert full["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)
    assert full["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3, abs=1e-9)
    assert full["kid_std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-3, abs=1e-9)
    assert full["is"] == pytest.approx(ref["inception_score_mean"], rel=1e-4)
    assert full["is_std"] == pytest.approx(ref["inception_score_std"], rel=1e-3, abs=1e-9)


@pytest.mark.slow
def test_one_forward_per_batch_feeds_every_metric(sets, weights, monkeypatch):
    real, fake = sets
    calls = []
    original = Extractor.__call__

    def counting(self, batch, taps=("pool3",)):
        calls.append(tuple(taps))
        return original(self, batch, taps)
    monkeypatch.setattr(Extractor, "__call__", counting)
    fidkit.evaluate(real, fake, metrics="fid,kid,is,sfid,prdc", weights=weights, device="cpu", batch_size=8,
                    kid_subset_size=12)
    assert len(calls) == 3 + 3  # ceil(24 / 8) + ceil(20 / 8): one forward per batch, not per metric
    assert set(calls[-1]) == {"pool3", "spatial", "logits_unbiased"}


@pytest.mark.slow
def test_metrics_equal_the_pure_functions_on_the_same_features(sets, weights, full):
    real, fake = sets
    ref = fidkit.compute_reference(real, features=True, weights=weights, device="cpu")
    gen = fidkit.compute_reference(fake, features=True, weights=weights, device="cpu")
    fr, ff = ref.features["inception/pool3"], gen.features["inception/pool3"]
    assert full["sfid"] == pytest.approx(M.frechet_distance(ref.stats["inception/spatial"], gen.stats["inception/spatial"]), rel=1e-9)
    assert full["fid"] == pytest.approx(M.frechet_distance(ref.stats["inception/pool3"], gen.stats["inception/pool3"]), rel=1e-9)
    pr = M.precision_recall(fr, ff, k=3)
    dc = M.density_coverage(fr, ff, k=5)
    assert (full["precision"], full["recall"]) == (pr.precision, pr.recall)
    assert (full["density"], full["coverage"]) == (dc.density, dc.coverage)
    assert full["noise_floor"] == pytest.approx(M.fid_noise_floor(fr, 12, seed=2020), rel=1e-9)
    assert full["noise_floor_n"] == 12  # as many as the fake side has, capped by half the real set


@pytest.mark.slow
def test_streamed_spatial_statistics_equal_one_shot(sets, weights):
    real, _ = sets
    ext = InceptionExtractor.get(weights, "cpu")
    from fidkit.extractors.inception import MODES
    import torch
    from PIL import Image
    imgs = [np.asarray(Image.open(p)) for p in sorted(real.glob("*.png"))]
    feats = ext(torch.stack([MODES["tf"].prepare(i) for i in imgs]), ("spatial",))["spatial"].double().numpy()
    streamed = fidkit.compute_reference(real, weights=weights, device="cpu", batch_size=5).stats["inception/spatial"]
    np.testing.assert_allclose(streamed.mean, feats.mean(0), atol=1e-6)
    np.testing.assert_allclose(streamed.cov, np.cov(feats, rowvar=False), atol=1e-6)


@pytest.mark.slow
def test_reference_file_serves_every_metric(sets, weights, full, tmp_path):
    real, fake = sets
    fidkit.compute_reference(real, features=True, weights=weights, device="cpu").save(tmp_path / "ref.npz")
    again = fidkit.evaluate(tmp_path / "ref.npz", fake, metrics="all", weights=weights, device="cpu",
                            kid_subset_size=12, bootstrap=20)
    for key in ("fid", "sfid", "kid", "is", "precision", "recall", "density", "coverage", "noise_floor", "fid_inf"):
        assert again[key] == pytest.approx(full[key], rel=1e-6), key
    assert again["fid_ci"] == pytest.approx(full["fid_ci"], rel=1e-6)


@pytest.mark.slow
def test_reference_without_features_names_what_is_missing(sets, weights, tmp_path):
    real, fake = sets
    fidkit.compute_reference(real, weights=weights, device="cpu").save(tmp_path / "ref.npz")
    with pytest.raises(BadInputError, match="lacks per-sample inception/pool3 features.*--features"):
        fidkit.evaluate(tmp_path / "ref.npz", fake, metrics="kid", weights=weights, device="cpu")
    r = fidkit.evaluate(tmp_path / "ref.npz", fake, metrics="fid,sfid,is", weights=weights, device="cpu")
    assert set(r.values) == {"fid", "fid_mean_term", "fid_cov_term", "sfid", "sfid_mean_term", "sfid_cov_term", "is",
                             "is_std"}


@pytest.mark.slow
def test_bootstrap_interval_is_ordered_and_seeded(full, sets, weights):
    low, high = full["fid_ci"]
    assert 0 < low < high
    for key in ("precision", "recall", "density", "coverage"):
        lo, hi = full[f"{key}_ci"]
        assert lo <= full[key] <= hi, key  # means of per-sample values: the interval brackets the estimate
    real, fake = sets
    again = fidkit.evaluate(real, fake, metrics="fid", weights=weights, device="cpu", bootstrap=20)
    assert again["fid_ci"] == full["fid_ci"]


def test_metric_names_and_options_are_checked(sets, weights):
    real, fake = sets
    with pytest.raises(BadInputError, match="unknown metric 'fdi'"):
        fidkit.evaluate(real, fake, metrics="fid,fdi", weights=weights)
    with pytest.raises(BadInputError, match="unknown option"):
        fidkit.evaluate(real, fake, metrics="fid", weights=weights, kid_subset=3)


@pytest.mark.slow
def test_small_n_adjustments_warn_instead_of_crashing(sets, weights):
    real, fake = sets
    with pytest.warns(fidkit.FidkitWarning, match="subset"):
        r = fidkit.evaluate(real, fake, metrics="kid", weights=weights, device="cpu")  # default subset 1000 > N
    assert r["kid_subset_size"] == 20


@pytest.mark.slow
def test_eval_cli_json_and_table(capsys, sets, weights):
    real, fake = sets
    assert main(["eval", str(real), str(fake), "--weights", weights, "--device", "cpu", "--kid-subset-size", "12",
                 "--json", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    for key in ("fid", "kid", "is", "sfid", "precision", "recall", "density", "coverage", "n_a", "n_b", "mode"):
        assert key in record
    assert main(["eval", str(real), str(fake), "--weights", weights, "--device", "cpu", "--metrics", "fid,is",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "FID:" in out and "IS:" in out and "KID" not in out


def test_feature_store_spills_to_disk_with_identical_contents():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((100, 16)).astype(np.float32)
    small = FeatureStore(16, spill_bytes=1000)
    big = FeatureStore(16)
    for i in range(0, 100, 7):
        small.append(rows[i:i + 7])
        big.append(rows[i:i + 7])
    assert small.spilled and not big.spilled
    np.testing.assert_array_equal(small.array(), rows)
    np.testing.assert_array_equal(big.array(), rows)
