"""Shared fixtures: random weights in the published format, generated images, an isolated cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fidkit.testing import write_random_inception_weights


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """No test touches the user's cache or the network."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("FIDKIT_CACHE_DIR", str(cache))
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")
    for var in ("FIDKIT_INCEPTION_WEIGHTS", "FIDKIT_DINOV2_VITL14_WEIGHTS", "FIDKIT_DINOV2_VITB14_WEIGHTS",
                "FIDKIT_CLIP_VIT_B_32_WEIGHTS", "FIDKIT_CLIP_VIT_L_14_336PX_WEIGHTS", "FIDKIT_I3D_WEIGHTS",
                "FIDKIT_VIDEOMAE_V2_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    return cache


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> str:
    """Random FID Inception weights with the published file's keys and shapes."""
    return write_random_inception_weights(tmp_path_factory.mktemp("weights") / "random-inception.pth", seed=0)


@pytest.fixture(scope="session")
def dinov2_weights(tmp_path_factory) -> str:
    """Random DINOv2 ViT-B/14 weights in the published layout (the cheaper of the two archs)."""
    from fidkit.testing import write_random_dinov2_weights
    return write_random_dinov2_weights(tmp_path_factory.mktemp("weights") / "dinov2_vitb14_pretrain.pth",
                                       "vitb14", seed=0)


@pytest.fixture(scope="session")
def openai_clip():
    """OpenAI's ``clip`` package, the reference for CLIP features (skips when it is not installed)."""
    from fidkit.testing import import_openai_clip
    try:
        return import_openai_clip()
    except ImportError:
        pytest.skip("openai-clip is not installed")


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


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    """Two small folders of 48 px PNGs with different content."""
    base = tmp_path_factory.mktemp("imgs")
    a = write_folder(base / "real", smooth_images(10, 48, seed=1))
    b = write_folder(base / "fake", smooth_images(12, 48, seed=2))
    return a, b


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


@pytest.fixture(scope="session")
def i3d_weights(tmp_path_factory) -> str:
    """Random I3D weights saved from cd-fvd's own network: its exact key names, shapes and format."""
    pytorch_i3d = pytest.importorskip("cdfvd.third_party.i3d.pytorch_i3d")
    net = pytorch_i3d.InceptionI3d(400, in_channels=3)
    randomise_i3d(net, seed=0)
    path = tmp_path_factory.mktemp("i3d") / "i3d_pretrained_400.pt"
    torch.save(net.state_dict(), path)
    return str(path)
