"""The baseline: the branch's code as it is, run `baseline_runs` times in the checkout before any change (the
session's noise is first measured on it), and run again when the best was measured on another machine.
Every change after it goes through the scheduler (core/scheduler.py)."""

from __future__ import annotations

import statistics
import time

from . import events as ev
from .execution import Execution
from .history import ExperimentMeta
from .measuring import Measuring
from .proposer import (
    content_key,
)
from .recording import Recording
from .results import (
    ResultRow,
    ResultsTable,
)
from .runner import RunOutcome
from .session_state import SessionState, _InfraLost, _now


class Baseline:
    """Measures the code on the branch in the checkout (`state.workspace`) through `execution` and `measuring`,
    and records it through `recording`."""

    def __init__(self, state: SessionState, execution: Execution, measuring: Measuring, recording: Recording) -> None:
        self.s = state
        self.execution = execution
        self.measuring = measuring
        self.recording = recording

    def measure(self, table: ResultsTable, note: str = "") -> ResultsTable:
        number = len(table.rows) + 1
        self.s.workspace.claim(number)
        head = self.s.workspace.expected_head
        self.s.emit(ev.ExperimentStarted(number, "baseline"))
        meta = ExperimentMeta(
            number=number, commit=head, parent=head, kind="baseline", description="baseline", started_at=_now()
        )
        meta.extra["content_key"] = content_key(self.s.workspace.read_editable())
        meta.extra["started_ts"] = time.time()  # to the µs: what the runs write is told from what was there before
        if note:
            meta.extra["note"] = note
        self.s.history.write_journal({"number": number, "stage": "running", "parent": head, "commit": head})
        self.s.history.save_meta(meta)
        try:
            table = self.run_and_record(table, number, meta)
        except _InfraLost:
            self.s.history.clear_journal()
            raise
        return table

    def remeasure_elsewhere(self, table: ResultsTable, number: int) -> ResultsTable:
        """The row results would be judged against was not measured here: measure the current code first."""
        row = table.rows[number - 1]
        note = f"re-measured here, #{number} was measured elsewhere"
        self.s.emit(
            ev.Info(
                f"#{number} ({row.metric:.6f}) was not measured by autoresearch on this machine; measuring the "
                "current code again before judging anything against it"
            )
        )
        return self.measure(table, note)

    def run_and_record(self, table: ResultsTable, number: int, meta: ExperimentMeta) -> ResultsTable:
        """Run the baseline `baseline_runs` times (the noise of the session is first measured on it) and record it."""
        outcome = self.s.last_outcome = self.execution.execute(number, meta)
        if (ended := self.execution.lost_or_stopped(outcome)) is not None:
            self.s.workspace.revert_unrecorded(meta)
            raise ended
        self.s.set_phase("judging", number)
        metric = self.measuring.measure(number, outcome)
        memory = self.execution.last_memory_gb
        if metric is None:
            return self.baseline_failed(table, meta, outcome)
        runs, durations = [metric], [outcome.duration_s]
        while len(runs) < self.s.judge.baseline_runs:
            again, value = self.measuring.run_again(number, meta, len(runs) + 1)
            if value is None:
                self.s.emit(ev.Info(f"#{number} baseline run {len(runs) + 1} failed; judging on {len(runs)} run(s)"))
                break
            runs.append(value)
            durations.append(again.duration_s)
        if self.s.judge.over_budget(outcome.duration_s):
            self.s.emit(ev.Info(f"the baseline itself is {self.s.judge.over_budget(outcome.duration_s)}"))
        said = [f"{len(runs)} runs, {self.s.judge.noise([runs]).text()}"] if len(runs) > 1 else []
        said += [str(meta.extra["note"])] if meta.extra.get("note") else []
        row = ResultRow(
            commit=meta.commit[:7],
            metric=statistics.fmean(runs),
            memory_gb=memory,
            duration_s=statistics.fmean(durations),
            status="baseline",
            description=f"baseline ({'; '.join(said)})" if said else "baseline",
        )
        meta.status = "baseline"
        meta.metric = row.metric
        meta.memory_gb = memory
        meta.duration_s = row.duration_s
        meta.exit_code = outcome.exit_code
        meta.timed_out = outcome.timed_out
        meta.finished_at = _now()
        meta.description = row.description
        meta.extra["host"] = self.s.host
        meta.extra["runs"] = runs
        meta.extra["durations"] = durations
        table = self.recording.write(table, row, meta)
        self.s.history.clear_journal()
        self.recording.tell(table, meta)
        return table

    def baseline_failed(self, table: ResultsTable, meta: ExperimentMeta, outcome: RunOutcome) -> ResultsTable:
        """A baseline without a metric gets no row (it would count toward max_experiments); its log stays."""
        meta.status = "failed"
        meta.duration_s = outcome.duration_s
        meta.exit_code = outcome.exit_code
        meta.timed_out = outcome.timed_out
        meta.finished_at = _now()
        self.s.history.save_meta(meta)
        self.s.history.clear_journal()
        return table
