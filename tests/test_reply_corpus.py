"""The corpus of realistic replies, through the real LLM proposer and litellm against the scripted server:
at least 95 % apply as the model meant them within 3 reflections and 70 % on the first try, none wrongly,
none that does not compile; docs/EDIT-FORMATS.md shows the current figures."""

from __future__ import annotations

import pytest

from tests.reply_corpus import DOC, REFLECTIONS, Outcome, load_corpus, run_corpus, summary, table


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    return run_corpus()


def test_corpus_is_large_and_varied() -> None:
    cases = load_corpus()
    assert len(cases) >= 70
    forms = " ".join(c.form for c in cases).lower()
    for word in ("unified diff", "whole", "elision", "tabs", "stripped", "two places", "syntax", ".gitignore"):
        assert word in forms, word
    for word in ("crlf", "bom", "output limit", "</think>", "same", "lost its indentation", "run-command flag"):
        assert word in forms, word
    for word in ("json", "tool_call", "info string", "numbered list", "existing code", "sketch", "unicode"):
        assert word in forms, word
    assert any(c.cut for c in cases) and any(c.run_command for c in cases)


def test_replies_apply_as_meant(outcomes: list[Outcome]) -> None:
    s = summary(outcomes)
    wrong = [o.case.name for o in outcomes if o.note == "applied other than meant"]
    assert not wrong, f"applied, but not as meant: {wrong}"
    assert s["within"] >= 0.95 * s["cases"], table(outcomes)
    assert s["first"] >= 0.70 * s["cases"], table(outcomes)
    assert s["not_compiling"] == 0
    late = [o.case.name for o in outcomes if o.as_meant and o.replies_used > 1 + REFLECTIONS]
    assert not late


def test_document_holds_the_current_measure(outcomes: list[Outcome]) -> None:
    assert table(outcomes) in DOC.read_text(), "run `python -m tests.reply_corpus` and paste its table"
