"""Watching a run from another process: the event journal, the control channel and the follower, against real
headless runs in subprocesses (docs/WATCH.md)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from autoresearch.core import events as ev
from autoresearch.core.control import ControlListener, control_dir, send
from autoresearch.core.journal import JournalReader, JournalWriter, journal_path
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.own_run import OwnRun
from autoresearch.core.results import ResultRow
from autoresearch.core.watching import WAITING, SessionFollower

from tests.conftest import cli, make_repo, setup_args

PY = sys.executable


def wait_until(test: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test():
            return
        time.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


def held_session(tmp_path: Path, *extra: str) -> Path:
    root = make_repo(tmp_path / "held", script="train_watch.py")
    done = cli(root, *setup_args("--run-command", f"{PY} train.py", "--timeout", "3", "--baseline-runs", "1", *extra))
    assert done.returncode == 0, done.stderr
    return root


class HeadlessRun:
    """`autoresearch run --headless` in a subprocess; its stdout is collected on a thread."""

    def __init__(self, root: Path, hold_at: str, command: tuple[str, ...] = ("run", "--headless")) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [PY, "-m", "autoresearch.core.cli", *command],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "HOLD_AT": hold_at},
            stdin=subprocess.DEVNULL,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def printed(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code


def running(root: Path, number: int) -> bool:
    log = root / "run.log"
    return log.exists() and f"experiment {number} pid" in log.read_text() and "step 3 " in log.read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def row(n: int) -> ResultRow:
    return ResultRow(f"abc{n:04d}", 1.0 / n, 0.1, 2.5, "keep", f"idea {n}")


# The journal.


def test_journal_round_trip_from_the_start_or_from_now(tmp_path: Path) -> None:
    warnings: list[str] = []
    writer = JournalWriter(tmp_path, warnings.append)
    first = [
        ev.SessionStarted("t", "autoresearch/t", "val_loss", "lower", 0, 5),
        ev.LogAppended(1, ("step 0 loss: 1.0", "step 1 loss: 0.5"), dropped=3),
        ev.ResultRecorded(1, row(1), best=1.0, baseline=1.0),
    ]
    for event in first:
        writer(event)
    from_start = JournalReader(tmp_path, from_start=True)
    from_now = JournalReader(tmp_path, from_start=False)
    assert from_start.read() == first
    assert from_now.read() == []
    later = ev.WorkerChanged(2, "running", "wider", "1", 12.5, 30.0)
    writer(later)
    assert from_start.read() == [later]
    assert from_now.read() == [later]
    assert from_start.writer_pid == os.getpid()
    assert warnings == []
    lines = journal_path(tmp_path).read_text().splitlines()
    assert json.loads(lines[0])["type"] == "Opened"
    assert json.loads(lines[-1]) == {
        "type": "WorkerChanged",
        "t": json.loads(lines[-1])["t"],
        "data": {
            "worker": 2,
            "state": "running",
            "description": "wider",
            "device": "1",
            "started_at": 12.5,
            "budget_s": 30.0,
        },
    }


def test_a_reader_from_now_made_before_the_journal_exists_reads_all_a_run_writes_before_its_first_read(
    tmp_path: Path,
) -> None:
    waiting = JournalReader(tmp_path, from_start=False)  # a watcher started before the session
    writer = JournalWriter(tmp_path, lambda _: None)
    early = [ev.Info("baseline starting"), ev.ResultRecorded(1, row(1), best=1.0, baseline=1.0)]
    for event in early:
        writer(event)  # written before the watcher's first poll finds the file
    assert waiting.read() == early
    assert JournalReader(tmp_path, from_start=False).read() == []  # made now: what is there is history


def test_journal_stays_bounded_and_a_follower_reads_across_the_rotation(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, lambda _m: None, max_bytes=4096)
    reader = JournalReader(tmp_path)
    seen: list[ev.Event] = []
    sent = [ev.LogAppended(1, (f"step {i} loss: {i / 7:.4f}",) * 5) for i in range(400)]
    for i, event in enumerate(sent):
        writer(event)
        if i % 10 == 0:  # a follower reads far more often than the journal fills up
            seen += reader.read()
    seen += reader.read()
    assert seen == sent
    folder = journal_path(tmp_path).parent
    assert {p.name for p in folder.iterdir()} == {"events.jsonl", "events.1.jsonl"}
    assert all(p.stat().st_size <= 4096 for p in folder.iterdir())


def test_a_journal_cut_mid_line_is_skipped_and_the_next_run_goes_on(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, lambda _m: None)
    writer(ev.Info("before the crash"))
    writer.close()
    with journal_path(tmp_path).open("ab") as fh:
        fh.write(b'{"type":"Info","t":1.0,"data":{"mess')  # the crash cut this line
    reader = JournalReader(tmp_path)
    assert reader.read() == [ev.Info("before the crash")]
    assert reader.read() == []  # the torn line waits for an end that never comes
    again = JournalWriter(tmp_path, lambda _m: None)
    again(ev.Info("after the restart"))
    assert reader.read() == [ev.Info("after the restart")]
    assert reader.skipped == 1
    assert JournalReader(tmp_path).read() == [ev.Info("after the restart")]


def test_a_line_after_the_runs_end_is_shown_but_never_reopens_the_journal_as_a_new_run(tmp_path: Path) -> None:
    from autoresearch.core.gitops import Repo
    from autoresearch.core.publishing import Publisher
    from autoresearch.core.session_lock import SessionLock

    root = make_repo(tmp_path / "repo")
    lock = SessionLock(Repo(root))
    lock.acquire("held by {pid}")
    shown: list[ev.Event] = []
    publisher = Publisher(root, shown.append)
    try:
        for event in (ev.Info("first"), ev.LoopStopped("stopped by the user", ok=True), ev.Info("resumed, late")):
            publisher(event)
    finally:
        lock.release()
    assert [e.describe() for e in shown] == ["first", "stopped: stopped by the user", "resumed, late"]
    text = journal_path(root).read_text()
    assert text.count('"type":"Opened"') == 1 and "late" not in text
    assert JournalReader(root).last_opening() == (os.getpid(), True)


def test_a_full_disk_drops_events_says_so_once_and_publishing_resumes(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.symlink_to("/dev/full")  # every write: ENOSPC
    warnings: list[str] = []
    writer = JournalWriter(tmp_path, warnings.append)
    for i in range(5):
        writer(ev.Info(f"lost {i}"))
    assert len(warnings) == 1 and "the disk is full" in warnings[0]
    path.unlink()
    writer(ev.Info("room again"))
    assert len(warnings) == 2 and "written again" in warnings[1]
    assert JournalReader(tmp_path).read() == [ev.Info("room again")]


# The control channel, acting on a real loop object (not started: its controls only set what it will do).


def test_two_watchers_pressing_p_and_s_at_once_both_act_in_order(tmp_path: Path) -> None:
    root = held_session(tmp_path)
    said: list[ev.Event] = []
    loop = ExperimentLoop(root, said.append)
    listener = ControlListener(root, loop, said.append)
    listener.start()
    listener.close()  # poll by hand below: the test decides when
    code = (
        "import sys; from pathlib import Path; from autoresearch.core.control import send; "
        "send(Path(sys.argv[1]), sys.argv[2])"
    )
    watchers = [subprocess.Popen([PY, "-c", code, str(root), key]) for key in ("pause", "stop")]
    assert [w.wait(30) for w in watchers] == [0, 0]
    assert listener.poll() == 2
    assert loop.paused and loop.stop_requested
    lines = sorted(e.describe() or "" for e in said)
    assert lines == ["paused from a watcher", "stop asked from a watcher"]
    assert os.listdir(control_dir(root)) == []
    assert oct(control_dir(root).stat().st_mode & 0o777) == "0o700"


@pytest.mark.skipif(os.getuid() != 0, reason="making a file of another user needs root")
def test_a_control_message_from_another_user_is_refused(tmp_path: Path) -> None:
    root = held_session(tmp_path)
    said: list[ev.Event] = []
    loop = ExperimentLoop(root, said.append)
    listener = ControlListener(root, loop, said.append)
    listener.start()
    listener.close()
    send(root, "pause", by="an intruder")
    (message,) = control_dir(root).iterdir()
    os.chown(message, 65534, 65534)
    assert listener.poll() == 0
    assert not loop.paused
    assert [e.describe() for e in said] == [
        "refused a control message from uid 65534: only the repository's owner (the user running this loop) "
        "can steer it"
    ]
    assert list(control_dir(root).iterdir()) == []


# A real headless run and a follower in this process.


def test_a_watcher_started_before_the_session_follows_it_and_steers_it(tmp_path: Path) -> None:
    root = held_session(tmp_path, "--max-experiments", "3")
    seen: list[ev.Event] = []
    follower = SessionFollower(root, seen.append)
    result: list[ev.LoopStopped] = []
    thread = threading.Thread(target=lambda: result.append(follower.run()), daemon=True)
    thread.start()
    wait_until(lambda: seen, "the watcher says it waits")
    assert seen[0] == ev.Info("no run is using this session yet; waiting for one to start (autoresearch run)")
    run = HeadlessRun(root, hold_at="2")
    try:
        wait_until(lambda: running(root, 2), "experiment 2 runs")
        wait_until(lambda: any(isinstance(e, ev.RunStarted) and e.number == 2 for e in seen), "the watcher sees #2")
        second = cli(root, "run", "--headless")  # refused, and it writes nothing the watcher would take for the run's
        assert second.returncode == 1
        assert "is using this session; watch it with `autoresearch watch`" in second.stderr
        follower.pause()
        wait_until(lambda: run.printed("paused from a watcher"), "the run says who paused it")
        follower.skip()
        wait_until(lambda: run.printed("run killed from a watcher"), "the run says who killed the run")
        wait_until(lambda: any(isinstance(e, ev.Paused) for e in seen), "the loop pauses after the killed run")
        assert follower.paused
        follower.stop()
        wait_until(lambda: run.printed("stop asked from a watcher"), "the stop arrives")
        follower.resume()
        assert run.finish() == 0
    finally:
        run.proc.kill()
    thread.join(30)
    assert result and result[0].ok and result[0].reason == "stopped by the user"
    numbers = [e.number for e in seen if isinstance(e, ev.ResultRecorded)]
    assert numbers == [1, 2]
    assert any(isinstance(e, ev.LogAppended) and any("step 3 " in line for line in e.lines) for e in seen)


def test_a_headless_watcher_follows_one_run_to_its_end_then_the_next_run_of_the_session(tmp_path: Path) -> None:
    root = held_session(tmp_path, "--max-experiments", "2")
    watcher = HeadlessRun(root, hold_at="", command=("watch", "--headless"))
    try:
        wait_until(lambda: watcher.printed("waiting for one to start"), "the watcher waits for a run")
        first = cli(root, "run", "--headless", env={"HOLD_AT": ""})
        assert first.returncode == 0, first.stderr
        wait_until(lambda: watcher.printed(WAITING), "the watcher says it waits for the next run")
        assert watcher.proc.poll() is None
        assert cli(root, "config", "max_experiments", "3").returncode == 0
        script = HeadlessRun(root, hold_at="", command=("watch", "--headless", "--exit-on-stop"))
        wait_until(lambda: script.printed("waiting for one to start"), "the script's watcher waits")
        second = HeadlessRun(root, hold_at="3")
        wait_until(lambda: running(root, 3), "experiment 3 runs")
        wait_until(lambda: watcher.printed("#3 running"), "the same watcher follows the second run")
        send(root, "stop", by="a test")
        send(root, "skip", by="a test")
        assert second.finish() == 0
        assert script.finish() == 0  # --exit-on-stop: the old behaviour, for scripts
        assert script.lines[-1] == "stopped: stopped by the user"
        wait_until(lambda: watcher.lines.count(WAITING) == 2, "the watcher waits again after the second run")
        assert watcher.proc.poll() is None
    finally:
        watcher.proc.send_signal(signal.SIGINT)
    assert watcher.finish() == 0
    lines = watcher.lines
    firsts = [i for i, line in enumerate(lines) if line.startswith("session ")]
    assert len(firsts) == 2
    assert "0 experiments so far" in lines[firsts[0]] and "2 experiments so far" in lines[firsts[1]]
    between = lines[firsts[0] : firsts[1]]
    assert any(line.startswith("#2 ") for line in between)
    assert between[-2:][1] == WAITING and between[-2].startswith("stopped: ")
    after = lines[firsts[1] :]
    assert any("stop asked from a test" in line for line in after)
    assert any(line.startswith("#3 ") for line in after)
    assert after[-2:] == ["stopped: stopped by the user", WAITING]


def test_the_run_apps_loop_shows_its_viewer_what_a_watcher_sees_and_takes_its_keys_as_control_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = held_session(tmp_path, "--max-experiments", "3")
    monkeypatch.setenv("HOLD_AT", "2")
    watched: list[ev.Event] = []
    watcher = SessionFollower(root, watched.append)
    shown: list[ev.Event] = []
    own = OwnRun(root, shown.append)  # what `autoresearch run` hands its app
    results: list[ev.LoopStopped] = []
    threads = [threading.Thread(target=lambda f=f: results.append(f.run()), daemon=True) for f in (watcher, own)]
    for thread in threads:
        thread.start()
    wait_until(lambda: running(root, 2), "experiment 2 runs")
    wait_until(lambda: any(isinstance(e, ev.RunStarted) and e.number == 2 for e in shown), "the app sees #2")
    own.pause()
    own.skip()
    wait_until(lambda: any(isinstance(e, ev.Paused) for e in shown), "the loop pauses after the killed run")
    own.stop()
    own.resume()
    for thread in threads:
        thread.join(60)
    assert [r.reason for r in results] == ["stopped by the user"] * 2
    assert not control_dir(root).exists() or list(control_dir(root).iterdir()) == []

    def from_the_run(seen: list[ev.Event]) -> list[ev.Event]:
        start = next(i for i, e in enumerate(seen) if isinstance(e, ev.SessionStarted))
        return seen[start:]

    # The same events, in the same order, with the same fields.
    assert from_the_run(shown) == from_the_run(watched), "\n".join(
        f"{a!r:.100} | {b!r:.100}" for a, b in zip(from_the_run(shown), from_the_run(watched), strict=False) if a != b
    )
    said = [e.describe() for e in from_the_run(shown)]
    for asked in ("paused from the app", "run killed from the app", "stop asked from the app", "resumed from the app"):
        assert asked in said
    assert [e.row.status for e in shown if isinstance(e, ev.ResultRecorded)] == ["baseline", "crash"]
    assert any(isinstance(e, ev.LogAppended) and any("step 3 " in line for line in e.lines) for e in shown)


def test_a_watcher_after_a_kill_9_shows_the_run_stopped_and_what_the_next_start_repairs(tmp_path: Path) -> None:
    root = held_session(tmp_path, "--max-experiments", "3")
    run = HeadlessRun(root, hold_at="2")
    wait_until(lambda: running(root, 2), "experiment 2 runs")
    run.proc.send_signal(signal.SIGKILL)
    run.finish()
    seen: list[ev.Event] = []
    stopped = SessionFollower(root, seen.append).run()
    assert not stopped.ok
    assert stopped.reason.startswith(f"the run (pid {run.proc.pid}) ended without stopping (killed?); ")
    assert "takes experiment #2 off the branch unrecorded" in stopped.reason
    restart = cli(root, "run", "--headless", env={"HOLD_AT": ""})
    assert "repaired:" in restart.stdout, restart.stdout


def test_a_watcher_served_beyond_this_machine_only_views_until_the_token_is_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoresearch.core.serving import loopback
    from autoresearch.core.watching import TOKEN_ENV

    assert loopback("127.0.0.1") and loopback("localhost") and loopback("::1")
    assert not loopback("0.0.0.0") and not loopback("10.1.2.3")
    monkeypatch.setenv(TOKEN_ENV, "s3cret-token")
    said: list[ev.Event] = []
    follower = SessionFollower(tmp_path, said.append, by="the browser")
    follower.pause()
    follower.queue_idea("not the token")
    assert not control_dir(tmp_path).exists()
    assert [e.describe() for e in said] == [
        "this view is read-only: press i and enter the token `autoresearch serve` printed"
    ] * 2
    follower.queue_idea("s3cret-token")
    follower.pause()
    assert said[-1] == ev.Info("token accepted: this view steers the run")
    (message,) = control_dir(tmp_path).iterdir()
    assert json.loads(message.read_text()) == {"action": "pause", "by": "the browser"}


def test_serve_beyond_this_machine_prints_the_tunnel_and_a_token(tmp_path: Path) -> None:
    root = held_session(tmp_path)
    port = free_port()
    server = subprocess.Popen(
        [PY, "-m", "autoresearch.core.cli", "serve", "--host", "0.0.0.0", "--port", str(port)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/"), "the server answers")
    finally:
        server.kill()
        out = server.communicate(timeout=30)[0]
    first, tunnel = out.splitlines()[:2]
    assert first.startswith(f"Serving on 0.0.0.0:{port}, which other machines can reach: pages only view the run")
    assert "press i in the page, then type " in first
    assert tunnel.strip().startswith(f"ssh -N -L {port}:127.0.0.1:{port} ")


def test_a_watcher_whose_starter_is_killed_ends_as_if_its_terminal_hung_up(tmp_path: Path) -> None:
    root = held_session(tmp_path, "--max-experiments", "2")
    starter = subprocess.Popen(  # as textual-serve starts a viewer per page, and may be killed with SIGKILL
        [
            PY,
            "-c",
            "import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-m', 'autoresearch.core.cli', 'watch', '--headless'])\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(600)\n",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert starter.stdout is not None
    watcher = int(starter.stdout.readline())
    try:
        assert starter.stdout.readline().strip()  # the watcher's first line: it follows the session now
        starter.kill()
        starter.wait(30)
        wait_until(lambda: not _alive(watcher), "the orphaned watcher to end")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(watcher, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False
