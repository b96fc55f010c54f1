"""Shared fixtures: random weights in the published format, generated images, an isolated cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fidkit.testing import write_random_inception_weights


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """No test touches the user's cache or the network."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("FIDKIT_CACHE_DIR", str(cache))
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")
    for var in ("FIDKIT_INCEPTION_WEIGHTS", "FIDKIT_DINOV2_VITL14_WEIGHTS", "FIDKIT_DINOV2_VITB14_WEIGHTS",
                "FIDKIT_CLIP_VIT_B_32_WEIGHTS", "FIDKIT_CLIP_VIT_L_14_336PX_WEIGHTS"):
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
