"""FID-infinity reports how well score = a + b/N fits, and warns instead of hiding a doubtful value."""

import warnings

import numpy as np
import pytest

from fidkit import FeatureStats
from fidkit.errors import FidkitWarning
from fidkit.metrics import Extrapolation, extrapolate_to_infinity, fid_infinity
from fidkit.metrics.infinity import POOR_FIT_R_SQUARED

SIZES = np.linspace(5000, 50000, 15).astype(int)


def test_exact_data_fit_perfectly_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", FidkitWarning)
        got = extrapolate_to_infinity(SIZES, 3.0 + 4.0e4 / SIZES)
    assert got.r_squared == pytest.approx(1.0, abs=1e-12)
    assert got.residual_rms == pytest.approx(0.0, abs=1e-10)


def test_r_squared_and_residual_rms_follow_their_definitions():
    scores = 2.0 + 3.0e4 / SIZES + np.random.default_rng(0).normal(0, 0.2, SIZES.size)
    got = extrapolate_to_infinity(SIZES, scores)
    slope, intercept = np.polyfit(1.0 / SIZES, scores, 1)
    residuals = scores - (intercept + slope / SIZES)
    assert got.residual_rms == pytest.approx(np.sqrt(np.mean(residuals ** 2)), rel=1e-9)
    assert got.r_squared == pytest.approx(1 - np.sum(residuals ** 2) / np.sum((scores - scores.mean()) ** 2), rel=1e-9)


def test_negative_extrapolation_warns_and_is_not_clamped():
    with pytest.warns(FidkitWarning, match="negative"):
        got = extrapolate_to_infinity(SIZES, -0.5 + 4.0e4 / SIZES)
    assert got.value == pytest.approx(-0.5, rel=1e-9)
    assert float(got) == got.value


def test_scores_dominated_by_noise_warn_of_a_poor_fit():
    scores = 10.0 + 100.0 / SIZES + np.random.default_rng(1).normal(0, 0.5, SIZES.size)
    with pytest.warns(FidkitWarning, match="poor fit") as record:
        got = extrapolate_to_infinity(SIZES, scores)
    assert got.r_squared < POOR_FIT_R_SQUARED
    assert "R^2" in str(record[0].message)


def test_fid_infinity_carries_the_fit_quality():
    # Fake from a shifted distribution: FID_N = D + c/N with a clear trend and a positive limit.
    d = 4
    fake = np.random.default_rng(2).standard_normal((2000, d)) + 0.5
    real = FeatureStats.from_moments(np.zeros(d), np.eye(d))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FidkitWarning)
        got = fid_infinity(fake, real, n_points=8, n_min=100, seed=0)
    assert got.value > 0
    assert POOR_FIT_R_SQUARED <= got.r_squared <= 1
    assert got.residual_rms >= 0


def test_an_extrapolation_built_without_fit_quality_still_works():
    e = Extrapolation(value=1.0, slope=2.0, sizes=(10, 20), scores=(1.2, 1.1))
    assert np.isnan(e.r_squared) and np.isnan(e.residual_rms)
