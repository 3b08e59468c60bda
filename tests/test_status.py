from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pytest
from autoresearch.core.config import SessionConfig, save_config
from autoresearch.core.errors import ConfigError, UserError
from autoresearch.core.history import ExperimentMeta, History
from autoresearch.core.status import USAGE_CACHE, build_status, meta_summaries, render_status, usage_totals

SKILL_HEADER = "commit\t{m}\tmemory_gb\tduration_s\tstatus\tdescription\n"
KARPATHY_HEADER = "commit\t{m}\tmemory_gb\tstatus\tdescription\n"

# A session in the skill's format, lower is better.
SKILL_ROWS = [
    ("a000001", "1.000000", "44.0", "300", "baseline", "baseline"),
    ("b000002", "0.995000", "44.0", "301", "keep", "increase LR to 0.04"),
    ("c000003", "0.000000", "0.0", "0", "crash", "double model width (OOM)"),
    ("d000004", "1.005000", "44.0", "300", "discard", "switch to GeLU activation"),
    ("e000005", "0.990000", "44.1", "299", "keep", "reduce depth to 6 layers"),
]


def make_session(
    root: Path,
    rows: Sequence[tuple[str, ...]],
    *,
    metric: str = "val_bpb",
    direction: str = "lower",
    karpathy: bool = False,
    max_experiments: int = 50,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cfg = SessionConfig(
        tag="nov26",
        script_path="train.py",
        metric_name=metric,
        metric_direction=direction,
        max_experiments=max_experiments,
    )
    save_config(root, cfg)
    head = (KARPATHY_HEADER if karpathy else SKILL_HEADER).format(m=metric)
    (root / "results.tsv").write_text(head + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return root


def test_dashboard_lines_for_a_known_table(tmp_path: Path) -> None:
    root = make_session(tmp_path, SKILL_ROWS)
    text = render_status(build_status(root))
    assert text.splitlines() == [
        "=" * 64,
        "AUTORESEARCH · nov26 · train.py",
        "=" * 64,
        "EXPERIMENTS  [##..................] 5/50",
        "METRIC       val_bpb (lower)",
        "BEST         0.990000 (exp #5, commit e000005)",
        "BASELINE     1.000000",
        "IMPROVEMENT  -0.010000 (-1.00%) better",
        "RECENT EXPERIMENTS",
        "  #5 e000005 0.990000 keep     reduce depth to 6 layers",
        "  #4 d000004 1.005000 discard  switch to GeLU activation",
        "  #3 c000003 0.000000 crash    double model width (OOM)",
        "  #2 b000002 0.995000 keep     increase LR to 0.04",
        "  #1 a000001 1.000000 baseline baseline",
        "STATUS BREAKDOWN",
        "  baseline: 1 (20%)",
        "  keep:     2 (40%)",
        "  discard:  1 (20%)",
        "  crash:    1 (20%)",
        "JUDGING      gains over 2σ of noise, noise not measured yet",
        "=" * 64,
    ]


def test_json_data(tmp_path: Path) -> None:
    root = make_session(tmp_path, SKILL_ROWS)
    data = build_status(root)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert set(data) == {
        "tag",
        "branch",
        "script_path",
        "metric_name",
        "metric_direction",
        "results_format",
        "experiments",
        "best",
        "baseline",
        "improvement",
        "experiments_since_best",
        "recent",
        "breakdown",
        "duration_s",
        "usage",
        "judging",
        "workers",
    }
    assert data["workers"] == {"count": 1, "devices": [], "now": [], "per_worker": {}}
    assert data["experiments"] == {"count": 5, "max": 50, "remaining": 45}
    assert data["best"]["number"] == 5 and data["best"]["commit"] == "e000005"
    assert data["baseline"]["metric"] == 1.0 and data["baseline"]["inferred"] is False
    assert data["improvement"] == {"delta": -0.01, "percent": -1.0, "better": True}
    assert data["breakdown"]["keep"] == {"count": 2, "percent": 40.0}
    assert [r["number"] for r in data["recent"]] == [5, 4, 3, 2, 1]
    assert data["recent"][2]["metric"] is None  # a crash has no metric
    assert data["duration_s"] == 1200
    assert data["results_format"] == "skill"
    assert data["usage"]["tokens"] == 0


def test_higher_is_better(tmp_path: Path) -> None:
    rows = [
        ("a000001", "0.900000", "1.0", "60", "baseline", "baseline"),
        ("b000002", "0.930000", "1.0", "60", "keep", "wider MLP"),
        ("c000003", "0.910000", "1.0", "60", "discard", "LR 0.1 -> 0.05"),
        ("d000004", "0.950000", "1.0", "60", "keep", "batch size 64 -> 128"),
    ]
    root = make_session(tmp_path, rows, metric="accuracy", direction="higher")
    data = build_status(root)
    assert data["best"]["number"] == 4
    assert data["improvement"]["better"] is True
    assert data["improvement"]["delta"] == pytest.approx(0.05)
    lines = render_status(data).splitlines()
    assert "METRIC       accuracy (higher)" in lines
    assert "BEST         0.950000 (exp #4, commit d000004)" in lines
    assert "IMPROVEMENT  +0.050000 (+5.56%) better" in lines

    # The same numbers read as lower-is-better: the baseline stays the best.
    root2 = make_session(tmp_path / "lower", rows, metric="accuracy", direction="lower")
    data2 = build_status(root2)
    assert data2["best"]["number"] == 1
    assert data2["improvement"]["better"] is False
    assert "IMPROVEMENT  +0.000000 (+0.00%) no change yet" in render_status(data2).splitlines()


def test_karpathy_results_file(tmp_path: Path) -> None:
    rows = [
        ("a1b2c3d", "0.997900", "44.0", "keep", "baseline"),
        ("b2c3d4e", "0.993200", "44.2", "keep", "increase LR to 0.04"),
        ("c3d4e5f", "1.005000", "44.0", "discard", "switch to GeLU activation"),
        ("d4e5f6g", "0.000000", "0.0", "crash", "double the width (OOM)"),
    ]
    root = make_session(tmp_path, rows, karpathy=True)
    data = build_status(root)
    assert data["results_format"] == "karpathy"
    assert data["duration_s"] is None
    assert data["baseline"]["number"] == 1 and data["baseline"]["inferred"] is True
    lines = render_status(data).splitlines()
    assert "BEST         0.993200 (exp #2, commit b2c3d4e)" in lines
    assert "BASELINE     0.997900 (exp #1, first result)" in lines
    assert "IMPROVEMENT  -0.004700 (-0.47%) better" in lines
    assert "  #4 d4e5f6g 0.000000 crash    double the width (OOM)" in lines
    assert not any(line.startswith("  baseline:") for line in lines)


def test_no_rows_yet(tmp_path: Path) -> None:
    root = make_session(tmp_path, [])
    data = build_status(root)
    assert data["best"] is None and data["baseline"] is None and data["improvement"] is None
    lines = render_status(data).splitlines()
    assert lines[3:] == [
        "EXPERIMENTS  [....................] 0/50",
        "METRIC       val_bpb (lower)",
        "BEST         -",
        "BASELINE     -",
        "IMPROVEMENT  -",
        "RECENT EXPERIMENTS",
        "  (no experiments yet)",
        "STATUS BREAKDOWN",
        "  (no experiments yet)",
        "JUDGING      gains over 2σ of noise, noise not measured yet",
        "=" * 64,
    ]


def test_only_a_baseline(tmp_path: Path) -> None:
    root = make_session(tmp_path, SKILL_ROWS[:1])
    lines = render_status(build_status(root)).splitlines()
    assert "BEST         1.000000 (exp #1, commit a000001)" in lines
    assert "BASELINE     1.000000" in lines
    assert "IMPROVEMENT  +0.000000 (+0.00%) no change yet" in lines
    assert "  baseline: 1 (100%)" in lines


def test_only_crashes(tmp_path: Path) -> None:
    rows = [
        ("a000001", "0.000000", "0.0", "0", "crash", "baseline"),
        ("b000002", "0.000000", "0.0", "0", "crash", "fix the import"),
    ]
    data = build_status(make_session(tmp_path, rows))
    assert data["best"] is None and data["baseline"] is None
    lines = render_status(data).splitlines()
    assert "BEST         -" in lines and "IMPROVEMENT  -" in lines
    assert "  crash:    2 (100%)" in lines
    assert "EXPERIMENTS  [#...................] 2/50" in lines


def test_no_baseline_row_in_the_skill_format(tmp_path: Path) -> None:
    data = build_status(make_session(tmp_path, SKILL_ROWS[1:]))
    assert data["baseline"]["number"] == 1 and data["baseline"]["inferred"] is True
    assert data["baseline"]["metric"] == 0.995
    assert data["best"]["number"] == 4


def test_no_cap_and_a_full_bar(tmp_path: Path) -> None:
    data = build_status(make_session(tmp_path, SKILL_ROWS, max_experiments=0))
    assert data["experiments"] == {"count": 5, "max": 0, "remaining": None}
    assert "EXPERIMENTS  5 (no cap)" in render_status(data).splitlines()
    data = build_status(make_session(tmp_path / "capped", SKILL_ROWS, max_experiments=4))
    assert "EXPERIMENTS  [####################] 5/4" in render_status(data).splitlines()


def test_recent_is_the_last_ten_newest_first(tmp_path: Path) -> None:
    rows = [SKILL_ROWS[0]] + [(f"f{i:06d}", "1.100000", "1.0", "10", "discard", f"try {i}") for i in range(2, 16)]
    data = build_status(make_session(tmp_path, rows))
    assert [r["number"] for r in data["recent"]] == list(range(15, 5, -1))
    lines = render_status(data).splitlines()
    assert "  #15 f000015 1.100000 discard  try 15" in lines
    assert "   #6 f000006 1.100000 discard  try 6" in lines


def test_tokens_and_cost_are_summed(tmp_path: Path) -> None:
    root = make_session(tmp_path, SKILL_ROWS)
    history = History(root)
    history.save_meta(ExperimentMeta(number=2, tokens_in=1200, tokens_out=300, cost_usd=0.0125))
    history.save_meta(ExperimentMeta(number=4, tokens_in=800, tokens_out=200, cost_usd=0.0075))
    history.save_meta(ExperimentMeta(number=6, kind="skipped", tokens_in=500, tokens_out=0))
    data = build_status(root)
    assert data["usage"] == {
        "tokens_in": 2500,
        "tokens_out": 500,
        "tokens": 3000,
        "cost_usd": 0.02,
        "experiments_with_usage": 3,
    }
    lines = render_status(data).splitlines()
    assert lines[-2] == "TOKENS       3,000 tokens (2,500 in, 500 out) · $0.0200"
    assert lines[-1] == "=" * 64


def test_no_tokens_line_without_usage(tmp_path: Path) -> None:
    root = make_session(tmp_path, SKILL_ROWS)
    History(root).save_meta(ExperimentMeta(number=2))
    assert "TOKENS" not in render_status(build_status(root))


def _write_metas(root: Path, count: int, tokens_in: int, age_s: float) -> None:
    folder = History(root).experiments_dir
    past = time.time() - age_s
    for n in range(1, count + 1):
        path = folder / f"{n:04d}" / "meta.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(ExperimentMeta(number=n, tokens_in=tokens_in, cost_usd=0.001))))
        os.utime(path, (past, past))


def test_usage_cache_follows_changed_files(tmp_path: Path) -> None:
    root = make_session(tmp_path, SKILL_ROWS)
    _write_metas(root, 60, tokens_in=10, age_s=60)
    assert usage_totals(meta_summaries(root))["tokens_in"] == 600
    cache = History(root).dir / USAGE_CACHE
    assert len(json.loads(cache.read_text())) == 60

    path = History(root).experiments_dir / "0007" / "meta.json"
    path.write_text(json.dumps(asdict(ExperimentMeta(number=7, tokens_in=1000))))
    assert usage_totals(meta_summaries(root))["tokens_in"] == 590 + 1000  # changed just now: read again, not cached
    past = time.time() - 30
    os.utime(path, (past, past))
    assert usage_totals(meta_summaries(root))["tokens_in"] == 1590
    assert usage_totals(meta_summaries(root))["cost_usd"] == pytest.approx(0.059)

    cache.write_text("{not json")
    assert usage_totals(meta_summaries(root))["tokens_in"] == 1590


def test_workers_counted_from_the_usage_cache(tmp_path: Path) -> None:
    rows = [(f"{n:07x}", "1.000000", "1.0", "60", "keep" if n % 3 == 0 else "discard", f"#{n}") for n in range(60)]
    root = make_session(tmp_path, rows)
    folder = History(root).experiments_dir
    past = time.time() - 60
    for n in range(1, 61):
        path = folder / f"{n:04d}" / "meta.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(ExperimentMeta(number=n, tokens_in=5, extra={"worker": n % 2}))))
        os.utime(path, (past, past))
    cache = History(root).dir / USAGE_CACHE
    # A cache written before it held the worker: read again, not taken for one without a worker.
    stats = {f"{n:04d}": os.stat(folder / f"{n:04d}" / "meta.json") for n in range(1, 61)}
    cache.write_text(json.dumps({k: [st.st_ino, st.st_size, st.st_mtime_ns, 5, 0, 0.0] for k, st in stats.items()}))
    expected = {
        str(w): {
            "experiments": sum(1 for n in range(1, 61) if n % 2 == w),
            "keeps": sum(1 for n in range(1, 61) if n % 2 == w and (n - 1) % 3 == 0),
        }
        for w in (0, 1)
    }
    assert build_status(root)["workers"]["per_worker"] == expected
    assert {entry[6] for entry in json.loads(cache.read_text()).values()} == {0, 1}
    # Later calls take each experiment's worker from the cache, without reading the 60 files again.
    entries = json.loads(cache.read_text())
    cache.write_text(json.dumps({name: [*entry[:6], 7] for name, entry in entries.items()}))
    assert build_status(root)["workers"]["per_worker"] == {"7": {"experiments": 60, "keeps": 20}}
    assert build_status(root)["usage"]["tokens_in"] == 300


def test_status_of_ten_thousand_rows_with_a_usage_cache(tmp_path: Path) -> None:
    rows = [("a000000", "1.000000", "1.0", "60", "baseline", "baseline")]
    statuses = ["keep", "discard", "discard", "crash"]
    for i in range(1, 10_000):
        status = statuses[i % 4]
        metric = "0.000000" if status == "crash" else f"{1 - i * 1e-5:.6f}"
        rows.append((f"{i:07x}", metric, "1.0", "60", status, f"LEARNING_RATE 0.02 -> 0.04 try {i}"))
    root = make_session(tmp_path, rows, max_experiments=0)
    _write_metas(root, 2_000, tokens_in=100, age_s=60)
    script = (
        "import time; t = time.perf_counter(); from pathlib import Path; "
        "from autoresearch.core.status import build_status, render_status; "
        "out = render_status(build_status(Path('.'))); print(time.perf_counter() - t); print(out)"
    )
    subprocess.run([sys.executable, "-c", script], cwd=root, check=True, capture_output=True)  # fills the cache
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], cwd=root, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    inside = float(done.stdout.splitlines()[0])
    assert "EXPERIMENTS  10000 (no cap)" in done.stdout
    assert "TOKENS       200,000 tokens (200,000 in, 0 out) · $2.0000" in done.stdout
    # Its speed is measured by benchmarks/cli_startup.py, not asserted here (the machine is shared).
    print(f"status of 10,000 rows: {inside:.3f} s in process, {elapsed:.3f} s whole")


def test_missing_files_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="autoresearch setup"):
        build_status(tmp_path)
    root = make_session(tmp_path / "s", [])
    (root / "results.tsv").unlink()
    with pytest.raises(UserError, match=r"results\.tsv is missing"):
        build_status(root)


def test_status_says_how_rows_were_judged(tmp_path: Path) -> None:
    rows = [
        ("a000001", "1.000000", "0.1", "10", "baseline", "baseline (2 runs, noise 0.002)"),
        ("b000002", "0.990000", "0.1", "10", "keep", "LR 0.01 -> 0.02 (confirmed 2/2: gain +0.01 = 3.5σ, noise 0.002)"),
        ("c000003", "1.000000", "0.1", "10", "discard", "N_EMBD 64 -> 128 (no effect: same val_bpb as #2)"),
        ("d000004", "0.980000", "0.1", "95", "discard", "BATCH 16 -> 32 (over budget: 95 s for a 60 s budget)"),
        ("e000005", "0.000000", "0.0", "120", "crash", "WIDTH 4 -> 8 (timed out after 2 min)"),
        ("f000006", "0.991000", "0.1", "10", "discard", "DROPOUT 0.1 -> 0.2 (within noise: gain -0.001, noise 0.002)"),
    ]
    root = make_session(tmp_path, rows)
    History(root).dir.mkdir(parents=True, exist_ok=True)
    (History(root).dir / "noise.json").write_text(json.dumps({"judging": "noise", "sigma": 0.002, "df": 3}))
    data = build_status(root)
    assert data["judging"] == {
        "rule": "noise",
        "noise_sigmas": 2.0,
        "min_gain": 0.0,
        "noise": 0.002,
        "noise_df": 3,
        "confirmed": 1,
        "within_noise": 1,
        "no_effect": 1,
        "over_budget": 1,
        "timeouts": 1,
        "machine_slower": 0,
        "remeasured": 0,
    }
    line = next(ln for ln in render_status(data).splitlines() if ln.startswith("JUDGING"))
    assert line == (
        "JUDGING      gains over 2σ of noise, noise 0.002 (3 repeat runs); 1 confirmed, 1 within noise, "
        "1 no effect, 1 over budget, 1 timed out"
    )
