"""The sandbox's cost (issue 22): the same runs through core.runner.run_command with and without bubblewrap,
interleaved in one process so both see the same load.

Start-up: a command that does nothing (`python -c pass`), run N times each way; the difference of the medians
is what the sandbox adds to every run. Per-run: a fixed amount of CPU work (a training stand-in) run each way;
the ratio of the medians of its CPU time (the whole tree's), each less its start-up, is how much slower work
goes inside. Together they give the overhead on a 1-minute run: (start-up + (ratio - 1) x 60 s) / 60 s, against
the goal of 5 %."""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from autoresearch.core.config import SessionConfig
from autoresearch.core.runner import run_command
from autoresearch.core.sandbox import sandbox_for, unavailable_reason

from .common import PY, Row, make_repo, measure_references, median, print_table

WORK = (
    "import sys\nn = int(sys.argv[1])\ns = 0\nfor i in range(n):\n    s += i * i % 7\nprint(f'val_loss: {s % 1000}')\n"
)
MINUTE_S = 60.0


Wrap = Callable[[list[str], Path, Mapping[str, str]], list[str]]


def _children_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _timed(root: Path, command: str, wrap: Wrap | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole tree): bubblewrap reaps the run, and we reap bubblewrap."""
    began, cpu = time.perf_counter(), _children_cpu_s()
    outcome = run_command(command, root, root.parent / "run.log", timeout_s=600, wrap=wrap, cancel=threading.Event())
    if outcome.exit_code != 0:
        raise RuntimeError(f"{command!r} failed: {(root.parent / 'run.log').read_text()[-300:]}")
    return time.perf_counter() - began, _children_cpu_s() - cpu


def run(quick: bool = False) -> list[Row]:
    why = unavailable_reason()
    if why:
        return [Row("sandbox overhead", f"not run: {why}", "", None)]
    starts, works = (3, 2) if quick else (15, 5)
    loops = 300_000 if quick else 20_000_000  # about 0.05 s and 2.5 s of work on one core
    with tempfile.TemporaryDirectory(prefix="ar-bench-sandbox-") as tmp:
        root = make_repo(Path(tmp) / "repo", 1, WORK, files=2)
        refs = measure_references(root)
        config = SessionConfig(tag="b", script_path="train.py", metric_name="val_loss", sandbox=True)
        box = sandbox_for(config, root)
        assert box is not None
        wall: dict[tuple[str, bool], list[float]] = {}
        cpu: dict[tuple[str, bool], list[float]] = {}
        for kind, command, count in (("start", f"{PY} -c pass", starts), ("work", f"{PY} train.py {loops}", works)):
            _timed(root, command, box.wrap)  # warm the page cache both ways
            for _ in range(count):
                for boxed in (False, True):
                    took, used = _timed(root, command, box.wrap if boxed else None)
                    wall.setdefault((kind, boxed), []).append(took)
                    cpu.setdefault((kind, boxed), []).append(used)

    def mid(times: dict[tuple[str, bool], list[float]], kind: str) -> tuple[float, float]:
        return median(times[(kind, False)]), median(times[(kind, True)])

    start_plain, start_boxed = mid(wall, "start")
    startup = start_boxed - start_plain
    # The work's cost inside, start-up apart, in CPU time: the wall time of a run on a shared machine moves by
    # tens of percent with the neighbours' load, its CPU time by a few.
    (cpu_start_plain, cpu_start_boxed), (cpu_plain, cpu_boxed) = mid(cpu, "start"), mid(cpu, "work")
    ratio = (cpu_boxed - cpu_start_boxed) / (cpu_plain - cpu_start_plain)
    wall_plain, wall_boxed = mid(wall, "work")
    overhead = (startup + (ratio - 1) * MINUTE_S) / MINUTE_S
    data = {"start_plain_s": wall[("start", False)], "start_sandboxed_s": wall[("start", True)]}
    data |= {"work_plain_s": wall[("work", False)], "work_sandboxed_s": wall[("work", True)]}
    data |= {"work_plain_cpu_s": cpu[("work", False)], "work_sandboxed_cpu_s": cpu[("work", True)]}
    return [
        Row(
            "sandbox start-up per run",
            f"{startup * 1000:+.0f} ms (python -c pass: {start_plain * 1000:.0f} ms plain, "
            f"{start_boxed * 1000:.0f} ms sandboxed; median of {starts})",
            "",
            None,
            refs.ratio(max(startup, 0.0)),
            data=data,
        ),
        Row(
            "sandboxed run overhead on a 1-minute run",
            f"{overhead * 100:.2f} % (work: {cpu_plain:.2f} s CPU plain, {cpu_boxed:.2f} s sandboxed, ratio "
            f"{ratio:.3f}; wall {wall_plain:.2f} s and {wall_boxed:.2f} s; median of {works})",
            "< 5 %",
            overhead < 0.05,
            f"sandboxed/plain work {ratio:.3f}x CPU in the same run",
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print_table(run(parser.parse_args().quick))
