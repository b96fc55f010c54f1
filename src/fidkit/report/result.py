"""What an evaluation returns: the value, the sample counts, provenance and warnings."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np

from fidkit.protocols import Verdict
from fidkit.stats.provenance import Provenance


@dataclasses.dataclass
class EvalResult:
    """Every requested metric with the sample counts, settings, provenance and warnings."""

    values: dict[str, Any]
    n_a: int | None
    n_b: int | None
    a: str
    b: str
    mode: str | None
    provenance: Provenance
    warnings: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    metrics: tuple[str, ...] = ()
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    device: str | None = None
    #: provenance of every feature space the metrics read (``inception/pool3``, ``dinov2-vitl14/cls``, ...)
    spaces: dict[str, Provenance] = dataclasses.field(default_factory=dict)
    #: per source, the files left out because they could not be read (``skip_bad``): "name: reason"
    skipped: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    #: printed name of each main value (``fid``: ``FID``, ``fd_dinov2``: ``FD (dinov2-vitl14)``), from the
    #: metrics' declarations
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    #: per source, how many of its samples were read from JPEG files (lossy: the verdict names it)
    jpeg_samples: dict[str, int] = dataclasses.field(default_factory=dict)
    #: whether the values are comparable with a published protocol's (:class:`fidkit.protocols.Verdict`)
    verdict: Verdict | None = None
    #: per-sample views (``keep_examples=K``: :mod:`fidkit.report.examples`), None when not asked for
    examples: dict[str, Any] | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def to_dict(self) -> dict[str, Any]:
        from fidkit._version import __version__
        p = self.provenance
        return {
            **self.values, "n_a": self.n_a, "n_b": self.n_b, "a": self.a, "b": self.b, "mode": self.mode,
            "metrics": list(self.metrics), "options": self.options, "extractor": p.extractor, "layer": p.layer,
            "weights_sha256": p.weights_sha256, "device": self.device, "seconds": round(self.seconds, 3),
            "warnings": list(self.warnings), "fidkit_version": __version__,
            "skipped": {source: list(files) for source, files in self.skipped.items()},
            "jpeg_samples": dict(self.jpeg_samples),
            "verdict": self.verdict.to_dict() if self.verdict is not None else None,
            "feature_spaces": {space: {"extractor": q.extractor, "weights_sha256": q.weights_sha256,
                                       "layer": q.layer, "preprocessing": q.mode,
                                       "published_weights": _published(space, q.weights_sha256),
                                       **({"clip": q.clip} if q.clip is not None else {})}
                               for space, q in self.spaces.items()},
            **({"examples": self.examples} if self.examples is not None else {}),
        }


    def flat(self, prefix: str = "") -> dict[str, float]:
        """Every scalar value as a float, keyed ``prefix + name``: what any metrics logger takes (TensorBoard,
        W&B, Lightning's ``log_dict``, MLflow).

        Scalar values keep their names (``fid``, ``kid_std``, ``precision``, ...); an interval ``K_ci`` becomes
        ``K_lo`` and ``K_hi``; the sample counts are ``n_a`` and ``n_b``.  Strings, lists (e.g. the sample sizes
        of ``fid_inf``), missing values and booleans are left out: a logger plots numbers over steps.
        """
        out: dict[str, float] = {}
        for name, value in self.values.items():
            if name.endswith("_ci") and isinstance(value, (list, tuple)) and len(value) == 2 \
                    and all(_is_number(v) for v in value):
                out[f"{prefix}{name[:-3]}_lo"], out[f"{prefix}{name[:-3]}_hi"] = float(value[0]), float(value[1])
            elif _is_number(value):
                out[prefix + name] = float(value)
        for name, count in (("n_a", self.n_a), ("n_b", self.n_b)):
            if count is not None:
                out[prefix + name] = float(count)
        return out


def _is_number(value: Any) -> bool:
    """A real number a logger can plot: Python or NumPy ints and floats (0-d arrays too); not a bool."""
    if isinstance(value, np.ndarray) and value.shape == ():
        return value.dtype.kind in "iuf"
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


class FIDResult(EvalResult):
    """What :func:`fidkit.fid` returns: an :class:`EvalResult` whose one metric is ``fid``."""

    @property
    def fid(self) -> float:
        return self.values["fid"]

    def __float__(self) -> float:
        return self.fid


def _published(space: str, sha256: str | None) -> bool | None:
    """Whether ``sha256`` is the published weight file of the space's extractor (None: cannot tell)."""
    from fidkit.errors import BadInputError
    from fidkit.extractors import get_spec
    try:
        published = getattr(get_spec(space.split("/", 1)[0]).weights, "sha256", None)
    except BadInputError:
        return None
    return None if not (published and sha256) else sha256 == published
