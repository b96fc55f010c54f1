"""The FD-DINOv2 network and its preprocessing, against the official DINOv2 code and the references' transforms.

Parity tests run fidkit's network and the official ``dinov2`` package
(``pip install --no-deps dinov2==0.0.1.dev2``) on the same random weights in the
published layout; they are skipped when that package is missing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fidkit.errors import BadInputError, WeightsUnavailableError
from fidkit.extractors import dinov2 as fd
from fidkit.extractors.dinov2 import (
    DINOV2_WEIGHTS,
    PRETRAIN_GRID,
    DinoV2,
    PREPROCESSING,
    load_dinov2_state_dict,
    preprocess_dgm_eval,
    preprocess_edm2,
    random_dinov2_state_dict,
    read_dinov2_state_dict,
    resample_pos_embed,
)

FEATURE_TOL = 1e-4
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def images(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """``n x h x w x 3`` uint8 images: smooth colour fields plus pixel noise (structure at several scales)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        out[i] = np.clip(np.asarray(coarse, dtype=np.int32) + rng.integers(-25, 26, (h, w, 3)), 0, 255)
    return out


def network_input(n: int, h: int = 224, w: int = 224, seed: int = 0) -> torch.Tensor:
    return torch.stack([preprocess_dgm_eval(img) for img in images(n, 256, 256, seed)]) if (h, w) == (224, 224) \
        else torch.from_numpy((images(n, h, w, seed).transpose(0, 3, 1, 2) / 127.5 - 1).astype(np.float32))


@pytest.fixture(scope="module")
def official():
    return pytest.importorskip("dinov2.models.vision_transformer")


def official_model(vits, arch: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The hub's ``dinov2_vit?14`` backbone (``dinov2/hub/backbones.py`` arguments) holding ``state``."""
    build = {"vitl14": vits.vit_large, "vitb14": vits.vit_base}[arch]
    with torch.device("meta"):  # skip the random initialisation; drop_path_uniform avoids .item() on meta
        model = build(patch_size=14, img_size=518, init_values=1.0, block_chunks=0, drop_path_uniform=True)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


@pytest.fixture(scope="module")
def vitb14_state() -> dict[str, torch.Tensor]:
    return random_dinov2_state_dict("vitb14", seed=0)


def compare(ours: DinoV2, ref: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        got = ours(x)["cls"]
        want = ref(x)  # backbone forward = Identity head on x_norm_clstoken
    assert got.shape == want.shape == (x.shape[0], ours.taps["cls"])
    # the random weights must make features depend on the image far beyond the tolerance
    assert want.std(0).mean() > 1000 * FEATURE_TOL
    diff = (got - want).abs().max().item()
    print(f"max |fidkit - official| = {diff:.2e}")
    return diff


# --- network -----------------------------------------------------------------------------------------


@pytest.mark.parity
def test_vitb14_cls_features_match_official(official, vitb14_state):
    ours = DinoV2.from_state_dict("vitb14", vitb14_state, "random vitb14").eval()
    assert compare(ours, official_model(official, "vitb14", vitb14_state), network_input(2)) < FEATURE_TOL


@pytest.mark.parity
def test_vitb14_non_square_input_matches_official(official, vitb14_state):
    # 12 x 16 patches: rows and columns of the position grid must not be swapped
    ours = DinoV2.from_state_dict("vitb14", vitb14_state, "random vitb14").eval()
    x = network_input(2, 168, 224, seed=1)
    assert compare(ours, official_model(official, "vitb14", vitb14_state), x) < FEATURE_TOL


@pytest.mark.parity
def test_vitl14_cls_features_match_official(official):
    state = random_dinov2_state_dict("vitl14", seed=1)
    ours = DinoV2.from_state_dict("vitl14", state, "random vitl14").eval()
    assert ours.taps == {"cls": 1024}
    assert compare(ours, official_model(official, "vitl14", state), network_input(2, seed=2)) < FEATURE_TOL


def test_unknown_tap_and_bad_input_size_are_refused(vitb14_state):
    net = DinoV2.from_state_dict("vitb14", vitb14_state, "random vitb14")
    with pytest.raises(ValueError, match="unknown taps"):
        net(torch.zeros(1, 3, 224, 224), taps=("pool",))
    with pytest.raises(BadInputError, match="multiple of the patch size"):
        net(torch.zeros(1, 3, 225, 224))


# --- position embeddings -----------------------------------------------------------------------------


def official_definition(pos_embed: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``interpolate_pos_encoding`` of facebookresearch/dinov2 (main, 2025), hub defaults, written out."""
    n = pos_embed.shape[1] - 1
    m = int(math.sqrt(n))
    pos = pos_embed.float()
    sx, sy = float(rows + 0.1) / m, float(cols + 0.1) / m
    patch = F.interpolate(pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2), mode="bicubic",
                          antialias=False, scale_factor=(sx, sy))
    assert (rows, cols) == patch.shape[-2:]
    patch = patch.permute(0, 2, 3, 1).view(1, -1, pos.shape[-1])
    return torch.cat((pos[:, 0].unsqueeze(0), patch), dim=1).to(pos_embed.dtype)


@pytest.mark.parametrize("grid", [(16, 16), (12, 16), (16, 9), (40, 40)])
def test_pos_embed_resampling_is_the_official_definition(vitb14_state, grid):
    pos = vitb14_state["pos_embed"]
    assert torch.equal(resample_pos_embed(pos, grid), official_definition(pos, *grid))


@pytest.mark.parity
def test_pos_embed_resampling_equals_official_code(official, vitb14_state):
    ref = official_model(official, "vitb14", vitb14_state)
    pos = vitb14_state["pos_embed"]
    for rows, cols in [(16, 16), (12, 16), (PRETRAIN_GRID, PRETRAIN_GRID)]:
        tokens = torch.zeros(1, 1 + rows * cols, pos.shape[-1])
        want = ref.interpolate_pos_encoding(tokens, rows * 14, cols * 14)
        assert torch.equal(resample_pos_embed(pos, (rows, cols)), want)


def test_pos_embed_resampling_differs_from_timm(vitb14_state):
    # timm.layers.resample_abs_pos_embed: explicit size, antialias=True; a different embedding at 224 px
    pos = vitb14_state["pos_embed"]
    patches = pos[:, 1:].reshape(1, PRETRAIN_GRID, PRETRAIN_GRID, -1).permute(0, 3, 1, 2)
    timm_like = F.interpolate(patches, size=(16, 16), mode="bicubic", antialias=True, align_corners=False)
    timm_like = timm_like.permute(0, 2, 3, 1).reshape(1, 256, -1)
    assert (resample_pos_embed(pos, (16, 16))[:, 1:] - timm_like).abs().max() > 0.1


def test_position_embeddings_are_resampled_once_per_input_size(vitb14_state, monkeypatch):
    calls = []
    real = fd.resample_pos_embed
    monkeypatch.setattr(fd, "resample_pos_embed", lambda pos, grid: calls.append(grid) or real(pos, grid))
    net = DinoV2.from_state_dict("vitb14", vitb14_state, "random vitb14")
    x = torch.zeros(1, 3, 28, 28)
    with torch.inference_mode():
        net(x), net(x)
        assert calls == [(2, 2)]
        net(torch.zeros(1, 3, 42, 28))
        assert calls == [(2, 2), (3, 2)]
        load_dinov2_state_dict(net, vitb14_state, "the same weights again")
        net(x)
        assert calls == [(2, 2), (3, 2), (2, 2)]
        net.load_state_dict(vitb14_state)
        net(x)
    assert calls == [(2, 2), (3, 2), (2, 2), (2, 2)]


def test_network_built_and_run_under_inference_mode():
    with torch.inference_mode():
        net = DinoV2.from_state_dict("vitb14", random_dinov2_state_dict("vitb14", seed=3), "random vitb14")
        assert net(torch.zeros(1, 3, 28, 28))["cls"].shape == (1, 768)


# --- weights -----------------------------------------------------------------------------------------


@pytest.mark.parity
@pytest.mark.parametrize("arch", ["vitb14", "vitl14"])
def test_random_weights_have_the_published_layout(official, arch):
    state = random_dinov2_state_dict(arch, seed=0) if arch == "vitb14" else None
    with torch.device("meta"):
        build = {"vitl14": official.vit_large, "vitb14": official.vit_base}[arch]
        published = build(patch_size=14, img_size=518, init_values=1.0, block_chunks=0,
                          drop_path_uniform=True).state_dict()
    ours = DinoV2(arch, device="meta").state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in published.items()}
    if arch == "vitl14":
        assert published["pos_embed"].shape == (1, 1370, 1024)
    else:
        assert {k: (v.shape, v.dtype) for k, v in state.items()} == \
            {k: (v.shape, torch.float32) for k, v in published.items()}


def test_missing_key_names_the_source_and_the_key(vitb14_state):
    state = dict(vitb14_state)
    del state["blocks.3.attn.qkv.weight"]
    with pytest.raises(WeightsUnavailableError, match=r"my-copy\.pth.*missing: blocks\.3\.attn\.qkv\.weight"):
        DinoV2.from_state_dict("vitb14", state, "my-copy.pth")


def test_other_arch_weights_are_refused_with_shapes(vitb14_state):
    with pytest.raises(WeightsUnavailableError, match=r"vitl14\.pth.*missing: blocks\.12.*wrong shape: "):
        DinoV2.from_state_dict("vitl14", vitb14_state, "vitl14.pth")


def test_unexpected_key_is_refused(vitb14_state):
    with pytest.raises(WeightsUnavailableError, match=r"unexpected: head\.weight"):
        DinoV2.from_state_dict("vitb14", {**vitb14_state, "head.weight": torch.zeros(1)}, "f.pth")


def test_training_only_mask_token_may_be_absent(vitb14_state):
    state = {k: v for k, v in vitb14_state.items() if k != "mask_token"}
    net = DinoV2("vitb14")
    load_dinov2_state_dict(net, state, "copy without mask_token")
    assert torch.equal(net.blocks[0].attn.qkv.weight, vitb14_state["blocks.0.attn.qkv.weight"])


def test_weight_files_are_read_without_pickle(tmp_path):
    state = {"cls_token": torch.randn(1, 1, 4), "norm.bias": torch.randn(4)}
    torch.save(state, tmp_path / "w.pth")
    got = read_dinov2_state_dict(tmp_path / "w.pth")
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    torch.save({"net": torch.nn.Identity()}, tmp_path / "module.pth")  # needs pickle to restore
    with pytest.raises(WeightsUnavailableError, match=r"module\.pth: not a readable DINOv2 checkpoint"):
        read_dinov2_state_dict(tmp_path / "module.pth")
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        read_dinov2_state_dict(tmp_path / "absent.pth")


def test_published_weight_specs():
    for arch, spec in DINOV2_WEIGHTS.items():
        assert spec["url"] == f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{arch}/dinov2_{arch}_pretrain.pth"
        assert spec["url"].endswith("/" + spec["filename"])
        assert len(spec["sha256"]) == 64 and int(spec["sha256"], 16) >= 0


# --- preprocessing -----------------------------------------------------------------------------------


@pytest.mark.parity
@pytest.mark.parametrize("hw", [(256, 256), (300, 200), (64, 48), (224, 224)])
def test_dgm_eval_preprocessing_equals_torchvision_on_pil(hw):
    tv = pytest.importorskip("torchvision.transforms")
    img = images(1, *hw, seed=hw[0])[0]
    reference = tv.Compose([
        tv.Resize((224, 224), tv.InterpolationMode.BICUBIC),
        tv.ToTensor(),
        tv.Normalize(np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)),
    ])(Image.fromarray(img).convert("RGB"))
    got = preprocess_dgm_eval(img)
    assert got.dtype == torch.float32 and got.shape == (3, 224, 224)
    assert (got - reference).abs().max() <= 1e-6
    assert torch.equal(preprocess_dgm_eval(Image.fromarray(img)), got)


def edm2_definition(x: torch.Tensor) -> torch.Tensor:
    """NVlabs/edm2 ``calculate_metrics.py``, ``DINOv2Detector.__call__`` with ``resize_mode='torch'``."""
    x = F.interpolate(x.to(torch.float32), size=(224, 224), mode="bicubic", antialias=True)
    x = x.to(torch.float32) / 255
    x = x - torch.as_tensor(IMAGENET_MEAN, dtype=x.dtype).reshape(1, -1, 1, 1)
    return x / torch.as_tensor(IMAGENET_STD, dtype=x.dtype).reshape(1, -1, 1, 1)


@pytest.mark.parametrize("hw", [(256, 256), (300, 200), (64, 48), (224, 224)])
def test_edm2_preprocessing_is_its_definition(hw):
    batch = torch.from_numpy(images(3, *hw, seed=hw[1]).transpose(0, 3, 1, 2).copy())
    got = preprocess_edm2(batch)
    assert got.dtype == torch.float32 and got.shape == (3, 3, 224, 224)
    assert torch.equal(got, edm2_definition(batch))


def test_preprocessing_variants_are_named_with_dgm_eval_first():
    assert fd.DEFAULT_PREPROCESSING == "dgm-eval"
    assert PREPROCESSING["dgm-eval"]["prepare_image"] is preprocess_dgm_eval
    assert PREPROCESSING["edm2"]["prepare_batch"] is preprocess_edm2


def test_preprocessing_refuses_wrong_inputs():
    with pytest.raises(BadInputError, match="uint8 H x W x 3"):
        preprocess_dgm_eval(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(BadInputError, match="uint8 N x 3 x H x W"):
        preprocess_edm2(torch.zeros(1, 32, 32, 3, dtype=torch.uint8))
