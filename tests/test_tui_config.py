"""The wizard on real training-script shapes: files offered, the check button, and editing an existing session."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from autoresearch.core.config import load_config
from autoresearch.core.setup import setup_session
from autoresearch.tui.app import AutoresearchApp
from textual.widgets import Input, Label, SelectionList

from tests.test_knob_search import shape_repo
from tests.test_tui_setup import open_wizard, type_into, wait_for

PY = sys.executable
NANOGPT = f"{PY} train.py config/train_small.py --max_iters=500"


async def test_the_wizard_offers_the_config_file_and_what_the_script_reads(tmp_path: Path) -> None:
    root = shape_repo(tmp_path, "nanogpt")
    app = AutoresearchApp(root, "setup", script="train.py", options={"tag": "t", "run_command": NANOGPT})
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_wizard(pilot)
        editable = screen.query_one("#field-editable_files", SelectionList).selected
        assert editable == ["config/train_small.py", "train.py"]
        assert screen.query_one("#field-readonly_files", SelectionList).selected == ["configurator.py"]


async def test_the_check_button_shows_the_metric_line_or_what_to_fix(tmp_path: Path) -> None:
    root = shape_repo(tmp_path, "makemore")
    options = {"tag": "t", "run_command": f"{PY} makemore.py"}
    app = AutoresearchApp(root, "setup", script="makemore.py", options=options)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_wizard(pilot)
        result = screen.query_one("#check-result", Label)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: "The check run printed" in str(result.render()), timeout=60)
        assert "val_loss = 2.42482" in str(result.render())
        await type_into(pilot, screen, "metric_grep", "^loss:")
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: "produced no val_loss matching '^loss:'" in str(result.render()), timeout=60)
        assert "fix the grep" in str(result.render())
    assert not (root / ".autoresearch.json").exists()


async def test_the_wizard_opens_on_an_existing_session_and_saves_what_changed(tmp_path: Path) -> None:
    root = shape_repo(tmp_path, "makemore")
    setup_session(root, "makemore.py", metric_name="val_loss", tag="t", run_command=f"{PY} makemore.py")
    before = json.loads((root / ".autoresearch.json").read_text())
    app = AutoresearchApp(root, "config")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_wizard(pilot)
        assert screen.query_one("#field-tag", Input).disabled and screen.query_one("#field-metric_name").disabled
        assert screen.query_one("#field-run_command", Input).value == f"{PY} makemore.py"
        await type_into(pilot, screen, "run_command", f"{PY} makemore.py -b 64")
        await type_into(pilot, screen, "time_budget_minutes", "2")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.return_value is not None or not app.is_running, timeout=30)
    assert app.return_value == 0
    config = load_config(root)
    assert (config.run_command, config.time_budget_minutes) == (f"{PY} makemore.py -b 64", 2)
    after = json.loads((root / ".autoresearch.json").read_text())
    unchanged = {k: v for k, v in after.items() if k not in ("run_command", "time_budget_minutes")}
    assert unchanged == {k: v for k, v in before.items() if k not in ("run_command", "time_budget_minutes")}


async def test_an_edit_the_engine_refuses_is_shown_and_nothing_is_saved(tmp_path: Path) -> None:
    root = shape_repo(tmp_path, "makemore")
    setup_session(root, "makemore.py", metric_name="val_loss", tag="t", run_command=f"{PY} makemore.py")
    before = (root / ".autoresearch.json").read_text()
    app = AutoresearchApp(root, "config")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_wizard(pilot)
        await type_into(pilot, screen, "run_command", "nopython makemore.py")
        await pilot.press("ctrl+s")
        form_error = screen.query_one("#form-error", Label)
        await wait_for(pilot, lambda: "starts nopython, which is not found" in str(form_error.render()), timeout=30)
        await pilot.press("escape")
    assert app.return_value == 1
    assert (root / ".autoresearch.json").read_text() == before
