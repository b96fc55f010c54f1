"""Notes and warnings that go with a result: how they reach the user (Python warnings pointing at the user's
line), what is worth saying about the sample counts and the weights."""

from __future__ import annotations

import os
import sys
import warnings

from fidkit.errors import BadInputError, FidkitWarning
from fidkit.extractors import get_spec
from fidkit.stats.provenance import Provenance

#: Below this many samples the 2048-d covariance is singular and FID strongly biased.
MIN_RELIABLE_N = 2048

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _first_frame_outside_fidkit() -> int:
    """The ``stacklevel`` of the first caller outside this package, so that a warning points at the user's line
    whether it came through ``fid``, ``evaluate``, ``Evaluator.compute`` or ``evaluate_generator``."""
    frame, level = sys._getframe(2), 2  # 1 is emit() itself
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def emit(messages: list[str]) -> None:
    level = _first_frame_outside_fidkit()
    for m in messages:
        warnings.warn(m, FidkitWarning, stacklevel=level)




def nonstandard_weights(spaces: dict[str, Provenance]) -> list[str]:
    """A note for every feature space computed with weights other than the published file."""
    notes = []
    for space, p in spaces.items():
        try:
            spec = get_spec(space.split("/", 1)[0])
        except BadInputError:
            continue
        published = getattr(spec.weights, "sha256", None)
        if published and p.weights_sha256 and p.weights_sha256 != published:
            notes.append(f"{space} was computed with non-standard {spec.name} weights (sha256 "
                         f"{p.weights_sha256[:12]}…, the published file is {published[:12]}…): the values are not "
                         "comparable with published numbers")
    return notes


def sample_count_notes(real, fake, modality: str = "image") -> list[str]:
    convention = "2,048 clips is FVD's usual N" if modality == "video" else "50,000 is the convention"
    notes = []
    for side in (real, fake):
        dims = [s.dim for s in side.stats.values()] or [f.shape[1] for f in side.features.values()] or [2048]
        threshold = max(MIN_RELIABLE_N if max(dims) >= MIN_RELIABLE_N else max(dims), 2)
        if side.n is not None and side.n < threshold:
            notes.append(
                f"{side.description}: N={side.n} is below {threshold}, the feature dimension: the covariance is "
                "singular and Fréchet distances are strongly biased upwards at small N; compare only values computed "
                f"at the same N ({convention})")
    if real.n is not None and fake.n is not None and real.n != fake.n:
        notes.append(f"the two sides have different sample counts (N={real.n} vs N={fake.n}); FID depends on N, so "
                     "report both and compare only results computed with the same counts")
    return notes
