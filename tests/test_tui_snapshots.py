"""Pictures of each screen from the fixed sample session, at 80x24 (the narrow layout) and 200x60."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from autoresearch.tui.app import AutoresearchApp
from autoresearch.tui.experiment_screen import ExperimentScreen
from autoresearch.tui.sample import SAMPLE_NOW, IdleLoop, make_repo, make_sample_session, settle, show_sample_run
from autoresearch.tui.setup_screen import SetupScreen
from autoresearch.tui.widgets import ResultsTable
from textual.pilot import Pilot
from textual.widgets import Input

SIZES = [(80, 24), (200, 60)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_screen(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    events = make_sample_session(tmp_path / "repo")
    app = AutoresearchApp(tmp_path / "repo", "run", loop_factory=IdleLoop, clock=lambda: SAMPLE_NOW)

    async def run_before(pilot: Pilot[Any]) -> None:
        await show_sample_run(pilot, events)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_run_screen_no_color(snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    events = make_sample_session(tmp_path / "repo")
    app = AutoresearchApp(tmp_path / "repo", "run", loop_factory=IdleLoop, clock=lambda: SAMPLE_NOW)
    assert app.no_color

    async def run_before(pilot: Pilot[Any]) -> None:
        await show_sample_run(pilot, events)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_experiment_screen(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    events = make_sample_session(tmp_path / "repo")
    app = AutoresearchApp(tmp_path / "repo", "run", loop_factory=None, clock=lambda: SAMPLE_NOW)

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await show_sample_run(pilot, events)
        screen.query_one("#results", ResultsTable).move_cursor(row=3)
        await pilot.press("enter")
        assert isinstance(pilot.app.screen, ExperimentScreen)
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_setup_screen(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    make_repo(tmp_path / "repo")
    options = {"tag": "mar23", "created_at": "2025-03-23T21:04:00+01:00"}
    app = AutoresearchApp(tmp_path / "repo", "setup", script="train.py", options=options, loop_factory=None)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, SetupScreen) and screen.defaults is not None
        for field in screen.query(Input):
            field.cursor_blink = False
        screen.query_one("#field-time_budget_minutes", Input).value = "0"
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
