"""The Fréchet distance: closed forms, the scipy-sqrtm reference, singular covariances."""

import numpy as np
import pytest

from fidkit import FeatureStats, Provenance, frechet_distance, frechet_distance_from_moments
from fidkit.errors import BadInputError, IncomparableStatsError


def _random_spd(d, rng, n=None):
    x = rng.standard_normal((n or 4 * d, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
    return np.cov(x, rowvar=False)


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    d = 64
    a, b = rng.uniform(0.1, 5, d), rng.uniform(0.1, 5, d)
    mu_a, mu_b = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance_from_moments(mu_a, np.diag(a), mu_b, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-9)


def test_commuting_covariances_closed_form():
    rng = np.random.default_rng(1)
    d = 50
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    la, lb = rng.uniform(0.01, 3, d), rng.uniform(0.01, 3, d)
    sa, sb = (q * la) @ q.T, (q * lb) @ q.T
    mu = rng.standard_normal(d)
    expected = np.sum((np.sqrt(la) - np.sqrt(lb)) ** 2)
    assert frechet_distance_from_moments(mu, sa, mu, sb) == pytest.approx(expected, rel=1e-9)


def test_one_dimensional_gaussians():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    assert frechet_distance_from_moments([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1, rel=1e-12)


@pytest.mark.parity
@pytest.mark.parametrize("d", [16, 256, 2048])
def test_equals_scipy_sqrtm_reference(d):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(d)
    sa, sb = _random_spd(d, rng), _random_spd(d, rng)
    mu_a, mu_b = rng.standard_normal(d), rng.standard_normal(d)
    expected = fid_score.calculate_frechet_distance(mu_a, sa, mu_b, sb)
    assert frechet_distance_from_moments(mu_a, sa, mu_b, sb) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n_a,n_b", [(10, 10), (30, 5000), (5000, 30), (200, 150)])
def test_singular_covariances_equal_low_rank_reference(n_a, n_b):
    # With centred features A (n_a x d) and B, tr sqrt(Sa Sb) is the nuclear norm of
    # A B^T / sqrt((n_a - 1)(n_b - 1)): an independent route that never forms d x d products.
    d = 256 if max(n_a, n_b) < 1000 else 64
    rng = np.random.default_rng(n_a + n_b)
    fa, fb = rng.standard_normal((n_a, d)) + 0.5, rng.standard_normal((n_b, d)) * 1.3
    a, b = FeatureStats.from_features(fa), FeatureStats.from_features(fb)
    ca, cb = fa - fa.mean(0), fb - fb.mean(0)
    trace_sqrt = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt((n_a - 1) * (n_b - 1))
    expected = (np.sum((fa.mean(0) - fb.mean(0)) ** 2) + np.trace(np.cov(fa, rowvar=False))
                + np.trace(np.cov(fb, rowvar=False)) - 2 * trace_sqrt)
    got = frechet_distance(a, b)
    assert np.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-8)


def test_identical_statistics_give_zero_not_negative():
    rng = np.random.default_rng(3)
    s = FeatureStats.from_features(rng.standard_normal((300, 128)))
    assert frechet_distance(s, s) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(s, s) >= 0.0


def test_rank_one_covariances_never_nan():
    v = np.ones(32)
    got = frechet_distance_from_moments(np.zeros(32), np.outer(v, v), np.zeros(32), np.outer(v, v) * 4)
    assert got == pytest.approx(32 * (2 - 1) ** 2, rel=1e-9)  # (sqrt(4*32) - sqrt(32))^2


def test_different_provenance_is_refused_unless_forced():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 8))
    a = FeatureStats.from_features(x, Provenance(extractor="inception-2015-12-05", weights_sha256="aa", layer="pool3",
                                                 mode="tf"))
    b = FeatureStats.from_features(x, Provenance(extractor="inception-2015-12-05", weights_sha256="aa", layer="pool3",
                                                 mode="clean"))
    with pytest.raises(IncomparableStatsError, match="preprocessing mode: 'tf' vs 'clean'"):
        frechet_distance(a, b)
    assert frechet_distance(a, b, force=True) == pytest.approx(0.0, abs=1e-9)


def test_nan_and_shape_errors():
    with pytest.raises(BadInputError, match="NaN"):
        frechet_distance_from_moments([np.nan, 0], np.eye(2), [0, 0], np.eye(2))
    with pytest.raises(BadInputError, match="shape mismatch"):
        frechet_distance_from_moments([0, 0], np.eye(2), [0, 0, 0], np.eye(3))


def test_zero_covariance_is_a_plain_mean_distance():
    # All samples identical on one side (e.g. a collapsed generator): tr sqrt(0 * S) = 0.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6))
    cov = np.cov(x, rowvar=False)
    mu = np.ones(6)
    for a, b in ((np.zeros((6, 6)), cov), (cov, np.zeros((6, 6))), (np.zeros((6, 6)), np.zeros((6, 6)))):
        expected = float(mu @ mu + np.trace(a) + np.trace(b))
        assert frechet_distance_from_moments(mu, a, np.zeros(6), b) == pytest.approx(expected, rel=1e-12)
