"""The line of a crashed run's log that says what went wrong."""

from __future__ import annotations

import os
import re
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ERROR = re.compile(
    r"(\w*(Error|Exception|Interrupt)\b|error:|fatal|killed|out of memory|\boom\b|segmentation fault|"
    r"core dumped|aborted|timed out|timeout|nan\b|inf\b)",
    re.IGNORECASE,
)
_NOISE = re.compile(r"^(Traceback \(most recent call last\)|File \"|\^+$|~+$|During handling|The above exception)")


def crash_reason(path: Path, tail_bytes: int = 65536) -> str | None:
    """The last line of a log that says what went wrong, else its last non-empty line; None if no log."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            data = fh.read()
    except OSError:
        return None
    lines = [_ANSI.sub("", ln).strip() for ln in data.decode("utf-8", errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not _NOISE.match(ln)]
    if not lines:
        return None
    for line in reversed(lines):
        if _ERROR.search(line):
            return one_line(line)
    return one_line(lines[-1])


def reads_as_error(line: str) -> bool:
    """The line says what went wrong (an exception, an error, a kill), not a progress line."""
    return bool(_ERROR.search(line))


def one_line(text: str, width: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
