"""The comparability verdict: is this number comparable with a published protocol's?

:func:`verdict` compares what a run did (sample counts, each feature space's
provenance, the metrics and their options, the reference's name, the
covariance normaliser, JPEG-compressed samples) with a card, and names each
difference in one line: what this run did and what the protocol uses.  It reads
counts and provenance, not a result object, so it is tested without 50,000
images.  Without a card it looks for one through the reference: a registry
entry whose card is known is judged against that card, and anything else is
"no published protocol applies", never a claim of comparability.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from fidkit.errors import BadInputError
from fidkit.extractors import get_spec
from fidkit.protocols.card import Protocol
from fidkit.protocols.cards import CARDS
from fidkit.stats.provenance import Provenance

#: Metrics that measure the same quantity in another way: running one where the card has the other is a
#: difference of metric settings, not a metric outside the protocol.
_SAME_QUANTITY = ({"is", "adm_is"}, {"pr", "adm_pr"})

_NORMALISER_WORDS = {"n-1": "N - 1 (unbiased)", "n": "N (biased)"}


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether a result is comparable with a protocol's published numbers, and why not.

    ``protocol`` the card judged against (``None``: no published protocol applies); ``comparable`` true only when
    the card applies, nothing differs and everything could be checked; ``deviations`` one line per difference;
    ``unchecked`` what could not be checked (statistics without provenance, unknown counts); ``basis`` why this
    card (given, or found through the reference); ``caveats`` the card's reporting notes and open questions;
    ``uncovered`` metrics of the result that the protocol does not define.
    """

    protocol: str | None
    comparable: bool
    deviations: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()
    basis: str = ""
    caveats: tuple[str, ...] = ()
    uncovered: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        if self.protocol is None:
            return "no published protocol applies (name one with --protocol / protocol=)"
        if self.comparable:
            return f"comparable with {self.protocol} numbers"
        if self.deviations:
            n = len(self.deviations)
            return f"not comparable with {self.protocol} numbers: {n} deviation{'s' * (n != 1)}"
        return f"comparability with {self.protocol} numbers could not be confirmed"

    def lines(self) -> list[str]:
        """The verdict as printed: the summary, then one line per deviation, unchecked item and caveat."""
        out = [self.summary + (f" ({self.basis})" if self.basis else "")]
        out += [f"  - {d}" for d in self.deviations]
        out += [f"  ? {u}" for u in self.unchecked]
        if self.uncovered:
            out.append(f"  not part of {self.protocol}: {', '.join(self.uncovered)}")
        out += [f"  note: {c}" for c in self.caveats]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "comparable": self.comparable, "summary": self.summary,
                "deviations": list(self.deviations), "unchecked": list(self.unchecked), "basis": self.basis,
                "caveats": list(self.caveats), "uncovered": list(self.uncovered)}


def protocol(name: str | Protocol) -> Protocol:
    """The card called ``name`` (or one of its aliases); a :class:`BadInputError` lists the known ones."""
    if isinstance(name, Protocol):
        return name
    key = str(name).strip().lower()
    for card in CARDS:
        if key == card.name or key in card.aliases:
            return card
    raise BadInputError(f"unknown protocol {name!r}; known: {', '.join(c.name for c in CARDS)} "
                        "('fidkit protocols' describes each)")


def _lookup(name: str):
    """The registry entry called ``name``, or None (also when the registry is not installed)."""
    try:
        from fidkit.registry import lookup
    except ImportError:
        return None
    try:
        return lookup(name)
    except BadInputError:
        return None


def reference_cards(names: Iterable[str | None]) -> tuple[str | None, list[Protocol]]:
    """The first of ``names`` that is a card's reference (by registry name or its entry's publisher), with the
    cards that use it; ``(None, [])`` when none is."""
    for name in names:
        if not name:
            continue
        entry = _lookup(name)
        cards = [c for c in CARDS if name in c.references or (entry is not None and _published_for(entry, c))]
        if cards:
            return name, cards
    return None, []


def _published_for(entry, card: Protocol) -> bool:
    """Whether a registry entry is one of ``card``'s references: its publisher names the card's publisher (the
    repository, ``owner/name``) and its recorded preprocessing, if any, is one of the card's networks'."""
    publisher = str(getattr(entry, "publisher", "") or "").lower()
    if not card.reference_publisher or card.reference_publisher not in publisher:
        return False
    recorded = getattr(entry, "preprocessing", None)
    return recorded is None or any(recorded in (n.preprocessing, n.nearest) for n in card.networks)


def verdict(card: str | Protocol | None, *, n_generated: int | None, n_reference: int | None = None,
            spaces: Mapping[str, Provenance] | None = None, tasks: Iterable[tuple[str, str]] = (),
            options: Mapping[str, Any] | None = None, reference: Iterable[str | None] = (),
            normaliser: str = "n-1", jpeg_samples: int = 0) -> Verdict:
    """Judge a run against ``card`` (a name or :class:`Protocol`; ``None``: the card of the reference, if any).

    ``n_generated`` / ``n_reference`` are the sample counts; ``spaces`` the provenance of each feature space the
    run read (``extractor/tap``); ``tasks`` its ``(metric, extractor)`` pairs; ``options`` the metric options in
    effect; ``reference`` the names the reference goes by (its provenance source, its description: a registry name
    among them identifies it); ``normaliser`` the run's covariance divisor (fidkit's is ``"n-1"``);
    ``jpeg_samples`` how many generated samples were read from JPEG files.
    """
    reference = [r for r in reference if r]
    found, cards = reference_cards(reference)
    basis = "given"
    if card is None:
        if not cards:
            return Verdict(None, False)
        judged = [_judge(c, n_generated, n_reference, spaces, tasks, options, reference, found, normaliser,
                         jpeg_samples) for c in cards]
        best = min(range(len(cards)), key=lambda i: (len(judged[i].deviations), len(judged[i].unchecked)))
        others = [c.name for i, c in enumerate(cards) if i != best]
        basis = f"the reference {found} is {cards[best].name}'s" + (
            f"; also used by {', '.join(others)}" if others else "")
        return dataclasses.replace(judged[best], basis=basis)
    return dataclasses.replace(_judge(protocol(card), n_generated, n_reference, spaces, tasks, options, reference,
                                      found if found and protocol(card) in cards else None, normaliser,
                                      jpeg_samples), basis=basis)


def _count(n: int) -> str:
    return f"{n:,}"


def _judge(card: Protocol, n_generated, n_reference, spaces, tasks, options, reference: list[str],
           found: str | None, normaliser: str, jpeg_samples: int) -> Verdict:
    deviations: list[str] = []
    unchecked: list[str] = []
    spaces = dict(spaces or {})
    tasks = list(dict.fromkeys(tasks))
    name = card.name

    # Sample counts.
    for side, n, wanted in (("generated", n_generated, card.n_generated), ("reference", n_reference,
                                                                         card.n_reference)):
        if wanted is None:
            continue
        if n is None:
            unchecked.append(f"N: the number of {side} samples is unknown; {name} uses {_count(wanted)}")
        elif n != wanted:
            deviations.append(f"N = {_count(n)} {side} samples where {name} uses {_count(wanted)}")

    # Metrics: each must be one the card covers, computed in the card's network.
    covered = {m for m, _ in card.tasks}
    uncovered: list[str] = []
    for metric, extractor in tasks:
        same = next((g for g in _SAME_QUANTITY if metric in g), {metric})
        theirs = [m for m in covered if m in same]
        if not theirs:
            uncovered.append(metric if extractor == "inception" else f"{metric} ({extractor})")
            continue
        if metric not in covered:
            deviations.append(f"metric setting: {metric} where {name} uses {theirs[0]}")
            continue
        nets = [e for m, e in card.tasks if m == metric]
        if extractor not in nets:
            deviations.append(f"network: {metric} computed in {extractor} where {name} computes it in "
                              f"{' and '.join(nets)}")

    # Each network the card pins: weights, preprocessing, clip sampling.
    clip = card.clip_values
    for net in card.networks:
        mine = {s: p for s, p in spaces.items() if s.split("/", 1)[0] == net.extractor}
        if not mine:
            if any(e == net.extractor for _, e in tasks):
                unchecked.append(f"{net.extractor}: no provenance recorded, so its weights and preprocessing "
                                 "cannot be checked")
            continue
        space, p = sorted(mine.items())[0]
        if not p.known:
            unchecked.append(f"{space}: statistics without provenance: network and preprocessing cannot be checked")
            continue
        published = getattr(get_spec(net.extractor).weights, "sha256", None)
        if published and p.weights_sha256 != published:
            deviations.append(f"network weights: {net.extractor} with weights sha256 "
                              f"{(p.weights_sha256 or 'unknown')[:12]}… where {name} uses the published weights "
                              f"(sha256 {published[:12]}…)")
        if net.preprocessing is None:
            deviations.append(f"preprocessing: {net.extractor} with {p.mode} where {name} uses "
                              f"{net.publisher_preprocessing} (no fidkit preprocessing reproduces it)")
        elif p.mode != net.preprocessing:
            deviations.append(f"preprocessing: {net.extractor} with {p.mode} where {name} uses "
                              f"{net.preprocessing} ({net.publisher_preprocessing})")
        if clip is not None and p.clip is not None:
            wanted = f"{clip['length']} frames, stride {clip['stride']}, from frame {clip['start']}"
            if p.clip != wanted:
                deviations.append(f"clip sampling: {p.clip} where {name} uses {wanted}")

    # Reference.
    if card.references or card.reference_publisher:
        if found is None:
            where = reference[0] if reference else "an unnamed source"
            known = ", ".join(card.references) or f"{card.reference_publisher}'s statistics"
            deviations.append(f"reference: {where} where {name} uses a registry reference ({known})")

    # Covariance normaliser and metric options.
    if normaliser != card.normaliser:
        deviations.append(f"normaliser: covariances divided by {_NORMALISER_WORDS.get(normaliser, normaliser)} "
                          f"where {name} divides by {_NORMALISER_WORDS.get(card.normaliser, card.normaliser)}")
    for option, wanted in card.option_values.items():
        if options is not None and option in options and options[option] != wanted:
            deviations.append(f"metric setting: {option} = {options[option]} where {name} uses {wanted}")

    # Lossy samples.
    if jpeg_samples:
        deviations.append(f"JPEG samples: {_count(jpeg_samples)} generated samples were read from JPEG files "
                          f"(lossy compression alone moves FID, by ~20 in clean-fid's study) where {name} "
                          "evaluates lossless samples (PNG or uint8 arrays)")

    caveats = tuple(([card.reporting] if card.reporting else []) + list(card.unknown))
    return Verdict(name, not deviations and not unchecked, tuple(deviations), tuple(unchecked),
                   caveats=caveats, uncovered=tuple(uncovered))
