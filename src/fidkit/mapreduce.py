"""Partial statistics of one shard, and their exact merge: fidkit as the map and the reduce step of any engine.

A :class:`Partial` is what one shard (a tar, a folder, a batch an engine decoded) contributes to a reference:
per feature space the sample count, the float64 mean and co-moment ``M2`` (merged with Chan's pairwise formula,
exact up to float64 rounding, in any order) and, for the metrics that need samples (KID, precision/recall,
CMMD), the kept per-sample features.  It records the shards it covers (name, content fingerprint, count) and the
provenance of every space, so that :func:`merge` can refuse a shard counted twice, a part made with another
network or preprocessing, and report shards missing from a declared list.

Kept rows come out in shard order (the declared list's order, else the shards' names sorted), whatever order
the parts arrive in, so that metrics reading samples (KID's subsets) see what one pass over the shards in that
order sees.  Files (``fidkit-partial-v1``) are ``.npz`` without pickle, written atomically.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from fidkit.api import reference_needs
from fidkit._io import atomic_write, write_target
from fidkit._version import __version__
from fidkit.data.pixels import to_uint8_nchw
from fidkit.data.sources import ImageSource
from fidkit.engine.extract import new_side_state, run_branches
from fidkit.engine.plan import parse_features
from fidkit.engine.progress import path_stamp
from fidkit.engine.state import moments_contradict_count
from fidkit.errors import BadInputError, IncomparableStatsError
from fidkit.extractors import get_spec
from fidkit.request import RunOptions, WeightsLike, preprocessing_argument, resolve
from fidkit.session import Session
from fidkit.stats.moments import FeatureStats, _check_covariance
from fidkit.stats.provenance import Provenance
from fidkit.stats.reference import Reference

__all__ = ["FORMAT", "Partial", "PartialBuilder", "ShardRecord", "partial", "combine", "merge", "fingerprint",
           "is_partial_file", "expand_parts", "read_list"]

FORMAT = "fidkit-partial-v1"


@dataclasses.dataclass(frozen=True)
class ShardRecord:
    """One shard a partial covers: its source string, content fingerprint and sample count."""

    shard: str
    fingerprint: str
    count: int


@dataclasses.dataclass
class Partial:
    """The statistics one or more shards contribute: per feature space, streamed moments (``stats``: count, float64
    mean and co-moment) and/or kept features (``features``, rows grouped by shard in ``shards`` order)."""

    shards: list[ShardRecord]
    stats: dict[str, FeatureStats]
    features: dict[str, np.ndarray]
    #: provenance of every space (kept-only spaces included), without a source
    provenance: dict[str, Provenance]
    #: where it was read from (errors name it); ``None`` for one built in memory
    path: str | None = None
    #: files left out of the shard (``skip_bad``), "name: reason"
    skipped: list[str] = dataclasses.field(default_factory=list)

    @property
    def n(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def name(self) -> str:
        """How errors name this partial: its file, else its shard(s)."""
        if self.path:
            return self.path
        return self.shards[0].shard if len(self.shards) == 1 else f"the partial of {len(self.shards)} shards"

    def identity(self) -> dict:
        """What must agree for two partials to merge: each space, whether it is streamed and/or kept, and the
        fields of its provenance that decide comparability (network, weights, layer, preprocessing, clip)."""
        return {space: {"stream": space in self.stats, "keep": space in self.features,
                        **{k: getattr(p, k) for k in ("extractor", "weights_sha256", "layer", "mode", "clip")}}
                for space, p in sorted(self.provenance.items())}

    # files ------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        meta = {"shards": [dataclasses.astuple(s) for s in self.shards],
                "provenance": {k: p.to_dict() for k, p in self.provenance.items()},
                "stream": sorted(self.stats), "keep": sorted(self.features), "skipped": self.skipped,
                "fidkit_version": __version__}
        arrays = {"format": np.array(FORMAT), "meta": np.array(json.dumps(meta, sort_keys=True))}
        for space, s in self.stats.items():
            arrays[f"{space}/n"] = np.array(s.n, dtype=np.int64)
            arrays[f"{space}/mean"], arrays[f"{space}/m2"] = s.mean, s.m2
        for space, f in self.features.items():
            arrays[f"{space}/features"] = np.asarray(f, dtype=np.float32)
        return arrays

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ``.npz`` atomically (a reader never sees half a file) and return its path."""
        path = write_target(path)
        with atomic_write(path) as out:
            np.savez(out, **self._arrays())
        return Path(path)

    def to_bytes(self) -> bytes:
        """The file's bytes: what an engine ships between workers (no pickle)."""
        buf = io.BytesIO()
        np.savez(buf, **self._arrays())
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "partial bytes") -> "Partial":
        return cls._read(io.BytesIO(data), name)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Partial":
        return cls._read(path, str(path))

    @classmethod
    def _read(cls, f, name: str) -> "Partial":
        try:
            with np.load(f, allow_pickle=False) as z:
                return cls._from_npz(z, name)
        except BadInputError:
            raise
        except Exception as e:  # noqa: BLE001  (numpy raises many kinds for a damaged file)
            raise BadInputError(f"{name}: not a readable fidkit partial ({type(e).__name__}: {e})") from None

    @classmethod
    def _from_npz(cls, z, name: str) -> "Partial":
        files = set(z.files)
        fmt = str(z["format"]) if "format" in files else None
        if fmt != FORMAT:
            raise BadInputError(f"{name}: not a fidkit partial (format {fmt!r}, expected {FORMAT!r}; "
                                "'fidkit stats SHARD --partial -o FILE' writes one)")
        meta = json.loads(str(z["meta"]))
        shards = [ShardRecord(str(s), str(f), int(c)) for s, f, c in meta["shards"]]
        provenance = {k: Provenance.from_dict(v) for k, v in meta["provenance"].items()}
        total = sum(s.count for s in shards)
        stats, features = {}, {}
        for space in meta["stream"]:
            n = int(z[f"{space}/n"])
            mean = np.asarray(z[f"{space}/mean"], dtype=np.float64)
            m2 = np.asarray(z[f"{space}/m2"], dtype=np.float64)
            if mean.ndim != 1 or m2.shape != (mean.size, mean.size):
                raise BadInputError(f"{name}: '{space}' moments have shapes {mean.shape} and {m2.shape}")
            if not (np.isfinite(mean).all() and np.isfinite(m2).all()):
                raise BadInputError(f"{name}: '{space}' moments contain NaN or Inf")
            problem = moments_contradict_count(n, mean, m2)
            if n != total or problem:
                raise BadInputError(f"{name}: '{space}' holds n = {n} for shards of {total} samples"
                                    f"{'; ' + problem if problem else ''}: the file was changed or damaged")
            try:
                _check_covariance(m2)
            except BadInputError as e:
                raise BadInputError(f"{name}: '{space}' co-moment is invalid: {e}") from None
            stats[space] = FeatureStats(n, mean, m2, provenance[space])
        for space in meta["keep"]:
            f = z[f"{space}/features"]
            if f.ndim != 2 or f.shape[0] != total or f.dtype.kind != "f" or not np.isfinite(f).all():
                raise BadInputError(f"{name}: '{space}/features' must be {total} finite float rows, got shape "
                                    f"{f.shape} dtype {f.dtype}")
            features[space] = f
        return cls(shards, stats, features, provenance, name, list(meta.get("skipped", [])))

    def to_reference(self, description: str | None = None) -> Reference:
        """A :class:`~fidkit.Reference` (what ``fidkit stats`` writes) of these shards."""
        desc = description or (self.shards[0].shard if len(self.shards) == 1
                               else f"{len(self.shards)} shards merged")
        stats = {k: FeatureStats(s.n, s.mean, s.m2, s.provenance.with_source(desc)) for k, s in self.stats.items()}
        return Reference(stats, dict(self.features), desc)

    def __repr__(self) -> str:
        return (f"Partial(shards={len(self.shards)}, n={self.n}, stream={sorted(self.stats)}, "
                f"keep={sorted(self.features)})")


# -- the map step ------------------------------------------------------------------------

def fingerprint(source: str) -> str:
    """A content identity of a shard: for a local file its size and a hash of its first and last 64 KiB, for a
    folder the same over its files (the stamps resumption uses across machines); for a URL, the shard layer's
    fingerprint (size and ETag or modification time) when that layer is installed; else ""."""
    stamp = path_stamp(os.fspath(source), content=True) if os.path.exists(os.fspath(source)) else None
    if stamp is not None:
        return stamp
    try:
        from fidkit.data import shards  # the URL layer (fsspec): optional
    except ImportError:
        return ""
    return shards.fingerprint(str(source))


def _session(source, features, preprocessing, weights, run: RunOptions, protocol: str | None = None) -> Session:
    specs = parse_features(features)
    if specs is None and protocol is None:
        specs = [get_spec("inception")]
    return Session(resolve(["fd"], specs, preprocessing, weights=weights, run=run,
                           sources=() if source is None else (source,), source_names=("shard",),
                           protocol=protocol))


def planned_identity(source: str, *, features=None, keep_features: bool = False, spatial: bool = True,
                     preprocessing=None, weights: WeightsLike = None, run: RunOptions | None = None) -> dict:
    """The :meth:`Partial.identity` that :func:`partial` would give ``source`` (no network runs): what an
    idempotent rerun compares with the partial already written."""
    session = _session(source, features, preprocessing, weights, run or RunOptions())
    needs = reference_needs(session, keep_features=keep_features,
                            spatial=spatial and isinstance(session.request.sources[0], ImageSource))
    stream, keep = needs.spaces("stream"), needs.spaces("keep")
    prov = {s: session.request.provenance(s) for s in stream | keep}
    return Partial([], {s: FeatureStats.empty(1, prov[s]) for s in stream}, {s: np.zeros((0, 1)) for s in keep},
                   prov).identity()


def partial(source: str | os.PathLike, *, features: str | Iterable[str] | None = None, keep_features: bool = False,
            spatial: bool = True, preprocessing: str | Mapping[str, str] | None = None, weights: WeightsLike = None,
            shard: str | None = None, run: RunOptions | None = None, protocol: str | None = None,
            **keywords) -> Partial:
    """The partial statistics of one shard (a folder or archive of images; a URL when the shard layer is
    installed): for each network of ``features`` (as :func:`fidkit.compute_reference`), its embedding's moments
    (and Inception's spatial ones unless ``spatial=False``), with ``keep_features`` its per-sample features too.
    ``shard`` names it in the merge (default: ``source`` as given).  Run options (``device``, ``batch_size``,
    ``workers``, ``skip_bad``, ...) as keywords.  An unreadable image is an error naming the shard and the file."""
    run, overrides = RunOptions.split(run, keywords)
    if overrides:
        raise BadInputError(f"partial() computes no metric; unknown option(s) {', '.join(sorted(overrides))}")
    name = shard if shard is not None else os.fspath(source)
    stamp = fingerprint(os.fspath(source))
    session = _session(source, features, preprocessing_argument(preprocessing, None, "partial"), weights, run,
                       protocol)
    src = session.request.sources[0]
    if not isinstance(src, ImageSource):
        raise BadInputError(f"shard {name}: partial statistics are computed from images (a folder or archive), "
                            f"not from {src.description}")
    needs = reference_needs(session, keep_features=keep_features, spatial=spatial)
    try:
        side = session.side(src, "SHARD", needs, run.extraction(), [])
    except BadInputError as e:
        raise BadInputError(f"shard {name}: {e} (no partial written)") from None
    prov = {s: p.with_source(None) for s, p in side.provenance.items()}
    stats = {s: FeatureStats(st.n, st.mean, st.m2, prov[s]) for s, st in side.stats.items()}
    return Partial([ShardRecord(name, stamp, int(side.n or 0))], stats, dict(side.features), prov,
                   skipped=list(side.skipped))


class PartialBuilder:
    """Partials from batches of decoded images, without a file source: what an engine's worker (a Ray actor, a
    Spark task) holds.  The networks load once; :meth:`update` folds a batch in (uint8 ``N x H x W x 3`` numpy
    arrays or ``N x 3 x H x W`` tensors; floats with ``value_range``); :meth:`take` returns the partial so far
    under a shard name and starts a new one.  ``features``, ``keep_features``, ``spatial``, ``preprocessing`` and
    ``weights`` as for :func:`partial`; they must match the shards it is merged with."""

    def __init__(self, *, features: str | Iterable[str] | None = None, keep_features: bool = False,
                 spatial: bool = True, preprocessing: str | Mapping[str, str] | None = None,
                 weights: WeightsLike = None, device: str | torch.device | None = None, batch_size: int = 64,
                 value_range: tuple[float, float] | None = None):
        run = RunOptions(device=device, batch_size=batch_size, value_range=value_range)
        self._session = _session(None, features, preprocessing_argument(preprocessing, None, "PartialBuilder"),
                                 weights, run)
        needs = reference_needs(self._session, keep_features=keep_features, spatial=spatial)
        self._branches = self._session.branches(needs)
        self._stream, self._keep = needs.spaces("stream"), needs.spaces("keep")
        self.batch_size, self.value_range = batch_size, value_range
        self._reset()

    def _reset(self) -> None:
        self._state = new_side_state(self._branches, self._stream, self._keep, "batches")
        self._hash = hashlib.blake2b(digest_size=8)

    @property
    def n(self) -> int:
        return self._state.n

    def update(self, images) -> None:
        u8, _ = to_uint8_nchw(images, f"PartialBuilder.update (after {self.n} images)", self.value_range)
        # the content fingerprint: the pixels themselves, as the network receives them
        self._hash.update(np.ascontiguousarray(u8.cpu().numpy()).tobytes())
        for lo in range(0, u8.shape[0], self.batch_size):
            part = u8[lo:lo + self.batch_size]
            prepared = [b.preprocessing.prepare_many(part.to(b.extractor.device)) for b in self._branches]
            self._state.add(run_branches(self._branches, prepared, self._state), part.shape[0])

    def features(self, images) -> dict[str, np.ndarray]:
        """Each space's features of a batch (float32), without folding them in: for engines that keep
        features in their own tables (Spark's ``predict_batch_udf``) and build partials with :meth:`from_features`."""
        u8, _ = to_uint8_nchw(images, "PartialBuilder.features", self.value_range)
        state = new_side_state(self._branches, (), tuple(sorted(self._stream | self._keep)), "batch")
        out: dict[str, list] = {}
        for lo in range(0, u8.shape[0], self.batch_size):
            part = u8[lo:lo + self.batch_size]
            prepared = [b.preprocessing.prepare_many(part.to(b.extractor.device)) for b in self._branches]
            for k, v in run_branches(self._branches, prepared, state).items():
                out.setdefault(k, []).append(v.detach().cpu().numpy().astype(np.float32))
        return {k: np.concatenate(v) for k, v in out.items()}

    def from_features(self, features: Mapping[str, np.ndarray], shard: str) -> Partial:
        """A partial from features :meth:`features` computed (rows of one shard, in order)."""
        state = new_side_state(self._branches, self._stream, self._keep, shard)
        counts = {len(np.asarray(f)) for f in features.values()}
        if len(counts) != 1:
            raise BadInputError(f"shard {shard}: feature spaces hold different row counts {sorted(counts)}")
        missing = (self._stream | self._keep) - set(features)
        if missing:
            raise BadInputError(f"shard {shard}: no features of {', '.join(sorted(missing))}")
        h = hashlib.blake2b(digest_size=8)
        for k in sorted(features):
            h.update(np.ascontiguousarray(features[k], dtype=np.float32).tobytes())
        state.add({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in features.items()},
                  counts.pop())
        return self._partial(state, shard, f"features:{state.n}:{h.hexdigest()}")

    def take(self, shard: str) -> Partial:
        """The partial of everything added since the last :meth:`take`, named ``shard``; starts a new one."""
        out = self._partial(self._state, shard, f"pixels:{self._state.n}:{self._hash.hexdigest()}")
        self._reset()
        return out

    def _partial(self, state, shard: str, stamp: str) -> Partial:
        prov = {s: self._session.request.provenance(s) for s in self._stream | self._keep}
        stats = {s: FeatureStats(st.n, st.mean, st.m2, prov[s]) for s, st in state.stats.items()}
        features = {s: np.asarray(st.array(), dtype=np.float32) for s, st in state.stores.items()}
        return Partial([ShardRecord(shard, stamp, state.n)], stats, features, prov)


# -- the reduce step -------------------------------------------------------------------------

PartLike = Partial | str | os.PathLike


def _load(part: PartLike) -> Partial:
    return part if isinstance(part, Partial) else Partial.load(part)


def combine(parts: Iterable[PartLike], *, expect: Sequence[str] | None = None,
            expect_count: int | None = None) -> Partial:
    """One partial of several (paths or :class:`Partial` objects; themselves single shards or earlier merges):
    exact (Chan's pairwise merge in float64), associative (a tree of merges equals a chain to rounding) and
    independent of the order given (shards are put in order first: ``expect``'s order, else sorted by name).

    Refused, naming what: a part made with other feature spaces, network, weights or preprocessing than the first
    (:class:`~fidkit.errors.IncomparableStatsError`); the same shard, or the same content fingerprint, twice;
    with ``expect`` (the shard names that must be there) a missing or unexpected shard; with ``expect_count``
    another number of shards."""
    loaded = [_load(p) for p in parts]
    if not loaded:
        raise BadInputError("no partials to merge")
    _check_same_settings(loaded)
    seen: dict[str, str] = {}
    for p in loaded:
        for s in p.shards:
            for key, what in ((f"shard {s.shard}", "shard"), (f"content {s.fingerprint}", "fingerprint")):
                # a file's content seen under two names is a copied shard; batches an engine fed (pixels:,
                # features:) may legitimately repeat (the same image twice in a dataset)
                if what == "fingerprint" and (not s.fingerprint or s.fingerprint.startswith(("pixels:", "features:"))):
                    continue
                if key in seen:
                    raise BadInputError(f"{p.name} and {seen[key]} both hold "
                                        + (f"shard {s.shard}" if what == "shard" else
                                           f"the same content ({s.shard}, fingerprint {s.fingerprint})")
                                        + ": a shard must be counted once")
                seen[key] = p.name
    names = [s.shard for p in loaded for s in p.shards]
    if expect is not None:
        expected = list(expect)
        missing = [e for e in expected if e not in set(names)]
        extra = [n for n in names if n not in set(expected)]
        if missing or extra:
            parts_ = []
            if missing:
                parts_.append(f"{len(missing)} of {len(expected)} expected shards have no partial: "
                              + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
            if extra:
                parts_.append(f"{len(extra)} partials hold shards not in the list: " + ", ".join(extra[:10])
                              + (" ..." if len(extra) > 10 else ""))
            raise BadInputError("; ".join(parts_))
        rank = {e: i for i, e in enumerate(expected)}
    else:
        rank = {n: i for i, n in enumerate(sorted(names))}
    if expect_count is not None and len(names) != expect_count:
        raise BadInputError(f"expected {expect_count} shards, the partials hold {len(names)}")
    # blocks: each shard's rows, then put in shard order; statistics merge in the same (deterministic) order
    blocks = []
    for p in loaded:
        offset = 0
        for s in p.shards:
            blocks.append((rank[s.shard], s, p, offset))
            offset += s.count
    blocks.sort(key=lambda b: b[0])
    order = sorted(loaded, key=lambda p: min(rank[s.shard] for s in p.shards))
    first = order[0]
    stats = {}
    for space in first.stats:
        acc = order[0].stats[space]
        for p in order[1:]:
            acc = acc.merge(p.stats[space])
        stats[space] = acc
    features = {space: np.concatenate([p.features[space][off:off + s.count] for _, s, p, off in blocks])
                for space in first.features}
    return Partial([s for _, s, _, _ in blocks], stats, features, dict(first.provenance),
                   skipped=[x for p in order for x in p.skipped])


def merge(parts: Iterable[PartLike], *, expect: Sequence[str] | None = None, expect_count: int | None = None,
          description: str | None = None) -> Reference:
    """The :class:`~fidkit.Reference` of all the shards (see :func:`combine` for what is checked)."""
    return combine(parts, expect=expect, expect_count=expect_count).to_reference(description)


def _check_same_settings(parts: list[Partial]) -> None:
    first = parts[0]
    mine = first.identity()
    for p in parts[1:]:
        theirs = p.identity()
        if theirs == mine:
            continue
        diffs = []
        for space in sorted(set(mine) | set(theirs)):
            a, b = mine.get(space), theirs.get(space)
            if a is None or b is None:
                diffs.append(f"{space}: only in {first.name if b is None else p.name}")
                continue
            diffs += [f"{space} {k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b.get(k)]
        raise IncomparableStatsError(f"partials {first.name} and {p.name} were computed differently: "
                                     + "; ".join(diffs) + "; recompute one with the other's settings")


# -- naming a side made of partials --------------------------------------------------------------

def is_partial_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``.npz`` fidkit partial (reads its ``format`` entry only)."""
    p = Path(path)
    try:
        if not (p.name.lower().endswith(".npz") and p.is_file()):
            return False
    except OSError:  # a name the system refuses (too long, ...): not a partial; the source reader names the problem
        return False
    try:
        with np.load(p, allow_pickle=False) as z:
            return "format" in z.files and str(z["format"]) == FORMAT
    except Exception:  # noqa: BLE001  (not our file: let the usual reader explain)
        return False


def read_list(path: str | os.PathLike, *, relative: bool = True) -> list[str]:
    """A list file: one entry per line; blank lines and ``#`` comments ignored; with ``relative``, relative paths
    are relative to the list file's folder (else entries are taken as written: shard names)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise BadInputError(f"{path}: cannot read the list ({e.strerror or e})") from None
    base = Path(path).parent
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line if not relative or "://" in line or os.path.isabs(line) else str(base / line))
    return out


def expand_parts(spec: str) -> list[str] | None:
    """The partial files a side argument names, or ``None`` when it names something else: ``@LIST`` (a list file
    of partials), a glob pattern (quoted: ``'parts/part-*.npz'``) whose matches are all partials, or one partial
    file.  Patterns match in sorted order; a ``@LIST`` or a pattern matching nothing is an error."""
    if spec.startswith("@"):
        files = read_list(spec[1:])
        if not files:
            raise BadInputError(f"{spec}: the list names no partials")
        for f in files:
            if not os.path.isfile(f):
                raise BadInputError(f"{spec}: {f} is listed but does not exist (a shard whose partial is missing?)")
        return files
    if any(c in spec for c in "*?[") and not os.path.exists(spec):
        files = sorted(glob.glob(spec))
        if files and all(is_partial_file(f) for f in files):
            return files
        if not files and fnmatch.fnmatch(spec.lower(), "*.npz"):
            raise BadInputError(f"{spec}: no file matches the pattern")
        return None
    return [spec] if is_partial_file(spec) else None
