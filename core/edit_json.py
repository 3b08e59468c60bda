"""Edits written as JSON: edit objects in a fence (`{"file": ..., "search": ..., "replace": ...}`, a list of
them, or `{"path": ..., "edits": [...]}`) and tool-call envelopes (`<tool_call>{"name": "str_replace_editor",
"arguments": {"command": "str_replace", "path": ..., "old_str": ..., "new_str": ...}}</tool_call>`). Each one
becomes a SEARCH/REPLACE pair, applied like a block."""

from __future__ import annotations

import json
import re
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .whole_file import closes_fence, fenced_blocks

_OPEN = re.compile(
    r"^\s*(?:(`{3,}|~{3,})\s*(json[c5]?|javascript|js)?\s*$|<(tool_call|function_call|invoke)\b[^>]*>\s*$)"
)
_ONE_LINE = re.compile(r"^\s*<(tool_call|function_call)>\s*(\{.*\})\s*</\1>\s*$")
_CLOSE_TAG = re.compile(r"^\s*</(tool_call|function_call|invoke)>\s*$")
_PATH_KEYS = ("path", "file", "file_path", "filepath", "filename", "target_file")
_SEARCH_KEYS = ("old_str", "search", "old_string", "old", "find", "original", "old_text")
_REPLACE_KEYS = ("new_str", "replace", "new_string", "new", "replacement", "updated", "new_text")


@dataclass(frozen=True)
class JsonEdit:
    line: int
    """0-based line of the reply the JSON starts on, to order it among other edits."""
    path: str | None
    search: str
    replace: str


def _first(obj: dict[str, Any], keys: Sequence[str]) -> Any:
    return next((obj[k] for k in keys if k in obj), None)


def _edits(obj: Any, path: str | None) -> Iterator[tuple[str | None, str, str]]:
    if isinstance(obj, list):
        for item in obj:
            yield from _edits(item, path)
        return
    if not isinstance(obj, dict):
        return
    arguments = obj.get("arguments", obj.get("input", obj.get("parameters")))
    if isinstance(arguments, str):
        arguments = _load(arguments)
    if isinstance(arguments, dict | list):
        yield from _edits(arguments, path)
        return
    named = _first(obj, _PATH_KEYS)
    path = named if isinstance(named, str) else path
    search, replace = _first(obj, _SEARCH_KEYS), _first(obj, _REPLACE_KEYS)
    if isinstance(search, str) and isinstance(replace, str):
        yield path, search, replace
    for key in ("edits", "changes", "replacements"):
        if isinstance(obj.get(key), list):
            yield from _edits(obj[key], path)


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def parse_json_edits(lines: Sequence[str], skip: Container[int]) -> list[JsonEdit]:
    """Every edit held by a JSON fence or a tool-call envelope outside the lines in `skip`."""
    found: list[JsonEdit] = []
    inside: set[int] = set()
    for _, i, j in fenced_blocks(lines, skip, _OPEN, _closes):
        found += [JsonEdit(i, p, s, r) for p, s, r in _edits(_load("\n".join(lines[i + 1 : j])), None)]
        inside.update(range(i, j + 1))
    for i, line in enumerate(lines):
        one_line = _ONE_LINE.match(line) if i not in skip and i not in inside else None
        if one_line:
            found += [JsonEdit(i, p, s, r) for p, s, r in _edits(_load(one_line.group(2)), None)]
    return found


def _closes(line: str, opening: re.Match[str]) -> bool:
    ticks = opening.group(1)
    return closes_fence(line, ticks) if ticks else _CLOSE_TAG.match(line) is not None
