"""The feature pass: source -> worker threads (decode once, then each extractor's resize) -> networks -> state.

Every image is decoded once, however many networks read it: each worker
prepares the decoded image for every extractor of the pass, and each batch goes
through every network before the next is taken."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from fidkit.engine import distributed as D
from fidkit.errors import BadInputError, FidkitError
from fidkit.data.images import NOTE_PREFIX, TAG_TEXT
from fidkit.data.sources import ImageSource
from fidkit.engine.progress import (RESTART, Checkpoint, Listing, decode_records, describe_stamp, input_changes,
                                    item_stamp, path_stamp)
from fidkit.engine.state import SideState
from fidkit.extractors import Extractor, Preprocessing
from fidkit.stats.moments import FeatureStats
from fidkit.stats.provenance import Provenance


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


#: How many notes about single items (an animated image's file) are reported one by one per source.
MAX_NOTES = 10


class Diagnostics:
    """Counts conversion tags over a source and turns them into one warning each; notes about single items
    (tags starting with :data:`~fidkit.data.images.NOTE_PREFIX`) become one warning per item, the first
    :data:`MAX_NOTES` of them."""

    def __init__(self, description: str, noun: str = "images"):
        self.description = description
        self.noun = noun                   # what the source holds: "images" or "videos"
        self.counts: collections.Counter = collections.Counter()
        self.first: dict[str, str] = {}
        self.batches = 0
        self.skipped: list[str] = []       # "name: reason" of every file left out (skip_bad)
        self.skipped_elsewhere = 0         # left out in other processes' shares
        self.notes: list[str] = []         # "name: note", the first MAX_NOTES
        self.n_notes = 0

    def add(self, name: str, tags, count: int = 1) -> None:
        for tag in tags:
            if tag.startswith(NOTE_PREFIX):
                self.n_notes += 1
                if len(self.notes) < MAX_NOTES:
                    self.notes.append(f"{name}: {tag[len(NOTE_PREFIX):]}")
                continue
            self.counts[tag] += count
            self.first.setdefault(tag, name)

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append(reason if reason.startswith(name) else f"{name}: {reason}")

    def state(self) -> dict:
        return {"counts": dict(self.counts), "first": dict(self.first), "batches": self.batches,
                "skipped": list(self.skipped), "notes": list(self.notes), "n_notes": self.n_notes}

    def load_state(self, state: dict) -> None:
        self.counts = collections.Counter(state.get("counts", {}))
        self.first = dict(state.get("first", {}))
        self.batches = int(state.get("batches", 0))
        self.skipped = list(state.get("skipped", []))
        self.notes = list(state.get("notes", []))
        self.n_notes = int(state.get("n_notes", len(self.notes)))

    def combine(self, group=None) -> None:
        """Counts over every process (collective); the first example stays this process's, if it has one."""
        if not D.is_distributed(group):
            return
        tags = sorted(TAG_TEXT)
        *counts, skipped = D.sum_int64([self.counts[t] for t in tags] + [len(self.skipped)], group)
        for t, c in zip(tags, counts):
            if c:
                self.counts[t] = c
                self.first.setdefault(t, "in another process's share")
        self.skipped_elsewhere = skipped - len(self.skipped)

    def messages(self, total: int) -> list[str]:
        out = [f"{self.counts[t]} of {total} {self.noun} in {self.description} {TAG_TEXT[t]} (first: {self.first[t]})"
               for t in sorted(self.counts)]
        out += self.notes
        if self.n_notes > len(self.notes):
            out.append(f"{self.n_notes - len(self.notes)} more notes like these about single {self.noun} of "
                       f"{self.description} are not shown")
        n_skipped = len(self.skipped) + self.skipped_elsewhere
        if n_skipped:
            shown = "; ".join(self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else "")
            out.append(f"{n_skipped} unreadable files in {self.description} were skipped (skip_bad) and are not in "
                       f"the {total} {self.noun} counted: {shown or 'in other processes'}")
        return out


@dataclasses.dataclass(frozen=True)
class Branch:
    """One network of a pass and the preprocessing its input gets."""

    extractor: Extractor
    preprocessing: Preprocessing
    #: the provenance of each feature space of this network, built once by the request (clip sampling included)
    planned: Callable[[str], Provenance]

    @property
    def name(self) -> str:
        return self.extractor.spec.name

    def provenance(self, tap: str, source: str | None) -> Provenance:
        p = self.planned(f"{self.name}/{tap}")
        return p if source is None else p.with_source(source)


def _prepared_batches(source: ImageSource, preps: list[Preprocessing], batch_size: int, workers: int,
                      diagnostics: Diagnostics, shard: tuple[int, int] = (0, 1), listing: Listing | None = None,
                      skip: Listing | None = None, skip_bad: bool = False, stamps: bool = False,
                      resumed_from: str = "",
                      ) -> Iterator[tuple[list[torch.Tensor], list[int], list[tuple[str, str]]]]:
    """Batches of prepared images; with ``skip`` (a resumed checkpoint's listing, with its records) the first
    ``skip.count`` items are passed over unread, after checking that they are the images the checkpoint counted,
    unchanged (``resumed_from`` names the checkpoint).
    With ``skip_bad`` an unreadable file is recorded in ``diagnostics`` and left out instead of stopping the pass.
    ``listing`` sees every item with its content stamp (cross-process check).  The records are (name, stamp) of
    every item consumed, including skipped ones, stamped (size and mtime) when ``stamps``."""
    def load(item):
        index, (name, loader, stamp) = item
        try:
            img, tags = loader()
        except BadInputError as e:
            if not skip_bad:
                raise
            return index, name, None, str(e), stamp
        return index, name, [p.prepare(img) for p in preps], tags, stamp

    def refuse(seen: Listing) -> None:
        changes = input_changes(skip.records or [], seen.records or [])
        if seen.count < skip.count:
            changes = f"{seen.count} images, fewer than the {skip.count} it counted; " + changes
        what = changes or "the images differ"
        raise BadInputError(f"{source.description}: changed since the checkpoint {resumed_from} was written, which "
                            f"counted its first {skip.count} images ({what}); resuming would mix the old images "
                            f"with the new; {RESTART}")

    def listed():
        seen = Listing(keep=True)
        for i, (name, loader) in enumerate(source.items()):
            if listing is not None:
                listing.see(name, item_stamp(source, name, content=True))
            stamp = item_stamp(source, name) if stamps else ""
            if skip is not None and i < skip.count:
                seen.see(name, stamp)
                if i == skip.count - 1 and seen.digest != skip.digest:
                    refuse(seen)
                continue
            yield i, (name, loader, stamp)
        if skip is not None and seen.count < skip.count:
            refuse(seen)

    rank, world = shard
    items = ((i, it) for i, it in listed() if i % world == rank)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fidkit-decode") as pool:
        inflight: collections.deque = collections.deque()

        def submit_next() -> None:
            chunk = list(itertools.islice(items, batch_size))
            if chunk:
                inflight.append([pool.submit(load, it) for it in chunk])

        for _ in range(2):  # two batches prepared ahead: bounded memory, network never waits
            submit_next()
        try:
            while inflight:
                futures = inflight.popleft()
                submit_next()
                results = [f.result() for f in futures]
                good = []
                for r in results:
                    if r[2] is None:
                        diagnostics.skip(r[1], r[3])
                    else:
                        diagnostics.add(r[1], r[3])
                        good.append(r)
                yield ([torch.stack([r[2][i] for r in good]) for i in range(len(preps))] if good else [],
                       [r[0] for r in good], [(r[1], r[4]) for r in results])
        finally:
            for futures in inflight:
                for f in futures:
                    f.cancel()


def _tensor_batches(source: ImageSource, branches: list[Branch], batch_size: int, diagnostics: Diagnostics,
                    shard: tuple[int, int], first: list | None = None
                    ) -> Iterator[tuple[list[torch.Tensor], list[int], list[tuple[str, str]]]]:
    """In-memory images: converted and resized batch-wise on their own device (no per-image round trip).
    ``first`` receives a short hash of the first image (to notice every process passing the same images)."""
    rank, world = shard
    start = 0
    for u8, tags, where in source.batches():
        n = u8.shape[0]
        if first is not None and not first and n:
            first.append(hashlib.blake2b(u8[0].cpu().numpy().tobytes(), digest_size=8).hexdigest())
        diagnostics.add(where, tags, count=n)
        mine = [i for i in range(start, start + n) if i % world == rank]
        start += n
        for lo in range(0, len(mine), batch_size):
            idx = mine[lo:lo + batch_size]
            rows = u8[[i - (start - n) for i in idx]] if world > 1 or len(idx) != n else u8
            yield ([b.preprocessing.prepare_many(rows.to(b.extractor.device)) for b in branches], idx,
                   [(where, "")] * len(idx))


@dataclasses.dataclass
class Extracted:
    """What one feature pass over a source produced."""

    stats: dict[str, FeatureStats]        # streamed statistics per feature space (extractor/tap)
    features: dict[str, np.ndarray]        # kept per-sample features per space (float32, maybe memory-mapped)
    warnings: list[str]
    n: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)   # "name: reason" of files left out
    #: how many samples carried each conversion tag (``jpeg``: read from a JPEG file), over every process
    tags: dict[str, int] = dataclasses.field(default_factory=dict)


def extract(source: ImageSource, branches: list[Branch], *, stream=(), keep=(),
            batch_size: int = 32, workers: int | None = None, progress: bool = False,
            distributed: bool = False, group=None, checkpoint: Checkpoint | None = None,
            skip_bad: bool = False) -> Extracted:
    """One pass of ``source`` through every network in ``branches``.

    ``stream`` and ``keep`` are feature spaces (``extractor/tap``).  Spaces in
    ``stream`` are folded into streaming statistics (O(d^2) memory); spaces in
    ``keep`` are stored per sample (float32, spilled to disk when large).  A
    space may be in both.  Every tap of a network comes from the same forward,
    and each image is decoded once for all networks.  With ``distributed``
    (and an initialised process group) the results of every process are
    combined, and every process returns the statistics and features of the
    whole: a source that is the same on every process (a path: folder,
    archive, ``.npz``/``.npy``) is sharded, each process taking every world-th
    image, in source order; an in-memory source (tensor, array, iterable of
    batches) is that process's own share, never re-sharded, combined in rank
    order.  With a ``checkpoint`` (one process, files) the progress is saved
    now and then, and a pass that finds a matching checkpoint continues from it
    once it has checked that the images it counted are unchanged (names, sizes,
    modification times).  ``skip_bad`` leaves unreadable files out (named in
    the warnings and the result) instead of stopping at the first.
    """
    if batch_size < 1:
        raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise BadInputError(f"workers must be at least 1, got {workers}")
    in_memory = source.batches is not None
    combine = distributed and D.is_distributed(group)
    # The source kind decides: a path names the same images on every process and is sharded; in-memory images
    # are what this process holds (its generator's output, its loader's share) and are all of its share.
    shard = D.rank_and_world(group) if combine and not in_memory else (0, 1)
    state = new_side_state(branches, stream, keep, source.description)
    diagnostics = Diagnostics(source.description, "videos" if source.modality == "video" else "images")
    count = source.count if shard[1] == 1 or source.count is None else len(range(shard[0], source.count, shard[1]))
    failure, local_error = None, None
    listing = Listing(keep=True) if combine and not in_memory else None
    first_image: list[str] = []
    done, skip, identity, input_stamp = Listing(), None, None, None
    if checkpoint is not None:
        if combine or in_memory:
            raise BadInputError("checkpoints resume one process reading files; under torchrun or for in-memory "
                                "images run without one")
        identity = {"source": source.description, "batch_size": batch_size,
                    "spaces": {s: state._provenance[s].with_source(None).to_json() for s in state.spaces},
                    "stream": list(state.stream), "keep": list(state.keep)}
        # An archive or array file is stamped as a whole too (size and modification time).
        input_stamp = path_stamp(source.description) if os.path.isfile(source.description) else None
        done = Listing(keep=True)
        saved = checkpoint.load(identity)
        if saved is not None:
            skip = _resume(checkpoint, saved, state, diagnostics, source, input_stamp)
            done = Listing(skip.digest, skip.count, keep=True)
            done.records = list(skip.records)
    with tqdm(total=count, unit="img", desc=_short(source.description),
              disable=not progress or (combine and D.rank_and_world(group)[0] != 0),
              leave=False, dynamic_ncols=True) as bar:
        try:
            preps = [b.preprocessing for b in branches]
            batches_iter = (_tensor_batches(source, branches, batch_size, diagnostics, shard,
                                            first_image if combine else None)
                            if in_memory else
                            _prepared_batches(source, preps, batch_size, workers, diagnostics, shard, listing, skip,
                                              skip_bad, stamps=checkpoint is not None,
                                              resumed_from=str(checkpoint.path) if checkpoint else ""))
            if skip is not None:
                bar.update(skip.count)
            for batches, indices, records in batches_iter:
                if indices:
                    # Rows of an own share carry no global index: they are combined in rank order.
                    state.add(run_branches(branches, batches, state), len(indices),
                              None if combine and in_memory else indices)
                bar.update(len(records))
                if checkpoint is not None:
                    for name, stamp in records:
                        done.see(name, stamp)
                    if checkpoint.due():
                        checkpoint.save(identity, state.state_dict(), done, diagnostics.state(),
                                        root=source.description, input_stamp=input_stamp)
        except Exception as e:  # noqa: BLE001  (in a process group every process must learn of it)
            if not combine:
                raise
            local_error = e
            rank = D.rank_and_world(group)[0]
            failure = str(e) if isinstance(e, FidkitError) else f"process {rank}: {type(e).__name__}: {e}"
    notes: list[str] = []
    if combine:  # one process's bad file stops every process with its message, instead of a hang
        # One collective, whatever happened locally (a collective skipped by one process would pair with the
        # next one of another): every process's error, if any, and the fingerprint of the files it listed.
        # Each process lists the source itself; a folder that changes meanwhile, or differs between machines
        # (node-local copies), would silently mix two lists, so all processes must have seen the same names with
        # the same content stamps (size and a hash of each file's first and last 64 KiB).
        mine = {"error": failure[:800] if failure else None,  # at most 3.2 kB of UTF-8: fits all_strings' 4 kB
                "listing": listing.fingerprint if listing is not None else None,
                "memory": f"{state.n}:{first_image[0]}" if first_image else None,
                "source": source.description[:300]}
        everyone = [json.loads(s) for s in D.all_strings(json.dumps(mine, ensure_ascii=False), group)]
        errors = [e["error"] for e in everyone if e["error"]]
        lists = [e["listing"] for e in everyone]
        if errors:
            failure = errors[0]
        elif len(set(lists)) > 1:
            failure = (f"{everyone[0]['source']}: the processes saw different lists of images ("
                       + ", ".join(f"rank {r}: {fp.split(':')[0]} images, fingerprint {fp.split(':')[1]}"
                                   for r, fp in enumerate(lists))
                       + "); " + _first_difference(listing, [int(fp.split(":")[0]) for fp in lists], group)
                       + "; every process must see the same files, with the same content (is the folder being "
                         "written to, or not the same on every machine?)")
        if local_error is not None and not isinstance(local_error, FidkitError):
            raise local_error  # this process's own traceback; the others raise the message below
        if failure:
            crashed = failure.startswith("process ") and ": " in failure  # another process's unexpected error
            raise (FidkitError if crashed else BadInputError)(failure)
        shares = [e["memory"] for e in everyone]
        if in_memory and len(shares) > 1 and None not in shares and len(set(shares)) == 1:
            notes.append(f"every process passed the same {state.n} {diagnostics.noun} ({source.description}): "
                         f"an in-memory source is each process's own share, so they count {len(shares)} times "
                         f"(N = {len(shares) * state.n}); give each process its own {diagnostics.noun} (seed its "
                         "generator by rank), or pass a path (folder, archive, .npz), which is sharded")
        diagnostics.combine(group)
    n, stats, features = state.combined(combine, group)
    if n == 0:
        raise BadInputError(f"{source.description}: no {diagnostics.noun}")
    return Extracted(stats, features, list(source.notes) + diagnostics.messages(n) + notes, n,
                     list(diagnostics.skipped), dict(diagnostics.counts))


def _resume(checkpoint: Checkpoint, saved: dict, state: SideState, diagnostics: Diagnostics, source: ImageSource,
            input_stamp: str | None) -> Listing:
    """Load a checkpoint's state after checking that it agrees with itself and that the source file itself (an
    archive or array file) is unchanged; the listing of what it counted."""
    where = str(checkpoint.path)
    try:
        records = decode_records(saved["records"], source.description)
        count = int(saved["count"])
        state.load_state_dict(saved["state"], where)
        diagnostics.load_state(saved["diagnostics"])
    except BadInputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise BadInputError(f"{where}: a damaged fidkit checkpoint ({type(e).__name__}: {e}); {RESTART}") from None
    idx = state.indices()
    problems = []
    if len(records) != count:
        problems.append(f"{len(records)} images listed")
    if state.n + len(diagnostics.skipped) != count:
        problems.append(f"{state.n} counted plus {len(diagnostics.skipped)} skipped")
    if len(idx) and (idx.min() < 0 or idx.max() >= count or (np.diff(idx) <= 0).any()):
        problems.append("sample indices out of order or out of range")
    if problems:
        raise BadInputError(f"{where}: an inconsistent checkpoint (it records {count} images read, but "
                            f"{', '.join(problems)}); it was damaged or edited; {RESTART}")
    skip = Listing(str(saved["digest"]), count, keep=True)
    skip.records = records
    before = str(saved.get("input", "")) or None
    if before != input_stamp:
        changed = (f"{source.description} itself changed ({describe_stamp(before or '')} -> "
                   f"{describe_stamp(input_stamp or '')})")
        members = [f"{n} ({describe_stamp(s)} -> {describe_stamp(source.stamp(n) or 'gone')})" for n, s in records
                   if source.stamp is not None and source.stamp(n) != s]
        if members:
            changed += f", {len(members)} of the members counted changed: " + "; ".join(members[:5]) + \
                (" ..." if len(members) > 5 else "")
        raise BadInputError(f"{source.description}: changed since the checkpoint {where} was written, which counted "
                            f"its first {count} images ({changed}); resuming would mix the old images with the new; "
                            f"{RESTART}")
    return skip


def _first_difference(listing: Listing, counts: list[int], group) -> str:
    """Where the processes' listings first differ, each process's item there named (collective)."""
    records = listing.records or []
    hashes = np.array([int.from_bytes(hashlib.blake2b(f"{n}\0{s}".encode("utf-8", "surrogateescape"),
                                                      digest_size=8).digest(), "little", signed=True)
                       for n, s in records], dtype=np.int64).reshape(-1, 1)
    everything = D.gather_rows(hashes, group)[:, 0]
    bounds = np.cumsum([0] + counts)
    per_rank = [everything[bounds[r]:bounds[r + 1]] for r in range(len(counts))]
    first = min(len(h) for h in per_rank)
    for h in per_rank[1:]:
        m = min(len(h), len(per_rank[0]))
        diff = np.flatnonzero(h[:m] != per_rank[0][:m])
        first = min(first, int(diff[0]) if len(diff) else m)
    mine = records[first] if first < len(records) else None
    theirs = [json.loads(t) for t in D.all_strings(json.dumps(mine, ensure_ascii=False), group)]
    return f"item {first} differs: " + ", ".join(
        f"rank {r}: " + ("no such item" if t is None else f"{t[0]} ({describe_stamp(t[1])})")
        for r, t in enumerate(theirs))


def new_side_state(branches: list[Branch], stream, keep, description: str) -> SideState:
    """An empty :class:`SideState` for these networks, each space with its provenance and dimension."""
    by_name = {b.name: b for b in branches}
    prov, dims = {}, {}
    for space in (*stream, *keep):
        name, tap = space.split("/", 1)
        b = by_name[name]
        prov[space] = b.provenance(tap, description)
        dims[space] = b.extractor.spec.tap(tap).dim
    return SideState(stream, keep, prov, dims)


def run_branches(branches: list[Branch], batches: list[torch.Tensor], state: SideState) -> dict[str, torch.Tensor]:
    """Each network on its prepared batch; features keyed by feature space."""
    out: dict[str, torch.Tensor] = {}
    for b, x in zip(branches, batches):
        taps = state.taps_of(b.name)
        if taps:
            for tap, f in b.extractor(x, taps).items():
                out[f"{b.name}/{tap}"] = f
    return out


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
