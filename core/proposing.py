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
    read_results,
)
from .session_state import RECENT_DIFFS, SessionState, _Interrupted
from .syntax_check import syntax_problem

IN_FLIGHT_DIFF_CHARS = 3000


class Proposing:
    """Asks the session's proposer for the next change and checks it before anything is written."""

    def __init__(self, state: SessionState) -> None:
        self.s = state
        self.draft: Draft | None = None
        """The next proposal, asked for while the current run goes on (core/draft.py)."""
        self.unobserved: list[ExperimentRecord] = []
        """Results the proposer is told once the draft it is answering is in."""
        self.curves: dict[tuple[int, int, int], LossCurve | None] = {}  # by (number, log size, log mtime)
        self.asking: Pending | None = None
        """The last question put to the proposer on its helper thread."""

    def note_skipped(self, number: int, exc: ProposalSkipped) -> None:
        """Tokens spent on unusable proposals count toward the experiment that eventually runs as `number`."""
        self.s.usage_total += exc.usage
        self.s.carry += exc.usage
        self.s.save_carry(number, exc.reason)

    # One experiment.

    def records(
        self, table: ResultsTable, metas: Mapping[int, ExperimentMeta], diffs: bool = True
    ) -> list[ExperimentRecord]:
        from .categories import categorize

        records = []
        first_diff = len(table.rows) - RECENT_DIFFS
        best = table.best(self.s.config.higher_is_better)
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
                    diff=self.s.history.read_diff(number) if diffs and number > first_diff else "",
                    memory_gb=row.memory_gb,
                    duration_s=row.duration_s,
                    curve=self.curve(number) if with_curve else None,
                )
            )
        return records

    def curve(self, number: int) -> LossCurve | None:
        """The loss curve of #number's log, read once: a finished experiment's log does not change."""
        path = self.s.history.log_path(number)
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (number, stat.st_size, stat.st_mtime_ns)
        if key not in self.curves:
            self.curves[key] = loss_curve(path)
        return self.curves[key]

    def context(self, table: ResultsTable, number: int, files: Mapping[str, str], **extra: object) -> ProposalContext:
        readonly = {}
        for path in self.s.config.readonly_files:
            with contextlib.suppress(OSError):
                readonly[path] = (self.s.root / path).read_text(encoding="utf-8", errors="replace")
        best = table.best(self.s.config.higher_is_better)
        metas = self.s.history.all_meta()
        return ProposalContext(
            config=self.s.config,
            number=number,
            files=files,
            readonly=readonly,
            history=tuple(self.records(table, metas)),
            baseline=table.baseline(),
            best=best[1].metric if best else None,
            best_number=best[0] if best else None,
            tried=dict(self.s.tried),
            on_retry=lambda reply, reason: self.s.emit(ev.ReplySentBack(number, reply, reason)),
            judging_notes=judge.prompt_notes(
                [(n, r.description, r.duration_s) for n, r in enumerate(table.rows, 1)],
                judge.session_noise(metas, self.s.host),
                self.s.config,
            ),
            no_effect=judge.no_effect_names(table, self.s.history),
            **extra,  # type: ignore[arg-type]
        )

    def ask(
        self, table: ResultsTable, number: int, *, user_idea: str | None = None, crash: CrashInfo | None = None
    ) -> Proposal | None:
        assert self.s.proposer is not None
        self.s.set_phase("fixing" if crash else "proposing", number)
        files = self.s.workspace.read_editable()
        proposal = None if crash else self.take_draft(number, files, user_idea)
        if proposal is None:
            ctx = self.context(table, number, files, user_idea=user_idea, crash=crash)
            proposal = self.propose(ctx)
        if proposal is None:
            return None
        self.check_proposal(proposal, files)
        self.s.usage_total += proposal.usage
        return proposal

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        """Ask the proposer on a helper thread, so stop_now() never waits for a slow model to answer."""
        if self.draft is not None:
            # One question to the proposer at a time: a draft in flight answers first (and is kept for later).
            self.wait_for(self.draft.pending)
        pending = self.start_proposal(ctx)
        self.wait_for(pending)
        return pending.result()

    def start_proposal(self, ctx: ProposalContext, answered: Callable[[Proposal], None] | None = None) -> Pending:
        proposer = self.s.proposer
        assert proposer is not None
        self.flush_observations()
        number = ctx.number

        def timed() -> Proposal | None:
            began = time.monotonic()
            try:
                return proposer.propose(ctx)
            finally:  # a draft answers while another experiment runs: its time is its own experiment's
                self.s.propose_s[number] = self.s.propose_s.get(number, 0.0) + time.monotonic() - began

        self.asking = Pending(timed, self.s.cond, answered)
        return self.asking

    def wait_for(self, pending: Pending) -> None:
        with self.s.cond:
            while not pending.done and self.s.cancel_reason != "stop":
                self.s.cond.wait()
        if not pending.done:
            raise _Interrupted

    def observe(self, record: ExperimentRecord) -> None:
        """Tell the proposer a result; while it is answering on its helper thread (a draft, or with workers the
        idea asked for ahead), once it has answered: a proposer is never called from two threads at once."""
        self.unobserved.append(record)
        if self.asking is None or self.asking.done:
            self.flush_observations()

    def flush_observations(self) -> None:
        proposer = self.s.proposer
        assert proposer is not None
        while self.unobserved:
            proposer.observe(self.unobserved.pop(0))

    # Drafting the next proposal while a run goes on (core/draft.py).

    def draft_next(self, table: ResultsTable, number: int, meta: ExperimentMeta) -> None:
        """Once #number runs, ask for the proposal after it, against the version #number was built on."""
        cfg = self.s.config
        proposer = self.s.proposer
        if (
            proposer is None
            or meta.kind == "baseline"  # the first proposal sees the baseline's result and training curve
            or self.draft is not None
            or not cfg.draft_ahead
            or not getattr(proposer, "drafts_ahead", True)
            or self.s.stop_requested
            or self.s.pause_requested
            or (cfg.max_experiments and len(table.rows) + 1 >= cfg.max_experiments)
        ):
            return
        base = meta.parent or meta.commit
        try:
            files = self.s.workspace.read_editable() if base == meta.commit else self.s.workspace.files_at(base)
            ideas = self.s.history.pending_ideas()
            idea = ideas[0] if ideas else None
            ctx = self.context(table, number + 1, files, user_idea=idea, in_flight=self.in_flight(number, meta))
        except (UserError, GitCommandError, OSError) as exc:
            self.s.emit(ev.Info(f"#{number + 1} is asked for after #{number} ends ({exc})"))
            return
        self.draft = Draft(
            number + 1,
            number,
            base,
            files,
            self.start_proposal(ctx, answered=lambda p: self.s.emit(ev.Drafted(number + 1, number, p.description))),
            idea,
        )

    def in_flight(self, number: int, meta: ExperimentMeta) -> str:
        diff = self.s.history.read_diff(number)
        cut = diff if len(diff) <= IN_FLIGHT_DIFF_CHARS else diff[:IN_FLIGHT_DIFF_CHARS] + "\n[... diff cut]"
        return (
            f"# Running now\nExperiment #{number} ({meta.description}) is running while you answer; its result is not "
            f"known yet. Your change runs after it, on the files below, or re-applied on #{number}'s version if "
            f"#{number} is kept: so propose a different idea, and leave the lines #{number} changes alone.\n"
            f"```diff\n{cut}\n```"
        )

    def take_draft(self, number: int, files: Mapping[str, str], idea: str | None) -> Proposal | None:
        """The proposal drafted while the last run went on, made to fit the branch as it is now; None: ask anew."""
        draft = self.draft
        if draft is None:
            return None
        self.wait_for(draft.pending)
        self.draft = None
        self.flush_observations()
        proposal = draft.pending.result()
        if proposal is None:
            return None
        if draft.idea != idea:
            self.drop_draft(number, proposal, "drafted before the idea the user queued")
            return None
        if self.s.workspace.expected_head == draft.base:
            return proposal
        rebased = rebase_files(draft.base_files, proposal.files, files, edits=proposal.edits)
        kept = f"the proposal drafted while #{draft.during} ran"
        if rebased is None:
            self.s.emit(ev.Info(f"#{number}: {kept} does not apply on #{draft.during}, which was kept; asking again"))
            self.drop_draft(number, proposal, f"drafted before #{draft.during} was kept; it did not apply on it")
            return None
        self.s.emit(ev.Info(f"#{number}: {kept} was re-applied on #{draft.during}, which was kept"))
        return replace(proposal, files=rebased, edits=file_edits(files, rebased))

    def drop_draft(self, number: int, proposal: Proposal, note: str) -> None:
        """A draft that will not run: its tokens count toward the experiment that runs as `number`."""
        self.note_skipped(number, ProposalSkipped(note, proposal.usage))

    def abandon_draft(self, number: int) -> None:
        """The session ends: a draft is never written, only the tokens of one that answered are kept.

        A draft still being answered is not waited for: a slow model must not hold a session that is over.
        """
        draft, self.draft = self.draft, None
        if draft is None:
            return
        if not draft.pending.done:
            self.s.emit(ev.Info(f"the proposal drafted during #{draft.during} was not waited for; the session ended"))
            return
        with contextlib.suppress(BaseException):
            proposal = draft.pending.result()
            if proposal is not None:
                self.drop_draft(number, proposal, "drafted while the last run went on; the session ended")

    def check_proposal(self, proposal: Proposal, current: Mapping[str, str]) -> None:
        refereed = [p for p in proposal.files if p in self.s.config.referee_files]
        if refereed:
            raise ProposalSkipped(
                f"the proposal edits {refereed[0]}, a referee file: the metric is scored with it outside the "
                "training, so it can be neither read nor changed",
                proposal.usage,
            )
        editable = set(self.s.config.editable_files)
        outside = [p for p in proposal.files if p not in editable]
        if outside:
            raise ProposalSkipped(f"the proposal edits {outside[0]}, which is not an editable file", proposal.usage)
        if all(current.get(p) == text for p, text in proposal.files.items()):
            raise ProposalSkipped("the proposal changes nothing", proposal.usage)
        broken = syntax_problem(proposal.files, current)
        if broken is not None:
            raise ProposalSkipped(f"the proposal does not compile: {broken.short}", proposal.usage)
        merged = {**current, **proposal.files}
        earlier = self.s.tried.get(content_key(merged))
        if earlier is not None:
            raise ProposalSkipped(f"the proposal is identical to experiment #{earlier}", proposal.usage)
        self.check_not_without_effect(proposal, current)

    def check_not_without_effect(self, proposal: Proposal, current: Mapping[str, str]) -> None:
        import difflib

        diff = "".join(
            "".join(difflib.unified_diff(current.get(p, "").splitlines(True), text.splitlines(True)))
            for p, text in proposal.files.items()
        )
        names = judge.changed_names(diff)
        if names and all("seed" in n for n in names):
            shown = ", ".join(sorted(names))
            raise ProposalSkipped(f"the proposal only changes the seed ({shown}): {judge.SEED_CHANGE}", proposal.usage)
        dead = judge.no_effect_names(read_results(self.s.results_path), self.s.history)
        if names and all(n in dead for n in names):
            shown = ", ".join(sorted(names))
            raise ProposalSkipped(
                f"the proposal changes {shown} again, which had no effect in #{dead[min(names, key=dead.__getitem__)]} "
                "(the change does not reach the training)",
                proposal.usage,
            )

    def ask_fix(
        self, table: ResultsTable, number: int, crash: CrashInfo, crashed_files: dict[str, str]
    ) -> Proposal | None:
        assert self.s.proposer is not None
        self.s.set_phase("fixing", number)
        ctx = self.context(table, number, crashed_files, crash=crash)
        fix = self.propose(ctx)
        if fix is None:
            return None
        # The fix is of the crashed version; the branch is back at the parent, so commit the whole result.
        full = {**crashed_files, **fix.files}
        self.check_proposal(replace(fix, files=full), self.s.workspace.read_editable())
        self.s.usage_total += fix.usage
        return replace(fix, files=full)
