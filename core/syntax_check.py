"""The compile check before a run: an edit that leaves an editable Python file unable to compile costs
milliseconds here instead of a whole run (and a crash row) later."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SyntaxProblem:
    path: str
    line: int
    message: str
    excerpt: str
    """The lines around the error, numbered, the bad one marked with `>`."""

    @property
    def short(self) -> str:
        at = f"line {self.line}: " if self.line else ""
        return f"{self.path} would not compile ({at}{self.message})"

    def feedback(self) -> str:
        where = f" at line {self.line}" if self.line else ""
        shown = f"\n```\n{self.excerpt}\n```" if self.excerpt else ""
        return f"{self.path} does not compile after your edits: {self.message}{where}.{shown}"


def _error(path: str, text: str) -> tuple[int, str] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(text.removeprefix("\ufeff"), path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return exc.lineno or 0, exc.msg or type(exc).__name__
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        return 0, str(exc) or type(exc).__name__
    return None


def _excerpt(text: str, line: int, context: int = 2) -> str:
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return ""
    lo, hi = max(1, line - context), min(len(lines), line + context)
    return "\n".join(f"{'>' if n == line else ' '}{n:>5} | {lines[n - 1][:200]}" for n in range(lo, hi + 1))


def syntax_problem(files: Mapping[str, str], before: Mapping[str, str]) -> SyntaxProblem | None:
    """The first edited Python file in `files` that no longer compiles, or None.

    A file that did not compile before the edit (written for a newer Python than this one, say) is not
    held against the edit.
    """
    for path, text in files.items():
        if not path.endswith(".py") or before.get(path) == text:
            continue
        error = _error(path, text)
        if error is None or (path in before and _error(path, before[path]) is not None):
            continue
        line, message = error
        return SyntaxProblem(path, line, message, _excerpt(text, line))
    return None
