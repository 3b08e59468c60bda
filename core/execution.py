"""Running a training, a guard or a verify command through the session's executor (core/executor.py),
with the run's environment, its events, its log kept per experiment and its peak memory."""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path

from . import events as ev
from .config import SessionConfig
from .executor import Recovering, make_executor, referee
from .history import ExperimentMeta
from .metric import read_memory_gb
from .model_keys import hidden_from_training
from .pruning import Pruning, curve_path
from .runner import RunOutcome
from .seeds import seed_env, seeded_command
from .session_state import SessionState, _InfraLost, _Interrupted


def run_env(config: SessionConfig, number: int, log_name: str) -> dict[str, str]:
    """What every training run is told (README: the training's environment)."""
    return {
        "AUTORESEARCH_TIME_BUDGET_S": f"{config.time_budget_s:g}",
        "AUTORESEARCH_EXPERIMENT": str(number),
        "AUTORESEARCH_RUN": log_name,
        "AUTORESEARCH_TAG": config.tag,
        **seed_env(log_name, number),
    }


def run_memory_gb(log: Path, config: SessionConfig, outcome: RunOutcome) -> float:
    """The memory the script reports in its log; else the GPU memory measured; else the RAM."""
    reported = read_memory_gb(log, config.memory_grep, config.memory_unit)
    if reported is not None:
        return reported
    if outcome.peak_gpu_gb:
        return outcome.peak_gpu_gb
    return outcome.peak_rss_gb


class Execution:
    """Runs a training, guard or verify command of the session through its executor."""

    def __init__(self, state: SessionState) -> None:
        self.s = state
        self.last_memory_gb = 0.0
        """The peak memory of the last run."""

    @functools.cached_property
    def pruning(self) -> Pruning:
        return Pruning(self.s.config, self.s.history, self.s.results_path, lambda s: self.s.emit(ev.Info(s)))

    def start_executor(self) -> None:
        """The executor the config asks for, checked; a cluster's jobs left by a tool that died, stopped."""
        if self.s.executor_from_config:
            self.s.executor = make_executor(self.s.config, self.s.root)
        if isinstance(self.s.executor, Recovering):
            self.s.executor.check()
            stopped = self.s.executor.recover()
            if stopped:
                shown = ", ".join(stopped)
                self.s.emit(
                    ev.Repaired(f"stopped {len(stopped)} cluster job(s) left running by the last run ({shown})")
                )

    def lost_or_stopped(self, outcome: RunOutcome) -> _Interrupted | None:
        """Why the experiment must end unrecorded: the infrastructure lost its run, or the user stopped at once."""
        if outcome.infra_error:
            return _InfraLost(outcome.infra_error)
        if outcome.cancelled and self.s.cancel_reason == "stop":
            return _Interrupted()
        return None

    def execute(
        self,
        number: int,
        meta: ExperimentMeta,
        started_hook: Callable[[], None] | None = None,
        log_name: str = "run.log",
        commit: str = "",
    ) -> RunOutcome:
        """Run the training on the checkout as it is; `commit`: the one checked out when not meta's own."""
        if self.s.cancel_reason != "stop":
            self.s.cancel.clear()
            self.s.cancel_reason = None
        self.s.set_phase("running", number)
        env = run_env(self.s.config, number, log_name)
        started = time.time()

        def on_start(pid: int) -> None:
            self.s.emit(
                ev.RunStarted(
                    number,
                    (commit or meta.commit)[:7],
                    pid,
                    self.s.config.time_budget_s,
                    self.s.config.timeout_s,
                    started,
                )
            )
            if started_hook is not None:
                started_hook()

        def on_lines(lines: list[str], dropped: int) -> None:
            self.s.emit(ev.LogAppended(number, tuple(lines), dropped))

        first = log_name == "run.log" and meta.kind != "baseline"
        watch = self.pruning.watch(self.s.cancel, self.s.history.read_diff(number) if first else None)
        outcome = self.s.executor.run(
            seeded_command(self.s.config, env),
            self.s.root,
            self.s.log_path,
            timeout_s=self.s.config.timeout_s,
            env=env,
            unset_env=hidden_from_training(self.s.config),
            cancel=self.s.cancel,
            pid_file=self.s.history.pids_path,
            on_start=on_start,
            on_lines=watch.feeding(on_lines),
        )
        self.keep_log(number, log_name)
        watch.save(curve_path(self.s.history.log_path(number).with_name(log_name)), outcome)
        self.last_memory_gb = self.memory_gb(outcome)
        self.s.emit(
            ev.RunFinished(
                number,
                outcome.exit_code,
                outcome.duration_s,
                self.last_memory_gb,
                outcome.timed_out,
                outcome.cancelled,
            )
        )
        return outcome

    def keep_log(self, number: int, name: str = "run.log") -> None:
        target = self.s.history.log_path(number).with_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(self.s.log_path, target)
        except OSError:
            with contextlib.suppress(OSError):
                import shutil

                shutil.copyfile(self.s.log_path, target)

    def memory_gb(self, outcome: RunOutcome) -> float:
        return run_memory_gb(self.s.log_path, self.s.config, outcome)

    def run_aux(self, command: str, log: Path, number: int, outside: bool = False) -> RunOutcome:
        """Run the guard (in the sandbox, if any) or, `outside` it, the verify command."""
        outcome = (referee(self.s.executor) if outside else self.s.executor).run(
            command,
            self.s.root,
            log,
            timeout_s=self.s.config.timeout_s,
            env={"AUTORESEARCH_EXPERIMENT": str(number), "AUTORESEARCH_TAG": self.s.config.tag},
            unset_env=hidden_from_training(self.s.config),
            cancel=self.s.cancel,
            pid_file=self.s.history.pids_path,
        )
        if outcome.infra_error:
            raise _InfraLost(outcome.infra_error)
        return outcome

    def guard_passes(self, number: int) -> bool:
        assert self.s.config.guard_command
        log = self.s.history.experiment_dir(number) / "guard.log"
        outcome = self.run_aux(self.s.config.guard_command, log, number)
        passed = outcome.exit_code == 0
        if not passed:
            self.s.emit(ev.Info(f"#{number} guard failed (exit {outcome.exit_code}); see {log}"))
        return passed
