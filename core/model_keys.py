"""The model's API key, kept from the training and from what is sent to the model.

The training (and the guard and verify commands) run without the variables that hold the model's key:
the one named by `api_key_env` and, for the llm agent, the usual key variables of the session's
provider, unless the user sets `pass_api_key_to_training`. Any text sent to the model has the key
values the tool knows replaced, so a key that reached a log anyway does not travel back to the provider.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from .config import SessionConfig

REDACTED = "[API key removed]"
_MIN_SECRET_CHARS = 8  # shorter values ("no-key", "x") would blank out ordinary text

# litellm's own names for each provider's credentials (what it reads from the environment).
_PROVIDER_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "text-completion-openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "azure": ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY"),
    "azure_ai": ("AZURE_AI_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "mistral": ("MISTRAL_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY", "OR_API_KEY"),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHER_API_KEY"),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "cohere_chat": ("COHERE_API_KEY",),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"),
    "huggingface": ("HUGGINGFACE_API_KEY", "HF_TOKEN"),
    "perplexity": ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
    "bedrock": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK"),
}


def _provider(model: str) -> str:
    prefix, slash, _ = model.partition("/")
    if slash:
        return prefix.lower()
    try:  # a bare name (gpt-4o): litellm knows whose it is; the llm agent has it loaded already
        from .litellm_import import load_litellm

        return str(load_litellm().get_llm_provider(model)[1]).lower()
    except Exception:
        return ""


def key_variables(config: SessionConfig) -> list[str]:
    """The environment variables that hold the model's key for this session."""
    names: list[str] = []
    if config.api_key_env:
        names.append(config.api_key_env)
    if config.agent == "llm" and config.model:
        provider = _provider(config.model)
        if provider:
            names += _PROVIDER_KEYS.get(provider, (f"{provider.upper()}_API_KEY",))
    return list(dict.fromkeys(names))


def hidden_from_training(config: SessionConfig) -> list[str]:
    """The variables the training must not get: none when the user opted in."""
    return [] if config.pass_api_key_to_training else key_variables(config)


def secret_values(
    config: SessionConfig, extra: Iterable[str | None] = (), env: Mapping[str, str] | None = None
) -> list[str]:
    """The key values the tool knows (from the key variables, and `extra` such as the key it resolved)."""
    env = os.environ if env is None else env
    values = [env.get(name) for name in key_variables(config)] + list(extra)
    found = {v for v in values if v and len(v) >= _MIN_SECRET_CHARS}
    return sorted(found, key=len, reverse=True)  # a key that contains another is replaced whole


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def scrub_messages(messages: Sequence[Mapping[str, str]], secrets: Sequence[str]) -> list[dict[str, str]]:
    """Copies of chat messages whose text holds none of `secrets`."""
    return [{key: scrub(value, secrets) if key == "content" else value for key, value in m.items()} for m in messages]
