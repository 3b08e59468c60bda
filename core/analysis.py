"""`autoresearch analyze`: the skill's post-session analysis, computed from the data alone.

Writes `autoresearch-<tag>-analysis.md` with the skill's sections: Summary, What Worked, What
Didn't Work, Crashes, Metric Progression (a plain-text chart) and Recommendations. The
Recommendations can be replaced by text written elsewhere (an LLM, when one is configured).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .categories import CATEGORIES, categorize
from .config import RESULTS_FILE, SessionConfig, load_config
from .crash_log import crash_reason, one_line, reads_as_error
from .history import ExperimentMeta, History
from .judge import MACHINE_SLOWER, is_no_effect, is_over_budget, is_timeout
from .pruning import saved_seconds
from .results import ResultRow, ResultsTable, is_better, read_results
from .status import find_baseline, fmt_delta, fmt_metric, fmt_tokens, percent_change

CHART_HEIGHT = 12
CHART_WIDTH = 72
NEAR_MISS_PCT = 0.2
SWITCH_AFTER_DISCARDS = 3
PLATEAU = 5


@dataclass(frozen=True)
class Experiment:
    """One results.tsv row (number = its 1-based position, baseline = 1) with what we know of it."""

    number: int
    row: ResultRow
    category: str
    meta: ExperimentMeta | None
    best_before: float | None
    """The best kept (or baseline) metric before this row ran."""
    is_baseline: bool

    @property
    def status(self) -> str:
        return self.row.status

    @property
    def commit(self) -> str:
        return self.row.commit

    @property
    def description(self) -> str:
        return self.row.description

    @property
    def metric(self) -> float | None:
        if not self.row.has_metric or not math.isfinite(self.row.metric):
            return None
        return self.row.metric

    @property
    def advances(self) -> bool:
        """The baseline or a kept change: it moves the best-so-far."""
        return self.is_baseline or self.row.status in ("baseline", "keep")

    @property
    def rationale(self) -> str:
        return " ".join(self.meta.rationale.split()) if self.meta else ""


@dataclass(frozen=True)
class Session:
    root: Path
    config: SessionConfig
    table: ResultsTable
    experiments: tuple[Experiment, ...]
    metas: dict[int, ExperimentMeta]
    baseline: Experiment | None
    best: Experiment | None

    @property
    def higher(self) -> bool:
        return self.config.higher_is_better

    @property
    def changes(self) -> list[Experiment]:
        """Every experiment but the baseline."""
        return [e for e in self.experiments if not e.is_baseline]

    def of_status(self, status: str) -> list[Experiment]:
        return [e for e in self.changes if e.status == status]

    @property
    def since_best(self) -> int:
        return len(self.experiments) - self.best.number if self.best else len(self.experiments)


def _match_meta(
    number: int, row: ResultRow, metas: dict[int, ExperimentMeta], by_commit: dict[str, ExperimentMeta]
) -> ExperimentMeta | None:
    meta = metas.get(number)
    if meta is not None and (
        not meta.commit
        or not row.commit
        or meta.commit.startswith(row.commit[:7])
        or row.commit.startswith(meta.commit[:7])
    ):
        return meta
    return by_commit.get(row.commit[:7]) if row.commit else None


def category_of(description: str, meta: ExperimentMeta | None) -> str:
    """meta.json's category when one was given, else a guess from the description."""
    if meta is not None and meta.category in CATEGORIES and meta.category != "other":
        return meta.category
    return categorize(description)


def load_session(root: Path) -> Session:
    """Reads .autoresearch.json, results.tsv and .autoresearch/; raises ConfigError/UserError."""
    config = load_config(root)
    table = read_results(root / RESULTS_FILE)
    metas = History(root).all_meta()
    by_commit = {m.commit[:7]: m for m in metas.values() if m.commit}
    base = find_baseline(table)
    base_number = base[0] if base else None
    higher = config.higher_is_better

    experiments: list[Experiment] = []
    best_value: float | None = None
    for number, row in enumerate(table.rows, 1):
        meta = _match_meta(number, row, metas, by_commit)
        is_base = number == base_number
        category = "baseline" if is_base else category_of(row.description, meta)
        experiments.append(Experiment(number, row, category, meta, best_value, is_base))
        counts = is_base or row.status in ("baseline", "keep")
        if counts and math.isfinite(row.metric) and is_better(row.metric, best_value, higher):
            best_value = row.metric

    best: Experiment | None = None
    for exp in experiments:
        value = exp.metric
        if exp.advances and value is not None and is_better(value, best.metric if best else None, higher):
            best = exp
    baseline = experiments[base_number - 1] if base_number else None
    return Session(root, config, table, tuple(experiments), metas, baseline, best)


# Small formatting helpers.


def _fmt_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _pct(part: int, whole: int) -> str:
    return f"{round(part / whole * 100)}%" if whole else "0%"


def _vs(value: float, reference: float | None) -> str:
    if reference is None:
        return ""
    return fmt_delta(value - reference, percent_change(value, reference))


def _label(exp: Experiment) -> str:
    commit = f" `{exp.commit}`" if exp.commit else ""
    return f"#{exp.number}{commit} {exp.description or '(no description)'}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# Descriptions of the offline agent's kind: `NAME old -> new`.

_CHANGE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s+(\S+)\s*->\s*(\S+)")


def constant_change(description: str) -> tuple[str, float, float] | None:
    match = _CHANGE.match(description)
    if not match:
        return None
    try:
        old, new = float(match.group(2).rstrip(",;")), float(match.group(3).rstrip(",;"))
    except ValueError:
        return None
    if not (math.isfinite(old) and math.isfinite(new)) or old == new:
        return None
    return match.group(1), old, new


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else f"{value:.6g}"


_UP = {"increase", "increased", "raise", "higher", "more", "larger", "bigger", "double", "up", "wider", "deeper"}
_DOWN = {
    "decrease",
    "decreased",
    "reduce",
    "reduced",
    "lower",
    "less",
    "fewer",
    "smaller",
    "halve",
    "down",
    "narrower",
    "shallower",
}
_FILLER = {"to", "the", "a", "an", "from", "by", "of", "in", "x"}


def direction_of(description: str) -> tuple[str, int] | None:
    """(what was changed, +1 or -1) for `NAME a -> b` and for free text such as `increase LR to 0.04`."""
    change = constant_change(description)
    if change:
        name, old, new = change
        return name, 1 if new > old else -1
    words = re.findall(r"[a-z_][a-z0-9_]*", description.lower().replace("-", " "))
    ups = [w for w in words if w in _UP]
    downs = [w for w in words if w in _DOWN]
    if bool(ups) == bool(downs):
        return None
    subject = " ".join(w for w in words if w not in _UP | _DOWN | _FILLER)
    return (subject, 1 if ups else -1) if subject else None


def _crash_line(session: Session, exp: Experiment) -> str:
    history = History(session.root)
    meta = exp.meta
    reason = crash_reason(history.log_path(meta.number if meta else exp.number))
    if f"({MACHINE_SLOWER}" in exp.description:
        reason = "timed out because the machine was slower (the best code also ran much longer), not the idea"
    elif (meta is not None and meta.timed_out) or is_timeout(exp.description):
        minutes = session.config.timeout_minutes
        said = "last error" if reason and reads_as_error(reason) else "last line"  # a progress line is no error
        reason = f"timed out after {_num(minutes)} min" + (f"; {said}: {reason}" if reason else "")
    elif reason is None and meta is not None and meta.exit_code not in (None, 0):
        reason = f"exit code {meta.exit_code}"
    return reason or "no log kept"


def _timed_out(e: Experiment) -> bool:
    return is_timeout(e.description) or bool(e.meta is not None and e.meta.timed_out)


def _fixed_later(session: Session, e: Experiment) -> Experiment | None:
    """The fix that made a crashed experiment run: the first measured row of the fix rows right after it."""
    for later in session.experiments[e.number :]:
        if not later.description.lower().startswith("fix"):
            return None
        if later.status != "crash":
            return later
    return None


def _unmoved(e: Experiment) -> bool:
    """Rows whose metric says nothing about the idea: no effect, over budget."""
    return is_no_effect(e.description) or is_over_budget(e.description)


def _is_oom(text: str) -> bool:
    return bool(re.search(r"out of memory|\boom\b|outofmemory|cuda.*memory", text, re.IGNORECASE))


# Sections.


def summary(session: Session) -> str:
    cfg = session.config
    rows = session.experiments
    changes = session.changes
    counts = Counter(e.status for e in rows)
    lines = []
    cap = f" of {cfg.max_experiments}" if cfg.max_experiments else " (no cap)"
    timeouts = sum(1 for e in rows if e.status == "crash" and _timed_out(e))
    parts = ", ".join(
        f"{s} {counts[s]}" + (f" ({timeouts} timed out)" if s == "crash" and timeouts else "")
        for s in ("baseline", "keep", "discard", "crash")
        if counts[s]
    )
    lines.append(f"- Experiments: {len(rows)}{cap}" + (f" ({parts})" if parts else ""))
    if changes:
        kept = sum(1 for e in changes if e.status == "keep")
        lines.append(f"- Keep rate: {kept} of {len(changes)} changes ({_pct(kept, len(changes))})")
    base, best = session.baseline, session.best
    if base is not None and best is not None and base.metric is not None and best.metric is not None:
        inferred = " (first result; no baseline row)" if base.status != "baseline" else ""
        lines.append(
            f"- Baseline -> best: {fmt_metric(base.metric)}{inferred} -> {fmt_metric(best.metric)} "
            f"(#{best.number}, commit `{best.commit}`)"
        )
        verdict = "better" if is_better(best.metric, base.metric, session.higher) else "no improvement yet"
        lines.append(f"- Improvement: {_vs(best.metric, base.metric)}, {verdict}")
        largest = max(session.of_status("keep"), key=lambda e: _gain(session, e), default=None)
        if best.number != base.number and largest is not None and _gain(session, largest) > 0:
            gained = _vs(largest.metric or 0.0, largest.best_before)
            lines.append(f"- Best change: {_label(largest)} (the largest gain, {gained})")
    elif rows:
        lines.append("- Baseline -> best: no experiment produced a metric yet")
    if rows and best is not None:
        lines.append(f"- Experiments since the last improvement: {session.since_best}")
    by_worker: dict[int, list[Experiment]] = {}
    for e in rows:
        worker = e.meta.extra.get("worker") if e.meta is not None else None
        if isinstance(worker, int):
            by_worker.setdefault(worker, []).append(e)
    if by_worker:
        each = "; ".join(
            f"worker {w}: {len(exps)} run, {sum(1 for e in exps if e.status == 'keep')} kept"
            for w, exps in sorted(by_worker.items())
        )
        lines.append(f"- Workers: {len(by_worker)} ({each})")
    if session.table.has_duration:
        ran = [e for e in rows if e.row.duration_s > 0 and math.isfinite(e.row.duration_s)]
        wall = _wall_clock([e.meta for e in rows if e.meta is not None])
        if ran:
            average = sum(e.row.duration_s for e in ran) / len(ran)
            clock = f"{_fmt_duration(wall)} of wall clock for the session" if wall else "wall clock not recorded"
            lines.append(f"- Training time: {clock}, {_fmt_duration(average)} per run on average")
            if by_worker:
                each = "; ".join(
                    f"worker {w}: {_fmt_duration(_wall_clock([e.meta for e in exps if e.meta is not None]))}"
                    for w, exps in sorted(by_worker.items())
                )
                lines.append(f"- Wall clock per worker (first start to last finish): {each}")
    else:
        lines.append("- Training time: not recorded (results.tsv has no duration_s column)")
    stopped, saved = saved_seconds(History(session.root), [e.meta.number for e in rows if e.meta is not None])
    if stopped:
        lines.append(f"- Pruning: {_plural(stopped, 'run')} stopped early, {_fmt_duration(saved)} of GPU time saved")
    t_in = sum(m.tokens_in for m in session.metas.values())
    t_out = sum(m.tokens_out for m in session.metas.values())
    cost = sum(m.cost_usd for m in session.metas.values() if math.isfinite(m.cost_usd))
    if t_in or t_out or cost:
        lines.append(f"- Tokens: {fmt_tokens(t_in, t_out, cost)}")
        if changes and cost:
            lines.append(f"- Cost per experiment: ${cost / len(changes):.4f}")
    if not rows:
        lines.append("- No experiment has run yet: `autoresearch run` starts with the baseline.")
    return "\n".join(lines)


def _by_category(exps: list[Experiment]) -> list[tuple[str, list[Experiment]]]:
    groups: dict[str, list[Experiment]] = {}
    for exp in exps:
        groups.setdefault(exp.category, []).append(exp)
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), order.get(kv[0], len(order))))


def what_worked(session: Session) -> str:
    kept = session.of_status("keep")
    if not kept:
        if session.baseline is None:
            return "No change was kept: there is no baseline measurement yet."
        return "No change was kept: nothing beat the baseline yet."
    out: list[str] = []
    for category, exps in _by_category(kept):
        gain = sum((e.metric or 0.0) - e.best_before for e in exps if e.best_before is not None)
        out.append(f"### {category} ({len(exps)} kept, {gain:+.6f} in all)")
        out.append("")
        for e in exps:
            before = fmt_metric(e.best_before) if e.best_before is not None else "-"
            delta = _vs(e.metric or 0.0, e.best_before)
            out.append(f"- {_label(e)}: {before} -> {fmt_metric(e.metric)}" + (f", {delta}" if delta else ""))
            if e.rationale:
                out.append(f"  - Why: {one_line(e.rationale)}")
        out.append("")
    return "\n".join(out).rstrip()


def patterns(session: Session) -> list[str]:
    """What the discards (and crashes) have in common, computed from the data."""
    found: list[str] = []
    changes = session.changes
    by_cat: dict[str, Counter[str]] = {}
    for e in changes:
        by_cat.setdefault(e.category, Counter())[e.status] += 1
    for category in [*CATEGORIES, *sorted(set(by_cat) - set(CATEGORIES))]:
        c = by_cat.get(category)
        if not c:
            continue
        tried = sum(c.values())
        if c["keep"] == 0 and c["discard"] >= 2:
            if c["crash"]:
                found.append(
                    f"None of the {tried} {category} changes was kept ({c['discard']} discarded, {c['crash']} crashed)."
                )
            else:
                every = "Both" if tried == 2 else f"All {tried}"
                found.append(f"{every} {category} changes were discarded.")
        elif c["discard"] >= SWITCH_AFTER_DISCARDS and c["discard"] * 2 >= tried:
            found.append(f"{c['discard']} of {tried} {category} changes were discarded ({c['keep']} kept).")

    for subject, seen in _both_ways(session).items():
        found.append(
            f"{subject} was tried in both directions ({', '.join(f'#{e.number}' for e in seen)}) and never "
            "kept: its current value looks close to the best."
        )

    dead = [e for e in changes if is_no_effect(e.description)]
    if dead:
        found.append(
            f"{', '.join(f'#{e.number}' for e in dead)} had no effect: the run printed the same training as the "
            "parent's, so the change did not reach the training (a run-command flag or config may override it)."
        )
    over = [e for e in changes if is_over_budget(e.description)]
    if over:
        found.append(f"{', '.join(f'#{e.number}' for e in over)} went over the time budget, so were not kept.")

    repeats = Counter(" ".join(e.description.lower().split()) for e in changes if e.description)
    for text, n in repeats.most_common(5):
        if n > 1:
            nums = [f"#{e.number}" for e in changes if " ".join(e.description.lower().split()) == text]
            shown = ", ".join(nums if n <= 8 else [*nums[:8], "..."])
            found.append(f"The same change was tried {n} times ({shown}): {one_line(text, 80)}.")

    near = _near_misses(session)
    if near:
        nums = [f"#{e.number}" for e in near]
        shown = ", ".join(nums if len(nums) <= 8 else [*nums[:8], "..."])
        found.append(
            f"{_plural(len(near), 'discard')} missed the best by under {NEAR_MISS_PCT}%: {shown} "
            "(noise may decide these)."
        )
    return found


_NO_NOISE = re.compile(r"\bnoise 0(?![.\d])")


def _near_misses(session: Session) -> list[Experiment]:
    near = []
    settled = set(_both_ways(session))
    for e in session.of_status("discard"):
        if e.metric is None or e.best_before is None or _unmoved(e) or _NO_NOISE.search(e.description):
            continue  # at noise 0 the run repeats exactly: noise decides nothing
        subject = direction_of(e.description)
        if subject and subject[0] in settled:
            continue
        pct = percent_change(e.metric, e.best_before)
        if pct is not None and abs(pct) < NEAR_MISS_PCT:
            near.append(e)
    return near


def what_did_not_work(session: Session) -> str:
    discarded = session.of_status("discard")
    if not discarded:
        return "No change was discarded."
    out: list[str] = []
    for category, exps in _by_category(discarded):
        out.append(f"### {category} ({len(exps)} discarded)")
        out.append("")
        for e in exps:
            delta = _vs(e.metric or 0.0, e.best_before)
            against = f", {delta} vs best {fmt_metric(e.best_before)}" if delta else ""
            out.append(f"- {_label(e)}: {fmt_metric(e.metric)}{against}")
        out.append("")
    found = patterns(session)
    if found:
        out.append("### Patterns")
        out.append("")
        out += [f"- {p}" for p in found]
    return "\n".join(out).rstrip()


def crashes(session: Session) -> str:
    crashed = session.of_status("crash") + [e for e in session.experiments if e.is_baseline and e.status == "crash"]
    crashed.sort(key=lambda e: e.number)
    if not crashed:
        return "No experiment crashed."
    out = []
    reasons = {}
    for e in crashed:
        reasons[e.number] = _crash_line(session, e)
        out.append(f"- {_label(e)}: {reasons[e.number]}")
    notes = []
    ooms = [e for e in crashed if _is_oom(reasons[e.number]) or _is_oom(e.description)]
    if len(ooms) >= 2:
        notes.append(f"{len(ooms)} of {len(crashed)} crashes ran out of memory.")
    timeouts = [e for e in crashed if reasons[e.number].startswith("timed out")]
    if len(timeouts) >= 2:
        notes.append(f"{len(timeouts)} crashes hit the timeout of {_num(session.config.timeout_minutes)} min.")
    streak = _longest_streak(session, "crash")
    if len(streak) >= 3:
        notes.append(f"{len(streak)} crashes in a row (#{streak[0].number} to #{streak[-1].number}).")
    if notes:
        out += ["", *notes]
    return "\n".join(out)


def _longest_streak(session: Session, status: str) -> list[Experiment]:
    best: list[Experiment] = []
    run: list[Experiment] = []
    for e in session.experiments:
        run = [*run, e] if e.status == status else []
        if len(run) > len(best):
            best = run
    return best


def _chart_range(session: Session, values: list[float]) -> tuple[float, float]:
    core = [e.metric for e in session.experiments if e.metric is not None and e.advances] or values
    lo, hi = min(core), max(core)
    ordered = sorted(values)
    q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
    width = max(hi - lo, q3 - q1, 1e-9 * max(1.0, abs(hi)))
    inside = [v for v in values if lo - 3 * width <= v <= hi + 3 * width]
    lo, hi = min([lo, *inside]), max([hi, *inside])
    if hi == lo:
        pad = abs(hi) * 0.01 or 1.0
        lo, hi = lo - pad, hi + pad
    return lo, hi


def progression_chart(session: Session, height: int = CHART_HEIGHT, width: int = CHART_WIDTH) -> str:
    """Every experiment, one column each (or a few per column past `width`), with the best-so-far line."""
    exps = session.experiments
    values = [e.metric for e in exps if e.metric is not None]
    if not values:
        return "No experiment produced a metric yet."
    n = len(exps)
    cols = min(n, width)
    lo, hi = _chart_range(session, values)
    grid = [[" "] * cols for _ in range(height)]
    rank = [[0] * cols for _ in range(height)]
    crash_lane = [" "] * cols

    def put(row: int, col: int, char: str, weight: int) -> None:
        if weight > rank[row][col]:
            grid[row][col], rank[row][col] = char, weight

    def row_of(value: float) -> int:
        return min(height - 1, max(0, round((hi - value) / (hi - lo) * (height - 1))))

    best_at_col: list[float | None] = [None] * cols
    best: float | None = None
    for i, e in enumerate(exps):
        col = i * cols // n
        if e.metric is None:
            crash_lane[col] = "x"
        else:
            if e.is_baseline or e.status == "baseline":
                char, weight = "B", 4
            elif e.status == "keep":
                char, weight = "*", 3
            else:
                char, weight = "o", 2
            if e.metric > hi:
                char = "^"
            elif e.metric < lo:
                char = "v"
            put(row_of(e.metric), col, char, weight)
            if e.advances and is_better(e.metric, best, session.higher):
                best = e.metric
        best_at_col[col] = best
    for col, value in enumerate(best_at_col):
        if value is not None:
            put(row_of(value), col, "-", 1)

    labels = {0: fmt_metric(hi), (height - 1) // 2: fmt_metric((hi + lo) / 2), height - 1: fmt_metric(lo)}
    label_w = max(len(t) for t in labels.values())
    lines = [f"{labels.get(r, ''):>{label_w}} |{''.join(grid[r])}".rstrip() for r in range(height)]
    lines.append(f"{'':>{label_w}} +{'-' * cols}")
    if any(c != " " for c in crash_lane):
        lines.append(f"{'crash':>{label_w}}  {''.join(crash_lane)}".rstrip())
    first, last = "1", str(n)
    axis = first + " " * max(1, cols - len(first) - len(last)) + last if n > 1 else first
    lines.append(f"{'':>{label_w}}  {axis}   (experiment)")
    direction = "higher" if session.higher else "lower"
    per_col = "" if cols == n else f", about {math.ceil(n / cols)} experiments per column"
    lines.append("")
    lines.append(
        f"B baseline  * keep  o discard  x crash (no metric)  - best so far  ^ v off the chart "
        f"({session.config.metric_name}, {direction} is better{per_col})"
    )
    return "\n".join(lines)


def metric_progression(session: Session) -> str:
    chart = progression_chart(session)
    text = f"```\n{chart}\n```"
    kept = [e for e in session.experiments if e.advances and e.metric is not None]
    steps = []
    best: float | None = None
    for e in kept:
        if is_better(e.metric or 0.0, best, session.higher):
            best = e.metric
            steps.append(f"#{e.number} {fmt_metric(e.metric)}")
    if len(steps) > 1:
        shown = steps if len(steps) <= 12 else [*steps[:6], "...", *steps[-5:]]
        text += "\n\nBest so far: " + " -> ".join(shown)
    return text


def recommendations(session: Session) -> list[str]:
    """Next steps computed from the data, ordered by risk: the safest first."""
    changes = session.changes
    if not session.experiments:
        return ["Low risk: run `autoresearch run`; the first run measures the baseline, the next ones try changes."]
    if session.baseline is None:
        cfg = session.config
        return [
            f"Low risk: make the baseline run first: `{cfg.run_command}` has not printed a line matching "
            f"`{cfg.metric_grep}` yet (see Crashes); run it by hand, fix it, then `autoresearch run` again."
        ]
    if not changes:
        return ["Low risk: go on with `autoresearch run`; only the baseline has run so far."]
    low: list[str] = []
    medium: list[str] = []
    high: list[str] = []

    kept = [e for e in session.of_status("keep") if _gain(session, e) > 0]
    kept.sort(key=lambda e: -_gain(session, e))
    kept = [e for e in kept if not _superseded(session, e)]
    for e in kept[:3]:
        gain = _vs(e.metric or 0.0, e.best_before)
        change = constant_change(e.description)
        if change:
            text = f"Low risk: {_label(e)} helped by {gain}; {_next_step(session, *change)}"
        else:
            text = f"Low risk: {_label(e)} helped by {gain}; try variations on the same theme."
        if e.rationale:
            text += f' Its rationale: "{one_line(e.rationale, 240)}"'
        low.append(text)

    best_now = session.best.metric if session.best is not None else None
    for e in [e for e in _near_misses(session) if e.best_before != best_now][:3]:  # not already run on the best
        low.append(
            f"Low risk: {_label(e)} missed the best by only {_vs(e.metric or 0.0, e.best_before)}; "
            "retry it on top of the current best, or with a smaller step."
        )

    by_cat: dict[str, Counter[str]] = {}
    for e in changes:
        by_cat.setdefault(e.category, Counter())[e.status] += 1
    tired = []
    for category, c in by_cat.items():
        recent = [e for e in changes if e.category == category][-SWITCH_AFTER_DISCARDS:]
        if c["discard"] >= SWITCH_AFTER_DISCARDS and not any(e.status == "keep" for e in recent):
            tired.append(category)
            medium.append(
                f"Medium risk: switch away from {category}: {c['discard']} discarded, {c['keep']} kept, "
                f"none of the last {len(recent)} helped."
            )
    untried = [c for c in CATEGORIES if c != "other" and c not in by_cat]
    if untried and (tired or len(changes) >= 5):
        medium.append(f"Medium risk: explore categories not tried yet: {', '.join(untried)}.")

    for subject, seen in _both_ways(session).items():
        medium.append(
            f"Medium risk: leave {subject} where it is; it was tried both higher and lower "
            f"({', '.join(f'#{e.number}' for e in seen)}) and neither helped."
        )

    crashed = [
        e
        for e in session.of_status("crash")
        if _fixed_later(session, e) is None and f"({MACHINE_SLOWER}" not in e.description
    ]
    for e in crashed[-3:]:
        reason = _crash_line(session, e)
        what = "timed out" if _timed_out(e) else "crashed"
        text = f"Higher risk: revisit {_label(e)}, which {what} ({one_line(reason, 120)}), with a smaller change"
        if _is_oom(reason) or _is_oom(e.description):
            text += ", e.g. half the size or a smaller batch to fit in memory"
        high.append(text + ".")

    streak = _longest_streak(session, "crash")
    if len(streak) >= 3 and streak[-1].number == len(session.experiments):
        high.insert(0, f"Higher risk: the last {len(streak)} experiments crashed; change approach before going on.")

    if session.best is not None and session.since_best >= PLATEAU and len(changes) >= PLATEAU:
        high.append(
            f"Higher risk: {session.since_best} experiments since the last improvement (#{session.best.number}); "
            "try a bolder idea in a category not exhausted yet, or stop here."
        )
    if len(changes) >= 3 and not session.of_status("keep"):
        high.append(
            "Higher risk: nothing beat the baseline yet; check that the time budget is long enough for changes to "
            "show, or try larger steps."
        )
    return low + medium + high


def _wall_clock(metas: list[ExperimentMeta]) -> float:
    """Seconds from the first run's start to the last one's finish (each meta.json records both)."""
    times: list[float] = []
    for meta in metas:
        for stamp in (meta.started_at, meta.finished_at):
            try:
                times.append(datetime.fromisoformat(stamp).timestamp())
            except ValueError:
                continue
    return max(times) - min(times) if len(times) >= 2 else 0.0


def _gain(session: Session, e: Experiment) -> float:
    """How much e moved the best-so-far in the better direction (negative when it made it worse)."""
    if e.metric is None or e.best_before is None:
        return 0.0
    delta = e.metric - e.best_before
    return delta if session.higher else -delta


def _superseded(session: Session, e: Experiment) -> bool:
    """A later kept change moved the same constant again: advice about e's step would be stale."""
    change = constant_change(e.description)
    if not change:
        return False
    for later in session.changes[session.changes.index(e) + 1 :]:
        again = constant_change(later.description)
        if later.status == "keep" and again and again[0] == change[0]:
            return True
    return False


def _tried_values(session: Session, name: str) -> dict[float, int]:
    """Values given to the constant `name` by experiments that were measured and not kept: value -> number."""
    tried: dict[float, int] = {}
    for e in session.changes:
        change = constant_change(e.description)
        if change and change[0] == name and e.status != "keep" and not _unmoved(e):
            tried.setdefault(change[2], e.number)
    return tried


def _next_step(session: Session, name: str, old: float, new: float) -> str:
    """A value for `name` beyond a kept `old -> new`, that no experiment has tried yet."""
    tried = _tried_values(session, name)
    integers = float(old).is_integer() and float(new).is_integer()

    def was_tried(value: float) -> int | None:
        for seen, number in tried.items():
            if math.isclose(seen, value, rel_tol=1e-9, abs_tol=1e-15):
                return number
        return None

    def shaped(value: float) -> float:
        return float(round(value)) if integers else float(f"{value:.4g}")

    further = shaped(new + (new - old) if old == 0 or new / old <= 0 else new * (new / old))
    low, high = _knob_range(session, name, integers)
    if not low <= further <= high:  # never beyond the range the offline search gives the knob
        further = shaped(min(max(further, low), high))
        if further == new:
            edge = f"{_num(low)} to {_num(high)}"
            return f"{name} {_num(new)} is at the edge of its range ({edge}); move on to another idea."
    if was_tried(further) is None:
        return f"try going further in the same direction: {name} {_num(new)} -> {_num(further)}."
    middle = shaped((new + further) / 2)
    if middle not in (new, further) and was_tried(middle) is None:
        return (
            f"{_num(further)} was tried in #{was_tried(further)} without gain, so try a step between: "
            f"{name} {_num(new)} -> {_num(middle)}."
        )
    return f"values beyond {_num(new)} were tried without gain; {name} looks tuned, move on to another idea."


def _knob_range(session: Session, name: str, integers: bool) -> tuple[float, float]:
    """The range the offline search gives `name` (core/search.py), from its value at the session's start:
    the `old` of the first change that moved it."""
    from .knobs import Knob, Place
    from .search import distribution

    first = next((c for e in session.changes if (c := constant_change(e.description)) and c[0] == name), None)
    if first is None:
        return -math.inf, math.inf
    dist = distribution(Knob(name, first[1], integers, Place("", 0)), first[1])
    return (-math.inf, math.inf) if dist is None else (float(dist.low), float(dist.high))


def _both_ways(session: Session) -> dict[str, list[Experiment]]:
    seen: dict[str, dict[int, list[Experiment]]] = {}
    kept: set[str] = set()
    for e in session.changes:
        d = direction_of(e.description)
        if not d:
            continue
        if e.status == "keep":
            kept.add(d[0])
        elif e.status == "discard" and not _unmoved(e):
            seen.setdefault(d[0], {1: [], -1: []})[d[1]].append(e)
    return {
        subject: sorted(ways[1] + ways[-1], key=lambda e: e.number)
        for subject, ways in seen.items()
        if ways[1] and ways[-1] and subject not in kept
    }


def is_recommendations(text: str) -> bool:
    """Whether a model's reply is a list of recommendations (not an edit, an abandon or a refusal)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines or re.match(r"^\W*(description|category|rationale)\W*:", lines[0], re.IGNORECASE):
        return False
    if "<<<<<<< SEARCH" in text:
        return False
    return sum(1 for ln in lines if re.match(r"^([-*+]|\d+[.)])\s+\S", ln)) >= 1


def sections(session: Session, recommendations_text: str | None = None) -> list[tuple[str, str]]:
    """(title, Markdown body) of each section, in order; the app shows the same text."""
    recs = "\n".join(f"{i}. {r}" for i, r in enumerate(recommendations(session), 1))
    if recommendations_text is not None and is_recommendations(recommendations_text):
        model = session.config.model or "the model"
        recs = (
            f"_Written by the model ({model}), not computed from the rows:_\n\n{recommendations_text.strip()}"
            + "\n\n_Computed from the rows:_\n\n"
            + recs
        )
    return [
        ("Summary", summary(session)),
        ("What Worked", what_worked(session)),
        ("What Didn't Work", what_did_not_work(session)),
        ("Crashes", crashes(session)),
        ("Metric Progression", metric_progression(session)),
        ("Recommendations", recs or "None."),
    ]


def analysis_markdown(session: Session, recommendations_text: str | None = None, now: datetime | None = None) -> str:
    cfg = session.config
    written = (now or datetime.now()).astimezone().strftime("%Y-%m-%d %H:%M")
    direction = "higher" if session.higher else "lower"
    fmt = "skill" if session.table.has_duration else "karpathy/autoresearch"
    out = [
        f"# Autoresearch analysis: {cfg.tag}",
        "",
        f"Branch `{cfg.branch}` · script `{cfg.script_path}` · metric `{cfg.metric_name}` ({direction} is better) · "
        f"results.tsv of the {fmt} format · written {written}",
    ]
    for title, body in sections(session, recommendations_text):
        out += ["", f"## {title}", "", body]
    ablation = ablation_section(session)
    if ablation:
        out += ["", "## Ablation", "", ablation]
    return "\n".join(out) + "\n"


def ablation_section(session: Session) -> str:
    """The latest `autoresearch ablate`: what each kept change still contributes to the best it ran on."""
    from .ablate import latest, summary

    found = latest(session.root)
    if found is None:
        return ""
    best, results = found
    now = session.best.number if session.best is not None else None
    stale = "" if now == best else f" The best is #{now} now: run `autoresearch ablate` again for it."
    lines = summary(results, session.config.metric_name)
    return f"Run on the best at the time, #{best}.{stale}\n\n" + "\n".join(f"- {line}" for line in lines)


def build_analysis(root: Path, recommendations_text: str | None = None, now: datetime | None = None) -> str:
    """The analysis as Markdown. recommendations_text, when given, replaces the computed Recommendations."""
    return analysis_markdown(load_session(root), recommendations_text, now)


def analysis_path(root: Path, tag: str) -> Path:
    return root / f"autoresearch-{tag}-analysis.md"


def write_analysis(root: Path, recommendations_text: str | None = None, now: datetime | None = None) -> Path:
    """Writes autoresearch-<tag>-analysis.md in the repository root and returns its path."""
    session = load_session(root)
    path = analysis_path(root, session.config.tag)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(analysis_markdown(session, recommendations_text, now), encoding="utf-8")
    os.replace(tmp, path)
    return path
