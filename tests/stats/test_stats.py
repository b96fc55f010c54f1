"""Streaming statistics: equal to one-shot numpy, exact merges, safe persistence."""

import zipfile

import numpy as np
import pytest
import torch

from fidkit import FeatureStats, Provenance
from fidkit.errors import BadInputError, IncomparableStatsError

PROV = Provenance(extractor="inception-2015-12-05", weights_sha256="ab" * 32, layer="pool3", mode="tf",
                  source="unit test", fidkit_version="0.1.0")


def _features(n=1000, d=64, seed=0, offset=1e3):
    # A large common offset makes the naive E[xx^T] - mu mu^T formula lose digits; Chan's update does not.
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * rng.uniform(0.5, 2, d) + offset


def test_streaming_equals_numpy_one_shot():
    x = _features()
    s = FeatureStats.empty(64, PROV)
    for i in range(0, len(x), 37):  # uneven batches
        s.update(torch.from_numpy(x[i:i + 37]).float() if i % 2 else x[i:i + 37])
    x32 = np.concatenate([x[i:i + 37].astype(np.float32) if (i // 37) % 2 else x[i:i + 37]
                          for i in range(0, len(x), 37)]).astype(np.float64)
    assert s.n == 1000
    np.testing.assert_allclose(s.mean, x32.mean(0), rtol=1e-13)
    np.testing.assert_allclose(s.cov, np.cov(x32, rowvar=False), rtol=1e-9, atol=1e-11)


def test_merge_of_shards_equals_whole():
    x = _features(n=901, d=32, seed=1)
    whole = FeatureStats.from_features(x, PROV)
    parts = [FeatureStats.from_features(x[a:b], PROV) for a, b in ((0, 1), (1, 400), (400, 901))]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert merged.n == whole.n
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-14)
    np.testing.assert_allclose(merged.cov, whole.cov, rtol=1e-10, atol=1e-12)
    # merging is order-independent
    other = parts[2].merge(parts[0]).merge(parts[1])
    np.testing.assert_allclose(other.cov, whole.cov, rtol=1e-10, atol=1e-12)


def test_merge_with_empty_is_identity():
    s = FeatureStats.from_features(_features(n=10, d=4), PROV)
    m = FeatureStats.empty(4, PROV).merge(s)
    np.testing.assert_array_equal(m.cov, s.cov)


def test_merge_refuses_different_provenance():
    a = FeatureStats.from_features(_features(n=10, d=4), PROV)
    b = FeatureStats.from_features(_features(n=10, d=4), Provenance(extractor="other"))
    with pytest.raises(IncomparableStatsError, match="feature extractor"):
        a.merge(b)


def test_save_load_round_trip(tmp_path):
    s = FeatureStats.from_features(_features(n=50, d=8), PROV)
    path = s.save(tmp_path / "ref.npz")
    t = FeatureStats.load(path)
    assert t.n == 50 and t.provenance == PROV
    np.testing.assert_array_equal(t.mean, s.mean)
    np.testing.assert_allclose(t.cov, s.cov, rtol=1e-15)
    # readable by tools that know only mu/sigma (pytorch-fid, clean-fid), without pickle
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["mu"], s.mean)
    # and the loaded statistics keep merging exactly
    np.testing.assert_allclose(t.merge(s).cov, FeatureStats.from_features(
        np.concatenate([_features(n=50, d=8)] * 2), PROV).cov, rtol=1e-9)


def test_save_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    s = FeatureStats.from_features(_features(n=5, d=3), PROV)
    target = tmp_path / "ref.npz"
    s.save(target)
    before = target.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        s.save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ref.npz"]


def test_foreign_moments_file_has_unknown_provenance(tmp_path):
    rng = np.random.default_rng(2)
    mu, sigma = rng.standard_normal(6), np.eye(6)
    np.savez(tmp_path / "pytorch_fid_style.npz", mu=mu, sigma=sigma)
    s = FeatureStats.load(tmp_path / "pytorch_fid_style.npz")
    assert s.n is None and not s.provenance.known
    np.testing.assert_array_equal(s.cov, sigma)
    with pytest.raises(BadInputError, match="unknown"):
        s.merge(s)


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, mu=np.zeros(2), sigma=np.eye(2), provenance=np.array([{"x": 1}], dtype=object))
    with pytest.raises(BadInputError, match="not a readable statistics file"):
        FeatureStats.load(path)


def test_from_moments_checks_shapes_and_n():
    with pytest.raises(BadInputError, match="does not match"):
        FeatureStats.from_moments(np.zeros(3), np.eye(2))
    with pytest.raises(BadInputError, match="at least 2"):
        FeatureStats.from_moments(np.zeros(2), np.eye(2), n=1)
    s = FeatureStats.from_moments(np.zeros(2), np.eye(2) * 3, n=10)
    np.testing.assert_allclose(s.cov, np.eye(2) * 3)


def test_update_rejects_nan_and_wrong_dimension():
    s = FeatureStats.empty(3)
    with pytest.raises(BadInputError, match="NaN"):
        s.update(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(BadInputError, match="dimension 3"):
        s.update(np.zeros((2, 4)))
    assert s.n == 0


def test_truncated_file_is_a_clear_error(tmp_path):
    path = FeatureStats.from_features(_features(n=5, d=3), PROV).save(tmp_path / "ref.npz")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BadInputError, match="ref.npz"):
        FeatureStats.load(path)
    assert zipfile  # the format is a zip archive of .npy members


def test_update_never_changes_the_callers_arrays():
    mu, cov = np.zeros(4), np.eye(4)
    s = FeatureStats.from_moments(mu, cov, n=10)
    s.update(np.ones((3, 4)))
    np.testing.assert_array_equal(mu, np.zeros(4))
    np.testing.assert_array_equal(cov, np.eye(4))
    copy = s.copy()
    s.update(np.full((2, 4), 5.0))
    assert copy.n == 13 and s.n == 15  # a copy is independent of later updates
    np.testing.assert_allclose(copy.mean, np.full(4, 3 / 13))
