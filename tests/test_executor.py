"""The executor is the one seam through which the loop runs commands: a different one is used as given."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from autoresearch.core.executor import Executor, LocalExecutor
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.results import read_results
from autoresearch.core.runner import RunOutcome

from tests.conftest import cli, setup_args

PY = sys.executable


class CountingExecutor:
    """Runs each command locally and keeps what it was asked to run: another executor, not a stand-in."""

    def __init__(self) -> None:
        self.local = LocalExecutor()
        self.asked: list[tuple[str, str]] = []

    def run(
        self,
        command: str,
        cwd: Path,
        log_path: Path,
        *,
        timeout_s: float,
        env: Mapping[str, str],
        unset_env: Iterable[str] = (),
        cancel: threading.Event,
        pid_file: Path | None = None,
        on_start: Callable[[int], None] | None = None,
        on_lines: Callable[[list[str], int], None] | None = None,
    ) -> RunOutcome:
        self.asked.append((command, env["AUTORESEARCH_EXPERIMENT"]))
        return self.local.run(
            command,
            cwd,
            log_path,
            timeout_s=timeout_s,
            env=env,
            unset_env=unset_env,
            cancel=cancel,
            pid_file=pid_file,
            on_start=on_start,
            on_lines=on_lines,
        )


def test_the_loop_runs_every_command_through_its_executor(repo: Path) -> None:
    done = cli(repo, *setup_args("--run-command", f"{PY} train.py", "--max-experiments", "3", "--guard", "true"))
    assert done.returncode == 0, done.stderr
    executor = CountingExecutor()
    assert isinstance(executor, Executor)
    stopped = ExperimentLoop(repo, lambda event: None, executor=executor).run()
    assert stopped.ok, stopped.reason
    rows = read_results(repo / "results.tsv").rows
    trainings = [n for command, n in executor.asked if command == f"{PY} train.py"]
    assert len(rows) == 3 and sorted(set(trainings)) == ["1", "2", "3"]
    kept = sum(1 for r in rows if r.status == "keep")
    assert len([c for c, _ in executor.asked if c == "true"]) == kept, "the guard runs through it too"
