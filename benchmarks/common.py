"""What every benchmark shares: the table row, timing helpers, reference timings, test repositories."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PY = sys.executable
BIN = Path(PY).parent
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class Row:
    """One line of the table. `met` is None for a figure that is only reported."""

    what: str
    measured: str
    goal: str
    met: bool | None
    ratio: str = ""
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "report" if self.met is None else "met" if self.met else "NOT MET"


@dataclass
class References:
    """Machine-speed yardsticks measured in the same run: give a timing as a multiple of these."""

    git_spawn_s: float
    python_startup_s: float

    def ratio(self, seconds: float) -> str:
        git_ms, python_ms = self.git_spawn_s * 1000, self.python_startup_s * 1000
        return (
            f"{seconds / self.git_spawn_s:.1f}x git rev-parse ({git_ms:.1f} ms), "
            f"{seconds / self.python_startup_s:.2f}x python -c pass ({python_ms:.0f} ms)"
        )


def use_git_identity() -> None:
    """Commits made by the benchmarks get a fixed identity and no system git config."""
    os.environ.update(GIT_ENV)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def time_calls(fn: Callable[[], object], runs: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        out.append(time.perf_counter() - began)
    return out


def run_quiet(args: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        list(args),
        cwd=cwd,
        env=env,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure_references(repo: Path, runs: int = 10) -> References:
    git_times = time_calls(lambda: run_quiet(["git", "rev-parse", "HEAD"], cwd=repo), runs)
    py_times = time_calls(lambda: run_quiet([PY, "-c", "pass"]), runs)
    return References(median(git_times), median(py_times))


def git(root: Path, *args: str, input: bytes | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, input=input)
    return done.stdout.decode().strip()


def make_repo(root: Path, commits: int, train_text: str, files: int = 100) -> Path:
    """A repository with `commits` commits (through git fast-import) over `files` modules and train.py."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    stream: list[bytes] = []

    def data(text: str) -> None:
        raw = text.encode()
        stream.append(f"data {len(raw)}\n".encode() + raw + b"\n")

    for n in range(1, commits + 1):
        when = 1_700_000_000 + n
        stream.append(f"commit refs/heads/main\nmark :{n}\ncommitter Bench <bench@example.com> {when} +0000\n".encode())
        data(f"change {n}")
        if n > 1:
            stream.append(f"from :{n - 1}\n".encode())
        module = f"src/module_{n % files:03d}.py"
        stream.append(f"M 100644 inline {module}\n".encode())
        data(f"# revision {n}\nVALUE = {n}\n")
        if n == commits:
            stream.append(b"M 100644 inline train.py\n")
            data(train_text)
            stream.append(b"M 100644 inline README.md\n")
            data("a training project\n")
    git(root, "fast-import", "--quiet", input=b"".join(stream))
    git(root, "reset", "-q", "--hard", "main")
    return root


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def print_table(rows: Sequence[Row], out: Any = None) -> None:
    out = out or sys.stdout
    header = ("what", "measured", "goal", "verdict", "ratio (same run)")
    body = [(r.what, r.measured, r.goal, r.verdict, r.ratio) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    print(line(header), file=out)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)
    for cells in body:
        print(line(cells), file=out)
    notes = [(r.what, r.note) for r in rows if r.note]
    if notes:
        print(file=out)
        for what, note in notes:
            print(f"- {what}: {note}", file=out)
    out.flush()


def rows_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [{**asdict(r), "verdict": r.verdict} for r in rows]


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
