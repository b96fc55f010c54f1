"""The Fréchet distance of statistics from fewer samples than dimensions takes a factor of the rank the sample
count implies (Cholesky with full pivoting, O(d r^2)) instead of an eigen-decomposition (O(d^3)): checked against
the exact trace from the samples themselves, the singular values of the centred cross-product."""

from __future__ import annotations

import numpy as np
import pytest

from fidkit.errors import BadInputError
from fidkit.metrics import frechet as F


def _exact(a: np.ndarray, b: np.ndarray) -> float:
    ac, bc = a - a.mean(0), b - b.mean(0)
    return float(np.linalg.svd(ac @ bc.T / np.sqrt((len(a) - 1) * (len(b) - 1)), compute_uv=False).sum())


@pytest.mark.parametrize("d, na, nb", [(2048, 6, 7), (2048, 60, 33), (512, 2, 100), (256, 10, 400), (64, 3, 3)])
def test_low_rank_route_is_exact(d, na, nb):
    rng = np.random.default_rng(d + na)
    a = rng.normal(size=(na, d)) * rng.uniform(0.1, 3, d) + rng.normal(size=d)
    b = rng.normal(size=(nb, d)) @ rng.normal(size=(d, d)) / np.sqrt(d) + 0.3
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    got = F.trace_sqrt_product(ca, cb, n_a=na, n_b=nb)
    assert got == pytest.approx(_exact(a, b), rel=1e-12)
    assert F.trace_sqrt_product(cb, ca, n_a=nb, n_b=na) == pytest.approx(got, rel=1e-12)


def test_a_covariance_of_higher_rank_than_its_count_falls_back():
    """A sample count that understates the rank (a hand-made file) must not truncate the covariance."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 64)), rng.normal(size=(5, 64))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    assert F._pivoted_cholesky(__import__("torch").from_numpy(ca), 4) is None
    assert F.trace_sqrt_product(ca, cb, n_a=5, n_b=5) == pytest.approx(_exact(a, b), rel=1e-10)


def test_an_indefinite_covariance_is_still_refused():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 32))
    bad = np.cov(x, rowvar=False) - 0.5 * np.eye(32)
    with pytest.raises(BadInputError, match="positive semi-definite"):
        F.frechet_distance_from_moments(np.zeros(32), bad, np.zeros(32), np.eye(32), n_a=4, n_b=4)
