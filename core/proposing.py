"""Asking the proposer for the next change (core/proposer.py): its context, the helper thread it answers on,
the checks a proposal must pass before anything is written, the tokens of unusable ones."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping

from . import events as ev
from . import judge
from .draft import Pending
from .history import ExperimentMeta
from .loss_curve import LossCurve, loss_curve
from .proposer import (
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
from .session_state import RECENT_DIFFS, SessionState
from .syntax_check import syntax_problem

IN_FLIGHT_DIFF_CHARS = 3000


class Proposing:
    """Asks the session's proposer for the next change and checks it before anything is written."""

    def __init__(self, state: SessionState) -> None:
        self.s = state
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

    def in_flight(self, number: int, meta: ExperimentMeta) -> str:
        diff = self.s.history.read_diff(number)
        cut = diff if len(diff) <= IN_FLIGHT_DIFF_CHARS else diff[:IN_FLIGHT_DIFF_CHARS] + "\n[... diff cut]"
        return (
            f"# Running now\nExperiment #{number} ({meta.description}) is running while you answer; its result is not "
            f"known yet. Your change runs after it, on the files below, or re-applied on #{number}'s version if "
            f"#{number} is kept: so propose a different idea, and leave the lines #{number} changes alone.\n"
            f"```diff\n{cut}\n```"
        )

    def check_proposal(self, proposal: Proposal, current: Mapping[str, str], table: ResultsTable | None = None) -> None:
        """Refuse (ProposalSkipped) a proposal that edits what it may not, changes nothing, does not compile, ran
        before, or changes only what was shown to have no effect (in `table`, else results.tsv)."""
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
        self.check_against_results(proposal, current, table)

    def check_against_results(
        self, proposal: Proposal, current: Mapping[str, str], table: ResultsTable | None = None
    ) -> None:
        """The checks a result can change: not a version already run, not only what was shown to have no effect."""
        earlier = self.s.tried.get(content_key({**current, **proposal.files}))
        if earlier is not None:
            raise ProposalSkipped(f"the proposal is identical to experiment #{earlier}", proposal.usage)
        self.check_not_without_effect(proposal, current, table)

    def check_not_without_effect(
        self, proposal: Proposal, current: Mapping[str, str], table: ResultsTable | None = None
    ) -> None:
        import difflib

        diff = "".join(
            "".join(difflib.unified_diff(current.get(p, "").splitlines(True), text.splitlines(True)))
            for p, text in proposal.files.items()
        )
        names = judge.changed_names(diff)
        if names and all("seed" in n for n in names):
            shown = ", ".join(sorted(names))
            raise ProposalSkipped(f"the proposal only changes the seed ({shown}): {judge.SEED_CHANGE}", proposal.usage)
        dead = judge.no_effect_names(table or read_results(self.s.results_path), self.s.history)
        if names and all(n in dead for n in names):
            shown = ", ".join(sorted(names))
            raise ProposalSkipped(
                f"the proposal changes {shown} again, which had no effect in #{dead[min(names, key=dead.__getitem__)]} "
                "(the change does not reach the training)",
                proposal.usage,
            )
