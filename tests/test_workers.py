"""Parallel workers (core/scheduler.py, core/places.py): real git worktrees, real runs, several at once.

The training waits, in its first parallel run, until another worker's run has started (a marker file each
run leaves), so the tests prove runs overlap without depending on how fast anything is.
"""

from __future__ import annotations

import json
import os
import re
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

from tests.conftest import cli, git, setup_args

PY = sys.executable
TRAIN = """import os
import pathlib
import threading
import time

A = 1

B = 1

C = 1

markers = pathlib.Path({markers!r})
worker = os.environ.get("AUTORESEARCH_WORKER")
if worker:
    me = markers / f"start-{{worker}}-{{os.getpid()}}"
    me.write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "-"))
    if len(list(markers.glob("start-*"))) == 1:
        deadline = time.monotonic() + 60
        while len(list(markers.glob("start-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    hold = markers / "hold"
    while hold.exists() and not os.environ.get("NO_HOLD"):
        time.sleep(0.05)
    out = pathlib.Path("out")
    (out / "ckpt.txt").write_text(worker)
    pathlib.Path(os.environ["AUTORESEARCH_OUTPUT_DIR"], "ckpt.txt").write_text(worker)
print("data:", pathlib.Path("data.txt").read_text().strip())
print("device:", os.environ.get("CUDA_VISIBLE_DEVICES", "-"))
print(f"val_loss: {{10.0 / (A + B + C):.6f}}")
"""


class Edits:
    """Proposes the next (name, value) of a fixed list, on the files it is given (the best at the time)."""

    name = "edits"

    def __init__(self, edits: list[tuple[str, int]]) -> None:
        self.edits = list(edits)
        self.contexts: list[ProposalContext] = []

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        self.contexts.append(ctx)
        if not self.edits:
            return None
        name, value = self.edits.pop(0)
        text = ctx.files["train.py"]
        line = next(x for x in text.splitlines() if x.startswith(f"{name} = "))
        return Proposal(f"{name} to {value}", {"train.py": text.replace(line, f"{name} = {value}", 1)})

    def observe(self, record: ExperimentRecord) -> None:
        pass


# The tool as its own process (so it can be killed with SIGKILL), with the scripted proposer.
LOOP_WITH_EDITS = """
import sys
from pathlib import Path
from autoresearch.core.loop import ExperimentLoop
from tests.test_workers import Edits
stopped = ExperimentLoop(
    Path(sys.argv[1]),
    lambda e: print(e.describe() or "", flush=True),
    Edits([(k, v) for v in (2, 3, 4) for k in "ABC"]),
).run()
print(stopped.describe())
sys.exit(0 if stopped.ok else 1)
"""


def make_session(
    tmp_path: Path,
    workers: int,
    experiments: int,
    devices: list[str] | None = None,
    train: str = TRAIN,
    run_command: str = f"{PY} train.py",
    before_setup: Callable[[Path], None] | None = None,
) -> tuple[Path, Path]:
    repo, markers = tmp_path / "project", tmp_path / "markers"
    repo.mkdir()
    markers.mkdir()
    (repo / "train.py").write_text(train.format(markers=str(markers)))
    (repo / ".gitignore").write_text("out/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "train.py", ".gitignore")
    git(repo, "commit", "-q", "-m", "initial")
    (repo / "data.txt").write_text("untracked input\n")
    os.utime(repo / "data.txt", (time.time() - 60, time.time() - 60))  # prepared before the session, as data is
    (repo / "out").mkdir()
    if before_setup is not None:
        before_setup(repo)
    setup_session(
        repo,
        "train.py",
        metric_name="val_loss",
        run_command=run_command,
        time_budget_minutes=0.05,
        timeout_minutes=2,
        max_experiments=experiments,
        tag="w",
        workers=workers,
        devices=devices or [],
    )
    return repo, markers


def run_loop(repo: Path, proposer: Edits, sink: Callable[[ev.Event], None] | None = None) -> ev.LoopStopped:
    seen: list[ev.Event] = []
    stopped = ExperimentLoop(repo, sink or seen.append, proposer).run()
    assert stopped.ok, stopped.reason
    return stopped


def test_two_workers_run_at_once_and_a_win_on_an_older_best_is_re_applied(tmp_path: Path) -> None:
    repo, markers = make_session(tmp_path, workers=2, experiments=3, devices=["0", "1"])
    proposer = Edits([("A", 3), ("B", 7)])
    run_loop(repo, proposer)
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep", "keep"]
    # The second to finish was built on the baseline, gained there, and was run again on the first's version.
    assert "re-applied on #2" in rows[2].description
    final = git(repo, "show", "autoresearch/w:train.py")
    assert "A = 3" in final and "B = 7" in final
    assert rows[2].metric == pytest.approx(10 / 11)
    assert git(repo, "rev-parse", "HEAD") == git(repo, "rev-parse", "refs/autoresearch/w/3")
    assert git(repo, "rev-parse", "refs/autoresearch/w/3^") == git(repo, "rev-parse", "refs/autoresearch/w/2")
    # Both ran at once, each pinned to its own device, each with its own output folders.
    starts = sorted(p.name.split("-")[1] + ":" + p.read_text() for p in markers.glob("start-*"))
    assert {s.split(":")[0] for s in starts} == {"1", "2"}
    assert all(s in ("1:0", "2:1") for s in starts)
    assert not (repo / "out" / "ckpt.txt").exists()
    metas = [
        json.loads((repo / ".autoresearch" / "experiments" / f"{n:04d}" / "meta.json").read_text()) for n in (2, 3)
    ]
    assert {m["extra"]["worker"] for m in metas} <= {1, 2}
    for n in (2, 3):
        log = (repo / ".autoresearch" / "experiments" / f"{n:04d}" / "run.log").read_text()
        assert "data: untracked input" in log
    status = json.loads(cli(repo, "status", "--json").stdout)["workers"]
    assert status["count"] == 2 and status["devices"] == ["0", "1"] and status["now"] == []
    assert sum(w["experiments"] for w in status["per_worker"].values()) == 2
    assert sum(w["keeps"] for w in status["per_worker"].values()) == 2
    assert "WORKERS" in cli(repo, "status").stdout
    assert cli(repo, "analyze", "--headless", "--no-model").returncode == 0
    analysis = (repo / "autoresearch-w-analysis.md").read_text()
    workers_line = next(line for line in analysis.splitlines() if line.startswith("- Workers:"))
    counts = [tuple(map(int, m)) for m in re.findall(r"worker \d: (\d+) run, (\d+) kept", workers_line)]
    assert sum(c[0] for c in counts) == 2 and sum(c[1] for c in counts) == 2, workers_line
    # The user's checkout is clean and the workers' directories are gone.
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (repo / ".autoresearch" / "workers").exists()
    assert "worktree" not in git(repo, "worktree", "list").split("\n", 1)[-1]


def test_a_win_on_the_same_line_as_the_new_best_replaces_its_value_and_is_judged_there(tmp_path: Path) -> None:
    repo, _ = make_session(tmp_path, workers=2, experiments=3)
    run_loop(repo, Edits([("A", 3), ("A", 5)]))
    rows = read_results(repo / "results.tsv").rows
    # Whichever finishes second is run again with its own value of A in place of the first's.
    assert "its lines replace #2's where both changed them" in rows[2].description
    if "A = 3" in git(repo, "show", f"{rows[1].commit}:train.py"):
        assert [r.status for r in rows] == ["baseline", "keep", "keep"]
        assert rows[2].metric == pytest.approx(10 / 7)
    else:
        assert [r.status for r in rows] == ["baseline", "keep", "discard"]
        assert rows[2].metric == pytest.approx(10 / 5) and "(worse" in rows[2].description
    final = git(repo, "show", "autoresearch/w:train.py")
    assert "A = 5" in final and "A = 3" not in final


def test_three_workers_with_knobs_on_neighbouring_lines_never_undo_a_kept_knob(tmp_path: Path) -> None:
    neighbours = TRAIN.replace("A = 1\n\nB = 1\n\nC = 1\n", "A = 1\nB = 1\nC = 1\n")
    repo, _ = make_session(tmp_path, workers=3, experiments=7, train=neighbours)
    # An idea asked for before a keep that changed its own line is set aside: spare ideas fill the seven rows.
    run_loop(repo, Edits([(k, v) for v in (2, 3, 4, 5) for k in "ABC"]))
    rows = read_results(repo / "results.tsv").rows
    assert len(rows) == 7
    values: dict[str, int] = {"A": 1, "B": 1, "C": 1}
    for row in rows[1:]:
        if row.status != "keep":
            continue
        # A kept commit changes only the knob its description names, and leaves every other kept value as it was.
        name = row.description[0]
        lines = git(repo, "diff", "-U0", f"{row.commit}^", row.commit).splitlines()
        changed = [ln for ln in lines if ln[:1] in "+-" and ln[:3] not in ("---", "+++")]
        assert [ln[1:].split(" = ")[0] for ln in changed] == [name, name], (row.description, changed)
        text = git(repo, "show", f"{row.commit}:train.py")
        now = {k: int(re.search(rf"^{k} = (\d+)$", text, re.M).group(1)) for k in "ABC"}  # type: ignore[union-attr]
        assert all(now[k] == values[k] for k in "ABC" if k != name), (row.description, values, now)
        values = now
    final = git(repo, "show", "autoresearch/w:train.py")
    # The branch holds every kept value, whichever of them the judge kept (that depends on which run finished first).
    assert f"A = {values['A']}\nB = {values['B']}\nC = {values['C']}\n" in final, final
    assert values != {"A": 1, "B": 1, "C": 1}, [r.description for r in rows]
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def test_a_training_that_deletes_its_worktrees_git_file_never_reaches_the_users_checkout(tmp_path: Path) -> None:
    deleting = TRAIN.replace('print("data:"', 'if worker:\n    pathlib.Path(".git").unlink()\nprint("data:"', 1)
    repo, _ = make_session(tmp_path, workers=2, experiments=5, train=deleting)
    (repo / "NOTES.md").write_text("notes\n")
    git(repo, "add", "NOTES.md")
    git(repo, "commit", "-q", "-m", "notes")

    def edit_during_the_run(event: ev.Event) -> None:  # the user edits a file once the workers have started
        if isinstance(event, ev.WorkerChanged) and event.state == "running" and not git(repo, "diff", "--stat"):
            (repo / "NOTES.md").write_text("notes\nthe user's uncommitted line\n")

    # An idea asked for before a keep that changed its line is set aside: spare ideas fill the five rows.
    ideas = [("A", 2), ("B", 2), ("C", 2), ("A", 3), ("B", 7), ("C", 7), ("A", 9), ("B", 9)]
    run_loop(repo, Edits(ideas), edit_during_the_run)
    rows = read_results(repo / "results.tsv").rows
    assert len(rows) == 5 and all(r.status != "crash" for r in rows), [r.description for r in rows]
    # Each worker's tree was written again before its next use; the user's checkout was never touched.
    assert (repo / "NOTES.md").read_text() == "notes\nthe user's uncommitted line\n"
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "autoresearch/w"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == "M NOTES.md"


OWN_LOG = """import pathlib

A = 1

B = 1

C = 1

pathlib.Path("run.log").write_text(f"val_loss: {{10.0 / (A + B + C):.6f}}\\n")
"""


def test_a_script_that_writes_its_own_run_log_has_its_metric_read_in_every_worker(tmp_path: Path) -> None:
    repo, _ = make_session(tmp_path, workers=2, experiments=3, train=OWN_LOG)
    run_loop(repo, Edits([("A", 3), ("B", 7)]))
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep", "keep"], [r.description for r in rows]
    assert rows[2].metric == pytest.approx(10 / 11)


def test_a_run_command_with_a_relative_interpreter_works_in_every_worker_as_in_the_checkout(tmp_path: Path) -> None:
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    interpreter = tmp_path / "venv" / "bin" / "python"
    interpreter.write_text(f'#!/bin/sh\nexec {PY} "$@"\n')
    interpreter.chmod(0o755)
    repo, markers = make_session(tmp_path, workers=2, experiments=3, run_command="../venv/bin/python train.py")
    run_loop(repo, Edits([("A", 3), ("B", 7)]))
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep", "keep"], [r.description for r in rows]
    assert len(list(markers.glob("start-*"))) >= 2  # they ran in the workers' trees


def test_a_repository_with_a_submodule_gets_it_in_every_worker(tmp_path: Path) -> None:
    uses_lib = TRAIN.replace("import time\n", "import time\n\nfrom lib.values import D\n", 1)

    def add_submodule(repo: Path) -> None:
        lib = tmp_path / "lib"
        lib.mkdir()
        (lib / "values.py").write_text("D = 1\n")
        git(lib, "init", "-q", "-b", "main")
        git(lib, "add", "values.py")
        git(lib, "commit", "-q", "-m", "values")
        git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
        git(repo, "commit", "-q", "-m", "the lib submodule")

    train = uses_lib.replace("(A + B + C)", "(A + B + C + D)")
    repo, markers = make_session(tmp_path, workers=2, experiments=3, train=train, before_setup=add_submodule)
    run_loop(repo, Edits([("A", 3), ("B", 7)]))
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep", "keep"], [r.description for r in rows]
    assert rows[2].metric == pytest.approx(10 / 12)
    assert len(list(markers.glob("start-*"))) >= 2  # they ran in the workers' trees


def test_a_folder_the_runs_write_into_is_each_workers_own_though_not_in_worker_outputs(tmp_path: Path) -> None:
    checkpoint = (
        'ckpt = pathlib.Path("out-shakespeare-char")\n'
        "ckpt.mkdir(exist_ok=True)\n"
        '(ckpt / "ckpt.pt").write_text(worker or "checkout")\n'
        'print("data:"'
    )
    repo, markers = make_session(
        tmp_path, workers=2, experiments=3, train=TRAIN.replace('print("data:"', checkpoint, 1)
    )
    run_loop(repo, Edits([("A", 3), ("B", 7)]))
    assert [r.status for r in read_results(repo / "results.tsv").rows] == ["baseline", "keep", "keep"]
    assert len(list(markers.glob("start-*"))) >= 2  # the workers' runs wrote their checkpoints...
    assert (repo / "out-shakespeare-char" / "ckpt.pt").read_text() == "checkout"  # ...none into the checkout's
    assert not (repo / "out-shakespeare-char").is_symlink()


def test_with_one_worker_the_session_is_as_before(tmp_path: Path) -> None:
    repo, markers = make_session(tmp_path, workers=1, experiments=2)
    run_loop(repo, Edits([("A", 3)]))
    assert [r.status for r in read_results(repo / "results.tsv").rows] == ["baseline", "keep"]
    assert not list(markers.glob("start-*"))  # no worker: the run was the user's checkout, as before
    assert not (repo / ".autoresearch" / "workers").exists()


def test_a_devices_list_shorter_than_the_workers_is_one_sentence(repo: Path) -> None:
    done = cli(repo, *setup_args("--workers", "3", "--devices", "0,1"))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "autoresearch: devices lists 2 device(s) for 3 workers; give one device per worker (e.g. --devices 0,1,2,3) "
        "or leave devices empty."
    )
    assert cli(repo, *setup_args("--workers", "2", "--devices", "0,1")).returncode == 0
    config = json.loads((repo / CONFIG_FILE).read_text())
    assert config["workers"] == 2 and config["devices"] == ["0", "1"]


def kill_9_with_three_runs_in_flight(tmp_path: Path, train: str = TRAIN) -> tuple[Path, Path, dict[str, str]]:
    """A session with 3 workers whose tool is killed with SIGKILL while its three trainings hold."""
    repo, markers = make_session(tmp_path, workers=3, experiments=6, train=train)
    (markers / "hold").touch()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen(
        [PY, "-c", LOOP_WITH_EDITS, str(repo)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = 120.0
        began = time.monotonic()
        while len(list(markers.glob("start-*"))) < 3:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() - began < deadline, "three runs never started"
            time.sleep(0.05)
        now = json.loads(cli(repo, "status", "--json").stdout)["workers"]["now"]
        assert sorted(w["state"] for w in now) == ["running"] * 3
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert json.loads(cli(repo, "status", "--json").stdout)["workers"]["now"] == []  # nothing runs now
    trainings = [int(p.name.split("-")[2]) for p in markers.glob("start-*")]
    assert len(trainings) == 3
    return repo, markers, env


def restart_ending_three_workers_runs(repo: Path, env: dict[str, str]) -> None:
    """Start the tool again, runs no longer holding; its start says it ended the three runs left running."""
    done = subprocess.run(
        [PY, "-c", LOOP_WITH_EDITS, str(repo)],
        env={**env, "NO_HOLD": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("process(es) left by worker") == 3, done.stdout


def test_kill_9_with_three_runs_in_flight_then_a_restart_leaves_nothing_behind(tmp_path: Path) -> None:
    repo, markers, env = kill_9_with_three_runs_in_flight(tmp_path)
    trainings = [int(p.name.split("-")[2]) for p in markers.glob("start-*")]
    rows_before = len(read_results(repo / "results.tsv").rows)
    assert all(_alive(pid) for pid in trainings)  # left running by the tool's death, holding
    restart_ending_three_workers_runs(repo, env)
    for pid in trainings:
        assert not _alive(pid), f"training {pid} outlived the tool"
    rows = read_results(repo / "results.tsv").rows
    assert rows_before == 1 and len(rows) == 6
    numbers = git(repo, "for-each-ref", "--format=%(refname)", "refs/autoresearch/w").split()
    assert sorted(int(n.rsplit("/", 1)[1]) for n in numbers) == list(range(2, 7))
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (repo / ".autoresearch" / "workers").exists()
    assert git(repo, "log", "--format=%s", "main") == "initial"


def test_kill_9_with_three_workers_then_workers_1_ends_their_trainings_and_unregisters_their_worktrees(
    tmp_path: Path,
) -> None:
    with_child = TRAIN.replace(
        "    me = markers",
        "    import subprocess, sys\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "    (markers / f'child-{{child.pid}}').touch()\n"
        "    me = markers",
        1,
    )
    repo, markers, env = kill_9_with_three_runs_in_flight(tmp_path, with_child)
    trainings = [int(p.name.split("-")[2]) for p in markers.glob("start-*")]
    children = [int(p.name.split("-")[1]) for p in markers.glob("child-*")]
    assert len(children) == 3 and all(_alive(pid) for pid in trainings + children)
    assert len(git(repo, "worktree", "list").splitlines()) == 4
    assert cli(repo, "config", "workers", "1").returncode == 0
    restart_ending_three_workers_runs(repo, env)
    for pid in trainings + children:
        assert not _alive(pid), f"process {pid} outlived the tool"
    assert git(repo, "worktree", "list").count("\n") == 0, git(repo, "worktree", "list")
    assert not (repo / ".autoresearch" / "workers").exists()
    assert len(read_results(repo / "results.tsv").rows) == 6
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"


def test_two_runs_at_once_in_one_process_never_end_each_other(tmp_path: Path) -> None:
    from autoresearch.core.runner import run_command

    release = tmp_path / "release"
    wait = (
        f"import pathlib, time\nwhile not pathlib.Path({str(release)!r}).exists(): time.sleep(0.02)\nprint('slow done')"
    )
    slow = f'{PY} -c "{wait}"'
    outcomes: dict[str, object] = {}

    def long_run() -> None:
        outcomes["slow"] = run_command(slow, tmp_path, tmp_path / "slow.log", timeout_s=120)

    thread = threading.Thread(target=long_run)
    thread.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / "slow.log").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    quick = run_command(f"{PY} -c \"print('quick')\"", tmp_path, tmp_path / "quick.log", timeout_s=60)
    release.touch()
    thread.join(120)
    slow_outcome = outcomes["slow"]
    assert quick.exit_code == 0
    assert getattr(slow_outcome, "exit_code", None) == 0, slow_outcome
    assert "slow done" in (tmp_path / "slow.log").read_text()


class LoopThread:
    """The loop on a thread of its own, with a way to wait for what its events say."""

    def __init__(self, repo: Path, proposer: Edits) -> None:
        self.events: list[ev.Event] = []
        self.cond = threading.Condition()
        self.loop = ExperimentLoop(repo, self._sink, proposer)
        self.stopped: ev.LoopStopped | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _sink(self, event: ev.Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def _run(self) -> None:
        self.stopped = self.loop.run()

    def wait_for(self, what: Callable[[list[ev.Event]], bool], why: str) -> None:
        """Until `what` holds, looking again at each event and every 50 ms (it may look at files too)."""
        deadline = time.monotonic() + 120
        with self.cond:
            while not what(self.events):
                assert time.monotonic() < deadline, why
                self.cond.wait(0.05)

    def join(self) -> ev.LoopStopped:
        self.thread.join(120)
        assert not self.thread.is_alive() and self.stopped is not None
        return self.stopped


def running(n: int) -> Callable[[list[ev.Event]], bool]:
    def check(events: list[ev.Event]) -> bool:
        states: dict[int, str] = {}
        for e in events:
            if isinstance(e, ev.WorkerChanged):
                states[e.worker] = e.state
        return sum(1 for s in states.values() if s == "running") >= n

    return check


def test_stop_now_with_two_runs_in_flight_records_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    repo, markers = make_session(tmp_path, workers=2, experiments=5)
    (markers / "hold").touch()
    live = LoopThread(repo, Edits([("A", 3), ("B", 7), ("C", 2)]))
    live.wait_for(lambda _: len(list(markers.glob("start-*"))) == 2, "two runs never started")
    trainings = [int(p.name.split("-")[2]) for p in markers.glob("start-*")]
    live.loop.stop_now()
    stopped = live.join()
    assert stopped.ok and stopped.reason == "stopped by the user"
    assert [r.status for r in read_results(repo / "results.tsv").rows] == ["baseline"]
    assert git(repo, "for-each-ref", "refs/autoresearch") == ""
    assert not any(_alive(pid) for pid in trainings)
    assert not (repo / ".autoresearch" / "workers").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def test_the_kill_key_ends_one_workers_run_and_the_others_go_on(tmp_path: Path) -> None:
    repo, markers = make_session(tmp_path, workers=2, experiments=3)
    (markers / "hold").touch()
    live = LoopThread(repo, Edits([("A", 3), ("B", 7)]))
    live.wait_for(lambda _: len(list(markers.glob("start-*"))) == 2, "two runs never started")
    live.wait_for(running(2), "the workers never said they run")
    live.loop.skip(1)
    live.wait_for(lambda es: any(isinstance(e, ev.ResultRecorded) and e.number == 2 for e in es), "no record")
    (markers / "hold").unlink()
    assert live.join().ok
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "crash", "keep"]
    assert "killed by the user" in rows[1].description
    metas = [
        json.loads((repo / ".autoresearch" / "experiments" / f"{n:04d}" / "meta.json").read_text()) for n in (2, 3)
    ]
    assert [m["extra"]["worker"] for m in metas] == [1, 2]


def test_pause_lets_the_runs_in_flight_finish_and_starts_nothing_new_until_resumed(tmp_path: Path) -> None:
    repo, markers = make_session(tmp_path, workers=2, experiments=4)
    (markers / "hold").touch()
    live = LoopThread(repo, Edits([("A", 3), ("B", 7), ("C", 2)]))
    live.wait_for(lambda _: len(list(markers.glob("start-*"))) == 2, "two runs never started")
    live.loop.pause()
    (markers / "hold").unlink()
    live.wait_for(lambda es: any(isinstance(e, ev.Paused) for e in es), "never paused")
    # Both ideas in flight were finished (the second one's re-apply run included); the third waits.
    assert [r.status for r in read_results(repo / "results.tsv").rows] == ["baseline", "keep", "keep"]
    assert not any(isinstance(e, ev.WorkerChanged) and e.description == "C to 2" for e in live.events)
    live.loop.resume()
    assert live.join().ok
    rows = read_results(repo / "results.tsv").rows
    assert len(rows) == 4 and "C = 2" in git(repo, "show", f"{rows[3].commit}:train.py")


def test_stop_lets_the_runs_in_flight_finish_and_be_recorded(tmp_path: Path) -> None:
    repo, markers = make_session(tmp_path, workers=2, experiments=6)
    (markers / "hold").touch()
    live = LoopThread(repo, Edits([("A", 3), ("B", 7), ("C", 2)]))
    live.wait_for(lambda _: len(list(markers.glob("start-*"))) == 2, "two runs never started")
    live.loop.stop()
    (markers / "hold").unlink()
    stopped = live.join()
    assert stopped.ok and stopped.reason == "stopped by the user"
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep", "keep"]
    assert not any(isinstance(e, ev.WorkerChanged) and e.description == "C to 2" for e in live.events)
    assert not (repo / ".autoresearch" / "workers").exists()


def test_the_llm_agent_is_told_what_the_other_workers_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.llm_server import ScriptedLLMServer, message_text

    def edit(search: str, replace: str, description: str) -> str:
        return (
            f"Description: {description}\nCategory: hyperparams\nRationale: worth a try.\n\n"
            f"train.py\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"
        )

    repo, _ = make_session(tmp_path, workers=2, experiments=3)
    config = json.loads((repo / CONFIG_FILE).read_text())
    with ScriptedLLMServer(model="test") as server:
        server.script(edit("A = 1", "A = 3", "raise A"), edit("B = 1", "B = 7", "raise B"))
        config.update(agent="llm", model="openai/test", api_base=server.url, api_key_env="AR_TEST_KEY")
        (repo / CONFIG_FILE).write_text(json.dumps(config))
        monkeypatch.setenv("AR_TEST_KEY", "sk-test")
        monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        stopped = ExperimentLoop(repo, lambda e: None).run()
        assert stopped.ok, stopped.reason
        assert len(server.requests) == 2
        second = message_text(server.requests[1])
    assert "Running now" in second and "worker 1: raise A" in second
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep", "keep"]
    assert all(r.description.startswith(("raise A", "raise B")) for r in rows[1:])


def test_one_worker_paused_on_its_own_takes_no_new_idea_until_resumed(tmp_path: Path) -> None:
    repo, markers = make_session(tmp_path, workers=2, experiments=5)
    (markers / "hold").touch()
    # Spare ideas: one asked for ahead may be set aside when a keep changed its line meanwhile.
    live = LoopThread(repo, Edits([("A", 3), ("B", 7), ("C", 2), ("A", 4), ("B", 9), ("C", 5), ("A", 6)]))
    live.wait_for(lambda _: len(list(markers.glob("start-*"))) == 2, "two runs never started")
    with live.cond:
        live.loop.hold_worker(1, True)
        held_at = len(live.events)  # both workers are running their first idea
    (markers / "hold").unlink()
    live.wait_for(lambda es: any(isinstance(e, ev.WorkerChanged) and e.state == "held" for e in es), "never held")
    live.wait_for(lambda es: sum(isinstance(e, ev.ResultRecorded) for e in es) >= 4, "worker 2 did not go on")
    # Whichever run ends first, worker 1 starts no new idea (it may run its own again) and worker 2 goes on.
    new_ideas = [e for e in live.events[held_at:] if isinstance(e, ev.WorkerChanged) and e.state == "running"]
    assert new_ideas and all(e.worker == 2 for e in new_ideas), new_ideas
    live.loop.hold_worker(1, False)
    assert live.join().ok
    assert len(read_results(repo / "results.tsv").rows) == 5


def test_an_input_written_the_moment_before_the_session_is_linked_into_every_worker(tmp_path: Path) -> None:
    repo, _ = make_session(tmp_path, workers=2, experiments=3)
    (repo / "data.txt").write_text("fresh input\n")  # the user's last input, a moment before the baseline runs
    run_loop(repo, Edits([("A", 3), ("B", 7)]))
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep", "keep"], [r.description for r in rows]
    for number in (2, 3):
        assert "data: fresh input" in (repo / ".autoresearch" / "experiments" / f"{number:04d}" / "run.log").read_text()
