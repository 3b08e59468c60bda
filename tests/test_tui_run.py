"""The run screen driving the real loop on real repositories: pause, kill, quit, open, ideas, the log tail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest
from autoresearch.core.config import RESULTS_FILE
from autoresearch.core.demo import prepare_demo
from autoresearch.core.events import LogAppended, RunStarted
from autoresearch.core.history import History
from autoresearch.core.results import read_results
from autoresearch.core.setup import setup_session
from autoresearch.tui.app import AutoresearchApp
from autoresearch.tui.dialogs import ConfirmDialog, HelpPanel, IdeaDialog
from autoresearch.tui.experiment_screen import ExperimentScreen
from autoresearch.tui.run_screen import RunScreen
from autoresearch.tui.sample import SAMPLE_NOW, make_sample_session
from autoresearch.tui.widgets import LogTail, ResultsTable, RunHeader
from textual.pilot import Pilot
from textual.widgets import Input, Label, Log, Static
from textual.widgets._footer import FooterKey

# The baseline (experiment 1) is quick; every later run prints for 30 s, long enough to act on it.
SLOW_SCRIPT = """\
import os
import time

LEARNING_RATE = 0.5

slow = os.environ.get("AUTORESEARCH_EXPERIMENT", "1") != "1"
for step in range(600 if slow else 3):
    print(f"step {step} loss: {1.0 / (step + 1):.4f}", flush=True)
    time.sleep(0.05)
print(f"val_loss: {LEARNING_RATE:.4f}")
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def slow_session(tmp_path: Path) -> Path:
    root = tmp_path / "slow"
    root.mkdir()
    (root / "train.py").write_text(SLOW_SCRIPT)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "train")
    setup_session(
        root,
        "train.py",
        metric_name="val_loss",
        agent="mutate",
        tag="slow",
        time_budget_minutes=0.5,
        timeout_minutes=1,
        run_command=f"{sys.executable} train.py",
    )
    return root


@pytest.fixture
def demo_session(tmp_path: Path) -> Path:
    root, _config = prepare_demo(tmp_path / "demo", max_experiments=40)
    return root


def training_processes(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if proc.info["cwd"] == str(root) and "train.py" in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@contextlib.asynccontextmanager
async def running(app: AutoresearchApp, size: tuple[int, int]) -> AsyncIterator[Pilot[int]]:
    """run_test, and whatever happens in the test, the loop's thread is stopped before the event loop closes."""
    async with app.run_test(size=size) as pilot:
        try:
            yield pilot
        finally:
            app.stop_loop()
            screen = app.run_screen()
            worker = screen.loop_worker if screen else None
            deadline = time.monotonic() + 20
            while worker is not None and worker.is_running and time.monotonic() < deadline:
                await asyncio.sleep(0.05)


async def wait_for(pilot: Pilot[int], predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def run_screen(pilot: Pilot[int]) -> RunScreen:
    for screen in pilot.app.screen_stack:
        if isinstance(screen, RunScreen):
            return screen
    raise AssertionError("no run screen")


async def quit_and_wait(pilot: Pilot[int]) -> None:
    """Quit as a user does (confirming when asked) and wait for the loop's thread to end."""
    screen = run_screen(pilot)
    await pilot.press("q")
    await pilot.pause(0.1)
    if isinstance(pilot.app.screen, ConfirmDialog):
        await pilot.press("y")
    worker = screen.loop_worker
    deadline = time.monotonic() + 20
    while worker is not None and worker.is_running and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert worker is None or not worker.is_running


def footer_text(screen: RunScreen) -> str:
    return "  ".join(f"{key.key_display} {key.description}" for key in screen.query(FooterKey))


def rows(root: Path) -> int:
    return len(read_results(root / RESULTS_FILE).rows)


async def test_pause_flips_the_key_and_stops_new_experiments_until_resumed(demo_session: Path) -> None:
    app = AutoresearchApp(demo_session, "run")
    async with running(app, (100, 30)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.loop is not None and screen.state.done >= 1)
        assert screen.check_action("pause", ()) and not screen.check_action("resume", ())
        assert "p Pause" in footer_text(screen)
        footer_keys = list(screen.query(FooterKey))
        await pilot.press("p")
        assert screen.loop is not None and screen.loop.paused
        assert screen.check_action("resume", ()) and not screen.check_action("pause", ())
        await pilot.pause(0.1)
        assert "p Resume" in footer_text(screen) and "p Pause" not in footer_text(screen)
        # Relabelled in place: rebuilding every key on each flip cost a frame's worth of CPU.
        assert list(screen.query(FooterKey)) == footer_keys
        await wait_for(pilot, lambda: screen.state.paused)
        await pilot.pause(0.3)
        header = str(screen.query_one(RunHeader).render())
        assert "PAUSED" in header
        done = rows(demo_session)
        await asyncio.sleep(1.5)
        assert rows(demo_session) == done
        await pilot.press("p")
        assert not screen.loop.paused
        assert screen.check_action("pause", ())
        await wait_for(pilot, lambda: rows(demo_session) > done)
        assert not screen.state.paused
        await quit_and_wait(pilot)
    assert app.return_value == 0
    assert git(demo_session, "status", "--porcelain") == ""
    farewell = app.run_started.farewell() if app.run_started else ""
    assert farewell.startswith("Session demo: ") and "experiments recorded; best val_loss" in farewell
    assert f"autoresearch -C {demo_session} run" in farewell  # the demo's repository, reopened


async def test_kill_asks_first_then_records_a_crash_and_the_loop_goes_on(slow_session: Path) -> None:
    app = AutoresearchApp(slow_session, "run")
    async with running(app, (100, 30)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.number == 2 and screen.state.phase == "running")
        assert screen.check_action("kill", ())
        await pilot.press("k")  # k moves up in the table, as in lazygit and k9s; it kills nothing
        await pilot.pause(0.1)
        assert app.screen is screen and screen.state.phase == "running"
        await pilot.press("x")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # declined: the run goes on
        await pilot.pause(0.1)
        assert app.screen is screen and screen.state.phase == "running" and screen.state.done == 1
        await pilot.press("x")
        await pilot.pause(0.1)
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.state.done == 2)
        number, row = screen.state.rows[-1]
        assert (number, row.status) == (2, "crash")
        assert "killed by the user" in row.description
        await wait_for(pilot, lambda: screen.state.number == 3)
        await quit_and_wait(pilot)


async def test_quit_while_running_asks_first_then_kills_and_reverts(slow_session: Path) -> None:
    app = AutoresearchApp(slow_session, "run")
    async with running(app, (80, 24)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.number == 2 and screen.state.phase == "running")
        await wait_for(pilot, lambda: bool(training_processes(slow_session)))
        pids = [proc.pid for proc in training_processes(slow_session)]
        await pilot.press("q")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        await pilot.pause(0.1)
        assert app.screen is screen and not screen.quitting
        assert screen.state.phase == "running"
        await pilot.press("q")
        await pilot.pause(0.1)
        await pilot.press("y")
        worker = screen.loop_worker
        assert worker is not None
        deadline = time.monotonic() + 20
        while worker.is_running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not worker.is_running
    assert app.return_value == 0
    assert rows(slow_session) == 1  # the interrupted run is not recorded
    assert git(slow_session, "status", "--porcelain") == ""
    assert len(git(slow_session, "log", "--oneline", "autoresearch/slow").splitlines()) == 2
    assert not History(slow_session).journal_path.exists()
    assert pids and training_processes(slow_session) == []


async def test_enter_opens_the_highlighted_experiment(demo_session: Path) -> None:
    app = AutoresearchApp(demo_session, "run")
    async with running(app, (100, 30)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.done >= 2)
        await pilot.press("p")
        table = screen.query_one(ResultsTable)
        table.focus()
        table.move_cursor(row=1)
        expected = screen.state.rows[1][1].description
        await pilot.press("enter")
        assert isinstance(app.screen, ExperimentScreen)
        experiment = app.screen
        assert experiment.number == 2
        await wait_for(pilot, lambda: experiment.detail is not None)
        summary = str(experiment.query_one("#summary").render())
        assert expected in summary
        assert experiment.detail is not None and experiment.detail.diff.startswith("diff --git")
        await pilot.press("escape")
        assert app.screen is screen
        await quit_and_wait(pilot)


async def test_an_idea_is_queued_for_the_agent(slow_session: Path) -> None:
    app = AutoresearchApp(slow_session, "run")
    async with running(app, (80, 24)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.number == 2 and screen.state.phase == "running")
        await pilot.press("i")
        assert isinstance(app.screen, IdeaDialog)
        await pilot.press("enter")
        assert isinstance(app.screen, IdeaDialog)  # an empty idea is refused where it was typed
        assert "Write the idea first" in str(app.screen.query_one("#idea-error", Label).render())
        # The offline agent cannot follow a free-form idea: it says so in the dialog instead of dropping it later.
        app.screen.query_one("#idea", Input).value = "try a cosine schedule"
        await pilot.press("enter")
        assert isinstance(app.screen, IdeaDialog)
        assert "LEARNING_RATE = 0.01" in str(app.screen.query_one("#idea-error", Label).render())
        app.screen.query_one("#idea", Input).value = "set LEARNING_RATE = 0.25"
        await pilot.press("enter")
        assert app.screen is screen
        assert screen.ideas_queued == ["set LEARNING_RATE = 0.25"]
        assert History(slow_session).pending_ideas() == ["set LEARNING_RATE = 0.25"]
        activity = screen.query_one("#activity", Log)
        await wait_for(pilot, lambda: any("idea queued" in line for line in activity.lines))
        # Queued another way (a watcher, a script), the loop refuses it out loud and leaves ideas.txt as it was.
        assert screen.loop is not None
        screen.loop.queue_idea("try a cosine schedule")
        await wait_for(pilot, lambda: any("idea not queued" in line for line in activity.lines))
        assert History(slow_session).pending_ideas() == ["set LEARNING_RATE = 0.25"]
        await quit_and_wait(pilot)


async def test_log_tail_counts_new_lines_while_scrolled_up_and_stays_bounded(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    events = make_sample_session(root)
    app = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.done == 11)
        for event in events:
            screen.buffer.put(event)
        screen.buffer.put(LogAppended(12, tuple(f"step {i} loss: 0.5" for i in range(300))))
        await pilot.pause(0.4)
        tail = screen.query_one(LogTail)
        log = tail.log_widget
        assert log.is_vertical_scroll_end and tail.new_lines == 0
        log.focus()
        await pilot.press("home")
        await pilot.pause(0.1)
        screen.buffer.put(LogAppended(12, ("one", "two", "three")))
        await pilot.pause(0.4)
        assert tail.new_lines == 3
        label = tail.query_one("#new-lines", Label)
        assert label.has_class("-visible") and "3 new lines" in str(label.render())
        assert not log.is_vertical_scroll_end
        await pilot.press("end")
        await pilot.pause(0.2)
        assert tail.new_lines == 0 and not label.has_class("-visible")
        for _ in range(10):
            screen.buffer.put(LogAppended(12, tuple(f"x {i}" for i in range(400))))
            screen.tick()
        assert log.line_count <= tail.max_lines


async def test_the_panes_follow_after_a_resize_and_end_follows_without_scrolling_the_table(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    make_sample_session(root)
    app = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.done == 11)
        tail = screen.query_one(LogTail)
        activity = screen.query_one("#activity", Log)
        screen.buffer.put(LogAppended(12, tuple(f"step {i} loss: 0.5" for i in range(300))))
        screen.buffer.put(RunStarted(12, "abc1234", 1, 120, 240, SAMPLE_NOW))
        await pilot.pause(0.4)
        for size in ((80, 24), (200, 60), (100, 30)):  # a tmux reattach from terminals of other sizes
            await pilot.resize_terminal(*size)
            await pilot.pause(0.2)
            for i in range(30):
                screen.buffer.put(RunStarted(13 + i, f"{i:07d}", 1, 120, 240, SAMPLE_NOW))
            screen.buffer.put(LogAppended(12, tuple(f"after {size} {i}" for i in range(50))))
            last = f"after {size} 49"
            await wait_for(pilot, lambda: tail.log_widget.lines[-1] == last)  # noqa: B023
            await pilot.pause(0.2)
            assert tail.log_widget.is_vertical_scroll_end and tail.new_lines == 0
            assert activity.is_vertical_scroll_end
            assert not tail.query_one("#new-lines", Label).has_class("-visible")
        table = screen.query_one(ResultsTable)
        assert table.has_focus
        table.move_cursor(row=0)
        await pilot.press("end")  # the table has focus, yet End follows the run rather than scrolling sideways
        await pilot.pause(0.1)
        assert table.scroll_x == 0 and table.cursor_row == table.row_count - 1
        assert tail.log_widget.is_vertical_scroll_end and tail.new_lines == 0
        await pilot.press("k", "k")
        assert table.cursor_row == table.row_count - 3
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("G")
        assert table.cursor_row == table.row_count - 1


async def test_keys_answer_while_the_log_floods(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    make_sample_session(root)
    app = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.done == 11)
        screen.buffer.put(RunStarted(12, "abc1234", 1, 120, 240, SAMPLE_NOW))
        stop = threading.Event()
        sent = [0]

        def flood() -> None:
            # About 50,000 lines a second, in the loop's batches.
            while not stop.is_set():
                screen.buffer.put(LogAppended(12, tuple(f"step {sent[0] + i} loss: 0.1" for i in range(500))))
                sent[0] += 500
                time.sleep(0.01)

        thread = threading.Thread(target=flood)
        thread.start()
        try:
            await pilot.pause(0.5)
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: screen.query_one(HelpPanel).shown, timeout=30)
            await pilot.press("escape")
            await wait_for(pilot, lambda: not screen.query_one(HelpPanel).shown, timeout=30)
        finally:
            stop.set()
            thread.join()
        assert sent[0] > 10_000
        assert screen.query_one(LogTail).log_widget.line_count <= screen.query_one(LogTail).max_lines


async def test_help_takes_every_key_while_shown_and_closes_in_place(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    make_sample_session(root)
    app = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.done == 11)
        panel = screen.query_one(HelpPanel)
        table = screen.query_one(ResultsTable)
        cursor = table.cursor_row
        footer_keys = list(screen.query(FooterKey))
        for close in ("escape", "question_mark", "q"):
            await pilot.press("question_mark")
            assert panel.shown and app.screen is screen
            await pilot.pause(0.1)
            assert "Run screen" in str(panel.query_one("#help-text", Static).render())
            # At 80x24 the keys do not fit: the arrows scroll the help, not the table behind it.
            await pilot.press("down", "down")
            assert panel.scroll_y == 2 and table.cursor_row == cursor
            await pilot.press("a", "i")
            assert app.screen is screen
            await pilot.press(close)
            assert not panel.shown
        assert app.is_running and app.screen is screen
        assert screen.focused is table
        assert list(screen.query(FooterKey)) == footer_keys
        await pilot.press("up")
        assert table.cursor_row == cursor - 1


async def test_a_loop_that_cannot_start_says_why_in_one_sentence(slow_session: Path) -> None:
    (slow_session / "train.py").write_text(SLOW_SCRIPT + "# edited\n")
    app = AutoresearchApp(slow_session, "run")
    async with running(app, (80, 24)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.stopped is not None)
        banner = str(screen.query_one("#banner").render())
        assert "uncommitted changes" in banner and "Traceback" not in banner
        assert not screen.check_action("pause", ()) and not screen.check_action("kill", ())
        await pilot.press("q")
    assert app.return_value == 1
    assert rows(slow_session) == 0


async def test_with_two_workers_w_switches_the_log_x_kills_the_shown_run_and_p_pauses_that_worker(
    slow_session: Path,
) -> None:
    import json

    config = json.loads((slow_session / ".autoresearch.json").read_text())
    config["workers"] = 2
    (slow_session / ".autoresearch.json").write_text(json.dumps(config))
    app = AutoresearchApp(slow_session, "run")
    async with running(app, (100, 30)) as pilot:
        screen = run_screen(pilot)

        def both_running() -> bool:
            workers = screen.state.workers
            return len(workers) == 2 and all(w.started_at is not None for w in workers.values())

        await wait_for(pilot, both_running, timeout=60)
        await wait_for(pilot, lambda: "w Log" in footer_text(screen))  # the footer recomposes on a repaint
        await wait_for(pilot, lambda: all(w in str(screen.query_one(RunHeader).render()) for w in ("w1", "w2")))
        await pilot.press("w")
        assert screen.state.shown_worker == 2
        assert screen.query_one(LogTail).border_title == "run.log worker 2"
        await pilot.press("P")  # worker 2 pauses after its run
        await pilot.press("x", "y")  # and its run ends now, once confirmed
        await wait_for(pilot, lambda: screen.state.done == 2)
        number, row = screen.state.rows[-1]
        assert row.status == "crash" and "killed by the user" in row.description
        meta = History(slow_session).load_meta(number)
        assert meta is not None and meta.extra["worker"] == 2
        await wait_for(pilot, lambda: screen.state.workers[2].state == "held")
        await wait_for(pilot, lambda: "held" in str(screen.query_one(RunHeader).render()))
        assert screen.state.workers[1].state != "held"  # worker 1 goes on
        await quit_and_wait(pilot)
    assert not (slow_session / ".autoresearch" / "workers").exists()


async def test_filter_sort_palette_theme_and_events_pane_as_lazygit_and_k9s_users_expect(tmp_path: Path) -> None:
    from textual.command import CommandPalette

    root = tmp_path / "sample"
    make_sample_session(root)
    app = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.done == 11)
        table = screen.query_one(ResultsTable)
        # The description gets the room: at 120 columns it is read whole, not cut to ten characters.
        others = sum(c.get_render_width(table) for c in table.ordered_columns if str(c.key.value) != "description")
        assert table.scrollable_content_region.width - others >= 30
        await pilot.press("slash")
        await pilot.press(*"discard")
        statuses = {table.get_row_at(i)[5].plain.split()[-1] for i in range(table.row_count)}
        assert statuses == {"discard"} and 0 < table.row_count < 11
        await pilot.press("enter")  # the filter stays, the table has the keys again
        assert table.has_focus and table.row_count < 11 and "/discard" in str(table.border_title)
        await pilot.press("slash", "escape")
        assert table.row_count == 11
        await pilot.press("S")  # sorted by the metric, best first
        metrics = [table.get_row_at(i)[2].plain for i in range(table.row_count)]
        measured = [float(m) for m in metrics if m != "—"]
        assert measured == sorted(measured)
        await pilot.press("e")
        assert screen.maximized is screen.query_one("#activity")
        await pilot.press("e")
        assert screen.maximized is None
        assert app.theme == "textual-dark"
        await pilot.press("T")
        assert app.theme == "textual-light"
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"analysis")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "AnalysisScreen")
        await pilot.press("escape")
        # A finished or loaded session's header tells what happened, not "no run yet"; the gain is signed as
        # the analysis signs it (a lower loss is a negative change).
        header = str(screen.query_one(RunHeader).render())
        assert "no run yet" not in header and "last run" in header
        assert "−" in header.split("base")[1]


async def test_the_theme_chosen_is_the_one_the_app_opens_with_next_time(tmp_path: Path) -> None:
    from autoresearch.tui.preferences import preferences_path

    root = tmp_path / "sample"
    make_sample_session(root)
    first = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with first.run_test(size=(100, 30)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.done == 11)
        assert first.theme == "textual-dark"
        await pilot.press("T")
        await wait_for(pilot, lambda: preferences_path().is_file())
    assert json.loads(preferences_path().read_text()) == {"theme": "textual-light"}
    assert not (root / ".autoresearch" / "app.json").exists()  # the user's preference, not the session's
    again = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with again.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: again.theme == "textual-light")
    preferences_path().write_text("{not json")  # a damaged file is ignored, never in the way
    third = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with third.run_test(size=(100, 30)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.done == 11)
        assert third.theme == "textual-dark"


async def test_at_60x18_the_footer_keeps_help_and_quit_and_the_help_fits(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    make_sample_session(root)
    app = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=(60, 18)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.done == 11)
        await pilot.pause(0.1)
        visible = [key for key in screen.query(FooterKey) if key.region.right <= 60 and key.region.width > 0]
        assert {"Help", "Quit"} <= {key.description.strip() for key in visible}
        await pilot.press("question_mark")
        text = str(screen.query_one("#help-text").render())
        help_panel = screen.query_one(HelpPanel)
        assert max(len(line) for line in text.splitlines()) <= help_panel.content_region.width


async def test_the_best_experiments_loss_curve_shows_beside_the_current_runs(tmp_path: Path) -> None:
    from textual.widgets import Sparkline

    root = tmp_path / "sample"
    events = make_sample_session(root)
    app = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.done == 11)
        for event in events:
            screen.buffer.put(event)
        best = screen.state.best_number()
        best_spark = screen.query_one("#best-spark", Sparkline)
        await wait_for(pilot, lambda: len(best_spark.data or []) >= 2)
        await wait_for(pilot, lambda: "run loss" in str(screen.query_one("#spark-label").render()))
        label = str(screen.query_one("#spark-label").render())
        assert f"best #{best}" in label and "run loss" in label
        assert best_spark.display and screen.query_one("#run-spark", Sparkline).data
