"""The control channel: watchers ask the running loop to pause, stop, skip... by dropping messages in a folder.

Each message is one small JSON file in `.autoresearch/control/` (a folder only its owner can enter, mode 0700),
named so that they sort in the order they were sent, and written under a dot-name then renamed, so a reader never
sees half of one. The loop's ControlListener takes them in order, refuses those whose file is not owned by the
loop's own user, calls the loop's control method, and says in the events what was asked and by whom.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from . import events as ev
from .config import STATE_DIR

CONTROL_DIR = "control"
ACTIONS = ("pause", "resume", "stop", "skip", "hold_worker", "queue_idea")
POLL_S = 0.2
_counter = itertools.count()


class Controllable(Protocol):
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def stop(self) -> None: ...
    def skip(self, worker: int | None = None) -> None: ...
    def hold_worker(self, worker: int, held: bool) -> None: ...
    def queue_idea(self, text: str) -> None: ...


def control_dir(root: Path) -> Path:
    return root / STATE_DIR / CONTROL_DIR


def _private_dir(root: Path) -> Path:
    folder = control_dir(root)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.stat(folder)
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(folder, 0o700)
    return folder


def send(root: Path, action: str, by: str = "a watcher", **arguments: Any) -> None:
    """Ask the loop of the session at `root` to do `action` (one of ACTIONS); raises OSError if it cannot be
    written (a full disk)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown control {action!r}")
    folder = _private_dir(root)
    name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}.json"
    temporary = folder / f".{name}"
    temporary.write_text(json.dumps({"action": action, "by": by, **arguments}), encoding="utf-8")
    os.replace(temporary, folder / name)


def _describe(action: str, message: dict[str, Any]) -> str:
    worker = message.get("worker")
    on = f" worker {worker}" if isinstance(worker, int) else ""
    if action == "hold_worker":
        return f"{'paused' if message.get('held') else 'resumed'}{on}"
    return {
        "pause": "paused",
        "resume": "resumed",
        "stop": "stop asked",
        "skip": f"run{on} killed",
        "queue_idea": "idea queued",
    }[action]


class ControlListener:
    """Polls the channel on its own thread and turns each message into a call on `loop`."""

    def __init__(self, root: Path, loop: Controllable, emit: ev.EventSink, poll_s: float = POLL_S) -> None:
        self.root = root
        self.loop = loop
        self.emit = emit
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused: set[int] = set()

    def start(self) -> ControlListener:
        try:
            folder = _private_dir(self.root)
            owner = os.stat(folder).st_uid
        except OSError as exc:
            self.emit(ev.Info(f"watchers cannot steer this run: {control_dir(self.root)} ({exc.strerror})"))
            return self
        if owner != os.getuid():
            self.emit(ev.Info(f"watchers cannot steer this run: {folder} belongs to another user (uid {owner})"))
            return self
        for stale in folder.iterdir():  # messages sent to a run that is gone are not for this one
            stale.unlink(missing_ok=True)
        self._thread = threading.Thread(target=self._listen, name="autoresearch-control", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def deliver(self, action: str, by: str, **arguments: Any) -> None:
        """A control from the viewer in the run's own process (the app `autoresearch run` starts): the message a
        watcher drops in the folder, acted on at once."""
        if action not in ACTIONS:
            raise ValueError(f"unknown control {action!r}")
        self._apply({"action": action, "by": by, **arguments})

    def _listen(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> int:
        """Act on the messages waiting, oldest first; returns how many were acted on."""
        try:
            names = sorted(p for p in os.listdir(control_dir(self.root)) if not p.startswith("."))
        except OSError:
            return 0
        done = 0
        for name in names:
            path = control_dir(self.root) / name
            message = self._take(path)
            if message is not None and self._apply(message):
                done += 1
        return done

    def _take(self, path: Path) -> dict[str, Any] | None:
        try:
            info = os.lstat(path)
            if info.st_uid != os.getuid() or not stat.S_ISREG(info.st_mode):
                if info.st_uid not in self._refused:
                    self._refused.add(info.st_uid)
                    self.emit(
                        ev.Info(
                            f"refused a control message from uid {info.st_uid}: only the repository's owner "
                            "(the user running this loop) can steer it"
                        )
                    )
                path.unlink(missing_ok=True)
                return None
            text = path.read_text(encoding="utf-8")
            path.unlink(missing_ok=True)
        except OSError:
            return None
        try:
            message = json.loads(text)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def _apply(self, message: dict[str, Any]) -> bool:
        action = message.get("action")
        if action not in ACTIONS:
            return False
        assert isinstance(action, str)
        worker = message.get("worker")
        worker = worker if isinstance(worker, int) and not isinstance(worker, bool) else None
        text = message.get("text")
        if (action == "hold_worker" and worker is None) or (
            action == "queue_idea" and (not isinstance(text, str) or not text.strip())
        ):
            return False
        # Said before it is done: what the loop does about it comes after, in every viewer.
        by = " ".join(str(message.get("by") or "a watcher").split())[:60]
        self.emit(ev.Info(f"{_describe(action, message)} from {by}"))
        if action == "hold_worker":
            assert worker is not None
            self.loop.hold_worker(worker, bool(message.get("held")))
        elif action == "skip":
            self.loop.skip(worker)
        elif action == "queue_idea":
            assert isinstance(text, str)
            self.loop.queue_idea(text)
        else:
            getattr(self.loop, action)()
        return True
