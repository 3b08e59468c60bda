"""Duty cycle: the share of a session's wall time spent training, with 10 s runs and a model that
answers in 2 s.

The model is the real LLM agent (litellm over HTTP) talking to tests/llm_server.py, a scripted
OpenAI-compatible server on 127.0.0.1 that waits 2 s before each reply; each reply is a valid
SEARCH/REPLACE edit of train.py's SEED line. The training sleeps for its time budget (10 s) and
prints val_loss. Wall time runs from loop.run() to its end (start-up, baseline and litellm's first
import included); training time is the sum of the runs' durations as results.tsv records them.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from autoresearch.core import events as ev
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.results import read_results
from autoresearch.core.setup import setup_session

from tests.llm_server import Reply, ScriptedLLMServer

from .common import PY, Row, make_repo, print_table, use_git_identity

TRAIN = """import os
import time

SEED = 0

time.sleep(float(os.environ["AUTORESEARCH_TIME_BUDGET_S"]))
print(f"val_loss: {0.1 + (SEED * 7919 % 1000) / 1000:.6f}")
"""
_SEED = re.compile(r"^SEED = (\d+)$", re.MULTILINE)


def responder(delay_s: float) -> Any:
    numbers = itertools.count(1)

    def answer(body: dict[str, Any]) -> Reply:
        prompt = str(body["messages"][-1].get("content", ""))
        current = _SEED.search(prompt)
        old = current.group(1) if current else "0"
        new = next(numbers)
        text = (
            f"Description: seed {new}\nCategory: other\nRationale: a benchmark edit.\n\n"
            f"train.py\n```python\n<<<<<<< SEARCH\nSEED = {old}\n=======\nSEED = {new}\n>>>>>>> REPLACE\n```\n"
        )
        return Reply(text, delay_s=delay_s)

    return answer


def measure(workdir: Path, run_s: float, model_s: float, experiments: int) -> Row:
    use_git_identity()
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    root = make_repo(workdir / "repo", 10, TRAIN, files=5)
    with ScriptedLLMServer(model="bench") as server:
        server.default = responder(model_s)
        setup_session(
            root,
            "train.py",
            metric_name="val_loss",
            run_command=f"{PY} train.py",
            model="openai/bench",
            api_base=server.url,
            api_key_env="AR_BENCH_KEY",
            time_budget_minutes=run_s / 60,
            timeout_minutes=max(1.0, 3 * run_s / 60),
            max_experiments=experiments + 1,
            tag="bench",
        )
        os.environ["AR_BENCH_KEY"] = "sk-bench"
        skipped: list[str] = []
        recorded: list[float] = []

        def sink(event: ev.Event) -> None:
            if isinstance(event, ev.ProposalSkipped):
                skipped.append(event.reason)
            elif isinstance(event, ev.ResultRecorded):
                recorded.append(time.monotonic())

        began = time.monotonic()
        stopped = ExperimentLoop(root, sink).run()
        wall = time.monotonic() - began
    if not stopped.ok:
        raise RuntimeError(f"the loop stopped: {stopped.reason}")
    rows = read_results(root / "results.tsv").rows
    training = sum(r.duration_s for r in rows)
    duty = training / wall
    per_experiment = (wall - training) / len(rows)
    steady = sum(r.duration_s for r in rows[2:]) / (recorded[-1] - recorded[1])
    ideal = run_s / (run_s + model_s)
    return Row(
        what=f"duty cycle ({run_s:g} s runs, model answers in {model_s:g} s, {len(rows)} runs)",
        measured=f"{duty * 100:.1f}% of wall time training",
        goal="report (baseline for overlapping proposals with runs)",
        met=None,
        ratio=f"{ideal * 100:.1f}% if only the model's {model_s:g} s were added; steady state {steady * 100:.1f}%",
        note=(
            f"session {wall:.1f} s, training {training:.1f} s, so {per_experiment:.2f} s per run outside training "
            f"(the model's {model_s:g} s for each experiment but the baseline, litellm's first import, "
            f"the harness); proposals skipped: {len(skipped)}; the model is tests/llm_server.py with a "
            f"{model_s:g} s delay, reached by the real LLM agent through litellm; steady state: the experiments "
            "after the first (whose model call also imports litellm), from one recorded result to the last"
        ),
        data={"wall_s": wall, "training_s": training, "steady_state": steady, "runs": len(rows), "skipped": skipped},
    )


def run(quick: bool = False) -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="ar-bench-duty-"))
    try:
        if quick:
            return [measure(workdir, run_s=0.5, model_s=0.1, experiments=2)]
        return [measure(workdir, run_s=10, model_s=2, experiments=8)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (smoke test)")
    print_table(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
