"""`autoresearch demo`: the bundled example in a fresh git repository with a session set up."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from .config import SessionConfig
from .setup import setup_session

DEMO_EXPERIMENTS = 40
"""About a minute and a half on a laptop: long enough to try the keys (p holds it as long as you like)."""


def example_script() -> str:
    return resources.files("autoresearch.core").joinpath("examples/train.py").read_text(encoding="utf-8")


def prepare_demo(dest: Path | None = None, **options: Any) -> tuple[Path, SessionConfig]:
    """Make a git repository holding the example, set a session up in it, return (repository, config)."""
    root = Path(tempfile.mkdtemp(prefix="autoresearch-demo-")) if dest is None else dest
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(example_script(), encoding="utf-8")
    git = shutil.which("git") or "git"
    identity = ["-c", "user.name=autoresearch demo", "-c", "user.email=demo@localhost"]
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "train.py"],
        [*identity, "commit", "-q", "-m", "demo: train.py"],
    ):
        subprocess.run([git, *args], cwd=root, check=True, capture_output=True)
    settings: dict[str, Any] = {
        "metric_name": "val_loss",
        "time_budget_minutes": 0.1,
        "timeout_minutes": 0.5,
        "max_experiments": DEMO_EXPERIMENTS,
        "tag": "demo",
        "run_command": f"{shlex.quote(sys.executable)} train.py",
    }
    settings.update({k: v for k, v in options.items() if v is not None})
    config = setup_session(root, "train.py", **settings)
    return root, config
