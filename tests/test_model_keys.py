"""Which variables hold the model's key, and the key values scrubbed from what is sent to the model."""

from __future__ import annotations

import pytest
from autoresearch.core.config import SessionConfig, parse_config
from autoresearch.core.model_keys import (
    REDACTED,
    hidden_from_training,
    key_variables,
    scrub_messages,
    secret_values,
)


def config(**values: object) -> SessionConfig:
    return parse_config({"tag": "t", "script_path": "train.py", "metric_name": "val_loss", **values}, source="")


@pytest.mark.parametrize(
    ("model", "names"),
    [
        ("anthropic/claude-sonnet-4-5", ["ANTHROPIC_API_KEY"]),
        ("openai/gpt-4o-mini", ["OPENAI_API_KEY"]),
        ("gemini/gemini-2.0-flash", ["GEMINI_API_KEY", "GOOGLE_API_KEY"]),
        ("somecloud/model", ["SOMECLOUD_API_KEY"]),
        ("gpt-4o-mini", ["OPENAI_API_KEY"]),
    ],
)
def test_the_providers_key_variables(model: str, names: list[str]) -> None:
    assert key_variables(config(agent="llm", model=model)) == names


def test_api_key_env_comes_first_and_the_opt_in_gives_them_back() -> None:
    cfg = config(agent="llm", model="openai/x", api_key_env="MY_KEY")
    assert hidden_from_training(cfg) == ["MY_KEY", "OPENAI_API_KEY"]
    assert hidden_from_training(config(agent="llm", model="openai/x", pass_api_key_to_training=True)) == []
    assert hidden_from_training(config()) == []  # the offline agent has no key


def test_known_key_values_are_scrubbed_from_every_message() -> None:
    cfg = config(agent="llm", model="openai/x", api_key_env="MY_KEY")
    env = {"MY_KEY": "sk-long-secret-value", "OPENAI_API_KEY": "sk-other-0123456", "PATH": "/usr/bin"}
    secrets = secret_values(cfg, ["no-key"], env=env)
    assert secrets == ["sk-long-secret-value", "sk-other-0123456"]  # "no-key" is too short to scrub
    messages = [
        {"role": "system", "content": "plain"},
        {"role": "user", "content": "log: sk-long-secret-value and sk-other-0123456 /usr/bin"},
    ]
    cleaned = scrub_messages(messages, secrets)
    assert cleaned[0] == messages[0]
    assert cleaned[1] == {"role": "user", "content": f"log: {REDACTED} and {REDACTED} /usr/bin"}
    assert "sk-long-secret-value" in messages[1]["content"], "the caller's messages are left alone"
