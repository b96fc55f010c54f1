"""The feature pass: source -> worker threads (decode once, then each extractor's resize) -> networks -> state.

Every image is decoded once, however many networks read it: each worker
prepares the decoded image for every extractor of the pass, and each batch goes
through every network before the next is taken."""

from __future__ import annotations

import collections
import dataclasses
import json
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from fidkit.engine import distributed as D
from fidkit.errors import BadInputError, FidkitError
from fidkit.data.images import NOTE_PREFIX, TAG_TEXT
from fidkit.data.sources import ImageSource
from fidkit.engine.progress import Checkpoint, Listing
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
    clip: str | None = None        # how frames are sampled from each video (video networks), for provenance

    @property
    def name(self) -> str:
        return self.extractor.spec.name

    def provenance(self, tap: str, source: str | None) -> Provenance:
        p = self.extractor.provenance(self.preprocessing.name, tap, source)
        return p if self.clip is None else dataclasses.replace(p, clip=self.clip)


def _prepared_batches(source: ImageSource, preps: list[Preprocessing], batch_size: int, workers: int,
                      diagnostics: Diagnostics, shard: tuple[int, int] = (0, 1), listing: Listing | None = None,
                      skip: Listing | None = None, skip_bad: bool = False
                      ) -> Iterator[tuple[list[torch.Tensor], list[int], list[str]]]:
    """Batches of prepared images; with ``skip`` (a resumed checkpoint's listing) the first ``skip.count`` items
    are passed over unread, after checking that they are the images the checkpoint counted.  With ``skip_bad`` an
    unreadable file is recorded in ``diagnostics`` and left out instead of stopping the pass.  The names are those
    of every item consumed, including skipped ones."""
    def load(item):
        index, (name, loader) = item
        try:
            img, tags = loader()
        except BadInputError as e:
            if not skip_bad:
                raise
            return index, name, None, str(e)
        return index, name, [p.prepare(img) for p in preps], tags

    def listed():
        seen = Listing()
        for i, (name, loader) in enumerate(source.items()):
            if listing is not None:
                listing.see(name)
            if skip is not None and i < skip.count:
                seen.see(name)
                if i == skip.count - 1 and seen.digest != skip.digest:
                    raise BadInputError(f"{source.description}: the first {skip.count} images are not those the "
                                        "checkpoint counted (the source changed); delete the checkpoint, or pass "
                                        "--restart, to start over")
                continue
            yield i, (name, loader)
        if skip is not None and seen.count < skip.count:
            raise BadInputError(f"{source.description}: {seen.count} images, fewer than the {skip.count} the "
                                "checkpoint counted (the source changed)")

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
                       [r[0] for r in good], [r[1] for r in results])
        finally:
            for futures in inflight:
                for f in futures:
                    f.cancel()


def _tensor_batches(source: ImageSource, branches: list[Branch], batch_size: int, diagnostics: Diagnostics,
                    shard: tuple[int, int]) -> Iterator[tuple[list[torch.Tensor], list[int]]]:
    """In-memory images: converted and resized batch-wise on their own device (no per-image round trip)."""
    rank, world = shard
    start = 0
    for u8, tags, where in source.batches():
        n = u8.shape[0]
        diagnostics.add(where, tags, count=n)
        mine = [i for i in range(start, start + n) if i % world == rank]
        start += n
        for lo in range(0, len(mine), batch_size):
            idx = mine[lo:lo + batch_size]
            rows = u8[[i - (start - n) for i in idx]] if world > 1 or len(idx) != n else u8
            yield [b.preprocessing.prepare_many(rows.to(b.extractor.device)) for b in branches], idx, [where] * len(idx)


@dataclasses.dataclass
class Extracted:
    """What one feature pass over a source produced."""

    stats: dict[str, FeatureStats]        # streamed statistics per feature space (extractor/tap)
    features: dict[str, np.ndarray]        # kept per-sample features per space (float32, maybe memory-mapped)
    warnings: list[str]
    n: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)   # "name: reason" of files left out


def extract(source: ImageSource, branches: list[Branch], *, stream=(), keep=(),
            batch_size: int = 32, workers: int | None = None, progress: bool = False,
            distributed: bool = False, group=None, checkpoint: Checkpoint | None = None,
            skip_bad: bool = False) -> Extracted:
    """One pass of ``source`` through every network in ``branches``.

    ``stream`` and ``keep`` are feature spaces (``extractor/tap``).  Spaces in
    ``stream`` are folded into streaming statistics (O(d^2) memory); spaces in
    ``keep`` are stored per sample (float32, spilled to disk when large).  A
    space may be in both.  Every tap of a network comes from the same forward,
    and each image is decoded once for all networks.  With
    ``distributed`` (and an initialised process group) each process takes every
    world-th image and the results are combined: every process returns the
    statistics and features of the whole source, in source order.  With a
    ``checkpoint`` (one process, files) the progress is saved now and then, and
    a pass that finds a matching checkpoint continues from it.  ``skip_bad``
    leaves unreadable files out (named in the warnings and the result) instead of
    stopping at the first.
    """
    if batch_size < 1:
        raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise BadInputError(f"workers must be at least 1, got {workers}")
    shard = D.rank_and_world(group) if distributed else (0, 1)
    state = new_side_state(branches, stream, keep, source.description)
    diagnostics = Diagnostics(source.description, "videos" if source.modality == "video" else "images")
    count = source.count if shard[1] == 1 or source.count is None else len(range(shard[0], source.count, shard[1]))
    failure, local_error = None, None
    listing = Listing()
    done, skip, identity = Listing(), None, None
    if checkpoint is not None:
        if shard[1] > 1 or source.batches is not None:
            raise BadInputError("checkpoints resume one process reading files; under torchrun or for in-memory "
                                "images run without one")
        identity = {"source": source.description, "count": source.count, "batch_size": batch_size,
                    "spaces": {s: state._provenance[s].with_source(None).to_json() for s in state.spaces},
                    "stream": list(state.stream), "keep": list(state.keep)}
        saved = checkpoint.load(identity)
        if saved is not None:
            state.load_state_dict(saved["state"], str(checkpoint.path))
            diagnostics.load_state(saved["diagnostics"])
            skip = Listing(saved["digest"], int(saved["count"]))
            done = Listing(saved["digest"], int(saved["count"]))
    with tqdm(total=count, unit="img", desc=_short(source.description), disable=not progress or shard[0] != 0,
              leave=False, dynamic_ncols=True) as bar:
        try:
            preps = [b.preprocessing for b in branches]
            batches_iter = (_tensor_batches(source, branches, batch_size, diagnostics, shard)
                            if source.batches is not None else
                            _prepared_batches(source, preps, batch_size, workers, diagnostics, shard, listing, skip,
                                              skip_bad))
            if skip is not None:
                bar.update(skip.count)
            for batches, indices, names in batches_iter:
                if indices:
                    state.add(run_branches(branches, batches, state), len(indices), indices)
                bar.update(len(names))
                for name in names:
                    done.see(name)
                if checkpoint is not None and checkpoint.due():
                    checkpoint.save(identity, state.state_dict(), done, diagnostics.state())
        except Exception as e:  # noqa: BLE001  (in a process group every process must learn of it)
            if not distributed:
                raise
            local_error = e
            failure = str(e) if isinstance(e, FidkitError) else f"process {shard[0]}: {type(e).__name__}: {e}"
    if distributed:  # one process's bad file stops every process with its message, instead of a hang
        # One collective, whatever happened locally (a collective skipped by one process would pair with the
        # next one of another): every process's error, if any, and the fingerprint of the names it listed.
        # Each process lists the source itself; a folder that changes meanwhile, or differs between machines,
        # would silently mix two lists, so all processes must have seen the same names.
        mine = {"error": failure[:800] if failure else None,  # at most 3.2 kB of UTF-8: fits all_strings' 4 kB
                "listing": listing.fingerprint if source.batches is None else None, "source": source.description[:300]}
        everyone = [json.loads(s) for s in D.all_strings(json.dumps(mine, ensure_ascii=False), group)]
        errors = [e["error"] for e in everyone if e["error"]]
        lists = [e["listing"] for e in everyone]
        if errors:
            failure = errors[0]
        elif len(set(lists)) > 1:
            failure = (f"{everyone[0]['source']}: the processes saw different lists of images ("
                       + ", ".join(f"rank {r}: {fp.split(':')[0]} images, fingerprint {fp.split(':')[1]}"
                                   for r, fp in enumerate(lists))
                       + "); every process must see the same files (is the folder being written to, or not "
                         "the same on every machine?)")
        if local_error is not None and not isinstance(local_error, FidkitError):
            raise local_error  # this process's own traceback; the others raise the message below
        if failure:
            crashed = failure.startswith("process ") and ": " in failure  # another process's unexpected error
            raise (FidkitError if crashed else BadInputError)(failure)
        diagnostics.combine(group)
    n, stats, features = state.combined(distributed, group)
    if n == 0:
        raise BadInputError(f"{source.description}: no {diagnostics.noun}")
    return Extracted(stats, features, list(source.notes) + diagnostics.messages(n), n, list(diagnostics.skipped))


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
