"""A card applied to a request: what the caller left open, the card fills in.

Whatever the caller chose explicitly stays (it becomes a named deviation in the
verdict if it differs from the card); only open choices take the card's
settings.  Called once, by :func:`fidkit.request.resolve`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from fidkit.engine.plan import make_plan
from fidkit.errors import BadInputError
from fidkit.protocols.card import Protocol


@dataclasses.dataclass(frozen=True)
class Applied:
    """The request's choices after the card: metrics, features, preprocessing, metric options to add, the clip
    sampling for video plans, and notes (metrics of the card this fidkit does not have)."""

    metrics: Any
    features: Any
    preprocessing: Any
    options: dict[str, Any]
    clip: dict[str, int] | None
    notes: tuple[str, ...]


def apply_card(card: Protocol, *, metrics, features, preprocessing, options_given: set[str]) -> Applied:
    """``card``'s settings where ``metrics``, ``features``, ``preprocessing`` are ``None`` and for the metric
    options not in ``options_given``.  A metric of the card that no registered metric provides (a plug-in not
    installed) is left out with a note, so the rest of the protocol still runs."""
    notes: list[str] = []
    if features is None:
        features = card.features
    if metrics is None:
        kept = []
        for token in card.metrics.split(","):
            try:
                make_plan([token], features)
            except BadInputError:
                notes.append(f"protocol {card.name}: metric {token} is not available in this installation (its "
                             "plug-in is not registered) and was left out")
                continue
            kept.append(token)
        if not kept:
            raise BadInputError(f"protocol {card.name}: none of its metrics ({card.metrics}) is available")
        metrics = ",".join(kept)
    if preprocessing is None:
        preprocessing = {n.extractor: n.preprocessing or n.nearest for n in card.networks
                         if (n.preprocessing or n.nearest)}
    options = {k: v for k, v in card.option_values.items() if k not in options_given}
    if card.normaliser == "n" and "fd_ddof" not in options_given:  # StyleGAN-V's and cd-FVD's covariances / N
        options["fd_ddof"] = 0
    return Applied(metrics, features, preprocessing, options, card.clip_values, tuple(notes))


def fill_options(card_options: Mapping[str, Any], declared: Mapping[str, Any]) -> dict[str, Any]:
    """The card's options that some registered metric declares (others belong to a plug-in not installed)."""
    return {k: v for k, v in card_options.items() if k in declared}
