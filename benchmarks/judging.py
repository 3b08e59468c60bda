"""Judging: false keeps, missed gains and extra runs of the greedy rule and the noise rule, side by side.

The workload is a deterministic, seeded stand-in training script, as real scripts are: the same code and
seed print the same val_loss; another seed, or any change of the code (which reshuffles the random stream),
draws another, with a spread σ = 0.01 across seeds. It reads AUTORESEARCH_SEED, through which repeats vary
the seed (core/seeds.py). Twenty knobs K01..K20 start at 0; the agent turns one on per experiment. The
same table is measured on the metric printed in steps of σ (a quantized metric, like an accuracy).

- (a) no real effect: a knob only reshuffles the random stream (like nanoGPT's eval_interval);
- (b) a real gain: each knob lowers val_loss by 4σ (and changes the random stream too).

Each scenario is one real session (real git, real processes, the real loop) under each rule; a keep in
(a) is a false keep, a discard in (b) a missed gain; extra runs count every run beyond the greedy rule's
(one per experiment, one baseline run).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from autoresearch.core.history import History
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.proposer import ExperimentRecord, Proposal, ProposalContext
from autoresearch.core.results import read_results
from autoresearch.core.setup import setup_session

from .common import PY, Row, make_repo

SIGMA = 0.01
GAIN_SIGMAS = 4
SEEDS = (1, 2, 3, 4, 5)


def train_text(changes: int, gain: float, quantum: float = 0.0) -> str:
    """A deterministic, seeded training: the same code and seed print the same number; another seed, or a
    change of the code (which reshuffles the random stream), draws another. The seed is the script's own
    (0) unless AUTORESEARCH_SEED says otherwise, as docs/JUDGING.md asks scripts to do."""
    knobs = "".join(f"K{i:02d} = 0\n" for i in range(1, changes + 1))
    shown = f"round(value / {quantum!r}) * {quantum!r}" if quantum else "value"
    return f'''"""Stand-in training: val_loss = 1 - gain per knob turned on + seeded Gaussian noise of spread sigma."""
import os
import random

{knobs}
SESSION_SEED = 0
knobs = [v for k, v in sorted(globals().items()) if k.startswith("K") and k[1:].isdigit()]
seed = int(os.environ.get("AUTORESEARCH_SEED", 0))
stream = random.Random(repr((knobs, SESSION_SEED, seed)))
for step in range(3):
    print(f"step {{step}} loss: {{stream.random():.6f}}")
value = 1.0 - {gain!r} * sum(knobs) + stream.gauss(0, {SIGMA!r})
print(f"val_loss: {{{shown}:.6f}}")
'''


class KnobProposer:
    """Turns on the next knob: one change per experiment, on top of whatever was kept."""

    name = "knobs"
    drafts_ahead = False  # it answers at once, like mutate: nothing to gain from drafting during a run

    def __init__(self, changes: int) -> None:
        self.changes = changes
        self.next = 1

    def observe(self, record: ExperimentRecord) -> None:
        return None

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        if self.next > self.changes:
            return None
        knob = f"K{self.next:02d}"
        self.next += 1
        text = ctx.files["train.py"].replace(f"{knob} = 0\n", f"{knob} = 1\n")
        return Proposal(description=f"turn on {knob}", files={"train.py": text}, category="other")


@dataclass
class Outcome:
    keeps: int
    runs: int
    changes: int


def session(
    workdir: Path,
    changes: int,
    gain: float,
    judging: str,
    seed: int,
    knobs: int = 0,
    quantum: float = 0.0,
    **options: object,
) -> Outcome:
    """One session in `workdir` turning on `changes` of `knobs` (default: as many) knobs."""
    text = train_text(knobs or changes, gain, quantum).replace("SESSION_SEED = 0", f"SESSION_SEED = {seed}")
    root = make_repo(workdir, 1, text)
    setup_session(
        root,
        "train.py",
        metric_name="val_loss",
        run_command=f"{PY} train.py",
        tag="bench",
        time_budget_minutes=1,
        timeout_minutes=2,
        max_experiments=0,
        judging=judging,
        **options,
    )
    stopped = ExperimentLoop(root, lambda _e: None, KnobProposer(changes)).run()
    if not stopped.ok:
        raise RuntimeError(stopped.reason)
    table = read_results(root / "results.tsv")
    metas = History(root).all_meta()
    runs = sum(
        len(m.extra.get("runs", [1])) + len(m.extra.get("remeasured_runs", [])) for m in metas.values() if m.status
    )
    keeps = sum(1 for r in table.rows if r.status == "keep")
    return Outcome(keeps, runs, len(table.rows) - 1)


QUANTUM = SIGMA
"""The quantized metric is printed in steps of one σ (an accuracy on 100 examples moves in steps of 0.01)."""


def run(quick: bool = False) -> list[Row]:
    changes = 5 if quick else 20
    seeds = SEEDS[:1] if quick else SEEDS
    results: dict[tuple[str, float, str], list[Outcome]] = {}
    with tempfile.TemporaryDirectory(prefix="ar-bench-judge-") as tmp:
        for quantum in (0.0, QUANTUM):
            for judging in ("greedy", "noise"):
                for scenario, gain in (("a", 0.0), ("b", GAIN_SIGMAS * SIGMA)):
                    for seed in seeds:
                        where = Path(tmp) / f"{judging}-{scenario}-{seed}-{quantum}"
                        outcome = session(where, changes, gain, judging, seed, quantum=quantum)
                        results.setdefault((judging, quantum, scenario), []).append(outcome)
    rows: list[Row] = []
    for quantum in (0.0, QUANTUM):
        metric = f"quantized to {QUANTUM:g}" if quantum else "exact"
        greedy_runs = sum(o.runs for s in "ab" for o in results[("greedy", quantum, s)])
        for judging in ("greedy", "noise"):
            a, b = results[(judging, quantum, "a")], results[(judging, quantum, "b")]
            runs = sum(o.runs for o in a + b)
            extra = (runs - greedy_runs) / greedy_runs * 100
            new = judging == "noise"
            worst_false = max(o.keeps for o in a)
            worst_kept = min(o.keeps for o in b)
            per_seed = ", ".join(
                f"{seed}: {fa.keeps} false, {fb.keeps}/{fb.changes} kept, {fa.runs + fb.runs} runs"
                for seed, fa, fb in zip(seeds, a, b, strict=True)
            )
            rows.append(
                Row(
                    what=f"judging {judging}, {metric} metric: false keeps of {changes} reshuffles, worst seed",
                    measured=f"{worst_false} (total {sum(o.keeps for o in a)} of {changes * len(seeds)})",
                    goal=f"<= {max(1, changes // 20)} per seed" if new else "",
                    met=(worst_false <= max(1, changes // 20)) if new else None,
                    data={"per_seed_false_keeps": [o.keeps for o in a]},
                )
            )
            rows.append(
                Row(
                    what=f"judging {judging}, {metric} metric: real {GAIN_SIGMAS}σ gains kept of {changes}, worst seed",
                    measured=f"{worst_kept} (total {sum(o.keeps for o in b)} of {changes * len(seeds)})",
                    goal=f">= {changes * 18 // 20} per seed" if new else "",
                    met=(worst_kept >= changes * 18 // 20) if new else None,
                    data={"per_seed_gains_kept": [o.keeps for o in b]},
                )
            )
            rows.append(
                Row(
                    what=f"judging {judging}, {metric} metric: runs for (a)+(b)",
                    measured=f"{runs} runs, {extra:+.0f}% vs greedy",
                    goal="",
                    met=None,
                    ratio="same run" if new else "",
                    note=(f"σ = {SIGMA} across seeds, deterministic per seed; per seed {per_seed}" if new else ""),
                )
            )
    return rows
