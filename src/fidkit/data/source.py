"""What a source is once opened: images to decode (:class:`ImageSource`), statistics (:class:`StatsSource`) or
precomputed features (:class:`FeaturesSource`), and the helpers every reader shares (printable names, path checks)."""

from __future__ import annotations

import dataclasses
import errno
import os
import zipfile
import tokenize
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from fidkit.errors import BadInputError
from fidkit.data.images import IMAGE_SUFFIXES
from fidkit.stats.provenance import Provenance
from fidkit.stats.reference import Reference
from fidkit.stats.moments import FeatureStats


Loaded = tuple[np.ndarray, frozenset]

Loader = Callable[[], Loaded]

#: What a damaged .npy/.npz can raise while numpy parses it: its header is a Python literal (SyntaxError,
#: tokenize errors), its container a zip (BadZipFile, zlib.error, NotImplementedError for unknown versions).
NUMPY_FILE_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, SyntaxError, NotImplementedError,
                     zipfile.BadZipFile, zlib.error, tokenize.TokenError)

@dataclasses.dataclass
class ImageSource:
    description: str
    count: int | None
    items: Callable[[], Iterator[tuple[str, Loader]]]
    #: In-memory images: uint8 ``N x 3 x H x W`` batches (on the tensor's device) with their tags and a name,
    #: for the batched preprocessing path; ``None`` for files, which are decoded per image in worker threads.
    batches: Callable[[], Iterator[tuple[torch.Tensor, frozenset, str]]] | None = None
    #: "image" (loaders return ``H x W x 3``, batches are ``N x 3 x H x W``) or "video" (``T x H x W x 3`` clips,
    #: ``N x T x 3 x H x W`` batches; see :mod:`fidkit.data.video`)
    modality: str = "image"
    #: An item's content identity for resume and cross-process checks, by item name (archive members: size and
    #: CRC or mtime); ``None``, or None for a name, where the item names a file or folder that is stamped itself
    #: (:func:`fidkit.engine.progress.item_stamp`) or is a row of an in-memory array.
    stamp: Callable[[str], str | None] | None = None
    #: Warnings about the source as a whole (repeated archive member names, files a video folder leaves out),
    #: reported with the result; reading may add some (an archive re-read because it is far out of name order).
    notes: list[str] = dataclasses.field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

@dataclasses.dataclass
class StatsSource:
    description: str
    reference: Reference
    #: Images stored beside the statistics (ADM's reference batches: ``arr_0`` next to ``mu``/``sigma``), read for
    #: per-sample metrics that the statistics cannot serve; the statistics still serve Fréchet distances.
    images: ImageSource | None = None

    @property
    def stats(self) -> FeatureStats:
        """The Inception pool3 statistics (what FID needs)."""
        return self.reference.stats["inception/pool3"]

@dataclasses.dataclass
class FeaturesSource:
    description: str
    features: np.ndarray  # may be a memory map

    @property
    def provenance(self) -> Provenance:
        # Precomputed features are comparable with other precomputed features
        # (the user vouches for their origin), never with network features.
        return Provenance(extractor="features", source=self.description)

    def stats(self) -> FeatureStats:
        out = FeatureStats.empty(self.features.shape[1], self.provenance)
        for i in range(0, self.features.shape[0], 4096):
            out.update(np.asarray(self.features[i:i + 4096], dtype=np.float64))
        return out

Source = ImageSource | StatsSource | FeaturesSource

def check_path_text(spec, argument: str = "source") -> None:
    """An empty path (an unset shell variable: ``fidkit fid "" ref.npz``) would mean the current folder: refuse it."""
    if isinstance(spec, str) and not spec.strip():
        raise BadInputError(f"{argument}: empty path {spec!r} (an unset shell variable?); name a folder, an archive, "
                            "a .npz/.npy file or saved statistics (use '.' for the current folder)")

def printable(text: str) -> str:
    """``text`` with undecodable bytes of a file name (kept as surrogates by ``os.fsdecode``) written as ``\\xNN``:
    descriptions and names are printed, logged and saved as UTF-8, which refuses surrogates."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte produced
        return text.encode("utf-8", "backslashreplace").decode("utf-8")

def path_status(path: Path, text: str) -> os.stat_result | None:
    """``stat`` of a path given as a source: None when it does not exist, an error naming it when it cannot be
    looked at (a component longer than the file system allows, a permission problem), never an OSError."""
    try:
        return path.stat()
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        if e.errno == errno.ENAMETOOLONG:
            longest = max(len(os.fsencode(part)) for part in path.parts)
            shown = printable(text)
            shown = shown if len(shown) <= 120 else shown[:120] + "…"
            why = (f"{longest} bytes in one component; file systems allow 255" if longest > 255
                   else f"{len(os.fsencode(str(path))):,} bytes in all, more than the system allows")
            raise BadInputError(f"{shown}: file name too long ({why})") from None
        raise BadInputError(f"{printable(text)}: cannot look at it ({e.strerror or e})") from None
    except ValueError as e:  # an embedded NUL byte
        raise BadInputError(f"{printable(text)!r}: not a valid path ({e})") from None

def _describe_array(a) -> str:
    return f"{type(a).__module__.split('.')[0]} array {tuple(a.shape)} {str(a.dtype).replace('torch.', '')}"

def _limited(paths: list, limit):
    return paths if limit is None else paths[:limit]

def _check_nonempty(names: list, where: str) -> None:
    if not names:
        raise BadInputError(f"{where}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")

#: How many repeated member names (and files left out of a video folder) a warning shows.
SHOWN_NAMES = 10
