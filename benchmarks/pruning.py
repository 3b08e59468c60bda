"""Pruning: the same sessions with `prune: on` and `prune: off`, side by side, through the real loop.

The workload is a stand-in training script that runs for its time budget and prints a noisy loss curve
(`step N loss L`, 100 lines) and, at the end, `val_bpb` (the loss in other units, with seeded noise). Its
knobs shape the curve:

- QUALITY: a real gain, visible from the first steps and growing to the end;
- BROKEN: a hopeless change, worse from the first steps;
- LR: with a warmdown, a higher LR is worse while the LR is high and better once it has decayed (a late
  bloomer); a lower one the other way round;
- WARMDOWN: the share of the run in the warmdown, the schedule itself (its change is never pruned).

Workloads, each one session per seed under each setting, the same scripted changes in the same order:

- hopeless: most changes are BROKEN from their first steps, a few are real gains, no warmdown;
- warmdown: a 30 % warmdown, late bloomers (higher LR), early leaders that end worse (lower LR), schedule
  changes, real gains and hopeless changes.

Figures: the wall time of the hopeless sessions (off / on), the real gains kept, the would-be keeps (kept
with `prune: off`) that `prune: on` stopped, where runs were stopped, and from that the GPU time saved per
night at karpathy/autoresearch's figures (5-minute runs, 83 % of experiments discarded).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.core.history import History
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.proposer import ExperimentRecord, Proposal, ProposalContext
from autoresearch.core.pruning import pruned_info
from autoresearch.core.results import read_results
from autoresearch.core.setup import setup_session

from .common import PY, Row, make_repo

BUDGET_S = 4.0
QUICK_BUDGET_S = 1.0
NIGHT_S = 8 * 3600
KARPATHY_RUN_S = 300
KARPATHY_DISCARDED = 0.83

TRAIN = '''"""Stand-in training: a noisy loss curve over the time budget, then val_bpb."""
import math
import os
import random
import time

QUALITY = 0.0
BROKEN = 0.0
LR = 1.0
WARMDOWN = {warmdown}
SEED = {seed}

budget = float(os.environ["AUTORESEARCH_TIME_BUDGET_S"])
rng = random.Random(repr((QUALITY, BROKEN, LR, WARMDOWN, SEED, os.environ.get("AUTORESEARCH_RUN"))))
offset = rng.gauss(0, 0.004)


def loss(t):
    base = 2.0 + 1.5 * math.exp(-5 * t) + offset
    w = 0.0 if WARMDOWN == 0 or t <= 1 - WARMDOWN else (t - (1 - WARMDOWN)) / WARMDOWN
    warmdown = -0.3 * w if WARMDOWN else 0.0
    lr = 0.25 * (LR - 1) * (1 - w) - 0.1 * (LR - 1) * w if WARMDOWN else 0.0
    return base + warmdown + lr - QUALITY * (0.3 + 0.7 * t) + BROKEN * min(1.0, 0.5 + 5 * t)


start = time.monotonic()
for step in range(1, 101):
    time.sleep(max(0.0, start + budget * step / 100 - time.monotonic()))
    print(f"step {{step}} loss {{loss(step / 100) + rng.gauss(0, 0.01):.4f}}", flush=True)
print(f"val_bpb: {{loss(1.0) * 0.7:.6f}}")
'''

HOPELESS = [("QUALITY", 0.05) if i % 6 == 3 else ("BROKEN", round(0.3 + 0.01 * i, 2)) for i in range(24)]
"""Four real gains in 24 changes: 83 % discarded, as in karpathy/autoresearch's night."""
WARMDOWN = [
    ("LR", 1.3),
    ("BROKEN", 0.4),
    ("QUALITY", 0.04),
    ("LR", 0.8),
    ("WARMDOWN", 0.4),
    ("BROKEN", 0.3),
    ("LR", 1.5),
    ("BROKEN", 0.5),
    ("QUALITY", 0.04),
    ("WARMDOWN", 0.3),
    ("LR", 1.7),
    ("BROKEN", 0.35),
    ("LR", 2.0),
    ("QUALITY", 0.03),
]
"""Late bloomers (a higher LR, up to 0.3 above the best's), early leaders that end worse (a lower LR),
schedule changes, real gains and hopeless changes."""


class ScriptedProposer:
    """Sets one knob per experiment, on top of whatever was kept: the same changes in the same order."""

    name = "scripted"
    drafts_ahead = False

    def __init__(self, changes: list[tuple[str, float]]) -> None:
        self.changes = list(changes)
        self.next = 0

    def observe(self, record: ExperimentRecord) -> None:
        return None

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        if self.next >= len(self.changes):
            return None
        knob, value = self.changes[self.next]
        self.next += 1
        text = ctx.files["train.py"]
        lines = [f"{knob} = {value}" if line.startswith(f"{knob} = ") else line for line in text.splitlines()]
        if knob in ("QUALITY", "BROKEN"):  # a gain or a fault adds to what was kept
            old = next(float(line.split("=")[1]) for line in text.splitlines() if line.startswith(f"{knob} = "))
            lines = [f"{knob} = {old + value:g}" if line.startswith(f"{knob} = ") else line for line in lines]
        return Proposal(
            description=f"change{self.next} set {knob} to {value:g}",
            files={"train.py": "\n".join(lines) + "\n"},
            category="other",
        )


@dataclass
class Outcome:
    wall_s: float
    statuses: dict[str, str]
    """The status of each scripted change, by its description's `#k` prefix."""
    shares: list[float] = field(default_factory=list)
    """Where pruned runs were stopped (share of the budget)."""
    saved_s: float = 0.0


def session(
    workdir: Path, changes: list[tuple[str, float]], warmdown: float, seed: int, prune: str, budget_s: float
) -> Outcome:
    root = make_repo(workdir, 1, TRAIN.format(warmdown=warmdown, seed=seed), files=2)
    setup_session(
        root,
        "train.py",
        metric_name="val_bpb",
        run_command=f"{PY} train.py",
        tag="bench",
        time_budget_minutes=budget_s / 60,
        timeout_minutes=1,
        max_experiments=0,
        prune=prune,
    )
    began = time.monotonic()
    stopped = ExperimentLoop(root, lambda _e: None, ScriptedProposer(changes)).run()
    wall = time.monotonic() - began
    if not stopped.ok:
        raise RuntimeError(stopped.reason)
    table = read_results(root / "results.tsv")
    history = History(root)
    statuses: dict[str, str] = {}
    shares: list[float] = []
    saved = 0.0
    for number, row in enumerate(table.rows, 1):
        key = row.description.split(" ", 1)[0]
        if key.startswith("change"):
            statuses[key] = row.status
        info = pruned_info(history, number)
        if info is not None:
            shares.append(float(info["share"]))
            saved += max(0.0, float(info["expected_s"]) - float(info["stopped_s"]))
    return Outcome(wall, statuses, shares, saved)


def run(quick: bool = False) -> list[Row]:
    seeds = (1,) if quick else (1, 2, 3)
    hopeless = HOPELESS[:6] if quick else HOPELESS
    warm = WARMDOWN[:4] if quick else WARMDOWN
    budget = QUICK_BUDGET_S if quick else BUDGET_S
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ar-bench-prune-") as tmp:
        base = Path(tmp)
        off = session(base / "hopeless-off", hopeless, 0.0, 1, "off", budget)
        on = session(base / "hopeless-on", hopeless, 0.0, 1, "on", budget)
        gains = [k for k, s in off.statuses.items() if s == "keep"]
        kept = sum(1 for k in gains if on.statuses.get(k) == "keep")
        same = all(on.statuses.get(k) == s or s == "discard" for k, s in off.statuses.items())
        speedup = off.wall_s / on.wall_s
        rows.append(
            Row(
                what=f"pruning, hopeless workload ({len(hopeless)} changes, most broken from the start): wall time",
                measured=f"off {off.wall_s:.1f} s, on {on.wall_s:.1f} s",
                goal=">= 1.8x shorter",
                met=speedup >= 1.8,
                ratio=f"{speedup:.2f}x",
                note=f"{len(on.shares)} runs pruned, median at {_median_pct(on.shares)} of the budget; "
                f"{budget:g} s budget",
                data={"off_s": off.wall_s, "on_s": on.wall_s, "shares": on.shares},
            )
        )
        rows.append(
            Row(
                what="pruning, hopeless workload: real gains kept",
                measured=f"{kept} of {len(gains)} (other verdicts unchanged: {'yes' if same else 'no'})",
                goal="all",
                met=kept == len(gains) and same,
            )
        )
        would, lost, shares = 0, 0, list(on.shares)
        for seed in seeds:
            w_off = session(base / f"warm-off-{seed}", warm, 0.3, seed, "off", budget)
            w_on = session(base / f"warm-on-{seed}", warm, 0.3, seed, "on", budget)
            keeps = [k for k, s in w_off.statuses.items() if s == "keep"]
            would += len(keeps)
            lost += sum(1 for k in keeps if w_on.statuses.get(k) != "keep")
            shares += w_on.shares
        rows.append(
            Row(
                what=f"pruning, warmdown workload ({len(warm)} changes x {len(seeds)} seeds, late bloomers): "
                "would-be keeps pruned",
                measured=f"{lost} of {would}",
                goal="<= 1 in 20",
                met=would > 0 and lost * 20 <= would,
                data={"would_keep": would, "lost": lost},
            )
        )
    pruned_share = sum(1 - s for s in shares) / len(shares) if shares else 0.0
    prunable = len(on.shares) / max(1, sum(1 for s in off.statuses.values() if s == "discard"))
    saved_h = NIGHT_S / KARPATHY_RUN_S * KARPATHY_DISCARDED * prunable * pruned_share * KARPATHY_RUN_S / 3600
    rows.append(
        Row(
            what="pruning: GPU time saved per 8-hour night at karpathy/autoresearch's figures",
            measured=f"{saved_h:.1f} h of 8 h",
            goal="",
            met=None,
            note=f"5-minute runs, 83 % discarded; of the discards, {prunable * 100:.0f} % pruned (as in the hopeless "
            f"workload), each saving {pruned_share * 100:.0f} % of its run (the mean over every measured prune point, "
            f"median at {_median_pct(shares)} of the budget); every discard pruned there would save "
            f"{NIGHT_S * KARPATHY_DISCARDED * pruned_share / 3600:.1f} h",
        )
    )
    return rows


def _median_pct(shares: list[float]) -> str:
    if not shares:
        return "-"
    ordered = sorted(shares)
    return f"{ordered[len(ordered) // 2] * 100:.0f} %"
