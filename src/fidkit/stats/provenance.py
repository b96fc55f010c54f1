"""Where a set of statistics came from.

Two statistics are comparable only if the same network (and weights), the same
layer and the same preprocessing produced them.  That rule lives here and only
here: everything that stores or compares statistics goes through
:class:`Provenance`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fidkit.errors import BadInputError, IncomparableStatsError

#: The fields that decide comparability, with the words used in messages.
_COMPARED = {
    "extractor": "feature extractor",
    "weights_sha256": "network weights (sha256)",
    "layer": "layer",
    "mode": "preprocessing mode",
    "clip": "video clip sampling",
}


@dataclasses.dataclass(frozen=True)
class Provenance:
    """How statistics were computed.

    ``extractor``, ``weights_sha256``, ``layer``, ``mode`` and (for video
    networks) ``clip``, how frames were sampled from each video, decide whether
    two statistics are comparable.  ``source`` and ``fidkit_version`` are
    informational, and so is ``space``, the key of the feature space (the registry's name of the network and
    its tap), recorded so that statistics find their way back into the same space.  ``known=False`` marks statistics read from a file that carries
    no provenance (e.g. a pytorch-fid or ADM ``.npz`` with only ``mu``/``sigma``).
    """

    extractor: str | None = None
    weights_sha256: str | None = None
    layer: str | None = None
    mode: str | None = None
    source: str | None = None
    fidkit_version: str | None = None
    known: bool = True
    clip: str | None = None
    #: the feature space (``extractor/tap``, registry names) these statistics belong to, recorded when they are
    #: computed; ``None`` in files written before fidkit recorded it (see :func:`space_of`)
    space: str | None = None

    @classmethod
    def unknown(cls, source: str | None = None) -> "Provenance":
        return cls(source=source, known=False)

    def differences(self, other: "Provenance") -> list[str]:
        """Human-readable list of the compared fields that differ."""
        out = []
        for field, words in _COMPARED.items():
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine != theirs:
                out.append(f"{words}: {mine!r} vs {theirs!r}")
        return out

    def check_comparable(self, other: "Provenance", *, force: bool = False) -> list[str]:
        """Raise :class:`IncomparableStatsError` unless comparable.

        Returns warnings (e.g. when one side has no provenance, or when ``force``
        overrode a difference).
        """
        notes = []
        for p in (self, other):
            if not p.known:
                notes.append(
                    f"statistics from {p.source or 'a file'} carry no provenance: fidkit cannot check that "
                    "they were computed with the same network, weights, layer and preprocessing; "
                    "the result is only meaningful if they were (Inception statistics of pytorch-fid and dgm-eval "
                    "match --preprocessing pytorch, clean-fid's mode='clean' files --preprocessing clean, TTUR, ADM, "
                    "StyleGAN, torch-fidelity and clean-fid's legacy_tensorflow files --preprocessing tf)"
                )
        if self.known and other.known:
            diffs = self.differences(other)
            if diffs:
                msg = (
                    f"statistics are not comparable ({self.source or 'first'} vs {other.source or 'second'}): "
                    + "; ".join(diffs)
                )
                if not force:
                    raise IncomparableStatsError(
                        msg + ". Recompute one side with matching settings, or pass force=True (--force) "
                        "to compare anyway."
                    )
                notes.append(msg + " (compared anyway because of force)")
        return notes

    def with_source(self, source: str | None) -> "Provenance":
        return dataclasses.replace(self, source=source)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Provenance":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Provenance":
        """Provenance written by :meth:`to_json`; anything else is a :class:`BadInputError`."""
        try:
            d = json.loads(text)
        except ValueError as e:
            raise BadInputError(f"provenance is not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise BadInputError(f"provenance is a JSON {type(d).__name__}, not an object")
        bad = {k: v for k, v in d.items() if k != "known" and v is not None and not isinstance(v, str)}
        if bad or not isinstance(d.get("known", True), bool):
            raise BadInputError(f"provenance has fields of the wrong type: {sorted(bad) or ['known']}")
        return cls.from_dict(d)


#: Network identities recorded in provenance whose registry name differs, for statistics written before the
#: space was recorded (fidkit 0.1's Inception; the networks registered later add theirs through
#: :func:`register_identity`).
_IDENTITY_NAMES: dict[str, str] = {"inception-2015-12-05": "inception"}


def register_identity(identity: str, name: str) -> None:
    """Statistics recorded as computed by ``identity`` belong to the registered network ``name``."""
    _IDENTITY_NAMES[identity] = name


def space_of(p: Provenance) -> str:
    """The feature space (``extractor/tap``) of statistics with provenance ``p``: the recorded one, else derived
    from the network's identity through the alias table.  Statistics without provenance are Inception pool3
    (what pytorch-fid, clean-fid and ADM files hold)."""
    if p.space:
        return p.space
    if p.extractor is None:
        return f"inception/{p.layer or 'pool3'}"
    name = _IDENTITY_NAMES.get(p.extractor, p.extractor.removeprefix("custom:"))
    return f"{name}/{p.layer}"
