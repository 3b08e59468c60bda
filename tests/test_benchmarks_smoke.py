"""The benchmarks run in their tiny configuration and print every row of the table (shape only, never timings)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERDICT = r"(met|NOT MET|report)"


def bench(tmp_path: Path, *only: str, timeout: float = 120) -> tuple[str, list[dict[str, Any]]]:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", *only, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    assert data["quick"] is True
    assert data["machine"]["cpus"] >= 1 and data["machine"]["python"]
    assert data["references"]["git_rev_parse_s"] > 0 and data["references"]["python_startup_s"] > 0
    return done.stdout, data["rows"]


def assert_rows(stdout: str, rows: list[dict[str, Any]], starts: list[str]) -> None:
    assert re.search(r"^\| what +\| measured +\| goal +\| verdict +\| ratio \(same run\) +\|$", stdout, re.MULTILINE)
    seconds = re.compile(r"for \d+ s\b")  # how long a flood took depends on the machine's load
    assert [seconds.sub("for N s", row["what"].split(" (")[0].split(":")[0]) for row in rows] == starts
    for row in rows:
        assert row["measured"] and not row["measured"].startswith("failed"), row
        assert row["verdict"] in ("met", "NOT MET", "report")
        line = next(ln for ln in stdout.splitlines() if ln.startswith(f"| {row['what']} "))
        assert re.search(rf"\| {VERDICT} +\|", line), line


def test_engine_benchmarks_print_their_rows(tmp_path: Path) -> None:
    stdout, rows = bench(tmp_path, "overhead", "cli", "timeout", "gpu")
    assert stdout.startswith("machine: ")
    assert "references at the start: git rev-parse" in stdout
    assert_rows(
        stdout,
        rows,
        [
            "harness overhead per experiment",
            "`autoresearch --help`",
            "`autoresearch status` on a 200-row results.tsv",
            "timeout enforcement",
            "GPU",
        ],
    )
    overhead = rows[0]["data"]
    assert len(overhead["overhead_s"]) == 3 and len(overhead["train_s"]) == 4
    assert "git rev-parse" in rows[0]["ratio"] and "python -c pass" in rows[0]["ratio"]
    assert rows[3]["verdict"] == "met", "the tree ignoring SIGTERM must be gone: that is a promise, not a timing"


def test_duty_cycle_prints_its_row(tmp_path: Path) -> None:
    stdout, rows = bench(tmp_path, "duty")
    assert_rows(stdout, rows, ["duty cycle", "duty cycle"])
    assert rows[0]["verdict"] in ("met", "NOT MET")
    assert rows[0]["data"]["runs"] == 3 and rows[0]["data"]["skipped"] == []
    drafted, sequential = rows[0]["data"]["drafted"], rows[0]["data"]["sequential"]
    assert drafted["runs"] == sequential["runs"] and drafted["requests"] == sequential["requests"] == 2
    assert "the old way in the same run" in rows[0]["ratio"]
    assert re.search(r"\d+\.\d% of wall time training", rows[0]["measured"])
    # The settings on neighbouring lines: a draft made before a keep still applies, nothing is asked twice.
    near = rows[1]["data"]["drafted"]
    assert "neighbouring lines" in rows[1]["what"] and near["runs"] == drafted["runs"] and near["requests"] == 2
    assert rows[1]["data"]["skipped"] == [] and "settings apart, in the same run" in rows[1]["ratio"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="the app benchmark drives the app in tmux")
def test_app_benchmark_prints_its_rows(tmp_path: Path) -> None:
    stdout, rows = bench(tmp_path, "app", timeout=180)
    assert_rows(
        stdout,
        rows,
        [
            "app",
            "app while the training prints 20,000 lines/s for N s",
            "watcher",
            "publishing a flood of 20,000 log lines/s",
            "app opening a session whose run.log is 10 MB",
        ],
    )
    assert rows[2]["data"]["watcher_cpu_share"] > 0 and "the app's" in rows[2]["ratio"]
    rounds = rows[3]["data"]["rounds"]
    assert [r["publishing"] for r in rounds] == [False, True, True, False], "side by side, in the same run"
    assert all(r["lines"] > 0 and r["cpu_share"] > 0 for r in rounds)
    assert all(r["journal_bytes"] > 0 and r["sink_cpu_s"] > 0 for r in rounds if r["publishing"])
    assert all(r["journal_bytes"] == 0 for r in rounds if not r["publishing"]), "not publishing writes no journal"
    flood = rows[1]["data"]
    assert set(flood["keys_s"]) == {"? opens help", "escape closes it", "p pauses", "p resumes"}
    assert flood["peak_rss_bytes"] > 0 and flood["cpu_share"] > 0


def test_ray_benchmark_prints_its_rows_beside_the_local_executor(tmp_path: Path) -> None:
    pytest.importorskip("ray.job_submission", reason="Ray is not installed here (pip install 'autoresearch[ray]')")
    stdout, rows = bench(tmp_path, "ray", timeout=240)
    assert_rows(
        stdout,
        rows,
        [
            "Ray executor",
            "Ray executor",
            "Ray executor",
            "Ray executor",
        ],
    )
    assert [row["data"]["at_once"] for row in rows] == [1, 1, 2, 2]
    assert all(row["data"]["ray_s"] > 0 and row["data"]["local_s"] > 0 for row in rows)


def test_sandbox_benchmark_prints_its_rows_beside_unsandboxed_runs(tmp_path: Path) -> None:
    from autoresearch.core.sandbox import unavailable_reason

    why = unavailable_reason()
    if why:
        pytest.skip(f"the sandbox cannot run here: {why}")
    stdout, rows = bench(tmp_path, "sandbox")
    assert_rows(stdout, rows, ["sandbox start-up per run", "sandboxed run overhead on a 1-minute run"])
    data = rows[0]["data"]
    assert len(data["start_plain_s"]) == len(data["start_sandboxed_s"]) == 3
    assert len(data["work_plain_s"]) == len(data["work_sandboxed_s"]) == 2


def test_pruning_prints_its_rows_beside_the_same_sessions_without_it(tmp_path: Path) -> None:
    stdout, rows = bench(tmp_path, "pruning", timeout=300)
    assert_rows(
        stdout,
        rows,
        [
            "pruning, hopeless workload",
            "pruning, hopeless workload",
            "pruning, warmdown workload",
            "pruning",
        ],
    )
    assert rows[0]["data"]["off_s"] > 0 and rows[0]["data"]["on_s"] > 0
    assert "x" in rows[0]["ratio"]
