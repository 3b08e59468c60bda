"""Throughput of parallel workers: experiments per hour with 4 workers on 4 stand-in devices beside 1 worker,
both measured in the same run, and the tool's own CPU per worker while 4 run.

The training sleeps its time budget and prints a val_loss that depends on the experiment's VARIANT only (no
noise, so no confirmation runs on either side); the proposer answers at once with a new VARIANT. The window
runs from the baseline's record to the last record, so both sides count the same thing: experiments done
after the baseline. The tool's CPU is this process's own (user + system, children not included) over that
window, per worker.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from autoresearch.core import events as ev
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.setup import setup_session

from .common import PY, Row, print_table, use_git_identity
from .harness_overhead import InstantProposer

GOAL_RATIO = 3.8
TRAIN = (
    "import os\nimport time\n\nVARIANT = 0\n\n"
    'time.sleep(float(os.environ["AUTORESEARCH_TIME_BUDGET_S"]))\n'
    'print(f"val_loss: {1 + ((VARIANT * 7919) % 1000) / 1000:.6f}")\n'
)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(workdir: Path, workers: int, experiments: int, budget_s: float) -> tuple[float, float]:
    """(experiments per hour after the baseline, the tool's CPU seconds per wall second per worker)."""
    root = workdir / f"repo-{workers}"
    root.mkdir(parents=True)
    (root / "train.py").write_text(TRAIN)
    for args in (["init", "-q", "-b", "main"], ["add", "train.py"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    setup_session(
        root,
        "train.py",
        metric_name="val_loss",
        run_command=f"{PY} train.py",
        time_budget_minutes=budget_s / 60,
        timeout_minutes=2,
        max_experiments=experiments + 1,
        tag="bench",
        workers=workers,
        devices=[str(i) for i in range(workers)] if workers > 1 else [],
    )
    stamps: list[tuple[float, float]] = []

    def sink(event: ev.Event) -> None:
        if isinstance(event, ev.ResultRecorded):
            stamps.append((time.monotonic(), _cpu_s()))

    stopped = ExperimentLoop(root, sink, InstantProposer()).run()
    if not stopped.ok or len(stamps) != experiments + 1:
        raise RuntimeError(f"the session stopped early: {stopped.reason}")
    (start, cpu0), (end, cpu1) = stamps[0], stamps[-1]
    wall = end - start
    return experiments / wall * 3600, (cpu1 - cpu0) / wall / workers


def run(quick: bool = False) -> list[Row]:
    use_git_identity()
    workdir = Path(tempfile.mkdtemp(prefix="ar-bench-workers-"))
    budget = 0.5 if quick else 2.0
    experiments = 8 if quick else 24
    try:
        one, _ = measure(workdir, 1, experiments, budget)
        four, cpu = measure(workdir, 4, experiments, budget)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = four / one
    return [
        Row(
            what=f"throughput, 4 workers vs 1 ({budget:g} s runs, instant proposer, {experiments} experiments each)",
            measured=f"{ratio:.2f}x ({four:.0f} vs {one:.0f} experiments/hour)",
            goal=f">= {GOAL_RATIO:g}x",
            met=ratio >= GOAL_RATIO,
            ratio=f"{ratio:.2f}x 1 worker",
            note=f"the tool's own CPU while 4 run: {cpu * 100:.1f} % of a core per worker",
            data={"per_hour_1": one, "per_hour_4": four, "cpu_per_worker": cpu},
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (smoke test)")
    print_table(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
