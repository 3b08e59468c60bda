"""The user keeps working in the repository while the loop runs: an edit, a commit or a checkout while the model
is thinking, an edit during a run that is then discarded, a failed reset, a second `setup`, a damaged results.tsv.
Each must end with nothing of the user's lost, no traceback, and one sentence where the user has to act.

The model is the local OpenAI-compatible server; its reply waits until the test has made its change (the change
runs in the server's thread before the reply goes out), and a run waits on a gate file until the test has made
its change during the run: no sleeps, no timing. The cases make a table of docs/RELIABILITY.md
(`python -m tests.test_user_work` prints it; a test checks the document holds it unchanged).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from autoresearch.core import events as ev
from autoresearch.core.config import load_config
from autoresearch.core.llm_agent import LLMProposer
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.results import read_results

from tests.conftest import FIXTURES, cli, git
from tests.llm_server import Reply, ScriptedLLMServer
from tests.test_bad_input import DOC, HEAD, RETRY, TAG, Case, _block, _cell, expect, new_session, snapshot

PY = sys.executable
BRANCH = f"autoresearch/{TAG}"
TRAIN = (FIXTURES / "train_tiny.py").read_text()
WORSE = HEAD + _block("train.py", "LEARNING_RATE = 0.01", "LEARNING_RATE = 0.001")
"""An experiment that makes val_loss worse, so it is discarded."""
GATE = """import os, pathlib, sys, time
if os.environ.get("AUTORESEARCH_EXPERIMENT") == sys.argv[1]:
    pathlib.Path(sys.argv[2], "ready").touch()
    deadline = time.monotonic() + 60
    while not pathlib.Path(sys.argv[2], "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
"""


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(model="test") as srv:
        yield srv


@pytest.fixture(autouse=True)
def _model_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AR_SAFE_KEY", "sk-user-work")


class Session:
    """A session on the model server, the loop run in-process (the training and git are real processes)."""

    def __init__(
        self, tmp_path: Path, server: ScriptedLLMServer, gate_at: int | None = None, project: Path | None = None
    ) -> None:
        self.server = server
        self.gates = tmp_path / "gates"
        self.gates.mkdir()
        gate = tmp_path / "gate.py"
        gate.write_text(GATE)
        run = f"{PY} train.py" if gate_at is None else f"{PY} {gate} {gate_at} {self.gates} && {PY} train.py"
        self.root = new_session(
            project or tmp_path / "project",
            None,
            model="openai/test",
            api_base=server.url,
            api_key_env="AR_SAFE_KEY",
            run_command=run,
            max_experiments=2,
            max_reflections=0,
            max_skips_in_a_row=1,
            request_timeout_s=120,
            timeout_minutes=2,
        )
        self.events: list[ev.Event] = []

    def run(self, *replies: Reply | str) -> ev.LoopStopped:
        self.server.reset()
        self.server.script(*replies)
        loop = ExperimentLoop(
            self.root, self.events.append, LLMProposer(load_config(self.root), self.root, retry=RETRY)
        )
        return loop.run()

    def during_run(self, action: Callable[[], object]) -> threading.Thread:
        """Do `action` while the gated experiment runs (its training waits until it is done)."""

        def act() -> None:
            deadline = time.monotonic() + 60
            while not (self.gates / "ready").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            try:
                action()
            finally:
                (self.gates / "go").touch()

        thread = threading.Thread(target=act, daemon=True)
        thread.start()
        return thread

    def discard_while(self, action: Callable[[], object], case: Case, **values: str) -> str:
        """Run experiment #2 (a discard) with `action` done during its run; check the sentence. The start commit."""
        start = self.head()
        self.during_run(action)
        stopped = self.run(WORSE, WORSE)
        assert not stopped.ok
        _said(case, self.needs_you(), **values)
        assert self.statuses() == ["baseline", "discard"]
        return start

    def needs_you(self) -> str:
        lines = [e.describe() for e in self.events if isinstance(e, ev.NeedsUser)]
        assert len(lines) == 1, [e.describe() for e in self.events]
        return lines[0]

    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD")

    def statuses(self) -> list[str]:
        return [r.status for r in read_results(self.root / "results.tsv").rows]

    def set_config(self, **values: object) -> None:
        path = self.root / ".autoresearch.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **values}, indent=2) + "\n")


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _said(case: Case, text: str, **values: str) -> None:
    assert "Traceback" not in text
    expect(case, text, **values)


# While the model is thinking.

EDIT_WHILE_THINKING = Case(
    "edit-while-thinking",
    "train.py edited (not committed) while the model is proposing",
    "needs you: train.py changed while the model was proposing experiment #2; the loop stopped without writing "
    "anything, so your edit is untouched (commit it or stash it (git stash), then run again).",
    exit=None,
    outcome="the edit is still in train.py; no commit, no ref, no row: the baseline row alone",
)


def test_an_edit_made_while_the_model_thinks_is_never_overwritten(tmp_path: Path, server: ScriptedLLMServer) -> None:
    session = Session(tmp_path, server)
    train = session.root / "train.py"
    start = session.head()
    reply = HEAD + _block("train.py", "LEARNING_RATE = 0.01", "LEARNING_RATE = 0.02")
    stopped = session.run(Reply(reply, before=lambda: _append(train, "# my edit\n")))
    assert not stopped.ok
    _said(EDIT_WHILE_THINKING, session.needs_you())
    assert train.read_text() == TRAIN + "# my edit\n"
    assert session.head() == start
    assert session.statuses() == ["baseline"]
    assert git(session.root, "for-each-ref", f"refs/autoresearch/{TAG}") == ""
    assert not (session.root / ".autoresearch" / "journal.json").exists()


COMMIT_WHILE_THINKING = Case(
    "commit-while-thinking",
    "the user commits on the session branch while the model is proposing",
    f"needs you: {BRANCH} moved to <commit>, a commit autoresearch did not make, while the model was proposing "
    "experiment #2; the loop stopped without committing anything and your commit stays (run again to go on from it).",
    exit=None,
    outcome="the user's commit stays the branch's tip; the next run builds on it, and its discard resets to it",
)


def test_a_commit_made_while_the_model_thinks_is_never_reset_away(tmp_path: Path, server: ScriptedLLMServer) -> None:
    session = Session(tmp_path, server)
    root = session.root

    def commit() -> None:
        (root / "notes.txt").write_text("my notes\n")
        git(root, "add", "notes.txt")
        git(root, "commit", "-q", "-m", "my own commit")

    stopped = session.run(Reply(WORSE, before=commit))
    assert not stopped.ok
    mine = session.head()
    assert git(root, "log", "-1", "--format=%s") == "my own commit"
    _said(COMMIT_WHILE_THINKING, session.needs_you())
    assert session.statuses() == ["baseline"]

    session.events.clear()
    stopped = session.run(WORSE)
    assert stopped.ok, stopped.reason
    assert session.statuses() == ["baseline", "discard"]
    assert session.head() == mine
    assert (root / "notes.txt").read_text() == "my notes\n"
    assert git(root, "status", "--porcelain", "-uno") == ""


CHECKOUT_WHILE_THINKING = Case(
    "checkout-while-thinking",
    "`git checkout main` while the model is proposing",
    f"needs you: The repository was switched to main while the model was proposing experiment #2; the loop "
    f"stopped without committing anything (git checkout {BRANCH}, then run again).",
    exit=None,
    outcome="nothing committed on main or on the session branch; main stays checked out",
)


def test_a_checkout_while_the_model_thinks_commits_nothing_anywhere(tmp_path: Path, server: ScriptedLLMServer) -> None:
    session = Session(tmp_path, server)
    root = session.root
    main_before = git(root, "rev-parse", "main")
    branch_before = git(root, "rev-parse", BRANCH)
    stopped = session.run(Reply(WORSE, before=lambda: git(root, "checkout", "-q", "main")))
    assert not stopped.ok
    _said(CHECKOUT_WHILE_THINKING, session.needs_you())
    assert git(root, "branch", "--show-current") == "main"
    assert git(root, "rev-parse", "main") == main_before
    assert git(root, "rev-parse", BRANCH) == branch_before
    assert git(root, "status", "--porcelain", "-uno") == ""


CHECKOUT_DURING_RUN = Case(
    "checkout-during-run",
    "`git checkout main` while an experiment runs that is then discarded",
    f"needs you: The repository is on main, not {BRANCH}; the loop stopped without changing anything "
    f"(git checkout {BRANCH}, then run again).",
    exit=None,
    outcome=f"first `#2 taken off {BRANCH} by its ref alone: the repository is on main, which was left as it is`; "
    "main and its checkout untouched",
)


def test_a_checkout_during_a_run_leaves_main_alone(tmp_path: Path, server: ScriptedLLMServer) -> None:
    session = Session(tmp_path, server, gate_at=2)
    root = session.root
    main_before = git(root, "rev-parse", "main")
    session.set_config(max_experiments=3)
    start = session.discard_while(lambda: git(root, "checkout", "-q", "main"), CHECKOUT_DURING_RUN)
    assert git(root, "rev-parse", "main") == main_before
    assert git(root, "rev-parse", BRANCH) == start
    assert git(root, "rev-parse", f"refs/autoresearch/{TAG}/2") != start
    assert git(root, "branch", "--show-current") == "main"
    assert (root / "train.py").read_text() == TRAIN
    infos = [e.describe() for e in session.events if isinstance(e, ev.Info)]
    assert f"#2 taken off {BRANCH} by its ref alone: the repository is on main, which was left as it is" in infos


# During a run that is then discarded: the reset cannot simply go through.

EDIT_DURING_RUN = Case(
    "edit-during-discarded-run",
    "a line appended to train.py while an experiment runs that is then discarded",
    f"needs you: You edited train.py during experiment #2, which was discarded: it is off {BRANCH} now and your "
    "edit is kept, uncommitted, on top of the last kept version (a copy is in "
    ".autoresearch/experiments/0002/your-edits); commit it or stash it (git stash), then run again.",
    exit=None,
    outcome="the branch is back at the last kept commit; train.py is that version plus the user's line; the "
    "experiment stays at its ref",
)


def test_an_edit_during_a_discarded_run_is_carried_over(tmp_path: Path, server: ScriptedLLMServer) -> None:
    session = Session(tmp_path, server, gate_at=2)
    root = session.root
    start = session.discard_while(lambda: _append(root / "train.py", "# my note\n"), EDIT_DURING_RUN)
    assert session.head() == start
    assert (root / "train.py").read_text() == TRAIN + "# my note\n"
    copy = root / ".autoresearch" / "experiments" / "0002" / "your-edits" / "train.py"
    assert copy.read_text() == TRAIN.replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.001") + "# my note\n"
    assert not (root / ".autoresearch" / "journal.json").exists()


OVERLAP_DURING_RUN = Case(
    "overlapping-edit-during-discarded-run",
    "the line the experiment changed is edited again while it runs; it is then discarded",
    "needs you: You edited train.py during experiment #2 in lines the experiment changed too, so the discarded "
    f"experiment (<commit>) is still on {BRANCH}; your edit is untouched (a copy is in "
    ".autoresearch/experiments/0002/your-edits): put it aside (git stash) and run again, which takes the "
    "experiment off first.",
    exit=None,
    outcome="the journal stays; after `git stash` the next run says `repaired: finished resetting discard "
    "experiment #2 (<commit>)` and the stash holds the edit",
)


def test_an_overlapping_edit_stops_with_what_to_do_and_the_journal_kept(
    tmp_path: Path, server: ScriptedLLMServer
) -> None:
    session = Session(tmp_path, server, gate_at=2)
    root = session.root
    train = root / "train.py"
    mine = TRAIN.replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.005")
    start = session.discard_while(lambda: train.write_text(mine), OVERLAP_DURING_RUN)
    assert train.read_text() == mine
    assert (root / ".autoresearch" / "journal.json").exists()
    experiment = session.head()
    assert experiment != start

    # The stale journal is not deleted by a start that cannot finish the reset, and the edit stays.
    done = cli(root, "run", "--headless", timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("stopped: You edited train.py during experiment #2 in lines")
    assert train.read_text() == mine and (root / ".autoresearch" / "journal.json").exists()

    git(root, "stash", "-q")
    done = cli(root, "run", "--headless", timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"repaired: finished resetting discard experiment #2 ({experiment[:7]})" in done.stdout
    assert session.head() == start
    assert git(root, "stash", "show", "-p").count("+LEARNING_RATE = 0.005") == 1
    assert not (root / ".autoresearch" / "journal.json").exists()


RESET_FAILS = Case(
    "reset-fails",
    "git cannot write the index when the discarded experiment is reset (a stale .git/index.lock appears during the "
    "run; a full disk fails the same way)",
    f"needs you: git could not take discarded experiment #2 (<commit>) off {BRANCH} (fatal: Unable to create "
    "'<repo>/.git/index.lock': File exists.); fix that (free disk space if the disk is full) and run again, which "
    "takes it off first.",
    exit=None,
    outcome="the row is recorded, the journal stays; once the lock is gone the next run says `repaired: finished "
    "resetting discard experiment #2 (<commit>)`",
)


def test_a_failed_reset_keeps_the_journal_until_it_is_done(tmp_path: Path, server: ScriptedLLMServer) -> None:
    session = Session(tmp_path, server, gate_at=2)
    root = session.root
    lock = root / ".git" / "index.lock"
    start = session.discard_while(lambda: lock.write_text(""), RESET_FAILS, repo=str(root))
    experiment = session.head()
    assert experiment != start and (root / ".autoresearch" / "journal.json").exists()
    lock.unlink()
    done = cli(root, "run", "--headless", timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"repaired: finished resetting discard experiment #2 ({experiment[:7]})" in done.stdout
    assert session.head() == start
    assert git(root, "status", "--porcelain", "-uno") == ""


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB file system of its own (tmpfs), so a test can fill it; skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


DISK_FULL = Case(
    "disk-full-during-run",
    "the disk fills up while an experiment runs (a 4 MB tmpfs, filled by the test; skipped where it cannot mount)",
    "needs you: The disk is full<where>; free some space and run again, which finishes what this run left.",
    exit=None,
    outcome="<where> names the file when Python's error does, e.g. ` (writing <file>)`; the training's own writes "
    "fail, so it is a crash row; once space is freed the next run says `repaired: finished resetting crash "
    "experiment #2 (<commit>)`, and the branch, the tree and the journal are consistent",
)


def test_a_full_disk_during_a_run_stops_with_a_sentence_and_the_next_run_finishes(
    tmp_path: Path, small_disk: Path, server: ScriptedLLMServer
) -> None:
    session = Session(tmp_path, server, gate_at=2, project=small_disk / "project")
    root = session.root
    start = session.head()
    fillers: list[Path] = []
    session.during_run(lambda: fillers.append(_fill(small_disk)))
    stopped = session.run(WORSE, WORSE)
    assert not stopped.ok
    pattern = re.escape(DISK_FULL.says).replace(re.escape("<where>"), r"( \(writing [^)]+\))?")
    assert re.fullmatch(pattern, session.needs_you()), session.needs_you()
    fillers[0].unlink()
    done = cli(root, "run", "--headless", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"^repaired: finished resetting crash experiment #2 \([0-9a-f]{7}\)$", done.stdout, re.M)
    assert session.head() == start
    assert session.statuses() == ["baseline", "crash"]
    assert git(root, "status", "--porcelain", "-uno") == ""
    assert (root / "train.py").read_text() == TRAIN
    assert not (root / ".autoresearch" / "journal.json").exists()


# A second session while one runs.

SETUP_WHILE_RUNNING = Case(
    "setup-while-running",
    "`autoresearch setup` of a new session while a run is going (also after .autoresearch/ was deleted during it)",
    "autoresearch: An autoresearch run (pid <n>) is going on in this repository; stop it (or wait for it to end) "
    "before setting up a new session, so the two sessions' records do not mix.",
    exit=1,
    outcome="nothing changed: files, refs and HEAD as before; the run goes on and records its experiment",
)


def test_setup_while_a_run_is_going_is_refused(tmp_path: Path, server: ScriptedLLMServer) -> None:
    session = Session(tmp_path, server)
    root = session.root
    tries: list[tuple[subprocess.CompletedProcess[str], bool]] = []
    args = ["setup", "train.py", "--yes", "--metric", "val_loss", "--agent", "mutate", "--tag", "second"]

    def setup_twice() -> None:
        before = snapshot(root)
        tries.append((cli(root, *args, timeout=60), snapshot(root) == before))
        shutil.rmtree(root / ".autoresearch")
        before = snapshot(root)
        tries.append((cli(root, *args, timeout=60), snapshot(root) == before))

    stopped = session.run(Reply(WORSE, before=setup_twice))
    assert stopped.ok, stopped.reason
    for done, unchanged in tries:
        assert done.returncode == 1, done.stderr
        _said(SETUP_WHILE_RUNNING, done.stderr.removesuffix("\n"))
        assert unchanged
    assert session.statuses() == ["baseline", "discard"]
    assert git(root, "branch", "--list", "autoresearch/second") == ""


# A damaged results.tsv.


def _finished_session(tmp_path: Path, rows: int) -> Path:
    root = new_session(tmp_path / "project", None, max_experiments=rows, agent="mutate")
    done = cli(root, "run", "--headless", timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(read_results(root / "results.tsv").rows) == rows
    return root


def _records(root: Path) -> dict[str, bytes]:
    history = root / ".autoresearch" / "experiments"
    found = {p.relative_to(root).as_posix(): p.read_bytes() for p in history.rglob("meta.json")}
    found["<refs>"] = git(root, "for-each-ref", f"refs/autoresearch/{TAG}").encode()
    return found


RESULTS_CUT = Case(
    "results-cut-in-row-2-of-5",
    "results.tsv cut inside row 2 of 5, then `autoresearch run --headless`",
    "repaired: results.tsv held 1 of the 5 rows .autoresearch/ records; rebuilt the others from .autoresearch/ "
    "(the file as it was is kept in .autoresearch/results.tsv.damaged)",
    exit=0,
    outcome="all 5 rows back as they were, the session goes on at #6; no ref or experiments/NNNN overwritten",
)


def test_a_cut_results_file_is_rebuilt_and_no_history_overwritten(tmp_path: Path) -> None:
    root = _finished_session(tmp_path, 5)
    results = root / "results.tsv"
    whole = results.read_text()
    rows = whole.splitlines(keepends=True)
    results.write_text(rows[0] + rows[1] + rows[2][:12])
    records = _records(root)
    config = root / ".autoresearch.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "max_experiments": 6}))
    done = cli(root, "run", "--headless", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "repaired: removed a half-written last row of results.tsv" in done.stdout
    assert any(_matches(RESULTS_CUT, line) for line in done.stdout.splitlines()), done.stdout
    after = results.read_text()
    assert after.startswith(whole) and len(read_results(results).rows) == 6
    now = _records(root)
    for name, data in records.items():
        if name != "<refs>":
            assert now[name] == data, f"{name} was overwritten"
    assert set(records["<refs>"].decode().splitlines()) <= set(now["<refs>"].decode().splitlines())


def _matches(case: Case, line: str) -> bool:
    try:
        expect(case, line)
    except AssertionError:
        return False
    return True


def _insert_column(root: Path) -> None:
    path = root / "results.tsv"
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        cells = line.split("\t")
        cells.insert(4, "notes" if i == 0 else "-")
        out.append("\t".join(cells))
    path.write_text("\n".join(out) + "\n")


def _unknown_status(root: Path) -> None:
    path = root / "results.tsv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace("\tdiscard\t", "\tpending\t").replace("\tkeep\t", "\tpending\t")
    path.write_text("".join(lines))


def _other_session_rows(root: Path) -> None:
    path = root / "results.tsv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "0000000" + lines[1][7:])


DAMAGED_CASES = [
    Case(
        "results-column-inserted",
        "another tool inserted a column (notes) before status",
        "stopped: results.tsv has a column autoresearch does not write (notes), so new rows would not line up; "
        "remove that column (the file was not changed) and run again.",
        action=_insert_column,
    ),
    Case(
        "results-unknown-status",
        "row 2 of results.tsv has the status pending",
        "stopped: Line 3 of results.tsv is not a row autoresearch can read (its status is not one of baseline, "
        "keep, discard, crash); fix or remove it (the file was not changed) and run again.",
        action=_unknown_status,
    ),
    Case(
        "results-other-commits",
        "results.tsv has 1 row whose commit is not the one .autoresearch/ recorded for #1 (of 3)",
        "stopped: Row 1 of results.tsv (commit 0000000) differs from .autoresearch/experiments/0001 (commit "
        "<commit>); restore the session's results.tsv (the file was not changed) and run again.",
        action=_other_session_rows,
    ),
]


@pytest.mark.parametrize("case", DAMAGED_CASES, ids=[c.id for c in DAMAGED_CASES])
def test_a_results_file_the_tool_cannot_read_stops_it_unchanged(tmp_path: Path, case: Case) -> None:
    root = _finished_session(tmp_path, 3)
    case.action(root)
    config = root / ".autoresearch.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "max_experiments": 5}))
    before = snapshot(root)
    done = cli(root, "run", "--headless", timeout=60)
    assert "Traceback" not in done.stderr + done.stdout
    assert done.returncode == 1, done.stdout
    expect(case, done.stderr.removesuffix("\n"))
    assert snapshot(root) == before


# The document.

CASES: list[Case] = [
    EDIT_WHILE_THINKING,
    COMMIT_WHILE_THINKING,
    CHECKOUT_WHILE_THINKING,
    CHECKOUT_DURING_RUN,
    EDIT_DURING_RUN,
    OVERLAP_DURING_RUN,
    RESET_FAILS,
    DISK_FULL,
    SETUP_WHILE_RUNNING,
    RESULTS_CUT,
    *DAMAGED_CASES,
]
START = "<!-- user-work cases: python -m tests.test_user_work -->\n"
END = "<!-- end of user-work cases -->"


def user_work_table() -> str:
    out = ["| case | input | what the user sees | exit | outcome |", "|---|---|---|---|---|"]
    for case in CASES:
        exit_status = "event" if case.exit is None else str(case.exit)
        cells = (case.id, _cell(case.given), f"`` {_cell(case.says)} ``", exit_status, _cell(case.outcome))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def test_reliability_document_lists_every_user_work_case() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert START in text and END in text
    assert text.split(START, 1)[1].split(END, 1)[0] == user_work_table(), "regenerate: python -m tests.test_user_work"
    assert len({c.id for c in CASES}) == len(CASES)
    assert not re.search(r"Traceback", user_work_table())


if __name__ == "__main__":
    print(user_work_table(), end="")
