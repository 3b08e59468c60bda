"""An editor-style sketch: a named fence holding the changed parts of a file with `# ... existing code ...`
(or `// ...`) comments standing for the lines kept. It is applied only where every part is anchored without
doubt: its first line found once in the file (after the part before it), its last line closing a span that
looks like the part. Otherwise nothing is applied and the model is asked for blocks."""

from __future__ import annotations

import difflib

from .edit_match import is_lazy_comment, trim_blank_edges
from .text_files import Layout

MIN_LIKENESS = 0.6
"""How alike (difflib ratio) the file's span and the part must be for the part to replace it."""
SLACK = 20
"""Lines a part may stand for beyond its own count (lines it deletes)."""


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _parts(sketch: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for line in sketch.split("\n"):
        if is_lazy_comment(line):
            parts.append([])
        else:
            parts[-1].append(line)
    return [p for p in (trim_blank_edges(part) for part in parts) if p]


def _span(hay: list[str], part: list[str], lo: int) -> tuple[int, int] | None:
    """The file lines [start, end) the part stands for, or None when they are not certain: the part's first
    line must be found once, and one span from there must be the most like the part (its last lines may be
    new or changed, so the end is the span whose text is closest to the part's)."""
    first = part[0].strip()
    starts = [i for i in range(lo, len(hay)) if hay[i].strip() == first]
    if len(starts) != 1:
        return None
    start = starts[0]
    target = "\n".join(line.strip() for line in part)
    scored = []
    for end in range(start + 1, min(len(hay), start + len(part) + SLACK) + 1):
        window = "\n".join(line.strip() for line in hay[start:end])
        scored.append((difflib.SequenceMatcher(None, target, window, autojunk=False).ratio(), end))
    scored.sort(reverse=True)
    if not scored or scored[0][0] < MIN_LIKENESS or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return None
    return start, scored[0][1]


def apply_sketch(current: str, sketch: str) -> str | None:
    """`current` with each part of `sketch` put in place of the lines it stands for, or None when a part cannot
    be placed for certain (or the sketch has no `... existing code ...` line: then it is not a sketch)."""
    if not any(is_lazy_comment(line) for line in sketch.split("\n")):
        return None
    layout = Layout(current)
    hay = layout.plain(current).split("\n")
    parts = _parts(layout.plain(sketch))
    spans: list[tuple[int, int, list[str]]] = []
    lo = 0
    for part in parts:
        span = _span(hay, part, lo)
        if span is None:
            return None
        shift = _indent(hay[span[0]])
        own = _indent(part[0])
        if own != shift and own:
            return None
        spans.append((span[0], span[1], [shift + line if line.strip() else line for line in part] if not own else part))
        lo = span[1]
    if not spans:
        return None
    out = list(hay)
    for start, end, lines in reversed(spans):
        out[start:end] = lines
    return layout.restore("\n".join(out))
