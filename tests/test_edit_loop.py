"""The model's edits through the real loop: `autoresearch setup` and `run --headless` as subprocesses, the
local OpenAI-compatible server answering, a real git repository. What is committed changes only the lines
the edit touched (a Windows file keeps its CR and BOM), and a reply the output limit cut is never run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from autoresearch.core.results import read_results

from tests.conftest import cli, git
from tests.llm_server import Reply, ScriptedLLMServer

PY = sys.executable


def edit(search: str, replace: str, path: str = "train.py") -> str:
    return f"{path}\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"


def head(description: str) -> str:
    return f"Description: {description}\nCategory: hyperparams\nRationale: worth a try.\n\n"


@pytest.fixture()
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(model="test") as srv:
        yield srv


def _run(repo: Path, server: ScriptedLLMServer, experiments: int, reflections: int = 1, flags: str = "") -> str:
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
        f"{PY} train.py {flags}".strip(),
        "--budget",
        "0.05",
        "--timeout",
        "0.5",
        "--request-timeout",
        "10",
        "--tag",
        "edits",
        "--max-experiments",
        str(experiments),
        "--max-reflections",
        str(reflections),
    )
    assert done.returncode == 0, done.stderr
    # One question at a time, in the order the script answers (no draft asked for while a run goes on).
    config = json.loads((repo / ".autoresearch.json").read_text())
    (repo / ".autoresearch.json").write_text(json.dumps({**config, "draft_ahead": False}))
    done = cli(repo, "run", "--headless", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _committed(repo: Path, commit: str) -> bytes:
    return subprocess.run(["git", "show", f"{commit}:train.py"], cwd=repo, check=True, capture_output=True).stdout


def test_a_windows_file_with_a_bom_keeps_every_untouched_byte(repo: Path, server: ScriptedLLMServer) -> None:
    original = "\ufeff" + (repo / "train.py").read_text().replace("\n", "\r\n")
    (repo / "train.py").write_bytes(original.encode())
    git(repo, "commit", "-qam", "the script as a Windows editor saves it")
    server.script(head("widen the model to 8") + edit("WIDTH = 4", "WIDTH = 8"))
    _run(repo, server, experiments=2)

    rows = read_results(repo / "results.tsv").rows
    assert [r.description.split(" (")[0] for r in rows[1:]] == ["widen the model to 8"]
    after = _committed(repo, rows[1].commit)
    assert after == original.replace("WIDTH = 4\r\n", "WIDTH = 8\r\n").encode()
    numstat = git(repo, "diff", "--numstat", f"{rows[1].commit}~1", rows[1].commit, "--", "train.py")
    assert numstat.split() == ["1", "1", "train.py"]


def test_a_reply_cut_by_the_output_limit_is_never_run(repo: Path, server: ScriptedLLMServer) -> None:
    script = (repo / "train.py").read_text()
    # Cut mid-file, yet it compiles: applied, it would run a script that lost its last lines.
    cut_file = script.replace("WIDTH = 4", "WIDTH = 16").split("for step in range(5):")[0]
    whole = head("widen the model to 16") + f"train.py\n```python\n{cut_file}"
    server.script(
        Reply(whole, finish_reason="length"),
        Reply(whole, finish_reason="length"),
        Reply(whole, finish_reason="length"),
        head("widen the model to 16") + edit("WIDTH = 4", "WIDTH = 16"),
    )
    out = _run(repo, server, experiments=2, reflections=1)

    assert "#2 reply 1 not usable: cut off by the output limit; asking again" in out.splitlines()
    rows = read_results(repo / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep"]
    assert _committed(repo, rows[1].commit).decode() == script.replace("WIDTH = 4", "WIDTH = 16")
    experiments = sorted(p.name for p in (repo / ".autoresearch" / "experiments").iterdir())
    assert len(experiments) == 2, "the baseline and the block's experiment ran, nothing from a cut reply"
    assert "cut off by the output limit" in server.requests[1]["messages"][-1]["content"]
    assert "never a whole file" in server.requests[1]["messages"][-1]["content"]


def test_an_edit_of_a_value_a_flag_overrides_is_refused_before_any_run(repo: Path, server: ScriptedLLMServer) -> None:
    server.script(
        head("widen the model to 16") + edit("WIDTH = 4", "WIDTH = 16"),
        head("learning rate 0.04") + edit("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.04"),
    )
    out = _run(repo, server, experiments=2, reflections=1, flags="--width=8")

    assert "#2 reply 1 not usable: WIDTH is set by `--width=8` in the run command; asking again" in out.splitlines()
    rows = read_results(repo / "results.tsv").rows
    assert [r.description.split(" (")[0] for r in rows] == ["baseline", "learning rate 0.04"]
    told = server.requests[1]["messages"][-1]["content"]
    assert "WIDTH in train.py is set by `--width=8` in the run command" in told and "Nothing was run" in told
    assert len(list((repo / ".autoresearch" / "experiments").iterdir())) == 2
