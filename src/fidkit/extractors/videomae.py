"""VideoMAE-v2 ViT-g/14 fine-tuned on Something-Something v2: the second feature space of content-debiased FVD.

Content-debiased FVD (Ge et al. 2024, the ``cd-fvd`` package) measures the
Fréchet distance between 1408-d features of this network instead of I3D
logits: the ``vit_giant_patch14_224`` of VideoMAE V2 (Wang et al. 2023),
pre-trained on UnlabeledHybrid and fine-tuned on SSv2, file
``vit_g_hybrid_pt_1200e_ssv2_ft.pth``.  cd-fvd reads
``VisionTransformer.forward_features`` (``cdfvd/fvd.py``,
``get_videomae_features``): the classification head is never applied.

This module is a self-contained definition written to agree with cd-fvd's
``cdfvd/third_party/VideoMAEv2/videomaev2_finetune.py`` as ``load_videomae_model``
builds it, to float32 rounding:

* tubelet embedding: one ``Conv3d`` with kernel = stride = ``(2, 14, 14)``
  (with bias), tokens in ``(time, row, column)`` order;
* fixed sine-cosine position embeddings (not learned, not in the file): for
  position ``p`` and channel ``j``, ``p / 10000 ** (2 * (j // 2) / D)`` through
  ``sin`` on even and ``cos`` on odd channels, in float64, then float32.  Clips
  whose tubelet count differs from the table's (8, for 16 frames) get the
  table resampled along time as cd-fvd does (:func:`resample_time`);
* pre-norm blocks, LayerNorm eps 1e-6, no layer scale (``init_values=0``: the
  file has no ``gamma`` entries), exact (erf) GELU, MLP width
  ``int(1408 * 48 / 11) = 6144``;
* attention with a bias on queries and values only (``q_bias``, ``v_bias``; the
  keys' bias is zero), scale ``head_dim ** -0.5`` (16 heads of 88), computed by
  ``F.scaled_dot_product_attention``;
* mean of all tokens, then ``fc_norm`` (LayerNorm): the 1408-d embedding.  The
  SSv2 head (``head.weight``, 174 classes) is accepted in the file and dropped.

One preprocessing variant, ``cd-fvd``: cd-fvd's ``preprocess_videomae``, every
frame as floats in [0, 1] (``x / 255`` first) through ``F.interpolate``
bilinear (``align_corners=False``, no anti-aliasing) to 224 x 224, no mean/std
normalisation.  The network was trained on 16-frame clips.
"""

from __future__ import annotations

import dataclasses
import math
import os
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from fidkit.errors import BadInputError, WeightsUnavailableError
from fidkit.extractors.base import ExtractorSpec, Preprocessing, Tap, register
from fidkit.extractors.vit import Mlp
from fidkit.extractors.weights import WeightSpec, read_tensor_state_dict, state_dict_mismatch

INPUT_SIZE = 224
LAYERNORM_EPS = 1e-6
#: entries of the published file that the features never read: the SSv2 classifier
HEAD_KEYS = ("head.weight", "head.bias")
#: wrappers of the state dict in training checkpoints, unpacked in this order as cd-fvd's loader does
CONTAINER_KEYS = ("model", "module")


@dataclasses.dataclass(frozen=True)
class VideoMAEv2Config:
    """The shape of a VideoMAE-v2 encoder (the published SSv2 network is :data:`GIANT`)."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    patch_size: int = 14
    tubelet_size: int = 2
    frames: int = 16              # clip length the position table is laid out for
    img_size: int = INPUT_SIZE

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)  # truncated, as upstream

    @property
    def grid(self) -> tuple[int, int, int]:
        """Tubelets along (time, rows, columns) of a clip of ``frames`` frames."""
        side = self.img_size // self.patch_size
        return self.frames // self.tubelet_size, side, side


#: ``vit_giant_patch14_224`` with the arguments of cd-fvd's ``load_videomae_model``.
GIANT = VideoMAEv2Config(embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11)


# ---------------------------------------------------------------------------
# Position embeddings
# ---------------------------------------------------------------------------

def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """``1 x positions x dim`` float32: angle ``p / 10000 ** (2 * (j // 2) / dim)`` through sin (even ``j``)
    and cos (odd ``j``), computed in float64 as upstream's numpy table is."""
    p = torch.arange(positions, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)
    angle = p / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(torch.arange(dim) % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.to(torch.float32)[None]


def resample_time(table: torch.Tensor, grid: tuple[int, int, int], steps: int) -> torch.Tensor:
    """The position table of a ``grid`` of tubelets resampled to ``steps`` along time.

    As ``VisionTransformer.interpolate_pos_encoding`` upstream: trilinear
    ``F.interpolate`` with ``scale_factor=((steps + 0.1) / t, 1, 1)``, so output
    step ``i`` reads source ``(i + 0.5) * t / (steps + 0.1) - 0.5``; the 0.1 only
    makes ``floor`` land on ``steps``.  Rows and columns are unchanged.
    """
    t, h, w = grid
    if steps == t:
        return table
    dim = table.shape[-1]
    volume = table.transpose(1, 2).reshape(1, dim, t, h, w)
    volume = F.interpolate(volume, scale_factor=((steps + 0.1) / t, 1, 1), mode="trilinear")
    if volume.shape[2] != steps:
        raise AssertionError(f"resampled {volume.shape[2]} time steps, not {steps}")
    return volume.reshape(1, dim, -1).transpose(1, 2)


# ---------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    def __init__(self, cfg: VideoMAEv2Config, *, device=None):
        super().__init__()
        kernel = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.embed_dim, kernel, stride=kernel, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # N x (t*rows*cols) x D


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, *, device=None):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False, device=device)
        self.q_bias = nn.Parameter(torch.zeros(dim, device=device))
        self.v_bias = nn.Parameter(torch.zeros(dim, device=device))
        self.proj = nn.Linear(dim, dim, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))  # keys carry no bias
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # default scale head_dim ** -0.5, as upstream
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, cfg: VideoMAEv2Config, *, device=None):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=LAYERNORM_EPS, device=device)
        self.attn = Attention(d, cfg.num_heads, device=device)
        self.norm2 = nn.LayerNorm(d, eps=LAYERNORM_EPS, device=device)
        self.mlp = Mlp(d, cfg.mlp_hidden, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VideoMAEv2(nn.Module):
    """The VideoMAE-v2 encoder with mean pooling (no classifier), for inference.

    ``forward(x, taps=("embedding",))`` takes float ``N x 3 x T x 224 x 224`` in
    [0, 1] (see :func:`preprocess_cd_fvd`) and returns ``{"embedding": N x D}``:
    ``fc_norm`` of the mean token, what ``forward_features`` returns upstream.
    Build it from weights with :meth:`from_state_dict`.
    """

    def __init__(self, cfg: VideoMAEv2Config = GIANT, *, device=None):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg, device=device)
        self.blocks = nn.ModuleList(Block(cfg, device=device) for _ in range(cfg.depth))
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=LAYERNORM_EPS, device=device)
        t, h, w = cfg.grid
        # computed (on the CPU, whatever ``device`` says), not loaded: out of the state dict, as upstream keeps it
        self.register_buffer("pos_embed", sinusoid_table(t * h * w, cfg.embed_dim), persistent=False)

    @classmethod
    def from_state_dict(cls, cfg: VideoMAEv2Config, state: dict[str, torch.Tensor], source: str) -> "VideoMAEv2":
        """A network in eval mode holding ``state``'s tensors (float32), built without a throw-away initialisation."""
        net = cls(cfg, device="meta")  # parameters only: the position table is computed on the CPU
        load_videomae_state_dict(net, state, source)
        return net.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, taps=("embedding",)) -> dict[str, torch.Tensor]:
        unknown = set(taps) - {"embedding"}
        if unknown:
            raise ValueError(f"unknown taps {sorted(unknown)}; available: ['embedding']")
        cfg = self.cfg
        if x.dim() != 5 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (cfg.img_size, cfg.img_size):
            raise BadInputError(f"VideoMAE-v2 input must be N x 3 x T x {cfg.img_size} x {cfg.img_size}, "
                                f"got {tuple(x.shape)}")
        steps = x.shape[2] // cfg.tubelet_size
        if steps < 1:
            raise BadInputError(f"VideoMAE-v2 needs clips of at least {cfg.tubelet_size} frames, got {x.shape[2]}")
        tokens = self.patch_embed(x)
        tokens = tokens + resample_time(self.pos_embed, cfg.grid, steps).to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return {"embedding": self.fc_norm(tokens.mean(1))}


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------

#: The published file.  cd-fvd 0.1.1 downloads it from OpenGVLab's Aliyun bucket
#: (``pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/internvideo/videomaev2/``), which answers NoSuchBucket since
#: August 2024; OpenGVLab moved the files to Hugging Face, and cd-fvd's main branch (PR #10) now downloads the
#: URL below.  The sha256 (2,023,804,201 bytes: float16 tensors) is the Git LFS pointer of
#: OpenGVLab/VideoMAE2 ``mae-g/vit_g_hybrid_pt_1200e_ssv2_ft.pth`` (commit 97d119d, "transfer from aliyun oss
#: to hf"); the copy in ByteDance/LatentSync-1.5 (``auxiliary/``) is recorded with the same hash and size.
WEIGHTS = WeightSpec(
    name="videomae-v2-g-ssv2",
    filename="vit_g_hybrid_pt_1200e_ssv2_ft.pth",
    url="https://huggingface.co/OpenGVLab/InternVideoMAE_models/resolve/main/mae-g/vit_g_hybrid_pt_1200e_ssv2_ft.pth",
    sha256="5a210a92f035dff30c53b46157b612e7a1a5d3c99700e1b2d71da5c399ca7e70",
    env_var="FIDKIT_VIDEOMAE_V2_WEIGHTS",
    licence="VideoMAE V2 code: MIT (OpenGVLab/VideoMAEv2). The ViT-g weights carry no licence of their own: "
            "OpenGVLab's model zoo gives their links only after a download request form (organisation, "
            "intended use); the Hugging Face copies it now serves (OpenGVLab/VideoMAE2, "
            "OpenGVLab/InternVideoMAE_models) are tagged apache-2.0. Fine-tuned on Something-Something v2.",
)


def read_videomae_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a VideoMAE-v2 checkpoint on the CPU, read with ``torch.load(weights_only=True)`` (tensors,
    containers and plain values only: no Python pickle code runs).  A training checkpoint's ``model`` or
    ``module`` entry is unpacked first, as cd-fvd's loader does.  The caller checks the file's sha256 first."""
    return read_tensor_state_dict(path, "VideoMAE-v2", CONTAINER_KEYS)


def load_videomae_state_dict(net: VideoMAEv2, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a VideoMAE-v2 state dict in the published layout into ``net``; name ``source`` on any mismatch.

    The classifier (``head.*``) is accepted and dropped; anything else missing, unexpected or of the wrong
    shape raises :class:`~fidkit.errors.WeightsUnavailableError`.  Tensors are converted to float32 (the
    published file holds float16); a network on the ``meta`` device takes them without a second copy.
    """
    state = {k: v for k, v in state.items() if k not in HEAD_KEYS}
    expected = net.state_dict()
    mismatch = state_dict_mismatch(expected, state)
    if mismatch:
        raise WeightsUnavailableError(f"{source} is not a VideoMAE-v2 state dict of this shape "
                                      f"({net.cfg.embed_dim}-d, {net.cfg.depth} blocks) in the published layout "
                                      f"({mismatch}); expected the file {WEIGHTS.filename}")
    on_meta = any(p.is_meta for p in net.parameters())
    net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True, assign=on_meta)


#: Classes of the SSv2 head the published file carries (dropped on load)
SSV2_CLASSES = 174


def random_videomae_state_dict(seed: int = 0, cfg: VideoMAEv2Config = GIANT) -> dict[str, torch.Tensor]:
    """Random weights with the keys, shapes and dtype of the published file's ``module`` entry (float16, the SSv2
    classifier included), at a scale that keeps tokens O(1): LayerNorm scales near 1, matrices ~ 1/sqrt(fan-in),
    biases clearly non-zero.  Built tensor by tensor (the giant network is 1B parameters, 2 GB in float16)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {k: tuple(v.shape) for k, v in VideoMAEv2(cfg, device="meta").state_dict().items()}
    shapes.update({"head.weight": (SSV2_CLASSES, cfg.embed_dim), "head.bias": (SSV2_CLASSES,)})
    state = {}
    for name, shape in shapes.items():
        if "norm" in name and name.endswith("weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) >= 2:
            t = torch.randn(shape, generator=g) * (1.5 / math.prod(shape[1:]) ** 0.5)
        else:
            t = 0.2 * torch.randn(shape, generator=g)
        state[name] = t.to(torch.float16)
    return state


def write_random_videomae_weights(path: str | os.PathLike, seed: int = 0,
                                  cfg: VideoMAEv2Config = GIANT) -> str:
    """Random weights saved as the published ``vit_g_hybrid_pt_1200e_ssv2_ft.pth`` is: ``{"module": state}``."""
    torch.save({"module": random_videomae_state_dict(seed, cfg)}, path)
    return str(path)


# ---------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------

def preprocess_cd_fvd(batch: torch.Tensor) -> torch.Tensor:
    """cd-fvd's ``preprocess_videomae``, batched on the batch's device: uint8 ``N x T x 3 x H x W`` ->
    float32 ``N x 3 x T x 224 x 224`` in [0, 1].

    ``x / 255`` first, then ``F.interpolate`` bilinear (``align_corners=False``,
    no anti-aliasing) of every frame to 224 x 224, always (also at 224 px);
    no mean/std.  The frames of each colour channel go through one call as the
    reference's (channels ``x`` time) batch does, so that the values are the same.
    """
    if (not isinstance(batch, torch.Tensor) or batch.dtype != torch.uint8 or batch.dim() != 5
            or batch.shape[2] != 3):
        desc = f"{batch.dtype} {tuple(batch.shape)}" if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise BadInputError(f"cd-fvd preprocessing for VideoMAE-v2 takes uint8 clips N x T x 3 x H x W, got {desc}")
    n, t, c, h, w = batch.shape
    x = (batch.to(torch.float32) / 255).transpose(1, 2).reshape(n * c, t, h, w)
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return x.view(n, c, t, INPUT_SIZE, INPUT_SIZE)


PREPROCESSING = (
    Preprocessing("cd-fvd", "content-debiased FVD (cd-fvd): x / 255, then F.interpolate bilinear of every frame "
                            "to 224 x 224; no normalisation", INPUT_SIZE, preprocess_cd_fvd,
                  resize="F.interpolate bilinear per frame, align_corners=False, no antialias, on [0, 1] floats",
                  normalization="x / 255 (no mean/std)"),
)

SPEC = register(ExtractorSpec(
    name="videomae-v2",
    summary="VideoMAE-v2 ViT-g/14 fine-tuned on SSv2: mean token after fc_norm, 1408-d (content-debiased FVD)",
    taps=(Tap("embedding", GIANT.embed_dim, "embedding",
              "fc_norm of the mean of all tokens (cd-fvd's forward_features), before the SSv2 head"),),
    defaults={"embedding": "embedding"},
    preprocessing=PREPROCESSING, default_preprocessing="cd-fvd", weights=WEIGHTS,
    build=partial(VideoMAEv2.from_state_dict, GIANT), identity="videomae-v2-g-ssv2", key="videomae",
    modality="video", aliases=("videomae",), read_weights=read_videomae_state_dict,
    random_weights=write_random_videomae_weights,
))
