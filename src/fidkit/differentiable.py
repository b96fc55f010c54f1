"""FID as a differentiable training signal: ``loss = DifferentiableFID(reference=...)(images)``.

The value is the Fréchet distance between the features of one batch and fixed
reference statistics, computed exactly at every batch size from a b x b matrix
(:mod:`fidkit.metrics.differentiable`), with the gradient flowing back through
the network and a differentiable form of its preprocessing to the images.

What the number is and is not: the FID of a batch of b images is a strongly
biased estimate (FID falls as N grows; REFERENCE.md §2.3), useful as a loss or
a per-batch signal, never as a reportable FID.  Report FIDs from
:func:`fidkit.evaluate` on 50k samples.
"""

from __future__ import annotations

import os
import warnings

import torch

from fidkit.api import reference_of
from fidkit.data.sources import StatsSource, check_value_range
from fidkit.report.notes import emit
from fidkit.session import Session
from fidkit.errors import BadInputError, FidkitWarning
from fidkit.extractors import get_spec
from fidkit.extractors.runtime import _exact_float32
from fidkit.metrics.differentiable import FrechetReference, frechet_distance_torch
from fidkit.stats.moments import FeatureStats
from fidkit.request import RunOptions, preprocessing_argument, resolve

__all__ = ["DifferentiableFID"]


class DifferentiableFID(torch.nn.Module):
    """The Fréchet distance of a batch of images to a fixed reference, differentiable w.r.t. the images.

    ``reference``: a statistics file or saved name (``fidkit stats``), a
    :class:`~fidkit.stats.FeatureStats` or :class:`~fidkit.stats.Reference`, or
    images (a folder, archive, array or tensor: their statistics are computed
    once, with the same network and preprocessing).  ``extractor`` (default
    Inception) and ``preprocessing`` (``mode`` is its older name) pick the feature space and preprocessing; only
    preprocessing written in torch has a gradient (Inception ``tf``, the
    published protocol and the default, or ``pytorch``; clean-fid's PIL resize
    is refused).  ``value_range`` declares what black and white are in the
    float images passed to the call.  ``checkpointing=True`` (or a number of
    images) keeps no activations from the forward pass and recomputes them in
    the backward pass, 4 images (that number) at a time: the memory of the
    network's activations no longer grows with the batch, for about one more
    forward of time, with the same gradient.  ``dtype`` is the precision of the
    Fréchet distance (float64 by default: the trace term cancels large numbers).

    Calling it on float ``N x 3 x H x W`` images (N >= 2, any device) returns a
    0-d tensor.  :meth:`features` gives the differentiable embedding itself, for
    :func:`fidkit.kid_torch` or another loss.
    """

    def __init__(self, reference, *, extractor: str = "inception", preprocessing: str | None = None,
                 weights: str | os.PathLike | None = None, device=None, value_range=(0, 1),
                 checkpointing: bool | int = False, dtype: torch.dtype = torch.float64, force: bool = False,
                 mode: str | None = None):
        super().__init__()
        spec = get_spec(extractor)
        if spec.modality != "image":
            raise BadInputError(f"DifferentiableFID takes images; {spec.name} reads {spec.modality}s")
        self.spec = spec
        self.tap = spec.defaults["embedding"]
        self.space = spec.space(self.tap)
        # the same request as evaluate(): the preprocessing given statistics record when no mode is named,
        # provenance and comparability checked once
        request = resolve(["fd"], [spec], preprocessing_argument(preprocessing, mode, "DifferentiableFID"),
                          weights=weights, run=RunOptions(device=device),
                          sources=(reference,), force=force)
        source = request.sources[0]
        self.preprocessing = request.preprocessing[spec.name]
        if self.preprocessing.prepare_batch is None:
            torch_variants = [p.name for p in spec.preprocessing if p.prepare_batch is not None]
            raise BadInputError(
                f"mode {self.preprocessing.name!r} of {spec.name} resizes with PIL on the CPU "
                f"({self.preprocessing.resize}), which has no gradient; a differentiable FID needs a torch "
                "preprocessing (" + (", ".join(torch_variants) if torch_variants else "this extractor has none")
                + ") and reference statistics computed with it")
        self.value_range = check_value_range(value_range)
        self.dtype = dtype
        if isinstance(checkpointing, bool):
            self.chunk = 4 if checkpointing else None
        elif isinstance(checkpointing, int) and checkpointing >= 1:
            self.chunk = checkpointing
        else:
            raise BadInputError(f"checkpointing={checkpointing!r}: use True, False or a number of images (>= 1)")
        session = Session(request)
        self.extractor = session.extractor(spec.name)     # the network evaluate() uses, loaded once
        if isinstance(source, StatsSource):
            description, stats = _given_statistics(source, self.space)
            emit(request.provenance(self.space).check_comparable(stats.provenance, force=force))
            if stats.dim != spec.tap(self.tap).dim:
                raise BadInputError(f"{description}: statistics of dimension {stats.dim}, but {self.space} has "
                                    f"{spec.tap(self.tap).dim}")
        else:              # images: their statistics with this network and preprocessing
            stats = reference_of(session, source, features=False, spatial=False).stats[self.space]
        self.reference_stats = stats
        self._reference = FrechetReference.from_stats(stats).to(self.extractor.device, dtype)
        self._warned_range = False

    # ---------------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The embedding of float ``N x 3 x H x W`` images, differentiable w.r.t. them (float32, ``N x d``)."""
        if not isinstance(images, torch.Tensor):
            raise BadInputError(f"DifferentiableFID takes a float tensor of images, got {type(images).__name__}")
        if not images.is_floating_point():
            raise BadInputError(f"images of dtype {images.dtype} have no gradient: pass floats in the declared "
                                f"value_range {self.value_range} (for a reportable FID of stored images use "
                                "fidkit.evaluate)")
        if images.ndim != 4 or images.shape[1] != 3:
            raise BadInputError(f"images of shape {tuple(images.shape)}; expected N x 3 x H x W RGB")
        self._check_range(images, *self.value_range)
        if self.chunk is None or not torch.is_grad_enabled() or not images.requires_grad:
            return self._embed(images)
        return _Recomputed.apply(self._embed, self.chunk, images)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        lo, hi = self.value_range
        pixels = (images.to(self.extractor.device, torch.float32) - lo) * (255.0 / (hi - lo))
        x = self.preprocessing.prepare_batch(pixels)
        if getattr(self.extractor.net, "channels_last", False):
            x = x.contiguous(memory_format=torch.channels_last)
        with _exact_float32(self.extractor.device):
            return self.extractor.net(x, (self.tap,))[self.tap]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.features(images)
        return frechet_distance_torch(feats, self._reference, dtype=self.dtype)

    def _check_range(self, images: torch.Tensor, lo: float, hi: float) -> None:
        with torch.no_grad():
            mn, mx = float(images.min()), float(images.max())
        slack = (hi - lo) / 255
        if mn < lo - (hi - lo) / 4 or mx > hi + (hi - lo) / 4:
            raise BadInputError(f"images range over [{mn:.3g}, {mx:.3g}], far outside the declared value_range "
                                f"({lo:g}, {hi:g}); declare the range the generator produces")
        if (mn < lo - slack or mx > hi + slack) and not self._warned_range:
            self._warned_range = True
            warnings.warn(f"images range over [{mn:.3g}, {mx:.3g}], outside the declared value_range ({lo:g}, "
                          f"{hi:g}); they are used as they are (not clipped, which would stop the gradient)",
                          FidkitWarning, stacklevel=3)

    def extra_repr(self) -> str:
        return (f"extractor={self.spec.name}, mode={self.preprocessing.name}, value_range={self.value_range}, "
                f"reference N={self.reference_stats.n}, checkpointing={self.chunk or False}")


def _given_statistics(source: StatsSource, space: str) -> tuple[str, FeatureStats]:
    """``(description, statistics in space)`` of given statistics (a file, a saved name, FeatureStats, a
    Reference); a file without provenance holding one mean and covariance (pytorch-fid, ADM) serves any space."""
    stats = source.reference.stats.get(space)
    if stats is None:
        only = next(iter(source.reference.stats.values()), None)
        if len(source.reference.stats) == 1 and not only.provenance.known:
            return source.description, only  # a pytorch-fid / ADM file: mu/sigma without provenance
        raise BadInputError(f"{source.description} holds no {space} statistics (it has "
                            f"{', '.join(source.reference.stats) or 'none'})")
    return source.description, stats


class _Recomputed(torch.autograd.Function):
    """``fn(images)`` without storing its activations: the forward runs without a graph, in chunks; the backward
    runs ``fn`` again on ``chunk`` images at a time and back-propagates through that chunk only.  The gradient is
    the same (``fn`` treats images independently, and has no randomness); the memory of activations is that of
    ``chunk`` images whatever the batch; the time is one more forward."""

    @staticmethod
    def forward(ctx, fn, chunk: int, images: torch.Tensor) -> torch.Tensor:
        ctx.fn, ctx.chunk = fn, chunk
        ctx.save_for_backward(images)
        return torch.cat([fn(images[i:i + chunk]) for i in range(0, images.shape[0], chunk)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (images,) = ctx.saved_tensors
        out = torch.empty_like(images)
        for i in range(0, images.shape[0], ctx.chunk):
            with torch.enable_grad():
                x = images[i:i + ctx.chunk].detach().requires_grad_(True)
                (out[i:i + ctx.chunk],) = torch.autograd.grad(ctx.fn(x), x, grad[i:i + ctx.chunk])
        return None, None, out
