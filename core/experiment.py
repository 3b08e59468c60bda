"""One experiment: commit the proposal, run it, have it judged, record it (results.tsv, .autoresearch/),
keep it or take it off the branch; the fixes of a crash; the baseline."""

from __future__ import annotations

from dataclasses import replace

from git.exc import GitCommandError

from . import events as ev
from .config import RESULTS_FILE
from .errors import GitStateError, UserError
from .gitops import describe_git_error
from .history import ExperimentMeta
from .metric import read_metric, tail_text
from .proposer import (
    CrashInfo,
    Proposal,
    ProposalSkipped,
    Usage,
    content_key,
)
from .proposing import Proposing
from .results import (
    ResultRow,
    ResultsTable,
    append_row,
    is_better,
)
from .runner import RunOutcome
from .sanitize import one_line, safe_text
from .session_state import Kind, _exit_text, _Interrupted, _now
from .takeoff import TakeOff


class Experiment(Proposing):
    def _experiment_with_fixes(self, table: ResultsTable, number: int, proposal: Proposal) -> ResultsTable:
        table, row = self._commit_and_run(table, number, "experiment", proposal)
        attempt = 0
        while row.status == "crash" and attempt < self.config.fix_attempts and not self._stop_requested:
            if self.config.max_experiments and len(table.rows) >= self.config.max_experiments:
                break
            attempt += 1
            crashed = len(table.rows)
            meta = self.history.load_meta(crashed)
            crash = CrashInfo(
                number=crashed,
                description=row.description,
                category=meta.category if meta else "other",
                diff=self.history.read_diff(crashed),
                log_tail=tail_text(self.history.log_path(crashed), 50, 4096),
                attempt=attempt,
            )
            crashed_files = dict(self._read_editable())
            crashed_files.update(self._files_at(meta.commit if meta else ""))
            number = crashed + 1
            self._emit(ev.ExperimentStarted(number, "fix"))
            try:
                fix = self._ask_fix(table, number, crash, crashed_files)
            except ProposalSkipped as exc:
                self._note_skipped(number, exc)
                self._emit(ev.ProposalSkipped(number, f"no usable fix: {exc.reason}", 1))
                break
            if fix is None:
                break
            if not fix.description.lower().startswith("fix"):
                fix = replace(fix, description=f"fix: {fix.description}")
            table, row = self._commit_and_run(table, number, "fix", fix)
        return table

    def _commit_and_run(
        self, table: ResultsTable, number: int, kind: Kind, proposal: Proposal
    ) -> tuple[ResultsTable, ResultRow]:
        self._check_before_writing(number, proposal)
        self._claim(number)
        parent = self._expected_head
        usage = proposal.usage + self._carry
        self._carry = Usage()
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
            started_at=_now(),
        )
        message = f"exp: {meta.description}"
        self.history.write_journal(
            {"number": number, "stage": "writing", "parent": parent, "kind": kind, "message": message}
        )
        self._write_files(proposal.files)
        changed = sorted(proposal.files)
        try:
            commit = self.repo.commit_paths(changed, message, add=False)
        except GitCommandError as exc:
            # When git cannot even restore the files (a stale index.lock), the journal stays, so the next run does.
            if self._restore(parent, changed):
                self.history.clear_journal()
            raise UserError(
                f"git could not commit the experiment ({describe_git_error(exc)}); fix the repository and run again."
            ) from None
        meta.commit = commit
        meta.ref = f"refs/autoresearch/{self.config.tag}/{number}"
        self.history.write_journal({"number": number, "stage": "running", "parent": parent, "commit": commit})
        earlier = self.repo.resolve(meta.ref)
        if earlier and earlier != commit:
            # An experiment interrupted before it was recorded had this number: keep its commit under its own name.
            self.repo.update_ref(f"{meta.ref}-{earlier[:7]}", earlier)
        self.repo.update_ref(meta.ref, commit)
        diff = self.repo.diff(parent, commit, list(self.config.editable_files))
        self.history.save_diff(number, diff)
        meta.extra["content_key"] = content_key(self._read_editable())
        self.history.save_meta(meta)
        self._emit(
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
        self._expected_head = commit
        return self._run_and_judge(table, number, kind, meta)

    def _baseline(self, table: ResultsTable) -> ResultsTable:
        number = len(table.rows) + 1
        self._claim(number)
        head = self._expected_head
        self._emit(ev.ExperimentStarted(number, "baseline"))
        meta = ExperimentMeta(
            number=number, commit=head, parent=head, kind="baseline", description="baseline", started_at=_now()
        )
        meta.extra["content_key"] = content_key(self._read_editable())
        self.history.write_journal({"number": number, "stage": "running", "parent": head, "commit": head})
        self.history.save_meta(meta)
        table, _ = self._run_and_judge(table, number, "baseline", meta)
        return table

    def _run_and_judge(
        self, table: ResultsTable, number: int, kind: Kind, meta: ExperimentMeta
    ) -> tuple[ResultsTable, ResultRow]:
        outcome = self._last_outcome = self._execute(
            number, meta, started_hook=lambda: self._draft_next(table, number, meta)
        )
        if outcome.cancelled and self._cancel_reason == "stop":
            self._revert_unrecorded(meta)
            raise _Interrupted
        self._set_phase("judging", number)
        # A run that did not exit with status 0 is a crash even if it printed the metric: the value may be
        # from an evaluation before the failure.
        failed = outcome.cancelled or outcome.timed_out or bool(outcome.exit_code)
        metric_source = self.log_path
        if self.config.verify_command and not failed:
            metric_source = self.history.experiment_dir(number) / "verify.log"
            self._run_aux(self.config.verify_command, metric_source, number)
        metric = None if failed else read_metric(metric_source, self.config.metric_grep)
        memory = self._run_memory_gb
        best = table.best(self.config.higher_is_better)
        description = meta.description
        if metric is None:
            status = "crash"
            why = (
                "killed by the user"
                if outcome.cancelled
                else f"timeout {self.config.timeout_minutes:g} min"
                if outcome.timed_out
                else f"{_exit_text(outcome.exit_code)} after printing {self.config.metric_name}"
                if outcome.exit_code and read_metric(metric_source, self.config.metric_grep) is not None
                else None
            )
            if why and kind != "baseline":
                description = f"{description} ({why})"
        elif kind == "baseline":
            status = "baseline"
        elif is_better(metric, best[1].metric if best else None, self.config.higher_is_better):
            status = "keep"
            if self.config.guard_command and not self._guard_passes(number):
                status = "discard"
                description = f"{description} (guard failed)"
        else:
            status = "discard"
        row = ResultRow(
            commit=meta.commit[:7],
            metric=metric if metric is not None else 0.0,
            memory_gb=memory,
            duration_s=outcome.duration_s,
            status=status,  # type: ignore[arg-type]
            description=description if kind != "baseline" else "baseline",
        )
        if kind == "baseline" and status == "crash":
            return self._baseline_failed(table, meta, row, outcome)
        if not self.results_path.exists():
            self._write_results(table)
            self._emit(
                ev.Info(f"{RESULTS_FILE} was deleted during the session; wrote its {len(table.rows)} rows again")
            )
        append_row(self.results_path, row, table.has_duration)
        taken: TakeOff | None = None
        if status in ("discard", "crash") and kind != "baseline":
            taken = self._reset_to_parent(meta)
        meta.status = status
        meta.metric = metric
        meta.memory_gb = memory
        meta.duration_s = outcome.duration_s
        meta.exit_code = outcome.exit_code
        meta.timed_out = outcome.timed_out
        meta.finished_at = _now()
        meta.description = row.description
        self.history.save_meta(meta)
        if taken is None or taken.outcome in ("done", "moved"):
            # Otherwise the journal stays: the next start takes the experiment off once it can.
            self.history.clear_journal()
        table = ResultsTable(table.metric_name, (*table.rows, row), table.has_duration)
        key = meta.extra.get("content_key")
        if isinstance(key, str):
            self._tried.setdefault(key, number)
        new_best = table.best(self.config.higher_is_better)
        self._emit(
            ev.ResultRecorded(
                number,
                row,
                new_best[1].metric if new_best else None,
                table.baseline(),
                self._usage_total.tokens,
                self._usage_total.cost_usd,
            )
        )
        self._observe(self._records(table, {number: meta}, diffs=False)[-1])
        if taken is not None and not (taken.done and not taken.edited):
            raise GitStateError(self._not_taken_off(taken, meta, status))
        return table, row

    def _baseline_failed(
        self, table: ResultsTable, meta: ExperimentMeta, row: ResultRow, outcome: RunOutcome
    ) -> tuple[ResultsTable, ResultRow]:
        """A baseline without a metric gets no row (it would count toward max_experiments); its log stays."""
        meta.status = "failed"
        meta.duration_s = outcome.duration_s
        meta.exit_code = outcome.exit_code
        meta.timed_out = outcome.timed_out
        meta.finished_at = _now()
        self.history.save_meta(meta)
        self.history.clear_journal()
        return table, row
