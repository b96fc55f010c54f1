"""Statistics files as their publishers write them, read into a :class:`~fidkit.stats.reference.Reference`.

Each format is read as data (pickles through :mod:`fidkit._safe_pickle`, never
executed), and every array is checked (shapes, dtypes, finite values, a
covariance no samples could produce) with errors naming the file and the key.

A covariance is fidkit's (and ``np.cov``'s) unbiased one, divided by ``N - 1``;
a file divided by ``N`` (``normaliser="n"``) is converted exactly with the
file's ``N`` (the co-moment is ``cov * N``), and refused when ``N`` is unknown.
What each publisher stores (read from their code):

* EDM2 ``calculate_metrics.py ref`` pickles ``{'num_images': N, 'fid': {'mu',
  'sigma'}, 'fd_dinov2': {'mu', 'sigma'}}``, float64, ``sigma`` divided by
  ``N - 1``.
* cd-FVD's ``FeatureStats.save`` pickles the object's ``__dict__``: the raw
  sums ``raw_mean`` (sum of x) and ``raw_cov`` (sum of x x^T) in float64,
  ``num_items``, and with ``capture_all`` the features (``all_features``, a list
  of float32 blocks).  Its own covariance divides by ``N``; fidkit reads the
  sums, so the ``N - 1`` covariance follows exactly.
* torch-fidelity caches ``torch.save({'mu', 'sigma'})`` (numpy arrays,
  ``np.cov``: ``N - 1``, ``N`` not recorded) for statistics and a 2-D tensor for
  features (``...-features-<layer>.pt``).
* clean-fid's ``make_custom_stats`` writes ``{name}_..._kid.npz`` holding the
  float32 features as ``feats``.
* BasicSR's ``calculate_fid_stats_from_datasets.py`` writes a legacy-format
  ``torch.save(dict(name, size, mean, cov))`` (``np.cov``: ``N - 1``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from fidkit._safe_pickle import load_file, load_pickle, load_torch
from fidkit.errors import BadInputError
from fidkit.stats.moments import FeatureStats
from fidkit.stats.provenance import Provenance
from fidkit.stats.reference import POOL3, SPATIAL, Reference

__all__ = ["FORMATS", "convert_published", "guess_format", "read_published"]

FORMATS: dict[str, str] = {
    "npz": "an .npz with mu/sigma (pytorch-fid, clean-fid, TTUR, EDM, MAR, COCO files; fidkit's own)",
    "cleanfid-kid": "clean-fid's _kid.npz: per-sample Inception features 'feats'",
    "adm-batch": "an ADM reference batch's moments mu/sigma (pool3) and mu_s/sigma_s (spatial)",
    "edm2-pkl": "EDM2's dataset-refs pickle: {'fid': {mu, sigma}, 'fd_dinov2': {mu, sigma}, 'num_images'}",
    "cdfvd-pkl": "cd-FVD's FeatureStats pickle: raw sums and num_items (and features when captured)",
    "torch-fidelity": "torch-fidelity's cache file: torch.save of {mu, sigma} or of a 2-D feature tensor",
    "pth-stats": "a torch .pth holding mu/sigma or mean/cov (e.g. BasicSR's inception_FFHQ_512.pth)",
}

DINOV2 = "dinov2-vitl14/cls"
#: cd-FVD's networks by feature width: I3D's 400 logits, VideoMAE-v2 giant's 1408-wide embedding
_CDFVD_SPACES = {400: "i3d/logits", 1408: "videomae-v2/embedding"}
_NORMALISERS = ("n-1", "n")


@dataclasses.dataclass
class _Space:
    """One feature space as a file holds it, before checks: a stored covariance, raw sums, or features."""

    mean: Any = None
    cov: Any = None
    n: Any = None
    m2: Any = None           # co-moment sum (x - mean)(x - mean)^T, when the file holds sums
    features: Any = None
    keys: str = ""           # the file's names for these arrays, for messages
    n_key: str = "n"         # the file's name for the sample count
    provenance: Provenance | None = None  # recorded in the file (fidkit's own files)


def read_published(path: str | os.PathLike, fmt: str, *, spaces: dict[str, Provenance] | None = None,
                   n: int | None = None, normaliser: str = "n-1", source: str | None = None) -> Reference:
    """The statistics (and features) of a published file in format ``fmt`` (see :data:`FORMATS`).

    ``spaces`` maps the file's feature spaces (fidkit keys: ``inception/pool3``, ``dinov2-vitl14/cls``, ...) to
    the :class:`Provenance` to attach; spaces it leaves out get unknown provenance.  A file with one feature space
    whose network the format does not fix takes the key ``spaces`` names.  ``normaliser`` says what the file's
    covariance is divided by: ``"n-1"`` (unbiased; every publisher's ``np.cov``) or ``"n"`` (biased: converted
    exactly with the file's N, or ``n=`` when the file records none; refused when neither says).  ``source`` names
    the statistics (default: the path).
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise BadInputError(f"unknown published format {fmt!r}; known: {', '.join(FORMATS)}")
    if normaliser not in _NORMALISERS:
        raise BadInputError(f"normaliser must be 'n-1' or 'n', got {normaliser!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2):
        raise BadInputError(f"n={n!r}: a sample count of at least 2")
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    raw = _READERS[fmt](path)
    raw = _rename(raw, spaces, path, fmt)
    label = source or str(path)
    stats, features = {}, {}
    for space, part in raw.items():
        prov = (spaces or {}).get(space) or part.provenance
        prov = Provenance.unknown(label) if prov is None else prov.with_source(prov.source or label)
        if prov.known and prov.space is None:
            prov = dataclasses.replace(prov, space=space)
        st, feats = _build(part, prov, n=n, normaliser=normaliser, where=f"{path}", fmt=fmt)
        if st is not None:
            stats[space] = st
        if feats is not None:
            features[space] = feats
    if not stats and not features:
        raise BadInputError(f"{path}: holds no statistics or features in the {fmt} layout")
    return Reference(stats, features, label)


def guess_format(path: str | os.PathLike) -> str | None:
    """The format of a ``.pkl``/``.pth``/``.pt`` file when its layout tells it (the file is read as data, never
    executed), else ``None``.  A file the allow-list refuses is a :class:`~fidkit._safe_pickle.RefusedPickleError`."""
    data = load_file(Path(path))
    if isinstance(data, dict):
        if isinstance(data.get("fid"), dict) or isinstance(data.get("fd_dinov2"), dict):
            return "edm2-pkl"
        if "raw_mean" in data and "num_items" in data:
            return "cdfvd-pkl"
        if ("mu" in data and "sigma" in data) or ("mean" in data and "cov" in data):
            return "pth-stats"
    if isinstance(data, np.ndarray) and data.ndim == 2:
        return "torch-fidelity"
    return None


def convert_published(path: str | os.PathLike, fmt: str, out: str | os.PathLike, *,
                      spaces: dict[str, Provenance] | None = None, n: int | None = None, normaliser: str = "n-1",
                      source: str | None = None, url: str | None = None) -> Path:
    """Read ``path`` as :func:`read_published` does and write fidkit's no-pickle ``.npz`` to ``out`` (atomically),
    recording the source file's sha256, its format, its name and (when given) ``url`` in the file's ``origin``.
    Returns the path written."""
    ref = read_published(path, fmt, spaces=spaces, n=n, normaliser=normaliser, source=source or url)
    ref.origin = {"format": fmt, "sha256": sha256_of(path), "file": Path(path).name, "url": url,
                  "normaliser": normaliser}
    return ref.save(out)


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- building checked statistics -------------------------------------------------------------------------------

def _real(a, key: str, where: str, ndim: int | None = None) -> np.ndarray:
    """``a`` as a float64 array, refused (naming ``key``) unless it is real numbers of ``ndim`` dimensions."""
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiu":
        kind = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise BadInputError(f"{where}: '{key}' must be an array of real numbers, got {kind}")
    if ndim is not None and a.ndim != ndim:
        raise BadInputError(f"{where}: '{key}' must have {ndim} dimension(s), got shape {a.shape}")
    return a.astype(np.float64)


def _count(value, key: str, where: str) -> int:
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iu":
        value = value.reshape(()).item()
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"{where}: '{key}' must be one integer sample count, got {value!r:.60}")
    if value < 2:
        raise BadInputError(f"{where}: '{key}' = {value}: a covariance needs at least 2 samples")
    return value


def _build(part: _Space, prov: Provenance, *, n, normaliser, where, fmt):
    keys = part.keys
    file_n = None if part.n is None else _count(part.n, part.n_key, where)
    if file_n is not None and n is not None and int(n) != file_n:
        raise BadInputError(f"{where}: records {file_n} samples for {keys}, but n={n} was given")
    count = file_n if file_n is not None else (None if n is None else int(n))
    features = None
    if part.features is not None:
        features = _real(part.features, f"{keys} features", where, ndim=2)
        if features.shape[0] == 0 or features.shape[1] == 0:
            raise BadInputError(f"{where}: the features of {keys} have shape {features.shape}")
        if not np.isfinite(features).all():
            raise BadInputError(f"{where}: the features of {keys} contain NaN or Inf")
        if count is not None and features.shape[0] != count and part.m2 is None and part.mean is None:
            raise BadInputError(f"{where}: {features.shape[0]} feature rows for {keys}, but N = {count}")
    if part.mean is None:  # features only: statistics follow from them (np.cov's N - 1)
        if features is None:
            return None, None
        stats = FeatureStats.from_features(features, prov)
        return stats, features.astype(np.float32)
    mean = _real(part.mean, f"{keys} mean", where)
    if mean.ndim == 2 and 1 in mean.shape:
        mean = mean.reshape(-1)
    if mean.ndim != 1 or mean.size == 0:
        raise BadInputError(f"{where}: the mean of {keys} must be a vector of at least 1 value, got shape "
                            f"{mean.shape}")
    try:
        if part.m2 is not None:  # raw sums: the co-moment is exact whatever the publisher divides by
            m2 = _real(part.m2, f"{keys} co-moment", where, ndim=2)
            if count is None:
                raise BadInputError(f"the file records sums but no sample count for {keys}")
            FeatureStats.from_moments(mean, m2 / (count - 1), None)  # shape, finiteness, semi-definiteness
            stats = FeatureStats(count, mean, m2, prov)
        else:
            cov = _real(part.cov, f"{keys} covariance", where, ndim=2)
            checked = FeatureStats.from_moments(mean, cov, None, prov)
            if normaliser == "n":
                if count is None:
                    raise BadInputError(f"its covariance of {keys} is divided by N (normaliser='n') and the file "
                                        "records no N: pass n= (the number of samples the publisher used)")
                stats = FeatureStats(count, checked.mean, checked.cov * count, prov)  # co-moment = cov_N * N
            elif count is not None:
                stats = FeatureStats.from_moments(mean, cov, count, prov)
            else:
                stats = checked
    except BadInputError as e:
        raise BadInputError(f"{where}: invalid statistics {keys}: {e}") from None
    if features is not None:
        if features.shape[1] != stats.dim:
            raise BadInputError(f"{where}: the features of {keys} have {features.shape[1]} columns but the mean "
                                f"{stats.dim} values")
        if stats.n is not None and features.shape[0] != stats.n:
            raise BadInputError(f"{where}: {features.shape[0]} feature rows for {keys}, but N = {stats.n}")
        features = features.astype(np.float32)
    return stats, features


def _rename(raw: dict[str, _Space], spaces, path: Path, fmt: str) -> dict[str, _Space]:
    """Spaces named by ``spaces`` but not by the format: the one space of a one-space file takes that name."""
    if not spaces:
        return raw
    unknown = [k for k in spaces if k not in raw]
    if not unknown:
        return raw
    if len(raw) == 1 and len(spaces) == 1:
        return {unknown[0]: next(iter(raw.values()))}
    raise BadInputError(f"{path}: spaces names {', '.join(unknown)}, but this {fmt} file holds "
                        f"{', '.join(sorted(raw))}")


def _need(d: dict, key: str, where: str, what: str):
    if not isinstance(d, dict) or key not in d:
        have = sorted(map(str, d)) if isinstance(d, dict) else type(d).__name__
        raise BadInputError(f"{where}: no '{key}' in {what} (found {have}); is this the right --format?")
    return d[key]


# --- the formats -----------------------------------------------------------------------------------------------

def _npz_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in keys if k in z.files}
    except (OSError, ValueError, EOFError, KeyError) as e:
        raise BadInputError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None


def _read_npz(path: Path) -> dict[str, _Space]:
    ref = Reference.load(path)  # fidkit's own and every mu/sigma file, with its checks
    out = {}
    for space, s in ref.stats.items():
        out[space] = _Space(mean=s.mean, cov=s.cov, n=s.n, keys=f"'{space}'",
                            provenance=s.provenance if s.provenance.known else None)
    for space, f in ref.features.items():
        out.setdefault(space, _Space(keys=f"'{space}'")).features = f
    return out


def _read_adm(path: Path) -> dict[str, _Space]:
    z = _npz_arrays(path, ("mu", "sigma", "mu_s", "sigma_s"))
    out = {POOL3: _Space(mean=_need(z, "mu", str(path), "the batch"), cov=_need(z, "sigma", str(path), "the batch"),
                         keys="'mu'/'sigma'")}
    if "mu_s" in z or "sigma_s" in z:
        out[SPATIAL] = _Space(mean=_need(z, "mu_s", str(path), "the batch"),
                              cov=_need(z, "sigma_s", str(path), "the batch"), keys="'mu_s'/'sigma_s'")
    return out


def _read_cleanfid_kid(path: Path) -> dict[str, _Space]:
    z = _npz_arrays(path, ("feats",))
    return {POOL3: _Space(features=_need(z, "feats", str(path), "the file"), keys="'feats'")}


def _read_edm2(path: Path) -> dict[str, _Space]:
    data = load_pickle(path)
    where = str(path)
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: holds a {type(data).__name__}, not EDM2's dict of statistics")
    out = {}
    for key, space in (("fid", POOL3), ("fd_dinov2", DINOV2)):
        if key in data:
            d = data[key]
            out[space] = _Space(mean=_need(d, "mu", where, f"'{key}'"), cov=_need(d, "sigma", where, f"'{key}'"),
                                n=data.get("num_images"), n_key="num_images", keys=f"'{key}'")
    if not out:
        raise BadInputError(f"{where}: no 'fid' or 'fd_dinov2' statistics (found {sorted(map(str, data))})")
    return out


def _read_cdfvd(path: Path) -> dict[str, _Space]:
    data = load_pickle(path)
    where = str(path)
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: holds a {type(data).__name__}, not cd-FVD's FeatureStats")
    n = _need(data, "num_items", where, "the FeatureStats")
    part = _Space(n=n, n_key="num_items", keys="the FeatureStats")
    if data.get("capture_mean_cov"):
        total = _real(_need(data, "raw_mean", where, "the FeatureStats"), "raw_mean", where, ndim=1)
        outer = _real(_need(data, "raw_cov", where, "the FeatureStats"), "raw_cov", where, ndim=2)
        count = _count(n, "num_items", where)
        part.mean = total / count
        part.m2 = outer - np.outer(total, total) / count
    if data.get("capture_all"):
        blocks = data.get("all_features")
        if not isinstance(blocks, list) or not blocks:
            raise BadInputError(f"{where}: 'all_features' must be a non-empty list of feature blocks")
        part.features = np.concatenate([_real(b, "all_features", where, ndim=2) for b in blocks])
    if part.mean is None and part.features is None:
        raise BadInputError(f"{where}: the FeatureStats captured neither moments nor features")
    width = part.mean.size if part.mean is not None else part.features.shape[1]
    space = _CDFVD_SPACES.get(width, f"cdfvd/{width}")
    return {space: part}


def _read_torch_fidelity(path: Path) -> dict[str, _Space]:
    data = load_torch(path)
    where = str(path)
    if isinstance(data, np.ndarray):
        return {POOL3: _Space(features=data, keys="the feature tensor")}
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: holds a {type(data).__name__}, not torch-fidelity's statistics or features")
    return {POOL3: _Space(mean=_need(data, "mu", where, "the file"), cov=_need(data, "sigma", where, "the file"),
                          keys="'mu'/'sigma'")}


def _read_pth(path: Path) -> dict[str, _Space]:
    data = load_file(path)
    where = str(path)
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: holds a {type(data).__name__}, not a dict of statistics")
    names = ("mu", "sigma") if "mu" in data else ("mean", "cov")
    n_key = next((k for k in ("n", "num_images", "num_samples") if k in data), "n")
    return {POOL3: _Space(mean=_need(data, names[0], where, "the file"), cov=_need(data, names[1], where, "the file"),
                          n=data.get(n_key), n_key=n_key, keys=f"'{names[0]}'/'{names[1]}'")}


_READERS = {
    "npz": _read_npz, "cleanfid-kid": _read_cleanfid_kid, "adm-batch": _read_adm, "edm2-pkl": _read_edm2,
    "cdfvd-pkl": _read_cdfvd, "torch-fidelity": _read_torch_fidelity, "pth-stats": _read_pth,
}
