"""What an evaluation returns: the value, the sample counts, provenance and warnings."""

from __future__ import annotations

import dataclasses
from typing import Any

from .provenance import Provenance


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

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def to_dict(self) -> dict[str, Any]:
        from . import __version__
        p = self.provenance
        return {
            **self.values, "n_a": self.n_a, "n_b": self.n_b, "a": self.a, "b": self.b, "mode": self.mode,
            "metrics": list(self.metrics), "options": self.options, "extractor": p.extractor, "layer": p.layer,
            "weights_sha256": p.weights_sha256, "device": self.device, "seconds": round(self.seconds, 3),
            "warnings": list(self.warnings), "fidkit_version": __version__,
        }


class FIDResult(EvalResult):
    """What :func:`fidkit.fid` returns: an :class:`EvalResult` whose one metric is ``fid``."""

    @property
    def fid(self) -> float:
        return self.values["fid"]

    def __float__(self) -> float:
        return self.fid
