"""What going through Ray costs per experiment, beside the local executor in the same run: from the call to
`run()` until the tool sees the training's first log line, and from its last log line until `run()` returns,
with 1 and with 2 runs at once (the workers' case). Ray runs on a head started on 127.0.0.1 for the benchmark
(tests/ray_cluster.py), so the figures hold Ray's own costs (job supervisor, working directory shipping, log
tailing, status polling) without a network's."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from autoresearch.core.executor import Executor, LocalExecutor

from .common import PY, Row

SCRIPT = (
    "import time\nprint('first line', flush=True)\ntime.sleep({hold})\nprint('last line', time.time(), flush=True)\n"
)


def _one(executor: Executor, work: Path, log: Path, number: int) -> tuple[float, float]:
    """(call to the first line in the tool's view, the last line's print to the call's return) of one run, in
    seconds. The last line's time is the training's own clock (the cluster is this machine): with Ray the tool
    often sees that line only as the run ends."""
    seen: dict[str, float] = {}

    def on_lines(lines: list[str], dropped: int) -> None:
        for line in lines:
            if line == "first line":
                seen.setdefault(line, time.monotonic())
            elif line.startswith("last line "):
                seen["last line"] = float(line.split()[-1])

    began = time.monotonic()
    outcome = executor.run(
        f"{PY} train.py",
        work,
        log,
        timeout_s=120,
        env={"AUTORESEARCH_EXPERIMENT": str(number)},
        cancel=threading.Event(),
        on_lines=on_lines,
    )
    ended = time.time()
    if outcome.exit_code != 0 or len(seen) != 2:
        raise RuntimeError(f"the benchmark's run failed: {outcome} (saw {sorted(seen)})")
    return seen["first line"] - began, ended - seen["last line"]


def _at_once(executor: Executor, work: Path, count: int, number: int) -> list[tuple[float, float]]:
    results: list[tuple[float, float] | BaseException] = [RuntimeError("not run")] * count

    def go(i: int) -> None:
        try:
            results[i] = _one(executor, work, work / f"run-{number}-{i}.log", number * 10 + i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if not isinstance(r, BaseException)]


def _medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def run(quick: bool = False) -> list[Row]:
    from autoresearch.core.ray_executor import RayExecutor, RayOptions

    from tests.ray_cluster import ray_head

    repeats = 1 if quick else 5
    hold = 0.5 if quick else 2.0
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ar-bench-ray-") as tmp, ray_head(num_gpus=2, num_cpus=2) as head:
        work = Path(tmp)
        (work / "train.py").write_text(SCRIPT.format(hold=hold))
        executors: dict[str, Callable[[], Executor]] = {
            "local": LocalExecutor,
            "ray": lambda: RayExecutor(RayOptions(head.address, "benchmark")),
        }
        made = {name: make() for name, make in executors.items()}
        _one(made["ray"], work, work / "warm.log", 0)  # the first job starts Ray's workers: not a run's cost
        for count in (1, 2):
            runs: dict[str, list[tuple[float, float]]] = {"local": [], "ray": []}
            for repeat in range(repeats):
                for name in ("local", "ray"):  # interleaved, so a change in the machine's load hits both
                    runs[name] += _at_once(made[name], work, count, repeat + 1)
            (local_first, local_last), (ray_first, ray_last) = _medians(runs["local"]), _medians(runs["ray"])
            n = len(runs["ray"])
            for what, ray_s, local_s in (
                ("submission to first log line", ray_first, local_first),
                ("last log line to result", ray_last, local_last),
            ):
                rows.append(
                    Row(
                        what=f"Ray executor: {what}, {count} at once",
                        measured=f"{ray_s * 1000:.0f} ms (local executor {local_s * 1000:.0f} ms), median of {n}",
                        goal="report",
                        met=None,
                        ratio=f"{ray_s / local_s:.1f}x the local executor",
                        data={"ray_s": ray_s, "local_s": local_s, "runs": n, "at_once": count},
                    )
                )
    return rows
