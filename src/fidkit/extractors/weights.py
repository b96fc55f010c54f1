"""Network weights: canonical URL, sha256 check, cache directory, atomic download, offline errors.

Resolution order for a weight file:

1. an explicit path (``weights=PATH``, ``--weights PATH``);
2. the environment variable named by the spec (``FIDKIT_INCEPTION_WEIGHTS``);
3. the published file name in the cache directory (``fidkit.cache.weights_dir()``);
4. a download from the canonical URL, unless ``FIDKIT_OFFLINE=1``.

A file whose name carries a hash suffix (``name-6726825d.pth``, the torch.hub
convention) must hash to it; a truncated or corrupted download is refused, not
loaded.  The full sha256 of the file used is part of every statistic's
provenance.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import fidkit.cache as cache
from fidkit._download import DownloadError, download, downloads_allowed, sha256_of
from fidkit.errors import WeightsUnavailableError

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """A published weight file."""

    name: str                     # what it is, for messages and provenance
    filename: str                 # the published file name
    url: str                      # canonical download location
    sha256: str                   # full hash if known, else the published prefix
    env_var: str                  # environment variable that may point at a local copy
    alternatives: tuple[str, ...] = ()   # other published names of the same network
    licence: str = ""             # the licence the weights are published under

    @property
    def cache_path(self) -> Path:
        return cache.weights_dir() / self.filename



def check_hash(path: Path, expected: str | None) -> str:
    """Return the file's sha256; raise if it does not start with ``expected`` or with the hash in its name."""
    digest = sha256_of(path)
    m = _HASH_IN_NAME.search(path.name)
    for want, why in ((expected, "published"), (m.group(1) if m else None, "in its file name")):
        if want and not digest.startswith(want):
            raise WeightsUnavailableError(
                f"{path}: sha256 {digest[:16]}… does not match the {why} hash {want[:16]}…; "
                "the file is corrupt or truncated (delete it and download it again)")
    return digest


def resolve(spec: WeightSpec, path: str | os.PathLike | None = None, *, download: bool | None = None) -> tuple[Path, str]:
    """Find (or fetch) the weight file; return ``(path, sha256)``."""
    if path is not None:
        return _local(Path(path).expanduser(), "weights argument", None)
    env = os.environ.get(spec.env_var)
    if env:
        return _local(Path(env).expanduser(), f"${spec.env_var}", None)
    for name in (spec.filename, *spec.alternatives):
        candidate = cache.weights_dir() / name
        if candidate.is_file():
            return candidate, check_hash(candidate, spec.sha256)  # the full published hash
    if download is None:
        download = downloads_allowed()
    if not download:
        raise _offline_error(spec, "downloads are disabled (FIDKIT_OFFLINE is set)")
    return fetch(spec)


def fetch(spec: WeightSpec, url: str | None = None, timeout: float = 60.0) -> tuple[Path, str]:
    """Download ``spec`` into the cache (:func:`fidkit._download.download`: temp file, hash check, then rename)."""
    url = url or spec.url

    def published_hash(digest: str) -> None:
        if not digest.startswith(spec.sha256):
            raise WeightsUnavailableError(
                f"download from {url} has sha256 {digest[:16]}…, expected {spec.sha256[:16]}…; "
                "nothing was saved (a proxy page or a truncated transfer?)")

    try:
        digest = download(url, spec.cache_path, check=published_hash, timeout=timeout)
    except DownloadError as e:
        raise _offline_error(spec, f"download from {url} failed: {e}") from e
    return spec.cache_path, digest


def _local(path: Path, where: str, expected: str | None) -> tuple[Path, str]:
    if not path.is_file():
        raise WeightsUnavailableError(f"{where}: weight file {path} does not exist")
    return path, check_hash(path, expected)


def _offline_error(spec: WeightSpec, reason: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"The {spec.name} network weights are not available: {reason}.\n"
        f"  Download {spec.url}\n"
        f"  (file name {spec.filename}, sha256 {spec.sha256}) on a machine with internet access, then either\n"
        f"  - put it at {spec.cache_path}, or\n"
        f"  - set {spec.env_var}=PATH, or\n"
        f"  - pass it on the command line (--weights PATH for Inception, --weights EXTRACTOR=PATH for another "
        f"network; Python: weights=PATH or weights={{'EXTRACTOR': PATH}})."
        + (f"\n  Also accepted under its other published name(s): {', '.join(spec.alternatives)}."
           if spec.alternatives else ""))


def read_tensor_state_dict(path: str | os.PathLike, what: str, containers: tuple[str, ...] = ()) -> dict:
    """The tensors of a published ``torch.save`` state dict, on the CPU, read with ``torch.load(weights_only=True)``
    (tensors and containers only: no Python pickle code runs).  ``what`` names the network in errors; a training
    checkpoint's state dict under the first of the keys ``containers`` it has is unpacked first."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"{what} weight file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise WeightsUnavailableError(f"{path}: not a readable {what} checkpoint: it cannot be loaded with "
                                      f"torch.load(weights_only=True) ({load_error_reason(e)}); delete it and "
                                      "download it again") from e
    if isinstance(state, dict):
        state = next((state[k] for k in containers if k in state), state)
    where = f" (bare, or under one of the keys {', '.join(containers)})" if containers else ""
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{path}: holds {type(state).__name__}, not a {what} state dict of "
                                      f"tensors{where}")
    odd = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if odd is not None:
        raise WeightsUnavailableError(f"{path}: entry {odd!r} is {type(state[odd]).__name__}, not a tensor; not a "
                                      f"{what} state dict of tensors{where}")
    return dict(state)


def load_error_reason(e: BaseException) -> str:
    """What ``torch.load(weights_only=True)`` objected to, in one line: its "WeightsUnpickler error" line when there
    is one (torch's message around it suggests allow-listing the globals, which fidkit never does), else the first
    line of the message; its first sentence only."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    line = next((ln for ln in lines if ln.startswith("WeightsUnpickler error")), lines[0] if lines else "")
    line = line.split(". ")[0].rstrip(".")  # its first sentence: what was refused, not how to allow it
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def check_finite(state: dict, path) -> None:
    """Refuse weights with a NaN or an infinity in any floating (or complex) tensor of ``state``, naming the file
    and the first such entry: a damaged file would otherwise surface only as NaN features, naming neither."""
    import torch
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or not (value.is_floating_point() or value.is_complex()):
            continue
        bad = int((~torch.isfinite(value)).sum()) if value.numel() else 0
        if bad:
            nan = int(torch.isnan(value).sum())
            kinds = " and ".join(k for k, n in (("NaN", nan), ("Inf", bad - nan)) if n)
            raise WeightsUnavailableError(
                f"{path}: the weights are damaged: {key} ({str(value.dtype).replace('torch.', '')}, shape "
                f"{tuple(value.shape)}) holds {bad} {kinds} value(s); delete the file and download it again")


def few(keys: list[str]) -> str:
    """The first four of ``keys`` and how many more (for messages about mismatched state dicts)."""
    return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")


def state_dict_mismatch(expected: dict, given: dict) -> str:
    """How ``given`` differs from the ``expected`` state dict (``"missing: ...; unexpected: ...; wrong shape:
    ..."``), or ``""`` when their keys and shapes agree."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(f"{k} {tuple(given[k].shape)} (expected {tuple(expected[k].shape)})"
                   for k in set(expected) & set(given) if tuple(expected[k].shape) != tuple(given[k].shape))
    return "; ".join(f"{label}: {few(keys)}" for label, keys in
                     (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys)

