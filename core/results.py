"""results.tsv: one row per experiment, in the skill's format (and karpathy/autoresearch's, read only).

Header: commit<TAB><metric_name><TAB>memory_gb<TAB>duration_s<TAB>status<TAB>description.
A row is appended with a single write and fsync; a torn last line (no newline) is never a row.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import UserError

Status = Literal["baseline", "keep", "discard", "crash"]
STATUSES: tuple[str, ...] = ("baseline", "keep", "discard", "crash")


def is_pruned(description: str) -> bool:
    """The row of a run stopped early by pruning (core/pruning.py)."""
    return "(pruned at " in description


@dataclass(frozen=True)
class ResultRow:
    commit: str
    metric: float
    memory_gb: float
    duration_s: float
    status: Status
    description: str

    @property
    def has_metric(self) -> bool:
        """It measured its metric: not a crash, and not a run stopped by pruning (whose 0 is no measurement)."""
        return self.status != "crash" and not is_pruned(self.description)

    def to_line(self, with_duration: bool = True) -> str:
        """The row as results.tsv holds it; without duration_s for a file written by karpathy/autoresearch."""
        description = " ".join(self.description.split()) or "-"
        duration = f"{self.duration_s:.1f}\t" if with_duration else ""
        metric = metric_text(self.metric)
        return f"{self.commit}\t{metric}\t{self.memory_gb:.1f}\t{duration}{self.status}\t{description}\n"


def metric_text(value: float) -> str:
    """Six decimals as the skill writes them, or every digit a float has when six would change the value
    (1e-320 and 0.0, or 0.1234567 and 0.1234568, must not read the same): status, analyze and the branch
    then agree on the best."""
    six = f"{value:.6f}"
    return six if float(six) == value else repr(value)


def header(metric_name: str) -> str:
    return f"commit\t{metric_name}\tmemory_gb\tduration_s\tstatus\tdescription\n"


@dataclass(frozen=True)
class ResultsTable:
    metric_name: str
    rows: tuple[ResultRow, ...]
    has_duration: bool = True
    torn_tail: bool = False
    unreadable_lines: tuple[int, ...] = ()
    """Line numbers (the header is 1) of lines that are not a row: no known status where status should be."""
    foreign_columns: tuple[str, ...] = ()
    """Header columns autoresearch does not write (another tool added them)."""

    def measured(self) -> list[tuple[int, ResultRow]]:
        """(1-based number, row) for rows that produced a metric: every status but crash."""
        return [(i, r) for i, r in enumerate(self.rows, 1) if r.has_metric]

    def baseline(self) -> float | None:
        """The `baseline` row's metric; karpathy/autoresearch records its baseline as a first `keep` row."""
        for row in self.rows:
            if row.status == "baseline":
                return row.metric
        if self.rows and self.rows[0].status == "keep":
            return self.rows[0].metric
        return None

    def best(self, higher_is_better: bool) -> tuple[int, ResultRow] | None:
        """The best kept (or baseline) result, the first one on ties."""
        best: tuple[int, ResultRow] | None = None
        for i, row in enumerate(self.rows, 1):
            if row.status not in ("baseline", "keep"):
                continue
            if best is None or is_better(row.metric, best[1].metric, higher_is_better):
                best = (i, row)
        return best


def is_better(new: float, old: float | None, higher_is_better: bool) -> bool:
    """Strictly better: an equal value is not an improvement."""
    if not math.isfinite(new):
        return False
    if old is None:
        return True
    return new > old if higher_is_better else new < old


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


_KNOWN_COLUMNS = ("commit", "memory_gb", "duration_s", "status", "description")


@dataclass(frozen=True)
class _Columns:
    """Where each field is in the file's header: found by name, so a column another tool added is not misread."""

    names: tuple[str, ...]

    def at(self, cells: list[str], name: str) -> str:
        if name not in self.names:
            return "0" if name == "duration_s" else ""
        i = self.names.index(name)
        if name == "description" and i == len(self.names) - 1:
            return "\t".join(cells[i:])
        return cells[i] if i < len(cells) else ""

    def foreign(self) -> tuple[str, ...]:
        return tuple(n for n in self.names[2:] if n not in _KNOWN_COLUMNS)


def _parse_row(line: str, columns: _Columns) -> ResultRow | None:
    cells = line.rstrip("\r").split("\t")
    status = columns.at(cells, "status").strip()
    if status not in STATUSES:
        return None
    return ResultRow(
        commit=columns.at(cells, "commit").strip(),
        metric=_float(cells[1] if len(cells) > 1 else ""),
        memory_gb=_float(columns.at(cells, "memory_gb")),
        duration_s=_float(columns.at(cells, "duration_s")),
        status=status,  # type: ignore[arg-type]
        description=columns.at(cells, "description").strip(),
    )


def _complete_row(line: str, columns: _Columns) -> bool:
    """Whether a last line without its newline still holds a whole row (a file edited by hand often ends so)."""
    cells = line.rstrip("\r").split("\t")
    if len(cells) < len(columns.names) or not cells[0].strip() or not cells[-1].strip():
        return False
    try:
        float(cells[1])
    except ValueError:
        return False
    return columns.at(cells, "status").strip() in STATUSES


def _header_columns(first_line: str) -> _Columns:
    return _Columns(tuple(cell.strip() for cell in first_line.rstrip("\r").split("\t")))


def parse_results(text: str, source: str = "results.tsv") -> ResultsTable:
    lines = text.removeprefix("\ufeff").split("\n")
    last = lines.pop()
    if not lines and last.startswith("commit\t"):
        lines, last = [last], ""
    if not lines or not lines[0].strip():
        raise UserError(f"{source} has no header line; restore it or run `autoresearch setup` again.")
    columns = _header_columns(lines[0])
    if len(columns.names) < 5 or columns.names[0] != "commit" or "status" not in columns.names:
        raise UserError(
            f"{source} does not start with the header commit<TAB><metric><TAB>memory_gb<TAB>...; "
            "check that it is the session's results file."
        )
    has_duration = "duration_s" in columns.names
    torn = bool(last)
    if torn and _complete_row(last, columns):
        lines.append(last)
        torn = False
    rows: list[ResultRow] = []
    unreadable: list[int] = []
    for number, line in enumerate(lines[1:], 2):
        if line.strip():
            parsed = _parse_row(line, columns)
            if parsed is None:
                unreadable.append(number)
            else:
                rows.append(parsed)
    return ResultsTable(
        metric_name=columns.names[1],
        rows=tuple(rows),
        has_duration=has_duration,
        torn_tail=torn,
        unreadable_lines=tuple(unreadable),
        foreign_columns=columns.foreign(),
    )


def read_results(path: Path) -> ResultsTable:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path.name} is missing; run `autoresearch setup SCRIPT` to start a session.") from None
    except OSError as exc:
        raise UserError(f"{path.name} cannot be read ({exc.strerror}); check its permissions.") from None
    return parse_results(data.decode("utf-8", errors="replace"), path.name)


def write_header(path: Path, metric_name: str) -> None:
    path.write_text(header(metric_name), encoding="utf-8")


def repair_torn_tail(path: Path) -> bool:
    """Cut a half-written last line (a write interrupted by a crash); True if something was cut.

    A whole row that only lacks its newline is kept and given one, so the next append starts on a new line.
    """
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    cut = data.rfind(b"\n") + 1
    text = data.decode("utf-8", errors="replace")
    last = text[text.rfind("\n") + 1 :]
    whole_header = not cut and last.startswith("commit\t")
    if whole_header or (cut and _complete_row(last, _header_columns(text.split("\n", 1)[0]))):
        with path.open("ab") as fh:
            fh.write(b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        return False
    with path.open("r+b") as fh:
        fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def check_writable(path: Path) -> None:
    """Raise the sentence append_row would give, before an experiment runs rather than after."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
    except PermissionError:
        raise UserError(f"{path.name} is not writable; fix its permissions (chmod u+w {path.name}).") from None
    except OSError as exc:
        raise UserError(f"{path.name} cannot be written ({exc.strerror}); it must be a writable file.") from None


def append_row(path: Path, row: ResultRow, with_duration: bool = True) -> None:
    line = row.to_line(with_duration).encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except PermissionError:
        raise UserError(f"{path.name} is not writable; fix its permissions (chmod u+w {path.name}).") from None
    except FileNotFoundError:
        raise UserError(f"{path.name} has disappeared; restore it, or run `autoresearch setup` again.") from None
    except OSError as exc:
        raise UserError(f"{path.name} cannot be written ({exc.strerror}); it must be a writable file.") from None
    try:
        os.write(fd, line)
        os.fsync(fd)
    except OSError as exc:
        raise UserError(f"{path.name} could not be written ({exc.strerror}); free disk space and run again.") from None
    finally:
        os.close(fd)
