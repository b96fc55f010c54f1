"""FID-infinity and IS-infinity: the 1/N fit, the subsets scored, and the documented small-set adjustment."""

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric

from fidkit import FeatureStats
from fidkit.errors import BadInputError, FidkitWarning
from fidkit.metrics import Extrapolation, extrapolate_to_infinity, fid_infinity, is_infinity


def _subsets(n, sizes, seed):
    """The documented protocol: one default_rng(seed), choice without replacement per size, in order."""
    rng = np.random.default_rng(seed)
    return [rng.choice(n, size, replace=False) for size in sizes]


def _torch_fidelity_fid(features, real):
    stats = fid_features_to_statistics(torch.from_numpy(features))
    return fid_statistics_to_metric(stats, {"mu": real.mean, "sigma": real.cov}, verbose=False)[KEY_METRIC_FID]


def test_fit_recovers_the_intercept_of_exact_a_plus_b_over_n_data():
    sizes = np.linspace(5000, 50000, 15).astype(int)
    a, b = 3.25, 4.0e4
    got = extrapolate_to_infinity(sizes, a + b / sizes)
    assert got.value == pytest.approx(a, rel=1e-10)
    assert got.slope == pytest.approx(b, rel=1e-10)


def test_fit_is_ordinary_least_squares_in_one_over_n():
    rng = np.random.default_rng(0)
    sizes = np.array([50, 80, 80, 120, 200, 400])
    scores = 2.0 + 300 / sizes + rng.normal(0, 0.3, sizes.size)
    slope, intercept = np.polyfit(1.0 / sizes, scores, 1)
    got = extrapolate_to_infinity(sizes, scores)
    assert (got.value, got.slope) == pytest.approx((intercept, slope), rel=1e-10)


@pytest.mark.parity
def test_fid_infinity_scores_the_documented_subsets_and_fits_them():
    rng = np.random.default_rng(1)
    fake = rng.standard_normal((400, 5)) * 1.3 + 0.2
    real = FeatureStats.from_features(rng.standard_normal((500, 5)))
    got = fid_infinity(fake, real, n_points=6, n_min=60, seed=7)
    sizes = np.linspace(60, 400, 6).astype(int)
    assert got.sizes == tuple(sizes)
    expected_scores = [_torch_fidelity_fid(fake[idx], real) for idx in _subsets(400, sizes, seed=7)]
    assert got.scores == pytest.approx(expected_scores, rel=1e-9)
    slope, intercept = np.polyfit(1.0 / sizes, expected_scores, 1)
    assert (got.value, got.slope) == pytest.approx((intercept, slope), rel=1e-8)


@pytest.mark.parity
def test_is_infinity_uses_one_split_per_size():
    logits = np.random.default_rng(2).standard_normal((300, 20)) * 2.0
    got = is_infinity(logits, n_points=5, n_min=40, seed=3)
    sizes = np.linspace(40, 300, 5).astype(int)
    expected_scores = [isc_features_to_metric(torch.from_numpy(logits[idx]), splits=1, shuffle=False)[KEY_METRIC_ISC_MEAN]
                       for idx in _subsets(300, sizes, seed=3)]
    assert got.scores == pytest.approx(expected_scores, rel=1e-12)
    slope, intercept = np.polyfit(1.0 / sizes, expected_scores, 1)
    assert got.value == pytest.approx(intercept, rel=1e-9)


def test_fid_infinity_removes_most_of_the_small_sample_bias():
    # Fake drawn from exactly the real distribution: FID_N ~ c / N with c near (d + d(d+1)/4) = 26, FID_inf ~ 0.
    d = 8
    fake = np.random.default_rng(0).standard_normal((3000, d))
    real = FeatureStats.from_moments(np.zeros(d), np.eye(d))
    got = fid_infinity(fake, real, n_min=200, seed=0)
    assert abs(got.value) < 0.1 * got.scores[0]
    assert 13 < got.slope < 52


def test_too_few_samples_lower_n_min_with_a_warning():
    fake = np.random.default_rng(3).standard_normal((200, 3))
    real = FeatureStats.from_features(np.random.default_rng(4).standard_normal((300, 3)))
    with pytest.warns(FidkitWarning, match="n_min=20"):
        got = fid_infinity(fake, real, n_points=4)
    assert got.sizes == tuple(np.linspace(20, 200, 4).astype(int))


def test_same_seed_same_result():
    logits = np.random.default_rng(5).standard_normal((120, 10))
    first = is_infinity(logits, n_points=4, n_min=30, seed=1)
    assert isinstance(first, Extrapolation)
    assert is_infinity(logits, n_points=4, n_min=30, seed=1) == first
    assert is_infinity(logits, n_points=4, n_min=30, seed=2).scores != first.scores


def test_a_single_size_cannot_be_fitted():
    with pytest.raises(BadInputError, match="2 distinct"):
        extrapolate_to_infinity([100, 100, 100], [1.0, 1.1, 0.9])
    with pytest.raises(BadInputError, match="n_points"):
        is_infinity(np.zeros((50, 4)), n_points=1, n_min=10)


def test_dimension_mismatch_is_refused():
    real = FeatureStats.from_features(np.random.default_rng(6).standard_normal((50, 3)))
    with pytest.raises(BadInputError, match="dimension"):
        fid_infinity(np.zeros((100, 4)), real, n_min=10)
