"""What `autoresearch run` hands the loop as its event sink: the screen or the printed lines, plus the event
journal watchers follow, plus the control channel they steer through (docs/WATCH.md)."""

from __future__ import annotations

import os
from pathlib import Path

from . import events as ev
from .control import Controllable, ControlListener
from .errors import UserError
from .journal import JournalWriter
from .notify import Notifier


def running_pid(root: Path) -> int | None:
    """The pid of another live process running the session at `root`, None when none does."""
    from .gitops import Repo
    from .session_lock import holder

    try:
        pid = holder(Repo(root))
    except UserError:
        return None
    if pid is None or not pid.isdigit() or int(pid) == os.getpid():
        return None
    return int(pid)


class Publisher:
    """An event sink passing each event to `show` and to the journal. Until this process holds the session, it
    publishes nothing while another run holds it: a refused second run must not write into the first's journal."""

    def __init__(self, root: Path, show: ev.EventSink) -> None:
        self.root = root
        self.show = show
        self.journal = JournalWriter(root, warn=lambda message: show(ev.Info(message)))
        self.notifier = _notifier(root, show)
        self._listener: ControlListener | None = None
        self._ours = False

    def __call__(self, event: ev.Event) -> None:
        self.show(event)
        if not self._ours:
            if running_pid(self.root) is not None:
                return
            self._ours = isinstance(event, ev.SessionStarted)
        self.journal(event)
        if self.notifier is not None:
            self.notifier(event)
        if isinstance(event, ev.LoopStopped):
            self.close()

    def listen(self, loop: Controllable) -> None:
        """Take controls from watchers for `loop` (unless another run holds the session: they are its own)."""
        if running_pid(self.root) is None:
            self._listener = ControlListener(self.root, loop, self).start()

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
