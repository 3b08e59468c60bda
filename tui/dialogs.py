"""Small modal screens (confirm, queue an idea) and the help panel."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question; `y`/`enter` confirms, `n`/`escape` declines."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", show=True),
        Binding("n,escape", "answer(False)", "No", show=True),
    ]

    def __init__(
        self, question: str, detail: str = "", yes: str = "Yes", no: str = "No", *, destructive: bool = False
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.question = question
        self.detail = detail
        self.yes = yes
        self.no = no
        self.destructive = destructive

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            if self.detail:
                yield Static(self.detail, classes="dialog-detail")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error" if self.destructive else "success", id="yes")
                yield Button(f"{self.no} (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no" if self.destructive else "#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class IdeaDialog(ModalScreen["str | None"]):
    """One line of the user's own idea, for the agent to implement next; `problem` says why the agent could
    not follow an idea (the offline agent reads only `NAME = value`), so it is refused where it was typed."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, problem: Callable[[str], str | None] = lambda _idea: None, example: str = "") -> None:
        super().__init__()
        self.problem = problem
        self.example = example or "try a cosine learning-rate schedule"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Queue an idea for the agent", classes="dialog-title")
            yield Static(
                "The agent implements it as the next experiment, after the one in flight.",
                classes="dialog-detail",
            )
            yield Input(placeholder=f"e.g. {self.example}", id="idea")
            yield Label("", id="idea-error", classes="field-error")
            yield Static("enter queue · escape cancel", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = " ".join(event.value.split())
        if not text:
            self.query_one("#idea-error", Label).update("Write the idea first, or press escape to cancel.")
            return
        problem = self.problem(text)
        if problem is not None:
            self.query_one("#idea-error", Label).update(f"Not queued: {problem}.")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


HELP_TEXT = """\
[b]Run screen[/b]
  [b]p[/b]      pause after this experiment; again: resume
  [b]s[/b]      stop after the current run
  [b]x[/b]      kill the current run (asks; a crash row)
  [b]w P[/b]    workers: next worker's log / pause it
  [b]enter[/b]  open the highlighted experiment
  [b]j k[/b]    down / up in a list (arrows work too)
  [b]g G[/b]    first / last row;  [b]end[/b]  follow live
  [b]/[/b]      filter results: status, words, commit
  [b]S[/b]      sort results: # metric time status
  [b]e[/b]      events full screen;  [b]z[/b]  zoom pane
  [b]i[/b]      queue an idea for the agent
  [b]a[/b]      analysis of the session so far
  [b]T[/b]      light / dark theme
  [b]ctrl+p[/b] every command, searchable
  [b]tab[/b]    next pane
  [b]q[/b]      quit (asks while a run is active)

[b]Experiment screen[/b]
  [b][ ][/b]    previous / next experiment
  [b]d l[/b]    diff / log;  [b]z[/b]  zoom it
  [b]o[/b]      open it in $PAGER
  [b]y[/b]      copy the commit hash (OSC 52)
  [b]r[/b]      try a discarded one again
  [b]c[/b]      compare with the best
  [b]escape[/b] back

[b]Analysis screen[/b]
  [b]w[/b]      write autoresearch-<tag>-analysis.md

[b]Plot[/b]  ◆ baseline ● keep ○ discard ✕ crash
  dotted: best so far; straight: the baseline
"""


class HelpPanel(VerticalScroll, can_focus=False):
    """The keys, drawn over the run screen and toggled in place: opening or closing it repaints only
    what it covers, where a screen of its own would restyle and re-render the whole run screen."""

    CLOSE_KEYS = frozenset({"escape", "question_mark", "q"})
    SCROLL_KEYS: ClassVar[dict[str, str]] = {
        "up": "scroll_up",
        "down": "scroll_down",
        "pageup": "scroll_page_up",
        "pagedown": "scroll_page_down",
        "home": "scroll_home",
        "end": "scroll_end",
    }

    def compose(self) -> ComposeResult:
        yield Label("Keys", classes="dialog-title")
        yield Static(HELP_TEXT, id="help-text")
        yield Static("escape close · ↑ ↓ scroll", classes="dialog-hint")

    @property
    def shown(self) -> bool:
        return self.display

    def show(self) -> None:
        self.scroll_home(animate=False)
        self.display = True

    def hide(self) -> None:
        self.display = False

    def take_key(self, key: str) -> None:
        """While shown it takes every key, as a dialog would: close keys close it, scroll keys scroll it."""
        if key in self.CLOSE_KEYS:
            self.hide()
        elif key in self.SCROLL_KEYS:
            getattr(self, self.SCROLL_KEYS[key])(animate=False)
