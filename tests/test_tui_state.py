"""What the run screen folds from events, and the buffer that keeps a flood of log lines bounded."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading

from autoresearch.core.events import (
    LogAppended,
    LoopStopped,
    Paused,
    PhaseChanged,
    ProposalReady,
    ResultRecorded,
    Resumed,
    RunFinished,
    RunStarted,
    SessionStarted,
)
from autoresearch.core.results import ResultRow
from autoresearch.tui.state import (
    MAX_LOSS_POINTS,
    EventBuffer,
    RunState,
    best_so_far,
    improvement_pct,
    parse_loss,
)


def row(status: str, metric: float) -> ResultRow:
    return ResultRow("abc1234", metric, 0.5, 30, status, f"{status} {metric}")


def test_parse_loss_reads_training_loss_but_not_the_validation_metric() -> None:
    assert parse_loss("step 10 epoch 0 loss: 0.4606") == 0.4606
    assert parse_loss("iter 3 | loss=2.5e-1 | lr 0.1") == 0.25
    assert parse_loss("train_loss 1.5") == 1.5
    assert parse_loss("val_loss: 0.07") is None
    assert parse_loss("no numbers here") is None
    assert parse_loss("Loss went down") is None


def test_improvement_respects_the_direction() -> None:
    assert improvement_pct(1.0, 0.75, higher_is_better=False) == 25.0
    assert improvement_pct(0.5, 0.625, higher_is_better=True) == 25.0
    assert improvement_pct(0.5, 0.375, higher_is_better=True) == -25.0
    assert improvement_pct(None, 0.4, higher_is_better=True) is None
    assert improvement_pct(0.0, 0.4, higher_is_better=True) is None


def test_best_so_far_only_steps_on_baseline_and_kept_results() -> None:
    rows = list(enumerate([row("baseline", 1.0), row("discard", 0.5), row("keep", 0.9), row("crash", 0.0)], 1))
    assert best_so_far(rows, higher_is_better=False) == [(1, 1.0), (3, 0.9)]


def test_buffer_merges_log_batches_and_keeps_only_the_last_lines() -> None:
    buffer = EventBuffer(max_lines=100)
    buffer.put(RunStarted(2, "abc", 1, 60, 120, 0.0))
    for i in range(50):
        buffer.put(LogAppended(2, tuple(f"line {i}.{j}" for j in range(10))))
    buffer.put(LogAppended(3, ("other",), dropped=4))
    events = buffer.drain()
    assert [type(e).__name__ for e in events] == ["RunStarted", "LogAppended", "LogAppended"]
    merged = events[1]
    assert isinstance(merged, LogAppended)
    assert len(merged.lines) == 100
    assert merged.lines[-1] == "line 49.9"
    assert merged.dropped == 400
    assert buffer.drain() == []


def test_buffer_is_safe_to_fill_from_another_thread() -> None:
    buffer = EventBuffer(max_lines=1000)

    def flood() -> None:
        for i in range(2000):
            buffer.put(LogAppended(1, (f"l{i}",)))

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for t in threads:
        t.start()
    seen = 0
    dropped = 0
    while any(t.is_alive() for t in threads):
        for event in buffer.drain():
            assert isinstance(event, LogAppended)
            assert len(event.lines) <= 1000
            seen += len(event.lines)
            dropped += event.dropped
    for t in threads:
        t.join()
    for event in buffer.drain():
        assert isinstance(event, LogAppended)
        seen += len(event.lines)
        dropped += event.dropped
    assert seen + dropped == 8000


def test_state_folds_a_session() -> None:
    state = RunState()
    state.apply(SessionStarted("nov26", "autoresearch/nov26", "val_loss", "lower", 0, 20))
    assert (state.tag, state.metric_name, state.max_experiments, state.higher_is_better) == (
        "nov26",
        "val_loss",
        20,
        False,
    )
    state.apply(PhaseChanged("running", 1))
    assert state.run_active
    state.apply(RunStarted(1, "abc1234", 42, 60, 120, 1000.0))
    state.apply(LogAppended(1, ("step 1 loss: 2.0", "step 2 loss: 1.5", "noise")))
    assert state.sparkline_data() == ("loss", [2.0, 1.5])
    state.apply(RunFinished(1, 0, 30.0, 0.5, False, False))
    assert state.run_started_at is None
    changed = state.apply(ResultRecorded(1, row("baseline", 1.0), best=1.0, baseline=1.0, tokens=0, cost_usd=0))
    assert {"table", "plot", "header"} <= changed
    state.apply(ProposalReady(2, "lr up", "hyperparams", "why", "", 100, 20, 0.01))
    assert state.tokens == 120
    state.apply(ResultRecorded(2, row("keep", 0.8), best=0.8, baseline=1.0, tokens=500, cost_usd=0.05))
    assert state.tokens == 500 and state.cost_usd == 0.05
    assert state.improvement is not None and round(state.improvement, 6) == 20.0
    assert state.best_number() == 2
    state.losses.clear()
    assert state.sparkline_data() == ("best", [1.0, 0.8])
    state.apply(Paused())
    assert state.paused and state.phase == "paused" and not state.run_active
    state.apply(Resumed())
    assert not state.paused
    state.apply(LoopStopped("reached max_experiments (20)", ok=True))
    assert state.stopped is not None and not state.run_active


def test_a_long_log_batch_keeps_its_last_losses_in_order() -> None:
    state = RunState()
    state.apply(LogAppended(1, ("step 0 loss: 9.0",)))
    lines = tuple(f"step {i} loss: {i}.5" if i % 3 else f"eval {i}" for i in range(1, 1001))
    assert state.apply(LogAppended(1, lines)) == {"spark"}
    expected = [float(f"{i}.5") for i in range(1, 1001) if i % 3][-MAX_LOSS_POINTS:]
    assert list(state.losses) == expected
    state.apply(LogAppended(1, ("step 1001 loss: 0.25", "noise")))
    assert list(state.losses) == [*expected[1:], 0.25]
    assert state.apply(LogAppended(1, ("no loss here",))) == set()


def test_a_reply_sent_back_shows_as_the_activity_line() -> None:
    from autoresearch.core.events import ReplySentBack

    state = RunState()
    changed = state.apply(ReplySentBack(5, 1, "block 1's SEARCH matches nothing in train.py"))
    assert "activity" in changed
    assert state.activity == "#5 reply 1 not usable: block 1's SEARCH matches nothing in train.py; asking again"


def test_importing_the_tui_package_loads_no_ui_library() -> None:
    code = (
        "import sys, autoresearch.tui\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'plotext')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_plot_ticks_step_evenly_on_round_values_each_labelled_with_its_value() -> None:
    from autoresearch.tui.widgets import even_ticks

    for bottom, top, count in ((0.0129, 0.0793, 4), (0.0129, 0.0793, 7), (2.31, 2.97, 5), (-1.0, 1.0, 2)):
        values, labels = even_ticks(bottom, top, count)
        assert 2 <= len(values) <= count + 1
        steps = {round(b - a, 12) for a, b in itertools.pairwise(values)}
        assert len(steps) == 1  # one step between every pair of ticks
        assert all(bottom <= v <= top for v in values)
        assert [float(label) for label in labels] == [round(v, 12) for v in values]


def test_a_finished_sessions_header_says_it_finished_and_signs_the_gain_as_the_analysis() -> None:
    from autoresearch.tui.widgets import RunHeader

    state = RunState(tag="demo", metric_name="val_loss")
    state.set_results(
        [
            ResultRow("a" * 40, 0.072, 0.0, 1.0, "baseline", "baseline"),
            ResultRow("b" * 40, 0.020, 0.0, 1.0, "keep", "LEARNING_RATE 0.02 -> 0.1"),
        ]
    )
    state.stopped = LoopStopped("reached max_experiments (2)", ok=True, experiments=2)
    header = RunHeader.render_text(state, 0.0, 100).plain
    assert "finished: 2 experiments" in header and "no run yet" not in header
    assert "−72.22%" in header  # a lower loss is a negative change, as the analysis writes it
