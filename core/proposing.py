"""Asking the proposer for the next change (core/proposer.py): its context, the helper thread it answers on,
the checks a proposal must pass before anything is written, the tokens of unusable ones."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from git.exc import GitCommandError

from . import events as ev
from . import judge
from .draft import Draft, Pending, rebase_files
from .edits import file_edits
from .errors import UserError
from .history import ExperimentMeta
from .loss_curve import LossCurve, loss_curve
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
    ResultRow,
    ResultsTable,
    read_results,
)
from .session_state import RECENT_DIFFS, _Interrupted
from .syntax_check import syntax_problem

IN_FLIGHT_DIFF_CHARS = 3000


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
                    curve=self._curve(number) if with_curve else None,
                )
            )
        return records

    def _curve(self, number: int) -> LossCurve | None:
        """The loss curve of #number's log, read once: a finished experiment's log does not change."""
        path = self.history.log_path(number)
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (number, stat.st_size, stat.st_mtime_ns)
        if key not in self._curves:
            self._curves[key] = loss_curve(path)
        return self._curves[key]

    def _context(self, table: ResultsTable, number: int, files: Mapping[str, str], **extra: object) -> ProposalContext:
        readonly = {}
        for path in self.config.readonly_files:
            with contextlib.suppress(OSError):
                readonly[path] = (self.root / path).read_text(encoding="utf-8", errors="replace")
        best = table.best(self.config.higher_is_better)
        metas = self.history.all_meta()
        return ProposalContext(
            config=self.config,
            number=number,
            files=files,
            readonly=readonly,
            history=tuple(self._records(table, metas)),
            baseline=table.baseline(),
            best=best[1].metric if best else None,
            best_number=best[0] if best else None,
            tried=dict(self._tried),
            on_retry=lambda reply, reason: self._emit(ev.ReplySentBack(number, reply, reason)),
            judging_notes=judge.prompt_notes(
                [(n, r.description, r.duration_s) for n, r in enumerate(table.rows, 1)],
                judge.session_noise(metas, self._host),
                self.config,
            ),
            no_effect=judge.no_effect_names(table, self.history),
            **extra,  # type: ignore[arg-type]
        )

    def _ask(
        self, table: ResultsTable, number: int, *, user_idea: str | None = None, crash: CrashInfo | None = None
    ) -> Proposal | None:
        assert self._proposer is not None
        self._set_phase("fixing" if crash else "proposing", number)
        files = self._read_editable()
        proposal = None if crash else self._take_draft(number, files, user_idea)
        if proposal is None:
            ctx = self._context(table, number, files, user_idea=user_idea, crash=crash)
            proposal = self._propose(ctx)
        if proposal is None:
            return None
        self._check_proposal(proposal, files)
        self._usage_total += proposal.usage
        return proposal

    def _propose(self, ctx: ProposalContext) -> Proposal | None:
        """Ask the proposer on a helper thread, so stop_now() never waits for a slow model to answer."""
        if self._draft is not None:
            # One question to the proposer at a time: a draft in flight answers first (and is kept for later).
            self._wait_for(self._draft.pending)
        pending = self._start_proposal(ctx)
        self._wait_for(pending)
        return pending.result()

    def _start_proposal(self, ctx: ProposalContext, answered: Callable[[Proposal], None] | None = None) -> Pending:
        proposer = self._proposer
        assert proposer is not None
        self._flush_observations()
        number = ctx.number

        def timed() -> Proposal | None:
            began = time.monotonic()
            try:
                return proposer.propose(ctx)
            finally:  # a draft answers while another experiment runs: its time is its own experiment's
                self._propose_s[number] = self._propose_s.get(number, 0.0) + time.monotonic() - began

        return Pending(timed, self._cond, answered)

    def _wait_for(self, pending: Pending) -> None:
        with self._cond:
            while not pending.done and self._cancel_reason != "stop":
                self._cond.wait()
        if not pending.done:
            raise _Interrupted

    def _recorded(self, table: ResultsTable, number: int, row: ResultRow, meta: ExperimentMeta) -> None:
        """After row `number` was appended: the noise file, the app and the proposer learn of it."""
        with contextlib.suppress(OSError):
            judge.write_noise(self.history, judge.session_noise(self.history.all_meta(), self._host), self.config)
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

    def _observe(self, record: ExperimentRecord) -> None:
        """Tell the proposer a result; while a draft is being asked for, once it has answered."""
        self._unobserved.append(record)
        if self._draft is None or self._draft.pending.done:
            self._flush_observations()

    def _flush_observations(self) -> None:
        proposer = self._proposer
        assert proposer is not None
        while self._unobserved:
            proposer.observe(self._unobserved.pop(0))

    # Drafting the next proposal while a run goes on (core/draft.py).

    def _draft_next(self, table: ResultsTable, number: int, meta: ExperimentMeta) -> None:
        """Once #number runs, ask for the proposal after it, against the version #number was built on."""
        cfg = self.config
        proposer = self._proposer
        if (
            proposer is None
            or meta.kind == "baseline"  # the first proposal sees the baseline's result and training curve
            or self._draft is not None
            or not cfg.draft_ahead
            or not getattr(proposer, "drafts_ahead", True)
            or self._stop_requested
            or self._pause_requested
            or (cfg.max_experiments and len(table.rows) + 1 >= cfg.max_experiments)
        ):
            return
        base = meta.parent or meta.commit
        try:
            files = self._read_editable() if base == meta.commit else self._files_at(base)
            ideas = self.history.pending_ideas()
            idea = ideas[0] if ideas else None
            ctx = self._context(table, number + 1, files, user_idea=idea, in_flight=self._in_flight(number, meta))
        except (UserError, GitCommandError, OSError) as exc:
            self._emit(ev.Info(f"#{number + 1} is asked for after #{number} ends ({exc})"))
            return
        self._draft = Draft(
            number + 1,
            number,
            base,
            files,
            self._start_proposal(ctx, answered=lambda p: self._emit(ev.Drafted(number + 1, number, p.description))),
            idea,
        )

    def _in_flight(self, number: int, meta: ExperimentMeta) -> str:
        diff = self.history.read_diff(number)
        cut = diff if len(diff) <= IN_FLIGHT_DIFF_CHARS else diff[:IN_FLIGHT_DIFF_CHARS] + "\n[... diff cut]"
        return (
            f"# Running now\nExperiment #{number} ({meta.description}) is running while you answer; its result is not "
            f"known yet. Your change runs after it, on the files below, or re-applied on #{number}'s version if "
            f"#{number} is kept: so propose a different idea, and leave the lines #{number} changes alone.\n"
            f"```diff\n{cut}\n```"
        )

    def _take_draft(self, number: int, files: Mapping[str, str], idea: str | None) -> Proposal | None:
        """The proposal drafted while the last run went on, made to fit the branch as it is now; None: ask anew."""
        draft = self._draft
        if draft is None:
            return None
        self._wait_for(draft.pending)
        self._draft = None
        self._flush_observations()
        proposal = draft.pending.result()
        if proposal is None:
            return None
        if draft.idea != idea:
            self._drop_draft(number, proposal, "drafted before the idea the user queued")
            return None
        if self._expected_head == draft.base:
            return proposal
        rebased = rebase_files(draft.base_files, proposal.files, files, edits=proposal.edits)
        kept = f"the proposal drafted while #{draft.during} ran"
        if rebased is None:
            self._emit(ev.Info(f"#{number}: {kept} does not apply on #{draft.during}, which was kept; asking again"))
            self._drop_draft(number, proposal, f"drafted before #{draft.during} was kept; it did not apply on it")
            return None
        self._emit(ev.Info(f"#{number}: {kept} was re-applied on #{draft.during}, which was kept"))
        return replace(proposal, files=rebased, edits=file_edits(files, rebased))

    def _drop_draft(self, number: int, proposal: Proposal, note: str) -> None:
        """A draft that will not run: its tokens count toward the experiment that runs as `number`."""
        self._note_skipped(number, ProposalSkipped(note, proposal.usage))

    def _abandon_draft(self, number: int) -> None:
        """The session ends: a draft is never written, only the tokens of one that answered are kept.

        A draft still being answered is not waited for: a slow model must not hold a session that is over.
        """
        draft, self._draft = self._draft, None
        if draft is None:
            return
        if not draft.pending.done:
            self._emit(ev.Info(f"the proposal drafted during #{draft.during} was not waited for; the session ended"))
            return
        with contextlib.suppress(BaseException):
            proposal = draft.pending.result()
            if proposal is not None:
                self._drop_draft(number, proposal, "drafted while the last run went on; the session ended")

    def _check_proposal(self, proposal: Proposal, current: Mapping[str, str]) -> None:
        refereed = [p for p in proposal.files if p in self.config.referee_files]
        if refereed:
            raise ProposalSkipped(
                f"the proposal edits {refereed[0]}, a referee file: the metric is scored with it outside the "
                "training, so it can be neither read nor changed",
                proposal.usage,
            )
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
        self._check_not_without_effect(proposal, current)

    def _check_not_without_effect(self, proposal: Proposal, current: Mapping[str, str]) -> None:
        import difflib

        diff = "".join(
            "".join(difflib.unified_diff(current.get(p, "").splitlines(True), text.splitlines(True)))
            for p, text in proposal.files.items()
        )
        names = judge.changed_names(diff)
        if names and all("seed" in n for n in names):
            shown = ", ".join(sorted(names))
            raise ProposalSkipped(f"the proposal only changes the seed ({shown}): {judge.SEED_CHANGE}", proposal.usage)
        dead = judge.no_effect_names(read_results(self.results_path), self.history)
        if names and all(n in dead for n in names):
            shown = ", ".join(sorted(names))
            raise ProposalSkipped(
                f"the proposal changes {shown} again, which had no effect in #{dead[min(names, key=dead.__getitem__)]} "
                "(the change does not reach the training)",
                proposal.usage,
            )

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
