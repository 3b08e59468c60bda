"""What the judge (core/judge.py) needs measured: the metric of a run, confirmation re-runs, the best code
run again after a timeout, and why a baseline failed."""

from __future__ import annotations

from dataclasses import replace

from . import events as ev
from . import judge
from .execution import Execution
from .history import ExperimentMeta
from .judge import Reference
from .metric import read_metric
from .results import (
    ResultsTable,
)
from .runner import RunOutcome
from .session_state import SessionState


class Measuring:
    """What the judge needs measured, run through `execution` on the session's checkout."""

    def __init__(self, state: SessionState, execution: Execution) -> None:
        self.s = state
        self.execution = execution

    def measure(self, number: int, outcome: RunOutcome, repeat: int = 1) -> float | None:
        """The metric of a run that exited with status 0 (from verify_command's output when one is set)."""
        # A run that did not exit with status 0 is a crash even if it printed the metric: the value may be
        # from an evaluation before the failure.
        if outcome.cancelled or outcome.timed_out or bool(outcome.exit_code):
            return None
        source = self.s.log_path
        if self.s.config.verify_command:
            suffix = "" if repeat == 1 else f"-{repeat}"
            source = self.s.history.experiment_dir(number) / f"verify{suffix}.log"
            self.execution.run_aux(self.s.config.verify_command, source, number, outside=True)
        return read_metric(source, self.s.config.metric_grep)

    def run_again(self, number: int, meta: ExperimentMeta, repeat: int) -> tuple[RunOutcome, float | None]:
        self.s.emit(ev.Info(f"#{number} run {repeat}: running the same code again to measure the noise"))
        outcome = self.execution.execute(number, meta, log_name=f"run-{repeat}.log")
        if (ended := self.execution.lost_or_stopped(outcome)) is not None:
            self.s.workspace.revert_unrecorded(meta)
            raise ended
        return outcome, self.measure(number, outcome, repeat)

    def baseline_failure(self) -> str:
        from .first_run import diagnose

        return diagnose(self.s.config, self.s.last_outcome, self.s.log_path)

    def add_best_run(self, table: ResultsTable, ref: Reference, value: float, duration_s: float) -> Reference:
        """One more run of the best's code, kept in its meta.json (its mean is what changes are judged against)."""
        best_meta = self.s.history.load_meta(ref.number)
        if best_meta is None or not judge.matches(best_meta, table.rows[ref.number - 1].commit, best_meta.status):
            return ref
        # Apart from `runs`, whose mean is the row's metric: results.tsv rows are never rewritten.
        best_meta.extra["remeasured_runs"] = [*best_meta.extra.get("remeasured_runs", []), value]
        best_meta.extra["remeasured_durations"] = [*best_meta.extra.get("remeasured_durations", []), duration_s]
        self.s.history.save_meta(best_meta)
        return replace(ref, runs=(*ref.runs, value))
