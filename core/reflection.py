"""What the model is told when its reply cannot be used, and the conversation that carries it, kept within
the prompt budget whatever the reply: the echoed reply is cut, many failing blocks are summarised."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .edit_blocks import MAX_DETAILED, ApplyResult, ParsedReply
from .prompt import Message

MIN_ROOM_CHARS = 6_000
"""Room a reflection round keeps for itself even when the first prompt filled the budget."""
OLDER_REPLY_CHARS = 2_000
MAX_PROBLEMS = 5
MAX_NAMES = 20


def cut_middle(text: str, limit: int) -> str:
    """`text` within `limit` characters: its head and tail, with how much was left out between them."""
    if len(text) <= limit:
        return text
    note = f"\n[... {len(text) - limit:,} characters cut here ...]\n"
    keep = max(0, limit - len(note))
    head = keep * 2 // 3
    return text[:head] + note + text[len(text) - (keep - head) :]


def _quote(text: str) -> str:
    ticks = "````" if "```" in text else "```"
    return f"{ticks}\n{text.rstrip()}\n{ticks}"


def _title(label: str) -> str:
    return label[:1].upper() + label[1:]


def failure_feedback(parsed: ParsedReply, result: ApplyResult, limit: int) -> str:
    parts: list[str] = []
    total, bad = len(parsed.blocks), len(result.failures)
    per = max(300, limit // (3 * MAX_DETAILED))
    if bad:
        parts.append(f"{bad:,} of your {total:,} edits failed; nothing has been run yet.")
    for problem in parsed.problems[:MAX_PROBLEMS]:
        parts.append(f"Your reply could not be read fully: {cut_middle(problem, per)}.")
    if len(parsed.problems) > MAX_PROBLEMS:
        parts.append(f"... and {len(parsed.problems) - MAX_PROBLEMS:,} more parts of it could not be read.")
    for failure in result.failures[:MAX_DETAILED]:
        block = failure.block
        parts.append(f"## {_title(block.label)} failed: {failure.reason}\n{_quote(cut_middle(block.quote(), per))}")
        if failure.places:
            parts.append(f"The places it matches:\n{_quote(cut_middle(failure.places, per))}")
        if failure.closest:
            parts.append(f"Did you mean these lines of the file?\n{_quote(cut_middle(failure.closest, per))}")
    rest = result.failures[MAX_DETAILED:]
    if rest:
        kinds = Counter(f.reason.split(";")[0] for f in rest)
        lines = [f"- {n:,}: {reason}" for reason, n in kinds.most_common(MAX_PROBLEMS)]
        if len(kinds) > MAX_PROBLEMS:
            lines.append(f"- {sum(n for _, n in kinds.most_common()[MAX_PROBLEMS:]):,}: other reasons")
        parts.append(f"The other {len(rest):,} failed edits, by reason:\n" + "\n".join(lines))
    done = sorted(result.applied + result.already, key=lambda b: b.index)
    if done:
        names = ", ".join(f"{b.label} ({b.path})" for b in done[:MAX_NAMES])
        more = f" and {len(done) - MAX_NAMES:,} more" if len(done) > MAX_NAMES else ""
        parts.append(f"These edits applied and are in place now: {names}{more}. Do not send them again.")
    parts.append(
        "Reply with corrected SEARCH/REPLACE blocks for the failed edits only. SEARCH must copy the current "
        "lines of the file exactly, with their indentation; drop any block for a file you may not edit."
    )
    return cut_middle("\n\n".join(parts), limit)


def no_edits_feedback(parsed: ParsedReply, snippets: int = 0) -> str:
    problems = [cut_middle(p, 300) for p in parsed.problems[:MAX_PROBLEMS]]
    if snippets:
        problems.append("its fenced code is a snippet, not the whole file, so nothing was applied")
    extra = "".join(f" ({p})" for p in problems)
    return (
        f"Your reply holds no usable SEARCH/REPLACE block{extra}. Reply in the format asked: the Description, "
        "Category and Rationale lines, then the file's path alone on a line followed by a block:\n"
        "<<<<<<< SEARCH\n<exact current lines>\n=======\n<new lines>\n>>>>>>> REPLACE"
    )


def cut_feedback(max_output_tokens: int) -> str:
    return (
        f"Your reply was cut off by the output limit ({max_output_tokens:,} tokens) before it ended, so none of it "
        "was applied. Send the change again as short SEARCH/REPLACE blocks (or a unified diff) holding only the "
        "lines that change and a line or two around them, never a whole file, after the Description, Category "
        "and Rationale lines."
    )


def room_chars(base: Sequence[Message], budget_chars: int) -> int:
    return max(MIN_ROOM_CHARS, budget_chars - sum(len(m.get("content", "")) for m in base))


def conversation(base: Sequence[Message], exchanges: Sequence[tuple[str, str]], budget_chars: int) -> list[Message]:
    """The first prompt, then the latest (reply, feedback) rounds that fit; each echoed reply is cut to fit."""
    room = room_chars(base, budget_chars)
    kept: list[tuple[str, str]] = []
    for n, (reply, feedback) in enumerate(reversed(exchanges)):
        feedback = cut_middle(feedback, room // 2)
        reply_room = room - len(feedback)
        if n:
            reply_room = min(reply_room, OLDER_REPLY_CHARS)
            if reply_room < 500:
                break
        shown = cut_middle(reply, max(200, reply_room))
        kept.append((shown, feedback))
        room -= len(shown) + len(feedback)
    messages = list(base)
    for reply, feedback in reversed(kept):
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": feedback}]
    return messages
