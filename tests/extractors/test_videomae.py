"""The second network of content-debiased FVD (VideoMAE-v2 ViT-g/14, SSv2) and its preprocessing, against cd-fvd.

The giant network (1B parameters) is never built in memory here.  Parity is shown at a reduced width and
depth: cd-fvd's own ``VisionTransformer`` (``pip install cd-fvd==0.1.1``) with every other setting of
``load_videomae_model`` (patch 14, tubelet 2, 16 frames, 224 px, q/v biases, LayerNorm eps 1e-6, no layer
scale, mean pooling) gets random weights, saved in the published file's layout (float16 under ``module``,
with the classifier), and that file is loaded by fidkit and by cd-fvd's way of loading.  The giant layout
is checked key by key against cd-fvd's ``vit_giant_patch14_224`` built on the meta device.  Tests are
skipped when cd-fvd is missing.
"""

from __future__ import annotations

import dataclasses
import inspect
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

import fidkit
from fidkit.errors import BadInputError, WeightsUnavailableError
from fidkit.extractors import Extractor, base, get_spec
from fidkit.extractors.base import Tap
from fidkit.extractors.videomae import (
    GIANT,
    HEAD_KEYS,
    SPEC,
    VideoMAEv2,
    VideoMAEv2Config,
    preprocess_cd_fvd,
    read_videomae_state_dict,
    resample_time,
    sinusoid_table,
)

from helpers import moving_clips

vm = pytest.importorskip("cdfvd.third_party.VideoMAEv2.videomaev2_finetune")
from cdfvd.third_party.VideoMAEv2.utils import load_videomae_model, preprocess_videomae  # noqa: E402

FEATURE_TOL = 1e-4   # relative to the features' scale (largest magnitude)
SIZE = 224
#: the giant's settings at a width and depth that run in milliseconds
SMALL = VideoMAEv2Config(embed_dim=64, depth=2, num_heads=4, mlp_ratio=GIANT.mlp_ratio)


@pytest.fixture(autouse=True)
def no_weights_from_the_environment(monkeypatch):
    monkeypatch.delenv("FIDKIT_VIDEOMAE_V2_WEIGHTS", raising=False)


def as_batch(clips: np.ndarray) -> torch.Tensor:
    """``N x T x H x W x 3`` numpy (cd-fvd's layout) -> fidkit's uint8 video batch ``N x T x 3 x H x W``."""
    return torch.from_numpy(clips).permute(0, 1, 4, 2, 3).contiguous()


def reference_network(cfg: VideoMAEv2Config) -> nn.Module:
    """cd-fvd's ``VisionTransformer`` with ``cfg``'s width and depth and the other arguments of
    ``load_videomae_model`` (``vit_giant_patch14_224``'s fixed ones: q/v biases, LayerNorm eps 1e-6)."""
    return vm.VisionTransformer(
        img_size=SIZE, patch_size=14, embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_classes=174, all_frames=16, tubelet_size=2, drop_path_rate=0.3, use_mean_pooling=True)


def randomise(net: nn.Module, seed: int) -> None:
    """Every parameter of cd-fvd's network, in place: LayerNorm scales near 1, matrices of a size that keeps
    tokens O(1) and attention far from uniform, biases (q_bias and v_bias too) clearly non-zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if "norm" in name and name.endswith("weight"):
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
            elif t.dim() >= 2:
                t.copy_(torch.randn(t.shape, generator=g) * 1.5 / t[0].numel() ** 0.5)
            else:
                t.copy_(0.2 * torch.randn(t.shape, generator=g))


def load_as_cd_fvd_does(net: nn.Module, path) -> nn.Module:
    """``load_videomae_model``'s unpacking and strict loading, applied to a network of another size."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "module"):
        if key in ckpt:
            ckpt = ckpt[key]
            break
    net.load_state_dict(ckpt)
    return net.eval()


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory) -> str:
    """Random small-config weights from cd-fvd's own network, in the published file's layout: float16
    tensors under ``module``, the SSv2 classifier included."""
    net = reference_network(SMALL)
    randomise(net, seed=0)
    path = tmp_path_factory.mktemp("videomae") / "vit_g_hybrid_pt_1200e_ssv2_ft.pth"
    torch.save({"module": {k: v.half() for k, v in net.state_dict().items()}}, path)
    return str(path)


@pytest.fixture(scope="module")
def reference(weights_path):
    return load_as_cd_fvd_does(reference_network(SMALL), weights_path)


@pytest.fixture(scope="module")
def ours(weights_path) -> VideoMAEv2:
    return VideoMAEv2.from_state_dict(SMALL, read_videomae_state_dict(weights_path), weights_path)


def features(reference, ours, clips: np.ndarray) -> SimpleNamespace:
    """cd-fvd's pipeline (``preprocess_videomae``, ``forward_features``) and fidkit's on the same clips."""
    with torch.inference_mode():
        want = reference.forward_features(preprocess_videomae(clips))
        got = ours(SPEC.variant("cd-fvd").prepare_many(as_batch(clips)))["embedding"]
    return SimpleNamespace(ours=got, ref=want)


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape and got.dtype == torch.float32
    tol = FEATURE_TOL * want.abs().max().item()
    # the random weights must make features depend on the clip far beyond the tolerance
    assert (want[0] - want[1:]).abs().max() > 100 * tol
    diff = (got - want).abs().max().item()
    print(f"max |fidkit - cd-fvd| = {diff:.2e} (tolerance {tol:.2e})")
    assert diff <= tol


# -- the network ------------------------------------------------------------------------------------------

@pytest.mark.parity
def test_features_equal_the_cd_fvd_pipeline(reference, ours):
    f = features(reference, ours, moving_clips(3, 16, 36, 48, seed=1))
    assert f.ours.shape == (3, SMALL.embed_dim)
    assert_close(f.ours, f.ref)


@pytest.mark.parity
@pytest.mark.parametrize("frames", [12, 17, 2])
def test_clips_of_other_lengths_resample_the_positions_as_cd_fvd_does(reference, ours, frames):
    """cd-fvd feeds any clip length: the position table is resampled along time (17 frames: 8 tubelets)."""
    f = features(reference, ours, moving_clips(3, frames, 30, 26, seed=frames))
    assert_close(f.ours, f.ref)


@pytest.mark.parity
def test_position_table_and_its_resampling_equal_cd_fvds():
    table = sinusoid_table(8 * 16 * 16, 64)
    assert torch.equal(table, vm.get_sinusoid_encoding_table(8 * 16 * 16, 64))
    net = SimpleNamespace(pos_embed=table, tubelet_size=2)  # what interpolate_pos_encoding reads
    for frames in (2, 6, 12, 16, 17, 24, 32):
        want = vm.VisionTransformer.interpolate_pos_encoding(net, frames)
        assert torch.equal(resample_time(table, (8, 16, 16), frames // 2), want), frames


def test_input_that_is_not_a_224_px_clip_is_refused(ours):
    with pytest.raises(BadInputError, match="N x 3 x T x 224 x 224"):
        ours(torch.zeros(1, 3, 16, 112, 112))
    with pytest.raises(BadInputError, match="at least 2 frames"):
        ours(torch.zeros(1, 3, 1, SIZE, SIZE))


@pytest.fixture(scope="module")
def giant_reference():
    """cd-fvd's giant network with ``load_videomae_model``'s arguments, on the meta device (no memory).
    Two stand-ins make that possible: the stochastic-depth rates are computed on the CPU (``.item()`` of a
    meta tensor fails), and the 2048 x 1408 sine table, a plain attribute outside the state dict (checked at
    a small size above), is not computed in numpy for nothing."""
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(torch, "linspace", partial(torch.linspace, device="cpu"))
        mp.setattr(vm, "get_sinusoid_encoding_table", lambda n, d: torch.zeros(1, n, d))
        with torch.device("meta"):
            net = vm.vit_giant_patch14_224(img_size=224, pretrained=False, num_classes=174, all_frames=16,
                                           tubelet_size=2, drop_path_rate=0.3, use_mean_pooling=True)
    finally:
        mp.undo()
    source = inspect.getsource(load_videomae_model)
    assert "vit_giant_patch14_224(" in source and "num_classes=174" in source and "use_mean_pooling=True" in source
    return net


@pytest.mark.parity
def test_the_giant_layout_is_cd_fvds(giant_reference):
    """Keys, shapes and dtypes of fidkit's giant network equal those of cd-fvd's ``vit_giant_patch14_224`` as
    ``load_videomae_model`` builds it, less the classifier, which the file has and fidkit drops."""
    theirs = {k: (tuple(v.shape), v.dtype) for k, v in giant_reference.state_dict().items()}
    mine = {k: (tuple(v.shape), v.dtype) for k, v in VideoMAEv2(GIANT, device="meta").state_dict().items()}
    assert sorted(set(theirs) - set(mine)) == sorted(HEAD_KEYS)
    assert mine == {k: v for k, v in theirs.items() if k not in HEAD_KEYS}
    assert len(mine) == 4 + 13 * 40
    assert SPEC.tap("embedding").dim == giant_reference.embed_dim == GIANT.embed_dim
    assert GIANT.grid == (16 // 2, 224 // 14, 224 // 14) and GIANT.mlp_hidden == 6144


@pytest.mark.parity
def test_every_layernorm_has_cd_fvds_eps(giant_reference):
    """LayerNorm eps (1e-6, not PyTorch's 1e-5) moves features by ~1e-6 of their scale on O(1) tokens, below
    what the feature comparisons resolve: it is compared module by module instead."""
    def eps(net):
        return [(name, m.eps) for name, m in net.named_modules() if isinstance(m, nn.LayerNorm)]
    assert eps(VideoMAEv2(GIANT, device="meta")) == eps(giant_reference)
    assert {e for _, e in eps(giant_reference)} == {1e-6}


# -- preprocessing ----------------------------------------------------------------------------------------

@pytest.mark.parity
@pytest.mark.parametrize("h, w", [(31, 20), (224, 224), (240, 320)])
def test_preprocessing_is_cd_fvds_preprocess_videomae(h, w):
    clips = moving_clips(2, 5, h, w, seed=h)
    got = preprocess_cd_fvd(as_batch(clips))
    want = preprocess_videomae(clips)  # N x 3 x T x 224 x 224 floats in [0, 1]
    assert got.shape == want.shape == (2, 3, 5, SIZE, SIZE) and got.dtype == want.dtype == torch.float32
    assert torch.equal(got, want)


def test_one_clip_is_prepared_as_in_a_batch():
    clips = moving_clips(2, 4, 17, 25, seed=5)
    p = SPEC.variant("cd-fvd")
    assert torch.equal(p.prepare(clips[1]), p.prepare_many(as_batch(clips))[1])


def test_preprocessing_takes_uint8_clips_only():
    with pytest.raises(BadInputError, match="uint8 clips N x T x 3 x H x W"):
        preprocess_cd_fvd(torch.zeros(2, 4, 3, 8, 8))
    with pytest.raises(BadInputError, match="uint8 clips N x T x 3 x H x W"):
        preprocess_cd_fvd(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


# -- weights ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["bare", "model", "without head", "float32"])
def test_other_checkpoint_layouts_load_to_the_same_network(weights_path, ours, tmp_path, layout):
    state = torch.load(weights_path, weights_only=True)["module"]
    if layout == "without head":
        state = {k: v for k, v in state.items() if k not in HEAD_KEYS}
    elif layout == "float32":
        state = {k: v.float() for k, v in state.items()}
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": state, "epoch": 3} if layout == "model" else state, path)
    net = VideoMAEv2.from_state_dict(SMALL, read_videomae_state_dict(path), str(path))
    for k, v in ours.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k


def test_files_that_are_not_the_videomae_weights_are_refused(weights_path, tmp_path):
    state = torch.load(weights_path, weights_only=True)["module"]
    damaged = dict(state)
    damaged.pop("blocks.1.attn.q_bias")
    cases = {
        "damaged.pth": ({"module": damaged}, "missing: blocks.1.attn.q_bias"),
        # the small test width is not the giant's
        "small.pth": ({"module": state}, r"1408-d, 40 blocks.*wrong shape: blocks.0.attn.proj.bias \(64,\) "
                                         r"\(expected \(1408,\)\)"),
        "other.pth": ({"module": {"conv.weight": torch.zeros(2)}}, "unexpected: conv.weight"),
        "code.pth": ({"module": state, "args": SimpleNamespace(lr=1)}, "not a readable"),  # needs pickle code
        "nested.pth": ({"module": {"blocks": {"0": torch.zeros(1)}}}, "not a VideoMAE-v2 state dict"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        torch.save(content, path)
        with pytest.raises(WeightsUnavailableError, match=f"{name}.*{message}"):
            Extractor("videomae-v2", weights=path, device="cpu")


@pytest.mark.parity
def test_declaration(giant_reference):
    spec = get_spec("videomae")
    assert spec is SPEC and get_spec("videomae-v2") is SPEC
    assert (spec.modality, spec.identity, spec.key) == ("video", "videomae-v2-g-ssv2", "videomae")
    assert spec.tap_for("embedding").name == "embedding" and spec.tap("embedding").dim == 1408
    assert spec.variant(None).name == "cd-fvd" and spec.variant("cd-fvd").size == SIZE
    w = spec.weights
    # the file cd-fvd loads, under the name it saves it as
    assert w.filename in inspect.getsource(load_videomae_model) and w.url.endswith("/" + w.filename)
    assert w.env_var == "FIDKIT_VIDEOMAE_V2_WEIGHTS" and len(w.sha256) == 64 and int(w.sha256, 16) >= 0
    assert "request form" in w.licence


# -- evaluation -------------------------------------------------------------------------------------------

@pytest.fixture
def small_spec(monkeypatch):
    """The registered declaration at the small test width, under its own name (unregistered afterwards)."""
    spec = dataclasses.replace(SPEC, name="videomae-v2-small-test", aliases=(), identity="videomae-v2-small-test",
                               key="videomae_small", taps=(Tap("embedding", SMALL.embed_dim, "embedding"),),
                               build=partial(VideoMAEv2.from_state_dict, SMALL))
    monkeypatch.setitem(base._REGISTRY, spec.name, spec)
    return spec


@pytest.mark.parity
def test_fd_through_evaluate_equals_the_closed_form_on_cd_fvds_features(small_spec, reference, weights_path):
    a, b = moving_clips(4, 16, 20, 24, seed=7), moving_clips(4, 18, 20, 24, seed=8)
    r = fidkit.evaluate(torch.from_numpy(a).permute(0, 1, 4, 2, 3), torch.from_numpy(b).permute(0, 1, 4, 2, 3),
                        metrics="fd", features=small_spec.name, weights=weights_path, device="cpu", batch_size=3)
    with torch.inference_mode():  # cd-fvd's features of the clips evaluate samples (16 frames from the first)
        x, y = (reference.forward_features(preprocess_videomae(c[:, :16])).double().numpy() for c in (a, b))
    # closed form, unbiased covariances: the non-zero eigenvalues of A B are the squared singular values of
    # Xc Yc^T / sqrt((n - 1)(m - 1))
    xc, yc = x - x.mean(0), y - y.mean(0)
    n, m = len(x), len(y)
    trace_sqrt = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
    closed = ((x.mean(0) - y.mean(0)) ** 2).sum() + (xc ** 2).sum() / (n - 1) + (yc ** 2).sum() / (m - 1) \
        - 2 * trace_sqrt
    assert list(r.values) == ["fd_videomae_small", "fd_videomae_small_mean_term",
                             "fd_videomae_small_cov_term"] and (r.n_a, r.n_b) == (4, 4)
    assert r["fd_videomae_small"] == pytest.approx(closed, rel=1e-4)
    space = r.to_dict()["feature_spaces"]["videomae-v2-small-test/embedding"]
    assert space["preprocessing"] == "cd-fvd"
