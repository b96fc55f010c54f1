"""The per-sample views of a result (``keep_examples=K``, ``--keep-examples K``): which samples to show, with
small thumbnails, chosen from per-sample features by :mod:`fidkit.metrics.examples`.

Memory stays bounded.  Features are kept per sample in one embedding space (as precision/recall keeps them,
spilled to disk when large); thumbnails are not: while the generated side is read, :class:`ThumbnailPool` keeps
the thumbnails of its first ``POOL`` samples (``max(K, 1024)`` by default, about 12 kB each).  When the pass is
over and the samples to show are chosen, the thumbnails of those outside the pool, and of the reference images
shown as neighbours, are read again from their sources by index (folders, archives, array files, in-memory
arrays: anything whose size is known).  A source that cannot be read twice (an iterable of batches, a
generator) shows only samples from the pool, and says so in ``examples["candidates"]``.

The dict (``EvalResult.examples``, key ``"examples"`` of ``to_dict()``) holds:

* ``space`` the feature space; ``grid``: thumbnails of the first K generated samples;
* ``realism``: ``{"most_realistic": [...], "least_realistic": [...]}``, each K ``{"index", "score", "thumb"}``;
* ``nearest``: the K generated samples closest to a reference sample, each with its 3 nearest references
  (``{"ref_index", "distance", "thumb"}``) and ``near_copy``; ``near_copy_threshold`` (a distance),
  ``near_copies`` (how many of all generated samples are flagged);
* ``directions``: the 4 eigenvectors of ``S_gen - S_real`` with the largest |eigenvalue|: ``eigenvalue``,
  ``explained`` (share of the sum of |eigenvalues|), and ``low``/``high`` thumbnails of the generated samples at
  each end of the projection onto it (``low_index``/``high_index``);
* ``notes``: why a section is missing or restricted.
"""

from __future__ import annotations

import base64
import io
import itertools
from typing import Iterable

import numpy as np
import torch
from PIL import Image

from fidkit.data.sources import ImageSource, Source, StatsSource
from fidkit.engine.plan import Plan
from fidkit.engine.state import Side
from fidkit.errors import BadInputError
from fidkit.extractors import get_spec
from fidkit.metrics import examples as views

#: Longest side of a thumbnail, in pixels.
THUMB_SIZE = 64
#: Thumbnails of the first this many generated samples are kept during the pass (at least K).
POOL = 1024
NEIGHBOURS = 3
DIRECTIONS = 4
#: Exemplars shown at each end of a direction: min(K, this).
EXEMPLARS = 8


def thumbnail(img: np.ndarray) -> str:
    """A ``data:`` URI of an ``H x W x 3`` uint8 image shrunk to fit ``THUMB_SIZE`` (PNG: exact pixels)."""
    im = Image.fromarray(np.ascontiguousarray(img))
    im.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class ThumbnailPool:
    """Thumbnails of the samples with index below ``size``, filled as a source is read (never more than
    ``size``, whatever the length of the stream)."""

    def __init__(self, size: int):
        self.size = size
        self.thumbs: dict[int, str] = {}

    def feed(self, u8_nchw: torch.Tensor, start: int) -> None:
        """A uint8 ``N x 3 x H x W`` batch whose first row is sample ``start``."""
        stop = min(self.size, start + u8_nchw.shape[0])
        for i in range(start, stop):
            self.thumbs[i] = thumbnail(u8_nchw[i - start].permute(1, 2, 0).cpu().numpy())

    def wrap(self, source: ImageSource) -> ImageSource:
        """``source`` reading as before, its first ``size`` samples also thumbnailed as they are decoded."""
        def items():
            for i, (name, loader) in enumerate(source.items()):
                yield name, (loader if i >= self.size else self._keeping(i, loader))

        def batches():
            start = 0
            for u8, tags, where in source.batches():
                self.feed(u8, start)
                start += u8.shape[0]
                yield u8, tags, where

        return ImageSource(source.description, source.count, items,
                           batches if source.batches is not None else None, source.modality, source.stamp,
                           source.notes)

    def _keeping(self, i: int, loader):
        def load():
            img, tags = loader()
            self.thumbs[i] = thumbnail(img)   # in a decoding thread; one dict entry per index
            return img, tags
        return load


def reread(source: ImageSource | None, indices: Iterable[int]) -> dict[int, str]:
    """Thumbnails of the samples at ``indices`` of ``source``, read again (only those are decoded); empty when
    the source cannot be read twice (its size unknown: an iterable of batches)."""
    wanted = set(int(i) for i in indices)
    if source is None or source.count is None or not wanted:
        return {}
    out = {}
    for i, (_, loader) in enumerate(itertools.islice(source.items(), max(wanted) + 1)):
        if i in wanted:
            out[i] = thumbnail(loader()[0])
    return out


def examples_space(plan: Plan) -> str | None:
    """The feature space of the views: Inception pool3 when Inception is in the plan, else the first network's
    embedding (None for videos)."""
    if plan.modality != "image":
        return None
    names = plan.extractors
    name = "inception" if "inception" in names else (names[0] if names else "inception")
    spec = get_spec(name)
    return spec.space(spec.tap_for("embedding").name)


def reference_images(source: Source) -> ImageSource | None:
    """The images of the reference side, when it has any (images, or statistics stored beside them)."""
    if isinstance(source, ImageSource):
        return source
    if isinstance(source, StatsSource):
        return source.images
    return None


class ExamplesRequest:
    """``keep_examples=K`` for one evaluation: what the pass must keep, then the views built from it."""

    def __init__(self, k: int, plan: Plan, real_source: Source | None, fake_source: Source | None):
        """``real_source`` None: real images are fed batch by batch (the Evaluator's ``update(real=True)``), their
        features kept, their thumbnails not; ``fake_source`` None: generated images are fed to :attr:`pool`."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise BadInputError(f"keep_examples must be a positive integer, got {k!r}")
        self.k = k
        self.space = examples_space(plan)
        self.notes: list[str] = []
        self.pool = ThumbnailPool(max(k, POOL))
        self.real_images = reference_images(real_source) if real_source is not None else None
        self.fake_images = fake_source if isinstance(fake_source, ImageSource) else None
        self.real_has_features = False
        if self.space is None:
            self.notes.append("per-sample views are made for images, not videos")
            return
        if fake_source is not None and not isinstance(fake_source, ImageSource):
            self.notes.append(f"the generated side ({fake_source.description}) is statistics or features, not "
                              "images: there are no samples to show")
            self.space = None
            return
        extractor, tap = self.space.split("/", 1)
        plan.fake.add("keep", extractor, tap)
        held = isinstance(real_source, StatsSource) and self.space in real_source.reference.features
        if real_source is None or isinstance(real_source, ImageSource) or held or self.real_images is not None:
            plan.real.add("keep", extractor, tap)
            self.real_has_features = True
        else:
            self.notes.append(f"the reference ({real_source.description}) holds neither images nor per-sample "
                              f"{self.space} features: realism scores and nearest references need them (save "
                              "the reference with 'fidkit stats SOURCE -o FILE --keep-features')")
        if self.real_images is None and self.real_has_features:
            self.notes.append("the reference holds features but no images: neighbours are shown without thumbnails")

    def fake_source(self, source: Source) -> Source:
        return self.pool.wrap(source) if isinstance(source, ImageSource) and self.space else source

    def build(self, real: Side, fake: Side, *, pr_k: int, seed: int) -> dict:
        out: dict = {"space": self.space, "k": self.k, "notes": list(self.notes)}
        if self.space is None or self.space not in fake.features:
            return out
        f = np.asarray(fake.features[self.space], dtype=np.float64)
        r = np.asarray(real.features[self.space], dtype=np.float64) if self.space in real.features else None
        n = len(f)
        readable = self.fake_images is not None and self.fake_images.count is not None and not fake.skipped
        candidates = np.arange(n) if readable else np.arange(min(n, self.pool.size))
        out["candidates"] = (f"all {n} generated samples" if readable else
                             f"the first {len(candidates)} generated samples (the source is not read twice)")
        if fake.skipped or real.skipped:
            self.notes.append("unreadable files were skipped: thumbnails are not shown (sample numbers and "
                              "file positions no longer agree)")
        k = self.k
        want_fake: set[int] = set(range(min(k, n)))
        want_ref: set[int] = set()
        realism = nearest = None
        if r is not None and len(r) <= pr_k:
            self.notes.append(f"the reference has {len(r)} samples; realism scores with k={pr_k} need at least "
                              f"{pr_k + 1}")
            r = None
        if r is not None:
            scores = views.realism_scores(r, f, k=pr_k)
            order = candidates[np.argsort(-scores[candidates], kind="stable")]
            realism = {"most_realistic": [int(i) for i in order[:k]],
                       "least_realistic": [int(i) for i in order[::-1][:k]], "scores": scores}
            nn = views.nearest_neighbours(f, r, n=NEIGHBOURS)
            threshold = views.near_copy_threshold(r, seed=seed)
            flagged = nn.distances[:, 0] < threshold
            closest = candidates[np.argsort(nn.distances[candidates, 0], kind="stable")][:k]
            nearest = (closest, nn, threshold, flagged)
            want_fake.update(realism["most_realistic"] + realism["least_realistic"] + [int(i) for i in closest])
            want_ref.update(int(j) for i in closest for j in nn.indices[i])
        directions = []
        cov_real = real.stats[self.space].cov if self.space in real.stats else (
            np.cov(real.features[self.space], rowvar=False) if self.space in real.features else None)
        if cov_real is not None:
            cov_fake = fake.stats[self.space].cov if self.space in fake.stats else np.cov(f, rowvar=False)
            centred = f[candidates] - f.mean(axis=0)
            m = min(k, EXEMPLARS)
            for d in views.covariance_directions(cov_fake, cov_real, n=DIRECTIONS):
                order = candidates[np.argsort(centred @ d.vector, kind="stable")]
                low, high = [int(i) for i in order[:m]], [int(i) for i in order[::-1][:m]]
                directions.append((d, low, high))
                want_fake.update(low + high)
        else:
            self.notes.append("no reference covariance in this space: covariance directions are not shown")
        thumbs = self._fake_thumbs(want_fake, readable, bool(fake.skipped))
        ref_thumbs = {} if real.skipped else reread(self.real_images, want_ref)
        out["grid"] = [thumbs.get(i) for i in range(min(k, n))]
        if realism is not None:
            s = realism["scores"]
            out["realism"] = {key: [{"index": i, "score": float(s[i]), "thumb": thumbs.get(i)}
                                    for i in realism[key]] for key in ("most_realistic", "least_realistic")}
            out["realism_k"], out["realism_percentile"] = pr_k, views.REALISM_PERCENTILE
            closest, nn, threshold, flagged = nearest
            out["nearest"] = [{"index": int(i), "thumb": thumbs.get(int(i)), "near_copy": bool(flagged[i]),
                               "neighbours": [{"ref_index": int(j), "distance": float(dist),
                                               "thumb": ref_thumbs.get(int(j))}
                                              for j, dist in zip(nn.indices[i], nn.distances[i])]}
                              for i in closest]
            out["near_copy_threshold"] = threshold
            out["near_copy_alpha"] = views.NEAR_COPY_ALPHA
            out["near_copies"] = int(flagged.sum())
        out["directions"] = [{"eigenvalue": d.eigenvalue, "explained": d.explained,
                              "low": [thumbs.get(i) for i in low], "high": [thumbs.get(i) for i in high],
                              "low_index": low, "high_index": high} for d, low, high in directions]
        out["notes"] = list(dict.fromkeys(self.notes))
        return out

    def _fake_thumbs(self, wanted: set[int], readable: bool, skipped: bool) -> dict[int, str]:
        if skipped:
            return {}
        have = {i: self.pool.thumbs[i] for i in wanted if i in self.pool.thumbs}
        if readable:
            have.update(reread(self.fake_images, wanted - set(have)))
        return have


def keep_examples_request(k: int | None, plan: Plan, sources) -> ExamplesRequest | None:
    """An :class:`ExamplesRequest` for ``keep_examples=k`` (None: no views)."""
    return None if k is None else ExamplesRequest(k, plan, sources[0], sources[1])

