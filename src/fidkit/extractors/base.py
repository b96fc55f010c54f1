"""What a feature extractor is, declared once: taps, preprocessing variants, weights, loader, identity.

Every network fidkit runs (the FID Inception, DINOv2, CLIP, a user's own
module) is an :class:`ExtractorSpec`.  The rest of fidkit only reads specs:
the planner asks which tap serves a metric's role, the engine asks how to
prepare an image and how to build the network, provenance asks for the
identity.  Adding a network is one module that declares a spec and calls
:func:`register`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fidkit.errors import BadInputError
from fidkit.stats.provenance import Provenance, register_identity

#: What a tap is for.  A metric asks for a role; each extractor says which of its taps plays it.
ROLES = {
    "embedding": "a global feature vector (Fréchet distance, KID, precision/recall, density/coverage)",
    "logits": "class logits without bias (Inception Score)",
    "spatial": "spatial features (sFID)",
    "embedding_l2": "an L2-normalised embedding (CMMD)",
    "pooled": "pooled features before a classifier head, read by no metric (for analysis, by tap name)",
}


@dataclasses.dataclass(frozen=True)
class Tap:
    """One output of a network's forward."""

    name: str
    dim: int
    role: str
    summary: str = ""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """A named way to turn uint8 RGB images (or video clips) into network input.

    ``prepare_batch`` takes a uint8 ``N x 3 x H x W`` tensor on any device and
    returns float32 ``N x 3 x size x size`` on that device; variants whose
    resize exists only per image on the CPU (PIL) give ``prepare_image`` (uint8
    ``H x W x 3`` numpy -> float32 ``3 x size x size``) instead.  A ``prepare_batch``
    written in torch also takes float pixel values in [0, 255] and is then
    differentiable: :class:`fidkit.DifferentiableFID` feeds it that way.

    Video extractors (``modality="video"``) use the same two callables with a
    time axis before the channels: ``prepare_batch`` takes uint8
    ``N x T x 3 x H x W`` and ``prepare_image`` one clip ``T x H x W x 3``; what
    they return is whatever the network takes (for I3D ``N x 3 x T x S x S``).
    """

    name: str
    summary: str
    size: int
    prepare_batch: Callable[[torch.Tensor], torch.Tensor] | None
    prepare_image: Callable[[np.ndarray], torch.Tensor] | None = None
    resize: str = ""            # kernel and library, e.g. "PIL bicubic on uint8 (anti-aliased)"
    crop: str = "none (squash)"
    normalization: str = ""     # e.g. "ImageNet mean/std"

    def prepare(self, img: np.ndarray) -> torch.Tensor:
        """One uint8 ``H x W x 3`` image (``T x H x W x 3`` clip) -> float32 network input for one sample."""
        if self.prepare_batch is None:
            return self.prepare_image(img)
        return self.prepare_batch(torch.from_numpy(np.ascontiguousarray(np.moveaxis(img, -1, -3)))[None])[0]

    def prepare_many(self, batch: torch.Tensor) -> torch.Tensor:
        """A uint8 ``N x 3 x H x W`` batch -> network input, on the batch's device where the variant allows.

        Equal, sample by sample, to :meth:`prepare` on each image: the same operations in the same order.
        """
        if self.prepare_batch is not None:
            return self.prepare_batch(batch)
        images = batch.movedim(-3, -1).cpu().numpy()
        return torch.stack([self.prepare_image(img) for img in images]).to(batch.device)


CENTER_CROP = "+center-crop"


def _crop_image(img: np.ndarray) -> np.ndarray:
    """``... x H x W x C`` (an image, or a clip with a leading time axis) cut to its centre square."""
    h, w = img.shape[-3:-1]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[..., top:top + s, left:left + s, :]


def _crop_batch(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top:top + s, left:left + s]


def center_cropped(p: Preprocessing) -> Preprocessing:
    """``p`` after a centre crop of every image to a square (the larger side cut, offsets floored)."""
    if p.name.endswith(CENTER_CROP):
        return p
    return dataclasses.replace(
        p, name=p.name + CENTER_CROP, summary=f"centre crop to a square, then {p.summary}",
        prepare_batch=None if p.prepare_batch is None else (lambda x, f=p.prepare_batch: f(_crop_batch(x))),
        prepare_image=None if p.prepare_image is None else (lambda img, f=p.prepare_image: f(_crop_image(img))),
        crop="centre square (offsets floored), then " + p.crop)


@dataclasses.dataclass(frozen=True)
class ExtractorSpec:
    """A feature extractor, declared once.

    ``build(state_dict, source)`` returns the network in eval mode, with its
    parameters loaded from ``state_dict`` (read by ``read_weights(path)``, which
    never runs Python pickle), whose ``forward(x, taps)`` returns a dict of
    ``N x dim`` tensors.  ``weights`` is the published file (a
    :class:`~fidkit.extractors.weights.WeightSpec`), or ``None`` for a module
    given in memory.
    """

    name: str
    summary: str
    taps: tuple[Tap, ...]
    defaults: dict[str, str]                       # role -> tap name
    preprocessing: tuple[Preprocessing, ...]
    default_preprocessing: str
    weights: object | None
    build: Callable[[dict, str], torch.nn.Module]
    identity: str                                  # the network's name in provenance (the registry name, except
                                                   # Inception's "inception-2015-12-05", kept from fidkit 0.1)
    key: str                                       # suffix of metric names in this space ("" for Inception)
    modality: str = "image"
    aliases: tuple[str, ...] = ()
    read_weights: Callable[[Path], dict] | None = None
    #: the identity of a network given in memory (``weights`` is None): sha256 of its parameters
    weights_digest: str | None = None
    #: names the field gives a generic metric in this space (I3D: ``{"fd": "fvd", "kd": "kvd"}``); they are
    #: accepted as metric names and used as result keys instead of ``fd_i3d``
    metric_names: dict[str, str] = dataclasses.field(default_factory=dict)
    #: ``random_weights(path, seed)`` writes random weights in the published file's format and layout to ``path``
    #: and returns it as ``str``: what tests and benchmarks load (into fidkit and into the reference
    #: implementation) where the real file cannot be downloaded.  ``None``: the network cannot be written in a
    #: test's time and memory (VideoMAE-v2 ViT-g, 1B parameters), or was given in memory
    random_weights: Callable[[str | os.PathLike, int], str] | None = None

    def tap(self, name: str) -> Tap:
        for t in self.taps:
            if t.name == name:
                return t
        raise BadInputError(f"{self.name} has no tap {name!r}; its taps: {', '.join(t.name for t in self.taps)}")

    def tap_for(self, role: str) -> Tap | None:
        name = self.defaults.get(role)
        return None if name is None else self.tap(name)

    def preprocessing_named(self, name: str | None) -> Preprocessing:
        """The preprocessing called ``name`` (default: this extractor's default); ``NAME+center-crop`` is that
        variant after a centre crop of every image to a square (:func:`center_cropped`)."""
        name = self.default_preprocessing if name is None else name
        base, crop = (name[: -len(CENTER_CROP)], True) if name.endswith(CENTER_CROP) else (name, False)
        for p in self.preprocessing:
            if p.name == base:
                return center_cropped(p) if crop else p
        raise BadInputError(f"unknown preprocessing {name!r} for {self.name}; choose one of "
                            f"{', '.join(p.name for p in self.preprocessing)} (each also as NAME{CENTER_CROP})")

    def variant(self, name: str | None) -> Preprocessing:
        """:meth:`preprocessing_named`, by its name before fidkit 0.2."""
        return self.preprocessing_named(name)

    def space(self, tap: str) -> str:
        """The key of one feature space: ``extractor/tap``."""
        return f"{self.name}/{tap}"

    def provenance(self, weights_sha256: str | None, tap: str, preprocessing: str,
                   source: str | None = None) -> Provenance:
        """What every statistic of this network records; two statistics compare only if these agree."""
        from fidkit._version import __version__
        return Provenance(extractor=self.identity, weights_sha256=weights_sha256, layer=tap, mode=preprocessing,
                          source=source, fidkit_version=__version__, space=self.space(tap))


_REGISTRY: dict[str, ExtractorSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: ExtractorSpec, *, replace: bool = False) -> ExtractorSpec:
    """Make ``spec`` available by name (and its aliases) to every front end."""
    names = (spec.name, *spec.aliases)
    taken = [n for n in names if (n in _REGISTRY or n in _ALIASES) and not replace]
    if taken and _resolve(taken[0]) is not spec:
        raise BadInputError(f"an extractor named {taken[0]!r} is already registered (pass replace=True)")
    _REGISTRY[spec.name] = spec
    if not spec.identity.startswith("custom:"):
        register_identity(spec.identity, spec.name)  # statistics written before the space was recorded
    for a in spec.aliases:
        _ALIASES[a] = spec.name
    return spec


def _resolve(name: str) -> ExtractorSpec | None:
    return _REGISTRY.get(_ALIASES.get(name, name))


def get_spec(name: str | ExtractorSpec) -> ExtractorSpec:
    """The registered extractor called ``name`` (or an alias); unknown names are refused with the list."""
    if isinstance(name, ExtractorSpec):
        return name
    spec = _resolve(str(name).strip().lower())
    if spec is None:
        raise BadInputError(f"unknown feature extractor {name!r}; choose from {', '.join(available())}")
    return spec


def available() -> list[str]:
    return sorted(_REGISTRY) + sorted(f"{a} (= {n})" for a, n in _ALIASES.items())


def specs() -> list[ExtractorSpec]:
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def state_dict_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's parameters and buffers (names, shapes, dtypes, bytes): the identity of a
    network given in memory, so that its statistics are never compared with another network's."""
    import hashlib
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def custom_extractor(name: str, module: torch.nn.Module, *, dim: int, size: int,
                     prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     preprocessing: str = "custom", summary: str = "", register_it: bool = True) -> ExtractorSpec:
    """Declare a user's ``nn.Module`` as a feature extractor.

    ``module(x)`` takes float32 ``N x 3 x size x size`` and returns ``N x dim``
    features.  ``prepare(uint8 N x 3 x H x W) -> float32 N x 3 x size x size``
    is its preprocessing (default: torch bilinear resize with antialiasing to
    ``size`` and ``x / 255``).  Its provenance records ``custom:<name>`` and the
    sha256 of the module's parameters, so its statistics are only ever compared
    with statistics of the same network and preprocessing.
    """
    if prepare is None:
        def prepare(x: torch.Tensor) -> torch.Tensor:
            x = x.to(torch.float32) / 255
            if x.shape[-2:] != (size, size):
                x = torch.nn.functional.interpolate(x, (size, size), mode="bilinear", antialias=True,
                                                    align_corners=False)
            return x
    digest = state_dict_digest(module)

    class _Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, x, taps=("embedding",)):
            out = self.inner(x)
            if not isinstance(out, torch.Tensor):
                raise BadInputError(f"custom extractor {name!r} returned {type(out).__name__}, declared a tensor "
                                    f"N x {dim}")
            if out.ndim != 2 or out.shape[1] != dim:
                raise BadInputError(f"custom extractor {name!r} returned shape {tuple(out.shape)}, "
                                    f"declared N x {dim}")
            if out.shape[0] != x.shape[0]:  # one row per image, or N is silently wrong
                raise BadInputError(f"custom extractor {name!r} returned {out.shape[0]} feature rows for a batch of "
                                    f"{x.shape[0]} images; it must return one row per image (N x {dim})")
            return {"embedding": out}

    spec = ExtractorSpec(
        name=name, summary=summary or f"user module {type(module).__name__}",
        taps=(Tap("embedding", dim, "embedding"),), defaults={"embedding": "embedding"},
        preprocessing=(Preprocessing(preprocessing, "user-supplied", size, prepare),),
        default_preprocessing=preprocessing, weights=None,
        build=lambda state, source: _Wrapped().eval(), identity=f"custom:{name}", key=name.replace("-", "_"),
        read_weights=None, weights_digest=digest)
    if register_it:
        register(spec, replace=True)
    return spec
