"""Reading a model's reply: the header lines and aider-style SEARCH/REPLACE blocks, applied tolerantly.

Parsing forgives case, markdown bold, missing fences and stray prose. Applying tries an exact match,
then a match that ignores trailing whitespace, then one that ignores a uniform indentation shift.
Nothing is applied to disk here: blocks change texts in memory, and every failure says why.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import CATEGORIES

_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\b.*$", re.IGNORECASE)
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\b.*$", re.IGNORECASE)
_FENCE = re.compile(r"^\s*(```+|~~~+)\s*(.*?)\s*$")
_HEADER = re.compile(
    r"^[\s>#*_\-]*(?:\*\*|__)?\s*(description|category|rationale|idea|change|reason(?:ing)?)\s*(?:\*\*|__)?"
    r"\s*[:：]\s*(?:\*\*|__)?\s*(.*?)\s*$",
    re.IGNORECASE,
)
_THINKING = re.compile(r"<(think|thinking|reasoning)>.*?(</\1>|$)", re.DOTALL | re.IGNORECASE)
_KEYS = {"idea": "description", "change": "description", "reason": "rationale", "reasoning": "rationale"}
_PATHISH = re.compile(r"^[\w./\\~-]+\.[A-Za-z0-9]{1,8}$|^[\w.-]*/[\w./-]+$")

_CATEGORY_WORDS = {
    "hyperparams": ("hyper", "learning rate", "lr", "batch", "schedule", "warmup", "param"),
    "architecture": ("arch", "model", "layer", "depth", "width", "activation", "attention", "network"),
    "optimizer": ("optim", "adam", "sgd", "muon", "momentum"),
    "regularization": ("regular", "dropout", "weight decay", "decay", "norm", "clip"),
    "data": ("data", "augment", "token", "sequence", "input"),
}


@dataclass(frozen=True)
class EditBlock:
    path: str
    search: str
    replace: str
    index: int
    """1-based position in the reply, to name the block in feedback."""

    def quote(self) -> str:
        return (
            f"{self.path}\n<<<<<<< SEARCH\n{_with_newline(self.search)}=======\n"
            f"{_with_newline(self.replace)}>>>>>>> REPLACE"
        )


@dataclass(frozen=True)
class ParsedReply:
    description: str
    category: str
    rationale: str
    blocks: tuple[EditBlock, ...]
    problems: tuple[str, ...] = ()
    """What could not be read (an unterminated block, a block with no file name)."""
    category_given: bool = False


@dataclass(frozen=True)
class BlockFailure:
    block: EditBlock
    reason: str
    closest: str = ""


@dataclass
class ApplyResult:
    files: dict[str, str]
    """Every text the blocks were applied to, with the blocks that applied (keyed by editable path)."""
    applied: list[EditBlock] = field(default_factory=list)
    already: list[EditBlock] = field(default_factory=list)
    """Blocks whose REPLACE text was already in place (resent after an earlier round applied them)."""
    failures: list[BlockFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def normalize_category(value: str) -> str:
    word = re.sub(r"[^a-z ]", " ", value.lower()).strip()
    if not word:
        return "other"
    first = word.split()[0]
    for cat in CATEGORIES:
        if first == cat or first.rstrip("s") == cat.rstrip("s"):
            return cat
    if first.startswith("regulari"):
        return "regularization"
    for cat, words in _CATEGORY_WORDS.items():
        if any(word.startswith(w) or f" {w}" in f" {word}" for w in words):
            return cat
    return "other"


def _strip_markup(line: str) -> str:
    text = line.strip().strip("`*_#>").strip()
    text = re.sub(r"^(?:file(?:name)?|path)\s*[:：]\s*", "", text, flags=re.IGNORECASE)
    return text.strip().strip("`*_\"'").rstrip(":").strip()


def _file_name(lines: Sequence[str], at: int, known: Sequence[str]) -> str | None:
    """The file a block at line `at` edits, read from the few lines above it (aider's convention)."""
    for back in range(1, 4):
        i = at - back
        if i < 0:
            break
        raw = lines[i]
        if not raw.strip():
            continue
        fence = _FENCE.match(raw)
        if fence:
            words = fence.group(2).split()
            if words and _PATHISH.match(words[-1]):
                return words[-1]
            continue
        if _REPLACE.match(raw) or _DIVIDER.match(raw):
            break
        name = _strip_markup(raw)
        if not name:
            continue
        if name in known:
            return name
        for candidate in known:
            if os.path.basename(candidate) == name or candidate.endswith("/" + name):
                return candidate
        if " " not in name and _PATHISH.match(name):
            return name
        break
    return None


def parse_reply(text: str, known_files: Sequence[str] = ()) -> ParsedReply:
    text = _THINKING.sub("", text.replace("\r\n", "\n"))
    lines = text.splitlines()
    values: dict[str, str] = {}
    rationale: list[str] = []
    in_rationale = False
    blocks: list[EditBlock] = []
    problems: list[str] = []
    previous: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if _SEARCH.match(line):
            in_rationale = False
            path = _file_name(lines, i, known_files) or previous
            if path is None and len(known_files) == 1:
                path = known_files[0]
            j = i + 1
            search: list[str] = []
            while j < len(lines) and not _DIVIDER.match(lines[j]) and not _SEARCH.match(lines[j]):
                search.append(lines[j])
                j += 1
            if j >= len(lines) or not _DIVIDER.match(lines[j]):
                problems.append(
                    f"block {len(blocks) + 1} has no ======= line after its SEARCH part, so it was not read"
                )
                i = j
                continue
            k = j + 1
            replace: list[str] = []
            while k < len(lines) and not _REPLACE.match(lines[k]) and not _SEARCH.match(lines[k]):
                replace.append(lines[k])
                k += 1
            if k >= len(lines) or not _REPLACE.match(lines[k]):
                problems.append(f"block {len(blocks) + 1} does not end with a >>>>>>> REPLACE line, so it was not read")
                i = k
                continue
            if path is None:
                problems.append(
                    f"block {len(blocks) + 1} has no file name on the line before it; "
                    f"write the path (one of: {', '.join(known_files)}) alone on that line"
                )
            else:
                blocks.append(EditBlock(path, "\n".join(search), "\n".join(replace), len(blocks) + 1))
                previous = path
            i = k + 1
            continue
        header = _HEADER.match(line)
        if header and not blocks:
            key = _KEYS.get(header.group(1).lower(), header.group(1).lower())
            value = header.group(2).strip().strip("*_").strip()
            if key not in values:
                if not value and key == "description":
                    nxt = next((ln.strip() for ln in lines[i + 1 : i + 3] if ln.strip()), "")
                    value = nxt.strip("*_ ")
                values[key] = value
                in_rationale = key == "rationale"
                if in_rationale and value:
                    rationale.append(value)
            i += 1
            continue
        if in_rationale:
            if not line.strip() or _FENCE.match(line):
                in_rationale = False
            else:
                rationale.append(line.strip())
        i += 1
    description = " ".join(values.get("description", "").split())
    category_text = values.get("category", "")
    return ParsedReply(
        description=description[:200],
        category=normalize_category(category_text) if category_text else "other",
        rationale=" ".join(" ".join(rationale).split())[:2000],
        blocks=tuple(blocks),
        problems=tuple(problems),
        category_given=bool(category_text),
    )


# Paths.


class PathRefused(Exception):
    pass


def resolve_editable(name: str, root: Path, editable: Sequence[str]) -> str:
    """The editable path `name` denotes, or PathRefused saying why it may not be edited."""
    cleaned = name.strip().strip("`'\"")
    root_real = Path(os.path.realpath(root))
    candidate = Path(cleaned)
    full = candidate if candidate.is_absolute() else root / candidate
    real = Path(os.path.realpath(full))
    allowed = ", ".join(editable)
    if real != root_real and root_real not in real.parents:
        raise PathRefused(f"{name} is outside the repository; only these files may be edited: {allowed}")
    for path in editable:
        target = Path(os.path.realpath(root / path))
        if target == real:
            if target != root_real and root_real not in target.parents:
                raise PathRefused(f"{name} leads outside the repository (a symlink); it may not be edited")
            return path
    raise PathRefused(f"{name} is not an editable file; only these files may be edited: {allowed}")


# Applying.


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _trim_blank_edges(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _find_lines(hay: list[str], needle: list[str], key: object) -> int:
    n = len(needle)
    if n == 0:
        return -1
    norm = (lambda s: s.rstrip()) if key == "rstrip" else (lambda s: s.strip())
    target = [norm(s) for s in needle]
    first = target[0]
    for start in range(0, len(hay) - n + 1):
        if norm(hay[start]) != first:
            continue
        if all(norm(hay[start + k]) == target[k] for k in range(n)):
            return start
    return -1


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _reindent(replace: list[str], search: list[str], found: list[str]) -> list[str] | None:
    """Shift REPLACE's indentation by the offset between SEARCH and the file, when that offset is uniform."""
    pairs = [(s, f) for s, f in zip(search, found, strict=True) if s.strip()]
    if not pairs:
        return replace
    s0, f0 = pairs[0]
    s_ind, f_ind = _indent(s0), _indent(f0)
    if len(f_ind) >= len(s_ind):
        if not all(f == f_ind[: len(f_ind) - len(s_ind)] + s for s, f in ((s.rstrip(), f.rstrip()) for s, f in pairs)):
            return None
        add = f_ind[: len(f_ind) - len(s_ind)]
        return [add + line if line.strip() else line for line in replace]
    cut = len(s_ind) - len(f_ind)
    if not all(s[:cut].strip() == "" and s[cut:].rstrip() == f.rstrip() for s, f in pairs):
        return None
    return [line[cut:] if line[:cut].strip() == "" else line.lstrip() for line in replace]


def _whole_lines_at(text: str, needle: str) -> int:
    at = text.find(needle)
    while at >= 0:
        if at == 0 or text[at - 1] == "\n":
            return at
        at = text.find(needle, at + 1)
    return -1


def _inline_once(text: str, search: str, replace: str) -> str | None:
    """A unique match inside lines that does not cut a word or number in two (`lr = 0.02` in `lr = 0.02  # x`)."""
    if text.count(search) != 1:
        return None
    at = text.find(search)
    before = text[at - 1] if at else ""
    after = text[at + len(search) : at + len(search) + 1]
    if (before and (before.isalnum() or before == "_")) or (after and (after.isalnum() or after in "_.")):
        return None
    return text[:at] + replace + text[at + len(search) :]


def apply_one(text: str, search: str, replace: str) -> str | None:
    """`text` with the first match of `search` replaced, or None when no tolerant match exists."""
    if not search.strip():
        return replace if not text.strip() else None
    search_nl, replace_nl = _with_newline(search), _with_newline(replace)
    at = _whole_lines_at(text, search_nl)
    if at >= 0:
        return text[:at] + replace_nl + text[at + len(search_nl) :]
    if text.endswith(search) and _whole_lines_at(text, search) == len(text) - len(search):
        return text[: len(text) - len(search)] + replace
    crlf = "\r\n" in text
    body = text.replace("\r\n", "\n")
    hay = _lines(body)
    needle = _trim_blank_edges(_lines(search))
    repl = _lines(replace)
    if needle != _lines(search):
        repl = _trim_blank_edges(repl)
    new_lines: list[str] | None = None
    start = _find_lines(hay, needle, "rstrip")
    if start >= 0:
        new_lines = hay[:start] + repl + hay[start + len(needle) :]
    else:
        start = _find_lines(hay, needle, "strip")
        if start >= 0:
            shifted = _reindent(repl, needle, hay[start : start + len(needle)])
            if shifted is not None:
                new_lines = hay[:start] + shifted + hay[start + len(needle) :]
    if new_lines is None:
        return _inline_once(text, search, replace) if "\n" not in search.strip() else None
    out = "\n".join(new_lines)
    return out.replace("\n", "\r\n") if crlf else out


def closest_lines(text: str, search: str, context: int = 2) -> str:
    """The lines of `text` most like `search`, with a little context, for 'did you mean' feedback."""
    hay = _lines(text.replace("\r\n", "\n"))
    needle = _trim_blank_edges(_lines(search))
    if not needle or not hay:
        return ""
    n = len(needle)
    target = "\n".join(s.strip() for s in needle)
    best, best_at = 0.0, -1
    for start in range(0, max(1, len(hay) - n + 1)):
        window = "\n".join(s.strip() for s in hay[start : start + n])
        matcher = difflib.SequenceMatcher(None, target, window, autojunk=False)
        if matcher.real_quick_ratio() <= best or matcher.quick_ratio() <= best:
            continue
        ratio = matcher.ratio()
        if ratio > best:
            best, best_at = ratio, start
    if best < 0.5 or best_at < 0:
        return ""
    lo, hi = max(0, best_at - context), min(len(hay), best_at + n + context)
    return "\n".join(hay[lo:hi])


def apply_blocks(
    blocks: Sequence[EditBlock],
    files: Mapping[str, str],
    root: Path,
    editable: Sequence[str],
    applied_before: Iterable[tuple[str, str, str]] = (),
) -> ApplyResult:
    """Apply every block in order to in-memory copies of `files`; failures are collected, not raised.

    A block identical to one in `applied_before` (path, search, replace) whose REPLACE text is in place
    counts as already applied: models often resend every block after a partial failure.
    """
    result = ApplyResult(files=dict(files))
    seen = {(p, s.strip(), r.strip()) for p, s, r in applied_before}
    for block in blocks:
        try:
            path = resolve_editable(block.path, root, editable)
        except PathRefused as exc:
            result.failures.append(BlockFailure(block, str(exc)))
            continue
        current = result.files.get(path, "")
        key = (path, block.search.strip(), block.replace.strip())
        updated = apply_one(current, block.search, block.replace)
        if updated is not None:
            result.files[path] = updated
            result.applied.append(block)
            seen.add(key)
            continue
        if key in seen and apply_one(current, block.replace, block.replace) is not None:
            result.already.append(block)
            continue
        if not block.search.strip():
            reason = f"its SEARCH part is empty; quote the exact lines of {path} to replace"
        else:
            reason = f"its SEARCH part does not match any lines of {path} exactly"
        result.failures.append(BlockFailure(block, reason, closest_lines(current, block.search)))
    return result
