"""From a request (metrics, feature spaces, preprocessing) to what each side must extract.

The plan is derived from the declarations alone (:mod:`fidkit.metrics.catalog`,
:mod:`fidkit.extractors`): for each side, each extractor runs once per image
and yields every tap any requested metric reads, streamed or kept.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from fidkit.errors import BadInputError
from fidkit.extractors import ExtractorSpec, get_spec, specs
from fidkit.extractors.base import CENTER_CROP
from fidkit.metrics.catalog import ALIASES, METRICS, STREAM, MetricSpec

DEFAULT_METRICS = ("fid", "kid", "is", "sfid", "prdc")
ALL_METRICS = DEFAULT_METRICS + ("fid_inf", "is_inf", "noise_floor")


@dataclasses.dataclass(frozen=True)
class Task:
    """One metric in one feature space."""

    metric: MetricSpec
    extractor: ExtractorSpec

    @property
    def tap(self) -> str:
        return self.extractor.tap_for(self.metric.role).name

    @property
    def space(self) -> str:
        return self.extractor.space(self.tap)


@dataclasses.dataclass
class SideNeeds:
    """Per extractor: the taps streamed into statistics and the taps kept per sample."""

    stream: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    keep: dict[str, set[str]] = dataclasses.field(default_factory=dict)

    def add(self, how: str | None, extractor: str, tap: str) -> None:
        if how is not None:
            (self.stream if how == STREAM else self.keep).setdefault(extractor, set()).add(tap)
            other = self.keep if how == STREAM else self.stream
            other.setdefault(extractor, set())

    @property
    def extractors(self) -> list[str]:
        return sorted(set(self.stream) | set(self.keep))

    def spaces(self, how: str) -> set[str]:
        d = self.stream if how == STREAM else self.keep
        return {f"{e}/{t}" for e, taps in d.items() for t in taps}

    @property
    def empty(self) -> bool:
        return not self.extractors


@dataclasses.dataclass
class Plan:
    tasks: list[Task]
    real: SideNeeds
    fake: SideNeeds
    preprocessing: dict[str, str]          # extractor -> variant name

    @property
    def extractors(self) -> list[str]:
        return sorted(set(self.real.extractors) | set(self.fake.extractors))

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.metric.name for t in self.tasks))

    @property
    def modality(self) -> str:
        """What the sources must hold: ``image`` or ``video`` (one per plan, checked by :func:`make_plan`)."""
        return next((t.extractor.modality for t in self.tasks), "image")


def _space_keys() -> dict[str, ExtractorSpec]:
    return {s.key: s for s in specs() if s.key}


def _split_space(token: str) -> tuple[str, ExtractorSpec | None]:
    """``fd_dinov2`` -> (``fd``, the DINOv2 spec); ``fvd`` -> (``fd``, the I3D spec); ``fd`` -> (``fd``, None)."""
    for spec in specs():
        for generic, named in spec.metric_names.items():
            if token == named:
                return generic, spec
    for key, spec in sorted(_space_keys().items(), key=lambda kv: -len(kv[0])):
        if token.endswith("_" + key):
            base = token[: -len(key) - 1]
            if base in METRICS or base in ALIASES:
                return base, spec
    return token, None


def parse_features(features: str | Iterable[str] | None) -> list[ExtractorSpec] | None:
    if features is None:
        return None
    names = features.split(",") if isinstance(features, str) else list(features)
    out: list[ExtractorSpec] = []
    for n in names:
        if isinstance(n, ExtractorSpec) or str(n).strip():
            s = get_spec(n if isinstance(n, ExtractorSpec) else str(n).strip())
            if s not in out:
                out.append(s)
    if not out:
        raise BadInputError("no feature extractor requested")
    return out


def parse_preprocessing(mode: str | dict | None, extractors: list[ExtractorSpec]) -> dict[str, str]:
    """``mode`` is a variant name (applied to every extractor that has it, e.g. ``clean``), ``EXT=VARIANT``
    pairs separated by commas (``inception=clean,dinov2=edm2``), or a dict; others get their default."""
    chosen: dict[str, str] = {}
    if mode is None:
        pass
    elif isinstance(mode, dict):
        for k, v in mode.items():
            chosen[get_spec(k).name] = get_spec(k).preprocessing_named(v).name
    else:
        bare = []
        for part in str(mode).split(","):
            part = part.strip()
            if not part:
                continue
            if "=" in part:
                k, v = (s.strip() for s in part.split("=", 1))
                chosen[get_spec(k).name] = get_spec(k).preprocessing_named(v).name
            else:
                bare.append(part)
        for variant in bare:
            owners = [s for s in extractors if any(p.name == variant for p in s.preprocessing)]
            if not owners:
                known = sorted({f"{s.name}={p.name}" for s in extractors for p in s.preprocessing})
                raise BadInputError(f"unknown preprocessing {variant!r} for {', '.join(s.name for s in extractors)}; "
                                    f"choose from {', '.join(known)}")
            for s in owners:
                chosen.setdefault(s.name, variant)
    return {s.name: chosen.get(s.name, s.default_preprocessing) for s in extractors}


def make_plan(metrics: str | Iterable[str] | None = None, features: str | Iterable[str] | None = None,
              mode: str | dict | None = None, *, bootstrap: bool = False, crop: str | None = None) -> Plan:
    """Resolve the request.

    Generic metrics (``fd``/``fid``, ``kd``/``kid``, ``pr``, ``dc``, ``fd_inf``,
    ``noise_floor``) run in every requested feature space (default: Inception);
    ``fd_dinov2``-style names name their space; ``is``, ``sfid`` and ``is_inf``
    read the Inception network and ``cmmd`` CLIP ViT-L/14@336.  Metrics taken from
    the default set that the requested spaces cannot serve are left out.
    """
    explicit = metrics is not None
    names = list(DEFAULT_METRICS) if metrics is None else (
        metrics.split(",") if isinstance(metrics, str) else list(metrics))
    spaces = parse_features(features)
    generic_spaces = spaces if spaces is not None else [get_spec("inception")]
    tasks: list[Task] = []

    def add(metric: MetricSpec, spec: ExtractorSpec, from_default: bool) -> None:
        if metric.extractors is not None and spec.name not in metric.extractors:
            if from_default:
                return
            raise BadInputError(f"{metric.name} is computed in the {' or '.join(metric.extractors)} feature space only, "
                                f"not {spec.name}")
        if spec.tap_for(metric.role) is None:
            if from_default:
                return
            raise BadInputError(f"{metric.name} needs a {metric.role} tap, which {spec.name} does not have")
        t = Task(metric, spec)
        if t not in tasks:
            tasks.append(t)

    for raw in names:
        token = str(raw).strip().lower().replace("-", "_")
        if not token:
            continue
        expanded: list[str]
        if token == "all":
            expanded = [m for a in ALL_METRICS for m in ALIASES.get(a, (a,))]
            for m in expanded:
                for spec in generic_spaces:
                    add(METRICS[m], spec, from_default=True)
            continue
        base, spec = _split_space(token)
        expanded = list(ALIASES.get(base, (base,)))
        unknown = [m for m in expanded if m not in METRICS]
        if unknown:
            raise BadInputError(f"unknown metric {raw!r}; choose from {', '.join(_known_names())}")
        for m in expanded:
            metric = METRICS[m]
            if spec is not None:
                add(metric, spec, from_default=False)
            elif metric.extractors is not None:  # a metric of fixed spaces: is, sfid, is_inf, cmmd
                own = [s for s in generic_spaces if s.name in metric.extractors]
                if own:
                    for s in own:
                        add(metric, s, from_default=not explicit)
                elif explicit or spaces is None:
                    add(metric, get_spec(metric.extractors[0]), from_default=False)
            else:
                for s in generic_spaces:
                    add(metric, s, from_default=not explicit)
    if not tasks:
        raise BadInputError("no metric requested" if not names else
                            f"none of the metrics {', '.join(map(str, names))} applies to the feature spaces "
                            f"{', '.join(s.name for s in generic_spaces)}")
    modalities = {t.extractor.modality for t in tasks}
    if len(modalities) > 1:
        by = {m: sorted({t.extractor.name for t in tasks if t.extractor.modality == m}) for m in sorted(modalities)}
        raise BadInputError("one evaluation reads either images or videos: "
                            + "; ".join(f"{', '.join(n)} read {m}s" for m, n in by.items())
                            + ". Evaluate each kind in its own call (for FVD: metrics='fvd', or features='i3d' / "
                              "'videomae-v2').")
    real, fake = SideNeeds(), SideNeeds()
    for t in tasks:
        how_real, how_fake = t.metric.needs(bootstrap)
        for how in how_real:
            real.add(how, t.extractor.name, t.tap)
        for how in how_fake:
            fake.add(how, t.extractor.name, t.tap)
    used = [get_spec(n) for n in sorted({t.extractor.name for t in tasks})]
    return Plan(tasks, real, fake, with_crop(parse_preprocessing(mode, used), crop))


def with_crop(preprocessing: dict[str, str], crop: str | None) -> dict[str, str]:
    """``crop="center"``: every extractor's variant after a centre crop to a square."""
    if crop in (None, "none"):
        return preprocessing
    if crop != "center":
        raise BadInputError(f"crop={crop!r}: use 'center' or None")
    return {e: v if v.endswith(CENTER_CROP) else v + CENTER_CROP for e, v in preprocessing.items()}


def _known_names() -> list[str]:
    keys = [s.key for s in specs() if s.key]
    generic = [m.name for m in METRICS.values() if m.extractors is None]
    named = sorted({n for s in specs() for n in s.metric_names.values()})
    return (sorted(set(METRICS) | set(ALIASES)) + named + ["all"] +
            [f"{g}_{k}" for k in keys for g in generic if g in ("fd", "kd")])
