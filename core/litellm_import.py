"""litellm, imported once, offline and quiet: only when a model is called, never at core's import time."""

from __future__ import annotations

import os
import threading
import warnings
from types import ModuleType

_lock = threading.Lock()
_litellm: ModuleType | None = None


def load_litellm() -> ModuleType:
    """Import litellm once, offline and quiet (it takes seconds; never call this on a UI thread)."""
    global _litellm
    with _lock:
        if _litellm is None:
            os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
            warnings.filterwarnings("ignore", message=".*ReadOnly.*qualifier")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"litellm(\..*)?$")
            import litellm

            litellm.suppress_debug_info = True
            litellm.drop_params = True
            litellm.telemetry = False
            _litellm = litellm
    return _litellm
