"""The scheduler of every session, one worker or many: it asks for ideas, hands them to places, judges what
comes back and records it. Its thread is the loop's own.

A slot is a place a job runs in (core/places.py): the user's checkout for a session of one worker, a worktree
per worker otherwise. The scheduler asks the proposer for one idea at a time, on a helper thread so results are
recorded while the model thinks, built on the branch tip as it is then, and hands it to an idle slot. While
every slot is busy it asks for the next idea ahead (one at most, and only of a proposer that drafts ahead,
`draft_ahead`), so a slot that frees starts the next idea once the result before it is recorded. Only this
thread writes results.tsv, `.autoresearch/` and the session branch.

Each result is judged against the best at the moment it finishes (core/judge.py): a promising change runs
again to confirm it, a close miss against a best that ran few times runs the best again, a timeout runs the
best again to tell a slower machine from a slow idea, the guard decides a keep, and a crash is given to a
proposer that makes fixes (asked before any new idea). An idea asked for ahead is checked again, and
re-applied by its edits on a new best, once the result before it is recorded and before it runs. A change
that already ran on a base overtaken meanwhile (several workers) is first judged against its own base: no gain
there, it is discarded; a gain is re-applied on the new best edit by edit (core/edits.py), run there, and
judged on that run alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import queue
import statistics
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from git.exc import GitCommandError

from . import events as ev
from . import judge
from .draft import Pending, rebase_files
from .errors import UserError
from .gitops import describe_git_error, disk_full
from .history import ExperimentMeta, workers_state_path, write_json_atomic
from .metric import tail_text
from .places import CheckoutPlace, Job, JobKind, Place, WorktreePlace, move_branch
from .proposer import CrashInfo, Proposal, ProposalSkipped, Usage, content_key
from .pruning import curve_path, load_curve
from .results import ResultRow, ResultsTable
from .sanitize import one_line, safe_text
from .session_state import _DISK_FULL, _InfraLost, _Interrupted, _now, crash_why
from .worktrees import remove_all, worker_dirs

if TYPE_CHECKING:
    from .loop import ExperimentLoop

_STATE: dict[JobKind, ev.WorkerState] = {
    "run": "running",
    "confirm": "confirming",
    "re-apply": "re-applying",
    "guard": "guarding",
    "remeasure": "re-measuring",
    "best": "re-measuring",
}


@dataclass
class _Fix:
    """A crash to ask the proposer to fix: the crashed version's files, built on `base`."""

    crash: CrashInfo
    files: dict[str, str]
    base: str


@dataclass
class _Asked:
    """What the proposal being asked for is asked on."""

    base: str = ""
    files: dict[str, str] = field(default_factory=dict)
    at: float = 0.0
    idea: str | None = None
    planned: int = 0
    fix: _Fix | None = None
    during: int = 0
    """The experiment that was running when it was asked for, if it had a number yet (the checkout)."""
    ahead: bool = False
    """Asked while every slot was busy: an answer of nothing may change once their results are in."""


@dataclass
class _Slot:
    place: Place
    job: Job | None = None
    thread: threading.Thread | None = None
    held: bool = False
    """Paused on its own: it finishes its run (and what judging it needs), then takes no new idea."""

    @property
    def index(self) -> int:
        return self.place.index


def places(loop: ExperimentLoop) -> list[Place]:
    """The user's checkout for one worker; a worktree per worker for several."""
    cfg = loop.config
    if cfg.workers <= 1:
        return [CheckoutPlace(loop)]
    pinned = not getattr(loop.executor, "assigns_devices", False)
    return [
        WorktreePlace(loop, d, cfg.devices[d.index - 1] if cfg.devices and pinned else "")
        for d in worker_dirs(loop.root, cfg.workers)
    ]


class Scheduler:
    """Schedules a session's experiments on its places; it borrows the loop's state, proposer and executor."""

    def __init__(self, loop: ExperimentLoop, slots: list[Place]) -> None:
        self.loop = loop
        self.slots = [_Slot(p) for p in slots]
        self.shows_workers = not any(p.numbered_at_start for p in slots)
        self._done: queue.Queue[Job] = queue.Queue()
        self._skips = 0
        self._hold = False  # no new proposal until the next result
        self._exhausted = ""  # why the agent has no more ideas, once it said so with a slot free
        self._stuck = ""  # why the session stops once what runs is recorded (something only the user can fix)
        self._states: dict[int, ev.WorkerChanged] = {}
        self._followups: list[Job] = []  # fixes and ideas to run again (confirm, re-apply), before new ones
        self._fixes: list[_Fix] = []  # crashes to ask a fix for, before new ideas
        self._seq = itertools.count(1)
        self._shown = -1  # the row count the last phase event told
        self._rows = 0  # rows recorded so far
        self._pending: Pending | None = None  # the proposal being asked for
        self._asked = _Asked()  # what it is asked on
        self._ready: Job | None = None  # an answered proposal waiting for a slot
        self._kept = 0  # the number of the last keep
        self._starting: set[int] = set()  # jobs whose training has not started yet
        self._announced = 0  # the number the last ExperimentStarted told (a place that numbers jobs at start)
        self.tip = ""
        """The branch tip new ideas are built on: the best, or a commit the user made on the branch."""

    def hold(self, worker: int, held: bool) -> None:
        """Pause one worker (it finishes what it runs, then takes no new idea) or let it go on."""
        for slot in self.slots:
            if slot.index == worker:
                slot.held = held  # the scheduler tells the app on its next round (it alone writes the state)

    def skip(self, worker: int | None) -> None:
        """Kill `worker`'s run (every worker's when None); it is recorded as a crash."""
        for slot in self.slots:
            if slot.job is not None and worker in (None, slot.index):
                slot.place.cancel.set()

    # Start and end.

    def run(self, table: ResultsTable) -> ev.LoopStopped:
        loop = self.loop
        for slot in self.slots:
            for message in slot.place.recover():
                loop.emit(ev.Repaired(message))
        self._rows = len(table.rows)
        self._sync_branch(self._best_commit(table))
        self.tip = loop.workspace.expected_head  # the branch's tip: the best, or a commit the user made on it
        for slot in self.slots:
            slot.place.prepare(self.tip)
            self._tell(slot, "idle")
        if self.shows_workers:
            assert isinstance(self.slots[0].place, WorktreePlace)
            loop.emit(ev.Info(f"{len(self.slots)} workers in {self.slots[0].place.dir.home.parent}"))
        try:
            return self._schedule(table)
        finally:
            self._set_aside_asked()
            self._end_all()

    def _set_aside_asked(self) -> None:
        """The session ends: a proposal asked for ahead is never written, only its tokens are kept (counted toward
        the next experiment); one still being answered is not waited for, a slow model must not hold it."""
        loop = self.loop
        number = loop.rows_count() + 1
        if self._ready is not None:
            self._set_aside(number, self._ready, "proposed ahead; the session stopped before it ran")
            self._ready = None
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if not pending.done:
            loop.emit(ev.Info("the proposal being asked for was not waited for; the session ended"))
            return
        with contextlib.suppress(BaseException):
            proposal = pending.result()
            if proposal is not None:
                loop.usage_total += proposal.usage
                loop.carry += proposal.usage
                loop.save_carry(number, "proposed ahead; the session stopped before it ran")

    def _end_all(self) -> None:
        for slot in self.slots:
            if slot.thread is not None and slot.thread.is_alive():
                slot.place.cancel.set()
        for slot in self.slots:
            if slot.thread is not None:
                slot.thread.join()
            self._tell(slot, "stopped")
        with contextlib.suppress(GitCommandError, OSError):
            remove_all(self.loop.repo, self.loop.root)

    # The scheduler.

    def _schedule(self, table: ResultsTable) -> ev.LoopStopped:
        loop = self.loop
        while True:
            for slot in self.slots:
                told = self._states.get(slot.index)
                if slot.job is None and told is not None and told.state != ("held" if slot.held else "idle"):
                    self._tell(slot, "held" if slot.held else "idle")
            if self._pending is not None and self._pending.done:
                self._answered(table)
            self._dispatch(table)
            while True:
                try:
                    job = self._done.get_nowait()
                except queue.Empty:
                    break
                self.slots[job.worker - 1].job = None
                rows = len(table.rows)
                table = self._finished(table, job)
                self._rows = len(table.rows)
                self._hold = False
                if len(table.rows) > rows and (broken := loop._stop_if_broken(table)) is not None:
                    return broken
                if not self.slots[job.worker - 1].job and self._ready is None and not loop._stop_rule(table):
                    # The checkout is where the record left it (a draft taken up is checked as it is committed).
                    self.slots[job.worker - 1].place.check()
                # After the record: a proposal asked for ahead is checked against it, and built on a new best.
                self._dispatch(table)
            busy = [s for s in self.slots if s.job is not None]
            if loop.cancel_reason == "stop":
                for slot in busy:
                    slot.place.cancel.set()
                if not busy:
                    return ev.LoopStopped("stopped by the user", ok=True, experiments=len(table.rows))
            reason = loop._stop_rule(table)
            asking = (self._pending is not None) + (self._ready is not None)
            planned = len(table.rows) + len(busy) + len(self._followups) + asking
            capped = bool(loop.config.max_experiments) and planned >= loop.config.max_experiments
            # A crash's fix is asked for even when ideas ran out.
            ended = reason or self._stuck or (self._exhausted and not self._fixes)
            idle = [s for s in self.slots if s.job is None and not s.held]
            # Asked ahead once the runs have started: building its context must not delay a training's start.
            ahead_ok = bool(idle) or (
                loop.config.draft_ahead and getattr(loop.proposer, "drafts_ahead", True) and not self._starting
            )
            may_ask = ahead_ok and not (ended or loop.pause_requested or loop.stop_requested or capped or self._hold)
            if self._pending is None and (self._ready is None or self._fixes) and may_ask:
                self._ask(table, planned - (self._ready is not None), busy)
                continue
            if not busy and self._pending is not None and reason:
                return ev.LoopStopped(reason, ok=True, experiments=len(table.rows))  # the answer is not waited for
            if not busy and self._pending is None:
                if self._ready is not None and (loop.stop_requested or reason):
                    self._set_aside_asked()
                if loop.pause_requested and not loop.stop_requested:
                    if not loop._wait_if_paused(len(table.rows)):
                        return ev.LoopStopped("stopped by the user", ok=True, experiments=len(table.rows))
                    for slot in self.slots:
                        slot.place.check()  # the user may have moved things while it was paused
                    continue
                if all(s.held for s in self.slots):
                    self._wait_for_change()
                    continue
                if self._ready is not None or self._hold or self._followups:
                    self._hold = False
                    continue
                if self._stuck:
                    return ev.LoopStopped(self._stuck, ok=False, experiments=len(table.rows))
                if reason:
                    return ev.LoopStopped(reason, ok=True, experiments=len(table.rows))
                if self._exhausted:
                    return ev.LoopStopped(self._exhausted, ok=True, experiments=len(table.rows))
                if loop.stop_requested:
                    return ev.LoopStopped("stopped by the user", ok=True, experiments=len(table.rows))
                if capped:
                    return ev.LoopStopped(
                        f"reached max_experiments ({loop.config.max_experiments})", ok=True, experiments=len(table.rows)
                    )
                continue
            if self.shows_workers:
                phase: ev.Phase = "running" if busy else "proposing"
                if (loop.phase, self._shown) != (phase, len(table.rows)):
                    self._shown = len(table.rows)  # the app's header counts the rows recorded meanwhile
                    loop.set_phase(phase, len(table.rows) + 1)
            self._wait_for_change(self._pending)

    def _ask(self, table: ResultsTable, planned: int, busy: list[_Slot]) -> None:
        """Ask the proposer (on its helper thread) for the next fix, or else the next idea."""
        loop = self.loop
        number = planned + 1
        fix = self._fixes.pop(0) if self._fixes else None
        running = next((s.job for s in busy if s.job is not None and s.job.number), None)
        if fix is not None:
            asked = _Asked(fix.base, fix.files, time.monotonic(), None, number, fix)
            loop.emit(ev.ExperimentStarted(number, "fix"))
            self._announced = number
            loop.set_phase("fixing", number)
            ctx = loop.proposing.context(table, number, fix.files, crash=fix.crash)
        else:
            in_checkout = not busy and not self.shows_workers  # the checkout is at the tip, clean
            files = loop.workspace.read_editable() if in_checkout else loop.workspace.files_at(self.tip)
            ideas = loop.history.pending_ideas()
            asked = _Asked(self.tip, files, time.monotonic(), ideas[0] if ideas else None, number)
            if in_checkout:
                loop.emit(ev.ExperimentStarted(number, "experiment"))
                self._announced = number
                loop.set_phase("proposing", number)
            in_flight = self._in_flight(running)
            ctx = loop.proposing.context(table, number, files, user_idea=asked.idea, in_flight=in_flight)
        asked.ahead = bool(busy) and not any(s.job is None and not s.held for s in self.slots)
        # What runs now counts as tried: the agent proposes something else for the idle worker.
        tried = {s.job.key: s.job.number for s in self.slots if s.job is not None and s.job.key}
        ctx = dataclasses.replace(ctx, tried={**ctx.tried, **tried})
        answered = None
        if running is not None and fix is None:
            asked.during = running.number
            during = running.number

            def answered(p: Proposal) -> None:
                loop.emit(ev.Drafted(number, during, p.description))

        self._pending, self._asked = loop.proposing.start_proposal(ctx, answered), asked

    def _answered(self, table: ResultsTable) -> None:
        """The proposal the helper thread got, checked: a fix to run before any new idea, or the idea ready for the
        next free slot. Nothing from a proposer asked while every slot was busy is asked again once their results
        are in; nothing otherwise ends the ideas (not the fixes)."""
        loop = self.loop
        pending, asked = self._pending, self._asked
        assert pending is not None
        self._pending = None
        try:
            proposal = self._checked(table, pending, asked)
        except ProposalSkipped as exc:
            self._skipped(self._next_number(table), exc, asked.fix is not None)
            return
        if proposal is None:
            if asked.fix is None and not self._hold:
                if asked.ahead:
                    self._hold = True
                else:
                    self._exhausted = (
                        getattr(loop.proposer, "stop_reason", None) or "the agent has nothing left to propose"
                    )
            return
        self._skips = 0
        usage = proposal.usage + loop.carry
        loop.carry = Usage()
        took = loop.propose_s.pop(asked.planned, time.monotonic() - asked.at)
        job = Job(proposal, asked.base, proposal.files, usage, took, _now())
        on = asked.files if asked.fix is None else loop.workspace.files_at(asked.base)
        job.key = content_key({**on, **proposal.files})
        job.seq = next(self._seq)
        job.planned = asked.planned
        job.idea = asked.idea
        job.during = asked.during
        job.fix_attempt = asked.fix.crash.attempt if asked.fix else 0
        job.checked = len(table.rows)
        if asked.fix is not None:
            self._followups.append(job)
        else:
            self._ready = job

    def _next_number(self, table: ResultsTable) -> int:
        """The number the next experiment to start will have (a carry of tokens is saved under it)."""
        return len(table.rows) + 1 + sum(1 for s in self.slots if s.job is not None and s.job.number)

    def _controls(self) -> tuple[object, ...]:
        loop = self.loop
        return (
            loop.pause_requested,
            loop.stop_requested,
            loop.cancel_reason,
            len(self._starting),
            *(s.held for s in self.slots),
        )

    def _wait_for_change(self, pending: Pending | None = None) -> None:
        """Until a run ends, the proposal answers, or the user pauses, holds, stops or resumes."""
        loop = self.loop
        controls = self._controls()
        with loop.cond:
            while self._done.empty() and not (pending is not None and pending.done):
                if controls != self._controls():
                    break
                loop.cond.wait(1.0)

    def _dispatch(self, table: ResultsTable, ideas: bool = True) -> None:
        """Start the next job on each idle slot: runs again and fixes first, then (with `ideas`) the idea asked
        for ahead, not while a fix is being asked for."""
        loop = self.loop
        if loop.cancel_reason == "stop":
            return
        fixing = self._fixes or (self._pending is not None and self._asked.fix is not None)
        ready = self._ready if ideas else None
        for slot in self.slots:
            if slot.job is not None:
                continue
            mine = [j for j in self._followups if not slot.held or j.worker == slot.index]
            if mine:  # a held slot runs again only what it ran itself
                job = mine[0]
                self._followups.remove(job)
            elif ready is not None and not (loop.pause_requested or loop.stop_requested or slot.held) and not fixing:
                job, ready = ready, None
                self._ready = None
                if not (
                    self._still_wanted(job)
                    and (job.base == self.tip or self._fitted_to_best(job))
                    and (job.checked == self._rows or self._still_usable(table, job))
                ):
                    slot.place.check()  # set aside: the next question is asked on the checkout as it is
                    continue
            else:
                continue
            if not job.commit:
                number = len(table.rows) + 1
                if slot.place.numbered_at_start and self._announced != number:
                    loop.emit(ev.ExperimentStarted(number, "fix" if job.fix_attempt else "experiment"))
                slot.place.begin(job, number)
                self._announced = number
            self._start(slot, job)

    def _still_wanted(self, job: Job) -> bool:
        """An idea the user queued after the proposal was asked for comes first: the proposal is set aside."""
        ideas = self.loop.history.pending_ideas()
        first = ideas[0] if ideas else None
        if first is None or first == job.idea:
            return True
        note = "asked for before the idea the user queued"
        self._set_aside(self._rows + 1, job, note, f"{job.proposal.description}: {note}")
        return False

    def _fitted_to_best(self, job: Job) -> bool:
        """A proposal asked for ahead, before a keep: its edits re-applied on the new best before it runs, so it is
        not run on a base that is no longer the best. False: they no longer apply (the lines it changes were
        changed by the keep); its tokens count toward the next proposal."""
        loop = self.loop
        best = self.tip
        now = loop.workspace.files_at(best)
        merged = rebase_files(loop.workspace.files_at(job.base), job.files, now, edits=job.proposal.edits)
        number = self._rows + 1
        what = (
            f"#{number}: the proposal drafted while #{job.during} ran"
            if job.during
            else f"{job.proposal.description!r}, asked for before the last keep,"
        )
        kept = f"#{self._kept}, which was kept" if job.during else "it"
        if merged is None:
            reason = "asked for before the last keep; it did not apply on it"
            said: str | None = f"{job.proposal.description}: {reason}"
            if job.during:
                loop.emit(ev.Info(f"{what} does not apply on {kept}; asking again"))
                said = None
            self._set_aside(number, job, reason, said)
            return False
        loop.emit(ev.Info(f"{what} was re-applied on {kept}"))
        job.base, job.files = best, merged
        job.key = content_key({**now, **merged})
        job.checked = -1  # checked again: the keep may have made it identical to a version already run
        return True

    def _still_usable(self, table: ResultsTable, job: Job) -> bool:
        """Check a proposal asked for ahead again once results came in meanwhile: one of them may have run the
        same code or shown that its knob has no effect (every check, when it was re-applied on a new best)."""
        loop = self.loop
        check = loop.proposing.check_proposal if job.checked < 0 else loop.proposing.check_against_results
        try:
            check(dataclasses.replace(job.proposal, files=job.files), loop.workspace.files_at(job.base), table)
        except ProposalSkipped as exc:
            note = f"asked for before the last results came in: {exc.reason}"
            self._set_aside(self._rows + 1, job, note, f"{exc.reason} (known once the results before it came in)")
            return False
        return True

    def _set_aside(self, number: int, job: Job, note: str, said: str | None = None) -> None:
        """A proposal asked for ahead that will not run: its tokens count toward the next; `said` tells the app."""
        loop = self.loop
        loop.carry += job.usage
        loop.save_carry(number, note)
        if said is not None:
            loop.emit(ev.ProposalSkipped(number, said, 0))

    def _checked(self, table: ResultsTable, pending: Pending, asked: _Asked) -> Proposal | None:
        """The proposal the helper thread got, checked before anything is written; None: nothing left.

        A fix is of the crashed version, so it is the crashed files with the fix's edits, built on the crash's base.
        """
        proposal = pending.result()
        if proposal is None:
            return None
        files = asked.files
        if asked.fix is not None:
            files = self.loop.workspace.files_at(asked.base)
            description = proposal.description
            if not description.lower().startswith("fix"):
                description = f"fix: {description}"
            proposal = dataclasses.replace(
                proposal, description=description, files={**asked.fix.files, **proposal.files}, edits=()
            )
        self.loop.proposing.check_proposal(proposal, files, table)
        self.loop.usage_total += proposal.usage
        key = content_key({**files, **proposal.files})
        same = [s for s in self.slots if s.job is not None and s.job.key == key]
        if same:
            self._hold = True  # asking again before a result came in would get the same answer
            raise ProposalSkipped(f"the same change is running on worker {same[0].index}", proposal.usage)
        return proposal

    def _skipped(self, number: int, exc: ProposalSkipped, fix: bool = False) -> None:
        """An unusable proposal; too many in a row stop the session (headless) or pause it (app).

        An unusable fix ends the fixing of its crash and counts as one skip."""
        loop = self.loop
        loop.proposing.note_skipped(number, exc)
        if not self._hold:
            self._skips += 1
        loop.emit(ev.ProposalSkipped(number, f"no usable fix: {exc.reason}" if fix else exc.reason, self._skips))
        if self._skips >= loop.config.max_skips_in_a_row:
            stopped = loop.stuck(loop.skips_problem(self._skips, exc.reason), self._rows)
            if stopped is not None:
                self._stuck = stopped.reason  # once the runs in flight are recorded
            self._skips = 0

    def _in_flight(self, running: Job | None) -> str:
        if running is not None and running.meta is not None:  # numbered: its diff is known
            return self.loop.proposing.in_flight(running.number, running.meta)
        jobs = [s.job for s in self.slots if s.job is not None]
        if not jobs:
            return ""
        lines = [f"- worker {j.worker}: {j.proposal.description}" for j in jobs]
        return (
            "# Running now\nThese experiments are running on other workers while you answer; their results are not "
            "known yet. Propose a different idea, and leave the lines they change alone:\n" + "\n".join(lines)
        )

    # A slot.

    def _start(self, slot: _Slot, job: Job) -> None:
        slot.job = job
        job.worker = slot.index
        self._starting.add(id(job))

        def started() -> None:
            with self.loop.cond:
                self._starting.discard(id(job))
                self.loop.cond.notify_all()

        job.started = started
        if self.loop.cancel_reason != "stop":
            slot.place.cancel.clear()
        what = job.proposal.description
        if job.kind in ("remeasure", "best") and job.best is not None:  # named by the code that runs
            why = f"after {what} timed out" if job.kind == "remeasure" else f"to judge {what} against it"
            what = f"#{job.best.number} again ({job.best_commit[:7]}), {why}"
        self._tell(slot, _STATE[job.kind], what)
        slot.thread = threading.Thread(target=self._work, args=(slot, job), name=f"autoresearch-worker-{slot.index}")
        slot.thread.start()

    def _work(self, slot: _Slot, job: Job) -> None:
        try:
            slot.place.run(job)
        except BaseException as exc:  # handed to the scheduler, which stops the session with it
            job.error = exc
        finally:
            job.started()
            self._done.put(job)
            with self.loop.cond:
                self.loop.cond.notify_all()

    def _tell(self, slot: _Slot, state: ev.WorkerState, description: str = "") -> None:
        """Tell the app, and `status` through `.autoresearch/workers.json`, what a worker does now (with several)."""
        if not self.shows_workers:
            return
        started = time.time() if state in ("running", "confirming", "re-applying", "re-measuring", "guarding") else None
        event = ev.WorkerChanged(
            slot.index, state, description, slot.place.device, started, self.loop.config.time_budget_s
        )
        self._states[slot.index] = event
        with contextlib.suppress(OSError):
            if all(e.state == "stopped" for e in self._states.values()):
                workers_state_path(self.loop.root).unlink(missing_ok=True)
            else:
                write_json_atomic(
                    workers_state_path(self.loop.root),
                    [
                        {
                            "worker": e.worker,
                            "state": e.state,
                            "description": e.description,
                            "device": e.device,
                            "started_at": e.started_at,
                        }
                        for e in sorted(self._states.values(), key=lambda e: e.worker)
                    ],
                )
        self.loop.emit(event)

    def _again(self, table: ResultsTable, job: Job, kind: JobKind) -> None:
        """Run the idea again (to confirm it, re-applied, or the best's code) on the next idle slot, before any
        new idea."""
        job.kind = kind
        self._followups.append(job)
        self._dispatch(table, ideas=False)

    # Judging and recording (the scheduler's thread only).

    def _finished(self, table: ResultsTable, job: Job) -> ResultsTable:
        loop = self.loop
        slot = self.slots[job.worker - 1]
        if slot.job is None:
            self._tell(slot, "held" if slot.held else "idle")
        if job.error is not None:
            if isinstance(job.error, _Interrupted):
                slot.place.abandon(job)
                raise job.error
            if isinstance(job.error, (UserError, OSError)):
                raise job.error
            if isinstance(job.error, GitCommandError):
                if disk_full(job.error, loop.root):
                    raise UserError(_DISK_FULL.format(where=f" (git: {describe_git_error(job.error)})")) from None
                raise UserError(
                    f"git failed in worker {slot.index}'s directory ({describe_git_error(job.error)}); "
                    "fix the repository and run again."
                ) from None
            raise job.error
        outcome = job.again if job.kind in ("remeasure", "best") else job.outcome
        if outcome is not None and outcome.cancelled and loop.cancel_reason == "stop":
            if self.shows_workers:
                loop.emit(ev.Info(f"{slot.place.who(job)} interrupted, not recorded"))
            slot.place.abandon(job)
            return table
        if outcome is not None and outcome.infra_error:  # the cluster lost the run: not the idea's crash
            if self.shows_workers:
                loop.emit(ev.Info(f"{slot.place.who(job)} lost, not recorded"))
            slot.place.abandon(job)
            raise _InfraLost(outcome.infra_error)
        if job.kind == "guard":
            if job.guard_passed:
                return self._record(table, job, "keep", job.verdict)
            return self._record(table, job, "discard", f"{job.verdict} (guard failed)".strip())
        if job.kind == "remeasure":
            return self._crashed(table, job, self._slower_or_not(table, job))
        if job.kind == "best":
            ref = job.best
            assert ref is not None
            job.kind = "run"
            again = job.again
            if again is not None and job.again_metric is not None and not again.cancelled:
                job.remeasured = True
                loop.measuring.add_best_run(table, ref, job.again_metric, again.duration_s)
            return self._judged(table, job, loop.history.all_meta())
        assert job.outcome is not None
        outcome = job.outcome
        pruned = load_curve(curve_path(job.logs[0])) if outcome.cancelled and not job.runs else None
        if pruned is not None and pruned.pruned is not None:
            job.durations.append(outcome.duration_s)
            return self._record(table, job, "discard", str(pruned.pruned["note"]))
        metas = loop.history.all_meta()
        if job.metric is None:
            why = crash_why(outcome, job.logs[-1], loop.config.metric_grep, loop.config.metric_name)
            if outcome.timed_out:
                why = f"{judge.TIMED_OUT} {loop.config.timeout_minutes:g} min"
            if job.runs:
                return self._crashed(table, job, f"(confirmation run {len(job.runs) + 1} {why})")
            job.durations.append(outcome.duration_s)
            ref = judge.reference(table, metas, loop.config.higher_is_better)
            if outcome.timed_out and ref is not None and ref.duration_s > 0 and not loop.stop_requested:
                # The best's code runs again to tell a slower machine from a slow idea.
                job.best, job.best_commit = ref, self.tip
                loop.emit(
                    ev.Info(
                        f"{slot.place.who(job)} timed out; running the best code (#{ref.number}) again to see if the "
                        "machine is slower"
                    )
                )
                self._again(table, job, "remeasure")
                return table
            return self._crashed(table, job, f"({why})")
        job.runs.append(job.metric)
        job.durations.append(outcome.duration_s)
        return self._judged(table, job, metas)

    def _place_of(self, job: Job) -> Place:
        return self.slots[job.worker - 1].place

    def _judged(self, table: ResultsTable, job: Job, metas: Mapping[int, ExperimentMeta]) -> ResultsTable:
        """Judge a job's runs against the best as it is now: record it, or run it (or the best) again first."""
        loop = self.loop
        place = self._place_of(job)
        ref = judge.reference(table, dict(metas), loop.config.higher_is_better)
        best = self.tip
        over = loop.judge.over_budget(job.durations[-1])
        if over:
            return self._record(table, job, "discard", over)
        if ref is None:
            return self._record(table, job, "keep", "")
        noise = self._noise(metas, ref, job.runs)
        if job.base != best:
            own = self._reference_of(table, metas, job.base)
            if own is None:
                return self._record(table, job, "discard", "(its base is no longer a measured best)")
            verdict = loop.judge.decide(own, job.runs, noise)
            if verdict.action == "discard":
                return self._record(table, job, "discard", f"{verdict.note} (measured on #{own.number}'s version)")
            return self._re_apply(table, job, own, ref, best)
        logs = (job.logs[0], loop.history.log_path(ref.number))
        if len(job.runs) == 1 and judge.Judge.no_effect(job.runs[0], ref, *logs, loop.config.metric_grep):
            return self._record(
                table, job, "discard", f"({judge.NO_EFFECT}: same {loop.config.metric_name} as #{ref.number})"
            )
        verdict = loop.judge.decide(ref, job.runs, noise)
        short = verdict.action == "discard" and loop.judge.gain(ref.mean, statistics.fmean(job.runs)) > 0
        if short and job.best is None and ref.fresh < judge.REMEASURE_BELOW and not loop.judge.greedy:
            # A close miss against a best measured only a few times: that run may have been lucky. The best's
            # code runs again (where the change ran) and the change is judged once more.
            job.best, job.best_commit = ref, best
            loop.emit(
                ev.Info(
                    f"{place.who(job)} is close to #{ref.number}, which ran {len(ref.runs)} time(s); running "
                    f"#{ref.number} again"
                )
            )
            self._again(table, job, "best")
            return table
        if job.remeasured:
            verdict = dataclasses.replace(verdict, note=f"{verdict.note} (#{ref.number} re-measured)".strip())
        if verdict.action == "confirm":
            loop.emit(ev.Info(f"{place.who(job)}: running it again to confirm it"))
            self._again(table, job, "confirm")
            return table
        like = judge.under_like_load(ref, metas)  # with workers: not the baseline's duration, measured alone
        action, note = loop.judge.with_compute(verdict.action, verdict.note, statistics.fmean(job.durations), like)
        if action == "keep" and loop.config.guard_command:
            job.verdict = note
            self._again(table, job, "guard")
            return table
        return self._record(table, job, action, note)

    def _slower_or_not(self, table: ResultsTable, job: Job) -> str:
        """After a timeout and the best's run again: the crash row's note (and the best's extra run kept)."""
        loop = self.loop
        again, ref = job.again, job.best
        assert ref is not None
        job.kind = "run"
        plain = f"({judge.TIMED_OUT} {loop.config.timeout_minutes:g} min)"
        if again is None or again.cancelled or again.infra_error:
            return plain
        if job.again_metric is not None:
            loop.measuring.add_best_run(table, ref, job.again_metric, again.duration_s)
        if again.timed_out or loop.judge.much_longer(again.duration_s, ref.duration_s):
            took = "over the timeout" if again.timed_out else f"{again.duration_s:.0f} s"
            return f"({judge.MACHINE_SLOWER}: #{ref.number} took {took} now, {ref.duration_s:.0f} s before)"
        return plain

    def _crashed(self, table: ResultsTable, job: Job, note: str) -> ResultsTable:
        """Record a crash; then a proposer that makes fixes is asked for one (up to `fix_attempts` per crash,
        each its own experiment, built on the crashed version), before any new idea."""
        loop = self.loop
        table = self._record(table, job, "crash", note)
        attempt = job.fix_attempt + 1
        cfg = loop.config
        if (
            attempt > cfg.fix_attempts
            or loop.stop_requested
            or judge.MACHINE_SLOWER in note
            or not getattr(loop.proposer, "makes_fixes", True)
            or (cfg.max_experiments and len(table.rows) >= cfg.max_experiments)
        ):
            return table
        number = len(table.rows)
        meta = loop.history.load_meta(number)
        crash = CrashInfo(
            number=number,
            description=table.rows[-1].description,
            category=meta.category if meta else "other",
            diff=loop.history.read_diff(number),
            log_tail=tail_text(loop.history.log_path(number), 50, 4096),
            attempt=attempt,
        )
        self._fixes.append(_Fix(crash, loop.workspace.files_at(job.commit), job.base))
        return table

    def _re_apply(
        self, table: ResultsTable, job: Job, own: judge.Reference, ref: judge.Reference, best: str
    ) -> ResultsTable:
        loop = self.loop
        base_files = loop.workspace.files_at(job.base)
        mine, now = loop.workspace.files_at(job.commit), loop.workspace.files_at(best)
        merged = rebase_files(base_files, mine, now)
        replaces = ""
        if merged is None:
            # The same lines changed on both sides (two values of one knob): this gain was measured with its own
            # lines, so they replace the best's, and that version is what runs and is judged next.
            merged = rebase_files(base_files, mine, now, draft_wins=True)
            replaces = f"; its lines replace #{ref.number}'s where both changed them"
        if merged and all(now.get(p) == t for p, t in merged.items()):
            return self._record(
                table, job, "discard", f"({judge.NO_EFFECT}: #{ref.number}, kept meanwhile, has the same change)"
            )
        if not merged:
            return self._record(
                table,
                job,
                "discard",
                f"(a gain on #{own.number}'s version; it does not combine with #{ref.number}, kept meanwhile)",
            )
        earlier = loop.tried.get(content_key({**now, **merged}))
        if earlier is not None:  # the same code never runs twice (but to confirm or measure noise)
            return self._record(
                table,
                job,
                "discard",
                f"(a gain on #{own.number}'s version; on #{ref.number} it is #{earlier}'s code, already run)",
            )
        loop.emit(
            ev.Info(
                f"{self._place_of(job).who(job)} gained on #{own.number}; re-applying it on #{ref.number}, kept "
                "meanwhile, and running it there"
            )
        )
        job.notes.append(
            f"re-applied on #{ref.number}{replaces}; on #{own.number} it gave {', '.join(map(judge.fmt, job.runs))}"
        )
        job.base, job.files, job.commit = best, merged, ""
        job.key = content_key({**now, **merged})
        job.runs, job.durations = [], []
        self._again(table, job, "re-apply")
        return table

    def _noise(self, metas: Mapping[int, ExperimentMeta], ref: judge.Reference, runs: list[float]) -> judge.Noise:
        others = [
            group
            for n, m in metas.items()
            if n != ref.number and m.metric is not None
            for group in judge.groups_of(m, m.metric)
        ]
        return self.loop.judge.noise([*others, *ref.groups, runs])

    def _reference_of(
        self, table: ResultsTable, metas: Mapping[int, ExperimentMeta], commit: str
    ) -> judge.Reference | None:
        """The measured best `commit` is, or (a commit the user made on the branch) the last one it is built on."""
        measured = [
            (number, row, meta)
            for number, row in enumerate(table.rows, 1)
            if row.status in ("keep", "baseline") and (meta := metas.get(number)) is not None and meta.commit
        ]
        for number, row, meta in measured:
            if meta.commit == commit:
                return judge.reference_of(number, row, meta, row.duration_s)
        for number, row, meta in reversed(measured):
            if self.loop.repo.try_run("merge-base", "--is-ancestor", meta.commit, commit) is not None:
                return judge.reference_of(number, row, meta, row.duration_s)
        return None

    def _best_commit(self, table: ResultsTable) -> str:
        loop = self.loop
        ref = judge.reference(table, loop.history.all_meta(), loop.config.higher_is_better)
        meta = loop.history.load_meta(ref.number) if ref is not None else None
        if meta is None or not meta.commit:
            raise UserError(
                "The session has no measured best to build on; run it with workers 1 once to measure a baseline."
            )
        return meta.commit

    def _record(self, table: ResultsTable, job: Job, status: str, note: str) -> ResultsTable:
        loop = self.loop
        place = self._place_of(job)
        number = len(table.rows) + 1
        if job.number and job.number != number:
            raise UserError(
                f"Experiment #{job.number} was to be recorded as row {number} of results.tsv; the file changed "
                "during the session (restore it, then run again)."
            )
        if not job.number:
            loop.workspace.claim(number)
        description = " ".join(
            part for part in (one_line(job.proposal.description), note, *(f"({n})" for n in job.notes)) if part
        )
        runs = job.runs
        metric = statistics.fmean(runs) if runs and status != "crash" else None
        duration = statistics.fmean(job.durations) if status != "crash" and job.durations else job.durations[-1]
        outcome = job.outcome
        meta = ExperimentMeta(
            number=number,
            commit=job.commit,
            parent=job.base,
            kind="fix" if job.fix_attempt else "experiment",
            description=description,
            category=one_line(job.proposal.category),
            rationale=safe_text(job.proposal.rationale),
            status=status,
            metric=metric,
            memory_gb=job.memory_gb,
            duration_s=duration,
            exit_code=outcome.exit_code if outcome else None,
            timed_out=bool(outcome and outcome.timed_out),
            tokens_in=job.usage.tokens_in,
            tokens_out=job.usage.tokens_out,
            cost_usd=job.usage.cost_usd,
            propose_s=round(job.propose_s, 6),
            started_at=job.started_at,
            finished_at=_now(),
            ref=f"refs/autoresearch/{loop.config.tag}/{number}",
        )
        meta.extra.update(host=loop.host, content_key=job.key, killed=bool(outcome and outcome.cancelled))
        if runs:
            meta.extra["runs"] = runs
            meta.extra["durations"] = job.durations
        place.file(job, meta)
        row = ResultRow(
            commit=job.commit[:7],
            metric=metric if metric is not None else 0.0,
            memory_gb=job.memory_gb,
            duration_s=duration,
            status=status,  # type: ignore[arg-type]
            description=description,
        )
        table = loop.recording.write(table, row, meta)
        try:
            place.settle(job, status, meta)
            if status == "keep":
                self.tip, self._kept = job.commit, number
        finally:  # the idea may run again once a slower machine is itself again
            loop.recording.tell(table, meta, tried=judge.MACHINE_SLOWER not in note)
        return table

    def _sync_branch(self, best: str) -> None:
        """After a crash between a keep's record and the branch's move: move the branch on to the best."""
        loop = self.loop
        head = loop.repo.resolve(f"refs/heads/{loop.config.branch}")
        if head is None or head == best:
            return
        if loop.repo.try_run("merge-base", "--is-ancestor", head, best) is None:
            return
        loop.workspace.expected_head = head
        move_branch(loop, 0, best)
        loop.emit(ev.Repaired(f"moved {loop.config.branch} on to the best commit {best[:7]}, recorded before a crash"))
