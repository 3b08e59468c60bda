"""The executor: the one interface through which the loop runs a command and learns its outcome.

The loop hands it a command, the directory and log file to run it in, a hard timeout, the environment to
add and an event that cancels the run; it gets back a `RunOutcome` (exit status, duration, peak memory,
timed out, cancelled). `LocalExecutor` runs the command as a local process tree (core/runner.py); a cluster
engine (Ray, Slurm) is another implementation of the same `run`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .runner import RunOutcome, run_command

if TYPE_CHECKING:
    from .config import SessionConfig
    from .sandbox import Sandbox


@runtime_checkable
class Executor(Protocol):
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
        """Run `command` in `cwd` with its output in a fresh `log_path`; nothing it started outlives the call.

        `on_start` gets the pid of the started process, `on_lines` the new lines of the log (and how many were
        dropped) while it runs. A `cancel` set before or during the run ends it with `cancelled` true. The command
        sees this process's environment without the variables named in `unset_env`, plus `env`.
        """
        ...


class LocalExecutor:
    """Runs each command as a local process tree, killed whole at timeout, cancel or exit (core/runner.py);
    inside `sandbox` when one is given (core/sandbox.py)."""

    def __init__(self, sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox

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
        return run_command(
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
            wrap=self.sandbox.wrap if self.sandbox is not None else None,
        )


def referee(executor: Executor) -> Executor:
    """Where the verify command runs: outside the sandbox, where it can read the referee files."""
    if isinstance(executor, LocalExecutor) and executor.sandbox is not None:
        return LocalExecutor()
    return executor


@runtime_checkable
class Recovering(Protocol):
    """An executor whose runs outlive the tool (a cluster's jobs): checked and cleaned up when a session starts."""

    def check(self) -> None:
        """Raise a UserError (one sentence) when the runs cannot go where the config sends them."""
        ...

    def recover(self) -> list[str]:
        """End the runs a dead tool of this session left going; what was ended."""
        ...


def make_executor(config: SessionConfig, root: Path) -> Executor:
    """The executor the session's config asks for (`executor`: "local" or "ray"; `sandbox`), once the model's
    key is out of this process's environment (core/model_keys.py)."""
    from .model_keys import keep_keys_from_children
    from .sandbox import sandbox_for

    keep_keys_from_children(config)
    if config.executor == "ray":
        from .ray_executor import executor_for

        return executor_for(config, root)
    return LocalExecutor(sandbox_for(config, root))
