"""The state one session shares across its parts: config, history, results.tsv, usage, controls, events, and
the `workspace` (the user's checkout, core/workspace.py).

The parts are objects, each in its own module, given what they use (none inherits another):
`Execution` (core/execution.py: runs through an Executor), `Measuring` (core/measuring.py: what the judge needs
measured), `Proposing` (core/proposing.py: asking the model, the checks before writing), `Recording`
(core/recording.py: the row), `Baseline` (core/baseline.py). `ExperimentLoop` (core/loop.py) is this state and
holds the parts; `Scheduler` (core/scheduler.py) schedules every session with them, in places
(core/places.py): the checkout for one worker, a worktree per worker for several.
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
from .errors import UserError
from .executor import Executor, LocalExecutor
from .gitops import Repo
from .history import ExperimentMeta, History
from .judge import Judge
from .metric import failure_note
from .proposer import (
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
from .workspace import Workspace

if TYPE_CHECKING:
    from .scheduler import Scheduler

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
        self.sink = sink
        self.executor: Executor = executor or LocalExecutor()
        self.executor_from_config = executor is None
        self.proposer = proposer
        self.when_stuck = when_stuck
        self.cond = threading.Condition()
        self.pause_requested = False
        self.stop_requested = False
        self.cancel = threading.Event()
        self.cancel_reason: Literal["skip", "stop"] | None = None
        self.phase: ev.Phase = "starting"
        self.usage_total = Usage()
        self.carry = Usage()
        self.tried: dict[str, int] = {}
        self.last_outcome: RunOutcome | None = None
        self.workspace = Workspace(self.repo, self.config, self.history, self.emit)
        self.judge = Judge(self.config)
        self.host = socket.gethostname()
        self.propose_s: dict[int, float] = {}  # the time each experiment's proposals took
        self.scheduler: Scheduler | None = None  # while the session runs (core/scheduler.py)

    def emit(self, event: ev.Event) -> None:
        with contextlib.suppress(Exception):
            self.sink(event)

    def set_phase(self, phase: ev.Phase, number: int) -> None:
        self.phase = phase
        self.emit(ev.PhaseChanged(phase, number))

    def rows_count(self) -> int:
        try:
            return len(read_results(self.results_path).rows)
        except UserError:
            return 0

    def rows_from_history(self) -> tuple[ResultRow, ...]:
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

    def reconcile(self, table: ResultsTable) -> ResultsTable:
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
        known = self.rows_from_history()
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
        self.write_results(rebuilt)
        self.emit(
            ev.Repaired(
                f"{name} held {len(table.rows)} of the {len(known)} rows .autoresearch/ records; rebuilt the others "
                f"from .autoresearch/ (the file as it was is kept in {copy.relative_to(self.root).as_posix()})"
            )
        )
        return rebuilt

    def write_results(self, table: ResultsTable) -> None:
        text = header(table.metric_name) + "".join(r.to_line(table.has_duration) for r in table.rows)
        if not table.has_duration:
            text = text.replace("\tduration_s", "", 1)
        tmp = self.results_path.with_name(f".{RESULTS_FILE}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.results_path)

    def save_carry(self, number: int, note: str) -> None:
        if self.carry.tokens or self.carry.cost_usd:
            self.history.save_meta(
                ExperimentMeta(
                    number=number,
                    kind="proposing",
                    status="skipped",
                    note=note,
                    tokens_in=self.carry.tokens_in,
                    tokens_out=self.carry.tokens_out,
                    cost_usd=self.carry.cost_usd,
                )
            )
