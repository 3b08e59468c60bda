"""A headless run and a watcher in real tmux panes: the watcher's screen follows the run and its keys act on it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import cli
from tests.test_tui_terminal import Pane
from tests.test_watch import held_session, wait_until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
CLI = f"{sys.executable} -m autoresearch.core.cli"


def test_a_second_run_offers_to_watch_a_hang_up_changes_nothing_and_a_watchers_keys_steer_the_run(
    tmp_path: Path,
) -> None:
    root = held_session(tmp_path, "--max-experiments", "3")
    run = Pane(tmp_path / "run.sock")
    watcher = Pane(tmp_path / "watch.sock")
    run.start(f"cd {root} && HOLD_AT=2 {CLI} run --headless 2>&1; echo RUN-EXITED $?; sleep 600")
    try:
        run.wait_for(lambda s: "#2 running" in s)
        watcher.start(f"cd {root} && ESCDELAY=25 {CLI} run; echo WATCH-EXITED $?; sleep 600")
        watcher.wait_for(lambda s: "is using this session. Watch it? [Y/n]" in s)
        watcher.keys("Enter")
        watcher.wait_for(lambda s: "baseline" in s and "step " in s and "Quit" in s)  # its rows and the live log
        watcher.kill()  # the watcher's terminal hangs up: the run must not notice
        steps = (root / "run.log").read_text().count("step ")
        wait_until(lambda: (root / "run.log").read_text().count("step ") > steps + 20, "the run goes on")
        assert "stop" not in run.screen() and "paused" not in run.screen()
        watcher = Pane(tmp_path / "watch2.sock")
        watcher.start(f"cd {root} && ESCDELAY=25 {CLI} watch; echo WATCH-EXITED $?; sleep 600")
        watcher.wait_for(lambda s: "baseline" in s and "step " in s and "Quit" in s)
        watcher.keys("p")
        run.wait_for(lambda s: "paused from a watcher" in s)
        watcher.keys("x")  # kill asks first, in a watcher as in the app that runs the loop
        watcher.wait_for(lambda s: "Keep running" in s)
        watcher.keys("y")
        run.wait_for(lambda s: "run killed from a watcher" in s)
        watcher.wait_for(lambda s: "crash" in s)  # the killed run's row reached the watcher
        watcher.keys("s")
        run.wait_for(lambda s: "stop asked from a watcher" in s)
        watcher.keys("p")
        run.wait_for(lambda s: "RUN-EXITED 0" in s)
        watcher.wait_for(lambda s: "Stopped: stopped by the user" in s)
        watcher.keys("q")
        watcher.wait_for(lambda s: "WATCH-EXITED 0" in s)
    finally:
        run.kill()
        watcher.kill()


def _watched_run(tmp_path: Path) -> tuple[Path, Pane, Pane]:
    """A watcher opened on an idle session of 2 experiments, and a headless run of it that has finished."""
    root = held_session(tmp_path, "--max-experiments", "2")
    run = Pane(tmp_path / "run.sock")
    watcher = Pane(tmp_path / "watch.sock")
    watcher.start(f"cd {root} && ESCDELAY=25 {CLI} watch; echo WATCH-EXITED $?; sleep 600")
    try:
        watcher.wait_for(lambda s: "no run is using this session" in s and "Quit" in s)
        run.start(f"cd {root} && HOLD_AT= {CLI} run --headless 2>&1; echo RUN-EXITED $?; sleep 600")
        run.wait_for(lambda s: "RUN-EXITED 0" in s)
    except BaseException:
        run.kill()
        watcher.kill()
        raise
    return root, run, watcher


def test_a_watcher_left_open_after_a_run_stops_follows_the_next_run_and_steers_it(tmp_path: Path) -> None:
    root, run, watcher = _watched_run(tmp_path)
    try:
        watcher.wait_for(lambda s: "Stopped: reached max_experiments (2)" in s and "waiting for the next" in s)
        run.kill()
        assert cli(root, "config", "max_experiments", "3").returncode == 0
        run = Pane(tmp_path / "run2.sock")
        run.start(f"cd {root} && HOLD_AT=3 {CLI} run --headless 2>&1; echo RUN-EXITED $?; sleep 600")
        run.wait_for(lambda s: "#3 running" in s)
        # The same watcher shows the new run live: the banner gone, the new run's log, its keys act again.
        watcher.wait_for(lambda s: "Stopped" not in s and "#3" in s and "step 3" in s)
        watcher.keys("s")
        run.wait_for(lambda s: "stop asked from a watcher" in s)
        watcher.keys("x")
        watcher.wait_for(lambda s: "Keep running" in s)
        watcher.keys("y")
        run.wait_for(lambda s: "RUN-EXITED 0" in s)
        watcher.wait_for(lambda s: "Stopped: stopped by the user" in s and "crash" in s)
        watcher.keys("q")
        watcher.wait_for(lambda s: "WATCH-EXITED 0" in s)
    finally:
        run.kill()
        watcher.kill()


def test_a_watcher_shows_the_rows_the_next_runs_start_left_on_disk(tmp_path: Path) -> None:
    root, run, watcher = _watched_run(tmp_path)
    try:
        run.kill()
        results = root / "results.tsv"
        header, baseline, second = results.read_text().splitlines()
        old = second.split("\t")[0]
        watcher.wait_for(lambda s: old in s and "waiting for the next" in s)
        # Between the runs the session loses its #2 (its row and its record): the next run records a new #2.
        results.write_text(f"{header}\n{baseline}\n")
        shutil.rmtree(root / ".autoresearch" / "experiments" / "0002")
        run = Pane(tmp_path / "run2.sock")
        # Another commit date: within the same second the new #2 would be the very same commit as the old one.
        dated = "GIT_COMMITTER_DATE='2001-01-01T00:00:00Z'"
        run.start(f"cd {root} && {dated} HOLD_AT= {CLI} run --headless 2>&1; echo RUN-EXITED $?; sleep 600")
        run.wait_for(lambda s: "RUN-EXITED 0" in s)
        new = results.read_text().splitlines()[2].split("\t")[0]
        assert new != old
        watcher.wait_for(lambda s: new in s and "Stopped: reached max_experiments (2)" in s)
        assert old not in watcher.screen()
        watcher.keys("q")
        watcher.wait_for(lambda s: "WATCH-EXITED 0" in s)
    finally:
        run.kill()
        watcher.kill()
