"""Regenerate screenshots/*.svg: a real `autoresearch demo` session, and the fixed sample for the rest.

    .venv/bin/python scripts/make_screenshots.py [--out screenshots] [--png]

The demo shots (run, experiment, compare, help, analysis) come from the bundled demo driven by the real loop
and the offline agent, as `autoresearch demo` shows it, at 80x24, 120x36 and 200x60. The setup wizard and the
three-worker run still come from the sample session (tui/sample.py). --png also writes PNGs (needs cairosvg).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from autoresearch.tui.app import AutoresearchApp
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
DEMO_SIZES = ((80, 24), (120, 36), (200, 60))
DEMO_ROWS = 9
"""The demo is shot live once this many experiments are recorded."""
SETUP_OPTIONS = {"tag": "mar23", "created_at": "2025-03-23T21:04:00+01:00"}


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
    "workers": shoot_workers,
}


async def shoot_demo(root: Path) -> dict[str, str]:
    """The demo as `autoresearch demo` runs it (the real loop, the offline agent), shot live at each size."""
    from autoresearch.core.demo import prepare_demo
    from autoresearch.tui.run_screen import RunScreen

    prepare_demo(root)
    app = AutoresearchApp(root, "run")
    shots: dict[str, str] = {}
    async with app.run_test(size=DEMO_SIZES[0]) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        while screen.state.done < DEMO_ROWS or screen.state.phase != "running":
            await pilot.pause(0.1)
        screen.action_pause()  # the loop holds after this run, so every size shows the same session
        for width, height in DEMO_SIZES:
            await pilot.resize_terminal(width, height)
            await settle(pilot)
            shots[f"run-{width}x{height}"] = app.export_screenshot(title="autoresearch demo: run")
            screen.query_one("#results").move_cursor(row=2)
            await pilot.press("enter")
            await settle(pilot)
            shots[f"experiment-{width}x{height}"] = app.export_screenshot(title="autoresearch demo: experiment #3")
            await pilot.press("c")
            await settle(pilot)
            shots[f"compare-{width}x{height}"] = app.export_screenshot(title="autoresearch demo: compare")
            await pilot.press("escape", "escape")
            await pilot.press("question_mark")
            await settle(pilot)
            shots[f"help-{width}x{height}"] = app.export_screenshot(title="autoresearch demo: keys")
            await pilot.press("escape")
            await pilot.press("a")
            await settle(pilot)
            shots[f"analysis-{width}x{height}"] = app.export_screenshot(title="autoresearch demo: analysis")
            await pilot.press("escape")
        app.stop_loop()
        for worker in list(app.workers):
            await worker.wait()
    return shots


def write(out: Path, name: str, svg: str, png: bool) -> None:
    path = out / f"{name}.svg"
    path.write_text(svg, encoding="utf-8")
    print(f"wrote {path}")
    if png:
        import cairosvg

        cairosvg.svg2png(bytestring=svg.encode(), write_to=str(path.with_suffix(".png")))


async def main(out: Path, png: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="autoresearch-shot-") as tmp:
        for name, svg in (await shoot_demo(Path(tmp) / "demo")).items():
            write(out, name, svg, png)
    for name, shoot in SHOTS.items():
        for width, height in SIZES:
            with tempfile.TemporaryDirectory(prefix="autoresearch-shot-") as tmp:
                svg = await shoot(Path(tmp) / "repo", (width, height))
            write(out, f"{name}-{width}x{height}", svg, png)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "screenshots")
    parser.add_argument("--png", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    asyncio.run(main(args.out, args.png))
