"""Judging: false keeps, missed gains and extra runs of the greedy rule and the noise rule, side by side.

The workload is a stand-in training script whose val_loss has Gaussian noise of a known spread σ = 0.01,
drawn from a seeded RNG (seeded by the code's knobs, the experiment number and the run), so every figure
is reproducible. Twenty knobs K01..K20 start at 0; the agent turns one on per experiment.

- (a) no real effect: a knob only changes the random stream (like nanoGPT's eval_interval);
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


def train_text(changes: int, gain: float) -> str:
    knobs = "".join(f"K{i:02d} = 0\n" for i in range(1, changes + 1))
    return f'''"""Stand-in training: val_loss = 1 - gain per knob turned on + seeded Gaussian noise of spread sigma."""
import os
import random

{knobs}
SESSION_SEED = 0
knobs = [v for k, v in sorted(globals().items()) if k.startswith("K") and k[1:].isdigit()]
stream = random.Random(repr((knobs, SESSION_SEED, os.environ.get("AUTORESEARCH_EXPERIMENT"),
                             os.environ.get("AUTORESEARCH_RUN"))))
print(f"val_loss: {{1.0 - {gain!r} * sum(knobs) + stream.gauss(0, {SIGMA!r}):.6f}}")
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


def session(workdir: Path, changes: int, gain: float, judging: str, seed: int, knobs: int = 0) -> Outcome:
    """One session in `workdir` turning on `changes` of `knobs` (default: as many) knobs."""
    text = train_text(knobs or changes, gain).replace("SESSION_SEED = 0", f"SESSION_SEED = {seed}")
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


def run(quick: bool = False) -> list[Row]:
    changes = 5 if quick else 20
    seeds = SEEDS[:1] if quick else SEEDS
    results: dict[tuple[str, str], list[Outcome]] = {}
    with tempfile.TemporaryDirectory(prefix="ar-bench-judge-") as tmp:
        for judging in ("greedy", "noise"):
            for scenario, gain in (("a", 0.0), ("b", GAIN_SIGMAS * SIGMA)):
                for seed in seeds:
                    where = Path(tmp) / f"{judging}-{scenario}-{seed}"
                    results.setdefault((judging, scenario), []).append(session(where, changes, gain, judging, seed))
    total = changes * len(seeds)
    rows: list[Row] = []
    figures: dict[str, dict[str, float]] = {}
    for judging in ("greedy", "noise"):
        a, b = results[(judging, "a")], results[(judging, "b")]
        false_keeps = sum(o.keeps for o in a)
        missed = sum(o.changes - o.keeps for o in b)
        runs = sum(o.runs for o in a + b)
        figures[judging] = {"false_keeps": false_keeps, "missed": missed, "runs": runs}
    greedy_runs = figures["greedy"]["runs"]
    per = f"of {total}" + (f" ({len(seeds)} seeds x {changes})" if len(seeds) > 1 else "")
    scale = 20 / total
    for judging in ("greedy", "noise"):
        f = figures[judging]
        extra = (f["runs"] - greedy_runs) / greedy_runs * 100
        new = judging == "noise"
        rows.append(
            Row(
                what=f"judging {judging}: false keeps, (a) {changes} no-effect changes",
                measured=f"{f['false_keeps']:.0f} {per}",
                goal="<= 1 of 20" if new else "",
                met=(f["false_keeps"] * scale <= 1) if new else None,
                data=f,
            )
        )
        rows.append(
            Row(
                what=f"judging {judging}: real gains kept, (b) {changes} gains of {GAIN_SIGMAS}σ",
                measured=f"{total - f['missed']:.0f} {per}",
                goal=">= 18 of 20" if new else "",
                met=((total - f["missed"]) * scale >= 18) if new else None,
            )
        )
        rows.append(
            Row(
                what=f"judging {judging}: runs for (a)+(b)",
                measured=f"{f['runs']:.0f} runs, {extra:+.0f}% vs greedy",
                goal="<= +25%" if new else "",
                met=(extra <= 25) if new else None,
                ratio="same run" if new else "",
                note=(
                    f"σ = {SIGMA}; seeded noise, so the figures repeat exactly; defaults noise_sigmas 2, "
                    "baseline_runs 2, confirm_runs 2; per seed "
                    + ", ".join(
                        f"{seed}: {fa.keeps} false keeps, {fb.keeps}/{fb.changes} gains kept, {fa.runs + fb.runs} runs"
                        for seed, fa, fb in zip(seeds, a, b, strict=True)
                    )
                )
                if new
                else "",
            )
        )
    return rows
