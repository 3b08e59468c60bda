"""A fixed, made-up session on disk, for the screenshots and the app's tests: same data every time."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoresearch.core.config import RESULTS_FILE, SessionConfig, save_config
from autoresearch.core.events import (
    Event,
    EventSink,
    ExperimentStarted,
    LogAppended,
    LoopStopped,
    PhaseChanged,
    ProposalReady,
    Resumed,
    RunStarted,
    SessionStarted,
)
from autoresearch.core.history import ExperimentMeta, History
from autoresearch.core.results import ResultRow, append_row, write_header

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from .run_screen import RunScreen

SAMPLE_NOW = 1_760_000_000.0
"""The clock the screens are given, so elapsed times come out the same in every picture."""

TRAIN_PY = """\
LEARNING_RATE = 0.02
BATCH_SIZE = 32
EPOCHS = 6
HIDDEN_UNITS = 8
WEIGHT_DECAY = 0.01


def main():
    print("val_loss: 0.1")


if __name__ == "__main__":
    main()
"""

# (status, metric, memory, duration, description, category, rationale, constant, old, new)
EXPERIMENTS: tuple[tuple[str, float, float, float, str, str, str, str, str, str], ...] = (
    ("baseline", 0.091204, 0.4, 31, "baseline", "other", "", "", "", ""),
    (
        "keep",
        0.084511,
        0.4,
        30,
        "raise LEARNING_RATE to 0.04",
        "hyperparams",
        "The loss still falls steeply at the end of the budget; a larger step should converge sooner.",
        "LEARNING_RATE",
        "0.02",
        "0.04",
    ),
    (
        "discard",
        0.088730,
        0.4,
        31,
        "lower BATCH_SIZE to 16",
        "hyperparams",
        "Smaller batches give noisier but more frequent updates within the same time.",
        "BATCH_SIZE",
        "32",
        "16",
    ),
    (
        "keep",
        0.079342,
        0.5,
        33,
        "widen HIDDEN_UNITS to 16",
        "architecture",
        "The model underfits: train and validation loss are close and both high.",
        "HIDDEN_UNITS",
        "8",
        "16",
    ),
    (
        "crash",
        0.0,
        0.0,
        4,
        "raise LEARNING_RATE to 0.4",
        "hyperparams",
        "A bolder step, to see where training becomes unstable.",
        "LEARNING_RATE",
        "0.04",
        "0.4",
    ),
    (
        "discard",
        0.081905,
        0.5,
        32,
        "drop WEIGHT_DECAY to 0",
        "regularization",
        "With more units the decay may hold the weights back.",
        "WEIGHT_DECAY",
        "0.01",
        "0",
    ),
    (
        "keep",
        0.074118,
        0.5,
        34,
        "more EPOCHS: 6 -> 9",
        "hyperparams",
        "The run ends well before the budget; more epochs fit in it.",
        "EPOCHS",
        "6",
        "9",
    ),
    (
        "discard",
        0.076952,
        0.6,
        35,
        "widen HIDDEN_UNITS to 32",
        "architecture",
        "Widening helped once; it may help again.",
        "HIDDEN_UNITS",
        "16",
        "32",
    ),
    (
        "keep",
        0.071507,
        0.5,
        33,
        "raise LEARNING_RATE to 0.05",
        "hyperparams",
        "0.04 helped; a little more, within the stable range found at #5.",
        "LEARNING_RATE",
        "0.04",
        "0.05",
    ),
    (
        "crash",
        0.0,
        0.0,
        120,
        "BATCH_SIZE 64 with EPOCHS 30 (timeout 2 min)",
        "hyperparams",
        "Larger batches and many more epochs, to use the whole budget.",
        "EPOCHS",
        "9",
        "30",
    ),
    (
        "discard",
        0.072880,
        0.5,
        33,
        "raise WEIGHT_DECAY to 0.02",
        "regularization",
        "A little more regularisation for the wider model.",
        "WEIGHT_DECAY",
        "0.01",
        "0.02",
    ),
)

LIVE_LOG = tuple(f"step {10 * i} epoch {i // 12} loss: {0.42 * 0.93**i + 0.07:.6f}" for i in range(1, 28))


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=sample", "-c", "user.email=sample@localhost", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def sample_config() -> SessionConfig:
    return SessionConfig(
        tag="mar23",
        script_path="train.py",
        metric_name="val_loss",
        time_budget_minutes=2,
        timeout_minutes=4,
        max_experiments=50,
        created_at="2025-03-23T21:04:00+01:00",
    )


def make_repo(root: Path) -> None:
    """A git repository holding train.py, committed, with nothing else."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(TRAIN_PY, encoding="utf-8")
    (root / "README.md").write_text("A tiny model.\n", encoding="utf-8")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "train.py", "README.md")
    _git(root, "commit", "-q", "-m", "train.py")


def make_sample_session(root: Path) -> list[Event]:
    """Write a mid-session repository at root; return the events that show experiment 12 running."""
    make_repo(root)
    config = sample_config()
    (root / ".gitignore").write_text("results.tsv\n.autoresearch.json\nrun.log\n.autoresearch/\n", encoding="utf-8")
    _git(root, "add", ".gitignore")
    _git(root, "commit", "-q", "-m", "autoresearch: ignore session files")
    _git(root, "checkout", "-q", "-b", config.branch)
    save_config(root, config)
    write_header(root / RESULTS_FILE, config.metric_name)
    history = History(root)
    history.ensure()
    for number, (status, metric, memory, duration, description, category, rationale, name, old, new) in enumerate(
        EXPERIMENTS, 1
    ):
        commit = f"{0xA1B2C3D + 7919 * number:07x}"[:7]
        diff = ""
        if name:
            diff = (
                "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n"
                f"@@ -1,5 +1,5 @@\n-{name} = {old}\n+{name} = {new}\n"
                " BATCH_SIZE = 32\n EPOCHS = 6\n HIDDEN_UNITS = 8\n"
            )
            history.save_diff(number, diff)
        tokens_in, tokens_out = (0, 0) if number == 1 else (1800 + 37 * number, 240 + 11 * number)
        history.save_meta(
            ExperimentMeta(
                number=number,
                commit=commit,
                kind="baseline" if status == "baseline" else "experiment",
                description=description,
                category=category,
                rationale=rationale,
                status=status,
                metric=None if status == "crash" else metric,
                memory_gb=memory,
                duration_s=duration,
                exit_code=1 if status == "crash" else 0,
                timed_out="timeout" in description,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cost_usd=round((tokens_in * 0.15 + tokens_out * 0.6) / 1e6, 6),
            )
        )
        log = [f"step {10 * i} epoch {i // 12} loss: {0.40 * 0.9**i + metric:.6f}" for i in range(1, 30)]
        if status == "crash":
            log = [*log[:3], "Traceback (most recent call last):", "FloatingPointError: loss diverged at step 40"]
        else:
            log += [f"training_seconds: {duration:.1f}", f"val_loss: {metric:.6f}"]
        path = history.log_path(number)
        path.write_text("\n".join(log) + "\n", encoding="utf-8")
        append_row(root / RESULTS_FILE, ResultRow(commit, metric, memory, duration, status, description))
    (root / ".autoresearch" / "ideas.txt").write_text("", encoding="utf-8")
    number = len(EXPERIMENTS) + 1
    return [
        SessionStarted(config.tag, config.branch, config.metric_name, config.metric_direction, number - 1, 50),
        ExperimentStarted(number, "experiment"),
        PhaseChanged("proposing", number),
        ProposalReady(
            number,
            "lower BATCH_SIZE to 24",
            "hyperparams",
            "Between 16 (worse) and 32: a smaller batch with the higher learning rate.",
            "",
            2240,
            371,
            0.000559,
        ),
        PhaseChanged("running", number),
        RunStarted(number, "c0ffee1", 4242, config.time_budget_s, config.timeout_s, SAMPLE_NOW - 83),
        LogAppended(number, LIVE_LOG),
    ]


def sample_worker_events(budget_s: float) -> list[Event]:
    """Three workers of the sample session, two running and one asking for its next idea."""
    from autoresearch.core.events import WorkerChanged, WorkerLog

    return [
        PhaseChanged("running", len(EXPERIMENTS)),
        WorkerChanged(1, "running", "lower BATCH_SIZE to 24", "0", SAMPLE_NOW - 83, budget_s),
        WorkerChanged(2, "confirming", "raise HIDDEN_UNITS to 12", "1", SAMPLE_NOW - 41, budget_s),
        WorkerChanged(3, "idle", "", "2", None, budget_s),
        WorkerLog(1, LIVE_LOG),
    ]


class IdleLoop:
    """Stands in for the loop in screenshots: it runs nothing and waits until told to stop."""

    def __init__(self, root: Path, sink: EventSink) -> None:
        self.root = root
        self.sink = sink
        self.phase = "running"
        self._stopped = threading.Event()
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def run(self) -> LoopStopped:
        self._stopped.wait()
        stopped = LoopStopped("stopped by the user", ok=True, experiments=len(EXPERIMENTS))
        self.sink(stopped)
        return stopped

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self.sink(Resumed())

    def stop(self) -> None:
        self._stopped.set()

    def skip(self, worker: int | None = None) -> None:
        pass

    def hold_worker(self, worker: int, held: bool) -> None:
        pass

    def stop_now(self) -> None:
        self._stopped.set()

    def queue_idea(self, text: str) -> None:
        History(self.root).queue_idea(text)


async def settle(pilot: Pilot[Any]) -> None:
    """Let the app's workers (not the loop's) finish and the screen repaint."""
    for _ in range(3):
        for worker in [w for w in pilot.app.workers if w.group != "loop"]:
            await worker.wait()
        await pilot.pause(0.2)


async def show_sample_run(pilot: Pilot[Any], events: list[Any]) -> RunScreen:
    """Feed the sample session's events to the run screen on show and paint them."""
    from .run_screen import RunScreen

    screen = pilot.app.screen
    assert isinstance(screen, RunScreen)
    await settle(pilot)
    for event in events:
        screen.buffer.put(event)
    screen.tick()
    await pilot.pause(0.2)
    return screen
