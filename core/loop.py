"""The experiment loop: propose, commit, run, judge, keep or reset, record. One thread runs it.

Other threads control it only through pause(), resume(), stop(), skip(), stop_now() and
queue_idea(); it reports only through events sent to `sink`.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Literal

from git.exc import GitCommandError

from . import events as ev
from . import judge
from .baseline import Baseline
from .config import RESULTS_FILE
from .errors import UserError
from .execution import Execution
from .executor import Executor
from .gitops import describe_git_error, disk_full
from .measuring import Measuring
from .proposer import (
    Proposer,
    Usage,
)
from .proposing import Proposing
from .recording import Recording
from .recovery import recover
from .results import (
    ResultsTable,
    check_writable,
    read_results,
)
from .search import offline_idea_problem
from .session_state import _DISK_FULL, SessionState, _InfraLost, _Interrupted
from .writable import unwritable_message


class ExperimentLoop(SessionState):
    """A session: its start (lock, recovery, branch, results.tsv), the baseline, then the scheduler
    (core/scheduler.py) until a stop rule, the user or a failure ends it; the controls other threads use.

    It is the session's state (core/session_state.py, with its `workspace`) and holds the parts an experiment
    goes through: `execution` runs, `measuring` measures what the judge needs, `proposing` asks the proposer and
    checks its answer, `recording` writes the row, `baseline` measures the code before any change. The
    scheduler is given the loop and places to run in: the checkout for one worker, worktrees for several.
    """

    def __init__(
        self,
        root: Path,
        sink: ev.EventSink,
        proposer: Proposer | None = None,
        *,
        when_stuck: Literal["stop", "pause"] = "stop",
        executor: Executor | None = None,
    ) -> None:
        super().__init__(root, sink, proposer, when_stuck=when_stuck, executor=executor)
        self.execution = Execution(self)
        self.measuring = Measuring(self, self.execution)
        self.proposing = Proposing(self)
        self.recording = Recording(self, self.proposing)
        self.baseline = Baseline(self, self.execution, self.measuring, self.recording)

    # Thread-safe controls.

    @property
    def paused(self) -> bool:
        return self.pause_requested

    def pause(self) -> None:
        with self.cond:
            self.pause_requested = True
            self.cond.notify_all()

    def resume(self) -> None:
        with self.cond:
            self.pause_requested = False
            self.cond.notify_all()

    def stop(self) -> None:
        """Stop after the current experiment."""
        with self.cond:
            self.stop_requested = True
            self.cond.notify_all()

    def hold_worker(self, worker: int, held: bool) -> None:
        """With workers: pause one worker after its run (held) or let it take ideas again."""
        scheduler = self.scheduler
        if scheduler is not None:
            with self.cond:
                scheduler.hold(worker, held)
                self.cond.notify_all()

    def skip(self, worker: int | None = None) -> None:
        """Kill the current run now (with workers: `worker`'s, or every worker's); it is recorded as a crash and
        the loop goes on."""
        scheduler = self.scheduler
        if scheduler is not None:
            scheduler.skip(worker)

    def stop_now(self) -> None:
        """Kill the current run, revert its commit without recording it, and stop."""
        with self.cond:
            self.stop_requested = True
            self.cancel_reason = "stop"
            self.cancel.set()
            self.cond.notify_all()

    def queue_idea(self, text: str) -> None:
        """Queue the user's idea for the next proposal; one the agent cannot follow is refused, out loud."""
        if text.strip():
            problem = offline_idea_problem(text) if self.config.agent == "mutate" else None
            if problem is not None:
                self.emit(ev.Info(f"idea not queued: {problem}; it was: {' '.join(text.split())}"))
                return
            self.history.queue_idea(text)
            self.emit(ev.Info(f"idea queued for the next experiment: {' '.join(text.split())}"))

    # Running.

    def run(self) -> ev.LoopStopped:
        try:
            stopped = self._run()
        except UserError as exc:
            stopped = ev.LoopStopped(exc.message, ok=False, experiments=self.rows_count())
        except GitCommandError as exc:
            reason = f"git failed: {describe_git_error(exc)}; fix the repository and run again."
            if disk_full(exc, self.root):
                reason = _DISK_FULL.format(where=f" (git: {describe_git_error(exc)})")
            stopped = ev.LoopStopped(reason, ok=False, experiments=self.rows_count())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                where = f" (writing {exc.filename})" if exc.filename else ""
                reason = _DISK_FULL.format(where=where)
            elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                reason = unwritable_message(self.root, exc)
            else:
                raise
            stopped = ev.LoopStopped(reason, ok=False, experiments=self.rows_count())
        finally:
            self.workspace.release_lock()
        self.set_phase("stopped", self.rows_count())
        if not stopped.ok:
            self.emit(ev.NeedsUser(stopped.reason))
        self.emit(stopped)
        return stopped

    def _run(self) -> ev.LoopStopped:
        self.workspace.check_session_files()
        self.workspace.acquire_lock()
        self.execution.start_executor()
        for message in recover(self.repo, self.config, self.history, self.results_path):
            self.emit(ev.Repaired(message))
        self.workspace.enter_branch()
        if not self.results_path.exists():
            rows = self.rows_from_history()
            self.write_results(ResultsTable(self.config.metric_name, rows))
            if rows:
                self.emit(ev.Info(f"{RESULTS_FILE} was missing; rebuilt its {len(rows)} rows from .autoresearch/"))
            else:
                self.emit(ev.Info(f"{RESULTS_FILE} was missing; started a new one"))
        check_writable(self.results_path)
        table = self.reconcile(read_results(self.results_path))
        if self.proposer is None:
            from .agents import make_proposer

            self.proposer = make_proposer(self.config, self.root)
        metas = self.history.all_meta()
        for meta in metas.values():
            self.usage_total += Usage(meta.tokens_in, meta.tokens_out, meta.cost_usd)
            key = meta.extra.get("content_key")
            if isinstance(key, str) and meta.number <= len(table.rows):
                self.tried.setdefault(key, meta.number)
        pending = metas.get(len(table.rows) + 1)
        if pending is not None and pending.status == "skipped":
            self.carry = Usage(pending.tokens_in, pending.tokens_out, pending.cost_usd)
        for record in self.proposing.records(table, metas, diffs=False):
            self.proposer.observe(record)
        self.emit(
            ev.SessionStarted(
                self.config.tag,
                self.config.branch,
                self.config.metric_name,
                self.config.metric_direction,
                len(table.rows),
                self.config.max_experiments,
            )
        )
        while True:
            try:
                return self._experiments(table)
            except _InfraLost as lost:
                stopped = self._stuck_on_infrastructure(lost.sentence)
                if stopped is not None:
                    return stopped
                table = read_results(self.results_path)
            except _Interrupted:
                return ev.LoopStopped("stopped by the user", ok=True, experiments=self.rows_count())

    def stuck(self, problem: str, rows: int) -> ev.LoopStopped | None:
        """Something only the user can fix (`problem` ends with what to do, then ...): a headless session stops
        with it; the app's pauses and says it, to go on once resumed. One rule for one worker and many."""
        if self.when_stuck == "stop":
            return ev.LoopStopped(f"{problem}run again.", ok=False, experiments=rows)
        self.emit(ev.NeedsUser(f"{problem}resume (p)."))
        self.pause()
        return None

    @staticmethod
    def skips_problem(skips: int, reason: str) -> str:
        return (
            f"{skips} proposal{'s' if skips > 1 else ''} in a row could not be used (last: {reason}); check the model "
            "and the editable files, then "
        )

    def _stuck_on_infrastructure(self, sentence: str) -> ev.LoopStopped | None:
        """The executor lost a run (not the idea's fault, nothing recorded): stop, or pause until resumed."""
        problem = f"{sentence.rstrip('.')}; the experiment was not recorded: fix the cluster, then "
        stopped = self.stuck(problem, self.rows_count())
        if stopped is not None:
            return stopped
        if not self._wait_if_paused(self.rows_count()):
            return ev.LoopStopped("stopped by the user", ok=True, experiments=self.rows_count())
        return None

    # The session.

    def _experiments(self, table: ResultsTable) -> ev.LoopStopped:
        if table.baseline() is None and table.best(self.config.higher_is_better) is None:
            table = self.baseline.measure(table)
            if table.baseline() is None:
                return ev.LoopStopped(self.measuring.baseline_failure(), ok=False, experiments=len(table.rows))
        elsewhere = judge.measured_elsewhere(table, self.history.all_meta(), self.host, self.config.higher_is_better)
        if elsewhere is not None:
            table = self.baseline.remeasure_elsewhere(table, elsewhere)
            if table.rows[-1].status != "baseline":
                return ev.LoopStopped(self.measuring.baseline_failure(), ok=False, experiments=len(table.rows))
        from .scheduler import Scheduler, places

        self.scheduler = Scheduler(self, places(self))
        try:
            return self.scheduler.run(table)
        finally:
            self.scheduler = None

    def _stop_if_broken(self, table: ResultsTable) -> ev.LoopStopped | None:
        """After a record: when the last runs all failed the same way, stop (or pause until resumed)."""
        last = table.rows[-judge.SAME_FAILURES :]
        if len(last) < judge.SAME_FAILURES or any(r.status != "crash" for r in last):
            return None  # before reading every meta.json: this runs after each record
        broken = judge.broken_environment(table, self.history.all_meta(), self.history)
        if not broken:
            return None
        problem = (
            f"{broken}; the environment looks broken, not the ideas: fix it (try `{self.config.run_command}` "
            "by hand), then "
        )
        return self.stuck(problem, len(table.rows))

    def _wait_if_paused(self, number: int) -> bool:
        """Block while paused; False when the user stopped instead."""
        with self.cond:
            if self.stop_requested:
                return False
            if not self.pause_requested:
                return True
            self.set_phase("paused", number)
            self.emit(ev.Paused())
            while self.pause_requested and not self.stop_requested:
                self.cond.wait()
            if self.stop_requested:
                return False
        self.emit(ev.Resumed())
        return True

    def _stop_rule(self, table: ResultsTable) -> str | None:
        cfg = self.config
        if self.stop_requested:
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
        if cfg.max_cost_usd is not None and self.usage_total.cost_usd >= cfg.max_cost_usd:
            return f"spent ${self.usage_total.cost_usd:.2f} of the ${cfg.max_cost_usd:.2f} cost cap"
        return None
