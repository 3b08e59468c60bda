"""One experiment: commit the proposal, run it, have it judged, record it (results.tsv, .autoresearch/),
keep it or take it off the branch; the fixes of a crash; the baseline."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

from git.exc import GitCommandError

from . import events as ev
from . import judge
from .errors import GitStateError, UserError
from .execution import Execution
from .gitops import describe_git_error
from .history import ExperimentMeta
from .measuring import Measuring
from .metric import tail_text
from .proposer import (
    CrashInfo,
    Proposal,
    ProposalSkipped,
    Usage,
    content_key,
)
from .proposing import Proposing
from .pruning import pruned_info
from .recording import Recording
from .results import (
    ResultRow,
    ResultsTable,
)
from .runner import RunOutcome
from .sanitize import one_line, safe_text
from .session_state import Kind, SessionState, _InfraLost, _now, crash_why
from .takeoff import TakeOff


class Experiment:
    """One experiment, from its commit to its row: committed on the checkout (`state.workspace`), run through
    `execution`, measured by `measuring` for the judge, recorded; a crash's fixes asked of `proposing`."""

    def __init__(
        self,
        state: SessionState,
        execution: Execution,
        measuring: Measuring,
        proposing: Proposing,
        recording: Recording,
    ) -> None:
        self.s = state
        self.execution = execution
        self.measuring = measuring
        self.proposing = proposing
        self.recording = recording

    def with_fixes(self, table: ResultsTable, number: int, proposal: Proposal) -> ResultsTable:
        table, row = self.commit_and_run(table, number, "experiment", proposal)
        attempt = 0
        while (
            row.status == "crash"
            and attempt < self.s.config.fix_attempts
            and not self.s.stop_requested
            and judge.MACHINE_SLOWER not in row.description
            and getattr(self.s.proposer, "makes_fixes", True)
        ):
            if self.s.config.max_experiments and len(table.rows) >= self.s.config.max_experiments:
                break
            attempt += 1
            crashed = len(table.rows)
            meta = self.s.history.load_meta(crashed)
            crash = CrashInfo(
                number=crashed,
                description=row.description,
                category=meta.category if meta else "other",
                diff=self.s.history.read_diff(crashed),
                log_tail=tail_text(self.s.history.log_path(crashed), 50, 4096),
                attempt=attempt,
            )
            crashed_files = dict(self.s.workspace.read_editable())
            crashed_files.update(self.s.workspace.files_at(meta.commit if meta else ""))
            number = crashed + 1
            self.s.emit(ev.ExperimentStarted(number, "fix"))
            try:
                fix = self.proposing.ask_fix(table, number, crash, crashed_files)
            except ProposalSkipped as exc:
                self.proposing.note_skipped(number, exc)
                self.s.emit(ev.ProposalSkipped(number, f"no usable fix: {exc.reason}", 1))
                break
            if fix is None:
                break
            if not fix.description.lower().startswith("fix"):
                fix = replace(fix, description=f"fix: {fix.description}")
            table, row = self.commit_and_run(table, number, "fix", fix)
        return table

    def commit_and_run(
        self, table: ResultsTable, number: int, kind: Kind, proposal: Proposal
    ) -> tuple[ResultsTable, ResultRow]:
        meanwhile = self.s.workspace.changed_while_proposing(number)
        if meanwhile is not None:  # nothing is written; the proposal's tokens count toward the next run
            self.s.carry += proposal.usage
            self.s.save_carry(number, "the repository changed while the model was proposing")
            raise GitStateError(meanwhile)
        self.s.workspace.claim(number)
        parent = self.s.workspace.expected_head
        usage = proposal.usage + self.s.carry
        self.s.carry = Usage()
        meta = ExperimentMeta(
            number=number,
            parent=parent,
            kind=kind,
            description=one_line(proposal.description),
            category=one_line(proposal.category),
            rationale=safe_text(proposal.rationale),
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            cost_usd=usage.cost_usd,
            propose_s=round(self.s.propose_s.pop(number, 0.0), 6),  # to the µs: the offline proposer takes ~0.5 ms
            started_at=_now(),
        )
        message = f"exp: {meta.description}"
        self.s.history.write_journal(
            {"number": number, "stage": "writing", "parent": parent, "kind": kind, "message": message}
        )
        self.s.workspace.write_files(proposal.files)
        changed = sorted(proposal.files)
        try:
            commit = self.s.repo.commit_paths(changed, message, add=False)
        except GitCommandError as exc:
            # When git cannot even restore the files (a stale index.lock), the journal stays, so the next run does.
            if self.s.workspace.restore(parent, changed):
                self.s.history.clear_journal()
            raise UserError(
                f"git could not commit the experiment ({describe_git_error(exc)}); fix the repository and run again."
            ) from None
        meta.commit = commit
        meta.ref = f"refs/autoresearch/{self.s.config.tag}/{number}"
        self.s.history.write_journal({"number": number, "stage": "running", "parent": parent, "commit": commit})
        if not self.s.repo.create_ref(meta.ref, commit):
            earlier = self.s.repo.resolve(meta.ref)
            if earlier and earlier != commit:
                # An experiment interrupted before it was recorded had this number: keep its commit under its own name.
                self.s.repo.update_ref(f"{meta.ref}-{earlier[:7]}", earlier)
            self.s.repo.update_ref(meta.ref, commit)
        diff = self.s.repo.diff(parent, commit, list(self.s.config.editable_files))
        self.s.history.save_diff(number, diff)
        meta.extra["content_key"] = content_key(self.s.workspace.read_editable())
        self.s.history.save_meta(meta)
        self.s.emit(
            ev.ProposalReady(
                number,
                meta.description,
                meta.category,
                meta.rationale,
                diff,
                meta.tokens_in,
                meta.tokens_out,
                meta.cost_usd,
            )
        )
        self.s.workspace.expected_head = commit
        try:
            return self.run_and_judge(table, number, kind, meta)
        except _InfraLost:
            if self.s.repo.head_commit() == commit:  # a guard or verify run was lost after the training ran
                self.s.workspace.revert_unrecorded(meta)
            raise

    def baseline(self, table: ResultsTable, note: str = "") -> ResultsTable:
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
            table, _ = self.run_and_judge(table, number, "baseline", meta)
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
        return self.baseline(table, note)

    def run_and_judge(
        self, table: ResultsTable, number: int, kind: Kind, meta: ExperimentMeta
    ) -> tuple[ResultsTable, ResultRow]:
        outcome = self.s.last_outcome = self.execution.execute(
            number, meta, started_hook=lambda: self.proposing.draft_next(table, number, meta)
        )
        if (ended := self.execution.lost_or_stopped(outcome)) is not None:
            self.s.workspace.revert_unrecorded(meta)
            raise ended
        self.s.set_phase("judging", number)
        metric = self.measuring.measure(number, outcome)
        metric_source = (
            self.s.history.experiment_dir(number) / "verify.log" if self.s.config.verify_command else self.s.log_path
        )
        memory = self.execution.last_memory_gb
        description = meta.description
        runs: list[float] = [] if metric is None else [metric]
        durations = [outcome.duration_s]
        reset_done = retry_allowed = False
        pruned = pruned_info(self.s.history, number) if outcome.cancelled and self.s.cancel_reason is None else None
        if pruned is not None:
            status, description = "discard", f"{description} {pruned['note']}"
        elif metric is None:
            status = "crash"
            why = crash_why(outcome, metric_source, self.s.config.metric_grep, self.s.config.metric_name)
            meta.extra["killed"] = outcome.cancelled
            if why == "timeout" and kind != "baseline":
                why, reset_done = self.measuring.timeout_note(table, number, meta)
                retry_allowed = judge.MACHINE_SLOWER in why
                description = f"{description} {why}"
            elif why and kind != "baseline":
                description = f"{description} ({why})"
        elif kind == "baseline":
            status = "baseline"
            while len(runs) < self.s.judge.baseline_runs:
                again, value = self.measuring.run_again(number, meta, len(runs) + 1)
                if value is None:
                    self.s.emit(
                        ev.Info(f"#{number} baseline run {len(runs) + 1} failed; judging on {len(runs)} run(s)")
                    )
                    break
                runs.append(value)
                durations.append(again.duration_s)
            if self.s.judge.over_budget(outcome.duration_s):
                self.s.emit(ev.Info(f"the baseline itself is {self.s.judge.over_budget(outcome.duration_s)}"))
        else:
            status, note, runs, durations = self.measuring.judge_change(table, number, meta, metric, outcome)
            if note:
                description = f"{description} {note}"
        if len(runs) > 1:
            metric = statistics.fmean(runs)
        if kind == "baseline":
            said = [f"{len(runs)} runs, {self.s.judge.noise([runs]).text()}"] if len(runs) > 1 else []
            said += [str(meta.extra["note"])] if meta.extra.get("note") else []
            description = f"baseline ({'; '.join(said)})" if said else "baseline"
        duration = statistics.fmean(durations) if status != "crash" else outcome.duration_s
        row = ResultRow(
            commit=meta.commit[:7],
            metric=metric if metric is not None else 0.0,
            memory_gb=memory,
            duration_s=duration,
            status=status,  # type: ignore[arg-type]
            description=description,
        )
        if kind == "baseline" and status == "crash":
            return self.baseline_failed(table, meta, row, outcome)
        meta.status = status
        meta.metric = metric
        meta.memory_gb = memory
        meta.duration_s = duration
        meta.exit_code = outcome.exit_code
        meta.timed_out = outcome.timed_out
        meta.finished_at = _now()
        meta.description = row.description
        meta.extra["host"] = self.s.host
        if runs:
            meta.extra["runs"] = runs
            meta.extra["durations"] = durations
        table = self.recording.write(table, row, meta)
        taken: TakeOff | None = None
        if status in ("discard", "crash") and kind != "baseline" and not reset_done:
            taken = self.s.workspace.reset_to_parent(meta)
        if taken is None or taken.outcome in ("done", "moved"):
            # Otherwise the journal stays: the next start takes the experiment off once it can.
            self.s.history.clear_journal()
        self.recording.tell(table, meta, tried=not retry_allowed)
        if taken is not None and not (taken.done and not taken.edited):
            raise GitStateError(self.s.workspace.not_taken_off(taken, meta, status))
        return table, row

    def baseline_failed(
        self, table: ResultsTable, meta: ExperimentMeta, row: ResultRow, outcome: RunOutcome
    ) -> tuple[ResultsTable, ResultRow]:
        """A baseline without a metric gets no row (it would count toward max_experiments); its log stays."""
        meta.status = "failed"
        meta.duration_s = outcome.duration_s
        meta.exit_code = outcome.exit_code
        meta.timed_out = outcome.timed_out
        meta.finished_at = _now()
        self.s.history.save_meta(meta)
        self.s.history.clear_journal()
        return table, row
