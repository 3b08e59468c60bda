"""The event journal: what the loop does, as JSON lines any process can follow (docs/WATCH.md).

`.autoresearch/events.jsonl` holds one object per line: an opening line each time a run starts publishing
(`{"type": "Opened", "pid": ..., "t": ...}`), then one line per event (`{"type": "<Event class>", "t": ...,
"data": {<its fields>}}`). Lines are appended whole with one write each; past MAX_BYTES the file moves to
`events.1.jsonl` (the one before is dropped) and a new one starts with an opening line, so it stays bounded.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from . import events as ev
from .config import STATE_DIR
from .results import ResultRow

JOURNAL = "events.jsonl"
ROTATED = "events.1.jsonl"
MAX_BYTES = 4 * 1024 * 1024
OPENED = "Opened"
_RECHECK_S = 1.0

EVENT_TYPES: dict[str, type[ev.Event]] = {
    cls.__name__: cls
    for cls in vars(ev).values()
    if isinstance(cls, type) and issubclass(cls, ev.Event) and cls is not ev.Event
}


def journal_path(root: Path) -> Path:
    return root / STATE_DIR / JOURNAL


def encode(event: ev.Event, now: float) -> bytes:
    # Not asdict(event): it copies every log line one by one; json writes tuples as lists itself.
    data = {spec.name: getattr(event, spec.name) for spec in fields(event)}
    if isinstance(event, ev.ResultRecorded):
        data["row"] = asdict(event.row)
    line = {"type": type(event).__name__, "t": round(now, 3), "data": data}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def decode(line: dict[str, Any]) -> ev.Event | None:
    """The event a journal line holds, or None for an opening line, an unknown type or a damaged line."""
    cls = EVENT_TYPES.get(str(line.get("type")))
    data = line.get("data")
    if cls is None or not isinstance(data, dict):
        return None
    kwargs: dict[str, Any] = {}
    for spec in fields(cls):
        if spec.name not in data:
            continue
        value = data[spec.name]
        if spec.name == "row" and isinstance(value, dict):
            value = ResultRow(**value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[spec.name] = value
    try:
        return cls(**kwargs)
    except TypeError:
        return None


class JournalWriter:
    """An event sink appending each event to the journal. A write that fails (a full disk) drops that event and
    is said once through `warn`; writing starts again by itself once the disk has room."""

    def __init__(
        self,
        root: Path,
        warn: Callable[[str], None],
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = journal_path(root)
        self.warn = warn
        self.max_bytes = max_bytes
        self.clock = clock
        self._fd: int | None = None
        self._inode = 0
        self._size = 0
        self._checked = 0.0
        self._failing = False
        self._lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        with self._lock:
            self._publish(event)

    def _publish(self, event: ev.Event) -> None:
        now = self.clock()
        try:
            self._write(encode(event, now), now)
        except OSError as exc:
            self._close()
            if not self._failing:
                self._failing = True
                why = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror or str(exc)
                self.warn(f"watchers see nothing new for now: the event journal {self.path} cannot be written ({why})")
            return
        if self._failing:
            self._failing = False
            self.warn("the event journal is written again; watchers follow the run")

    def _write(self, data: bytes, now: float) -> None:
        if self._fd is not None and now - self._checked >= _RECHECK_S:
            self._checked = now
            if self._moved():
                self._close()
        if self._fd is not None and self._size + len(data) > self.max_bytes:
            self._close()
            os.replace(self.path, self.path.with_name(ROTATED))
        if self._fd is None:
            self._open(now)
        assert self._fd is not None
        self._append(data)

    def _moved(self) -> bool:
        """The file was deleted or replaced under us (the folder removed during a run): start a new one."""
        try:
            return os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            return True

    def _open(self, now: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        stat = os.fstat(fd)
        self._fd, self._inode, self._size, self._checked = fd, stat.st_ino, stat.st_size, now
        if stat.st_size and not _ends_with_newline(self.path):
            self._append(b"\n")  # a line cut by a crash ends here, so readers skip it whole
        opened = {"type": OPENED, "pid": os.getpid(), "t": round(now, 3)}
        self._append((json.dumps(opened, separators=(",", ":")) + "\n").encode())

    def _append(self, data: bytes) -> None:
        assert self._fd is not None
        written = os.write(self._fd, data)
        self._size += written
        if written != len(data):
            raise OSError(errno.ENOSPC, "short write")

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


class LineParser:
    """Journal lines to events: bytes come in pieces; a line not yet ended waits for its end, one that can never
    be read (cut by a crash) is skipped and counted. An opening line sets who writes (`writer_pid`)."""

    def __init__(self) -> None:
        self.writer_pid: int | None = None
        self.skipped = 0
        self.pending = b""

    def feed(self, data: bytes) -> list[ev.Event]:
        data = self.pending + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self.pending = data
            return []
        self.pending = data[cut + 1 :]
        out: list[ev.Event] = []
        for raw in data[:cut].split(b"\n"):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                self.skipped += 1
                continue
            if not isinstance(line, dict):
                self.skipped += 1
                continue
            if line.get("type") == OPENED:
                self.writer_pid = line.get("pid") if isinstance(line.get("pid"), int) else None
                continue
            event = decode(line)
            if event is None:
                self.skipped += 1
            else:
                out.append(event)
        return out


class MemoryJournal:
    """The journal kept in this process for a viewer in it (the app `autoresearch run` starts): an event sink
    that writes each event as the journal line a watcher reads, and `read()` gives them back, decoded the same way.
    Nothing touches the disk, so a full disk never blinds this viewer."""

    writer_pid: int | None = None

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.lines = LineParser()
        self.written = threading.Event()
        """Set at each write, so the viewer wakes for new lines instead of polling."""
        self._written: list[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        line = encode(event, self.clock())
        with self._lock:
            self._written.append(line)
        self.written.set()

    def read(self) -> list[ev.Event]:
        with self._lock:
            written, self._written = self._written, []
        return self.lines.feed(b"".join(written)) if written else []


class JournalReader:
    """Follows the journal from the last opening (`from_start`) or from its end, across rotations.

    `read()` gives the events appended since the last call; a line not yet ended waits for its end, and a line
    that can never be read (cut by a crash) is skipped."""

    def __init__(self, root: Path, from_start: bool = True) -> None:
        self.path = journal_path(root)
        self.lines = LineParser()
        self._fh: Any = None
        self._inode = 0
        self._from_start = from_start
        self._now = self._position_now() if not from_start else (0, 0)

    @property
    def writer_pid(self) -> int | None:
        return self.lines.writer_pid

    @property
    def skipped(self) -> int:
        return self.lines.skipped

    def read(self) -> list[ev.Event]:
        out: list[ev.Event] = []
        if self._fh is None:
            if not self._open(first=True):
                return out
        elif self._replaced():
            out += self.lines.feed(self._fh.read())
            self._fh.close()
            self._fh = None
            self.lines.pending = b""
            if not self._open(first=False):
                return out
        out += self.lines.feed(self._fh.read())
        return out

    def _position_now(self) -> tuple[int, int]:
        """(inode, size) of the journal as it is now; (0, 0) when there is none yet."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0)
        return (stat.st_ino, stat.st_size)

    def _replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            return False

    def _open(self, first: bool) -> bool:
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return False
        self._fh, self._inode = fh, os.fstat(fh.fileno()).st_ino
        if first:
            data = fh.read()
            if self._from_start:
                # The opening may have rotated away: then all the current file holds.
                fh.seek(max(data.rfind(b'{"type":"' + OPENED.encode()), 0))
            elif self._inode == self._now[0]:
                # From now: after the last whole line when this reader was made (a line being written then is read
                # once it ends), not when it first finds the file: a run may have written since.
                fh.seek(data.rfind(b"\n", 0, self._now[1]) + 1)
            else:
                fh.seek(0)  # the journal appeared (or was replaced) after this reader was made: all of it is new
        return True

    def last_opening(self) -> tuple[int | None, bool]:
        """From the journal as it is now: the pid of the last run that opened it and whether that run's
        session ended (a LoopStopped after its opening). Reads the whole current file once (it is bounded)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, True
        start = data.rfind(b'{"type":"' + OPENED.encode())
        if start < 0:
            return None, True
        tail = data[start:]
        head = tail.split(b"\n", 1)[0]
        try:
            pid = json.loads(head).get("pid")
        except ValueError:
            pid = None
        return (pid if isinstance(pid, int) else None), b'{"type":"LoopStopped"' in tail

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
