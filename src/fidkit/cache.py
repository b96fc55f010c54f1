"""fidkit's cache directory: downloaded weights and named reference statistics.

``$FIDKIT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fidkit``, else ``~/.cache/fidkit``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fidkit.errors import BadInputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def cache_dir() -> Path:
    env = os.environ.get("FIDKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "fidkit"


def weights_dir() -> Path:
    return cache_dir() / "weights"


def checkpoints_dir() -> Path:
    """Where interrupted ``fidkit fid``/``eval`` runs keep their progress."""
    return cache_dir() / "checkpoints"


def stats_dir() -> Path:
    return cache_dir() / "stats"


def named_stats_path(name: str) -> Path:
    """Where statistics saved under ``name`` live (``fidkit stats SOURCE --name NAME``)."""
    if not _NAME.match(name) or name.endswith(".npz"):
        raise BadInputError(
            f"statistics name {name!r} must be letters, digits, '_', '.', '-' (no path, no .npz suffix)")
    return stats_dir() / f"{name}.npz"


def is_stats_name(text: str) -> bool:
    return bool(_NAME.match(text)) and not text.endswith(".npz")


def list_named_stats() -> list[str]:
    d = stats_dir()
    return sorted(p.stem for p in d.glob("*.npz")) if d.is_dir() else []
