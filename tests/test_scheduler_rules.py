"""The rules every session keeps, with one worker and with three: real git repositories, real worktrees,
real trainings (a script whose behaviour the test steers through files next to the repository)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from autoresearch.core import events as ev
from autoresearch.core.config import CONFIG_FILE
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.proposer import ExperimentRecord, Proposal, ProposalContext
from autoresearch.core.results import read_results
from autoresearch.core.setup import setup_session
from autoresearch.tui.state import RunState

from tests.conftest import cli, git
from tests.test_user_work import _fill
from tests.test_user_work import small_disk as small_disk  # a fixture
from tests.test_workers import Edits, LoopThread, _alive

PY = sys.executable
TRAIN = """import os
import pathlib
import sys
import time

A = 1
B = 1
C = 1
D = 1
E = 0
F = 1
MODE = "train"

state = pathlib.Path({state!r})
number = int(os.environ.get("AUTORESEARCH_EXPERIMENT", "0"))
(state / f"pid-{{os.getpid()}}").write_text(str(number))
while number > 1 and ((state / "hold").exists() or (state / f"hold-{{number}}").exists()):
    time.sleep(0.02)
if number > 1 and (state / "broken").exists():
    print("loading shard: data/shard-0.bin is missing")
    sys.exit(0)
if MODE == "hang":
    time.sleep(600)
if MODE == "boom":
    raise RuntimeError("boom: the change broke the training")
print(f"val_loss: {{10.0 / (A + B + C + D) - E:.6f}}")
"""

WORKERS = pytest.mark.parametrize("workers", [1, 3])


def make_session(tmp_path: Path, workers: int, experiments: int, **options: object) -> tuple[Path, Path]:
    repo, state = tmp_path / "project", tmp_path / "state"
    repo.mkdir()
    state.mkdir()
    (repo / "train.py").write_text(TRAIN.format(state=str(state)))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "initial")
    settings: dict[str, object] = {
        "metric_name": "val_loss",
        "run_command": f"{PY} train.py",
        "time_budget_minutes": 0.05,
        "timeout_minutes": 2,
        "max_experiments": experiments,
        "tag": "r",
        "workers": workers,
        "judging": "greedy",
        **options,
    }
    setup_session(repo, "train.py", **settings)
    return repo, state


def held_run_started(state: Path) -> bool:
    """A training of an experiment after the baseline has started (and waits while `hold` exists)."""
    return any(p.read_text() not in ("", "0", "1") for p in state.glob("pid-*"))


def rows(repo: Path) -> list[tuple[str, str]]:
    return [(r.status, r.description) for r in read_results(repo / "results.tsv").rows]


@WORKERS
def test_config_is_refused_while_a_run_holds_the_session(tmp_path: Path, workers: int) -> None:
    repo, state = make_session(tmp_path, workers, experiments=3)
    (state / "hold").touch()
    live = LoopThread(repo, Edits([("A", 2), ("B", 2)]))
    live.wait_for(lambda _: held_run_started(state), "a run after the baseline never started")
    before = (repo / CONFIG_FILE).read_text()
    refused = cli(repo, "config", "max_experiments", "9")
    (state / "hold").unlink()
    assert refused.returncode == 1
    assert f"A run (pid {os.getpid()}) is using this session; stop it first" in refused.stderr
    assert (repo / CONFIG_FILE).read_text() == before
    assert live.join().ok


@WORKERS
def test_runs_that_all_fail_the_same_way_stop_the_session_and_the_offline_agent_is_asked_no_fix(
    tmp_path: Path, workers: int
) -> None:
    repo, state = make_session(tmp_path, workers, experiments=12)
    (state / "broken").touch()
    seen: list[ev.Event] = []
    stopped = ExperimentLoop(repo, seen.append).run()  # the offline mutate agent, from the config
    assert not stopped.ok
    assert "all failed the same way, each printing: loading shard: data/shard-0.bin is missing" in stopped.reason
    recorded = rows(repo)
    assert [s for s, _ in recorded] == ["baseline", "crash", "crash", "crash"]
    for _, description in recorded[1:]:
        assert description.endswith("(no val_loss printed: no line matches ^val_loss:)")
    assert not [e for e in seen if isinstance(e, ev.ExperimentStarted) and e.kind == "fix"]


@WORKERS
def test_the_guard_command_decides_every_keep(tmp_path: Path, workers: int) -> None:
    repo, _ = make_session(tmp_path, workers, experiments=4, guard_command=f"{PY} -c 'import sys; sys.exit(3)'")
    start = git(repo, "rev-parse", "HEAD")
    stopped = ExperimentLoop(repo, lambda _: None, Edits([("A", 2), ("B", 3), ("C", 4)])).run()
    assert stopped.ok, stopped.reason
    recorded = rows(repo)
    assert len(recorded) == 4
    assert [s for s, _ in recorded[1:]] == ["discard"] * 3
    assert all(d.endswith("(guard failed)") for _, d in recorded[1:])
    assert git(repo, "rev-parse", "HEAD") == start
    assert len(list((repo / ".autoresearch" / "experiments").glob("*/guard.log"))) == 3


@WORKERS
def test_a_users_commit_on_the_branch_during_a_run_stops_the_run_and_is_built_on_next(
    tmp_path: Path, workers: int
) -> None:
    repo, state = make_session(tmp_path, workers, experiments=5)
    (state / "hold").touch()
    live = LoopThread(repo, Edits([("A", 2), ("B", 2), ("C", 2)]))
    live.wait_for(lambda _: held_run_started(state), "a run after the baseline never started")
    (repo / "NOTES.md").write_text("the user's own note\n")
    git(repo, "add", "NOTES.md")
    git(repo, "commit", "-q", "-m", "the user's commit")
    mine = git(repo, "rev-parse", "HEAD")
    (state / "hold").unlink()
    first = live.join()
    assert not first.ok
    assert "moved to" in first.reason and "run again" in first.reason
    assert git(repo, "rev-parse", "HEAD") == mine  # the user's commit stays where it was
    again = ExperimentLoop(repo, lambda _: None, Edits([("B", 3), ("C", 3), ("D", 3), ("A", 3)])).run()
    assert again.ok, again.reason
    assert len(rows(repo)) == 5
    assert not list((repo / ".autoresearch").glob("results.tsv.damaged*"))
    head = git(repo, "rev-parse", "HEAD")
    assert head != mine  # a keep built on the user's commit moved the branch on
    git(repo, "merge-base", "--is-ancestor", mine, head)
    assert (repo / "NOTES.md").read_text() == "the user's own note\n"


def test_after_a_timeout_the_best_code_run_again_is_named_by_its_own_commit(tmp_path: Path) -> None:
    repo, _ = make_session(tmp_path, 1, experiments=2, timeout_minutes=0.1)
    baseline = git(repo, "rev-parse", "HEAD")
    seen: list[ev.Event] = []
    stopped = ExperimentLoop(repo, seen.append, Hang()).run()
    assert stopped.ok, stopped.reason
    starts = [e for e in seen if isinstance(e, ev.RunStarted) and e.number == 2]
    assert len(starts) == 2
    experiment = json.loads((repo / ".autoresearch/experiments/0002/meta.json").read_text())["commit"]
    assert starts[0].commit == experiment[:7]
    assert starts[1].commit == baseline[:7]  # the best's code runs again, and the output says so
    assert f"#2 running {baseline[:7]}" in (starts[1].describe() or "")


@WORKERS
@pytest.mark.parametrize("slower", [False, True], ids=["same-speed", "slower"])
def test_a_timeout_runs_the_best_code_again_to_tell_a_slower_machine_from_a_slow_idea(
    tmp_path: Path, workers: int, slower: bool
) -> None:
    repo, state = make_session(tmp_path, workers, experiments=3, timeout_minutes=0.1)
    if slower:
        (state / "hold").touch()  # every run after the baseline waits: the best's code, run again, times out too
    baseline = git(repo, "rev-parse", "HEAD")
    seen: list[ev.Event] = []
    stopped = ExperimentLoop(repo, seen.append, Hang()).run()
    assert stopped.ok, stopped.reason
    (status, description), *_ = rows(repo)[1:]
    assert status == "crash"
    if slower:
        assert description.startswith("hang (timed out: machine slower than at baseline: #1 took over the timeout now")
    else:
        assert description == "hang (timed out after 0.1 min)"
    folder = repo / ".autoresearch/experiments/0002"
    assert (folder / "remeasure.log").exists()
    best = json.loads((repo / ".autoresearch/experiments/0001/meta.json").read_text())
    assert len(best["extra"].get("remeasured_runs", [])) == (0 if slower else 1)
    if workers > 1:
        again = [e for e in seen if isinstance(e, ev.WorkerChanged) and e.state == "re-measuring"]
        assert [e.description for e in again] == [f"#1 again ({baseline[:7]}), after hang timed out"]


class Breaks:
    """Proposes one change that breaks the training; asked to fix it, puts the training back and keeps the change."""

    name = "breaks"

    def __init__(self) -> None:
        self.proposed = False
        self.crashes: list[object] = []

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        text = ctx.files["train.py"]
        if ctx.crash is not None:
            self.crashes.append(ctx.crash)
            return Proposal("put MODE back", {"train.py": text.replace('MODE = "boom"', 'MODE = "train"')})
        if self.proposed:
            return None
        self.proposed = True
        changed = text.replace("A = 1\n", "A = 3\n").replace('MODE = "train"', 'MODE = "boom"')
        return Proposal("A to 3", {"train.py": changed})

    def observe(self, record: ExperimentRecord) -> None:
        pass


@WORKERS
def test_a_crash_is_given_to_a_proposer_that_makes_fixes_and_its_fix_runs_as_its_own_experiment(
    tmp_path: Path, workers: int
) -> None:
    repo, _ = make_session(tmp_path, workers, experiments=5)
    proposer = Breaks()
    seen: list[ev.Event] = []
    stopped = ExperimentLoop(repo, seen.append, proposer).run()
    assert stopped.ok, stopped.reason
    recorded = rows(repo)
    assert [s for s, _ in recorded] == ["baseline", "crash", "keep"]
    assert recorded[1][1].startswith("A to 3 (")
    assert recorded[2][1].startswith("fix: put MODE back")
    assert len(proposer.crashes) == 1
    crash = proposer.crashes[0]
    assert crash.number == 2 and crash.attempt == 1
    assert "boom: the change broke the training" in crash.log_tail
    assert "A = 3" in crash.diff
    meta = json.loads((repo / ".autoresearch/experiments/0003/meta.json").read_text())
    assert meta["kind"] == "fix"
    assert [e.number for e in seen if isinstance(e, ev.ExperimentStarted) and e.kind == "fix"] == [3]
    head = (repo / "train.py").read_text()
    assert "A = 3\n" in head and 'MODE = "train"' in head


class Hang:
    """Proposes one change, which makes the training hang until the timeout ends it."""

    name = "hang"

    def __init__(self) -> None:
        self.proposed = False

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        if self.proposed or ctx.crash is not None:
            return None
        self.proposed = True
        text = ctx.files["train.py"]
        return Proposal("hang", {"train.py": text.replace('MODE = "train"', 'MODE = "hang"')})

    def observe(self, record: ExperimentRecord) -> None:
        pass


class SlowAfterTheFirst:
    """Answers its first proposal at once; every later one only once the test releases it."""

    name = "slow"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asked = 0

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        self.asked += 1
        if self.asked > 1:
            self.release.wait(300)
        text = ctx.files["train.py"]
        return Proposal(f"A to {self.asked + 3}", {"train.py": text.replace("A = 1\n", f"A = {self.asked + 3}\n")})

    def observe(self, record: ExperimentRecord) -> None:
        pass


@WORKERS
def test_reaching_the_target_ends_the_session_without_waiting_for_a_slow_proposal(tmp_path: Path, workers: int) -> None:
    repo, _ = make_session(tmp_path, workers, experiments=10, target_metric=2.0)
    slow = SlowAfterTheFirst()
    done = threading.Event()
    box: list[ev.LoopStopped] = []
    loop = ExperimentLoop(repo, lambda _: None, slow)
    thread = threading.Thread(target=lambda: (box.append(loop.run()), done.set()))
    thread.start()
    try:
        assert done.wait(120), "the session waited for the slow proposal after reaching the target"
    finally:
        slow.release.set()
        thread.join(60)
    assert box[0].ok and box[0].reason.startswith("reached the target val_loss 2")
    assert [s for s, _ in rows(repo)] == ["baseline", "keep"]
    assert slow.asked == 2  # the next proposal was being asked for when the session ended


def test_the_header_counts_the_rows_recorded_with_workers(tmp_path: Path) -> None:
    repo, _ = make_session(tmp_path, 3, experiments=7)
    state = RunState()
    shown: list[tuple[int, int]] = []  # (rows recorded, the header's number) at each event after the first row

    def sink(event: ev.Event) -> None:
        state.apply(event)
        if state.rows and isinstance(event, ev.PhaseChanged) and event.phase != "stopped":
            shown.append((len(state.rows), state.number))

    edits = [("A", 2), ("B", 3), ("C", 4), ("D", 2), ("A", 3), ("B", 4)]
    stopped = ExperimentLoop(repo, sink, Edits(edits)).run()
    assert stopped.ok, stopped.reason
    assert shown and all(number > recorded for recorded, number in shown)
    assert max(recorded for recorded, _ in shown) >= 4


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_setup_check_ends_the_trial_training(tmp_path: Path, sig: signal.Signals) -> None:
    repo, marker = tmp_path / "project", tmp_path / "trial.pid"
    repo.mkdir()
    (repo / "train.py").write_text(
        f"import os, pathlib, time\npathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
        "while True:\n    time.sleep(0.05)\nprint('val_loss: 1.0')\n"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "initial")
    tool = start_tool(repo, "setup", "train.py", "--yes", "--metric", "val_loss", "--tag", "c", "--check")
    wait_until(lambda: marker.exists() and bool(marker.read_text()), tool, "the trial training never started")
    training = int(marker.read_text())
    tool.send_signal(sig)
    _, err = tool.communicate(timeout=60)
    assert tool.returncode == 128 + sig
    assert "The check run was stopped by a signal" in err and "Traceback" not in err
    wait_until(lambda: not _alive(training), None, "the trial training outlived setup --check")
    assert not (repo / CONFIG_FILE).exists()


def start_tool(repo: Path, *args: str) -> subprocess.Popen[str]:
    """The real `autoresearch` command as a process of its own (so it can be sent signals)."""
    return subprocess.Popen(
        [PY, "-m", "autoresearch.core.cli", *args],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def wait_until(condition: Callable[[], bool], tool: subprocess.Popen[str] | None, why: str) -> None:
    """Until `condition` holds (looking every 50 ms), failing with `why` after 60 s or when `tool` exits first."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline and (tool is None or tool.poll() is None), why
        time.sleep(0.05)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


@WORKERS
def test_a_tool_stopped_with_ctrl_z_during_a_run_leaves_the_pause_out_of_the_runs_duration(
    tmp_path: Path, workers: int
) -> None:
    repo, state = make_session(tmp_path, workers, experiments=2)
    (state / "hold").touch()
    tool = start_tool(repo, "run", "--headless")
    wait_until(lambda: held_run_started(state), tool, "a run after the baseline never started")
    training = next(int(p.name[4:]) for p in state.glob("pid-*") if p.read_text() == "2")
    tool.send_signal(signal.SIGTSTP)
    # Both stopped, as a terminal's Ctrl-Z means.
    wait_until(lambda: _state(tool.pid) == "T" and _state(training) == "T", None, "Ctrl-Z did not stop both")
    (state / "hold").unlink()  # the training goes on only once both are continued
    began = time.monotonic()
    time.sleep(4)  # the pause the duration must not contain
    paused = time.monotonic() - began
    tool.send_signal(signal.SIGCONT)
    _, err = tool.communicate(timeout=120)
    assert tool.returncode == 0, err
    second = read_results(repo / "results.tsv").rows[1]
    assert second.status != "crash"
    assert second.duration_s < paused


@WORKERS
def test_removing_the_state_folder_during_a_run_loses_no_result(tmp_path: Path, workers: int) -> None:
    repo, state = make_session(tmp_path, workers, experiments=2)
    (state / "hold").touch()
    live = LoopThread(repo, Edits([("A", 2)]))
    live.wait_for(lambda _: held_run_started(state), "a run after the baseline never started")
    shutil.rmtree(repo / ".autoresearch")
    (state / "hold").unlink()
    stopped = live.join()
    assert stopped.ok, stopped.reason
    recorded = rows(repo)
    assert recorded == [("baseline", "baseline"), ("keep", "A to 2")]
    assert "val_loss: 2.000000" in (repo / ".autoresearch/experiments/0002/run.log").read_text()


class Unchanged:
    """Every proposal changes nothing, so none can be used."""

    name = "unchanged"

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        return Proposal("nothing", {"train.py": ctx.files["train.py"]})

    def observe(self, record: ExperimentRecord) -> None:
        pass


@WORKERS
def test_unusable_proposals_in_a_row_pause_the_app_and_stop_a_headless_run(tmp_path: Path, workers: int) -> None:
    repo, _ = make_session(tmp_path, workers, experiments=10, max_skips_in_a_row=2)
    headless = ExperimentLoop(repo, lambda _: None, Unchanged()).run()
    assert not headless.ok
    assert headless.reason.startswith("2 proposals in a row could not be used (last: the proposal changes nothing)")
    assert headless.reason.endswith("then run again.")
    seen: list[ev.Event] = []
    done = threading.Event()
    app = ExperimentLoop(
        repo,
        lambda e: (seen.append(e), done.set() if isinstance(e, ev.NeedsUser) else None),
        Unchanged(),
        when_stuck="pause",
    )
    thread = threading.Thread(target=app.run)
    thread.start()
    assert done.wait(120), "the app's loop never asked for the user"
    needs = [e for e in seen if isinstance(e, ev.NeedsUser)]
    assert needs[0].message.endswith("then resume (p).")
    assert app.paused
    app.stop()
    thread.join(60)
    assert not thread.is_alive()
    assert [s for s, _ in rows(repo)] == ["baseline"]


@WORKERS
def test_a_close_miss_against_a_best_that_ran_twice_runs_the_best_again_before_it_is_judged(
    tmp_path: Path, workers: int
) -> None:
    repo, _ = make_session(tmp_path, workers, experiments=2, judging="noise")
    stopped = ExperimentLoop(repo, lambda _: None, Edits([("E", 0.001)])).run()  # type: ignore[list-item]
    assert stopped.ok, stopped.reason
    (status, description), *_ = rows(repo)[1:]
    assert status == "discard" and description.endswith("(#1 re-measured)"), description
    assert (repo / ".autoresearch/experiments/0002/best-1.log").read_text() == "val_loss: 2.500000\n"
    best = json.loads((repo / ".autoresearch/experiments/0001/meta.json").read_text())
    assert best["extra"]["remeasured_runs"] == [2.5]


def test_a_proposal_asked_for_ahead_is_checked_against_the_results_that_came_in_before_it_runs(
    tmp_path: Path,
) -> None:
    repo, state = make_session(tmp_path, 2, experiments=6)
    (state / "hold-2").touch()
    (state / "hold-3").touch()
    proposer = Edits([("F", 2), ("A", 2), ("F", 3)])  # F never reaches the training
    live = LoopThread(repo, proposer)
    live.wait_for(lambda _: len(proposer.contexts) >= 3, "the third proposal was never asked for")
    (state / "hold-2").unlink()  # F to 2 ends first and shows that F has no effect
    live.wait_for(lambda _: len(rows(repo)) >= 2, "F to 2 was never recorded")
    (state / "hold-3").unlink()
    assert live.join().ok
    recorded = rows(repo)
    assert recorded[1] == ("discard", "F to 2 (no effect: same val_loss as #1)")
    assert not any(d.startswith("F to 3") for _, d in recorded)
    skipped = [e for e in live.events if isinstance(e, ev.ProposalSkipped)]
    assert [e.reason for e in skipped] == [
        "the proposal changes f again, which had no effect in #2 (the change does not reach the training) "
        "(known once the results before it came in)"
    ]


@WORKERS
def test_a_disk_that_fills_up_during_a_run_stops_with_the_disk_full_sentence(small_disk: Path, workers: int) -> None:
    repo, state = make_session(small_disk, workers, experiments=4)
    (state / "hold").touch()
    live = LoopThread(repo, Edits([("A", 2), ("B", 2), ("C", 2)]))
    live.wait_for(lambda _: held_run_started(state), "a run after the baseline never started")
    filler = _fill(small_disk)
    (state / "hold").unlink()
    stopped = live.join()
    filler.unlink()
    assert not stopped.ok
    assert stopped.reason.startswith("The disk is full"), stopped.reason
    assert stopped.reason.endswith("; free some space and run again, which finishes what this run left.")
    again = ExperimentLoop(repo, lambda _: None, Edits([("D", 2)])).run()
    assert again.ok, again.reason
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


@WORKERS
def test_the_same_code_proposed_again_while_it_runs_or_after_it_ran_is_never_run_twice(
    tmp_path: Path, workers: int
) -> None:
    repo, _ = make_session(tmp_path, workers, experiments=4)
    stopped = ExperimentLoop(repo, lambda _: None, Edits([("A", 2), ("A", 2), ("A", 2), ("B", 2)])).run()
    assert stopped.ok, stopped.reason
    descriptions = [d for _, d in rows(repo)]
    assert sum(d.startswith("A to 2") for d in descriptions) == 1, descriptions
    assert sum(d.startswith("B to 2") for d in descriptions) == 1, descriptions


@WORKERS
def test_results_deleted_during_a_run_are_written_again_before_the_next_row(tmp_path: Path, workers: int) -> None:
    repo, state = make_session(tmp_path, workers, experiments=3)
    (state / "hold").touch()
    live = LoopThread(repo, Edits([("A", 2), ("B", 2), ("C", 2)]))
    live.wait_for(lambda _: held_run_started(state), "a run after the baseline never started")
    (repo / "results.tsv").unlink()
    (state / "hold").unlink()
    assert live.join().ok
    assert [s for s, _ in rows(repo)][:1] == ["baseline"] and len(rows(repo)) == 3
    said = [e.message for e in live.events if isinstance(e, ev.Info)]
    assert "results.tsv was deleted during the session; wrote its 1 rows again" in said


class Overlaps:
    """Takes its time over each proposal after the first and notes any result it is told while it answers."""

    name = "overlaps"

    def __init__(self) -> None:
        self.answering = False
        self.told_while_answering = 0
        self.told = 0
        self.asked = 0

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        self.asked += 1
        if self.asked > 4:
            return None
        self.answering = True
        try:
            if self.asked > 1:
                time.sleep(0.5)  # results come in meanwhile
            text = ctx.files["train.py"]
            line = next(x for x in text.splitlines() if x.startswith("A = "))
            return Proposal(f"A to {self.asked + 1}", {"train.py": text.replace(line, f"A = {self.asked + 1}", 1)})
        finally:
            self.answering = False

    def observe(self, record: ExperimentRecord) -> None:
        self.told += 1
        self.told_while_answering += self.answering


@WORKERS
def test_the_proposer_is_never_told_a_result_while_it_answers(tmp_path: Path, workers: int) -> None:
    repo, _ = make_session(tmp_path, workers, experiments=5)
    proposer = Overlaps()
    stopped = ExperimentLoop(repo, lambda _: None, proposer).run()
    assert stopped.ok, stopped.reason
    assert proposer.told >= 2
    assert proposer.told_while_answering == 0
