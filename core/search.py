"""The offline agent's search: Optuna's TPE sampler over the script's knobs, one knob per experiment.

Each experiment changes one knob (one idea per experiment, a one-line description `lr 0.0003 -> 0.0012` as
the hill climb wrote), and TPE picks its value from everything the session measured so far: the study is
rebuilt from the history at every proposal (warm start, also after a restart), every earlier experiment
a point, a crash the worst value seen. Rates and other positive floats are searched on a log scale, sizes
and counts as integers. The knob to change next is the one just kept (go on while it pays), else the one
changed least so far.

A knob whose value the run command sets (`--lr=3e-4`) is never proposed: the run command is the session's
config, not a committed file, so an experiment could not be kept or reset with it. The sentence the loop
stops with says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import SessionConfig
from .edits import Edit, file_edits
from .knobs import (
    Knob,
    KnobChange,
    KnobReport,
    all_set_aside,
    apply_changes,
    config_files_in,
    discover,
    format_number,
    set_aside,
)
from .proposer import ExperimentRecord, Proposal, ProposalContext, ProposalSkipped, content_key
from .results import is_pruned

_CHANGE = re.compile(r"([A-Za-z_][\w.]*) ([-+]?[\d.]+(?:[eE][-+]?\d+)?) -> ([-+]?[\d.]+(?:[eE][-+]?\d+)?)")
_IDEA = re.compile(r"([A-Za-z_][\w.]*)\s*(?:=|->|to)\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)")
_RATE = re.compile(r"(^|_)(lr|rate|learning|decay|eps|epsilon|wd|alpha|lambda|temperature|tau)($|_)", re.I)
_FRACTION = re.compile(r"dropout|ratio|frac|prob|smoothing|(^|_)p($|_)", re.I)
_MOMENTUM = re.compile(r"beta|momentum|ema", re.I)
N_STARTUP = 2
SAMPLES_PER_KNOB = 12
SIGNIFICANT = 3


def offline_idea_problem(idea: str) -> str | None:
    """Why the offline agents cannot follow a queued idea (they read `NAME = value` only), or None."""
    if _IDEA.search(idea):
        return None
    return (
        "the offline agent follows only ideas that set a knob, e.g. LEARNING_RATE = 0.01 (for free-form ideas, "
        "choose a model: autoresearch config model NAME)"
    )


def knob_report(
    config: SessionConfig, files: Mapping[str, str], readonly: Mapping[str, str], root: Path | None
) -> KnobReport:
    """The knobs of the editable files, the config files the run command names, and its flags."""
    seen = dict(files)
    for path in config_files_in(config.run_command):
        if path in seen:
            continue
        if path in readonly:
            seen[path] = readonly[path]
        elif root is not None:
            try:
                seen[path] = (root / path).read_text(encoding="utf-8", errors="surrogateescape")
            except OSError:
                continue
    return discover(
        seen,
        config.run_command,
        config.script_path,
        editable=files,
        exclude=config.knob_exclude,
        metric=config.metric_name,
    )


def distribution(knob: Knob, value: float) -> Any | None:
    """The range TPE searches for a knob whose session-start value is `value`; None when it cannot be searched."""
    from optuna.distributions import FloatDistribution, IntDistribution

    name = knob.name.rsplit(".", 1)[-1]
    if knob.is_int:
        v = round(value)
        if v < 0:
            return None
        if v <= 1:
            return IntDistribution(v, 8)
        return IntDistribution(max(1, v // 4), v * 4, log=True)
    if value < 0:
        return None
    if _MOMENTUM.search(name) and 0 < value < 1:
        gap = 1 - value
        return FloatDistribution(max(0.0, 1 - gap * 4), 1 - gap / 4)
    if _FRACTION.search(name) and 0 <= value < 1:
        return FloatDistribution(0.0, min(0.9, max(0.5, value * 2)))
    if value == 0:
        return FloatDistribution(0.0, 0.1)
    spread = 10 if _RATE.search(name) or value < 0.01 else 4
    return FloatDistribution(value / spread, value * spread, log=True)


def _rounded(value: float, is_int: bool) -> float:
    if is_int:
        return float(round(value))
    return float(f"{value:.{SIGNIFICANT}g}")


def parse_changes(description: str) -> dict[str, tuple[float, float]]:
    """`a 1 -> 2, b 0.1 -> 0.2 (timeout 10 min)` -> {a: (1, 2), b: (0.1, 0.2)}."""
    return {m.group(1): (float(m.group(2)), float(m.group(3))) for m in _CHANGE.finditer(description)}


class SearchProposer:
    """Tunes the knobs with TPE, one knob per experiment."""

    name = "search"

    makes_fixes = False
    """It proposes no fix for a crash, so none is asked for."""

    def __init__(self, config: SessionConfig, root: Path | None = None) -> None:
        self.config = config
        self.root = root
        self.stop_reason: str | None = None

    def observe(self, record: ExperimentRecord) -> None:
        """Nothing to keep: the study is rebuilt from the context's history at every proposal."""

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        if ctx.crash is not None:
            return None
        report = knob_report(ctx.config, ctx.files, ctx.readonly, self.root)
        knobs = [k for k in report.searchable if not set_aside(k.name, ctx.no_effect)]
        if ctx.user_idea:
            idea = self._from_idea(ctx, report, ctx.user_idea)
            if idea is not None:
                return idea
        if not knobs:
            self.stop_reason = report.nothing_to_search() if not report.searchable else all_set_aside(ctx.no_effect)
            return None
        start = self._start_values(knobs, ctx.history)
        space = {k.name: d for k in knobs if (d := distribution(k, start[k.name])) is not None}
        knobs = [k for k in knobs if k.name in space]
        if not knobs:
            self.stop_reason = report.nothing_to_search()
            return None
        points = self._points(start, space, ctx.history)
        for knob in self._schedule(knobs, ctx.history):
            current = {k.name: k.value for k in knobs}
            for attempt in range(SAMPLES_PER_KNOB):
                value = self._sample(space, points, current, knob.name, seed=ctx.number * 1000 + attempt)
                value = _rounded(value, knob.is_int)
                if format_number(value, knob.is_int) == knob.text():
                    continue
                change = KnobChange(knob, value)
                files = apply_changes(ctx.files, [change])
                if content_key({**ctx.files, **files}) in ctx.tried:
                    continue
                return self._proposal(change, files, file_edits(ctx.files, files), space[knob.name], len(points))
        names = ", ".join(k.name for k in knobs[:6])
        self.stop_reason = f"the search has tried every value it would propose for {names}"
        return None

    # The study.

    def _start_values(self, knobs: Sequence[Knob], history: Sequence[ExperimentRecord]) -> dict[str, float]:
        """Each knob's value at the session's start: today's value with every kept change undone."""
        values = {k.name: k.value for k in knobs}
        for record in reversed(history):
            if record.status == "keep":
                for name, (old, _new) in parse_changes(record.description).items():
                    if name in values:
                        values[name] = old
        return values

    def _points(
        self, start: Mapping[str, float], space: Mapping[str, Any], history: Sequence[ExperimentRecord]
    ) -> list[tuple[dict[str, float], float | None]]:
        """(the knobs' values, the metric) of every experiment whose change is known; None for a crash."""
        state = dict(start)
        points: list[tuple[dict[str, float], float | None]] = []
        for record in history:
            if record.status == "baseline":
                points.append((dict(state), record.metric))
                continue
            changes = parse_changes(record.description)
            if not changes or not set(changes) <= set(state):
                continue
            point = {**state, **{n: new for n, (_old, new) in changes.items()}}
            points.append((point, None if record.status == "crash" or is_pruned(record.description) else record.metric))
            if record.status == "keep":
                state = point
        return [(p, v) for p, v in points if all(n in space for n in p)]

    def _sample(
        self,
        space: Mapping[str, Any],
        points: Sequence[tuple[dict[str, float], float | None]],
        current: Mapping[str, float],
        name: str,
        seed: int,
    ) -> float:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        higher = self.config.higher_is_better
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_STARTUP)
        study = optuna.create_study(direction="maximize" if higher else "minimize", sampler=sampler)
        measured = [v for _, v in points if v is not None]
        worst = (min(measured) if higher else max(measured)) if measured else None
        for params, value in points:
            value = worst if value is None else value
            if value is None:
                continue
            inside = {n: v for n, v in params.items() if space[n].low <= v <= space[n].high}
            if name not in inside:
                continue
            study.add_trial(
                optuna.trial.create_trial(
                    params={n: _typed(space[n], v) for n, v in inside.items()},
                    distributions={n: space[n] for n in inside},
                    value=value,
                )
            )
        trial = study.ask()
        dist = space[name]
        if isinstance(dist, optuna.distributions.IntDistribution):
            return float(trial.suggest_int(name, dist.low, dist.high, log=dist.log))
        return float(trial.suggest_float(name, dist.low, dist.high, log=dist.log))

    def _schedule(self, knobs: Sequence[Knob], history: Sequence[ExperimentRecord]) -> list[Knob]:
        """The knob just kept first, then the ones changed least, in the order they were found."""
        changed: dict[str, int] = {k.name: 0 for k in knobs}
        last_kept: str | None = None
        for record in history:
            names = [n for n in parse_changes(record.description) if n in changed]
            for n in names:
                changed[n] += 1
            if record.status != "baseline":
                last_kept = names[0] if record.status == "keep" and len(names) == 1 else None
        # Ties: a value a config file sets for this run first, then rates, then the rest in the order found.
        order = sorted(
            knobs,
            key=lambda k: (changed[k.name], k.place.source != "config", not _RATE.search(k.name.rsplit(".", 1)[-1])),
        )
        if last_kept is not None:
            order = [k for k in order if k.name == last_kept] + [k for k in order if k.name != last_kept]
        return order

    def _proposal(
        self, change: KnobChange, files: dict[str, str], edits: tuple[Edit, ...], dist: Any, known: int
    ) -> Proposal:
        from .categories import categorize

        knob = change.knob
        scale = "log scale" if dist.log else "linear scale"
        low, high = format_number(dist.low, knob.is_int), format_number(dist.high, knob.is_int)
        return Proposal(
            description=change.description,
            files=files,
            edits=edits,
            category=categorize(change.description),
            rationale=f"TPE (Optuna) picked {knob.name} = {format_number(change.new_value, knob.is_int)} from "
            f"[{low}, {high}] ({scale}) after {known} measured point{'s' if known != 1 else ''}; "
            f"the value lives in {knob.place.describe()}.",
        )

    def _from_idea(self, ctx: ProposalContext, report: KnobReport, idea: str) -> Proposal | None:
        """`NAME = value`, `NAME -> value` or `NAME to value` in a queued idea, the name in any case."""
        for match in _IDEA.finditer(idea):
            name = match.group(1).lower()
            knob = next((k for k in report.knobs if k.name.lower() == name), None)
            if knob is None:
                continue
            if knob.overridden_by_run_command:
                raise ProposalSkipped(
                    f"{knob.name} is set by the run command ({knob.place.flag}); change it with "
                    "`autoresearch config run_command ...`"
                )
            if not knob.editable:
                continue
            change = KnobChange(knob, float(match.group(2)))
            if format_number(change.new_value, knob.is_int) == knob.text():
                continue
            files = apply_changes(ctx.files, [change])
            return Proposal(
                description=change.description,
                files=files,
                edits=file_edits(ctx.files, files),
                category="hyperparams",
                rationale=f"the user's idea: {' '.join(idea.split())}",
            )
        return None


def _typed(dist: Any, value: float) -> float | int:
    return round(value) if type(dist).__name__ == "IntDistribution" else float(value)
