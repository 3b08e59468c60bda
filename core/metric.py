"""Reading the metric (and memory) from a log: the last matching line, read from the end of the file."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

# A number standing on its own: the 1 of `top1_acc` or the nan of `banana` is not one.
_NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan\b|inf(?:inity)?\b)",
    re.IGNORECASE,
)
_CHUNK = 1 << 20


def _lines_from_end(path: Path) -> Iterator[str]:
    """The file's lines, last first, reading 1 MB at a time from the end (a log can be gigabytes)."""
    try:
        fh = path.open("rb")
    except OSError:
        return
    with fh:
        fh.seek(0, 2)
        pos = fh.tell()
        rest = b""
        while pos > 0:
            step = min(_CHUNK, pos)
            pos -= step
            fh.seek(pos)
            block = fh.read(step) + rest
            parts = block.split(b"\n")
            rest = parts[0]
            for raw in reversed(parts[1:]):
                yield raw.decode("utf-8", errors="replace").rstrip("\r")
        yield rest.decode("utf-8", errors="replace").rstrip("\r")


def number_after(line: str, match: re.Match[str]) -> float | None:
    """The pattern's first group if it has one, else the first number after the matched text (or inside it)."""
    if match.re.groups and match.group(1) is not None:
        group = _NUMBER.search(match.group(1).strip())
        if group:
            return float(group.group(0))
    found = _NUMBER.search(line, match.end()) or _NUMBER.search(line, match.start(), match.end())
    if not found:
        return None
    try:
        return float(found.group(0))
    except ValueError:
        return None


def find_last(path: Path, pattern: str, max_lines: int | None = None) -> float | None:
    """The number on the last line of `path` matching `pattern`, None when no line matches."""
    regex = re.compile(pattern)
    for i, line in enumerate(_lines_from_end(path)):
        if max_lines is not None and i >= max_lines:
            break
        # A progress line rewritten with \r can end in the metric: the text after the last \r is what shows.
        for part in reversed(line.split("\r")):
            match = regex.search(part)
            if match:
                return number_after(part, match)
    return None


def read_metric(path: Path, pattern: str) -> float | None:
    """The metric, or None for a crash: missing, NaN and infinite values all count as no metric."""
    value = find_last(path, pattern)
    if value is None or not math.isfinite(value):
        return None
    return value


def read_memory_gb(path: Path, pattern: str, unit: str = "mb") -> float | None:
    """Memory the script reports itself (karpathy's train.py prints `peak_vram_mb:`); None when absent."""
    value = find_last(path, pattern)
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value / 1024 if unit == "mb" else value


def tail_text(path: Path, max_lines: int = 50, max_bytes: int = 4096) -> str:
    """The last lines of a log, bounded in lines and bytes, for a crash report."""
    lines: list[str] = []
    size = 0
    for line in _lines_from_end(path):
        if len(lines) >= max_lines:
            break
        if not lines and not line:
            continue
        encoded = line.encode("utf-8")
        size += len(encoded) + (1 if lines else 0)
        if size > max_bytes:
            if not lines:
                lines.append(encoded[-max_bytes:].decode("utf-8", errors="ignore"))
            break
        lines.append(line)
    return "\n".join(reversed(lines))
