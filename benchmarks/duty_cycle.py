"""Duty cycle: the share of a session's wall time spent training, with 10 s runs and a model that
answers in 2 s, drafting the next proposal while a run goes on (draft_ahead, the default) beside the
old way (each proposal asked for after the last result), both measured in the same run; and drafting
again with the five settings on neighbouring lines (the usual shape of a hyperparameter block), where a draft
made before a keep must still be re-applied on it edit by edit (core/edits.py) instead of being asked again.

The model is the real LLM agent (litellm over HTTP) talking to tests/llm_server.py, a scripted
OpenAI-compatible server on 127.0.0.1 that waits 2 s before each reply; each reply is a valid
SEARCH/REPLACE edit of one of train.py's five settings, in turn, so a draft made before the running
experiment was kept still applies on it. The training sleeps for its time budget (10 s) and prints
val_loss. Wall time runs from loop.run() to its end (start-up, baseline and litellm's first import
included); training time is the sum of every run's duration (re-runs of the judging included), as the
loop reports them in RunFinished events.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from autoresearch.core import events as ev
from autoresearch.core.config import CONFIG_FILE
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.setup import setup_session

from tests.llm_server import Reply, ScriptedLLMServer

from .common import PY, Row, make_repo, print_table, use_git_identity

KNOBS = "ABCDE"


def train_script(neighbours: bool) -> str:
    """The settings one blank line apart, or on neighbouring lines."""
    return (
        "import os\nimport time\n\n"
        + ("" if neighbours else "\n").join(f"{k} = 7\n" for k in KNOBS)
        + '\ntime.sleep(float(os.environ["AUTORESEARCH_TIME_BUDGET_S"]))\n'
        + 'print(f"val_loss: {0.1 + ((A * 7919 + B * 104729 + C * 1299709 + D * 15485863 + E * 3) % 1000) '
        + '/ 1000:.6f}")\n'
    )


def responder(delay_s: float) -> Any:
    numbers = itertools.count(1)

    def answer(body: dict[str, Any]) -> Reply:
        prompt = str(body["messages"][-1].get("content", ""))
        new = next(numbers)
        knob = KNOBS[new % len(KNOBS)]
        current = re.search(rf"^{knob} = (\d+)$", prompt, re.MULTILINE)
        old = current.group(1) if current else "7"
        text = (
            f"Description: {knob} {new}\nCategory: other\nRationale: a benchmark edit.\n\n"
            f"train.py\n```python\n<<<<<<< SEARCH\n{knob} = {old}\n=======\n{knob} = {new}\n>>>>>>> REPLACE\n```\n"
        )
        return Reply(text, delay_s=delay_s)

    return answer


def session(
    workdir: Path, run_s: float, model_s: float, experiments: int, draft_ahead: bool, neighbours: bool = False
) -> dict[str, Any]:
    root = make_repo(workdir / "repo", 10, train_script(neighbours), files=5)
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
        config = json.loads((root / CONFIG_FILE).read_text())
        config["draft_ahead"] = draft_ahead
        (root / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        os.environ["AR_BENCH_KEY"] = "sk-bench"
        skipped: list[str] = []
        recorded: list[float] = []
        runs: list[tuple[float, float]] = []
        notes: list[str] = []

        def sink(event: ev.Event) -> None:
            if isinstance(event, ev.ProposalSkipped):
                skipped.append(event.reason)
            elif isinstance(event, ev.ResultRecorded):
                recorded.append(time.monotonic())
            elif isinstance(event, ev.RunFinished):
                runs.append((time.monotonic(), event.duration_s))
            elif isinstance(event, ev.Info) and "drafted" in event.message:
                notes.append(event.message)

        began = time.monotonic()
        stopped = ExperimentLoop(root, sink).run()
        wall = time.monotonic() - began
        requests = len(server.requests)
    if not stopped.ok:
        raise RuntimeError(f"the loop stopped: {stopped.reason}")
    training = sum(d for _, d in runs)
    # From the second experiment on (the first is asked for once the baseline's result is known): from the
    # first experiment's result to the last one.
    steady = sum(d for at, d in runs if at > recorded[1]) / (recorded[-1] - recorded[1])
    return {
        "wall_s": wall,
        "training_s": training,
        "duty": training / wall,
        "steady_state": steady,
        "runs": len(runs),
        "experiments": len(recorded),
        "requests": requests,
        "skipped": skipped,
        "drafts": notes,
    }


def _duty(result: dict[str, Any]) -> str:
    return (
        f"{result['steady_state'] * 100:.1f}% of wall time training from the second experiment on; "
        f"{result['duty'] * 100:.1f}% over the session"
    )


def measure(workdir: Path, run_s: float, model_s: float, experiments: int) -> list[Row]:
    use_git_identity()
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    old = session(workdir / "sequential", run_s, model_s, experiments, draft_ahead=False)
    new = session(workdir / "drafted", run_s, model_s, experiments, draft_ahead=True)
    near = session(workdir / "neighbours", run_s, model_s, experiments, draft_ahead=True, neighbours=True)
    ideal = run_s / (run_s + model_s)
    setting = f"{run_s:g} s runs, model answers in {model_s:g} s, {new['experiments']} experiments"
    return [
        Row(
            what=f"duty cycle ({setting}, next proposal drafted during the run)",
            measured=_duty(new),
            goal=">= 98% from the second experiment on",
            met=new["steady_state"] >= 0.98,
            ratio=(
                f"the old way in the same run: {old['steady_state'] * 100:.1f}% ({old['duty'] * 100:.1f}% over the "
                f"session); {ideal * 100:.1f}% if the model's {model_s:g} s were added to each run"
            ),
            note=(
                f"drafted: session {new['wall_s']:.1f} s, training {new['training_s']:.1f} s in {new['runs']} runs, "
                f"{new['requests']} model requests, {len(new['drafts'])} drafts re-applied or asked again after a "
                f"keep, {len(new['skipped'])} proposals skipped; old way: session {old['wall_s']:.1f} s, training "
                f"{old['training_s']:.1f} s in {old['runs']} runs. Each reply edits one of five settings in turn; "
                "training time is every run's duration (the judging's re-runs included)"
            ),
            data={"drafted": new, "sequential": old, "runs": new["experiments"], "skipped": new["skipped"]},
        ),
        Row(
            what=f"duty cycle ({setting}, drafted, the five settings on neighbouring lines)",
            measured=_duty(near),
            goal=">= 95% from the second experiment on",
            met=near["steady_state"] >= 0.95,
            ratio=f"settings apart, in the same run: {new['steady_state'] * 100:.1f}%",
            note=(
                f"session {near['wall_s']:.1f} s, training {near['training_s']:.1f} s in {near['runs']} runs, "
                f"{near['requests']} model requests for {near['experiments'] - 1} experiments, "
                f"{len(near['skipped'])} proposals skipped; drafts: " + ("; ".join(near["drafts"]) or "none")
            ),
            data={"drafted": near, "runs": near["experiments"], "skipped": near["skipped"]},
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="ar-bench-duty-"))
    try:
        if quick:
            return measure(workdir, run_s=0.5, model_s=0.1, experiments=2)
        return measure(workdir, run_s=10, model_s=2, experiments=8)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (smoke test)")
    print_table(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
