"""Text from the model or a training's log made safe for terminals and records."""

from __future__ import annotations

from autoresearch.core.sanitize import one_line, safe_line, safe_text


def test_escape_sequences_are_removed_whole() -> None:
    assert one_line("lr up \x1b]0;PWNED-TITLE\x07\x1b[2J\x1b[31mRED\x1b[0m") == "lr up RED"
    assert safe_line("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x1bPq#0;2\x1b\\ done") == "link  done"
    assert safe_line("\x9b31mred\x9b0m") == "red"


def test_other_control_characters_show_as_a_question_mark() -> None:
    assert one_line("lr\x00up") == "lr?up"
    assert safe_line("bell\x07 back\x08 del\x7f c1\x85") == "bell? back? del? c1?"
    assert safe_line("a \u202egnp.exe") == "a ?gnp.exe"


def test_lines_and_tabs_are_kept_only_where_text_has_lines() -> None:
    assert safe_text("one\ttwo\r\nthree\n") == "one\ttwo\nthree\n"
    assert safe_line("one\ttwo\nthree\r") == "one two three "
    assert one_line("  one \t two\n\nthree  ") == "one two three"


def test_ordinary_text_is_unchanged() -> None:
    text = "raise LR to 3e-4 (warmup 10%) — ünïcode ✓ [hyperparams]"
    assert safe_text(text) == safe_line(text) == one_line(text) == text
