"""The tool dies (kill -9, SIGTERM, SIGHUP) or the user moves the branch: the next run makes it consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from autoresearch.core.results import read_results

from tests.conftest import cli, git, make_repo, setup_args

PY = sys.executable


def _slow_session(tmp_path: Path, *extra: str, timeout: str = "2") -> Path:
    root = make_repo(tmp_path / "slow", script="train_slow.py")
    done = cli(root, *setup_args("--run-command", f"{PY} train.py", "--timeout", timeout, "--budget", "0.05", *extra))
    assert done.returncode == 0, done.stderr
    return root


def _start(root: Path, slow_at: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "autoresearch.core.cli", "run", "--headless"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SLOW_AT": slow_at},
        stdin=subprocess.DEVNULL,
    )


def _training_pids(root: Path) -> list[int]:
    log = (root / "run.log").read_text()
    return [int(line.split()[-1]) for line in log.splitlines() if line.startswith(("child pid", "experiment"))]


def _wait_running(root: Path, number: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (root / "run.log").exists():
            text = (root / "run.log").read_text()
            if f"experiment {number} pid" in text and "child pid" in text and "step 2 " in text:
                return _training_pids(root)
        time.sleep(0.05)
    raise AssertionError(f"experiment {number} did not start")


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _alive(pids)


def test_kill_9_mid_experiment_then_recovery(tmp_path: Path) -> None:
    root = _slow_session(tmp_path, "--max-experiments", "3")
    tool = _start(root, "2")
    pids = _wait_running(root, 2)
    tip_before_kill = git(root, "rev-parse", "HEAD")
    tool.kill()
    tool.wait(10)
    assert _alive(pids), "the orphaned training should still be running before recovery"
    assert len(read_results(root / "results.tsv").rows) == 1

    done = cli(root, "run", "--headless", env={"SLOW_AT": ""})
    assert done.returncode == 0, done.stderr
    assert "repaired: ended 3 training process(es)" in done.stdout or "repaired: ended" in done.stdout
    assert f"repaired: reverted experiment #2 ({tip_before_kill[:7]}), which had no results row" in done.stdout
    assert _wait_gone(pids) == []
    table = read_results(root / "results.tsv")
    assert len(table.rows) == 3
    assert len({r.commit for r in table.rows}) == 3
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "rev-parse", "refs/autoresearch/nov26/2") != ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_the_training_and_leave_it_consistent(tmp_path: Path, sig: int) -> None:
    root = _slow_session(tmp_path, "--max-experiments", "3")
    tool = _start(root, "2")
    pids = _wait_running(root, 2)
    parent = git(root, "rev-parse", "HEAD~1")
    tool.send_signal(sig)
    _out, err = tool.communicate(timeout=30)
    assert tool.returncode == 128 + sig
    assert "Traceback" not in err
    assert _wait_gone(pids, timeout=30) == []
    assert git(root, "rev-parse", "HEAD") == parent
    assert git(root, "status", "--porcelain") == ""
    assert not (root / ".autoresearch" / "journal.json").exists()
    assert len(read_results(root / "results.tsv").rows) == 1

    done = cli(root, "run", "--headless", env={"SLOW_AT": ""})
    assert done.returncode == 0, done.stderr
    assert "repaired" not in done.stdout
    assert len(read_results(root / "results.tsv").rows) == 3


def test_branch_moved_by_the_user_mid_session_stops_without_resetting(tmp_path: Path) -> None:
    root = _slow_session(tmp_path, "--max-experiments", "5", timeout="0.15")
    tool = _start(root, "2")
    _wait_running(root, 2)
    git(root, "commit", "-q", "--allow-empty", "-m", "my own commit")
    mine = git(root, "rev-parse", "HEAD")
    # The slow run ends at its timeout; the loop records it and must not reset past the user's commit.
    _out, err = tool.communicate(timeout=60)
    assert tool.returncode == 1
    assert "moved" in err and "Traceback" not in err
    assert git(root, "rev-parse", "HEAD") == mine
    rows = read_results(root / "results.tsv").rows
    assert len(rows) == 2 and rows[1].status == "crash"


def test_checked_out_elsewhere_is_refused_when_dirty_and_entered_when_clean(tmp_path: Path) -> None:
    root = _slow_session(tmp_path, "--max-experiments", "1")
    git(root, "checkout", "-q", "main")
    (root / "README.md").write_text("changed\n")
    done = cli(root, "run", "--headless")
    assert done.returncode == 1
    assert "uncommitted changes (README.md)" in done.stderr
    assert git(root, "branch", "--show-current") == "main"
    git(root, "checkout", "-q", "README.md")
    done = cli(root, "run", "--headless", env={"SLOW_AT": ""})
    assert done.returncode == 0, done.stderr
    assert "checked out autoresearch/nov26" in done.stdout
