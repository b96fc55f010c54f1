"""Inception-I3D trained on Kinetics-400, the network behind FVD (Unterthiner et al. 2018).

I3D (Carreira & Zisserman 2017) is Inception-v1 with every 2D kernel inflated
to 3D.  FVD is the Fréchet distance between its 400 Kinetics logits averaged
over time: the TF-Hub module ``deepmind/i3d-kinetics-400/1``, tensor
``RGB/inception_i3d/Mean``.  The PyTorch weights in use are that module's
variables converted by TATS (``tats/fvd/convert_tf_pretrained.py``): the file
``i3d_pretrained_400.pt`` that VideoGPT, TATS, PVDM and content-debiased FVD
(``cd-fvd``) load.

This module is a self-contained definition written to agree with cd-fvd's
``InceptionI3d(400)`` (``cdfvd/third_party/i3d/pytorch_i3d.py``) to float32
rounding:

* parameter names are that file's keys (``Mixed_4b.b1b.conv3d.weight``,
  ``Conv3d_1a_7x7.bn.running_var``, ``logits.conv3d.bias``), so the published
  file loads as is; BatchNorm ``eps`` is 1e-5, as cd-fvd's ``Unit3D`` has it
  (the TF graph's Sonnet BatchNorm used 1e-3: cd-fvd's features, and so these,
  are not exactly TF-Hub's);
* TensorFlow ``SAME`` padding: zeros, split ``front = total // 2`` and the rest
  at the back.  Only the stride-2 convolution and the pools can need an uneven
  split; stride-1 convolutions have odd kernels and pad evenly in the
  convolution itself;
* max pools pad with zeros in the reference; their inputs come out of a ReLU,
  so PyTorch's own ``-inf`` padding (with ``ceil_mode`` for the extra zero at
  the back) gives the same maxima without a padded copy: see
  :func:`max_pool_same`;
* the head: average pool ``[2, 7, 7]`` (stride 1, no padding), the 1x1x1
  logits convolution with bias, mean over the remaining time steps.  The
  logits are affine, so they are computed once from the time-averaged pool
  (tap ``pool``, 1024-d): equal to the reference up to rounding.

For inference every BatchNorm is folded into its convolution and the three
1x1x1 convolutions that open the branches of each Inception block run as one
(see :meth:`InceptionI3D.fold_batchnorm`).

Two preprocessing variants are declared (the choice is part of a statistic's
provenance): ``tf`` (default: the original FVD, TF1 ``resize_bilinear`` of
every frame to 224 x 224, then ``2 x / 255 - 1``) and ``cd-fvd``
(``F.interpolate`` bilinear, as cd-fvd's ``preprocess_i3d``).
"""

from __future__ import annotations

import functools
import math
import os
from importlib import import_module

import torch
import torch.nn as nn
import torch.nn.functional as F

from fidkit.extractors.resize import resize_tf1_bilinear
from fidkit.errors import BadInputError, WeightsUnavailableError
from fidkit.extractors.base import ExtractorSpec, Preprocessing, Tap, register
from fidkit.extractors.weights import WeightSpec, read_tensor_state_dict, state_dict_mismatch

INPUT_SIZE = 224
NUM_CLASSES = 400
BN_EPS = 1e-5
#: Fewest frames the head accepts: time is halved (rounding up) three times and the average pool spans 2 steps.
MIN_FRAMES = 9
TAPS = {
    "logits": NUM_CLASSES,   # Kinetics-400 logits averaged over time: FVD
    "pool": 1024,            # the [2, 7, 7] average pool averaged over time, before the logits
}

#: Inception blocks: input channels, then the output channels of b0, b1a, b1b, b2a, b2b, b3b (GoogLeNet's table).
BLOCKS = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}

#: The published file.  Its sha256 is not published by TATS or cd-fvd; see the note below the declaration.
WEIGHTS = WeightSpec(
    name="i3d-kinetics400",
    filename="i3d_pretrained_400.pt",
    url="https://github.com/songweige/TATS/raw/main/tats/fvd/i3d_pretrained_400.pt",
    sha256="55095f049e706479d48e221adcdb145b2b9dc930ba28b081ed72367ffaa32343",
    env_var="FIDKIT_I3D_WEIGHTS",
    licence="Apache-2.0 (DeepMind's TF-Hub deepmind/i3d-kinetics-400/1, from google-deepmind/kinetics-i3d), "
            "converted to PyTorch by TATS (MIT)",
)
# Provenance of the sha256 (50,939,526 bytes): the Git LFS pointers of the same file name in two independent
# Hugging Face repositories, LanguageBind's Open-Sora-Plan-v1.0.0 space (opensora/eval/fvd/videogpt/, commit
# a220803) and liruiw/hma (common/fvd/videogpt/), agree; Open-Sora-Plan's GitHub repository holds that file as
# git blob a867b87ac3a9097d200598b1d48a1b890d8ec744, the blob songweige/TATS serves at the URL above.


@functools.lru_cache(maxsize=None)
def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``SAME`` padding of one axis: ``(front, back)`` zeros so that the output has ``ceil(size / stride)``
    entries; an odd total puts the extra zero at the back."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[tuple[int, int]]:
    return [same_padding(n, k, s) for n, k, s in zip(x.shape[-3:], kernel, stride)]


def _pad(x: torch.Tensor, pads: list[tuple[int, int]]) -> torch.Tensor:
    flat = [p for front_back in reversed(pads) for p in front_back]  # F.pad lists the last axis first
    return F.pad(x, flat) if any(flat) else x


def max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """3D max pool with TF ``SAME`` zero padding, for inputs >= 0 (every pool in I3D follows a ReLU).

    Where PyTorch's pooling can express the split, no padded copy is made: ``padding=front`` on both sides
    (``-inf``, which gives the same maxima as zeros on non-negative inputs) with ``ceil_mode``, which lets
    the last window run one entry past the end.  That is the SAME split when the total is even, and when
    it is odd and the stride is 2 or more (all of I3D's pools); otherwise the zeros are padded explicitly.
    """
    pads = _pads(x, kernel, stride)
    if all((f + b) % 2 == 0 or s > 1 for (f, b), s in zip(pads, stride)):
        return F.max_pool3d(x, kernel, stride, padding=tuple(f for f, _ in pads), ceil_mode=True)
    return F.max_pool3d(_pad(x, pads), kernel, stride)


class Unit3D(nn.Module):
    """Convolution with TF ``SAME`` padding, then BatchNorm and ReLU (or, for the logits, bias only).

    After :meth:`fold` the BatchNorm lives in the convolution's weight and bias.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, *,
                 batch_norm: bool = True, relu: bool = True, device=None):
        super().__init__()
        k, s = (kernel,) * 3, (stride,) * 3
        # Stride 1 and odd kernels: SAME is (k - 1) / 2 on both sides whatever the input size.
        self.pads_itself = stride == 1 and kernel % 2 == 1
        self.conv3d = nn.Conv3d(cin, cout, k, s, padding=(kernel - 1) // 2 if self.pads_itself else 0,
                                bias=not batch_norm, device=device)
        self.bn = nn.BatchNorm3d(cout, eps=BN_EPS, device=device) if batch_norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.pads_itself:
            x = _pad(x, _pads(x, self.conv3d.kernel_size, self.conv3d.stride))
        x = self.conv3d(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x

    @torch.no_grad()
    def fold(self) -> None:
        if self.bn is None:
            return
        bn, conv = self.bn, self.conv3d
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv3d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          padding=conv.padding, bias=True, device=conv.weight.device)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv3d, self.bn = fused, None


class InceptionBlock(nn.Module):
    """Four branches: 1x1x1; 1x1x1 then 3x3x3; 1x1x1 then 3x3x3; 3x3x3 max pool then 1x1x1."""

    def __init__(self, cin: int, channels: tuple[int, ...], *, device=None):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = channels
        self.b0 = Unit3D(cin, c0, device=device)
        self.b1a = Unit3D(cin, c1a, device=device)
        self.b1b = Unit3D(c1a, c1b, 3, device=device)
        self.b2a = Unit3D(cin, c2a, device=device)
        self.b2b = Unit3D(c2a, c2b, 3, device=device)
        self.b3b = Unit3D(cin, c3b, device=device)
        self.heads: nn.Conv3d | None = None  # b0, b1a, b2a as one convolution, after fuse_heads()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.heads is None:
            b0, b1, b2 = self.b0(x), self.b1a(x), self.b2a(x)
        else:
            sizes = [u.conv3d.out_channels for u in (self.b0, self.b1a, self.b2a)]
            b0, b1, b2 = F.relu(self.heads(x), inplace=True).split(sizes, 1)
        b3 = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([b0, self.b1b(b1), self.b2b(b2), self.b3b(b3)], 1)

    @torch.no_grad()
    def fuse_heads(self) -> None:
        """One convolution for the three 1x1x1 convolutions that read the block's input: the same arithmetic
        per output channel, one large matrix product instead of three thin ones."""
        units = (self.b0, self.b1a, self.b2a)
        if any(u.bn is not None for u in units):
            raise RuntimeError("fold BatchNorm before fusing the heads")
        first = units[0].conv3d
        heads = nn.Conv3d(first.in_channels, sum(u.conv3d.out_channels for u in units), 1, bias=True,
                          device=first.weight.device)
        heads.weight.copy_(torch.cat([u.conv3d.weight for u in units]))
        heads.bias.copy_(torch.cat([u.conv3d.bias for u in units]))
        self.heads = heads


class InceptionI3D(nn.Module):
    """Inception-I3D, RGB stream.  Input: float ``N x 3 x T x 224 x 224`` in [-1, 1], ``T >= 9``.

    ``forward(x, taps=("logits",))`` returns ``{"logits": N x 400}`` (what cd-fvd's
    ``InceptionI3d.forward`` returns) and, on request, ``{"pool": N x 1024}``.
    Build it from weights with :meth:`from_state_dict`.
    """

    def __init__(self, *, device=None):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, 7, stride=2, device=device)
        self.Conv3d_2b_1x1 = Unit3D(64, 64, device=device)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, 3, device=device)
        for name, (cin, channels) in BLOCKS.items():
            setattr(self, name, InceptionBlock(cin, channels, device=device))
        self.logits = Unit3D(1024, NUM_CLASSES, batch_norm=False, relu=False, device=device)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], source: str) -> "InceptionI3D":
        """The inference network in eval mode: ``state`` loaded, BatchNorm folded, heads fused."""
        net = cls(device="meta")
        load_i3d_state_dict(net, state, source)
        return net.fold_batchnorm().eval().requires_grad_(False).to(memory_format=torch.channels_last_3d)

    def forward(self, x: torch.Tensor, taps=("logits",)) -> dict[str, torch.Tensor]:
        unknown = set(taps) - set(TAPS)
        if unknown:
            raise ValueError(f"unknown taps {sorted(unknown)}; available: {sorted(TAPS)}")
        if x.dim() != 5 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            raise BadInputError(f"I3D input must be N x 3 x T x {INPUT_SIZE} x {INPUT_SIZE}, got {tuple(x.shape)}")
        if x.shape[2] < MIN_FRAMES:
            raise BadInputError(f"I3D needs clips of at least {MIN_FRAMES} frames, got {x.shape[2]}")
        # channels-last activations: oneDNN's 3D convolutions and PyTorch's CPU max pools are much faster so
        x = self.Conv3d_1a_7x7(x.contiguous(memory_format=torch.channels_last_3d))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
        x = self.Mixed_5c(self.Mixed_5b(x))
        pool = F.avg_pool3d(x, (2, 7, 7), stride=1).flatten(2).mean(2)  # N x 1024 x (t - 1) -> N x 1024
        out = {"pool": pool}
        if "logits" in taps:
            head = self.logits.conv3d
            out["logits"] = F.linear(pool, head.weight.flatten(1), head.bias)
        return {k: out[k] for k in taps}

    def fold_batchnorm(self) -> "InceptionI3D":
        """Inference form: BatchNorm folded into the convolutions, the 1x1x1 heads of each block fused."""
        for m in self.modules():
            if isinstance(m, Unit3D):
                m.fold()
        for m in self.modules():
            if isinstance(m, InceptionBlock):
                m.fuse_heads()
        return self


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------


def read_i3d_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of ``i3d_pretrained_400.pt`` on the CPU, read with ``torch.load(weights_only=True)``
    (an ``OrderedDict`` of tensors: no Python pickle code runs).  The caller checks the file's sha256 first."""
    return read_tensor_state_dict(path, "I3D")


def load_i3d_state_dict(net: InceptionI3D, state: dict[str, torch.Tensor], source: str) -> None:
    """Load an I3D state dict in cd-fvd's layout into ``net`` (not yet folded); name ``source`` on any mismatch.

    BatchNorm step counters (``num_batches_tracked``; the published file has none) are ignored; anything
    missing, unexpected or of the wrong shape raises :class:`~fidkit.errors.WeightsUnavailableError`.
    Tensors are converted to float32; a network on the ``meta`` device takes them without a copy.
    """
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    expected = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    mismatch = state_dict_mismatch(expected, state)
    if mismatch:
        raise WeightsUnavailableError(f"{source} is not an I3D weight file in the cd-fvd/TATS layout "
                                      f"({mismatch}); expected the file {WEIGHTS.filename}")
    on_meta = any(p.is_meta for p in net.parameters())
    # BatchNorm step counters are unused in eval mode and absent from the published file
    state.update({k: torch.zeros((), dtype=torch.long) for k, _ in net.named_buffers()
                  if k.endswith("num_batches_tracked")})
    net.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()},
                        strict=True, assign=on_meta)


# ---------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------

def _check_clips(batch: torch.Tensor, variant: str) -> None:
    if not isinstance(batch, torch.Tensor) or batch.dtype != torch.uint8 or batch.dim() != 5 or batch.shape[2] != 3:
        desc = f"{batch.dtype} {tuple(batch.shape)}" if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise BadInputError(f"{variant} preprocessing for I3D takes uint8 clips N x T x 3 x H x W, got {desc}")


def _to_network_layout(frames: torch.Tensor) -> torch.Tensor:
    """``N x T x 3 x 224 x 224`` resized pixel values in [0, 255] -> ``N x 3 x T x 224 x 224`` in [-1, 1]."""
    return (2 * frames / 255 - 1).transpose(1, 2).contiguous()  # the reference's expression, in this order


def preprocess_tf(batch: torch.Tensor) -> torch.Tensor:
    """The original FVD: every frame through TF1 ``resize_bilinear`` to 224 x 224 (``align_corners=False``,
    no half-pixel centres; ``google-research/frechet_video_distance``), then ``2 x / 255 - 1``."""
    _check_clips(batch, "tf")
    return _to_network_layout(resize_tf1_bilinear(batch.to(torch.float32), INPUT_SIZE))


def preprocess_cd_fvd(batch: torch.Tensor) -> torch.Tensor:
    """cd-fvd's ``preprocess_i3d``: ``F.interpolate`` bilinear (``align_corners=False``, no anti-aliasing) of
    every float frame to 224 x 224, then ``2 x / 255 - 1``."""
    _check_clips(batch, "cd-fvd")
    n, t = batch.shape[:2]
    frames = F.interpolate(batch.flatten(0, 1).to(torch.float32), size=(INPUT_SIZE, INPUT_SIZE),
                           mode="bilinear", align_corners=False)
    return _to_network_layout(frames.view(n, t, 3, INPUT_SIZE, INPUT_SIZE))


PREPROCESSING = (
    Preprocessing("tf", "original FVD: TF1 bilinear resize of every frame to 224 x 224, 2 x / 255 - 1",
                  INPUT_SIZE, preprocess_tf,
                  resize="TF1 ResizeBilinear per frame (align_corners=False, no half-pixel centres), [0, 255] floats",
                  normalization="2 x / 255 - 1"),
    Preprocessing("cd-fvd", "content-debiased FVD (cd-fvd): F.interpolate bilinear of every frame to 224 x 224, "
                            "2 x / 255 - 1", INPUT_SIZE, preprocess_cd_fvd,
                  resize="F.interpolate bilinear per frame, align_corners=False, no antialias, [0, 255] floats",
                  normalization="2 x / 255 - 1"),
)
DEFAULT_PREPROCESSING = "tf"

SPEC = register(ExtractorSpec(
    name="i3d",
    summary="Inception-I3D, Kinetics-400: 400 logits averaged over time (FVD); pool 1024-d",
    taps=(Tap("logits", TAPS["logits"], "embedding", "Kinetics-400 logits averaged over time (TF-Hub "
                                                      "RGB/inception_i3d/Mean)"),
          Tap("pool", TAPS["pool"], "pooled", "[2, 7, 7] average pool averaged over time, before the logits")),
    defaults={"embedding": "logits"},
    preprocessing=PREPROCESSING, default_preprocessing=DEFAULT_PREPROCESSING, weights=WEIGHTS,
    build=InceptionI3D.from_state_dict, identity="i3d-kinetics400", key="i3d", modality="video",
    aliases=("i3d-kinetics400",), read_weights=read_i3d_state_dict,
    metric_names={"fd": "fvd", "kd": "kvd"},
    random_weights=lambda path, seed=0: import_module("fidkit.testing").write_random_i3d_weights(path, seed),
))
