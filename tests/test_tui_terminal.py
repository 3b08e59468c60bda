"""The run screen in a real terminal (tmux), through the app's own input driver: escape answers in time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from autoresearch.tui.sample import make_sample_session

from tests.conftest import TERMINAL_WAIT_S

pytestmark = [
    pytest.mark.terminal,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

APP = """\
import sys
from pathlib import Path
from autoresearch.tui.app import AutoresearchApp
from autoresearch.tui.sample import IdleLoop
sys.exit(AutoresearchApp(Path(sys.argv[1]), "run", loop_factory=IdleLoop).run_until_done())
"""


class Pane:
    def __init__(self, socket: Path) -> None:
        self.tmux = ["tmux", "-S", str(socket)]

    def start(self, command: str) -> None:
        subprocess.run([*self.tmux, "new-session", "-d", "-x", "100", "-y", "30", "-s", "t", command], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "t", *keys], check=True)

    def wait_for(self, test: Callable[[str], bool], timeout_s: float = TERMINAL_WAIT_S) -> float:
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            if test(self.screen()):
                return time.monotonic() - began
            time.sleep(0.003)
        raise AssertionError(f"the screen never changed as expected; last screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def help_shown(screen: str) -> bool:
    return "Run screen" in screen and "escape close" in screen


def test_escape_closes_the_help_in_a_real_terminal(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    make_sample_session(root)
    script = tmp_path / "app.py"
    script.write_text(APP)
    pane = Pane(tmp_path / "tmux.sock")
    pane.start(f"ESCDELAY=25 {sys.executable} {script} {root}")
    try:
        pane.wait_for(lambda s: "commit" in s and "Quit" in s)
        closed = []
        for _ in range(3):
            pane.keys("?")
            pane.wait_for(help_shown)
            time.sleep(0.2)
            pane.keys("Escape")
            closed.append(pane.wait_for(lambda s: not help_shown(s)))
            time.sleep(0.2)
        # How fast is the benchmark's business (benchmarks/app_run.py); here: every escape closed the panel.
        assert len(closed) == 3
        assert "Quit" in pane.screen()
    finally:
        pane.kill()


def test_o_opens_the_diff_in_the_pager_and_the_app_comes_back(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    make_sample_session(root)
    script = tmp_path / "app.py"
    script.write_text(APP)
    seen = tmp_path / "paged.txt"
    pager = tmp_path / "pager.sh"
    pager.write_text(f'#!/bin/sh\ncat "$1" > {seen}\necho PAGER-SHOWN; read answer\n')
    pager.chmod(0o755)
    pane = Pane(tmp_path / "tmux.sock")
    pane.start(f"PAGER={pager} ESCDELAY=25 {sys.executable} {script} {root}")
    try:
        pane.wait_for(lambda s: "commit" in s and "Quit" in s)
        pane.keys("g", "j", "j", "Enter")  # the third experiment: a discarded change
        pane.wait_for(lambda s: "experiment #3" in s and "BATCH_SIZE" in s)
        pane.keys("o")
        pane.wait_for(lambda s: "PAGER-SHOWN" in s)  # the app gave the terminal to the pager
        assert "+BATCH_SIZE = 16" in seen.read_text()
        pane.keys("Enter")  # the pager exits
        pane.wait_for(lambda s: "experiment #3" in s and "PAGER-SHOWN" not in s)
        pane.keys("Escape")
        pane.wait_for(lambda s: "commit" in s and "Quit" in s)
    finally:
        pane.kill()


NOTES_APP = """\
import sys
import time
from pathlib import Path
from autoresearch.core.events import Info
from autoresearch.tui.app import AutoresearchApp
from autoresearch.tui.sample import IdleLoop

class NotesLoop(IdleLoop):
    def run(self):
        for i in range(400):  # twice what the events pane keeps
            self.sink(Info(f"note {i} of 400"))
            time.sleep(0.005)
        return super().run()

sys.exit(AutoresearchApp(Path(sys.argv[1]), "run", loop_factory=NotesLoop).run_until_done())
"""


def test_the_events_pane_still_shows_the_newest_line_once_it_holds_its_most(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    make_sample_session(root)
    script = tmp_path / "notes.py"
    script.write_text(NOTES_APP)
    pane = Pane(tmp_path / "tmux.sock")
    pane.start(f"{sys.executable} {script} {root}")
    try:
        pane.wait_for(lambda s: "note 399 of 400" in s)
    finally:
        pane.kill()
