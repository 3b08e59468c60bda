"""`.autoresearch/`: our own history, richer than results.tsv.

.autoresearch/experiments/0001/meta.json   description, category, rationale, tokens, cost, timings, commit
.autoresearch/experiments/0001/diff.patch  what the experiment changed (also for discarded ones)
.autoresearch/experiments/0001/run.log     its training log
.autoresearch/experiments/0001/your-edits/ copies of files the user edited while it ran (when they were in the way)
.autoresearch/journal.json                 the experiment in flight, for recovery after a crash
.autoresearch/run.pids                     process ids of the training tree running now
.autoresearch/ideas.txt                    ideas the user queued for the agent, one per line
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import STATE_DIR


def workers_state_path(root: Path) -> Path:
    """What each worker does now, for `status` (written by the scheduler while a session runs)."""
    return root / STATE_DIR / "workers.json"


@dataclass
class ExperimentMeta:
    number: int
    commit: str = ""
    parent: str = ""
    kind: str = "experiment"
    description: str = ""
    category: str = "other"
    rationale: str = ""
    status: str = ""
    metric: float | None = None
    memory_gb: float = 0.0
    duration_s: float = 0.0
    exit_code: int | None = None
    timed_out: bool = False
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    propose_s: float = 0.0
    started_at: str = ""
    finished_at: str = ""
    ref: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentMeta:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def write_json_atomic(path: Path, data: Any, durable: bool = True) -> None:
    """Write beside, then rename; `durable` also waits for the disk (what must survive a power cut)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class History:
    """Reads and writes the `.autoresearch/` folder of one repository."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / STATE_DIR
        self.experiments_dir = self.dir / "experiments"
        self.journal_path = self.dir / "journal.json"
        self.pids_path = self.dir / "run.pids"
        self.ideas_path = self.dir / "ideas.txt"
        self._metas: dict[int, tuple[tuple[int, int, int], ExperimentMeta | None]] = {}

    def ensure(self) -> None:
        self.experiments_dir.mkdir(parents=True, exist_ok=True)

    def experiment_dir(self, number: int) -> Path:
        return self.experiments_dir / f"{number:04d}"

    def log_path(self, number: int) -> Path:
        return self.experiment_dir(number) / "run.log"

    def edit_copies_dir(self, number: int) -> Path:
        """Where copies of the user's edits go when they were in the way of taking experiment `number` off."""
        return self.experiment_dir(number) / "your-edits"

    def diff_path(self, number: int) -> Path:
        return self.experiment_dir(number) / "diff.patch"

    def save_meta(self, meta: ExperimentMeta) -> None:
        write_json_atomic(self.experiment_dir(meta.number) / "meta.json", asdict(meta))

    def load_meta(self, number: int) -> ExperimentMeta | None:
        """#number's meta.json, parsed again only when the file changed (each write is a new file, renamed in)."""
        path = self.experiment_dir(number) / "meta.json"
        try:
            st = path.stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._metas.get(number)
        if cached is None or cached[0] != stamp:
            data = read_json(path)
            try:
                meta = ExperimentMeta.from_dict(data) if isinstance(data, dict) else None
            except TypeError:
                meta = None
            cached = self._metas[number] = (stamp, meta)
        meta = cached[1]
        return None if meta is None else dataclasses.replace(meta, extra=dict(meta.extra))

    def all_meta(self) -> dict[int, ExperimentMeta]:
        found: dict[int, ExperimentMeta] = {}
        if not self.experiments_dir.is_dir():
            return found
        for child in self.experiments_dir.iterdir():
            if child.name.isdigit():
                meta = self.load_meta(int(child.name))
                if meta is not None:
                    found[meta.number] = meta
        return found

    def save_diff(self, number: int, diff: str) -> None:
        path = self.diff_path(number)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(diff, encoding="utf-8")

    def read_diff(self, number: int) -> str:
        try:
            return self.diff_path(number).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # The journal: what is in flight, written before each irreversible step.

    def write_journal(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.journal_path, data)

    def read_journal(self) -> dict[str, Any] | None:
        data = read_json(self.journal_path)
        return data if isinstance(data, dict) else None

    def clear_journal(self) -> None:
        self.journal_path.unlink(missing_ok=True)

    # Ideas the user queued (the app's `i` key), consumed first-in first-out.

    def queue_idea(self, text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.ideas_path.open("a", encoding="utf-8") as fh:
            fh.write(" ".join(text.split()) + "\n")

    def pending_ideas(self) -> list[str]:
        try:
            return [ln for ln in self.ideas_path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except OSError:
            return []

    def requeue_idea(self, text: str) -> None:
        """Put an idea back at the front (its proposal could not be used)."""
        self._write_ideas([text, *self.pending_ideas()])

    def _write_ideas(self, ideas: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.ideas_path.with_name("ideas.txt.tmp")
        tmp.write_text("".join(i + "\n" for i in ideas), encoding="utf-8")
        os.replace(tmp, self.ideas_path)

    def pop_idea(self) -> str | None:
        ideas = self.pending_ideas()
        if not ideas:
            return None
        self._write_ideas(ideas[1:])
        return ideas[0]
