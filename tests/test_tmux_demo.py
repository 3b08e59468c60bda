"""`autoresearch demo` in a real terminal (tmux): it runs, answers keys, quits cleanly, leaves nothing running."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import TERMINAL_WAIT_S

pytestmark = [
    pytest.mark.terminal,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    def __init__(self, socket: Path, name: str) -> None:
        self.base = ["tmux", "-S", str(socket)]
        self.name = name

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, check=False).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", self.name, *keys)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = TERMINAL_WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"screen never matched; last screen:\n{screen}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    term = Tmux(tmp_path / "tmux.sock", "demo")
    yield term
    term("kill-server")


def _demo_processes(demo_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if proc.name().startswith("tmux"):
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            if str(demo_dir) in cmdline or (proc.info["cwd"] or "").startswith(str(demo_dir)):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_demo_in_tmux_pause_resume_quit(tmux: Tmux, tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    command = (
        f"{sys.executable} -m autoresearch.core.cli demo --dir {demo_dir} --experiments 40; echo EXITED $?; sleep 60"
    )
    tmux("new-session", "-d", "-x", "100", "-y", "30", "-s", "demo", command)

    screen = tmux.wait_for(lambda s: "keep" in s and "baseline" in s)
    assert "autoresearch" in screen and "demo" in screen
    assert "Quit" in screen  # the footer shows the bindings

    tmux.keys("p")
    # The header says it (the events pane says "paused from the app" as soon as p is pressed).
    screen = tmux.wait_for(lambda s: "PAUSED" in (s.splitlines() or [""])[0] and "Resume" in s)
    rows = (demo_dir / "results.tsv").read_text().count("\n")
    time.sleep(2)
    assert (demo_dir / "results.tsv").read_text().count("\n") == rows  # paused means no new experiments
    tmux.keys("p")
    tmux.wait_for(lambda s: "Pause" in s and "PAUSED" not in (s.splitlines() or [""])[0])

    tmux.keys("q")
    screen = tmux.wait_for(lambda s: "EXITED" in s or "Quit anyway?" in s)
    if "EXITED" not in screen:
        # a run was active: the app asks first; confirm
        tmux.keys("y")
    screen = tmux.wait_for(lambda s: "EXITED" in s)
    assert "EXITED 0" in screen
    assert "Traceback" not in screen
    assert "Go on with: autoresearch -C" in screen  # quitting says where the session stands and how to go on

    deadline = time.monotonic() + 60
    while _demo_processes(demo_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _demo_processes(demo_dir) == []
    status = subprocess.run(["git", "status", "--porcelain"], cwd=demo_dir, capture_output=True, text=True)
    assert status.stdout == ""
    assert not (demo_dir / ".autoresearch" / "journal.json").exists()


def test_after_a_resize_the_live_panes_keep_following(tmux: Tmux, tmp_path: Path) -> None:
    """A tmux reattach from a terminal of another size resizes the app; its events and log go on following."""
    import re

    demo_dir = tmp_path / "demo"
    command = f"{sys.executable} -m autoresearch.core.cli demo --dir {demo_dir} --experiments 40; sleep 60"
    tmux("new-session", "-d", "-x", "120", "-y", "36", "-s", "demo", command)
    screen = tmux.wait_for(lambda s: re.search(r"#[3-9] running", s) is not None)
    tmux("resize-window", "-t", "demo", "-x", "80", "-y", "24")
    tmux.wait_for(lambda s: "val_loss per experiment" in s and len(s.splitlines()) <= 24)
    started = max(int(n) for n in re.findall(r"#(\d+) running", screen))

    def followed(s: str) -> bool:
        running = [int(n) for n in re.findall(r"#(\d+) running", s)]
        return bool(running) and max(running) >= started + 3 and "new line" not in s

    screen = tmux.wait_for(followed)
    tmux("resize-window", "-t", "demo", "-x", "120", "-y", "36")
    later = max(int(n) for n in re.findall(r"#(\d+) running", screen))
    tmux.wait_for(lambda s: any(int(n) >= later + 2 for n in re.findall(r"#(\d+) running", s)))
    tmux.keys("q")
    screen = tmux.wait_for(lambda s: "Go on with" in s or "Quit anyway?" in s)
    if "Go on with" not in screen:
        tmux.keys("y")
    tmux.wait_for(lambda s: "Go on with" in s)
