"""What `autoresearch run` hands the loop as its event sink: the screen or the printed lines, plus the event
journal watchers follow, plus the control channel they steer through (docs/WATCH.md)."""

from __future__ import annotations

import os
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
        self._loop: Controllable | None = None
        self._listener: ControlListener | None = None
        self._ours = False
        self._early: deque[ev.Event] = deque(maxlen=EARLY_EVENTS)

    def __call__(self, event: ev.Event) -> None:
        self.show(event)
        if not self._ours:
            if _holder(self.root) != str(os.getpid()):
                self._early.append(event)
                if isinstance(event, ev.LoopStopped):
                    self.close()
                return
            self._ours = True
            if self._loop is not None:
                self._listener = ControlListener(self.root, self._loop, self).start()
            while self._early:
                self._publish(self._early.popleft())
        self._publish(event)
        if isinstance(event, ev.LoopStopped):
            self.close()

    def _publish(self, event: ev.Event) -> None:
        self.journal(event)
        if self.notifier is not None:
            self.notifier(event)

    def listen(self, loop: Controllable) -> None:
        """Take controls from watchers for `loop`, from the moment this process holds the session."""
        self._loop = loop

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
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
