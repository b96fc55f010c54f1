"""Folders of image files: a recursive, sorted walk that drops nothing silently, and decoding a file."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable


from fidkit.errors import BadInputError
from fidkit.data.images import IMAGE_SUFFIXES, JPEG_SUFFIXES, decode_image
from fidkit.data.source import ImageSource, Loaded, _check_nonempty, _limited, printable


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES

def _require_regular_file(path: Path) -> None:
    """A FIFO, socket or device would be read forever (or block): refuse it by name."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise BadInputError(f"{printable(str(path))}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        raise BadInputError(f"{printable(str(path))}: not a regular file (a FIFO, socket or device): refused")

def _folder(root: Path, limit) -> ImageSource:
    """Every image file below ``root``, following symbolic links, in sorted order (see :func:`walk_files`)."""
    files = walk_files(root, _is_image, "images")
    _check_nonempty(files, printable(str(root)))
    files = _limited(files, limit)

    def items():
        for p in files:
            yield printable(str(p)), (lambda p=p: _decode_file(p))
    return ImageSource(printable(str(root)), len(files), items)

def walk_files(root: Path, wanted: Callable[[str], bool], what: str, left_out: list[Path] | None = None
               ) -> list[Path]:
    """The files below ``root`` whose names ``wanted`` accepts, following symbolic links, sorted by relative path.

    Nothing wanted is left out silently: an unreadable sub-folder, a broken link, a FIFO or device with a wanted
    name, and a folder reached twice through links (its files would count twice) are errors that name the path;
    ``what`` names the files in those messages ("images", "videos").  The files that ``wanted`` refuses are
    appended to ``left_out`` (sorted like the result), when given.
    """
    def unreadable(e: OSError):
        raise BadInputError(f"{printable(str(e.filename))}: cannot list this folder ({e.strerror}); its {what} "
                            "would be left out")

    files: list[Path] = []
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            raise BadInputError(f"{printable(dirpath)}: the same folder as {printable(seen[real])} (through a "
                                f"symbolic link); its {what} would be counted twice")
        seen[real] = dirpath
        dirnames.sort()
        for name in filenames:
            if not wanted(name):
                if left_out is not None:
                    left_out.append(Path(dirpath) / name)
                continue
            p = Path(dirpath) / name
            if not p.exists():
                raise BadInputError(f"{printable(str(p))}: broken symbolic link")
            _require_regular_file(p)
            files.append(p)
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    if left_out is not None:
        left_out.sort(key=lambda p: p.relative_to(root).as_posix())
    return files

def _decode_file(p: Path) -> Loaded:
    try:
        data = p.read_bytes()
    except OSError as e:
        raise BadInputError(f"{printable(str(p))}: cannot read ({e})") from e
    return _with_suffix_tag(decode_image(data, printable(str(p))), p.name)

def _with_suffix_tag(loaded: Loaded, name: str) -> Loaded:
    arr, tags = loaded
    if os.path.splitext(name)[1].lower() in JPEG_SUFFIXES:
        tags = tags | {"jpeg"}
    return arr, tags
