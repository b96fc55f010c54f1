"""Helpers for tests and benchmarks: random weights in each network's published format.

The real weights cannot be downloaded everywhere (CI, air-gapped clusters);
parity with the reference libraries is shown by loading the *same* random
weights into fidkit and into them.
"""

from __future__ import annotations

import os

import torch

from fidkit.errors import BadInputError

from fidkit.extractors.inception import FIDInceptionV3


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the 566 entries, names and shapes of the published files.

    Convolutions get He-normal weights and BatchNorms plausible running
    statistics, so activations keep a sensible scale through all 94 layers
    (features neither vanish nor explode, and differ between images).
    """
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in FIDInceptionV3().state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
            continue
        if key.endswith("conv.weight"):
            fan_in = value[0].numel()
            t = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith("bn.weight"):
            t = torch.ones(value.shape)  # the TF graph's BatchNorm has no learned scale
        elif key.endswith("bn.bias"):
            t = torch.randn(value.shape, generator=g) * 0.1
        elif key.endswith("running_mean"):
            t = torch.randn(value.shape, generator=g) * 0.1
        elif key.endswith("running_var"):
            t = 0.5 + torch.rand(value.shape, generator=g)
        elif key == "fc.weight":
            t = torch.randn(value.shape, generator=g) * 0.05
        elif key == "fc.bias":
            t = torch.randn(value.shape, generator=g) * 0.1
        else:
            raise AssertionError(f"unexpected parameter {key}")
        state[key] = t.to(torch.float32)
    return state


def write_random_inception_weights(path: str | os.PathLike, seed: int = 0) -> str:
    """Save random weights where a published file would be; return the path."""
    torch.save(random_inception_state_dict(seed), path)
    return str(path)


def write_random_dinov2_weights(path: str | os.PathLike, arch: str = "vitb14", seed: int = 0) -> str:
    """Random DINOv2 backbone weights in the published ``dinov2_<arch>_pretrain.pth`` layout."""
    from fidkit.extractors.dinov2 import random_dinov2_state_dict
    torch.save(random_dinov2_state_dict(arch, seed), path)
    return str(path)


def random_i3d_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random I3D weights with the keys and shapes of ``i3d_pretrained_400.pt`` (cd-fvd's ``InceptionI3d(400)``
    layout, no BatchNorm step counters, as the published file), float32.

    Convolutions get He-normal weights, BatchNorms scales in [0.5, 1.5], running variances in [0.2, 2.2] and
    means and biases of size 0.2: activations stay O(1) through the network and features differ from clip to clip.
    """
    from fidkit.extractors.i3d import InceptionI3D
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in InceptionI3D(device="meta").state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("conv3d.weight"):
            t = torch.randn(value.shape, generator=g) * (2.0 / value[0].numel()) ** 0.5
        elif key.endswith("bn.weight"):
            t = 0.5 + torch.rand(value.shape, generator=g)
        elif key.endswith("running_var"):
            t = 0.2 + 2 * torch.rand(value.shape, generator=g)
        else:  # BatchNorm bias and mean, logits bias
            t = torch.randn(value.shape, generator=g) * 0.2
        state[key] = t
    return state


def write_random_i3d_weights(path: str | os.PathLike, seed: int = 0) -> str:
    """Random I3D weights saved as the published ``i3d_pretrained_400.pt`` is (a plain state dict)."""
    torch.save(random_i3d_state_dict(seed), path)
    return str(path)


def write_random_weights(spec, directory: str | os.PathLike, seed: int = 0) -> str:
    """Random weights of a registered network (a name or an :class:`~fidkit.extractors.base.ExtractorSpec`),
    written by its own ``random_weights`` hook to ``directory/random-<name>-seed<seed><published suffix>``.

    Not under the published file name: a hash in that name (Inception's) would be checked against the file.
    """
    from pathlib import Path

    from fidkit.extractors.base import get_spec
    spec = get_spec(spec)
    if spec.random_weights is None:
        raise ValueError(f"{spec.name} declares no random_weights writer")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = Path(spec.weights.filename).suffix if spec.weights is not None else ".pth"
    return str(spec.random_weights(directory / f"random-{spec.name}-seed{seed}{suffix}", seed))


def import_openai_clip():
    """OpenAI's ``clip`` package (PyPI ``openai-clip``), the reference for CLIP features in tests and benchmarks.

    It imports ``pkg_resources`` only for ``packaging``; where setuptools no longer ships ``pkg_resources``
    the import gets a stand-in for its duration.  Raises ``ImportError`` when the package is missing.
    """
    import sys
    import types
    if "clip" in sys.modules:
        return sys.modules["clip"]
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import packaging
        import packaging.version  # noqa: F401  (the attribute clip reads)
        shim = types.ModuleType("pkg_resources")
        shim.packaging = packaging
        sys.modules["pkg_resources"] = shim
        try:
            import clip
            return clip
        finally:
            del sys.modules["pkg_resources"]
    import clip
    return clip


def tiny_extractor(name: str = "tiny", *, dim: int = 8, size: int = 16, seed: int = 0):
    """Register (once per process) a small random network ``name`` of ``dim`` features on ``size`` px images:
    for tests and benchmarks of the data path (shards, engines), where Inception's cost would hide it.  The same
    arguments give the same weights, hence comparable statistics, in every process that calls it."""
    from fidkit.extractors import custom_extractor, get_spec
    made = _TINY.get(name)
    if made is not None and made[0] == (dim, size, seed):
        try:
            if get_spec(name) is made[1]:  # still ours: not replaced by another network of that name since
                return made[1]
        except BadInputError:
            pass
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(32, dim))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    spec = custom_extractor(name, net.eval(), dim=dim, size=size)
    _TINY[name] = ((dim, size, seed), spec)
    return spec


#: The networks tiny_extractor registered in this process: name -> ((dim, size, seed), spec)
_TINY: dict[str, tuple] = {}
