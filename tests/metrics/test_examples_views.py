"""The per-sample views' computations equal brute-force NumPy re-implementations of their definitions: the
realism score of Kynkäänniemi et al. 2019 (median-pruned real balls), nearest references, the near-copy
threshold, the directions of the covariance difference."""

from __future__ import annotations

import numpy as np
import pytest

from fidkit.metrics import examples as views


def _dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(60, 5))
    fake = rng.normal(size=(45, 5)) * 1.3 + 0.2
    return real, fake


def test_realism_score_is_its_definition(feats):
    real, fake = feats
    k = 3
    d_rr = _dist(real, real)
    np.fill_diagonal(d_rr, np.inf)
    radii = np.sort(d_rr, axis=1)[:, k - 1]                     # k-th nearest other real sample
    kept = radii <= np.median(radii)                              # the paper's code: clamp_to_percentile=50
    expected = np.array([max(radii[r] / (np.linalg.norm(g - real[r]) + 1e-5) for r in np.flatnonzero(kept))
                         for g in fake])
    got = views.realism_scores(real, fake, k=k)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # >= 1 exactly when inside a kept real ball (up to eps)
    inside = np.array([any(np.linalg.norm(g - real[r]) <= radii[r] for r in np.flatnonzero(kept)) for g in fake])
    assert ((got >= 1) == inside).mean() > 0.95 and inside.any() and not inside.all()


def test_nearest_neighbours_equal_a_brute_force_search(feats):
    real, fake = feats
    nn = views.nearest_neighbours(fake, real, n=3)
    d = _dist(fake, real)
    order = np.argsort(d, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(nn.indices, order)
    np.testing.assert_allclose(nn.distances, np.take_along_axis(d, order, axis=1), rtol=1e-12)


def test_near_copy_threshold_is_a_third_of_the_median_nearest_reference_distance(feats):
    real, _ = feats
    d = _dist(real, real)
    np.fill_diagonal(d, np.inf)
    expected = np.median(d.min(axis=1)) / 3
    assert views.near_copy_threshold(real) == pytest.approx(expected, rel=1e-12)


def test_near_copy_threshold_on_a_subsample_searches_the_whole_reference(feats):
    real, _ = feats
    got = views.near_copy_threshold(real, queries=10, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(len(real), 10, replace=False))
    d = _dist(real[rows], real)
    d[np.arange(10), rows] = np.inf
    assert got == pytest.approx(np.median(d.min(axis=1)) / 3, rel=1e-12)


def test_covariance_directions_are_the_eigenvectors_of_the_difference(feats):
    real, fake = feats
    cf, cr = np.cov(fake, rowvar=False), np.cov(real, rowvar=False)
    w, v = np.linalg.eigh(cf - cr)
    order = np.argsort(-np.abs(w))
    got = views.covariance_directions(cf, cr, n=3)
    assert [d.eigenvalue for d in got] == pytest.approx(list(w[order[:3]]), rel=1e-10)
    for d, i in zip(got, order[:3]):
        assert abs(float(d.vector @ v[:, i])) == pytest.approx(1.0, abs=1e-10)    # the same axis, either sign
        assert d.explained == pytest.approx(abs(w[i]) / np.abs(w).sum(), rel=1e-10)
        assert d.vector[np.argmax(np.abs(d.vector))] > 0
