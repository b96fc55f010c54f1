"""Feature extractors: a loaded network plus the identity that goes into provenance."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading

import torch

from .. import weights as _weights
from ..errors import BadInputError, WeightsUnavailableError
from ..provenance import Provenance
from .inception import TAPS, FIDInceptionV3, load_state_dict_published

__all__ = ["InceptionExtractor", "TAPS", "FIDInceptionV3", "default_device"]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device) -> torch.device:
    """``None`` means cuda if available, else cpu; anything else must name a usable device."""
    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise BadInputError(f"device {device!r} is not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r} was requested but CUDA is not available here")
    return dev


@contextlib.contextmanager
def _exact_float32(device: torch.device):
    """Turn off TF32 on CUDA for the duration: TF32 convolutions move features by ~1e-3."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


_malloc_tuned = False


def _tune_malloc_for_cpu_inference() -> None:
    """Keep freed activation buffers in the heap instead of unmapping them (glibc only).

    Every batch allocates the same large activation tensors; by default glibc
    serves them with fresh mmaps and returns them on free, so each batch pays
    page faults for hundreds of MB (about a third of the anchors' CPU time is
    system time).  Raising the mmap and trim thresholds makes the forward ~30%
    faster on CPU at the cost of the process keeping its peak heap.  Set
    ``FIDKIT_MALLOC_TUNING=0`` to opt out.
    """
    global _malloc_tuned
    if _malloc_tuned or os.environ.get("FIDKIT_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


class InceptionExtractor:
    """The FID Inception network, loaded once, BatchNorm folded, channels-last."""

    name = "inception-2015-12-05"
    spec = _weights.INCEPTION

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device | None = None):
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            _tune_malloc_for_cpu_inference()
        self.weights_path, self.weights_sha256 = _weights.resolve(self.spec, weights)
        try:
            state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
            raise WeightsUnavailableError(
                f"{self.weights_path}: cannot be loaded with torch.load(weights_only=True) "
                f"(not a plain state dict, or corrupt): {e}") from e
        if not isinstance(state, dict):
            raise WeightsUnavailableError(f"{self.weights_path}: holds a {type(state).__name__}, not a state dict")
        net = FIDInceptionV3()
        load_state_dict_published(net, state, str(self.weights_path))
        net.fold_batchnorm().eval().requires_grad_(False)
        self.net = net.to(self.device, memory_format=torch.channels_last)

    def provenance(self, mode: str, layer: str = "pool3", source: str | None = None) -> Provenance:
        from .. import __version__
        return Provenance(extractor=self.name, weights_sha256=self.weights_sha256, layer=layer, mode=mode,
                          source=source, fidkit_version=__version__)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor, taps=("pool3",)) -> dict[str, torch.Tensor]:
        """Features of a normalised ``N x 3 x 299 x 299`` batch."""
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with _exact_float32(self.device):
            return self.net(x, taps)

    # One loaded network per (weights, device) per process: repeated evaluations
    # (a training loop, a notebook) do not reload 95 MB each time.
    _cache: dict = {}
    _lock = threading.Lock()

    @classmethod
    def get(cls, weights=None, device=None) -> "InceptionExtractor":
        dev = resolve_device(device)
        path, sha = _weights.resolve(cls.spec, weights)
        key = (sha, str(dev))
        with cls._lock:
            if key not in cls._cache:
                cls._cache[key] = cls(path, dev)
            return cls._cache[key]
