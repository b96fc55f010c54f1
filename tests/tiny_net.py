"""A feature extractor small enough for multi-process and Lightning tests on two CPU cores.

Registered (``fidkit.custom_extractor``) when this module is imported, with weights drawn from a fixed seed: a
process spawned by ``torch.multiprocessing`` or Lightning imports the test module again and so registers the
identical network (same parameters, same provenance sha256) before it builds an evaluator.
"""

from __future__ import annotations

import torch

import fidkit

NAME = "tiny-test-net"
KEY = NAME.replace("-", "_")   # result keys: fd_tiny_test_net, kd_tiny_test_net, ...
DIM, SIZE = 12, 16


def _network() -> torch.nn.Module:
    g = torch.Generator().manual_seed(1234)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(6, DIM))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net.eval()


fidkit.custom_extractor(NAME, _network(), dim=DIM, size=SIZE)
