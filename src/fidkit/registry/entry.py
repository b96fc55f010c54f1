"""One published reference: what the file is, how it was made, and the provenance fidkit attaches to it.

The provenance of a published file is what fidkit's own statistics record when computed the same way: the
network's identity and the sha256 of the weights file fidkit loads for it, the tap, the preprocessing name and
(videos) the clip sampling.  So the ordinary comparability check (:meth:`Provenance.check_comparable`) refuses
``fidkit fid imagenet256-adm samples/ --preprocessing clean`` exactly as it refuses two of fidkit's own files.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from fidkit.errors import BadInputError
from fidkit.stats.provenance import Provenance

#: fidkit's networks as their statistics record them: registry name -> (identity in provenance, sha256 of the
#: published weights file fidkit loads).  Written out here because the registry sits below the extractors;
#: tests/test_registry.py checks every row against the extractor declarations.
NETWORKS: dict[str, tuple[str, str]] = {
    "inception": ("inception-2015-12-05", "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"),
    "clip-vitb32": ("clip-vitb32", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"),
    "dinov2-vitl14": ("dinov2-vitl14", "d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428"),
    "i3d": ("i3d-kinetics400", "55095f049e706479d48e221adcdb145b2b9dc930ba28b081ed72367ffaa32343"),
    "videomae-v2": ("videomae-v2-g-ssv2", "5a210a92f035dff30c53b46157b612e7a1a5d3c99700e1b2d71da5c399ca7e70"),
}
VIDEO_NETWORKS = frozenset({"i3d", "videomae-v2"})

#: The metrics a reference can serve and what each needs from it: (feature space, kind).  ``moments``: mean and
#: covariance; ``features``: per-sample features (KID); ``images``: the file's own images (ADM's 10,000).
METRIC_NEEDS: dict[str, tuple[str, str]] = {
    "fid": ("inception/pool3", "moments"),
    "sfid": ("inception/spatial", "moments"),
    "kid": ("inception/pool3", "features"),
    "fd_clip": ("clip-vitb32/embedding", "moments"),
    "fd_dinov2": ("dinov2-vitl14/cls", "moments"),
    "fvd": ("i3d/logits", "moments"),
    "fd_videomae": ("videomae-v2/embedding", "moments"),
    "adm_pr": ("inception/pool3", "images"),
}

#: Preprocessing names of each network (tests check them against the extractors' declarations).  A name starting
#: with ``other:`` says fidkit has no equivalent (the rest describes the publisher's own); such statistics never
#: compare without ``--force``.
PREPROCESSING: dict[str, frozenset[str]] = {
    "inception": frozenset({"tf", "clean", "pytorch"}),
    "clip-vitb32": frozenset({"clean-fid"}),
    "dinov2-vitl14": frozenset({"dgm-eval", "edm2"}),
    "i3d": frozenset({"tf", "cd-fvd"}),
    "videomae-v2": frozenset({"cd-fvd"}),
}
OTHER = "other:"

#: Formats of :func:`fidkit.stats.published.read_published` (interface 1), kept here so the registry validates
#: without it; ``npz`` (mu/sigma) is also read directly (see :mod:`fidkit.registry.files`).
FORMATS = ("npz", "cleanfid-kid", "adm-batch", "edm2-pkl", "cdfvd-pkl", "torch-fidelity", "pth-stats")
PICKLED = frozenset({"edm2-pkl", "cdfvd-pkl", "torch-fidelity", "pth-stats"})
NORMALISERS = ("n-1", "n")
COVERAGES = ("whole", "subset")
NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
NOT_STATED = "not stated"


@dataclasses.dataclass(frozen=True)
class PublishedReference:
    """A file of published reference statistics.  ``None`` (or ``"not stated"``) marks a fact the publisher does
    not state; fidkit never fills one in by guess."""

    name: str                       # registry name, usable wherever a source is
    dataset: str                    # which images (or videos), in the publisher's words where possible
    resolution: int | None          # pixels per side the dataset was stored at
    n: int | None                   # images (videos) behind the statistics
    coverage: str | None            # "whole" dataset (split) or a "subset" of it
    subset_seed: int | None         # the seed that drew the subset
    dataset_preprocessing: str      # how the dataset was made (crop, downscale) before the network's resize
    network: str                    # fidkit network(s), comma-separated, in the order of ``spaces``
    preprocessing: str              # fidkit preprocessing name, or NET=NAME,NET=NAME when networks differ
    normaliser: str                 # covariance divided by "n-1" (unbiased) or "n" (biased)
    spaces: tuple[str, ...]         # fidkit feature spaces the file holds
    metrics: tuple[str, ...]        # fidkit metrics it serves
    url: str
    size_bytes: int | None
    licence: str
    fmt: str                        # a read_published format
    sha256: str | None              # pinned; None: recorded at first download
    publisher: str
    notes: str = ""
    clip: str | None = None         # video clip sampling, in fidkit's words (ClipOptions.describe) or the publisher's
    origin: str = "built-in"        # "built-in" or the user file that declared it

    @property
    def filename(self) -> str:
        """The file name the publisher serves it under (the cache keeps it)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]

    @property
    def networks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.split("/", 1)[0] for s in self.spaces))

    def preprocessing_of(self, network: str) -> str:
        """The preprocessing name the statistics of ``network`` were computed with."""
        if "=" not in self.preprocessing:
            return self.preprocessing
        pairs = dict(p.split("=", 1) for p in self.preprocessing.split(","))
        return pairs[network]

    def provenance(self, space: str) -> Provenance:
        """What fidkit's own statistics of ``space`` record when computed as this file was."""
        network, tap = space.split("/", 1)
        identity, weights = NETWORKS[network]
        return Provenance(extractor=identity, weights_sha256=weights, layer=tap, mode=self.preprocessing_of(network),
                          source=self.name, space=space, clip=self.clip if network in VIDEO_NETWORKS else None)

    def provenances(self) -> dict[str, Provenance]:
        return {s: self.provenance(s) for s in self.spaces}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["spaces"], d["metrics"] = list(self.spaces), list(self.metrics)
        return d


FIELDS = {f.name: f for f in dataclasses.fields(PublishedReference)}
REQUIRED = ("name", "dataset", "network", "preprocessing", "normaliser", "spaces", "metrics", "url", "licence",
            "fmt", "publisher")


def problems(e: PublishedReference) -> list[str]:
    """What is wrong with an entry, one ``field: reason`` per problem (empty: well-formed)."""
    out = []
    if not NAME.match(e.name):
        out.append(f"name: {e.name!r} must be lower-case letters, digits, '.', '-'")
    if not re.match(r"^https?://[^/\s]+/\S*$", e.url):
        out.append(f"url: {e.url!r} is not an http(s) URL of a file")
    if e.fmt not in FORMATS:
        out.append(f"fmt: {e.fmt!r} is not one of {', '.join(FORMATS)}")
    if e.normaliser not in NORMALISERS:
        out.append(f"normaliser: {e.normaliser!r} is not one of {', '.join(NORMALISERS)}")
    if e.coverage is not None and e.coverage not in COVERAGES:
        out.append(f"coverage: {e.coverage!r} is not one of {', '.join(COVERAGES)} (or absent: not stated)")
    if e.sha256 is not None and not HEX64.match(e.sha256):
        out.append("sha256: must be 64 lower-case hex digits")
    for field in ("resolution", "n", "subset_seed", "size_bytes"):
        v = getattr(e, field)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (0 if field == "subset_seed" else 1)):
            out.append(f"{field}: {v!r} is not a positive whole number (or absent: not stated)")
    for field in ("dataset", "licence", "publisher", "dataset_preprocessing"):
        if not isinstance(getattr(e, field), str) or not getattr(e, field).strip():
            out.append(f"{field}: must be given (write 'not stated' when the publisher does not say)")
    if not e.spaces:
        out.append("spaces: at least one feature space")
    for space in e.spaces:
        network = space.split("/", 1)[0]
        if "/" not in space or network not in NETWORKS:
            out.append(f"spaces: {space!r} is not NETWORK/TAP of {', '.join(NETWORKS)}")
            continue
        try:
            name = e.preprocessing_of(network)
        except (KeyError, ValueError):
            out.append(f"preprocessing: {e.preprocessing!r} names no preprocessing for {network}")
            continue
        if name not in PREPROCESSING[network] and not name.startswith(OTHER):
            out.append(f"preprocessing: {name!r} is not a preprocessing of {network} "
                       f"({', '.join(sorted(PREPROCESSING[network]))}, or '{OTHER}DESCRIPTION')")
        if network in VIDEO_NETWORKS and not e.clip:
            out.append(f"clip: statistics of the video network {network} need the clip sampling")
    if e.network != ",".join(dict.fromkeys(s.split("/", 1)[0] for s in e.spaces)):
        out.append(f"network: {e.network!r} does not list the networks of spaces {', '.join(e.spaces)} in order")
    if not e.metrics:
        out.append("metrics: at least one metric")
    for metric in e.metrics:
        if metric not in METRIC_NEEDS:
            out.append(f"metrics: {metric!r} is not one of {', '.join(METRIC_NEEDS)}")
        elif METRIC_NEEDS[metric][0] not in e.spaces:
            out.append(f"metrics: {metric} needs the space {METRIC_NEEDS[metric][0]}, not in spaces")
        elif METRIC_NEEDS[metric][1] == "features" and e.fmt != "cleanfid-kid":
            out.append(f"metrics: {metric} needs per-sample features; format {e.fmt} holds moments")
        elif METRIC_NEEDS[metric][1] == "images" and e.fmt != "adm-batch":
            out.append(f"metrics: {metric} needs the reference images of an ADM batch, not format {e.fmt}")
    return out


def check(e: PublishedReference, where: str) -> PublishedReference:
    bad = problems(e)
    if bad:
        raise BadInputError(f"{where}: entry {e.name!r}: " + "; ".join(bad))
    return e
