"""Regenerate screenshots/*.svg from the fixed sample session (tui/sample.py).

    .venv/bin/python scripts/make_screenshots.py [--out screenshots] [--png]

Each screen is drawn at 80x24 (the narrow layout) and 200x60. --png also writes PNGs (needs cairosvg).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from autoresearch.tui.app import AutoresearchApp
from autoresearch.tui.experiment_screen import ExperimentScreen
from autoresearch.tui.sample import (
    SAMPLE_NOW,
    IdleLoop,
    make_repo,
    make_sample_session,
    sample_worker_events,
    settle,
    show_sample_run,
)
from autoresearch.tui.setup_screen import SetupScreen
from textual.widgets import Checkbox, Input

SIZES = ((80, 24), (200, 60))
SETUP_OPTIONS = {"tag": "mar23", "created_at": "2025-03-23T21:04:00+01:00"}


async def shoot_run(root: Path, size: tuple[int, int]) -> str:
    events = make_sample_session(root)
    app = AutoresearchApp(root, "run", loop_factory=IdleLoop, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=size) as pilot:
        await show_sample_run(pilot, events)
        shot = app.export_screenshot(title="autoresearch: run")
        app.screen.shut_down()
        await pilot.pause(0.3)
        return shot


async def shoot_workers(root: Path, size: tuple[int, int]) -> str:
    events = make_sample_session(root)
    events = [e for e in events if type(e).__name__ not in ("RunStarted", "LogAppended", "PhaseChanged")]
    app = AutoresearchApp(root, "run", loop_factory=IdleLoop, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=size) as pilot:
        await show_sample_run(pilot, [*events, *sample_worker_events(300.0)])
        shot = app.export_screenshot(title="autoresearch: run, 3 workers")
        app.screen.shut_down()
        await pilot.pause(0.3)
        return shot


async def shoot_experiment(root: Path, size: tuple[int, int]) -> str:
    events = make_sample_session(root)
    app = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=size) as pilot:
        screen = await show_sample_run(pilot, events)
        screen.query_one("#results").move_cursor(row=3)
        await pilot.press("enter")
        assert isinstance(app.screen, ExperimentScreen)
        await settle(pilot)
        return app.export_screenshot(title="autoresearch: experiment #4")


async def shoot_analysis(root: Path, size: tuple[int, int]) -> str:
    make_sample_session(root)
    app = AutoresearchApp(root, "analyze", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        return app.export_screenshot(title="autoresearch: analysis")


async def shoot_setup(root: Path, size: tuple[int, int]) -> str:
    make_repo(root)
    app = AutoresearchApp(root, "setup", script="train.py", options=dict(SETUP_OPTIONS), loop_factory=None)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        screen.query_one("#write-program", Checkbox).value = True
        screen.query_one("#field-constraints", Input).value = "stay under 8 GB of GPU memory"
        screen.query_one("#field-tag", Input).focus()
        await pilot.pause(0.3)
        return app.export_screenshot(title="autoresearch: setup")


SHOTS = {
    "setup": shoot_setup,
    "run": shoot_run,
    "workers": shoot_workers,
    "experiment": shoot_experiment,
    "analysis": shoot_analysis,
}


async def main(out: Path, png: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, shoot in SHOTS.items():
        for width, height in SIZES:
            with tempfile.TemporaryDirectory(prefix="autoresearch-shot-") as tmp:
                svg = await shoot(Path(tmp) / "repo", (width, height))
            path = out / f"{name}-{width}x{height}.svg"
            path.write_text(svg, encoding="utf-8")
            print(f"wrote {path}")
            if png:
                import cairosvg

                cairosvg.svg2png(bytestring=svg.encode(), write_to=str(path.with_suffix(".png")))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "screenshots")
    parser.add_argument("--png", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    asyncio.run(main(args.out, args.png))
