"""The model's API key, kept from the training and from what is sent to the model.

The training (and the guard and verify commands) run without the variables that hold the model's key:
the one named by `api_key_env` and, for the llm agent, the usual key variables of the session's
provider, unless the user sets `pass_api_key_to_training`. Any text sent to the model has the key
values the tool knows replaced, also base64-encoded, hex-encoded or reversed, so a key that reached a log
anyway does not travel back to the provider.

The tool's own process keeps the key too: /proc/<pid>/environ shows the environment a process started
with, which any process of the same user (a training, through its parent's pid) can read. Once the session
knows its key variables, their values there are overwritten in place (the tool keeps them in its heap) and
the process is marked not dumpable, so its memory is out of reach of other processes of the user.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

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


def encoded_forms(secret: str) -> list[str]:
    """`secret` and the forms a training could print it in to pass a literal match: reversed, hex, base64
    (at each of the three alignments it can have inside a longer encoded text, without the edges that
    depend on the neighbouring bytes)."""
    raw = secret.encode()
    forms = [secret, secret[::-1], raw.hex(), raw.hex().upper()]
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + raw).decode()
            core = text[-(-8 * pad // 6) : 8 * (pad + len(raw)) // 6]  # the characters made of the key's bits only
            if len(core) >= _MIN_SECRET_CHARS:
                forms.append(core)
    return sorted(set(forms), key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        for form in encoded_forms(secret):
            if form in text:
                text = text.replace(form, REDACTED)
    return text


def scrub_messages(messages: Sequence[Mapping[str, str]], secrets: Sequence[str]) -> list[dict[str, str]]:
    """Copies of chat messages whose text holds none of `secrets`."""
    return [{key: scrub(value, secrets) if key == "content" else value for key, value in m.items()} for m in messages]


_PR_SET_DUMPABLE = 4


def _initial_environment() -> tuple[int, int] | None:
    """Where this process's initial environment lies in memory (what /proc/<pid>/environ shows)."""
    try:
        fields = Path("/proc/self/stat").read_bytes().rsplit(b")", 1)[1].split()
        return int(fields[47]), int(fields[48])  # env_start, env_end (fields 50 and 51 of proc(5))
    except (OSError, IndexError, ValueError):
        return None


def keep_keys_from_children(config: SessionConfig) -> None:
    """Overwrite the key variables' values in this process's initial environment and mark it not dumpable,
    so no other process reads the key from it; os.environ keeps the values for the tool (Linux; elsewhere
    nothing changes)."""
    if not sys.platform.startswith("linux"):
        return
    names = {name.encode() + b"=" for name in key_variables(config) if os.environ.get(name)}
    span = _initial_environment()
    with contextlib.suppress(OSError, AttributeError, ValueError):
        libc = ctypes.CDLL(None, use_errno=True)
        if names and span is not None:
            environ = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")
            index = 0
            while (entry := environ[index]) is not None:
                address = ctypes.cast(environ, ctypes.POINTER(ctypes.c_void_p))[index] or 0
                name = entry.split(b"=", 1)[0] + b"="
                if name in names and span[0] <= address < span[1]:
                    ctypes.memset(address + len(name), ord("*"), len(entry) - len(name))
                index += 1
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
