"""A first run that says what to fix: files offered at setup, the interpreter check, `setup --check`,
`autoresearch config` (show, change, refuse), all through the real command in real repositories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from autoresearch.core.config import load_config
from autoresearch.core.first_run import related_files, top_level_imports

from tests.conftest import cli, git
from tests.test_knob_search import shape_repo

PY = sys.executable


def test_setup_offers_config_files_as_editable_and_what_the_script_reads_as_readonly(tmp_path: Path) -> None:
    root = shape_repo(tmp_path, "nanogpt")
    tracked = git(root, "ls-files").splitlines()
    command = "python train.py config/train_small.py --max_iters=500"
    assert related_files(root, "train.py", command, tracked) == (["config/train_small.py"], ["configurator.py"])
    constants = shape_repo(tmp_path, "constants")
    tracked = git(constants, "ls-files").splitlines()
    assert related_files(constants, "train.py", "python train.py", tracked) == ([], ["prepare.py", "program.md"])
    done = cli(constants, "setup", "train.py", "--yes", "--metric", "val_bpb", "--run-command", f"{PY} train.py")
    assert done.returncode == 0, done.stderr
    assert "Files: read-only context: prepare.py, program.md" in done.stdout
    assert load_config(constants).readonly_files == ["prepare.py", "program.md"]


def test_the_files_given_on_the_command_line_win_over_the_offer(tmp_path: Path) -> None:
    root = shape_repo(tmp_path, "constants")
    done = cli(root, "setup", "train.py", "--yes", "--metric", "val_bpb", "--readonly", "prepare.py")
    assert done.returncode == 0, done.stderr
    assert load_config(root).readonly_files == ["prepare.py"]


def test_top_level_imports_skip_relative_and_future_imports() -> None:
    text = "from __future__ import annotations\nimport os.path, torch\nfrom . import x\nfrom model import GPT\n"
    assert top_level_imports(text) == ["os", "torch", "model"]


def test_a_local_module_the_script_imports_is_found_beside_it(tmp_path: Path) -> None:
    root = shape_repo(tmp_path, "constants")  # train.py imports prepare, which sits beside it
    done = cli(root, "setup", "train.py", "--yes", "--metric", "val_bpb", "--run-command", f"{PY} train.py")
    assert done.returncode == 0, done.stderr


def test_setup_check_shows_the_metric_line_then_sets_up(tmp_path: Path) -> None:
    root = shape_repo(tmp_path, "makemore")
    done = cli(root, "setup", "makemore.py", "--yes", "--run-command", f"{PY} makemore.py", "--check")
    assert done.returncode == 0, done.stderr
    assert "The check run printed 'val_loss: 2.424820': val_loss = 2.42482 (matched by '^val_loss:')" in done.stdout
    assert load_config(root).metric_name == "val_loss"
    assert not (root / "run.log").exists()


def test_setup_check_of_a_failing_script_names_the_run_command_for_a_missing_module(tmp_path: Path) -> None:
    root = shape_repo(tmp_path, "makemore")
    (root / "makemore.py").write_text("import importlib\nimportlib.import_module('torch_not_here')\n")
    git(root, "commit", "-qam", "lazy import")
    args = ["--metric", "val_loss", "--run-command", f"{PY} makemore.py", "--check"]
    done = cli(root, "setup", "makemore.py", "--yes", *args)
    assert done.returncode == 1
    assert "the run command's python has no module torch_not_here" in done.stderr
    # No session exists yet, so the advice names setup's flag, not `autoresearch config` (which would fail).
    assert "fix the run command (`autoresearch setup makemore.py --run-command '...' --yes`" in done.stderr
    assert "autoresearch config" not in done.stderr
    assert done.stderr.rstrip().endswith("Nothing was set up.")
    assert not (root / ".autoresearch.json").exists()
    assert git(root, "branch", "--list", "autoresearch/*") == ""


def test_config_shows_the_settings_and_the_knobs(tmp_path: Path) -> None:
    root = shape_repo(tmp_path, "nanogpt")
    command = f"{PY} train.py config/train_small.py --max_iters=500 --eval_interval=10"
    assert cli(root, "setup", "train.py", "--yes", "--metric", "val_loss", "--run-command", command).returncode == 0
    shown = cli(root, "config")
    assert shown.returncode == 0, shown.stderr
    assert f"  run_command          {command}" in shown.stdout
    assert "  editable_files       train.py, config/train_small.py" in shown.stdout
    assert "- learning_rate = 0.0001 in config/train_small.py:5; overrides train.py:17 says 0.0006" in shown.stdout
    assert "- max_iters = 500 in the run command (--max_iters=500)" in shown.stdout
    left_out = "Measurement and bookkeeping, not knobs (leave them): eval_interval, log_interval, eval_iters"
    assert left_out in shown.stdout


def test_config_changes_one_setting_validated_as_setup_does(tmp_path: Path) -> None:
    root = shape_repo(tmp_path, "makemore")
    assert cli(root, "setup", "makemore.py", "--yes", "--metric", "val_loss", "--tag", "t").returncode == 0
    (root / "notes.py").write_text("X = 1\n")
    changes = [
        (["grep", "^val_loss:\\s"], "metric_grep: ^val_loss: -> ^val_loss:\\s (in .autoresearch.json"),
        (["budget", "0.5"], "time_budget_minutes: 5 -> 0.5"),
        (["run-command", f"{PY} makemore.py -b 64"], f"run_command: python makemore.py -> {PY} makemore.py -b 64"),
        (["model", "openai/gpt-4o-mini"], "model: (none) -> openai/gpt-4o-mini"),
        (["agent", "mutate"], "agent: llm -> mutate"),
        (["exclude", "*seed*,eval_*"], "knob_exclude: default -> *seed*, eval_*"),
    ]
    for args, said in changes:
        done = cli(root, "config", *args)
        assert done.returncode == 0 and said in done.stdout, (args, done.stdout, done.stderr)
    config = json.loads((root / ".autoresearch.json").read_text())
    assert config["time_budget_minutes"] == 0.5 and config["knob_exclude"] == ["*seed*", "eval_*"]
    assert config["tag"] == "t" and config["metric_name"] == "val_loss"
    untracked = cli(root, "config", "files", "makemore.py", "notes.py")
    assert untracked.returncode == 1
    assert untracked.stderr == (
        "autoresearch: notes.py is not committed to git; commit it first (git add notes.py && git commit), so "
        "experiments can be reset safely.\n"
    )
    unknown = cli(root, "config", "bogus", "1")
    assert unknown.returncode == 1 and unknown.stderr.startswith("autoresearch: There is no setting bogus; the")
    assert json.loads((root / ".autoresearch.json").read_text()) == config


def test_config_refuses_while_a_run_holds_the_session(tmp_path: Path) -> None:
    import fcntl
    import os

    root = shape_repo(tmp_path, "makemore")
    assert cli(root, "setup", "makemore.py", "--yes", "--metric", "val_loss").returncode == 0
    from autoresearch.core.gitops import Repo
    from autoresearch.core.session_lock import lock_path

    lock = lock_path(Repo(root))  # where a running loop holds it (the git directory)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242")
        done = cli(root, "config", "budget", "1")
    finally:
        os.close(fd)
    assert done.returncode == 1
    assert done.stderr.startswith("autoresearch: A run (pid 4242) is using this session; stop it first")
    assert load_config(root).time_budget_minutes == 5
