"""Reading a model's reply: the header lines and its edits, applied tolerantly.

Edits come as aider-style SEARCH/REPLACE blocks (what the prompt asks for), as unified diffs (core/udiff.py)
or, when nothing else is there, as a whole file in a fence after its name (core/whole_file.py). Parsing
forgives case, markdown bold, missing fences and stray prose; core/edit_match.py finds where each edit goes.
Nothing is applied to disk here: edits change texts in memory, and every failure says why.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import CATEGORIES
from .edit_json import parse_json_edits
from .edit_match import choose_place, match_at, match_edit, quote_places, trim_blank_edges
from .edit_sketch import apply_sketch
from .text_files import BOM, Layout
from .udiff import parse_hunks
from .whole_file import fence_path, find_fenced_files, is_snippet, whole_file_problem

# aider's markers, its older ORIGINAL/UPDATED ones, and Cline's `------- SEARCH` / `+++++++ REPLACE`.
_SEARCH = re.compile(r"^\s*(?:<{5,9}|-{5,9})\s*(?:SEARCH|ORIGINAL)\b.*$", re.IGNORECASE)
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*(?:>{5,9}|\+{5,9})\s*(?:REPLACE|UPDATED)\b.*$", re.IGNORECASE)
# Roo Code opens a SEARCH part with `:start_line:N` and a `-------` line.
_START_LINE = re.compile(r"^\s*:start_line:\s*\d+\s*$")
_DASHES = re.compile(r"^\s*-{5,9}\s*$")
_FENCE = re.compile(r"^\s*(```+|~~~+)\s*(.*?)\s*$")
_HEADER = re.compile(
    r"^[\s>#*_\-]*(?:\*\*|__)?\s*(description|category|rationale|idea|change|reason(?:ing)?)\s*(?:\*\*|__)?"
    r"\s*[:：]\s*(?:\*\*|__)?\s*(.*?)\s*$",
    re.IGNORECASE,
)
_THINKING = re.compile(r"<(think|thinking|reasoning)>.*?(</\1>|$)", re.DOTALL | re.IGNORECASE)
# Some servers return a reasoning model's thinking without its opening tag: everything before `</think>` is.
_THINKING_END = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
_KEYS = {"idea": "description", "change": "description", "reason": "rationale", "reasoning": "rationale"}
_PATHISH = re.compile(r"^[\w./\\~-]+\.[A-Za-z0-9]{1,8}$|^[\w.-]*/[\w./-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_DETAILED = 5
"""Failures explained in full (with the closest lines); the rest are summarised."""
CLOSEST_MAX_LINES, CLOSEST_MAX_CHARS = 300, 20_000
"""A SEARCH bigger than this gets no 'did you mean' lines: finding them would cost seconds."""

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
    origin: str = "block"
    """block (SEARCH/REPLACE), hunk (of a unified diff), json (an edit object or tool call), file (a whole file
    after its name), fence (unnamed)."""
    start: int = 0
    scope: str = ""
    """A hunk header's old first line and function line, to choose among places that match equally well."""

    @property
    def label(self) -> str:
        word = {"hunk": "hunk", "json": "edit", "file": "fenced file", "fence": "fenced file"}.get(self.origin, "block")
        return f"{word} {self.index}"

    @property
    def whole(self) -> bool:
        return self.origin in ("file", "fence")

    def quote(self) -> str:
        if self.whole:
            lines = self.replace.split("\n")
            more = f"\n[... {len(lines) - 12} more lines]" if len(lines) > 12 else ""
            return f"{self.path}\n" + "\n".join(lines[:12]) + more
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
    short: str = ""
    """A few words for a one-line report (`block 1's SEARCH matches nothing in train.py`)."""
    places: str = ""
    """The numbered candidate places of a SEARCH that matches more than one."""


@dataclass
class ApplyResult:
    files: dict[str, str]
    """Every text the blocks were applied to, with the blocks that applied (keyed by editable path)."""
    applied: list[EditBlock] = field(default_factory=list)
    already: list[EditBlock] = field(default_factory=list)
    """Blocks whose REPLACE text was already in place (resent after an earlier round applied them)."""
    failures: list[BlockFailure] = field(default_factory=list)
    snippets: list[EditBlock] = field(default_factory=list)
    """Unnamed fences far from the whole file: illustrations (in an apology, say), not edits."""

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
            named = fence_path(fence.group(2))
            if named:
                return named
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
        if _CONTROL.search(name) or (" " not in name and (_PATHISH.match(name) or re.search(r"[/\\]|\.[^.\s]", name))):
            # Any file name, `.gitignore` included, is taken as written, so a refused one is refused by name.
            return name
        break
    return None


def without_thinking(text: str) -> str:
    """The answer part of a reply: thinking sections dropped, opened or not (a draft there is never applied)."""
    text = _THINKING.sub("", text)
    ends = list(_THINKING_END.finditer(text))
    return text[ends[-1].end() :] if ends else text


def _dedent_to(marker: str, parts: list[list[str]]) -> list[list[str]]:
    """A block inside an indented list item: its lines without the indentation its markers have."""
    indent = marker[: len(marker) - len(marker.lstrip())]
    if not indent or not all(ln.startswith(indent) for part in parts for ln in part if ln.strip()):
        return parts
    return [[ln[len(indent) :] if ln.strip() else ln.strip() for ln in part] for part in parts]


def parse_reply(text: str, known_files: Sequence[str] = ()) -> ParsedReply:
    lines = without_thinking(text.replace("\r\n", "\n")).splitlines()
    values: dict[str, str] = {}
    rationale: list[str] = []
    in_rationale = False
    blocks: list[EditBlock] = []
    starts: list[int] = []
    consumed: set[int] = set()
    problems: list[str] = []
    previous: str | None = None
    read = 0
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _SEARCH.match(line):
            read += 1
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
                problems.append(f"block {read} has no ======= line after its SEARCH part, so it was not read")
                i = j
                continue
            k = j + 1
            replace: list[str] = []
            while k < len(lines) and not _REPLACE.match(lines[k]) and not _SEARCH.match(lines[k]):
                replace.append(lines[k])
                k += 1
            if k >= len(lines) or not _REPLACE.match(lines[k]):
                problems.append(f"block {read} does not end with a >>>>>>> REPLACE line, so it was not read")
                i = k
                continue
            if search and _START_LINE.match(search[0]):
                search = search[2:] if len(search) > 1 and _DASHES.match(search[1]) else search[1:]
            search, replace = _dedent_to(line, [search, replace])
            if path is None:
                problems.append(
                    f"block {read} has no file name on the line before it; "
                    f"write the path (one of: {', '.join(known_files)}) alone on that line"
                )
            else:
                blocks.append(EditBlock(path, "\n".join(search), "\n".join(replace), len(blocks) + 1))
                starts.append(i)
                previous = path
            consumed.update(range(i, k + 1))
            i = k + 1
            continue
        if _FENCE.match(line):
            in_fence = not in_fence
        header = _HEADER.match(line)
        key = _KEYS.get(header.group(1).lower(), header.group(1).lower()) if header else ""
        # Headers come first as asked, or after the edits (some models end with them); never from code.
        if header and (not blocks or (key not in values and not in_fence)):
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
    edits = _other_forms(lines, consumed, list(zip(starts, blocks, strict=True)), known_files, problems)
    description = " ".join(values.get("description", "").split())
    category_text = values.get("category", "")
    return ParsedReply(
        description=description[:200],
        category=normalize_category(category_text) if category_text else "other",
        rationale=" ".join(" ".join(rationale).split())[:2000],
        blocks=tuple(edits),
        problems=tuple(problems),
        category_given=bool(category_text),
    )


def _other_forms(
    lines: Sequence[str],
    consumed: set[int],
    blocks: list[tuple[int, EditBlock]],
    known: Sequence[str],
    problems: list[str],
) -> list[EditBlock]:
    """The SEARCH/REPLACE blocks with the reply's diff hunks among them, in reply order; when the reply holds
    neither, its whole files in fences."""

    def name_at(i: int) -> str | None:
        return _file_name(lines, i, known)

    found: list[tuple[int, EditBlock]] = [(at, b) for at, b in blocks]
    if any(line.startswith("@@") for line in lines):
        found += [
            (h.line, EditBlock(h.path or "", h.search, h.replace, 0, "hunk", h.start, h.scope))
            for h in parse_hunks(lines, consumed, name_at)
        ]
    if any(("{" in line or "[" in line) for line in lines):
        json_edits = parse_json_edits(lines, consumed)
        found += [(e.line, EditBlock(e.path or "", e.search, e.replace, 0, "json")) for e in json_edits]
    if not found and any(line.lstrip().startswith(("```", "~~~")) for line in lines):
        for fenced in find_fenced_files(lines, consumed, name_at):
            origin = "file" if fenced.path else "fence"
            path = fenced.path or (known[0] if len(known) == 1 else None)
            if path is not None:
                found.append((fenced.line, EditBlock(path, "", fenced.text, 0, origin)))
    edits: list[EditBlock] = []
    previous: str | None = None
    seen: set[tuple[str, str, str]] = set()
    for _, edit in sorted(found, key=lambda f: f[0]):
        path = edit.path or previous or (known[0] if len(known) == 1 else None)
        if path is None:
            problems.append(
                f"{edit.origin if edit.origin != 'json' else 'edit'} {len(edits) + 1} has no file name "
                f"(no `+++ b/<path>` line, `path` key or file line above it); name one of: {', '.join(known)}"
            )
            continue
        previous = path
        key = (path, edit.search.strip(), edit.replace.strip())
        if key in seen:
            continue  # the same edit repeated (a summary restating it) is applied once
        seen.add(key)
        edits.append(replace(edit, path=path, index=len(edits) + 1))
    return edits


# Paths.


class PathRefused(Exception):
    pass


def resolve_editable(name: str, root: Path, editable: Sequence[str], refereed: Sequence[str] = ()) -> str:
    """The editable path `name` denotes, or PathRefused saying why it may not be edited."""
    allowed = ", ".join(editable)
    if _CONTROL.search(name):
        raise PathRefused(
            f"the file name {name!r} holds a control character; only these files may be edited: {allowed}"
        )
    cleaned = name.strip().strip("`'\"")
    root_real = Path(os.path.realpath(root))
    candidate = Path(cleaned)
    full = candidate if candidate.is_absolute() else root / candidate
    real = Path(os.path.realpath(full))
    if real != root_real and root_real not in real.parents:
        raise PathRefused(f"{name} is outside the repository; only these files may be edited: {allowed}")
    for path in editable:
        target = Path(os.path.realpath(root / path))
        if target == real:
            if target != root_real and root_real not in target.parents:
                raise PathRefused(f"{name} leads outside the repository (a symlink); it may not be edited")
            return path
    if any(Path(os.path.realpath(root / path)) == real for path in refereed):
        raise PathRefused(f"{name} is a referee file, which scores the results and is never edited: edit {allowed}")
    raise PathRefused(f"{name} is not an editable file; only these files may be edited: {allowed}")


# Applying.


def _lines(text: str) -> list[str]:
    return text.split("\n")


def apply_one(text: str, search: str, replace: str) -> str | None:
    """`text` with `search` replaced, or None when it matches nothing or more than one place."""
    return match_edit(text, search, replace).text


def closest_lines(text: str, search: str, context: int = 2) -> str:
    """The lines of `text` most like `search`, with a little context, for 'did you mean' feedback."""
    hay = _lines(text.removeprefix(BOM).replace("\r\n", "\n"))
    needle = trim_blank_edges(_lines(search))
    if not needle or not hay or len(needle) > CLOSEST_MAX_LINES or len(search) > CLOSEST_MAX_CHARS:
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
    refereed: Sequence[str] = (),
) -> ApplyResult:
    """Apply every block in order to in-memory copies of `files`; failures are collected, not raised.

    A block identical to one in `applied_before` (path, search, replace) whose REPLACE text is in place
    counts as already applied: models often resend every block after a partial failure.
    """
    result = ApplyResult(files=dict(files))
    seen = {(p, s.strip(), r.strip()) for p, s, r in applied_before}

    def fail(block: EditBlock, reason: str, short: str, closest: str = "", places: str = "") -> None:
        result.failures.append(BlockFailure(block, reason, closest, short, places))

    resolved: dict[str, str | PathRefused] = {}
    for block in blocks:
        if block.path not in resolved:
            try:
                resolved[block.path] = resolve_editable(block.path, root, editable, refereed)
            except PathRefused as exc:
                resolved[block.path] = exc
        path = resolved[block.path]
        if isinstance(path, PathRefused):
            fail(block, str(path), f"{block.label}: {str(path).split(';')[0]}")
            continue
        current = result.files.get(path, "")
        if block.whole:
            problem = whole_file_problem(current, block.replace, named=block.origin == "file")
            if problem and block.origin == "fence" and is_snippet(current, block.replace):
                result.snippets.append(block)
                continue
            sketched = apply_sketch(current, block.replace) if problem and block.origin == "file" else None
            if sketched is not None:
                result.files[path] = sketched
                result.applied.append(block)
                continue
            if problem:
                fail(
                    block, f"the fenced code for {path} was not used: {problem}", f"{block.label} is not all of {path}"
                )
                continue
            layout = Layout(current)
            new = block.replace.removeprefix(BOM).replace("\r\n", "\n")
            if current.endswith("\n") and not new.endswith("\n"):
                new += "\n"
            result.files[path] = layout.restore(new)
            result.applied.append(block)
            continue
        key = (path, block.search.strip(), block.replace.strip())
        outcome = match_edit(current, block.search, block.replace)
        if outcome.ambiguous and (block.start or block.scope):
            chosen = choose_place(current, outcome.places, block.start, block.scope)
            outcome = match_at(current, block.search, block.replace, chosen) if chosen else outcome
        if outcome.text is not None:
            result.files[path] = outcome.text
            result.applied.append(block)
            seen.add(key)
            continue
        if key in seen:
            again = match_edit(current, block.replace, block.replace)
            if again.text is not None or again.ambiguous:
                result.already.append(block)
                continue
        what = "lines" if block.origin == "hunk" else "SEARCH"
        if outcome.ambiguous:
            count = len(outcome.places)
            fail(
                block,
                f"its {what} matches {count} places in {path}; add a line or two around it so it matches only "
                "the place you mean",
                f"{block.label}'s {what} matches {count} places in {path}",
                places=quote_places(current, outcome.places, len(trim_blank_edges(_lines(block.search))) or 1),
            )
        elif outcome.problem:
            fail(block, outcome.problem, f"{block.label}: {outcome.problem.split(';')[0]}")
        elif not block.search.strip():
            if block.origin == "hunk":
                reason = f"it has no context or removed lines, so there is no telling where in {path} its lines go"
            else:
                reason = f"its SEARCH part is empty; quote the exact lines of {path} to replace"
            fail(block, reason, f"{block.label} has nothing to match in {path}")
        else:
            verb = "match" if block.origin == "hunk" else "matches"
            closest = closest_lines(current, block.search) if len(result.failures) < MAX_DETAILED else ""
            fail(
                block,
                f"its {what} part does not match any lines of {path} exactly"
                if block.origin != "hunk"
                else f"its context and removed lines do not match any lines of {path}",
                f"{block.label}'s {what} {verb} nothing in {path}",
                closest,
            )
    return result
