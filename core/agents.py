"""Choosing the proposer a session is configured for."""

from __future__ import annotations

from pathlib import Path

from .config import SessionConfig
from .proposer import Proposer


def make_proposer(config: SessionConfig, root: Path) -> Proposer:
    if config.agent == "llm":
        from .llm_agent import LLMProposer  # loads litellm only when the model is first called

        return LLMProposer(config, root)
    if config.search == "hill":
        from .mutate import MutateProposer

        return MutateProposer(config)
    from .search import SearchProposer

    return SearchProposer(config, root)
