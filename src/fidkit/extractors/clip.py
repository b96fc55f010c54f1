"""OpenAI CLIP image encoders: ViT-B/32 (CLIP-FID) and ViT-L/14@336px (CMMD).

The network is OpenAI's ``VisionTransformer`` (github.com/openai/CLIP,
``clip/model.py``) written out again, with its parameter names, so that the
``visual.*`` entries of the published files load as they are.  The features
are ``encode_image``: the class token after ``ln_post``, times ``proj``.

* CLIP-FID (clean-fid 0.1.35, ``cleanfid/clip_features.py``) uses ViT-B/32's
  512-d embedding as it is, not normalised: tap ``"embedding"``.
* CMMD (google-research ``cmmd/embedding.py``, through Scenic) uses
  ViT-L/14@336px's 768-d embedding divided by its L2 norm: tap
  ``"embedding_l2"``.

Each use has its own preprocessing (:data:`PREPROCESSING`): ``clean-fid``
resizes the shorter side then centre-crops (torchvision semantics on a PIL
image), ``cmmd`` centre-crops to a square first and then resizes.  Both run
in PIL, one image at a time.

fidkit always runs CLIP in float32.  OpenAI's ``clip.load`` keeps the
published half-precision weights on CUDA, so clean-fid's CLIP features on a
GPU are fp16 activations; fidkit's are the float32 features that ``clip.load``
gives on the CPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from fidkit.errors import BadInputError, WeightsUnavailableError
from fidkit.extractors.torchscript import is_torchscript_archive, read_torchscript_state_dict
from fidkit.extractors.weights import WeightSpec, check_finite, load_error_reason

__all__ = [
    "ARCHS", "CLIPArch", "CLIPVisual", "TAPS", "WEIGHTS", "WEIGHTS_LICENCE",
    "MEAN", "STD", "PREPROCESSING", "ClipPreprocessing",
    "read_clip_state_dict", "load_clip_visual_state_dict", "clip_visual_from_state_dict", "load_clip_visual",
    "random_clip_state_dict", "write_random_openai_clip",
    "resize_crop_clean_fid", "crop_resize_cmmd", "normalize_clip", "prepare_clean_fid", "prepare_cmmd",
]


@dataclasses.dataclass(frozen=True)
class CLIPArch:
    """The shapes of one published CLIP model (image tower, and the text tower its files also hold)."""

    name: str
    width: int             # image transformer width
    layers: int
    heads: int
    patch: int
    resolution: int        # input side in pixels
    embed_dim: int         # output of ``proj``
    text_width: int
    text_heads: int
    text_layers: int = 12
    context_length: int = 77
    vocab_size: int = 49408

    @property
    def grid(self) -> int:
        return self.resolution // self.patch


ARCHS: dict[str, CLIPArch] = {
    "ViT-B/32": CLIPArch("ViT-B/32", width=768, layers=12, heads=12, patch=32, resolution=224, embed_dim=512,
                         text_width=512, text_heads=8),
    "ViT-L/14@336px": CLIPArch("ViT-L/14@336px", width=1024, layers=24, heads=16, patch=14, resolution=336,
                               embed_dim=768, text_width=768, text_heads=12),
}

#: The taps one forward can return.
TAPS = ("embedding", "embedding_l2")

#: OpenAI's published files.  The hex directory in each URL is the file's full
#: sha256 (``clip.load`` checks it the same way).  Licence of code and weights:
#: MIT (github.com/openai/CLIP, ``LICENSE``).
WEIGHTS: dict[str, WeightSpec] = {
    "ViT-B/32": WeightSpec(
        name="clip-vit-b-32",
        filename="ViT-B-32.pt",
        url="https://openaipublic.azureedge.net/clip/models/"
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
        sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        env_var="FIDKIT_CLIP_VIT_B_32_WEIGHTS",
    ),
    "ViT-L/14@336px": WeightSpec(
        name="clip-vit-l-14-336px",
        filename="ViT-L-14-336px.pt",
        url="https://openaipublic.azureedge.net/clip/models/"
            "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
        sha256="3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
        env_var="FIDKIT_CLIP_VIT_L_14_336PX_WEIGHTS",
    ),
}
WEIGHTS_LICENCE = "MIT"


def _arch(arch: str | CLIPArch) -> CLIPArch:
    if isinstance(arch, CLIPArch):
        return arch
    if arch not in ARCHS:
        raise BadInputError(f"unknown CLIP architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return ARCHS[arch]


# --------------------------------------------------------------------------------------------------
# The network


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names.

    ``in_proj_weight`` stacks the query, key and value projections (3*width x
    width), as in the published files.  The attention itself is
    ``F.scaled_dot_product_attention`` (scale 1/sqrt(head dim)), which is what
    ``nn.MultiheadAttention`` calls too when no weights are requested.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(n, length, width))


class MLP(nn.Module):
    """``c_fc``, QuickGELU ``x * sigmoid(1.702 x)`` (the activation CLIP was trained with), ``c_proj``."""

    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        return self.c_proj(h * torch.sigmoid(1.702 * h))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = MLP(width)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class CLIPVisual(nn.Module):
    """CLIP's image tower (``model.visual``), float32.

    ``forward(x, taps)`` takes float32 ``N x 3 x R x R`` images already
    normalised with :data:`MEAN` / :data:`STD` (``R`` = 224 for ViT-B/32, 336
    for ViT-L/14@336px) and returns a dict with the requested taps, each
    ``N x embed_dim``:

    * ``"embedding"``: OpenAI's ``encode_image``, projected, not normalised;
    * ``"embedding_l2"``: the same divided by its L2 norm (CMMD).

    Tokens are kept batch-first (OpenAI permutes to sequence-first for
    ``nn.MultiheadAttention``; the arithmetic per token is the same).
    """

    def __init__(self, arch: str | CLIPArch = "ViT-B/32"):
        super().__init__()
        a = _arch(arch)
        self.arch = a
        self.input_size = a.resolution
        self.taps = {"embedding": a.embed_dim, "embedding_l2": a.embed_dim}
        self.conv1 = nn.Conv2d(3, a.width, kernel_size=a.patch, stride=a.patch, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(a.width))
        self.positional_embedding = nn.Parameter(torch.empty(a.grid ** 2 + 1, a.width))
        self.ln_pre = nn.LayerNorm(a.width)
        self.transformer = Transformer(a.width, a.layers, a.heads)
        self.ln_post = nn.LayerNorm(a.width)
        self.proj = nn.Parameter(torch.empty(a.width, a.embed_dim))

    def forward(self, x: torch.Tensor, taps: Iterable[str] = ("embedding",)) -> dict[str, torch.Tensor]:
        taps = (taps,) if isinstance(taps, str) else tuple(taps)
        unknown = [t for t in taps if t not in self.taps]
        if unknown:
            raise BadInputError(f"CLIP {self.arch.name} has no tap {unknown[0]!r}; its taps: {', '.join(self.taps)}")
        r = self.input_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, r, r):
            raise BadInputError(f"CLIP {self.arch.name} takes N x 3 x {r} x {r} images, got {tuple(x.shape)}")

        tokens = self.conv1(x).flatten(2).transpose(1, 2)                  # N x grid^2 x width
        cls = self.class_embedding.expand(tokens.shape[0], 1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.positional_embedding
        tokens = self.transformer(self.ln_pre(tokens))
        embedding = self.ln_post(tokens[:, 0]) @ self.proj

        out = {}
        if "embedding" in taps:
            out["embedding"] = embedding
        if "embedding_l2" in taps:
            out["embedding_l2"] = F.normalize(embedding, dim=1)
        return out


# --------------------------------------------------------------------------------------------------
# Reading the published files


def read_clip_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a CLIP checkpoint (image and text towers), on the CPU.

    OpenAI publishes TorchScript archives (``ViT-B-32.pt``,
    ``ViT-L-14-336px.pt``).  Their parameters are read as data by
    :func:`~fidkit.extractors.torchscript.read_torchscript_state_dict`: the
    names and tensors ``torch.jit.load(...).state_dict()`` gives (what
    ``clip.load(..., jit=False)`` reads), without TorchScript's loader, so no
    code in the file runs.  A plain state dict (``torch.save(model.state_dict())``)
    is read with ``torch.load(weights_only=True)``.  Neither checks the file's
    origin: the caller checks its sha256 (:data:`WEIGHTS`) first.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"CLIP weight file {path} does not exist")
    if is_torchscript_archive(path):
        state = read_torchscript_state_dict(path, "CLIP")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError (a pickle of other objects), RuntimeError, EOFError, ...
            raise WeightsUnavailableError(f"{path}: not a readable CLIP checkpoint ({load_error_reason(e)}); "
                                          "expected OpenAI's TorchScript archive or a plain state dict of "
                                          "tensors") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{path}: holds {type(state).__name__}, not a CLIP state dict of tensors")
    return dict(state)


def _visual_entries(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], arch: CLIPArch,
                    source: str) -> dict[str, torch.Tensor]:
    """The ``visual.*`` entries of ``state`` without the prefix, as float32, checked against ``expected``."""
    prefix = "visual."
    visual = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(visual))
    unexpected = sorted(set(visual) - set(expected))
    if missing or unexpected:
        def show(keys):
            return ", ".join(prefix + k for k in keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        parts = [f"missing {len(missing)}: {show(missing)}"] if missing else []
        parts += [f"unexpected {len(unexpected)}: {show(unexpected)}"] if unexpected else []
        raise WeightsUnavailableError(
            f"{source}: not the OpenAI CLIP {arch.name} image tower ({'; '.join(parts)}); "
            f"expected the published file {WEIGHTS[arch.name].filename}")
    wrong = [f"{prefix}{k} {tuple(visual[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if visual[k].shape != v.shape]
    if wrong:
        raise WeightsUnavailableError(f"{source}: shapes do not fit CLIP {arch.name}: {'; '.join(wrong[:3])}")
    return {k: v.to(torch.float32) for k, v in visual.items()}


def load_clip_visual_state_dict(net: CLIPVisual, state: dict[str, torch.Tensor], source: str) -> CLIPVisual:
    """Copy the ``visual.*`` entries of a whole-model CLIP state dict into ``net``, as float32.

    The text tower's entries are ignored.  Missing or unexpected image-tower
    entries, or entries of the wrong shape (another architecture's file), are
    refused with a :class:`~fidkit.errors.WeightsUnavailableError` naming
    ``source``.
    """
    net.load_state_dict(_visual_entries(state, net.state_dict(), net.arch, source))
    return net


def clip_visual_from_state_dict(arch: str | CLIPArch, state: dict[str, torch.Tensor], source: str) -> CLIPVisual:
    """A float32 :class:`CLIPVisual` in eval mode with the image tower of ``state`` (checked as
    :func:`load_clip_visual_state_dict` does).

    The module is built without initialising its parameters (on the meta
    device) and then takes the loaded tensors: no time spent on an
    initialisation that is overwritten, no second copy of the weights.
    """
    a = _arch(arch)
    with torch.device("meta"):
        net = CLIPVisual(a)
    net.load_state_dict(_visual_entries(state, net.state_dict(), a, source), assign=True)
    return net.eval()


def load_clip_visual(path: str | os.PathLike, arch: str | CLIPArch) -> CLIPVisual:
    """Read a CLIP checkpoint file and return its image tower (see :func:`read_clip_state_dict`)."""
    state = read_clip_state_dict(path)
    check_finite(state, path)
    return clip_visual_from_state_dict(arch, state, str(path))


# --------------------------------------------------------------------------------------------------
# Random weights in the published format (tests and benchmarks)

# Entries that OpenAI's ``convert_weights`` stores in half precision: weights and
# biases of convolutions, linear layers and attention projections, and both
# output projections.  Embeddings, LayerNorms and ``logit_scale`` stay float32.
_HALF_SUFFIXES = ("conv1.weight", "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias",
                  "c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias")


def _is_half_in_published(key: str) -> bool:
    return key.endswith(_HALF_SUFFIXES) or key in ("visual.proj", "text_projection")


def _tower_init(shapes: dict[str, torch.Size], width: int, layers: int) -> dict[str, tuple[torch.Size, float, float]]:
    """``key -> (shape, mean, std)`` for the random entries of one transformer tower.

    The standard deviations are those of OpenAI's own initialisation, so
    activations keep a sensible scale through all layers; biases and
    LayerNorm affines are nonzero so that a loader which drops them is caught.
    """
    attn_std = width ** -0.5
    proj_std = attn_std * (2 * layers) ** -0.5
    out = {}
    for key, shape in shapes.items():
        *parents, leaf = key.split(".")
        if parents and parents[-1].startswith("ln_"):
            out[key] = (shape, 1.0 if leaf == "weight" else 0.0, 0.1)
        elif leaf in ("in_proj_bias", "bias"):
            out[key] = (shape, 0.0, 0.02)
        elif key.endswith(("out_proj.weight", "c_proj.weight")):
            out[key] = (shape, 0.0, proj_std)
        elif key.endswith("c_fc.weight"):
            out[key] = (shape, 0.0, (2 * width) ** -0.5)
        elif key == "conv1.weight":
            out[key] = (shape, 0.0, math.prod(shape[1:]) ** -0.5)
        else:  # in_proj_weight, class and positional embeddings, proj
            out[key] = (shape, 0.0, attn_std)
    return out


def random_clip_state_dict(arch: str | CLIPArch, seed: int = 0, *,
                           published_dtypes: bool = True) -> dict[str, torch.Tensor]:
    """Random weights with every entry of OpenAI's file for ``arch``: names, shapes, and (by default) dtypes.

    Both towers are there (a loader that builds the whole CLIP model accepts
    it), plus the integer entries ``input_resolution``, ``context_length`` and
    ``vocab_size`` that the published archives carry.  With
    ``published_dtypes`` the entries OpenAI stores in half precision are half
    here too (drawn directly in half: the values depend on the flag), so every
    loader sees the same values.
    """
    a = _arch(arch)
    with torch.device("meta"):
        visual = {k: v.shape for k, v in CLIPVisual(a).state_dict().items()}
        text = {k: v.shape for k, v in Transformer(a.text_width, a.text_layers, a.text_heads).state_dict().items()}
    width = torch.Size([a.text_width])
    init = {
        "positional_embedding": (torch.Size([a.context_length, a.text_width]), 0.0, 0.01),
        "text_projection": (torch.Size([a.text_width, a.embed_dim]), 0.0, a.text_width ** -0.5),
        **{"visual." + k: v for k, v in _tower_init(visual, a.width, a.layers).items()},
        **{"transformer." + k: v for k, v in _tower_init(text, a.text_width, a.text_layers).items()},
        "token_embedding.weight": (torch.Size([a.vocab_size, a.text_width]), 0.0, 0.02),
        **_tower_init({"ln_final.weight": width, "ln_final.bias": width}, a.text_width, 1),
    }
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, (shape, mean, std) in init.items():
        dtype = torch.float16 if published_dtypes and _is_half_in_published(key) else torch.float32
        state[key] = torch.empty(shape, dtype=dtype).normal_(mean, std, generator=g)  # one pass over memory
    state["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    state["input_resolution"] = torch.tensor(a.resolution)
    state["context_length"] = torch.tensor(a.context_length)
    state["vocab_size"] = torch.tensor(a.vocab_size)
    return state


class _TensorHolder(nn.Module):
    """A module tree whose only content is named tensors: what a TorchScript archive needs to carry a state dict."""

    def forward(self) -> int:
        return 0


def write_random_openai_clip(path: str | os.PathLike, arch: str | CLIPArch, seed: int = 0) -> Path:
    """Write :func:`random_clip_state_dict` as a TorchScript archive, the format of OpenAI's files.

    ``torch.jit.load(path).state_dict()`` returns the random state dict, so
    ``clip.load(path, jit=False)`` and :func:`read_clip_state_dict` both read
    it.  The archive has no ``encode_image`` method: ``clip.load(..., jit=True)``
    does not work on it.
    """
    path = Path(path)
    root = _TensorHolder()
    for key, value in random_clip_state_dict(arch, seed).items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, _TensorHolder())
            module = getattr(module, name)
        if value.is_floating_point():
            module.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
        else:
            module.register_buffer(leaf, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(root).save(str(path))
    return path


# --------------------------------------------------------------------------------------------------
# Preprocessing

#: CLIP's normalisation (OpenAI ``clip/clip.py: _transform``; Scenic ``normalize_image``).
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
_MEAN = np.asarray(MEAN, dtype=np.float32)
_STD = np.asarray(STD, dtype=np.float32)


def _rgb_image(img: np.ndarray) -> Image.Image:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise BadInputError(f"CLIP preprocessing takes a uint8 numpy image, got "
                            f"{getattr(img, 'dtype', type(img).__name__)}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:  # grayscale: both references replicate the channel (PIL convert('RGB') / np.tile)
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
        raise BadInputError(f"CLIP preprocessing takes an H x W x 3 image, got shape {img.shape}")
    return Image.fromarray(np.ascontiguousarray(img))


def resize_crop_clean_fid(img: np.ndarray, size: int = 224) -> np.ndarray:
    """clean-fid's ``img_preprocess_clip``: uint8 ``H x W x 3`` -> uint8 ``size x size x 3``.

    torchvision ``Resize(size, BICUBIC)`` on a PIL image: the shorter side
    becomes ``size``, the longer ``int(size * long / short)`` (truncated), PIL
    bicubic with antialiasing, skipped when the size is already right; then
    ``CenterCrop(size)``, whose offsets are ``int(round((L - size) / 2))``
    (Python's round: halves go to even).
    """
    im = _rgb_image(img)
    w, h = im.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        im = im.resize((new_w, new_h), resample=Image.BICUBIC)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return np.asarray(im.crop((left, top, left + size, top + size)))


def crop_resize_cmmd(img: np.ndarray, size: int = 336) -> np.ndarray:
    """CMMD's ``_center_crop_and_resize`` (google-research ``cmmd/io_util.py``): uint8 -> uint8 ``size x size x 3``.

    The largest centred square, offsets ``(L - side) // 2`` (floor), then PIL
    ``resize((size, size), BICUBIC)`` (antialiased).  CMMD's later
    ``jax.image.resize`` to the same size changes nothing.
    """
    im = _rgb_image(img)
    w, h = im.size
    side = min(w, h)
    top, left = (h - side) // 2, (w - side) // 2
    im = im.crop((left, top, left + side, top + side))
    return np.asarray(im.resize((size, size), resample=Image.BICUBIC))


def normalize_clip(img: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W x 3`` -> float32 ``3 x H x W``: ``x / 255``, then CLIP's mean and std, in float32."""
    x = (img.astype(np.float32) / np.float32(255) - _MEAN) / _STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def prepare_clean_fid(img: np.ndarray) -> torch.Tensor:
    """CLIP-FID input as clean-fid computes it: uint8 ``H x W x 3`` -> float32 ``3 x 224 x 224``."""
    return normalize_clip(resize_crop_clean_fid(img, 224))


def prepare_cmmd(img: np.ndarray) -> torch.Tensor:
    """CMMD input as google-research computes it: uint8 ``H x W x 3`` -> float32 ``3 x 336 x 336``."""
    return normalize_clip(crop_resize_cmmd(img, 336))


class ClipPreprocessing(NamedTuple):
    """A named preprocessing variant: uint8 ``H x W x 3`` -> float32 ``3 x size x size``, for one architecture."""

    size: int
    prepare: Callable[[np.ndarray], torch.Tensor]
    arch: str
    summary: str


#: The named preprocessing variants.
PREPROCESSING: dict[str, ClipPreprocessing] = {
    "clean-fid": ClipPreprocessing(
        224, prepare_clean_fid, "ViT-B/32",
        "clean-fid CLIP-FID: PIL bicubic shorter side to 224, centre crop, uint8, CLIP mean/std"),
    "cmmd": ClipPreprocessing(
        336, prepare_cmmd, "ViT-L/14@336px",
        "CMMD: centre crop to a square, PIL bicubic to 336x336, CLIP mean/std"),
}


# --------------------------------------------------------------------------------------------------
# Declarations


def _spec(arch: str, name: str, key: str, aliases: tuple[str, ...], summary: str):
    import dataclasses as _dc

    from fidkit.extractors.base import ExtractorSpec, Preprocessing, Tap, register

    dim = ARCHS[arch].embed_dim
    how = {"clean-fid": ("PIL bicubic, shorter side to 224 (anti-aliased), uint8", "centre 224 x 224 (half-pixel "
                         "offsets rounded as torchvision's CenterCrop)"),
           "cmmd": ("PIL bicubic to 336 x 336 (anti-aliased), uint8", "centre square first (offsets floored)")}
    variants = tuple(Preprocessing(n, v.summary, v.size, None, v.prepare, resize=how[n][0], crop=how[n][1],
                                   normalization="x / 255, CLIP mean/std")
                     for n, v in PREPROCESSING.items() if v.arch == arch)
    return register(ExtractorSpec(
        name=name, summary=summary,
        taps=(Tap("embedding", dim, "embedding", "encode_image: projected, not normalised"),
              Tap("embedding_l2", dim, "embedding_l2", "encode_image, L2-normalised")),
        defaults={"embedding": "embedding", "embedding_l2": "embedding_l2"},
        preprocessing=variants, default_preprocessing=variants[0].name,
        weights=_dc.replace(WEIGHTS[arch], licence=WEIGHTS_LICENCE),
        build=lambda state, source: clip_visual_from_state_dict(arch, state, source),
        identity=name, key=key, aliases=aliases, read_weights=read_clip_state_dict,
        random_weights=lambda path, seed=0: str(write_random_openai_clip(path, arch, seed)),
    ))


SPEC_VITB32 = _spec("ViT-B/32", "clip-vitb32", "clip", ("clip", "clip-vit-b-32", "clip_vit_b_32"),
                    "OpenAI CLIP ViT-B/32 image embedding, 512-d: CLIP-FID as clean-fid computes it")
SPEC_VITL14_336 = _spec("ViT-L/14@336px", "clip-vitl14-336", "clip_vitl14_336",
                        ("clip-vit-l-14-336px", "clip-vitl14-336px"),
                        "OpenAI CLIP ViT-L/14@336px image embedding, 768-d (L2-normalised for CMMD)")
