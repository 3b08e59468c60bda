"""The Ray executor for real: a Ray head on 127.0.0.1 with two logical GPUs (tests/ray_cluster.py), jobs
submitted through Ray Jobs, sessions through it. Skipped only where Ray cannot be imported."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.importorskip("ray.job_submission", reason="Ray is not installed here (pip install 'autoresearch[ray]')")

from autoresearch.core import events as ev
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.ray_executor import SESSION_KEY, RayExecutor, RayOptions, dashboard_address, session_id
from autoresearch.core.results import read_results
from ray.job_submission import JobSubmissionClient

from tests.conftest import FIXTURES, cli, git, make_repo, setup_args
from tests.ray_cluster import RayHead, ray_binary

PY = sys.executable
TAG = "nov26"


@pytest.fixture
def head(ray_cluster: RayHead) -> RayHead:
    return ray_cluster


def _wait_for(condition: Callable[[], Any], what: str, limit_s: float = 120.0) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _session_jobs(head: RayHead, root: Path) -> list[Any]:
    mine = session_id(TAG, root)
    return [
        job for job in JobSubmissionClient(head.address).list_jobs() if (job.metadata or {}).get(SESSION_KEY) == mine
    ]


def _running(jobs: list[Any]) -> list[Any]:
    return [job for job in jobs if str(job.status).rsplit(".", 1)[-1] in ("PENDING", "RUNNING")]


def _project(tmp_path: Path, control: dict[str, Any] | None = None) -> Path:
    root = make_repo(tmp_path / "project", script="train_ray.py")
    if control is not None:
        (root / "ray_control.json").write_text(json.dumps(control))
    return root


def _setup(root: Path, head: RayHead, *extra: str) -> None:
    args = setup_args("--run-command", f"{PY} train.py", "--executor", "ray", "--ray-address", head.address)
    done = cli(root, *args, "--baseline-runs", "1", "--confirm-runs", "0", "--judging", "greedy", *extra)
    assert done.returncode == 0, done.stderr


# The executor on its own.


def test_a_job_streams_its_log_and_returns_its_exit_status(tmp_path: Path, head: RayHead) -> None:
    work = tmp_path / "code"
    work.mkdir()
    (work / "results.tsv").write_text("not to be shipped\n")
    (work / "job.sh").write_text(
        'echo "exp $AUTORESEARCH_EXPERIMENT secret=${RAY_TEST_SECRET:-}"\nls\necho "out=$AUTORESEARCH_OUTPUT_DIR"\n'
        "exit 3\n"
    )
    executor = RayExecutor(RayOptions(head.address, "direct"))
    seen: list[str] = []
    started: list[int] = []
    outcome = executor.run(
        "bash job.sh",
        work,
        work / "run.log",
        timeout_s=60,
        env={"AUTORESEARCH_EXPERIMENT": "7"},
        unset_env=["RAY_TEST_SECRET"],
        cancel=threading.Event(),
        on_start=started.append,
        on_lines=lambda lines, dropped: seen.extend(lines),
    )
    assert outcome.exit_code == 3 and not outcome.timed_out and not outcome.cancelled and outcome.infra_error is None
    assert started == [0]
    assert "exp 7 secret=" in seen, "the run's environment goes with the job; unset_env is unset on the cluster"
    assert "job.sh" in seen and "results.tsv" not in seen, "the session's files are not shipped"
    [out] = [line for line in seen if line.startswith("out=")]
    assert out.endswith("/autoresearch-output") and "autoresearch-output" in seen, "an output folder in the job's copy"
    assert seen == [line for line in (work / "run.log").read_text().splitlines()]


def _watch_children(children: list[int], cancel: threading.Event | None) -> Callable[[list[str], int], None]:
    def on_lines(lines: list[str], dropped: int) -> None:
        for line in lines:
            if found := re.match(r"child pid (\d+)", line):
                children.append(int(found.group(1)))
            if line.startswith("step 5 ") and cancel is not None:
                cancel.set()

    return on_lines


def test_cancel_and_timeout_stop_the_job_and_every_process_it_started(tmp_path: Path, head: RayHead) -> None:
    work = tmp_path / "code"
    work.mkdir()
    shutil.copy(FIXTURES / "train_ray.py", work / "train.py")
    (work / "ray_control.json").write_text(json.dumps({"slow_at": [1, 2]}))
    executor = RayExecutor(RayOptions(head.address, "direct"))
    for number, how in (("1", "cancel"), ("2", "timeout")):
        cancel = threading.Event()
        children: list[int] = []
        on_lines = _watch_children(children, cancel if how == "cancel" else None)
        outcome = executor.run(
            f"{PY} train.py",
            work,
            work / "run.log",
            timeout_s=60 if how == "cancel" else 3,
            env={"AUTORESEARCH_EXPERIMENT": number},
            cancel=cancel,
            on_lines=on_lines,
        )
        assert outcome.exit_code is None
        assert (outcome.cancelled, outcome.timed_out) == (how == "cancel", how == "timeout")
        assert len(children) == 1
        # The child ignores SIGTERM: Ray kills what is left once its grace is over.
        _wait_for(lambda pid=children[0]: _gone(pid), f"the child of the {how} job to end", 60)
    assert (
        _running(
            [
                j
                for j in JobSubmissionClient(head.address).list_jobs()
                if (j.metadata or {}).get(SESSION_KEY) == "direct"
            ]
        )
        == []
    )


def test_on_a_shared_filesystem_nothing_is_shipped_and_the_job_runs_in_place(tmp_path: Path, head: RayHead) -> None:
    # This machine is every node of the test cluster; the nodes "mount" the repository at mnt (a symlink).
    repo = tmp_path / "repo"
    worker = repo / ".autoresearch" / "workers" / "1"
    (worker / "tree").mkdir(parents=True)
    (tmp_path / "mnt").symlink_to(repo)
    executor = RayExecutor(RayOptions(head.address, "direct", shared_dir=str(tmp_path / "mnt"), root=repo))
    seen: list[str] = []
    outcome = executor.run(
        'pwd; echo "out=$AUTORESEARCH_OUTPUT_DIR"; touch written-here',
        worker / "tree",
        tmp_path / "run.log",
        timeout_s=60,
        env={"AUTORESEARCH_OUTPUT_DIR": str(worker / "output")},
        cancel=threading.Event(),
        on_lines=lambda lines, dropped: seen.extend(lines),
    )
    mounted = tmp_path / "mnt" / ".autoresearch" / "workers" / "1"
    assert outcome.exit_code == 0
    assert str(mounted / "tree") in seen and f"out={mounted / 'output'}" in seen
    assert (worker / "tree" / "written-here").exists()


def test_two_runs_at_once_from_two_threads_each_get_a_gpu_and_their_own_log(tmp_path: Path, head: RayHead) -> None:
    work = tmp_path / "code"
    work.mkdir()
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    # Each job waits until the other has started: both must run at the same time, each on its own GPU.
    (work / "job.sh").write_text(
        f"touch {meeting}/$AUTORESEARCH_EXPERIMENT\n"
        f"for i in $(seq 600); do [ $(ls {meeting} | wc -l) -ge 2 ] && break; sleep 0.1; done\n"
        'echo "exp $AUTORESEARCH_EXPERIMENT gpu $CUDA_VISIBLE_DEVICES met $(ls ' + str(meeting) + ' | wc -l)"\n'
    )
    executor = RayExecutor(RayOptions(head.address, "direct"))
    outcomes: dict[str, Any] = {}

    def go(number: str) -> None:
        outcomes[number] = executor.run(
            "bash job.sh",
            work,
            tmp_path / f"run-{number}.log",
            timeout_s=120,
            env={"AUTORESEARCH_EXPERIMENT": number, "CUDA_VISIBLE_DEVICES": "7"},
            cancel=threading.Event(),
            on_lines=lambda lines, dropped: None,
        )

    threads = [threading.Thread(target=go, args=(n,)) for n in ("1", "2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [outcomes[n].exit_code for n in ("1", "2")] == [0, 0]
    lines = {n: (tmp_path / f"run-{n}.log").read_text() for n in ("1", "2")}
    gpus = set()
    for number, text in lines.items():
        [said] = re.findall(r"exp (\d) gpu (\S+) met (\d)", text)
        assert said[0] == number and said[2] == "2"
        gpus.add(said[1])
    assert gpus == {"0", "1"}, "Ray gives each job its own GPU (the local device in env is not passed)"


def test_addresses_as_users_write_them() -> None:
    assert dashboard_address("ray://head.example:10001") == "http://head.example:8265"
    assert dashboard_address("head.example:8265/") == "http://head.example:8265"
    assert dashboard_address("https://ray.example/") == "https://ray.example"


# Sessions through Ray, one worker.


def test_a_session_keeps_and_discards_through_ray(tmp_path: Path, head: RayHead) -> None:
    root = _project(tmp_path)
    _setup(root, head, "--max-experiments", "4")
    shown = cli(root, "config")
    assert re.search(r"executor\s+ray", shown.stdout) and head.address in shown.stdout
    done = cli(root, "run", "--headless", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == "" and " INFO " not in done.stdout, "Ray's own logging stays out of the tool's output"
    rows = read_results(root / "results.tsv").rows
    assert rows[0].status == "baseline" and len(rows) == 4
    assert {"keep", "discard"} <= {r.status for r in rows[1:]}
    assert all(r.metric > 0 for r in rows if r.status != "crash")
    log = (root / ".autoresearch" / "experiments" / "0001" / "run.log").read_text()
    assert "experiment 1 pid" in log and "shipped results.tsv: False" in log
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
    assert _running(_session_jobs(head, root)) == []


def _loop_until(root: Path, act: Callable[[ExperimentLoop, ev.Event], None]) -> tuple[ExperimentLoop, ev.LoopStopped]:
    holder: list[ExperimentLoop] = []

    def sink(event: ev.Event) -> None:
        if holder:
            act(holder[0], event)

    loop = ExperimentLoop(root, sink)
    holder.append(loop)
    return loop, loop.run()


def _during_slow_run(number: int, then: Callable[[ExperimentLoop], None]) -> Callable[[ExperimentLoop, ev.Event], None]:
    done = threading.Event()

    def act(loop: ExperimentLoop, event: ev.Event) -> None:
        seen = isinstance(event, ev.LogAppended) and event.number == number and not done.is_set()
        if seen and any(line.startswith("step 5 ") for line in event.lines):  # type: ignore[union-attr]
            done.set()
            then(loop)

    return act


def test_the_kill_key_skip_records_a_crash_and_stop_now_records_nothing(tmp_path: Path, head: RayHead) -> None:
    root = _project(tmp_path, {"slow_at": [2]})
    _setup(root, head, "--max-experiments", "3")
    _loop, stopped = _loop_until(root, _during_slow_run(2, lambda loop: loop.skip()))
    rows = read_results(root / "results.tsv").rows
    assert len(rows) >= 2 and rows[1].status == "crash" and "killed by the user" in rows[1].description
    assert stopped.experiments == 3 or not stopped.ok
    # stop_now: the run ends, nothing is recorded, the change is off the branch.
    (root / "ray_control.json").write_text(json.dumps({"slow_at": [len(rows) + 1]}))
    done = cli(root, "config", "max_experiments", str(len(rows) + 1))
    assert done.returncode == 0, done.stderr
    head_before = git(root, "rev-parse", "HEAD")
    _loop, stopped = _loop_until(root, _during_slow_run(len(rows) + 1, lambda loop: loop.stop_now()))
    assert stopped.ok and stopped.reason == "stopped by the user"
    assert len(read_results(root / "results.tsv").rows) == len(rows)
    assert git(root, "rev-parse", "HEAD") == head_before
    assert _running(_session_jobs(head, root)) == []


def test_a_job_stopped_from_outside_is_a_crash_not_lost(tmp_path: Path, head: RayHead) -> None:
    root = _project(tmp_path, {"slow_at": [2]})
    _setup(root, head, "--max-experiments", "2")

    def stop_from_outside(loop: ExperimentLoop) -> None:
        job = _running(_session_jobs(head, root))[0]
        subprocess.run(
            [ray_binary(), "job", "stop", "--no-wait", "--address", head.address, job.submission_id],
            check=True,
            capture_output=True,
        )

    _loop, stopped = _loop_until(root, _during_slow_run(2, stop_from_outside))
    rows = read_results(root / "results.tsv").rows
    assert stopped.ok, stopped.reason
    assert len(rows) == 2 and rows[1].status == "crash"
    assert _running(_session_jobs(head, root)) == []


def _kill_9_during_a_job(root: Path) -> re.Match[str]:
    """Start the tool, kill it with SIGKILL while experiment 2 runs as a Ray job; that job's training child."""
    tool = subprocess.Popen(
        [PY, "-m", "autoresearch.core.cli", "run", "--headless"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        log = root / "run.log"
        child = _wait_for(
            lambda: log.exists() and re.search(r"child pid (\d+)", log.read_text()), "experiment 2 to run", 180
        )
        _wait_for(lambda: "step 3 " in log.read_text(), "experiment 2's steps")
    finally:
        tool.send_signal(signal.SIGKILL)
        tool.communicate()
    return child


def test_kill_9_of_the_tool_then_restart_stops_its_job_and_loses_no_row(tmp_path: Path, head: RayHead) -> None:
    root = _project(tmp_path, {"slow_at": [2]})
    _setup(root, head, "--max-experiments", "3")
    child = _kill_9_during_a_job(root)
    assert len(_running(_session_jobs(head, root))) == 1, "the dead tool's job goes on until the next start"
    (root / "ray_control.json").write_text("{}")
    done = cli(root, "run", "--headless", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped 1 cluster job(s) left running by the last run" in done.stdout
    _wait_for(lambda: _gone(int(child.group(1))), "the dead tool's training child to end", 60)
    assert _running(_session_jobs(head, root)) == []
    rows = read_results(root / "results.tsv").rows
    assert len(rows) == 3 and len({r.commit for r in rows[1:]}) == 2
    numbers = sorted(int(p.name) for p in (root / ".autoresearch" / "experiments").iterdir() if p.name.isdigit())
    assert numbers[:3] == [1, 2, 3]


def test_kill_9_on_ray_then_the_local_executor_still_stops_the_job_at_the_next_start(
    tmp_path: Path, head: RayHead
) -> None:
    root = _project(tmp_path, {"slow_at": [2]})
    _setup(root, head, "--max-experiments", "3")
    child = _kill_9_during_a_job(root)
    assert len(_running(_session_jobs(head, root))) == 1
    (root / "ray_control.json").write_text("{}")
    assert cli(root, "config", "executor", "local").returncode == 0
    done = cli(root, "run", "--headless", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped 1 cluster job(s) left running by the last run on Ray" in done.stdout
    _wait_for(lambda: _gone(int(child.group(1))), "the dead tool's training child to end", 60)
    assert _running(_session_jobs(head, root)) == []
    assert len(read_results(root / "results.tsv").rows) == 3


# Jobs Ray loses.


def test_a_job_lost_once_is_run_again_and_recorded_once(tmp_path: Path, head: RayHead) -> None:
    marker = tmp_path / "slow-once"
    root = _project(tmp_path, {"slow_at": [2], "once": str(marker)})
    _setup(root, head, "--max-experiments", "2")

    def kill_supervisor(loop: ExperimentLoop) -> None:
        # The job's supervisor (Ray's actor that owns the entrypoint) dies as it would with its node.
        for proc in psutil.process_iter(["cmdline"]):
            if "JobSupervisor" in " ".join(proc.info.get("cmdline") or []):
                proc.kill()

    _loop, stopped = _loop_until(root, _during_slow_run(2, kill_supervisor))
    assert stopped.ok, stopped.reason
    rows = read_results(root / "results.tsv").rows
    assert len(rows) == 2 and rows[1].status in ("keep", "discard"), rows
    second = [job for job in _session_jobs(head, root) if (job.metadata or {}).get("autoresearch_experiment") == "2"]
    assert sorted(str(job.status).rsplit(".", 1)[-1] for job in second) == ["FAILED", "SUCCEEDED"]
    assert _running(_session_jobs(head, root)) == []


def test_a_job_never_scheduled_is_an_infrastructure_failure_not_a_crash(tmp_path: Path, head: RayHead) -> None:
    root = _project(tmp_path)
    _setup(root, head, "--max-experiments", "1")
    assert cli(root, "run", "--headless", timeout=300).returncode == 0
    # The baseline ran; now each job asks for what the cluster does not have.
    config = json.loads((root / ".autoresearch.json").read_text())
    config.update(
        max_experiments=3, ray_resources={"num_gpus": 1, "no_such_accelerator": 1}, ray_pending_limit_minutes=0.05
    )
    (root / ".autoresearch.json").write_text(json.dumps(config))
    head_before = git(root, "rev-parse", "HEAD")
    events: list[ev.Event] = []

    def pause_then_stop(loop: ExperimentLoop, event: ev.Event) -> None:
        events.append(event)
        if isinstance(event, ev.NeedsUser):
            loop.stop()  # the user, seeing the sentence in the paused app, quits

    loop = ExperimentLoop(root, lambda event: pause_then_stop(loop, event), when_stuck="pause")
    stopped = loop.run()
    assert stopped.ok and stopped.reason == "stopped by the user", stopped.reason
    [asked] = [e.message for e in events if isinstance(e, ev.NeedsUser)]
    assert re.fullmatch(
        r"The Ray job waited 0\.\d min without starting \(it asks for num_gpus 1, no_such_accelerator 1\); free or "
        r"add resources on the cluster \(ray status\), or lower ray_resources \(tried twice\); the experiment was "
        r"not recorded: fix the cluster, then resume \(p\)\.",
        asked,
    ), asked
    assert len(read_results(root / "results.tsv").rows) == 1, "no crash row for the change"
    assert git(root, "rev-parse", "HEAD") == head_before, "the change is off the branch"
    assert git(root, "rev-parse", "refs/autoresearch/nov26/2") != head_before, "and kept under its ref"
    assert not (root / ".autoresearch" / "journal.json").exists()
    # Ray cannot end a job before it is placed: it holds the stop, and the job ends the moment it would start.
    assert [str(job.status).rsplit(".", 1)[-1] for job in _running(_session_jobs(head, root))] == ["PENDING"] * 2


# Two workers (issue 11's workers, each experiment a Ray job).


def test_two_workers_run_their_experiments_as_ray_jobs_at_once(tmp_path: Path, head: RayHead) -> None:
    meet = tmp_path / "meet"
    meet.mkdir()
    root = _project(tmp_path, {"meet": str(meet)})
    _setup(root, head, "--max-experiments", "5", "--workers", "2")
    done = cli(root, "run", "--headless", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = read_results(root / "results.tsv").rows
    assert len(rows) == 5 and rows[0].status == "baseline"
    assert all(r.status in ("keep", "discard") for r in rows[1:]), rows
    jobs = _session_jobs(head, root)
    workers = sorted({str((job.runtime_env or {}).get("env_vars", {}).get("AUTORESEARCH_WORKER", "")) for job in jobs})
    assert workers == ["", "1", "2"], "the baseline in the checkout, the experiments on both workers"
    assert len(list(meet.iterdir())) >= 2, "the two workers' first runs ran at the same time"
    assert _running(jobs) == []


def test_kill_9_with_two_jobs_running_then_restart_stops_both(tmp_path: Path, head: RayHead) -> None:
    root = _project(tmp_path, {"slow_workers": True})
    _setup(root, head, "--max-experiments", "3", "--workers", "2")
    tool = subprocess.Popen(
        [PY, "-m", "autoresearch.core.cli", "run", "--headless"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        _wait_for(
            lambda: len([j for j in _running(_session_jobs(head, root)) if str(j.status).endswith("RUNNING")]) == 2,
            "both workers' jobs to run",
            280,  # each slow run lasts 300 s: a second job starting this late still runs beside the first
        )
    except BaseException:
        tool.send_signal(signal.SIGKILL)
        said = tool.communicate()[0].decode(errors="replace")
        jobs = [(str(j.status), (j.runtime_env or {}).get("env_vars", {})) for j in _session_jobs(head, root)]
        raise AssertionError(f"the tool said:\n{said[-4000:]}\njobs: {jobs}") from None
    tool.send_signal(signal.SIGKILL)
    tool.communicate()
    (root / "ray_control.json").write_text("{}")
    done = cli(root, "run", "--headless", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped 2 cluster job(s) left running by the last run" in done.stdout
    assert _running(_session_jobs(head, root)) == []
    rows = read_results(root / "results.tsv").rows
    assert len(rows) == 3 and len({r.commit for r in rows}) == 3, "no row lost or doubled"
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
