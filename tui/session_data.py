"""Reading a session from disk for the screens. Called from thread workers, never on the UI thread."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from autoresearch.core.config import RESULTS_FILE, SessionConfig, load_config
from autoresearch.core.history import ExperimentMeta, History
from autoresearch.core.pruning import comparison
from autoresearch.core.results import ResultRow, read_results
from autoresearch.core.sanitize import safe_line, safe_text

TAIL_BYTES = 256 * 1024


@dataclass(frozen=True)
class SessionSnapshot:
    config: SessionConfig
    rows: list[ResultRow]
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class ExperimentDetail:
    number: int
    row: ResultRow | None
    meta: ExperimentMeta | None
    diff: str
    log_lines: list[str] = field(default_factory=list)
    log_note: str = ""
    curves: str = ""
    """A pruned run's loss curve beside the best's (core/pruning.py)."""


def load_snapshot(root: Path) -> SessionSnapshot:
    config = load_config(root)
    results_path = root / RESULTS_FILE
    rows = list(read_results(results_path).rows) if results_path.exists() else []
    metas = History(root).all_meta()
    tokens = sum(m.tokens_in + m.tokens_out for m in metas.values())
    cost = sum(m.cost_usd for m in metas.values())
    return SessionSnapshot(config, rows, tokens, cost)


def tail_lines(path: Path, max_lines: int = 1000) -> list[str]:
    """The last lines of a file, reading at most TAIL_BYTES from its end."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            data = fh.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > TAIL_BYTES and lines:
        lines = lines[1:]
    return lines[-max_lines:]


def _git_show(root: Path, commit: str) -> str:
    try:
        done = subprocess.run(
            ["git", "show", "--format=", "--patch", commit],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def load_experiment(root: Path, number: int, row: ResultRow | None) -> ExperimentDetail:
    history = History(root)
    meta = history.load_meta(number)
    diff = history.read_diff(number)
    if not diff and row is not None and row.commit and row.status in ("keep", "baseline"):
        diff = _git_show(root, row.commit)
    log_path = history.log_path(number)
    note = ""
    if log_path.exists():
        lines = tail_lines(log_path)
    else:
        lines = []
        note = "No log was kept for this experiment."
    # What the model wrote and the training printed is shown, never obeyed by the terminal.
    if meta is not None:
        meta = replace(
            meta,
            description=safe_line(meta.description),
            rationale=safe_text(meta.rationale),
            note=safe_line(meta.note),
        )
    if row is not None:
        row = replace(row, description=safe_line(row.description))
    lines = [safe_line(line) for line in lines]
    return ExperimentDetail(number, row, meta, safe_text(diff), lines, note, comparison(history, number))
