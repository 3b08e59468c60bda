"""Finding where a SEARCH text sits in a file and putting REPLACE there, tolerantly but never by guessing.

Tried in order: the exact lines; the lines ignoring trailing whitespace; the lines ignoring all leading
whitespace (then REPLACE is re-indented to where SEARCH matched: a uniform shift, tabs for spaces, another
indent width, or SEARCH lines stripped of their nesting); `...` elision lines standing for unchanged lines;
a unique match inside one line. A SEARCH that matches in more than one place is never applied: the
candidate places come back so the model can be asked which one it meant.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from .text_files import BOM, Layout

# A line standing for unchanged lines: `...`, `# ...`, `# ... existing code ...`, `// rest of the code unchanged`.
_BARE_ELISION = re.compile(r"^\s*(?:#|//)?\s*(?:\.\.\.|…)\s*$")
_COMMENT_ELISION = re.compile(
    r"^\s*(?:#|//)\s*[(\[]?\s*(?:.*(?:\.\.\.|…)|(?:the\s+)?(?:rest|remaining|existing|other)\s+(?:of\s+)?"
    r"(?:the\s+)?(?:code|file|function|script|loop|class|method|body|lines)\b|unchanged\b|no\s+changes\b"
    r"|(?:rest|remainder)\b.*\b(?:unchanged|same|before|omitted)\b).*$",
    re.IGNORECASE,
)
MAX_PLACES_QUOTED = 3
_NUMBERED = re.compile(r"^[> ]?\s*\d+ \| ?")


def is_elision(line: str) -> bool:
    return bool(_BARE_ELISION.match(line) or _COMMENT_ELISION.match(line))


def is_lazy_comment(line: str) -> bool:
    """A comment saying code was left out (`# ... rest of the code unchanged`); bare `...` is valid Python."""
    return bool(_COMMENT_ELISION.match(line))


@dataclass(frozen=True)
class MatchResult:
    text: str | None = None
    """The new file text, when the edit applied."""
    places: tuple[int, ...] = ()
    """1-based first lines of every place SEARCH matched, when it matched more than one."""
    problem: str = ""
    """Why it did not apply, when the reason is more than 'matches nothing'."""

    @property
    def ambiguous(self) -> bool:
        return len(self.places) > 1


def _with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def trim_blank_edges(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _starts(hay: Sequence[str], needle: Sequence[str], strip: bool, lo: int = 0) -> list[int]:
    n = len(needle)
    if n == 0:
        return []
    norm = str.strip if strip else str.rstrip
    target = [norm(s) for s in needle]
    first = target[0]
    found = []
    for start in range(lo, len(hay) - n + 1):
        if norm(hay[start]) == first and all(norm(hay[start + k]) == target[k] for k in range(1, n)):
            found.append(start)
    return found


def _width(indent: str) -> int:
    return len(indent.expandtabs(8))


def _unit(lines: Sequence[str]) -> tuple[str, int]:
    """The indentation step of some lines: ('\\t', 8) for tabs, (' ', n) for n spaces."""
    indents = [_indent(line) for line in lines if line.strip()]
    if sum(i.startswith("\t") for i in indents) > sum(i.startswith(" ") for i in indents):
        return "\t", 8
    widths = [_width(i) for i in indents]
    steps = Counter(b - a for a, b in pairwise(widths) if b > a)
    if steps:
        return " ", steps.most_common(1)[0][0]
    step = 0
    for w in widths:
        step = math.gcd(step, w)
    return " ", step or 4


def _levels(indent: str, unit: tuple[str, int]) -> int:
    return round(_width(indent) / unit[1]) if unit[1] else 0


def _make(levels: int, unit: tuple[str, int]) -> str:
    return "\t" * levels if unit[0] == "\t" else " " * (unit[1] * levels)


def _indent_map(pairs: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """SEARCH indentation -> file indentation, narrowest first, when each maps to one and the order holds."""
    mapping: dict[str, str] = {}
    for s_ind, f_ind in pairs:
        mapping.setdefault(s_ind, f_ind)
    ordered = sorted(mapping.items(), key=lambda kv: _width(kv[0]))
    consistent = all(mapping[s] == f for s, f in pairs)
    monotonic = all(_width(a[1]) < _width(b[1]) for a, b in pairwise(ordered))
    return ordered if consistent and monotonic and ordered else None


def _reindent(needle: list[str], found: list[str], repl: list[str], file_unit: tuple[str, int]) -> list[str]:
    """REPLACE re-indented to where SEARCH matched (lines equal once leading whitespace is ignored)."""
    lost = _reindent_lost_lines(needle, found, repl, file_unit)
    if lost is not None:
        return lost
    ordered = _indent_map([(_indent(s), _indent(f)) for s, f in zip(needle, found, strict=True) if s.strip()])
    if ordered is not None:
        return _reindent_by_map(repl, ordered, needle + repl, file_unit)
    return _reindent_by_alignment(needle, found, repl, file_unit)


def _reindent_lost_lines(
    needle: list[str], found: list[str], repl: list[str], file_unit: tuple[str, int]
) -> list[str] | None:
    """SEARCH lines that lost all their indentation (a first line copied from mid-line) among lines that kept
    theirs: REPLACE's own structure, measured from the lines that kept it, says where new lines go."""
    lost = {s.strip(): _indent(f) for s, f in zip(needle, found, strict=True) if s.strip() and not _indent(s)}
    kept = [(_indent(s), _indent(f)) for s, f in zip(needle, found, strict=True) if s.strip() and _indent(s)]
    ordered = _indent_map(kept) if kept and any(lost.values()) else None
    if ordered is None:
        return None
    structured = [s for s in needle if _indent(s)] + [r for r in repl if r.strip() not in lost or _indent(r)]
    out = _reindent_by_map(repl, ordered, structured, file_unit)
    return [
        lost[line.strip()] + line.strip() if line.strip() in lost and not _indent(line) else new
        for line, new in zip(repl, out, strict=True)
    ]


def _reindent_by_map(
    repl: list[str], ordered: list[tuple[str, str]], structured: list[str], file_unit: tuple[str, int]
) -> list[str]:
    """`structured`: the lines whose indentation tells the edit's own indent step."""
    mapping = dict(ordered)
    own_unit = _unit(structured)
    out = []
    for line in repl:
        if not line.strip():
            out.append(line.strip())
            continue
        ind = _indent(line)
        if ind in mapping:
            out.append(mapping[ind] + line.lstrip())
            continue
        below = [kv for kv in ordered if _width(kv[0]) <= _width(ind)]
        s_ref, f_ref = below[-1] if below else ordered[0]
        levels = _levels(f_ref, file_unit) + _levels(ind, own_unit) - _levels(s_ref, own_unit)
        out.append(_make(max(0, levels), file_unit) + line.lstrip())
    return out


def _reindent_by_alignment(
    needle: list[str], found: list[str], repl: list[str], file_unit: tuple[str, int]
) -> list[str]:
    """SEARCH lost its nesting: each REPLACE line takes the indentation of the file line it stands for."""
    stripped_s = [s.strip() for s in needle]
    stripped_r = [r.strip() for r in repl]
    out: list[str] = [""] * len(repl)
    matcher = difflib.SequenceMatcher(None, stripped_s, stripped_r, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        for k, j in enumerate(range(j1, j2)):
            if not stripped_r[j]:
                out[j] = ""
                continue
            if op in ("equal", "replace") and i2 > i1:
                out[j] = _indent(found[min(i1 + k, i2 - 1)]) + stripped_r[j]
                continue
            previous = next((out[p] for p in range(j - 1, -1, -1) if out[p].strip()), "")
            if previous:
                base = _indent(previous)
                if previous.rstrip().endswith(":"):
                    base += _make(1, file_unit)
            else:
                base = _indent(found[min(i1, len(found) - 1)])
            out[j] = base + stripped_r[j]
    return out


def _split_on_elisions(lines: list[str]) -> list[list[str]]:
    pieces: list[list[str]] = [[]]
    for line in lines:
        if is_elision(line):
            pieces.append([])
        else:
            pieces[-1].append(line)
    return [trim_blank_edges(p) for p in pieces]


def _place(
    hay: list[str], needle: list[str], repl: list[str], file_unit: tuple[str, int], lo: int = 0
) -> tuple[list[int], list[str] | None]:
    """Where `needle` matches from line `lo` (exact or by indentation), and REPLACE as it should go in."""
    starts = _starts(hay, needle, strip=False, lo=lo)
    if starts:
        return starts, repl
    starts = _starts(hay, needle, strip=True, lo=lo)
    if not starts:
        return [], None
    return starts, _reindent(needle, hay[starts[0] : starts[0] + len(needle)], repl, file_unit)


def _elided(hay: list[str], needle: list[str], repl: list[str], file_unit: tuple[str, int]) -> MatchResult:
    pieces_s, pieces_r = _split_on_elisions(needle), _split_on_elisions(repl)
    if len(pieces_s) != len(pieces_r):
        return MatchResult(
            problem=f"its SEARCH has {len(pieces_s) - 1} `...` elision line(s) and its REPLACE "
            f"{len(pieces_r) - 1}; use the same `...` lines in both, in the same places"
        )
    out = list(hay)
    edits: list[tuple[int, int, list[str]]] = []
    pos = 0
    for piece_s, piece_r in zip(pieces_s, pieces_r, strict=True):
        if not piece_s:
            if piece_r:
                return MatchResult(problem="a `...` elision line has new lines beside it but nothing to anchor them")
            continue
        starts, placed = _place(hay, piece_s, piece_r, file_unit, lo=pos)
        if not starts or placed is None:
            return MatchResult()
        if not edits and len(starts) > 1:
            return MatchResult(places=tuple(s + 1 for s in starts))
        edits.append((starts[0], starts[0] + len(piece_s), placed))
        pos = starts[0] + len(piece_s)
    if not edits:
        return MatchResult()
    for start, end, placed in reversed(edits):
        out[start:end] = placed
    return MatchResult(text="\n".join(out))


def _inline_places(text: str, search: str) -> list[int]:
    """Matches inside lines that do not cut a word or number in two (`lr = 0.02` in `lr = 0.02  # x`)."""
    found = []
    for m in re.finditer(re.escape(search), text):
        before = text[m.start() - 1] if m.start() else ""
        after = text[m.end() : m.end() + 1]
        if (before and (before.isalnum() or before == "_")) or (after and (after.isalnum() or after in "_.")):
            continue
        found.append(m.start())
    return found


def _whole_line_starts(text: str, needle: str) -> list[int]:
    found = []
    at = text.find(needle)
    while at >= 0:
        if at == 0 or text[at - 1] == "\n":
            found.append(at)
        at = text.find(needle, at + 1)
    return found


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _unnumbered(search: str, replace: str) -> tuple[str, str]:
    """SEARCH and REPLACE without the `  74 | ` prefixes our own feedback quotes lines with, if copied."""
    lines = [ln for ln in search.split("\n") if ln.strip()]
    if not lines or not all(_NUMBERED.match(ln) for ln in lines):
        return search, replace

    def strip(text: str) -> str:
        return "\n".join(_NUMBERED.sub("", ln) for ln in text.split("\n"))

    numbered = [ln for ln in replace.split("\n") if ln.strip()]
    return strip(search), strip(replace) if numbered and all(_NUMBERED.match(ln) for ln in numbered) else replace


def match_edit(text: str, search: str, replace: str) -> MatchResult:
    """`text` with `search` replaced, tolerantly; or why not (matches nothing, or more than one place)."""
    if not search.strip():
        return MatchResult(text=replace) if not text.strip() else MatchResult()
    layout = Layout(text)
    body = layout.plain(text)
    search = search.removeprefix(BOM).replace("\r\n", "\n")
    replace = replace.removeprefix(BOM).replace("\r\n", "\n")
    if _whole_line_starts(body, search.split("\n")[0]) == [] and _NUMBERED.match(search):
        search, replace = _unnumbered(search, replace)
    lazy = [ln for ln in replace.split("\n") if is_lazy_comment(ln)]
    if lazy and not any(is_elision(ln) for ln in search.split("\n")) and lazy[0].strip() not in body:
        return MatchResult(
            problem=f"its REPLACE holds `{lazy[0].strip()}` standing for lines it leaves out, which would delete "
            "them; write those lines out in full"
        )
    result = _match_lf(body, search, replace)
    if result.text is not None:
        return MatchResult(text=layout.restore(result.text))
    return result


def _match_lf(body: str, search: str, replace: str) -> MatchResult:
    search_nl, replace_nl = _with_newline(search), _with_newline(replace)
    starts = _whole_line_starts(body, search_nl)
    if len(starts) > 1:
        return MatchResult(places=tuple(_line_of(body, s) for s in starts))
    if starts:
        at = starts[0]
        return MatchResult(text=body[:at] + replace_nl + body[at + len(search_nl) :])
    if body.endswith(search) and _whole_line_starts(body, search)[-1:] == [len(body) - len(search)]:
        return MatchResult(text=body[: len(body) - len(search)] + replace)
    hay = body.split("\n")
    needle = trim_blank_edges(search.split("\n"))
    repl = replace.split("\n")
    if needle != search.split("\n"):
        repl = trim_blank_edges(repl)
    file_unit = _unit(hay)
    for strip in (False, True):
        found = _starts(hay, needle, strip=strip)
        if len(found) > 1:
            return MatchResult(places=tuple(s + 1 for s in found))
        if found:
            start = found[0]
            placed = repl if not strip else _reindent(needle, hay[start : start + len(needle)], repl, file_unit)
            return MatchResult(text="\n".join(hay[:start] + placed + hay[start + len(needle) :]))
    if any(is_elision(line) for line in needle):
        elided = _elided(hay, needle, repl, file_unit)
        if elided.text is not None or elided.places or elided.problem:
            return elided
    if "\n" not in search.strip():
        inline = _inline_places(body, search)
        if len(inline) > 1:
            return MatchResult(places=tuple(sorted({_line_of(body, at) for at in inline})))
        if inline:
            at = inline[0]
            return MatchResult(text=body[:at] + replace + body[at + len(search) :])
    return MatchResult()


def quote_places(text: str, places: Sequence[int], lines: int, context: int = 1) -> str:
    """The candidate places of an ambiguous SEARCH, numbered, for the model to choose from."""
    hay = text.removeprefix(BOM).replace("\r\n", "\n").split("\n")
    parts = []
    for n, first in enumerate(places[:MAX_PLACES_QUOTED], 1):
        lo, hi = max(0, first - 1 - context), min(len(hay), first - 1 + lines + context)
        body = "\n".join(f"{i + 1:>5} | {hay[i]}" for i in range(lo, hi))
        parts.append(f"Place {n}, from line {first}:\n{body}")
    if len(places) > MAX_PLACES_QUOTED:
        parts.append(f"... and {len(places) - MAX_PLACES_QUOTED} more places.")
    return "\n".join(parts)


_DEF = re.compile(r"^\s*(?:async\s+def|def|class)\s")
NEAR_LINES = 3
"""A hunk's header line number chooses a place only when that place is this close to it."""


def _enclosing(hay: Sequence[str], at: int) -> list[str]:
    """The `def` and `class` lines a 0-based line sits in, innermost first, stripped."""
    width = _width(_indent(hay[at])) if at < len(hay) else 0
    found = []
    for k in range(at - 1, -1, -1):
        if hay[k].strip() and _width(_indent(hay[k])) < width:
            width = _width(_indent(hay[k]))
            if _DEF.match(hay[k]):
                found.append(hay[k].strip())
    return found


def choose_place(text: str, places: Sequence[int], start: int, scope: str) -> int | None:
    """The one place (1-based line) a hunk's header points at: the only one inside the function its header
    names, else the only one at its line number; None when the header does not single one out."""
    hay = Layout(text).plain(text).split("\n")
    candidates = list(places)
    wanted = scope.strip()
    if wanted:
        inside = [p for p in candidates if any(d.startswith(wanted) for d in _enclosing(hay, p - 1))]
        candidates = inside or candidates
        if len(inside) == 1:
            return inside[0]
    if start:
        near = sorted(candidates, key=lambda p: abs(p - start))
        if abs(near[0] - start) <= NEAR_LINES and (len(near) == 1 or abs(near[1] - start) > abs(near[0] - start)):
            return near[0]
    return None


def match_at(text: str, search: str, replace: str, place: int) -> MatchResult:
    """`match_edit` at one of the places (1-based line) a SEARCH matches, the others left alone."""
    layout = Layout(text)
    hay = layout.plain(text).split("\n")
    size = len(trim_blank_edges(search.removeprefix(BOM).replace("\r\n", "\n").split("\n")))
    window = hay[place - 1 : place - 1 + size]
    result = match_edit("\n".join(window), search, replace)
    if result.text is None:
        return result
    return MatchResult(
        text=layout.restore("\n".join(hay[: place - 1] + result.text.split("\n") + hay[place - 1 + size :]))
    )
