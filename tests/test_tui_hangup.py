"""A hang-up (the terminal or tmux going away) mid-run: the app stops the run, reverts it and exits."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from autoresearch.core.config import RESULTS_FILE
from autoresearch.core.history import History
from autoresearch.core.results import read_results
from autoresearch.core.setup import setup_session

from tests.conftest import TERMINAL_WAIT_S
from tests.test_tui_run import SLOW_SCRIPT, git

pytestmark = [
    pytest.mark.terminal,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def processes_in(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if proc.name().startswith("tmux"):
                continue
            if proc.info["cwd"] == str(root) or str(root) in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_hangup_mid_run_leaves_a_consistent_session_and_no_process(tmp_path: Path) -> None:
    root = tmp_path / "slow"
    root.mkdir()
    (root / "train.py").write_text(SLOW_SCRIPT)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "train")
    setup_session(
        root,
        "train.py",
        metric_name="val_loss",
        agent="mutate",
        tag="hup",
        time_budget_minutes=0.5,
        timeout_minutes=1,
        run_command=f"{sys.executable} train.py",
    )
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    command = f"cd {root} && {sys.executable} -m autoresearch.core.cli run"
    subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "24", "-s", "hup", command], check=True)
    try:
        deadline = time.monotonic() + TERMINAL_WAIT_S
        screen = ""
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "hup"], capture_output=True, text=True).stdout
            if "#2/50" in screen and "RUNNING" in screen and "step 5" in screen:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the second run never showed; last screen:\n{screen}")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)

    deadline = time.monotonic() + TERMINAL_WAIT_S
    while processes_in(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_in(root) == []
    assert len(read_results(root / RESULTS_FILE).rows) == 1
    assert git(root, "status", "--porcelain") == ""
    assert len(git(root, "log", "--oneline", "autoresearch/hup").splitlines()) == 2
    assert not History(root).journal_path.exists()
