"""The network: features equal torch-fidelity's and pytorch-fid's under the same weights."""

import numpy as np
import pytest
import torch

from fidkit.errors import WeightsUnavailableError
from fidkit.extractors.runtime import InceptionExtractor
from fidkit.extractors.inception import FIDInceptionV3, load_state_dict_published
from fidkit.extractors.inception import MODES
from fidkit.testing import random_inception_state_dict

from helpers import smooth_images

torch_fidelity = pytest.importorskip("torch_fidelity")
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # noqa: E402


@pytest.fixture(scope="module")
def reference(weights):
    return FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                       feature_extractor_weights_path=weights)


@pytest.fixture(scope="module")
def extractor(weights):
    return InceptionExtractor(weights, "cpu")


def _tf_batch(images):
    return torch.stack([MODES["tf"].prepare(img) for img in images])


@pytest.mark.parity
@pytest.mark.parametrize("size", [32, 64, 256, 512])
def test_pool3_and_logits_equal_torch_fidelity(reference, extractor, size):
    images = smooth_images(2, size, seed=size)
    ref_pool, ref_logits = reference(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    out = extractor(_tf_batch(images), ("pool3", "logits_unbiased"))
    assert out["pool3"].shape == (2, 2048)
    assert ref_pool.abs().mean() > 0.1  # the random network produces non-trivial features
    assert (out["pool3"] - ref_pool).abs().max() < 1e-4
    assert (out["logits_unbiased"] - ref_logits).abs().max() < 1e-3 * ref_logits.abs().max()


@pytest.mark.parity
def test_non_square_images_equal_torch_fidelity(reference, extractor):
    images = smooth_images(2, (40, 72), seed=7)
    ref_pool, _ = reference(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    assert (extractor(_tf_batch(images))["pool3"] - ref_pool).abs().max() < 1e-4


@pytest.mark.parity
def test_spatial_tap_is_mixed_6d_branch1x1_first_7_channels(reference, extractor):
    images = smooth_images(2, 64, seed=3)
    captured = {}
    hook = reference.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
    reference(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    hook.remove()
    expected = captured["x"][:, :7].permute(0, 2, 3, 1).reshape(2, -1)  # ADM's NHWC flattening
    out = extractor(_tf_batch(images), ("spatial", "pool3"))
    assert out["spatial"].shape == (2, 2023)
    assert (out["spatial"] - expected).abs().max() < 1e-4


@pytest.mark.slow
def test_one_forward_serves_all_taps(extractor):
    batch = _tf_batch(smooth_images(2, 64, seed=4))
    together = extractor(batch, ("pool3", "logits_unbiased", "spatial"))
    assert (together["pool3"] - extractor(batch, ("pool3",))["pool3"]).abs().max() == 0
    assert (together["spatial"] - extractor(batch, ("spatial",))["spatial"]).abs().max() == 0


@pytest.mark.slow
def test_folded_batchnorm_equals_unfolded():
    net = FIDInceptionV3()
    load_state_dict_published(net, random_inception_state_dict(1), "random")
    net.eval()
    x = torch.rand(2, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        before = net(x, ("pool3",))["pool3"]
        after = net.fold_batchnorm()(x, ("pool3",))["pool3"]
    assert (before - after).abs().max() < 1e-4


@pytest.mark.parity
def test_loads_pytorch_fid_layout_and_equals_its_features(weights, extractor, monkeypatch):
    pytorch_fid_inception = pytest.importorskip("pytorch_fid.inception")
    state = torch.load(weights, weights_only=True)
    monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: state)
    ref = pytorch_fid_inception.InceptionV3([3]).eval()  # loads strictly: proves the layout matches
    images = smooth_images(2, 64, seed=5)
    with torch.no_grad():
        expected = ref(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)[0].squeeze(-1).squeeze(-1)
    out = extractor(torch.stack([MODES["pytorch"].prepare(i) for i in images]))["pool3"]
    assert (out - expected).abs().max() < 1e-4


def test_wrong_layout_is_refused_with_file_name():
    net = FIDInceptionV3()
    state = random_inception_state_dict(0)
    del state["fc.weight"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsUnavailableError, match=r"somefile\.pth.*missing: fc\.weight.*unexpected: extra"):
        load_state_dict_published(net, state, "somefile.pth")


@pytest.mark.slow
def test_features_do_not_need_grad(extractor):
    out = extractor(_tf_batch(smooth_images(1, 32, seed=0)))["pool3"]
    assert not out.requires_grad
    assert np.isfinite(out.numpy()).all()


def test_unusable_device_is_a_clear_error(weights):
    from fidkit.errors import BadInputError
    with pytest.raises(BadInputError, match="not a torch device"):
        InceptionExtractor.get(weights, "gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(BadInputError, match="CUDA is not available"):
            InceptionExtractor.get(weights, "cuda")
