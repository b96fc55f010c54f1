"""Resizing to the network's 299 x 299 input, one function per reference protocol.

The resize is part of the metric: the same images and weights give FIDs that
differ by 1-10% across resize filters (clean-fid's study; REFERENCE.md §3).
Each function takes float32 ``N x C x H x W`` pixel values and returns
``N x C x size x size``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def resize_tf1_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1.x ``ResizeBilinear`` (``align_corners=False``, no half-pixel centres).

    The reference FID graph resizes with this op.  Output pixel ``i`` samples the
    input at ``i * in/out``; the lerp is done first along rows and then along
    columns in float32 with TF's ``a + (b - a) * t`` form, which reproduces the
    TF kernel and torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x``.
    """
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    y_lo, y_hi, dy = _tf1_grid(h, size, x.device)
    x_lo, x_hi, dx = _tf1_grid(w, size, x.device)
    left, right = x[..., x_lo], x[..., x_hi]
    rows = left + (right - left) * dx
    top, bottom = rows[..., y_lo, :], rows[..., y_hi, :]
    return top + (bottom - top) * dy.view(-1, 1)


def _tf1_grid(n_in: int, n_out: int, device):
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    src = torch.arange(n_out, dtype=torch.float32) * scale
    lo = src.long()
    hi = (lo + 1).clamp_max(n_in - 1)
    frac = src - lo.float()
    return lo.to(device), hi.to(device), frac.to(device)


def resize_pil_bicubic_float(img: np.ndarray, size: int) -> np.ndarray:
    """clean-fid's ``clean`` resize: PIL bicubic on each channel as a float32 image, clipped to [0, 255].

    Input ``H x W x C`` uint8; output ``size x size x C`` float32, not quantised.
    PIL's bicubic filter widens its support when downsampling, so it is
    anti-aliased (unlike TF1 or ``F.interpolate`` bilinear).
    """
    channels = [np.asarray(Image.fromarray(img[:, :, c].astype(np.float32))  # float32 -> mode "F"
                           .resize((size, size), resample=Image.BICUBIC))
                for c in range(img.shape[2])]
    return np.clip(np.stack(channels, axis=2), 0, 255)


def resize_torch_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """pytorch-fid's resize: ``F.interpolate(bilinear, align_corners=False)``, no anti-aliasing."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
