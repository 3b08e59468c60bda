"""Pruning: stop a run whose loss curve is clearly behind the best's at the same point of the run.

A `Watch` is handed to each training run. It reads the loss the log prints (core/loss_curve.py's parser),
times each value as a share of the time budget, and keeps the run's curve beside its log
(`run.curve.json`). When the session has `prune: on` and a `Bar` to compare with, it checks the curve as it
grows: from `MIN_SHARE` of the budget on, a run whose smoothed loss is behind the best's at the same share by
more than `BAND_SIGMAS` times the spread of repeated runs there (the baseline's repeats, confirmations), plus
`REMAINING_SHARE` times what the best still gains from there to its end, for `STREAK` checks in a row, is
stopped through the run's cancel event. Changes to the schedule itself (warmup, decay, steps, epochs, the
budget) are never stopped. Pruning acts only once the session's own finished runs show that the end of the
curve orders runs as the metric does. The rule and its measurements: docs/PRUNING.md.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import SessionConfig
from .errors import UserError
from .history import ExperimentMeta, History
from .judge import reference
from .loss_curve import parse_loss
from .results import read_results
from .runner import RunOutcome

MIN_SHARE = 0.2
"""No run is stopped before this share of its time budget."""
BAND_SIGMAS = 4.0
"""How many standard deviations of repeated runs (at the same share of the budget) a run must be behind."""
REMAINING_SHARE = 0.5
"""...plus this many times what the best still gains from that point to its end (a warmdown's late drop)."""
STREAK = 3
"""Checks in a row outside the band before a run is stopped (a spike is one check)."""
WINDOW = 0.05
"""A curve's value at a share of the budget: the median of its losses over this much of the budget before it."""
CHECK_EVERY = 0.01
"""A run is checked at most once per this share of its budget."""
BAND_FLOOR = 0.001
"""The band is at least this share of the best's loss, so deterministic runs are not stopped on rounding."""
MIN_PAIRS = 1
"""Pairs of finished experiments, clearly apart in the metric, needed to trust the curve..."""
MIN_AGREEMENT = 0.8
"""...and the share of them whose curve ends order them as the metric does."""
BINS = 200
"""A stored curve keeps at most one median loss per 1/BINS of the budget."""
MIN_POINTS = 3
"""A curve with fewer losses before the end of its budget cannot be compared while the run goes on."""

_SCHEDULE_RE = re.compile(
    r"warm|decay|sched|cosine|anneal|cooldown|step|epoch|iter|budget|time_limit|max_time|total_|min_lr|lr_min|final_lr",
    re.IGNORECASE,
)
_RUN_CURVE = re.compile(r"^run(-\d+)?\.curve\.json$")

Point = tuple[float, float]


def curve_path(log: Path) -> Path:
    """Where the curve of the run logged at `log` is kept (`run.log` -> `run.curve.json`)."""
    return log.with_name(f"{log.stem}.curve.json")


def schedule_change(diff: str) -> str | None:
    """The first changed line of a diff that touches the schedule (warmup, decay, steps, epochs, budget), if any."""
    for line in diff.splitlines():
        if line.startswith(("+++", "---")) or not line.startswith(("+", "-")):
            continue
        if _SCHEDULE_RE.search(line):
            return line[1:].strip()
    return None


def value_at(points: Sequence[Point], share: float, window: float = WINDOW) -> float | None:
    """A curve's smoothed loss at `share` of the budget: the median over the window before it, or interpolated."""
    if not points or share > points[-1][0] + window:
        return None
    shares = [p[0] for p in points]
    lo, hi = bisect.bisect_left(shares, share - window), bisect.bisect_right(shares, share)
    if hi > lo:
        return statistics.median(p[1] for p in points[lo:hi])
    if hi == 0 or hi >= len(points):
        return None
    (s0, v0), (s1, v1) = points[hi - 1], points[hi]
    return v0 + (v1 - v0) * (share - s0) / (s1 - s0) if s1 > s0 else v1


def end_value(points: Sequence[Point]) -> float | None:
    return value_at(points, points[-1][0]) if points else None


def binned(points: Sequence[Point], bins: int = BINS) -> list[Point]:
    """At most one point per 1/bins of the budget: the median loss of the points in it, at their mean share."""
    groups: dict[int, list[Point]] = {}
    for share, loss in points:
        groups.setdefault(int(share * bins), []).append((share, loss))
    return [
        (round(statistics.fmean(p[0] for p in g), 5), statistics.median(p[1] for p in g))
        for _, g in sorted(groups.items())
    ]


@dataclass
class StoredCurve:
    points: list[Point]
    budget_s: float
    pruned: dict[str, float | str] | None = None
    """Where and why the run was stopped: share, loss, best, band, stopped_s, expected_s, note."""

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"budget_s": self.budget_s, "points": [list(p) for p in self.points], "pruned": self.pruned}
        path.write_text(json.dumps(data), encoding="utf-8")


def load_curve(path: Path) -> StoredCurve | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        points = [(float(s), float(v)) for s, v in data.get("points", [])]
        return StoredCurve(points, float(data.get("budget_s", 0.0)), data.get("pruned"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def run_curves(history: History, number: int) -> list[StoredCurve]:
    """The curves of an experiment's own runs (run.log, run-2.log, ...), not of other code run under its number."""
    folder = history.experiment_dir(number)
    try:
        names = sorted(p.name for p in folder.iterdir() if _RUN_CURVE.match(p.name))
    except OSError:
        return []
    return [c for c in (load_curve(folder / n) for n in names) if c is not None]


def pruned_info(history: History, number: int) -> dict[str, float | str] | None:
    curves = run_curves(history, number)
    return curves[0].pruned if curves else None


@dataclass(frozen=True)
class Bar:
    """What a run is compared with: the best's curves and the spread of repeated runs at each share."""

    best: int
    curves: tuple[tuple[Point, ...], ...]
    groups: tuple[tuple[tuple[Point, ...], ...], ...]
    expected_s: float

    def reference(self, share: float) -> float | None:
        values = [v for c in self.curves if (v := value_at(c, share)) is not None]
        return statistics.fmean(values) if values else None

    def end(self) -> float | None:
        values = [v for c in self.curves if (v := end_value(c)) is not None]
        return statistics.fmean(values) if values else None

    def band(self, share: float) -> float | None:
        squares, df = 0.0, 0
        for group in self.groups:
            values = [v for c in group if (v := value_at(c, share)) is not None]
            if len(values) > 1:
                mean = statistics.fmean(values)
                squares += sum((v - mean) ** 2 for v in values)
                df += len(values) - 1
        return math.sqrt(squares / df) if df else None


def _finished_points(meta: ExperimentMeta, curves: list[StoredCurve]) -> float | None:
    ends = [v for c in curves if (v := end_value(c.points)) is not None]
    return statistics.fmean(ends) if ends and meta.metric is not None else None


def curve_agreement(pairs: Iterable[tuple[float, float]], higher_is_better: bool, noise: float) -> tuple[int, int]:
    """(pairs clearly apart in the metric, of them those whose curve ends order them the same way)."""
    items = list(pairs)
    decisive = agree = 0
    for i, (loss_a, metric_a) in enumerate(items):
        for loss_b, metric_b in items[i + 1 :]:
            if abs(metric_a - metric_b) <= 2 * noise or loss_a == loss_b:
                continue
            decisive += 1
            better_metric = (metric_a > metric_b) == higher_is_better
            if better_metric == (loss_a < loss_b):
                agree += 1
    return decisive, agree


def plan(config: SessionConfig, history: History, best: int | None, diff: str) -> tuple[Bar | None, str]:
    """The bar a new run of a change is held to, or None and the one sentence that says why it is not pruned."""
    if best is None:
        return None, "pruning waits for a best result to compare with"
    if (line := schedule_change(diff)) is not None:
        return None, f"not pruned: the change touches the schedule ({line[:60]})"
    metas = history.all_meta()
    best_curves = run_curves(history, best)
    if not best_curves:
        return None, f"pruning cannot act: #{best}'s log printed no training loss (`loss 2.31` or `loss=2.31` lines)"
    early = [c for c in best_curves if sum(1 for s, _ in c.points if s < 0.9) >= MIN_POINTS]
    if not early:
        return None, f"pruning cannot act: #{best}'s log prints its loss only at the end of the run"
    groups: list[tuple[tuple[Point, ...], ...]] = []
    ends: list[tuple[float, float]] = []
    spreads: list[list[float]] = []
    for number, meta in sorted(metas.items()):
        if meta.status not in ("keep", "discard", "baseline") or meta.metric is None:
            continue
        curves = [c for c in run_curves(history, number) if c.pruned is None]
        if len(curves) > 1:
            groups.append(tuple(tuple(c.points) for c in curves))
        runs = meta.extra.get("runs")
        if isinstance(runs, list) and len(runs) > 1:
            spreads.append([float(r) for r in runs])
        end = _finished_points(meta, curves)
        if end is not None:
            ends.append((end, meta.metric))
    if not groups:
        return None, "pruning cannot act yet: no repeated runs of the same code to measure the band (baseline_runs 2)"
    sigma = _pooled(spreads)
    decisive, agree = curve_agreement(ends, config.higher_is_better, sigma)
    if decisive < MIN_PAIRS:
        return None, (
            f"pruning waits: {decisive} of {MIN_PAIRS} pairs of finished runs clearly apart in "
            f"{config.metric_name} to check that the loss curve predicts it"
        )
    if agree < MIN_AGREEMENT * decisive:
        return None, (
            f"pruning cannot act: the loss curve's end orders only {agree} of {decisive} pairs of runs as "
            f"{config.metric_name} does"
        )
    best_meta = metas.get(best)
    expected = best_meta.duration_s if best_meta and best_meta.duration_s else config.time_budget_s
    return Bar(best, tuple(tuple(c.points) for c in early), tuple(groups), float(expected)), ""


def _pooled(groups: list[list[float]]) -> float:
    squares, df = 0.0, 0
    for runs in groups:
        mean = statistics.fmean(runs)
        squares += sum((r - mean) ** 2 for r in runs)
        df += len(runs) - 1
    return math.sqrt(squares / df) if df else 0.0


@dataclass
class Watch:
    """Reads a run's loss lines as they come, keeps its curve, and stops the run when it is clearly behind."""

    budget_s: float
    cancel: threading.Event
    bar: Bar | None = None
    clock: Callable[[], float] = time.monotonic
    points: list[Point] = field(default_factory=list)
    pruned: dict[str, float | str] | None = None
    _started: float | None = None
    _checked: float = -1.0
    _fed: float = 0.0
    _streak: int = 0

    def feed(self, lines: Sequence[str]) -> None:
        """Take a batch of new log lines: they were written between the last batch and now, evenly spread.

        The run's clock starts at its first output, so a job waiting for a cluster's GPU, or the time to start
        one, is not counted as training."""
        if self._started is None:
            self._started = self.clock()
        now = (self.clock() - self._started) / self.budget_s
        values = [v for v in map(parse_loss, lines) if v is not None and math.isfinite(v)]
        before, self._fed = self._fed, now
        for k, value in enumerate(values, 1):
            share = before + (now - before) * k / len(values)
            self.points.append((share, value))
            if self.bar is not None and self.pruned is None and share - self._checked >= CHECK_EVERY:
                self._checked = share
                self._check(share)

    def feeding(self, then: Callable[[list[str], int], None]) -> Callable[[list[str], int], None]:
        """An `on_lines` for the executor that feeds this watch, then `then`."""

        def on_lines(lines: list[str], dropped: int) -> None:
            self.feed(lines)
            then(lines, dropped)

        return on_lines

    def _check(self, share: float) -> None:
        bar = self.bar
        assert bar is not None
        if share < MIN_SHARE:
            return
        loss = value_at(self.points, share)
        best, end, band = bar.reference(share), bar.end(), bar.band(share)
        if loss is None or best is None or end is None or band is None:
            self._streak = 0
            return
        band = max(band, BAND_FLOOR * abs(best))
        margin = BAND_SIGMAS * band + REMAINING_SHARE * max(0.0, best - end)
        self._streak = self._streak + 1 if loss - best > margin else 0
        if self._streak < STREAK:
            return
        note = (
            f"(pruned at {share * 100:.0f} % of the budget: loss {loss:.4g} vs best {best:.4g} ± {band:.2g} "
            f"of #{bar.best})"
        )
        self.pruned = {
            "share": round(share, 4),
            "loss": loss,
            "best": best,
            "band": band,
            "expected_s": round(bar.expected_s, 3),
            "of": bar.best,
            "note": note,
        }
        self.cancel.set()

    def save(self, path: Path, outcome: RunOutcome) -> None:
        """Keep the curve at `path`; where it was pruned only when that stopped the run (it was not over already)."""
        pruned = (
            dict(self.pruned, stopped_s=round(outcome.duration_s, 3)) if self.pruned and outcome.cancelled else None
        )
        StoredCurve(binned(self.points), self.budget_s, pruned).save(path)


class Pruning:
    """The session's pruning: which runs are watched against which bar, and what it says when it cannot act."""

    def __init__(self, config: SessionConfig, history: History, results_path: Path, say: Callable[[str], None]) -> None:
        self.config = config
        self.history = history
        self.results_path = results_path
        self.say = say
        self._said: set[str] = set()
        self._lock = threading.Lock()

    def watch(self, cancel: threading.Event, diff: str | None = None) -> Watch:
        """A watch for one run; it may stop the run only when given the change's diff (a change's first run)."""
        bar: Bar | None = None
        if self.config.prune == "on" and diff is not None:
            bar, why = plan(self.config, self.history, self._best(), diff)
            with self._lock:
                if why and why not in self._said and not why.startswith("not pruned"):
                    self._said.add(why)
                    self.say(why)
        return Watch(self.config.time_budget_s, cancel, bar)

    def _best(self) -> int | None:
        try:
            table = read_results(self.results_path)
        except UserError:
            return None
        ref = reference(table, self.history.all_meta(), self.config.higher_is_better)
        return None if ref is None else ref.number


def saved_seconds(history: History, numbers: Iterable[int]) -> tuple[int, float]:
    """(runs stopped by pruning, run time they did not use: the best's duration minus where each was stopped)."""
    count, saved = 0, 0.0
    for number in numbers:
        info = pruned_info(history, number)
        if info is None:
            continue
        count += 1
        saved += max(0.0, float(info.get("expected_s", 0.0)) - float(info.get("stopped_s", 0.0)))
    return count, saved


_BLOCKS = "▁▂▃▄▅▆▇█"


def comparison(history: History, number: int, width: int = 40) -> str:
    """A pruned run's loss curve above the best's it was compared with, on one scale (empty if it was not pruned)."""
    info = pruned_info(history, number)
    own = run_curves(history, number)
    best = run_curves(history, int(info.get("of", 0))) if info else []
    if info is None or not own or not best:
        return ""
    shares = [(k + 0.5) / width for k in range(width)]
    rows = [[value_at(c.points, s) for s in shares] for c in (own[0], best[0])]
    values = [v for row in rows for v in row if v is not None]
    if not values:
        return ""
    lo, hi = min(values), max(values)

    def spark(row: list[float | None]) -> str:
        return "".join(
            " " if v is None else _BLOCKS[round((v - lo) / (hi - lo) * (len(_BLOCKS) - 1)) if hi > lo else 0]
            for v in row
        )

    label = f"best #{info['of']}"
    pad = max(len(label), len("this run"))
    return (
        f"{'this run':<{pad}}  {spark(rows[0])}  stopped at {float(info['share']) * 100:.0f} %\n"
        f"{label:<{pad}}  {spark(rows[1])}  loss {lo:.4g} to {hi:.4g}, 0 to 100 % of the budget"
    )
