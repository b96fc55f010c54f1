"""A loaded feature extractor: the network of an :class:`ExtractorSpec` on a device, its weights' hash,
and the provenance of what it computes.  One loaded network per (extractor, weights, device) per process."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading

import torch

from fidkit.errors import BadInputError
from fidkit.extractors import weights as _weights
from fidkit.extractors.base import ExtractorSpec, get_spec
from fidkit.stats.provenance import Provenance

__all__ = ["Extractor", "InceptionExtractor", "default_device", "resolve_device"]


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
    if dev.type == "meta":
        raise BadInputError(f"device {device!r} holds shapes but no data: features cannot be computed on it "
                            "(use cpu or cuda)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(f"device {device!r} was requested but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BadInputError(f"device {device!r} was requested but this machine has "
                                f"{torch.cuda.device_count()} CUDA device(s), numbered from 0")
    elif dev.type != "cpu":
        try:  # mps, xpu, ...: a tiny allocation says whether this torch and this machine can use it
            torch.empty(1, device=dev)
        except Exception as e:  # noqa: BLE001  (backends raise RuntimeError, AssertionError, ...)
            raise BadInputError(f"device {device!r} is not usable here ({type(e).__name__}: "
                                f"{str(e).strip().splitlines()[0] if str(e).strip() else e!r})") from None
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


class Extractor:
    """The network of ``spec`` loaded from its weights onto ``device``, ready for inference."""

    def __init__(self, spec: ExtractorSpec | str, weights: str | os.PathLike | None = None,
                 device: str | torch.device | None = None):
        self.spec = get_spec(spec)
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            _tune_malloc_for_cpu_inference()
        if self.spec.weights is None:  # a module given in memory: its parameters' digest is its identity
            self.weights_path, self.weights_sha256 = None, self.spec.weights_digest
            state = {}
        else:
            self.weights_path, self.weights_sha256 = _weights.resolve(self.spec.weights, weights)
            state = (self.spec.read_weights or read_state_dict)(self.weights_path)
            _weights.check_finite(state, self.weights_path)
        net = self.spec.build(state, str(self.weights_path))
        self.net = net.eval().requires_grad_(False).to(self.device)

    @property
    def name(self) -> str:
        return self.spec.identity

    def provenance(self, mode: str | None = None, layer: str | None = None, source: str | None = None) -> Provenance:
        layer = layer if layer is not None else self.spec.defaults["embedding"]
        return self.spec.provenance(self.weights_sha256, layer, self.spec.preprocessing_named(mode).name, source)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor, taps=None) -> dict[str, torch.Tensor]:
        """Features of a prepared ``N x 3 x size x size`` batch at ``taps`` (default: the embedding tap)."""
        taps = (self.spec.defaults["embedding"],) if taps is None else tuple(taps)
        x = batch.to(self.device, non_blocking=True)
        if getattr(self.net, "channels_last", False):  # convolutional networks run faster channels-last
            x = x.contiguous(memory_format=torch.channels_last)
        with _exact_float32(self.device):
            return self.net(x, taps)

    # One loaded network per (extractor, weights, device) per process: repeated
    # evaluations (a training loop, a notebook) do not reload the weights each time.
    _cache: dict = {}
    _lock = threading.Lock()

    @classmethod
    def get(cls, spec: ExtractorSpec | str, weights=None, device=None) -> "Extractor":
        spec = get_spec(spec)
        dev = resolve_device(device)
        if spec.weights is None:
            key = (spec.name, spec.weights_digest, str(dev))
        else:
            path, sha = _weights.resolve(spec.weights, weights)
            key, weights = (spec.name, sha, str(dev)), path
        with cls._lock:
            if key not in cls._cache or cls._cache[key].spec is not spec:
                cls._cache[key] = cls(spec, weights, dev)
            return cls._cache[key]


def read_state_dict(path, what: str = "network") -> dict:
    """A published ``.pth`` state dict of tensors, read with ``torch.load(weights_only=True)``: never Python pickle
    code.  The one reader of ``torch.save`` state dicts (:func:`fidkit.extractors.weights.read_tensor_state_dict`),
    for networks that declare no reader of their own."""
    return _weights.read_tensor_state_dict(path, what)


class InceptionExtractor(Extractor):
    """The FID Inception network (kept for code written against fidkit 0.1)."""

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device | None = None):
        super().__init__("inception", weights, device)

    @classmethod
    def get(cls, weights=None, device=None) -> Extractor:  # type: ignore[override]
        return Extractor.get("inception", weights, device)
