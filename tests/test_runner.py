"""The runner with real subprocesses: exit codes, logs, environment, timeouts, cancel, pid files, output batching."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from autoresearch.core.errors import UserError
from autoresearch.core.gpu import nvml_available
from autoresearch.core.runner import (
    MAX_LINE_CHARS,
    MAX_LINES,
    TOKEN_ENV,
    RunOutcome,
    kill_recorded,
    run_command,
)

SCRIPTS = Path(__file__).parent / "scripts"
PY = shlex.quote(sys.executable)


def script(name: str, *args: object) -> str:
    return " ".join([PY, shlex.quote(str(SCRIPTS / name)), *(shlex.quote(str(a)) for a in args)])


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def read_pids(path: Path, count: int, timeout_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        if path.exists():
            pids = [int(x) for x in path.read_text().split()]
            if len(pids) >= count:
                return pids
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"expected {count} pids in {path}")


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    me = psutil.Process()
    left = []
    for child in me.children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
            else:
                left.append(child)
        except (psutil.Error, ChildProcessError):
            pass
    for child in left:
        child.kill()
    assert not left, f"processes left behind: {left}"


def run(tmp_path: Path, command: str, **kwargs: Any) -> RunOutcome:
    kwargs.setdefault("timeout_s", 10)
    kwargs.setdefault("grace_s", 0.5)
    kwargs.setdefault("poll_s", 0.05)
    return run_command(command, tmp_path, tmp_path / "run.log", **kwargs)


def test_exit_code_and_log(tmp_path: Path) -> None:
    outcome = run(tmp_path, "echo hello; echo oops >&2; exit 3")
    assert outcome.exit_code == 3
    assert not outcome.timed_out and not outcome.cancelled
    assert (tmp_path / "run.log").read_text() == "hello\noops\n"
    assert outcome.duration_s >= 0


def test_missing_command_exits_127_and_says_so(tmp_path: Path) -> None:
    outcome = run(tmp_path, "no-such-command-autoresearch")
    assert outcome.exit_code == 127
    assert "not found" in (tmp_path / "run.log").read_text()


def test_missing_working_directory_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="working directory"):
        run_command("true", tmp_path / "absent", tmp_path / "run.log", timeout_s=5)


def test_log_is_a_fresh_file_each_run(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("old run\n")
    kept = tmp_path / "kept.log"
    os.link(log, kept)
    run(tmp_path, "echo new run")
    assert kept.read_text() == "old run\n"
    assert log.read_text() == "new run\n"
    assert log.stat().st_ino != kept.stat().st_ino


def test_environment_reaches_the_command(tmp_path: Path) -> None:
    env = {"AUTORESEARCH_TIME_BUDGET_S": "300", "AUTORESEARCH_EXPERIMENT": "7"}
    run(tmp_path, 'echo "$AUTORESEARCH_TIME_BUDGET_S $AUTORESEARCH_EXPERIMENT $PYTHONUNBUFFERED $HOME"', env=env)
    assert (tmp_path / "run.log").read_text() == f"300 7 1 {os.environ['HOME']}\n"
    run(tmp_path, 'echo "$PYTHONUNBUFFERED"', env={"PYTHONUNBUFFERED": "0"})
    assert (tmp_path / "run.log").read_text() == "0\n"


def test_timeout_kills_a_tree_that_ignores_sigterm(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    # 3 s: time for all five to start, even on a loaded machine
    outcome = run(tmp_path, script("stubborn_tree.py", pids_file), timeout_s=3, grace_s=0.5)
    assert outcome.timed_out and not outcome.cancelled
    assert outcome.exit_code is None
    assert 3.5 <= outcome.duration_s < 30, "killed after timeout + grace; the tree never exits by itself"
    pids = read_pids(pids_file, 5, timeout_s=0)
    assert len(set(pids)) == 5
    assert [pid for pid in pids if psutil.pid_exists(pid)] == []


def test_normal_exit_ends_what_the_command_left_running(tmp_path: Path) -> None:
    outcome = run(tmp_path, "sleep 30 & echo $!; sleep 0.2")
    assert outcome.exit_code == 0
    leftover = int((tmp_path / "run.log").read_text().split()[0])
    assert not psutil.pid_exists(leftover)
    assert outcome.duration_s < 25, "the run ends with its command, not with the 30 s leftover"


def test_cancel_from_another_thread(tmp_path: Path) -> None:
    cancel = threading.Event()

    def cancel_soon() -> None:
        time.sleep(0.3)
        cancel.set()

    canceller = threading.Thread(target=cancel_soon)
    started: list[int] = []

    def on_start(pid: int) -> None:
        started.append(pid)
        canceller.start()

    outcome = run(tmp_path, "sleep 30", timeout_s=60, cancel=cancel, on_start=on_start)
    canceller.join()
    assert outcome.cancelled and not outcome.timed_out
    assert outcome.exit_code is None
    assert outcome.duration_s < 25, "cancelled, not waited out"
    assert len(started) == 1 and not psutil.pid_exists(started[0])


def test_cancel_already_set_starts_nothing(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    started: list[int] = []
    outcome = run(tmp_path, "echo ran", cancel=cancel, on_start=started.append)
    assert outcome.cancelled and outcome.exit_code is None
    assert started == []
    assert (tmp_path / "run.log").read_text() == ""


def test_pid_file_is_written_during_the_run_and_removed_after(tmp_path: Path) -> None:
    pid_file = tmp_path / ".autoresearch" / "run.pids"
    seen = tmp_path / "seen"
    snapshots: list[dict[str, Any]] = []
    done = threading.Event()

    def watch() -> None:  # until the file lists the command and its child; the command waits for that
        while not done.is_set():
            with contextlib.suppress(OSError, ValueError):
                snapshots.append(json.loads(pid_file.read_text()))
                if len(snapshots[-1]["processes"]) >= 2:
                    seen.touch()
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started: list[int] = []
    command = f"sleep 60 & echo child $!; for i in $(seq 600); do [ -e {seen} ] && break; sleep 0.1; done"
    try:
        outcome = run(tmp_path, command, pid_file=pid_file, on_start=started.append)
    finally:
        done.set()
        watcher.join()
    assert outcome.exit_code == 0
    assert not pid_file.exists()
    child = int((tmp_path / "run.log").read_text().split()[1])
    recorded = {pid for snap in snapshots for pid, _ in snap["processes"]}
    assert {started[0], child} <= recorded
    assert all(isinstance(snap["token"], str) for snap in snapshots)
    assert not psutil.pid_exists(child)


def spawn_detached_tree(tmp_path: Path, token: str) -> tuple[subprocess.Popen[bytes], list[int]]:
    pids_file = tmp_path / "pids"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "stubborn_tree.py"), str(pids_file)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, TOKEN_ENV: token},
    )
    return proc, read_pids(pids_file, 5)


def reap_children(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_kill_recorded_ends_a_detached_tree(tmp_path: Path) -> None:
    proc, pids = spawn_detached_tree(tmp_path, "tok123")
    pid_file = tmp_path / "run.pids"
    created = psutil.Process(proc.pid).create_time()
    pid_file.write_text(json.dumps({"token": "tok123", "processes": [[proc.pid, created]]}))
    killed = kill_recorded(pid_file, grace_s=0.3)
    proc.wait(timeout=5)
    assert proc.pid in killed and len(killed) >= 4
    assert [pid for pid in pids if running(pid)] == []
    assert not pid_file.exists()
    reap_children(pids)


def test_kill_recorded_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        pid_file = tmp_path / "run.pids"
        created = psutil.Process(proc.pid).create_time()
        pid_file.write_text(json.dumps({"token": "other", "processes": [[proc.pid, created - 50]]}))
        assert kill_recorded(pid_file, grace_s=0.1) == []
        assert running(proc.pid)
        assert not pid_file.exists()
    finally:
        proc.kill()
        proc.wait()


def test_kill_recorded_with_missing_or_garbled_file(tmp_path: Path) -> None:
    pid_file = tmp_path / "run.pids"
    assert kill_recorded(pid_file) == []
    pid_file.write_text("{not json")
    assert kill_recorded(pid_file) == []
    assert not pid_file.exists()


def test_on_lines_gets_batches_of_complete_lines(tmp_path: Path) -> None:
    calls: list[tuple[list[str], int]] = []
    command = "for i in $(seq 1 100); do echo a$i; done; sleep 0.3; for i in $(seq 1 100); do echo b$i; done"
    run(tmp_path, command, on_lines=lambda lines, dropped: calls.append((lines, dropped)))
    lines = [line for batch, _ in calls for line in batch]
    assert lines == [f"a{i}" for i in range(1, 101)] + [f"b{i}" for i in range(1, 101)]
    assert all(dropped == 0 for _, dropped in calls)
    assert 2 <= len(calls) <= 20


def test_on_lines_stays_bounded_under_a_flood(tmp_path: Path) -> None:
    count = 200_000
    sizes: list[int] = []
    dropped_total = 0
    last: list[str] = []

    def take(lines: list[str], dropped: int) -> None:
        nonlocal dropped_total
        sizes.append(len(lines))
        dropped_total += dropped
        if lines:
            last[:] = lines[-2:]

    tracemalloc.start()
    cpu = time.process_time()
    outcome = run(tmp_path, script("flood.py", count), on_lines=take, poll_s=0.1)
    cpu = time.process_time() - cpu
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert outcome.exit_code == 0
    assert max(sizes) <= MAX_LINES
    assert last == [f"line {count - 1} {'x' * 20}", "done"]
    assert dropped_total > 0
    assert abs(sum(sizes) + dropped_total - (count + 1)) < count * 0.1
    assert peak < 16 * 1024 * 1024
    assert cpu < 2.0


def python_c(code: str) -> str:
    return f"{PY} -c {shlex.quote(code)}"


def test_long_lines_are_cut_and_carriage_returns_keep_the_last_state(tmp_path: Path) -> None:
    calls: list[tuple[list[str], int]] = []
    code = "import sys, time; print('step 1\\rstep 2\\rstep 3\\r'); time.sleep(0.3); sys.stdout.write('y' * 100000)"
    run(tmp_path, python_c(code), on_lines=lambda lines, dropped: calls.append((lines, dropped)))
    assert [line for batch, _ in calls for line in batch] == ["step 3", "y" * MAX_LINE_CHARS]


def test_a_line_too_long_to_read_in_one_tick_is_dropped_and_counted(tmp_path: Path) -> None:
    calls: list[tuple[list[str], int]] = []
    code = "import sys; print('first'); sys.stdout.write('z' * 1000000 + '\\nlast\\n')"
    run(tmp_path, python_c(code), on_lines=lambda lines, dropped: calls.append((lines, dropped)))
    lines = [line for batch, _ in calls for line in batch]
    assert lines[-1] == "last"
    assert all(len(line) <= MAX_LINE_CHARS for line in lines)
    assert sum(dropped for _, dropped in calls) >= 1


def test_peak_rss_of_a_script_that_allocates(tmp_path: Path) -> None:
    outcome = run(tmp_path, script("alloc.py", 100, 0.6))
    assert outcome.exit_code == 0
    assert outcome.peak_rss_gb > 0.09


def test_gpu_figure_is_none_without_nvml(tmp_path: Path) -> None:
    outcome = run(tmp_path, "true")
    if nvml_available():
        assert outcome.peak_gpu_gb is not None and outcome.peak_gpu_gb >= 0
    else:
        assert outcome.peak_gpu_gb is None


def marked_processes(marker: str) -> list[psutil.Process]:
    """Processes anywhere on the machine whose command line holds `marker`."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if marker in " ".join(proc.info.get("cmdline") or []):
                found.append(proc)
    return found


@contextlib.contextmanager
def killed_afterwards(marker: str) -> Iterator[None]:
    """Whatever the test asserts, a process it let escape is killed by the test itself."""
    try:
        yield
    finally:
        for proc in marked_processes(marker):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def sleep_marker() -> str:
    """A sleep duration no other process on the machine has, to find what a run left behind."""
    return f"{1003 + os.getpid() % 1000}.{time.time_ns() % 10**6:06d}"


def test_a_daemon_without_the_token_is_ended_after_a_normal_exit(tmp_path: Path) -> None:
    marker = sleep_marker()
    with killed_afterwards(marker):
        outcome = run(tmp_path, f"(env -i sleep {marker} >/dev/null 2>&1 &); echo started")
        assert outcome.exit_code == 0
        assert marked_processes(marker) == []


def test_a_double_fork_into_a_new_session_with_an_empty_environment_is_ended(tmp_path: Path) -> None:
    marker = sleep_marker()
    code = (
        "import os, shutil\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execve(shutil.which('sleep'), ['sleep', '{marker}'], {{}})\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print('daemon started', flush=True)\n"
    )
    (tmp_path / "daemon.py").write_text(code)
    with killed_afterwards(marker):
        outcome = run(tmp_path, f"{PY} daemon.py")
        assert outcome.exit_code == 0
        assert "daemon started" in (tmp_path / "run.log").read_text()
        assert marked_processes(marker) == []


def test_orphans_that_exit_by_themselves_are_reaped(tmp_path: Path) -> None:
    outcome = run(tmp_path, "(env -i sleep 0.2 &); (env -i true &); sleep 0.5")
    assert outcome.exit_code == 0
    me = os.getpid()
    zombies = [p for p in psutil.Process(me).children() if p.status() == psutil.STATUS_ZOMBIE]
    assert zombies == []
