"""The offline agent's hill climb (`search: hill`): one module-level numeric constant per experiment.

The default strategy is the TPE search over every kind of knob (core/search.py); this one is kept by name.

It needs no model and no network, so `autoresearch demo`, users without an API key and every test of
the engine get a deterministic agent. Descriptions read `LEARNING_RATE 0.02 -> 0.04`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from .config import SessionConfig
from .edits import text_edits
from .knobs import format_number, module_assignments, set_aside
from .proposer import ExperimentRecord, Proposal, ProposalContext, content_key

_DESCRIPTION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*) (\S+) -> (\S+)")
_IDEA = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=|->|to)\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)")
# Steps tried for each constant, boldest first: after both directions of a step failed, try the next.
_FACTORS = (2.0, 1.5, 1.2)
_UNDECODABLE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class Constant:
    path: str
    name: str
    value: float
    is_int: bool
    line: int
    start: int
    end: int


def find_constants(path: str, text: str) -> list[Constant]:
    """Module-level `NAME = <number>` assignments (negative numbers too), with their exact positions."""
    if PurePosixPath(path).suffix != ".py":
        return []
    try:
        # Bytes that are not UTF-8 arrive as lone surrogates (surrogateescape); "?" keeps their one-byte width.
        tree = ast.parse(_UNDECODABLE.sub("?", text))
    except (SyntaxError, ValueError):
        return []
    found: list[Constant] = []
    for target, value in module_assignments(tree):
        number = _literal_number(value)
        if number is None or value.end_lineno != value.lineno or value.end_col_offset is None:
            continue
        # Only the last assignment of a name takes effect; changing an earlier one would change nothing.
        found = [c for c in found if c.name != target.id]
        found.append(
            Constant(
                path,
                target.id,
                float(number),
                isinstance(number, int),
                value.lineno,
                value.col_offset,
                value.end_col_offset,
            )
        )
    return found


def _literal_number(node: ast.expr) -> int | float | None:
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        number: int | float = node.value  # type: ignore[assignment]
        return sign * number
    return None


def step(value: float, is_int: bool, up: bool, factor: float) -> float | None:
    """The next value in one direction, or None when there is no sensible one (e.g. below 1 for a count)."""
    if is_int:
        if abs(value) >= 8 and factor >= 1.5:
            new = value * factor if up else value / factor
            new = float(round(new))
        else:
            delta = max(1, round(abs(value) * (factor - 1)))
            new = value + delta if up else value - delta
        if new == value or (value > 0 and new <= 0):
            return None
        return new
    if value == 0:
        return 0.1 if up else None
    new = value * factor if up == (value > 0) else value / factor
    return new


# The line ends Python itself counts: a form feed or U+2028 inside a file is not one (str.splitlines thinks so).
_LINE_END = re.compile(r"\r\n|\r|\n")


def replace_value(text: str, const: Constant, new_text: str) -> str:
    starts = [0] + [m.end() for m in _LINE_END.finditer(text)]
    begin = starts[const.line - 1]
    end = starts[const.line] if const.line < len(starts) else len(text)
    # ast's column offsets count UTF-8 bytes.
    raw = text[begin:end].encode("utf-8", errors="surrogateescape")
    line = raw[: const.start] + new_text.encode() + raw[const.end :]
    return text[:begin] + line.decode("utf-8", errors="surrogateescape") + text[end:]


class MutateProposer:
    """Hill-climbs module-level numeric constants, one per experiment."""

    name = "mutate"

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.outcomes: dict[tuple[str, bool], list[str]] = {}

    drafts_ahead = False
    """It answers at once: a draft made ahead would only miss the last result."""

    makes_fixes = False
    """It proposes no fix for a crash, so none is asked for."""

    def observe(self, record: ExperimentRecord) -> None:
        match = _DESCRIPTION.match(record.description)
        if not match:
            return
        name, old, new = match.groups()
        try:
            up = float(new) > float(old)
        except ValueError:
            return
        self.outcomes.setdefault((name, up), []).append(record.status)

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        if ctx.crash is not None:
            return None
        constants = [c for path in sorted(ctx.files) for c in find_constants(path, ctx.files[path])]
        if not constants:
            return None
        if ctx.user_idea:
            idea = self._from_idea(ctx, constants, ctx.user_idea)
            if idea is not None:
                return idea
        # A different random seed only samples noise; a "better" seed is not a finding.
        # A constant whose change had no effect does not reach the training: no value of it will.
        tunable = [c for c in constants if "SEED" not in c.name.upper() and not set_aside(c.name, ctx.no_effect)]
        for name, up, factor in self._candidates(tunable):
            const = next(c for c in tunable if c.name == name)
            new_value = step(const.value, const.is_int, up, factor)
            if new_value is None:
                continue
            proposal = self._make(ctx, const, new_value)
            if proposal is not None:
                return proposal
        return None

    def _candidates(self, constants: list[Constant]) -> list[tuple[str, bool, float]]:
        """(name, up, factor) in order of promise: repeat what was kept, then untried, then smaller steps."""
        exploit: list[tuple[str, bool, float]] = []
        fresh: list[tuple[str, bool, float]] = []
        finer: list[tuple[str, bool, float]] = []
        for const in constants:
            for up in (True, False):
                history = self.outcomes.get((const.name, up), [])
                if history and history[-1] == "keep":
                    exploit.append((const.name, up, _FACTORS[0]))
                elif not history:
                    fresh.append((const.name, up, _FACTORS[0]))
                for factor in _FACTORS[1:]:
                    finer.append((const.name, up, factor))
        finer.sort(key=lambda c: -c[2])
        return exploit + fresh + finer

    def _make(self, ctx: ProposalContext, const: Constant, new_value: float) -> Proposal | None:
        old_text = format_number(const.value, const.is_int)
        new_text = format_number(new_value, const.is_int)
        if new_text == old_text:
            return None
        text = replace_value(ctx.files[const.path], const, new_text)
        files = dict(ctx.files)
        files[const.path] = text
        if content_key(files) in ctx.tried:
            return None
        direction = "raise" if new_value > const.value else "lower"
        return Proposal(
            description=f"{const.name} {old_text} -> {new_text}",
            files={const.path: text},
            category="hyperparams",
            edits=tuple(text_edits(const.path, ctx.files[const.path], text)),
            rationale=f"{direction} {const.name}; earlier results in this direction: "
            f"{', '.join(self.outcomes.get((const.name, new_value > const.value), [])) or 'none yet'}",
        )

    def _from_idea(self, ctx: ProposalContext, constants: list[Constant], idea: str) -> Proposal | None:
        """`NAME = value`, `NAME -> value` or `NAME to value` anywhere in the idea, the name in any case."""
        for match in _IDEA.finditer(idea):
            name = match.group(1)
            const = next((c for c in constants if c.name == name), None) or next(
                (c for c in constants if c.name.lower() == name.lower()), None
            )
            if const is None:
                continue
            try:
                value = float(match.group(2))
            except ValueError:
                continue
            return self._make(ctx, const, value)
        return None
