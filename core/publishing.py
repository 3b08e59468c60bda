"""What `autoresearch run` hands the loop as its event sink: the screen or the printed lines, plus the event
journal watchers follow, plus the control channel they steer through (docs/WATCH.md)."""

from __future__ import annotations

import os
import threading
from collections import deque
from pathlib import Path

from . import events as ev
from .control import Controllable, ControlListener
from .errors import UserError
from .journal import JournalWriter
from .notify import Notifier

EARLY_EVENTS = 100


def _holder(root: Path) -> str | None:
    from .gitops import Repo
    from .session_lock import holder

    try:
        return holder(Repo(root))
    except UserError:
        return None


def running_pid(root: Path) -> int | None:
    """The pid of another live process running the session at `root`, None when none does."""
    pid = _holder(root)
    if pid is None or not pid.isdigit() or int(pid) == os.getpid():
        return None
    return int(pid)


class Publisher:
    """An event sink passing each event to `show`, to the journal and to the notifier. Nothing is published until
    this process holds the session: a run refused (the session busy, a bad setting) leaves no trace, and cannot
    write into another run's journal. What came before is kept and published then."""

    def __init__(self, root: Path, show: ev.EventSink) -> None:
        self.root = root
        self.show = show
        self.journal = JournalWriter(root, warn=lambda message: show(ev.Info(message)))
        self.notifier = _notifier(root, show)
        self._listener: ControlListener | None = None
        self._listening = False
        self._ours = False
        self._closed = False
        """After the loop's end nothing more is journaled: a late line would reopen the journal as a new run."""
        self._early: deque[ev.Event] = deque(maxlen=EARLY_EVENTS)
        self._lock = threading.RLock()  # the loop's threads and the viewer's controls publish at once

    def __call__(self, event: ev.Event) -> None:
        with self._lock:  # one order for all: what this process shows is what the journal holds
            self.show(event)
            if not self._ours:
                if _holder(self.root) != str(os.getpid()):
                    self._early.append(event)
                else:
                    self._ours = True
                    if self._listener is not None:
                        self._listener.start()
                        self._listening = True
                    while self._early:
                        self._publish(self._early.popleft())
            if self._ours and not self._closed:
                self._publish(event)
            self._closed = self._closed or isinstance(event, ev.LoopStopped)
        if isinstance(event, ev.LoopStopped):
            self.close()  # out of the lock: the listener's thread may be publishing what it was asked

    def _publish(self, event: ev.Event) -> None:
        self.journal(event)
        if self.notifier is not None:
            self.notifier(event)

    def listen(self, loop: Controllable) -> ControlListener:
        """Take controls from watchers for `loop`, from the moment this process holds the session; the listener
        returned also takes them from a viewer in this process (`deliver`)."""
        self._listener = ControlListener(self.root, loop, self)
        return self._listener

    def close(self) -> None:
        self._closed = True
        listener, listening, self._listening = self._listener, self._listening, False
        if listener is not None and listening:
            listener.close()
        self.journal.close()
        notifier, self.notifier = self.notifier, None
        if notifier is not None:
            notifier.close()


def _notifier(root: Path, show: ev.EventSink) -> Notifier | None:
    from .config import load_config

    try:
        config = load_config(root)
    except UserError:
        return None  # the loop says what is wrong with the session
    if not config.notify:
        return None
    return Notifier(config.notify, config.tag, config.metric_name, show)
