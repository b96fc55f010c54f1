"""Layers the vision transformers share (DINOv2, VideoMAE-v2), under the parameter names their published files use.
Attention stays with each network: the published layouts differ there (one ``qkv`` projection with bias in DINOv2,
separate query and value biases in VideoMAE-v2, ``in_proj`` in OpenAI's CLIP)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerScale(nn.Module):
    """A learned per-channel scale of a residual branch: ``gamma``."""

    def __init__(self, dim: int, *, device=None):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """Two linear layers with the exact (erf) GELU between them: ``fc1``, ``fc2``."""

    def __init__(self, dim: int, hidden: int, *, device=None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, device=device)
        self.fc2 = nn.Linear(hidden, dim, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as nn.GELU() upstream
