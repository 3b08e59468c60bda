"""The checkout an experiment works in: the session lock, the branch and its position, the editable files,
writing and committing them, and taking a commit off the branch again (only one the tool made)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping

from git.exc import GitCommandError

from . import events as ev
from .config import CONFIG_FILE, RESULTS_FILE, SessionConfig
from .errors import ConfigError, GitStateError, UserError
from .gitops import Repo
from .history import ExperimentMeta, History
from .results import (
    STATUSES,
)
from .session_lock import SessionLock
from .takeoff import TakeOff, sentence, take_off
from .text_files import read_exact, write_exact
from .writable import require_writable

_FULL_HASH = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class Workspace:
    """The user's checkout, as the session sees it: the branch is at `expected_head` (the commit the tool left it
    at) and the tracked files are clean; anything else is the user's doing, and the tool stops rather than touch it.
    """

    def __init__(self, repo: Repo, config: SessionConfig, history: History, emit: Callable[[ev.Event], None]) -> None:
        self.repo = repo
        self.root = repo.root
        self.config = config
        self.history = history
        self._emit = emit
        self._lock = SessionLock(repo)
        self.expected_head = ""
        self._files_at: dict[str, dict[str, str]] = {}

    def acquire_lock(self) -> None:
        self._lock.acquire(
            "Another autoresearch run (pid {pid}) is using this session; stop it first (or wait for it)."
        )

    def release_lock(self) -> None:
        self._lock.release()

    def check_session_files(self) -> None:
        """Refuse files outside the repository (they would be sent to a model or overwritten) or missing."""
        for key, what in (("editable_files", "editable"), ("readonly_files", "readonly")):
            for path in getattr(self.config, key):
                try:
                    resolved = (self.root / path).resolve()
                    resolved.relative_to(self.root)
                except (ValueError, OSError):
                    raise ConfigError(
                        f"In {CONFIG_FILE}, the {what} file {path} is outside the repository {self.root}; "
                        f"list files inside it."
                    ) from None
                if not resolved.is_file():
                    raise ConfigError(
                        f"In {CONFIG_FILE}, the {what} file {path} does not exist; fix {key} or restore the file."
                    )
                if what == "editable" and not self.repo.is_tracked(path):
                    raise GitStateError(self.repo.untracked_message(path))
                if what == "editable":
                    require_writable(self.root, resolved)

    def enter_branch(self) -> None:
        branch = self.config.branch
        current = self.repo.current_branch()
        if current != branch:
            if not self.repo.branch_exists(branch):
                raise GitStateError(
                    f"The session's branch {branch} does not exist; run `autoresearch setup SCRIPT` to start anew."
                )
            self.require_clean()
            self.repo.checkout(branch)
            self._emit(ev.Info(f"checked out {branch}"))
        self.require_clean()
        head = self.repo.head_commit()
        assert head is not None
        self.expected_head = head

    def require_clean(self) -> None:
        dirty = self.repo.changed_tracked_files()
        if dirty:
            shown = ", ".join(dirty[:3]) + (" ..." if len(dirty) > 3 else "")
            raise GitStateError(
                f"The working tree has uncommitted changes ({shown}); commit or stash them (git stash) and run again."
            )

    def check_position(self) -> None:
        """Stop instead of touching anything if the user moved the branch, switched branches or edited files."""
        current, head, dirty = self.repo.position()
        if current != self.config.branch:
            where = current or "a detached HEAD"
            raise GitStateError(
                f"The repository is on {where}, not {self.config.branch}; the loop stopped without changing anything "
                f"(git checkout {self.config.branch}, then run again)."
            )
        if head != self.expected_head:
            raise GitStateError(
                f"{self.config.branch} moved to {(head or '?')[:7]} while the loop expected "
                f"{self.expected_head[:7]}; the loop stopped without resetting anything "
                "(run again to go on from there)."
            )
        if dirty:
            self.require_clean()

    def changed_while_proposing(self, number: int) -> str | None:
        """The model may think for minutes: what the user edited, committed or switched meanwhile, if anything.

        Asked right before the experiment's files are written, so an edit made while the model was thinking is
        never overwritten or committed with the experiment.
        """
        current, head, dirty = self.repo.position()
        branch = self.config.branch
        if current == branch and head == self.expected_head and not dirty:
            return None
        during = f"while the model was proposing experiment #{number}"
        if current != branch:
            where = f"switched to {current}" if current else "put on a detached HEAD"
            return (
                f"The repository was {where} {during}; the loop stopped without committing anything "
                f"(git checkout {branch}, then run again)."
            )
        if head != self.expected_head:
            return (
                f"{branch} moved to {(head or '?')[:7]}, a commit autoresearch did not make, {during}; the loop "
                "stopped without committing anything and your commit stays (run again to go on from it)."
            )
        shown = ", ".join(dirty[:3]) + (" ..." if len(dirty) > 3 else "")
        return (
            f"{shown} changed {during}; the loop stopped without writing anything, so your edit is untouched "
            "(commit it or stash it (git stash), then run again)."
        )

    def read_editable(self) -> dict[str, str]:
        files = {}
        for path in self.config.editable_files:
            try:
                files[path] = read_exact(self.root / path)
            except OSError:
                continue
        return files

    def files_at(self, commit: str) -> dict[str, str]:
        """The editable files at `commit`; a commit named by its full hash never changes, so it is read once."""
        if not commit:
            return {}
        if commit in self._files_at:
            return dict(self._files_at[commit])
        found = {}
        for path in self.config.editable_files:
            text = self.repo.show_file(commit, path)
            if text is not None:
                found[path] = text
        if _FULL_HASH.fullmatch(commit):
            if len(self._files_at) >= 32:
                self._files_at.pop(next(iter(self._files_at)))
            self._files_at[commit] = dict(found)
        return found

    def write_files(self, files: Mapping[str, str]) -> None:
        for path, text in files.items():
            target = self.root / path
            tmp = target.with_name(f".{target.name}.autoresearch.tmp")
            try:
                write_exact(tmp, text)
                with contextlib.suppress(OSError):
                    os.chmod(tmp, target.stat().st_mode)
                os.replace(tmp, target)
            except OSError:
                tmp.unlink(missing_ok=True)
                raise

    def restore(self, commit: str, paths: list[str]) -> bool:
        try:
            self.repo.run("checkout", commit, "--", *paths)
        except GitCommandError:
            return False
        return True

    def claim(self, number: int) -> None:
        """Never overwrite the record of an experiment that was judged (results.tsv lost its row meanwhile)."""
        meta = self.history.load_meta(number)
        if meta is not None and meta.status in STATUSES:
            raise UserError(
                f"Experiment #{number} is already recorded in .autoresearch/experiments/{number:04d}, but "
                f"{RESULTS_FILE} has only {number - 1} rows; the loop stopped without overwriting it "
                f"(restore {RESULTS_FILE}, then run again)."
            )

    def reset_to_parent(self, meta: ExperimentMeta) -> TakeOff:
        """Take the experiment commit off the branch, only if the branch is still exactly at it."""
        copies = self.history.edit_copies_dir(meta.number)
        taken = take_off(self.repo, self.config.branch, meta.commit, meta.parent, copies)
        if taken.done:
            self.expected_head = meta.parent
        if taken.elsewhere:
            self._emit(
                ev.Info(
                    f"#{meta.number} taken off {self.config.branch} by its ref alone: the repository is on "
                    f"{taken.elsewhere}, which was left as it is"
                )
            )
        return taken

    def revert_unrecorded(self, meta: ExperimentMeta) -> None:
        taken = self.reset_to_parent(meta) if meta.kind != "baseline" else None
        if taken is None or taken.outcome in ("done", "moved"):
            self.history.clear_journal()
        self._emit(
            ev.Info(f"#{meta.number} interrupted: not recorded; its commit stays at {meta.ref or meta.commit[:7]}")
        )

    def not_taken_off(self, taken: TakeOff, meta: ExperimentMeta, status: str) -> str:
        if taken.outcome == "moved":
            return (
                f"{self.config.branch} moved during experiment #{meta.number}; it was recorded but not reset "
                f"(its commit is {meta.ref}). Check the branch and run again."
            )
        copies = self.history.edit_copies_dir(meta.number).relative_to(self.root).as_posix()
        verdict = "discarded" if status == "discard" else "crashed"
        return sentence(taken, meta.number, meta.commit, self.config.branch, copies, verdict)
