"""Optional dependencies: imported when a feature needs them, with an error that says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(package: str, extra: str, feature: str) -> ModuleType:
    """Import the top-level ``package`` for ``feature``, or fail naming the extra that installs it
    (``pip install 'fidkit[extra]'``).  Only the package itself missing is translated: a dependency of it missing,
    or any other error raised while importing it, propagates as it is."""
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as e:
        if e.name != package:
            raise
        raise ImportError(f"{feature} needs the {package!r} package, which is not installed: "
                          f"pip install 'fidkit[{extra}]'") from None
