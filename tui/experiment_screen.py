"""One experiment: what it changed (coloured diff), why, what it measured, and its log."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

from autoresearch.core.history import History
from autoresearch.core.loss_curve import parse_loss
from autoresearch.core.results import ResultRow
from rich.text import Text
from textual import work
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Log, Sparkline, Static
from textual.worker import Worker, WorkerState

from .session_data import ExperimentDetail, load_experiment
from .state import best_so_far
from .widgets import (
    BREAKPOINTS,
    Pane,
    PaneLog,
    TextLine,
    fmt_clock,
    fmt_metric,
    fmt_tokens,
    status_style,
    status_text,
)


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


def try_again_idea(description: str, agent: str) -> str:
    """The idea that runs a discarded experiment again on the current best: its own change for the offline
    agent (`NAME 0.02 -> 0.04` becomes `NAME = 0.04`), its description for a model."""
    change = re.match(r"^([A-Za-z_][\w.]*) \S+ -> (\S+)", description)
    if agent == "mutate" and change:
        return f"{change.group(1)} = {change.group(2)}"
    return f"try again on the current best: {description}"


def pager_command() -> list[str]:
    """$PAGER as the user set it, else less (colours kept), else more."""
    pager = os.environ.get("PAGER", "").strip()
    if pager:
        return shlex.split(pager)
    return ["less", "-R"] if shutil.which("less") else ["more"]


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
        Binding("o", "pager", "Pager"),
        Binding("y", "copy_commit", "Copy hash"),
        Binding("r", "try_again", "Try again"),
        Binding("c", "compare", "Compare"),
    ]

    def __init__(
        self,
        root: Path,
        number: int,
        rows: Mapping[int, ResultRow],
        metric_name: str,
        *,
        queue_idea: Callable[[str], None] | None = None,
        agent: str = "",
        higher_is_better: bool = False,
    ) -> None:
        super().__init__()
        self.root = root
        self.number = number
        self.rows = dict(rows)
        self.metric_name = metric_name
        self.queue_idea = queue_idea
        self.agent = agent
        self.higher_is_better = higher_is_better
        self.detail: ExperimentDetail | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="experiment"):
            with Pane(id="summary-box"):
                yield Static("Loading…", id="summary")
                yield TextLine("", id="curve-label")
                yield Sparkline([], id="curve")
            with Vertical(id="panes"):
                with Pane(id="diff-box"):
                    yield Static("", id="diff-text")
                yield PaneLog(max_lines=2000, highlight=False, id="exp-log")
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
        losses = [loss for line in detail.log_lines if (loss := parse_loss(line)) is not None]
        caption = f"loss {losses[0]:.4g} → {losses[-1]:.4g} ({len(losses)} points)" if losses else "no loss printed"
        self.query_one("#curve-label", TextLine).update(Text(caption, style="dim"))
        self.query_one("#curve", Sparkline).data = losses
        self.refresh_bindings()  # r (try again) applies to discarded and crashed experiments only

    def action_back(self) -> None:
        self.dismiss(None)

    def commit(self) -> str:
        detail = self.detail
        if detail is None:
            return ""
        return (detail.row.commit if detail.row else "") or (detail.meta.commit if detail.meta else "")

    def action_copy_commit(self) -> None:
        """OSC 52 puts it on the clipboard of the terminal the user sits at, over SSH and tmux too."""
        commit = self.commit()
        if not commit:
            self.notify("This experiment has no commit.", timeout=3)
            return
        self.app.copy_to_clipboard(commit)
        self.notify(f"Copied {commit} to the clipboard.", timeout=3)

    def action_pager(self) -> None:
        """The focused pane (the diff unless the log has focus) in $PAGER; the app comes back when it exits."""
        detail = self.detail
        if detail is None:
            return
        history = History(self.root)
        show_log = self.query_one("#exp-log").has_focus
        path = history.log_path(detail.number) if show_log else history.diff_path(detail.number)
        with tempfile.TemporaryDirectory(prefix="autoresearch-pager-") as tmp:
            if not path.is_file():
                path = Path(tmp) / f"experiment-{detail.number}.{'log' if show_log else 'diff'}"
                path.write_text(("\n".join(detail.log_lines) if show_log else detail.diff) + "\n", encoding="utf-8")
            try:
                with self.app.suspend():
                    subprocess.run([*pager_command(), str(path)], check=False)
            except (OSError, SuspendNotSupported) as exc:
                self.notify(f"Could not open a pager ({exc}); set $PAGER to one that exists.", severity="error")
        self.refresh()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "try_again":
            status = self.detail.row.status if self.detail and self.detail.row else ""
            return self.queue_idea is not None and status in ("discard", "crash")
        return True

    def action_try_again(self) -> None:
        """Queue a discarded experiment's change as an idea: it runs again, on the current best."""
        detail = self.detail
        if detail is None or self.queue_idea is None or detail.row is None:
            return
        self.queue_idea(try_again_idea(detail.row.description, self.agent))

    def action_compare(self) -> None:
        from .compare_screen import CompareScreen

        others = [n for n in sorted(self.rows) if n != self.number]
        if not others:
            self.notify("There is no other experiment to compare with.", timeout=3)
            return
        best = best_so_far(sorted(self.rows.items()), self.higher_is_better)
        other = best[-1][0] if best and best[-1][0] != self.number else others[-1]
        self.app.push_screen(CompareScreen(self.root, self.number, other, self.rows, self.metric_name))

    def action_step(self, delta: int) -> None:
        numbers = sorted(self.rows)
        target = self.number + delta
        if not numbers or target < numbers[0] or target > numbers[-1]:
            return
        self.number = target
        self.query_one("#summary", Static).update("Loading…")
        self.load()

    def action_show(self, selector: str) -> None:
        """Focus the diff or the log; under 120 columns the other one hides, so the one read gets the height."""
        self.set_class(selector == "#exp-log", "-log")
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
        self.refresh_bindings()
