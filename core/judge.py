"""How a result is judged: the noise floor, confirmation re-runs, the time budget, "no effect".

The loop measures, this module decides. The rule (docs/JUDGING.md):

- The noise is the pooled standard deviation of repeated runs of the same code in this session (the
  baseline is run `baseline_runs` times; confirmation re-runs and re-measures add to it).
- A change's gain is the best's mean minus the change's mean (in the better direction); its z is that gain
  over the noise of a difference of two means, sigma * sqrt(1/runs + 1/best_runs). A kept best re-measured on
  fresh seeds is judged by those runs alone: its own runs selected it, so they carry luck (Reference.judged).
- z >= noise_sigmas (and gain >= min_gain): kept. A gain of at least half that margin is run again, up to
  `confirm_runs` times, and judged on the mean of all its runs. Anything less is discarded.
- `judging: greedy` is the original rule: strictly better than the best is kept, one baseline run.

Each verdict carries the note its row's description ends with, e.g. `(confirmed 2/2: gain 0.0031 = 2.4σ,
noise 0.0013)` or `(within noise: gain -0.0004, noise 0.002)`.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from .config import SessionConfig
from .crash_log import crash_reason
from .effect import same_training
from .history import ExperimentMeta, History
from .results import ResultRow, ResultsTable, is_better

SLOWER_FACTOR = 1.5
"""A run this many times as long as the run it is compared with is marked (and a re-measure that slow means
the machine is slower than it was)."""
SLOWER_MIN_S = 1.0
"""...and at least this many seconds longer, so tiny runs' start-up jitter is not flagged."""
SAME_FAILURES = 3
"""This many failed runs in a row with the same last error line mean the environment is broken."""
REMEASURE_BELOW = 3
"""A close miss against a best with fewer runs than this measures the best once more (a kept run may be lucky)."""
CONFIRM_FROM = 0.5
"""A gain of at least this share of the keep margin is run again rather than discarded at once."""

Action = Literal["keep", "discard", "confirm"]


@dataclass(frozen=True)
class Noise:
    sigma: float | None
    """Pooled standard deviation of repeated runs of the same code; None before any repeat."""
    df: int
    """Degrees of freedom behind it: repeated runs beyond the first of each version."""
    runs: int = 0
    """The runs it was measured on."""
    seeded: bool = False
    """Repeats ran under other seeds (core/seeds.py), so it is the seed-to-seed spread."""

    def text(self) -> str:
        if self.sigma is None:
            return "noise not measured yet"
        if self.sigma == 0 and not self.seeded:
            return "noise 0, no seed varies"
        return f"noise {fmt(self.sigma)}" + (f" over {self.runs} seeds" if self.seeded else "")


@dataclass(frozen=True)
class Reference:
    """What a change is compared with: the best result (its number and every run of its code)."""

    number: int
    runs: tuple[float, ...]
    duration_s: float
    selected: int = 0
    """How many of `runs` (the first ones) selected it: a keep's own runs, kept because they beat the best
    before it, so on average luckier than its truth (a baseline's are 0: nothing chose it)."""

    @property
    def judged(self) -> tuple[float, ...]:
        """The runs a change is judged against: the re-measures on fresh seeds once there are any, so that a
        keep selected on a lucky run regresses to its mean; until then every run."""
        return self.runs[self.selected :] or self.runs

    @property
    def fresh(self) -> int:
        """Runs of its code that did not select it."""
        return len(self.runs) - self.selected

    @property
    def groups(self) -> tuple[tuple[float, ...], ...]:
        """Its runs as groups for the noise: the runs that selected it apart from the fresh ones, whose mean
        differs from theirs by the luck of the selection, not by the noise."""
        return (self.runs[: self.selected], self.runs[self.selected :]) if self.selected else (self.runs,)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.judged)


@dataclass(frozen=True)
class Verdict:
    action: Action
    note: str


def fmt(value: float) -> str:
    return f"{value:.4g}"


def pooled_noise(groups: Iterable[Sequence[float]], seeded: bool = False) -> Noise:
    """The pooled standard deviation of several groups of repeated measurements."""
    squares = 0.0
    df = runs = 0
    for group in groups:
        finite = [r for r in group if math.isfinite(r)]
        if len(finite) < 2:
            continue
        mean = statistics.fmean(finite)
        squares += sum((r - mean) ** 2 for r in finite)
        df += len(finite) - 1
        runs += len(finite)
    return Noise(math.sqrt(squares / df) if df else None, df, runs, seeded)


class Judge:
    def __init__(self, config: SessionConfig) -> None:
        self.config = config

    @property
    def greedy(self) -> bool:
        return self.config.judging == "greedy"

    @property
    def baseline_runs(self) -> int:
        return 1 if self.greedy else self.config.baseline_runs

    def noise(self, groups: Iterable[Sequence[float]]) -> Noise:
        """The pooled noise, seeded when repeats of this session vary the seed."""
        return pooled_noise(groups, seeded=bool(self.config.seed_via))

    def gain(self, reference: float, value: float) -> float:
        """How much better `value` is than `reference` (negative when worse)."""
        return value - reference if self.config.higher_is_better else reference - value

    def decide(self, ref: Reference, runs: Sequence[float], noise: Noise) -> Verdict:
        """Keep, discard, or run the candidate again (`confirm`), from all its runs so far."""
        cfg = self.config
        mean = statistics.fmean(runs)
        gain = self.gain(ref.mean, mean)
        if self.greedy:
            return Verdict("keep" if gain > 0 else "discard", "")
        n = len(runs)
        left = n - 1 < cfg.confirm_runs
        wins = sum(1 for r in runs if self.gain(ref.mean, r) > 0)
        if noise.sigma is None:
            # Nothing repeated yet: a win is run again, which measures the noise.
            if gain > 0 and left:
                return Verdict("confirm", "")
            z = math.inf if gain > 0 else -math.inf if gain < 0 else 0.0
        elif noise.sigma == 0:
            z = math.inf if gain > 0 else -math.inf if gain < 0 else 0.0
            floor = cfg.relative_floor * abs(ref.mean)
            if 0 < gain < floor:
                percent = f"{cfg.relative_floor * 100:g} %"
                return Verdict("discard", f"(within noise: gain {gain:+.4g} under the {percent} floor, {noise.text()})")
        else:
            z = gain / (noise.sigma * math.sqrt(1 / n + 1 / len(ref.judged)))
        sigmas = "" if not math.isfinite(z) else f" = {z:.1f}σ"
        said = f"gain {gain:+.4g}{sigmas}, {noise.text()}"
        big_enough = gain >= cfg.min_gain and gain > 0
        if z >= cfg.noise_sigmas and big_enough:
            if n == 1:
                return Verdict("keep", f"(clear: {said})")
            return Verdict("keep", f"(confirmed {wins}/{n}: {said})")
        if big_enough and z >= CONFIRM_FROM * cfg.noise_sigmas and left:
            return Verdict("confirm", "")
        if n > 1:
            return Verdict("discard", f"(not confirmed {wins}/{n}: {said})")
        if gain > 0 and gain < cfg.min_gain:
            return Verdict("discard", f"(within noise: gain {gain:+.4g} under min_gain {fmt(cfg.min_gain)})")
        if z <= -cfg.noise_sigmas:
            return Verdict("discard", f"(worse: {said})")
        return Verdict("discard", f"(within noise: {said})")

    # Compute.

    @property
    def allowance_s(self) -> float:
        cfg = self.config
        if cfg.budget_allowance_s is not None:
            return cfg.budget_allowance_s
        return max(30.0, 0.25 * cfg.time_budget_s)

    def over_budget(self, duration_s: float) -> str | None:
        """The note for a run that took longer than its budget plus the start-up allowance."""
        budget = self.config.time_budget_s
        if duration_s <= budget + self.allowance_s:
            return None
        return f"(over budget: {duration_s:.0f} s for a {budget:g} s budget)"

    @staticmethod
    def much_longer(duration_s: float, reference_s: float) -> bool:
        return (
            reference_s > 0 and duration_s >= SLOWER_FACTOR * reference_s and duration_s - reference_s >= SLOWER_MIN_S
        )

    def slower_note(self, duration_s: float, ref: Reference) -> str | None:
        if not self.much_longer(duration_s, ref.duration_s):
            return None
        return f"(ran {duration_s / ref.duration_s:.1f}x as long as #{ref.number})"

    def with_compute(self, action: Action, note: str, duration_s: float, ref: Reference) -> tuple[Action, str]:
        """The verdict once the run's length is weighed: a much longer run is marked, and under
        `equal_compute: strict` its gain is not kept (it was bought with compute)."""
        slower = self.slower_note(duration_s, ref)
        if slower is None:
            return action, note
        if action == "keep" and self.config.equal_compute == "strict":
            return "discard", f"{note} {slower[:-1]}; equal_compute strict)".strip()
        return action, f"{note} {slower}".strip()

    # No effect.

    @staticmethod
    def no_effect(value: float, ref: Reference, log: Path, parent_log: Path, pattern: str) -> bool:
        """The metric is exactly that of the parent's first run (the same seed: repeats run under others) and
        the run's output shows the same training (core/effect.py): an equal coarse metric alone is only
        "within noise", and a noisy training does not print the same loss curve twice by chance."""
        return value == ref.runs[0] and same_training(log, parent_log, pattern)


# What a session's files say.


def _numbers(value: object) -> tuple[float, ...]:
    if isinstance(value, list) and all(isinstance(r, (int, float)) for r in value):
        return tuple(float(r) for r in value)
    return ()


def own_runs(meta: ExperimentMeta | None, metric: float) -> tuple[float, ...]:
    """An experiment's own runs, whose mean is its row's metric."""
    return (_numbers(meta.extra.get("runs")) if meta is not None else ()) or (metric,)


def runs_of(meta: ExperimentMeta | None, metric: float) -> tuple[float, ...]:
    """Every run of an experiment's code: its own (whose mean is the row's metric), then later re-measures."""
    return own_runs(meta, metric) + (_numbers(meta.extra.get("remeasured_runs")) if meta is not None else ())


def groups_of(meta: ExperimentMeta, metric: float) -> tuple[tuple[float, ...], ...]:
    """An experiment's runs as groups for the noise (Reference.groups)."""
    remeasured = _numbers(meta.extra.get("remeasured_runs"))
    own = own_runs(meta, metric)
    return (own, remeasured) if meta.status == "keep" else (own + remeasured,)


def reference_of(number: int, row: ResultRow, meta: ExperimentMeta | None, duration_s: float) -> Reference:
    """A kept or baseline row as what changes are judged against (meta None when it is not this row's)."""
    selected = len(own_runs(meta, row.metric)) if row.status == "keep" else 0
    return Reference(number, runs_of(meta, row.metric), duration_s, selected)


def matches(meta: ExperimentMeta | None, commit: str, status: str) -> bool:
    """The meta.json is the one of this results row (and not of an older session's experiment)."""
    if meta is None or meta.status != status:
        return False
    return not commit or not meta.commit or meta.commit.startswith(commit[:7]) or commit.startswith(meta.commit[:7])


def epoch_start(table: ResultsTable) -> int:
    """Results are judged against rows from the last `baseline` row on (a re-measure starts a new epoch)."""
    start = 1
    for number, row in enumerate(table.rows, 1):
        if row.status == "baseline":
            start = number
    return start


def reference(table: ResultsTable, metas: dict[int, ExperimentMeta], higher: bool) -> Reference | None:
    """The best kept (or baseline) row since the epoch's start, with every run of its code."""
    best: tuple[int, float] | None = None
    for number in range(epoch_start(table), len(table.rows) + 1):
        row = table.rows[number - 1]
        if row.status in ("baseline", "keep") and is_better(row.metric, best[1] if best else None, higher):
            best = (number, row.metric)
    if best is None:
        return None
    number = best[0]
    row = table.rows[number - 1]
    meta = metas.get(number)
    meta = meta if matches(meta, row.commit, row.status) else None
    durations = meta.extra.get("durations") if meta is not None else None
    duration = (
        statistics.fmean(durations)
        if isinstance(durations, list) and durations and all(isinstance(d, (int, float)) for d in durations)
        else row.duration_s
    )
    return reference_of(number, row, meta, duration)


LIKE_LOAD_RUNS = 3
"""Runs under the workers' load needed before their median stands in for the best's duration."""


def under_like_load(ref: Reference, metas: Mapping[int, ExperimentMeta]) -> Reference:
    """The best, with a duration measured under the same load as the run compared with it. With workers the
    baseline ran alone (before the workers started) and looks fast beside every run made while the others
    run: contention is not compute bought by the idea. The median duration of the runs the workers have
    finished (every worker's, the best's own included) stands in for it, once there are LIKE_LOAD_RUNS."""
    durations = [
        float(d)
        for m in metas.values()
        if m.extra.get("worker") is not None and m.status in ("keep", "discard")
        for d in _numbers(m.extra.get("durations"))
    ]
    if len(durations) < LIKE_LOAD_RUNS:
        return ref
    return replace(ref, duration_s=statistics.median(durations))


def session_noise(metas: dict[int, ExperimentMeta], host: str) -> Noise:
    """The pooled noise of every version run more than once on this machine."""
    groups = [
        group
        for m in metas.values()
        if m.metric is not None and m.extra.get("host", host) == host
        for group in groups_of(m, m.metric)
    ]
    return pooled_noise(groups)


def measured_elsewhere(table: ResultsTable, metas: dict[int, ExperimentMeta], host: str, higher: bool) -> int | None:
    """The number of the row results are judged against when this tool did not measure it on this machine
    (a results.tsv written by the skill, by karpathy/autoresearch, or copied from another machine)."""
    ref = reference(table, metas, higher)
    if ref is None:
        return None
    row = table.rows[ref.number - 1]
    meta = metas.get(ref.number)
    # The status is not compared: a tool killed right after writing the row had no time to record it in meta.json.
    if meta is not None and matches(meta, row.commit, meta.status) and meta.extra.get("host", host) == host:
        return None
    return ref.number


def failed_line(history: History, meta: ExperimentMeta | None, number: int) -> str | None:
    """The last line of a failed run's log that says what went wrong; None for a timeout or a user kill."""
    if meta is not None and (meta.timed_out or meta.extra.get("killed")):
        return None
    return crash_reason(history.log_path(number))


def broken_environment(table: ResultsTable, metas: dict[int, ExperimentMeta], history: History) -> str | None:
    """A sentence's middle when the last runs all failed the same way, else None."""
    if len(table.rows) < SAME_FAILURES or any(r.status != "crash" for r in table.rows[-SAME_FAILURES:]):
        return None
    first = len(table.rows) - SAME_FAILURES + 1
    lines = [(n, failed_line(history, metas.get(n), n)) for n in range(first, len(table.rows) + 1)]
    numbers = same_failures(lines)
    if numbers is None:
        return None
    shown = ", ".join(f"#{n}" for n in numbers)
    return f"The last {len(numbers)} runs ({shown}) all failed the same way, each printing: {lines[-1][1]}"


def no_effect_names(table: ResultsTable, history: History) -> dict[str, int]:
    """The settings changed by experiments that had no effect -> the first such experiment."""
    found: dict[str, int] = {}
    for number, row in enumerate(table.rows, 1):
        if is_no_effect(row.description):
            for name in changed_names(history.read_diff(number)):
                found.setdefault(name, number)
    return found


def write_noise(history: History, noise: Noise, config: SessionConfig) -> None:
    """`.autoresearch/noise.json`, for `status` (which reads no meta.json beyond the usage). Not synced to disk:
    it is worked out again from the meta.json files after every experiment."""
    from .history import write_json_atomic

    write_json_atomic(
        history.dir / "noise.json",
        {"judging": config.judging, "sigma": noise.sigma, "df": noise.df},
        durable=False,
    )


# Failures.

_DIGITS = re.compile(r"0x[0-9a-f]+|\d+")


def failure_signature(line: str | None) -> str | None:
    """A failure's last error line with numbers blanked, so `pid 4123` and `pid 4188` read the same."""
    if not line:
        return None
    return _DIGITS.sub("N", line.strip().lower())


def same_failures(rows: Sequence[tuple[int, str | None]], count: int = SAME_FAILURES) -> list[int] | None:
    """The numbers of the last `count` rows when they all failed with the same signature (newest last)."""
    if len(rows) < count:
        return None
    last = rows[-count:]
    signatures = {failure_signature(line) for _, line in last}
    if len(signatures) != 1 or None in signatures:
        return None
    return [number for number, _ in last]


# What the model is told.

NO_EFFECT = "no effect"
SEED_CHANGE = "another seed only samples the noise, it is never an improvement"
OVER_BUDGET = "over budget"
MACHINE_SLOWER = "timed out: machine slower than at baseline"
TIMED_OUT = "timed out after"


def is_no_effect(description: str) -> bool:
    return f"({NO_EFFECT}" in description


def is_over_budget(description: str) -> bool:
    return f"({OVER_BUDGET}" in description


def is_timeout(description: str) -> bool:
    return f"({TIMED_OUT}" in description or f"({MACHINE_SLOWER}" in description


_ASSIGNED = re.compile(r"^[-+]\s*(?:self\.|config\.|cfg\.|args\.)?([A-Za-z_][A-Za-z0-9_]*)\s*(?::[^=]+)?=[^=]")
_FLAG = re.compile(r"--([A-Za-z_][A-Za-z0-9_-]*)")
_KEY = re.compile(r"""^[-+]\s*["']?([A-Za-z_][A-Za-z0-9_.-]*)["']?\s*:\s*\S""")


def changed_names(diff: str) -> frozenset[str]:
    """The settings a diff changes: names assigned (`n_embd = 384`), keys (`lr: 3e-4`) and flags on its lines."""
    names: set[str] = set()
    for line in diff.splitlines():
        if not line.startswith(("+", "-")) or line.startswith(("+++", "---")):
            continue
        found = _ASSIGNED.match(line) or _KEY.match(line)
        if found:
            names.add(found.group(1).lower())
        names.update(f.lower() for f in _FLAG.findall(line))
    return frozenset(names)


def prompt_notes(records: Sequence[tuple[int, str, float]], noise: Noise, config: SessionConfig) -> str:
    """What the model must know about how its last results were judged. records: (number, description,
    duration_s) of each finished experiment, oldest first."""
    notes: list[str] = []
    if config.judging != "greedy" and noise.sigma is not None:
        notes.append(
            f"- {config.metric_name} moves by about {fmt(noise.sigma)} (one standard deviation) between runs of "
            f"the same code here; a change is kept only when its gain clears {config.noise_sigmas:g} of those "
            "(a small win is run again to confirm it). Propose changes big enough to show."
        )
    no_effect = [n for n, d, _ in records if is_no_effect(d)]
    if no_effect:
        shown = ", ".join(f"#{n}" for n in no_effect[-6:])
        notes.append(
            f"- {shown}: no effect. The run printed the same training as the parent's (the same loss curve and "
            "metric), so the change did not reach the training "
            "(a flag in the run command, a config file or a later assignment overrides it, or the code is never "
            "run). Do not try it or an equivalent change again; change what the training really uses."
        )
    if records:
        number, description, _ = records[-1]
        if is_over_budget(description):
            notes.append(
                f"- #{number} went over the time budget and was not kept: a run must fit in "
                f"{config.time_budget_minutes:g} min; buy a better idea, not more compute."
            )
        elif "x as long as #" in description:
            notes.append(
                f"- #{number} made the run much longer than the best's: a gain bought with compute is not a "
                "better idea; prefer changes that keep the run time."
            )
        if f"({MACHINE_SLOWER}" in description:
            notes.append(
                f"- #{number} timed out because the machine is slower now than at the baseline (the best code "
                "also ran much longer): that says nothing about the idea, which may be tried again."
            )
        elif f"({TIMED_OUT}" in description:
            notes.append(
                f"- #{number} hit the {config.timeout_minutes:g} min timeout (not an error in the code): make the "
                "run shorter, not different."
            )
    return "" if not notes else "# How results are judged\n" + "\n".join(notes)
