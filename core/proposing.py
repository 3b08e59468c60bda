"""Asking the proposer for the next change (core/proposer.py): its context, the helper thread it answers on,
the checks a proposal must pass before anything is written, the tokens of unusable ones."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import replace

from . import events as ev
from .history import ExperimentMeta
from .loss_curve import loss_curve
from .measuring import Measuring
from .proposer import (
    CrashInfo,
    ExperimentRecord,
    Proposal,
    ProposalContext,
    ProposalSkipped,
    content_key,
)
from .results import (
    ResultsTable,
)
from .session_state import RECENT_DIFFS, _Interrupted
from .syntax_check import syntax_problem


class Proposing(Measuring):
    def _note_skipped(self, number: int, exc: ProposalSkipped) -> None:
        """Tokens spent on unusable proposals count toward the experiment that eventually runs as `number`."""
        self._usage_total += exc.usage
        self._carry += exc.usage
        self._save_carry(number, exc.reason)

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
