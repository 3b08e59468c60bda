"""Drafting the next proposal while a run goes on: real git, real runs, the real LLM agent over HTTP.

The training of experiment n (the baseline and the last aside) waits until the model has been asked for
experiment n + 1 (the scripted server leaves a marker file when it is asked), so these tests never depend on
how fast anything is.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from autoresearch.core import events as ev
from autoresearch.core.config import CONFIG_FILE
from autoresearch.core.draft import rebase_files
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.results import read_results
from autoresearch.core.setup import setup_session

from tests.conftest import git
from tests.llm_server import Reply, ScriptedLLMServer, message_text

PY = sys.executable
TRAIN = """import os
import pathlib
import time

A = 1

B = 1

n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
if 1 < n < {last}:
    marker = pathlib.Path({markers!r}) / f"asked-{{n + 1}}"
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not marker.exists():
        raise SystemExit("the next proposal was not asked for while this run went on")
    hold = pathlib.Path({markers!r}) / "hold"
    while hold.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
print(f"val_loss: {{10.0 / (A + B):.6f}}")
"""


def edit(search: str, replace: str, description: str) -> str:
    return (
        f"Description: {description}\nCategory: hyperparams\nRationale: worth a try.\n\n"
        f"train.py\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"
    )


@pytest.fixture()
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(model="test") as srv:
        yield srv


def start(
    tmp_path: Path, server: ScriptedLLMServer, replies: list[str], experiments: int, train: str = TRAIN
) -> tuple[Path, Path]:
    """A session whose model answers `replies` in order and marks each experiment it is asked for."""
    repo, markers = tmp_path / "project", tmp_path / "markers"
    repo.mkdir()
    markers.mkdir()
    (repo / "train.py").write_text(train.format(last=experiments, markers=str(markers)))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "initial")
    script = list(replies)

    def answer(body: dict[str, Any]) -> Reply:
        asked = re.search(r"Propose experiment #(\d+)", message_text(body))
        text = script.pop(0) if script else "Description: abandon"
        reply = Reply(text)
        if asked:
            (markers / f"asked-{asked.group(1)}").touch()
        return reply

    server.default = answer
    setup_session(
        repo,
        "train.py",
        metric_name="val_loss",
        run_command=f"{PY} train.py",
        model="openai/test",
        api_base=server.url,
        api_key_env="AR_TEST_KEY",
        time_budget_minutes=0.05,
        timeout_minutes=2,
        max_experiments=experiments,
        tag="nov26",
    )
    os.environ["AR_TEST_KEY"] = "sk-test"
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return repo, markers


def asked_for(server: ScriptedLLMServer) -> list[str]:
    return [re.findall(r"Propose experiment #(\d+)", message_text(b))[0] for b in server.requests]


def train_at(repo: Path, rev: str) -> str:
    return git(repo, "show", f"{rev}:train.py")


def test_a_draft_made_before_a_keep_is_re_applied_on_the_kept_version(
    tmp_path: Path, server: ScriptedLLMServer
) -> None:
    repo, _ = start(
        tmp_path,
        server,
        [edit("A = 1", "A = 3", "raise A"), edit("B = 1", "B = 3", "raise B")],
        experiments=3,
    )
    seen: list[ev.Event] = []
    stopped = ExperimentLoop(repo, seen.append).run()
    assert stopped.ok, stopped.reason
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep", "keep"]
    # Asked for #2 after the baseline's result, for #3 while #2 ran: two requests, no more.
    assert asked_for(server) == ["2", "3"]
    prompt_3 = message_text(server.requests[1])
    assert "Experiment #2 (raise A) is running while you answer" in prompt_3 and "A = 1" in prompt_3
    third = git(repo, "rev-parse", "refs/autoresearch/nov26/3")
    assert git(repo, "rev-parse", f"{third}^") == git(repo, "rev-parse", "refs/autoresearch/nov26/2")
    assert "A = 3" in train_at(repo, third) and "B = 3" in train_at(repo, third)
    assert rows[2].metric == pytest.approx(10 / 6)
    notes = [e.message for e in seen if isinstance(e, ev.Info)]
    assert "#3: the proposal drafted while #2 ran was re-applied on #2, which was kept" in notes
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def test_a_draft_is_re_applied_on_a_best_that_changed_the_neighbouring_line(
    tmp_path: Path, server: ScriptedLLMServer
) -> None:
    """A and B on neighbouring lines: a three-way merge saw one conflict there; the draft's own edit (B) does not
    touch the kept edit's line (A), so it goes on the kept version and A's gain stays."""
    repo, _ = start(
        tmp_path,
        server,
        [edit("A = 1", "A = 3", "raise A"), edit("B = 1", "B = 3", "raise B")],
        experiments=3,
        train=TRAIN.replace("A = 1\n\nB = 1\n", "A = 1\nB = 1\n"),
    )
    seen: list[ev.Event] = []
    stopped = ExperimentLoop(repo, seen.append).run()
    assert stopped.ok, stopped.reason
    assert [r.status for r in read_results(repo / "results.tsv").rows] == ["baseline", "keep", "keep"]
    assert asked_for(server) == ["2", "3"]  # the draft was used, not asked again
    third = git(repo, "rev-parse", "refs/autoresearch/nov26/3")
    assert "A = 3\nB = 3\n" in train_at(repo, third)
    lines = git(repo, "diff", "-U0", f"{third}^", third).splitlines()
    assert [ln for ln in lines if ln[:1] in "+-" and ln[:3] not in ("---", "+++")] == ["-B = 1", "+B = 3"]
    notes = [e.message for e in seen if isinstance(e, ev.Info)]
    assert "#3: the proposal drafted while #2 ran was re-applied on #2, which was kept" in notes


def test_a_draft_that_no_longer_applies_is_asked_for_again(tmp_path: Path, server: ScriptedLLMServer) -> None:
    repo, _ = start(
        tmp_path,
        server,
        [
            edit("A = 1", "A = 3", "raise A"),
            edit("A = 1", "A = 2", "raise A a little"),
            edit("B = 1", "B = 2", "raise B"),
        ],
        experiments=3,
    )
    seen: list[ev.Event] = []
    stopped = ExperimentLoop(repo, seen.append).run()
    assert stopped.ok, stopped.reason
    rows = read_results(repo / "results.tsv").rows
    assert [r.description.split(" (")[0] for r in rows] == ["baseline", "raise A", "raise B"]
    assert asked_for(server) == ["2", "3", "3"]
    # Asked again against #2's version, not against the one the draft was made on.
    assert "A = 3" in message_text(server.requests[2]) and "Running now" not in message_text(server.requests[2])
    third = git(repo, "rev-parse", "refs/autoresearch/nov26/3")
    assert git(repo, "rev-parse", f"{third}^") == git(repo, "rev-parse", "refs/autoresearch/nov26/2")
    assert "A = 3" in train_at(repo, third) and "B = 2" in train_at(repo, third)
    notes = [e.message for e in seen if isinstance(e, ev.Info)]
    assert "#3: the proposal drafted while #2 ran does not apply on #2, which was kept; asking again" in notes
    assert not any("A = 2" in train_at(repo, f"refs/autoresearch/nov26/{n}") for n in (2, 3))


def test_after_a_discard_the_draft_runs_on_the_version_it_was_made_on(
    tmp_path: Path, server: ScriptedLLMServer
) -> None:
    repo, _ = start(
        tmp_path,
        server,
        [edit("A = 1", "A = 0", "lower A"), edit("A = 1", "A = 4", "raise A")],
        experiments=3,
    )
    stopped = ExperimentLoop(repo, lambda e: None).run()
    assert stopped.ok, stopped.reason
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "discard", "keep"]
    assert asked_for(server) == ["2", "3"]
    third = git(repo, "rev-parse", "refs/autoresearch/nov26/3")
    assert git(repo, "rev-parse", f"{third}^").startswith(rows[0].commit)
    assert "A = 4" in train_at(repo, third)


def _run_until(
    repo: Path, condition: Callable[[list[ev.Event]], bool], act: Callable[[ExperimentLoop], None]
) -> list[ev.Event]:
    seen: list[ev.Event] = []
    ready = threading.Event()

    def sink(event: ev.Event) -> None:
        seen.append(event)
        if condition(seen):
            ready.set()

    loop = ExperimentLoop(repo, sink)
    thread = threading.Thread(target=loop.run)
    thread.start()
    assert ready.wait(120), "the loop never got there"
    act(loop)
    thread.join(120)
    assert not thread.is_alive()
    return seen


@pytest.mark.parametrize("how", ["stop", "stop_now"])
def test_a_draft_is_never_written_when_the_session_stops(tmp_path: Path, server: ScriptedLLMServer, how: str) -> None:
    repo, markers = start(
        tmp_path,
        server,
        [edit("A = 1", "A = 3", "raise A"), edit("B = 1", "B = 7", "raise B")],
        experiments=4,
    )

    # Stop once #2 runs and its successor has answered: neither stop waits for a draft still being answered.
    def there(events: list[ev.Event]) -> bool:
        running = any(isinstance(e, ev.RunStarted) and e.number == 2 for e in events)
        drafted = any(isinstance(e, ev.Drafted) and e.number == 3 for e in events)
        return running and drafted

    # The run goes on until the session was told to stop (a test that raced the run's end was flaky).
    (markers / "hold").touch()

    def act(loop: ExperimentLoop) -> None:
        getattr(loop, how)()
        (markers / "hold").unlink()

    seen = _run_until(repo, there, act)
    stopped = [e for e in seen if isinstance(e, ev.LoopStopped)][-1]
    assert stopped.ok and stopped.reason == "stopped by the user"
    assert "B = 7" not in (repo / "train.py").read_text()
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert not any(
        "B = 7" in git(repo, "show", f"{ref}:train.py")
        for ref in git(repo, "for-each-ref", "--format=%(refname)", "refs/autoresearch").split()
    )
    # The draft's tokens are not lost: they count toward the next experiment.
    pending = json.loads(
        (
            repo
            / ".autoresearch"
            / "experiments"
            / f"{len(read_results(repo / 'results.tsv').rows) + 1:04d}"
            / "meta.json"
        ).read_text()
    )
    assert pending["status"] == "skipped" and pending["tokens_in"] > 0


def test_without_draft_ahead_each_proposal_follows_the_last_result(tmp_path: Path, server: ScriptedLLMServer) -> None:
    repo, markers = start(
        tmp_path,
        server,
        [edit("A = 1", "A = 3", "raise A"), edit("A = 3", "A = 5", "raise A again")],
        experiments=3,
    )
    config = json.loads((repo / CONFIG_FILE).read_text())
    config["draft_ahead"] = False
    (repo / CONFIG_FILE).write_text(json.dumps(config))
    for n in (2, 3):
        (markers / f"asked-{n}").touch()  # the training need not wait: nothing is asked for during a run
    stopped = ExperimentLoop(repo, lambda e: None).run()
    assert stopped.ok, stopped.reason
    assert [r.status for r in read_results(repo / "results.tsv").rows] == ["baseline", "keep", "keep"]
    assert "Running now" not in message_text(server.requests[1]) and "A = 3" in message_text(server.requests[1])


def test_rebase_files_applies_edits_that_do_not_overlap() -> None:
    base = {"train.py": "A = 1\n\nB = 1\n", "model.py": "W = 4\n"}
    kept = {"train.py": "A = 3\n\nB = 1\n", "model.py": "W = 4\n"}
    assert rebase_files(base, {"train.py": "A = 1\n\nB = 2\n"}, kept) == {"train.py": "A = 3\n\nB = 2\n"}
    assert rebase_files(base, {"train.py": "A = 2\n\nB = 1\n"}, kept) is None
    assert rebase_files(base, {"model.py": "W = 8\n", "train.py": base["train.py"]}, kept) == {"model.py": "W = 8\n"}
    assert rebase_files(base, {"train.py": "A = 3\n\nB = 1\n"}, kept) == {"train.py": "A = 3\n\nB = 1\n"}


def test_rebase_files_combines_edits_on_neighbouring_lines_and_refuses_only_an_edit_of_a_changed_line() -> None:
    base = {"train.py": "A = 1\nB = 1\nC = 1\n"}
    kept = {"train.py": "A = 1\nB = 5\nC = 1\n"}
    assert rebase_files(base, {"train.py": "A = 2\nB = 1\nC = 1\n"}, kept) == {"train.py": "A = 2\nB = 5\nC = 1\n"}
    assert rebase_files(base, {"train.py": "A = 1\nB = 1\nC = 2\n"}, kept) == {"train.py": "A = 1\nB = 5\nC = 2\n"}
    inserted = {"train.py": "A = 1\nX = 0\nB = 1\nC = 1\n"}
    assert rebase_files(base, inserted, kept) == {"train.py": "A = 1\nX = 0\nB = 5\nC = 1\n"}
    assert rebase_files(base, {"train.py": "A = 1\nB = 2\nC = 1\n"}, kept) is None
    # Its own line wins only where the best changed nothing beside it.
    assert rebase_files(base, {"train.py": "A = 1\nB = 2\nC = 1\n"}, kept, draft_wins=True) == {
        "train.py": "A = 1\nB = 2\nC = 1\n"
    }
    wider = {"train.py": "A = 9\nB = 5\nC = 1\n"}
    assert rebase_files(base, {"train.py": "A = 1\nB = 2\nC = 1\n"}, wider, draft_wins=True) is None
    crlf = {"train.py": "\ufeffA = 1\r\nB = 1\r\n"}  # line endings and a BOM stay byte for byte
    kept_crlf = {"train.py": "\ufeffA = 1\r\nB = 5\r\n"}
    assert rebase_files(crlf, {"train.py": "\ufeffA = 2\r\nB = 1\r\n"}, kept_crlf) == {
        "train.py": "\ufeffA = 2\r\nB = 5\r\n"
    }


def test_kill_9_while_a_draft_is_in_flight_leaves_a_session_the_next_start_goes_on_from(
    tmp_path: Path, server: ScriptedLLMServer
) -> None:
    import signal
    import subprocess
    import time

    repo, markers = start(tmp_path, server, [], experiments=4)
    proposals = iter([edit("A = 1", "A = 3", "raise A")])

    def answer(body: dict[str, Any]) -> Reply:
        asked = re.search(r"Propose experiment #(\d+)", message_text(body))
        if asked:
            (markers / f"asked-{asked.group(1)}").touch()
        if asked and asked.group(1) == "3":
            return Reply(edit("B = 1", "B = 7", "raise B"), delay_s=30)  # the draft: still thinking at the kill
        return Reply(next(proposals, "Description: abandon"))

    server.default = answer
    tool = subprocess.Popen(
        [sys.executable, "-m", "autoresearch.core.cli", "run", "--headless"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (markers / "asked-3").exists():
            assert tool.poll() is None and time.monotonic() < deadline, "the draft was never asked for"
            time.sleep(0.02)
    finally:
        os.killpg(tool.pid, signal.SIGKILL)
        tool.wait()
    # The next start only makes the session consistent (the cap is where the session got to).
    config = json.loads((repo / CONFIG_FILE).read_text())
    config["max_experiments"] = max(1, len(read_results(repo / "results.tsv").rows))
    (repo / CONFIG_FILE).write_text(json.dumps(config))
    again = subprocess.run(
        [sys.executable, "-m", "autoresearch.core.cli", "run", "--headless"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in again.stderr
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert "B = 7" not in (repo / "train.py").read_text()
    assert not any(
        "B = 7" in git(repo, "show", f"{ref}:train.py")
        for ref in git(repo, "for-each-ref", "--format=%(refname)", "refs/autoresearch").split()
    )
    rows = read_results(repo / "results.tsv").rows
    assert rows[0].status == "baseline"
    assert len({r.commit for r in rows}) == len(rows)


CRASHING_TRAIN = """import os
import pathlib
import time

A = 1

B = 1

n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
if n == 2:
    marker = pathlib.Path({markers!r}) / "asked-3"
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
print(f"val_loss: {{10.0 / (A + B):.6f}}")
"""


def test_a_crash_is_fixed_before_the_draft_made_while_it_ran(tmp_path: Path, server: ScriptedLLMServer) -> None:
    repo, _ = start(
        tmp_path,
        server,
        [
            edit("A = 1", "A = missing_name", "raise A"),  # #2: crashes (NameError)
            edit("B = 1", "B = 3", "raise B"),  # drafted while #2 runs
            edit("A = missing_name", "A = 2", "fix: define A"),  # the fix of #2, asked once #2 crashed
        ],
        experiments=4,
        train=CRASHING_TRAIN,
    )
    seen: list[ev.Event] = []
    stopped = ExperimentLoop(repo, seen.append).run()
    assert stopped.ok, stopped.reason
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "crash", "keep", "keep"]
    assert rows[2].description.startswith("fix: define A") and rows[3].description.startswith("raise B")
    started = [(e.number, e.kind) for e in seen if isinstance(e, ev.ExperimentStarted)]
    assert started == [(1, "baseline"), (2, "experiment"), (3, "fix"), (4, "experiment")]
    assert "crashed. Fix attempt" in message_text(server.requests[2])
    # The draft waited for the fix, and was re-applied on it once the fix was kept.
    fourth = git(repo, "rev-parse", "refs/autoresearch/nov26/4")
    assert git(repo, "rev-parse", f"{fourth}^") == git(repo, "rev-parse", "refs/autoresearch/nov26/3")
    assert "A = 2" in train_at(repo, fourth) and "B = 3" in train_at(repo, fourth)
    notes = [e.message for e in seen if isinstance(e, ev.Info)]
    assert "#4: the proposal drafted while #2 ran was re-applied on #3, which was kept" in notes
    assert rows[3].metric == pytest.approx(10 / 5)


WAITS_FOR_AHEAD = """import os
import pathlib
import time

A = 1

B = 1

n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
marker = pathlib.Path({markers!r}) / f"ahead-{{n + 1}}"
deadline = time.monotonic() + 60
while n > 1 and not marker.exists() and time.monotonic() < deadline:
    time.sleep(0.02)
print(f"val_loss: {{10.0 / (A + B):.6f}}")
"""


def test_nothing_proposed_while_a_run_goes_on_is_not_the_end_of_the_ideas(
    tmp_path: Path, server: ScriptedLLMServer
) -> None:
    from autoresearch.core.proposer import ExperimentRecord, Proposal, ProposalContext

    repo, markers = start(tmp_path, server, [], experiments=9, train=WAITS_FOR_AHEAD)

    class OnlyAfterResults:
        """Has an idea only once the last result is in (nothing while a run goes on), three in all."""

        name = "after-results"

        def __init__(self) -> None:
            self.asked: list[tuple[int, bool]] = []
            self.values = [2, 3, 4]

        def propose(self, ctx: ProposalContext) -> Proposal | None:
            self.asked.append((ctx.number, bool(ctx.in_flight)))
            if ctx.in_flight:
                (markers / f"ahead-{ctx.number}").touch()  # the run waits for this question
                return None
            if not self.values:
                return None
            value = self.values.pop(0)
            text = re.sub(r"^A = \d+$", f"A = {value}", ctx.files["train.py"], flags=re.MULTILINE)
            return Proposal(f"A to {value}", {"train.py": text})

        def observe(self, record: ExperimentRecord) -> None:
            pass

    proposer = OnlyAfterResults()
    stopped = ExperimentLoop(repo, lambda _e: None, proposer).run()
    assert stopped.ok and stopped.reason == "the agent has nothing left to propose", stopped.reason
    assert [r.description.split(" (")[0] for r in read_results(repo / "results.tsv").rows] == [
        "baseline",
        "A to 2",
        "A to 3",
        "A to 4",
    ]
    # Asked ahead while each idea ran (nothing), then again once its result was in.
    assert proposer.asked == [(2, False), (3, True), (3, False), (4, True), (4, False), (5, True), (5, False)]
    assert server.requests == []
