"""DINOv2 ViT-B/14 and ViT-L/14, the networks behind FD-DINOv2 (Stein et al. 2023).

FD-DINOv2 is the Fréchet distance between the final-LayerNorm CLS tokens
(``x_norm_clstoken``, 1024-d for ViT-L/14) of the published DINOv2 backbone,
as dgm-eval (``dgm_eval/models/dinov2.py``) and EDM2 (``calculate_metrics.py``)
compute it through ``torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14')``.
The CLS token is not L2-normalised.

This module is a self-contained definition of that network, written to agree
with ``facebookresearch/dinov2`` (``dinov2/models/vision_transformer.py`` and
``dinov2/layers``) to float32 rounding:

* parameter names are the published checkpoint's keys
  (``blocks.N.attn.qkv.weight``, ``blocks.N.ls1.gamma``, ...), so the file
  ``dinov2_vitl14_pretrain.pth`` loads with ``strict=True``; ``mask_token``
  (used only in training) is kept so that the file loads as published;
* pre-norm blocks with LayerScale, LayerNorm eps 1e-6, exact (erf) GELU,
  attention through ``F.scaled_dot_product_attention`` (as upstream does now);
* the 37 x 37 pretrained position embeddings (518 px) are resampled to the
  input's patch grid exactly as the official code does: see
  :func:`resample_pos_embed`.

Two preprocessing variants are named here (the choice is part of a statistic's
provenance): ``dgm-eval`` (default; what published FD-DINOv2 numbers use) and
``edm2`` (EDM2's fast batched torch resize).  See :data:`PREPROCESSING`.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from fidkit.errors import BadInputError, WeightsUnavailableError
from fidkit.extractors.vit import LayerScale, Mlp
from fidkit.extractors.weights import read_tensor_state_dict, state_dict_mismatch

PATCH_SIZE = 14
#: The checkpoints were trained at 518 px: 37 x 37 patches plus the CLS token.
PRETRAIN_GRID = 37
#: FD-DINOv2 (dgm-eval, EDM2) feeds 224 x 224 images: a 16 x 16 patch grid.
INPUT_SIZE = 224
LAYERNORM_EPS = 1e-6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DinoV2Arch:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: int = 4


ARCHS: dict[str, DinoV2Arch] = {
    "vitl14": DinoV2Arch(embed_dim=1024, depth=24, num_heads=16),  # FD-DINOv2's network
    "vitb14": DinoV2Arch(embed_dim=768, depth=12, num_heads=12),
}
DEFAULT_ARCH = "vitl14"

#: The published backbone files, in the shape of ``WeightSpec``'s fields
#: (``WeightSpec(**DINOV2_WEIGHTS["vitl14"])``).  The URLs are the ones
#: ``dinov2/hub/backbones.py`` builds.  Meta publishes no checksum; the sha256
#: values are those pinned in finegrain-ai/refiners
#: ``src/refiners/conversion/models/dinov2.py`` (``expected_sha256`` of the
#: ``original`` files, commit 30dbf44b) and recorded independently in several
#: other public projects; the ViT-L/14 file is 1,217,586,395 bytes.
DINOV2_WEIGHTS: dict[str, dict[str, str]] = {
    "vitl14": dict(
        name="dinov2-vitl14-lvd142m",
        filename="dinov2_vitl14_pretrain.pth",
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
        sha256="d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428",
        env_var="FIDKIT_DINOV2_VITL14_WEIGHTS",
    ),
    "vitb14": dict(
        name="dinov2-vitb14-lvd142m",
        filename="dinov2_vitb14_pretrain.pth",
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
        sha256="0b8b82f85de91b424aded121c7e1dcc2b7bc6d0adeea651bf73a13307fad8c73",
        env_var="FIDKIT_DINOV2_VITB14_WEIGHTS",
    ),
}
WEIGHTS_LICENCE = ("DINOv2 code and pretrained weights: Apache License 2.0 "
                   "(facebookresearch/dinov2, relicensed from CC-BY-NC on 2023-08-31)")


def _arch(arch: str) -> DinoV2Arch:
    try:
        return ARCHS[arch]
    except KeyError:
        raise BadInputError(f"unknown DINOv2 arch {arch!r}; choose one of {', '.join(ARCHS)}") from None


# ---------------------------------------------------------------------------
# Position embeddings
# ---------------------------------------------------------------------------

def resample_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resample ``1 x (1 + M*M) x D`` position embeddings to a ``rows x cols`` patch grid.

    The definition is the official one (``DinoVisionTransformer.interpolate_pos_encoding``
    with the hub defaults ``interpolate_offset=0.1``, ``interpolate_antialias=False``):
    the M x M patch embeddings, in float32, go through
    ``F.interpolate(mode="bicubic", align_corners=False, antialias=False)`` with
    ``scale_factor=((rows + 0.1) / M, (cols + 0.1) / M)``.  Because a scale factor is
    given, PyTorch maps output pixel ``i`` to source ``(i + 0.5) * M / (rows + 0.1) - 0.5``,
    not ``(i + 0.5) * M / rows - 0.5``: the 0.1 offset shifts every sample.  The CLS
    embedding is kept as is, and a grid equal to the pretrained one returns the input.

    timm resamples differently (``timm.layers.resample_abs_pos_embed``: an explicit
    output ``size``, so no offset, and ``antialias=True``, which for 37 -> 16 widens
    the bicubic kernel).  Its DINOv2 at 224 px therefore sees other position
    embeddings and gives other features; FD-DINOv2 as published uses the
    official resampling, so this one.
    """
    rows, cols = grid
    n = pos_embed.shape[1] - 1
    m = math.isqrt(n)
    if m * m != n:
        raise BadInputError(f"position embeddings of {n} patches are not a square grid")
    if (rows, cols) == (m, m):
        return pos_embed
    dim = pos_embed.shape[-1]
    pos = pos_embed.float()
    patches = pos[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, scale_factor=((rows + 0.1) / m, (cols + 0.1) / m),
                            mode="bicubic", align_corners=False, antialias=False)
    if tuple(patches.shape[-2:]) != (rows, cols):  # the offset is there to make floor() land here
        raise AssertionError(f"resampled grid {tuple(patches.shape[-2:])} != {(rows, cols)}")
    patches = patches.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
    return torch.cat((pos[:, :1], patches), dim=1).to(pos_embed.dtype)


# ---------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    def __init__(self, dim: int, *, device=None):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH_SIZE, stride=PATCH_SIZE, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # N x (rows*cols) x D, row-major


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, *, device=None):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, device=device)
        self.proj = nn.Linear(dim, dim, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        # default scale 1/sqrt(head_dim), as the official attention uses
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, arch: DinoV2Arch, *, device=None):
        super().__init__()
        d = arch.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=LAYERNORM_EPS, device=device)
        self.attn = Attention(d, arch.num_heads, device=device)
        self.ls1 = LayerScale(d, device=device)
        self.norm2 = nn.LayerNorm(d, eps=LAYERNORM_EPS, device=device)
        self.mlp = Mlp(d, arch.mlp_ratio * d, device=device)
        self.ls2 = LayerScale(d, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def _clear_pos_cache(module: "DinoV2", incompatible_keys) -> None:
    module._pos_cache.clear()


class DinoV2(nn.Module):
    """The DINOv2 backbone (no head), for inference.

    ``forward(x, taps=("cls",))`` takes a float ``N x 3 x H x W`` batch, already
    normalised (see :data:`PREPROCESSING`), with H and W multiples of 14, and
    returns ``{"cls": N x D}``: the CLS token after the final LayerNorm, what
    ``model(x)`` returns upstream (``x_norm_clstoken`` through an Identity head).

    Build it from weights with :meth:`from_state_dict` (no time spent on a random
    initialisation) or construct it and call :func:`load_dinov2_state_dict`.
    The position embeddings for an input size are resampled once and cached;
    loading, moving or replacing the weights invalidates the cache (editing
    ``pos_embed`` in place does not).
    """

    def __init__(self, arch: str = DEFAULT_ARCH, *, device: torch.device | str | None = None):
        super().__init__()
        spec = _arch(arch)
        self.arch = arch
        d = spec.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d, device=device))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + PRETRAIN_GRID ** 2, d, device=device))
        self.mask_token = nn.Parameter(torch.zeros(1, d, device=device))  # training only; kept for strict loading
        self.patch_embed = PatchEmbed(d, device=device)
        self.blocks = nn.ModuleList(Block(spec, device=device) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(d, eps=LAYERNORM_EPS, device=device)
        self._pos_cache: dict[tuple, torch.Tensor] = {}
        self._pos_cache_stamp: tuple | None = None
        self.register_load_state_dict_post_hook(_clear_pos_cache)

    @property
    def taps(self) -> dict[str, int]:
        """Feature taps one forward can return, with their dimensions."""
        return {"cls": self.norm.normalized_shape[0]}

    @classmethod
    def from_state_dict(cls, arch: str, state: dict[str, torch.Tensor], source: str) -> "DinoV2":
        """A network in eval mode holding ``state``'s tensors (float32), built without a throw-away initialisation."""
        net = cls(arch, device="meta")
        load_dinov2_state_dict(net, state, source)
        return net.eval()

    def position_embedding(self, grid: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        """``1 x (1 + rows*cols) x D`` position embeddings for a patch grid (cached per grid and dtype)."""
        pos = self.pos_embed
        # Loading weights clears the cache (post hook); moving or replacing them changes the stamp.
        # (Not pos._version: tensors made under inference_mode have none.)
        stamp = (pos.data_ptr(), pos.device)
        if stamp != self._pos_cache_stamp:
            self._pos_cache.clear()
            self._pos_cache_stamp = stamp
        key = (grid, dtype)
        if key not in self._pos_cache:
            with torch.no_grad():
                self._pos_cache[key] = resample_pos_embed(pos.detach(), grid).to(dtype)
        return self._pos_cache[key]

    def forward(self, x: torch.Tensor, taps=("cls",)) -> dict[str, torch.Tensor]:
        unknown = set(taps) - set(self.taps)
        if unknown:
            raise ValueError(f"unknown taps {sorted(unknown)}; available: {sorted(self.taps)}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise BadInputError(f"DINOv2 input must be N x 3 x H x W, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % PATCH_SIZE or w % PATCH_SIZE:
            raise BadInputError(f"DINOv2 input size {h} x {w} is not a multiple of the patch size {PATCH_SIZE}")
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens), dim=1)
        tokens = tokens + self.position_embedding((h // PATCH_SIZE, w // PATCH_SIZE), tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        # Only the CLS row is needed: LayerNorm is per token, so normalising it alone is the same number.
        return {"cls": self.norm(tokens[:, 0])}


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------


def read_dinov2_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a DINOv2 backbone file, on the CPU, read without running Python pickle.

    The published files are plain ``torch.save`` state dicts; ``torch.load(weights_only=True)``
    restores tensors and containers only.  The caller checks the file's sha256 first.
    """
    return read_tensor_state_dict(path, "DINOv2")


def load_dinov2_state_dict(net: DinoV2, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a published DINOv2 backbone state dict into ``net``; name ``source`` on any mismatch.

    Accepts the file as published (``mask_token`` included) and also copies that
    lack the training-only ``mask_token``; anything else missing, unexpected or of
    the wrong shape raises :class:`~fidkit.errors.WeightsUnavailableError`.
    Tensors are converted to float32.  A network built on the ``meta`` device takes
    the tensors themselves (no copy).
    """
    expected = net.state_dict()
    state = dict(state)
    if "mask_token" not in state and "mask_token" in expected:
        state["mask_token"] = torch.zeros(expected["mask_token"].shape)
    mismatch = state_dict_mismatch(expected, state)
    if mismatch:
        raise WeightsUnavailableError(
            f"{source} is not a DINOv2 {net.arch} backbone state dict in the published layout "
            f"({mismatch}); expected the file {DINOV2_WEIGHTS[net.arch]['filename']}")
    on_meta = any(p.is_meta for p in net.parameters())
    net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True, assign=on_meta)
    net._pos_cache.clear()


def random_dinov2_state_dict(arch: str = DEFAULT_ARCH, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the published file's keys, shapes and dtype (float32).

    Scaled so that activations stay O(1) through all blocks and attention is far
    from uniform (query/key entries of unit size), and features differ from image
    to image by far more than float32 rounding: parity tests under these weights
    exercise every parameter.
    """
    spec = _arch(arch)
    d, hidden = spec.embed_dim, spec.mlp_ratio * spec.embed_dim
    g = torch.Generator().manual_seed(seed)

    def normal(*shape, std: float, mean: float = 0.0) -> torch.Tensor:
        return torch.empty(shape).normal_(mean, std, generator=g)  # one pass: ViT-L/14 is 304M values

    def layernorm(prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": normal(d, std=0.05, mean=1.0), f"{prefix}.bias": normal(d, std=0.02)}

    state = {
        "cls_token": normal(1, 1, d, std=0.02),
        # of the size of the patch embeddings, so that resampling errors would show in the features
        "pos_embed": normal(1, 1 + PRETRAIN_GRID ** 2, d, std=0.5),
        "mask_token": normal(1, d, std=0.02),
        "patch_embed.proj.weight": normal(d, 3, PATCH_SIZE, PATCH_SIZE, std=(3 * PATCH_SIZE ** 2) ** -0.5),
        "patch_embed.proj.bias": normal(d, std=0.02),
    }
    for i in range(spec.depth):
        p = f"blocks.{i}"
        state.update(layernorm(f"{p}.norm1"))
        state[f"{p}.attn.qkv.weight"] = normal(3 * d, d, std=d ** -0.5)
        state[f"{p}.attn.qkv.bias"] = normal(3 * d, std=0.02)
        state[f"{p}.attn.proj.weight"] = normal(d, d, std=d ** -0.5)
        state[f"{p}.attn.proj.bias"] = normal(d, std=0.02)
        state[f"{p}.ls1.gamma"] = normal(d, std=0.05, mean=0.3)
        state.update(layernorm(f"{p}.norm2"))
        state[f"{p}.mlp.fc1.weight"] = normal(hidden, d, std=d ** -0.5)
        state[f"{p}.mlp.fc1.bias"] = normal(hidden, std=0.02)
        state[f"{p}.mlp.fc2.weight"] = normal(d, hidden, std=hidden ** -0.5)
        state[f"{p}.mlp.fc2.bias"] = normal(d, std=0.02)
        state[f"{p}.ls2.gamma"] = normal(d, std=0.05, mean=0.3)
    state.update(layernorm("norm"))
    return state


# ---------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------

def _normalize_imagenet(x: torch.Tensor) -> torch.Tensor:
    """``x`` in [0, 1] (``3 x H x W`` or ``N x 3 x H x W``) -> ``(x - mean) / std``, float32 constants."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


def preprocess_dgm_eval(image: np.ndarray | Image.Image) -> torch.Tensor:
    """dgm-eval's DINOv2 transform: one uint8 ``H x W x 3`` RGB image -> float32 ``3 x 224 x 224``.

    ``PIL.Image.resize((224, 224), BICUBIC)`` on the uint8 image (squash to a square,
    no crop; PIL's bicubic widens its kernel when shrinking, so it is anti-aliased,
    and the result is re-quantised to uint8), then ``/ 255`` and ImageNet mean/std.
    That is torchvision's ``Resize((224, 224), BICUBIC)``, ``ToTensor()``,
    ``Normalize(mean, std)`` on a PIL image, as in ``dgm_eval/models/dinov2.py``
    (and EDM2's ``resize_mode='pil'``).  Per image, on the CPU.
    """
    if isinstance(image, Image.Image):
        pil = image.convert("RGB")
    else:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise BadInputError(f"dgm-eval preprocessing takes a uint8 H x W x 3 RGB image, got {desc}")
        pil = Image.fromarray(np.ascontiguousarray(image))
    resized = np.asarray(pil.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC))
    x = torch.from_numpy(resized.transpose(2, 0, 1).copy()).to(torch.float32) / 255
    return _normalize_imagenet(x)


def preprocess_edm2(batch: torch.Tensor) -> torch.Tensor:
    """EDM2's fast DINOv2 transform: uint8 ``N x 3 x H x W`` -> float32 ``N x 3 x 224 x 224``, on the batch's device.

    Float ``[0, 255]`` input takes the same path, with gradients (:class:`fidkit.DifferentiableFID`).

    As ``DINOv2Detector.__call__`` with ``resize_mode='torch'`` (NVlabs/edm2
    ``calculate_metrics.py``): ``F.interpolate`` bicubic with ``antialias=True``
    on the [0, 255] float32 values (always, even at 224 px), neither clamped nor
    re-quantised, then ``/ 255`` and ImageNet mean/std.  EDM2 notes that it "yields
    almost the same results" as dgm-eval's PIL path; it is not the same number.
    """
    if (not isinstance(batch, torch.Tensor) or not (batch.dtype == torch.uint8 or batch.is_floating_point())
            or batch.dim() != 4 or batch.shape[1] != 3):
        desc = f"{batch.dtype} {tuple(batch.shape)}" if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise BadInputError(f"edm2 preprocessing takes a uint8 N x 3 x H x W batch (or float values in [0, 255]), "
                            f"got {desc}")
    x = F.interpolate(batch.to(torch.float32), size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic",
                      align_corners=False, antialias=True)
    return _normalize_imagenet(x / 255)


#: Named preprocessing variants, in the shape of ``Preprocessing``'s fields
#: (``Preprocessing(name=name, size=INPUT_SIZE, **PREPROCESSING[name])``): ``prepare_image``
#: takes one uint8 ``H x W x 3`` numpy image (per image, CPU), ``prepare_batch`` a uint8
#: ``N x 3 x H x W`` tensor (batched, on its device).
PREPROCESSING: dict[str, dict] = {
    "dgm-eval": dict(summary="dgm-eval: PIL bicubic resize of the uint8 image to 224 x 224 (squash, anti-aliased), "
                             "ImageNet mean/std; what published FD-DINOv2 numbers use",
                     prepare_batch=None, prepare_image=preprocess_dgm_eval,
                     resize="PIL bicubic on the uint8 image (anti-aliased), re-quantised to uint8",
                     normalization="x / 255, ImageNet mean/std"),
    "edm2": dict(summary="EDM2: torch bicubic anti-aliased resize of [0, 255] floats to 224 x 224 (batched), "
                         "ImageNet mean/std; close to dgm-eval, not equal",
                 prepare_batch=preprocess_edm2, prepare_image=None,
                 resize="F.interpolate bicubic, antialias=True, on [0, 255] float32, not re-quantised",
                 normalization="x / 255, ImageNet mean/std"),
}
DEFAULT_PREPROCESSING = "dgm-eval"


# ---------------------------------------------------------------------------
# Declaration
# ---------------------------------------------------------------------------

def _save(state: dict[str, torch.Tensor], path: str | os.PathLike) -> str:
    """``state`` as the published ``dinov2_<arch>_pretrain.pth`` is: a plain state dict."""
    torch.save(state, path)
    return str(path)


def _spec(arch: str, name: str, key: str, aliases: tuple[str, ...], summary: str):
    from functools import partial

    from fidkit.extractors.base import ExtractorSpec, Preprocessing, Tap, register
    from fidkit.extractors.weights import WeightSpec

    return register(ExtractorSpec(
        name=name, summary=summary,
        taps=(Tap("cls", ARCHS[arch].embed_dim, "embedding", "final-LayerNorm CLS token, not normalised"),),
        defaults={"embedding": "cls"},
        preprocessing=tuple(Preprocessing(name=n, size=INPUT_SIZE, **PREPROCESSING[n]) for n in PREPROCESSING),
        default_preprocessing=DEFAULT_PREPROCESSING,
        weights=WeightSpec(**DINOV2_WEIGHTS[arch], licence=WEIGHTS_LICENCE),
        build=lambda state, source: partial(DinoV2.from_state_dict, arch)(state, source),
        identity=name, key=key, aliases=aliases, read_weights=read_dinov2_state_dict,
        random_weights=lambda path, seed=0: _save(random_dinov2_state_dict(arch, seed), path),
    ))


SPEC_VITL14 = _spec("vitl14", "dinov2-vitl14", "dinov2", ("dinov2", "dinov2-vit-l-14"),
                    "DINOv2 ViT-L/14 CLS token, 1024-d: FD-DINOv2 (dgm-eval, EDM2)")
SPEC_VITB14 = _spec("vitb14", "dinov2-vitb14", "dinov2_vitb14", ("dinov2-vit-b-14",),
                    "DINOv2 ViT-B/14 CLS token, 768-d: a cheaper DINOv2 space for tracking during training")
