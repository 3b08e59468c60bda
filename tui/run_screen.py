"""The live run screen: a viewer of a loop (its own or another process's) runs in a worker; a UI timer drains it."""

from __future__ import annotations

import os
import shlex
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Protocol

from autoresearch.core.errors import UserError
from autoresearch.core.events import (
    EventSink,
    LogAppended,
    LoopStopped,
    NeedsUser,
    Paused,
    ResultRecorded,
    Resumed,
    RunStarted,
    SessionStarted,
    WorkerChanged,
    WorkerLog,
)
from autoresearch.core.history import History
from autoresearch.core.loss_curve import loss_curve
from autoresearch.core.results import ResultRow
from autoresearch.core.sanitize import safe_line, safe_text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState

from .dialogs import ConfirmDialog, HelpPanel, IdeaDialog
from .session_data import SessionSnapshot, load_snapshot
from .state import EventBuffer, RunState
from .widgets import (
    BREAKPOINTS,
    PLOT_LEGEND,
    FilterInput,
    KeysFooter,
    LogTail,
    MetricPlot,
    ResultsTable,
    RunHeader,
    RunSpark,
    TailLog,
    fmt_metric,
)

TICK_S = 0.25
BEST_CURVE_POINTS = 60
ERROR_LOG = "tui-error.log"


class LoopControl(Protocol):
    """What the screen needs of core.loop.ExperimentLoop."""

    @property
    def paused(self) -> bool: ...
    def run(self) -> LoopStopped: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def stop(self) -> None: ...
    def skip(self, worker: int | None = None) -> None: ...
    def hold_worker(self, worker: int, held: bool) -> None: ...
    def stop_now(self) -> None: ...
    def queue_idea(self, text: str) -> None: ...


LoopFactory = Callable[[Path, EventSink], LoopControl]


def default_loop_factory(root: Path, sink: EventSink) -> LoopControl:
    """The loop of `autoresearch run`, in this process; the screen is one viewer of it, as a watcher is."""
    from autoresearch.core.own_run import OwnRun

    return OwnRun(root, sink)


def watch_factory(by: str = "a watcher") -> LoopFactory:
    """The loop of a run in another process, followed through its journal (`autoresearch watch`)."""

    def follow(root: Path, sink: EventSink) -> LoopControl:
        from autoresearch.core.watching import SessionFollower

        return SessionFollower(root, sink, by=by, keep_following=True, parent=os.getppid())

    return follow


class RunScreen(Screen[None]):
    """Header, metric plot, sparkline, results table and log tail of a session, live."""

    HORIZONTAL_BREAKPOINTS = BREAKPOINTS

    BINDINGS: ClassVar[list[BindingType]] = [
        # Help and Quit first: a narrow footer cuts the keys at its end.
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit_app", "Quit"),
        Binding("p", "pause", "Pause", id="pause"),
        Binding("p", "resume", "Resume", id="resume"),
        Binding("s", "stop", "Stop"),
        Binding("x", "kill", "Kill run"),
        Binding("w", "next_worker", "Log"),
        Binding("P", "hold_worker", "Pause worker", show=False),
        Binding("enter", "open_experiment", "Open"),
        Binding("i", "idea", "Idea"),
        Binding("a", "analysis", "Analysis"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("S", "sort", "Sort results", show=False),
        Binding("e", "events", "Events full screen", show=False),
        Binding("z", "zoom", "Zoom the focused pane", show=False),
        Binding("T", "app.toggle_theme", "Light / dark theme", show=False),
        Binding("end", "follow_log", "Follow log", show=False, priority=True),
    ]

    def __init__(
        self,
        root: Path,
        loop_factory: LoopFactory | None = default_loop_factory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.root = root
        self.loop_factory = loop_factory
        self.clock = clock
        self.buffer = EventBuffer()
        self.state = RunState()
        self.loop: LoopControl | None = None
        self.loop_worker: Worker[LoopStopped | None] | None = None
        self.quitting = False
        self.forced_exit_code: int | None = None
        self.ideas_queued: list[str] = []
        self._header_plain = ""
        self._bindings_key: tuple[bool, ...] = ()
        self._best_curve_of: int | None = None
        self._recorded_since_reload: list[tuple[int, ResultRow]] | None = None
        """A watcher's next run: rows recorded while the rows on disk are read again."""

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        yield Static("", id="banner")
        with Horizontal(id="top"):
            yield MetricPlot(id="plot")
            with Vertical(id="side"):
                yield RunSpark(id="spark")
                yield TailLog(max_lines=200, id="activity")
        with Horizontal(id="bottom"):
            yield ResultsTable(id="results")
            yield LogTail(id="logtail")
        yield FilterInput(placeholder="filter: status, words of the description, commit (escape closes)", id="filter")
        yield HelpPanel(id="help", classes="dialog help")
        yield KeysFooter(show_command_palette=False)

    # Start-up: read the session from disk in a worker, then start the loop.

    def on_mount(self) -> None:
        self.query_one("#plot").border_title = "metric"
        self.query_one("#plot").border_subtitle = PLOT_LEGEND
        self.query_one("#results").border_title = "results"
        self.query_one("#logtail").border_title = "run.log"
        self.query_one("#activity").border_title = "events"
        self.query_one(ResultsTable).focus()
        self.set_interval(TICK_S, self.tick)
        self.load_session()

    def on_unmount(self) -> None:
        # However the app ends, a run in flight must not outlive it.
        if self.loop is not None:
            self.loop.stop_now()

    @work(thread=True, group="load", exit_on_error=False)
    def load_session(self) -> SessionSnapshot:
        return load_snapshot(self.root)

    @work(thread=True, group="reload", exclusive=True, exit_on_error=False)
    def reload_rows(self) -> SessionSnapshot:
        """A watcher's next run: the rows as they are on disk now (the start may have repaired them)."""
        return load_snapshot(self.root)

    @work(thread=True, group="best-curve", exclusive=True, exit_on_error=False)
    def load_best_curve(self, number: int) -> tuple[int, list[float]]:
        curve = loss_curve(History(self.root).log_path(number), points=BEST_CURVE_POINTS)
        return number, list(curve.points) if curve else []

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "best-curve" and event.state == WorkerState.SUCCESS and worker.result is not None:
            number, points = worker.result
            if number == self._best_curve_of:
                self.query_one(RunSpark).show_best(number, points)
        elif worker.group == "reload" and event.state == WorkerState.SUCCESS:
            if isinstance(worker.result, SessionSnapshot):
                rows = list(worker.result.rows)
                for number, row in self._recorded_since_reload or []:
                    if number == len(rows) + 1:  # recorded after the file was read
                        rows.append(row)
                self._recorded_since_reload = None
                self.state.set_results(rows)
                self.query_one(ResultsTable).replace_results(self.state.rows)
                self.refresh_parts({"header", "plot", "spark"})
        elif worker.group == "load":
            if event.state == WorkerState.SUCCESS and isinstance(worker.result, SessionSnapshot):
                self.show_snapshot(worker.result)
                self.start_loop()
            elif event.state == WorkerState.ERROR:
                message = str(worker.error) if isinstance(worker.error, UserError) else repr(worker.error)
                self.buffer.put(LoopStopped(reason=message, ok=False))
        elif worker.group == "loop" and event.state in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            self.tick()
            if self.quitting:
                self.app.exit(self.exit_code())

    def show_snapshot(self, snapshot: SessionSnapshot) -> None:
        config = snapshot.config
        state = self.state
        state.tag = config.tag
        state.metric_name = config.metric_name
        state.agent = config.agent
        state.higher_is_better = config.higher_is_better
        state.max_experiments = config.max_experiments
        state.budget_s = config.time_budget_s
        state.timeout_s = config.timeout_s
        state.tokens = snapshot.tokens
        state.cost_usd = snapshot.cost_usd
        state.set_results(snapshot.rows)
        table = self.query_one(ResultsTable)
        table.higher_is_better = config.higher_is_better
        table.set_metric_name(config.metric_name)
        table.add_results(state.rows)
        self.refresh_parts({"header", "plot", "spark"})

    def start_loop(self) -> None:
        if self.loop_factory is None:
            return
        self.loop_worker = self.run_worker(self.run_loop, thread=True, group="loop", exit_on_error=False)

    def run_loop(self) -> LoopStopped | None:
        """The loop's thread: build the loop, run it, turn any failure into a LoopStopped event."""
        assert self.loop_factory is not None
        try:
            self.loop = self.loop_factory(self.root, self.buffer.put)
            if self.quitting:
                return None
            return self.loop.run()
        except UserError as exc:
            self.buffer.put(LoopStopped(reason=str(exc), ok=False))
        except Exception as exc:
            log = self.root / ".autoresearch" / ERROR_LOG
            try:
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(traceback.format_exc(), encoding="utf-8")
            except OSError:
                pass
            self.buffer.put(LoopStopped(reason=f"internal error: {exc} (details in {log})", ok=False))
        return None

    # Pacing: at most a few repaints a second, whatever the loop emits.

    def tick(self) -> None:
        changed: set[str] = set()
        table = self.query_one(ResultsTable)
        logtail = self.query_one(LogTail)
        activity = self.query_one("#activity", TailLog)
        notes: list[str] = []
        for event in self.buffer.drain():
            if isinstance(event, SessionStarted) and self.state.stopped is not None:
                self._recorded_since_reload = []  # a watcher's next run: its start may have repaired the rows
                self.reload_rows()
            if isinstance(event, ResultRecorded):
                if self._recorded_since_reload is not None:
                    self._recorded_since_reload.append((event.number, event.row))
                elif any(n == event.number for n, _ in self.state.rows):
                    continue  # a watcher replays the journal over the rows read from disk
            changed |= self.state.apply(event)
            if isinstance(event, LogAppended):
                logtail.write_lines(event.lines, event.dropped)
            elif isinstance(event, ResultRecorded):
                table.add_result(event.number, event.row)
            elif isinstance(event, WorkerLog) and event.worker == self.state.shown_worker:
                logtail.write_lines(event.lines, event.dropped)
            elif isinstance(event, WorkerChanged) and event.worker == self.state.shown_worker and event.started_at:
                logtail.write_lines([f"──── worker {event.worker} {event.state}: {event.description} ────"])
                logtail.border_title = f"run.log worker {event.worker}"
            elif isinstance(event, RunStarted):
                logtail.write_lines([f"──── #{event.number} {event.commit[:7]} ────"])
                logtail.border_title = f"run.log #{event.number}"
            line = event.describe()
            if line and not isinstance(event, Paused | Resumed):
                notes.append(safe_line(line))
            if isinstance(event, NeedsUser):
                self.notify(safe_text(event.message), title="Needs you", severity="warning", timeout=10)
        if notes:
            activity.write_lines(notes)
        if self.state.run_started_at is not None:
            changed.add("header")
        self.refresh_parts(changed)
        self.refresh_bindings_if_changed()

    def refresh_parts(self, changed: set[str]) -> None:
        state = self.state
        if "header" in changed or "activity" in changed:
            header = self.query_one(RunHeader)
            text = header.render_text(state, self.clock(), self.size.width)
            if text.plain != self._header_plain:
                self._header_plain = text.plain
                header.update(text)
            self.refresh_bindings_if_changed()
        if "plot" in changed:
            self.query_one(MetricPlot).set_rows(state.rows, state.metric_name, state.higher_is_better)
        if "spark" in changed or "plot" in changed:
            label, data = state.sparkline_data()
            self.query_one(RunSpark).show(label, data)
        if "plot" in changed and state.best_number() != self._best_curve_of:
            self._best_curve_of = state.best_number()
            if self._best_curve_of is not None:
                self.load_best_curve(self._best_curve_of)
        if "banner" in changed:
            self.show_banner()

    def refresh_bindings_if_changed(self) -> None:
        """The footer recomposes on refresh_bindings, so only when what the keys do has changed."""
        state = self.state
        key = (
            self.loop is not None,
            state.paused,
            state.pause_requested,
            state.stop_requested,
            state.stopped is not None,
            state.phase == "running",
            len(state.workers) > 1,
            (shown := state.workers.get(state.shown_worker)) is not None and shown.started_at is not None,
        )
        if key != self._bindings_key:
            self._bindings_key = key
            self.refresh_bindings()

    def show_banner(self) -> None:
        banner = self.query_one("#banner", Static)
        state = self.state
        if state.stopped is not None:
            verb = "Stopped" if state.stopped.ok else "Stopped with a problem"
            waits = " · waiting for the next run" if getattr(self.loop, "remote", False) else ""
            banner.update(f"{verb}: {state.stopped.reason}  —  q quit · a analysis · enter open{waits}")
            banner.set_class(not state.stopped.ok, "-error")
            banner.display = True
        elif state.needs_user:
            banner.update(f"Needs you: {state.needs_user}")
            banner.set_class(True, "-error")
            banner.display = True
        else:
            banner.display = False

    def exit_code(self) -> int:
        if self.forced_exit_code is not None:
            return self.forced_exit_code
        stopped = self.state.stopped
        return 1 if stopped is not None and not stopped.ok else 0

    # Keys.

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        state = self.state
        live = self.loop is not None and state.stopped is None
        waiting = state.paused or state.pause_requested
        if action == "pause":
            return live and not waiting
        if action == "resume":
            return live and waiting
        if action == "stop":
            return (True if not state.stop_requested else None) if live else False
        if action == "kill":
            if state.workers:
                shown = state.workers.get(state.shown_worker)
                return (True if shown is not None and shown.started_at is not None else None) if live else False
            return (True if state.phase == "running" else None) if live else False
        if action == "next_worker":
            return len(state.workers) > 1
        if action == "hold_worker":
            return bool(state.workers) and live
        return True

    def action_pause(self) -> None:
        if self.loop is None:
            return
        self.loop.pause()
        if self.state.run_active:
            self.state.pause_requested = True
        self.refresh_parts({"header"})

    def action_resume(self) -> None:
        if self.loop is None:
            return
        self.loop.resume()
        self.state.pause_requested = False
        self.state.paused = False
        self.refresh_parts({"header"})

    def action_stop(self) -> None:
        if self.loop is None:
            return
        self.loop.stop()
        self.state.stop_requested = True
        self.refresh_parts({"header"})

    def kill_target(self) -> tuple[str, int | None] | None:
        """What x would kill now: (what to call it, the worker or None without workers); None: nothing runs."""
        state = self.state
        if self.loop is None or state.stopped is not None:
            return None
        if state.workers:
            shown = state.workers.get(state.shown_worker)
            if shown is None or shown.started_at is None:
                return None
            return f"worker {shown.worker}'s run", shown.worker
        return (f"run #{state.number}", None) if state.phase == "running" else None

    def action_kill(self) -> None:
        """Kill the run in flight (the shown worker's, with workers) once the user confirms."""
        target = self.kill_target()
        if target is None:
            return
        self.app.push_screen(
            ConfirmDialog(
                f"Kill {target[0]} now?",
                "It is recorded as a crash and its commit reverted; the loop goes on with the next idea.",
                yes="Kill",
                no="Keep running",
                destructive=True,
            ),
            self.confirm_kill,
        )

    def confirm_kill(self, answer: bool | None) -> None:
        target = self.kill_target()
        if not answer or target is None or self.loop is None:
            return
        what, worker = target
        self.loop.skip(worker)
        self.notify(f"Killing {what}; it is recorded as a crash.", timeout=3)

    def action_hold_worker(self) -> None:
        """Pause the shown worker after its run, or let it take ideas again."""
        state = self.state
        shown = state.workers.get(state.shown_worker)
        if self.loop is None or shown is None or state.stopped is not None:
            return
        held = shown.worker in state.held_workers
        self.loop.hold_worker(shown.worker, not held)
        if held:
            state.held_workers.discard(shown.worker)
            self.notify(f"Worker {shown.worker} takes ideas again.", timeout=3)
        else:
            state.held_workers.add(shown.worker)
            self.notify(f"Worker {shown.worker} pauses once its run is done (P again to resume it).", timeout=4)
        self.refresh_parts({"header"})

    def action_next_worker(self) -> None:
        """Show the next worker's log (its lines from now on) in the log pane."""
        state = self.state
        if len(state.workers) < 2:
            return
        numbers = sorted(state.workers)
        state.shown_worker = (
            numbers[(numbers.index(state.shown_worker) + 1) % len(numbers)]
            if state.shown_worker in numbers
            else numbers[0]
        )
        shown = state.workers[state.shown_worker]
        logtail = self.query_one(LogTail)
        doing = f"{shown.state}: {shown.description}" if shown.description else shown.state
        logtail.write_lines([f"──── worker {shown.worker} {doing} ────"])
        logtail.border_title = f"run.log worker {shown.worker}"
        state.losses.clear()
        self.refresh_parts({"header", "spark"})

    def action_follow_log(self) -> None:
        """End follows everything live again: the log, the events and the newest result."""
        self.query_one(LogTail).follow()
        self.query_one("#activity", TailLog).follow()
        table = self.query_one(ResultsTable)
        if table.row_count:
            table.move_cursor(row=table.row_count - 1, column=0, animate=False)
        table.scroll_to(x=0, animate=False)

    def action_filter(self) -> None:
        box = self.query_one(FilterInput)
        box.display = True
        box.focus()

    def on_input_changed(self, event: FilterInput.Changed) -> None:
        if event.input.id == "filter":
            event.stop()
            self.query_one(ResultsTable).set_filter(event.value)

    def on_filter_input_closed(self, event: FilterInput.Closed) -> None:
        box = self.query_one(FilterInput)
        box.display = False
        table = self.query_one(ResultsTable)
        if not event.keep:
            box.value = ""
            table.set_filter("")
        table.focus()

    def action_sort(self) -> None:
        column = self.query_one(ResultsTable).next_sort()
        self.notify(f"Results sorted by {column} (S for the next column).", timeout=2)

    def action_events(self) -> None:
        """The events pane over the whole screen, its lines uncut; e again brings the layout back."""
        activity = self.query_one("#activity", TailLog)
        if self.maximized is activity:
            self.minimize()
            return
        self.maximize(activity, container=False)
        activity.focus()

    def action_zoom(self) -> None:
        if self.maximized is not None:
            self.minimize()
        elif self.focused is not None:
            self.maximize(self.focused, container=False)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_experiment()

    def action_open_experiment(self) -> None:
        from .experiment_screen import ExperimentScreen

        number = self.query_one(ResultsTable).selected_number()
        if number is None:
            self.notify("No experiment yet.", timeout=2)
            return
        state = self.state
        self.app.push_screen(
            ExperimentScreen(
                self.root,
                number,
                dict(state.rows),
                state.metric_name,
                queue_idea=self.queue_idea,
                agent=state.agent,
                higher_is_better=state.higher_is_better,
            )
        )

    def action_idea(self) -> None:
        # A watcher's dialog also takes the serve token, so there the loop itself refuses what it cannot follow.
        if self.state.agent == "mutate" and not getattr(self.loop, "remote", False):
            from autoresearch.core.search import offline_idea_problem

            self.app.push_screen(IdeaDialog(offline_idea_problem, "LEARNING_RATE = 0.01"), self.queue_idea)
        else:
            self.app.push_screen(IdeaDialog(), self.queue_idea)

    def queue_idea(self, text: str | None) -> None:
        if not text:
            return
        if self.loop is not None:
            self.loop.queue_idea(text)
        else:
            History(self.root).queue_idea(text)
        self.ideas_queued.append(text)
        self.notify(f"Queued for the agent: {text}", timeout=4)

    def action_analysis(self) -> None:
        from .analysis_screen import AnalysisScreen

        self.app.push_screen(AnalysisScreen(self.root))

    def action_help(self) -> None:
        self.query_one(HelpPanel).show()

    def on_key(self, event: events.Key) -> None:
        help_panel = self.query_one(HelpPanel)
        if help_panel.shown:
            event.stop()
            event.prevent_default()
            help_panel.take_key(event.key)

    def action_quit_app(self) -> None:
        if self.quitting:
            return
        watching = getattr(self.loop, "remote", False)
        if self.loop_worker is not None and self.loop_worker.is_running and self.state.run_active and not watching:
            self.app.push_screen(
                ConfirmDialog(
                    f"Experiment #{self.state.number} is {self.state.phase}. Quit anyway?",
                    "Its run is killed and its commit reverted; nothing of it is recorded.",
                    yes="Quit",
                    no="Keep running",
                    destructive=True,
                ),
                self.confirm_quit,
            )
        else:
            self.shut_down()

    def confirm_quit(self, answer: bool | None) -> None:
        if answer:
            self.shut_down()

    def farewell(self) -> str:
        """What is printed once the screen is gone: where the session stands and how to go on."""
        state = self.state
        where = "" if self.root == Path.cwd() else f" -C {shlex.quote(str(self.root))}"
        done = f"{state.done} experiment{'s' if state.done != 1 else ''} recorded"
        best = ""
        if state.best is not None:
            best = f"; best {state.metric_name} {fmt_metric(state.best)} (#{state.best_number()}"
            if state.improvement is not None:
                change = state.improvement if state.higher_is_better else -state.improvement
                best += f", {change:+.2f}% against the baseline"
            best += ")"
        go_on = f"Go on with: autoresearch{where} run"
        if getattr(self.loop, "remote", False) and state.stopped is None:
            go_on = f"The run goes on in its own process; watch it again with: autoresearch{where} watch"
        return (
            f"Session {state.tag or '?'}: {done}{best}.\n"
            f"{go_on} · results: autoresearch{where} status · report: autoresearch{where} analyze"
        )

    def shut_down(self, exit_code: int | None = None) -> None:
        """Stop the loop (killing a run in flight) and exit once its thread has finished."""
        self.quitting = True
        self.forced_exit_code = exit_code
        worker = self.loop_worker
        if worker is None or not worker.is_running:
            self.app.exit(self.exit_code())
            return
        if self.loop is not None:
            self.loop.stop_now()
        if getattr(self.loop, "remote", False):
            return  # a watcher stops following at once; the run is not touched
        banner = self.query_one("#banner", Static)
        banner.update("Stopping: killing the run and restoring the branch…")
        banner.display = True
