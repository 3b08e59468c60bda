"""The Textual app of autoresearch. Importing this package loads no UI library; `launch` does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MODES = ("run", "setup", "config", "analyze", "demo", "watch")


def launch(root: Path, mode: str, script: str | None = None, options: dict[str, Any] | None = None) -> int:
    """Open the app in `mode` ("run", "setup", "config", "analyze", "demo" or "watch": the run of another process)
    on the repository at `root`.

    Returns the process exit status: 0 when the user quit normally (or created the session), 1 when
    the loop stopped on a problem or the wizard was cancelled.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    # A lone escape is told apart from an escape sequence after ESCDELAY ms (Textual's default is 100);
    # 25 ms keeps escape within the 100 ms a key should take, and tmux sends whole sequences at once.
    os.environ.setdefault("ESCDELAY", "25")
    from .app import AutoresearchApp

    if mode == "watch":
        from .run_screen import watch_factory

        by = str((options or {}).get("by") or "a watcher")
        return AutoresearchApp(root, "run", loop_factory=watch_factory(by)).run_until_done()
    app = AutoresearchApp(root, mode, script=script, options=options)
    return app.run_until_done()


__all__ = ["MODES", "launch"]
