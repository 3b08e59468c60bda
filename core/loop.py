"""The experiment loop: propose, commit, run, judge, keep or reset, record. One thread runs it.

Other threads control it only through pause(), resume(), stop(), skip(), stop_now() and
queue_idea(); it reports only through events sent to `sink`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from git.exc import GitCommandError

from . import events as ev
from .config import CONFIG_FILE, RESULTS_FILE, RUN_LOG, SessionConfig, load_config
from .errors import ConfigError, GitStateError, UserError
from .gitops import Repo, describe_git_error, disk_full
from .history import ExperimentMeta, History
from .loss_curve import loss_curve
from .metric import read_memory_gb, read_metric, tail_text
from .model_keys import hidden_from_training
from .proposer import (
    CrashInfo,
    ExperimentRecord,
    Proposal,
    ProposalContext,
    ProposalSkipped,
    Proposer,
    Usage,
    content_key,
)
from .recovery import recover
from .results import (
    STATUSES,
    ResultRow,
    ResultsTable,
    append_row,
    check_writable,
    header,
    is_better,
    read_results,
)
from .runner import RunOutcome, run_command
from .sanitize import one_line, safe_text
from .session_lock import SessionLock
from .syntax_check import syntax_problem
from .takeoff import TakeOff, sentence, take_off
from .writable import require_writable, unwritable_message

Kind = Literal["baseline", "experiment", "fix"]
_DISK_FULL = "The disk is full{where}; free some space and run again, which finishes what this run left."
RECENT_DIFFS = 5


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _exit_text(code: int | None) -> str:
    return f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"


class _Interrupted(Exception):
    """stop_now() ended the experiment in flight: it was reverted and is not recorded."""


class ExperimentLoop:
    def __init__(
        self,
        root: Path,
        sink: ev.EventSink,
        proposer: Proposer | None = None,
        *,
        when_stuck: Literal["stop", "pause"] = "stop",
    ) -> None:
        self.repo = Repo(root)
        self.root = self.repo.root
        self.config: SessionConfig = load_config(self.root)
        self.history = History(self.root)
        self.results_path = self.root / RESULTS_FILE
        self.log_path = self.root / RUN_LOG
        self._sink = sink
        self._proposer = proposer
        self._when_stuck = when_stuck
        self._cond = threading.Condition()
        self._pause_requested = False
        self._stop_requested = False
        self._cancel = threading.Event()
        self._cancel_reason: Literal["skip", "stop"] | None = None
        self.phase: ev.Phase = "starting"
        self._expected_head = ""
        self._usage_total = Usage()
        self._carry = Usage()
        self._run_memory_gb = 0.0
        self._tried: dict[str, int] = {}
        self._last_outcome: RunOutcome | None = None
        self._lock = SessionLock(self.repo)

    # Thread-safe controls.

    @property
    def paused(self) -> bool:
        return self._pause_requested

    def pause(self) -> None:
        with self._cond:
            self._pause_requested = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._pause_requested = False
            self._cond.notify_all()

    def stop(self) -> None:
        """Stop after the current experiment."""
        with self._cond:
            self._stop_requested = True
            self._cond.notify_all()

    def skip(self) -> None:
        """Kill the current run now; it is recorded as a crash and the loop goes on."""
        if self.phase == "running":
            self._cancel_reason = "skip"
            self._cancel.set()

    def stop_now(self) -> None:
        """Kill the current run, revert its commit without recording it, and stop."""
        with self._cond:
            self._stop_requested = True
            self._cancel_reason = "stop"
            self._cancel.set()
            self._cond.notify_all()

    def queue_idea(self, text: str) -> None:
        if text.strip():
            self.history.queue_idea(text)
            self._emit(ev.Info(f"idea queued for the next experiment: {' '.join(text.split())}"))

    # Running.

    def run(self) -> ev.LoopStopped:
        try:
            stopped = self._run()
        except UserError as exc:
            stopped = ev.LoopStopped(exc.message, ok=False, experiments=self._rows_count())
        except GitCommandError as exc:
            reason = f"git failed: {describe_git_error(exc)}; fix the repository and run again."
            if disk_full(exc):
                reason = _DISK_FULL.format(where=f" (git: {describe_git_error(exc)})")
            stopped = ev.LoopStopped(reason, ok=False, experiments=self._rows_count())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                where = f" (writing {exc.filename})" if exc.filename else ""
                reason = _DISK_FULL.format(where=where)
            elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                reason = unwritable_message(self.root, exc)
            else:
                raise
            stopped = ev.LoopStopped(reason, ok=False, experiments=self._rows_count())
        finally:
            self._release_lock()
        self._set_phase("stopped", self._rows_count())
        if not stopped.ok:
            self._emit(ev.NeedsUser(stopped.reason))
        self._emit(stopped)
        return stopped

    def _emit(self, event: ev.Event) -> None:
        with contextlib.suppress(Exception):
            self._sink(event)

    def _set_phase(self, phase: ev.Phase, number: int) -> None:
        self.phase = phase
        self._emit(ev.PhaseChanged(phase, number))

    def _rows_count(self) -> int:
        try:
            return len(read_results(self.results_path).rows)
        except UserError:
            return 0

    def _acquire_lock(self) -> None:
        self._lock.acquire(
            "Another autoresearch run (pid {pid}) is using this session; stop it first (or wait for it)."
        )

    def _release_lock(self) -> None:
        self._lock.release()

    def _run(self) -> ev.LoopStopped:
        self._check_session_files()
        self._acquire_lock()
        for message in recover(self.repo, self.config, self.history, self.results_path):
            self._emit(ev.Repaired(message))
        self._enter_branch()
        if not self.results_path.exists():
            rows = self._rows_from_history()
            self._write_results(ResultsTable(self.config.metric_name, rows))
            if rows:
                self._emit(ev.Info(f"{RESULTS_FILE} was missing; rebuilt its {len(rows)} rows from .autoresearch/"))
            else:
                self._emit(ev.Info(f"{RESULTS_FILE} was missing; started a new one"))
        check_writable(self.results_path)
        table = self._reconcile(read_results(self.results_path))
        if self._proposer is None:
            from .agents import make_proposer

            self._proposer = make_proposer(self.config, self.root)
        metas = self.history.all_meta()
        for meta in metas.values():
            self._usage_total += Usage(meta.tokens_in, meta.tokens_out, meta.cost_usd)
            key = meta.extra.get("content_key")
            if isinstance(key, str) and meta.number <= len(table.rows):
                self._tried.setdefault(key, meta.number)
        pending = metas.get(len(table.rows) + 1)
        if pending is not None and pending.status == "skipped":
            self._carry = Usage(pending.tokens_in, pending.tokens_out, pending.cost_usd)
        for record in self._records(table, metas, diffs=False):
            self._proposer.observe(record)
        self._emit(
            ev.SessionStarted(
                self.config.tag,
                self.config.branch,
                self.config.metric_name,
                self.config.metric_direction,
                len(table.rows),
                self.config.max_experiments,
            )
        )
        try:
            return self._experiments(table)
        except _Interrupted:
            return ev.LoopStopped("stopped by the user", ok=True, experiments=self._rows_count())

    def _check_session_files(self) -> None:
        """Refuse files outside the repository (they would be sent to a model or overwritten) or missing."""
        for key, what in (("editable_files", "editable"), ("readonly_files", "readonly")):
            for path in getattr(self.config, key):
                try:
                    resolved = (self.root / path).resolve()
                    resolved.relative_to(self.root)
                except (ValueError, OSError):
                    raise ConfigError(
                        f"In {CONFIG_FILE}, the {what} file {path} is outside the repository {self.root}; "
                        f"list files inside it."
                    ) from None
                if not resolved.is_file():
                    raise ConfigError(
                        f"In {CONFIG_FILE}, the {what} file {path} does not exist; fix {key} or restore the file."
                    )
                if what == "editable" and not self.repo.is_tracked(path):
                    raise GitStateError(self.repo.untracked_message(path))
                if what == "editable":
                    require_writable(self.root, resolved)

    def _rows_from_history(self) -> tuple[ResultRow, ...]:
        """The rows .autoresearch/ still knows, in order, up to the first experiment it has no result for."""
        metas = self.history.all_meta()
        rows: list[ResultRow] = []
        while (meta := metas.get(len(rows) + 1)) is not None and meta.status in STATUSES and meta.commit:
            rows.append(
                ResultRow(
                    commit=meta.commit[:7],
                    metric=meta.metric if meta.metric is not None else 0.0,
                    memory_gb=meta.memory_gb,
                    duration_s=meta.duration_s,
                    status=meta.status,  # type: ignore[arg-type]
                    description=meta.description,
                )
            )
        return tuple(rows)

    def _reconcile(self, table: ResultsTable) -> ResultsTable:
        """Refuse a results.tsv the loop cannot append to safely; rebuild rows it lost from .autoresearch/."""
        name = RESULTS_FILE
        if table.foreign_columns:
            raise UserError(
                f"{name} has a column autoresearch does not write ({table.foreign_columns[0]}), so new rows would "
                f"not line up; remove that column (the file was not changed) and run again."
            )
        if table.unreadable_lines:
            line = table.unreadable_lines[0]
            raise UserError(
                f"Line {line} of {name} is not a row autoresearch can read (its status is not one of "
                f"{', '.join(STATUSES)}); fix or remove it (the file was not changed) and run again."
            )
        known = self._rows_from_history()
        if len(known) <= len(table.rows):
            return table
        for number, (row, kept) in enumerate(zip(table.rows, known, strict=False), 1):
            if row.commit[:7] != kept.commit[:7]:
                raise UserError(
                    f"Row {number} of {name} (commit {row.commit}) differs from .autoresearch/experiments/"
                    f"{number:04d} (commit {kept.commit}); restore the session's {name} (the file was not changed) "
                    "and run again."
                )
        copy = self.history.dir / f"{name}.damaged"
        n = 1
        while copy.exists():
            n += 1
            copy = self.history.dir / f"{name}.damaged-{n}"
        copy.write_bytes(self.results_path.read_bytes())
        rebuilt = ResultsTable(table.metric_name, known, table.has_duration)
        self._write_results(rebuilt)
        self._emit(
            ev.Repaired(
                f"{name} held {len(table.rows)} of the {len(known)} rows .autoresearch/ records; rebuilt the others "
                f"from .autoresearch/ (the file as it was is kept in {copy.relative_to(self.root).as_posix()})"
            )
        )
        return rebuilt

    def _write_results(self, table: ResultsTable) -> None:
        text = header(table.metric_name) + "".join(r.to_line(table.has_duration) for r in table.rows)
        if not table.has_duration:
            text = text.replace("\tduration_s", "", 1)
        tmp = self.results_path.with_name(f".{RESULTS_FILE}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.results_path)

    def _enter_branch(self) -> None:
        branch = self.config.branch
        current = self.repo.current_branch()
        if current != branch:
            if not self.repo.branch_exists(branch):
                raise GitStateError(
                    f"The session's branch {branch} does not exist; run `autoresearch setup SCRIPT` to start anew."
                )
            self._require_clean()
            self.repo.checkout(branch)
            self._emit(ev.Info(f"checked out {branch}"))
        self._require_clean()
        head = self.repo.head_commit()
        assert head is not None
        self._expected_head = head

    def _require_clean(self) -> None:
        dirty = self.repo.changed_tracked_files()
        if dirty:
            shown = ", ".join(dirty[:3]) + (" ..." if len(dirty) > 3 else "")
            raise GitStateError(
                f"The working tree has uncommitted changes ({shown}); commit or stash them (git stash) and run again."
            )

    def _check_position(self) -> None:
        """Stop instead of touching anything if the user moved the branch, switched branches or edited files."""
        current, head, dirty = self.repo.position()
        if current != self.config.branch:
            where = current or "a detached HEAD"
            raise GitStateError(
                f"The repository is on {where}, not {self.config.branch}; the loop stopped without changing anything "
                f"(git checkout {self.config.branch}, then run again)."
            )
        if head != self._expected_head:
            raise GitStateError(
                f"{self.config.branch} moved to {(head or '?')[:7]} while the loop expected "
                f"{self._expected_head[:7]}; the loop stopped without resetting anything "
                "(run again to go on from there)."
            )
        if dirty:
            self._require_clean()

    def _check_before_writing(self, number: int, proposal: Proposal) -> None:
        """The model may think for minutes: stop, writing nothing, if the user edited, committed or switched meanwhile.

        Runs right before the experiment's files are written, so an edit made while the model was thinking is
        never overwritten or committed with the experiment. The proposal's tokens still count (for the next run).
        """
        current, head, dirty = self.repo.position()
        branch = self.config.branch
        if current == branch and head == self._expected_head and not dirty:
            return
        self._carry += proposal.usage
        self._save_carry(number, "the repository changed while the model was proposing")
        during = f"while the model was proposing experiment #{number}"
        if current != branch:
            where = f"switched to {current}" if current else "put on a detached HEAD"
            raise GitStateError(
                f"The repository was {where} {during}; the loop stopped without committing anything "
                f"(git checkout {branch}, then run again)."
            )
        if head != self._expected_head:
            raise GitStateError(
                f"{branch} moved to {(head or '?')[:7]}, a commit autoresearch did not make, {during}; the loop "
                "stopped without committing anything and your commit stays (run again to go on from it)."
            )
        shown = ", ".join(dirty[:3]) + (" ..." if len(dirty) > 3 else "")
        raise GitStateError(
            f"{shown} changed {during}; the loop stopped without writing anything, so your edit is untouched "
            "(commit it or stash it (git stash), then run again)."
        )

    # The session.

    def _experiments(self, table: ResultsTable) -> ev.LoopStopped:
        if table.baseline() is None and table.best(self.config.higher_is_better) is None:
            table = self._baseline(table)
            if table.baseline() is None:
                return ev.LoopStopped(self._baseline_failure(), ok=False, experiments=len(table.rows))
        skips = 0
        while True:
            reason = self._stop_rule(table)
            if reason:
                return ev.LoopStopped(reason, ok=True, experiments=len(table.rows))
            if not self._wait_if_paused(len(table.rows)):
                return ev.LoopStopped("stopped by the user", ok=True, experiments=len(table.rows))
            self._check_position()
            number = len(table.rows) + 1
            self._emit(ev.ExperimentStarted(number, "experiment"))
            idea = self.history.pop_idea()
            try:
                proposal = self._ask(table, number, user_idea=idea)
            except _Interrupted:
                if idea:
                    self.history.requeue_idea(idea)
                raise
            except ProposalSkipped as exc:
                self._note_skipped(number, exc)
                if idea:
                    self.history.requeue_idea(idea)
                skips += 1
                self._emit(ev.ProposalSkipped(number, exc.reason, skips))
                if skips >= self.config.max_skips_in_a_row:
                    message = (
                        f"{skips} proposal{'s' if skips > 1 else ''} in a row could not be used (last: {exc.reason}); "
                        "check the model and the editable files, then "
                        + ("run again." if self._when_stuck == "stop" else "resume (p).")
                    )
                    if self._when_stuck == "stop":
                        return ev.LoopStopped(message, ok=False, experiments=len(table.rows))
                    self._emit(ev.NeedsUser(message))
                    self.pause()
                    skips = 0
                continue
            if proposal is None:
                why = getattr(self._proposer, "stop_reason", None) or "the agent has nothing left to propose"
                return ev.LoopStopped(why, ok=True, experiments=len(table.rows))
            if self._stop_requested:
                return ev.LoopStopped("stopped by the user", ok=True, experiments=len(table.rows))
            skips = 0
            table = self._experiment_with_fixes(table, number, proposal)

    def _note_skipped(self, number: int, exc: ProposalSkipped) -> None:
        """Tokens spent on unusable proposals count toward the experiment that eventually runs as `number`."""
        self._usage_total += exc.usage
        self._carry += exc.usage
        self._save_carry(number, exc.reason)

    def _save_carry(self, number: int, note: str) -> None:
        if self._carry.tokens or self._carry.cost_usd:
            self.history.save_meta(
                ExperimentMeta(
                    number=number,
                    kind="proposing",
                    status="skipped",
                    note=note,
                    tokens_in=self._carry.tokens_in,
                    tokens_out=self._carry.tokens_out,
                    cost_usd=self._carry.cost_usd,
                )
            )

    def _wait_if_paused(self, number: int) -> bool:
        """Block while paused; False when the user stopped instead."""
        with self._cond:
            if self._stop_requested:
                return False
            if not self._pause_requested:
                return True
            self._set_phase("paused", number)
            self._emit(ev.Paused())
            while self._pause_requested and not self._stop_requested:
                self._cond.wait()
            if self._stop_requested:
                return False
        self._emit(ev.Resumed())
        return True

    def _stop_rule(self, table: ResultsTable) -> str | None:
        cfg = self.config
        if self._stop_requested:
            return "stopped by the user"
        if cfg.max_experiments and len(table.rows) >= cfg.max_experiments:
            return f"reached max_experiments ({cfg.max_experiments})"
        best = table.best(cfg.higher_is_better)
        if cfg.target_metric is not None and best is not None:
            target_met = (
                best[1].metric >= cfg.target_metric if cfg.higher_is_better else best[1].metric <= cfg.target_metric
            )
            if target_met:
                return f"reached the target {cfg.metric_name} {cfg.target_metric:g} (#{best[0]}: {best[1].metric:.6f})"
        if cfg.plateau_experiments and best is not None and len(table.rows) - best[0] >= cfg.plateau_experiments:
            return f"no improvement in the last {len(table.rows) - best[0]} experiments (plateau rule)"
        if cfg.max_cost_usd is not None and self._usage_total.cost_usd >= cfg.max_cost_usd:
            return f"spent ${self._usage_total.cost_usd:.2f} of the ${cfg.max_cost_usd:.2f} cost cap"
        return None

    def _baseline_failure(self) -> str:
        from .first_run import diagnose

        return diagnose(self.config, self._last_outcome, self.log_path)

    # One experiment.

    def _records(
        self, table: ResultsTable, metas: Mapping[int, ExperimentMeta], diffs: bool = True
    ) -> list[ExperimentRecord]:
        from .categories import categorize

        records = []
        first_diff = len(table.rows) - RECENT_DIFFS
        best = table.best(self.config.higher_is_better)
        for number, row in enumerate(table.rows, 1):
            meta = metas.get(number)
            with_curve = diffs and (number > first_diff or (best is not None and number == best[0]))
            records.append(
                ExperimentRecord(
                    number=number,
                    commit=row.commit,
                    metric=row.metric,
                    status=row.status,
                    description=row.description,
                    category=(meta.category if meta and meta.category else categorize(row.description)),
                    rationale=meta.rationale if meta else "",
                    diff=self.history.read_diff(number) if diffs and number > first_diff else "",
                    memory_gb=row.memory_gb,
                    duration_s=row.duration_s,
                    curve=loss_curve(self.history.log_path(number)) if with_curve else None,
                )
            )
        return records

    def _read_editable(self) -> dict[str, str]:
        files = {}
        for path in self.config.editable_files:
            try:
                files[path] = (self.root / path).read_text(encoding="utf-8", errors="surrogateescape")
            except OSError:
                continue
        return files

    def _context(self, table: ResultsTable, number: int, files: Mapping[str, str], **extra: object) -> ProposalContext:
        readonly = {}
        for path in self.config.readonly_files:
            with contextlib.suppress(OSError):
                readonly[path] = (self.root / path).read_text(encoding="utf-8", errors="replace")
        best = table.best(self.config.higher_is_better)
        return ProposalContext(
            config=self.config,
            number=number,
            files=files,
            readonly=readonly,
            history=tuple(self._records(table, self.history.all_meta())),
            baseline=table.baseline(),
            best=best[1].metric if best else None,
            best_number=best[0] if best else None,
            tried=dict(self._tried),
            on_retry=lambda reply, reason: self._emit(ev.ReplySentBack(number, reply, reason)),
            **extra,  # type: ignore[arg-type]
        )

    def _ask(
        self, table: ResultsTable, number: int, *, user_idea: str | None = None, crash: CrashInfo | None = None
    ) -> Proposal | None:
        assert self._proposer is not None
        self._set_phase("fixing" if crash else "proposing", number)
        files = self._read_editable()
        ctx = self._context(table, number, files, user_idea=user_idea, crash=crash)
        proposal = self._propose(ctx)
        if proposal is None:
            return None
        self._check_proposal(proposal, files)
        self._usage_total += proposal.usage
        return proposal

    def _propose(self, ctx: ProposalContext) -> Proposal | None:
        """Ask the proposer on a helper thread, so stop_now() never waits for a slow model to answer."""
        proposer = self._proposer
        assert proposer is not None
        box: dict[str, Proposal | BaseException | None] = {}

        def call() -> None:
            try:
                box["value"] = proposer.propose(ctx)
            except BaseException as exc:
                box["error"] = exc
            with self._cond:
                self._cond.notify_all()

        threading.Thread(target=call, name="autoresearch-propose", daemon=True).start()
        with self._cond:
            while not box and self._cancel_reason != "stop":
                self._cond.wait()
        if not box:
            raise _Interrupted
        error = box.get("error")
        if isinstance(error, BaseException):
            raise error
        value = box.get("value")
        return value if isinstance(value, Proposal) else None

    def _check_proposal(self, proposal: Proposal, current: Mapping[str, str]) -> None:
        editable = set(self.config.editable_files)
        outside = [p for p in proposal.files if p not in editable]
        if outside:
            raise ProposalSkipped(f"the proposal edits {outside[0]}, which is not an editable file", proposal.usage)
        if all(current.get(p) == text for p, text in proposal.files.items()):
            raise ProposalSkipped("the proposal changes nothing", proposal.usage)
        broken = syntax_problem(proposal.files, current)
        if broken is not None:
            raise ProposalSkipped(f"the proposal does not compile: {broken.short}", proposal.usage)
        merged = {**current, **proposal.files}
        earlier = self._tried.get(content_key(merged))
        if earlier is not None:
            raise ProposalSkipped(f"the proposal is identical to experiment #{earlier}", proposal.usage)

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

    def _files_at(self, commit: str) -> dict[str, str]:
        if not commit:
            return {}
        found = {}
        for path in self.config.editable_files:
            text = self.repo.show_file(commit, path)
            if text is not None:
                found[path] = text
        return found

    def _ask_fix(
        self, table: ResultsTable, number: int, crash: CrashInfo, crashed_files: dict[str, str]
    ) -> Proposal | None:
        assert self._proposer is not None
        self._set_phase("fixing", number)
        ctx = self._context(table, number, crashed_files, crash=crash)
        fix = self._propose(ctx)
        if fix is None:
            return None
        # The fix is of the crashed version; the branch is back at the parent, so commit the whole result.
        full = {**crashed_files, **fix.files}
        self._check_proposal(replace(fix, files=full), self._read_editable())
        self._usage_total += fix.usage
        return replace(fix, files=full)

    def _write_files(self, files: Mapping[str, str]) -> None:
        for path, text in files.items():
            target = self.root / path
            tmp = target.with_name(f".{target.name}.autoresearch.tmp")
            try:
                tmp.write_text(text, encoding="utf-8", errors="surrogateescape")
                with contextlib.suppress(OSError):
                    os.chmod(tmp, target.stat().st_mode)
                os.replace(tmp, target)
            except OSError:
                tmp.unlink(missing_ok=True)
                raise

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

    def _restore(self, commit: str, paths: list[str]) -> bool:
        try:
            self.repo.run("checkout", commit, "--", *paths)
        except GitCommandError:
            return False
        return True

    def _claim(self, number: int) -> None:
        """Never overwrite the record of an experiment that was judged (results.tsv lost its row meanwhile)."""
        meta = self.history.load_meta(number)
        if meta is not None and meta.status in STATUSES:
            raise UserError(
                f"Experiment #{number} is already recorded in .autoresearch/experiments/{number:04d}, but "
                f"{RESULTS_FILE} has only {number - 1} rows; the loop stopped without overwriting it "
                f"(restore {RESULTS_FILE}, then run again)."
            )

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
        outcome = self._last_outcome = self._execute(number, meta)
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
        assert self._proposer is not None
        self._proposer.observe(self._records(table, {number: meta}, diffs=False)[-1])
        if taken is not None and not (taken.done and not taken.edited):
            raise GitStateError(self._not_taken_off(taken, meta, status))
        return table, row

    def _not_taken_off(self, taken: TakeOff, meta: ExperimentMeta, status: str) -> str:
        if taken.outcome == "moved":
            return (
                f"{self.config.branch} moved during experiment #{meta.number}; it was recorded but not reset "
                f"(its commit is {meta.ref}). Check the branch and run again."
            )
        copies = self.history.edit_copies_dir(meta.number).relative_to(self.root).as_posix()
        verdict = "discarded" if status == "discard" else "crashed"
        return sentence(taken, meta.number, meta.commit, self.config.branch, copies, verdict)

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

    def _execute(self, number: int, meta: ExperimentMeta) -> RunOutcome:
        if self._cancel_reason != "stop":
            self._cancel.clear()
            self._cancel_reason = None
        self._set_phase("running", number)
        env = {
            "AUTORESEARCH_TIME_BUDGET_S": f"{self.config.time_budget_s:g}",
            "AUTORESEARCH_EXPERIMENT": str(number),
            "AUTORESEARCH_TAG": self.config.tag,
        }
        started = time.time()

        def on_start(pid: int) -> None:
            self._emit(
                ev.RunStarted(number, meta.commit[:7], pid, self.config.time_budget_s, self.config.timeout_s, started)
            )

        def on_lines(lines: list[str], dropped: int) -> None:
            self._emit(ev.LogAppended(number, tuple(lines), dropped))

        outcome = run_command(
            self.config.run_command,
            self.root,
            self.log_path,
            timeout_s=self.config.timeout_s,
            env=env,
            unset_env=hidden_from_training(self.config),
            cancel=self._cancel,
            pid_file=self.history.pids_path,
            on_start=on_start,
            on_lines=on_lines,
        )
        self._keep_log(number)
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

    def _keep_log(self, number: int) -> None:
        target = self.history.log_path(number)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(self.log_path, target)
        except OSError:
            with contextlib.suppress(OSError):
                import shutil

                shutil.copyfile(self.log_path, target)

    def _memory_gb(self, outcome: RunOutcome) -> float:
        reported = read_memory_gb(self.log_path, self.config.memory_grep, self.config.memory_unit)
        if reported is not None:
            return reported
        if outcome.peak_gpu_gb:
            return outcome.peak_gpu_gb
        return outcome.peak_rss_gb

    def _run_aux(self, command: str, log: Path, number: int) -> RunOutcome:
        return run_command(
            command,
            self.root,
            log,
            timeout_s=self.config.timeout_s,
            env={"AUTORESEARCH_EXPERIMENT": str(number), "AUTORESEARCH_TAG": self.config.tag},
            unset_env=hidden_from_training(self.config),
            cancel=self._cancel,
            pid_file=self.history.pids_path,
        )

    def _guard_passes(self, number: int) -> bool:
        assert self.config.guard_command
        log = self.history.experiment_dir(number) / "guard.log"
        outcome = self._run_aux(self.config.guard_command, log, number)
        passed = outcome.exit_code == 0
        if not passed:
            self._emit(ev.Info(f"#{number} guard failed (exit {outcome.exit_code}); see {log}"))
        return passed

    def _reset_to_parent(self, meta: ExperimentMeta) -> TakeOff:
        """Take the experiment commit off the branch, only if the branch is still exactly at it."""
        copies = self.history.edit_copies_dir(meta.number)
        taken = take_off(self.repo, self.config.branch, meta.commit, meta.parent, copies)
        if taken.done:
            self._expected_head = meta.parent
        if taken.elsewhere:
            self._emit(
                ev.Info(
                    f"#{meta.number} taken off {self.config.branch} by its ref alone: the repository is on "
                    f"{taken.elsewhere}, which was left as it is"
                )
            )
        return taken

    def _revert_unrecorded(self, meta: ExperimentMeta) -> None:
        taken = self._reset_to_parent(meta) if meta.kind != "baseline" else None
        if taken is None or taken.outcome in ("done", "moved"):
            self.history.clear_journal()
        self._emit(
            ev.Info(f"#{meta.number} interrupted: not recorded; its commit stays at {meta.ref or meta.commit[:7]}")
        )
