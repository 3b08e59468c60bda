"""Fault injection: kill -9 of the tool at seeded random moments of a 30-experiment session, and the
other ways a session's files or repository can fail under it. After every restart the session must be
consistent: each results row matches a commit (kept ones on the branch, the others under their ref),
no half-written row, no row twice, a clean tree, no process of the dead run alive."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psutil
import pytest
from autoresearch.core.results import STATUSES, read_results

from tests.conftest import cli, git, make_repo

PY = sys.executable
TAG = "faults"
SEED = 20261126
KILLS = 20
EXPERIMENTS = 30
TARGETS = ("starting", "proposing", "committing", "running", "recording")


def _session(tmp_path: Path, *extra: str, script: str = "train_faults.py") -> Path:
    root = make_repo(tmp_path / "project", script=script)
    done = cli(
        root,
        *("setup", "train.py", "--yes", "--metric", "val_loss", "--agent", "mutate", "--tag", TAG),
        *("--run-command", f"{PY} train.py", "--budget", "0.05", "--timeout", "0.5", "--fix-attempts", "0"),
        *extra,
    )
    assert done.returncode == 0, done.stderr
    return root


def _set_config(root: Path, **values: object) -> None:
    path = root / ".autoresearch.json"
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data, indent=2) + "\n")


class Tool:
    """`autoresearch run --headless` as a subprocess whose stdout lines are collected as they come."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            [PY, "-m", "autoresearch.core.cli", "run", "--headless"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, occurrence: int = 1, timeout: float = 30) -> bool:
        """True once `occurrence` lines match; False if the tool exited first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for line in list(self.lines) if regex.search(line)) >= occurrence:
                return True
            if self.proc.poll() is not None:
                self._readers[0].join(5)
                return sum(1 for line in self.lines if regex.search(line)) >= occurrence
            time.sleep(0.002)
        raise AssertionError(f"no line matching {pattern!r} in time: {self.lines[-5:]}")

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        """Exit status, stdout and stderr, once the tool has ended."""
        self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return self.proc.returncode, "\n".join(self.lines), "".join(line + "\n" for line in self.errors)


def _descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    return alive


def _is_git(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.name().startswith("git")
    return False


def _phase(root: Path, lines: list[str]) -> str:
    """Where the stopped tool was, from its journal, its pid file and what it printed."""
    if not any(line.startswith("session ") for line in lines):
        return "starting"
    try:
        journal = json.loads((root / ".autoresearch" / "journal.json").read_text())
    except (OSError, ValueError):
        journal = None
    finished = [int(m.group(1)) for line in lines if (m := re.match(r"#(\d+) finished in", line))]
    recorded = [int(m.group(1)) for line in lines if (m := re.match(r"#(\d+) [0-9a-f]{7} ", line))]
    if journal is None:
        return "recording" if finished and (not recorded or finished[-1] > recorded[-1]) else "proposing"
    if journal.get("stage") == "writing":
        return "committing"
    if (root / ".autoresearch" / "run.pids").exists():
        return "running"
    return "recording" if finished and finished[-1] == journal.get("number") else "committing"


def _trigger(tool: Tool, target: str, rng: random.Random) -> bool:
    """Wait for the moment to kill; False when the tool ended before it."""
    nth = rng.choice((1, 1, 2))
    if target == "starting":
        time.sleep(rng.uniform(0.05, 0.4))
        return tool.proc.poll() is None
    if target == "running":
        found = tool.wait_for(r"^#\d+ running ", nth)
        time.sleep(rng.uniform(0.0, 0.15))
    elif target == "recording":
        # Right after the row is appended, before the reset and the journal's end.
        found = tool.wait_for(r"^#\d+ running ", nth)
        results = tool.root / "results.tsv"
        size = results.stat().st_size
        deadline = time.monotonic() + 10
        while results.stat().st_size == size and tool.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0002)
        time.sleep(rng.choice((0.0, rng.uniform(0.0, 0.01))))
    else:
        found = tool.wait_for(r"^#\d+ [0-9a-f]{7} ", nth)
        time.sleep(rng.uniform(0.0, 0.008) if target == "proposing" else rng.uniform(0.006, 0.03))
    return found and tool.proc.poll() is None


def _rows_and_text(root: Path) -> tuple[list[tuple[str, str]], bytes]:
    data = (root / "results.tsv").read_bytes()
    rows = [(r.commit, r.status) for r in read_results(root / "results.tsv").rows]
    return rows, data


def assert_consistent(root: Path, start: str, dead: list[psutil.Process]) -> None:
    rows, data = _rows_and_text(root)
    assert data.endswith(b"\n"), "a half-written last row"
    for line in data.decode().splitlines()[1:]:
        cells = line.split("\t")
        assert len(cells) == 6 and cells[4] in STATUSES, f"a malformed row: {line!r}"
    commits = [commit for commit, _ in rows]
    assert len(commits) == len(set(commits)), f"a row twice: {commits}"
    assert git(root, "status", "--porcelain") == ""
    assert not (root / ".autoresearch" / "journal.json").exists()
    assert not (root / ".autoresearch" / "run.pids").exists()
    on_branch = git(root, "rev-list", "--reverse", f"{start}..HEAD").split()
    kept = [commit for commit, status in rows if status == "keep"]
    assert [c[:7] for c in on_branch] == kept, "the branch holds exactly the kept experiments, in order"
    if rows:
        assert rows[0] == (start[:7], "baseline")
    for number, (commit, status) in enumerate(rows, 1):
        if status in ("discard", "crash"):
            ref = git(root, "rev-parse", f"refs/autoresearch/{TAG}/{number}")
            assert ref.startswith(commit), f"#{number} is not inspectable under its ref"
            assert subprocess.run(["git", "merge-base", "--is-ancestor", ref, "HEAD"], cwd=root).returncode == 1
    assert _alive(dead) == [], "a process of the dead run is still alive"


def _repairs(stdout: str) -> list[str]:
    return [line.removeprefix("repaired: ") for line in stdout.splitlines() if line.startswith("repaired: ")]


def _kind(repair: str) -> str:
    """A repair line without its numbers, to count repairs by kind."""
    return re.sub(r"\d+", "N", re.sub(r" \([^)]*\)", "", repair)).split(";")[0]


def test_kill_9_at_twenty_random_moments_of_a_thirty_experiment_session(tmp_path: Path) -> None:
    root = _session(tmp_path, "--max-experiments", str(EXPERIMENTS))
    start = git(root, "rev-parse", "HEAD")
    rng = random.Random(SEED)
    phases: Counter[str] = Counter()
    repaired: Counter[str] = Counter()
    kills = 0
    hits: list[str] = []
    for i in range(KILLS):
        target = TARGETS[i % len(TARGETS)]
        tool = Tool(root)
        if not _trigger(tool, target, rng):
            code, out, err = tool.finish()
            pytest.fail(f"kill {i + 1}: the run ended before the kill ({code}): {out[-300:]} {err[-300:]}")
        os.kill(tool.proc.pid, signal.SIGSTOP)
        time.sleep(0.03)  # let the reader take what the tool printed before it stopped
        phase = _phase(root, list(tool.lines))
        phases[phase] += 1
        hits.append(f"{target}->{phase}")
        tree = _descendants(tool.proc.pid)
        journal_before = (root / ".autoresearch" / "journal.json").exists()
        tool.proc.kill()
        tool.finish()
        kills += 1
        helpers = [p for p in tree if not _is_git(p)]
        # git commands the tool had started finish on their own; only the training may outlive it.
        psutil.wait_procs([p for p in tree if _is_git(p)], timeout=10)
        still_running = _alive(helpers)

        rows_before = len(read_results(root / "results.tsv").rows) if (root / "results.tsv").exists() else 0
        _set_config(root, max_experiments=max(rows_before, 1))
        check = cli(root, "run", "--headless")
        assert check.returncode == 0, f"restart after kill {i + 1} ({phase}): {check.stdout}\n{check.stderr}"
        assert "Traceback" not in check.stderr
        found = _repairs(check.stdout)
        repaired.update(_kind(r) for r in found)
        if still_running:
            assert any(r.startswith("ended ") and "training process(es) left by the last run" in r for r in found)
        if phase == "running" and journal_before:
            assert any("which had no results row" in r or "interrupted before it was recorded" in r for r in found)
        assert_consistent(root, start, tree)
        _set_config(root, max_experiments=EXPERIMENTS)

    done = cli(root, "run", "--headless")
    assert done.returncode == 0, done.stderr
    assert f"stopped: reached max_experiments ({EXPERIMENTS})" in done.stdout
    assert_consistent(root, start, [])
    rows = read_results(root / "results.tsv").rows
    assert len(rows) == EXPERIMENTS
    assert {"keep", "discard"} <= {r.status for r in rows}
    assert kills == KILLS
    assert phases["running"] >= 3 and len(phases) >= 4, f"the kills should spread over the phases: {phases}"
    print(f"\nkills by phase: {dict(phases)}\nrepairs: {dict(repaired)}\ntarget->phase: {hits}")


def test_failing_git_hooks_do_not_break_the_loop(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "project", script="train_faults.py")
    hooks = root / ".git" / "hooks"
    for name in ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit"):
        (hooks / name).write_text(f"#!/bin/sh\ntouch '{hooks}/ran-{name}'\necho '{name} says no' >&2\nexit 1\n")
        (hooks / name).chmod(0o755)
    assert subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "mine"], cwd=root).returncode != 0
    for marker in hooks.glob("ran-*"):
        marker.unlink()
    start_before = git(root, "rev-parse", "HEAD")

    done = cli(
        root,
        *("setup", "train.py", "--yes", "--metric", "val_loss", "--agent", "mutate", "--tag", TAG),
        *("--run-command", f"{PY} train.py", "--budget", "0.05", "--timeout", "0.5", "--max-experiments", "4"),
    )
    assert done.returncode == 0, done.stderr
    start = git(root, "rev-parse", "HEAD")
    assert git(root, "rev-parse", "HEAD~1") == start_before, "setup's .gitignore commit went through"
    done = cli(root, "run", "--headless")
    assert done.returncode == 0, done.stderr
    assert "stopped: reached max_experiments (4)" in done.stdout
    assert sorted(p.name for p in hooks.glob("ran-*")) == [], "the tool's own commits run no hooks"
    assert_consistent(root, start, [])
    assert len(read_results(root / "results.tsv").rows) == 4


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """chmod a-w; as root, which ignores modes, the immutable attribute instead (or skip)."""
    mode = path.stat().st_mode
    path.chmod(0o444)
    immutable = False
    try:
        if os.access(path, os.W_OK):
            immutable = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("running as root without chattr: a file cannot be made read-only here")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


def test_read_only_results_file_stops_with_one_sentence_and_loses_nothing(tmp_path: Path) -> None:
    root = _session(tmp_path, "--max-experiments", "2")
    start = git(root, "rev-parse", "HEAD")
    assert cli(root, "run", "--headless").returncode == 0
    _set_config(root, max_experiments=4)
    before = (root / "results.tsv").read_bytes()
    head = git(root, "rev-parse", "HEAD")
    with _read_only(root / "results.tsv"):
        done = cli(root, "run", "--headless")
    assert done.returncode == 1
    assert done.stderr == "stopped: results.tsv is not writable; fix its permissions (chmod u+w results.tsv).\n"
    assert "needs you: results.tsv is not writable" in done.stdout
    assert (root / "results.tsv").read_bytes() == before
    assert git(root, "rev-parse", "HEAD") == head
    assert_consistent(root, start, [])

    # Made read-only while an experiment runs: the loop stops at the append; the next run reverts that experiment.
    tool = Tool(root, env={"FAULTS_EXTRA_S": "0.5"})
    assert tool.wait_for(r"^#3 running ")
    with _read_only(root / "results.tsv"):
        code, _out, err = tool.finish()
    assert code == 1
    assert err == "stopped: results.tsv is not writable; fix its permissions (chmod u+w results.tsv).\n"
    assert (root / "results.tsv").read_bytes() == before
    done = cli(root, "run", "--headless")
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"repaired: reverted experiment #3 \([0-9a-f]{7}\), which had no results row; "
        rf"it stays at refs/autoresearch/{TAG}/3",
        done.stdout,
    )
    assert (root / "results.tsv").read_bytes().startswith(before)
    assert len(read_results(root / "results.tsv").rows) == 4
    assert_consistent(root, start, [])


def test_results_file_deleted_mid_session_and_between_runs(tmp_path: Path) -> None:
    root = _session(tmp_path, "--max-experiments", "4")
    start = git(root, "rev-parse", "HEAD")
    tool = Tool(root, env={"FAULTS_EXTRA_S": "0.4"})
    assert tool.wait_for(r"^#3 running ")
    before = (root / "results.tsv").read_bytes()
    (root / "results.tsv").unlink()
    code, out, err = tool.finish()
    assert code == 0, err
    assert "results.tsv was deleted during the session; wrote its 2 rows again" in out
    after = (root / "results.tsv").read_bytes()
    assert after.startswith(before) and len(read_results(root / "results.tsv").rows) == 4
    assert_consistent(root, start, [])

    (root / "results.tsv").unlink()
    _set_config(root, max_experiments=5)
    done = cli(root, "run", "--headless")
    assert done.returncode == 0, done.stderr
    assert "results.tsv was missing; rebuilt its 4 rows from .autoresearch/" in done.stdout
    assert (root / "results.tsv").read_bytes().startswith(after)
    assert len(read_results(root / "results.tsv").rows) == 5
    assert_consistent(root, start, [])


def test_state_folder_deleted_mid_session(tmp_path: Path) -> None:
    root = _session(tmp_path, "--max-experiments", "4")
    start = git(root, "rev-parse", "HEAD")
    tool = Tool(root, env={"FAULTS_EXTRA_S": "0.4"})
    assert tool.wait_for(r"^#3 running ")
    shutil.rmtree(root / ".autoresearch", ignore_errors=True)
    code, _out, err = tool.finish()
    assert code == 0, err
    assert "Traceback" not in err
    assert len(read_results(root / "results.tsv").rows) == 4
    assert_consistent(root, start, [])
    assert (root / ".autoresearch" / "experiments" / "0004" / "meta.json").exists()

    _set_config(root, max_experiments=5)
    done = cli(root, "run", "--headless")
    assert done.returncode == 0, done.stderr
    assert "repaired" not in done.stdout
    assert len(read_results(root / "results.tsv").rows) == 5
    assert_consistent(root, start, [])


def test_stale_index_lock_is_named_and_the_half_written_experiment_restored(tmp_path: Path) -> None:
    """What a power cut during a git command leaves: .git/index.lock. The tool names it and never removes it."""
    root = _session(tmp_path, "--max-experiments", "1")
    start = git(root, "rev-parse", "HEAD")
    assert cli(root, "run", "--headless").returncode == 0
    _set_config(root, max_experiments=2)
    lock = root / ".git" / "index.lock"
    lock.write_text("")
    done = cli(root, "run", "--headless")
    assert done.returncode == 1
    assert done.stderr == (
        f"stopped: git could not commit the experiment (fatal: Unable to create '{lock}': File exists.); "
        "fix the repository and run again.\n"
    )
    assert lock.exists()
    lock.unlink()
    done = cli(root, "run", "--headless")
    assert done.returncode == 0, done.stderr
    assert "repaired: restored train.py to the last commit (an experiment was half-written)" in done.stdout
    assert len(read_results(root / "results.tsv").rows) == 2
    assert_consistent(root, start, [])


WORKER_KILLS = 8
WORKER_EXPERIMENTS = 16


def assert_consistent_with_workers(root: Path, start: str, dead: list[psutil.Process]) -> None:
    """As assert_consistent, for a session with workers: rows finish in any order, the branch moves only to
    a kept commit built on the last one, the workers' directories are gone after a restart."""
    rows, data = _rows_and_text(root)
    assert data.endswith(b"\n"), "a half-written last row"
    commits = [commit for commit, _ in rows]
    assert len(commits) == len(set(commits)), f"a row twice: {commits}"
    assert git(root, "status", "--porcelain") == ""
    assert not (root / ".autoresearch" / "workers").exists()
    assert "autoresearch/workers" not in git(root, "worktree", "list")
    on_branch = git(root, "rev-list", "--reverse", f"{start}..HEAD").split()
    assert [c[:7] for c in on_branch] == [c for c, s in rows if s == "keep"], "the branch holds the keeps, in order"
    for number, (commit, _status) in enumerate(rows, 1):
        if number > 1:
            assert git(root, "rev-parse", f"refs/autoresearch/{TAG}/{number}").startswith(commit)
    assert _alive(dead) == [], "a process of the dead run is still alive"


def test_kill_9_with_three_workers_in_flight_at_random_moments(tmp_path: Path) -> None:
    root = _session(tmp_path, "--max-experiments", str(WORKER_EXPERIMENTS), "--workers", "3", "--timeout", "1")
    start = git(root, "rev-parse", "HEAD")
    rng = random.Random(SEED + 3)
    for i in range(WORKER_KILLS):
        tool = Tool(root)
        # While runs go: after the n-th line that a worker took up an idea, up to 0.3 s later.
        if not tool.wait_for(r"^worker \d (on device \S+ )?running", rng.randint(1, 4)):
            code, out, err = tool.finish()
            pytest.fail(f"kill {i + 1}: the run ended before the kill ({code}): {out[-300:]} {err[-300:]}")
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(tool.proc.pid, signal.SIGSTOP)
        tree = _descendants(tool.proc.pid)
        tool.proc.kill()
        tool.finish()
        psutil.wait_procs([p for p in tree if _is_git(p)], timeout=10)
        rows_before = len(read_results(root / "results.tsv").rows)
        _set_config(root, max_experiments=max(rows_before, 1))
        check = cli(root, "run", "--headless")
        assert check.returncode == 0, f"restart after kill {i + 1}: {check.stdout}\n{check.stderr}"
        assert "Traceback" not in check.stderr
        assert len(read_results(root / "results.tsv").rows) >= rows_before, "a row was lost"
        assert_consistent_with_workers(root, start, [p for p in tree if not _is_git(p)])
        _set_config(root, max_experiments=WORKER_EXPERIMENTS)
    done = cli(root, "run", "--headless", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"stopped: reached max_experiments ({WORKER_EXPERIMENTS})" in done.stdout
    assert_consistent_with_workers(root, start, [])
    assert len(read_results(root / "results.tsv").rows) == WORKER_EXPERIMENTS
