"""The loop `autoresearch run` starts for its app, and that app as one viewer of it (docs/WATCH.md).

The loop runs on a thread of this process and publishes as every run does (journal, notifier, control folder);
the app sees it through a SessionFollower reading the run's journal lines kept in memory, and its keys are the
control messages a watcher sends, handed to the run's listener. What a watcher shows, the app shows.
"""

from __future__ import annotations

import threading
from pathlib import Path

from . import events as ev
from .journal import MemoryJournal
from .publishing import Publisher
from .watching import SessionFollower

POLL_S = 1.0
"""The app's viewer wakes when the run writes a line; this only bounds a wait (a watcher polls its file: 0.1 s)."""


class OwnRun:
    """What the app's run screen drives: `run()` runs the loop and shows it until it stops; the controls are
    messages; `stop_now()` (the app quitting, a hang-up) stops the loop as the app always did."""

    remote = False

    def __init__(self, root: Path, sink: ev.EventSink, by: str = "the app") -> None:
        from .loop import ExperimentLoop

        self.journal = MemoryJournal()
        self.publisher = Publisher(root, self.journal)
        self.loop = ExperimentLoop(root, self.publisher, when_stuck="pause")  # the user is at the screen
        listener = self.publisher.listen(self.loop)
        self.viewer = SessionFollower(
            root, sink, by=by, poll_s=POLL_S, source=self.journal, channel=listener.deliver, wake=self.journal.written
        )
        self._failure: BaseException | None = None

    @property
    def paused(self) -> bool:
        """Asked to pause (the loop's own answer: it is in this process)."""
        return self.loop.paused

    def run(self) -> ev.LoopStopped:
        thread = threading.Thread(target=self._run_loop, name="autoresearch-loop", daemon=True)
        thread.start()
        stopped = self.viewer.run()
        thread.join()
        if self._failure is not None:
            raise self._failure
        return stopped

    def _run_loop(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:  # the screen says it and writes the traceback, as for its own failures
            self._failure = exc
            self.viewer.stop_now()
        finally:
            self.publisher.close()

    def pause(self) -> None:
        self.viewer.pause()

    def resume(self) -> None:
        self.viewer.resume()

    def stop(self) -> None:
        self.viewer.stop()

    def skip(self, worker: int | None = None) -> None:
        self.viewer.skip(worker)

    def hold_worker(self, worker: int, held: bool) -> None:
        self.viewer.hold_worker(worker, held)

    def queue_idea(self, text: str) -> None:
        self.viewer.queue_idea(text)

    def stop_now(self) -> None:
        self.loop.stop_now()
