"""Preprocessing modes: uint8 RGB image -> normalised network input.

A mode is a named, recorded choice (it is part of provenance):

``tf`` (default)
    The reference graph's own TF1 bilinear resize on [0, 255] floats, then
    ``(x - 128) / 128``.  What TTUR, ADM, StyleGAN and torch-fidelity compute,
    and therefore what published FIDs use.
``clean``
    clean-fid's PIL bicubic resize on float32 channels (anti-aliased, no
    re-quantisation), then ``(x - 128) / 128``.
``pytorch``
    pytorch-fid's ``x / 255``, ``F.interpolate`` bilinear, then ``2x - 1``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch

from .errors import BadInputError
from .features.inception import INPUT_SIZE
from .resize import resize_pil_bicubic_float, resize_tf1_bilinear, resize_torch_bilinear


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    summary: str
    #: uint8 ``H x W x 3`` numpy image -> float32 ``3 x 299 x 299`` tensor in [-1, 1]
    prepare: Callable[[np.ndarray], torch.Tensor]


def _chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _prepare_tf(img: np.ndarray) -> torch.Tensor:
    x = _chw(img).to(torch.float32)[None]
    return ((resize_tf1_bilinear(x, INPUT_SIZE) - 128) / 128)[0]


def _prepare_clean(img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(resize_pil_bicubic_float(img, INPUT_SIZE).transpose(2, 0, 1).copy())
    return (x - 128) / 128


def _prepare_pytorch(img: np.ndarray) -> torch.Tensor:
    x = _chw(img).to(torch.float32)[None] / 255
    return (2 * resize_torch_bilinear(x, INPUT_SIZE) - 1)[0]


MODES: dict[str, Mode] = {
    "tf": Mode("tf", "TF1 bilinear resize as in the reference TF graph (TTUR, ADM, StyleGAN, torch-fidelity)",
               _prepare_tf),
    "clean": Mode("clean", "clean-fid: PIL bicubic on float32 channels, anti-aliased", _prepare_clean),
    "pytorch": Mode("pytorch", "pytorch-fid: F.interpolate bilinear without anti-aliasing", _prepare_pytorch),
}
DEFAULT_MODE = "tf"


def get_mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise BadInputError(f"unknown mode {name!r}; choose one of {', '.join(MODES)}") from None
