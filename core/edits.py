"""A change as its own edits, and how those edits are re-applied on a newer version of the files.

An edit is the run of lines a change replaced (its own lines, no context) and what it put there. A change built
on an older best (a draft asked for while a run trained, a worker's gain) is re-applied on the new best edit by
edit: each edit goes where its own lines now are, so two changes to different lines combine wherever they sit,
even on neighbouring lines. Only an edit whose own lines the best changed is a conflict. A three-way merge with
context (`git merge-file`) is not used: it sees neighbouring edits as one hunk, and taking that hunk would undo
the best's change to the line next to ours.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    """Lines `start`..`start + len(old)` of `path` (in the version the change was built on) become `new`."""

    path: str
    start: int
    old: tuple[str, ...]
    new: tuple[str, ...]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def text_edits(path: str, before: str, after: str) -> list[Edit]:
    """The edits that turn `before` into `after`: each run of changed lines, without context."""
    old, new = _lines(before), _lines(after)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return [
        Edit(path, i1, tuple(old[i1:i2]), tuple(new[j1:j2]))
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def file_edits(base: Mapping[str, str], changed: Mapping[str, str]) -> tuple[Edit, ...]:
    """The edits of a change given as the complete new text of each file it touches."""
    found: list[Edit] = []
    for path in sorted(changed):
        found += text_edits(path, base.get(path, ""), changed[path])
    return tuple(found)


class _Map:
    """Where each line of the old version is in the new one; None for a line the new version changed."""

    def __init__(self, old: Sequence[str], new: Sequence[str]) -> None:
        self.size = len(old)
        self.at: list[int | None] = [None] * len(old)
        for tag, i1, i2, j1, _ in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
            if tag == "equal":
                for k in range(i2 - i1):
                    self.at[i1 + k] = j1 + k

    def span(self, start: int, end: int) -> int | None:
        """Where old lines start..end begin in the new version, when all of them are there unchanged, in a row."""
        places = self.at[start:end]
        if any(p is None for p in places):
            return None
        first = places[0]
        assert first is not None
        return first if all(p == first + k for k, p in enumerate(places)) else None

    def gap(self, at: int) -> int | None:
        """Where to insert before old line `at`: the place of an unchanged line on either side of it."""
        if at < self.size and self.at[at] is not None:
            return self.at[at]
        before = self.at[at - 1] if at > 0 else None
        if before is not None:
            return before + 1
        return 0 if self.size == 0 else None

    def around(self, start: int, end: int, new_size: int) -> tuple[int, int] | None:
        """The new version's lines in place of old lines start..end, when the lines on both sides are unchanged."""
        left = -1 if start == 0 else self.at[start - 1]
        right = new_size if end >= self.size else self.at[end]
        if left is None or right is None or right < left + 1:
            return None
        return left + 1, right


def reapply(
    base: Mapping[str, str], edits: Iterable[Edit], new: Mapping[str, str], *, own_lines_win: bool = False
) -> dict[str, str] | None:
    """The complete text of each file the edits touch, the edits (made on `base`) applied on `new`.

    None when an edit's own lines were changed in `new`; with `own_lines_win`, such an edit replaces `new`'s
    lines in their place instead, as long as `new` changed no line beyond them (else None too).
    """
    by_path: dict[str, list[Edit]] = {}
    for edit in edits:
        by_path.setdefault(edit.path, []).append(edit)
    merged: dict[str, str] = {}
    for path, file_edits_ in by_path.items():
        old_lines, lines = _lines(base.get(path, "")), _lines(new.get(path, ""))
        where = _Map(old_lines, lines)
        placed: list[tuple[int, int, tuple[str, ...]]] = []
        for edit in file_edits_:
            end = edit.start + len(edit.old)
            if tuple(old_lines[edit.start : end]) != edit.old:
                return None  # not an edit of this base
            at = where.span(edit.start, end) if edit.old else where.gap(edit.start)
            if at is not None:
                placed.append((at, at + len(edit.old), edit.new))
                continue
            region = where.around(edit.start, end, len(lines)) if own_lines_win else None
            if region is None:
                return None
            placed.append((region[0], region[1], edit.new))
        placed.sort(key=lambda p: (p[0], p[1]))
        if any(a[1] > b[0] for a, b in itertools.pairwise(placed)):
            return None
        for start, end, text in reversed(placed):
            lines[start:end] = text
        merged[path] = "".join(lines)
    return merged
