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
    #: uint8 ``N x 3 x H x W`` tensor (any device) -> float32 ``N x 3 x 299 x 299`` in [-1, 1], or ``None``
    #: when the resize exists only per image on the CPU (``clean``: PIL).
    prepare_batch: Callable[[torch.Tensor], torch.Tensor] | None
    #: uint8 ``H x W x 3`` numpy image -> float32 ``3 x 299 x 299`` tensor, when ``prepare_batch`` is None
    prepare_image: Callable[[np.ndarray], torch.Tensor] | None = None

    def prepare(self, img: np.ndarray) -> torch.Tensor:
        """One uint8 ``H x W x 3`` image -> float32 ``3 x 299 x 299`` network input."""
        if self.prepare_batch is None:
            return self.prepare_image(img)
        return self.prepare_batch(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None])[0]

    def prepare_many(self, batch: torch.Tensor) -> torch.Tensor:
        """A uint8 ``N x 3 x H x W`` batch -> network input, on the batch's device where the mode allows.

        Equal, sample by sample, to :meth:`prepare` on each image: the same operations in the same order.
        """
        if self.prepare_batch is not None:
            return self.prepare_batch(batch)
        images = batch.permute(0, 2, 3, 1).cpu().numpy()
        return torch.stack([self.prepare_image(img) for img in images]).to(batch.device)


def _batch_tf(x: torch.Tensor) -> torch.Tensor:
    return (resize_tf1_bilinear(x.to(torch.float32), INPUT_SIZE) - 128) / 128


def _image_clean(img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(resize_pil_bicubic_float(img, INPUT_SIZE).transpose(2, 0, 1).copy())
    return (x - 128) / 128


def _batch_pytorch(x: torch.Tensor) -> torch.Tensor:
    return 2 * resize_torch_bilinear(x.to(torch.float32) / 255, INPUT_SIZE) - 1


MODES: dict[str, Mode] = {
    "tf": Mode("tf", "TF1 bilinear resize as in the reference TF graph (TTUR, ADM, StyleGAN, torch-fidelity)",
               _batch_tf),
    "clean": Mode("clean", "clean-fid: PIL bicubic on float32 channels, anti-aliased", None, _image_clean),
    "pytorch": Mode("pytorch", "pytorch-fid: F.interpolate bilinear without anti-aliasing", _batch_pytorch),
}
DEFAULT_MODE = "tf"


def get_mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise BadInputError(f"unknown mode {name!r}; choose one of {', '.join(MODES)}") from None
