"""Unified diffs in a model's reply: `--- a/train.py` / `+++ b/train.py` headers with `@@` hunks, or bare
`@@ ... @@` hunks after a file line. Each hunk becomes a SEARCH (its context and removed lines) and a
REPLACE (its context and added lines), applied like a block, so the hunk's line numbers never matter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

_HUNK = re.compile(r"^@@(?:\s.*)?$")
_HEADER_NUMBERS = re.compile(r"^@@\s*-(\d+)(?:,\d+)?\s+\+\d+(?:,\d+)?\s*@@\s?(.*)$")
_FENCE = re.compile(r"^\s*(```+|~~~+)")
# OpenAI's apply_patch envelope: `*** Begin Patch`, `*** Update File: train.py`, hunks, `*** End Patch`.
_PATCH_FILE = re.compile(r"^\*\*\* (?:Update|Add) File:\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class Hunk:
    line: int
    """0-based line of the reply the hunk starts on, to order it among other edits."""
    path: str | None
    search: str
    replace: str
    start: int = 0
    """The old file's first line the header gives (`@@ -74,3 ...`), 0 when none: used only to choose among
    places a hunk matches equally well."""
    scope: str = ""
    """The function or class line the header quotes after its second `@@`, for the same purpose."""


def _header_path(text: str) -> str | None:
    name = text.split("\t")[0].strip().strip("\"'`")
    if name in ("/dev/null", ""):
        return None
    return name[2:] if name[:2] in ("a/", "b/") else name


def _is_header(lines: Sequence[str], i: int) -> bool:
    return lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")


def _hunk_body(lines: Sequence[str], start: int, skip: Container[int]) -> tuple[list[str], int]:
    body: list[str] = []
    j = start
    while j < len(lines) and j not in skip:
        line = lines[j]
        if _HUNK.match(line) or _FENCE.match(line) or _is_header(lines, j) or line.startswith("diff --git"):
            break
        if line.startswith("\\"):
            j += 1
            continue
        if line and line[0] not in " +-":
            break
        body.append(line)
        j += 1
    while body and not body[-1].strip():
        body.pop()
    return body, j


def parse_hunks(lines: Sequence[str], skip: Container[int], name_at: Callable[[int], str | None]) -> list[Hunk]:
    """Every hunk outside the lines in `skip`; `name_at(i)` reads a file line written above line i."""
    hunks: list[Hunk] = []
    header: str | None = None
    in_fence = False
    i = 0
    while i < len(lines):
        if i in skip:
            i += 1
            continue
        line = lines[i]
        if _is_header(lines, i):
            header = _header_path(lines[i + 1][4:]) or _header_path(line[4:])
            i += 2
            continue
        patch_file = _PATCH_FILE.match(line)
        if patch_file:
            header = _header_path(patch_file.group(1))
        if _HUNK.match(line):
            body, end = _hunk_body(lines, i + 1, skip)
            if any(b[:1] in ("+", "-") for b in body):
                search = [b[1:] if b else "" for b in body if not b or b[0] in " -"]
                replace = [b[1:] if b else "" for b in body if not b or b[0] in " +"]
                numbers = _HEADER_NUMBERS.match(line)
                start, scope = (int(numbers.group(1)), numbers.group(2).strip()) if numbers else (0, "")
                hunks.append(Hunk(i, header or name_at(i), "\n".join(search), "\n".join(replace), start, scope))
            i = end
            continue
        if _FENCE.match(line):
            in_fence = not in_fence
            if not in_fence:
                header = None
        i += 1
    return hunks
