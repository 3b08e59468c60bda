"""What the app remembers for this user between sessions, as other terminal apps do: the theme last chosen.

Kept in `$XDG_CONFIG_HOME/autoresearch/app.json` (`~/.config/autoresearch/app.json`), never in a repository;
a file that cannot be read or written is ignored: a preference never stops the app.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


def preferences_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "autoresearch" / "app.json"


def load_theme() -> str | None:
    try:
        data = json.loads(preferences_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    theme = data.get("theme") if isinstance(data, dict) else None
    return theme if isinstance(theme, str) else None


def save_theme(theme: str) -> None:
    path = preferences_path()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        data["theme"] = theme
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
