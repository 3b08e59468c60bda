"""The training loss a log prints, and a compact curve of it for the model's prompt.

The same line parser feeds the app's sparkline. A log can be gigabytes: a big one is sampled in evenly
spaced windows instead of read whole, one loss from each, so a curve costs a bounded amount of reading
and parsing (it is read while the next experiment starts).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

_LOSS_RE = re.compile(r"(?<![A-Za-z0-9_])(?:train_?)?loss\s*[:=]?\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)", re.IGNORECASE)
READ_WHOLE_BYTES = 4 << 20
SAMPLE_WINDOWS = 64
WINDOW_BYTES = 32 << 10
CURVE_POINTS = 10


def parse_loss(line: str) -> float | None:
    """The training loss a log line prints (`loss 2.31`, `loss=2.31`, `train_loss: 2.31`), if any."""
    if "oss" not in line and "OSS" not in line:
        return None
    match = _LOSS_RE.search(line)
    if match is None:
        return None
    try:
        return float(match.group(1))
    except ValueError:
        return None


@dataclass(frozen=True)
class LossCurve:
    points: tuple[float, ...]
    seen: int
    """How many loss lines the points were picked from (of a sampled log: those in the samples)."""
    sampled: bool = False

    def describe(self) -> str:
        values = " ".join(f"{p:.4g}" for p in self.points)
        of = f"{self.seen:,} sampled" if self.sampled else f"{self.seen:,}"
        return f"loss {values} ({len(self.points)} of {of} logged values, first to last)"


def _losses(text: str) -> list[float]:
    found = []
    for line in text.splitlines():
        value = parse_loss(line)
        if value is not None and math.isfinite(value):
            found.append(value)
    return found


def _read(path: Path) -> tuple[list[float], bool]:
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= READ_WHOLE_BYTES:
            return _losses(handle.read().decode("utf-8", "replace")), False
        # One loss per window: the first one in it (in the last window, the log's last one). Parsing a whole
        # window costs ~2 µs a line; a log that prints its loss on most lines needs a line or two of each.
        found: list[float] = []
        for k in range(SAMPLE_WINDOWS):
            start = (size - WINDOW_BYTES) * k // (SAMPLE_WINDOWS - 1)
            handle.seek(start)
            raw = handle.read(WINDOW_BYTES)
            lines = raw.split(b"\n")
            if start > 0:
                lines = lines[1:]  # begins mid-line
            if start + len(raw) < size:
                lines = lines[:-1]  # ends mid-line
            last = k == SAMPLE_WINDOWS - 1
            for line in reversed(lines) if last else lines:
                values = _losses(line.decode("utf-8", "replace"))
                if values:
                    found.append(values[-1] if last else values[0])
                    break
        return found, True


def all_losses(path: Path) -> tuple[float, ...]:
    """Every loss the log prints (of a huge log, the sampled ones), in order; () when none or unreadable."""
    try:
        return tuple(_read(path)[0])
    except OSError:
        return ()


def loss_curve(path: Path, points: int = CURVE_POINTS) -> LossCurve | None:
    """About `points` evenly spaced losses of the log at `path` (the first and the last included), or None."""
    try:
        values, sampled = _read(path)
    except OSError:
        return None
    if len(values) < 2:
        return None
    if len(values) <= points:
        picked = values
    else:
        picked = [values[round(i * (len(values) - 1) / (points - 1))] for i in range(points)]
    return LossCurve(tuple(picked), len(values), sampled)
