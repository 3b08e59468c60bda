from __future__ import annotations

from autoresearch.core.config import SessionConfig
from autoresearch.core.prompt import (
    build_messages,
    estimate_tokens,
    history_section,
    log_tail,
    messages_tokens,
    strategy_notes,
    system_prompt,
)
from autoresearch.core.proposer import CrashInfo, ExperimentRecord, ProposalContext

TRAIN = "LEARNING_RATE = 0.02\nBATCH_SIZE = 32\nprint(f'val_loss: {0.5}')\n"


def _config(**extra: object) -> SessionConfig:
    return SessionConfig(tag="t1", script_path="train.py", metric_name="val_loss", time_budget_minutes=3, **extra)


def _record(n: int, status: str = "discard", category: str = "hyperparams", desc: str = "") -> ExperimentRecord:
    return ExperimentRecord(
        number=n,
        commit=f"{n:07x}",
        metric=0.0 if status == "crash" else 1.0 - n / 1000,
        status=status,
        description=desc or f"idea number {n} " + "with a long explanation " * 3,
        category=category,
        rationale=f"rationale of {n} " * 10,
        diff=f"--- a/train.py\n+++ b/train.py\n-LEARNING_RATE = 0.02\n+LEARNING_RATE = 0.{n}\n" + "+# pad\n" * 80,
    )


def _ctx(history: tuple[ExperimentRecord, ...] = (), **kw: object) -> ProposalContext:
    config = kw.pop("config", None) or _config()
    assert isinstance(config, SessionConfig)
    return ProposalContext(
        config=config,
        number=len(history) + 1,
        files={"train.py": TRAIN},
        readonly=kw.pop("readonly", {}),
        history=history,
        baseline=1.0 if history else None,
        best=0.8 if history else None,
        best_number=5 if history else None,
        **kw,
    )


def test_system_prompt_states_the_rules() -> None:
    text = system_prompt(_config(metric_direction="higher", editable_files=["train.py", "model.py"]))
    for needle in (
        "One idea per experiment",
        "train.py, model.py",
        "Never touch the evaluation",
        "3 minutes",
        "val_loss",
        "higher is better",
        "Simplicity",
        "<<<<<<< SEARCH",
        "Description:",
        "Category:",
    ):
        assert needle in text, needle


def test_prompt_holds_files_results_history_and_task() -> None:
    history = (_record(1, "baseline"), _record(2, "keep"), _record(3, "discard"))
    ctx = _ctx(history, readonly={"program.md": "Focus on the optimizer."})
    system, user = build_messages(ctx)
    assert system["role"] == "system" and user["role"] == "user"
    body = user["content"]
    assert "## program.md\n```\nFocus on the optimizer." in body
    assert TRAIN in body
    assert "Baseline: 1." in body and "Best so far: 0.8 (experiment #5)" in body
    assert "#2 keep 0.998 [hyperparams]" in body
    assert "+LEARNING_RATE = 0.3" in body, "the latest diff is shown"
    assert "rationale of 3" in body
    assert "Propose experiment #4" in body
    assert body.index("# Readonly") < body.index("# Editable") < body.index("# History") < body.index("# Your task")


def test_user_idea_is_the_task() -> None:
    body = build_messages(_ctx((_record(1, "baseline"),), user_idea="try cosine decay"))[1]["content"]
    assert "The user asked for this idea" in body and "try cosine decay" in body


def test_crash_request_carries_log_tail_and_diff() -> None:
    log = "\n".join(f"step {i}" for i in range(500)) + "\nTraceback (most recent call last):\nRuntimeError: CUDA OOM\n"
    crash = CrashInfo(
        number=7,
        description="double the width",
        category="architecture",
        diff="--- a/train.py\n+++ b/train.py\n-WIDTH = 64\n+WIDTH = 128\n",
        log_tail=log,
        attempt=1,
    )
    body = build_messages(_ctx((_record(1, "baseline"),), crash=crash))[1]["content"]
    assert "Experiment #7 (double the width) [architecture] crashed" in body
    assert "RuntimeError: CUDA OOM" in body
    assert "+WIDTH = 128" in body
    assert "step 0\n" not in body, "the log is cut to its tail"
    assert "smallest fix" in body
    assert "version before the crash" in body, "WIDTH = 128 is not in the files shown"
    assert log_tail(log).count("\n") == 49


def test_strategy_notes_switch_category_and_change_approach() -> None:
    history = [_record(1, "baseline")]
    history += [_record(n, "discard", "hyperparams") for n in range(2, 5)]
    history += [_record(n, "crash", "architecture") for n in range(5, 8)]
    notes = strategy_notes(history)
    assert "hyperparams: 3 or more discards since the last keep" in notes
    assert "The last 3 experiments crashed" in notes
    assert "not tried yet: optimizer, regularization, data" in notes
    calm = strategy_notes([_record(1, "baseline"), _record(2, "discard"), _record(3, "keep")])
    assert "choose another category" not in calm and "crashed" not in calm


def test_three_hundred_experiments_fit_the_budget() -> None:
    statuses = ("discard", "discard", "keep", "crash")
    history = (_record(1, "baseline"), *(_record(n, statuses[n % 4]) for n in range(2, 301)))
    budget = 8000
    messages = build_messages(_ctx(history), budget)
    assert messages_tokens(messages) <= budget
    body = messages[1]["content"]
    assert "Experiments #1 to #" in body, "the oldest are summarised"
    for n in range(271, 301):
        assert f"\n#{n} {history[n - 1].status}" in body, f"newest row #{n} kept in full"
    assert "+LEARNING_RATE = 0.300" in body, "the latest diff is kept"
    assert TRAIN in body
    # A bigger budget keeps every row.
    roomy = build_messages(_ctx(history), 60_000)[1]["content"]
    assert "summarised" not in roomy and "\n#2 keep" in roomy and "\n#3 crash" in roomy


def test_history_section_never_exceeds_its_limit_by_much() -> None:
    history = tuple(_record(n) for n in range(1, 301))
    for limit in (6000, 10_000, 30_000):
        text = history_section(history, limit)
        assert len(text) <= limit * 1.05, limit
        assert "#300 discard" in text
    assert estimate_tokens("x" * 400) == 100


def test_prompt_shows_how_the_best_and_latest_runs_trained() -> None:
    from dataclasses import replace

    from autoresearch.core.loss_curve import LossCurve

    curve = LossCurve((2.5, 1.9, 1.6, 1.45, 1.4), 1204)
    best = replace(_record(2, "keep"), duration_s=178.4, curve=curve)
    latest = replace(_record(3, "discard"), duration_s=9.26, curve=LossCurve((2.4, 2.3), 2))
    ctx = replace(_ctx((_record(1, "baseline"), best, latest)), best=0.998, best_number=2)
    text = build_messages(ctx)[1]["content"]
    assert "Training: ran 178 s of the 180 s budget; loss 2.5 1.9 1.6 1.45 1.4 (5 of 1,204 logged values" in text
    assert "(the best's run)" in text.split("# History")[0], "the best's run is shown with the results"
    assert "## #3 discard" in text and "Training: ran 9.3 s of the 180 s budget; loss 2.4 2.3 (2 of 2" in text
    plain = build_messages(replace(_ctx((_record(1, "baseline"), _record(2, "keep"))), best_number=2))[1]
    assert "Training:" not in plain["content"], "nothing is said about runs with no duration or curve"
