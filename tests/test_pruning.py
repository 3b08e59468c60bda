"""Pruning (core/pruning.py): real runs through the loop, one worker and two, and the rule on given curves.

The training prints a loss curve over its time budget; a hopeless change is a whole unit worse from the
first step, far outside any band, so it is stopped whenever the checks come (from a quarter of the budget
on), however loaded the machine is; a change to the schedule (WARMUP) is never stopped.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
from autoresearch.core import pruning
from autoresearch.core.analysis import build_analysis
from autoresearch.core.config import CONFIG_FILE, SessionConfig
from autoresearch.core.history import ExperimentMeta, History
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.results import ResultRow, ResultsTable, read_results
from autoresearch.core.setup import setup_session

from tests.conftest import cli, git, setup_args
from tests.ray_cluster import RayHead
from tests.test_workers import Edits

PY = sys.executable
BUDGET_MIN = 0.05
TRAIN = """import os
import time

BAD = 0

WARMUP = 10

budget = float(os.environ["AUTORESEARCH_TIME_BUDGET_S"])
start = time.monotonic()
for step in range(1, 31):
    time.sleep(max(0.0, start + budget * step / 30 - time.monotonic()))
    print(f"step {step} loss {2.0 + 1.0 / step + BAD + (WARMUP - 10):.4f}", flush=True)
print(f"val_loss: {2.0 + BAD + (WARMUP - 10):.6f}")
"""


def make_session(tmp_path: Path, workers: int, train: str = TRAIN, **options: object) -> Path:
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "train.py").write_text(train)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "initial")
    settings: dict[str, object] = {"time_budget_minutes": BUDGET_MIN, **options}
    setup_session(
        repo,
        "train.py",
        metric_name="val_loss",
        run_command=f"{PY} train.py",
        timeout_minutes=2,
        max_experiments=0,
        tag="p",
        workers=workers,
        prune="on",
        **settings,
    )
    return repo


def run(repo: Path, edits: list[tuple[str, int]]) -> tuple[Edits, list[str]]:
    proposer = Edits(edits)
    said: list[str] = []
    stopped = ExperimentLoop(repo, lambda e: said.append(e.describe() or ""), proposer).run()
    assert stopped.ok, stopped.reason
    return proposer, said


def test_one_worker_stops_a_hopeless_run_and_tells_the_model_where(tmp_path: Path) -> None:
    repo = make_session(tmp_path, 1)
    proposer, _ = run(repo, [("BAD", 1), ("BAD", 2), ("WARMUP", 20), ("BAD", 3)])
    rows = read_results(repo / "results.tsv").rows
    by = {r.description.split(" (")[0]: r for r in rows}
    assert by["BAD to 1"].status == "discard" and "pruned" not in by["BAD to 1"].description  # the first pair
    pruned = by["BAD to 2"]
    assert pruned.status == "discard"
    assert "(pruned at " in pruned.description and "% of the budget: loss " in pruned.description
    assert pruned.duration_s < BUDGET_MIN * 60
    schedule = by["WARMUP to 20"]
    assert schedule.status == "discard" and "pruned" not in schedule.description
    history = History(repo)
    count, saved = pruning.saved_seconds(history, range(1, len(rows) + 1))
    assert count == 2 and saved > 0  # BAD to 2 and BAD to 3
    info = pruning.pruned_info(history, rows.index(pruned) + 1)
    assert info is not None and 0.25 <= float(info["share"]) <= 1.0
    last = proposer.contexts[-1]
    assert any("(pruned at " in r.description for r in last.history)
    assert "Pruning: 2 runs stopped early" in build_analysis(repo)
    chart = pruning.comparison(history, rows.index(pruned) + 1).splitlines()
    assert chart[0].startswith("this run") and chart[1].startswith("best #")


def test_through_ray_a_hopeless_run_is_stopped_and_its_job_ends(tmp_path: Path, ray_cluster: RayHead) -> None:
    from autoresearch.core.ray_executor import SESSION_KEY, session_id
    from ray.job_submission import JobSubmissionClient

    # Ray's log streaming is slower than a local pipe: a longer budget leaves the checks room.
    repo = make_session(tmp_path, 1, executor="ray", ray_address=ray_cluster.address, time_budget_minutes=0.15)
    run(repo, [("BAD", 1), ("BAD", 2), ("WARMUP", 20)])
    rows = read_results(repo / "results.tsv").rows
    by = {r.description.split(" (")[0]: r for r in rows}
    pruned = by["BAD to 2"]
    assert pruned.status == "discard" and "(pruned at " in pruned.description, pruned.description
    assert pruned.duration_s < 0.15 * 60
    assert "pruned" not in by["WARMUP to 20"].description
    mine = session_id("p", repo)
    jobs = [
        j for j in JobSubmissionClient(ray_cluster.address).list_jobs() if (j.metadata or {}).get(SESSION_KEY) == mine
    ]
    assert jobs and all(str(j.status).rsplit(".", 1)[-1] not in ("PENDING", "RUNNING") for j in jobs)


def test_prune_is_set_at_setup_and_by_config_and_a_bad_value_is_one_sentence(repo: Path) -> None:
    assert cli(repo, *setup_args("--prune", "off")).returncode == 0
    assert json.loads((repo / CONFIG_FILE).read_text())["prune"] == "off"
    assert cli(repo, "config", "prune", "on").returncode == 0
    assert json.loads((repo / CONFIG_FILE).read_text())["prune"] == "on"
    bad = cli(repo, "config", "prune", "maybe")
    assert bad.returncode != 0 and "prune must be" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr


def test_two_workers_stop_hopeless_runs_and_never_a_schedule_change(tmp_path: Path) -> None:
    repo = make_session(tmp_path, 2)
    run(repo, [("BAD", 1), ("BAD", 2), ("BAD", 3), ("BAD", 4), ("WARMUP", 20)])
    rows = read_results(repo / "results.tsv").rows
    stopped = [r for r in rows if "(pruned at " in r.description]
    assert stopped and all(r.status == "discard" for r in stopped)
    schedule = next(r for r in rows if r.description.startswith("WARMUP to 20"))
    assert "pruned" not in schedule.description
    history = History(repo)
    numbers = [n for n in range(1, len(rows) + 1) if pruning.pruned_info(history, n) is not None]
    assert len(numbers) == len(stopped)
    assert all((history.experiment_dir(n) / "run.curve.json").is_file() for n in numbers)


def test_a_log_that_prints_its_loss_only_at_the_end_is_said_once_and_nothing_is_pruned(tmp_path: Path) -> None:
    at_end = 'BAD = 0\n\nprint(f"loss {2.0 + BAD}")\nprint(f"val_loss: {2.0 + BAD:.6f}")\n'
    repo = make_session(tmp_path, 1, at_end)
    _, said = run(repo, [("BAD", 1), ("BAD", 2), ("BAD", 3)])
    rows = read_results(repo / "results.tsv").rows
    assert not any("pruned" in r.description for r in rows)
    assert sum("prints its loss only at the end" in s for s in said) == 1


# The rule on given curves (a clock the test moves, no processes).


def curve(offset: float, points: int = 40, drop: float = 0.0) -> tuple[tuple[float, float], ...]:
    """A falling loss curve over the budget, `offset` higher throughout, `drop` lower over its last 30 %."""
    return tuple(
        (k / points, 2.0 + 1.0 / k + offset - drop * max(0.0, (k / points - 0.7) / 0.3)) for k in range(1, points + 1)
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def feed(watch: pruning.Watch, clock: Clock, points: tuple[tuple[float, float], ...]) -> None:
    watch.feed(["starting"])  # the run's clock starts at its first output
    for share, loss in points:
        clock.now = share * watch.budget_s
        watch.feed([f"step {share} loss {loss}"])


def bar(best: tuple[tuple[float, float], ...], spread: float = 0.01) -> pruning.Bar:
    return pruning.Bar(1, (best,), ((best, tuple((s, v + spread) for s, v in best)),), 10.0)


def test_a_run_clearly_behind_is_stopped_after_the_minimum_share_with_the_reason() -> None:
    clock, cancel = Clock(), threading.Event()
    watch = pruning.Watch(10.0, cancel, bar(curve(0.0)), clock)
    feed(watch, clock, curve(1.0))
    assert cancel.is_set() and watch.pruned is not None
    assert pruning.MIN_SHARE <= float(watch.pruned["share"]) < 0.4
    assert str(watch.pruned["note"]).startswith("(pruned at ")


def test_a_run_inside_the_band_or_a_late_bloomer_is_not_stopped() -> None:
    for candidate in (curve(0.005, drop=0.2), curve(0.05, drop=0.3)):  # the second ends 0.05 better
        clock, cancel = Clock(), threading.Event()
        watch = pruning.Watch(10.0, cancel, bar(curve(0.0, drop=0.2)), clock)
        feed(watch, clock, candidate)
        assert not cancel.is_set() and watch.pruned is None


def test_one_spike_and_nan_do_not_stop_a_run() -> None:
    clock, cancel = Clock(), threading.Event()
    watch = pruning.Watch(10.0, cancel, bar(curve(0.0)), clock)
    spiky = [(s, v + (5.0 if k == 15 else 0.0)) for k, (s, v) in enumerate(curve(0.0))]
    feed(watch, clock, tuple(spiky))
    watch.feed(["loss nan"])
    assert not cancel.is_set()


def test_a_schedule_change_is_seen_in_the_diff() -> None:
    diff = "--- a/train.py\n+++ b/train.py\n@@\n-WARMDOWN_ITERS = 1200\n+WARMDOWN_ITERS = 1500\n"
    assert pruning.schedule_change(diff) == "WARMDOWN_ITERS = 1200"
    assert pruning.schedule_change("-LR = 0.1\n+LR = 0.2\n") is None


def test_agreement_counts_only_pairs_clearly_apart_in_the_metric() -> None:
    ends = [(2.0, 1.0), (2.5, 1.5), (2.1, 1.001)]
    assert pruning.curve_agreement(ends, higher_is_better=False, noise=0.01) == (2, 2)
    assert pruning.curve_agreement(ends, higher_is_better=True, noise=0.01) == (2, 0)


@pytest.mark.parametrize("runs", [[1.0, 1.0], [1.0]])
def test_plan_says_why_it_cannot_act(tmp_path: Path, runs: list[float]) -> None:
    history = History(tmp_path)
    config = SessionConfig(tag="t", script_path="train.py", metric_name="val_loss", prune="on")
    assert pruning.plan(config, history, None, "")[1].startswith("pruning waits for a best")
    meta = ExperimentMeta(number=1, commit="c" * 40, parent="c" * 40, kind="baseline", description="baseline")
    meta.status, meta.metric, meta.extra["runs"] = "baseline", 1.0, runs
    history.save_meta(meta)
    assert "printed no training loss" in pruning.plan(config, history, 1, "")[1]
    for k in range(len(runs)):
        name = "run.curve.json" if k == 0 else f"run-{k + 1}.curve.json"
        pruning.StoredCurve(list(curve(0.0)), 10.0).save(history.experiment_dir(1) / name)
    why = pruning.plan(config, history, 1, "")[1]
    assert ("no repeated runs" in why) if len(runs) == 1 else ("pruning waits: 0 of 1 pairs" in why)


def test_a_pruned_row_has_no_metric_for_the_search_the_charts_or_the_prompt() -> None:
    note = "(pruned at 35 % of the budget: loss 2.61 vs best 2.31 ± 0.01 of #4)"
    pruned = ResultRow("abc1234", 0.0, 0.0, 1.2, "discard", f"lr up {note}")
    assert not pruned.has_metric and ResultRow("abc1234", 1.0, 0.0, 3.0, "discard", "lr up").has_metric
    table = ResultsTable("val_loss", (pruned,))
    assert table.measured() == []
