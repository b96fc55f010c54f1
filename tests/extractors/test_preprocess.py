"""Each preprocessing mode equals the reference library's resize and normalisation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fidkit.errors import BadInputError
from fidkit.extractors.inception import MODES
from fidkit.extractors import get_spec
from fidkit.extractors.resize import resize_tf1_bilinear

from helpers import smooth_images

SIZES = [(32, 32), (64, 64), (256, 256), (512, 512), (40, 72), (299, 299), (300, 301)]


@pytest.mark.parity
@pytest.mark.parametrize("hw", SIZES)
def test_tf_mode_equals_torch_fidelity_resize(hw):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
    img = smooth_images(1, hw, seed=hw[0])[0]
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    expected = (interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False) - 128) / 128
    got = MODES["tf"].prepare(img)
    assert got.shape == (3, 299, 299)
    assert (got - expected[0]).abs().max() <= 1e-6


@pytest.mark.parity
@pytest.mark.parametrize("hw", SIZES)
def test_clean_mode_equals_clean_fid_resizer(hw):
    cleanfid_resize = pytest.importorskip("cleanfid.resize")
    img = smooth_images(1, hw, seed=hw[1])[0]
    expected = cleanfid_resize.make_resizer("PIL", False, "bicubic", (299, 299))(img)  # HWC float32 [0, 255]
    got = MODES["clean"].prepare(img) * 128 + 128
    assert np.abs(got.permute(1, 2, 0).numpy() - expected).max() <= 1e-4


@pytest.mark.parity
@pytest.mark.parametrize("hw", SIZES)
def test_pytorch_mode_equals_pytorch_fid_input(hw):
    img = smooth_images(1, hw, seed=3)[0]
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255  # torchvision ToTensor
    expected = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
    assert (MODES["pytorch"].prepare(img) - expected[0]).abs().max() <= 1e-6


def test_tf_resize_brute_force_on_tiny_input():
    # TF1 ResizeBilinear without half-pixel centres: out[i] samples in[i * in / out].
    x = torch.arange(12, dtype=torch.float32).reshape(1, 1, 3, 4) ** 2
    out = resize_tf1_bilinear(x, 5)
    for i in range(5):
        for j in range(5):
            sy, sx = i * 3 / 5, j * 4 / 5
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, 2), min(x0 + 1, 3)
            fy, fx = sy - y0, sx - x0
            top = x[0, 0, y0, x0] * (1 - fx) + x[0, 0, y0, x1] * fx
            bottom = x[0, 0, y1, x0] * (1 - fx) + x[0, 0, y1, x1] * fx
            assert abs(out[0, 0, i, j] - (top * (1 - fy) + bottom * fy)) < 1e-4


def test_modes_differ_from_each_other():
    img = smooth_images(1, 64, seed=9)[0]
    tf, clean, pt = (MODES[m].prepare(img) for m in ("tf", "clean", "pytorch"))
    assert (tf - clean).abs().max() > 1e-3
    assert (tf - pt).abs().max() > 1e-3


def test_unknown_mode_is_an_error():
    with pytest.raises(BadInputError, match="unknown preprocessing 'bicubic' for inception"):
        get_spec("inception").variant("bicubic")
