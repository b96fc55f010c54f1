"""Precision/recall and density/coverage: blocked computation equals a brute-force full-matrix reference
(ties included) and torch-fidelity 0.4.0's ``prc``."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from torch_fidelity.metric_prc import prc_features_to_metric

from fidkit.errors import BadInputError
from fidkit.metrics import density_coverage, precision_recall


# Brute-force references on full scipy distance matrices.  A radius is the
# (k+1)-th smallest distance of a point to its own set, the point itself included.
def _radii(x, k):
    return np.sort(cdist(x, x), axis=1)[:, k]


def _reference_precision_recall(real, fake, k, inside=np.less_equal):
    fake_to_real = cdist(fake, real)
    precision = inside(fake_to_real, _radii(real, k)[None, :]).any(axis=1).mean()
    recall = inside(fake_to_real.T, _radii(fake, k)[None, :]).any(axis=1).mean()
    return precision, recall


def _reference_density_coverage(real, fake, k, inside=np.less):
    real_to_fake = cdist(real, fake)
    radii = _radii(real, k)
    density = inside(real_to_fake, radii[:, None]).sum() / (k * len(fake))
    coverage = inside(real_to_fake.min(axis=1), radii).mean()
    return density, coverage


def _gaussian_sets(seed=0, n_real=57, n_fake=63, d=6):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_real, d)), rng.standard_normal((n_fake, d)) * 1.2 + 0.3


def _lattice_sets(seed=1, n_real=60, n_fake=50, d=3):
    """Small-integer points: many exactly equal distances and duplicate points, exact in float32 too."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4, (n_real, d)).astype(np.float64), rng.integers(0, 5, (n_fake, d)).astype(np.float64)


@pytest.mark.parametrize("block_size", [1, 7, 16, 57, 1024])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_precision_recall_equals_brute_force(block_size, dtype):
    real, fake = _gaussian_sets()
    got = precision_recall(real, fake, k=3, block_size=block_size, dtype=dtype)
    assert (got.precision, got.recall) == pytest.approx(_reference_precision_recall(real, fake, 3), abs=1e-15)


@pytest.mark.parametrize("block_size", [1, 7, 16, 57, 1024])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_density_coverage_equals_brute_force(block_size, dtype):
    real, fake = _gaussian_sets()
    got = density_coverage(real, fake, k=5, block_size=block_size, dtype=dtype)
    assert (got.density, got.coverage) == pytest.approx(_reference_density_coverage(real, fake, 5), abs=1e-15)


@pytest.mark.parametrize("block_size", [3, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_precision_recall_counts_points_on_a_radius_as_inside(block_size, dtype):
    real, fake = _lattice_sets()
    inclusive = _reference_precision_recall(real, fake, 3, inside=np.less_equal)
    # The fixture must make the comparison matter, or this test would not test it.
    assert inclusive != _reference_precision_recall(real, fake, 3, inside=np.less)
    got = precision_recall(real, fake, k=3, block_size=block_size, dtype=dtype)
    assert (got.precision, got.recall) == pytest.approx(inclusive, abs=1e-15)


@pytest.mark.parametrize("block_size", [3, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_density_coverage_counts_points_on_a_radius_as_outside(block_size, dtype):
    real, fake = _lattice_sets(seed=2)
    strict = _reference_density_coverage(real, fake, 5, inside=np.less)
    assert strict[0] != _reference_density_coverage(real, fake, 5, inside=np.less_equal)[0]
    got = density_coverage(real, fake, k=5, block_size=block_size, dtype=dtype)
    assert (got.density, got.coverage) == pytest.approx(strict, abs=1e-15)


def test_duplicate_points_are_neighbours_at_distance_zero():
    # Four copies of each real point: the 3rd neighbour is a copy, radius 0, so only exact copies are inside.
    base = np.random.default_rng(3).standard_normal((10, 4))
    real = np.repeat(base, 4, axis=0)
    fake = np.concatenate([base[:5], base[:5] + 0.01])
    assert precision_recall(real, fake, k=3).precision == pytest.approx(0.5)


@pytest.mark.parity
@pytest.mark.parametrize("save_cpu_ram", [False, True])
@pytest.mark.parametrize("sets", [_gaussian_sets, _lattice_sets])
def test_precision_recall_equals_torch_fidelity_with_fake_as_its_input1(save_cpu_ram, sets):
    real, fake = sets()
    real_t, fake_t = torch.from_numpy(real).float(), torch.from_numpy(fake).float()
    expected = prc_features_to_metric(fake_t, real_t, prc_neighborhood=3, prc_batch_size=16,
                                      save_cpu_ram=save_cpu_ram, verbose=False)
    got = precision_recall(real_t, fake_t, k=3, block_size=16)
    assert got.precision == pytest.approx(expected["precision"], abs=1e-7)
    assert got.recall == pytest.approx(expected["recall"], abs=1e-7)
    assert got.f_score == pytest.approx(expected["f_score"], rel=1e-6)
    assert got.precision != pytest.approx(got.recall)  # else the argument order would go unchecked


def test_other_neighbourhood_sizes_equal_brute_force():
    real, fake = _gaussian_sets(seed=4)
    for k in (1, 2, 7):
        pr = precision_recall(real, fake, k=k, block_size=10)
        dc = density_coverage(real, fake, k=k, block_size=10)
        assert (pr.precision, pr.recall) == pytest.approx(_reference_precision_recall(real, fake, k), abs=1e-15)
        assert (dc.density, dc.coverage) == pytest.approx(_reference_density_coverage(real, fake, k), abs=1e-15)


def test_identical_sets_have_full_precision_recall_and_coverage():
    real = np.random.default_rng(5).standard_normal((40, 5))
    pr = precision_recall(real, real.copy(), block_size=8)
    dc = density_coverage(real, real.copy(), block_size=8)
    assert (pr.precision, pr.recall, pr.f_score) == (1.0, 1.0, 1.0)
    assert dc.coverage == 1.0


def test_density_coverage_needs_neighbours_only_among_real():
    real, fake = _gaussian_sets(n_fake=2)
    got = density_coverage(real, fake, k=5)
    assert (got.density, got.coverage) == pytest.approx(_reference_density_coverage(real, fake, 5), abs=1e-15)


@pytest.mark.parametrize("n_real, n_fake, name", [(3, 10, "real"), (10, 3, "fake")])
def test_precision_recall_needs_k_plus_one_samples_per_side(n_real, n_fake, name):
    rng = np.random.default_rng(6)
    with pytest.raises(BadInputError, match=f"{name} has 3 samples"):
        precision_recall(rng.standard_normal((n_real, 2)), rng.standard_normal((n_fake, 2)), k=3)


def test_density_coverage_needs_k_plus_one_real_samples():
    rng = np.random.default_rng(7)
    with pytest.raises(BadInputError, match="real has 5 samples"):
        density_coverage(rng.standard_normal((5, 2)), rng.standard_normal((10, 2)), k=5)


def test_malformed_inputs_are_refused_by_name():
    good = np.zeros((10, 3))
    bad = good.copy()
    bad[0, 0] = np.inf
    with pytest.raises(BadInputError, match="fake contains NaN or Inf"):
        precision_recall(good, bad)
    with pytest.raises(BadInputError, match="dimension"):
        density_coverage(good, np.zeros((10, 4)))
    with pytest.raises(BadInputError, match="block_size"):
        precision_recall(good, good, block_size=0)


@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1e12, 1e30])
def test_extreme_feature_scales_give_the_same_metrics(scale):
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((60, 8)), rng.standard_normal((50, 8)) + 0.3
    pr, dc = precision_recall(real, fake), density_coverage(real, fake)
    pr_s = precision_recall(real * scale, fake * scale)
    dc_s = density_coverage(real * scale, fake * scale)
    assert (pr_s.precision, pr_s.recall) == (pr.precision, pr.recall)
    assert (dc_s.density, dc_s.coverage) == (dc.density, dc.coverage)
    assert 0 < pr.precision < 1 and 0 < dc.coverage < 1


def test_all_zero_features_are_refused():
    with pytest.raises(BadInputError, match="all features are zero"):
        precision_recall(np.zeros((5, 3)), np.zeros((5, 3)))
