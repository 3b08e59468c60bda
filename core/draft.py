"""The next proposal, drafted while the current experiment runs, so the accelerator never waits for the model.

A draft is asked for on a helper thread against the version the running experiment was built on (its base).
When the loop takes it up, the branch may have moved on (the running experiment was kept): the draft's edits
are then re-applied on the new best by a three-way merge of each file it changes; when they no longer apply,
the draft is dropped and the model is asked again, so a change is never judged against a parent it was not
built on. A draft lives only in memory until it is taken up: stop, stop_now or kill -9 never leave it in the
tree.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .proposer import Proposal


class Pending:
    """One proposer call on a daemon thread; `cond` is notified when it has answered or failed."""

    def __init__(
        self,
        call: Callable[[], Proposal | None],
        cond: threading.Condition,
        answered: Callable[[Proposal], None] | None = None,
    ) -> None:
        """`answered` is called with the proposal once `done` holds (not when it failed or had nothing)."""
        self._box: dict[str, Proposal | BaseException | None] = {}
        self._cond = cond

        def work() -> None:
            try:
                self._box["value"] = call()
            except BaseException as exc:
                self._box["error"] = exc
            with cond:
                cond.notify_all()
            value = self._box.get("value")
            if answered is not None and isinstance(value, Proposal):
                answered(value)

        threading.Thread(target=work, name="autoresearch-propose", daemon=True).start()

    @property
    def done(self) -> bool:
        return bool(self._box)

    def result(self) -> Proposal | None:
        """The proposal (None: nothing left to propose); raises what the proposer raised. Only once done."""
        error = self._box.get("error")
        if isinstance(error, BaseException):
            raise error
        value = self._box.get("value")
        return value if isinstance(value, Proposal) else None


@dataclass
class Draft:
    """A proposal asked for while experiment `during` runs, against the files of commit `base`."""

    number: int
    during: int
    base: str
    base_files: dict[str, str]
    pending: Pending
    idea: str | None = None


def rebase_files(
    base: Mapping[str, str], draft: Mapping[str, str], new: Mapping[str, str], *, draft_wins: bool = False
) -> dict[str, str] | None:
    """The draft's edits (from `base` to `draft`) applied on `new`; None when one of them no longer applies.

    With `draft_wins`, where both changed the same lines the draft's lines replace `new`'s.
    """
    merged: dict[str, str] = {}
    for path, text in draft.items():
        old = base.get(path, "")
        ours = new.get(path, "")
        if text == old:
            continue
        if ours in (old, text):
            merged[path] = text
            continue
        result = merge3(ours, old, text, theirs_wins=draft_wins)
        if result is None:
            return None
        merged[path] = result
    return merged


def merge3(ours: str, base: str, theirs: str, *, theirs_wins: bool = False) -> str | None:
    """git merge-file's three-way merge of one text; None when the two sides' changes overlap (unless
    `theirs_wins`: then their lines are taken where both changed the same ones)."""
    with tempfile.TemporaryDirectory(prefix="autoresearch-merge-") as tmp:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_bytes(text.encode("utf-8", "surrogateescape"))
            paths.append(str(path))
        done = subprocess.run(
            ["git", "merge-file", "-p", "-q", *(["--theirs"] if theirs_wins else []), *paths],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", "surrogateescape")
