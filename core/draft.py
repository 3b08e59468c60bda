"""The next proposal, drafted while the current experiment runs, so the accelerator never waits for the model.

A draft is asked for (`Pending`, on a helper thread) against the branch tip the running experiment was built
on. When the scheduler (core/scheduler.py) takes it up, the branch may have moved on (the running experiment
was kept): the draft's edits are then re-applied on the new best one by one (`rebase_files`, core/edits.py);
when one no longer applies, the draft is set aside and the model is asked again, so a change is never judged
against a parent it was not built on. A draft lives only in memory until it is taken up: stop, stop_now or
kill -9 never leave it in the tree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from .edits import Edit, file_edits, reapply
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


def rebase_files(
    base: Mapping[str, str],
    draft: Mapping[str, str],
    new: Mapping[str, str],
    *,
    draft_wins: bool = False,
    edits: Sequence[Edit] = (),
) -> dict[str, str] | None:
    """The draft's edits (made on `base`; worked out from `draft`'s files when not given) re-applied on `new`
    edit by edit (core/edits.py); None when one of them no longer applies.

    With `draft_wins`, an edit whose own lines `new` changed replaces them, as long as `new` changed no other line
    next to them.
    """
    already = {p: t for p, t in draft.items() if t != base.get(p, "") and new.get(p, "") == t}
    todo = [e for e in (edits or file_edits(base, draft)) if e.path not in already]
    merged = reapply(base, todo, new, own_lines_win=draft_wins)
    return None if merged is None else {**already, **merged}
