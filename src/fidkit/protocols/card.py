"""What a protocol card is: the settings a published evaluation protocol fixes, in fidkit's names.

A card answers "what would I have to do for my number to be comparable with the
paper's?": the networks and their weights, each network's preprocessing (as a
fidkit preprocessing name where one reproduces the publisher's, else ``None``),
the reference (registry names, resolved by :mod:`fidkit.registry` when it is
installed), the sample counts, the metrics (fidkit metric names and options),
the covariance normaliser and, for videos, the clip sampling.  What the card's
authors could not establish is written down in ``unknown`` rather than guessed.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Network:
    """One network of a protocol.

    ``extractor`` is fidkit's extractor name; ``preprocessing`` the fidkit preprocessing that reproduces the
    publisher's (``None``: no fidkit preprocessing does, ``nearest`` is then applied and named as a deviation);
    ``publisher_preprocessing`` and ``publisher_weights`` say in words what the publisher runs."""

    extractor: str
    preprocessing: str | None
    publisher_preprocessing: str
    publisher_weights: str
    nearest: str | None = None


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A published evaluation protocol, pinned.

    ``metrics`` and ``features`` are what ``--protocol`` requests (fidkit metric names, extractor names);
    ``tasks`` are the ``(metric, extractor)`` pairs the protocol covers (generic metric names, as
    :attr:`fidkit.engine.plan.Task` has them); ``n_generated`` / ``n_reference`` the sample counts (``None``:
    not fixed, e.g. the whole dataset); ``references`` registry names of its reference statistics and
    ``reference_publisher`` the publisher those registry entries name; ``normaliser`` the covariance divisor
    (``"n-1"`` unbiased, ``"n"`` biased); ``options`` fidkit metric options it fixes; ``clip`` the video clip
    sampling (``length``, ``stride``, ``start``); ``reporting`` how the publisher reports the number;
    ``unknown`` facts this card could not establish; ``sources`` where each fact was read.
    """

    name: str
    title: str
    metrics: str
    features: str
    tasks: tuple[tuple[str, str], ...]
    networks: tuple[Network, ...]
    n_generated: int | None
    reference_note: str
    n_reference: int | None = None
    references: tuple[str, ...] = ()
    reference_publisher: str | None = None
    normaliser: str = "n-1"
    options: tuple[tuple[str, Any], ...] = ()
    clip: tuple[tuple[str, int], ...] | None = None
    reporting: str = ""
    unknown: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def option_values(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def clip_values(self) -> dict[str, int] | None:
        return None if self.clip is None else dict(self.clip)

    def network(self, extractor: str) -> Network | None:
        return next((n for n in self.networks if n.extractor == extractor), None)

    def to_dict(self) -> dict[str, Any]:
        """The card as plain data (``fidkit protocols --json``)."""
        return {"name": self.name, "title": self.title, "metrics": self.metrics, "features": self.features,
                "networks": [dataclasses.asdict(n) for n in self.networks], "n_generated": self.n_generated,
                "n_reference": self.n_reference, "reference": self.reference_note,
                "references": list(self.references), "reference_publisher": self.reference_publisher,
                "normaliser": self.normaliser, "options": self.option_values, "clip": self.clip_values,
                "reporting": self.reporting, "unknown": list(self.unknown), "sources": list(self.sources),
                "aliases": list(self.aliases)}
