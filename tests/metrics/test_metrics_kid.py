"""KID: equal to torch-fidelity 0.4.0's ``kid`` (argument order, seeding, std); brute-force MMD^2; guards."""

import itertools
import warnings

import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

from fidkit.errors import BadInputError, FidkitWarning
from fidkit.metrics import kernel_inception_distance


def _features(n, d, seed, shift=0.0):
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def _torch_fidelity_kid(f1, f2, **kwargs):
    # float64 tensors, so torch-fidelity also computes its kernels in float64.
    return kid_features_to_metric(torch.from_numpy(f1), torch.from_numpy(f2), verbose=False, **kwargs)


@pytest.mark.parity
def test_equals_torch_fidelity_with_features_a_as_its_input1():
    a, b = _features(40, 12, 0, shift=0.3), _features(33, 12, 1)
    expected = _torch_fidelity_kid(a, b, kid_subsets=7, kid_subset_size=25, rng_seed=11)
    got = kernel_inception_distance(a, b, subsets=7, subset_size=25, seed=11)
    assert got.mean == pytest.approx(expected[KEY_METRIC_KID_MEAN], rel=1e-10, abs=1e-12)
    assert got.std == pytest.approx(expected[KEY_METRIC_KID_STD], rel=1e-9, abs=1e-12)
    assert got.subset_size == 25 and got.parts == 7


@pytest.mark.parity
def test_swapping_the_arguments_draws_other_subsets():
    a, b = _features(40, 12, 0, shift=0.3), _features(33, 12, 1)
    swapped = _torch_fidelity_kid(b, a, kid_subsets=7, kid_subset_size=25, rng_seed=11)
    got = kernel_inception_distance(a, b, subsets=7, subset_size=25, seed=11)
    assert got.mean != pytest.approx(swapped[KEY_METRIC_KID_MEAN], rel=1e-6)


@pytest.mark.parity
def test_equals_torch_fidelity_with_other_kernel_parameters():
    a, b = _features(30, 6, 2), _features(30, 6, 3, shift=0.5)
    expected = _torch_fidelity_kid(a, b, kid_subsets=5, kid_subset_size=20, rng_seed=3,
                                   kid_kernel_poly_degree=2, kid_kernel_poly_gamma=0.5, kid_kernel_poly_coef0=0.25)
    got = kernel_inception_distance(a, b, subsets=5, subset_size=20, degree=2, gamma=0.5, coef0=0.25, seed=3)
    assert got.mean == pytest.approx(expected[KEY_METRIC_KID_MEAN], rel=1e-10, abs=1e-12)
    assert got.std == pytest.approx(expected[KEY_METRIC_KID_STD], rel=1e-9, abs=1e-12)


def test_one_subset_of_everything_is_the_full_sample_unbiased_mmd2():
    a, b = _features(24, 5, 4, shift=0.4), _features(24, 5, 5)
    d = a.shape[1]
    k = lambda x, y: (x @ y / d + 1.0) ** 3  # noqa: E731
    m = len(a)
    within_a = sum(k(a[i], a[j]) for i, j in itertools.permutations(range(m), 2))
    within_b = sum(k(b[i], b[j]) for i, j in itertools.permutations(range(m), 2))
    across = sum(k(a[i], b[j]) for i, j in itertools.product(range(m), range(m)))
    expected = (within_a + within_b) / (m * (m - 1)) - 2 * across / m**2
    got = kernel_inception_distance(a, b, subsets=1, subset_size=m)
    assert got.mean == pytest.approx(expected, rel=1e-10)
    assert got.std == 0.0


def test_kid_can_be_negative_for_samples_of_one_distribution():
    a, b = _features(24, 5, 6), _features(24, 5, 7)
    values = kernel_inception_distance(a, b, subsets=20, subset_size=12, seed=1).values
    assert min(values) < 0 < max(values)


def test_mean_and_population_std_summarise_the_subset_values():
    result = kernel_inception_distance(_features(30, 4, 8), _features(30, 4, 9, shift=1.0), subsets=9, subset_size=10)
    assert result.mean == pytest.approx(np.mean(result.values), rel=1e-14)
    assert result.std == pytest.approx(np.std(result.values, ddof=0), rel=1e-12)


def test_too_large_subset_shrinks_to_the_smaller_set_with_a_warning():
    a, b = _features(30, 4, 10), _features(26, 4, 11)
    with pytest.warns(FidkitWarning, match="subset_size=26"):
        shrunk = kernel_inception_distance(a, b, subsets=3, subset_size=1000, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FidkitWarning)
        explicit = kernel_inception_distance(a, b, subsets=3, subset_size=26, seed=2)
    assert shrunk.subset_size == 26
    assert shrunk == explicit


def test_same_seed_same_value_other_seed_other_value():
    a, b = _features(30, 4, 12), _features(30, 4, 13)
    first = kernel_inception_distance(a, b, subsets=4, subset_size=10, seed=5)
    assert kernel_inception_distance(a, b, subsets=4, subset_size=10, seed=5) == first
    assert kernel_inception_distance(a, b, subsets=4, subset_size=10, seed=6).mean != first.mean


def test_fewer_than_two_samples_is_refused():
    with pytest.raises(BadInputError, match="at least 2 samples"):
        kernel_inception_distance(_features(1, 4, 0), _features(10, 4, 1))


def test_dimension_mismatch_is_refused():
    with pytest.raises(BadInputError, match="dimension"):
        kernel_inception_distance(_features(10, 4, 0), _features(10, 5, 1))


def test_nan_features_are_refused_by_name():
    b = _features(10, 4, 1)
    b[3, 2] = np.nan
    with pytest.raises(BadInputError, match="features_b"):
        kernel_inception_distance(_features(10, 4, 0), b, subset_size=5)
