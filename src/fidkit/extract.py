"""The feature pass: source -> worker threads (decode, convert, resize) -> network -> statistics."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed as D
from .errors import BadInputError, FidkitError
from .features import InceptionExtractor
from .images import TAG_TEXT
from .preprocess import Mode
from .sources import ImageSource
from .state import SideState
from .stats import FeatureStats


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class Diagnostics:
    """Counts conversion tags over a source and turns them into one warning each."""

    def __init__(self, description: str):
        self.description = description
        self.counts: collections.Counter = collections.Counter()
        self.first: dict[str, str] = {}
        self.batches = 0

    def add(self, name: str, tags, count: int = 1) -> None:
        for tag in tags:
            self.counts[tag] += count
            self.first.setdefault(tag, name)

    def state(self) -> dict:
        return {"counts": dict(self.counts), "first": dict(self.first), "batches": self.batches}

    def load_state(self, state: dict) -> None:
        self.counts = collections.Counter(state.get("counts", {}))
        self.first = dict(state.get("first", {}))
        self.batches = int(state.get("batches", 0))

    def combine(self, group=None) -> None:
        """Counts over every process (collective); the first example stays this process's, if it has one."""
        if not D.is_distributed(group):
            return
        tags = sorted(TAG_TEXT)
        counts = D.sum_int64([self.counts[t] for t in tags], group)
        for t, c in zip(tags, counts):
            if c:
                self.counts[t] = c
                self.first.setdefault(t, "in another process's share")

    def messages(self, total: int) -> list[str]:
        return [f"{self.counts[t]} of {total} images in {self.description} {TAG_TEXT[t]} (first: {self.first[t]})"
                for t in sorted(self.counts)]


def _prepared_batches(source: ImageSource, mode: Mode, batch_size: int, workers: int,
                      diagnostics: Diagnostics, shard: tuple[int, int] = (0, 1)
                      ) -> Iterator[tuple[torch.Tensor, list[int]]]:
    def load(item):
        index, (name, loader) = item
        img, tags = loader()
        return index, name, mode.prepare(img), tags

    rank, world = shard
    items = ((i, it) for i, it in enumerate(source.items()) if i % world == rank)
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
                for _, name, _, tags in results:
                    diagnostics.add(name, tags)
                yield torch.stack([r[2] for r in results]), [r[0] for r in results]
        finally:
            for futures in inflight:
                for f in futures:
                    f.cancel()


@dataclasses.dataclass
class Extracted:
    """What one feature pass over a source produced."""

    stats: dict[str, FeatureStats]        # streamed statistics per tap
    features: dict[str, np.ndarray]        # kept per-sample features per tap (float32, maybe memory-mapped)
    warnings: list[str]
    n: int = 0


def extract(source: ImageSource, extractor: InceptionExtractor, mode: Mode, *, stream=("pool3",), keep=(),
            batch_size: int = 32, workers: int | None = None, progress: bool = False,
            distributed: bool = False, group=None) -> Extracted:
    """One pass of ``source`` through the network.

    Taps in ``stream`` are folded into streaming statistics (O(d^2) memory);
    taps in ``keep`` are stored per sample (float32, spilled to disk when large).
    A tap may be in both.  Every tap comes from the same forward.  With
    ``distributed`` (and an initialised process group) each process takes every
    world-th image and the results are combined: every process returns the
    statistics and features of the whole source, in source order.
    """
    if batch_size < 1:
        raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise BadInputError(f"workers must be at least 1, got {workers}")
    shard = D.rank_and_world(group) if distributed else (0, 1)
    state = SideState(stream, keep, {t: extractor.provenance(mode.name, t, source.description)
                                     for t in (*stream, *keep)})
    diagnostics = Diagnostics(source.description)
    count = source.count if shard[1] == 1 or source.count is None else len(range(shard[0], source.count, shard[1]))
    failure = None
    with tqdm(total=count, unit="img", desc=_short(source.description), disable=not progress or shard[0] != 0,
              leave=False, dynamic_ncols=True) as bar:
        try:
            for batch, indices in _prepared_batches(source, mode, batch_size, workers, diagnostics, shard):
                state.add(extractor(batch, state.taps), len(indices), indices)
                bar.update(batch.shape[0])
        except FidkitError as e:
            if not distributed:
                raise
            failure = str(e)
    if distributed:  # one process's bad file stops every process with its message, instead of a hang
        failure = D.broadcast_error(failure, group)
        if failure:
            raise BadInputError(failure)
        diagnostics.combine(group)
    n, stats, features = state.combined(distributed, group)
    if n == 0:
        raise BadInputError(f"{source.description}: no images")
    return Extracted(stats, features, diagnostics.messages(n), n)


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
