"""`autoresearch config`: show a session's settings, change one, validated as setup validates it.

The names setup's flags use work too (`grep` for metric_grep, `budget` for time_budget_minutes, `files` or
`editable` for editable_files, ...). What identifies the session (tag, branch, script, metric, created_at)
cannot change: a new session is the way to change those.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from .config import CONFIG_FILE, DEFAULT_RAY_ADDRESS, SessionConfig, load_config, parse_config, save_config
from .errors import ConfigError, GitStateError
from .gitops import Repo

ALIASES = {
    "grep": "metric_grep",
    "budget": "time_budget_minutes",
    "timeout": "timeout_minutes",
    "files": "editable_files",
    "editable": "editable_files",
    "readonly": "readonly_files",
    "run-command": "run_command",
    "max-experiments": "max_experiments",
    "max-tokens": "max_output_tokens",
    "request-timeout": "request_timeout_s",
    "api-base": "api_base",
    "api-key-env": "api_key_env",
    "target": "target_metric",
    "plateau": "plateau_experiments",
    "max-cost": "max_cost_usd",
    "guard": "guard_command",
    "verify": "verify_command",
    "exclude": "knob_exclude",
}
FIXED = ("tag", "branch", "script_path", "metric_name", "metric_direction", "created_at")
LISTS = (
    "editable_files",
    "readonly_files",
    "knob_exclude",
    "ray_excludes",
    "referee_files",
    "sandbox_allow_net",
    "notify",
)
OPTIONAL = (
    "model",
    "api_base",
    "api_key_env",
    "target_metric",
    "max_cost_usd",
    "guard_command",
    "verify_command",
    "ray_address",
    "ray_shared_dir",
    "ray_pending_limit_minutes",
)
SHOWN = (
    "run_command",
    "metric_grep",
    "time_budget_minutes",
    "timeout_minutes",
    "editable_files",
    "readonly_files",
    "max_experiments",
    "agent",
    "search",
    "model",
    "api_base",
    "knob_exclude",
    "executor",
)
RAY_SHOWN = ("ray_address", "ray_resources", "ray_shared_dir")


def settable_keys() -> list[str]:
    return [k for k in SessionConfig.model_fields if k not in FIXED]


def canonical(key: str) -> str:
    name = ALIASES.get(key, key.replace("-", "_") if key.replace("-", "_") in SessionConfig.model_fields else key)
    if name in FIXED:
        raise ConfigError(
            f"{name} identifies the session and cannot change; start a new session with autoresearch setup instead."
        )
    if name not in SessionConfig.model_fields:
        shown = ", ".join(settable_keys()[:12])
        raise ConfigError(f"There is no setting {key}; the settings are {shown}, ... (see README.md).")
    return name


def _value(key: str, values: list[str]) -> Any:
    if key == "notify" and " ".join(values).strip().startswith("["):
        try:
            return json.loads(" ".join(values))
        except ValueError:
            raise ConfigError("notify takes a JSON list of URLs, e.g. '[\"https://hooks.example/abc\"]'.") from None
    if key in LISTS:
        items = [part for v in values for part in v.replace(",", " ").split()]
        if key == "knob_exclude" and items in (["default"], ["none"], ["null"]):
            return None
        return items
    if not values:
        raise ConfigError(f"Give a value for {key}, e.g. autoresearch config {key} VALUE.")
    text = " ".join(values)
    if key in OPTIONAL and text.lower() in ("none", "null", ""):
        return None
    return text


def ensure_idle(root: Path, what: str = "the settings") -> None:
    """Refuse while a run holds the session's lock (core/session_lock.py: in the git directory)."""
    from .session_lock import refuse_if_held

    refuse_if_held(
        Repo(root),
        "A run (pid {pid}) is using this session; stop it first (s in the app, or kill {pid}), then change "
        + f"{what}.",
    )


def validate(root: Path, config: SessionConfig, data: dict[str, Any], changed: set[str]) -> SessionConfig:
    """The new config, checked as setup checks it: files inside and tracked, the model, the run command's python."""
    from .first_run import check_interpreter
    from .setup import _inside

    repo = Repo(root)
    for key, what in (("editable_files", "The editable file"), ("readonly_files", "The readonly file")):
        if key in changed:
            data[key] = [_inside(repo.root, p, what) for p in data[key]]
    new = parse_config(data, source="")
    if "editable_files" in changed:
        if not new.editable_files:
            raise ConfigError("editable_files cannot be empty; list at least the training script.")
        for path in new.editable_files:
            if not repo.is_tracked(path):
                raise GitStateError(
                    f"{path} is not committed to git; commit it first (git add {path} && git commit), "
                    "so experiments can be reset safely."
                )
    both = sorted(set(new.editable_files) & set(new.readonly_files))
    if both:
        raise ConfigError(f"{both[0]} is listed as both editable and readonly; keep it in one list.")
    if new.agent == "llm" and not new.model:
        raise ConfigError("The llm agent needs a model; set it first (autoresearch config model NAME).")
    if "run_command" in changed:
        problem = check_interpreter(repo.root, new)
        if problem:
            raise ConfigError(problem)
    return new


def change(root: Path, key: str, values: list[str]) -> str:
    """Change one setting; the sentence saying what changed."""
    name = canonical(key)
    root = Repo(root).root
    config = load_config(root)
    ensure_idle(root, name)
    data = json.loads(json.dumps(config.to_json_dict()))
    before = data.get(name, "default") if name != "knob_exclude" else data.get(name) or "default"
    data[name] = _value(name, values)
    if name == "model" and data[name] and "agent" not in values:
        data["agent"] = "llm"
    new = validate(root, config, data, {name})
    save_config(root, new)
    after = new.to_json_dict().get(name)
    if name == "notify":  # the URLs hold secrets: the terminal, too, sees only where they go
        from .notify import redact

        before, after = [redact(u) for u in before or []], [redact(u) for u in after or []]
    if name == "knob_exclude" and after is None:
        after = "default"
    return f"{name}: {_show(before)} -> {_show(after)} (in {CONFIG_FILE}; the next autoresearch run uses it)."


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(value) if value else "(none)"
    if value is None:
        return "(none)"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def show(root: Path) -> str:
    """The settings that matter most, then the knobs the agents see."""
    from .knobs import DEFAULT_EXCLUDE, describe_knobs
    from .search import knob_report

    root = Repo(root).root
    config = load_config(root)
    data = config.to_json_dict()
    width = max(len(k) for k in (*SHOWN, *RAY_SHOWN))
    lines = [f"Session {config.tag} on {config.branch}: {config.metric_name} ({config.metric_direction} is better)"]
    for key in (*SHOWN, *(RAY_SHOWN if config.executor == "ray" else ())):
        value = data.get(key)
        if key == "ray_address" and value is None:
            value = f"(none: $RAY_ADDRESS, else {DEFAULT_RAY_ADDRESS})"
        if key == "knob_exclude" and value is None:
            value = f"default ({', '.join(DEFAULT_EXCLUDE[:5])}, ...)"
        lines.append(f"  {key:<{width}}  {_show(value)}")
    files: dict[str, str] = {}
    for path in config.editable_files:
        with contextlib.suppress(OSError):
            files[path] = (root / path).read_text(encoding="utf-8", errors="surrogateescape")
    report = knob_report(config, files, {}, root)
    knobs = describe_knobs(report, for_model=False).replace("# Knobs", "Knobs", 1)
    lines += ["", knobs or report.nothing_to_search().capitalize() + "."]
    lines += ["", "Change one: autoresearch config KEY VALUE (e.g. autoresearch config grep '^val_bpb:')."]
    return "\n".join(lines) + "\n"
