"""Harness overhead per experiment: the real ExperimentLoop, minus the training run and the model call.

A repository with 1,000 commits; the run command is a bash script that `cat`s a pre-made 100 MB log
(ending with a random val_loss) and stamps its own start and end with bash's $EPOCHREALTIME; the
proposer answers instantly with a new VARIANT (not a seed: a seed-only change is skipped). Per experiment:

    overhead = (ResultRecorded(n) - ResultRecorded(n-1)) - training (bash's own start..end) - proposal time

so it holds every git call, the metric and memory reads, results.tsv, the history, the events, the
process tracking and the spawn of bash itself.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from autoresearch.core import events as ev
from autoresearch.core.journal import journal_path
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.proposer import Proposal, ProposalContext
from autoresearch.core.publishing import Publisher
from autoresearch.core.setup import setup_session

from .common import Row, fmt_s, make_repo, measure_references, median, print_table, use_git_identity

GOAL_S = 0.050
TRAIN = "VARIANT = 0\nprint('training')\n"
_VARIANT = re.compile(r"^VARIANT = (\d+)$", re.MULTILINE)


class InstantProposer:
    name = "instant"

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        began = time.perf_counter()
        text = _VARIANT.sub(f"VARIANT = {ctx.number * 7919}", ctx.files["train.py"])
        proposal = Proposal(f"variant {ctx.number}", {"train.py": text}, category="other")
        self.seconds[ctx.number] = time.perf_counter() - began
        return proposal

    def observe(self, record: object) -> None:
        pass


def make_log(path: Path, megabytes: float) -> None:
    """A training-like log of about `megabytes` MB, without the metric line (the run command adds it)."""
    rng = random.Random(1)
    lines = [
        f"step {i:07d} | loss: {rng.random():.6f} | lr: 0.000600 | dt: 412.3ms | tok/sec: 127,338\n"
        for i in range(2000)
    ]
    block = "".join(lines).encode()
    target = int(megabytes * 1_000_000)
    with path.open("wb") as fh:
        written = 0
        while written < target:
            piece = block[: target - written]
            fh.write(piece)
            written += len(piece)
        if not piece.endswith(b"\n"):
            fh.write(b"\n")


def measure(workdir: Path, commits: int, log_mb: float, experiments: int, publish: bool = False) -> Row:
    """With `publish`, the loop's sink is the one `autoresearch run` hands it: journal and control channel too."""
    use_git_identity()
    big_log = workdir / "premade.log"
    make_log(big_log, log_mb)
    stamps = workdir / "stamps.txt"
    root = make_repo(workdir / "repo", commits, TRAIN)
    command = (
        f'echo "S $AUTORESEARCH_EXPERIMENT $EPOCHREALTIME" >> {stamps}; cat {big_log}; '
        f'printf "val_loss: 0.%05d\\n" $RANDOM; echo "E $AUTORESEARCH_EXPERIMENT $EPOCHREALTIME" >> {stamps}'
    )
    setup_session(
        root,
        "train.py",
        metric_name="val_loss",
        agent="mutate",
        run_command=command,
        time_budget_minutes=1,
        timeout_minutes=2,
        max_experiments=experiments + 1,
        tag="bench",
    )
    times: dict[tuple[str, int], float] = {}
    lock = threading.Lock()

    def sink(event: ev.Event) -> None:
        now = time.time()
        number = getattr(event, "number", None)
        if number is not None:
            with lock:
                times.setdefault((type(event).__name__, number), now)

    proposer = InstantProposer()
    publisher = Publisher(root, sink) if publish else None
    publishing_s = [0.0]

    def published(event: ev.Event) -> None:
        assert publisher is not None
        began = time.thread_time()  # CPU of the calling thread: the sink's own cost, whatever the machine's load
        publisher(event)
        publishing_s[0] += time.thread_time() - began

    loop = ExperimentLoop(root, published if publisher else sink, proposer)
    if publisher is not None:
        publisher.listen(loop)
    stopped = loop.run()
    if not stopped.ok:
        raise RuntimeError(f"the loop stopped: {stopped.reason}")
    refs = measure_references(root)

    train: dict[int, float] = {}
    starts: dict[int, float] = {}
    for line in stamps.read_text().splitlines():
        kind, number, at = line.split()
        if kind == "S":
            starts[int(number)] = float(at)
        else:
            train[int(number)] = float(at) - starts[int(number)]

    overheads: list[float] = []
    before: list[float] = []
    teardown: list[float] = []
    judge: list[float] = []
    for n in range(2, experiments + 2):
        wall = times[("ResultRecorded", n)] - times[("ResultRecorded", n - 1)]
        overheads.append(wall - train[n] - proposer.seconds.get(n, 0.0))
        before.append(starts[n] - times[("ResultRecorded", n - 1)] - proposer.seconds.get(n, 0.0))
        teardown.append(times[("RunFinished", n)] - (starts[n] + train[n]))
        judge.append(times[("ResultRecorded", n)] - times[("RunFinished", n)])

    value = median(overheads)
    row = Row(
        what=f"harness overhead per experiment ({commits} commits, {log_mb:g} MB run.log)"
        + (", publishing for watchers" if publish else ""),
        measured=f"median {fmt_s(value)} (max {fmt_s(max(overheads))}, n={len(overheads)})",
        goal=f"median <= {GOAL_S * 1000:.0f} ms",
        met=value <= GOAL_S,
        ratio=refs.ratio(value),
        note=(
            f"medians: up to the training's first line {fmt_s(median(before))} (checks, commit, diff, history, "
            f"spawn), training's last line to RunFinished {fmt_s(median(teardown))} (tree teardown, log kept), "
            f"judging and recording {fmt_s(median(judge))}; "
            f"training itself (cat of the log) median {fmt_s(median(list(train.values())))}"
            + (
                f"; CPU inside the publishing sink (journal, notifier) {fmt_s(publishing_s[0] / (experiments + 1))} "
                f"per experiment, journal {journal_path(root).stat().st_size / 1e6:.1f} MB"
                if publish
                else ""
            )
        ),
        data={
            "overhead_s": overheads,
            "before_run_s": before,
            "teardown_s": teardown,
            "judge_s": judge,
            "train_s": [train[n] for n in sorted(train)],
            "references": asdict(refs),
        },
    )
    return row


def run(quick: bool = False, publish: bool = False) -> list[Row]:
    """One measurement; with `publish`, side by side with publishing on (journal, channel), in the order
    without, with, with, without, so that a change of the machine's load weighs on both alike."""
    rows: list[Row] = []
    for publishing in (False, True, True, False) if publish else (False,):
        workdir = Path(tempfile.mkdtemp(prefix="ar-bench-overhead-"))
        try:
            if quick:
                rows.append(measure(workdir, commits=30, log_mb=1, experiments=3, publish=publishing))
            else:
                rows.append(measure(workdir, commits=1000, log_mb=100, experiments=30, publish=publishing))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (smoke test)")
    parser.add_argument("--publish", action="store_true", help="also measure with publishing on, side by side")
    args = parser.parse_args()
    print_table(run(args.quick, args.publish))


if __name__ == "__main__":
    main()
