"""The state one session shares across its parts: config, history, results.tsv, usage, controls, events.

The loop is built in layers, each a class in its own module that may use the layers below it:
SessionState (this) < Workspace (git position, commit, reset) < Execution (runs through an Executor)
< Measuring (what the judge needs measured) < Proposing (asking the model, drafts) < Experiment (one
experiment: propose, commit, run, judge, record) < ExperimentLoop (core/loop.py: the scheduler).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from . import events as ev
from .config import RESULTS_FILE, RUN_LOG, SessionConfig, load_config
from .draft import Draft
from .errors import UserError
from .executor import Executor, LocalExecutor
from .gitops import Repo
from .history import ExperimentMeta, History
from .judge import Judge
from .loss_curve import LossCurve
from .metric import failure_note
from .proposer import (
    ExperimentRecord,
    Proposer,
    Usage,
)
from .results import (
    STATUSES,
    ResultRow,
    ResultsTable,
    header,
    read_results,
)
from .runner import RunOutcome
from .session_lock import SessionLock

if TYPE_CHECKING:
    from .workers import ParallelSession

Kind = Literal["baseline", "experiment", "fix"]


_DISK_FULL = "The disk is full{where}; free some space and run again, which finishes what this run left."


RECENT_DIFFS = 5


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _exit_text(code: int | None) -> str:
    return f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"


def crash_why(outcome: RunOutcome, source: Path, pattern: str, metric_name: str) -> str:
    """Why a run gave no metric, for its crash row (a timeout is worded by the caller, which may re-measure)."""
    if outcome.cancelled:
        return "killed by the user"
    if outcome.timed_out:
        return "timeout"
    return failure_note(outcome.exit_code, source, pattern, metric_name)


class _Interrupted(Exception):
    """stop_now() ended the experiment in flight: it was reverted and is not recorded."""


class _InfraLost(_Interrupted):
    """The executor lost the run to the infrastructure (a cluster's node died): reverted, not recorded."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


class SessionState:
    def __init__(
        self,
        root: Path,
        sink: ev.EventSink,
        proposer: Proposer | None = None,
        *,
        when_stuck: Literal["stop", "pause"] = "stop",
        executor: Executor | None = None,
    ) -> None:
        self.repo = Repo(root)
        self.root = self.repo.root
        self.config: SessionConfig = load_config(self.root)
        self.history = History(self.root)
        self.results_path = self.root / RESULTS_FILE
        self.log_path = self.root / RUN_LOG
        self._sink = sink
        self.executor: Executor = executor or LocalExecutor()
        self._executor_from_config = executor is None
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
        self._draft: Draft | None = None
        self._unobserved: list[ExperimentRecord] = []
        self._last_outcome: RunOutcome | None = None
        self._lock = SessionLock(self.repo)
        self._judge = Judge(self.config)
        self._host = socket.gethostname()
        self._propose_s: dict[int, float] = {}  # the time each experiment's proposals took
        self._curves: dict[tuple[int, int, int], LossCurve | None] = {}  # by (number, log size, log mtime)
        self._parallel: ParallelSession | None = None  # the scheduler while `workers` > 1 (core/workers.py)

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
