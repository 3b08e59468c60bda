"""One chat completion through litellm: loaded lazily, retried with backoff, errors in one sentence.

Rate limits, timeouts, 5xx and dropped connections are retried within a bounded time; a rejected
key, an unknown model or an unreachable server raise ProviderError at once. When the retries run
out, TransientProviderError says what kept failing (the caller decides whether to skip or stop).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .config import SessionConfig
from .errors import ProviderError
from .litellm_import import load_litellm
from .model_keys import scrub_messages, secret_values
from .proposer import Usage

Message = dict[str, str]


class TransientProviderError(Exception):
    """The provider kept failing in a way that may pass (rate limit, timeout, 5xx) until the retries ran out."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay_s: float = 2.0
    max_delay_s: float = 30.0
    max_total_s: float | None = None
    """The whole call, retries included, gives up after this long (None: 4 x request_timeout_s + 60 s)."""
    refused_retries: int = 1
    refused_delay_s: float = 0.5


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage
    attempts: int = 1
    finish_reason: str = ""
    """The API's word for why the reply ended; `length` means the output limit cut it."""

    @property
    def cut(self) -> bool:
        return self.finish_reason == "length"


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _refused(exc: BaseException) -> bool:
    for item in _chain(exc):
        if isinstance(item, ConnectionRefusedError):
            return True
        text = str(item).lower()
        if any(
            s in text
            for s in ("connection refused", "name or service not known", "nodename nor servname", "getaddrinfo")
        ):
            return True
        if type(item).__name__ == "ConnectError":
            return True
    return False


def tries(n: int) -> str:
    return f"{n} try" if n == 1 else f"{n} tries"


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    for prefix in ("litellm.", "OpenAIException - ", "OpenAIException -"):
        text = text.replace(prefix, "")
    text = re.sub(r"\b(\w+): \1: ", r"\1: ", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        value = headers.get("retry-after") if headers is not None else None
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def key_env_hint(config: SessionConfig, litellm: ModuleType | None = None) -> str:
    """The environment variable the key comes from, by name (the key itself is never shown)."""
    if config.api_key_env:
        return config.api_key_env
    if litellm is not None and config.model:
        try:
            missing = litellm.validate_environment(model=config.model, api_base=config.api_base)["missing_keys"]
            if missing:
                return str(missing[0])
            provider = litellm.get_llm_provider(config.model)[1]
            return f"{str(provider).upper()}_API_KEY"
        except Exception:
            pass
    return "the provider's API key variable"


def resolve_api_key(config: SessionConfig, litellm: ModuleType) -> str | None:
    model = config.model or ""
    if config.api_key_env:
        value = os.environ.get(config.api_key_env)
        if not value:
            raise ProviderError(
                f"The environment variable {config.api_key_env} (api_key_env) is not set; export it with the "
                f"key for {model}, or name another variable with --api-key-env."
            )
        return value
    try:
        env = litellm.validate_environment(model=model, api_base=config.api_base)
    except Exception:
        return None
    if env.get("keys_in_environment", True):
        return None
    if config.api_base:
        # A local server (llama.cpp, vLLM, Ollama) usually wants no key, but the client insists on one.
        return "no-key"
    needed = ", ".join(env.get("missing_keys") or []) or "the provider's API key"
    raise ProviderError(
        f"Model {model} needs {needed} in the environment; export it, or name another variable with --api-key-env."
    )


def classify(exc: BaseException, config: SessionConfig, litellm: ModuleType) -> ProviderError | None:
    """A ProviderError for a failure retrying cannot fix, or None when the call may be retried."""
    model = config.model or "(none)"
    where = f" at {config.api_base}" if config.api_base else ""
    status = _status(exc)
    name = type(exc).__name__
    text = str(exc).lower()
    if isinstance(exc, ProviderError):
        return exc
    if name in ("AuthenticationError", "PermissionDeniedError") or status in (401, 403):
        env = key_env_hint(config, litellm)
        verb = "rejected" if status != 403 else "refused (403)"
        return ProviderError(
            f"The provider {verb} the API key for {model}{where}; put a valid key in the environment variable "
            f"{env}, or name another variable with --api-key-env."
        )
    if name == "ContextWindowExceededError":
        return ProviderError(
            f"The prompt does not fit the context window of {model}; choose a model with a larger context "
            f"(--model) or lower prompt_budget_tokens in .autoresearch.json."
        )
    model_words = ("model", "provider not provided", "llm provider")
    if (
        name == "NotFoundError"
        or status == 404
        or ((name == "BadRequestError" or status in (400, 422)) and any(w in text for w in model_words))
    ):
        return ProviderError(
            f"Model {model} was not found{where} ({_short(exc, 100)}); check --model "
            f"(litellm's provider/name form, e.g. openai/gpt-4o-mini) and --api-base."
        )
    if name in ("BadRequestError", "UnprocessableEntityError", "UnsupportedParamsError") or status in (400, 422):
        return ProviderError(
            f"The provider refused the request for {model} ({_short(exc, 100)}); check --model and the "
            f"agent settings (temperature, max_output_tokens) in .autoresearch.json."
        )
    if "missing credentials" in text or "api_key client option must be set" in text:
        env = key_env_hint(config, litellm)
        return ProviderError(
            f"No API key for {model}; export {env}, or name the variable that holds it with --api-key-env."
        )
    return None


def _unreachable(config: SessionConfig) -> ProviderError:
    if config.api_base:
        return ProviderError(
            f"Cannot reach the model server at {config.api_base} (connection refused); start the server or fix "
            f"--api-base."
        )
    return ProviderError(
        f"Cannot reach the provider of {config.model}; check the network connection, or set --api-base."
    )


def _usage(litellm: ModuleType, response: Any, messages: Sequence[Message], text: str) -> Usage:
    usage = getattr(response, "usage", None)
    tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
    tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
    if not tokens_in and not tokens_out:
        tokens_in = sum(len(m.get("content", "")) for m in messages) // 4
        tokens_out = len(text) // 4
    try:
        cost = float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:
        cost = 0.0
    return Usage(tokens_in, tokens_out, cost)


def _once(
    litellm: ModuleType,
    config: SessionConfig,
    messages: Sequence[Message],
    api_key: str | None,
    stream: bool,
    on_text: Callable[[str], None] | None,
    deadline: float,
) -> Completion:
    kwargs: dict[str, Any] = {
        "model": config.model,
        "messages": list(messages),
        "temperature": config.temperature,
        "max_tokens": config.max_output_tokens,
        "timeout": config.request_timeout_s,
        "max_retries": 0,
        "num_retries": 0,
    }
    if config.api_base:
        kwargs["api_base"] = config.api_base
    if api_key:
        kwargs["api_key"] = api_key
    if not stream:
        response = litellm.completion(**kwargs)
        choice = response.choices[0]
        text = choice.message.content or ""
        return Completion(text, _usage(litellm, response, messages, text), finish_reason=_finish(choice))
    kwargs["stream"] = True
    kwargs["stream_options"] = {"include_usage": True}
    chunks = []
    parts: list[str] = []
    finish = ""
    for chunk in litellm.completion(**kwargs):
        chunks.append(chunk)
        choices = getattr(chunk, "choices", None) or []
        finish = (_finish(choices[0]) if choices else "") or finish
        piece = getattr(getattr(choices[0], "delta", None), "content", None) if choices else None
        if piece:
            parts.append(piece)
            if on_text is not None:
                on_text(piece)
        if time.monotonic() > deadline:
            raise TimeoutError("the streamed reply took longer than the time allowed")
    text = "".join(parts)
    try:
        response = litellm.stream_chunk_builder(chunks, messages=list(messages))
    except Exception:
        response = None
    return Completion(text, _usage(litellm, response, messages, text), finish_reason=finish)


def _finish(choice: Any) -> str:
    return str(getattr(choice, "finish_reason", None) or "")


def complete(
    config: SessionConfig,
    messages: Sequence[Message],
    *,
    stream: bool = False,
    on_text: Callable[[str], None] | None = None,
    retry: RetryPolicy | None = None,
) -> Completion:
    """The model's reply to `messages`, or ProviderError / TransientProviderError (one sentence each)."""
    if not config.model:
        raise ProviderError("No model is configured; give one with --model (e.g. openai/gpt-4o-mini).")
    policy = retry or RetryPolicy()
    litellm = load_litellm()
    api_key = resolve_api_key(config, litellm)
    messages = scrub_messages(messages, secret_values(config, [api_key]))
    start = time.monotonic()
    total = policy.max_total_s if policy.max_total_s is not None else 4 * config.request_timeout_s + 60
    deadline = start + total
    refused = 0
    last = ""
    attempt = 0
    while True:
        attempt += 1
        try:
            done = _once(litellm, config, messages, api_key, stream, on_text, deadline + config.request_timeout_s)
            return Completion(done.text, done.usage, attempt, done.finish_reason)
        except Exception as exc:
            fatal = classify(exc, config, litellm)
            if fatal is not None:
                raise fatal from None
            if _refused(exc):
                refused += 1
                if refused > policy.refused_retries:
                    raise _unreachable(config) from None
                delay = policy.refused_delay_s
            else:
                delay = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
                delay *= 1 + random.uniform(-0.2, 0.2)
                hint = _retry_after(exc)
                if hint is not None:
                    delay = min(max(hint, 0.0), policy.max_delay_s)
            last = _describe_transient(exc, config)
            remaining = deadline - time.monotonic()
            if attempt >= policy.attempts or remaining <= delay:
                raise TransientProviderError(f"{last} ({tries(attempt)} in {time.monotonic() - start:.0f} s)") from None
            time.sleep(delay)


def _describe_transient(exc: BaseException, config: SessionConfig) -> str:
    status = _status(exc)
    name = type(exc).__name__
    if name == "RateLimitError" or status == 429:
        return f"{config.model} is rate limited"
    if name == "Timeout" or isinstance(exc, TimeoutError) or status == 408:
        return f"{config.model} did not answer within {config.request_timeout_s:g} s"
    if _refused(exc):
        return f"cannot connect to {config.api_base or config.model}"
    return f"{config.model} failed: {_short(exc, 100)}"
