"""Test helpers: generated images and clips, folders of images, random weights of every registered network.

Plain functions, importable from any test (``from helpers import smooth_images``); ``conftest.py`` only turns
some of them into fixtures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fidkit.extractors import specs
from fidkit.testing import write_random_weights


def smooth_images(n: int, size: int | tuple[int, int], seed: int) -> np.ndarray:
    """``n x H x W x 3`` uint8 images with structure at several scales (not white noise)."""
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        noise = rng.integers(-20, 21, (h, w, 3))
        out[i] = np.clip(np.asarray(coarse, dtype=np.int32) + noise, 0, 255)
    return out


def write_folder(root: Path, images: np.ndarray, fmt: str = "png", nested: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        sub = root / f"part{i % 2}" if nested else root
        sub.mkdir(exist_ok=True)
        Image.fromarray(img).save(sub / f"{i:04d}.{fmt}")
    return root


def moving_clips(n: int, frames: int, h: int, w: int, seed: int) -> np.ndarray:
    """``n x frames x h x w x 3`` uint8 clips: a smooth colour field panning at a per-clip speed, plus noise."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, frames, h, w, 3), dtype=np.uint8)
    for i in range(n):
        dy, dx = rng.integers(0, 4, size=2)
        canvas_h, canvas_w = h + frames * 3, w + frames * 3
        canvas = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
                            .resize((canvas_w, canvas_h), Image.BICUBIC), dtype=np.int32)
        for f in range(frames):
            window = canvas[f * dy:f * dy + h, f * dx:f * dx + w]
            out[i, f] = np.clip(window + rng.integers(-20, 21, (h, w, 3)), 0, 255)
    return out


def randomise_i3d(net: torch.nn.Module, seed: int) -> None:
    """Every parameter and BatchNorm statistic of cd-fvd's ``InceptionI3d``, in place, at a scale that keeps
    activations O(1) through the network and makes features differ from clip to clip."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():  # the tensors of the module itself
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("conv3d.weight"):
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5)
            elif name.endswith("bn.weight"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_var"):
                t.copy_(0.2 + 2 * torch.rand(t.shape, generator=g))
            else:  # BatchNorm bias and mean, logits bias
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)


#: Networks of 300M parameters and more: writing, loading and running their random weights takes about a minute
#: on two CPU cores, so tests parametrised over every network mark them ``slow``.  A new network runs in the fast
#: lane unless it is added here.
LARGE_NETWORKS = frozenset({"clip-vitl14-336", "dinov2-vitl14"})
#: Networks whose published-size random weights are not written in tests at all (VideoMAE-v2: 1B parameters, 2 GB
#: in float16, about a minute per clip on two cores); their writers are checked at a reduced width.
TOO_LARGE_TO_RUN = frozenset({"videomae-v2"})


def networks_with_random_weights() -> list:
    """Registered networks whose declaration can write random weights (``ExtractorSpec.random_weights``), as
    pytest parameters (the large ones marked ``slow``)."""
    return [pytest.param(s.name, id=s.name, marks=[pytest.mark.slow] if s.name in LARGE_NETWORKS else [])
            for s in specs() if s.random_weights is not None and s.name not in TOO_LARGE_TO_RUN]


class RandomWeights:
    """Random weights of any registered network, written once per (network, seed) in a session directory.

    ``random_weights("dinov2-vitb14")`` -> the path of a file in the published format and under the published
    file name, written by the network's own ``random_weights`` hook: a new network needs no code here.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self._paths: dict[tuple[str, int], str] = {}

    def __call__(self, network: str, seed: int = 0) -> str:
        from fidkit.extractors import get_spec
        name = get_spec(network).name
        if (name, seed) not in self._paths:
            self._paths[name, seed] = write_random_weights(name, self.root / f"{name}-seed{seed}", seed)
        return self._paths[name, seed]

    def remove(self) -> None:
        for path in self._paths.values():
            Path(path).unlink(missing_ok=True)
        self._paths.clear()
