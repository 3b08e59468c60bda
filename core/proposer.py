"""The proposer protocol: the one thing an agent does is propose the next change.

The loop hands a proposer a `ProposalContext` (the files, the history, a crash to fix) and gets
back a `Proposal` holding the complete new text of each editable file it changes. The loop checks,
writes, commits, runs and judges; a proposer never touches git or the disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .config import SessionConfig
from .edits import Edit
from .loss_curve import LossCurve


@dataclass(frozen=True)
class ExperimentRecord:
    """One finished experiment as a proposer sees it (numbers are results.tsv rows, baseline = 1)."""

    number: int
    commit: str
    metric: float
    status: str
    description: str
    category: str = "other"
    rationale: str = ""
    diff: str = ""
    memory_gb: float = 0.0
    duration_s: float = 0.0
    curve: LossCurve | None = None
    """The training loss its log printed, for the best and the latest experiments."""


@dataclass(frozen=True)
class CrashInfo:
    """A crashed experiment to repair: the smallest fix of the same idea is wanted."""

    number: int
    description: str
    category: str
    diff: str
    log_tail: str
    attempt: int


@dataclass(frozen=True)
class ProposalContext:
    config: SessionConfig
    number: int
    files: Mapping[str, str]
    readonly: Mapping[str, str]
    history: tuple[ExperimentRecord, ...]
    baseline: float | None
    best: float | None
    best_number: int | None
    crash: CrashInfo | None = None
    user_idea: str | None = None
    tried: Mapping[str, int] = field(default_factory=dict)
    """content_key(files) of every version already run -> the experiment number that ran it."""
    in_flight: str = ""
    """What runs while this proposal is asked for (a draft made ahead, core/draft.py); empty otherwise."""
    on_retry: Callable[[int, str], None] | None = None
    """Told (reply number, a few words why) each time a reply is sent back to the model to try again."""
    judging_notes: str = ""
    """How the last results were judged (noise, no effect, over budget, timeouts), for the model."""
    no_effect: Mapping[str, int] = field(default_factory=dict)
    """Settings whose change had no effect (lower-cased name -> experiment): changing them again is useless."""


@dataclass(frozen=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.tokens_in + other.tokens_in,
            self.tokens_out + other.tokens_out,
            self.cost_usd + other.cost_usd,
        )

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass(frozen=True)
class Proposal:
    description: str
    files: Mapping[str, str]
    """Complete new text of each editable file the change touches (paths relative to the repository)."""
    category: str = "other"
    rationale: str = ""
    usage: Usage = field(default_factory=Usage)
    edits: tuple[Edit, ...] = ()
    """The change's own edits on the files it was proposed against (the knob assignments, or the lines the
    model's blocks replaced): how it is re-applied on a newer best (core/edits.py). Empty: worked out from `files`."""


class ProposalSkipped(Exception):
    """The proposer could not produce a usable change this time; the loop counts a skip and goes on."""

    def __init__(self, reason: str, usage: Usage | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.usage = usage or Usage()


@runtime_checkable
class Proposer(Protocol):
    name: str

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        """The next change, or None when there is nothing left to try (or no fix for ctx.crash).

        Raise ProposalSkipped for a failed attempt, or a ProviderError (core.errors) to stop the loop.
        """
        ...

    def observe(self, record: ExperimentRecord) -> None:
        """Learn from a finished experiment (called once per results row, baseline included)."""
        ...


def content_key(files: Mapping[str, str]) -> str:
    """A stable hash of a set of file contents, to tell whether a version was already tried."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode())
        digest.update(b"\0")
        digest.update(files[path].encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]
