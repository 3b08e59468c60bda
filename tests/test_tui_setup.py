"""The setup wizard: defaults, inline validation by the engine's model, create as setup --yes does, cancel."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from autoresearch.core.config import load_config
from autoresearch.tui.app import AutoresearchApp
from autoresearch.tui.dialogs import ConfirmDialog
from autoresearch.tui.sample import make_repo
from autoresearch.tui.setup_screen import PROGRAM_FILE, SetupScreen
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, Label, RadioButton, SelectionList

OPTIONS = {"tag": "nov26", "created_at": "2025-11-26T10:00:00+00:00"}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    make_repo(root)
    return root


async def wait_for(pilot: Pilot[int], predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


async def open_wizard(pilot: Pilot[int]) -> SetupScreen:
    screen = pilot.app.screen
    assert isinstance(screen, SetupScreen)
    await wait_for(pilot, lambda: screen.defaults is not None)
    await pilot.pause()
    return screen


def error(screen: SetupScreen, key: str) -> str:
    label = screen.query_one(f"#error-{key}", Label)
    return str(label.render()) if label.display else ""


async def type_into(pilot: Pilot[int], screen: SetupScreen, key: str, text: str) -> None:
    field = screen.query_one(f"#field-{key}", Input)
    field.value = text
    await pilot.pause()


async def test_defaults_are_inferred_from_the_script_and_the_repository(repo: Path) -> None:
    app = AutoresearchApp(repo, "setup", script="train.py", options={"created_at": OPTIONS["created_at"]})
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_wizard(pilot)
        assert screen.query_one("#field-metric_name", Input).value == "val_loss"
        assert screen.query_one("#field-run_command", Input).value == "python train.py"
        assert screen.query_one("#field-tag", Input).value  # a date such as nov26
        assert "found 2 tracked files" in str(screen.query_one("#wizard-status").render())
        assert screen.query_one("#field-editable_files", SelectionList).selected == ["train.py"]
        assert screen.query_one("#field-readonly_files", SelectionList).selected == []
        assert screen.errors == {}
        preview = json.loads(str(screen.query_one("#preview").render()))
        assert preview["metric_grep"] == "^val_loss:" and preview["editable_files"] == ["train.py"]


async def test_invalid_values_are_explained_next_to_their_field(repo: Path) -> None:
    app = AutoresearchApp(repo, "setup", script="train.py", options=dict(OPTIONS))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_wizard(pilot)
        await type_into(pilot, screen, "tag", "my tag")
        assert error(screen, "tag").startswith("tag must be letters, digits")
        assert "my tag" in error(screen, "tag")
        assert screen.query_one("#field-tag", Input).has_class("-invalid")
        assert "Fix the fields" in str(screen.query_one("#preview").render())
        await type_into(pilot, screen, "tag", "nov26")
        assert error(screen, "tag") == ""

        await type_into(pilot, screen, "time_budget_minutes", "abc")
        assert "time_budget_minutes must be a number" in error(screen, "time_budget_minutes")
        await type_into(pilot, screen, "time_budget_minutes", "20")
        assert "at least time_budget_minutes" in error(screen, "timeout_minutes")
        await type_into(pilot, screen, "time_budget_minutes", "5")
        await type_into(pilot, screen, "metric_grep", "^val_loss:(")
        assert "regular expression" in error(screen, "metric_grep")
        await type_into(pilot, screen, "metric_grep", "")
        await type_into(pilot, screen, "workers", "3")
        await type_into(pilot, screen, "devices", "0,1")
        assert "give one device per worker" in error(screen, "devices")
        await type_into(pilot, screen, "devices", "0,1,2")
        assert error(screen, "devices") == ""
        await type_into(pilot, screen, "workers", "1")
        await type_into(pilot, screen, "devices", "")

        screen.query_one("#field-editable_files", SelectionList).deselect_all()
        await pilot.pause()
        assert "at least one file" in error(screen, "editable_files")
        screen.query_one("#field-editable_files", SelectionList).select("train.py")
        screen.query_one("#field-readonly_files", SelectionList).select("train.py")
        await pilot.pause()
        assert "either editable or read-only" in error(screen, "readonly_files")
        screen.query_one("#field-readonly_files", SelectionList).deselect("train.py")

        screen.query_one("#agent-llm", RadioButton).value = True
        await pilot.pause()
        assert "needs a model" in error(screen, "model")
        await type_into(pilot, screen, "model", "openai/gpt-4o-mini")
        assert error(screen, "model") == ""
        screen.query_one("#agent-mutate", RadioButton).value = True
        await pilot.pause()

        await type_into(pilot, screen, "max_experiments", "-1")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is screen  # nothing is created while a field is invalid
        assert screen.focused is screen.query_one("#field-max_experiments", Input)
        assert "1 field(s) need fixing" in str(screen.query_one("#form-error", Label).render())
    assert not (repo / ".autoresearch.json").exists()


async def test_model_hint_names_the_missing_key_variable(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    app = AutoresearchApp(repo, "setup", script="train.py", options=dict(OPTIONS))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_wizard(pilot)
        screen.query_one("#agent-llm", RadioButton).value = True
        await type_into(pilot, screen, "model", "openai/gpt-4o-mini")
        assert "OPENAI_API_KEY is not set" in str(screen.query_one("#model-hint", Label).render())
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        await type_into(pilot, screen, "model", "gpt-4o-mini")
        assert "OPENAI_API_KEY is set" in str(screen.query_one("#model-hint", Label).render())


async def test_create_makes_the_session_as_setup_yes_does_with_a_program_md(repo: Path) -> None:
    app = AutoresearchApp(repo, "setup", script="train.py", options=dict(OPTIONS))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_wizard(pilot)
        await type_into(pilot, screen, "time_budget_minutes", "2")
        await type_into(pilot, screen, "timeout_minutes", "4")
        screen.query_one("#field-readonly_files", SelectionList).select("README.md")
        screen.query_one("#write-program", Checkbox).value = True
        await pilot.pause()
        await type_into(pilot, screen, "constraints", "stay under 8 GB of GPU memory")
        preview = json.loads(str(screen.query_one("#preview").render()))
        assert preview["readonly_files"] == ["README.md", PROGRAM_FILE]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert app.setup_result is not None and app.setup_result.program_written
        await pilot.press("n")  # Later
    assert app.return_value == 0
    assert app.farewell == "Session nov26 is ready; start it with: autoresearch run"
    config = load_config(repo)
    assert (config.tag, config.branch, config.time_budget_minutes, config.timeout_minutes) == (
        "nov26",
        "autoresearch/nov26",
        2,
        4,
    )
    assert config.readonly_files == ["README.md", PROGRAM_FILE]
    assert git(repo, "branch", "--show-current").strip() == "autoresearch/nov26"
    assert (repo / "results.tsv").read_text().startswith("commit\tval_loss\tmemory_gb\tduration_s\tstatus")
    program = (repo / PROGRAM_FILE).read_text()
    assert "stay under 8 GB of GPU memory" in program and "- train.py" in program
    assert "results.tsv" in (repo / ".gitignore").read_text()


async def test_cancel_changes_nothing(repo: Path) -> None:
    before = (git(repo, "branch", "--list"), git(repo, "status", "--porcelain"), sorted(p.name for p in repo.iterdir()))
    app = AutoresearchApp(repo, "setup", script="train.py", options=dict(OPTIONS))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_wizard(pilot)
        await pilot.press("escape")
    assert app.return_value == 1
    assert app.farewell.startswith("Setup cancelled; nothing was written.")
    after = (git(repo, "branch", "--list"), git(repo, "status", "--porcelain"), sorted(p.name for p in repo.iterdir()))
    assert after == before


async def test_a_refusal_of_the_engine_is_shown_as_one_sentence(repo: Path) -> None:
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# edited\n")
    app = AutoresearchApp(repo, "setup", script="train.py", options=dict(OPTIONS))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_wizard(pilot)
        await pilot.press("ctrl+s")
        form_error = screen.query_one("#form-error", Label)
        await wait_for(pilot, lambda: "uncommitted changes" in str(form_error.render()))
        assert app.screen is screen
    assert not (repo / ".autoresearch.json").exists()
    assert git(repo, "branch", "--show-current").strip() == "main"


async def test_the_sandbox_tick_sets_sandbox_and_setup_sandbox_ticks_it(repo: Path) -> None:
    app = AutoresearchApp(repo, "setup", script="train.py", options={**OPTIONS, "sandbox": True})
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_wizard(pilot)
        tick = screen.query_one("#field-sandbox", Checkbox)
        assert tick.value
        assert json.loads(str(screen.query_one("#preview").render()))["sandbox"] is True
        tick.value = False
        await pilot.pause()
        assert json.loads(str(screen.query_one("#preview").render()))["sandbox"] is False


async def test_the_notify_field_gives_the_list_of_urls(repo: Path) -> None:
    app = AutoresearchApp(repo, "setup", script="train.py", options=dict(OPTIONS))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_wizard(pilot)
        assert screen.query_one("#field-notify", Input).value == ""
        await type_into(pilot, screen, "notify", "https://hooks.example/a  tgram://bot/chat")
        preview = json.loads(str(screen.query_one("#preview").render()))
        assert preview["notify"] == ["https://hooks.example/a", "tgram://bot/chat"]
        assert screen.errors == {}
