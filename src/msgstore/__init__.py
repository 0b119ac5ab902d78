"""msgstore: an IMAP-first mail store. See docs/architecture.md.

``from msgstore import Store`` gives the Python API (docs/api.md, ``msgstore.api``). It is
imported on first use, by name (``importlib``), so ``import msgstore`` -- which every module
does for ``__version__`` -- neither costs the CLI's start nor makes every layer appear to
import the API (import-linter). For precise types import it from ``msgstore.api``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["Store", "SyncStore", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Store", "SyncStore"):
        return getattr(importlib.import_module("msgstore.api"), name)
    raise AttributeError(f"module 'msgstore' has no attribute {name!r}")
