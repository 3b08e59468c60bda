"""Reading the metric (and memory) from a log: the last matching line, read from the end of the file."""

from __future__ import annotations

import math
import mmap
import re
from collections.abc import Iterator
from pathlib import Path

# A number standing on its own: the 1 of `top1_acc` or the nan of `banana` is not one. Commas that group
# thousands (1,234.5) are read as such, and so are Python's underscores (1_000.5) and hex (0x10); a comma
# after other digits (a decimal comma, 0,5) makes no number, so such a line never gives a wrong value.
_NUMBER = re.compile(
    r"(?<![\w.])(?<!\d,)[-+]?(?:0x[0-9a-f]+\b|"
    r"(?:\d+(?:_\d+)+(?:\.(?:\d+(?:_\d+)*)?)?|\d{1,3}(?:,\d{3})+(?!\d)(?!,\d)(?:\.\d*)?"
    r"|\d+(?![\d_])(?!,\d)\.?\d*|\.\d+)(?:e[-+]?\d+)?"
    r"|nan\b|inf(?:inity)?\b)",
    re.IGNORECASE,
)
_CHUNK = 1 << 20
_BLANK_CHUNK = 64 << 10
MEMORY_TAIL_BYTES = 16 << 20
_META = frozenset(".^$*+?{}[]\\|()")
_ESCAPED_LITERALS = frozenset(".^$*+?{}[]\\|()-:=/#&~%@!,;<>'\" ")


def _blocks_from_end(path: Path, max_bytes: int | None = None) -> Iterator[bytes]:
    """Runs of whole lines joined by newlines, last first, reading 1 MB at a time from the end (a log
    can be gigabytes). Split by b"\n", the blocks give every line of the file exactly once; with
    `max_bytes`, every line that starts after the first newline of the last max_bytes."""
    try:
        fh = path.open("rb")
    except OSError:
        return
    with fh:
        fh.seek(0, 2)
        pos = fh.tell()
        limit = max(0, pos - max_bytes) if max_bytes is not None else 0
        # A line longer than a chunk is kept as its chunks, last first, and joined once: linear in its length.
        rest: list[bytes] = []
        while pos > limit:
            step = min(_CHUNK, pos - limit)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step)
            cut = chunk.find(b"\n")
            if cut < 0:
                rest.append(chunk)
                continue
            yield chunk[cut + 1 :] + b"".join(reversed(rest))
            rest = [chunk[:cut]]
        if limit == 0:
            yield b"".join(reversed(rest))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


def to_number(text: str) -> float:
    """A number as _NUMBER finds it: `1,000.5`, `1_000.5`, `0x10`, `-0.0` (read as 0.0), `1e400` (inf)."""
    plain = text.replace(",", "")
    unsigned = plain.lstrip("+-")
    value = float(int(unsigned, 16)) if unsigned[:2].lower() == "0x" else float(unsigned)
    return (-value if plain.startswith("-") else value) + 0.0  # + 0.0 makes -0.0 the 0.0 it equals


def _found_number(line: str, match: re.Match[str]) -> re.Match[str] | None:
    if match.re.groups and match.group(1) is not None:
        group = _NUMBER.search(match.group(1).strip())
        if group:
            return group
    return _NUMBER.search(line, match.end()) or _NUMBER.search(line, match.start(), match.end())


def number_after(line: str, match: re.Match[str]) -> float | None:
    """The pattern's first group if it has one, else the first number after the matched text (or inside it)."""
    found = _found_number(line, match)
    if not found:
        return None
    try:
        return to_number(found.group(0))
    except (ValueError, OverflowError):
        return None


def _match_line(regex: re.Pattern[str], line: str) -> tuple[bool, float | None]:
    # A progress line rewritten with \r can end in the metric: the text after the last \r is what shows.
    for part in reversed(line.split("\r")):
        match = regex.search(part)
        if match:
            return True, number_after(part, match)
    return False, None


def _required_literal(regex: re.Pattern[str]) -> tuple[bool, bytes] | None:
    """(anchored, text) when every match must start with this plain ASCII text (at a line start when
    anchored); None when the pattern is not that simple."""
    pattern = regex.pattern
    if "|" in pattern or regex.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    anchored = pattern.startswith("^")
    i = int(anchored)
    literal: list[str] = []
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern) and pattern[i + 1] in _ESCAPED_LITERALS:
            literal.append(pattern[i + 1])
            i += 2
        elif char in _META or not char.isascii() or not char.isprintable():
            break
        else:
            literal.append(char)
            i += 1
    if literal and i < len(pattern) and pattern[i] in "?*{":
        literal.pop()  # a quantifier makes the last character optional
    if len(literal) < 2:
        return None
    return anchored, "".join(literal).encode()


def _find_last_literal(
    mm: mmap.mmap, regex: re.Pattern[str], anchored: bool, literal: bytes, max_bytes: int | None
) -> float | None:
    """find_last over a memory map: only lines holding the pattern's required text are decoded and matched."""
    floor = 0
    if max_bytes is not None and len(mm) > max_bytes:
        newline = mm.find(b"\n", len(mm) - max_bytes)
        if newline < 0:
            return None
        floor = newline + 1
    # First the bare text: one pass settles a log that never holds it. Once it shows up inside a line,
    # an anchored pattern searches for the text after a line break (or a carriage return) instead.
    bare = True
    has_cr: bool | None = None
    end = len(mm)
    while end > floor:
        if bare:
            at = mm.rfind(literal, floor, end)
            if at < 0:
                return None
            if anchored and at > 0 and mm[at - 1] not in b"\r\n":
                bare = False
                continue
        else:
            found = mm.rfind(b"\n" + literal, max(floor - 1, 0), end)
            at = found + 1 if found >= 0 else -1
            if found < 0 and has_cr is None:
                has_cr = mm.rfind(b"\r", floor, end) >= 0
            if found >= 0 or has_cr:
                after_cr = mm.rfind(b"\r" + literal, max(found, floor), end)
                at = max(at, after_cr + 1 if after_cr >= 0 else -1)
            if at < 0 and floor == 0 and mm[: len(literal)] == literal:
                at = 0
            if at < 0:
                return None
        start = mm.rfind(b"\n", 0, at) + 1
        stop = mm.find(b"\n", at)
        matched, value = _match_line(regex, _decode(mm[start : stop if stop >= 0 else len(mm)]))
        if matched:
            return value
        end = start
    return None


def _block_filter(pattern: str) -> re.Pattern[str] | None:
    """A pattern that finds a match somewhere in a block of lines (carriage returns made newlines, a
    newline put first) whenever `pattern` matches one of its lines; None when that cannot be promised."""
    if re.search(r"\(\?<?[=!]|\\[AZz]", pattern):
        return None
    # A leading ^ becomes a newline: that keeps the regex engine's fast search for a literal prefix.
    quick = re.sub(r"^(\(\?[aiLmsux]+\))?\^", lambda m: (m.group(1) or "") + r"\n", pattern, count=1)
    try:
        return re.compile(quick, re.MULTILINE)
    except re.error:
        return None


def find_last(path: Path, pattern: str, max_lines: int | None = None, max_bytes: int | None = None) -> float | None:
    """The number on the last line of `path` matching `pattern`, None when no line matches. With
    `max_bytes`, only the lines that start within the file's last max_bytes are searched.

    A pattern absent from a huge log must cost little: where the pattern starts with plain text the
    file is memory-mapped and searched for that text (~15 ms per 100 MB); otherwise each 1 MB block is
    first searched as a whole, and only a block that may hold a match is split into lines.
    """
    regex = re.compile(pattern)
    literal = _required_literal(regex) if max_lines is None else None
    if literal is not None:
        try:
            with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _find_last_literal(mm, regex, *literal, max_bytes)
        except (OSError, ValueError):
            pass  # missing, empty or not mappable: the plain way below
    quick = _block_filter(pattern) if max_lines is None else None
    seen = 0
    for block in _blocks_from_end(path, max_bytes):
        if quick is not None and not quick.search("\n" + block.decode("utf-8", errors="replace").replace("\r", "\n")):
            continue
        for raw in reversed(block.split(b"\n")):
            if max_lines is not None and seen >= max_lines:
                return None
            seen += 1
            matched, value = _match_line(regex, _decode(raw))
            if matched:
                return value
    return None


def read_metric(path: Path, pattern: str) -> float | None:
    """The metric, or None for a crash: missing, NaN and infinite values all count as no metric."""
    value = find_last(path, pattern)
    if value is None or not math.isfinite(value):
        return None
    return value


def last_line(path: Path, pattern: str) -> str | None:
    """The text of the last line matching `pattern` (after its last carriage return), None when none does."""
    regex = re.compile(pattern)
    for block in _blocks_from_end(path):
        for raw in reversed(block.split(b"\n")):
            for part in reversed(_decode(raw).split("\r")):
                if regex.search(part):
                    return part
    return None


def metric_problem(path: Path, pattern: str, name: str) -> str:
    """Why a log gives no metric, in words for a crash row: `no line matches ^val_loss:`, `val_loss was -inf`,
    `val_loss 1e400 is beyond the float range`."""
    line = last_line(path, pattern)
    if line is None:
        return f"no {name} printed: no line matches {pattern}"
    match = re.compile(pattern).search(line)
    found = _found_number(line, match) if match else None
    if found is None:
        return f"no number on the {name} line: {line.strip()[:80]}"
    text = found.group(0)
    if re.fullmatch(r"[-+]?(nan|inf(inity)?)", text, re.IGNORECASE):
        return f"{name} was {text}"
    return f"{name} {text} is beyond the float range"


def failure_note(exit_code: int | None, source: Path, pattern: str, name: str) -> str:
    """Why a finished run gave no metric, for its crash row: its exit status (and whether it printed the
    metric first), or, for a run that exited with 0, what the log holds instead of a number."""
    if exit_code:
        status = f"signal {-exit_code}" if exit_code < 0 else f"exit status {exit_code}"
        return f"{status} after printing {name}" if read_metric(source, pattern) is not None else status
    return metric_problem(source, pattern, name)


def read_memory_gb(path: Path, pattern: str, unit: str = "mb") -> float | None:
    """Memory the script reports itself (karpathy's train.py prints `peak_vram_mb:` at its end); None when
    absent. Only the log's last MEMORY_TAIL_BYTES are searched: a script reports its peak when it ends,
    and a huge log without the line then costs milliseconds (the loop falls back to the memory it measured).
    """
    value = find_last(path, pattern, max_bytes=MEMORY_TAIL_BYTES)
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value / 1024 if unit == "mb" else value


def _tail_window(path: Path, size: int) -> bytes:
    """The last `size` bytes of the file before its trailing newlines, read without the rest of it."""
    try:
        fh = path.open("rb")
    except OSError:
        return b""
    with fh:
        end = fh.seek(0, 2)
        while end > 0:  # step back over trailing blank lines, a chunk at a time
            start = max(0, end - _BLANK_CHUNK)
            fh.seek(start)
            text = fh.read(end - start).rstrip(b"\r\n")
            if text:
                end = start + len(text)
                break
            end = start
        fh.seek(max(0, end - size))
        return fh.read(end - max(0, end - size))


def tail_text(path: Path, max_lines: int = 50, max_bytes: int = 4096) -> str:
    """The last lines of a log, bounded in lines and bytes, for a crash report. Only a window a little
    larger than max_bytes is read, however long the file or its last line."""
    # Re-encoding a decoded byte never makes it shorter, so this window always holds enough.
    window = _tail_window(path, max_bytes + 16)
    lines: list[str] = []
    size = 0
    for raw in reversed(window.split(b"\n")):
        if len(lines) >= max_lines:
            break
        line = _decode(raw)
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
