"""The test-weights contract: every registered network writes random weights in its published format through its
own declaration (``ExtractorSpec.random_weights``), so that a new network's tests need no code elsewhere.

Each file written here is also what the parity tests load into the reference implementation (torch-fidelity,
OpenAI's ``clip``, the official DINOv2 code, cd-fvd): that is where the published format is checked against the
reference; here it is checked that fidkit's own loader takes it and that the features depend on the input.
"""

import numpy as np
import pytest
import torch

from fidkit.extractors import Extractor, get_spec, specs

from helpers import moving_clips, smooth_images

def test_every_registered_network_declares_random_weights():
    # networks given in memory (custom_extractor, registered by other tests) have no published file to imitate
    assert {s.name for s in specs() if s.random_weights is None and s.weights is not None} == set()


def test_videomae_writes_the_published_layout(tmp_path):
    """VideoMAE-v2's giant file (1B parameters, 2 GB) is too large to write and run here: its writer is checked
    at a reduced width, where the published layout (float16 under ``module``, the SSv2 head included and dropped
    on load) is the same; tests/extractors/test_videomae.py checks the giant layout key by key on the meta device."""
    from fidkit.extractors import videomae as V
    small = V.VideoMAEv2Config(embed_dim=64, depth=2, num_heads=4, mlp_ratio=V.GIANT.mlp_ratio)
    path = V.write_random_videomae_weights(tmp_path / V.WEIGHTS.filename, seed=1, cfg=small)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"module"} and {v.dtype for v in raw["module"].values()} == {torch.float16}
    assert {"head.weight", "head.bias"} <= set(raw["module"])
    net = V.VideoMAEv2.from_state_dict(small, V.read_videomae_state_dict(path), str(path))
    clips = torch.from_numpy(moving_clips(2, 16, 32, 40, seed=5)).permute(0, 1, 4, 2, 3).contiguous()
    with torch.inference_mode():
        f = net(V.preprocess_cd_fvd(clips))["embedding"]
    assert f.shape == (2, 64) and torch.isfinite(f).all()
    assert (f[0] - f[1]).abs().max() > 1e-3 * f.abs().max() > 0


def _inputs(spec, n: int = 2) -> torch.Tensor:
    """``n`` different uint8 samples of the network's modality, smaller than its input (resized up)."""
    if spec.modality == "video":
        clips = moving_clips(n, 16, 32, 40, seed=5)
        return torch.from_numpy(clips).permute(0, 1, 4, 2, 3).contiguous()
    return torch.from_numpy(smooth_images(n, (40, 52), seed=5)).permute(0, 3, 1, 2).contiguous()


@pytest.mark.slow
def test_random_weights_load_and_give_features_that_depend_on_the_input(network_weights):
    name, path = network_weights
    spec = get_spec(name)
    ext = Extractor(spec, weights=path, device="cpu")  # the loader every front end uses: read, check, build
    x = spec.variant(None).prepare_many(_inputs(spec))
    taps = tuple(t.name for t in spec.taps)
    with torch.inference_mode():
        out = ext(x, taps)
    assert set(out) == set(taps)
    for tap in spec.taps:
        f = out[tap.name]
        assert f.shape == (2, tap.dim), tap.name
        assert torch.isfinite(f).all(), tap.name
        # random weights that make the two samples' features differ far beyond float32 rounding
        assert (f[0] - f[1]).abs().max() > 1e-3 * f.abs().max() > 0, tap.name


def test_the_same_seed_writes_the_same_weights(tmp_path):
    spec = get_spec("i3d")  # a cheap one (48 MB)
    a = spec.read_weights(spec.random_weights(tmp_path / "a.pt", 3))
    b = spec.read_weights(spec.random_weights(tmp_path / "b.pt", 3))
    c = spec.read_weights(spec.random_weights(tmp_path / "c.pt", 4))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert np.isfinite(np.concatenate([v.numpy().ravel() for v in a.values()])).all()
