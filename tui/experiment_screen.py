"""One experiment: what it changed (coloured diff), why, what it measured, and its log."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from autoresearch.core.results import ResultRow
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Log, Static
from textual.worker import Worker, WorkerState

from .session_data import ExperimentDetail, load_experiment
from .widgets import BREAKPOINTS, fmt_clock, fmt_metric, fmt_tokens, status_style, status_text


def diff_text(diff: str) -> Text:
    """A unified diff with added lines green, removed lines red, hunks cyan; the +/- stay for NO_COLOR."""
    text = Text(no_wrap=True)
    for line in diff.splitlines():
        if line.startswith(("diff --git", "index ", "--- ")):
            continue
        if line.startswith("+++ "):
            name = line[4:].removeprefix("b/")
            text.append(f"{name}\n", "bold reverse")
            continue
        if line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        else:
            style = ""
        text.append(line + "\n", style)
    return text


def summary_text(detail: ExperimentDetail, metric_name: str, compact: bool = False, mono: bool = False) -> Text:
    """Status, description, category, metric, memory, duration, tokens, cost and rationale."""
    row, meta = detail.row, detail.meta
    status = row.status if row else (meta.status if meta else "")
    description = (meta.description if meta and meta.description else row.description if row else "") or "—"
    metric = row.metric if row else meta.metric if meta else None
    memory = row.memory_gb if row else meta.memory_gb if meta else 0.0
    duration = row.duration_s if row else meta.duration_s if meta else 0.0
    commit = (row.commit if row else "") or (meta.commit if meta else "")
    text = Text()
    text.append(f"#{detail.number} ", "bold")
    text.append_text(status_text(status or "?", mono))
    if commit:
        text.append(f"  {commit[:7]}", "dim")
    if meta is not None:
        text.append(f"  [{meta.category or 'other'}]", "italic")
    text.append(f"\n{description}\n", "bold")
    fields: list[tuple[str, str]] = [
        (metric_name, "—" if status == "crash" or metric is None else fmt_metric(metric)),
        ("memory", f"{memory:.1f} GB"),
        ("duration", fmt_clock(duration)),
    ]
    if meta is not None and (meta.tokens_in or meta.tokens_out or not compact):
        tokens = meta.tokens_in + meta.tokens_out
        fields.append(("tokens", f"{fmt_tokens(tokens)} (in {meta.tokens_in}, out {meta.tokens_out})"))
        fields.append(("cost", f"${meta.cost_usd:.4f}"))
    if meta is not None:
        if meta.timed_out or (meta.exit_code not in (None, 0)):
            fields.append(("exit", "timed out" if meta.timed_out else str(meta.exit_code)))
        if meta.note:
            fields.append(("note", meta.note))
    if detail.curves:
        fields.append(("pruned", "\n" + detail.curves))
    metric_style = status_style(status, mono)
    if compact:
        for i, (name, value) in enumerate(fields):
            text.append(" · " if i else "", "dim")
            text.append(f"{name} ", "dim")
            text.append(value, metric_style if name == metric_name else "")
        text.append("\n")
    else:
        width = max(len(name) for name, _ in fields)
        for name, value in fields:
            text.append(f"{name:<{width}}  ", "dim")
            text.append(value + "\n", metric_style if name == metric_name else "")
        text.append("\nrationale\n", "dim")
    rationale = meta.rationale.strip() if meta else ""
    text.append(rationale or "No rationale was recorded for this experiment.", "" if rationale else "dim")
    return text


class ExperimentScreen(Screen[None]):
    """Opened with enter on a results row; works for kept, discarded and crashed experiments alike."""

    HORIZONTAL_BREAKPOINTS = BREAKPOINTS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "back", "Back"),
        Binding("left_square_bracket", "step(-1)", "Previous", key_display="["),
        Binding("right_square_bracket", "step(1)", "Next", key_display="]"),
        Binding("d", "show('#diff-box')", "Diff"),
        Binding("l", "show('#exp-log')", "Log"),
        Binding("z", "zoom", "Zoom"),
    ]

    def __init__(self, root: Path, number: int, rows: Mapping[int, ResultRow], metric_name: str) -> None:
        super().__init__()
        self.root = root
        self.number = number
        self.rows = dict(rows)
        self.metric_name = metric_name
        self.detail: ExperimentDetail | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="experiment"):
            with VerticalScroll(id="summary-box"):
                yield Static("Loading…", id="summary")
            with Vertical(id="panes"):
                with VerticalScroll(id="diff-box"):
                    yield Static("", id="diff-text")
                yield Log(max_lines=2000, highlight=False, id="exp-log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#summary-box").border_title = f"experiment #{self.number}"
        self.query_one("#diff-box").border_title = "diff"
        self.query_one("#exp-log").border_title = "log"
        self.query_one("#diff-box").focus()
        self.load()

    @work(thread=True, group="experiment", exclusive=True, exit_on_error=False)
    def load(self) -> ExperimentDetail:
        return load_experiment(self.root, self.number, self.rows.get(self.number))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "experiment":
            return
        if event.state == WorkerState.SUCCESS and isinstance(event.worker.result, ExperimentDetail):
            self.show(event.worker.result)
        elif event.state == WorkerState.ERROR:
            self.query_one("#summary", Static).update(f"Could not read experiment #{self.number}.")

    def show(self, detail: ExperimentDetail) -> None:
        self.detail = detail
        compact = self.has_class("-narrow")
        self.query_one("#summary", Static).update(summary_text(detail, self.metric_name, compact, self.app.no_color))
        self.query_one("#summary-box").border_title = f"experiment #{detail.number}"
        diff = detail.diff or "No change was recorded (the baseline runs the code as it is)."
        self.query_one("#diff-text", Static).update(diff_text(diff) if detail.diff else diff)
        log = self.query_one("#exp-log", Log)
        log.clear()
        log.write_lines(detail.log_lines or [detail.log_note or "The log is empty."])
        self.call_after_refresh(log.scroll_end, animate=False)
        self.sub_title = f"experiment #{detail.number}"

    def action_back(self) -> None:
        self.dismiss(None)

    def action_step(self, delta: int) -> None:
        numbers = sorted(self.rows)
        target = self.number + delta
        if not numbers or target < numbers[0] or target > numbers[-1]:
            return
        self.number = target
        self.query_one("#summary", Static).update("Loading…")
        self.load()

    def action_show(self, selector: str) -> None:
        self.query_one(selector).focus()

    def action_zoom(self) -> None:
        if self.maximized is not None:
            self.minimize()
            return
        focused = self.focused
        pane = next(
            (
                w
                for w in (focused, *(focused.ancestors if focused else ()))
                if w and w.id in ("diff-box", "exp-log", "summary-box")
            ),
            None,
        )
        if pane is not None:
            self.maximize(pane, container=False)
