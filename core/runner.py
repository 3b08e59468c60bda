"""Run one shell command (a training, a guard or a verify command) exactly and safely.

The command runs in its own session with its output in a fresh log file. Its whole process tree is
tracked while it runs (descendants by parent id; orphans that reparent to us as child subreaper, by the
run's token in their environment or, for a daemon that cleared its environment, by a session other than
ours; without a subreaper, any process carrying the token), so that on timeout, cancel, or when the
command exits (normally too) and leaves anything behind, nothing it started survives, and orphans that
ended by themselves are reaped. Processes are identified by (pid, create_time), so a reused pid is never
signalled.

The pid file, while a run is on, holds JSON: {"token": str, "processes": [[pid, create_time], ...]}
with the processes of the tree alive at the last scan; `kill_recorded` uses it after the tool died.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .errors import UserError
from .gpu import gpu_memory_bytes
from .history import read_json, write_json_atomic

TOKEN_ENV = "AUTORESEARCH_RUN_TOKEN"
MAX_READ_BYTES = 256 * 1024
MAX_LINES = 500
MAX_LINE_CHARS = 2000

_GIB = 1024**3
_PENDING_CAP = MAX_LINE_CHARS * 4 + 1
_SCAN_CPU_SHARE = 0.05
_DEATH_WAIT_S = 10.0
_SAME_START_S = 0.01
_ADOPT_MARGIN_S = 1.0  # create_time is counted in clock ticks
_PR_SET_CHILD_SUBREAPER = 36

Key = tuple[int, float]


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int | None  # None when we killed it; negative: killed by that signal from elsewhere
    duration_s: float  # wall time until the command exited, or until its tree was dead when killed
    peak_rss_gb: float  # peak summed RSS of the whole process tree (GiB)
    peak_gpu_gb: float | None  # peak NVML memory of the tree's pids (GiB); None when NVML is absent
    timed_out: bool
    cancelled: bool  # killed because `cancel` was set (user skip/stop)
    infra_error: str | None = None  # a cluster lost the run (core/ray_executor.py): one sentence, not a crash


_subreaper_lock = threading.Lock()
_subreaper: bool | None = None


def become_subreaper() -> bool:
    """Make orphans of our runs reparent to this process rather than init (Linux); True when it worked."""
    global _subreaper
    with _subreaper_lock:
        if _subreaper is None:
            _subreaper = False
            if sys.platform.startswith("linux"):
                try:
                    libc = ctypes.CDLL(None, use_errno=True)
                    _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
                except (OSError, AttributeError):
                    pass
        return _subreaper


# The main pid of every run going on in this process (parallel workers run several at once): an orphan in
# another run's session, or carrying another run's token, is that run's, never adopted by this one. A run
# is started and registered under the lock, so no scan sees its process before it is known (Popen returns
# once the command was executed, with its token in its environment).
_active_lock = threading.Lock()
_active_runs: set[int] = set()
_stopped_s = 0.0  # the time this process spent stopped (Ctrl-Z), left out of the runs' durations and timeouts


def _clock() -> float:
    """A monotonic clock that stands still while the tool is stopped with Ctrl-Z."""
    return time.monotonic() - _stopped_s


def suspend_with_runs(_signum: int = signal.SIGTSTP, _frame: object = None) -> None:
    """SIGTSTP's handler: stop the runs' process groups, then this process; on SIGCONT go on with both.

    The trainings run in sessions of their own, so a terminal's Ctrl-Z reaches only the tool; without this
    they would run on unwatched and the pause would count into their duration and towards their timeout.
    """
    global _stopped_s
    groups = list(_active_runs)  # no lock: a signal handler may interrupt its holder
    for pid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGSTOP)
    began = time.monotonic()
    signal.signal(signal.SIGTSTP, signal.SIG_DFL)
    try:
        os.kill(os.getpid(), signal.SIGTSTP)  # stops here until SIGCONT
    finally:
        signal.signal(signal.SIGTSTP, suspend_with_runs)
        _stopped_s += time.monotonic() - began
        for pid in groups:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGCONT)


def _other_run(proc: psutil.Process, main_pid: int | None, token: str | None) -> bool:
    with _active_lock:
        others = _active_runs - {main_pid}
    try:
        if proc.pid in others or os.getsid(proc.pid) in others:
            return True
    except OSError:
        return bool(others)
    try:
        theirs = proc.environ().get(TOKEN_ENV)
    except (psutil.Error, OSError):  # an orphan that ended (a zombie) shows no environment
        return False
    return theirs is not None and theirs != token


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _key(proc: psutil.Process) -> Key | None:
    try:
        return (proc.pid, proc.create_time())
    except psutil.Error:
        return None


def _has_token(proc: psutil.Process, token: str | None) -> bool:
    if token is None:
        return False
    try:
        return proc.environ().get(TOKEN_ENV) == token
    except (psutil.Error, OSError):
        return False


class _Tree:
    """Every process of one run seen so far, by (pid, create_time)."""

    def __init__(
        self, token: str | None, sweeps: bool = True, adopt_since: float | None = None, main_pid: int | None = None
    ) -> None:
        self.token = token
        # As child subreaper we get every orphan of the run back as our child: no machine-wide search needed.
        self.sweeps = sweeps
        # An orphan that dropped the token (`env -i`, execve with an empty environment) is still the run's when
        # it became our child in another session than ours after the run started: only runs get new sessions.
        self.adopt_since = adopt_since
        self.main_pid = main_pid
        self._own_sid = os.getsid(0)
        self.procs: dict[Key, psutil.Process] = {}
        self._foreign: set[Key] = set()

    def add(self, proc: psutil.Process) -> bool:
        key = _key(proc)
        if key is None or key in self.procs or proc.pid == os.getpid():
            return False
        self.procs[key] = proc
        return True

    def alive(self) -> dict[Key, psutil.Process]:
        return {key: proc for key, proc in self.procs.items() if _alive(proc)}

    def scan(self, sweep: bool = False) -> None:
        """Add descendants of known processes, our own orphaned children carrying the token (or adopted), and
        with `sweep` (when not a subreaper) every process on the machine carrying the token."""
        self.procs = {key: proc for key, proc in self.procs.items() if proc.is_running()}
        me = os.getpid()
        children: dict[int, list[psutil.Process]] = {}
        everyone: list[psutil.Process] = []
        if self.sweeps:
            for proc in psutil.process_iter(["ppid"]):
                everyone.append(proc)
                children.setdefault(proc.info.get("ppid") or 0, []).append(proc)
        else:
            # As child subreaper every process a run starts stays our descendant: one cheap walk of the table.
            with contextlib.suppress(psutil.Error):
                for proc in psutil.Process(me).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        children.setdefault(proc.ppid(), []).append(proc)
        frontier = [proc.pid for proc in self.procs.values()]
        candidates = everyone if sweep and self.sweeps else children.get(me, [])
        for proc in candidates:
            key = _key(proc)
            if key is None or key in self.procs or key in self._foreign:
                continue
            if _has_token(proc, self.token) or self._adopted(proc):
                self.add(proc)
                frontier.append(proc.pid)
            else:
                self._foreign.add(key)
        seen = set(frontier)
        while frontier:
            for child in children.get(frontier.pop(), []):
                if child.pid not in seen:
                    seen.add(child.pid)
                    self.add(child)
                    frontier.append(child.pid)

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.procs.values():
            try:
                if proc.is_running():
                    total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _adopted(self, proc: psutil.Process) -> bool:
        if self.adopt_since is None:
            return False
        try:
            return (
                proc.ppid() == os.getpid()
                and os.getsid(proc.pid) != self._own_sid
                and proc.create_time() >= self.adopt_since
                and not _other_run(proc, self.main_pid, self.token)
            )
        except (psutil.Error, OSError):
            return False

    def reap(self, skip_pid: int | None) -> None:
        """Collect the exit status of the run's processes that became our children (we are their subreaper);
        `skip_pid` is reaped by its Popen. An orphan that ended before any scan saw it is the run's when the
        next scan adopts it, so reap after a scan."""
        me = os.getpid()
        for proc in self.procs.values():
            if proc.pid in (skip_pid, self.main_pid):
                continue
            try:
                if proc.is_running() and proc.ppid() == me and proc.status() == psutil.STATUS_ZOMBIE:
                    os.waitpid(proc.pid, os.WNOHANG)
            except (psutil.Error, OSError):
                pass


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> list[int]:
    sent = []
    for proc in procs:
        try:
            proc.send_signal(sig)
            sent.append(proc.pid)
        except psutil.Error:
            pass
    return sent


def _terminate(
    tree: _Tree,
    grace_s: float,
    *,
    group_signal: Callable[[int], None] | None = None,
    reap_skip: int | None = None,
    reap: bool = True,
) -> list[int]:
    """SIGTERM the whole tree, wait up to grace_s for it to exit, SIGKILL what is left; return the pids signalled."""

    def collect() -> dict[Key, psutil.Process]:
        if reap:
            tree.reap(reap_skip)
        return tree.alive()

    signalled: set[int] = set()
    termed: set[Key] = set()
    tree.scan(sweep=True)
    if group_signal is not None:
        group_signal(signal.SIGTERM)
    if not collect():
        # Nothing of the tree is left (a run that exited with all it started): no new process can appear.
        return []
    deadline = time.monotonic() + grace_s
    while True:
        alive = collect()
        fresh = {key: proc for key, proc in alive.items() if key not in termed}
        signalled.update(_signal_all(fresh.values(), signal.SIGTERM))
        termed.update(fresh)
        if not alive:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(0.05, left))
        tree.scan()

    for _ in range(100):
        tree.scan(sweep=True)
        alive = collect()
        if not alive:
            break
        if group_signal is not None:
            group_signal(signal.SIGKILL)
        signalled.update(_signal_all(alive.values(), signal.SIGKILL))
        settle = time.monotonic() + 0.5
        while collect() and time.monotonic() < settle:
            time.sleep(0.01)

    # A SIGKILLed process can stay in uninterruptible sleep a while (a GPU driver releasing memory).
    death_deadline = time.monotonic() + _DEATH_WAIT_S
    while collect() and time.monotonic() < death_deadline:
        time.sleep(0.05)
    return sorted(signalled)


def _decode(raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    cr = raw.rfind(b"\r")
    if cr >= 0:
        raw = raw[cr + 1 :]
    return raw[: MAX_LINE_CHARS * 4].decode("utf-8", errors="replace")[:MAX_LINE_CHARS]


class _LogTail:
    """New complete lines of a growing file, read in bounded chunks; what cannot be read in time is skipped."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._pos = 0
        self._pending = b""
        self._midline = False

    def close(self) -> None:
        self._file.close()

    def read(self, final: bool = False) -> tuple[list[str], int]:
        size = os.fstat(self._file.fileno()).st_size
        if size < self._pos:
            self._pos, self._pending, self._midline = 0, b"", False
        available = size - self._pos
        dropped = 0
        skipped = 0
        if available > MAX_READ_BYTES:
            skipped = available - MAX_READ_BYTES
            self._pos += skipped
            self._pending, self._midline = b"", True
        data = b""
        if self._pos < size:
            self._file.seek(self._pos)
            data = self._file.read(MAX_READ_BYTES)
            self._pos += len(data)
        if skipped and data:
            dropped += round(skipped * data.count(b"\n") / len(data))

        buf = self._pending + data
        if final and buf and not buf.endswith(b"\n"):
            buf += b"\n"
        head, newline, rest = buf.rpartition(b"\n")
        cr = rest.rfind(b"\r")
        if cr > 0:
            rest = rest[cr:]
        self._pending = rest[:_PENDING_CAP]
        if not newline:
            return [], dropped

        count = head.count(b"\n") + 1
        if self._midline:
            self._midline = False
            dropped += 1
            first = head.find(b"\n")
            if first < 0:
                return [], dropped
            head = head[first + 1 :]
            count -= 1
        if count > MAX_LINES:
            parts = head.rsplit(b"\n", MAX_LINES)
            dropped += parts[0].count(b"\n") + 1
            raw_lines = parts[1:]
        else:
            raw_lines = head.split(b"\n")
        return [_decode(raw) for raw in raw_lines], dropped


class _ExitWatch:
    """Sleeps until the process exits or a timeout passes, without polling where the OS allows (pidfd)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._fd: int | None = None
        self._poller: Any = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self._fd = pidfd_open(proc.pid)
                self._poller = select.poll()
                self._poller.register(self._fd, select.POLLIN)
            except OSError:
                self._fd = None

    def wait(self, timeout_s: float) -> bool:
        if self._poller is not None:
            self._poller.poll(max(0, math.ceil(timeout_s * 1000)))
            return self._proc.poll() is not None
        try:
            self._proc.wait(timeout=max(0.0, timeout_s))
            return True
        except subprocess.TimeoutExpired:
            return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_pid_file(pid_file: Path, token: str, keys: Iterable[Key]) -> None:
    # Best effort: a full disk must not abort the training. Not synced to disk: the processes it names do not
    # outlive the machine, only the tool, and the file is read back on the same machine.
    with contextlib.suppress(OSError):
        write_json_atomic(pid_file, {"token": token, "processes": [list(key) for key in sorted(keys)]}, durable=False)


def _fresh_log(log_path: Path) -> int:
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)
        return os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(f"Cannot create the log file {log_path}: {reason}; check its folder is writable.") from None


def run_command(
    command: str,
    cwd: Path,
    log_path: Path,
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    unset_env: Iterable[str] = (),
    grace_s: float = 5.0,
    cancel: threading.Event | None = None,
    pid_file: Path | None = None,
    on_start: Callable[[int], None] | None = None,
    on_lines: Callable[[list[str], int], None] | None = None,
    poll_s: float = 0.25,
    wrap: Callable[[list[str], Path, Mapping[str, str]], list[str]] | None = None,
) -> RunOutcome:
    """Run `command` through bash in `cwd`, output to a fresh `log_path`; kill its whole tree at the end.
    It gets our environment without the variables in `unset_env`, plus `env`. `wrap` turns the command line,
    its directory and environment into the one that runs (a sandbox's, core/sandbox.py).

    A `cancel` already set when called starts nothing and returns a cancelled outcome.
    """
    cwd = Path(cwd)
    log_path = Path(log_path)
    if not cwd.is_dir():
        raise UserError(f"Cannot run {command!r}: the working directory {cwd} does not exist.")
    cancel = cancel if cancel is not None else threading.Event()
    log_fd = _fresh_log(log_path)
    if cancel.is_set():
        os.close(log_fd)
        return RunOutcome(None, 0.0, 0.0, None, timed_out=False, cancelled=True)

    token = uuid.uuid4().hex
    child_env = dict(os.environ)
    for name in unset_env:
        child_env.pop(name, None)
    child_env.update(env or {})
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    child_env[TOKEN_ENV] = token
    shell = shutil.which("bash") or "/bin/sh"
    argv = [shell, "-c", command]
    if wrap is not None:
        argv = wrap(argv, cwd, child_env)
    subreaper = become_subreaper()
    if pid_file is not None:
        _write_pid_file(pid_file, token, [])

    tail = _LogTail(log_path) if on_lines is not None else None
    tree = _Tree(token, sweeps=not subreaper, adopt_since=time.time() - _ADOPT_MARGIN_S if subreaper else None)
    start = _clock()
    try:
        with _active_lock:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            _active_runs.add(proc.pid)
    except OSError as exc:
        if tail is not None:
            tail.close()
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
        raise UserError(f"Cannot start {command!r}: {exc.strerror or exc}.") from None
    finally:
        os.close(log_fd)

    def group_signal(sig: int) -> None:
        if proc.returncode is None:  # not reaped, so its pid (the group id) cannot have been reused
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, sig)

    watch = _ExitWatch(proc)
    tree.main_pid = proc.pid
    with contextlib.suppress(psutil.Error):
        tree.add(psutil.Process(proc.pid))
    recorded: set[Key] = set()
    peak_rss = 0
    peak_gpu: int | None = None
    finished = False

    def emit(final: bool = False) -> None:
        if tail is not None and on_lines is not None:
            lines, dropped = tail.read(final)
            if lines or dropped:
                on_lines(lines, dropped)

    def record(alive: set[Key]) -> None:
        nonlocal recorded
        if pid_file is not None and alive != recorded:
            recorded = alive
            _write_pid_file(pid_file, token, recorded)

    try:
        record(set(tree.procs))
        if on_start is not None:
            on_start(proc.pid)
        deadline = start + timeout_s
        next_scan = start
        timed_out = cancelled = False
        end = start
        while True:
            now = time.monotonic()
            if now >= next_scan:
                began = time.perf_counter()
                tree.scan()
                tree.reap(proc.pid)
                alive = tree.alive()
                gpu = gpu_memory_bytes({pid for pid, _ in alive})
                if gpu is not None:
                    peak_gpu = max(gpu, peak_gpu or 0)
                record(set(alive))
                next_scan = now + max(poll_s, (time.perf_counter() - began) / _SCAN_CPU_SHARE)
            peak_rss = max(peak_rss, tree.rss_bytes())
            emit()
            if cancel.is_set():
                cancelled = True
                break
            left = deadline - _clock()
            if left <= 0:
                timed_out = True
                break
            if watch.wait(min(poll_s, left)):
                end = _clock()
                break

        exit_code = None if timed_out or cancelled else proc.returncode
        _terminate(tree, grace_s, group_signal=group_signal, reap_skip=proc.pid)
        finished = True
        if timed_out or cancelled:
            end = _clock()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_DEATH_WAIT_S)
        emit(final=True)
        return RunOutcome(
            exit_code=exit_code,
            duration_s=end - start,
            peak_rss_gb=peak_rss / _GIB,
            peak_gpu_gb=None if peak_gpu is None else peak_gpu / _GIB,
            timed_out=timed_out,
            cancelled=cancelled,
        )
    finally:
        if not finished:
            _terminate(tree, grace_s, group_signal=group_signal, reap_skip=proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_DEATH_WAIT_S)
        watch.close()
        with _active_lock:
            _active_runs.discard(proc.pid)
        if tail is not None:
            tail.close()
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)


def _read_pid_file(pid_file: Path) -> tuple[str | None, list[Key]]:
    data = read_json(pid_file)
    if not isinstance(data, dict):
        return None, []
    token = data.get("token")
    keys: list[Key] = []
    for item in data.get("processes") or []:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and isinstance(item[1], (int, float)):
            keys.append((item[0], float(item[1])))
    return (token if isinstance(token, str) and token else None), keys


def kill_recorded(pid_file: Path, grace_s: float = 2.0) -> list[int]:
    """End what is left of a run recorded in `pid_file` by a tool that died; return the pids signalled.

    A recorded pid counts only when its create_time matches or it carries the run's token, so a
    reused pid is left alone. A missing or garbled file gives [].
    """
    pid_file = Path(pid_file)
    if not pid_file.exists():
        return []
    token, keys = _read_pid_file(pid_file)
    tree = _Tree(token)
    for pid, created in keys:
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) < _SAME_START_S or _has_token(proc, token):
                tree.add(proc)
        except psutil.Error:
            pass
    killed = _terminate(tree, grace_s, reap=False) if tree.procs or token else []
    pid_file.unlink(missing_ok=True)
    return killed
