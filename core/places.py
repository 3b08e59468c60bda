"""Where a scheduled experiment (core/scheduler.py) is committed and run: a place per worker slot.

`CheckoutPlace` is the user's checkout, for a session of one worker: a change is committed on the session
branch when it starts (numbered then, with the journal that lets the next start finish a crash's work), runs
there through `Execution` (the run app's log tail and `run.log`), and a discard is taken off the branch again.
`WorktreePlace` is a worker's own detached worktree (core/worktrees.py), for sessions of several: a change is
committed there, numbered when it is recorded, and a keep moves the session branch on to it.

The scheduler asks a place for the same things whatever it is: `begin` (before a job's first run, on the
scheduler's thread), `run` (one run of the job's kind, on the worker's thread), `file` (before the row: logs,
diff and ref where the record keeps them), `settle` (after the row: the branch agrees with it) and `abandon`
(a run the user stopped or the cluster lost: nothing recorded).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from git.exc import GitCommandError

from . import events as ev
from . import judge
from .errors import GitStateError, UserError
from .execution import run_env, run_memory_gb
from .executor import referee
from .gitops import describe_git_error
from .history import ExperimentMeta
from .metric import read_metric
from .model_keys import hidden_from_training
from .proposer import Proposal, Usage
from .pruning import curve_path
from .runner import RunOutcome, kill_recorded
from .sanitize import one_line, safe_text
from .seeds import seeded_command
from .session_state import _now
from .worktrees import (
    WorkerDir,
    fresh_output,
    own_run_log,
    prepare,
    reset_tree,
    worker_command,
)

if TYPE_CHECKING:
    from .loop import ExperimentLoop

JobKind = Literal["run", "confirm", "re-apply", "guard", "remeasure", "best"]


@dataclass
class Job:
    """One idea on one worker, from its first run to its record."""

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
    """Its number among the session's jobs (its logs' folder in a worktree until it is recorded)."""
    planned: int = 0
    """The experiment number it was proposed as (AUTORESEARCH_EXPERIMENT in a worktree)."""
    worker: int = 0
    """The slot it runs on."""
    number: int = 0
    """Its experiment number once the place numbered it (the checkout: when it starts; a worktree: never)."""
    meta: ExperimentMeta | None = None
    """Its meta.json as written when it was committed on the branch (the checkout)."""
    idea: str | None = None
    """The user's queued idea it follows, taken off the queue when it starts."""
    during: int = 0
    """The experiment that ran while it was asked for, when that one had a number (the checkout)."""
    verdict: str = ""
    """The judge's note on a keep that waits for its guard command."""
    guard_passed: bool | None = None
    fix_attempt: int = 0
    """0 for an idea; n for the n-th fix of a crash (recorded as a `fix` experiment)."""
    best: judge.Reference | None = None
    """The best whose code runs again (after a timeout, or before judging a close miss), and its commit."""
    best_commit: str = ""
    again: RunOutcome | None = None
    """The best's run again; None when it could not run."""
    again_metric: float | None = None
    remeasured: bool = False
    taken_off: bool = False
    """Its commit is already off the branch (the checkout, after a timeout: the best's code ran there)."""
    checked: int = 0
    """How many rows there were when the proposal was checked; it is checked again if more came in before it runs."""
    started: Callable[[], None] = lambda: None
    """Called once its training's process started (the scheduler asks for the next idea only then)."""


class Place(Protocol):
    index: int
    device: str
    cancel: threading.Event
    numbered_at_start: bool
    """True: a job is numbered (and committed on the branch) when it starts, so one runs at a time."""

    def check(self) -> None: ...
    def prepare(self, tip: str) -> None: ...
    def recover(self) -> list[str]: ...
    def who(self, job: Job) -> str: ...
    def begin(self, job: Job, number: int) -> None: ...
    def run(self, job: Job) -> None: ...
    def file(self, job: Job, meta: ExperimentMeta) -> None: ...
    def settle(self, job: Job, status: str, meta: ExperimentMeta) -> None: ...
    def abandon(self, job: Job) -> None: ...


def _best_log(job: Job) -> str:
    assert job.best is not None
    return "remeasure.log" if job.kind == "remeasure" else f"best-{job.best.number}.log"


class CheckoutPlace:
    """The user's checkout: one worker, each change committed on the session branch while it runs."""

    index = 1
    device = ""
    numbered_at_start = True

    def __init__(self, loop: ExperimentLoop) -> None:
        self.loop = loop
        self.cancel = loop.cancel  # skip, stop_now and pruning all end the run through the loop's own event

    def check(self) -> None:
        self.loop.workspace.check_position()

    def prepare(self, tip: str) -> None:
        pass

    def recover(self) -> list[str]:
        return []  # core/recovery.py already ended what the checkout's last run left

    def who(self, job: Job) -> str:
        return f"#{job.number}"

    def begin(self, job: Job, number: int) -> None:
        """Commit the change on the branch as `number`; the journal says how far it got until it is recorded."""
        s = self.loop
        meanwhile = s.workspace.changed_while_proposing(number)
        if meanwhile is not None:  # nothing is written; the proposal's tokens count toward the next run
            s.carry += job.usage
            s.save_carry(number, "the repository changed while the model was proposing")
            raise GitStateError(meanwhile)
        s.workspace.claim(number)
        if job.idea is not None:
            s.history.pop_idea()
        parent = s.workspace.expected_head
        job.number = number
        job.started_at = _now()
        meta = job.meta = ExperimentMeta(
            number=number,
            parent=parent,
            kind="fix" if job.fix_attempt else "experiment",
            description=one_line(job.proposal.description),
            category=one_line(job.proposal.category),
            rationale=safe_text(job.proposal.rationale),
            tokens_in=job.usage.tokens_in,
            tokens_out=job.usage.tokens_out,
            cost_usd=job.usage.cost_usd,
            propose_s=round(job.propose_s, 6),  # to the µs: the offline proposer takes ~0.5 ms
            started_at=job.started_at,
        )
        message = f"exp: {meta.description}"
        s.history.write_journal(
            {"number": number, "stage": "writing", "parent": parent, "kind": meta.kind, "message": message}
        )
        s.workspace.write_files(job.files)
        changed = sorted(job.files)
        try:
            commit = s.repo.commit_paths(changed, message, add=False)
        except GitCommandError as exc:
            # When git cannot even restore the files (a stale index.lock), the journal stays, so the next run does.
            if s.workspace.restore(parent, changed):
                s.history.clear_journal()
            raise UserError(
                f"git could not commit the experiment ({describe_git_error(exc)}); fix the repository and run again."
            ) from None
        job.commit = meta.commit = commit
        meta.ref = f"refs/autoresearch/{s.config.tag}/{number}"
        s.history.write_journal({"number": number, "stage": "running", "parent": parent, "commit": commit})
        if not s.repo.create_ref(meta.ref, commit):
            earlier = s.repo.resolve(meta.ref)
            if earlier and earlier != commit:
                # An experiment interrupted before it was recorded had this number: keep its commit under its own name.
                s.repo.update_ref(f"{meta.ref}-{earlier[:7]}", earlier)
            s.repo.update_ref(meta.ref, commit)
        diff = s.repo.diff(parent, commit, list(s.config.editable_files))
        s.history.save_diff(number, diff)
        meta.extra["content_key"] = job.key
        s.history.save_meta(meta)
        s.emit(
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
        s.workspace.expected_head = commit

    def run(self, job: Job) -> None:
        s = self.loop
        meta, number = job.meta, job.number
        assert meta is not None
        if job.kind == "guard":
            job.guard_passed = s.execution.guard_passes(number)
            return
        if job.kind in ("remeasure", "best"):
            # The best's code runs where the change did: the change is taken off for it (and put back to judge it).
            if not s.workspace.reset_to_parent(meta).done:
                return
            job.taken_off = job.kind == "remeasure"
            try:
                again = job.again = s.execution.execute(number, meta, log_name=_best_log(job), commit=meta.parent)
                if not (again.infra_error or (again.cancelled and s.cancel_reason == "stop")):
                    job.again_metric = s.measuring.measure(number, again)
            finally:
                if job.kind == "best" and s.cancel_reason != "stop":
                    s.repo.reset_keep(meta.commit)
                    s.workspace.expected_head = meta.commit
            return
        repeat = len(job.runs) + 1
        name = "run.log" if repeat == 1 else f"run-{repeat}.log"
        outcome = job.outcome = s.execution.execute(number, meta, started_hook=job.started, log_name=name)
        job.logs.append(s.history.log_path(number).with_name(name))
        if repeat == 1:  # the row gives the memory of the idea's own run
            job.memory_gb = s.execution.last_memory_gb
        if outcome.infra_error or (outcome.cancelled and s.cancel_reason == "stop"):
            return
        job.metric = s.measuring.measure(number, outcome, repeat)
        if s.config.verify_command and not (outcome.cancelled or outcome.timed_out or outcome.exit_code):
            suffix = "" if repeat == 1 else f"-{repeat}"
            job.logs.append(s.history.experiment_dir(number) / f"verify{suffix}.log")

    def file(self, job: Job, meta: ExperimentMeta) -> None:
        pass  # its log, diff and ref were kept when it was committed and run

    def settle(self, job: Job, status: str, meta: ExperimentMeta) -> None:
        s = self.loop
        taken = None
        if status in ("discard", "crash") and not job.taken_off:
            taken = s.workspace.reset_to_parent(meta)
        if taken is None or taken.outcome in ("done", "moved"):
            # Otherwise the journal stays: the next start takes the experiment off once it can.
            s.history.clear_journal()
        if taken is not None and not (taken.done and not taken.edited):
            raise GitStateError(s.workspace.not_taken_off(taken, meta, status))

    def abandon(self, job: Job) -> None:
        s, meta = self.loop, job.meta
        if meta is None or not job.commit:
            return
        head = s.repo.head_commit()
        if head != job.commit and head == meta.parent:  # taken off already, for the best's code to run again
            s.history.clear_journal()
            s.emit(ev.Info(f"#{meta.number} interrupted: not recorded; its commit stays at {meta.ref}"))
        else:
            s.workspace.revert_unrecorded(meta)


def _hold_open(log: Path, held: list[int], started: Callable[[], None]) -> None:
    """Once the run started: its log held open (`rm -rf .autoresearch` must not lose it), the scheduler told."""
    with contextlib.suppress(OSError):
        held.append(os.open(log, os.O_RDONLY))
    started()


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


class WorktreePlace:
    """A worker's own detached worktree: what runs there never touches the user's checkout."""

    numbered_at_start = False

    def __init__(self, loop: ExperimentLoop, worker: WorkerDir, device: str) -> None:
        self.loop = loop
        self.dir = worker
        self.index = worker.index
        self.device = device
        self.cancel = threading.Event()

    def check(self) -> None:
        pass  # the user's checkout is looked at only when a keep moves the branch

    def prepare(self, tip: str) -> None:
        prepare(self.loop.repo, self.dir, tip, self.loop.config.worker_outputs)

    def recover(self) -> list[str]:
        killed = kill_recorded(self.dir.pid_file)
        return [f"ended {len(killed)} process(es) left by worker {self.index}'s last run"] if killed else []

    def who(self, job: Job) -> str:
        return f"worker {self.index}: {job.proposal.description!r}"

    def begin(self, job: Job, number: int) -> None:
        pass  # committed in the worktree when it runs, numbered when it is recorded

    def run(self, job: Job) -> None:
        loop, worker = self.loop, self.dir
        if not worker.tree.exists():  # deleted meanwhile (`rm -rf .autoresearch`): rebuilt
            self.prepare(job.commit or job.base)
        if not job.commit:
            tree = reset_tree(worker, job.base)
            for path, text in job.files.items():
                target = worker.tree / path
                target.write_text(text, encoding="utf-8", errors="surrogateescape")
            job.commit = tree.commit_paths(sorted(job.files), f"exp: {one_line(job.proposal.description)}", add=False)
        else:
            tree = reset_tree(worker, job.best_commit if job.kind in ("remeasure", "best") else job.commit)
        if job.kind == "guard":
            self._guard(job)
            return
        first = job.kind == "run" and not job.logs
        watch = loop.execution.pruning.watch(self.cancel, tree.diff(job.base, job.commit) if first else None)
        output = fresh_output(worker)
        again = job.kind in ("remeasure", "best")
        name = _best_log(job) if again else "run.log" if not job.runs else f"run-{len(job.runs) + 1}.log"
        log = worker.log(f"{job.seq}/{name}")
        log.parent.mkdir(parents=True, exist_ok=True)
        job.logs.append(log)
        env = run_env(loop.config, job.planned, log.name)
        env.update(AUTORESEARCH_WORKER=str(self.index), AUTORESEARCH_OUTPUT_DIR=str(output))
        env["GIT_CEILING_DIRECTORIES"] = str(worker.home)  # the run's own git never finds the user's
        if self.device:
            env["CUDA_VISIBLE_DEVICES"] = env["HIP_VISIBLE_DEVICES"] = self.device

        def run(command: str, into: Path, outside: bool = False, **watch: Any) -> RunOutcome:
            return (referee(loop.executor) if outside else loop.executor).run(
                command,
                worker.tree,
                into,
                timeout_s=loop.config.timeout_s,
                env=env,
                unset_env=hidden_from_training(loop.config),
                cancel=self.cancel,
                pid_file=worker.pid_file,
                **watch,
            )

        held: list[int] = []
        try:
            outcome = run(
                worker_command(seeded_command(loop.config, env), loop.root),
                log,
                on_start=lambda _pid: _hold_open(log, held, job.started),
                on_lines=watch.feeding(lambda lines, n: loop.emit(ev.WorkerLog(self.index, tuple(lines), n))),
            )
        finally:
            for fd in held:
                _write_back(fd, log)
        watch.save(curve_path(log), outcome)
        ok = not (outcome.cancelled or outcome.timed_out or outcome.exit_code)
        source = log
        if ok and loop.config.verify_command:  # as in the checkout: its output gives the metric
            source = log.with_name(log.name.replace("run", "verify", 1))
            if not again:
                job.logs.append(source)
            run(worker_command(loop.config.verify_command, loop.root), source, outside=True)
        metric = read_metric(source, loop.config.metric_grep) if ok else None
        if ok and metric is None and (own := own_run_log(worker)) is not None:
            metric = read_metric(own, loop.config.metric_grep)
        if again:
            job.again, job.again_metric = outcome, metric
            return
        job.outcome, job.metric = outcome, metric
        if job.kind != "confirm":  # the row gives the memory of the idea's own run
            job.memory_gb = run_memory_gb(log, loop.config, outcome)

    def _guard(self, job: Job) -> None:
        """A kept change's guard command, in its worker's tree at its commit (as in the checkout)."""
        loop = self.loop
        assert loop.config.guard_command
        log = self.dir.log(f"{job.seq}/guard.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        job.logs.append(log)
        outcome = loop.executor.run(
            worker_command(loop.config.guard_command, loop.root),
            self.dir.tree,
            log,
            timeout_s=loop.config.timeout_s,
            env={
                "AUTORESEARCH_EXPERIMENT": str(job.planned),
                "AUTORESEARCH_TAG": loop.config.tag,
                "GIT_CEILING_DIRECTORIES": str(self.dir.home),
            },
            unset_env=hidden_from_training(loop.config),
            cancel=self.cancel,
            pid_file=self.dir.pid_file,
        )
        if outcome.infra_error:
            job.outcome = outcome
            return
        job.guard_passed = outcome.exit_code == 0
        if not job.guard_passed:
            loop.emit(ev.Info(f"worker {self.index}: guard failed (exit {outcome.exit_code}); see guard.log"))

    def file(self, job: Job, meta: ExperimentMeta) -> None:
        """Its logs into the experiment's folder, its diff and its ref: what the checkout kept as it ran."""
        loop = self.loop
        if meta.status == "keep":
            self._check_branch()
        meta.extra["worker"] = self.index
        if self.device:
            meta.extra["device"] = self.device
        folder = loop.history.experiment_dir(meta.number)
        folder.mkdir(parents=True, exist_ok=True)
        for log in (*job.logs, *map(curve_path, job.logs)):
            with contextlib.suppress(OSError):
                log.replace(folder / log.name)
        loop.history.save_diff(meta.number, loop.repo.diff(job.base, job.commit, list(loop.config.editable_files)))
        loop.repo.update_ref(meta.ref, job.commit)

    def settle(self, job: Job, status: str, meta: ExperimentMeta) -> None:
        if status == "keep":  # after the row: a branch that cannot move leaves the session's records whole
            move_branch(self.loop, meta.number, job.commit)

    def abandon(self, job: Job) -> None:
        pass  # nothing of it reached the branch

    def _check_branch(self) -> None:
        """Before a keep is recorded: stop, recording nothing more, if the user committed on the branch (the next
        start builds on the user's commit, as in the checkout)."""
        loop = self.loop
        branch = loop.config.branch
        head = loop.repo.resolve(f"refs/heads/{branch}")
        if head != loop.workspace.expected_head:
            raise GitStateError(
                f"{branch} moved to {(head or '?')[:7]}, a commit autoresearch did not make, while the workers ran; "
                "the session stopped without recording the runs in flight and your commit stays (run again to go "
                "on from it)."
            )


def move_branch(loop: ExperimentLoop, number: int, commit: str) -> None:
    """Point the session branch at a new best; in the user's checkout only by a fast-forward git allows."""
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
