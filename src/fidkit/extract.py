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

from .errors import BadInputError
from .features import InceptionExtractor
from .features.inception import TAPS
from .images import TAG_TEXT
from .preprocess import Mode
from .sources import ImageSource
from .stats import FeatureStats
from .store import FeatureStore


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class Diagnostics:
    """Counts conversion tags over a source and turns them into one warning each."""

    def __init__(self, description: str):
        self.description = description
        self.counts: collections.Counter = collections.Counter()
        self.first: dict[str, str] = {}

    def add(self, name: str, tags) -> None:
        for tag in tags:
            self.counts[tag] += 1
            self.first.setdefault(tag, name)

    def messages(self, total: int) -> list[str]:
        return [f"{self.counts[t]} of {total} images in {self.description} {TAG_TEXT[t]} (first: {self.first[t]})"
                for t in sorted(self.counts)]


def _prepared_batches(source: ImageSource, mode: Mode, batch_size: int, workers: int,
                      diagnostics: Diagnostics) -> Iterator[torch.Tensor]:
    def load(item):
        name, loader = item
        img, tags = loader()
        return name, mode.prepare(img), tags

    items = iter(source.items())
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
                for name, _, tags in results:
                    diagnostics.add(name, tags)
                yield torch.stack([r[1] for r in results])
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


def extract(source: ImageSource, extractor: InceptionExtractor, mode: Mode, *, stream=("pool3",), keep=(),
            batch_size: int = 32, workers: int | None = None, progress: bool = False) -> Extracted:
    """One pass of ``source`` through the network.

    Taps in ``stream`` are folded into streaming statistics (O(d^2) memory);
    taps in ``keep`` are stored per sample (float32, spilled to disk when large).
    A tap may be in both.  Every tap comes from the same forward.
    """
    if batch_size < 1:
        raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise BadInputError(f"workers must be at least 1, got {workers}")
    taps = tuple(dict.fromkeys((*stream, *keep)))
    stats = {t: FeatureStats.empty(TAPS[t], extractor.provenance(mode.name, t, source.description)) for t in stream}
    stores = {t: FeatureStore(TAPS[t]) for t in keep}
    diagnostics = Diagnostics(source.description)
    n = 0
    with tqdm(total=source.count, unit="img", desc=_short(source.description), disable=not progress,
              leave=False, dynamic_ncols=True) as bar:
        for batch in _prepared_batches(source, mode, batch_size, workers, diagnostics):
            feats = extractor(batch, taps)
            for t in stream:
                stats[t].update(feats[t])
            for t in keep:
                stores[t].append(feats[t])
            n += batch.shape[0]
            bar.update(batch.shape[0])
    if n == 0:
        raise BadInputError(f"{source.description}: no images")
    return Extracted(stats, {t: s.array() for t, s in stores.items()}, diagnostics.messages(n))


def extract_stats(source: ImageSource, extractor: InceptionExtractor, mode: Mode, *,
                  batch_size: int = 32, workers: int | None = None, progress: bool = False,
                  taps=("pool3",)) -> tuple[dict[str, FeatureStats], list[str]]:
    """Streamed statistics per tap, and warnings (the FID path)."""
    out = extract(source, extractor, mode, stream=taps, batch_size=batch_size, workers=workers, progress=progress)
    return out.stats, out.warnings


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
