"""Notifications against a local HTTP server on 127.0.0.1: what is sent, a failing URL, and secrets kept out."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from autoresearch.core import events as ev
from autoresearch.core.notify import Notifier, redact
from autoresearch.core.results import ResultRow

from tests.conftest import cli, make_repo, setup_args

SECRET = "T0PSECRET-hook-9f3a"


class Hooks:
    """A webhook receiver: /ok/... answers 200 and keeps the JSON; /down/... answers 500 and counts."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []
        self.failed = 0
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path.startswith("/ok/"):
                    hooks.received.append(json.loads(body))
                    self.send_response(200)
                else:
                    hooks.failed += 1
                    self.send_response(500)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    started = Hooks()
    yield started
    started.server.shutdown()


def row(metric: float, status: str = "keep") -> ResultRow:
    return ResultRow("abc1234", metric, 0.1, 3.0, status, "wider layers")


def test_new_best_needs_user_and_end_are_posted_and_a_failing_url_is_said_once(hooks: Hooks) -> None:
    said: list[ev.Event] = []
    good, bad = f"{hooks.url}/ok/{SECRET}", f"{hooks.url}/down/{SECRET}?token={SECRET}"
    notifier = Notifier([good, bad], "nov26", "val_loss", said.append, backoff_s=0.01)
    notifier(ev.ResultRecorded(1, row(1.0, "baseline"), best=1.0, baseline=1.0))
    notifier(ev.ResultRecorded(2, row(1.2, "discard"), best=1.0, baseline=1.0))
    notifier(ev.ResultRecorded(3, row(0.8), best=0.8, baseline=1.0))
    notifier(ev.NeedsUser("the training crashed 3 times in a row"))
    notifier(ev.LoopStopped("reached 3 experiments", ok=True, experiments=3))
    notifier.close()
    assert [(n["event"], n["experiment"], n["value"]) for n in hooks.received] == [
        ("new_best", 3, 0.8),
        ("needs_user", None, 0.8),
        ("session_end", 3, 0.8),
    ]
    assert all(n["session"] == "nov26" and n["metric"] == "val_loss" for n in hooks.received)
    assert hooks.failed == 3 * 4  # every notice, retried with a backoff
    assert [e.describe() for e in said] == [
        "notification to http://127.0.0.1/… failed (HTTP 500); retrying with a backoff"
    ]


def test_redact_keeps_no_path_query_or_credentials() -> None:
    assert redact(f"https://user:{SECRET}@hooks.slack.com/services/{SECRET}?x={SECRET}") == "https://hooks.slack.com/…"
    assert redact(f"tgram://{SECRET}/12345") == "tgram://…"


def test_a_headless_run_notifies_its_end_and_the_secret_stays_out_of_everything(tmp_path: Path, hooks: Hooks) -> None:
    root = make_repo(tmp_path / "p")
    assert cli(root, *setup_args("--max-experiments", "2", "--baseline-runs", "1")).returncode == 0
    urls = json.dumps([f"{hooks.url}/ok/{SECRET}", f"{hooks.url}/down/{SECRET}"])
    changed = cli(root, "config", "notify", urls)
    assert changed.returncode == 0 and SECRET not in changed.stdout, changed.stdout + changed.stderr
    done = cli(root, "run", "--headless")
    assert done.returncode == 0, done.stderr
    assert [n["event"] for n in hooks.received][-1] == "session_end"
    assert done.stdout.count("notification to http://127.0.0.1/… failed") == 1
    assert SECRET not in done.stdout + done.stderr
    leaks = [
        p
        for p in [root / "results.tsv", root / "run.log", *(root / ".autoresearch").rglob("*")]
        if p.is_file() and SECRET in p.read_text(errors="replace")
    ]
    assert leaks == []


def test_the_model_never_sees_a_notify_url(tmp_path: Path, hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.llm_server import ScriptedLLMServer
    from tests.test_llm_loop import edit, head

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    root = make_repo(tmp_path / "p")
    with ScriptedLLMServer(model="test") as server:
        server.script(
            head("raise the learning rate") + edit("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.04"),
            head("widen the model", "architecture") + edit("WIDTH = 4", "WIDTH = 16"),
        )
        model = ("--agent", "llm", "--model", "openai/test", "--api-base", server.url, "--max-experiments", "3")
        assert (
            cli(root, *setup_args(*model, "--baseline-runs", "1", "--notify", f"{hooks.url}/ok/{SECRET}")).returncode
            == 0
        )
        done = cli(root, "run", "--headless")
        assert done.returncode == 0, done.stdout + done.stderr
        assert server.requests, "the model was asked"
        assert SECRET not in json.dumps(server.requests)
    assert [n["event"] for n in hooks.received][-1] == "session_end"
    assert any(n["event"] == "new_best" for n in hooks.received), hooks.received
    assert SECRET not in done.stdout + done.stderr


def test_a_broken_environment_sends_needs_user_then_the_end(tmp_path: Path, hooks: Hooks) -> None:
    root = make_repo(tmp_path / "p", script="train_broken.py")
    assert cli(root, *setup_args("--baseline-runs", "1", "--notify", f"{hooks.url}/ok/{SECRET}")).returncode == 0
    done = cli(root, "run", "--headless")
    assert done.returncode == 1
    assert [n["event"] for n in hooks.received] == ["needs_user", "session_end"]
    needs = hooks.received[0]
    assert needs["session"] == "nov26" and needs["metric"] == "val_loss"
    assert str(needs["text"]).startswith("nov26 needs you: ")
