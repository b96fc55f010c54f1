"""DifferentiableFID: the value of fidkit's exact FID on the same features, and a gradient that is right.

The network runs with random weights in the published format (``weights``
fixture).  Expected values come from the non-differentiable pipeline
(``fidkit.Extractor`` on uint8 images, float64 ``frechet_distance``) and from
finite differences.
"""

import dataclasses

import numpy as np
import pytest
import torch

import fidkit
from fidkit.differentiable import DifferentiableFID
from fidkit.extractors import Extractor, get_spec
from fidkit.metrics.frechet import frechet_distance_from_moments

from helpers import smooth_images

pytestmark = pytest.mark.slow  # every test runs the Inception network, most with gradients


@pytest.fixture(scope="module")
def reference_images():
    return smooth_images(24, 40, seed=11)


@pytest.fixture(scope="module")
def reference(weights, reference_images, tmp_path_factory):
    ref = fidkit.compute_reference(reference_images, weights=weights, device="cpu", spatial=False)
    path = tmp_path_factory.mktemp("dfid") / "ref.npz"
    ref.save(path)
    return path


def _batch(n=4, seed=3):
    u8 = smooth_images(n, 40, seed=seed)                      # N x H x W x 3 uint8
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255, u8


@pytest.mark.parametrize("mode", ["tf", "pytorch"])
def test_value_equals_the_exact_fid_of_the_same_images(weights, reference, mode, tmp_path, reference_images):
    ref = fidkit.compute_reference(reference_images, weights=weights, device="cpu", spatial=False, mode=mode)
    ref.save(tmp_path / "ref.npz")
    dfid = DifferentiableFID(tmp_path / "ref.npz", mode=mode, weights=weights, device="cpu")
    images, u8 = _batch(5)
    value = dfid(images)
    assert value.ndim == 0 and value.dtype == torch.float64
    # independent path: uint8 images through the inference pipeline, float64 exact Fréchet distance
    ext = Extractor.get("inception", weights, "cpu")
    prep = get_spec("inception").variant(mode)
    feats = ext(prep.prepare_many(torch.from_numpy(u8).permute(0, 3, 1, 2)))["pool3"].double().numpy()
    r = ref.stats["inception/pool3"]
    expected = frechet_distance_from_moments(feats.mean(0), np.cov(feats, rowvar=False), r.mean, r.cov)
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_reference_given_as_images_equals_reference_file(weights, reference, reference_images):
    images, _ = _batch(4)
    a = DifferentiableFID(reference, weights=weights, device="cpu")(images)
    b = DifferentiableFID(reference_images, weights=weights, device="cpu")(images)
    assert float(a) == pytest.approx(float(b), rel=1e-9)


def test_gradient_is_the_chain_rule_of_an_exact_feature_gradient(weights, reference):
    """The network is piecewise linear (ReLU, max-pool, bilinear resize) in float32: finite differences through it
    measure kinks and rounding, not the gradient.  So the check is split where it can be exact: the gradient of the
    Fréchet distance w.r.t. the 2048-d features (b = 4 < d: the rank-deficient case) against central differences
    of fidkit's independent float64 numpy implementation, and the image gradient against autograd's
    vector-Jacobian product of the network with that feature gradient."""
    dfid = DifferentiableFID(reference, weights=weights, device="cpu")
    images, _ = _batch(4, seed=5)
    x = images.clone().requires_grad_(True)
    dfid(x).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    feats = dfid.features(images.clone().requires_grad_(True))
    f = feats.detach().double().requires_grad_(True)
    (gf,) = torch.autograd.grad(fidkit.frechet_distance_torch(f, dfid.reference_stats), f)
    r = dfid.reference_stats

    def exact(a: np.ndarray) -> float:
        return frechet_distance_from_moments(a.mean(0), np.cov(a, rowvar=False), r.mean, r.cov)

    rng = np.random.default_rng(0)
    base = f.detach().numpy()
    for _ in range(3):
        u = rng.standard_normal(base.shape)
        eps = 1e-4 * np.abs(base).mean()
        numeric = (exact(base + eps * u) - exact(base - eps * u)) / (2 * eps)
        assert float((gf * torch.from_numpy(u)).sum()) == pytest.approx(numeric, rel=1e-5, abs=1e-8)

    y = images.clone().requires_grad_(True)
    (g_images,) = torch.autograd.grad(dfid.features(y), y, grad_outputs=gf.float())
    torch.testing.assert_close(g_images, x.grad, rtol=1e-4, atol=1e-7)


def test_checkpointing_gives_the_same_value_and_gradient(weights, reference):
    images, _ = _batch(5, seed=8)
    grads, values = [], []
    for ckpt in (False, True, 2):                          # 2: chunks of 2, 2 and 1 images
        dfid = DifferentiableFID(reference, weights=weights, device="cpu", checkpointing=ckpt)
        x = images.clone().requires_grad_(True)
        v = dfid(x)
        v.backward()
        values.append(v.item())
        grads.append(x.grad)
    for v, g in zip(values[1:], grads[1:]):
        assert v == pytest.approx(values[0], rel=1e-9)
        torch.testing.assert_close(g, grads[0], rtol=1e-5, atol=1e-9)
    with pytest.raises(fidkit.BadInputError, match="checkpointing"):
        DifferentiableFID(reference, weights=weights, device="cpu", checkpointing=0)


def test_value_range_is_applied(weights, reference):
    images, _ = _batch(3, seed=9)
    a = DifferentiableFID(reference, weights=weights, device="cpu")(images)
    b = DifferentiableFID(reference, weights=weights, device="cpu", value_range=(-1, 1))(images * 2 - 1)
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_refusals(weights, reference):
    with pytest.raises(fidkit.BadInputError, match="no gradient"):
        DifferentiableFID(reference, mode="clean", weights=weights, device="cpu")
    dfid = DifferentiableFID(reference, weights=weights, device="cpu")
    images, u8 = _batch(3)
    with pytest.raises(fidkit.BadInputError, match="no gradient"):
        dfid(torch.from_numpy(u8).permute(0, 3, 1, 2))
    with pytest.raises(fidkit.BadInputError, match="far outside"):
        dfid(images * 255)
    with pytest.raises(fidkit.BadInputError, match="N x 3 x H x W"):
        dfid(images[:, :1])
    with pytest.raises(fidkit.BadInputError):
        dfid(images[:1])                                          # one sample has no covariance
    with pytest.warns(fidkit.FidkitWarning, match="outside the declared"):
        dfid(images * 1.05)


def test_statistics_of_another_preprocessing_are_refused(weights, reference_images, tmp_path):
    ref = fidkit.compute_reference(reference_images, weights=weights, device="cpu", spatial=False, mode="pytorch")
    ref.save(tmp_path / "pytorch.npz")
    with pytest.raises(fidkit.IncomparableStatsError, match="preprocessing"):
        DifferentiableFID(tmp_path / "pytorch.npz", mode="tf", weights=weights, device="cpu")
    # without a mode, the one the statistics record (as evaluate() does)
    assert DifferentiableFID(tmp_path / "pytorch.npz", weights=weights, device="cpu").preprocessing.name == "pytorch"
    ref.stats["inception/pool3"].provenance = dataclasses.replace(ref.stats["inception/pool3"].provenance,
                                                                  mode="clean")
    ref.save(tmp_path / "clean.npz")
    with pytest.raises(fidkit.BadInputError, match="no gradient"):
        DifferentiableFID(tmp_path / "clean.npz", weights=weights, device="cpu")


def test_descent_lowers_the_batch_fid(weights, reference):
    """A few steps of gradient descent on the pixels lower the differentiable FID (the use case)."""
    dfid = DifferentiableFID(reference, weights=weights, device="cpu")
    images, _ = _batch(4, seed=21)
    x = torch.logit(images.clamp(0.02, 0.98)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.05)
    values = []
    for _ in range(4):
        opt.zero_grad()
        loss = dfid(torch.sigmoid(x))
        loss.backward()
        opt.step()
        values.append(loss.item())
    assert values[-1] < values[0]
    assert np.all(np.isfinite(values))


def test_other_feature_spaces_with_a_torch_preprocessing(dinov2_weights, reference_images, tmp_path):
    """DINOv2 with EDM2's batched torch resize is differentiable too; dgm-eval's PIL resize is refused."""
    ref = fidkit.compute_reference(reference_images, extractors="dinov2-vitb14", mode="edm2",
                                   weights={"dinov2-vitb14": dinov2_weights}, device="cpu")
    ref.save(tmp_path / "dino.npz")
    dfid = DifferentiableFID(tmp_path / "dino.npz", extractor="dinov2-vitb14", weights=dinov2_weights, device="cpu")
    assert dfid.preprocessing.name == "edm2"
    images, u8 = _batch(4, seed=6)
    x = images.clone().requires_grad_(True)
    value = dfid(x)
    value.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    ext = Extractor.get("dinov2-vitb14", dinov2_weights, "cpu")
    feats = ext(get_spec("dinov2-vitb14").variant("edm2").prepare_many(
        torch.from_numpy(u8).permute(0, 3, 1, 2)))["cls"].double().numpy()
    r = ref.stats["dinov2-vitb14/cls"]
    expected = frechet_distance_from_moments(feats.mean(0), np.cov(feats, rowvar=False), r.mean, r.cov)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(fidkit.BadInputError, match="no gradient"):
        DifferentiableFID(tmp_path / "dino.npz", extractor="dinov2-vitb14", mode="dgm-eval",
                          weights=dinov2_weights, device="cpu")
