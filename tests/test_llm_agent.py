"""The LLM proposer against a local OpenAI-compatible server: litellm's real client over real HTTP."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from autoresearch.core.config import SessionConfig
from autoresearch.core.errors import ProviderError
from autoresearch.core.llm_agent import LLMProposer, llm_recommendations
from autoresearch.core.proposer import CrashInfo, ExperimentRecord, ProposalContext, ProposalSkipped, content_key
from autoresearch.core.provider import RetryPolicy, load_litellm

from tests.llm_server import Reply, ScriptedLLMServer, message_text

KEY_ENV = "AUTORESEARCH_TEST_KEY"
SECRET = "sk-test-0123456789-secret"
FAST = RetryPolicy(attempts=3, base_delay_s=0.05, max_delay_s=0.2, max_total_s=8, refused_delay_s=0.05)

TRAIN = """import math

LEARNING_RATE = 0.02
BATCH_SIZE = 32


def train(steps):
    loss = 0.0
    for step in range(steps):
        loss = LEARNING_RATE / (step + 1)
    return loss


print(f"val_loss: {train(10):.6f}")
"""


def block(search: str, replace: str, path: str = "train.py") -> str:
    return f"{path}\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"


def reply(description: str, *blocks: str, category: str = "hyperparams") -> str:
    head = f"Description: {description}\nCategory: {category}\nRationale: because it may help.\n\n"
    return head + "\n".join(blocks)


LR_UP = reply("raise the learning rate to 0.04", block("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.04"))


@pytest.fixture(scope="module")
def litellm_module() -> ModuleType:
    """One litellm import (about 3 s) shared by every test here."""
    return load_litellm()


@pytest.fixture()
def server(litellm_module: ModuleType) -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as srv:
        yield srv


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "train.py").write_text(TRAIN)
    (root / "prepare.py").write_text("def evaluate():\n    return 1.0\n")
    return root


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


def make_config(server: ScriptedLLMServer, **over: object) -> SessionConfig:
    values: dict[str, object] = {
        "tag": "t1",
        "script_path": "train.py",
        "metric_name": "val_loss",
        "agent": "llm",
        "model": "openai/test-model",
        "api_base": server.url,
        "api_key_env": KEY_ENV,
        "request_timeout_s": 5,
        "max_reflections": 2,
    }
    values.update(over)
    return SessionConfig(**values)


def make_ctx(config: SessionConfig, **over: object) -> ProposalContext:
    base = ExperimentRecord(number=1, commit="abc1234", metric=1.0, status="baseline", description="baseline")
    values: dict[str, object] = {
        "config": config,
        "number": 2,
        "files": {"train.py": TRAIN},
        "readonly": {},
        "history": (base,),
        "baseline": 1.0,
        "best": 1.0,
        "best_number": 1,
    }
    values.update(over)
    return ProposalContext(**values)


def last_user(body: dict[str, object]) -> str:
    messages = body["messages"]
    assert isinstance(messages, list)
    return str(messages[-1]["content"])


def test_clean_proposal(server: ScriptedLLMServer, repo: Path) -> None:
    server.script(Reply(LR_UP, tokens_in=1200, tokens_out=80))
    proposal = LLMProposer(make_config(server), repo, retry=FAST).propose(make_ctx(make_config(server)))
    assert proposal is not None
    assert proposal.description == "raise the learning rate to 0.04"
    assert proposal.category == "hyperparams"
    assert proposal.rationale == "because it may help."
    assert proposal.files == {"train.py": TRAIN.replace("0.02", "0.04")}
    assert (proposal.usage.tokens_in, proposal.usage.tokens_out, proposal.usage.cost_usd) == (1200, 80, 0.0)
    assert len(server.requests) == 1
    sent = server.requests[0]
    assert sent["model"] == "test-model"
    assert sent["_authorization"] == f"Bearer {SECRET}"
    assert sent["max_tokens"] == 4096 and sent["temperature"] == 0.7
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert "LEARNING_RATE = 0.02" in message_text(sent)
    assert (repo / "train.py").read_text() == TRAIN, "a proposer never writes files"


def test_bad_block_is_fixed_after_reflection(server: ScriptedLLMServer, repo: Path) -> None:
    wrong = reply(
        "raise the learning rate and batch size",
        block("LEARNING_RATE = 0.03", "LEARNING_RATE = 0.04"),
        block("BATCH_SIZE = 32", "BATCH_SIZE = 64"),
    )
    server.script(wrong, block("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.04"))
    config = make_config(server)
    proposal = LLMProposer(config, repo, retry=FAST).propose(make_ctx(config))
    assert proposal is not None
    assert proposal.files["train.py"] == TRAIN.replace("0.02", "0.04").replace("= 32", "= 64")
    assert proposal.description == "raise the learning rate and batch size"
    assert proposal.usage.tokens_in == 200 and proposal.usage.tokens_out == 100
    second = server.requests[1]
    feedback = last_user(second)
    assert "Block 1 failed" in feedback
    assert "<<<<<<< SEARCH\nLEARNING_RATE = 0.03\n=======" in feedback, "the failed block is quoted"
    assert "Did you mean" in feedback and "LEARNING_RATE = 0.02" in feedback
    assert "block 2 (train.py)" in feedback, "the block that applied is named"
    assert second["messages"][-2]["role"] == "assistant" and "0.03" in second["messages"][-2]["content"]


def test_resending_every_block_after_a_partial_failure_works(server: ScriptedLLMServer, repo: Path) -> None:
    good, bad = block("BATCH_SIZE = 32", "BATCH_SIZE = 64"), block("LR = 0.02", "LR = 0.04")
    fixed = block("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.04")
    server.script(reply("two changes", good, bad), reply("two changes", good, fixed))
    config = make_config(server)
    proposal = LLMProposer(config, repo, retry=FAST).propose(make_ctx(config))
    assert proposal is not None
    assert proposal.files["train.py"] == TRAIN.replace("0.02", "0.04").replace("= 32", "= 64")


def test_forbidden_file_is_refused_then_skipped(server: ScriptedLLMServer, repo: Path) -> None:
    cheat = reply("make evaluation easier", block("    return 1.0", "    return 0.0", "prepare.py"))
    server.script(cheat, cheat, cheat)
    config = make_config(server, max_reflections=2)
    with pytest.raises(ProposalSkipped) as info:
        LLMProposer(config, repo, retry=FAST).propose(make_ctx(config))
    assert "prepare.py is not an editable file" in info.value.reason
    assert info.value.usage.tokens_in == 300, "usage of all three calls is kept"
    assert len(server.requests) == 3
    assert "prepare.py is not an editable file; only these files may be edited: train.py" in last_user(
        server.requests[1]
    )
    assert (repo / "prepare.py").read_text() == "def evaluate():\n    return 1.0\n"


def test_paths_escaping_the_repository_are_refused(server: ScriptedLLMServer, repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("SECRET = 1\n")
    os.symlink(outside, repo / "link.py")
    edits = [
        block("SECRET = 1", "SECRET = 2", "../outside.py"),
        block("SECRET = 1", "SECRET = 2", str(outside)),
        block("SECRET = 1", "SECRET = 2", "link.py"),
    ]
    server.script(*(reply("escape", e) for e in edits))
    config = make_config(server, editable_files=["train.py", "link.py"], max_reflections=2)
    files = {"train.py": TRAIN, "link.py": outside.read_text()}
    with pytest.raises(ProposalSkipped, match="outside the repository"):
        LLMProposer(config, repo, retry=FAST).propose(make_ctx(config, files=files))
    assert "../outside.py is outside the repository" in last_user(server.requests[1])
    assert f"{outside} is outside the repository" in last_user(server.requests[2])
    assert outside.read_text() == "SECRET = 1\n"


def test_crash_fix_request_carries_log_and_diff(server: ScriptedLLMServer, repo: Path) -> None:
    crashed = TRAIN.replace("loss = LEARNING_RATE / (step + 1)", "loss = LEARNING_RATE / step")
    diff = (
        "--- a/train.py\n+++ b/train.py\n"
        "-        loss = LEARNING_RATE / (step + 1)\n+        loss = LEARNING_RATE / step\n"
    )
    log = "\n".join(f"step {i}" for i in range(200)) + "\nZeroDivisionError: float division by zero\n"
    crash = CrashInfo(number=2, description="drop the +1", category="other", diff=diff, log_tail=log, attempt=1)
    fix = reply(
        "fix: start steps at 1",
        block("    for step in range(steps):", "    for step in range(1, steps + 1):"),
        category="other",
    )
    server.script(fix)
    config = make_config(server)
    proposal = LLMProposer(config, repo, retry=FAST).propose(
        make_ctx(config, number=3, files={"train.py": crashed}, crash=crash)
    )
    assert proposal is not None
    assert proposal.description == "fix: start steps at 1"
    assert "range(1, steps + 1)" in proposal.files["train.py"]
    sent = message_text(server.requests[0])
    assert "ZeroDivisionError: float division by zero" in sent
    assert "+        loss = LEARNING_RATE / step" in sent
    assert "step 10\n" not in sent, "only the log's tail is sent"
    assert "still contain the change that crashed" in sent


def test_model_may_abandon_a_crash(server: ScriptedLLMServer, repo: Path) -> None:
    server.script("Description: abandon\n")
    crash = CrashInfo(number=2, description="x", category="other", diff="+x = 1\n", log_tail="boom", attempt=2)
    config = make_config(server)
    assert LLMProposer(config, repo, retry=FAST).propose(make_ctx(config, crash=crash)) is None


def test_bad_key_stops_at_once(server: ScriptedLLMServer, repo: Path) -> None:
    server.script(Reply(status=401))
    config = make_config(server)
    with pytest.raises(ProviderError) as info:
        LLMProposer(config, repo, retry=FAST).propose(make_ctx(config))
    assert len(server.requests) == 1, "a rejected key is not retried"
    message = str(info.value)
    assert "rejected the API key" in message and KEY_ENV in message and "--api-key-env" in message
    assert SECRET not in message
    assert "\n" not in message
    assert len(server.requests) == 1, "a bad key is never retried"


def test_missing_key_variable_is_named_before_any_request(
    server: ScriptedLLMServer, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    config = make_config(server)
    with pytest.raises(ProviderError, match=f"{KEY_ENV} .api_key_env. is not set"):
        LLMProposer(config, repo, retry=FAST).propose(make_ctx(config))
    assert server.requests == []


def test_unknown_model_stops_at_once(server: ScriptedLLMServer, repo: Path) -> None:
    server.script(Reply(status=404))
    config = make_config(server)
    with pytest.raises(ProviderError, match=r"Model openai/test-model was not found .*--model"):
        LLMProposer(config, repo, retry=FAST).propose(make_ctx(config))
    assert len(server.requests) == 1


def test_rate_limit_then_success(server: ScriptedLLMServer, repo: Path) -> None:
    server.script(Reply(status=429, headers={"Retry-After": "0"}), Reply(status=500), LR_UP)
    config = make_config(server)
    proposal = LLMProposer(config, repo, retry=FAST).propose(make_ctx(config))
    assert proposal is not None and proposal.files["train.py"] == TRAIN.replace("0.02", "0.04")
    assert len(server.requests) == 3


def test_dropped_connection_is_retried(server: ScriptedLLMServer, repo: Path) -> None:
    server.script(Reply(drop=True), LR_UP)
    config = make_config(server)
    assert LLMProposer(config, repo, retry=FAST).propose(make_ctx(config)) is not None
    assert len(server.requests) == 2


def test_rate_limits_that_never_end_are_bounded(server: ScriptedLLMServer, repo: Path) -> None:
    server.default = Reply(status=429)
    config = make_config(server)
    with pytest.raises(ProposalSkipped, match="rate limited"):
        LLMProposer(config, repo, retry=FAST).propose(make_ctx(config))
    assert len(server.requests) == FAST.attempts, "no retry storm"


def test_server_that_never_answers_times_out(server: ScriptedLLMServer, repo: Path) -> None:
    server.default = Reply(hang=True)
    config = make_config(server, request_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ProposalSkipped, match=r"did not answer within 0\.5 s"):
        LLMProposer(config, repo, retry=RetryPolicy(attempts=2, base_delay_s=0.05)).propose(make_ctx(config))
    assert time.monotonic() - started < 30, "each request gave up after 0.5 s; the server never answers"
    assert len(server.requests) == 2


def test_server_down_is_a_provider_error(litellm_module: ModuleType, repo: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = SessionConfig(
        tag="t1",
        script_path="train.py",
        metric_name="val_loss",
        agent="llm",
        model="openai/test-model",
        api_base=f"http://127.0.0.1:{port}/v1",
        api_key_env=KEY_ENV,
    )
    with pytest.raises(ProviderError) as info:
        LLMProposer(config, repo, retry=FAST).propose(make_ctx(config))
    assert str(info.value) == (
        f"Cannot reach the model server at http://127.0.0.1:{port}/v1 (connection refused); start the server "
        "or fix --api-base."
    )


def test_streaming_reply_is_parsed(server: ScriptedLLMServer, repo: Path) -> None:
    server.script(Reply(LR_UP, tokens_in=700, tokens_out=90))
    pieces: list[str] = []
    config = make_config(server)
    proposer = LLMProposer(config, repo, retry=FAST, stream=True, on_text=pieces.append)
    proposal = proposer.propose(make_ctx(config))
    assert server.requests[0]["stream"] is True
    assert proposal is not None and proposal.files["train.py"] == TRAIN.replace("0.02", "0.04")
    assert "".join(pieces) == LR_UP and len(pieces) > 3
    assert (proposal.usage.tokens_in, proposal.usage.tokens_out) == (700, 90)


@pytest.mark.parametrize("stream", [False, True])
def test_a_reply_cut_by_the_output_limit_is_asked_again(server: ScriptedLLMServer, repo: Path, stream: bool) -> None:
    # A complete, valid block, but the reply was cut after it: what followed is unknown, so none of it is used.
    server.script(Reply(LR_UP + "\ntrain.py\n<<<<<<< SEARCH\nBATCH", finish_reason="length"), LR_UP)
    retries: list[tuple[int, str]] = []
    config = make_config(server)
    ctx = make_ctx(config, on_retry=lambda n, why: retries.append((n, why)))
    proposal = LLMProposer(config, repo, retry=FAST, stream=stream).propose(ctx)
    assert proposal is not None and proposal.files["train.py"] == TRAIN.replace("0.02", "0.04")
    assert retries == [(1, "cut off by the output limit")]
    told = last_user(server.requests[1])
    assert "cut off by the output limit" in told and "never a whole file" in told


def test_duplicate_of_a_tried_version_is_reflected(server: ScriptedLLMServer, repo: Path) -> None:
    tried = {content_key({"train.py": TRAIN.replace("0.02", "0.04")}): 4}
    history = (
        ExperimentRecord(1, "abc1234", 1.0, "baseline", "baseline"),
        ExperimentRecord(4, "def5678", 1.1, "discard", "raise the learning rate to 0.04"),
    )
    other = reply("larger batch", block("BATCH_SIZE = 32", "BATCH_SIZE = 64"))
    server.script(LR_UP, other)
    config = make_config(server)
    proposal = LLMProposer(config, repo, retry=FAST).propose(make_ctx(config, number=5, tried=tried, history=history))
    assert proposal is not None and proposal.description == "larger batch"
    assert "BATCH_SIZE = 64" in proposal.files["train.py"] and "0.04" not in proposal.files["train.py"]
    assert "identical to experiment #4 (raise the learning rate to 0.04, discard)" in last_user(server.requests[1])


def test_edit_that_changes_nothing_is_reflected(server: ScriptedLLMServer, repo: Path) -> None:
    same = reply("nothing", block("BATCH_SIZE = 32", "BATCH_SIZE = 32"))
    server.script(same, LR_UP)
    config = make_config(server)
    assert LLMProposer(config, repo, retry=FAST).propose(make_ctx(config)) is not None
    assert "change nothing" in last_user(server.requests[1])


def test_nonsense_never_breaks_the_proposer(server: ScriptedLLMServer, repo: Path) -> None:
    server.script(
        "I think you should train longer!",
        "<<<<<<< SEARCH\nfoo\n",
        "```\n\x00\x01 >>>>>>> REPLACE =======\n```",
    )
    config = make_config(server, max_reflections=2)
    with pytest.raises(ProposalSkipped) as info:
        LLMProposer(config, repo, retry=FAST).propose(make_ctx(config))
    assert "after 3 tries" in info.value.reason
    assert "no usable SEARCH/REPLACE block" in last_user(server.requests[1])


def test_user_idea_reaches_the_model(server: ScriptedLLMServer, repo: Path) -> None:
    server.script(LR_UP)
    config = make_config(server)
    LLMProposer(config, repo, retry=FAST).propose(make_ctx(config, user_idea="try a warmup of 100 steps"))
    assert "try a warmup of 100 steps" in last_user(server.requests[0])


def test_recommendations_come_from_the_model(server: ScriptedLLMServer) -> None:
    server.script("- Try a cosine schedule.\n- Then widen the model.")
    text = llm_recommendations(make_config(server), "# Analysis\nkeep: 3, discard: 10")
    assert text == "- Try a cosine schedule.\n- Then widen the model."
    assert "keep: 3, discard: 10" in message_text(server.requests[0])
    server.script(Reply(status=401))
    assert llm_recommendations(make_config(server), "# Analysis") is None


def test_reply_that_does_not_compile_is_sent_back_with_its_line(server: ScriptedLLMServer, repo: Path) -> None:
    broken = reply("learning rate 0.03", block("LEARNING_RATE = 0.02", "LEARNING_RATE = = 0.03"))
    server.script(broken, reply("learning rate 0.03", block("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.03")))
    config = make_config(server)
    told: list[tuple[int, str]] = []
    proposal = LLMProposer(config, repo, retry=FAST).propose(
        make_ctx(config, on_retry=lambda n, why: told.append((n, why)))
    )
    assert proposal is not None and proposal.files["train.py"] == TRAIN.replace("0.02", "0.03")
    feedback = last_user(server.requests[1])
    assert "train.py does not compile after your edits: invalid syntax at line 3." in feedback
    assert ">    3 | LEARNING_RATE = = 0.03" in feedback and "Nothing was run" in feedback
    assert told == [(1, "train.py would not compile (line 3: invalid syntax)")]


def test_a_reply_that_never_compiles_is_skipped_not_proposed(server: ScriptedLLMServer, repo: Path) -> None:
    server.default = Reply(reply("oops", block("    return loss", "    return loss +")))
    config = make_config(server, max_reflections=1)
    told: list[tuple[int, str]] = []
    with pytest.raises(ProposalSkipped) as info:
        LLMProposer(config, repo, retry=FAST).propose(make_ctx(config, on_retry=lambda n, why: told.append((n, why))))
    assert info.value.reason.startswith("the model's edits could not be used after 2 tries: train.py would not compile")
    assert len(told) == 1, "the last reply is not followed by 'asking again'"


def test_reflection_stays_within_the_prompt_budget_whatever_the_reply(server: ScriptedLLMServer, repo: Path) -> None:
    budget = 6000
    huge = "Let me think about this.\n" + "the loss could go down if we change something\n" * 440_000
    many = "".join(block(f"MISSING_{i} = 1", f"MISSING_{i} = 2") for i in range(10_000))
    server.script(huge, many, LR_UP)
    config = make_config(server, max_reflections=2, prompt_budget_tokens=budget)
    told: list[tuple[int, str]] = []
    proposal = LLMProposer(config, repo, retry=FAST).propose(
        make_ctx(config, on_retry=lambda n, why: told.append((n, why)))
    )
    assert len(huge) > 20_000_000 and len(many) > 600_000
    assert proposal is not None and proposal.files["train.py"] == TRAIN.replace("0.02", "0.04")
    sizes = [sum(len(m["content"]) for m in body["messages"]) for body in server.requests]
    assert all(size <= budget * 4 for size in sizes), sizes
    second, third = server.requests[1]["messages"], server.requests[2]["messages"]
    assert "characters cut here" in second[-2]["content"] and "no usable SEARCH/REPLACE block" in second[-1]["content"]
    feedback = third[-1]["content"]
    assert "10,000 of your 10,000 edits failed" in feedback and "## Block 5 failed" in feedback
    assert "## Block 6 failed" not in feedback
    assert "The other 9,995 failed edits, by reason:\n- 9,995: its SEARCH part does not match any lines" in feedback
    assert told == [
        (1, "no edit found in it"),
        (2, "block 1's SEARCH matches nothing in train.py (and 9,999 more failed)"),
    ]
