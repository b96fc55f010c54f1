"""Differentiable Fréchet distance and KID: values against the exact float64 routes, gradients against
finite differences and dense autograd, and the degenerate batches where eigen-solver autograd breaks."""

import itertools
import math

import numpy as np
import pytest
import torch

from fidkit import FeatureStats, frechet_distance
from fidkit.errors import BadInputError
from fidkit.metrics.differentiable import FrechetReference, frechet_distance_torch, kid_torch, nuclear_norm
from fidkit.metrics.kid import kernel_inception_distance


def _activations(n, mixing, rng, *, scale=1.0, shift=0.0):
    """Non-negative, correlated, non-isotropic features (a ReLU of mixed Gaussians), like pool3 activations."""
    z = rng.standard_normal((n, mixing.shape[0]))
    return np.maximum(z @ mixing * scale + shift, 0.0)


def _mixing(d, rng):
    spectrum = 1.0 / (1.0 + np.arange(d)) ** 0.6  # decaying variances: condition number ~ d^1.2
    return rng.standard_normal((d, d)) * spectrum[:, None] / math.sqrt(d) * 4.0


@pytest.fixture(scope="module")
def inception_like():
    """A d = 2048 reference from 5000 samples, prepared once, and batches of a slightly different distribution
    with fidkit's exact float64 distance (computed once per batch size)."""
    mixing = _mixing(2048, np.random.default_rng(2048))
    stats = FeatureStats.from_features(_activations(5000, mixing, np.random.default_rng(0)))
    cases = {}

    def case(b):
        if b not in cases:
            x = _activations(b, mixing, np.random.default_rng(b), scale=1.1, shift=0.02)
            cases[b] = x, frechet_distance(FeatureStats.from_features(x), stats)
        return cases[b]
    return FrechetReference.from_stats(stats), case


@pytest.mark.slow
@pytest.mark.parametrize("b", [2, 8, 32, 128, 512])
def test_equals_exact_frechet_distance_at_d2048(inception_like, b):
    reference, case = inception_like
    x, expected = case(b)
    got = frechet_distance_torch(torch.from_numpy(x), reference)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(expected, rel=1e-9)


def test_float32_is_accurate_for_a_large_realistic_batch(inception_like):
    # At b = 512 the Gram matrix has true eigenvalues near 5 eps(float32) times the largest: a tolerance of
    # m * eps dropped a fifth of the trace term, and a float32 eigen-solver gets the gradient 3% wrong.
    reference, case = inception_like
    x, expected = case(512)
    x64 = torch.from_numpy(x).requires_grad_()
    x32 = x64.detach().float().requires_grad_()
    got = frechet_distance_torch(x32, reference.to(dtype=torch.float32), dtype=torch.float32)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-5)
    (g32,) = torch.autograd.grad(got, x32)
    (g64,) = torch.autograd.grad(frechet_distance_torch(x64, reference), x64)
    assert float((g32.double() - g64).abs().max() / g64.abs().max()) < 1e-4


@pytest.mark.parametrize("b", [128, 512])
def test_equals_exact_frechet_distance_when_batch_exceeds_dim(b):
    rng = np.random.default_rng(b)
    mixing = _mixing(64, rng)
    stats = FeatureStats.from_features(_activations(5000, mixing, rng))
    x = _activations(b, mixing, rng, scale=0.9, shift=0.05)
    expected = frechet_distance(FeatureStats.from_features(x), stats)
    assert float(frechet_distance_torch(torch.from_numpy(x), FrechetReference.from_stats(stats))) == \
        pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("d,b_x,b_y", [(256, 16, 40), (256, 40, 16), (16, 50, 30), (256, 2, 3)])
def test_two_batches_equal_exact_frechet_distance(d, b_x, b_y):
    rng = np.random.default_rng(d + b_x)
    mixing = _mixing(d, rng)
    x, y = _activations(b_x, mixing, rng), _activations(b_y, mixing, rng, scale=1.2)
    expected = frechet_distance(FeatureStats.from_features(x), FeatureStats.from_features(y))
    assert float(frechet_distance_torch(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parity
def test_equals_pytorch_fid_scipy_sqrtm_on_full_rank_statistics():
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(7)
    mixing = _mixing(16, rng)
    x, y = _activations(40, mixing, rng, shift=0.1), _activations(300, mixing, rng)
    expected = fid_score.calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0),
                                                    np.cov(y, rowvar=False))
    assert float(frechet_distance_torch(torch.from_numpy(x), (y.mean(0), np.cov(y, rowvar=False)))) == \
        pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [10, 64, 300])
def test_every_form_of_reference_gives_the_same_value(n):
    # n < d: singular covariance (the factor has rank n - 1); n = d; n > d: full rank.
    rng = np.random.default_rng(n)
    d = 64
    y = rng.standard_normal((n, d)) @ _mixing(d, rng) + 1.0
    x = torch.from_numpy(rng.standard_normal((12, d)))
    stats = FeatureStats.from_features(y)
    expected = frechet_distance(FeatureStats.from_features(x.numpy()), stats)
    forms = [stats, FrechetReference.from_stats(stats), (stats.mean, stats.cov), (torch.from_numpy(stats.mean),
             torch.from_numpy(stats.cov)), FrechetReference.from_features(y), FrechetReference.from_features(
             torch.from_numpy(y)), torch.from_numpy(y)]
    for form in forms:
        assert float(frechet_distance_torch(x, form)) == pytest.approx(expected, rel=1e-9), type(form)
    assert FrechetReference.from_stats(stats).factor.shape[1] == min(n - 1, d)


def test_reference_from_features_stores_centred_features_below_dim_and_a_factor_above():
    rng = np.random.default_rng(0)
    small = FrechetReference.from_features(rng.standard_normal((20, 64)))
    large = FrechetReference.from_features(rng.standard_normal((200, 64)))
    assert small.factor.shape == (64, 20) and large.factor.shape == (64, 64)
    assert (small.rank, large.rank) == (19, 64)  # centred: n - 1
    assert small.dtype == large.dtype == torch.float64 and small.n == 20


def test_reference_to_converts_dtype_and_keeps_the_value():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((100, 8)) * 3
    x = torch.from_numpy(rng.standard_normal((10, 8)))
    ref = FrechetReference.from_features(y)
    ref32 = ref.to("cpu", torch.float32)
    assert ref.to("cpu") is ref
    assert ref32.factor.dtype == ref32.mean.dtype == ref32.trace.dtype == torch.float32
    got = frechet_distance_torch(x.float(), ref32, dtype=torch.float32)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(frechet_distance_torch(x, ref)), rel=1e-4)


def test_zero_reference_covariance_gives_a_plain_mean_distance():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 5))
    mu = np.ones(5)
    ref = FrechetReference.from_moments(mu, np.zeros((5, 5)))
    assert ref.factor.shape == (5, 0)
    xt = torch.from_numpy(x).requires_grad_()
    got = frechet_distance_torch(xt, ref)
    assert got.item() == pytest.approx(np.sum((x.mean(0) - mu) ** 2) + np.trace(np.cov(x, rowvar=False)), rel=1e-12)
    got.backward()
    assert torch.isfinite(xt.grad).all()


# gradients -------------------------------------------------------------------------------------------------

def _spd(d, rng):
    return np.cov(rng.standard_normal((5 * d, d)) @ rng.standard_normal((d, d)), rowvar=False) + 0.1 * np.eye(d)


@pytest.mark.parametrize("b", [4, 10])  # b <= d: centred batch of rank b - 1; b > d: full-rank S_x
def test_gradcheck_against_a_reference_covariance(b):
    rng = np.random.default_rng(b)
    ref = FrechetReference.from_moments(rng.standard_normal(6), _spd(6, rng))
    x = torch.from_numpy(rng.standard_normal((b, 6))).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: frechet_distance_torch(t, ref), (x,))


@pytest.mark.parametrize("b_x,b_y", [(4, 5), (9, 11), (3, 3)])
def test_gradcheck_two_batches_flows_to_both(b_x, b_y):
    rng = np.random.default_rng(b_x * b_y)
    x = torch.from_numpy(rng.standard_normal((b_x, 6))).requires_grad_()
    y = torch.from_numpy(rng.standard_normal((b_y, 6)) * 1.5 + 0.3).requires_grad_()
    assert torch.autograd.gradcheck(frechet_distance_torch, (x, y))


@pytest.mark.parametrize("shape", [(4, 7), (7, 4), (5, 5)])
def test_gradcheck_nuclear_norm(shape):
    a = torch.from_numpy(np.random.default_rng(sum(shape)).standard_normal(shape)).requires_grad_()
    assert torch.autograd.gradcheck(nuclear_norm, (a,))
    assert nuclear_norm(a).item() == pytest.approx(torch.linalg.svdvals(a).sum().item(), rel=1e-12)


def test_nuclear_norm_rank_bound_ignores_the_smallest_singular_values():
    rng = np.random.default_rng(12)
    u, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    v, _ = np.linalg.qr(rng.standard_normal((8, 5)))
    a = torch.from_numpy((u * [5.0, 4.0, 3.0, 2.0, 1e-3]) @ v.T)
    assert float(nuclear_norm(a)) == pytest.approx(14.001, rel=1e-12)
    assert float(nuclear_norm(a, rank=4)) == pytest.approx(14.0, rel=1e-12)
    assert float(nuclear_norm(a.T, rank=2)) == pytest.approx(9.0, rel=1e-12)
    assert float(nuclear_norm(a, rank=0)) == 0.0


def _dense_fd(x, mu_r, root_r, trace_r):
    """Textbook FD with autograd through ``eigvalsh(S_r^1/2 S_x S_r^1/2)``: stable only when S_x is full rank."""
    mu = x.mean(0)
    s_x = torch.cov(x.T)
    eig = torch.linalg.eigvalsh(root_r @ s_x @ root_r)
    return (mu - mu_r) @ (mu - mu_r) + torch.trace(s_x) + trace_r - 2 * eig.sqrt().sum()


def test_gradient_equals_dense_autograd_when_batch_is_full_rank():
    rng = np.random.default_rng(3)
    d = 8
    mu_r, cov_r = torch.from_numpy(rng.standard_normal(d)), torch.from_numpy(_spd(d, rng))
    w, v = torch.linalg.eigh(cov_r)
    root_r = (v * w.sqrt()) @ v.T
    x = torch.from_numpy(rng.standard_normal((30, d)) * 2).requires_grad_()
    ours = frechet_distance_torch(x, (mu_r, cov_r))
    (g_ours,) = torch.autograd.grad(ours, x)
    dense = _dense_fd(x, mu_r, root_r, torch.trace(cov_r))
    (g_dense,) = torch.autograd.grad(dense, x)
    assert ours.item() == pytest.approx(dense.item(), rel=1e-10)
    torch.testing.assert_close(g_ours, g_dense, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("two_batches", [False, True])
def test_gradient_equals_svd_autograd_for_rank_deficient_batches(two_batches):
    # b <= d: S_x is singular and the dense route divides by zero; autograd through torch's singular values of
    # Xc F is an independent route (its backward U V^T includes the centring direction, which centring removes).
    rng = np.random.default_rng(4)
    d, b = 10, 5
    x = torch.from_numpy(rng.standard_normal((b, d))).requires_grad_()
    y = torch.from_numpy(rng.standard_normal((7, d)) * 1.3).requires_grad_()
    if two_batches:
        reference, factor, mu_r, trace_r = y, (y - y.mean(0)).T / math.sqrt(6), y.mean(0), torch.cov(y.T).trace()
    else:
        cov = torch.from_numpy(_spd(d, rng))
        mu_r = torch.from_numpy(rng.standard_normal(d))
        reference, factor, trace_r = (mu_r, cov), torch.linalg.cholesky(cov), torch.trace(cov)
    xc = x - x.mean(0)
    svd_route = ((x.mean(0) - mu_r) ** 2).sum() + torch.cov(x.T).trace() + trace_r \
        - 2 * torch.linalg.svdvals(xc @ factor / math.sqrt(b - 1)).sum()
    ours = frechet_distance_torch(x, reference)
    inputs = (x, y) if two_batches else (x,)
    for g_ours, g_svd in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(svd_route, inputs)):
        torch.testing.assert_close(g_ours, g_svd, rtol=1e-8, atol=1e-10)


def test_gradcheck_at_repeated_singular_values():
    # The 4 vertices of a regular tetrahedron: the centred batch has rank b - 1 = 3 with one singular value
    # repeated three times (S_x is a multiple of the identity on the first 3 axes); eigenvector-based
    # autograd divides by the zero eigenvalue gaps there.
    tetra = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64)
    x = torch.from_numpy(np.hstack([tetra, np.zeros((4, 2))]) + 0.5).requires_grad_()
    ref = FrechetReference.from_moments(np.zeros(5), np.diag([1.0, 1.0, 1.0, 2.0, 3.0]))
    s = torch.linalg.svdvals((x - x.mean(0)).detach())
    assert s[0] == pytest.approx(float(s[2]), rel=1e-12)
    assert torch.autograd.gradcheck(lambda t: frechet_distance_torch(t, ref), (x,))


def test_batch_of_two_matches_its_closed_form_and_gradient():
    # b = 2: S_x = v v^T / 2 with v = x1 - x2, so tr sqrt(S_x S_r) = sqrt(v^T S_r v / 2).
    rng = np.random.default_rng(5)
    d = 12
    mu_r, cov_r = torch.from_numpy(rng.standard_normal(d)), torch.from_numpy(_spd(d, rng))
    x = torch.from_numpy(rng.standard_normal((2, d))).requires_grad_()
    v = x[0] - x[1]
    mean = x.mean(0)
    closed = (mean - mu_r) @ (mean - mu_r) + v @ v / 2 + torch.trace(cov_r) - 2 * torch.sqrt(v @ cov_r @ v / 2)
    ours = frechet_distance_torch(x, (mu_r, cov_r))
    assert ours.item() == pytest.approx(closed.item(), rel=1e-12)
    torch.testing.assert_close(torch.autograd.grad(ours, x)[0], torch.autograd.grad(closed, x)[0],
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("duplicate", ["two rows", "all rows"])
def test_duplicated_rows_give_finite_gradients_and_the_exact_value(duplicate):
    rng = np.random.default_rng(6)
    d = 8
    x_np = rng.standard_normal((5, d))
    if duplicate == "two rows":
        x_np[1] = x_np[0]
    else:
        x_np[:] = x_np[0]
    y = rng.standard_normal((40, d)) @ _mixing(d, rng)
    stats = FeatureStats.from_features(y)
    for reference in (FrechetReference.from_stats(stats), torch.from_numpy(y)):
        x = torch.from_numpy(x_np.copy()).requires_grad_()
        value = frechet_distance_torch(x, reference)
        value.backward()
        assert torch.isfinite(x.grad).all()
        assert value.item() == pytest.approx(frechet_distance(FeatureStats.from_features(x_np), stats), rel=1e-9)


def test_float32_features_get_float32_gradients_from_a_float64_computation():
    rng = np.random.default_rng(8)
    ref = FrechetReference.from_features(rng.standard_normal((50, 6)))
    x64 = torch.from_numpy(rng.standard_normal((7, 6))).requires_grad_()
    x32 = x64.detach().float().requires_grad_()
    v32, v64 = frechet_distance_torch(x32, ref), frechet_distance_torch(x64, ref)
    assert v32.dtype == torch.float64
    v32.backward()
    v64.backward()
    assert x32.grad.dtype == torch.float32
    torch.testing.assert_close(x32.grad, x64.grad.float(), rtol=1e-5, atol=1e-6)


def test_gradient_descent_toward_the_reference_lowers_the_distance_monotonically():
    rng = np.random.default_rng(9)
    d, b = 16, 32
    y = rng.standard_normal((2000, d)) @ _mixing(d, rng) * 3 + 1.0
    ref = FrechetReference.from_features(y)
    x = torch.from_numpy(rng.standard_normal((b, d)) * 0.2).requires_grad_()
    values = []
    for _ in range(25):
        value = frechet_distance_torch(x, ref)
        values.append(value.item())
        (grad,) = torch.autograd.grad(value, x)
        with torch.no_grad():
            x -= 0.25 * (b - 1) * grad  # the quadratic part's curvature is 2 / (b - 1)
    assert all(later < earlier for earlier, later in zip(values, values[1:]))
    assert values[-1] < 0.1 * values[0]


# KID -------------------------------------------------------------------------------------------------------

def _brute_force_mmd2(x, y, degree=3, gamma=None, coef0=1.0):
    gamma = 1.0 / len(x[0]) if gamma is None else gamma

    def k(u, v):
        return (gamma * math.fsum(a * b for a, b in zip(u, v)) + coef0) ** degree

    def within(s):
        return math.fsum(k(s[i], s[j]) for i, j in itertools.permutations(range(len(s)), 2)) / (len(s) * (len(s) - 1))

    cross = math.fsum(k(u, v) for u in x for v in y) / (len(x) * len(y))
    return within(x) + within(y) - 2 * cross


@pytest.mark.parametrize("b_x,b_y,kwargs", [(12, 12, {}), (9, 14, {}), (10, 10, {"degree": 2, "gamma": 0.3,
                                                                                   "coef0": 0.5}), (2, 2, {})])
def test_kid_equals_brute_force_mmd2(b_x, b_y, kwargs):
    rng = np.random.default_rng(b_x + b_y)
    x, y = rng.standard_normal((b_x, 5)) + 0.3, rng.standard_normal((b_y, 5)) * 1.2
    got = kid_torch(torch.from_numpy(x), torch.from_numpy(y), **kwargs)
    assert float(got) == pytest.approx(_brute_force_mmd2(x.tolist(), y.tolist(), **kwargs), rel=1e-10, abs=1e-12)


def test_kid_equals_fidkit_kid_on_one_subset_of_the_whole_batch():
    rng = np.random.default_rng(10)
    x, y = np.abs(rng.standard_normal((64, 2048))), np.abs(rng.standard_normal((64, 2048))) * 1.1
    expected = kernel_inception_distance(x, y, subsets=1, subset_size=64).mean  # the subset is a permutation
    assert float(kid_torch(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(expected, rel=1e-10)


def test_kid_gradcheck_on_both_batches():
    rng = np.random.default_rng(11)
    x = torch.from_numpy(rng.standard_normal((5, 4))).requires_grad_()
    y = torch.from_numpy(rng.standard_normal((6, 4)) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(kid_torch, (x, y))


# errors ----------------------------------------------------------------------------------------------------

def test_a_single_sample_is_refused():
    ref = FrechetReference.from_features(np.random.default_rng(0).standard_normal((10, 4)))
    with pytest.raises(BadInputError, match="features has 1 sample.*at least 2"):
        frechet_distance_torch(torch.zeros(1, 4), ref)
    with pytest.raises(BadInputError, match="reference has 1 sample"):
        frechet_distance_torch(torch.zeros(3, 4), torch.zeros(1, 4))
    with pytest.raises(BadInputError, match="y has 1 sample"):
        kid_torch(torch.zeros(3, 4), torch.zeros(1, 4))


def test_dimension_mismatch_names_both_dimensions():
    ref = FrechetReference.from_features(np.random.default_rng(0).standard_normal((10, 4)))
    with pytest.raises(BadInputError, match="features 5, the reference 4"):
        frechet_distance_torch(torch.zeros(3, 5), ref)
    with pytest.raises(BadInputError, match="features 5, the reference 4"):
        frechet_distance_torch(torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(BadInputError, match="x 5, y 4"):
        kid_torch(torch.zeros(3, 5), torch.zeros(3, 4))


def test_bad_inputs_are_refused_with_their_name():
    ref = FrechetReference.from_features(np.random.default_rng(0).standard_normal((10, 4)))
    with pytest.raises(BadInputError, match="features must be a 2-D tensor"):
        frechet_distance_torch(torch.zeros(4), ref)
    with pytest.raises(BadInputError, match="features contains NaN"):
        frechet_distance_torch(torch.full((3, 4), float("nan")), ref)
    with pytest.raises(BadInputError, match="not positive semi-definite"):
        FrechetReference.from_moments(np.zeros(2), np.array([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(BadInputError, match="does not match mean"):
        FrechetReference.from_moments(np.zeros(3), np.eye(2))
    with pytest.raises(BadInputError, match="reference must be"):
        frechet_distance_torch(torch.zeros(3, 4), "stats.npz")
    with pytest.raises(BadInputError, match="gamma must be positive"):
        kid_torch(torch.zeros(3, 4), torch.zeros(3, 4), gamma=0.0)
