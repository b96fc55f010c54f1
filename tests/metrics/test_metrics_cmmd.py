"""CMMD: brute-force RBF MMD^2 (google-research ``cmmd/distance.py``), closed forms, invariances, guards."""

import math

import numpy as np
import pytest
import torch

from fidkit.errors import BadInputError
from fidkit.metrics.cmmd import cmmd


def _brute_force_cmmd(x, y, sigma=10.0, scale=1000.0):
    # Full matrices of explicit differences, float64: the definition, not the tiled algorithm.
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

    def mean_kernel(a, b):
        sq = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-sq / (2.0 * sigma ** 2)).mean()

    return scale * (mean_kernel(x, x) + mean_kernel(y, y) - 2.0 * mean_kernel(x, y))


def _embeddings(n, d, seed, shift=0.0):
    # Unit vectors, as the CMMD protocol feeds (L2-normalised CLIP embeddings).
    e = np.random.default_rng(seed).standard_normal((n, d)) + shift
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.mark.parametrize("n, m, d, block", [
    (50, 50, 16, 4096),   # one tile
    (97, 61, 32, 20),     # n != m, block smaller than both and dividing neither
    (40, 130, 8, 7),
    (1, 5, 3, 2),
])
def test_equals_brute_force_definition(n, m, d, block):
    x, y = _embeddings(n, d, 0, shift=0.2), _embeddings(m, d, 1)
    assert cmmd(x, y, block=block) == pytest.approx(_brute_force_cmmd(x, y), rel=1e-9)


def test_equals_brute_force_with_other_sigma_scale_and_unnormalised_input():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((45, 10)) * 3.0, rng.standard_normal((38, 10)) * 3.0 + 0.5
    got = cmmd(x, y, sigma=4.0, scale=1.0, block=16)
    assert got == pytest.approx(_brute_force_cmmd(x, y, sigma=4.0, scale=1.0), rel=1e-9)


def test_float32_input_is_computed_in_float64():
    x, y = _embeddings(70, 24, 3, shift=0.1).astype(np.float32), _embeddings(55, 24, 4).astype(np.float32)
    assert cmmd(x, y, block=32) == pytest.approx(_brute_force_cmmd(x, y), rel=1e-9)


def test_accepts_memmap_and_torch_tensor(tmp_path):
    x, y = _embeddings(60, 12, 5, shift=0.3).astype(np.float32), _embeddings(45, 12, 6).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    expected = cmmd(x, y, block=16)
    assert cmmd(np.load(path, mmap_mode="r"), y, block=16) == expected
    assert cmmd(x, torch.from_numpy(y), block=16) == expected


def test_set_against_itself_is_zero():
    x = _embeddings(123, 20, 7)
    assert abs(cmmd(x, x, block=50)) < 1e-12


def test_two_single_points_closed_form():
    r, sigma, scale = 0.7, 10.0, 1000.0
    x, y = np.array([[0.0, 0.0, 1.0]]), np.array([[r, 0.0, 1.0]])
    expected = scale * (2.0 - 2.0 * math.exp(-r ** 2 / (2.0 * sigma ** 2)))
    assert cmmd(x, y) == pytest.approx(expected, rel=1e-12)


def test_two_points_on_each_side_closed_form():
    # x = {p, p}, y = {q, q'} with |p - q| = |p - q'| = r and |q - q'| = s:
    # mean K_xx = 1, mean K_yy = (1 + k(s)) / 2, mean K_xy = k(r).
    sigma = 2.0
    p, q, q2 = [0.0, 0.0], [3.0, 4.0], [3.0, -4.0]
    k = lambda d2: math.exp(-d2 / (2.0 * sigma ** 2))  # noqa: E731
    expected = 1.0 + (1.0 + k(64.0)) / 2.0 - 2.0 * k(25.0)
    assert cmmd(np.array([p, p]), np.array([q, q2]), sigma=sigma, scale=1.0) == pytest.approx(expected, rel=1e-12)


def test_invariant_to_row_order_and_symmetric():
    x, y = _embeddings(83, 16, 8, shift=0.2), _embeddings(71, 16, 9)
    rng = np.random.default_rng(10)
    value = cmmd(x, y, block=30)
    assert cmmd(x[rng.permutation(83)], y[rng.permutation(71)], block=30) == pytest.approx(value, rel=1e-12)
    assert cmmd(y, x, block=30) == pytest.approx(value, rel=1e-12)


def test_block_size_does_not_change_value():
    x, y = _embeddings(150, 16, 11, shift=0.15), _embeddings(121, 16, 12)
    values = [cmmd(x, y, block=block) for block in (1, 7, 64, 150, 151, 4096)]
    assert values == pytest.approx([values[0]] * len(values), rel=1e-12)


def test_grows_with_separation():
    x = _embeddings(60, 8, 13)
    values = [cmmd(x, _embeddings(60, 8, 14, shift=s)) for s in (0.0, 0.5, 2.0)]
    assert 0 < values[0] < values[1] < values[2]


@pytest.mark.parametrize("x, y, kwargs, match", [
    (np.ones((4, 3)), np.ones((4, 5)), {}, "dimension"),
    (np.ones((0, 3)), np.ones((4, 3)), {}, "empty"),
    (np.ones((4, 3)), np.ones((4, 0)), {}, "empty"),
    (np.ones((4, 3)), np.array([[1.0, np.nan, 0.0]]), {}, "NaN"),
    (np.ones(3), np.ones((4, 3)), {}, "2-D"),
    (np.ones((4, 3)), np.ones((4, 3)), {"sigma": 0.0}, "sigma"),
    (np.ones((4, 3)), np.ones((4, 3)), {"scale": float("inf")}, "scale"),
    (np.ones((4, 3)), np.ones((4, 3)), {"block": 0}, "block"),
])
def test_bad_input_raises(x, y, kwargs, match):
    with pytest.raises(BadInputError, match=match):
        cmmd(x, y, **kwargs)
