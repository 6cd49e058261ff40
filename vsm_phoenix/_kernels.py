"""The one rule that picks a kernel backend (CRDT joins, channel frames, envelopes):
the Cython twin when it is built, else the pure-Python reference; ``VSM_PHOENIX_PURE=1``
in the environment at import time forces pure. Imports nothing of the project, so
every layer may use it."""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def select(pure: ModuleType, native: str) -> tuple[ModuleType, str]:
    """``(module, name)``: the module named ``native`` (``"native"``) when it imports
    and pure mode is not forced, else ``pure`` (``"pure"``)."""
    if os.environ.get("VSM_PHOENIX_PURE") == "1":
        return pure, "pure"
    try:
        return importlib.import_module(native), "native"
    except ImportError:
        return pure, "pure"
