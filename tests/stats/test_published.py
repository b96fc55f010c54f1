"""Publishers' statistics files, made locally in each publisher's layout (by the publisher's own code where it is
installed), read back by fidkit.stats.published; the expected values are the arrays put in, and numpy's np.cov
(ddof=1) on the raw features for the covariance conversions."""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest
import torch

import fidkit
from fidkit._safe_pickle import RefusedPickleError
from fidkit.cli import main
from fidkit.errors import BadInputError
from fidkit.stats.provenance import Provenance
from fidkit.stats.published import FORMATS, convert_published, guess_format, read_published
from fidkit.stats.reference import Reference

RNG = np.random.default_rng(17)
X = RNG.normal(size=(60, 8)) * 3 + 1       # "Inception" features
Y = RNG.normal(size=(45, 5))                # "DINOv2" features


def _cov(x):
    return np.cov(x, rowvar=False, ddof=1)


def _edm2(path, x=X, y=Y, **extra):
    """What NVlabs/edm2 calculate_metrics.py writes: pickle.dump of this dict (float64, sigma over N - 1)."""
    stats = dict(num_images=len(x), fid=dict(mu=x.mean(0), sigma=_cov(x)), fd_dinov2=dict(mu=y.mean(0), sigma=_cov(y)))
    stats.update(extra)
    with open(path, "wb") as f:
        pickle.dump(stats, f)
    return path


def test_formats_listed():
    assert set(FORMATS) == {"npz", "cleanfid-kid", "adm-batch", "edm2-pkl", "cdfvd-pkl", "torch-fidelity",
                            "pth-stats"}


def test_edm2_pickle(tmp_path):
    y = X[:, :5]  # both spaces from the same 60 images, as EDM2 records one num_images
    path = _edm2(tmp_path / "img512.pkl", y=y)
    prov = Provenance(extractor="inception-test", layer="pool3", mode="tf")
    ref = read_published(path, "edm2-pkl", spaces={"inception/pool3": prov})
    pool3, dino = ref.stats["inception/pool3"], ref.stats["dinov2-vitl14/cls"]
    assert pool3.n == dino.n == 60
    np.testing.assert_allclose(pool3.mean, X.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pool3.cov, _cov(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dino.cov, _cov(y), rtol=1e-12, atol=1e-12)
    assert pool3.provenance.extractor == "inception-test" and pool3.provenance.source == str(path)
    assert not dino.provenance.known
    assert guess_format(path) == "edm2-pkl"


def test_cdfvd_feature_stats_by_its_own_code(tmp_path):
    metric_utils = pytest.importorskip("cdfvd.utils.metric_utils")
    fs = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True)
    fs.append(X[:25])
    fs.append(X[25:])
    fs.save(str(tmp_path / "ucf.pkl"))
    ref = read_published(tmp_path / "ucf.pkl", "cdfvd-pkl", spaces={"videomae-v2/embedding": None})
    (space, st), = ref.stats.items()
    x32 = X.astype(np.float32).astype(np.float64)  # cd-FVD keeps float32 features
    assert space == "videomae-v2/embedding" and st.n == 60
    np.testing.assert_allclose(st.mean, x32.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.cov, _cov(x32), rtol=1e-10, atol=1e-10)   # N - 1, not cd-FVD's own N
    _, biased = fs.get_mean_cov()
    np.testing.assert_allclose(st.cov * 59 / 60, biased, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(ref.features[space], X.astype(np.float32))
    assert guess_format(tmp_path / "ucf.pkl") == "cdfvd-pkl"


def test_cdfvd_widths_name_the_network(tmp_path):
    metric_utils = pytest.importorskip("cdfvd.utils.metric_utils")
    fs = metric_utils.FeatureStats(capture_mean_cov=True)
    fs.append(RNG.normal(size=(10, 400)))
    fs.save(str(tmp_path / "i3d.pkl"))
    ref = read_published(tmp_path / "i3d.pkl", "cdfvd-pkl")
    assert list(ref.stats) == ["i3d/logits"] and ref.features == {}


def test_torch_fidelity_cache_by_its_own_code(tmp_path):
    utils = pytest.importorskip("torch_fidelity.utils")
    from torch_fidelity.metric_fid import fid_features_to_statistics
    feats = torch.from_numpy(X.astype(np.float32))
    item = utils.cache_lookup_one_recompute_on_miss("cifar10-train-inception-v3-compat-stat-fid-2048",
                                                   lambda: fid_features_to_statistics(feats),
                                                   cache=True, cache_root=str(tmp_path), verbose=False)
    path = tmp_path / "cifar10-train-inception-v3-compat-stat-fid-2048.pt"
    st = read_published(path, "torch-fidelity").stats["inception/pool3"]
    assert st.n is None  # torch-fidelity does not record N
    np.testing.assert_array_equal(st.mean, item["mu"].astype(np.float64))
    np.testing.assert_array_equal(st.cov, item["sigma"])
    np.testing.assert_allclose(st.cov, _cov(X.astype(np.float32).astype(np.float64)), rtol=1e-5, atol=1e-5)
    # its feature cache: a torch.save of the 2-D tensor
    utils.cache_lookup_group_recompute_all_on_any_miss("cifar10-train-inception-v3-compat-features-", ["2048"],
                                                       lambda: {"2048": feats}, cache=True,
                                                       cache_root=str(tmp_path), verbose=False)
    ref = read_published(tmp_path / "cifar10-train-inception-v3-compat-features-2048.pt", "torch-fidelity")
    np.testing.assert_array_equal(ref.features["inception/pool3"], feats.numpy())
    assert ref.stats["inception/pool3"].n == 60


def test_cleanfid_kid_features(tmp_path):
    path = tmp_path / "ffhq_clean_trainval70k_512_kid.npz"
    np.savez_compressed(path, feats=X.astype(np.float32))  # clean-fid's make_custom_stats layout
    ref = read_published(path, "cleanfid-kid")
    np.testing.assert_array_equal(ref.features["inception/pool3"], X.astype(np.float32))
    np.testing.assert_allclose(ref.stats["inception/pool3"].cov, _cov(X.astype(np.float32).astype(np.float64)),
                               rtol=1e-10, atol=1e-10)


def test_adm_batch_moments(tmp_path):
    path = tmp_path / "VIRTUAL_imagenet64_labeled.npz"
    s = RNG.normal(size=(60, 7))
    np.savez(path, arr_0=np.zeros((2, 4, 4, 3), np.uint8), mu=X.mean(0), sigma=_cov(X), mu_s=s.mean(0),
             sigma_s=_cov(s))
    ref = read_published(path, "adm-batch")
    np.testing.assert_array_equal(ref.stats["inception/pool3"].cov, _cov(X))
    np.testing.assert_array_equal(ref.stats["inception/spatial"].mean, s.mean(0))


def test_npz(tmp_path):
    path = tmp_path / "fid_stats_cifar10_train.npz"
    np.savez(path, mu=X.mean(0).astype(np.float32), sigma=_cov(X))
    st = read_published(path, "npz", n=60).stats["inception/pool3"]
    assert st.n == 60 and np.array_equal(st.cov, _cov(X))


@pytest.mark.parametrize("zip_format", [False, True])
def test_basicsr_pth(tmp_path, zip_format):
    """BasicSR's calculate_fid_stats_from_datasets.py: legacy torch.save(dict(name, size, mean, cov))."""
    path = tmp_path / "inception_FFHQ_512.pth"
    torch.save(dict(name="FFHQ", size=512, mean=X.mean(0), cov=_cov(X)), path,
               _use_new_zipfile_serialization=zip_format)
    assert guess_format(path) == "pth-stats"
    st = read_published(path, "pth-stats").stats["inception/pool3"]
    np.testing.assert_array_equal(st.mean, X.mean(0))
    np.testing.assert_array_equal(st.cov, _cov(X))


def test_pth_tensors(tmp_path):
    path = tmp_path / "stats.pth"
    torch.save({"mu": torch.from_numpy(X.mean(0)), "sigma": torch.from_numpy(_cov(X)), "n": 60}, path)
    st = read_published(path, "pth-stats").stats["inception/pool3"]
    assert st.n == 60 and np.array_equal(st.cov, _cov(X))


# --- the covariance normaliser ---------------------------------------------------------------------------------

def test_biased_covariance_converted_exactly(tmp_path):
    path = tmp_path / "biased.npz"
    np.savez(path, mu=X.mean(0), sigma=np.cov(X, rowvar=False, ddof=0))
    st = read_published(path, "npz", normaliser="n", n=60).stats["inception/pool3"]
    np.testing.assert_allclose(st.cov, _cov(X), rtol=1e-13, atol=1e-13)
    assert st.n == 60


def test_biased_covariance_uses_the_files_n(tmp_path):
    path = tmp_path / "stats.pth"
    torch.save({"mu": X.mean(0), "sigma": np.cov(X, rowvar=False, ddof=0), "num_images": 60}, path)
    st = read_published(path, "pth-stats", normaliser="n").stats["inception/pool3"]
    np.testing.assert_allclose(st.cov, _cov(X), rtol=1e-13, atol=1e-13)
    with pytest.raises(BadInputError, match="records 60 samples.*n=61"):
        read_published(path, "pth-stats", normaliser="n", n=61)


def test_biased_covariance_without_n_refused(tmp_path):
    path = tmp_path / "biased.npz"
    np.savez(path, mu=X.mean(0), sigma=np.cov(X, rowvar=False, ddof=0))
    with pytest.raises(BadInputError, match=r"biased.npz.*divided by N.*n="):
        read_published(path, "npz", normaliser="n")


# --- conversion ------------------------------------------------------------------------------------------------

def test_convert_records_origin(tmp_path):
    src = _edm2(tmp_path / "img64.pkl")
    out = convert_published(src, "edm2-pkl", tmp_path / "img64", url="https://example.org/img64.pkl")
    assert out == tmp_path / "img64.npz"
    ref = Reference.load(out)
    assert ref.origin["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert ref.origin["format"] == "edm2-pkl" and ref.origin["url"] == "https://example.org/img64.pkl"
    np.testing.assert_allclose(ref.stats["inception/pool3"].cov, _cov(X), rtol=1e-12, atol=1e-12)
    assert ref.stats["dinov2-vitl14/cls"].n == 60
    with np.load(out, allow_pickle=False) as z:  # no pickle in what fidkit writes
        assert all(z[k].dtype != object for k in z.files)


def test_files_without_origin_still_load(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, mu=X.mean(0), sigma=_cov(X))
    assert Reference.load(path).origin is None


def test_cli_convert(tmp_path, capsys):
    src = _edm2(tmp_path / "img512.pkl")
    assert main(["convert", str(src), "--format", "edm2-pkl", "-o", str(tmp_path / "out.npz")]) == 0
    assert Reference.load(tmp_path / "out.npz").origin["format"] == "edm2-pkl"
    assert main(["convert", str(src), "--format", "cdfvd-pkl", "-o", str(tmp_path / "x.npz")]) == 2
    assert "num_items" in capsys.readouterr().err and not (tmp_path / "x.npz").exists()


def test_pickle_as_a_source(tmp_path):
    src = _edm2(tmp_path / "img512.pkl")
    other = tmp_path / "other.npz"
    np.savez(other, mu=X.mean(0) + 1, sigma=_cov(X))
    with pytest.warns(fidkit.errors.FidkitWarning):
        result = fidkit.fid(str(src), str(other))
    assert result.values["fid"] == pytest.approx(8.0, rel=1e-9)  # |mu difference|^2 = 8 x 1^2, same sigma


def test_unrecognised_pickle_source_says_convert(tmp_path):
    path = tmp_path / "mystery.pkl"
    path.write_bytes(pickle.dumps({"whatever": np.zeros(3)}))
    with pytest.raises(BadInputError, match="fidkit convert"):
        fidkit.fid(str(path), str(path))


def test_payload_source_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"fid": {"mu": np.zeros(2), "sigma": Payload()}}))
    with pytest.raises(RefusedPickleError, match="evil.pkl.*system"):
        fidkit.fid(str(path), str(path))
    with pytest.raises(RefusedPickleError):
        read_published(path, "edm2-pkl")
    assert main(["convert", str(path), "--format", "edm2-pkl", "-o", str(tmp_path / "o.npz")]) == 2
    assert not marker.exists()


# --- damaged files ---------------------------------------------------------------------------------------------

def test_wrong_keys_named(tmp_path):
    path = tmp_path / "img.pkl"
    with open(path, "wb") as f:
        pickle.dump({"fid": {"mean": X.mean(0), "sigma": _cov(X)}}, f)
    with pytest.raises(BadInputError, match=r"img.pkl: no 'mu' in 'fid'"):
        read_published(path, "edm2-pkl")


def test_wrong_shapes_named(tmp_path):
    path = tmp_path / "img.pkl"
    with open(path, "wb") as f:
        pickle.dump({"num_images": 60, "fid": {"mu": X.mean(0), "sigma": _cov(X)[:5, :5]}}, f)
    with pytest.raises(BadInputError, match=r"img.pkl: invalid statistics 'fid'.*shape"):
        read_published(path, "edm2-pkl")


def test_nan_named(tmp_path):
    sigma = _cov(X)
    sigma[0, 0] = np.nan
    path = tmp_path / "stats.pth"
    torch.save({"mu": X.mean(0), "sigma": sigma}, path)
    with pytest.raises(BadInputError, match=r"stats.pth: invalid statistics 'mu'/'sigma'.*NaN"):
        read_published(path, "pth-stats")


def test_truncated_named(tmp_path):
    path = _edm2(tmp_path / "img.pkl")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(RefusedPickleError, match="img.pkl"):
        read_published(path, "edm2-pkl")


def test_bad_count_named(tmp_path):
    path = _edm2(tmp_path / "img.pkl", num_images=1)
    with pytest.raises(BadInputError, match="num_images' = 1"):
        read_published(path, "edm2-pkl")


def test_unknown_format_and_space(tmp_path):
    path = _edm2(tmp_path / "img.pkl")
    with pytest.raises(BadInputError, match="unknown published format"):
        read_published(path, "stylegan-pkl")
    with pytest.raises(BadInputError, match="spaces names clip-vitb32/embedding"):
        read_published(path, "edm2-pkl", spaces={"clip-vitb32/embedding": None})


@pytest.mark.parity
def test_files_written_by_clean_fids_own_make_custom_stats(tmp_path, monkeypatch):
    """clean-fid's make_custom_stats writes the FID file (mu/sigma) and the KID file (feats) that its server hosts;
    a small stand-in network (clean-fid's own would be downloaded) and its stats folder moved under tmp_path."""
    cfid = pytest.importorskip("cleanfid.fid")
    import cleanfid
    from PIL import Image
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(np.random.default_rng(3).integers(0, 256, size=(7, 16, 16, 3), dtype=np.uint8)):
        Image.fromarray(img).save(folder / f"{i}.png")
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())   # 12 features per image
    monkeypatch.setattr(cfid, "build_feature_extractor", lambda mode, device: net)
    monkeypatch.setattr(cleanfid, "__file__", str(tmp_path / "cleanfid" / "__init__.py"))
    cfid.make_custom_stats("toy", str(folder), mode="clean", device=torch.device("cpu"), verbose=False)
    fid_file = tmp_path / "cleanfid" / "stats" / "toy_clean_custom_na.npz"
    kid_file = tmp_path / "cleanfid" / "stats" / "toy_clean_custom_na_kid.npz"
    stats = read_published(fid_file, "npz").stats["inception/pool3"]
    feats = read_published(kid_file, "cleanfid-kid").features["inception/pool3"]
    assert feats.shape == (7, 12)
    np.testing.assert_allclose(stats.mean, feats.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.cov, np.cov(feats.astype(np.float64), rowvar=False), rtol=1e-5, atol=1e-9)
