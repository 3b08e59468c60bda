"""The analysis of a session: the engine's Markdown report, the metric progression, and `w` to save it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from autoresearch.core.errors import UserError
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Markdown
from textual.worker import Worker, WorkerState

from .session_data import SessionSnapshot, load_snapshot
from .widgets import BREAKPOINTS, PLOT_LEGEND, MetricPlot, Pane


@dataclass(frozen=True)
class AnalysisData:
    snapshot: SessionSnapshot
    markdown: str


class AnalysisScreen(Screen[None]):
    HORIZONTAL_BREAKPOINTS = BREAKPOINTS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("w", "write", "Write .md"),
        Binding("r", "reload", "Refresh"),
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(self, root: Path, standalone: bool = False) -> None:
        super().__init__()
        self.root = root
        self.standalone = standalone
        self.written: Path | None = None
        self.markdown = ""

    def compose(self) -> ComposeResult:
        yield MetricPlot(id="analysis-plot")
        with Pane(id="analysis-box"):
            yield Markdown("Analysing the session…", id="analysis")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#analysis-plot").border_title = "metric progression"
        self.query_one("#analysis-plot").border_subtitle = PLOT_LEGEND
        self.query_one("#analysis-box").border_title = "analysis"
        self.query_one("#analysis-box").focus()
        self.build()

    @work(thread=True, group="analysis", exclusive=True, exit_on_error=False)
    def build(self) -> AnalysisData:
        from autoresearch.core.analysis import build_analysis

        return AnalysisData(load_snapshot(self.root), build_analysis(self.root, now=self._now()))

    @work(thread=True, group="analysis-write", exclusive=True, exit_on_error=False)
    def write(self) -> Path:
        from autoresearch.core.analysis import write_analysis

        return write_analysis(self.root, now=self._now())

    def _now(self) -> datetime:
        """The app's clock (fixed in screenshots and snapshots), so 'written ...' is the same in every picture."""
        clock = getattr(self.app, "clock", time.time)
        return datetime.fromtimestamp(clock())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR:
            error = worker.error
            message = str(error) if isinstance(error, UserError) else f"internal error: {error!r}"
            if worker.group == "analysis":
                self.query_one(Markdown).update(f"**The analysis could not be built.** {message}")
            else:
                self.notify(message, title="Not written", severity="error", timeout=8)
            return
        if event.state != WorkerState.SUCCESS:
            return
        if worker.group == "analysis" and isinstance(worker.result, AnalysisData):
            data = worker.result
            config = data.snapshot.config
            self.markdown = data.markdown
            self.query_one(Markdown).update(data.markdown)
            self.query_one(MetricPlot).set_rows(
                list(enumerate(data.snapshot.rows, 1)), config.metric_name, config.higher_is_better
            )
            self.sub_title = config.tag
        elif worker.group == "analysis-write" and isinstance(worker.result, Path):
            self.written = worker.result
            self.notify(f"Wrote {worker.result.name}", timeout=5)

    def action_write(self) -> None:
        self.write()

    def action_reload(self) -> None:
        self.build()

    def action_back(self) -> None:
        if self.standalone:
            self.app.exit(0)
        else:
            self.dismiss(None)
