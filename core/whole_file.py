"""A whole new version of an editable file in a reply: a fence after the file's name (or naming it in its
info string) holding no SEARCH/REPLACE or diff markers. It is taken only when it clearly is the whole file:
it keeps most of the current file's lines and leaves nothing out with a `# ... unchanged` comment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass

from .edit_match import is_lazy_comment

_OPEN = re.compile(r"^\s*(`{3,}|~{3,})\s*(.*?)\s*$")
_MARKERS = re.compile(r"^\s*(<{5,9}\s*SEARCH|={5,9}\s*$|>{5,9}\s*REPLACE|@@|\+\+\+ |--- )", re.IGNORECASE)
# Share of the current file's distinct lines a whole version must keep, named or not.
KEEP_NAMED = 0.5
KEEP_NAMELESS = 0.8
_CODE = ("", "python", "py", "python3")
# Editors put the path in a fence's info string: `python:train.py`, `12:40:train.py`, `python title="x.py"`.
_INFO_KEY = re.compile(r"""\b(?:title|file(?:name)?|path)\s*=\s*["']?([^"'\s}]+)""", re.IGNORECASE)
_LOOKS_LIKE_PATH = re.compile(r"[/\\]|\.[A-Za-z][A-Za-z0-9]{0,7}$")


def fence_language(info: str) -> str:
    """The language word of a fence's info string (`python` in `python:train.py`), lower-cased."""
    return re.split(r"[\s:{]", info.strip(), maxsplit=1)[0].lower()


def fence_path(info: str) -> str | None:
    """The file a fence's info string names, or None (`python` alone names none)."""
    key = _INFO_KEY.search(info)
    if key:
        return key.group(1)
    words = info.split()
    if not words:
        return None
    last = words[-1].split(":")[-1].strip("\"'`")
    if last and _LOOKS_LIKE_PATH.search(last):
        return last
    return None


@dataclass(frozen=True)
class FencedFile:
    line: int
    path: str | None
    """The file named next to the fence; None when no name was given."""
    text: str


def find_fenced_files(
    lines: Sequence[str], skip: Container[int], name_at: Callable[[int], str | None]
) -> list[FencedFile]:
    found: list[FencedFile] = []
    for opening, i, j in fenced_blocks(lines, skip, _OPEN, lambda line, opened: closes_fence(line, opened.group(1))):
        body = list(lines[i + 1 : j])
        language = fence_language(opening.group(2))
        if language not in ("diff", "patch", "udiff") and not any(_MARKERS.match(b) for b in body):
            path = fence_path(opening.group(2)) or name_at(i)
            if path is not None or language in _CODE:
                found.append(FencedFile(i, path, "\n".join(body)))
    return found


def fenced_blocks(
    lines: Sequence[str],
    skip: Container[int],
    opening: re.Pattern[str],
    closes: Callable[[str, re.Match[str]], bool],
) -> Iterator[tuple[re.Match[str], int, int]]:
    """Each block that a line matching `opening` (outside `skip`) opens and the first later line `closes` accepts
    ends (or the reply's end): the opening's match, its line and the closing line, blocks never nested."""
    i = 0
    while i < len(lines):
        opened = opening.match(lines[i]) if i not in skip else None
        if opened is None:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not closes(lines[j], opened):
            j += 1
        yield opened, i, j
        i = j + 1


def closes_fence(line: str, ticks: str) -> bool:
    """`line` closes a fence opened by `ticks` (three or more backticks or tildes): as many or more, nothing else."""
    stripped = line.strip()
    return stripped.startswith(ticks) and not stripped.strip(ticks[0])


def is_snippet(current: str, new: str) -> bool:
    """`new` is a piece of code far from the whole of `current` that leaves nothing out with a comment."""
    return not any(is_lazy_comment(line) for line in new.split("\n")) and _kept(current, new) < KEEP_NAMED


def _kept(current: str, new: str) -> float:
    old_lines = {ln.strip() for ln in current.split("\n") if ln.strip()}
    new_lines = {ln.strip() for ln in new.split("\n") if ln.strip()}
    return len(old_lines & new_lines) / len(old_lines) if old_lines else 1.0


def whole_file_problem(current: str, new: str, named: bool) -> str | None:
    """Why `new` cannot be taken as the whole new version of `current`, or None when it can."""
    present = {line.strip() for line in current.split("\n")}
    lazy = next(
        (n for n, line in enumerate(new.split("\n"), 1) if is_lazy_comment(line) and line.strip() not in present), 0
    )
    if lazy:
        shown = new.split("\n")[lazy - 1].strip()
        return f"it leaves lines out (line {lazy}: `{shown}`); send SEARCH/REPLACE blocks for the lines to change"
    old_lines = {ln.strip() for ln in current.split("\n") if ln.strip()}
    new_lines = {ln.strip() for ln in new.split("\n") if ln.strip()}
    if not old_lines:
        return None
    kept = len(old_lines & new_lines) / len(old_lines)
    if kept < (KEEP_NAMED if named else KEEP_NAMELESS):
        return (
            f"it does not look like the whole file (it keeps {len(old_lines & new_lines)} of the file's "
            f"{len(old_lines)} distinct lines); send SEARCH/REPLACE blocks for the lines to change"
        )
    return None
