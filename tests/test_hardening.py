"""Processes, keys, terminals and odd setups (issue 10, items 7, 8, 9, 11 and 12): each case with real git, real
processes and the scripted model server, asserting the exact sentence the user sees. The cases join the table
of docs/RELIABILITY.md through tests/test_bad_input.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from autoresearch.core.events import LogAppended, ResultRecorded
from autoresearch.core.results import ResultRow, append_row, read_results
from autoresearch.tui.app import AutoresearchApp
from autoresearch.tui.sample import SAMPLE_NOW, make_sample_session
from autoresearch.tui.widgets import LogTail, ResultsTable
from textual.widgets import Log

from tests.conftest import cli, git
from tests.llm_server import ScriptedLLMServer, message_text
from tests.test_bad_input import NO_ROW, TAG, UNCHANGED, Case, expect, new_repo, new_session, said, snapshot
from tests.test_runner import killed_afterwards, marked_processes, sleep_marker
from tests.test_tui_run import run_screen, wait_for

PY = sys.executable
ESCAPES = "lr up \x1b]0;PWNED-TITLE\x07\x1b[2J\x1b[31mRED\x1b[0m"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
KEY = "sk-guard-0123456789abcdef"
OPENAI_KEY = "sk-openai-fedcba9876543210"


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(model="test") as srv:
        yield srv


def _reply(description: str, search: str, replace_with: str) -> str:
    return (
        f"Description: {description}\nCategory: hyperparams\nRationale: worth a try.\n\n"
        f"train.py\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace_with}\n>>>>>>> REPLACE\n```\n"
    )


def _llm_session(root: Path, server: ScriptedLLMServer, script: str | None = None, **options: object) -> Path:
    values: dict[str, object] = {
        "model": "openai/test",
        "api_base": server.url,
        "max_experiments": 2,
        "max_reflections": 0,
        "fix_attempts": 0,
        "request_timeout_s": 10,
        **options,
    }
    return new_session(root, script, **values)


# Processes (item 7).

DAEMON_SCRIPT = """import os, shutil
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execve(shutil.which("sleep"), ["sleep", "MARKER"], {})
    os._exit(0)
os.wait()
print("val_loss: 1.5")
"""

PROCESS_CASES = [
    Case(
        "run-daemon-escapes",
        "run_command `(env -i sleep N >/dev/null 2>&1 &); python train.py`: a daemon without the run's token",
        "#1 <commit> <n>.<n> baseline baseline (2 runs, noise 0, no seed varies)",
        exit=0,
        outcome="the run is recorded; the sleep is ended when the run ends (a normal exit too): no process the run "
        "started is left. Before, it stayed with parent 1",
    ),
    Case(
        "run-double-fork",
        "the training double-forks into a session of its own and execs sleep with an empty environment",
        "#1 <commit> 1.500000 baseline baseline (2 runs, noise 0, no seed varies)",
        exit=0,
        outcome="the same: the sleep is ended when the run ends",
    ),
]


@pytest.mark.parametrize("case", PROCESS_CASES, ids=[c.id for c in PROCESS_CASES])
def test_nothing_a_run_started_survives_it(tmp_path: Path, case: Case) -> None:
    marker = sleep_marker()
    if case.id == "run-daemon-escapes":
        root = new_session(
            tmp_path / "project", run_command=f"(env -i sleep {marker} >/dev/null 2>&1 &); {PY} train.py"
        )
    else:
        root = new_session(tmp_path / "project", DAEMON_SCRIPT.replace("MARKER", marker))
    with killed_afterwards(marker):
        done = cli(root, "run", "--headless", timeout=60)
        said(case, done)
        assert marked_processes(marker) == [], "a process of the run survived it"
    assert [r.status for r in read_results(root / "results.tsv").rows] == ["baseline"]


# The model's key (item 8).

KEY_SCRIPT = """import math, os
LEARNING_RATE = 0.01
print("key:", os.environ.get("AR_GUARD_KEY", "unset"), os.environ.get("OPENAI_API_KEY", "unset"), flush=True)
if LEARNING_RATE > 0.2:
    raise RuntimeError("diverged")
print(f"val_loss: {abs(math.log(LEARNING_RATE / 0.04)):.6f}")
"""

KEY_CASES = [
    Case(
        "key-hidden-from-training",
        "AR_GUARD_KEY (api_key_env) and OPENAI_API_KEY set, model openai/...; the training prints both",
        "key: unset unset",
        exit=0,
        outcome="run.log shows the training got neither; the key is in no file of the repository, no output and "
        "no request to the model",
    ),
    Case(
        "key-scrubbed-from-prompt",
        "the same with --pass-api-key-to-training; an experiment crashes after printing both keys",
        "key: [API key removed] [API key removed]",
        exit=0,
        outcome="the training saw the keys (the user's choice); the crash's log tail in the fix request holds "
        "neither key",
    ),
]


@pytest.mark.parametrize("case", KEY_CASES, ids=[c.id for c in KEY_CASES])
def test_the_models_key_stays_out_of_the_training_and_the_prompts(
    tmp_path: Path, server: ScriptedLLMServer, case: Case
) -> None:
    server.reset()
    opted_in = case.id == "key-scrubbed-from-prompt"
    server.script(
        _reply("a learning rate that diverges", "LEARNING_RATE = 0.01", "LEARNING_RATE = 0.5"),
        _reply("fix: a learning rate that does not diverge", "LEARNING_RATE = 0.5", "LEARNING_RATE = 0.04"),
    )
    root = _llm_session(
        tmp_path / "project",
        server,
        KEY_SCRIPT,
        api_key_env="AR_GUARD_KEY",
        max_experiments=3,
        fix_attempts=1,
        pass_api_key_to_training=opted_in,
        draft_ahead=False,  # the script answers in a sequential session's order: the fix right after its crash
    )
    done = cli(root, "run", "--headless", timeout=90, env={"AR_GUARD_KEY": KEY, "OPENAI_API_KEY": OPENAI_KEY})
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r.status for r in read_results(root / "results.tsv").rows] == ["baseline", "crash", "keep"]
    assert len(server.requests) == 2
    assert all(body["_authorization"] == f"Bearer {KEY}" for body in server.requests)
    sent = "\n".join(message_text(body) for body in server.requests)
    assert KEY not in sent and OPENAI_KEY not in sent
    baseline_log = (root / ".autoresearch" / "experiments" / "0001" / "run.log").read_text()
    if opted_in:
        assert f"key: {KEY} {OPENAI_KEY}" in baseline_log
        line = next(ln for ln in message_text(server.requests[1]).splitlines() if ln.startswith("key:"))
        expect(case, line)
    else:
        expect(case, baseline_log.splitlines()[0])
        for dirpath, _, names in os.walk(root):
            if ".git" in Path(dirpath).parts:
                continue
            for name in names:
                data = (Path(dirpath) / name).read_bytes()
                assert KEY.encode() not in data and OPENAI_KEY.encode() not in data, f"a key leaked into {name}"
        assert KEY not in done.stdout + done.stderr


# Control characters from the model (item 9).

TERMINAL_CASES = [
    Case(
        "model-escape-sequences",
        "Description: lr up \\e]0;PWNED-TITLE\\a\\e[2J\\e[31mRED\\e[0m",
        "#2 <commit> <n>.<n> keep lr up RED (clear: gain +<n>.<n>, noise 0, no seed varies)",
        exit=0,
        outcome="no control character reaches stdout, results.tsv, the commit message, .autoresearch/ or `status`; "
        "before, the terminal's title changed and `status` cleared the screen",
    ),
    Case(
        "model-nul-in-description",
        "a Description with a NUL in it (lr\\0up)",
        "#2 <commit> <n>.<n> keep lr?up (clear: gain +<n>.<n>, noise 0, no seed varies)",
        exit=0,
        outcome="recorded and committed, the tree clean; before, `ValueError: embedded null byte` stopped the loop "
        "with the tree dirty",
    ),
]


@pytest.mark.parametrize("case", TERMINAL_CASES, ids=[c.id for c in TERMINAL_CASES])
def test_control_characters_from_the_model_never_reach_a_terminal_or_a_record(
    tmp_path: Path, server: ScriptedLLMServer, case: Case
) -> None:
    server.reset()
    description = ESCAPES if case.id == "model-escape-sequences" else "lr\x00up"
    server.script(_reply(description, "LEARNING_RATE = 0.01", "LEARNING_RATE = 0.04"))
    root = _llm_session(tmp_path / "project", server, api_key_env="AR_GUARD_KEY")
    done = cli(root, "run", "--headless", timeout=90, env={"AR_GUARD_KEY": KEY})
    said(case, done)
    assert not CONTROL.search(done.stdout + done.stderr)
    assert git(root, "status", "--porcelain") == ""
    row = read_results(root / "results.tsv").rows[-1]
    shown = "lr up RED" if "RED" in description else "lr?up"
    assert (row.status, row.description) == ("keep", f"{shown} (clear: gain +1.922, noise 0, no seed varies)")
    assert not CONTROL.search((root / "results.tsv").read_text())
    assert git(root, "log", "-1", "--format=%B") == f"exp: {shown}"
    for meta in (root / ".autoresearch" / "experiments").glob("*/meta.json"):
        assert "\\u001b" not in meta.read_text() and "\\u0000" not in meta.read_text()
    status = cli(root, "status")
    assert status.returncode == 0 and row.description in status.stdout
    assert not CONTROL.search(status.stdout)


async def test_the_app_shows_control_characters_from_the_log_and_the_records_as_text(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    events = make_sample_session(root)
    hostile = ResultRow("abcdef1", 1.0, 1.0, 3.0, "discard", ESCAPES)
    append_row(root / "results.tsv", hostile)  # a file written by an older version, or by hand
    app = AutoresearchApp(root, "run", loop_factory=None, clock=lambda: SAMPLE_NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = run_screen(pilot)
        await wait_for(pilot, lambda: screen.state.done == 12)
        for event in events:
            screen.buffer.put(event)
        screen.buffer.put(LogAppended(12, (f"step 1 {ESCAPES}", "bell\x07 and nul\x00")))
        screen.buffer.put(ResultRecorded(13, replace(hostile, description=ESCAPES), None, None, 0, 0.0))
        await pilot.pause(0.4)
        shown = list(screen.query_one(LogTail).lines)
        assert "step 1 lr up RED" in shown and "bell? and nul?" in shown
        table = screen.query_one(ResultsTable)
        cells = [str(cell) for r in range(table.row_count) for cell in table.get_row_at(r)]
        assert "lr up RED" in cells
        activity = screen.query_one("#activity", Log)
        text = "\n".join([*shown, *cells, *activity.lines])
        assert not CONTROL.search(text)


# A huge last line (item 11) and numbers with commas (item 12).

SCRIPT_CASES = [
    Case(
        "script-huge-last-line",
        "the baseline writes a 30 MB line of x without a newline, then fails (<x120>: 120 x)",
        "stopped: The baseline run failed with exit status 1 (last line of run.log: <x120>); fix the script and "
        "run again (a run counts only when it exits with status 0).",
        outcome=NO_ROW + "; the tail reads a window of the log's end, not the whole line (it used to take "
        "seconds and hundreds of MB, quadratic in the line)",
        action='import sys\nsys.stdout.write("x" * 30_000_000)\nsys.stdout.flush()\nsys.exit(1)\n',
    ),
    Case(
        "script-thousands-separator",
        "the script prints val_loss: 1,234.5",
        "#1 <commit> 1234.500000 baseline baseline (2 runs, noise 0, no seed varies)",
        exit=0,
        outcome="read as 1234.5 (commas grouping thousands); before, as 1.0 without a word",
        action='print("val_loss: 1,234.5")\n',
    ),
    Case(
        "script-decimal-comma",
        "the script prints val_loss: 0,5 (a decimal comma)",
        "stopped: The baseline run produced no val_loss matching '^val_loss:' (last line of run.log: val_loss: 0,5); "
        "fix the grep (`autoresearch config metric_grep REGEX`) or make the script print it, then run again.",
        outcome=NO_ROW + "; never read as a wrong number (before: 0.0)",
        action='print("val_loss: 0,5")\n',
    ),
]


@pytest.mark.parametrize("case", SCRIPT_CASES, ids=[c.id for c in SCRIPT_CASES])
def test_what_the_script_prints(tmp_path: Path, case: Case) -> None:
    root = new_session(tmp_path / "project", case.action)
    done = cli(root, "run", "--headless", timeout=90)
    said(case, done, x120="x" * 120)
    rows = read_results(root / "results.tsv").rows
    if case.exit:
        assert rows == ()  # a failed baseline leaves no row
    else:
        assert [(r.status, r.metric) for r in rows] == [("baseline", 1234.5)]
    assert git(root, "status", "--porcelain") == ""


# Permissions (item 12).


def _immutable(path: Path) -> bool:
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)
        return True
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def _mutable(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755 if path.is_dir() else 0o644)


PERMISSION_CASES = [
    Case(
        "repo-immutable-editable",
        "train.py made immutable (chattr +i) after setup",
        "stopped: train.py cannot be written; make it writable (chmod u+w train.py, and chattr -i train.py if it is "
        "immutable) and run again.",
        outcome=UNCHANGED + "; before: internal error (PermissionError ...)",
    ),
    Case(
        "repo-unwritable-experiments",
        ".autoresearch/experiments made immutable (chattr +i) after setup",
        "stopped: .autoresearch/experiments cannot be written (Operation not permitted); make it writable (chmod u+w "
        ".autoresearch/experiments, and chattr -i .autoresearch/experiments if it is immutable) and run again.",
        outcome="nothing run, no row; once it is writable the next run repairs (`experiment #1 was interrupted "
        "before it was recorded`) and goes on; before: internal error (PermissionError ...)",
    ),
]


@pytest.mark.parametrize("case", PERMISSION_CASES, ids=[c.id for c in PERMISSION_CASES])
def test_a_file_the_tool_cannot_write_is_named_with_the_fix(tmp_path: Path, case: Case) -> None:
    root = new_session(tmp_path / "project")
    target = root / ("train.py" if case.id == "repo-immutable-editable" else ".autoresearch/experiments")
    before = snapshot(root)
    if not _immutable(target):
        pytest.skip("chattr is not available and root ignores file modes")
    try:
        done = cli(root, "run", "--headless", timeout=60)
        if os.geteuid() != 0:
            case = replace(case, says=case.says.replace("Operation not permitted", "Permission denied"))
        said(case, done)
        assert snapshot(root) == before or case.id == "repo-unwritable-experiments"
    finally:
        _mutable(target)
    assert read_results(root / "results.tsv").rows == ()
    if case.id == "repo-unwritable-experiments":
        again = cli(root, "run", "--headless", timeout=60)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "experiment #1 was interrupted before it was recorded" in again.stdout
        assert [r.status for r in read_results(root / "results.tsv").rows] == ["baseline"]


# Where the commands start, and what setup refuses (item 12).


def _submodule(root: Path) -> None:
    lib = new_repo(root.parent / "lib-origin")
    (lib / "model.py").write_text("WIDTH = 4\n")
    git(lib, "add", "model.py")
    git(lib, "commit", "-q", "-m", "model")
    git(root, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(root, "commit", "-q", "-m", "add lib")


SETUP_CASES = [
    Case(
        "cli-status-in-subdirectory",
        "autoresearch status in src/, a folder of the repository",
        f"AUTORESEARCH · {TAG} · train.py",
        exit=0,
        outcome="the session's dashboard (before: No session here); `analyze` and the app find it the same way",
        action=["status"],
    ),
    Case(
        "cli-analyze-in-subdirectory",
        "autoresearch analyze --headless in src/",
        f"wrote <repo>/autoresearch-{TAG}-analysis.md (recommendations computed from the results)",
        exit=0,
        outcome="the analysis of the session at the repository's top",
        action=["analyze", "--headless"],
    ),
    Case(
        "repo-tracked-run-log",
        "setup with run.log committed",
        "autoresearch: run.log is tracked by git, but every run rewrites it, so the working tree would never be "
        "clean; untrack it (git rm --cached run.log && git commit) and run setup again.",
        outcome=UNCHANGED + "; before, setup took it and every run stopped on uncommitted changes (run.log)",
        action=["setup", "train.py", "--yes", "--metric", "val_loss", "--tag", TAG],
    ),
    Case(
        "repo-editable-in-submodule",
        "setup train.py --editable lib/model.py, where lib is a submodule",
        "autoresearch: lib/model.py is inside lib, a git repository of its own (a submodule or a nested clone), "
        "where this session cannot commit; run autoresearch inside lib instead (cd lib).",
        outcome=UNCHANGED + "; before, it said to git add the file",
        action=["setup", "train.py", "--yes", "--metric", "val_loss", "--tag", TAG, "--editable", "lib/model.py"],
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=[c.id for c in SETUP_CASES])
def test_where_commands_start_and_what_setup_refuses(tmp_path: Path, case: Case) -> None:
    root = tmp_path / "project"
    where = root
    if case.id.endswith("-in-subdirectory"):
        new_session(root)
        assert cli(root, "run", "--headless", timeout=60).returncode == 0
        where = root / "src"
        where.mkdir()
    elif case.id == "repo-tracked-run-log":
        new_repo(root)
        (root / "run.log").write_text("an old log\n")
        git(root, "add", "run.log")
        git(root, "commit", "-q", "-m", "a log")
    else:
        new_repo(root)
        _submodule(root)
    before = snapshot(root)
    done = cli(where, *case.action, timeout=60)
    said(case, done, repo=str(root))
    if case.exit:
        assert snapshot(root) == before


def test_an_editable_file_in_a_submodule_is_refused_at_run_too(tmp_path: Path) -> None:
    root = new_session(tmp_path / "project")
    _submodule(root)
    config = root / ".autoresearch.json"
    config.write_text(config.read_text().replace('"train.py"\n', '"train.py", "lib/model.py"\n', 1))
    assert "lib/model.py" in config.read_text()
    done = cli(root, "run", "--headless", timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("stopped: lib/model.py is inside lib, a git repository of its own")


GROUPS: list[tuple[str, list[Case]]] = [
    (
        "Processes, keys, terminals and odd setups (tests/test_hardening.py)",
        [*PROCESS_CASES, *KEY_CASES, *TERMINAL_CASES, *SCRIPT_CASES, *PERMISSION_CASES, *SETUP_CASES],
    )
]
