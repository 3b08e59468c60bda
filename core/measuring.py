"""What the judge (core/judge.py) needs measured: the metric of a run, confirmation re-runs, the best code
run again after a timeout, and why a baseline failed."""

from __future__ import annotations

import statistics
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

    def judge_change(
        self, table: ResultsTable, number: int, meta: ExperimentMeta, metric: float, outcome: RunOutcome
    ) -> tuple[str, str, list[float], list[float]]:
        """(status, note, metrics, durations) of a change that ran and printed its metric."""
        runs, durations = [metric], [outcome.duration_s]
        metas = self.s.history.all_meta()
        ref = judge.reference(table, metas, self.s.config.higher_is_better)
        over = self.s.judge.over_budget(outcome.duration_s)
        if over:
            return "discard", over, runs, durations
        if ref is None:
            return "keep", "", runs, durations
        parent_log = self.s.history.log_path(ref.number)
        if judge.Judge.no_effect(metric, ref, self.s.log_path, parent_log, self.s.config.metric_grep):
            return "discard", f"({judge.NO_EFFECT}: same {self.s.config.metric_name} as #{ref.number})", runs, durations
        others = [
            group
            for n, m in metas.items()
            if n not in (number, ref.number) and m.metric is not None
            for group in judge.groups_of(m, m.metric)
        ]
        remeasured = ""
        while True:
            noise = self.s.judge.noise([*others, *ref.groups, runs])
            verdict = self.s.judge.decide(ref, runs, noise)
            short = verdict.action == "discard" and self.s.judge.gain(ref.mean, statistics.fmean(runs)) > 0
            if short and not remeasured and ref.fresh < judge.REMEASURE_BELOW and not self.s.judge.greedy:
                # A close miss against a best measured once: that one run may have been lucky. Measure the
                # best again (the branch goes back to it for that run) and judge once more.
                ref = self.remeasure_best(table, number, meta, ref)
                remeasured = f" (#{ref.number} re-measured)" if len(ref.runs) > 1 else " "
                continue
            if verdict.action != "confirm":
                break
            again, value = self.run_again(number, meta, len(runs) + 1)
            if value is None:
                why = "killed by the user" if again.cancelled else "timed out" if again.timed_out else "failed"
                return "crash", f"(confirmation run {len(runs) + 1} {why})", runs, durations
            runs.append(value)
            durations.append(again.duration_s)
        action, note = self.s.judge.with_compute(
            verdict.action, (verdict.note + remeasured).strip(), statistics.fmean(durations), ref
        )
        status: str = action
        if status == "keep" and self.s.config.guard_command and not self.execution.guard_passes(number):
            status, note = "discard", f"{note} (guard failed)".strip()
        return status, note, runs, durations

    def timeout_note(self, table: ResultsTable, number: int, meta: ExperimentMeta) -> tuple[str, bool]:
        """A timed-out change: reset it, run the best code again; if that is much slower than it was, the
        machine is slower now and the timeout says nothing about the idea. (note, reset done)."""
        plain = f"({judge.TIMED_OUT} {self.s.config.timeout_minutes:g} min)"
        metas = self.s.history.all_meta()
        ref = judge.reference(table, metas, self.s.config.higher_is_better)
        if (
            ref is None
            or ref.duration_s <= 0
            or self.s.stop_requested
            or not self.s.workspace.reset_to_parent(meta).done
        ):
            return plain, False
        self.s.emit(
            ev.Info(f"#{number} timed out; running the best code (#{ref.number}) again to see if the machine is slower")
        )
        again = self.execution.execute(number, meta, log_name="remeasure.log", commit=meta.parent)
        if (ended := self.execution.lost_or_stopped(again)) is not None:
            self.s.history.clear_journal()
            raise ended
        value = self.measure(number, again)
        if value is not None:
            self.add_best_run(table, ref, value, again.duration_s)
        if again.timed_out or self.s.judge.much_longer(again.duration_s, ref.duration_s):
            took = "over the timeout" if again.timed_out else f"{again.duration_s:.0f} s"
            return f"({judge.MACHINE_SLOWER}: #{ref.number} took {took} now, {ref.duration_s:.0f} s before)", True
        return plain, True

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

    def remeasure_best(self, table: ResultsTable, number: int, meta: ExperimentMeta, ref: Reference) -> Reference:
        """Run the best's code once more while the change waits: reset to the parent, run, put the change back."""
        if self.s.stop_requested or not self.s.workspace.reset_to_parent(meta).done:
            return ref
        self.s.emit(ev.Info(f"#{number} is close to #{ref.number}, which ran once; running #{ref.number} again"))
        try:
            again = self.execution.execute(number, meta, log_name=f"best-{ref.number}.log", commit=meta.parent)
            if (ended := self.execution.lost_or_stopped(again)) is not None:
                self.s.history.clear_journal()
                raise ended  # lost: the change goes back on the branch below, and its caller takes it off
            value = self.measure(number, again)
        finally:
            if self.s.cancel_reason != "stop":
                self.s.repo.reset_keep(meta.commit)
                self.s.workspace.expected_head = meta.commit
        return ref if value is None else self.add_best_run(table, ref, value, again.duration_s)
