"""What the run screen shows, kept apart from the widgets: plain data folded from the loop's events.

Nothing here imports Textual, so the folding is cheap and can be checked on its own.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from autoresearch.core.events import (
    Event,
    ExperimentStarted,
    LogAppended,
    LoopStopped,
    NeedsUser,
    Paused,
    PhaseChanged,
    ProposalReady,
    ResultRecorded,
    Resumed,
    RunFinished,
    RunStarted,
    SessionStarted,
    WorkerChanged,
    WorkerLog,
)
from autoresearch.core.loss_curve import parse_loss
from autoresearch.core.results import ResultRow

MAX_LOSS_POINTS = 240
MAX_LINES_PER_BATCH = 400


def improvement_pct(baseline: float | None, best: float | None, higher_is_better: bool) -> float | None:
    """How much better the best is than the baseline, in percent of the baseline (positive is better)."""
    if baseline is None or best is None or baseline == 0:
        return None
    delta = best - baseline if higher_is_better else baseline - best
    return 100.0 * delta / abs(baseline)


def best_so_far(rows: Iterable[tuple[int, ResultRow]], higher_is_better: bool) -> list[tuple[int, float]]:
    """The best kept (or baseline) metric after each experiment that set a new best."""
    points: list[tuple[int, float]] = []
    best: float | None = None
    for number, row in rows:
        if row.status not in ("baseline", "keep"):
            continue
        if best is None or (row.metric > best if higher_is_better else row.metric < best):
            best = row.metric
            points.append((number, best))
    return points


class EventBuffer:
    """Collects events on the loop's thread; the UI drains it on a timer.

    Consecutive log batches of one experiment merge, and only the last MAX_LINES_PER_BATCH lines
    are kept (the rest are counted as dropped), so memory stays bounded however fast a run prints.
    """

    def __init__(self, max_lines: int = MAX_LINES_PER_BATCH) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._max_lines = max_lines

    def put(self, event: Event) -> None:
        with self._lock:
            last = self._events[-1] if self._events else None
            if isinstance(event, LogAppended) and isinstance(last, LogAppended) and last.number == event.number:
                lines = last.lines + event.lines
                dropped = last.dropped + event.dropped
                if len(lines) > self._max_lines:
                    dropped += len(lines) - self._max_lines
                    lines = lines[-self._max_lines :]
                self._events[-1] = LogAppended(event.number, lines, dropped)
            elif isinstance(event, WorkerLog) and isinstance(last, WorkerLog) and last.worker == event.worker:
                lines = (last.lines + event.lines)[-self._max_lines :]
                dropped = last.dropped + event.dropped + len(last.lines) + len(event.lines) - len(lines)
                self._events[-1] = WorkerLog(event.worker, lines, dropped)
            elif isinstance(event, LogAppended) and len(event.lines) > self._max_lines:
                cut = len(event.lines) - self._max_lines
                self._events.append(LogAppended(event.number, event.lines[cut:], event.dropped + cut))
            else:
                self._events.append(event)

    def drain(self) -> list[Event]:
        with self._lock:
            events, self._events = self._events, []
        return events


@dataclass
class RunState:
    """Everything the header, plot, sparkline and table need, folded from results and events."""

    tag: str = ""
    metric_name: str = "metric"
    agent: str = ""
    higher_is_better: bool = False
    max_experiments: int = 0
    rows: list[tuple[int, ResultRow]] = field(default_factory=list)
    number: int = 0
    kind: str = ""
    phase: str = "starting"
    pause_requested: bool = False
    stop_requested: bool = False
    paused: bool = False
    best: float | None = None
    baseline: float | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    run_started_at: float | None = None
    budget_s: float = 0.0
    timeout_s: float = 0.0
    last_duration_s: float | None = None
    activity: str = ""
    needs_user: str = ""
    stopped: LoopStopped | None = None
    losses: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_LOSS_POINTS))
    workers: dict[int, WorkerChanged] = field(default_factory=dict)
    """Each parallel worker's last state (empty in a session with one worker)."""
    shown_worker: int = 1
    """The worker whose log the log pane shows."""
    held_workers: set[int] = field(default_factory=set)
    """Workers the user paused on their own (P)."""

    def _add_losses(self, lines: tuple[str, ...]) -> bool:
        # Only the last maxlen losses are kept, so a batch is read from its end.
        found: list[float] = []
        for line in reversed(lines):
            loss = parse_loss(line)
            if loss is not None:
                found.append(loss)
                if len(found) == self.losses.maxlen:
                    break
        self.losses.extend(reversed(found))
        return bool(found)

    @property
    def done(self) -> int:
        return len(self.rows)

    @property
    def run_active(self) -> bool:
        """A proposal, run, judgement or fix is in flight (quitting now would interrupt it)."""
        return self.stopped is None and self.phase in ("proposing", "running", "judging", "fixing")

    @property
    def improvement(self) -> float | None:
        return improvement_pct(self.baseline, self.best, self.higher_is_better)

    def best_number(self) -> int | None:
        points = best_so_far(self.rows, self.higher_is_better)
        return points[-1][0] if points else None

    def sparkline_data(self) -> tuple[str, list[float]]:
        """The current run's loss when its log prints one, else the best-so-far series."""
        if len(self.losses) >= 2:
            return "loss", list(self.losses)
        return "best", [value for _, value in best_so_far(self.rows, self.higher_is_better)]

    def set_results(self, rows: list[ResultRow]) -> None:
        self.rows = list(enumerate(rows, 1))
        self.baseline = next((r.metric for r in rows if r.status == "baseline"), None)
        points = best_so_far(self.rows, self.higher_is_better)
        self.best = points[-1][1] if points else None

    def _new_run(self) -> None:
        self.stopped = None
        self.phase = "starting"
        self.paused = self.pause_requested = self.stop_requested = False
        self.needs_user = ""
        self.run_started_at = None
        self.workers.clear()
        self.held_workers.clear()

    def apply(self, event: Event) -> set[str]:
        """Fold one event in; returns which parts of the screen changed."""
        changed: set[str] = set()
        description = event.describe()
        if description and not isinstance(event, ResultRecorded):
            self.activity = description
            changed.add("activity")
        if isinstance(event, SessionStarted):
            if self.stopped is not None:  # a watcher: the next run of the session starts
                self._new_run()
                changed.add("banner")
            self.tag = event.tag
            self.metric_name = event.metric_name
            self.higher_is_better = event.metric_direction == "higher"
            self.max_experiments = event.max_experiments
            changed.add("header")
        elif isinstance(event, PhaseChanged):
            self.phase = event.phase
            self.number = event.number or self.number
            if event.phase != "paused":
                self.paused = False
            changed.add("header")
        elif isinstance(event, ExperimentStarted):
            self.number = event.number
            self.kind = event.kind
            self.needs_user = ""
            changed.add("header")
        elif isinstance(event, ProposalReady):
            self.tokens += event.tokens_in + event.tokens_out
            self.cost_usd += event.cost_usd
            changed.add("header")
        elif isinstance(event, RunStarted):
            self.number = event.number
            self.run_started_at = event.started_at
            self.budget_s = event.budget_s
            self.timeout_s = event.timeout_s
            self.losses.clear()
            changed |= {"header", "spark"}
        elif isinstance(event, WorkerChanged):
            self.workers[event.worker] = event
            if event.state == "held":
                self.held_workers.add(event.worker)
            elif event.state == "idle":
                self.held_workers.discard(event.worker)
            if event.worker == self.shown_worker and event.started_at is not None:
                self.losses.clear()
                changed.add("spark")
            changed.add("header")
        elif isinstance(event, WorkerLog):
            if event.worker == self.shown_worker:
                self._add_losses(event.lines)
                changed.add("spark")
        elif isinstance(event, LogAppended):
            if self._add_losses(event.lines):
                changed.add("spark")
        elif isinstance(event, RunFinished):
            self.run_started_at = None
            self.last_duration_s = event.duration_s
            changed.add("header")
        elif isinstance(event, ResultRecorded):
            self.rows.append((event.number, event.row))
            self.best = event.best
            self.baseline = event.baseline
            # The loop reports the session's totals here, skipped proposals included.
            self.tokens = event.tokens
            self.cost_usd = event.cost_usd
            changed |= {"header", "table", "plot", "spark"}
        elif isinstance(event, Paused):
            self.paused = True
            self.pause_requested = False
            self.phase = "paused"
            changed.add("header")
        elif isinstance(event, Resumed):
            self.paused = False
            self.pause_requested = False
            changed.add("header")
        elif isinstance(event, NeedsUser):
            self.needs_user = event.message
            changed |= {"header", "banner"}
        elif isinstance(event, LoopStopped):
            self.stopped = event
            self.phase = "stopped"
            self.run_started_at = None
            changed |= {"header", "banner"}
        return changed
