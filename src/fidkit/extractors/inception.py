"""The FID Inception network: TensorFlow's 2015-12-05 Inception-v3 graph in PyTorch.

Every reference FID (TTUR, ADM, StyleGAN, torch-fidelity, pytorch-fid, clean-fid)
runs this graph.  It differs from torchvision's Inception-v3 in its weights
(1008 classes) and in two details of the TF graph: average pools ignore the
zero padding (TF ``SAME`` pooling), and the last block pools its fourth branch
with a max pool instead of an average pool.

Parameter names follow the torchvision layout that both published PyTorch
weight files use (``Mixed_6d.branch1x1.conv.weight``, ``...bn.running_var``),
so either file loads directly.  For inference every BatchNorm is folded into
its convolution and activations are kept channels-last, which is about twice as
fast on CPU with features equal to ~1e-5.

One forward can return several taps (see :data:`TAPS`) so that every metric is
fed by a single pass.  :data:`SPEC` declares the network to the rest of fidkit:
its taps, its three preprocessing variants and its weights.
"""

from __future__ import annotations

from importlib import import_module

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fidkit.extractors.resize import resize_pil_bicubic_float, resize_tf1_bilinear, resize_torch_bilinear
from fidkit.errors import WeightsUnavailableError
from fidkit.extractors.base import ExtractorSpec, Preprocessing, Tap, register
from fidkit.extractors.weights import WeightSpec, state_dict_mismatch

#: The FID Inception weights (TF graph 2015-12-05, converted to PyTorch).  The
#: pytorch-fid release ``pt_inception-2015-12-05-6726825d.pth`` has the same
#: layout and hash prefix and is accepted under its own name.
WEIGHTS = WeightSpec(
    name="inception-2015-12-05",
    filename="weights-inception-2015-12-05-6726825d.pth",
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    env_var="FIDKIT_INCEPTION_WEIGHTS",
    alternatives=("pt_inception-2015-12-05-6726825d.pth",),
    licence="Apache-2.0 (TensorFlow models' Inception graph of 2015-12-05, converted to PyTorch by torch-fidelity)",
)


#: Feature taps one forward can return, with their dimensions.
TAPS = {
    "pool3": 2048,            # global average pool of the last block: FID, KID, P/R
    "logits_unbiased": 1008,  # pool3 @ fc.weight^T without bias: Inception Score
    "spatial": 7 * 17 * 17,   # TF "mixed_6/conv" (Mixed_6d.branch1x1), channels 0..6: sFID
}

INPUT_SIZE = 299


class ConvBN(nn.Module):
    """Convolution without bias, BatchNorm (eps 1e-3, as in the TF graph), ReLU.

    After :meth:`fold` the BatchNorm lives in the convolution's weight and bias.
    """

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)

    @torch.no_grad()
    def fold(self) -> None:
        if isinstance(self.bn, nn.Identity):
            return
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv = self.conv
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                          stride=conv.stride, padding=conv.padding, bias=True)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = fused, nn.Identity()


def _pool_avg(x):
    # TF "SAME" average pooling divides by the number of real (unpadded) pixels.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class Heads(nn.Module):
    """The 1x1 convolutions that open several branches of a block, on the same input.

    Before :meth:`fuse` each runs separately; after it they are one convolution
    whose output channels are the branches' channels side by side (exactly the
    same arithmetic per channel), which halves their cost on CPU: one large
    matrix product instead of several thin ones.
    """

    def __init__(self, *convs: ConvBN):
        super().__init__()
        self.convs = convs  # a tuple: parameters stay registered under the branch names
        self.fused: nn.Conv2d | None = None

    def forward(self, x):
        if self.fused is None:
            return [c(x) for c in self.convs]
        return list(F.relu(self.fused(x), inplace=True).split([c.conv.out_channels for c in self.convs], 1))

    @torch.no_grad()
    def fuse(self) -> None:
        first = self.convs[0].conv
        if not all(isinstance(c.bn, nn.Identity) for c in self.convs):
            raise RuntimeError("fold BatchNorm before fusing heads")
        self.fused = nn.Conv2d(first.in_channels, sum(c.conv.out_channels for c in self.convs), 1,
                               bias=True).to(first.weight.device)
        self.fused.weight.copy_(torch.cat([c.conv.weight for c in self.convs]))
        self.fused.bias.copy_(torch.cat([c.conv.bias for c in self.convs]))


class BlockA(nn.Module):  # TF mixed, mixed_1, mixed_2 (35x35)
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)
        self.heads = Heads(self.branch1x1, self.branch5x5_1, self.branch3x3dbl_1)

    def forward(self, x):
        b1, b5, bd = self.heads(x)
        return torch.cat([
            b1,
            self.branch5x5_2(b5),
            self.branch3x3dbl_3(self.branch3x3dbl_2(bd)),
            self.branch_pool(_pool_avg(x)),
        ], 1)


class BlockB(nn.Module):  # TF mixed_3: 35x35 -> 17x17
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class BlockC(nn.Module):  # TF mixed_4 .. mixed_7 (17x17), factorised 7x7
    def __init__(self, cin: int, c7: int):
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, **row)
        self.branch7x7_3 = ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = ConvBN(c7, 192, **row)
        self.branch_pool = ConvBN(cin, 192, 1)
        self.heads = Heads(self.branch1x1, self.branch7x7_1, self.branch7x7dbl_1)

    def forward(self, x, taps: dict | None = None):
        b1, b7, bd = self.heads(x)
        if taps is not None:
            taps["branch1x1"] = b1
        b7 = self.branch7x7_3(self.branch7x7_2(b7))
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)
        return torch.cat([b1, b7, bd, self.branch_pool(_pool_avg(x))], 1)


class BlockD(nn.Module):  # TF mixed_8: 17x17 -> 8x8
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)
        self.heads = Heads(self.branch3x3_1, self.branch7x7x3_1)

    def forward(self, x):
        b3, b7 = self.heads(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return torch.cat([self.branch3x3_2(b3), b7, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):  # TF mixed_9 (average pool branch) and mixed_10 (max pool branch)
    def __init__(self, cin: int, max_pool_branch: bool):
        super().__init__()
        self.max_pool_branch = max_pool_branch
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)
        self.heads = Heads(self.branch1x1, self.branch3x3_1, self.branch3x3dbl_1)

    def forward(self, x):
        b1, b3, bd = self.heads(x)
        bd = self.branch3x3dbl_2(bd)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool_branch else _pool_avg(x)
        return torch.cat([
            b1,
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception network.  Input: normalised ``N x 3 x 299 x 299`` float in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32)
        self.Mixed_5c = BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128)
        self.Mixed_6c = BlockC(768, 160)
        self.Mixed_6d = BlockC(768, 160)
        self.Mixed_6e = BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, max_pool_branch=False)
        self.Mixed_7c = BlockE(2048, max_pool_branch=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor, taps=("pool3",)) -> dict[str, torch.Tensor]:
        unknown = set(taps) - set(TAPS)
        if unknown:
            raise ValueError(f"unknown taps {sorted(unknown)}; available: {sorted(TAPS)}")
        out: dict[str, torch.Tensor] = {}
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))
        inner: dict | None = {} if "spatial" in taps else None
        x = self.Mixed_6d(x, inner)
        if inner is not None:
            # ADM flattens NHWC activations; keep its (h, w, c) order so that
            # its published mu_s/sigma_s line up with ours.
            out["spatial"] = inner["branch1x1"][:, :7].permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            if len(taps) == 1:
                return out
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(self.Mixed_6e(x))))
        pool3 = x.mean((2, 3))
        out["pool3"] = pool3
        if "logits_unbiased" in taps:
            out["logits_unbiased"] = pool3 @ self.fc.weight.T
        return {k: out[k] for k in taps}

    def fold_batchnorm(self) -> "FIDInceptionV3":
        """Inference form: BatchNorm folded into the convolutions, sibling 1x1 convolutions fused."""
        for m in self.modules():
            if isinstance(m, ConvBN):
                m.fold()
        for m in self.modules():
            if isinstance(m, Heads):
                m.fuse()
        return self


def load_state_dict_published(model: FIDInceptionV3, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load torch-fidelity's or pytorch-fid's weights (torchvision key layout) into ``model``.

    Ignores what the FID network does not use (BatchNorm step counters, the
    auxiliary classifier, a ``module.`` prefix) and names the file on any other
    mismatch.
    """
    cleaned = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.endswith("num_batches_tracked") or key.startswith("AuxLogits."):
            continue
        cleaned[key] = value
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    mismatch = state_dict_mismatch(expected, cleaned)
    if mismatch:
        raise WeightsUnavailableError(
            f"{source} is not an FID Inception weight file in the torch-fidelity/pytorch-fid layout ({mismatch})")
    model.load_state_dict({k: v.to(torch.float32) for k, v in cleaned.items()}, strict=False)


def build(state_dict: dict[str, torch.Tensor], source: str) -> FIDInceptionV3:
    """The inference network: published weights loaded, BatchNorm folded, channels-last."""
    net = FIDInceptionV3()
    load_state_dict_published(net, state_dict, source)
    net = net.fold_batchnorm().eval().requires_grad_(False).to(memory_format=torch.channels_last)
    net.channels_last = True
    return net


# -- preprocessing: the resize is part of the metric (REFERENCE.md §3) ------------------------------------

def _batch_tf(x: torch.Tensor) -> torch.Tensor:
    return (resize_tf1_bilinear(x.to(torch.float32), INPUT_SIZE) - 128) / 128


def _image_clean(img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(resize_pil_bicubic_float(img, INPUT_SIZE).transpose(2, 0, 1).copy())
    return (x - 128) / 128


def _batch_pytorch(x: torch.Tensor) -> torch.Tensor:
    return 2 * resize_torch_bilinear(x.to(torch.float32) / 255, INPUT_SIZE) - 1


PREPROCESSING = (
    Preprocessing("tf", "TF1 bilinear resize as in the reference TF graph, (x - 128) / 128: TTUR, ADM, StyleGAN, "
                        "torch-fidelity, the protocol of published FIDs", INPUT_SIZE, _batch_tf,
                  resize="TF1 ResizeBilinear (align_corners=False, no half-pixel centres) on [0, 255] floats",
                  normalization="(x - 128) / 128"),
    Preprocessing("clean", "clean-fid mode='clean': PIL bicubic on float32 channels (anti-aliased), not "
                           "re-quantised", INPUT_SIZE, None, _image_clean,
                  resize="PIL bicubic per float32 channel (anti-aliased), clipped, not re-quantised",
                  normalization="(x - 128) / 128"),
    Preprocessing("pytorch", "pytorch-fid: F.interpolate bilinear without anti-aliasing, 2x/255 - 1",
                  INPUT_SIZE, _batch_pytorch, resize="F.interpolate bilinear, align_corners=False, no antialias",
                  normalization="2 x / 255 - 1"),
)

#: The Inception preprocessing variants by name (fidkit 0.1's "modes").
MODES = {p.name: p for p in PREPROCESSING}

SPEC = register(ExtractorSpec(
    name="inception",
    summary="FID Inception-v3 (TF graph 2015-12-05): pool3 2048-d, 1008 logits, mixed_6/conv spatial",
    taps=(Tap("pool3", TAPS["pool3"], "embedding", "global average pool of the last block"),
          Tap("logits_unbiased", TAPS["logits_unbiased"], "logits", "pool3 @ fc.weight^T, no bias"),
          Tap("spatial", TAPS["spatial"], "spatial", "mixed_6/conv channels 0..6, (h, w, c) order")),
    defaults={"embedding": "pool3", "logits": "logits_unbiased", "spatial": "spatial"},
    preprocessing=PREPROCESSING, default_preprocessing="tf", weights=WEIGHTS, build=build,
    identity="inception-2015-12-05", key="", aliases=("inception-v3", "inception-2015-12-05"),
    # fidkit.testing imports this module: imported when called
    random_weights=lambda path, seed=0: import_module("fidkit.testing").write_random_inception_weights(path, seed),
))
