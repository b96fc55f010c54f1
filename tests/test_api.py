"""End to end: FID equals the reference libraries under the same weights; guards fire."""

import numpy as np
import pytest
import torch
from PIL import Image

import fidkit
import fidkit.session as fidkit_api
from fidkit import FeatureStats, FidkitWarning
from fidkit.errors import BadInputError, IncomparableStatsError

from helpers import smooth_images, write_folder


@pytest.fixture(scope="module")
def parity_folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("parity")
    return (write_folder(base / "a", smooth_images(16, 40, seed=21)),
            write_folder(base / "b", smooth_images(14, 40, seed=22)))


@pytest.mark.parity
def test_tf_mode_equals_torch_fidelity(parity_folders, weights):
    torch_fidelity = pytest.importorskip("torch_fidelity")
    a, b = parity_folders
    ref = torch_fidelity.calculate_metrics(input1=str(a), input2=str(b), fid=True, cuda=False, verbose=False,
                                           feature_extractor_weights_path=weights)
    got = fidkit.fid(a, b, weights=weights, device="cpu")
    assert got.fid > 0.1
    assert got.fid == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)
    assert (got.n_a, got.n_b, got.mode) == (16, 14, "tf")


@pytest.mark.parity
def test_pytorch_mode_equals_pytorch_fid(parity_folders, weights, monkeypatch):
    inception = pytest.importorskip("pytorch_fid.inception")
    from pytorch_fid import fid_score
    state = torch.load(weights, weights_only=True)
    monkeypatch.setattr(inception, "load_state_dict_from_url", lambda *a, **k: state)
    a, b = parity_folders
    ref = fid_score.calculate_fid_given_paths([str(a), str(b)], batch_size=8, device="cpu", dims=2048,
                                              num_workers=0)
    got = fidkit.fid(a, b, weights=weights, device="cpu", mode="pytorch")
    assert got.fid == pytest.approx(ref, rel=1e-4)


@pytest.mark.parity
def test_statistics_equal_torch_fidelity_features(parity_folders, weights):
    pytest.importorskip("torch_fidelity")
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    a, _ = parity_folders
    ref_net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights)
    imgs = np.stack([np.asarray(Image.open(p)) for p in sorted(a.glob("*.png"))])
    feats = ref_net(torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous())[0].double().numpy()
    stats = fidkit.compute_stats(a, weights=weights, device="cpu", batch_size=5)
    np.testing.assert_allclose(stats.mean, feats.mean(0), atol=1e-5)
    np.testing.assert_allclose(stats.cov, np.cov(feats, rowvar=False), atol=1e-5)


@pytest.mark.slow
def test_in_memory_sources_equal_the_saved_pngs(folders, weights, folders_fid):
    a, b = folders
    imgs = np.stack([np.asarray(Image.open(p)) for p in sorted(b.glob("*.png"))])
    u8 = torch.from_numpy(imgs).permute(0, 3, 1, 2)
    reference = folders_fid().fid
    assert fidkit.fid(a, u8, weights=weights, device="cpu").fid == pytest.approx(reference, rel=1e-12)
    assert fidkit.fid(a, u8.float() / 255, value_range=(0, 1), weights=weights,
                      device="cpu").fid == pytest.approx(reference, rel=1e-12)
    assert fidkit.fid(a, u8.float() / 127.5 - 1, value_range=(-1, 1), weights=weights,
                      device="cpu").fid == pytest.approx(reference, rel=1e-12)
    assert fidkit.fid(a, imgs, weights=weights, device="cpu").fid == pytest.approx(reference, rel=1e-12)
    assert fidkit.fid(a, [u8[:5], u8[5:]], weights=weights, device="cpu").fid == pytest.approx(reference, rel=1e-12)


@pytest.mark.slow
def test_batch_size_and_workers_do_not_change_the_result(folders, weights):
    a, b = folders
    r1 = fidkit.fid(a, b, weights=weights, device="cpu", batch_size=3, workers=1).fid
    r2 = fidkit.fid(a, b, weights=weights, device="cpu", batch_size=32, workers=4).fid
    assert r1 == pytest.approx(r2, rel=1e-6)


@pytest.mark.slow
def test_saved_statistics_replace_the_real_side(folders, weights, tmp_path, folders_fid):
    a, b = folders
    direct = folders_fid().fid
    fidkit.compute_stats(a, weights=weights, device="cpu").save(tmp_path / "ref.npz")
    reused = fidkit.fid(tmp_path / "ref.npz", b, weights=weights, device="cpu")
    assert reused.fid == pytest.approx(direct, rel=1e-9)
    assert reused.n_a == 10


@pytest.mark.slow
def test_mode_comes_from_statistics_unless_given(folders, weights, tmp_path, folders_fid):
    a, b = folders
    fidkit.compute_stats(a, weights=weights, device="cpu", mode="clean").save(tmp_path / "clean.npz")
    adopted = fidkit.fid(tmp_path / "clean.npz", b, weights=weights, device="cpu")
    assert adopted.mode == "clean"
    assert adopted.fid == pytest.approx(folders_fid("clean").fid, rel=1e-9)
    with pytest.raises(IncomparableStatsError, match="preprocessing mode: 'clean' vs 'tf'"):
        fidkit.fid(tmp_path / "clean.npz", b, weights=weights, device="cpu", mode="tf")


@pytest.mark.slow
def test_incomparable_weights_are_refused_before_the_feature_pass(folders, weights, tmp_path, monkeypatch):
    a, b = folders
    stats = fidkit.compute_stats(a, weights=weights, device="cpu")
    stats.provenance = fidkit.Provenance(**{**stats.provenance.to_dict(), "weights_sha256": "0" * 64})
    stats.save(tmp_path / "other.npz")
    monkeypatch.setattr(fidkit_api, "extract", lambda *a, **k: pytest.fail("feature pass ran"))
    with pytest.raises(IncomparableStatsError, match="network weights"):
        fidkit.fid(tmp_path / "other.npz", b, weights=weights, device="cpu")


@pytest.mark.slow
def test_modes_give_different_fids(folders_fid):
    values = {m: folders_fid(m).fid for m in ("tf", "clean", "pytorch")}
    assert len({round(v, 6) for v in values.values()}) == 3


@pytest.mark.slow
def test_small_and_unequal_n_warn(folders, weights):
    a, b = folders
    with pytest.warns(FidkitWarning) as record:
        result = fidkit.fid(a, b, weights=weights, device="cpu")
    text = " ".join(str(w.message) for w in record)
    assert "N=10 is below 2048" in text and "different sample counts (N=10 vs N=12)" in text
    assert any("below 2048" in w for w in result.warnings)


@pytest.mark.slow
def test_range_mistakes_warn(folders, weights):
    a, _ = folders
    x = torch.from_numpy(smooth_images(4, 32, seed=5)).permute(0, 3, 1, 2).float()
    with pytest.warns(FidkitWarning, match="look like \\[0, 255\\] data"):
        fidkit.fid(a, x, value_range=(0, 1), weights=weights, device="cpu")
    with pytest.warns(FidkitWarning, match="look like \\[-1, 1\\] data"):
        fidkit.fid(a, x / 127.5 - 1, value_range=(0, 1), weights=weights, device="cpu")
    with pytest.warns(FidkitWarning, match="look like \\[0, 1\\] data"):
        fidkit.fid(a, x / 255, value_range=(-1, 1), weights=weights, device="cpu")


@pytest.mark.slow
def test_input_errors(folders, weights, tmp_path):
    a, _ = folders
    write_folder(tmp_path / "one", smooth_images(1, 32, seed=0))
    with pytest.raises(BadInputError, match="1 sample"):
        fidkit.fid(a, tmp_path / "one", weights=weights, device="cpu")
    with pytest.raises(BadInputError, match="need a declared value range"):
        fidkit.fid(a, torch.rand(3, 3, 32, 32), weights=weights, device="cpu")
    bad = torch.rand(3, 3, 32, 32)
    bad[1, 0, 0, 0] = float("inf")
    with pytest.raises(BadInputError, match="NaN or Inf"):
        fidkit.fid(a, bad, value_range=(0, 1), weights=weights, device="cpu")


@pytest.mark.slow
def test_conversion_warnings_are_aggregated_per_source(folders, weights, tmp_path):
    a, _ = folders
    rgba = smooth_images(3, 32, seed=4)
    for i, img in enumerate(rgba):
        Image.fromarray(img).convert("RGBA").save(tmp_path / f"{i}.png")
        Image.fromarray(img).save(tmp_path / f"{i}.jpg", quality=90)
    result = fidkit.fid(a, tmp_path, weights=weights, device="cpu")
    alpha = [w for w in result.warnings if "alpha channel" in w]
    jpeg = [w for w in result.warnings if "JPEG" in w]
    assert len(alpha) == 1 and alpha[0].startswith("3 of 6 images")
    assert len(jpeg) == 1 and jpeg[0].startswith("3 of 6 images")


def test_features_files_give_the_frechet_distance_of_any_embedding(tmp_path):
    rng = np.random.default_rng(0)
    fa, fb = rng.standard_normal((300, 16)), rng.standard_normal((200, 16)) + 0.3
    np.save(tmp_path / "a.npy", fa)
    np.savez(tmp_path / "b.npz", fb.astype(np.float32))
    got = fidkit.fid(tmp_path / "a.npy", tmp_path / "b.npz")
    expected = fidkit.frechet_distance(FeatureStats.from_features(fa), FeatureStats.from_features(fb.astype(np.float32)))
    assert got.fid == pytest.approx(expected, rel=1e-9)
    assert got.mode is None


def test_features_are_not_comparable_with_images(folders, weights, tmp_path):
    a, _ = folders
    np.save(tmp_path / "f.npy", np.random.default_rng(0).standard_normal((20, 2048)))
    with pytest.raises(IncomparableStatsError, match="feature extractor"):
        fidkit.fid(a, tmp_path / "f.npy", weights=weights, device="cpu")


@pytest.mark.slow
def test_foreign_statistics_warn_about_missing_provenance(folders, weights, tmp_path, folders_fid):
    a, b = folders
    s = fidkit.compute_stats(b, weights=weights, device="cpu")
    np.savez(tmp_path / "pytorch_fid.npz", mu=s.mean, sigma=s.cov)  # what pytorch-fid --save-stats writes
    with pytest.warns(FidkitWarning, match="carry no provenance"):
        r = fidkit.fid(a, tmp_path / "pytorch_fid.npz", weights=weights, device="cpu")
    assert r.n_b is None
    assert r.fid == pytest.approx(folders_fid().fid, rel=1e-9)
