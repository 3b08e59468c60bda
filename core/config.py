"""The session config, `.autoresearch.json`, compatible with the original skill's file.

The skill's keys come first; ours sit beside them. Keys we do not know are kept on rewrite.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from .errors import ConfigError

CONFIG_FILE = ".autoresearch.json"
RESULTS_FILE = "results.tsv"
RUN_LOG = "run.log"
DEFAULT_RAY_ADDRESS = "http://127.0.0.1:8265"
STATE_DIR = ".autoresearch"
IGNORED_PATHS = (RESULTS_FILE, CONFIG_FILE, RUN_LOG, STATE_DIR + "/")

CATEGORIES = ("hyperparams", "architecture", "optimizer", "regularization", "data", "other")

_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


_NUMERIC_KEYS = (
    "time_budget_minutes",
    "timeout_minutes",
    "max_experiments",
    "temperature",
    "max_output_tokens",
    "request_timeout_s",
    "max_reflections",
    "fix_attempts",
    "max_skips_in_a_row",
    "target_metric",
    "plateau_experiments",
    "max_cost_usd",
    "noise_sigmas",
    "min_gain",
    "baseline_runs",
    "confirm_runs",
    "budget_allowance_s",
    "ray_pending_limit_minutes",
    "workers",
)


def _now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


class SessionConfig(BaseModel):
    """Every key of the skill's `.autoresearch.json`, with its defaults, plus our own settings."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)

    tag: str
    branch: str = ""
    script_path: str
    run_command: str = ""
    metric_name: str
    metric_direction: Literal["lower", "higher"] = "lower"
    metric_grep: str = ""
    time_budget_minutes: float = Field(default=5, gt=0)
    timeout_minutes: float = Field(default=10, gt=0)
    editable_files: list[str] = Field(default_factory=list)
    readonly_files: list[str] = Field(default_factory=list)
    max_experiments: int = Field(default=50, ge=0)
    created_at: str = Field(default_factory=_now_iso)

    # Our settings, beside the skill's.
    agent: Literal["mutate", "llm"] = "mutate"
    model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    pass_api_key_to_training: bool = False
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_output_tokens: int = Field(default=4096, gt=0)
    request_timeout_s: float = Field(default=120, gt=0)
    max_reflections: int = Field(default=3, ge=0)
    fix_attempts: int = Field(default=2, ge=0)
    max_skips_in_a_row: int = Field(default=3, gt=0)
    target_metric: float | None = None
    plateau_experiments: int = Field(default=0, ge=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    guard_command: str | None = None
    verify_command: str | None = None
    memory_grep: str = r"^peak_vram_mb:"
    memory_unit: Literal["mb", "gb"] = "mb"
    draft_ahead: bool = True
    """Ask for the next proposal while the current run goes on (core/draft.py)."""
    workers: int = Field(default=1, ge=1, le=64)
    """How many experiments run at once, each in a worktree of its own (core/scheduler.py, core/places.py)."""
    devices: list[str] = Field(default_factory=list)
    """The accelerator each worker is pinned to (CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES), in worker order."""
    worker_outputs: list[str] = Field(
        default_factory=lambda: ["out", "outputs", "checkpoints", "runs", "wandb", "lightning_logs"]
    )
    """Folders the training writes to: made fresh in every worker's tree instead of shared with the checkout."""
    notify: list[str] = Field(default_factory=list)
    """URLs told of a new best, a session needing the user and its end (core/notify.py, docs/WATCH.md)."""
    search: Literal["tpe", "hill"] = "tpe"
    knob_exclude: list[str] | None = None
    # How results are judged (core/judge.py, docs/JUDGING.md).
    judging: Literal["noise", "greedy"] = "noise"
    noise_sigmas: float = Field(default=2.0, ge=0)
    min_gain: float = Field(default=0.0, ge=0)
    baseline_runs: int = Field(default=2, ge=1)
    confirm_runs: int = Field(default=2, ge=0)
    budget_allowance_s: float | None = Field(default=None, ge=0)
    prune: Literal["off", "on"] = "on"
    """Stop a run whose loss curve is clearly behind the best's (core/pruning.py, docs/PRUNING.md)."""
    relative_floor: float = Field(default=0.001, ge=0)
    """When repeats print the same number (no seed varies), a gain under this share of the metric is not clear."""
    seed_via: str | None = None
    """How a repeat varies the seed, found at setup (core/seeds.py): AUTORESEARCH_SEED (always set on a repeat)
    when the script reads it, a flag appended to the run command (`--seed`), the name of an integer constant of
    the script (`SEED`, replaced in the text it runs from), "seed calls" (the literal of every seeding call,
    `torch.manual_seed(1337)`, replaced the same way), or None when no seed can vary."""
    equal_compute: Literal["mark", "strict"] = "mark"
    """A gain from a run much longer than the best's: kept and marked, or (`strict`) not kept."""
    # Where runs go (core/executor.py; Ray: core/ray_executor.py, docs/RAY.md).
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    """The cluster's Ray Jobs address (http://HEAD:8265 or ray://HEAD:10001); None: $RAY_ADDRESS or this machine."""
    ray_resources: dict[str, float] = Field(default_factory=lambda: {"num_gpus": 1.0})
    ray_shared_dir: str | None = None
    """Where every node mounts this repository (a shared filesystem): jobs run there, nothing is shipped."""
    ray_excludes: list[str] | None = None
    ray_pending_limit_minutes: float | None = Field(default=None, gt=0)
    # The sandbox and the referee (core/sandbox.py, docs/RELIABILITY.md).
    sandbox: bool = False
    """Run the training and the guard under bubblewrap: no network, read-only outside the run's tree."""
    sandbox_allow_net: list[str] = Field(default_factory=list)
    """Addresses ("PORT" or "HOST:PORT") the sandboxed run may reach, each at 127.0.0.1:PORT inside."""
    referee_files: list[str] = Field(default_factory=list)
    """Files the model never sees and the sandboxed training cannot read; the verify command scores with them."""

    @field_validator("tag")
    @classmethod
    def _tag_is_a_ref_name(cls, value: str) -> str:
        if not _TAG_RE.match(value) or ".." in value or value.endswith((".lock", ".")):
            raise ValueError("tag")
        return value

    @field_validator(*_NUMERIC_KEYS, mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        # pydantic would read true as 1; in this file it is always a mistake.
        if isinstance(value, bool):
            raise ValueError("bool")
        return value

    @field_validator("sandbox_allow_net")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        from .sandbox_net import parse_address

        for entry in value:
            parse_address(entry)
        return value

    @field_validator("devices", mode="before")
    @classmethod
    def _device_ids(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("metric_name", "script_path")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("blank")
        return value.strip()

    @field_validator("metric_grep", "memory_grep")
    @classmethod
    def _compiles(cls, value: str) -> str:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex: {exc}") from exc
        return value

    @field_validator("ray_resources", mode="before")
    @classmethod
    def _resources_from_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("json") from None
        return value

    @field_validator("ray_resources")
    @classmethod
    def _resources_are_amounts(cls, value: dict[str, float]) -> dict[str, float]:
        if any(amount < 0 or not math.isfinite(amount) for amount in value.values()):
            raise ValueError("amount")
        return value

    @field_serializer("ray_resources")
    def _whole_amounts_as_int(self, value: dict[str, float]) -> dict[str, float | int]:
        return {name: int(amount) if float(amount).is_integer() else amount for name, amount in value.items()}

    @field_serializer("time_budget_minutes", "timeout_minutes")
    def _whole_minutes_as_int(self, value: float) -> float | int:
        return int(value) if float(value).is_integer() else value

    @field_validator("target_metric")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("finite")
        return value

    @model_validator(mode="after")
    def _fill_derived(self) -> SessionConfig:
        # Assigning inside an "after" validator would re-validate; write the dict directly.
        data = self.__dict__
        if not data["branch"]:
            data["branch"] = f"autoresearch/{self.tag}"
        if not data["run_command"]:
            data["run_command"] = f"python {shlex.quote(self.script_path)}"
        if not data["metric_grep"]:
            data["metric_grep"] = f"^{re.escape(self.metric_name)}:"
        if not data["editable_files"]:
            data["editable_files"] = [self.script_path]
        if self.timeout_minutes < self.time_budget_minutes:
            raise ValueError("timeout_below_budget")
        if set(self.referee_files) & {*self.editable_files, *self.readonly_files, self.script_path}:
            raise ValueError("referee_overlap")
        if self.devices and len(self.devices) < self.workers:
            raise ValueError("devices_per_worker")
        return self

    # Derived values.

    @property
    def time_budget_s(self) -> float:
        return self.time_budget_minutes * 60

    @property
    def timeout_s(self) -> float:
        return self.timeout_minutes * 60

    @property
    def higher_is_better(self) -> bool:
        return self.metric_direction == "higher"

    def to_json_dict(self) -> dict[str, Any]:
        """The file's content: the skill's keys in its order, our keys, then unknown keys as they were."""
        data = self.model_dump(mode="json")
        return data


_MESSAGES: dict[str, str] = {
    "tag": "tag must be letters, digits, '.', '_' or '-' and start with a letter or digit (e.g. nov26)",
    "branch": "branch must be a git branch name such as autoresearch/nov26",
    "script_path": "script_path must name the training script, e.g. train.py",
    "run_command": "run_command must be a shell command such as 'python train.py'",
    "metric_name": "metric_name must not be empty: name the metric the script prints, e.g. val_loss",
    "metric_direction": 'metric_direction must be "lower" or "higher"',
    "metric_grep": "metric_grep must be a regular expression that compiles, e.g. ^val_loss:",
    "memory_grep": "memory_grep must be a regular expression that compiles, e.g. ^peak_vram_mb:",
    "memory_unit": 'memory_unit must be "mb" or "gb"',
    "time_budget_minutes": "time_budget_minutes must be a number of minutes above 0 (fractions such as 0.5 are fine)",
    "timeout_minutes": "timeout_minutes must be a number of minutes above 0 and at least time_budget_minutes",
    "editable_files": "editable_files must be a list of file paths inside the repository",
    "readonly_files": "readonly_files must be a list of file paths inside the repository",
    "max_experiments": "max_experiments must be a whole number, 0 or more (0 means no cap)",
    "created_at": "created_at must be an ISO timestamp string",
    "agent": 'agent must be "mutate" (offline) or "llm" (a model through litellm)',
    "model": "model must be a litellm model name such as openai/gpt-4o-mini",
    "api_base": "api_base must be a URL such as http://127.0.0.1:8000/v1",
    "api_key_env": "api_key_env must name an environment variable such as OPENAI_API_KEY",
    "temperature": "temperature must be a number from 0 to 2",
    "max_output_tokens": "max_output_tokens must be a whole number above 0",
    "request_timeout_s": "request_timeout_s must be a number of seconds above 0",
    "max_reflections": "max_reflections must be a whole number, 0 or more",
    "fix_attempts": "fix_attempts must be a whole number, 0 or more",
    "max_skips_in_a_row": "max_skips_in_a_row must be a whole number above 0",
    "target_metric": "target_metric must be a finite number",
    "plateau_experiments": "plateau_experiments must be a whole number, 0 or more (0 turns the rule off)",
    "max_cost_usd": "max_cost_usd must be a number of dollars above 0",
    "guard_command": "guard_command must be a shell command",
    "verify_command": "verify_command must be a shell command",
    "draft_ahead": "draft_ahead must be true (ask for the next proposal while a run goes on) or false",
    "workers": "workers must be a whole number from 1 to 64 (how many experiments run at once)",
    "devices": 'devices must be a list of device ids, one per worker, e.g. ["0", "1"]',
    "worker_outputs": 'worker_outputs must be a list of folder names, e.g. ["out", "checkpoints"]',
    "search": 'search must be "tpe" (Optuna over the knobs) or "hill" (the hill climb over module constants)',
    "knob_exclude": 'knob_exclude must be a list of name patterns such as ["*seed*", "eval_*"], or null (the default)',
    "judging": 'judging must be "noise" (keep only gains clear of the noise) or "greedy" (keep any gain)',
    "noise_sigmas": "noise_sigmas must be a number of standard deviations, 0 or more (e.g. 2)",
    "min_gain": "min_gain must be a number, 0 or more: the smallest gain in the metric worth keeping",
    "relative_floor": "relative_floor must be a fraction of the metric, 0 or more (e.g. 0.001 for 0.1 %)",
    "seed_via": 'seed_via must be AUTORESEARCH_SEED, a flag such as --seed, a constant such as SEED, "seed calls", '
    "or null",
    "equal_compute": 'equal_compute must be "mark" (keep a gain from a much longer run, marked) or "strict"',
    "baseline_runs": "baseline_runs must be a whole number above 0 (runs of the baseline that measure the noise)",
    "confirm_runs": "confirm_runs must be a whole number, 0 or more (re-runs of a small win before it is kept)",
    "prune": 'prune must be "on" (stop runs whose loss curve is clearly behind the best\'s) or "off"',
    "budget_allowance_s": "budget_allowance_s must be a number of seconds, 0 or more, allowed beyond the budget",
    "executor": 'executor must be "local" (runs on this machine) or "ray" (jobs on a Ray cluster, see docs/RAY.md)',
    "ray_address": "ray_address must be the Ray cluster's address, e.g. http://HEAD:8265 or ray://HEAD:10001",
    "ray_resources": 'ray_resources must be a JSON object of amounts per job, e.g. {"num_gpus": 1, "num_cpus": 4}',
    "ray_shared_dir": "ray_shared_dir must be the path where every Ray node mounts this repository",
    "ray_excludes": 'ray_excludes must be a list of paths or patterns not shipped to the cluster, e.g. ["data/raw"]',
    "ray_pending_limit_minutes": "ray_pending_limit_minutes must be the minutes above 0 a job may wait to start",
    "sandbox": "sandbox must be true (run the training under bubblewrap, docs/RELIABILITY.md) or false",
    "sandbox_allow_net": 'sandbox_allow_net must be a list of "PORT" or "HOST:PORT" entries, e.g. ["8080"]',
    "referee_files": 'referee_files must be a list of file paths inside the repository, e.g. ["data/holdout.csv"]',
}


def explain(exc: ValidationError, source: str = CONFIG_FILE) -> str:
    """One sentence for the first invalid value: which key, what was found, what is allowed."""
    err = exc.errors()[0]
    loc = [str(part) for part in err.get("loc", ())]
    key = loc[0] if loc else ""
    if err.get("type") == "missing":
        where = f"In {source}, " if source else ""
        return f"{where}the key {key} is missing; add it ({_MESSAGES.get(key, 'see README.md for every key')})."
    got = err.get("input")
    if not key and "timeout_below_budget" in str(err.get("msg", "")) and isinstance(got, dict):
        where = f"In {source}, " if source else ""
        return (
            f"{where}timeout_minutes ({got.get('timeout_minutes', 10)}) must be at least time_budget_minutes "
            f"({got.get('time_budget_minutes', 5)}); raise the timeout or lower the budget."
        )
    if not key and "devices_per_worker" in str(err.get("msg", "")) and isinstance(got, dict):
        where = f"In {source}, " if source else ""
        return (
            f"{where}devices lists {len(got.get('devices') or [])} device(s) for {got.get('workers')} workers; "
            "give one device per worker (e.g. --devices 0,1,2,3) or leave devices empty."
        )
    if not key and "referee_overlap" in str(err.get("msg", "")) and isinstance(got, dict):
        where = f"In {source}, " if source else ""
        return (
            f"{where}a referee file is also the script, editable or readonly; the model must never see a referee "
            "file, so list it only in referee_files."
        )
    rule = _MESSAGES.get(key, f"{key} has an invalid value")
    shown = json.dumps(got) if isinstance(got, (str, int, float, bool, type(None))) else type(got).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    where = f"In {source}, " if source else ""
    return f"{where}{rule} (got {shown})."


def parse_config(data: Any, source: str = CONFIG_FILE) -> SessionConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a JSON object with the session's keys; run autoresearch setup.")
    try:
        return SessionConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(explain(exc, source)) from None


def config_path(root: Path) -> Path:
    return root / CONFIG_FILE


def load_config(root: Path) -> SessionConfig:
    path = config_path(root)
    if not path.exists():
        raise ConfigError(
            f"No session here: {CONFIG_FILE} is missing in {root}; run `autoresearch setup SCRIPT` first."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{CONFIG_FILE} cannot be read ({exc}); check its permissions and encoding.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{CONFIG_FILE} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); fix or recreate it."
        ) from None
    return parse_config(data)


def save_config(root: Path, config: SessionConfig) -> None:
    """Write atomically, so a crash never leaves half a file."""
    path = config_path(root)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(config.to_json_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
