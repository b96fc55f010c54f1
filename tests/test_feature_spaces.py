"""Feature spaces as plug-ins: several networks from one decode, reference files with several spaces,
provenance per space, user modules, the batched in-memory path.  Networks load random weights in the
published layouts (DINOv2 ViT-B/14 here: the cheaper arch, same code as ViT-L/14)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import fidkit
from fidkit.cli import main
from fidkit.errors import IncomparableStatsError
from fidkit.extractors.dinov2 import DinoV2, preprocess_dgm_eval, random_dinov2_state_dict


def _fd_definition(fa: np.ndarray, fb: np.ndarray) -> float:
    """Fréchet distance written out: |mu_a - mu_b|^2 + tr(A + B - 2 sqrt(A B)), eigenvalues of A B."""
    ca, cb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    root = np.sqrt(np.linalg.eigvals(ca @ cb).astype(complex)).real.sum()
    return float(((fa.mean(0) - fb.mean(0)) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * root)


def _dinov2_features(folder) -> np.ndarray:
    net = DinoV2.from_state_dict("vitb14", random_dinov2_state_dict("vitb14", 0), "test")
    x = torch.stack([preprocess_dgm_eval(np.asarray(Image.open(p).convert("RGB")))
                     for p in sorted(folder.glob("*.png"))])
    with torch.inference_mode():
        return net(x)["cls"].double().numpy()


@pytest.fixture(scope="module")
def both_weights(weights, dinov2_weights):
    return {"inception": weights, "dinov2-vitb14": dinov2_weights}


@pytest.mark.slow
def test_fd_dinov2_equals_the_definition_on_the_same_features(folders, dinov2_weights):
    a, b = folders
    r = fidkit.evaluate(a, b, metrics="fd", features="dinov2-vitb14", weights={"dinov2-vitb14": dinov2_weights},
                        device="cpu")
    assert list(r.values) == ["fd_dinov2_vitb14", "fd_dinov2_vitb14_mean_term", "fd_dinov2_vitb14_cov_term"]
    expected = _fd_definition(_dinov2_features(a), _dinov2_features(b))
    assert r["fd_dinov2_vitb14"] == pytest.approx(expected, rel=1e-6)
    space = r.spaces["dinov2-vitb14/cls"]
    assert (space.extractor, space.layer, space.mode) == ("dinov2-vitb14", "cls", "dgm-eval")
    assert space.weights_sha256 == fidkit.extractors.weights.sha256_of(dinov2_weights)


@pytest.mark.slow
def test_two_networks_share_one_decode_and_give_what_each_gives_alone(folders, both_weights, monkeypatch):
    a, b = folders
    from fidkit.data import files  # where folders' images are decoded
    calls = []
    original = files.decode_image

    def counting(data, name):
        calls.append(name)
        return original(data, name)
    monkeypatch.setattr(files, "decode_image", counting)
    together = fidkit.evaluate(a, b, metrics="fd,kd", features="inception,dinov2-vitb14", weights=both_weights,
                               device="cpu", kid_subset_size=5, kid_subsets=3)
    assert len(calls) == 10 + 12  # each image decoded once for both networks
    assert set(together.values) >= {"fid", "kid", "fd_dinov2_vitb14", "kd_dinov2_vitb14"}
    alone = fidkit.evaluate(a, b, metrics="fd,kd", features="dinov2-vitb14", weights=both_weights, device="cpu",
                            kid_subset_size=5, kid_subsets=3)
    inception_alone = fidkit.evaluate(a, b, metrics="fid,kid", weights=both_weights["inception"], device="cpu",
                                      kid_subset_size=5, kid_subsets=3)
    for key in ("fd_dinov2_vitb14", "kd_dinov2_vitb14"):
        assert together[key] == pytest.approx(alone[key], rel=1e-9)
    for key in ("fid", "kid"):
        assert together[key] == pytest.approx(inception_alone[key], rel=1e-9)
    assert set(together.to_dict()["feature_spaces"]) == {"inception/pool3", "dinov2-vitb14/cls"}


@pytest.mark.slow
def test_a_reference_file_holds_several_spaces(folders, both_weights, tmp_path):
    a, b = folders
    ref = fidkit.compute_reference(a, features=True, extractors="inception,dinov2-vitb14", weights=both_weights,
                                   device="cpu")
    assert set(ref.stats) == {"inception/pool3", "inception/spatial", "dinov2-vitb14/cls"}
    assert set(ref.features) == {"inception/pool3", "dinov2-vitb14/cls"}
    path = ref.save(tmp_path / "ref.npz")
    with np.load(path, allow_pickle=False) as z:  # what pytorch-fid and clean-fid read is still there
        np.testing.assert_allclose(z["mu"], ref.stats["inception/pool3"].mean)
    kw = dict(metrics="fd,kd", features="inception,dinov2-vitb14", weights=both_weights, device="cpu",
              kid_subset_size=5, kid_subsets=3)
    from_file = fidkit.evaluate(path, b, **kw)
    from_images = fidkit.evaluate(a, b, **kw)
    for key in ("fid", "kid", "fd_dinov2_vitb14", "kd_dinov2_vitb14"):
        assert from_file[key] == pytest.approx(from_images[key], rel=1e-6)


@pytest.mark.slow
def test_statistics_of_another_preprocessing_are_refused_before_the_pass(folders, dinov2_weights, tmp_path,
                                                                         monkeypatch):
    a, b = folders
    w = {"dinov2-vitb14": dinov2_weights}
    stats = fidkit.compute_stats(a, extractor="dinov2-vitb14", weights=w, device="cpu")
    assert stats.provenance.mode == "dgm-eval"
    stats.save(tmp_path / "dino.npz")
    assert fidkit.FeatureStats.load(tmp_path / "dino.npz").space == "dinov2-vitb14/cls"
    import fidkit.session as evaluation
    monkeypatch.setattr(evaluation, "extract", lambda *a, **k: pytest.fail("feature pass ran"))
    with pytest.raises(IncomparableStatsError, match="preprocessing mode: 'dgm-eval' vs 'edm2'"):
        fidkit.evaluate(tmp_path / "dino.npz", b, metrics="fd", features="dinov2-vitb14", mode="dinov2-vitb14=edm2",
                        weights=w, device="cpu")


@pytest.mark.slow
def test_recorded_preprocessing_is_used_when_none_is_named(folders, dinov2_weights, tmp_path):
    a, b = folders
    w = {"dinov2-vitb14": dinov2_weights}
    fidkit.compute_stats(a, extractor="dinov2-vitb14", mode="edm2", weights=w, device="cpu").save(tmp_path / "e.npz")
    r = fidkit.evaluate(tmp_path / "e.npz", b, metrics="fd", features="dinov2-vitb14", weights=w, device="cpu")
    assert r.spaces["dinov2-vitb14/cls"].mode == "edm2"


class _Tiny(torch.nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 16, 5, stride=2)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))


def test_a_user_module_is_an_extractor_with_its_own_identity(folders, tmp_path):
    a, b = folders
    spec = fidkit.custom_extractor("tiny16", _Tiny(0), dim=16, size=32)
    r = fidkit.evaluate(a, b, metrics="fd", features="tiny16", device="cpu")
    net = _Tiny(0)

    def feats(folder):
        x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1).copy())
                         for p in sorted(folder.glob("*.png"))])
        with torch.inference_mode():
            return net(spec.variant(None).prepare_batch(x)).double().numpy()
    assert r["fd_tiny16"] == pytest.approx(_fd_definition(feats(a), feats(b)), rel=1e-6)
    assert r.spaces["tiny16/embedding"].extractor == "custom:tiny16"
    fidkit.compute_stats(a, extractor="tiny16", device="cpu").save(tmp_path / "tiny16.npz")
    fidkit.custom_extractor("tiny16", _Tiny(1), dim=16, size=32)  # same name, other weights
    with pytest.raises(IncomparableStatsError, match="network weights"):
        fidkit.evaluate(tmp_path / "tiny16.npz", b, metrics="fd", features="tiny16", device="cpu")


@pytest.mark.slow
def test_in_memory_tensors_take_the_batched_path(folders, dinov2_weights, monkeypatch):
    a, b = folders
    w = {"dinov2-vitb14": dinov2_weights}
    kw = dict(metrics="fd", features="dinov2-vitb14", mode="edm2", weights=w, device="cpu")
    from_files = fidkit.evaluate(a, b, **kw)
    tensors = [torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in sorted(f.glob("*.png"))])
                                ).permute(0, 3, 1, 2) for f in (a, b)]
    from fidkit.engine import extract as engine
    monkeypatch.setattr(engine, "_prepared_batches", lambda *a, **k: pytest.fail("per-image path used"))
    from_tensors = fidkit.evaluate(*tensors, batch_size=4, **kw)
    assert from_tensors["fd_dinov2_vitb14"] == pytest.approx(from_files["fd_dinov2_vitb14"], rel=1e-6)


@pytest.mark.slow
def test_online_evaluator_equals_offline_in_another_space(folders, dinov2_weights):
    a, b = folders
    w = {"dinov2-vitb14": dinov2_weights}
    offline = fidkit.evaluate(a, b, metrics="fd,pr", features="dinov2-vitb14", weights=w, device="cpu")
    ev = fidkit.Evaluator("fd,pr", features="dinov2-vitb14", weights=w, device="cpu")
    for folder, real in ((a, True), (b, False)):
        imgs = np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])
        ev.update(imgs[:5], real=real)
        ev.update(imgs[5:], real=real)
    online = ev.compute()
    for key in ("fd_dinov2_vitb14", "precision_dinov2_vitb14", "recall_dinov2_vitb14"):
        assert online[key] == pytest.approx(offline[key], rel=1e-6)


@pytest.mark.slow
def test_cli_eval_with_several_feature_spaces(folders, both_weights, capsys):
    a, b = folders
    w = ",".join(f"{k}={v}" for k, v in both_weights.items())
    rc = main(["eval", str(a), str(b), "--features", "inception,dinov2-vitb14", "--metrics", "fd", "--weights", w,
               "--device", "cpu", "--json", "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {"fid", "fd_dinov2_vitb14"} <= set(out)
    assert out["feature_spaces"]["dinov2-vitb14/cls"]["preprocessing"] == "dgm-eval"
    assert main(["eval", str(a), str(b), "--features", "resnet", "--device", "cpu"]) == 2
    assert "unknown feature extractor 'resnet'" in capsys.readouterr().err


@pytest.mark.slow
def test_every_generic_metric_runs_in_another_space(folders, dinov2_weights):
    a, b = folders
    r = fidkit.evaluate(a, b, metrics="fd,kd,pr,dc,fd_inf,noise_floor", features="dinov2-vitb14",
                        weights={"dinov2-vitb14": dinov2_weights}, device="cpu", bootstrap=20, kid_subset_size=5,
                        kid_subsets=3)
    k = "dinov2_vitb14"
    for key in (f"fd_{k}", f"kd_{k}", f"kd_{k}_std", f"precision_{k}", f"recall_{k}", f"density_{k}",
                f"coverage_{k}", f"fd_inf_{k}", f"noise_floor_{k}", f"fd_{k}_ci", f"precision_{k}_ci"):
        assert key in r.values and np.all(np.isfinite(r[key])), key
    lo, hi = r[f"fd_{k}_ci"]
    assert lo <= r[f"fd_{k}"] <= hi
    assert not any(key.startswith(("fid", "kid")) for key in r.values)


@pytest.mark.slow
def test_one_weights_path_belongs_to_the_only_network_of_the_run(folders, dinov2_weights, weights):
    a, b = folders
    alone = fidkit.evaluate(a, b, metrics="fd", features="dinov2-vitb14", weights=dinov2_weights, device="cpu")
    assert alone.spaces["dinov2-vitb14/cls"].weights_sha256 == fidkit.extractors.weights.sha256_of(dinov2_weights)
    with pytest.raises(fidkit.BadInputError, match="one file for 2 networks"):
        fidkit.evaluate(a, b, metrics="fd", features="dinov2-vitb14,clip", weights=dinov2_weights, device="cpu")
