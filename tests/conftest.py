"""Shared fixtures: random weights in the published format, generated images, an isolated cache.

The helpers themselves live in ``helpers.py``; the names below are also importable from here for older tests.
"""

from __future__ import annotations

import pytest

from fidkit.extractors import specs
from helpers import (RandomWeights, moving_clips, networks_with_random_weights, randomise_i3d,  # noqa: F401
                     smooth_images, write_folder)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """No test touches the user's cache or the network."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("FIDKIT_CACHE_DIR", str(cache))
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")
    for spec in specs():  # every registered network's weights variable
        if spec.weights is not None:
            monkeypatch.delenv(spec.weights.env_var, raising=False)
    return cache


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory):
    """``random_weights(network, seed=0)``: the path of random weights of any registered network in its published
    format, written once per session by the network's own ``ExtractorSpec.random_weights``; removed at the end
    (CLIP ViT-L/14@336px alone is 930 MB, and pytest keeps the temporary folders of the last runs)."""
    written = RandomWeights(tmp_path_factory.mktemp("weights"))
    yield written
    written.remove()


@pytest.fixture(scope="session", params=networks_with_random_weights())
def network_weights(request, random_weights) -> tuple[str, str]:
    """``(network, path)`` for every registered network that can write random weights."""
    return request.param, random_weights(request.param)


@pytest.fixture(scope="session")
def weights(random_weights) -> str:
    """Random FID Inception weights with the published file's keys and shapes."""
    return random_weights("inception")


@pytest.fixture(scope="session")
def dinov2_weights(random_weights) -> str:
    """Random DINOv2 ViT-B/14 weights in the published layout (the cheaper of the two archs)."""
    return random_weights("dinov2-vitb14")


@pytest.fixture(scope="session")
def i3d_weights(random_weights) -> str:
    """Random I3D weights in the published layout of ``i3d_pretrained_400.pt`` (cd-fvd's key names and shapes)."""
    return random_weights("i3d")


@pytest.fixture(scope="session")
def openai_clip():
    """OpenAI's ``clip`` package, the reference for CLIP features (skips when it is not installed)."""
    from fidkit.testing import import_openai_clip
    try:
        return import_openai_clip()
    except ImportError:
        pytest.skip("openai-clip is not installed")


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    """Two small folders of 48 px PNGs with different content."""
    base = tmp_path_factory.mktemp("imgs")
    a = write_folder(base / "real", smooth_images(10, 48, seed=1))
    b = write_folder(base / "fake", smooth_images(12, 48, seed=2))
    return a, b


@pytest.fixture(scope="session")
def folders_fid(folders, weights):
    """``folders_fid(mode="tf")``: ``fidkit.fid`` of the two ``folders`` under the random Inception weights, computed
    once per session and mode: the API's value that tests of other routes (CLI, saved statistics, in-memory
    sources) compare with."""
    import fidkit
    results = {}

    def fid(mode: str = "tf"):
        if mode not in results:
            results[mode] = fidkit.fid(*folders, weights=weights, device="cpu", mode=mode)
        return results[mode]
    return fid
