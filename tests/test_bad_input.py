"""Bad input: every case asserts the exact sentence the user sees, the exit status, no traceback, no hang
and no lost data. The same cases make the table of docs/RELIABILITY.md (`python -m tests.test_bad_input`
prints it; a test checks the document holds it unchanged)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from autoresearch.core import events as ev
from autoresearch.core.config import load_config
from autoresearch.core.llm_agent import LLMProposer
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.provider import RetryPolicy, load_litellm
from autoresearch.core.results import read_results
from autoresearch.core.setup import setup_session

from tests.conftest import FIXTURES, cli, git
from tests.llm_server import Reply, ScriptedLLMServer

PY = sys.executable
TAG = "bad"
DOC = Path(__file__).parent.parent / "docs" / "RELIABILITY.md"
UNCHANGED = "nothing changed: files, refs and HEAD as before"


@dataclass(frozen=True)
class Case:
    id: str
    given: str
    says: str
    """Exactly what the user reads: the whole of stderr for a failing command, a line of stdout for one that
    goes on, the event's line for a loop-level case. <repo>, <url>, <bash>, <commit> and <n> stand for what
    varies: the repository's path, the model server's URL, bash's path, a short commit hash, a number."""
    action: Any = None
    """What makes the case: a config edit, the arguments, a repository builder, a script, the model's replies."""
    exit: int | None = 1
    """The command's exit status; None for a loop-level case (an event, seen in the app or the headless log)."""
    outcome: str = UNCHANGED
    options: dict[str, Any] = field(default_factory=dict)


def cases(group: list[Case]) -> Any:
    return pytest.mark.parametrize("case", group, ids=[c.id for c in group])


def expect(case: Case, text: str, **values: str) -> None:
    pattern = re.escape(case.says)
    for name, value in values.items():
        pattern = pattern.replace(re.escape(f"<{name}>"), re.escape(value))
    pattern = pattern.replace(re.escape("<commit>"), "[0-9a-f]{7}").replace(re.escape("<n>"), r"\d+")
    assert re.fullmatch(pattern, text), f"{case.id}: expected\n  {case.says}\ngot\n  {text}"


def said(case: Case, done: subprocess.CompletedProcess[str], **values: str) -> None:
    """The command's exit status and the sentence: all of stderr when it failed, a stdout line when it went on."""
    assert "Traceback" not in done.stderr + done.stdout
    assert done.returncode == case.exit, f"{case.id}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    if case.exit == 0:
        lines = done.stdout.splitlines()
        pattern = case.says
        assert any(_matches(pattern, line, values) for line in lines), f"{case.id}: {pattern!r} not in {lines}"
    else:
        expect(case, done.stderr.removesuffix("\n"), **values)


def _matches(says: str, line: str, values: dict[str, str]) -> bool:
    try:
        expect(Case("", "", says), line, **values)
    except AssertionError:
        return False
    return True


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file outside .git (the run lock aside), the refs and HEAD: what must not change on a refusal."""
    state: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel == ".git" or rel.startswith(".git/") or rel == ".autoresearch/lock" or not path.is_file():
            continue
        state[rel] = path.read_bytes()
    if (root / ".git").exists():
        refs = subprocess.run(["git", "for-each-ref"], cwd=root, capture_output=True, text=True).stdout
        head = subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=root, capture_output=True, text=True)
        status = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
        state["<git>"] = (refs + head.stdout + status.stdout).encode()
    return state


def new_repo(root: Path, script: str | None = None) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    if script is None:
        shutil.copy(FIXTURES / "train_tiny.py", root / "train.py")
    else:
        (root / "train.py").write_text(script)
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "initial")
    return root


def new_session(root: Path, script: str | None = None, **options: Any) -> Path:
    new_repo(root, script)
    values: dict[str, Any] = {
        "metric_name": "val_loss",
        "tag": TAG,
        "run_command": f"{PY} train.py",
        "time_budget_minutes": 0.05,
        "timeout_minutes": 0.5,
        "max_experiments": 1,
        **options,
    }
    setup_session(root, "train.py", **values)
    return root


# Configs: .autoresearch.json edited by hand, then `autoresearch run --headless`.

Edit = Callable[[dict[str, Any]], Any]


def _set(**values: Any) -> Edit:
    return lambda data: {**data, **values}


def _drop(key: str) -> Edit:
    return lambda data: {k: v for k, v in data.items() if k != key}


CONFIG_CASES: list[Case] = [
    Case(
        "config-wrong-type",
        'time_budget_minutes: "five"',
        "autoresearch: In .autoresearch.json, time_budget_minutes must be a number of minutes above 0 "
        '(fractions such as 0.5 are fine) (got "five").',
        action=_set(time_budget_minutes="five"),
    ),
    Case(
        "config-bool-for-number",
        "max_experiments: true",
        "autoresearch: In .autoresearch.json, max_experiments must be a whole number, 0 or more (0 means no cap) "
        "(got true).",
        action=_set(max_experiments=True),
    ),
    Case(
        "config-string-for-list",
        'editable_files: "train.py"',
        "autoresearch: In .autoresearch.json, editable_files must be a list of file paths inside the repository "
        '(got "train.py").',
        action=_set(editable_files="train.py"),
    ),
    Case(
        "config-unknown-direction",
        'metric_direction: "up"',
        'autoresearch: In .autoresearch.json, metric_direction must be "lower" or "higher" (got "up").',
        action=_set(metric_direction="up"),
    ),
    Case(
        "config-negative-timeout",
        "timeout_minutes: -1",
        "autoresearch: In .autoresearch.json, timeout_minutes must be a number of minutes above 0 and at least "
        "time_budget_minutes (got -1).",
        action=_set(timeout_minutes=-1),
    ),
    Case(
        "config-timeout-below-budget",
        "timeout_minutes: 1 with time_budget_minutes: 5",
        "autoresearch: In .autoresearch.json, timeout_minutes (1) must be at least time_budget_minutes (5); "
        "raise the timeout or lower the budget.",
        action=_set(timeout_minutes=1, time_budget_minutes=5),
    ),
    Case(
        "config-negative-min-gain",
        "min_gain: -0.01",
        "autoresearch: In .autoresearch.json, min_gain must be a number, 0 or more: the smallest gain in the metric "
        "worth keeping (got -0.01).",
        action=_set(min_gain=-0.01),
    ),
    Case(
        "config-noise-sigmas-not-a-number",
        'noise_sigmas: "two"',
        "autoresearch: In .autoresearch.json, noise_sigmas must be a number of standard deviations, 0 or more "
        '(e.g. 2) (got "two").',
        action=_set(noise_sigmas="two"),
    ),
    Case(
        "config-unknown-judging",
        'judging: "strict"',
        'autoresearch: In .autoresearch.json, judging must be "noise" (keep only gains clear of the noise) or '
        '"greedy" (keep any gain) (got "strict").',
        action=_set(judging="strict"),
    ),
    Case(
        "config-bad-regex",
        'metric_grep: "(["',
        "autoresearch: In .autoresearch.json, metric_grep must be a regular expression that compiles, "
        'e.g. ^val_loss: (got "([").',
        action=_set(metric_grep="(["),
    ),
    Case(
        "config-missing-key",
        "no metric_name",
        "autoresearch: In .autoresearch.json, the key metric_name is missing; add it (metric_name must not be "
        "empty: name the metric the script prints, e.g. val_loss).",
        action=_drop("metric_name"),
    ),
    Case(
        "config-bad-tag",
        'tag: "a b"',
        "autoresearch: In .autoresearch.json, tag must be letters, digits, '.', '_' or '-' and start with a "
        'letter or digit (e.g. nov26) (got "a b").',
        action=_set(tag="a b"),
    ),
    Case(
        "config-not-an-object",
        "the file holds [1]",
        "autoresearch: .autoresearch.json must hold a JSON object with the session's keys; run autoresearch setup.",
        action=lambda data: [1],
    ),
    Case(
        "config-invalid-json",
        'the file holds {"tag":',
        "autoresearch: .autoresearch.json is not valid JSON (line 1, column 8: Expecting value); fix or recreate it.",
        action=lambda data: b'{"tag":',
    ),
    Case(
        "config-not-utf8",
        "the file holds the bytes ff fe",
        "autoresearch: .autoresearch.json cannot be read ('utf-8' codec can't decode byte 0xff in position 0: "
        "invalid start byte); check its permissions and encoding.",
        action=lambda data: b"\xff\xfe",
    ),
    Case(
        "config-editable-outside",
        'editable_files: ["../outside.py"] (the file exists)',
        "stopped: In .autoresearch.json, the editable file ../outside.py is outside the repository <repo>; "
        "list files inside it.",
        action=_set(editable_files=["../outside.py"]),
    ),
    Case(
        "config-readonly-outside",
        'readonly_files: ["/etc/hostname"]',
        "stopped: In .autoresearch.json, the readonly file /etc/hostname is outside the repository <repo>; "
        "list files inside it.",
        action=_set(readonly_files=["/etc/hostname"]),
    ),
    Case(
        "config-editable-missing",
        'editable_files: ["model.py"] (no such file)',
        "stopped: In .autoresearch.json, the editable file model.py does not exist; fix editable_files or "
        "restore the file.",
        action=_set(editable_files=["model.py"]),
    ),
    Case(
        "config-editable-untracked",
        'editable_files: ["notes.py"] (a file git does not track)',
        "stopped: notes.py is not committed to git; commit it first (git add notes.py && git commit), so "
        "experiments can be reset safely.",
        action=_set(editable_files=["notes.py"]),
    ),
]


@cases(CONFIG_CASES)
def test_config(tmp_path: Path, case: Case) -> None:
    root = new_session(tmp_path / "project")
    (tmp_path / "outside.py").write_text("X = 1\n")
    (root / "notes.py").write_text("X = 1\n")
    path = root / ".autoresearch.json"
    changed = case.action(json.loads(path.read_text()))
    path.write_bytes(changed if isinstance(changed, bytes) else json.dumps(changed, indent=2).encode())
    before = snapshot(root)
    done = cli(root, "run", "--headless", timeout=60)
    said(case, done, repo=str(root))
    assert snapshot(root) == before


# Command-line misuse.

CLI_CASES: list[Case] = [
    Case(
        "cli-unknown-command",
        "autoresearch frobnicate",
        "autoresearch: unknown command 'frobnicate' (the commands are setup, run, watch, serve, status, analyze, "
        "ablate, demo, config); see autoresearch --help.",
        exit=2,
        action=["frobnicate"],
    ),
    Case(
        "cli-missing-script",
        "autoresearch setup",
        "autoresearch setup: the training script is missing (e.g. autoresearch setup train.py); "
        "see autoresearch setup --help.",
        exit=2,
        action=["setup"],
    ),
    Case(
        "cli-budget-not-a-number",
        "setup train.py --yes --budget abc",
        "autoresearch setup: --budget needs a number (got 'abc'); see autoresearch setup --help.",
        exit=2,
        action=["setup", "train.py", "--yes", "--budget", "abc"],
    ),
    Case(
        "cli-budget-negative",
        "setup train.py --yes --metric val_loss --budget -1",
        "autoresearch: time_budget_minutes must be a number of minutes above 0 (fractions such as 0.5 are fine) "
        "(got -1.0).",
        action=["setup", "train.py", "--yes", "--metric", "val_loss", "--budget", "-1"],
    ),
    Case(
        "cli-min-gain-not-a-number",
        "setup train.py --yes --min-gain abc",
        "autoresearch setup: --min-gain needs a number (got 'abc'); see autoresearch setup --help.",
        exit=2,
        action=["setup", "train.py", "--yes", "--min-gain", "abc"],
    ),
    Case(
        "cli-noise-sigmas-negative",
        "setup train.py --yes --metric val_loss --noise-sigmas -1",
        "autoresearch: noise_sigmas must be a number of standard deviations, 0 or more (e.g. 2) (got -1.0).",
        action=["setup", "train.py", "--yes", "--metric", "val_loss", "--noise-sigmas", "-1"],
    ),
    Case(
        "cli-baseline-runs-zero",
        "setup train.py --yes --metric val_loss --baseline-runs 0",
        "autoresearch: baseline_runs must be a whole number above 0 (runs of the baseline that measure the noise) "
        "(got 0).",
        action=["setup", "train.py", "--yes", "--metric", "val_loss", "--baseline-runs", "0"],
    ),
    Case(
        "cli-budget-nan",
        "setup train.py --yes --metric val_loss --budget nan",
        "autoresearch: time_budget_minutes must be a number of minutes above 0 (fractions such as 0.5 are fine) "
        "(got NaN).",
        action=["setup", "train.py", "--yes", "--metric", "val_loss", "--budget", "nan"],
    ),
    Case(
        "cli-negative-timeout",
        "setup train.py --yes --metric val_loss --timeout -1",
        "autoresearch: timeout_minutes must be a number of minutes above 0 and at least time_budget_minutes "
        "(got -1.0).",
        action=["setup", "train.py", "--yes", "--metric", "val_loss", "--timeout", "-1"],
    ),
    Case(
        "cli-unknown-direction",
        "setup train.py --yes --direction up",
        "autoresearch setup: --direction must be one of lower, higher (got 'up'); see autoresearch setup --help.",
        exit=2,
        action=["setup", "train.py", "--yes", "--direction", "up"],
    ),
    Case(
        "cli-not-a-whole-number",
        "setup train.py --yes --max-experiments 2.5",
        "autoresearch setup: --max-experiments needs a whole number (got '2.5'); see autoresearch setup --help.",
        exit=2,
        action=["setup", "train.py", "--yes", "--max-experiments", "2.5"],
    ),
    Case(
        "cli-bad-regex",
        "setup train.py --yes --metric val_loss --grep '('",
        'autoresearch: metric_grep must be a regular expression that compiles, e.g. ^val_loss: (got "(").',
        action=["setup", "train.py", "--yes", "--metric", "val_loss", "--grep", "("],
    ),
    Case(
        "cli-unknown-flag",
        "autoresearch run --bogus",
        "autoresearch run: unknown option --bogus; see autoresearch run --help.",
        exit=2,
        action=["run", "--bogus"],
    ),
    Case(
        "cli-setting-given-to-run",
        "autoresearch run --workers 2",
        "autoresearch run: --workers is a session setting, not an option of run: change it with autoresearch config "
        "workers 2; see autoresearch run --help.",
        exit=2,
        action=["run", "--workers", "2"],
    ),
    Case(
        "cli-misspelt-flag",
        "setup train.py --yse",
        "autoresearch setup: unknown option --yse (did you mean --yes?); see autoresearch setup --help.",
        exit=2,
        action=["setup", "train.py", "--yse"],
    ),
    Case(
        "cli-script-missing",
        "setup nothere.py --yes",
        "autoresearch: The script nothere.py does not exist; check the path (relative to here or to <repo>).",
        action=["setup", "nothere.py", "--yes"],
    ),
    Case(
        "cli-script-outside",
        "setup /etc/hostname --yes",
        "autoresearch: The script /etc/hostname is outside the repository <repo>; list files inside it.",
        action=["setup", "/etc/hostname", "--yes"],
    ),
    Case(
        "cli-editable-outside",
        "setup train.py --yes --metric val_loss --editable ../outside.py",
        "autoresearch: The editable file ../outside.py is outside the repository <repo>; list files inside it.",
        action=["setup", "train.py", "--yes", "--metric", "val_loss", "--editable", "../outside.py"],
    ),
    Case(
        "cli-setup-without-terminal",
        "setup train.py (no --yes, no terminal)",
        "autoresearch: setup opens a wizard, which needs a terminal; pass --yes to take the flags as they are.",
        action=["setup", "train.py"],
    ),
    Case(
        "cli-run-without-session",
        "autoresearch run --headless (no setup)",
        "autoresearch: No session here: .autoresearch.json is missing in <repo>; run `autoresearch setup SCRIPT` "
        "first.",
        action=["run", "--headless"],
    ),
    Case(
        "cli-status-without-session",
        "autoresearch status (no setup)",
        "autoresearch: No session here: .autoresearch.json is missing in <repo>; run `autoresearch setup SCRIPT` "
        "first.",
        action=["status"],
    ),
    Case(
        "cli-no-such-directory",
        "autoresearch -C /no/such/dir status",
        "autoresearch: /no/such/dir is not a directory; pass -C with the path of your repository.",
        action=["-C", "/no/such/dir", "status"],
    ),
]


@cases(CLI_CASES)
def test_command_line(tmp_path: Path, case: Case) -> None:
    root = new_repo(tmp_path / "project")
    (tmp_path / "outside.py").write_text("X = 1\n")
    before = snapshot(root)
    done = cli(root, *case.action, timeout=60)
    said(case, done, repo=str(root))
    assert snapshot(root) == before


# Repositories.

SETUP = ["setup", "train.py", "--yes", "--metric", "val_loss", "--tag", TAG]


def _not_git(root: Path) -> list[str]:
    root.mkdir()
    shutil.copy(FIXTURES / "train_tiny.py", root / "train.py")
    return SETUP


def _no_commits(root: Path) -> list[str]:
    _not_git(root)
    git(root, "init", "-q", "-b", "main")
    return SETUP


def _bare(root: Path) -> list[str]:
    subprocess.run(["git", "init", "-q", "--bare", str(root)], check=True)
    return SETUP


def _dirty(root: Path) -> list[str]:
    new_repo(root)
    (root / "train.py").write_text((root / "train.py").read_text() + "# my edit\n")
    return SETUP


def _detached(root: Path) -> list[str]:
    new_repo(root)
    git(root, "checkout", "-q", "--detach")
    return SETUP


def _untracked_script(root: Path) -> list[str]:
    new_repo(root)
    shutil.copy(FIXTURES / "train_tiny.py", root / "other.py")
    return ["setup", "other.py", "--yes", "--metric", "val_loss", "--tag", TAG]


def _dirty_at_run(root: Path) -> list[str]:
    new_session(root)
    (root / "train.py").write_text((root / "train.py").read_text() + "# my edit\n")
    return ["run", "--headless"]


def _branch_deleted(root: Path) -> list[str]:
    new_session(root)
    git(root, "checkout", "-q", "main")
    git(root, "branch", "-q", "-D", f"autoresearch/{TAG}")
    return ["run", "--headless"]


def _results_garbled(root: Path) -> list[str]:
    new_session(root)
    (root / "results.tsv").write_text("this is not a results file\n")
    return ["run", "--headless"]


def _imports_missing_module(root: Path) -> list[str]:
    new_repo(root, "import no_such_module_xyz\n" + (FIXTURES / "train_tiny.py").read_text())
    return [*SETUP, "--run-command", f"{PY} train.py"]


def _no_interpreter(root: Path) -> list[str]:
    new_repo(root)
    return [*SETUP, "--run-command", "python9 train.py"]


def _check_no_match(root: Path) -> list[str]:
    new_repo(root)
    return [*SETUP, "--run-command", f"{PY} train.py", "--grep", "^loss:", "--check"]


def _session_then(*args: str) -> Callable[[Path], list[str]]:
    def build(root: Path) -> list[str]:
        new_session(root)
        return ["config", *args]

    return build


REPO_CASES: list[Case] = [
    Case(
        "repo-setup-missing-module",
        "setup when the run command's python lacks a module train.py imports",
        "autoresearch: The run command `<python> train.py` runs <python>, which cannot import no_such_module_xyz "
        "(train.py imports it); pass --run-command with the python of your training environment, or install it "
        "there.",
        action=_imports_missing_module,
    ),
    Case(
        "repo-setup-no-interpreter",
        "setup --run-command 'python9 train.py' (no such program)",
        "autoresearch: The run command `python9 train.py` starts python9, which is not found; pass --run-command "
        "with a python that exists.",
        action=_no_interpreter,
    ),
    Case(
        "repo-setup-check-no-match",
        "setup --check --grep '^loss:' when the script prints val_loss: 3.461812",
        "autoresearch: The check run produced no val_loss matching '^loss:' (last line of run.log: val_loss: "
        "3.461812); fix the grep (`autoresearch setup train.py --grep REGEX --yes` or --metric NAME) or make the "
        "script print it, then run again. Nothing was set up.",
        action=_check_no_match,
    ),
    Case(
        "repo-config-bad-value",
        "autoresearch config budget 0",
        "autoresearch: time_budget_minutes must be a number of minutes above 0 (fractions such as 0.5 are fine) "
        '(got "0").',
        action=_session_then("budget", "0"),
    ),
    Case(
        "repo-config-fixed-key",
        "autoresearch config metric_name loss",
        "autoresearch: metric_name identifies the session and cannot change; start a new session with autoresearch "
        "setup instead.",
        action=_session_then("metric_name", "loss"),
    ),
    Case(
        "repo-config-run-command",
        "autoresearch config run_command 'nopython train.py'",
        "autoresearch: The run command `nopython train.py` starts nopython, which is not found; pass --run-command "
        "with a program that exists.",
        action=_session_then("run_command", "nopython train.py"),
    ),
    Case(
        "repo-not-git",
        "setup in a folder that is not a git repository",
        "autoresearch: <repo> is not inside a git repository; run `git init` and commit your training code first.",
        action=_not_git,
    ),
    Case(
        "repo-no-commits",
        "setup right after git init",
        "autoresearch: The repository has no commits yet; commit your training code first (git commit).",
        action=_no_commits,
    ),
    Case(
        "repo-bare",
        "setup in a bare repository",
        "autoresearch: <repo> is a bare git repository; clone it (git clone) and run autoresearch in the clone.",
        action=_bare,
    ),
    Case(
        "repo-dirty-setup",
        "setup with train.py edited and not committed",
        "autoresearch: The working tree has uncommitted changes (train.py); commit or stash them first (git stash).",
        outcome=UNCHANGED + "; the edit is still there",
        action=_dirty,
    ),
    Case(
        "repo-detached-setup",
        "setup on a detached HEAD",
        "autoresearch: HEAD is detached; check out a branch first (git checkout main).",
        action=_detached,
    ),
    Case(
        "repo-untracked-script",
        "setup other.py, a file git does not track",
        "autoresearch: other.py is not committed to git; commit it first (git add other.py && git commit), so "
        "experiments can be reset safely.",
        action=_untracked_script,
    ),
    Case(
        "repo-dirty-run",
        "run with train.py edited and not committed",
        "stopped: The working tree has uncommitted changes (train.py); commit or stash them (git stash) and run again.",
        outcome=UNCHANGED + "; the edit is still there",
        action=_dirty_at_run,
    ),
    Case(
        "repo-branch-deleted",
        "run after the session's branch was deleted",
        "stopped: The session's branch autoresearch/bad does not exist; run `autoresearch setup SCRIPT` to start anew.",
        action=_branch_deleted,
    ),
    Case(
        "repo-results-garbled",
        "run with a results.tsv that has no header",
        "stopped: results.tsv does not start with the header commit<TAB><metric><TAB>memory_gb<TAB>...; check "
        "that it is the session's results file.",
        action=_results_garbled,
    ),
]


@cases(REPO_CASES)
def test_repository(tmp_path: Path, case: Case) -> None:
    root = tmp_path / "project"
    args = case.action(root)
    before = snapshot(root)
    done = cli(root, *args, timeout=60)
    said(case, done, repo=str(root), python=PY)
    assert snapshot(root) == before


def test_detached_head_at_run_goes_back_to_the_branch(tmp_path: Path) -> None:
    root = new_session(tmp_path / "project")
    git(root, "checkout", "-q", "--detach")
    done = cli(root, "run", "--headless", timeout=60)
    said(DETACHED_AT_RUN, done)
    assert git(root, "branch", "--show-current") == f"autoresearch/{TAG}"
    assert [r.status for r in read_results(root / "results.tsv").rows] == ["baseline"]


DETACHED_AT_RUN = Case(
    "repo-detached-run",
    "run on a detached HEAD (clean tree)",
    f"checked out autoresearch/{TAG}",
    exit=0,
    outcome="the session's branch is checked out and the run goes on",
)


# Training scripts: what the baseline run of each prints.

NO_ROW = "no row (a failed baseline does not count toward max_experiments); its log stays in .autoresearch/"

SCRIPT_CASES: list[Case] = [
    Case(
        "script-prints-nothing",
        "the script prints nothing",
        "stopped: The baseline run produced no val_loss matching '^val_loss:' (run.log is empty); fix the grep "
        "(`autoresearch config metric_grep REGEX`) or make the script print it, then run again.",
        outcome=NO_ROW,
        action="pass\n",
    ),
    Case(
        "script-prints-nan",
        "the script prints val_loss: nan",
        "stopped: The baseline run printed val_loss nan, which is not a finite number (last line of run.log: "
        "val_loss: nan); fix the training (a NaN or inf usually means it diverged) and run again.",
        outcome=NO_ROW,
        action='print("val_loss: nan")\n',
    ),
    Case(
        "script-prints-metric-twice",
        "the script prints val_loss: 2.0, then val_loss: 1.5",
        "#1 <commit> 1.500000 baseline baseline (2 runs, noise 0, no seed varies)",
        exit=0,
        outcome="the last value counts: baseline row 1.500000",
        action='print("val_loss: 2.0")\nprint("val_loss: 1.5")\n',
    ),
    Case(
        "script-10mb-line",
        "the script prints one 10 MB line, then val_loss: 1.25",
        "#1 <commit> 1.250000 baseline baseline (2 runs, noise 0, no seed varies)",
        exit=0,
        outcome="baseline row 1.250000; the whole line is in run.log",
        action='import sys\nsys.stdout.write("x" * 10_000_000 + "\\n")\nprint("val_loss: 1.25")\n',
    ),
    Case(
        "script-binary-output",
        "the script prints every byte value (NUL included), then val_loss: 1.25",
        "#1 <commit> 1.250000 baseline baseline (2 runs, noise 0, no seed varies)",
        exit=0,
        outcome="baseline row 1.250000",
        action='import sys\nsys.stdout.buffer.write(bytes(range(256)) * 64 + b"\\n")\nsys.stdout.flush()\n'
        'print("val_loss: 1.25")\n',
    ),
    Case(
        "script-not-utf8",
        "the script prints Latin-1 text (caf\\xe9), then val_loss: 1.25",
        "#1 <commit> 1.250000 baseline baseline (2 runs, noise 0, no seed varies)",
        exit=0,
        outcome="baseline row 1.250000",
        action='import sys\nsys.stdout.buffer.write("caf\\xe9 \\xff\\n".encode("latin-1"))\nsys.stdout.flush()\n'
        'print("val_loss: 1.25")\n',
    ),
    Case(
        "script-exit-0-without-metric",
        "the script prints 'training done' and exits 0",
        "stopped: The baseline run produced no val_loss matching '^val_loss:' (last line of run.log: training "
        "done); fix the grep (`autoresearch config metric_grep REGEX`) or make the script print it, then run again.",
        outcome=NO_ROW,
        action='print("training done")\n',
    ),
    Case(
        "script-fails-after-metric",
        "the script prints val_loss: 1.25, then exits with status 3",
        "stopped: The baseline run failed with exit status 3 after printing val_loss 1.25 (last line of run.log: "
        "val_loss: 1.25); fix the script and run again (a run counts only when it exits with status 0).",
        outcome=NO_ROW
        + "; a later experiment that does this is a crash marked (exit status 3 after printing val_loss)",
        action='import sys\nprint("val_loss: 1.25")\nsys.exit(3)\n',
    ),
    Case(
        "script-raises",
        "the script raises an exception",
        "stopped: The baseline run failed with exit status 1 (last line of run.log: RuntimeError: out of memory); "
        "fix the script and run again (a run counts only when it exits with status 0).",
        outcome=NO_ROW,
        action='raise RuntimeError("out of memory")\n',
    ),
    Case(
        "script-hangs",
        "the script sleeps past timeout_minutes (0.05)",
        "stopped: The baseline run hit the 0.05 min timeout (last line of run.log: started <n>); raise "
        "timeout_minutes (`autoresearch config timeout_minutes N`) or shorten the run, then run again.",
        outcome=NO_ROW + "; the script's process is gone",
        action='import os, time\nprint("started", os.getpid(), flush=True)\ntime.sleep(60)\n',
        options={"time_budget_minutes": 0.02, "timeout_minutes": 0.05},  # 3 s: time to print, even on a loaded machine
    ),
    Case(
        "script-command-not-found",
        "run_command, edited in .autoresearch.json after setup, names a program that does not exist (setup refuses it)",
        "stopped: The baseline run failed with exit status 127: the run command cannot start (last line of run.log: "
        "<bash>: line 1: no-such-python: command not found); fix the run command (`autoresearch config run_command "
        "'...'`; now `no-such-python train.py`), then run again.",
        outcome=NO_ROW,
        action="pass\n",
        options={"run_command": "no-such-python train.py"},
    ),
]


@cases(SCRIPT_CASES)
def test_training_script(tmp_path: Path, case: Case) -> None:
    script = case.action
    options = dict(case.options)
    command = options.pop("run_command", None)
    root = new_session(tmp_path / "project", script, **options)
    if command is not None:  # setup itself refuses a program that does not exist: the user edited the file
        config = json.loads((root / ".autoresearch.json").read_text())
        (root / ".autoresearch.json").write_text(json.dumps({**config, "run_command": command}))
    head = git(root, "rev-parse", "HEAD")
    started = time.monotonic()
    done = cli(root, "run", "--headless", timeout=90)
    assert time.monotonic() - started < 50, "a hung script is ended at its timeout, not after its 60 s sleep"
    said(case, done, bash=shutil.which("bash") or "bash")
    rows = read_results(root / "results.tsv").rows
    if case.exit:
        assert rows == ()
    else:
        assert len(rows) == 1 and rows[0].commit == head[:7] and rows[0].status == "baseline"
    assert git(root, "rev-parse", "HEAD") == head
    assert git(root, "status", "--porcelain") == ""
    assert (root / "train.py").read_text() == script
    log = root / "run.log"
    if case.id == "script-10mb-line":
        assert log.stat().st_size > 10_000_000
    if case.id == "script-hangs":
        pid = int(log.read_text().split()[-1])
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_failing_experiment_that_printed_the_metric_is_a_crash(tmp_path: Path) -> None:
    script = (FIXTURES / "train_tiny.py").read_text() + "if LEARNING_RATE > 0.015:\n    raise SystemExit(3)\n"
    root = new_session(tmp_path / "project", script, max_experiments=2, search="hill")
    done = cli(root, "run", "--headless", timeout=60)
    assert done.returncode == 0, done.stderr
    row = read_results(root / "results.tsv").rows[1]
    assert (row.status, row.metric) == ("crash", 0.0)
    assert row.description == "LEARNING_RATE 0.01 -> 0.02 (exit status 3 after printing val_loss)"


# Model replies and provider failures, through the local OpenAI-compatible server: the loop in-process.


class InvalidUTF8Server(ScriptedLLMServer):
    """Answers with bytes that are not UTF-8 where a reply holds @@BAD@@."""

    def _handler_class(self) -> type[Any]:
        base: type[Any] = super()._handler_class()

        class Handler(base):
            def _json(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(data).encode().replace(b"@@BAD@@", b"\xff\xfe\xc3")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedLLMServer]:
    load_litellm()  # imported once here, so no case's bounded time pays for it
    with InvalidUTF8Server(model="test") as srv:
        yield srv


def _block(path: str, search: str, replace: str) -> str:
    return f"{path}\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"


HEAD = "Description: try something\nCategory: hyperparams\nRationale: it may help.\n\n"
MODEL_OUTCOME = "no commit, no row: the baseline row alone, HEAD and train.py as before"

MODEL_CASES: list[Case] = [
    Case(
        "model-empty-reply",
        "the model replies with nothing",
        "#2 skipped (1 in a row): the model's edits could not be used after 1 try: the reply held no "
        "SEARCH/REPLACE block",
        exit=None,
        outcome=MODEL_OUTCOME,
        action=[""],
    ),
    Case(
        "model-only-prose",
        "the model replies with prose and no edit",
        "#2 skipped (1 in a row): the model's edits could not be used after 1 try: the reply held no "
        "SEARCH/REPLACE block",
        exit=None,
        outcome=MODEL_OUTCOME,
        action=["I would raise the learning rate; it is probably too low for this model."],
    ),
    Case(
        "model-unknown-file",
        "the model edits nothere.py, which is not an editable file",
        "#2 skipped (1 in a row): the model's edits could not be used after 1 try: block 1: nothere.py is not "
        "an editable file; only these files may be edited: train.py",
        exit=None,
        outcome=MODEL_OUTCOME,
        action=[HEAD + _block("nothere.py", "a = 1", "a = 2")],
    ),
    Case(
        "model-gitignore-file-line",
        "a block's file line is `.gitignore` (once taken as train.py)",
        "#2 skipped (1 in a row): the model's edits could not be used after 1 try: block 1: .gitignore is not "
        "an editable file; only these files may be edited: train.py",
        exit=None,
        outcome=MODEL_OUTCOME,
        action=[HEAD + _block(".gitignore", "LEARNING_RATE = 0.01", "LEARNING_RATE = 0.02")],
    ),
    Case(
        "model-nul-file-line",
        "a block's file line holds a NUL (`train.py\\x00`; once taken as train.py)",
        "#2 skipped (1 in a row): the model's edits could not be used after 1 try: block 1: the file name "
        "'train.py\\x00' holds a control character; only these files may be edited: train.py",
        exit=None,
        outcome=MODEL_OUTCOME,
        action=[HEAD + _block("train.py\x00", "LEARNING_RATE = 0.01", "LEARNING_RATE = 0.02")],
    ),
    Case(
        "model-does-not-compile",
        "the edit leaves train.py unable to compile (`LEARNING_RATE = = 0.02`)",
        "#2 skipped (1 in a row): the model's edits could not be used after 1 try: train.py would not compile "
        "(line 6: invalid syntax)",
        exit=None,
        outcome=MODEL_OUTCOME + "; no run spent",
        action=[HEAD + _block("train.py", "LEARNING_RATE = 0.01", "LEARNING_RATE = = 0.02")],
    ),
    Case(
        "model-50000-lines",
        "the model replies with 50,000 lines of prose",
        "#2 skipped (1 in a row): the model's edits could not be used after 1 try: the reply held no "
        "SEARCH/REPLACE block",
        exit=None,
        outcome=MODEL_OUTCOME,
        action=[HEAD + "\n".join(f"thought {i}: the loss could go down" for i in range(50_000))],
    ),
    Case(
        "model-invalid-utf8",
        "the server's reply holds bytes that are not UTF-8 (twice, so the retry fails too)",
        "#2 skipped (1 in a row): openai/test failed: InternalServerError: error - 'utf-8' "
        "codec can't decode byte 0xff in position <n>: invalid start ... (2 tries in <n> s)",
        exit=None,
        outcome=MODEL_OUTCOME,
        action=[HEAD + _block("train.py", "LEARNING_RATE = 0.01", "LEARNING_RATE = 0.02 # @@BAD@@")] * 2,
    ),
]

PROVIDER_CASES: list[Case] = [
    Case(
        "provider-401",
        "the server answers 401 (a rejected key)",
        "needs you: The provider rejected the API key for openai/test at <url>; put a valid key in the "
        "environment variable AR_BAD_KEY, or name another variable with --api-key-env.",
        exit=None,
        outcome=MODEL_OUTCOME + "; the loop stops at once",
        action=[Reply(status=401)],
    ),
    Case(
        "provider-404-model",
        "the server answers 404 (no such model)",
        "needs you: Model openai/test was not found at <url> (NotFoundError: The model `test` "
        "does not exist.); check --model (litellm's provider/name form, e.g. openai/gpt-4o-mini) and --api-base.",
        exit=None,
        outcome=MODEL_OUTCOME + "; the loop stops at once",
        action=[Reply(status=404)],
    ),
    Case(
        "provider-connection-refused",
        "nothing listens at api_base",
        "needs you: Cannot reach the model server at <url> (connection refused); start the server or fix --api-base.",
        exit=None,
        outcome=MODEL_OUTCOME + "; the loop stops at once",
        action=[],
    ),
    Case(
        "provider-timeout",
        "the server never answers (request_timeout_s 1, 2 tries)",
        "#2 skipped (1 in a row): openai/test did not answer within 1 s (2 tries in <n> s)",
        exit=None,
        outcome=MODEL_OUTCOME,
        action=[Reply(hang=True), Reply(hang=True)],
    ),
]

RETRY = RetryPolicy(attempts=2, base_delay_s=0.05, max_delay_s=0.1, max_total_s=20, refused_delay_s=0.05)


def _free_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@cases(MODEL_CASES + PROVIDER_CASES)
def test_model_reply_and_provider(
    tmp_path: Path, server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    server.reset()
    server.script(*case.action)
    monkeypatch.setenv("AR_BAD_KEY", "sk-bad-input")
    url = _free_url() if case.id == "provider-connection-refused" else server.url
    root = new_session(
        tmp_path / "project",
        None,
        model="openai/test",
        api_base=url,
        api_key_env="AR_BAD_KEY",
        max_experiments=2,
        max_reflections=0,
        max_skips_in_a_row=1,
        request_timeout_s=1,
    )
    events: list[ev.Event] = []
    loop = ExperimentLoop(root, events.append, LLMProposer(load_config(root), root, retry=RETRY))
    started = time.monotonic()
    stopped = loop.run()
    # Only what must not be waited out: a hung server or a retry storm would hold the loop far longer. The first
    # case also pays litellm's first import, which a busy machine can stretch past half a minute.
    assert time.monotonic() - started < 120
    lines = [e.describe() for e in events if isinstance(e, (ev.ProposalSkipped, ev.NeedsUser))]
    assert lines, [e.describe() for e in events]
    expect(case, str(lines[0]), url=url)
    assert not stopped.ok
    rows = read_results(root / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline"]
    assert git(root, "rev-parse", "--short=7", "HEAD") == rows[0].commit
    assert git(root, "status", "--porcelain") == ""
    assert (root / "train.py").read_text() == (FIXTURES / "train_tiny.py").read_text()


# The document.

GROUPS: list[tuple[str, list[Case]]] = [
    ("Configs (.autoresearch.json edited, then `autoresearch run --headless`)", CONFIG_CASES),
    ("Command line", CLI_CASES),
    ("Repositories", [*REPO_CASES, DETACHED_AT_RUN]),
    ("Training scripts (the baseline run, `autoresearch run --headless`)", SCRIPT_CASES),
    ("Model replies (the loop's event line; `max_reflections` 0)", MODEL_CASES),
    ("Provider failures (the loop's event line)", PROVIDER_CASES),
]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def all_groups() -> list[tuple[str, list[Case]]]:
    from tests.test_hardening import GROUPS as HARDENING
    from tests.test_ray_bad_input import GROUPS as RAY

    return [*GROUPS, *HARDENING, *RAY]


def reliability_tables() -> str:
    out: list[str] = []
    for title, cases in all_groups():
        out += [f"### {title}", "", "| case | input | what the user sees | exit | outcome |", "|---|---|---|---|---|"]
        for case in cases:
            exit_status = "event" if case.exit is None else str(case.exit)
            cells = (case.id, _cell(case.given), f"`` {_cell(case.says)} ``", exit_status, _cell(case.outcome))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def test_reliability_document_lists_every_case() -> None:
    ids = [case.id for _, cases in all_groups() for case in cases]
    assert len(ids) == len(set(ids)) and len(ids) >= 30
    text = DOC.read_text(encoding="utf-8")
    start, end = "<!-- bad-input cases: python -m tests.test_bad_input -->\n", "<!-- end of bad-input cases -->"
    assert start in text and end in text
    assert text.split(start, 1)[1].split(end, 1)[0] == reliability_tables(), (
        "regenerate: python -m tests.test_bad_input"
    )


if __name__ == "__main__":
    print(reliability_tables(), end="")
