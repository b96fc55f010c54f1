"""Features into a result: a resolved :class:`~fidkit.request.Request` at work.

:class:`Session` loads the request's networks when first needed, turns any
source into a :class:`~fidkit.engine.state.Side` (a feature pass through the
engine, or given statistics and features), computes every task of the plan
from two sides with the metrics' declared functions, and builds the result with
its notes.  It sits above the engine (the feature pass and its state), the
metrics and the report.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from fidkit.data.sources import FeaturesSource, ImageSource, Source
from fidkit.engine.extract import Branch, extract
from fidkit.engine.plan import Plan, SideNeeds
from fidkit.engine.state import Side
from fidkit.errors import BadInputError, FidkitWarning
from fidkit.extractors import Extractor, get_spec
from fidkit.metrics.catalog import Inputs, result_key, result_label
from fidkit.protocols import Verdict, verdict
from fidkit.report.notes import emit, nonstandard_weights, sample_count_notes
from fidkit.report.result import EvalResult
from fidkit.request import Request
from fidkit.stats.provenance import Provenance

__all__ = ["Session", "emit"]


class Session:
    """A resolved :class:`~fidkit.request.Request` at work: its networks (loaded when first needed), each side's
    features, the metric values, the result."""

    def __init__(self, request: Request):
        self.request = request
        self.options = request.options
        self.plan: Plan = request.plan
        self.clip = request.clip
        self._device = request.run.device
        self._extractors: dict[str, Extractor] = {}
        self.labels: dict[str, str] = {}

    @property
    def mode(self) -> str | None:
        """The Inception preprocessing if Inception is in the plan, else the first extractor's."""
        p = self.plan.preprocessing
        return p.get("inception", next(iter(p.values()), None))

    def extractor(self, name: str) -> Extractor:
        if name not in self._extractors:
            self._extractors[name] = Extractor.get(name, self.request.weights.get(name), self._device)
        return self._extractors[name]

    def branches(self, needs: SideNeeds) -> list[Branch]:
        return [Branch(self.extractor(n), self.request.preprocessing[n], self.request.provenance)
                for n in needs.extractors]

    def _clip_of(self, name: str) -> str | None:
        return self.clip.describe() if self.clip is not None and get_spec(name).modality == "video" else None

    def provenance(self, name: str, tap: str, source: str | None = None) -> Provenance:
        """What statistics of network ``name``'s tap ``tap`` computed in this session record."""
        p = self.request.provenance(f"{name}/{tap}")
        return p if source is None else p.with_source(source)

    @property
    def device(self):
        return next(iter(self._extractors.values())).device if self._extractors else None

    def planned_provenance(self, source: Source | None, space: str) -> Provenance | None:
        return self.request.planned_provenance(source, space)

    def side(self, source: Source, label: str, needs: SideNeeds, run: dict, notes: list[str]) -> Side:
        stream, keep = needs.spaces("stream"), needs.spaces("keep")
        if not stream and not keep:  # this side feeds none of the requested metrics (IS reads generated images)
            return Side(source.description, {}, {})
        if isinstance(source, ImageSource):
            out = extract(source, self.branches(needs), stream=stream, keep=keep, **run)
            notes.extend(out.warnings)
            return Side(source.description, out.stats, out.features,
                        provenance={s: self.planned_provenance(source, s) for s in stream | keep},
                        skipped=out.skipped, tags=out.tags)
        if isinstance(source, FeaturesSource):
            spaces = stream | keep
            embedding = {s for s in spaces if get_spec(s.split("/")[0]).tap(s.split("/", 1)[1]).role == "embedding"}
            if spaces - embedding or len(embedding) != 1:
                raise BadInputError(f"{source.description}: precomputed features serve one embedding space (FD, KD, "
                                    f"precision/recall, density/coverage), not {', '.join(sorted(spaces))}")
            space = embedding.pop()
            return Side(source.description, {space: source.stats()} if space in stream else {},
                        {space: np.asarray(source.features, dtype=np.float32)} if space in keep else {},
                        provenance={space: source.provenance})
        ref = source.reference
        # statistics stored beside images (ADM's reference batches): the images give the per-sample features
        from_images = keep - set(ref.features) if source.images is not None else set()
        missing = sorted((stream - set(ref.stats)) | (keep - set(ref.features) - from_images))
        if missing:
            what = [f"per-sample {m} features (write them with 'fidkit stats SOURCE -o FILE --features')"
                    if m in keep and m not in ref.features else f"{m} statistics" for m in missing]
            raise BadInputError(f"{source.description} ({label}) lacks " + "; ".join(what))
        features = {s: ref.features[s] for s in keep - from_images}
        provenance = {s: ref.stats[s].provenance for s in stream | keep if s in ref.stats}
        skipped: list[str] = []
        if from_images:
            image_needs = SideNeeds()
            for space in sorted(from_images):
                image_needs.add("keep", *space.split("/", 1))
            out = extract(source.images, self.branches(image_needs), keep=from_images, **run)
            notes.extend(out.warnings)
            features.update(out.features)
            provenance.update({s: self.planned_provenance(source.images, s) for s in from_images})
            skipped = out.skipped
        return Side(source.description, {s: ref.stats[s] for s in stream}, features, provenance=provenance,
                    skipped=skipped)

    def values(self, real: Side, fake: Side, notes: list[str]) -> dict[str, Any]:
        """Checks that need both sides, then every task of the plan; warnings are appended to ``notes``."""
        for side in (real, fake):
            if side.n is not None and side.n < 2:
                raise BadInputError(f"{side.description}: {side.n} sample(s); the metrics need at least 2")
        for space in real.stats.keys() & fake.stats.keys():  # comparability: checked once, by the request
            if real.stats[space].dim != fake.stats[space].dim:
                raise BadInputError(f"feature dimensions differ: {real.stats[space].dim} ({real.description}) vs "
                                    f"{fake.stats[space].dim} ({fake.description})")
        notes.extend(sample_count_notes(real, fake, self.plan.modality))
        values: dict[str, Any] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FidkitWarning)
            for task in self.plan.tasks:
                space = task.space
                inputs = Inputs(real.stats.get(space), real.features.get(space), fake.stats.get(space),
                                fake.features.get(space), fake.n, self.options)
                for key, value in task.metric.compute(inputs).items():
                    name = result_key(key, task.metric, task.extractor.key, task.extractor.metric_names)
                    values[name] = value
                    self.labels[name] = result_label(name, task.metric, task.extractor.key, task.extractor.name,
                                                     task.extractor.metric_names)
        notes.extend(str(w.message) for w in caught if issubclass(w.category, FidkitWarning))
        return values

    def result(self, values: dict[str, Any], real: Side, fake: Side, uses_net: bool, notes: list[str],
               start: float) -> EvalResult:
        spaces: dict[str, Provenance] = {}
        for side in (real, fake):
            for space, p in [*((k, s.provenance) for k, s in side.stats.items()), *side.provenance.items()]:
                if p is not None and p.known:
                    spaces.setdefault(space, p)
        if uses_net:
            for t in self.plan.tasks:
                if t.space not in spaces:
                    name = t.extractor.name
                    spaces[t.space] = self.provenance(name, t.tap)
        notes.extend(nonstandard_weights(spaces))
        notes.extend(self.request.protocol_notes)
        primary = spaces.get("inception/pool3") or next(iter(spaces.values()), Provenance.unknown())
        return EvalResult(values=values, n_a=real.n, n_b=fake.n, a=real.description, b=fake.description,
                          mode=self.mode if uses_net or primary.mode else None, provenance=primary,
                          warnings=notes, seconds=time.perf_counter() - start, metrics=self.plan.metric_names,
                          options=self.options.to_dict([t.metric for t in self.plan.tasks]),
                          labels={k: self.labels[k] for k in values if k in self.labels},
                          device=str(self.device) if uses_net and self.device is not None else None,
                          spaces=spaces, skipped={s.description: s.skipped for s in (real, fake) if s.skipped},
                          jpeg_samples={s.description: s.tags["jpeg"] for s in (real, fake) if s.tags.get("jpeg")},
                          verdict=self.verdict(real, fake, spaces))

    def verdict(self, real: Side, fake: Side, spaces: dict[str, Provenance]) -> Verdict:
        """The comparability verdict (:mod:`fidkit.protocols`): against the request's protocol, else the card of
        the reference if it is a known registry entry.  The reference goes by its statistics' recorded source
        (a registry name for published statistics) and its description."""
        names = [p.source for p in [*(s.provenance for s in real.stats.values()), *real.provenance.values()]
                 if p is not None]
        options = self.options.to_dict([t.metric for t in self.plan.tasks])
        return verdict(self.request.protocol, n_generated=fake.n, n_reference=real.n, spaces=spaces,
                       tasks=[(t.metric.name, t.extractor.name) for t in self.plan.tasks], options=options,
                       normaliser="n" if options.get("fd_ddof") == 0 else "n-1",
                       reference=[*dict.fromkeys(names), real.description], jpeg_samples=fake.tags.get("jpeg", 0))
