"""Whole-process times of the `autoresearch` command: `--help`, and `status` on a 10,000-row session."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from autoresearch.core.history import History
from autoresearch.core.results import ResultRow, append_row
from autoresearch.core.setup import setup_session

from .common import (
    BIN,
    Row,
    fmt_s,
    make_repo,
    measure_references,
    median,
    print_table,
    run_quiet,
    time_calls,
    use_git_identity,
)

HELP_GOAL_S = 0.3
STATUS_GOAL_S = 0.5
COMMAND = str(BIN / "autoresearch")


def make_session(root: Path, rows: int) -> Path:
    """A session with `rows` results rows and a meta.json (with token usage) for each."""
    use_git_identity()
    make_repo(root, 20, "LEARNING_RATE = 0.01\nprint('val_loss: 1.0')\n", files=5)
    setup_session(root, "train.py", metric_name="val_loss", agent="mutate", tag="bench", max_experiments=0)
    rng = random.Random(3)
    lines = []
    history = History(root)
    best = 1.0
    for n in range(1, rows + 1):
        metric = 1.0 if n == 1 else rng.uniform(0.5, 1.5)
        status = "baseline" if n == 1 else "crash" if rng.random() < 0.05 else "keep" if metric < best else "discard"
        if status == "keep":
            best = metric
        row = ResultRow(
            f"{rng.getrandbits(28):07x}",
            0.0 if status == "crash" else metric,
            44.0,
            300.0,
            status,
            f"experiment {n}: change LEARNING_RATE",
        )
        lines.append(row.to_line())
        folder = history.experiment_dir(n)
        folder.mkdir(parents=True)
        meta = {"number": n, "description": row.description, "tokens_in": 3000, "tokens_out": 400, "cost_usd": 0.002}
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))
    results = root / "results.tsv"
    with results.open("a") as fh:
        fh.write("".join(lines[:-1]))
    append_row(results, ResultRow(*_fields(lines[-1])))
    return root


def age_history(root: Path) -> None:
    """Make the session's files an hour old, as in a session that has run a while (status caches only
    what did not change in the last seconds)."""
    then = time.time() - 3600
    for meta in History(root).experiments_dir.glob("*/meta.json"):
        os.utime(meta, (then, then))


def _fields(line: str) -> tuple[str, float, float, float, str, str]:
    commit, metric, memory, duration, status, description = line.rstrip("\n").split("\t")
    return commit, float(metric), float(memory), float(duration), status, description


def run(quick: bool = False) -> list[Row]:
    runs = 3 if quick else 15
    rows = 200 if quick else 10_000
    workdir = Path(tempfile.mkdtemp(prefix="ar-bench-cli-"))
    try:
        root = make_session(workdir / "repo", rows)
        age_history(root)
        help_times = time_calls(lambda: run_quiet([COMMAND, "--help"]), runs)

        began = time.perf_counter()
        run_quiet([COMMAND, "-C", str(root), "status"])
        first = time.perf_counter() - began
        status_times = time_calls(lambda: run_quiet([COMMAND, "-C", str(root), "status"]), runs, warmup=0)

        refs = measure_references(root)
        help_s, status_s = median(help_times), median(status_times)
        return [
            Row(
                what="`autoresearch --help` (whole process)",
                measured=f"median {fmt_s(help_s)} (n={runs})",
                goal=f"<= {HELP_GOAL_S} s",
                met=help_s <= HELP_GOAL_S,
                ratio=f"{help_s / refs.python_startup_s:.2f}x python -c pass ({fmt_s(refs.python_startup_s)})",
                data={"seconds": help_times},
            ),
            Row(
                what=f"`autoresearch status` on a {rows:,}-row results.tsv (whole process)",
                measured=f"median {fmt_s(status_s)} (n={runs}); first call {fmt_s(first)}",
                goal=f"<= {STATUS_GOAL_S} s",
                met=status_s <= STATUS_GOAL_S,
                ratio=f"{status_s / refs.python_startup_s:.2f}x python -c pass ({fmt_s(refs.python_startup_s)})",
                note=f"the session also holds {rows:,} meta.json files, an hour old (token usage is summed over "
                "them): the first call reads them all and fills the usage cache, later calls only stat them",
                data={"seconds": status_times, "first_s": first},
            ),
        ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (smoke test)")
    print_table(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
