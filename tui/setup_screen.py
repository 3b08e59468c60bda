"""The setup wizard: every parameter of the session, prefilled, validated inline by the engine's own model."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from autoresearch.core.config import SessionConfig, explain
from autoresearch.core.errors import UserError
from pydantic import ValidationError
from rich.segment import Segment
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.strip import Strip
from textual.widgets import (
    Button,
    Checkbox,
    Footer,
    Input,
    Label,
    RadioButton,
    RadioSet,
    SelectionList,
    Static,
)
from textual.widgets.selection_list import Selection
from textual.worker import Worker, WorkerState

from .widgets import BREAKPOINTS

PROGRAM_FILE = "program.md"

TEXT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("tag", "Tag", "names the branch autoresearch/<tag>"),
    ("run_command", "Run command", "how to run one training"),
    ("metric_name", "Metric", "the name the script prints as `name: value`"),
    ("metric_grep", "Metric grep", "regular expression of the metric line"),
    ("time_budget_minutes", "Time budget, min", "minutes per experiment"),
    ("timeout_minutes", "Timeout, min", "hard limit per run"),
    ("max_experiments", "Max experiments", "0 = no cap"),
    ("workers", "Workers", "experiments at once, each in its own worktree"),
    ("devices", "Devices", "one GPU per worker, e.g. 0,1,2,3 (none: not pinned)"),
    ("notify", "Notify", "URLs told of a new best and the end, e.g. a Slack webhook (none)"),
)
MODEL_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("model", "Model", "a litellm name, e.g. openai/gpt-4o-mini"),
    ("api_base", "API base", "optional: URL of an OpenAI-compatible server"),
)
PROGRAM_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("goal", "Goal", "what the agent should achieve"),
    ("must_not", "Must not change", "what stays as it is"),
    ("constraints", "Constraints", "memory, time, libraries"),
)
FORM_KEYS = (
    "tag",
    "run_command",
    "metric_name",
    "metric_direction",
    "metric_grep",
    "time_budget_minutes",
    "timeout_minutes",
    "max_experiments",
    "workers",
    "devices",
    "notify",
    "prune",
    "editable_files",
    "readonly_files",
    "agent",
    "model",
    "api_base",
    "sandbox",
)

KEY_VARIABLES = {
    "openai": "OPENAI_API_KEY",
    "gpt-": "OPENAI_API_KEY",
    "o1": "OPENAI_API_KEY",
    "o3": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "claude": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "groq": "GROQ_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "xai": "XAI_API_KEY",
    "cohere": "COHERE_API_KEY",
}


def key_variable(model: str, api_key_env: str | None = None) -> str | None:
    """The environment variable a model's provider reads its key from, when we know it."""
    if api_key_env:
        return api_key_env
    name = model.strip().lower()
    for prefix, variable in KEY_VARIABLES.items():
        if name.startswith(prefix):
            return variable
    return None


def field_errors(exc: ValidationError) -> dict[str, str]:
    """One sentence per invalid field, worded by the engine's own `explain`."""
    found: dict[str, str] = {}
    for err in exc.errors():
        loc = err.get("loc") or ()
        key = str(loc[0]) if loc else "devices" if "devices_per_worker" in str(err.get("msg")) else "timeout_minutes"
        single = ValidationError.from_exception_data(exc.title, [err])  # type: ignore[list-item]
        sentence = explain(single, source="")
        if not loc:
            sentence = sentence.split(" (got ")[0] + "."
        found.setdefault(key, sentence)
    return found


def program_text(config: SessionConfig, goal: str, must_not: str, constraints: str) -> str:
    direction = "higher" if config.higher_is_better else "lower"
    readonly = [p for p in config.readonly_files if p != PROGRAM_FILE]
    lines = [
        f"# Instructions for the agent: session {config.tag}",
        "",
        "## Goal",
        "",
        goal.strip() or f"Make {config.metric_name} {direction}.",
        "",
        "## Metric",
        "",
        f"`{config.metric_name}` ({direction} is better), printed by `{config.run_command}` as "
        f"`{config.metric_name}: value`.",
        "",
        "## What may change",
        "",
        *[f"- {p}" for p in config.editable_files],
        "",
        "## What must not change",
        "",
        *[f"- {p} (read only)" for p in readonly],
        *([f"- {must_not.strip()}"] if must_not.strip() else []),
        *([] if readonly or must_not.strip() else ["- anything outside the files above"]),
        "",
        "## Constraints",
        "",
        f"- Each run has {config.time_budget_minutes:g} minutes (hard timeout {config.timeout_minutes:g} minutes).",
        *([f"- {constraints.strip()}"] if constraints.strip() else []),
        "",
    ]
    return "\n".join(lines)


class Radio(RadioButton):
    """A radio button whose mark shows its state without colour (NO_COLOR, monochrome terminals)."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]
        return "●" if self.value else " "


class Tick(Checkbox):
    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]
        return "X" if self.value else " "


class FileList(SelectionList[str]):
    """A selection list that leaves the box of an unselected file empty, so the state reads without colour."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        index = self.scroll_offset.y + y
        if index >= self.option_count:
            return strip
        option = self.get_option_at_index(index)
        segments = list(strip)
        if len(segments) > 1 and option.value not in self._selected:
            segments[1] = Segment(" ", segments[1].style)
        return Strip(segments, strip.cell_length)


@dataclass(frozen=True)
class WizardDefaults:
    script: str
    tag: str
    metric_name: str
    files: list[str]
    program_exists: bool
    offered_editable: tuple[str, ...] = ()
    """Config files the run command names: their knobs live there."""
    offered_readonly: tuple[str, ...] = ()
    """Files the script reads (its local imports, configurator.py, program.md)."""
    gpus: tuple[str, ...] = ()
    """The GPUs NVML finds, offered as one worker each."""


@dataclass(frozen=True)
class SetupResult:
    config: SessionConfig
    program_written: bool


class SetupScreen(Screen["SetupResult | None"]):
    """Dismisses with the created session, or None when cancelled (nothing was written)."""

    HORIZONTAL_BREAKPOINTS = BREAKPOINTS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "create", "Create session", priority=True),
        Binding("ctrl+t", "check", "Check run", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(
        self,
        root: Path,
        script: str,
        options: dict[str, Any] | None = None,
        existing: SessionConfig | None = None,
    ) -> None:
        super().__init__()
        self.root = root
        self.existing = existing
        """The session being edited (autoresearch config --edit); None for a new one."""
        if existing is not None:
            script = existing.script_path
            options = {**existing.to_json_dict(), **(options or {})}
        self.script = script
        self.options = dict(options or {})
        self.errors: dict[str, str] = {}
        self.preview: SessionConfig | None = None
        self.defaults: WizardDefaults | None = None
        self.creating = False

    # Layout.

    def _text_row(self, key: str, label: str, hint: str) -> ComposeResult:
        with Horizontal(classes="field-row"):
            yield Label(label, classes="field-label")
            yield Input(placeholder=hint, id=f"field-{key}", classes="field-input")
        yield Label("", id=f"error-{key}", classes="field-error")

    def compose(self) -> ComposeResult:
        with Horizontal(id="wizard"):
            with VerticalScroll(id="form"):
                title = f"Edit session {self.existing.tag}" if self.existing else "New session"
                yield Static(f"{title} for [b]{self.script}[/b]", id="wizard-title")
                yield Static("Reading the repository…", id="wizard-status")
                for key, label, hint in TEXT_FIELDS[:3]:
                    yield from self._text_row(key, label, hint)
                with Horizontal(classes="field-row"):
                    yield Label("Direction", classes="field-label")
                    with RadioSet(id="field-metric_direction", classes="field-radio"):
                        yield Radio("lower is better", value=True, id="direction-lower")
                        yield Radio("higher is better", id="direction-higher")
                for key, label, hint in TEXT_FIELDS[3:]:
                    yield from self._text_row(key, label, hint)
                yield Tick("Prune: stop runs whose loss curve is clearly behind the best's", True, id="field-prune")
                yield Label("Editable files (the agent may change them)", classes="section-label")
                yield FileList(id="field-editable_files", classes="file-list")
                yield Label("", id="error-editable_files", classes="field-error")
                yield Label("Read-only files (context for the agent)", classes="section-label")
                yield FileList(id="field-readonly_files", classes="file-list")
                yield Label("", id="error-readonly_files", classes="field-error")
                with Horizontal(classes="field-row"):
                    yield Label("Agent", classes="field-label")
                    with RadioSet(id="field-agent", classes="field-radio"):
                        yield Radio("mutate (offline)", value=True, id="agent-mutate")
                        yield Radio("llm (a model)", id="agent-llm")
                for key, label, hint in MODEL_FIELDS:
                    yield from self._text_row(key, label, hint)
                yield Label("", id="model-hint", classes="field-hint")
                yield Tick("Sandbox: no network, read-only outside the run's tree (bubblewrap)", id="field-sandbox")
                yield Tick(f"Write {PROGRAM_FILE}: instructions for the agent", id="write-program")
                with Vertical(id="program-fields"):
                    for key, label, hint in PROGRAM_FIELDS:
                        yield from self._text_row(key, label, hint)
                yield Label("", id="error-program", classes="field-error")
                yield Label("", id="form-error", classes="field-error")
                yield Label("", id="check-result", classes="field-hint")
                with Horizontal(id="wizard-buttons"):
                    create = "Save (ctrl+s)" if self.existing else "Create session (ctrl+s)"
                    yield Button(create, variant="success", id="create")
                    yield Button("Check run (ctrl+t)", variant="primary", id="check")
                    yield Button("Cancel (esc)", variant="default", id="cancel")
            with VerticalScroll(id="preview-box"):
                yield Static("", id="preview")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#preview-box").border_title = ".autoresearch.json"
        self.query_one("#form").border_title = "setup"
        self.query_one("#program-fields").display = False
        self.query_one("#check-result").display = False
        if self.existing is not None:
            self.query_one("#write-program").display = False
        self.load_defaults()

    # Defaults come from git and the script: read them off the UI thread.

    @work(thread=True, group="defaults", exit_on_error=False)
    def load_defaults(self) -> WizardDefaults:
        from autoresearch.core.first_run import related_files
        from autoresearch.core.setup import infer_metric_name, propose_tag, repo_files

        script_path = Path(self.script)
        full = script_path if script_path.is_absolute() else self.root / script_path
        try:
            rel = full.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            rel = self.script
        try:
            text = full.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        metric = self.options.get("metric_name") or infer_metric_name(text) or ""
        tag = self.options.get("tag") or propose_tag(self.root)
        try:
            files = repo_files(self.root)
        except UserError:
            files = []
        offered: tuple[list[str], list[str]] = ([], [])
        if files:
            offered = related_files(self.root, rel, self.options.get("run_command") or f"python {rel}", files)
        if rel not in files:
            files = [rel, *files]
        from autoresearch.core.gpu import gpu_ids

        return WizardDefaults(
            rel,
            tag,
            metric,
            files,
            (self.root / PROGRAM_FILE).exists(),
            tuple(offered[0]),
            tuple(offered[1]),
            tuple(gpu_ids()),
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "defaults":
            if event.state == WorkerState.SUCCESS and isinstance(worker.result, WizardDefaults):
                self.fill(worker.result)
            elif event.state == WorkerState.ERROR:
                self.query_one("#wizard-status", Static).update(f"Could not read the repository: {worker.error}")
        elif worker.group == "check" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            ok, text = (
                worker.result
                if event.state == WorkerState.SUCCESS and isinstance(worker.result, tuple)
                else (False, f"The check could not run: {worker.error}")
            )
            label = self.query_one("#check-result", Label)
            label.update(str(text))
            label.display = True
            self.notify(
                str(text),
                title="Check passed" if ok else "Check failed",
                severity="information" if ok else "error",
                timeout=10,
            )
        elif worker.group == "create" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self.creating = False
            if event.state == WorkerState.SUCCESS and isinstance(worker.result, SetupResult):
                self.dismiss(worker.result)
                return
            error = worker.error
            message = str(error) if isinstance(error, UserError) else f"Setup failed: {error!r}"
            self.query_one("#form-error", Label).update(message)
            self.notify(message, title="Not created", severity="error", timeout=8)

    def fill(self, defaults: WizardDefaults) -> None:
        self.defaults = defaults
        opts = self.options
        values = {
            "tag": defaults.tag,
            "run_command": opts.get("run_command") or f"python {defaults.script}",
            "metric_name": defaults.metric_name,
            "metric_grep": opts.get("metric_grep") or "",
            "time_budget_minutes": f"{opts.get('time_budget_minutes', 5):g}",
            "timeout_minutes": f"{opts.get('timeout_minutes', 10):g}",
            "max_experiments": str(opts.get("max_experiments", 50)),
            "workers": str(opts.get("workers") or max(1, len(defaults.gpus))),
            "devices": ",".join(opts.get("devices") or defaults.gpus),
            "notify": " ".join(opts.get("notify") or []),
            "model": opts.get("model") or "",
            "api_base": opts.get("api_base") or "",
        }
        for key, value in values.items():
            self.query_one(f"#field-{key}", Input).value = value
        self.query_one("#field-sandbox", Checkbox).value = bool(opts.get("sandbox"))
        self.query_one("#field-metric_grep", Input).placeholder = "^<metric>:  (derived from the metric)"
        self.query_one("#field-prune", Checkbox).value = opts.get("prune", "on") == "on"
        if opts.get("metric_direction") == "higher":
            self.query_one("#direction-higher", RadioButton).value = True
        if opts.get("agent") == "llm" or (opts.get("model") and opts.get("agent") != "mutate"):
            self.query_one("#agent-llm", RadioButton).value = True
        editable = set(opts.get("editable_files") or [defaults.script, *defaults.offered_editable])
        readonly = set(opts.get("readonly_files") or ([] if self.existing else defaults.offered_readonly))
        if (
            defaults.program_exists
            and PROGRAM_FILE in defaults.files
            and not opts.get("readonly_files")
            and not self.existing
        ):
            readonly.add(PROGRAM_FILE)
        editable_list = self.query_one("#field-editable_files", SelectionList)
        readonly_list = self.query_one("#field-readonly_files", SelectionList)
        editable_list.add_options([Selection(f, f, f in editable) for f in defaults.files])
        readonly_list.add_options([Selection(f, f, f in readonly) for f in defaults.files])
        status = self.query_one("#wizard-status", Static)
        count = len(defaults.files)
        found = f"found {count} tracked file{'s' if count != 1 else ''}"
        if defaults.gpus:
            found += f" and {len(defaults.gpus)} GPU{'s' if len(defaults.gpus) > 1 else ''} (one worker each)"
        guess = f"; metric guessed from the script: {defaults.metric_name}" if defaults.metric_name else ""
        status.update(f"{found}{guess}. Tab moves between fields; ctrl+s creates the session.")
        direction = "higher" if opts.get("metric_direction") == "higher" else "lower"
        self.query_one(
            "#field-goal", Input
        ).value = f"Make {defaults.metric_name or 'the metric'} {direction} within the time budget."
        self.query_one("#field-must_not", Input).value = "the evaluation, the data and the metric's definition"
        self.query_one("#field-tag", Input).focus()
        if self.existing is not None:
            # What names the session stays; the rest can change (as `autoresearch config KEY VALUE`).
            for key in ("tag", "metric_name", "metric_direction"):
                self.query_one(f"#field-{key}").disabled = True
            self.query_one("#field-run_command", Input).focus()
            status.update("Editing the session: change a field, ctrl+t checks a run, ctrl+s saves.")
        self.validate_form()

    # Validation: rebuilt on every change; cheap enough to run per keystroke.

    def form_values(self) -> dict[str, Any]:
        def text(key: str) -> str:
            return self.query_one(f"#field-{key}", Input).value.strip()

        values: dict[str, Any] = {
            "tag": text("tag"),
            "run_command": text("run_command"),
            "metric_name": text("metric_name"),
            "metric_direction": "higher" if self.query_one("#direction-higher", RadioButton).value else "lower",
            "time_budget_minutes": text("time_budget_minutes"),
            "timeout_minutes": text("timeout_minutes"),
            "max_experiments": text("max_experiments"),
            "workers": text("workers"),
            "devices": [d.strip() for d in text("devices").split(",") if d.strip()],
            "notify": text("notify").split(),
            "editable_files": list(self.query_one("#field-editable_files", SelectionList).selected),
            "readonly_files": list(self.query_one("#field-readonly_files", SelectionList).selected),
            "agent": "llm" if self.query_one("#agent-llm", RadioButton).value else "mutate",
            "sandbox": self.query_one("#field-sandbox", Checkbox).value,
            "prune": "on" if self.query_one("#field-prune", Checkbox).value else "off",
        }
        if text("metric_grep"):
            values["metric_grep"] = text("metric_grep")
        if values["agent"] == "llm":
            values["model"] = text("model") or None
            values["api_base"] = text("api_base") or None
        return values

    @property
    def write_program(self) -> bool:
        return self.query_one("#write-program", Checkbox).value

    def session_options(self) -> dict[str, Any]:
        """What plan_session gets: the CLI's flags, overridden by the form."""
        merged = {k: v for k, v in self.options.items() if k not in FORM_KEYS}
        merged.update(self.form_values())
        return merged

    def validate_form(self) -> dict[str, str]:
        if self.defaults is None:
            return {}
        options = self.session_options()
        data = {**options, "script_path": self.defaults.script}
        if self.write_program:
            data["readonly_files"] = [*data["readonly_files"], PROGRAM_FILE]
        errors: dict[str, str] = {}
        config: SessionConfig | None = None
        try:
            config = SessionConfig.model_validate(data)
        except ValidationError as exc:
            errors = field_errors(exc)
        if not options["editable_files"]:
            errors.setdefault("editable_files", "Pick at least one file the agent may change (space toggles).")
        both = sorted(set(options["editable_files"]) & set(options["readonly_files"]))
        if both:
            errors.setdefault("readonly_files", f"{both[0]} is editable; a file is either editable or read-only.")
        if options["agent"] == "llm" and not options.get("model"):
            errors.setdefault("model", "The llm agent needs a model, e.g. openai/gpt-4o-mini (or pick mutate).")
        if self.write_program and self.defaults.program_exists:
            errors["program"] = (
                f"{PROGRAM_FILE} already exists and is kept; untick this and pick it among the read-only files."
            )
        self.errors = errors
        self.preview = config if not errors else None
        self.show_errors()
        self.show_preview(config)
        self.show_model_hint(options)
        return errors

    def show_errors(self) -> None:
        for label in self.query(".field-error"):
            if label.id and label.id.startswith("error-"):
                message = self.errors.get(label.id.removeprefix("error-"), "")
                assert isinstance(label, Label)
                label.update(message)
                label.display = bool(message)
        for key in FORM_KEYS:
            for widget in self.query(f"#field-{key}"):
                widget.set_class(key in self.errors, "-invalid")

    def show_preview(self, config: SessionConfig | None) -> None:
        preview = self.query_one("#preview", Static)
        if config is None:
            preview.update("Fix the fields marked in red to see the file.")
            return
        preview.update(json.dumps(config.to_json_dict(), indent=2))

    def show_model_hint(self, options: dict[str, Any]) -> None:
        hint = self.query_one("#model-hint", Label)
        llm = options["agent"] == "llm"
        for key, _, _ in MODEL_FIELDS:
            self.query_one(f"#field-{key}", Input).disabled = not llm
        if not llm:
            hint.update("The offline mutate agent changes numeric constants; no model or key needed.")
            return
        model = options.get("model") or ""
        variable = key_variable(model, self.options.get("api_key_env"))
        if not model:
            hint.update("")
        elif variable is None:
            hint.update("Set the provider's API key variable in the environment before running.")
        elif os.environ.get(variable):
            hint.update(f"{variable} is set.")
        elif options.get("api_base"):
            hint.update(f"{variable} is not set; a local server usually needs no key.")
        else:
            hint.update(f"{variable} is not set: export it before `autoresearch run`.")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.validate_form()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.validate_form()

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged[str]) -> None:
        self.validate_form()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.query_one("#program-fields").display = event.value
        self.validate_form()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "create":
            self.action_create()
        elif event.button.id == "check":
            self.action_check()
        else:
            self.action_cancel()

    # Create or cancel.

    def action_create(self) -> None:
        if self.defaults is None or self.creating:
            return
        errors = self.validate_form()
        if errors:
            first = next(k for k in (*FORM_KEYS, "program") if k in errors)
            for widget in self.query(f"#field-{first}"):
                widget.focus()
            self.query_one("#form-error", Label).update(f"{len(errors)} field(s) need fixing first.")
            self.query_one("#form-error", Label).display = True
            return
        self.creating = True
        self.query_one("#form-error", Label).update("Creating the session…")
        self.query_one("#form-error", Label).display = True
        self.create(self.session_options(), self.program_inputs())

    def program_inputs(self) -> tuple[str, str, str] | None:
        if not self.write_program:
            return None
        return (
            self.query_one("#field-goal", Input).value,
            self.query_one("#field-must_not", Input).value,
            self.query_one("#field-constraints", Input).value,
        )

    def action_check(self) -> None:
        """Run the command once with the form's settings and show the metric line it printed, or what to fix."""
        if self.defaults is None:
            return
        label = self.query_one("#check-result", Label)
        label.display = True
        if self.validate_form() or self.preview is None:
            label.update("Fix the fields marked in red first, then check.")
            return
        label.update(f"Checking: {self.preview.run_command} …")
        self.check(self.preview)

    @work(thread=True, group="check", exclusive=True, exit_on_error=False)
    def check(self, config: SessionConfig) -> tuple[bool, str]:
        from autoresearch.core.first_run import check_interpreter, trial_run

        problem = check_interpreter(self.root, config)
        if problem:
            return False, problem
        trial = trial_run(self.root, config)
        return trial.ok, trial.message

    @work(thread=True, group="create", exclusive=True, exit_on_error=False)
    def create(self, options: dict[str, Any], program: tuple[str, str, str] | None) -> SetupResult:
        from autoresearch.core.setup import create_session, plan_session

        if self.existing is not None:
            return self.save(options)

        config = plan_session(self.root, self.script, **options)
        if program is not None:
            path = self.root / PROGRAM_FILE
            if path.exists():
                raise UserError(f"{PROGRAM_FILE} already exists; pick it among the read-only files instead.")
            path.write_text(program_text(config, *program), encoding="utf-8")
            config.readonly_files = [*config.readonly_files, PROGRAM_FILE]
        try:
            create_session(self.root, config)
        except BaseException:
            if program is not None:
                (self.root / PROGRAM_FILE).unlink(missing_ok=True)
            raise
        return SetupResult(config, program is not None)

    def save(self, options: dict[str, Any]) -> SetupResult:
        """Write the edited settings into the session, checked as `autoresearch config` checks them."""
        from autoresearch.core.config import save_config
        from autoresearch.core.settings import ensure_idle, validate

        assert self.existing is not None
        ensure_idle(self.root)
        data = self.existing.to_json_dict()
        new_values = {k: v for k, v in options.items() if k in FORM_KEYS and k not in ("tag", "metric_name")}
        if "metric_grep" not in options:
            new_values["metric_grep"] = data["metric_grep"]
        changed = {k for k, v in new_values.items() if str(v) != str(data.get(k))}
        config = validate(self.root, self.existing, {**data, **new_values}, changed)
        save_config(self.root, config)
        return SetupResult(config, False)

    def action_cancel(self) -> None:
        if not self.creating:
            self.dismiss(None)


class EditSessionScreen(SetupScreen):
    """The wizard on an existing session (autoresearch config --edit): ctrl+s saves the changed settings."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "create", "Save", priority=True),
        Binding("ctrl+t", "check", "Check run", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, root: Path, existing: SessionConfig) -> None:
        super().__init__(root, existing.script_path, existing=existing)
