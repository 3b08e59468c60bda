"""A viewer's stand-in for the loop: it follows the event journal of a run in another process and sends the
viewer's controls through the channel. The app shows it exactly as it shows a loop of its own (docs/WATCH.md).
"""

from __future__ import annotations

import hmac
import os
import signal
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

from . import control
from . import events as ev
from .history import History
from .journal import JournalReader

TOKEN_ENV = "AUTORESEARCH_WATCH_TOKEN"
"""Set (by `autoresearch serve` bound beyond this machine), a watcher only views until the token is entered."""
POLL_S = 0.1
ALIVE_CHECK_S = 1.0
WAITING = "waiting for the next run of this session (autoresearch run)"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def repair_note(root: Path) -> str:
    """What the next `autoresearch run` will repair after a run died, from the in-flight record it left."""
    record = History(root).read_journal()
    number = record.get("number") if record else None
    if not isinstance(number, int):
        return "the next `autoresearch run` ends any training it left and goes on"
    return (
        f"the next `autoresearch run` ends the training it left and takes experiment #{number} off the branch "
        f"unrecorded (it was {record.get('stage') if record else 'running'})"
    )


class Source(Protocol):
    """Journal lines as events: the file (JournalReader) or the run's own in this process (MemoryJournal)."""

    @property
    def writer_pid(self) -> int | None: ...
    def read(self) -> list[ev.Event]: ...


Channel = Callable[..., None]
"""`channel(action, by, **arguments)` sends one control message (core/control.py)."""


class SessionFollower:
    """Follows the session at `root`: `run()` sends the journal's events to `sink` until the session ends, the run
    dies, or `stop_now()` (which only ends this viewer, never the run). With `keep_following`, a run that ends is
    shown ended and the follower waits for the next run of the session and follows it too, until `stop_now()`.
    The controls become channel messages."""

    remote = True

    def __init__(
        self,
        root: Path,
        sink: ev.EventSink,
        by: str = "a watcher",
        poll_s: float = POLL_S,
        keep_following: bool = False,
        source: Source | None = None,
        channel: Channel | None = None,
        wake: threading.Event | None = None,
        parent: int | None = None,
    ) -> None:
        self.root = root
        self.sink = sink
        self.by = by
        self.poll_s = poll_s
        self.keep_following = keep_following
        self.source = source
        """Where the journal's lines come from: the file (None), or the run's own, in this process."""
        self.channel: Channel = channel or partial(control.send, root)
        """Where the controls go: the run's control folder, or its listener, in this process."""
        self.parent = parent
        """The process that started this viewer (its SIGHUP handler ends it once that one is gone), or None."""
        self._detach = threading.Event()
        self._wake = wake or self._detach
        """Set by a source in this process when it has new lines; a file is polled every poll_s."""
        self._paused = False
        # The run's own viewer is the run's user at its terminal; only a follower of the file can be a served page.
        self._token = (os.environ.get(TOKEN_ENV) or None) if source is None else None
        self._ended_pid: int | None = None
        """The run whose end this follower has shown: its pid is no longer checked for being alive."""

    @property
    def paused(self) -> bool:
        return self._paused

    def run(self) -> ev.LoopStopped:
        reader = self.source or self._open_journal()
        if isinstance(reader, ev.LoopStopped):
            return reader
        last: ev.LoopStopped | None = None
        since_check = 0.0
        while not self._detach.is_set():
            for event in reader.read():
                if isinstance(event, ev.Paused | ev.Resumed):
                    self._paused = isinstance(event, ev.Paused)
                self.sink(event)
                if isinstance(event, ev.LoopStopped):
                    last = event
                    self._ended_pid = reader.writer_pid
                    if not self.keep_following:
                        return event
                    self._paused = False
                    self.sink(ev.Info(WAITING))
            since_check += self.poll_s
            if since_check >= ALIVE_CHECK_S:
                since_check = 0.0
                if self.parent is not None and os.getppid() != self.parent:
                    # What started this viewer is gone (a server killed with SIGKILL): as if its terminal hung up.
                    self.parent = None
                    os.kill(os.getpid(), signal.SIGHUP)
                pid = reader.writer_pid
                if pid is not None and pid != self._ended_pid and not alive(pid):
                    last = self._died(pid)
                    if not self.keep_following:
                        return last
                    self.sink(ev.Info(WAITING))
            if self._wake.wait(self.poll_s) and self._wake is not self._detach:
                self._wake.clear()  # before the next read: a line written after it sets it again
        if last is not None and reader.writer_pid == self._ended_pid:
            return ev.LoopStopped(f"stopped watching; the run had stopped: {last.reason}", ok=last.ok)
        return ev.LoopStopped("stopped watching; the run goes on", ok=True)

    def _open_journal(self) -> Source | ev.LoopStopped:
        """The journal from the current run's opening; from now when no run is live (after saying so, or the
        end of the run that died, which ends a follower that does not keep following)."""
        from_now = JournalReader(self.root, from_start=False)  # placed before looking: a run opening now is read
        reader = JournalReader(self.root, from_start=True)
        pid, ended = reader.last_opening()
        if pid is not None and not ended and alive(pid):
            return reader
        if pid is not None and not ended:
            stopped = self._died(pid)
            if not self.keep_following:
                return stopped
            self.sink(ev.Info(WAITING))
        else:
            self.sink(ev.Info("no run is using this session yet; waiting for one to start (autoresearch run)"))
        return from_now

    def _died(self, pid: int) -> ev.LoopStopped:
        self._ended_pid = pid
        stopped = ev.LoopStopped(
            f"the run (pid {pid}) ended without stopping (killed?); {repair_note(self.root)}", False
        )
        self.sink(stopped)
        return stopped

    # The app's controls, sent to the run.

    def _send(self, action: str, **arguments: object) -> None:
        if self._token is not None:
            self.sink(ev.Info("this view is read-only: press i and enter the token `autoresearch serve` printed"))
            return
        try:
            self.channel(action, self.by, **arguments)
        except OSError as exc:
            self.sink(ev.Info(f"could not ask the run to {action.replace('_', ' ')}: {exc.strerror or exc}"))

    def pause(self) -> None:
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def stop(self) -> None:
        self._send("stop")

    def skip(self, worker: int | None = None) -> None:
        self._send("skip", worker=worker)

    def hold_worker(self, worker: int, held: bool) -> None:
        self._send("hold_worker", worker=worker, held=held)

    def queue_idea(self, text: str) -> None:
        if self._token is not None and hmac.compare_digest(text.strip().encode(), self._token.encode()):
            self._token = None
            self.sink(ev.Info("token accepted: this view steers the run"))
            return
        self._send("queue_idea", text=text)

    def stop_now(self) -> None:
        """The app calls this when it exits: this viewer stops following; the run is not touched."""
        self._detach.set()
        self._wake.set()
