"""The session config: the skill's file loads unchanged, unknown keys survive, every bad value is one sentence."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from autoresearch.core.config import (
    CONFIG_FILE,
    SessionConfig,
    load_config,
    parse_config,
    save_config,
)
from autoresearch.core.errors import ConfigError

# Exactly the file the original skill writes at setup (spec: autoresearch-skill.txt), filled in.
SKILL_FILE: dict[str, Any] = {
    "tag": "mar23",
    "branch": "autoresearch/mar23",
    "script_path": "train.py",
    "run_command": "uv run train.py",
    "metric_name": "val_bpb",
    "metric_direction": "lower",
    "metric_grep": "^val_bpb:",
    "time_budget_minutes": 5,
    "timeout_minutes": 10,
    "editable_files": ["train.py"],
    "readonly_files": ["prepare.py"],
    "max_experiments": 50,
    "created_at": "2025-03-23T10:15:00Z",
}
MINIMAL: dict[str, Any] = {"tag": "nov26", "script_path": "train.py", "metric_name": "val_loss"}


def write(root: Path, data: Any) -> Path:
    path = root / CONFIG_FILE
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2), encoding="utf-8")
    return path


def assert_one_sentence(message: str) -> None:
    assert "\n" not in message
    assert "Traceback" not in message
    assert message.endswith("."), message
    # A second sentence would start after ". " with a capital letter.
    assert not re.search(r"[.!?]\s+[A-Z]", message), message


def test_skill_file_loads_unchanged(tmp_path: Path) -> None:
    write(tmp_path, SKILL_FILE)
    config = load_config(tmp_path)
    for key, value in SKILL_FILE.items():
        assert getattr(config, key) == value, key

    save_config(tmp_path, config)
    saved = json.loads((tmp_path / CONFIG_FILE).read_text(encoding="utf-8"))
    assert {k: saved[k] for k in SKILL_FILE} == SKILL_FILE
    # The skill's keys come first, in its order; ours follow.
    assert list(saved)[: len(SKILL_FILE)] == list(SKILL_FILE)
    assert isinstance(saved["time_budget_minutes"], int)
    assert isinstance(saved["timeout_minutes"], int)
    assert load_config(tmp_path) == config


def test_defaults_are_the_skills() -> None:
    config = SessionConfig(**MINIMAL)
    assert config.branch == "autoresearch/nov26"
    assert config.run_command == "python train.py"
    assert config.metric_direction == "lower"
    assert config.metric_grep == "^val_loss:"
    assert config.time_budget_minutes == 5
    assert config.timeout_minutes == 10
    assert config.editable_files == ["train.py"]
    assert config.readonly_files == []
    assert config.max_experiments == 50
    assert config.created_at  # an ISO timestamp is filled in
    assert config.agent == "mutate"
    assert config.time_budget_s == 300
    assert config.timeout_s == 600
    assert not config.higher_is_better
    assert SessionConfig(**MINIMAL, metric_direction="higher").higher_is_better


def test_unknown_keys_survive_load_and_save(tmp_path: Path) -> None:
    data = {
        **SKILL_FILE,
        "notes": "from another tool",
        "nested": {"a": [1, 2, {"b": None}]},
        "future_flag": True,
    }
    write(tmp_path, data)
    config = load_config(tmp_path)
    config.max_experiments = 7
    save_config(tmp_path, config)
    saved = json.loads((tmp_path / CONFIG_FILE).read_text(encoding="utf-8"))
    assert saved["notes"] == "from another tool"
    assert saved["nested"] == {"a": [1, 2, {"b": None}]}
    assert saved["future_flag"] is True
    assert saved["max_experiments"] == 7
    assert not (tmp_path / (CONFIG_FILE + ".tmp")).exists()


def test_fractional_minutes(tmp_path: Path) -> None:
    write(tmp_path, {**MINIMAL, "time_budget_minutes": 0.1, "timeout_minutes": 0.25})
    config = load_config(tmp_path)
    assert config.time_budget_minutes == 0.1
    assert config.time_budget_s == pytest.approx(6.0)
    assert config.timeout_s == pytest.approx(15.0)
    save_config(tmp_path, config)
    text = (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    assert '"time_budget_minutes": 0.1,' in text
    assert '"timeout_minutes": 0.25,' in text


def test_whole_minutes_are_written_as_ints(tmp_path: Path) -> None:
    config = SessionConfig(**MINIMAL, time_budget_minutes=2.0, timeout_minutes=3.0)
    config.timeout_minutes = 4.0
    save_config(tmp_path, config)
    text = (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")
    assert '"time_budget_minutes": 2,' in text
    assert '"timeout_minutes": 4,' in text


def test_the_ray_keys_default_to_a_local_run_and_keep_whole_amounts_whole(tmp_path: Path) -> None:
    config = SessionConfig(**MINIMAL)
    assert (config.executor, config.ray_address, config.ray_resources) == ("local", None, {"num_gpus": 1})
    config = SessionConfig(**MINIMAL, executor="ray", ray_resources='{"num_gpus": 2, "num_cpus": 0.5}')
    save_config(tmp_path, config)
    saved = json.loads((tmp_path / CONFIG_FILE).read_text(encoding="utf-8"))
    assert saved["ray_resources"] == {"num_gpus": 2, "num_cpus": 0.5}
    assert '"num_gpus": 2,' in (tmp_path / CONFIG_FILE).read_text(encoding="utf-8")


# (changed values, the key the sentence must name, words of what is allowed)
INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"time_budget_minutes": "five"}, "time_budget_minutes", "above 0"),
    ({"time_budget_minutes": True}, "time_budget_minutes", "above 0"),
    ({"timeout_minutes": [10]}, "timeout_minutes", "above 0"),
    ({"max_experiments": True}, "max_experiments", "0 or more"),
    ({"max_experiments": 1.5}, "max_experiments", "whole number"),
    ({"max_experiments": -1}, "max_experiments", "0 or more"),
    ({"editable_files": "train.py"}, "editable_files", "list of file paths"),
    ({"readonly_files": [3]}, "readonly_files", "list of file paths"),
    ({"metric_direction": "up"}, "metric_direction", '"lower" or "higher"'),
    ({"timeout_minutes": 0}, "timeout_minutes", "above 0"),
    ({"timeout_minutes": -3}, "timeout_minutes", "above 0"),
    ({"time_budget_minutes": 0}, "time_budget_minutes", "above 0"),
    ({"timeout_minutes": float("inf")}, "timeout_minutes", "above 0"),
    ({"time_budget_minutes": 5, "timeout_minutes": 2}, "timeout_minutes", "at least time_budget_minutes"),
    ({"metric_grep": "val_loss: ("}, "metric_grep", "regular expression"),
    ({"memory_grep": "[unclosed"}, "memory_grep", "regular expression"),
    ({"tag": "a b"}, "tag", "letters, digits"),
    ({"tag": "../up"}, "tag", "letters, digits"),
    ({"tag": "x.lock"}, "tag", "letters, digits"),
    ({"tag": 5}, "tag", "letters, digits"),
    ({"metric_name": "  "}, "metric_name", "must not be empty"),
    ({"agent": "gpt"}, "agent", '"mutate"'),
    ({"executor": "slurm"}, "executor", '"local"'),
    ({"ray_resources": {"num_gpus": -1}}, "ray_resources", "JSON object of amounts"),
    ({"ray_resources": "[1"}, "ray_resources", "JSON object of amounts"),
    ({"ray_pending_limit_minutes": 0}, "ray_pending_limit_minutes", "above 0"),
]


@pytest.mark.parametrize(
    ("change", "key", "allowed"), INVALID, ids=[f"{i}-{key}" for i, (_, key, _) in enumerate(INVALID)]
)
def test_each_invalid_value_is_one_sentence(tmp_path: Path, change: dict[str, Any], key: str, allowed: str) -> None:
    write(tmp_path, {**SKILL_FILE, **change})
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert_one_sentence(message)
    assert key in message
    assert allowed in message
    assert CONFIG_FILE in message


def test_timeout_below_budget_shows_both_numbers() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**MINIMAL, "time_budget_minutes": 5, "timeout_minutes": 2})
    message = str(info.value)
    assert "timeout_minutes (2)" in message
    assert "time_budget_minutes (5)" in message
    assert "dict" not in message


def test_timeout_equal_to_budget_is_fine() -> None:
    config = parse_config({**MINIMAL, "time_budget_minutes": 0.1, "timeout_minutes": 0.1})
    assert config.timeout_s == config.time_budget_s


def test_missing_metric_name(tmp_path: Path) -> None:
    write(tmp_path, {k: v for k, v in SKILL_FILE.items() if k != "metric_name"})
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert_one_sentence(message)
    assert "metric_name" in message
    assert "missing" in message
    assert "val_loss" in message  # says what to put there


def test_invalid_json(tmp_path: Path) -> None:
    write(tmp_path, '{"tag": "nov26",\n  "metric_name": }\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert_one_sentence(message)
    assert "not valid JSON" in message
    assert "line 2" in message


@pytest.mark.parametrize("text", ["[1, 2]", '"nov26"', "null", "3"])
def test_not_an_object(tmp_path: Path, text: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert_one_sentence(message)
    assert "JSON object" in message


def test_no_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert_one_sentence(message)
    assert "autoresearch setup" in message


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_bytes(b'{"tag": "\xff\xfe"}')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert_one_sentence(str(info.value))


def test_invalid_assignment_is_refused() -> None:
    config = SessionConfig(**MINIMAL)
    with pytest.raises(ValueError):
        config.metric_direction = "up"
    assert config.metric_direction == "lower"
