"""The Fréchet distance as a mean term and a covariance term: each equals its NumPy/SciPy definition, and they
sum to the distance fidkit reports, on the full-rank and on the low-rank route."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from fidkit.metrics.frechet import frechet_distance_from_moments, frechet_terms_from_moments


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(0), np.cov(x, rowvar=False)


def _scipy_terms(mu_a, cov_a, mu_b, cov_b) -> tuple[float, float]:
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    return float(np.sum((mu_a - mu_b) ** 2)), float(np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root).real)


@pytest.mark.parametrize("n_a,n_b", [(400, 500), (12, 300), (9, 11)], ids=["full-rank", "one-low-rank", "both-low"])
def test_terms_equal_their_definitions_and_sum_to_the_distance(n_a, n_b):
    rng = np.random.default_rng(n_a)
    d = 24
    a = rng.normal(size=(n_a, d)) @ rng.normal(size=(d, d)) * 0.3
    b = rng.normal(size=(n_b, d)) * 1.5 + 0.7
    (mu_a, cov_a), (mu_b, cov_b) = _moments(a), _moments(b)
    terms = frechet_terms_from_moments(mu_a, cov_a, mu_b, cov_b, n_a=n_a, n_b=n_b)
    mean_ref, cov_ref = _scipy_terms(mu_a, cov_a, mu_b, cov_b)
    assert terms.mean == pytest.approx(mean_ref, rel=1e-12)
    assert terms.cov == pytest.approx(cov_ref, rel=1e-6, abs=1e-8)
    value = frechet_distance_from_moments(mu_a, cov_a, mu_b, cov_b, n_a=n_a, n_b=n_b)
    assert abs(terms.mean + terms.cov - value) <= 1e-10
    assert terms.mean > 0 and terms.cov > 0


def test_identical_means_leave_only_the_covariance_term():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) * 2
    a, b = a - a.mean(0), b - b.mean(0)
    terms = frechet_terms_from_moments(*_moments(a), *_moments(b))
    assert terms.mean == pytest.approx(0.0, abs=1e-25)
    assert terms.cov == pytest.approx(terms.value)
    shifted = frechet_terms_from_moments(*_moments(a), *_moments(a + 3.0))
    assert shifted.mean == pytest.approx(8 * 9.0) and shifted.cov == pytest.approx(0.0, abs=1e-9)
