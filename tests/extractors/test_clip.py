"""CLIP image encoders: parity with OpenAI's ``clip`` package, clean-fid and CMMD, under the same random weights.

OpenAI's package (PyPI ``openai-clip``) imports ``pkg_resources`` only for
``packaging``; where setuptools no longer ships it, the import gets a stand-in
for the duration of that one import.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fidkit.errors import BadInputError, WeightsUnavailableError
from fidkit.extractors.clip import (
    ARCHS, MEAN, PREPROCESSING, STD, WEIGHTS, CLIPVisual, clip_visual_from_state_dict, crop_resize_cmmd,
    load_clip_visual, load_clip_visual_state_dict, prepare_clean_fid, prepare_cmmd, random_clip_state_dict,
    read_clip_state_dict, resize_crop_clean_fid,
)

from helpers import smooth_images

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

# Odd, non-square sizes (H, W): tall and wide, up- and downscaled, and the sizes where the
# centre-crop offset is x.5 (clean-fid rounds half to even, CMMD floors).
SIZES = [(37, 53), (301, 227), (224, 225), (227, 224), (97, 31), (335, 401), (401, 337)]


@contextlib.contextmanager
def _skip_initialisation():
    # clip.load builds the whole model, initialises it at random, then loads every entry with a strict
    # load_state_dict: the initialisation changes no value and costs ~5 s for ViT-L/14.
    def keep(tensor, *args, **kwargs):
        return tensor
    with pytest.MonkeyPatch.context() as mp:
        for name in ("normal_", "uniform_", "kaiming_uniform_", "xavier_uniform_", "constant_", "zeros_", "ones_"):
            mp.setattr(torch.nn.init, name, keep)
        for name in ("xavier_uniform_", "constant_"):  # nn.MultiheadAttention imports these by name
            mp.setattr(torch.nn.modules.activation, name, keep)
        yield


def _openai_load(openai_clip, path):
    with _skip_initialisation():
        return openai_clip.load(str(path), device="cpu", jit=False)


def _image(size, seed):
    return smooth_images(1, size, seed=seed)[0]


def _batch(prepare, sizes, seed):
    return torch.stack([prepare(_image(s, seed + i)) for i, s in enumerate(sizes)])


@pytest.fixture(scope="module")
def vit_b32_file(random_weights):
    """Random ViT-B/32 weights in OpenAI's TorchScript format (``write_random_openai_clip``, seed 0), written once
    per session by the spec's ``random_weights`` hook and shared with the end-to-end CLIP tests."""
    return Path(random_weights("clip-vitb32", seed=0))


@pytest.fixture(scope="module")
def vit_b32_state(vit_b32_file):
    return read_clip_state_dict(vit_b32_file)


@pytest.fixture(scope="module")
def vit_b32(vit_b32_state):
    return clip_visual_from_state_dict("ViT-B/32", vit_b32_state, "random ViT-B/32")


@pytest.fixture(scope="module")
def openai_vit_b32(openai_clip, vit_b32_file):
    return _openai_load(openai_clip, vit_b32_file)


# -- features --------------------------------------------------------------------------------------


@pytest.mark.parity
def test_vit_b32_embedding_equals_openai_encode_image(openai_vit_b32, vit_b32):
    model, _ = openai_vit_b32
    x = _batch(prepare_clean_fid, SIZES[:4], seed=10)
    with torch.no_grad():
        want = model.encode_image(x)
        got = vit_b32(x, taps=("embedding", "embedding_l2"))
    assert got["embedding"].shape == (4, 512)
    assert (got["embedding"] - want).abs().max().item() <= 1e-5
    assert (got["embedding_l2"] - want / want.norm(dim=1, keepdim=True)).abs().max().item() <= 1e-6
    assert want.std().item() > 0.1  # the random weights give features that differ between images


@pytest.mark.parity
def test_vit_l14_336_embedding_equals_openai_encode_image(openai_clip, random_weights):
    path = random_weights("clip-vitl14-336", seed=0)  # write_random_openai_clip, shared with test_feature_spaces_clip
    x = _batch(prepare_cmmd, SIZES[5:6], seed=20)
    with torch.no_grad():
        got = load_clip_visual(path, "ViT-L/14@336px")(x, taps=("embedding", "embedding_l2"))
        model, preprocess = _openai_load(openai_clip, path)
        want = model.encode_image(x)
    del model
    assert got["embedding"].shape == (1, 768)
    assert (got["embedding"] - want).abs().max().item() <= 1e-5
    assert (got["embedding_l2"] - want / want.norm(dim=1, keepdim=True)).abs().max().item() <= 1e-6
    # on a square image CMMD's crop-then-resize is OpenAI's resize-then-crop
    square = _image((401, 401), seed=21)
    assert (preprocess(Image.fromarray(square)) - prepare_cmmd(square)).abs().max().item() <= 1e-6


def test_embedding_l2_has_unit_norm(vit_b32):
    with torch.no_grad():
        out = vit_b32(_batch(prepare_clean_fid, SIZES[:2], seed=30), taps=("embedding_l2",))
    assert set(out) == {"embedding_l2"}
    torch.testing.assert_close(out["embedding_l2"].norm(dim=1), torch.ones(2))


def test_unknown_tap_is_refused(vit_b32):
    with pytest.raises(BadInputError, match="no tap 'pool3'"):
        vit_b32(torch.zeros(1, 3, 224, 224), taps=("pool3",))


def test_wrong_input_size_is_refused(vit_b32):
    with pytest.raises(BadInputError, match="3 x 224 x 224"):
        vit_b32(torch.zeros(1, 3, 336, 336))


# -- weights ---------------------------------------------------------------------------------------


def test_torchscript_archive_is_read_as_jit_reads_it_without_running_it(vit_b32_file, monkeypatch):
    # what clip.load(..., jit=False) reads: torch.jit.load(path).state_dict(); names, order, dtypes, strides, values
    jit_state = torch.jit.load(str(vit_b32_file), map_location="cpu").state_dict()

    def no_loader(*args, **kwargs):
        raise AssertionError("neither torch.load nor torch.jit.load may read a TorchScript archive")
    monkeypatch.setattr(torch, "load", no_loader)
    monkeypatch.setattr(torch.jit, "load", no_loader)
    state = read_clip_state_dict(vit_b32_file)
    assert list(state) == list(jit_state)
    for k, v in jit_state.items():
        assert (state[k].dtype, state[k].shape, state[k].stride()) == (v.dtype, v.shape, v.stride()), k
        assert torch.equal(state[k], v), k
    want = random_clip_state_dict("ViT-B/32", seed=0)
    assert state.keys() == want.keys()
    for k in ("visual.proj", "visual.ln_post.bias", "transformer.resblocks.11.mlp.c_fc.weight"):
        assert state[k].dtype == want[k].dtype
        assert torch.equal(state[k], want[k])


def test_plain_state_dict_file_loads_with_weights_only(vit_b32_state, tmp_path, monkeypatch):
    path = tmp_path / "state.pt"
    torch.save({k: v for k, v in vit_b32_state.items() if k.startswith("visual.")}, path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)
    monkeypatch.setattr(torch, "load", spy)
    net = load_clip_visual(path, "ViT-B/32")
    assert calls == [True]
    assert torch.equal(net.proj, vit_b32_state["visual.proj"].float())


def test_missing_key_names_the_key_and_the_source(vit_b32_state):
    state = dict(vit_b32_state)
    del state["visual.ln_post.bias"]
    with pytest.raises(WeightsUnavailableError, match=r"my-file\.pt.*missing 1: visual\.ln_post\.bias"):
        clip_visual_from_state_dict("ViT-B/32", state, "my-file.pt")


def test_unexpected_key_is_refused(vit_b32_state):
    state = dict(vit_b32_state, **{"visual.extra.weight": torch.zeros(1)})
    with pytest.raises(WeightsUnavailableError, match=r"unexpected 1: visual\.extra\.weight"):
        load_clip_visual_state_dict(CLIPVisual("ViT-B/32"), state, "my-file.pt")


def test_file_of_another_architecture_is_refused(vit_b32_state):
    with pytest.raises(WeightsUnavailableError, match="ViT-L/14@336px image tower.*ViT-L-14-336px.pt"):
        clip_visual_from_state_dict("ViT-L/14@336px", vit_b32_state, "ViT-B-32.pt")


def test_text_tower_is_ignored(vit_b32_state):
    visual_only = {k: v for k, v in vit_b32_state.items() if k.startswith("visual.")}
    assert len(visual_only) < len(vit_b32_state)
    clip_visual_from_state_dict("ViT-B/32", visual_only, "visual only")


def test_missing_file_is_unavailable(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        read_clip_state_dict(tmp_path / "ViT-B-32.pt")


def test_weight_specs_carry_the_full_sha256_from_the_url():
    for spec in WEIGHTS.values():
        assert len(spec.sha256) == 64
        assert spec.url.split("/")[-2] == spec.sha256
        assert spec.url.endswith("/" + spec.filename)


# -- preprocessing ---------------------------------------------------------------------------------


@pytest.mark.parity
def test_clean_fid_variant_equals_cleanfid_img_preprocess_clip(openai_clip):  # cleanfid.clip_features imports clip
    clip_features = pytest.importorskip("cleanfid.clip_features")
    transforms = pytest.importorskip("torchvision.transforms")
    normalize = transforms.Normalize(MEAN, STD)
    for i, size in enumerate(SIZES):
        img = _image(size, seed=40 + i)
        ref_u8 = clip_features.img_preprocess_clip(img)
        np.testing.assert_array_equal(resize_crop_clean_fid(img), ref_u8)
        # clean-fid: ToTensor() * 255 (ResizeDataset), then / 255 and Normalize (CLIP_fx)
        ref = normalize(transforms.ToTensor()(ref_u8) * 255 / 255.0)
        assert (prepare_clean_fid(img) - ref).abs().max().item() <= 1e-6, size


@pytest.mark.parity
def test_clean_fid_variant_equals_openai_preprocess(openai_vit_b32):
    _, preprocess = openai_vit_b32
    for i, size in enumerate(SIZES):
        img = _image(size, seed=50 + i)
        assert (prepare_clean_fid(img) - preprocess(Image.fromarray(img))).abs().max().item() <= 1e-6, size


def _cmmd_definition(img: np.ndarray) -> np.ndarray:
    # google-research cmmd/io_util.py: largest centred square (floor offsets), PIL bicubic to 336, a grayscale
    # image tiled to 3 channels after that; then / 255 and CLIP mean / std (cmmd/embedding.py, Scenic).
    im = Image.fromarray(img)
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((336, 336), resample=Image.BICUBIC)
    x = np.asarray(im).astype(np.float32)
    if x.ndim == 2:
        x = np.tile(x[..., np.newaxis], (1, 1, 3))
    x = x / 255.0
    return ((x - np.float32(MEAN)) / np.float32(STD)).transpose(2, 0, 1)


def test_cmmd_variant_equals_its_definition():
    for i, size in enumerate(SIZES):
        img = _image(size, seed=60 + i)
        np.testing.assert_allclose(prepare_cmmd(img).numpy(), _cmmd_definition(img), rtol=0, atol=1e-6,
                                   err_msg=str(size))


def test_cmmd_crop_floors_odd_offsets():
    img = np.zeros((5, 8, 3), np.uint8)
    img[:, 1:6] = 255  # the square CMMD keeps: columns 1..5 ((8 - 5) // 2 = 1)
    assert crop_resize_cmmd(img, size=5).min() == 255


def test_clean_fid_crop_rounds_half_to_even():
    # 224 x 227: no resize, crop offset round(1.5) = 2; 224 x 225: round(0.5) = 0
    img = np.arange(227, dtype=np.uint8)[None, :, None].repeat(224, 0).repeat(3, 2)
    assert resize_crop_clean_fid(img)[0, 0, 0] == 2
    assert resize_crop_clean_fid(img[:, :225])[0, 0, 0] == 0


def test_cmmd_grayscale_equals_its_definition():
    gray = _image((61, 47), seed=70)[:, :, 0]
    np.testing.assert_allclose(prepare_cmmd(gray).numpy(), _cmmd_definition(gray), rtol=0, atol=1e-6)


def test_clean_fid_grayscale_is_converted_to_rgb_first():
    gray = _image((61, 47), seed=71)[:, :, 0]
    torch.testing.assert_close(prepare_clean_fid(gray), prepare_clean_fid(np.repeat(gray[:, :, None], 3, axis=2)),
                               rtol=0, atol=0)


def test_non_uint8_image_is_refused():
    with pytest.raises(BadInputError, match="uint8"):
        prepare_cmmd(np.zeros((10, 10, 3), np.float32))


def test_variant_sizes_match_their_architectures():
    for variant in PREPROCESSING.values():
        assert variant.prepare(_image((50, 70), seed=80)).shape == (3, variant.size, variant.size)
        assert variant.size == ARCHS[variant.arch].resolution
