"""The run screen's pieces: header, log tail, metric plot, sparkline and results table."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import cache
from typing import TYPE_CHECKING, ClassVar

from autoresearch.core.results import ResultRow
from autoresearch.core.sanitize import safe_line
from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.geometry import Size
from textual.message import Message
from textual.reactive import Reactive, reactive, var
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Input, Label, Log, Sparkline
from textual.widgets._footer import FooterKey
from textual.widgets.data_table import ColumnKey
from textual_plotext import PlotextPlot

from .state import RunState, best_so_far

if TYPE_CHECKING:
    from textual.screen import Screen

TWO_LINE_HEADER = 150
BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
"""Screens under 120 columns get the class -narrow, wider ones -wide."""

STATUS_RICH = {"baseline": "bold cyan", "keep": "bold green", "discard": "yellow", "crash": "bold red"}
STATUS_MONO = {"baseline": "bold", "keep": "bold", "discard": "", "crash": "bold reverse"}
"""With NO_COLOR the status words and marks carry the meaning; crash stands out in reverse video."""
MARKERS = {"baseline": "◆", "keep": "●", "discard": "○", "crash": "✕"}
PLOT_LEGEND = "● keep  ○ discard  ✕ crash  ◆ baseline  ••• best so far"
PLOT_COLORS = {"baseline": "cyan", "keep": "green", "discard": "orange", "crash": "red"}


def fmt_metric(value: float | None) -> str:
    if value is None:
        return "—"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:.6f}" if abs(value) < 100 else f"{value:.6g}"


def fmt_clock(seconds: float) -> str:
    if 0 < seconds < 10:
        return f"{seconds:.1f}s"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def fmt_tokens(tokens: int) -> str:
    if tokens >= 1_000_000:
        return f"{tokens / 1_000_000:.1f}M"
    if tokens >= 1_000:
        return f"{tokens / 1_000:.1f}k"
    return str(tokens)


def bar(fraction: float, width: int) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    full = round(fraction * width)
    return "█" * full + "░" * (width - full)


class TextLine(Widget):
    """Text that changes often without changing size: an update repaints it, never the screen's layout."""

    DEFAULT_CSS = """
    TextLine { height: 1; }
    """

    text: reactive[Text] = reactive(Text(""), layout=False)

    def __init__(self, text: str | Text = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.set_reactive(TextLine.text, Text(text) if isinstance(text, str) else text)

    def update(self, text: str | Text) -> None:
        self.text = Text(text) if isinstance(text, str) else text

    def render(self) -> Text:
        return self.text


class RunHeader(TextLine):
    """Tag, experiment N/max, phase, the run's elapsed time against its budget, best, baseline, cost."""

    DEFAULT_CSS = """
    RunHeader { height: 3; background: $panel; padding: 0 1; }
    RunHeader.-two-lines { height: 2; }
    """

    def on_resize(self) -> None:
        self.set_class(self.size.width >= TWO_LINE_HEADER, "-two-lines")

    @staticmethod
    def phase_label(state: RunState) -> str:
        if state.stopped is not None:
            return "STOPPED"
        if state.paused:
            return "PAUSED"
        label = "RESUMING" if state.phase == "paused" else state.phase.upper()
        if state.stop_requested:
            return f"{label} · stopping after this run"
        if state.pause_requested:
            return f"{label} · pausing after this run"
        return label

    @staticmethod
    def render_text(state: RunState, now: float, width: int) -> Text:
        cap = str(state.max_experiments) if state.max_experiments else "∞"
        number = state.number or state.done
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" autoresearch ", "reverse bold")
        text.append(f" {state.tag or '…'} ", "bold")
        text.append(f" #{number}/{cap} ")
        phase_style = "bold red" if state.stopped or state.needs_user else "bold yellow" if state.paused else "bold"
        text.append(f" {RunHeader.phase_label(state)} ", phase_style)
        direction = "↑" if state.higher_is_better else "↓"
        improvement = state.improvement
        stats = Text(no_wrap=True, overflow="ellipsis")
        stats.append(f" {state.metric_name} {direction} ", "dim")
        stats.append("best ")
        stats.append(fmt_metric(state.best), "bold green")
        best_number = state.best_number()
        if best_number is not None:
            stats.append(f" #{best_number}", "dim")
        stats.append("  base ")
        stats.append(fmt_metric(state.baseline), "cyan")
        if improvement is not None:
            # The metric's own change, signed as the analysis writes it (-12.3% on a loss is better).
            change = improvement if state.higher_is_better else -improvement
            sign = "+" if change >= 0 else "−"
            stats.append(f"  {sign}{abs(change):.2f}%", "bold green" if improvement > 0 else "bold")
        if state.tokens or state.cost_usd:
            stats.append(f"  tok {fmt_tokens(state.tokens)} ${state.cost_usd:.2f}", "dim")
        progress = Text(no_wrap=True, overflow="ellipsis")
        if state.workers:
            for worker in sorted(state.workers.values(), key=lambda w: w.worker):
                style = "reverse" if worker.worker == state.shown_worker else ""
                progress.append(f" w{worker.worker} ", style)
                if worker.started_at is not None and worker.budget_s > 0:
                    elapsed = max(0.0, now - worker.started_at)
                    over = elapsed > worker.budget_s
                    progress.append(bar(elapsed / worker.budget_s, 6), "red" if over else "green")
                    progress.append(f" {fmt_clock(elapsed)}")
                else:
                    progress.append(worker.state, "yellow" if worker.state == "held" else "dim")
        elif state.run_started_at is not None and state.budget_s > 0:
            elapsed = max(0.0, now - state.run_started_at)
            label = f" run {fmt_clock(elapsed)}/{fmt_clock(state.budget_s)} "
            bar_width = max(10, min(40, width - len(label) - 12))
            over = elapsed > state.budget_s
            progress.append(label)
            progress.append(bar(elapsed / state.budget_s, bar_width), "red" if over else "green")
            progress.append(f" {min(999, int(100 * elapsed / state.budget_s))}%")
            if over:
                progress.append(f" over budget (timeout {fmt_clock(state.timeout_s)})", "red")
        elif state.stopped is not None and state.rows:
            verdict = "finished" if state.stopped.ok else "stopped"
            progress.append(f" {verdict}: {len(state.rows)} experiments · a analysis · enter open", "dim")
        elif state.last_duration_s is not None:
            progress.append(f" last run {fmt_clock(state.last_duration_s)}", "dim")
        elif state.rows:
            progress.append(f" last run {fmt_clock(state.rows[-1][1].duration_s)}", "dim")
        else:
            progress.append(" no run yet", "dim")
        if width >= TWO_LINE_HEADER:
            return Text.assemble(text, " │", stats, "\n", progress)
        return Text("\n").join([text, stats, progress])


ShownKey = tuple[str, str, str, str, bool, str]
"""A key as the footer shows it: key, its display, description, action, enabled, tooltip."""


@cache
def widest_descriptions(screen: type[Screen[object]]) -> dict[str, int]:
    """The longest description each key of a screen can have."""
    widest: dict[str, int] = {}
    for binding in Binding.make_bindings(screen.BINDINGS):
        widest[binding.key] = max(widest.get(binding.key, 0), cell_len(binding.description))
    return widest


class KeysFooter(Footer):
    """Textual's footer, cheaper to keep current: the screen asks it to refresh on every focus change and
    key-state change, and Textual's footer then rebuilds all its keys. This one does nothing when what it
    shows is unchanged and relabels its keys in place when only their words or states changed. A key's
    words are padded to the longest it can show (Pause, Resume), so a relabel never moves the other keys
    and needs no new layout."""

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                widget.description = self.padded(widget.key, widget.description)
            yield widget

    def padded(self, key: str, description: str) -> str:
        if not description:
            return description
        return description + " " * (widest_descriptions(type(self.screen)).get(key, 0) - cell_len(description))

    def shown_keys(self, screen: Screen[object]) -> list[ShownKey] | None:
        """What compose() would show (one key per action, in order); None where it uses key groups."""
        by_action: dict[str, ShownKey] = {}
        for _, binding, enabled, tooltip in screen.active_bindings.values():
            if not binding.show:
                continue
            if binding.group is not None:
                return None
            display = self.app.get_key_display(binding)
            description = self.padded(binding.key, binding.description)
            by_action.setdefault(binding.action, (binding.key, display, description, binding.action, enabled, tooltip))
        return list(by_action.values())

    def bindings_changed(self, screen: Screen[object]) -> None:
        keys = list(self.query_children(FooterKey))
        shown = self.shown_keys(screen) if self._bindings_ready and screen is self.screen else None
        if shown is None or len(shown) != len(keys) or len(keys) != len(self.children) or not screen.app.app_focus:
            super().bindings_changed(screen)
            return
        for widget, (key, display, description, action, enabled, tooltip) in zip(keys, shown, strict=True):
            widget.action = action
            if (widget.key, widget.key_display, widget.description) != (key, display, description):
                resized = cell_len(display + description) != cell_len(widget.key_display + widget.description)
                widget.key, widget.key_display, widget.description = key, display, description
                widget.refresh(layout=resized)
            if widget.has_class("-disabled") == enabled:
                widget._disabled = not enabled
                widget.set_class(not enabled, "-disabled")
            if widget.tooltip != (tooltip or None):
                widget.tooltip = tooltip or None


LIST_KEYS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("g", "scroll_top", "Top", show=False),
    Binding("G", "scroll_bottom", "Bottom", show=False),
]
"""j/k/g/G as lazygit and k9s users move in a list; arrows, Home/End and PgUp/PgDn keep working."""

SCROLL_KEYS: list[BindingType] = [
    Binding("j", "scroll_down", "Down", show=False),
    Binding("k", "scroll_up", "Up", show=False),
    Binding("g", "scroll_home", "Top", show=False),
    Binding("G", "scroll_end", "Bottom", show=False),
]
"""The same keys in a pane that scrolls rather than moving a cursor."""


class Pane(VerticalScroll):
    """A scrolling pane with j/k/g/G that z can zoom to the whole screen (Textual's scroll containers refuse to)."""

    ALLOW_MAXIMIZE = True
    BINDINGS: ClassVar[list[BindingType]] = SCROLL_KEYS


class PaneLog(Log):
    BINDINGS: ClassVar[list[BindingType]] = SCROLL_KEYS


class FilterInput(Input):
    """The `/` box over the results: filters as it is typed; enter keeps the filter, escape clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close(False)", "Clear filter")]

    class Closed(Message):
        def __init__(self, keep: bool) -> None:
            super().__init__()
            self.keep = keep

    def action_close(self, keep: bool) -> None:
        self.post_message(self.Closed(keep))

    async def action_submit(self) -> None:
        self.post_message(self.Closed(bool(self.value.strip())))


class TailLog(Log):
    """Textual's Log, following its end until the user scrolls up, resized or not.

    Textual's Log follows only while the view sits at the end, which a resize breaks for good (a shorter pane
    leaves the view above the new end): this one keeps following as a state that only the user's scrolling
    changes. A line that only lengthens it also repaints only it and its scrollbar, where Textual lays out the
    whole screen again on any change of a widget's virtual size, every tick while a log fills up."""

    BINDINGS: ClassVar[list[BindingType]] = SCROLL_KEYS

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)
    following: var[bool] = var(True)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.following = self.is_vertical_scroll_end

    def on_resize(self) -> None:
        if self.following:
            self.call_after_refresh(self.follow)

    def follow(self) -> None:
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.following = True

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> TailLog:
        following = self.following if scroll_end is None else scroll_end
        if following and not self.is_vertical_scroll_end:
            self.follow()  # a resize left the view above the end: back to it, then Textual's own path follows
        lines = list(lines)
        full = self.max_lines is not None and self.line_count + len(lines) > self.max_lines
        super().write_lines(lines, scroll_end=following)
        if full:
            # Textual repaints only the rows below the old end, which the oldest lines' removal left where the
            # view already was: the view would freeze on what it showed when the log first filled up.
            self.refresh()
        return self

    def watch_virtual_size(self, size: Size) -> None:
        # Showing or hiding the scrollbar still lays the screen out (show_vertical_scrollbar does).
        self._scroll_update(size)

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        # Textual measures new lines on a thread worker: a pool job, a Worker and its state messages per write.
        if lines:
            self._update_maximum_width(updates, max(cell_len(self._process_line(line)) for line in lines))


class LogTail(Vertical):
    """The tail of run.log: follows the end until the user scrolls up, then counts new lines."""

    DEFAULT_CSS = """
    LogTail { height: 1fr; }
    LogTail > Log { height: 1fr; }
    LogTail > #new-lines { dock: bottom; display: none; width: 100%; background: $warning; color: $text; }
    LogTail > #new-lines.-visible { display: block; }
    """

    new_lines: var[int] = var(0)

    def __init__(self, max_lines: int = 2000, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.max_lines = max_lines

    def compose(self) -> ComposeResult:
        yield TailLog(max_lines=self.max_lines, highlight=False, id="log")
        yield Label("", id="new-lines")

    @property
    def log_widget(self) -> TailLog:
        return self.query_one(TailLog)

    def on_mount(self) -> None:
        self.watch(self.log_widget, "following", self._following, init=False)

    def _following(self, following: bool) -> None:
        if following:
            self.new_lines = 0

    def watch_new_lines(self, count: int) -> None:
        label = self.query_one("#new-lines", Label)
        label.set_class(count > 0, "-visible")
        label.update(f" ↓ {count} new line{'s' if count != 1 else ''} — press End to follow")

    def write_lines(self, lines: Sequence[str], dropped: int = 0) -> None:
        log = self.log_widget
        following = log.following
        batch: list[str] = []
        if dropped:
            batch.append(f"… {dropped} lines skipped to keep up …")
        batch.extend(safe_line(line) for line in lines)
        if not batch:
            return
        log.write_lines(batch)
        if not following:
            self.new_lines += len(batch)

    def follow(self) -> None:
        self.log_widget.follow()
        self.new_lines = 0

    @property
    def lines(self) -> Sequence[str]:
        return self.log_widget.lines


def even_ticks(bottom: float, top: float, count: int) -> tuple[list[float], list[str]]:
    """At most `count` ticks on round values an equal step apart (1, 2 or 5 times a power of ten), each label
    the exact value it marks: plotext's own ticks step unevenly on a short plot."""
    rough = (top - bottom) / max(1, count)
    power = 10 ** math.floor(math.log10(rough)) if rough > 0 else 1.0
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    first = math.ceil(bottom / step)
    values = [i * step for i in range(first, math.floor(top / step) + 1)]
    decimals = max(0, -math.floor(math.log10(step)))
    return values, [f"{v:.{decimals}f}" for v in values]


class MetricPlot(PlotextPlot):
    """The metric per experiment: keep, discard and crash with their own marks, best-so-far, baseline."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.metric_name = "metric"
        self.higher_is_better = False
        self.rows: list[tuple[int, ResultRow]] = []

    def set_rows(self, rows: Iterable[tuple[int, ResultRow]], metric_name: str, higher_is_better: bool) -> None:
        self.rows = list(rows)
        self.metric_name = metric_name
        self.higher_is_better = higher_is_better
        self._draw()
        self.refresh()

    def on_mount(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        direction = "higher" if self.higher_is_better else "lower"
        plt.title(f"{self.metric_name} per experiment ({direction} is better)")
        if self.size.height >= 12:
            plt.xlabel("experiment")
        measured = [(n, r) for n, r in self.rows if r.has_metric]
        if not measured and not self.rows:
            plt.xlim(0, 10)
            return
        values = [r.metric for _, r in measured] or [0.0]
        low, high = min(values), max(values)
        pad = (high - low) * 0.1 or abs(high) * 0.05 or 1.0
        crash_y = low - 1.5 * pad
        crashed = any(r.status == "crash" for _, r in self.rows)
        bottom, top = low - (2 * pad if crashed else pad), high + pad
        plt.ylim(bottom, top)
        plt.yticks(*even_ticks(bottom, top, max(4, (self.size.height - 3) // 2)))
        mono = self.app.no_color
        last = max(n for n, _ in self.rows)
        plt.xlim(0.5, last + 0.5)
        step = max(1, -(-last // 8))
        plt.xticks(list(range(1, last + 1, step)))
        baseline = next((r.metric for _, r in self.rows if r.status == "baseline"), None)
        if baseline is not None:
            plt.hline(baseline, "default" if mono else "cyan")
        steps = best_so_far(self.rows, self.higher_is_better)
        if steps:
            xs: list[float] = []
            ys: list[float] = []
            for i, (number, value) in enumerate(steps):
                if i:
                    xs.append(number)
                    ys.append(ys[-1])
                xs.append(number)
                ys.append(value)
            xs.append(last)
            ys.append(ys[-1])
            plt.plot(xs, ys, marker="dot", color="default" if mono else "green")
        for status in ("baseline", "keep", "discard", "crash"):
            points = [(n, r) for n, r in self.rows if r.status == status]
            if not points:
                continue
            ys_status = [r.metric if r.has_metric else crash_y for _, r in points]
            plt.scatter(
                [n for n, _ in points],
                ys_status,
                marker=MARKERS[status],
                color="default" if mono else PLOT_COLORS[status],
            )


class RunSpark(Vertical):
    """A sparkline of the running experiment's loss (or of the best-so-far when the log prints none), and
    beside it the loss curve of the best experiment, to see at a glance whether this run is doing better."""

    DEFAULT_CSS = """
    RunSpark { height: 2; }
    RunSpark > TextLine { width: 100%; }
    RunSpark > Horizontal { height: 1fr; }
    RunSpark Sparkline { height: 1fr; width: 1fr; }
    RunSpark #best-spark { margin-left: 1; display: none; }
    RunSpark.-best #best-spark { display: block; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.caption = ""
        self.best_caption = ""

    def compose(self) -> ComposeResult:
        yield TextLine("", id="spark-label")
        with Horizontal():
            yield Sparkline([], id="run-spark")
            yield Sparkline([], id="best-spark")

    def show(self, label: str, data: list[float]) -> None:
        caption = {"loss": "run loss", "best": "best so far"}.get(label, label)
        if data:
            caption += f" {data[0]:.4g} → {data[-1]:.4g}"
        self.caption = caption
        self._label()
        self.query_one("#run-spark", Sparkline).data = data

    def show_best(self, number: int | None, data: list[float]) -> None:
        """The best experiment's loss curve; none when it printed no loss."""
        self.best_caption = f"best #{number} {data[0]:.4g} → {data[-1]:.4g}" if number and data else ""
        self.set_class(bool(self.best_caption), "-best")
        self.query_one("#best-spark", Sparkline).data = data
        self._label()

    def _label(self) -> None:
        text = self.caption + (f"  │  {self.best_caption}" if self.best_caption else "")
        self.query_one("#spark-label", TextLine).update(Text(text, style="dim"))


def status_style(status: str, mono: bool = False) -> str:
    return (STATUS_MONO if mono else STATUS_RICH).get(status, "")


def status_text(status: str, mono: bool = False) -> Text:
    return Text(f"{MARKERS.get(status, ' ')} {status}", style=status_style(status, mono))


class ResultsTable(DataTable[object]):
    """The results, one row per experiment, added as they arrive."""

    COLUMNS = ("#", "commit", "metric", "mem", "time", "status", "description")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Open", show=True), *LIST_KEYS]

    SORTS = ("#", "metric", "time", "status")
    """The columns `S` sorts by, in turn; a click on any of them sorts by it too."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self.all_rows: list[tuple[int, ResultRow]] = []
        self.filter_text = ""
        self.sort_column = "#"
        self.higher_is_better = False

    def on_mount(self) -> None:
        for name in self.COLUMNS:
            self.add_column(name, key=name)

    def matches(self, number: int, row: ResultRow) -> bool:
        """A filter word matches the status, the description, the commit or the number; all words must."""
        haystack = f"#{number} {row.status} {row.commit} {row.description}".lower()
        return all(word in haystack for word in self.filter_text.lower().split())

    def sort_key(self, item: tuple[int, ResultRow]) -> tuple[float, int]:
        number, row = item
        if self.sort_column == "metric":
            crashed = row.status == "crash"
            value = row.metric if not self.higher_is_better else -row.metric
            return (float("inf") if crashed else value, number)
        if self.sort_column == "time":
            return (-row.duration_s, number)
        if self.sort_column == "status":
            return (("keep", "baseline", "discard", "crash").index(row.status) if row.status in MARKERS else 9, number)
        return (0.0, number)

    def show_rows(self) -> None:
        """Rebuild the rows the filter and the sort select, keeping the highlighted experiment."""
        selected = self.selected_number()
        self.clear()
        for number, row in sorted((r for r in self.all_rows if self.matches(*r)), key=self.sort_key):
            self._add_row(number, row)
        label = f"results · {self.sort_column}" + (f" · /{self.filter_text}" if self.filter_text else "")
        self.border_title = label if (self.filter_text or self.sort_column != "#") else "results"
        if selected is not None and str(selected) in {key.value for key in self.rows}:
            self.move_cursor(row=self.get_row_index(str(selected)), animate=False)

    def set_filter(self, text: str) -> None:
        self.filter_text = " ".join(text.split())
        self.show_rows()

    def next_sort(self, column: str | None = None) -> str:
        order = self.SORTS
        self.sort_column = column or order[(order.index(self.sort_column) + 1) % len(order)]
        self.show_rows()
        return self.sort_column

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        self.next_sort(column if column in self.SORTS else "#")

    def set_metric_name(self, name: str) -> None:
        column = self.columns.get(ColumnKey("metric"))
        if column is not None:
            column.label = Text(name)
            column.content_width = max(column.content_width, len(name))
            self.refresh()

    def add_result(self, number: int, row: ResultRow) -> None:
        self.all_rows.append((number, row))
        if self.filter_text or self.sort_column != "#":
            self.show_rows()
            return
        following = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        self._add_row(number, row)
        if following:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def _add_row(self, number: int, row: ResultRow) -> None:
        metric = "—" if row.status == "crash" else fmt_metric(row.metric)
        self.add_row(
            Text(str(number), style="dim"),
            row.commit[:7] or "-",
            Text(metric, style="bold" if row.status in ("keep", "baseline") else ""),
            f"{row.memory_gb:.1f}G",
            fmt_clock(row.duration_s),
            status_text(row.status, self.app.no_color),
            safe_line(row.description),
            key=str(number),
        )

    def add_results(self, rows: Iterable[tuple[int, ResultRow]]) -> None:
        for number, row in rows:
            self.add_result(number, row)

    def replace_results(self, rows: Iterable[tuple[int, ResultRow]]) -> None:
        """All the rows anew (a watcher's next run: what is on disk now), filter, sort and highlight kept."""
        self.all_rows = list(rows)
        self.show_rows()

    def selected_number(self) -> int | None:
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return int(key) if key is not None else None
