"""Published evaluation protocols as cards, and the verdict on whether a result is comparable with one.

``--protocol NAME`` (``protocol=`` in Python) requests what a card pins (its
networks, preprocessing, metrics and options) wherever the caller chose
nothing; every result then carries a :class:`Verdict`: "comparable with NAME
numbers", or one line per deviation naming what differs and what the protocol
uses.
"""

from fidkit.protocols.card import Network, Protocol
from fidkit.protocols.cards import CARDS
from fidkit.protocols.judge import Verdict, protocol, reference_cards, verdict

#: Every card by name.
PROTOCOLS: dict[str, Protocol] = {c.name: c for c in CARDS}

__all__ = ["Network", "Protocol", "PROTOCOLS", "Verdict", "protocol", "reference_cards", "verdict"]
