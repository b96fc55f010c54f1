"""Bootstrap intervals and the FID noise floor: weighted resampling equals materialised resamples,
intervals cover the estimate, results are seeded; the noise floor is the FID of two disjoint halves."""

import numpy as np
import pytest
from pytorch_fid.fid_score import calculate_frechet_distance

from fidkit import FeatureStats
from fidkit.errors import BadInputError
from fidkit.metrics import BootstrapInterval, bootstrap_interval, fid_bootstrap, fid_noise_floor


def _reference_fid(features, mu, sigma):
    """pytorch-fid's scipy-sqrtm Fréchet distance on numpy's mean and covariance."""
    return calculate_frechet_distance(features.mean(axis=0), np.cov(features, rowvar=False), mu, sigma)


def _setup(n=300, d=4, seed=0):
    rng = np.random.default_rng(seed)
    fake = rng.standard_normal((n, d)) @ np.diag([1.0, 1.5, 0.7, 1.2][:d]) + 0.3
    real = FeatureStats.from_features(rng.standard_normal((2 * n, d)))
    return fake, real


@pytest.mark.parity
def test_weighted_resamples_equal_materialised_resamples():
    fake, real = _setup()
    got = fid_bootstrap(fake, real, resamples=20, seed=4)
    # The same documented draws, but each resample built as an array and scored independently.
    expected = bootstrap_interval(lambda idx: _reference_fid(fake[idx], real.mean, real.cov), len(fake),
                                  resamples=20, seed=4)
    assert got.values == pytest.approx(expected.values, rel=1e-8)
    assert got.std == pytest.approx(expected.std, rel=1e-8)


@pytest.mark.parity
def test_weighted_resamples_equal_feature_stats_of_the_resampled_array():
    fake, real = _setup(n=120, d=3, seed=1)
    got = fid_bootstrap(fake, real, resamples=5, seed=2)
    rng = np.random.default_rng(2)
    for value in got.values:
        stats = FeatureStats.from_features(fake[rng.integers(0, len(fake), size=len(fake))])
        assert value == pytest.approx(calculate_frechet_distance(stats.mean, stats.cov, real.mean, real.cov),
                                      rel=1e-8)


@pytest.mark.parity
def test_interval_contains_the_point_estimate():
    fake, real = _setup(n=400, seed=2)
    estimate = _reference_fid(fake, real.mean, real.cov)
    got = fid_bootstrap(fake, real, resamples=60, confidence=0.9, seed=0)
    assert got.low < estimate < got.high
    assert got.confidence == 0.9


@pytest.mark.parity
def test_fid_interval_is_the_bias_shifted_percentiles_and_std_is_the_bootstrap_standard_error():
    # Not the percentiles of the resamples: those sit above the estimate by the resampling bias.
    fake, real = _setup(n=100, seed=3)
    got = fid_bootstrap(fake, real, resamples=30, confidence=0.8, seed=1)
    estimate = _reference_fid(fake, real.mean, real.cov)
    shift = estimate - np.mean(got.values)
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(got.values, [10, 90]) + shift), rel=1e-9)
    assert got.std == pytest.approx(np.std(got.values, ddof=1), rel=1e-12)


def test_bootstrap_of_a_mean_has_the_textbook_standard_error():
    data = np.random.default_rng(5).exponential(2.0, 400)
    got = bootstrap_interval(lambda idx: data[idx].mean(), len(data), resamples=2000, seed=0)
    assert isinstance(got, BootstrapInterval)
    assert got.std == pytest.approx(data.std() / np.sqrt(len(data)), rel=0.1)
    assert got.low < data.mean() < got.high


def test_resamples_follow_the_documented_draws():
    seen = []
    bootstrap_interval(lambda idx: seen.append(idx.copy()) or 0.0, 50, resamples=3, seed=9)
    rng = np.random.default_rng(9)
    for idx in seen:
        np.testing.assert_array_equal(idx, rng.integers(0, 50, size=50))


def test_same_seed_same_interval_other_seed_other_interval():
    fake, real = _setup(n=80, seed=4)
    first = fid_bootstrap(fake, real, resamples=10, seed=3)
    assert fid_bootstrap(fake, real, resamples=10, seed=3) == first
    assert fid_bootstrap(fake, real, resamples=10, seed=4).values != first.values


@pytest.mark.parametrize("options, match", [(dict(resamples=1), "resamples"), (dict(confidence=1.0), "confidence"),
                                            (dict(confidence=0), "confidence")])
def test_bad_options_are_refused(options, match):
    fake, real = _setup(n=20)
    with pytest.raises(BadInputError, match=match):
        fid_bootstrap(fake, real, **options)


@pytest.mark.parity
def test_noise_floor_is_the_fid_between_the_documented_halves():
    real = np.random.default_rng(6).standard_normal((250, 5))
    perm = np.random.default_rng(11).permutation(len(real))
    half_a, half_b = real[perm[:100]], real[perm[100:200]]
    expected = _reference_fid(half_a, half_b.mean(axis=0), np.cov(half_b, rowvar=False))
    assert fid_noise_floor(real, 100, seed=11) == pytest.approx(expected, rel=1e-9)


def test_noise_floor_needs_two_disjoint_halves():
    real = np.zeros((199, 3))
    with pytest.raises(BadInputError, match="2n=200"):
        fid_noise_floor(real, 100)
