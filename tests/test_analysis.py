from __future__ import annotations

import re
from pathlib import Path

import pytest
from autoresearch.core.analysis import (
    build_analysis,
    crash_reason,
    load_session,
    progression_chart,
    recommendations,
    write_analysis,
)
from autoresearch.core.config import SessionConfig, save_config
from autoresearch.core.history import ExperimentMeta, History

SECTIONS = ["Summary", "What Worked", "What Didn't Work", "Crashes", "Metric Progression", "Recommendations"]

ROWS = [
    ("a000001", "1.000000", "baseline", "baseline"),
    ("b000002", "0.995000", "keep", "LEARNING_RATE 0.02 -> 0.04"),
    ("c000003", "1.003000", "discard", "LEARNING_RATE 0.04 -> 0.08"),
    ("d000004", "0.000000", "crash", "double model width"),
    ("e000005", "1.001000", "discard", "use Adam with momentum 0.95"),
    ("f000006", "0.995100", "discard", "WARMUP_RATIO 0.0 -> 0.1"),
    ("g000007", "1.010000", "discard", "cosine schedule"),
    ("h000008", "0.990000", "keep", "reduce depth to 6 layers"),
    ("i000009", "0.999000", "discard", "DROPOUT 0.1 -> 0.2"),
    ("j000010", "0.998000", "discard", "DROPOUT 0.1 -> 0.05"),
    ("k000011", "0.000000", "crash", "switch to GeLU activation"),
]

OOM_LOG = """step 00010 loss 3.2
Traceback (most recent call last):
  File "train.py", line 88, in <module>
    loss.backward()
\x1b[31mtorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\x1b[0m

"""


def make_session(
    root: Path,
    rows: list[tuple[str, str, str, str]],
    *,
    direction: str = "lower",
    metric: str = "val_bpb",
    karpathy: bool = False,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    save_config(
        root,
        SessionConfig(
            tag="nov26",
            script_path="train.py",
            metric_name=metric,
            metric_direction=direction,
            timeout_minutes=10,
        ),
    )
    if karpathy:
        head = f"commit\t{metric}\tmemory_gb\tstatus\tdescription\n"
        lines = [f"{c}\t{m}\t44.0\t{s}\t{d}\n" for c, m, s, d in rows]
    else:
        head = f"commit\t{metric}\tmemory_gb\tduration_s\tstatus\tdescription\n"
        lines = [f"{c}\t{m}\t44.0\t{0 if s == 'crash' else 300}\t{s}\t{d}\n" for c, m, s, d in rows]
    (root / "results.tsv").write_text(head + "".join(lines), encoding="utf-8")
    return root


def full_session(root: Path) -> Path:
    make_session(root, ROWS)
    history = History(root)
    history.save_meta(
        ExperimentMeta(
            number=2,
            commit="b000002" + "f" * 33,
            category="hyperparams",
            rationale="A higher learning rate converges faster inside a 5 minute budget.",
            tokens_in=1500,
            tokens_out=300,
            cost_usd=0.0123,
        )
    )
    # The model said "data"; the description alone would say architecture: the stored one wins.
    history.save_meta(ExperimentMeta(number=8, commit="h000008", category="data", tokens_in=1000, tokens_out=200))
    history.save_meta(ExperimentMeta(number=4, commit="d000004", status="crash"))
    history.log_path(4).write_text(OOM_LOG, encoding="utf-8")
    history.save_meta(ExperimentMeta(number=11, commit="k000011", status="crash", timed_out=True))
    return root


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section {title}"
    return match.group(1).strip()


def test_writes_the_file_with_every_section_in_order(tmp_path: Path) -> None:
    root = full_session(tmp_path)
    path = write_analysis(root)
    assert path == root / "autoresearch-nov26-analysis.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Autoresearch analysis: nov26\n")
    assert re.findall(r"^## (.+)$", text, re.M) == SECTIONS
    fresh = build_analysis(root).splitlines()
    assert text.splitlines()[2].startswith("Branch `autoresearch/nov26` · script `train.py` · metric `val_bpb`")
    assert text.splitlines()[3:] == fresh[3:]  # the same content; line 3 holds the time it was written
    assert not list(root.glob("*.tmp"))


def test_summary(tmp_path: Path) -> None:
    body = section(build_analysis(full_session(tmp_path)), "Summary")
    assert "- Experiments: 11 of 50 (baseline 1, keep 2, discard 6, crash 2 (1 timed out))" in body
    assert "- Keep rate: 2 of 10 changes (20%)" in body
    assert "- Baseline -> best: 1.000000 -> 0.990000 (#8, commit `h000008`)" in body
    assert "- Improvement: -0.010000 (-1.00%), better" in body
    assert "- Training time: wall clock not recorded, 5m 0s per run on average" in body
    assert "- Tokens: 3,000 tokens (2,500 in, 500 out) · $0.0123" in body
    assert "- Experiments since the last improvement: 3" in body


def test_what_worked_groups_keeps_by_category_with_deltas(tmp_path: Path) -> None:
    body = section(build_analysis(full_session(tmp_path)), "What Worked")
    assert "### hyperparams (1 kept, -0.005000 in all)" in body
    assert "### data (1 kept, -0.005000 in all)" in body  # meta.json's category, not the guess
    assert "- #2 `b000002` LEARNING_RATE 0.02 -> 0.04: 1.000000 -> 0.995000, -0.005000 (-0.50%)" in body
    assert "  - Why: A higher learning rate converges faster inside a 5 minute budget." in body
    assert "- #8 `h000008` reduce depth to 6 layers: 0.995000 -> 0.990000, -0.005000 (-0.50%)" in body
    assert "discard" not in body and "#3" not in body


def test_what_did_not_work_groups_discards_and_finds_patterns(tmp_path: Path) -> None:
    body = section(build_analysis(full_session(tmp_path)), "What Didn't Work")
    assert "### optimizer (3 discarded)" in body
    assert "### regularization (2 discarded)" in body
    assert "- #5 `e000005` use Adam with momentum 0.95: 1.001000, +0.006000 (+0.60%) vs best 0.995000" in body
    assert "- #9 `i000009` DROPOUT 0.1 -> 0.2: 0.999000, +0.009000 (+0.91%) vs best 0.990000" in body
    patterns = body.split("### Patterns", 1)[1]
    assert "- All 3 optimizer changes were discarded." in patterns
    assert "- Both regularization changes were discarded." in patterns
    assert "- DROPOUT was tried in both directions (#9, #10) and never kept" in patterns
    assert "- 1 discard missed the best by under 0.2%: #6" in patterns
    assert "#4" not in body  # crashes are not discards


def test_repeated_changes_are_a_pattern(tmp_path: Path) -> None:
    rows = [
        ("a1", "1.000000", "baseline", "baseline"),
        ("b2", "1.100000", "discard", "add dropout"),
        ("c3", "1.200000", "discard", "Add  dropout"),
    ]
    body = section(build_analysis(make_session(tmp_path, rows)), "What Didn't Work")
    assert "- The same change was tried 2 times (#2, #3): add dropout." in body


def test_crashes_show_the_last_error_line(tmp_path: Path) -> None:
    body = section(build_analysis(full_session(tmp_path)), "Crashes")
    assert body.splitlines()[:2] == [
        "- #4 `d000004` double model width: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        "- #11 `k000011` switch to GeLU activation: timed out after 10 min",
    ]


def test_crash_without_a_log(tmp_path: Path) -> None:
    rows = [("a1", "1.000000", "baseline", "baseline"), ("b2", "0.000000", "crash", "bigger model")]
    body = section(build_analysis(make_session(tmp_path, rows)), "Crashes")
    assert body == "- #2 `b2` bigger model: no log kept"


def test_crash_reason_prefers_the_error_over_the_last_line(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("loading\nValueError: shapes (3,) and (4,) differ\nwandb: Waiting for W&B process\n\n")
    assert crash_reason(log) == "ValueError: shapes (3,) and (4,) differ"
    log.write_text("step 1\nstep 2\n")
    assert crash_reason(log) == "step 2"
    log.write_text('Traceback (most recent call last):\n  File "x.py", line 1\n')
    assert crash_reason(log) is None
    assert crash_reason(tmp_path / "missing.log") is None


def test_metric_progression_chart(tmp_path: Path) -> None:
    body = section(build_analysis(full_session(tmp_path)), "Metric Progression")
    chart = body.split("```")[1].strip("\n").splitlines()
    plot = [line.split("|", 1)[1] if "|" in line else "" for line in chart[:12]]
    columns = {i: "".join(row[i] if i < len(row) else " " for row in plot) for i in range(11)}
    assert "B" in columns[0]
    assert "*" in columns[1] and "*" in columns[7]
    assert "o" in columns[2] and "o" in columns[8]
    # the best-so-far line runs at the level of the last kept result
    assert columns[7].index("*") == len(plot) - 1
    assert columns[8][-1] == "-" and columns[10][-1] == "-"
    crash_lane = next(line for line in chart if line.strip().startswith("crash"))
    lane = crash_lane[crash_lane.index("crash") + 7 :]
    assert [i for i, c in enumerate(lane) if c == "x"] == [3, 10]
    legend = chart[-1]
    for mark in ("B baseline", "* keep", "o discard", "x crash", "- best so far"):
        assert mark in legend
    assert "lower is better" in legend
    assert "Best so far: #1 1.000000 -> #2 0.995000 -> #8 0.990000" in body


def test_chart_direction_and_outliers(tmp_path: Path) -> None:
    rows = [
        ("a1", "0.900000", "baseline", "baseline"),
        ("b2", "0.950000", "keep", "wider MLP"),
        ("c3", "0.100000", "discard", "broken init"),  # far below everything else: drawn off the chart
        ("d4", "0.960000", "keep", "batch size 64 -> 128"),
    ]
    session = load_session(make_session(tmp_path, rows, direction="higher", metric="accuracy"))
    lines = progression_chart(session).splitlines()
    assert lines[0].split("|")[1][3] == "*"  # the best, highest value is on the top row
    assert "v" in lines[11].split("|")[1]
    assert "higher is better" in lines[-1]
    assert session.best is not None and session.best.number == 4


def test_recommendations_are_ordered_by_risk(tmp_path: Path) -> None:
    recs = recommendations(load_session(full_session(tmp_path)))
    risks = [r.split(":", 1)[0] for r in recs]
    order = {"Low risk": 0, "Medium risk": 1, "Higher risk": 2}
    assert risks == sorted(risks, key=order.__getitem__)
    assert set(risks) == set(order)
    text = "\n".join(recs)
    # 0.08 was tried and discarded, so the next step proposes a value between
    assert "0.08 was tried in #3 without gain, so try a step between: LEARNING_RATE 0.04 -> 0.06." in text
    assert 'Its rationale: "A higher learning rate converges faster inside a 5 minute budget."' in text
    assert "Medium risk: switch away from optimizer: 3 discarded, 0 kept" in text
    assert "Medium risk: leave DROPOUT where it is" in text
    assert "Higher risk: revisit #4 `d000004` double model width, which crashed" in text
    assert "smaller batch to fit in memory" in text


def test_recommendations_go_further_when_nothing_beyond_was_tried(tmp_path: Path) -> None:
    rows = [("a1", "1.000000", "baseline", "baseline"), ("b2", "0.990000", "keep", "N_LAYER 4 -> 6")]
    recs = recommendations(load_session(make_session(tmp_path, rows)))
    assert recs[0].startswith("Low risk: #2 `b2` N_LAYER 4 -> 6 helped by -0.010000 (-1.00%)")
    assert recs[0].endswith("try going further in the same direction: N_LAYER 6 -> 9.")


def test_recommendations_text_replaces_the_computed_one(tmp_path: Path) -> None:
    root = full_session(tmp_path)
    text = build_analysis(root, recommendations_text="1. Ask the model.\n")
    recs = section(text, "Recommendations")
    assert recs.startswith("_Written by the model (the model), not computed from the rows:_\n\n1. Ask the model.")
    assert "_Computed from the rows:_\n\n1. Low risk:" in recs
    # A reply that is not recommendations is not pasted: the computed ones stand alone.
    for reply in ("Description: abandon", "train.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE", "Sure!"):
        assert section(build_analysis(root, recommendations_text=reply), "Recommendations").startswith("1. Low risk:")
    assert section(text, "Summary").startswith("- Experiments: 11")


def test_karpathy_results_file(tmp_path: Path) -> None:
    rows = [
        ("a1b2c3d", "0.997900", "keep", "baseline"),
        ("b2c3d4e", "0.993200", "keep", "increase LR to 0.04"),
        ("c3d4e5f", "1.005000", "discard", "switch to GeLU activation"),
        ("d4e5f6g", "0.000000", "crash", "double the width (OOM)"),
    ]
    text = build_analysis(make_session(tmp_path, rows, karpathy=True))
    summary = section(text, "Summary")
    assert "- Baseline -> best: 0.997900 (first result; no baseline row) -> 0.993200" in summary
    assert "- Training time: not recorded (results.tsv has no duration_s column)" in summary
    assert "### hyperparams (1 kept" in section(text, "What Worked")
    assert "### architecture (1 discarded)" in section(text, "What Didn't Work")
    assert "smaller batch to fit in memory" in section(text, "Recommendations")


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], "run `autoresearch run`; the first run measures the baseline"),
        ([("a1", "1.000000", "baseline", "baseline")], "only the baseline has run so far"),
        (
            [("a1", "0.000000", "crash", "baseline"), ("b2", "0.000000", "crash", "fix")],
            "make the baseline run first: `python train.py` has not printed a line matching `^val_bpb:`",
        ),
    ],
)
def test_early_sessions(tmp_path: Path, rows: list[tuple[str, str, str, str]], expected: str) -> None:
    text = build_analysis(make_session(tmp_path, rows))
    assert re.findall(r"^## (.+)$", text, re.M) == SECTIONS
    assert expected in section(text, "Recommendations")
    if not any(r[1] != "0.000000" for r in rows):
        assert "No experiment produced a metric yet." in section(text, "Metric Progression")


def test_recommendations_say_only_what_the_rows_say(tmp_path: Path) -> None:
    rows = [
        ("a1", "1.000000", "baseline", "baseline"),
        ("b2", "0.990000", "keep", "BLOCK 32 -> 64"),
        ("c3", "0.980000", "keep", "BLOCK 64 -> 128"),
        ("d4", "0.000000", "crash", "WIDTH 4 -> 8"),
        ("e5", "0.975000", "keep", "fix: WIDTH 4 -> 8 with a smaller batch"),
        ("f6", "0.975500", "discard", "DROPOUT 0.1 -> 0.2"),
        ("g7", "0.975800", "discard", "DROPOUT 0.1 -> 0.05"),
        ("h8", "0.975000", "discard", "N_EMBD 64 -> 128 (no effect: same val_bpb as #5)"),
    ]
    text = "\n".join(recommendations(load_session(make_session(tmp_path, rows))))
    # #3 was kept: 128 is not "tried without gain", and #2's step is stale once #3 moved BLOCK again.
    assert "without gain" not in text and "#2 `b2`" not in text
    assert "BLOCK 64 -> 128 helped" in text
    # #4 crashed, but the fix #5 made it run: nothing to revisit.
    assert "revisit" not in text
    # DROPOUT went both ways: leave it, and do not also suggest retrying one of its discards.
    assert "leave DROPOUT where it is" in text
    assert "#6 `f6`" not in text.replace("(#6, #7)", "") and "retry" not in text
    # A change with no effect is never suggested again.
    assert "#8" not in text


def test_every_summary_sentence_is_what_the_rows_and_the_history_say(tmp_path: Path) -> None:
    rows = [
        ("a000001", "2.000000", "baseline", "baseline (2 runs, noise 0, no seed varies)"),
        ("b000002", "1.900000", "keep", "LR 0.01 -> 0.02 (clear: gain +0.1, noise 0, no seed varies)"),
        ("c000003", "1.899000", "keep", "WD 0.1 -> 0.2 (clear: gain +0.001, noise 0, no seed varies)"),
        ("d000004", "1.899500", "discard", "WIDTH 4 -> 8 (worse: gain -0.0005, noise 0, no seed varies)"),
    ]
    root = make_session(tmp_path, rows)
    history = History(root)
    # Two workers ran 117 s of wall clock in all, though the rows' durations add up to more.
    spans = {1: ("00:00", "00:50", 1), 2: ("00:50", "01:50", 1), 3: ("00:51", "01:51", 2), 4: ("00:52", "01:57", 2)}
    for number, (start, end, worker) in spans.items():
        meta = ExperimentMeta(number=number, commit=rows[number - 1][0], status=rows[number - 1][2])
        meta.started_at, meta.finished_at = f"2026-12-07T10:{start}+00:00", f"2026-12-07T10:{end}+00:00"
        meta.extra["worker"] = worker
        history.save_meta(meta)
    text = build_analysis(root)
    body = section(text, "Summary")
    # The best change is the largest gain, not the last keep.
    assert "- Best change: #2 `b000002` LR 0.01 -> 0.02" in body and "(the largest gain, -0.100000 (-5.00%))" in body
    assert "- Training time: 1m 57s of wall clock for the session, 5m 0s per run on average" in body
    assert "- Wall clock per worker (first start to last finish): worker 1: 1m 50s; worker 2: 1m 6s" in body
    # At noise 0 the runs repeat exactly: noise decides nothing, and #4 already ran on the best.
    assert "noise may decide" not in text and "retry it on top of the current best" not in text


def test_a_recommended_next_step_stays_inside_the_knobs_range(tmp_path: Path) -> None:
    # BATCH_SIZE starts at 32: the offline search gives it 8 to 128, so 91 -> 259 is never advised.
    rows = [
        ("a000001", "2.000000", "baseline", "baseline"),
        ("b000002", "1.900000", "keep", "BATCH_SIZE 32 -> 91"),
        ("c000003", "1.800000", "keep", "LR 0.01 -> 0.02"),
    ]
    advice = "\n".join(recommendations(load_session(make_session(tmp_path, rows))))
    assert "BATCH_SIZE 91 -> 259" not in advice
    assert "try going further in the same direction: BATCH_SIZE 91 -> 128." in advice
    assert "try going further in the same direction: LR 0.02 -> 0.04." in advice
