"""Errors a user can cause. Each carries one sentence: what is wrong and how to fix it."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the CLI prints its message alone, never a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(UserError):
    """The session config (.autoresearch.json or a setup flag) holds an invalid value."""


class GitStateError(UserError):
    """The repository is not where the tool expects it to be; nothing was changed."""


class ProviderError(UserError):
    """The model's provider refused for a reason retrying cannot fix (bad key, unknown model, unreachable)."""
