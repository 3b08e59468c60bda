"""Timeout enforcement: a training tree that ignores SIGTERM (with children in other sessions and a
double-forked grandchild) must be gone within the grace period + 1 s after the timeout.

The tree runs through core.runner.run_command, as the loop runs it (grace 5 s); a watcher thread polls
every pid the tree wrote down, every 5 ms, and notes when the last one disappeared."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil
from autoresearch.core.runner import run_command

from .common import PY, Row, print_table

SCRIPT = Path(__file__).parent / "scripts" / "stubborn_tree.py"
PROCESSES = 4


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def trial(workdir: Path, timeout_s: float, grace_s: float) -> tuple[float, int, bool]:
    """(seconds from the timeout until the last process was gone, processes seen, any left at the end)."""
    pids_file = workdir / "pids.txt"
    pids_file.unlink(missing_ok=True)
    last_gone = [0.0]
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if pids_file.exists():
                seen.update(int(p) for p in pids_file.read_text().split())
            if seen and not any(_alive(pid) for pid in seen):
                last_gone[0] = last_gone[0] or time.monotonic()
            else:
                last_gone[0] = 0.0
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    began = time.monotonic()
    outcome = run_command(
        f"{PY} {SCRIPT} {pids_file}", workdir, workdir / "run.log", timeout_s=timeout_s, grace_s=grace_s
    )
    time.sleep(0.05)
    done.set()
    watcher.join()
    if not outcome.timed_out:
        raise RuntimeError("the stubborn tree was expected to time out")
    left = any(_alive(pid) for pid in seen)
    gone_at = last_gone[0] or time.monotonic()
    return gone_at - (began + timeout_s), len(seen), left


def run(quick: bool = False) -> list[Row]:
    timeout_s, grace_s, trials = (0.5, 0.5, 1) if quick else (2.0, 5.0, 3)
    workdir = Path(tempfile.mkdtemp(prefix="ar-bench-timeout-"))
    try:
        results = [trial(workdir, timeout_s, grace_s) for _ in range(trials)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    worst = max(r[0] for r in results)
    counts = sorted({r[1] for r in results})
    left = any(r[2] for r in results)
    return [
        Row(
            what=f"timeout enforcement (tree ignoring SIGTERM, {PROCESSES} processes, grace {grace_s:g} s)",
            measured=f"gone {worst:.2f} s after the timeout (worst of {trials})",
            goal=f"<= grace + 1 s = {grace_s + 1:g} s",
            met=worst <= grace_s + 1 and not left and counts == [PROCESSES],
            ratio=f"{worst - grace_s:+.2f} s beyond the grace period",
            note=f"processes seen per trial: {counts}; any alive or unreaped afterwards: {left}",
            data={"after_timeout_s": [r[0] for r in results]},
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (smoke test)")
    print_table(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
