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
from .session_state import _InfraLost, _Interrupted
from .workspace import Workspace


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


class Execution(Workspace):
    @functools.cached_property
    def _pruning(self) -> Pruning:
        return Pruning(self.config, self.history, self.results_path, lambda s: self._emit(ev.Info(s)))

    def _start_executor(self) -> None:
        """The executor the config asks for, checked; a cluster's jobs left by a tool that died, stopped."""
        if self._executor_from_config:
            self.executor = make_executor(self.config, self.root)
        if isinstance(self.executor, Recovering):
            self.executor.check()
            stopped = self.executor.recover()
            if stopped:
                shown = ", ".join(stopped)
                self._emit(ev.Repaired(f"stopped {len(stopped)} cluster job(s) left running by the last run ({shown})"))

    def _lost_or_stopped(self, outcome: RunOutcome) -> _Interrupted | None:
        """Why the experiment must end unrecorded: the infrastructure lost its run, or the user stopped at once."""
        if outcome.infra_error:
            return _InfraLost(outcome.infra_error)
        if outcome.cancelled and self._cancel_reason == "stop":
            return _Interrupted()
        return None

    def _execute(
        self,
        number: int,
        meta: ExperimentMeta,
        started_hook: Callable[[], None] | None = None,
        log_name: str = "run.log",
        commit: str = "",
    ) -> RunOutcome:
        """Run the training on the checkout as it is; `commit`: the one checked out when not meta's own."""
        if self._cancel_reason != "stop":
            self._cancel.clear()
            self._cancel_reason = None
        self._set_phase("running", number)
        env = run_env(self.config, number, log_name)
        started = time.time()

        def on_start(pid: int) -> None:
            self._emit(
                ev.RunStarted(
                    number, (commit or meta.commit)[:7], pid, self.config.time_budget_s, self.config.timeout_s, started
                )
            )
            if started_hook is not None:
                started_hook()

        def on_lines(lines: list[str], dropped: int) -> None:
            self._emit(ev.LogAppended(number, tuple(lines), dropped))

        first = log_name == "run.log" and meta.kind != "baseline"
        watch = self._pruning.watch(self._cancel, self.history.read_diff(number) if first else None)
        outcome = self.executor.run(
            seeded_command(self.config, env),
            self.root,
            self.log_path,
            timeout_s=self.config.timeout_s,
            env=env,
            unset_env=hidden_from_training(self.config),
            cancel=self._cancel,
            pid_file=self.history.pids_path,
            on_start=on_start,
            on_lines=watch.feeding(on_lines),
        )
        self._keep_log(number, log_name)
        watch.save(curve_path(self.history.log_path(number).with_name(log_name)), outcome)
        self._run_memory_gb = self._memory_gb(outcome)
        self._emit(
            ev.RunFinished(
                number,
                outcome.exit_code,
                outcome.duration_s,
                self._run_memory_gb,
                outcome.timed_out,
                outcome.cancelled,
            )
        )
        return outcome

    def _keep_log(self, number: int, name: str = "run.log") -> None:
        target = self.history.log_path(number).with_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(self.log_path, target)
        except OSError:
            with contextlib.suppress(OSError):
                import shutil

                shutil.copyfile(self.log_path, target)

    def _memory_gb(self, outcome: RunOutcome) -> float:
        return run_memory_gb(self.log_path, self.config, outcome)

    def _run_aux(self, command: str, log: Path, number: int, outside: bool = False) -> RunOutcome:
        """Run the guard (in the sandbox, if any) or, `outside` it, the verify command."""
        outcome = (referee(self.executor) if outside else self.executor).run(
            command,
            self.root,
            log,
            timeout_s=self.config.timeout_s,
            env={"AUTORESEARCH_EXPERIMENT": str(number), "AUTORESEARCH_TAG": self.config.tag},
            unset_env=hidden_from_training(self.config),
            cancel=self._cancel,
            pid_file=self.history.pids_path,
        )
        if outcome.infra_error:
            raise _InfraLost(outcome.infra_error)
        return outcome

    def _guard_passes(self, number: int) -> bool:
        assert self.config.guard_command
        log = self.history.experiment_dir(number) / "guard.log"
        outcome = self._run_aux(self.config.guard_command, log, number)
        passed = outcome.exit_code == 0
        if not passed:
            self._emit(ev.Info(f"#{number} guard failed (exit {outcome.exit_code}); see {log}"))
        return passed
