"""N experiments at once (`workers` > 1): one worktree per worker (core/worktrees.py), one scheduler that records.

The scheduler is the loop's own thread. It asks the proposer for one idea at a time (on a helper thread, so
results are recorded while the model thinks), built on the best commit as it is then, and hands it to an idle
worker. A worker commits the change in its own detached worktree, runs it through the session's executor
pinned to its device, and hands the run back. Only the scheduler writes results.tsv, `.autoresearch/`, the
`refs/autoresearch/<tag>/<n>` refs and the session branch, so rows appear in the order experiments finish and
an experiment gets its number when it is recorded.

Each result is judged against the best at the moment it finishes (core/judge.py), with the rules of one
worker: a promising change runs again to confirm it, a close miss against a best that ran few times runs the
best again, a timeout runs the best again to tell a slower machine from a slow idea, the guard decides a keep,
and a crash is given to a proposer that makes fixes. An idea asked for ahead is checked again, and re-applied
on a new best, once the result before it is recorded and before it runs. A change that already ran on a base
overtaken meanwhile is first judged against its own base: no gain there, it is discarded; a gain is
re-applied on the new best edit by edit (core/edits.py) and run there, and judged on that run alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import queue
import shutil
import statistics
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from git.exc import GitCommandError

from . import events as ev
from . import judge
from .draft import Pending, rebase_files
from .errors import GitStateError, UserError
from .execution import run_env, run_memory_gb
from .executor import referee
from .gitops import describe_git_error, disk_full
from .history import ExperimentMeta, workers_state_path, write_json_atomic
from .metric import read_metric, tail_text
from .model_keys import hidden_from_training
from .proposer import CrashInfo, Proposal, ProposalSkipped, Usage, content_key
from .pruning import curve_path, load_curve
from .results import ResultRow, ResultsTable
from .runner import RunOutcome, kill_recorded
from .sanitize import one_line, safe_text
from .seeds import seeded_command
from .session_state import _DISK_FULL, _InfraLost, _now, crash_why
from .worktrees import (
    WorkerDir,
    fresh_output,
    own_run_log,
    prepare,
    remove_all,
    reset_tree,
    worker_command,
    worker_dirs,
)

if TYPE_CHECKING:
    from .loop import ExperimentLoop

JobKind = Literal["run", "confirm", "re-apply", "guard", "remeasure", "best"]
_STATE: dict[JobKind, ev.WorkerState] = {
    "run": "running",
    "confirm": "confirming",
    "re-apply": "re-applying",
    "guard": "guarding",
    "remeasure": "re-measuring",
    "best": "re-measuring",
}


@dataclass
class Job:
    """One idea on one worker, from its first run to its record."""

    worker: WorkerDir
    proposal: Proposal
    base: str
    files: Mapping[str, str]
    usage: Usage
    propose_s: float
    started_at: str
    kind: JobKind = "run"
    commit: str = ""
    runs: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcome: RunOutcome | None = None
    metric: float | None = None
    memory_gb: float = 0.0
    error: BaseException | None = None
    key: str = ""
    """The content key of the version it runs (the session's files with its edits)."""
    seq: int = 0
    """Its number among the session's jobs (its logs' folder until it is recorded)."""
    planned: int = 0
    """The experiment number it was proposed as (AUTORESEARCH_EXPERIMENT); it is recorded as the next free one."""
    verdict: str = ""
    """The judge's note on a keep that waits for its guard command."""
    guard_passed: bool | None = None
    fix_attempt: int = 0
    """0 for an idea; n for the n-th fix of a crash (recorded as a `fix` experiment)."""
    own: RunOutcome | None = None
    """Its own last run, while the best's code runs again: after a timeout (to tell a slower machine from a slow
    idea) or a close miss against a best that ran only a few times."""
    best: judge.Reference | None = None
    """The best whose code runs again, and its commit."""
    best_commit: str = ""
    remeasured: bool = False
    checked: int = 0
    """How many rows there were when the proposal was checked; it is checked again if more came in before it runs."""


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


@dataclass
class _Slot:
    dir: WorkerDir
    device: str
    cancel: threading.Event = field(default_factory=threading.Event)
    job: Job | None = None
    thread: threading.Thread | None = None
    held: bool = False
    """Paused on its own: it finishes its run (and what judging it needs), then takes no new idea."""


def _hold_open(log: Path, held: list[int]) -> None:
    with contextlib.suppress(OSError):
        held.append(os.open(log, os.O_RDONLY))


def _write_back(fd: int, log: Path) -> None:
    """Put a run's log back where it was if it was deleted while the run went on (from `fd`, which is closed)."""
    try:
        if not log.exists():
            log.parent.mkdir(parents=True, exist_ok=True)
            with os.fdopen(os.dup(fd), "rb") as source, log.open("wb") as copy:
                source.seek(0)
                shutil.copyfileobj(source, copy)
    except OSError:
        pass
    finally:
        os.close(fd)


class ParallelSession:
    """The scheduler of a session with `workers` > 1; it borrows the loop's state, proposer and executor."""

    def __init__(self, loop: ExperimentLoop) -> None:
        self.loop = loop
        cfg = loop.config
        pinned = not getattr(loop.executor, "assigns_devices", False)
        self.slots = [
            _Slot(d, cfg.devices[d.index - 1] if cfg.devices and pinned else "")
            for d in worker_dirs(loop.root, cfg.workers)
        ]
        self._done: queue.Queue[Job] = queue.Queue()
        self._skips = 0
        self._hold = False  # no new proposal until the next result
        self._states: dict[int, ev.WorkerChanged] = {}
        self._followups: list[Job] = []  # ideas to run again (confirm, re-apply), before new ones
        self._fixes: list[_Fix] = []  # crashes to ask a fix for, before new ideas
        self._seq = itertools.count(1)
        self._shown = -1  # the row count the last phase event told
        self._rows = 0  # rows recorded so far

    def hold(self, worker: int, held: bool) -> None:
        """Pause one worker (it finishes what it runs, then takes no new idea) or let it go on."""
        for slot in self.slots:
            if slot.dir.index == worker:
                slot.held = held  # the scheduler tells the app on its next round (it alone writes the state)

    def skip(self, worker: int | None) -> None:
        """Kill `worker`'s run (every worker's when None); it is recorded as a crash."""
        for slot in self.slots:
            if slot.job is not None and worker in (None, slot.dir.index):
                slot.cancel.set()

    # Start and end.

    def recover(self) -> list[str]:
        """After a crash of the tool: end what its workers left running."""
        repaired = []
        for slot in self.slots:
            killed = kill_recorded(slot.dir.pid_file)
            if killed:
                repaired.append(f"ended {len(killed)} process(es) left by worker {slot.dir.index}'s last run")
        return repaired

    def run(self, table: ResultsTable) -> ev.LoopStopped:
        loop = self.loop
        for message in self.recover():
            loop.emit(ev.Repaired(message))
        self._rows = len(table.rows)
        self._sync_branch(self._best_commit(table))
        tip = loop.workspace.expected_head  # the branch's tip: the best, or a commit the user made on it
        for slot in self.slots:
            prepare(loop.repo, slot.dir, tip, loop.config.worker_outputs)
            self._tell(slot, "idle")
        loop.emit(ev.Info(f"{len(self.slots)} workers in {self.slots[0].dir.home.parent}"))
        try:
            return self._schedule(table)
        finally:
            self._end_all()

    def _end_all(self) -> None:
        for slot in self.slots:
            if slot.thread is not None and slot.thread.is_alive():
                slot.cancel.set()
        for slot in self.slots:
            if slot.thread is not None:
                slot.thread.join()
            self._tell(slot, "stopped")
        with contextlib.suppress(GitCommandError, OSError):
            remove_all(self.loop.repo, self.loop.root)

    # The scheduler.

    def _schedule(self, table: ResultsTable) -> ev.LoopStopped:
        """One proposal is asked for ahead, so a worker that finishes starts the next idea before its result is
        recorded (and the next one is asked for)."""
        loop = self.loop
        pending: Pending | None = None
        asked = _Asked()
        ready: Job | None = None
        exhausted = ""
        while True:
            for slot in self.slots:
                told = self._states.get(slot.dir.index)
                if slot.job is None and told is not None and told.state != ("held" if slot.held else "idle"):
                    self._tell(slot, "held" if slot.held else "idle")
            if pending is not None and pending.done:
                answered, pending = pending, None
                try:
                    proposal = self._checked(answered, asked)
                except ProposalSkipped as exc:
                    if asked.idea:
                        loop.history.requeue_idea(asked.idea)
                    self._skipped(len(table.rows) + 1, exc, asked.fix is not None)
                    proposal = None
                else:
                    if proposal is None and asked.fix is None:  # no fix for a crash is no end of ideas
                        exhausted = (
                            getattr(loop.proposer, "stop_reason", None) or "the agent has nothing left to propose"
                        )
                if proposal is not None:
                    self._skips = 0
                    usage = proposal.usage + loop.carry
                    loop.carry = Usage()
                    took = time.monotonic() - asked.at
                    ready = Job(self.slots[0].dir, proposal, asked.base, proposal.files, usage, took, _now())
                    on = asked.files if asked.fix is None else loop.workspace.files_at(asked.base)
                    ready.key = content_key({**on, **proposal.files})
                    ready.seq = next(self._seq)
                    ready.planned = asked.planned
                    ready.fix_attempt = asked.fix.crash.attempt if asked.fix else 0
                    ready.checked = len(table.rows)
            ready = self._dispatch(ready)
            while True:
                try:
                    job = self._done.get_nowait()
                except queue.Empty:
                    break
                self._slot_of(job).job = None
                rows = len(table.rows)
                table = self._finished(table, job)
                self._rows = len(table.rows)
                self._hold = False
                if len(table.rows) > rows and (broken := loop._stop_if_broken(table)) is not None:
                    return broken
                # After the record: a proposal asked for ahead is checked against it, and built on a new best.
                ready = self._dispatch(ready)
            busy = [s for s in self.slots if s.job is not None]
            if loop.cancel_reason == "stop":
                for slot in busy:
                    slot.cancel.set()
                if not busy:
                    return ev.LoopStopped("stopped by the user", ok=True, experiments=len(table.rows))
            reason = loop._stop_rule(table)
            planned = len(table.rows) + len(busy) + len(self._followups) + (pending is not None) + (ready is not None)
            capped = bool(loop.config.max_experiments) and planned >= loop.config.max_experiments
            ended = reason or (exhausted and not self._fixes)  # a crash's fix is asked for even when ideas ran out
            may_ask = not (ended or loop.pause_requested or loop.stop_requested or capped or self._hold)
            if pending is None and ready is None and may_ask:
                fix = self._fixes.pop(0) if self._fixes else None
                if fix is not None:
                    asked = _Asked(fix.base, fix.files, time.monotonic(), None, planned + 1, fix)
                    loop.emit(ev.ExperimentStarted(planned + 1, "fix"))
                    ctx = loop.proposing.context(table, planned + 1, fix.files, crash=fix.crash)
                else:
                    base = loop.workspace.expected_head
                    files = loop.workspace.files_at(base)
                    asked = _Asked(base, files, time.monotonic(), loop.history.pop_idea(), planned + 1)
                    ctx = loop.proposing.context(
                        table, planned + 1, files, user_idea=asked.idea, in_flight=self._in_flight()
                    )
                # What runs now counts as tried: the agent proposes something else for the idle worker.
                running = {s.job.key: 0 for s in self.slots if s.job is not None and s.job.key}
                ctx = dataclasses.replace(ctx, tried={**ctx.tried, **running})
                pending = loop.proposing.start_proposal(ctx)
                continue
            if not busy and pending is not None and reason:
                # A slow model must not hold a session that is over: its answer is not waited for.
                loop.emit(ev.Info("the proposal being asked for was not waited for; the session ended"))
                return ev.LoopStopped(reason, ok=True, experiments=len(table.rows))
            if not busy and pending is None:
                if ready is not None and (loop.stop_requested or reason):
                    self._set_aside(len(table.rows) + 1, ready, "proposed ahead; the session stopped before it ran")
                    ready = None
                if loop.pause_requested and not loop.stop_requested:
                    if not loop._wait_if_paused(len(table.rows)):
                        return ev.LoopStopped("stopped by the user", ok=True, experiments=len(table.rows))
                    continue
                if all(s.held for s in self.slots):
                    self._wait_for_change()
                    continue
                if ready is not None or self._hold:
                    self._hold = False
                    continue
                if reason:
                    return ev.LoopStopped(reason, ok=True, experiments=len(table.rows))
                if exhausted:
                    return ev.LoopStopped(exhausted, ok=True, experiments=len(table.rows))
                if loop.stop_requested:
                    return ev.LoopStopped("stopped by the user", ok=True, experiments=len(table.rows))
                if capped:
                    return ev.LoopStopped(
                        f"reached max_experiments ({loop.config.max_experiments})", ok=True, experiments=len(table.rows)
                    )
                continue
            phase: ev.Phase = "running" if busy else "proposing"
            if (loop.phase, self._shown) != (phase, len(table.rows)):
                self._shown = len(table.rows)  # the app's header counts the rows recorded meanwhile
                loop.set_phase(phase, len(table.rows) + 1)
            self._wait_for_change(pending)

    def _controls(self) -> tuple[object, ...]:
        loop = self.loop
        return (loop.pause_requested, loop.stop_requested, loop.cancel_reason, *(s.held for s in self.slots))

    def _wait_for_change(self, pending: Pending | None = None) -> None:
        """Until a run ends, the proposal answers, or the user pauses, holds, stops or resumes."""
        loop = self.loop
        controls = self._controls()
        with loop.cond:
            while self._done.empty() and not (pending is not None and pending.done):
                if controls != self._controls():
                    break
                loop.cond.wait(1.0)

    def _dispatch(self, ready: Job | None) -> Job | None:
        """Start the proposal asked for ahead on an idle worker; what is left to start."""
        loop = self.loop
        if loop.cancel_reason == "stop":
            return ready
        for slot in self.slots:
            if slot.job is not None:
                continue
            if self._followups:
                job = self._followups.pop(0)
            elif ready is not None and not (loop.pause_requested or loop.stop_requested or slot.held):
                job, ready = ready, None
                if job.base != loop.workspace.expected_head and not self._fitted_to_best(job):
                    continue
                if job.checked != self._rows and not self._still_usable(job):
                    continue
            else:
                continue
            job.worker = slot.dir
            self._start(slot, job)
        return ready

    def _fitted_to_best(self, job: Job) -> bool:
        """A proposal asked for ahead, before a keep: its edits re-applied on the new best before it runs (as one
        worker re-applies a draft), so it is not run on a base that is no longer the best. False: they no longer
        apply (the lines it changes were changed by the keep); its tokens count toward the next proposal."""
        loop = self.loop
        best = loop.workspace.expected_head
        now = loop.workspace.files_at(best)
        merged = rebase_files(loop.workspace.files_at(job.base), job.files, now, edits=job.proposal.edits)
        number = self._rows + 1
        if merged is None:
            reason = "asked for before the last keep; it did not apply on it"
            self._set_aside(number, job, reason, f"{job.proposal.description}: {reason}")
            return False
        loop.emit(ev.Info(f"{job.proposal.description!r}, asked for before the last keep, was re-applied on it"))
        job.base, job.files = best, merged
        job.key = content_key({**now, **merged})
        job.checked = -1  # checked again: the keep may have made it identical to a version already run
        return True

    def _still_usable(self, job: Job) -> bool:
        """Check a proposal asked for ahead again once results came in meanwhile (as one worker checks a draft when
        it takes it up): one of them may have run the same code or shown that its knob has no effect."""
        loop = self.loop
        try:
            loop.proposing.check_proposal(
                dataclasses.replace(job.proposal, files=job.files), loop.workspace.files_at(job.base)
            )
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

    def _slot_of(self, job: Job) -> _Slot:
        return self.slots[job.worker.index - 1]

    def _checked(self, pending: Pending, asked: _Asked) -> Proposal | None:
        """The proposal the helper thread got, checked as a sequential session checks it; None: nothing left.

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
        self.loop.proposing.check_proposal(proposal, files)
        self.loop.usage_total += proposal.usage
        key = content_key({**files, **proposal.files})
        same = [s for s in self.slots if s.job is not None and s.job.key == key]
        if same:
            self._hold = True  # asking again before a result came in would get the same answer
            raise ProposalSkipped(f"the same change is running on worker {same[0].dir.index}", proposal.usage)
        return proposal

    def _skipped(self, number: int, exc: ProposalSkipped, fix: bool = False) -> None:
        """An unusable proposal; too many in a row stop the session (headless) or pause it (app), as with one worker.

        An unusable fix ends the fixing of its crash and counts as one skip."""
        loop = self.loop
        loop.proposing.note_skipped(number, exc)
        if not self._hold:
            self._skips += 1
        loop.emit(ev.ProposalSkipped(number, f"no usable fix: {exc.reason}" if fix else exc.reason, self._skips))
        if self._skips >= loop.config.max_skips_in_a_row:
            stopped = loop.stuck(loop.skips_problem(self._skips, exc.reason), self._rows)
            if stopped is not None:
                raise UserError(stopped.reason)
            self._skips = 0

    def _in_flight(self) -> str:
        running = [s.job for s in self.slots if s.job is not None]
        if not running:
            return ""
        lines = [f"- worker {j.worker.index}: {j.proposal.description}" for j in running]
        return (
            "# Running now\nThese experiments are running on other workers while you answer; their results are not "
            "known yet. Propose a different idea, and leave the lines they change alone:\n" + "\n".join(lines)
        )

    # A worker.

    def _start(self, slot: _Slot, job: Job) -> None:
        slot.job = job
        slot.cancel.clear()
        what = job.proposal.description
        if job.kind in ("remeasure", "best") and job.best is not None:  # named by the code that runs
            why = f"after {what} timed out" if job.kind == "remeasure" else f"to judge {what} against it"
            what = f"#{job.best.number} again ({job.best_commit[:7]}), {why}"
        self._tell(slot, _STATE[job.kind], what)
        slot.thread = threading.Thread(
            target=self._work, args=(slot, job), name=f"autoresearch-worker-{job.worker.index}"
        )
        slot.thread.start()

    def _work(self, slot: _Slot, job: Job) -> None:
        loop = self.loop
        try:
            if not job.worker.tree.exists():  # deleted meanwhile (`rm -rf .autoresearch`): rebuilt
                prepare(loop.repo, job.worker, job.commit or job.base, loop.config.worker_outputs)
            if not job.commit:
                tree = reset_tree(job.worker, job.base)
                for path, text in job.files.items():
                    target = job.worker.tree / path
                    target.write_text(text, encoding="utf-8", errors="surrogateescape")
                job.commit = tree.commit_paths(
                    sorted(job.files), f"exp: {one_line(job.proposal.description)}", add=False
                )
            else:
                tree = reset_tree(job.worker, job.best_commit if job.kind in ("remeasure", "best") else job.commit)
            if job.kind == "guard":
                self._guard(slot, job)
                return
            first = job.kind == "run" and not job.logs
            watch = loop.execution.pruning.watch(slot.cancel, tree.diff(job.base, job.commit) if first else None)
            output = fresh_output(job.worker)
            name = "run.log" if not job.logs else f"run-{len(job.logs) + 1}.log"
            if job.kind in ("remeasure", "best") and job.best is not None:
                name = "remeasure.log" if job.kind == "remeasure" else f"best-{job.best.number}.log"
            log = job.worker.log(f"{job.seq}/{name}")
            log.parent.mkdir(parents=True, exist_ok=True)
            job.logs.append(log)
            env = run_env(loop.config, job.planned, log.name)
            env.update(AUTORESEARCH_WORKER=str(job.worker.index), AUTORESEARCH_OUTPUT_DIR=str(output))
            env["GIT_CEILING_DIRECTORIES"] = str(job.worker.home)  # the run's own git never finds the user's
            if slot.device:
                env["CUDA_VISIBLE_DEVICES"] = env["HIP_VISIBLE_DEVICES"] = slot.device

            def run(command: str, into: Path, outside: bool = False, **watch: Any) -> RunOutcome:
                return (referee(loop.executor) if outside else loop.executor).run(
                    command,
                    job.worker.tree,
                    into,
                    timeout_s=loop.config.timeout_s,
                    env=env,
                    unset_env=hidden_from_training(loop.config),
                    cancel=slot.cancel,
                    pid_file=job.worker.pid_file,
                    **watch,
                )

            held: list[int] = []  # the log, open: `rm -rf .autoresearch` during the run must not lose it
            try:
                job.outcome = outcome = run(
                    worker_command(seeded_command(loop.config, env), loop.root),
                    log,
                    on_start=lambda _pid: _hold_open(log, held),
                    on_lines=watch.feeding(lambda lines, n: loop.emit(ev.WorkerLog(job.worker.index, tuple(lines), n))),
                )
            finally:
                for fd in held:
                    _write_back(fd, log)
            watch.save(curve_path(log), outcome)
            ok = not (outcome.cancelled or outcome.timed_out or outcome.exit_code)
            source = log
            if ok and loop.config.verify_command:  # as in a sequential session: its output gives the metric
                source = log.with_name(log.name.replace("run", "verify", 1))
                job.logs.append(source)
                run(worker_command(loop.config.verify_command, loop.root), source, outside=True)
            job.metric = read_metric(source, loop.config.metric_grep) if ok else None
            if ok and job.metric is None and (own := own_run_log(job.worker)) is not None:
                job.metric = read_metric(own, loop.config.metric_grep)
            if job.kind not in ("remeasure", "best"):  # the row gives the memory of the idea's own run
                job.memory_gb = run_memory_gb(log, loop.config, outcome)
        except BaseException as exc:  # handed to the scheduler, which stops the session with it
            job.error = exc
        finally:
            self._done.put(job)
            with loop.cond:
                loop.cond.notify_all()

    def _guard(self, slot: _Slot, job: Job) -> None:
        """A kept change's guard command, in its worker's tree at its commit (as a sequential session runs it)."""
        loop = self.loop
        assert loop.config.guard_command
        log = job.worker.log(f"{job.seq}/guard.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        job.logs.append(log)
        outcome = loop.executor.run(
            worker_command(loop.config.guard_command, loop.root),
            job.worker.tree,
            log,
            timeout_s=loop.config.timeout_s,
            env={
                "AUTORESEARCH_EXPERIMENT": str(job.planned),
                "AUTORESEARCH_TAG": loop.config.tag,
                "GIT_CEILING_DIRECTORIES": str(job.worker.home),
            },
            unset_env=hidden_from_training(loop.config),
            cancel=slot.cancel,
            pid_file=job.worker.pid_file,
        )
        if outcome.infra_error:
            job.outcome = outcome
            return
        job.guard_passed = outcome.exit_code == 0
        if not job.guard_passed:
            loop.emit(ev.Info(f"worker {job.worker.index}: guard failed (exit {outcome.exit_code}); see guard.log"))

    def _tell(self, slot: _Slot, state: ev.WorkerState, description: str = "") -> None:
        """Tell the app, and `status` through `.autoresearch/workers.json`, what a worker does now."""
        started = time.time() if state in ("running", "confirming", "re-applying", "re-measuring", "guarding") else None
        event = ev.WorkerChanged(
            slot.dir.index, state, description, slot.device, started, self.loop.config.time_budget_s
        )
        self._states[slot.dir.index] = event
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

    def _again(self, job: Job, kind: JobKind) -> None:
        """Run the idea again (to confirm it, or re-applied) on the next idle worker, before any new idea."""
        job.kind = kind
        self._followups.append(job)
        self._dispatch(None)

    # Judging and recording (the scheduler's thread only).

    def _finished(self, table: ResultsTable, job: Job) -> ResultsTable:
        loop = self.loop
        slot = self._slot_of(job)
        if slot.job is None:
            self._tell(slot, "held" if slot.held else "idle")
        if job.error is not None:
            if isinstance(job.error, (UserError, OSError)):
                raise job.error
            if isinstance(job.error, GitCommandError):
                if disk_full(job.error, loop.root):
                    raise UserError(_DISK_FULL.format(where=f" (git: {describe_git_error(job.error)})")) from None
                raise UserError(
                    f"git failed in worker {job.worker.index}'s directory ({describe_git_error(job.error)}); "
                    "fix the repository and run again."
                ) from None
            raise job.error
        outcome = job.outcome
        assert outcome is not None
        if outcome.cancelled and loop.cancel_reason == "stop":
            loop.emit(ev.Info(f"worker {job.worker.index}: {job.proposal.description} interrupted, not recorded"))
            return table
        if outcome.infra_error:  # the cluster lost the run: not the idea's crash; the loop stops or pauses
            loop.emit(ev.Info(f"worker {job.worker.index}: {job.proposal.description} lost, not recorded"))
            raise _InfraLost(outcome.infra_error)
        if job.kind == "guard":
            if job.guard_passed:
                return self._record(table, job, "keep", job.verdict)
            return self._record(table, job, "discard", f"{job.verdict} (guard failed)".strip())
        if job.kind == "remeasure":
            return self._crashed(table, job, self._slower_or_not(table, job))
        if job.kind == "best":
            again, ref = outcome, job.best
            assert job.own is not None and ref is not None
            job.outcome, job.kind, job.remeasured = job.own, "run", True
            if job.metric is not None and not (again.cancelled or again.infra_error):
                loop.measuring.add_best_run(table, ref, job.metric, again.duration_s)
            return self._judged(table, job, loop.history.all_meta())
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
                return self._crashed(table, job, f"(run {len(job.runs) + 1} {why})")
            job.durations.append(outcome.duration_s)
            ref = judge.reference(table, metas, loop.config.higher_is_better)
            if outcome.timed_out and ref is not None and ref.duration_s > 0 and not loop.stop_requested:
                # As with one worker: the best's code runs again to tell a slower machine from a slow idea.
                job.own, job.best, job.best_commit = outcome, ref, loop.workspace.expected_head
                loop.emit(
                    ev.Info(
                        f"worker {job.worker.index}: {job.proposal.description!r} timed out; running the best code "
                        f"(#{ref.number}) again to see if the machine is slower"
                    )
                )
                self._again(job, "remeasure")
                return table
            return self._crashed(table, job, f"({why})")
        job.runs.append(job.metric)
        job.durations.append(outcome.duration_s)
        return self._judged(table, job, metas)

    def _judged(self, table: ResultsTable, job: Job, metas: Mapping[int, ExperimentMeta]) -> ResultsTable:
        """Judge a job's runs against the best as it is now: record it, or run it (or the best) again first."""
        loop = self.loop
        ref = judge.reference(table, dict(metas), loop.config.higher_is_better)
        assert ref is not None
        best = loop.workspace.expected_head
        over = loop.judge.over_budget(job.durations[-1])
        if over:
            return self._record(table, job, "discard", over)
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
        if short and not job.remeasured and ref.fresh < judge.REMEASURE_BELOW and not loop.judge.greedy:
            # As with one worker: a close miss against a best measured only a few times runs the best again.
            job.own, job.best, job.best_commit = job.outcome, ref, best
            loop.emit(
                ev.Info(
                    f"worker {job.worker.index}: {job.proposal.description!r} is close to #{ref.number}, which ran "
                    f"{len(ref.runs)} time(s); running #{ref.number} again"
                )
            )
            self._again(job, "best")
            return table
        if job.remeasured:
            verdict = dataclasses.replace(verdict, note=f"{verdict.note} (#{ref.number} re-measured)".strip())
        if verdict.action == "confirm":
            loop.emit(ev.Info(f"worker {job.worker.index}: running {job.proposal.description!r} again to confirm it"))
            self._again(job, "confirm")
            return table
        like = judge.under_like_load(ref, metas)  # not the baseline's duration, measured alone
        action, note = loop.judge.with_compute(verdict.action, verdict.note, statistics.fmean(job.durations), like)
        if action == "keep" and loop.config.guard_command:
            job.verdict = note
            self._again(job, "guard")
            return table
        return self._record(table, job, action, note)

    def _slower_or_not(self, table: ResultsTable, job: Job) -> str:
        """After a timeout and the best's run again: the crash row's note (and the best's extra run kept)."""
        loop = self.loop
        again, ref = job.outcome, job.best
        assert again is not None and ref is not None and job.own is not None
        job.outcome, job.kind = job.own, "run"
        plain = f"({judge.TIMED_OUT} {loop.config.timeout_minutes:g} min)"
        if again.cancelled or again.infra_error:
            return plain
        if job.metric is not None:
            loop.measuring.add_best_run(table, ref, job.metric, again.duration_s)
        if again.timed_out or loop.judge.much_longer(again.duration_s, ref.duration_s):
            took = "over the timeout" if again.timed_out else f"{again.duration_s:.0f} s"
            return f"({judge.MACHINE_SLOWER}: #{ref.number} took {took} now, {ref.duration_s:.0f} s before)"
        return plain

    def _crashed(self, table: ResultsTable, job: Job, note: str) -> ResultsTable:
        """Record a crash; then, as with one worker, a proposer that makes fixes is asked for one (up to
        `fix_attempts` per crash, each its own experiment, built on the crashed version)."""
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
                f"worker {job.worker.index}: {job.proposal.description!r} gained on #{own.number}; re-applying it "
                f"on #{ref.number}, kept meanwhile, and running it there"
            )
        )
        job.notes.append(
            f"re-applied on #{ref.number}{replaces}; on #{own.number} it gave {', '.join(map(judge.fmt, job.runs))}"
        )
        job.base, job.files, job.commit = best, merged, ""
        job.key = content_key({**now, **merged})
        job.runs, job.durations = [], []
        self._again(job, "re-apply")
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

    def _check_branch(self) -> None:
        """Before a keep is recorded: stop, recording nothing more, if the user committed on the branch (the next
        start builds on the user's commit, as a sequential session does)."""
        loop = self.loop
        branch = loop.config.branch
        head = loop.repo.resolve(f"refs/heads/{branch}")
        if head != loop.workspace.expected_head:
            raise GitStateError(
                f"{branch} moved to {(head or '?')[:7]}, a commit autoresearch did not make, while the workers ran; "
                "the session stopped without recording the runs in flight and your commit stays (run again to go "
                "on from it)."
            )

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
        if status == "keep":
            self._check_branch()
        number = len(table.rows) + 1
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
            propose_s=round(job.propose_s, 3),
            started_at=job.started_at,
            finished_at=_now(),
            ref=f"refs/autoresearch/{loop.config.tag}/{number}",
        )
        meta.extra.update(
            host=loop.host,
            worker=job.worker.index,
            content_key=job.key,
            killed=bool(outcome and outcome.cancelled),
        )
        device = self.slots[job.worker.index - 1].device
        if device:
            meta.extra["device"] = device
        if runs:
            meta.extra["runs"] = runs
            meta.extra["durations"] = job.durations
        folder = loop.history.experiment_dir(number)
        folder.mkdir(parents=True, exist_ok=True)
        for log in (*job.logs, *map(curve_path, job.logs)):
            with contextlib.suppress(OSError):
                log.replace(folder / log.name)
        loop.history.save_diff(number, loop.repo.diff(job.base, job.commit, list(loop.config.editable_files)))
        loop.repo.update_ref(meta.ref, job.commit)
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
            if status == "keep":  # after the row: a branch that cannot move leaves the session's records whole
                self._move_branch(number, job.commit)
        finally:  # the idea may run again once a slower machine is itself again
            loop.recording.tell(table, meta, tried=judge.MACHINE_SLOWER not in note)
        return table

    def _move_branch(self, number: int, commit: str) -> None:
        """Point the session branch at a new best; in the user's checkout only by a fast-forward git allows."""
        loop = self.loop
        branch = loop.config.branch
        current, head, _ = loop.repo.position()
        old = loop.workspace.expected_head
        if current == branch:
            if head != old:
                raise GitStateError(
                    f"{branch} moved to {(head or '?')[:7]}, a commit autoresearch did not make; #{number} was "
                    f"recorded (its commit is refs/autoresearch/{loop.config.tag}/{number}) but the branch was left "
                    "as it is (run again to go on from there)."
                )
            try:
                loop.repo.run("merge", "--ff-only", "-q", commit)
            except GitCommandError:
                raise GitStateError(
                    f"#{number} was kept, but your uncommitted edits in the checkout are in the way of moving {branch} "
                    f"to it; commit or stash them (git stash), then run again (its commit is "
                    f"refs/autoresearch/{loop.config.tag}/{number})."
                ) from None
        elif not loop.repo.move_branch(branch, commit, old):
            raise GitStateError(
                f"{branch} moved while the session ran; #{number} was recorded (refs/autoresearch/"
                f"{loop.config.tag}/{number}) but the branch was left as it is (run again to go on from there)."
            )
        loop.workspace.expected_head = commit

    def _sync_branch(self, best: str) -> None:
        """After a crash between a keep's record and the branch's move: move the branch on to the best."""
        loop = self.loop
        head = loop.repo.resolve(f"refs/heads/{loop.config.branch}")
        if head is None or head == best:
            return
        if loop.repo.try_run("merge-base", "--is-ancestor", head, best) is None:
            return
        loop.workspace.expected_head = head
        self._move_branch(0, best)
        loop.emit(ev.Repaired(f"moved {loop.config.branch} on to the best commit {best[:7]}, recorded before a crash"))
