"""Events the loop emits. The TUI turns them into messages; the headless CLI prints them as lines.

Every event is a small frozen dataclass. `describe()` gives the plain line a headless run prints
(None for events too frequent or too detailed for a log, such as log lines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .results import ResultRow

Phase = Literal["starting", "proposing", "running", "judging", "fixing", "paused", "stopped"]


@dataclass(frozen=True)
class Event:
    def describe(self) -> str | None:
        return None


@dataclass(frozen=True)
class SessionStarted(Event):
    tag: str
    branch: str
    metric_name: str
    metric_direction: str
    experiments_done: int
    max_experiments: int

    def describe(self) -> str:
        cap = str(self.max_experiments) if self.max_experiments else "no cap"
        return (
            f"session {self.tag} on {self.branch}: {self.metric_name} ({self.metric_direction} is better), "
            f"{self.experiments_done} experiments so far, cap {cap}"
        )


@dataclass(frozen=True)
class Repaired(Event):
    """Recovery made the session consistent after a crash of the tool; one line says what it did."""

    message: str

    def describe(self) -> str:
        return f"repaired: {self.message}"


@dataclass(frozen=True)
class PhaseChanged(Event):
    phase: Phase
    number: int

    def describe(self) -> str | None:
        return None


@dataclass(frozen=True)
class ExperimentStarted(Event):
    number: int
    kind: Literal["baseline", "experiment", "fix"]

    def describe(self) -> str | None:
        return f"#{self.number} {self.kind} starting" if self.kind != "experiment" else None


@dataclass(frozen=True)
class ProposalReady(Event):
    number: int
    description: str
    category: str
    rationale: str
    diff: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def describe(self) -> str:
        return f"#{self.number} proposal [{self.category}]: {self.description}"


@dataclass(frozen=True)
class Drafted(Event):
    """The proposal for `number` answered while #`during` runs; it waits in memory for its turn."""

    number: int
    during: int
    description: str

    def describe(self) -> str:
        return f"#{self.number} drafted while #{self.during} runs: {self.description}"


@dataclass(frozen=True)
class ReplySentBack(Event):
    """A reply of the model could not be used; it was told why and asked again (nothing was run)."""

    number: int
    reply: int
    reason: str

    def describe(self) -> str:
        return f"#{self.number} reply {self.reply} not usable: {self.reason}; asking again"


@dataclass(frozen=True)
class ProposalSkipped(Event):
    """The proposer could not produce a usable change; nothing was committed or run."""

    number: int
    reason: str
    in_a_row: int

    def describe(self) -> str:
        return f"#{self.number} skipped ({self.in_a_row} in a row): {self.reason}"


@dataclass(frozen=True)
class RunStarted(Event):
    number: int
    commit: str
    pid: int
    budget_s: float
    timeout_s: float
    started_at: float

    def describe(self) -> str:
        return f"#{self.number} running {self.commit} (budget {self.budget_s:g}s, timeout {self.timeout_s:g}s)"


@dataclass(frozen=True)
class LogAppended(Event):
    """New lines of run.log, batched a few times a second; `dropped` lines were skipped to stay bounded."""

    number: int
    lines: tuple[str, ...]
    dropped: int = 0


@dataclass(frozen=True)
class RunFinished(Event):
    number: int
    exit_code: int | None
    duration_s: float
    memory_gb: float
    timed_out: bool
    killed_by_user: bool

    def describe(self) -> str:
        how = "timed out" if self.timed_out else "killed" if self.killed_by_user else f"exit {self.exit_code}"
        memory = f"{self.memory_gb * 1024:.0f} MB" if self.memory_gb < 1 else f"{self.memory_gb:.1f} GB"
        return f"#{self.number} finished in {self.duration_s:.1f}s ({how}), memory {memory}"


@dataclass(frozen=True)
class ResultRecorded(Event):
    number: int
    row: ResultRow
    best: float | None
    baseline: float | None
    tokens: int = 0
    cost_usd: float = 0.0

    def describe(self) -> str:
        return f"#{self.number} {self.row.commit} {self.row.metric:.6f} {self.row.status} {self.row.description}"


@dataclass(frozen=True)
class Paused(Event):
    def describe(self) -> str:
        return "paused"


@dataclass(frozen=True)
class Resumed(Event):
    def describe(self) -> str:
        return "resumed"


WorkerState = Literal["idle", "held", "running", "confirming", "re-applying", "re-measuring", "guarding", "stopped"]


@dataclass(frozen=True)
class WorkerChanged(Event):
    """A parallel worker (core/scheduler.py) took up, finished or stopped a run; `description` is its idea."""

    worker: int
    state: WorkerState
    description: str = ""
    device: str = ""
    started_at: float | None = None
    budget_s: float = 0.0

    def describe(self) -> str | None:
        if self.state in ("idle", "stopped"):
            return None
        if self.state == "held":
            return f"worker {self.worker} paused: it takes no new idea until resumed"
        on = f" on device {self.device}" if self.device else ""
        return f"worker {self.worker}{on} {self.state}: {self.description}"


@dataclass(frozen=True)
class WorkerLog(Event):
    """New lines of one worker's run log, batched like LogAppended."""

    worker: int
    lines: tuple[str, ...]
    dropped: int = 0


@dataclass(frozen=True)
class Info(Event):
    message: str

    def describe(self) -> str:
        return self.message


@dataclass(frozen=True)
class NeedsUser(Event):
    """Something only the user can fix; the loop has stopped or paused."""

    message: str

    def describe(self) -> str:
        return f"needs you: {self.message}"


@dataclass(frozen=True)
class LoopStopped(Event):
    """The loop ended. `ok` is True when it ended by its own rules or the user's stop."""

    reason: str
    ok: bool
    experiments: int = 0

    def describe(self) -> str:
        return f"stopped: {self.reason}"


EventSink = Callable[[Event], None]
