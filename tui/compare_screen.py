"""Two experiments side by side: what each changed and how each one's loss went."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from autoresearch.core.loss_curve import parse_loss
from autoresearch.core.results import ResultRow
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Sparkline, Static
from textual.worker import Worker, WorkerState

from .experiment_screen import diff_text, summary_text
from .session_data import ExperimentDetail, load_experiment
from .widgets import Pane, TextLine


def loss_caption(losses: list[float]) -> Text:
    if not losses:
        return Text("no loss printed", style="dim")
    return Text(f"loss {losses[0]:.4g} → {losses[-1]:.4g} (min {min(losses):.4g})", style="dim")


class CompareScreen(Screen[None]):
    """Experiment `left` beside `right`; [ and ] change the right-hand one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "back", "Back"),
        Binding("left_square_bracket", "step(-1)", "Other: previous", key_display="["),
        Binding("right_square_bracket", "step(1)", "Other: next", key_display="]"),
    ]

    def __init__(self, root: Path, left: int, right: int, rows: Mapping[int, ResultRow], metric_name: str) -> None:
        super().__init__()
        self.root = root
        self.numbers = [left, right]
        self.rows = dict(rows)
        self.metric_name = metric_name

    def compose(self) -> ComposeResult:
        with Horizontal(id="compare"):
            for side in ("left", "right"):
                with Vertical(classes="side", id=f"side-{side}"):
                    yield Static("Loading…", id=f"summary-{side}", classes="compare-summary")
                    yield TextLine("", id=f"curve-label-{side}")
                    yield Sparkline([], id=f"curve-{side}", classes="compare-curve")
                    with Pane(id=f"diff-{side}", classes="compare-diff"):
                        yield Static("", id=f"diff-text-{side}")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "compare"
        self.query_one("#diff-left").focus()
        for index in (0, 1):
            self.load(index)

    @work(thread=True, group="compare", exit_on_error=False)
    def load(self, index: int) -> tuple[int, ExperimentDetail]:
        number = self.numbers[index]
        return index, load_experiment(self.root, number, self.rows.get(number))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "compare" or event.state != WorkerState.SUCCESS:
            return
        index, detail = event.worker.result  # type: ignore[misc]
        if detail.number != self.numbers[index]:
            return
        side = ("left", "right")[index]
        mono = self.app.no_color
        self.query_one(f"#summary-{side}", Static).update(summary_text(detail, self.metric_name, True, mono))
        pane = self.query_one(f"#diff-{side}", Pane)
        pane.border_title = f"#{detail.number} diff"
        self.query_one(f"#diff-text-{side}", Static).update(
            diff_text(detail.diff) if detail.diff else "No change (the baseline runs the code as it is)."
        )
        losses = [loss for line in detail.log_lines if (loss := parse_loss(line)) is not None]
        self.query_one(f"#curve-label-{side}", TextLine).update(loss_caption(losses))
        self.query_one(f"#curve-{side}", Sparkline).data = losses

    def action_back(self) -> None:
        self.dismiss(None)

    def action_step(self, delta: int) -> None:
        numbers = sorted(self.rows)
        target = self.numbers[1] + delta
        if target == self.numbers[0]:
            target += delta
        if not numbers or target < numbers[0] or target > numbers[-1]:
            return
        self.numbers[1] = target
        self.query_one("#summary-right", Static).update("Loading…")
        self.load(1)
