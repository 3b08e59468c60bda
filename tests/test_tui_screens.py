"""The experiment and analysis screens on a fixed session: what they show, and the keys they answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from autoresearch.tui.analysis_screen import AnalysisScreen
from autoresearch.tui.app import AutoresearchApp
from autoresearch.tui.experiment_screen import ExperimentScreen, diff_text
from autoresearch.tui.run_screen import RunScreen
from autoresearch.tui.sample import SAMPLE_NOW, make_sample_session
from autoresearch.tui.widgets import MetricPlot, ResultsTable
from textual.pilot import Pilot
from textual.widgets import Log, Markdown


async def wait_for(pilot: Pilot[int], predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def test_diff_colours_keep_the_signs_for_no_color() -> None:
    text = diff_text(
        "diff --git a/train.py b/train.py\nindex 1..2 100644\n--- a/train.py\n+++ b/train.py\n"
        "@@ -1,2 +1,2 @@\n-LR = 1\n+LR = 2\n keep\n"
    )
    assert text.plain == "train.py\n@@ -1,2 +1,2 @@\n-LR = 1\n+LR = 2\n keep\n"
    styles = {text.plain[span.start : span.end].strip(): str(span.style) for span in text.spans}
    assert styles["+LR = 2"] == "green" and styles["-LR = 1"] == "red"


async def test_experiment_screen_shows_a_discarded_experiment_and_steps_between_them(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    make_sample_session(root)
    app = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=(200, 60)) as pilot:
        run = app.screen
        assert isinstance(run, RunScreen)
        await wait_for(pilot, lambda: run.state.done == 11)
        run.query_one(ResultsTable).move_cursor(row=2)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, ExperimentScreen) and screen.number == 3
        await wait_for(pilot, lambda: screen.detail is not None)
        summary = str(screen.query_one("#summary").render())
        for expected in ("#3", "discard", "lower BATCH_SIZE to 16", "hyperparams", "0.088730", "Smaller batches"):
            assert expected in summary
        assert "-BATCH_SIZE = 32" in str(screen.query_one("#diff-text").render())
        assert screen.query_one("#exp-log", Log).lines[-1] == "val_loss: 0.088730"
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: screen.detail is not None and screen.detail.number == 4)
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: screen.detail is not None and screen.detail.number == 5)
        summary = str(screen.query_one("#summary").render())
        assert "crash" in summary and "exit" in summary
        assert "FloatingPointError" in screen.query_one("#exp-log", Log).lines[-1]
        await pilot.press("escape")
        assert app.screen is run


async def test_analysis_screen_renders_the_report_and_writes_it(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    make_sample_session(root)
    app = AutoresearchApp(root, "analyze", loop_factory=None)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, AnalysisScreen)
        await wait_for(pilot, lambda: bool(screen.markdown))
        assert "mar23" in screen.markdown and "What Worked" in screen.markdown
        assert screen.query_one(Markdown).source == screen.markdown
        plot = screen.query_one(MetricPlot)
        assert len(plot.rows) == 11 and plot.metric_name == "val_loss"
        assert not (root / "autoresearch-mar23-analysis.md").exists()
        await pilot.press("w")
        await wait_for(pilot, lambda: screen.written is not None)
        assert screen.written == root / "autoresearch-mar23-analysis.md"
        assert "What Worked" in screen.written.read_text()
        await pilot.press("escape")
    assert app.return_value == 0


async def test_experiment_screen_at_80x24_reads_the_diff_zooms_copies_retries_and_compares(tmp_path: Path) -> None:
    from autoresearch.core.history import History
    from autoresearch.tui.compare_screen import CompareScreen
    from textual.widgets import Sparkline

    root = tmp_path / "sample"
    make_sample_session(root)
    app = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        run = app.screen
        assert isinstance(run, RunScreen)
        await wait_for(pilot, lambda: run.state.done == 11)
        run.query_one(ResultsTable).move_cursor(row=2)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, ExperimentScreen)
        await wait_for(pilot, lambda: screen.detail is not None)
        await pilot.pause(0.1)
        # The changed lines of a one-line change are above the fold of the diff pane.
        box = screen.query_one("#diff-box")
        lines = str(screen.query_one("#diff-text").render()).splitlines()
        added = next(i for i, line in enumerate(lines) if line.startswith("+BATCH_SIZE"))
        assert box.display and added < box.scrollable_content_region.height
        assert screen.query_one(Sparkline).data  # the experiment's own loss curve
        await pilot.press("d", "z")
        assert screen.maximized is box
        await pilot.press("z")
        assert screen.maximized is None
        await pilot.press("l")  # under 120 columns the log takes the diff's place
        await pilot.pause(0.05)
        assert screen.query_one("#exp-log").display and not box.display
        await pilot.press("y")
        assert screen.detail is not None and screen.detail.row is not None
        assert app.clipboard == screen.detail.row.commit and len(app.clipboard) >= 7
        await pilot.press("r")  # try a discarded experiment again: queued as an idea
        assert any("BATCH_SIZE" in idea for idea in History(root).pending_ideas())
        await pilot.press("c")
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        await wait_for(pilot, lambda: "Loading" not in str(compare.query_one("#summary-right").render()))
        await wait_for(pilot, lambda: "Loading" not in str(compare.query_one("#summary-left").render()))
        assert "#3" in str(compare.query_one("#summary-left").render())
        assert "#3" not in str(compare.query_one("#summary-right").render())
        await pilot.press("escape", "escape")
        assert app.screen is run
