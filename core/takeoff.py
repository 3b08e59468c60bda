"""Taking a discarded experiment's commit off the session branch without touching anything of the user's.

A plain `git reset --keep` refuses when the user edited a file the experiment changed. Then the user's edit
(made on top of the experiment) is carried over to the parent with a three-way merge, after a copy of it is
saved; when the edit overlaps the experiment's own change nothing is done, and the caller says what to do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from git.exc import GitCommandError

from .gitops import Repo, describe_git_error
from .text_files import read_exact, write_exact


@dataclass(frozen=True)
class TakeOff:
    outcome: Literal["done", "moved", "overlap", "failed"]
    edited: tuple[str, ...] = ()
    """The user's edited files: carried over onto the parent ("done"), or left untouched ("overlap")."""
    error: str = ""
    """git's own first line ("failed")."""
    elsewhere: str = ""
    """The branch the user had checked out instead, when the session's branch was moved by its ref alone."""

    @property
    def done(self) -> bool:
        return self.outcome == "done"


def take_off(repo: Repo, branch: str, commit: str, parent: str, copies: Path) -> TakeOff:
    """Move `branch` from the experiment `commit` back to its `parent`, only if it is still exactly there.

    Never resets past a commit the tool did not make: `commit` must be the branch's tip and `parent` its parent.
    A branch that is not checked out is moved by its ref alone (the user's checkout stays as it is).
    """
    where = repo.branch_head_parent(commit)
    if where is None:
        current, head, _ = repo.position()
        if repo.resolve(f"{commit}^") != parent:
            return TakeOff("moved")
    else:
        current, head, commit_parent = where
        if commit_parent != parent:
            return TakeOff("moved")
    if current != branch:
        if repo.move_branch(branch, parent, commit):
            return TakeOff("done", elsewhere=current or "a detached HEAD")
        return TakeOff("moved")
    if head != commit:
        return TakeOff("moved")
    try:
        repo.reset_keep(parent)
        _drop_leftovers(repo, commit, parent)
        return TakeOff("done")
    except GitCommandError as exc:
        error = describe_git_error(exc)
    dirty = set(repo.changed_tracked_files())
    blocked = [p for p in repo.changed_between(parent, commit) if p in dirty]
    if not blocked:
        return TakeOff("failed", error=error)
    return _carry_edits_over(repo, commit, parent, blocked, copies)


def _carry_edits_over(repo: Repo, commit: str, parent: str, blocked: list[str], copies: Path) -> TakeOff:
    mine = {path: read_exact(repo.root / path) for path in blocked}
    theirs = {path: repo.show_file(parent, path) or "" for path in blocked}
    # A file already at the parent's version is what an earlier reset that failed half-way left, not an edit.
    edited = [path for path in blocked if mine[path] != theirs[path]]
    for path in edited:
        _keep_copy(repo.root / path, copies / path)
    merged: dict[str, str] = {}
    for path in edited:
        text = repo.merge_texts(theirs[path], repo.show_file(commit, path) or "", mine[path], copies / ".merge")
        if text is None:
            return TakeOff("overlap", tuple(edited))
        merged[path] = text
    with contextlib.suppress(OSError):
        (copies / ".merge").rmdir()
    try:
        repo.run("checkout", commit, "--", *blocked)
        repo.reset_keep(parent)
    except GitCommandError as exc:
        _write(repo.root, {path: mine[path] for path in edited})
        return TakeOff("failed", error=describe_git_error(exc))
    _write(repo.root, merged)
    return TakeOff("done", tuple(edited))


def _drop_leftovers(repo: Repo, commit: str, parent: str) -> None:
    """After a reset that an earlier failure (a full disk) left half-done, a file may still hold the experiment's
    version, uncommitted: that text is the tool's own (it is in the experiment's commit), so it goes back too."""
    dirty = set(repo.changed_tracked_files())
    if not dirty:
        return
    ours = [
        path
        for path in repo.changed_between(parent, commit)
        if path in dirty
        and (repo.root / path).is_file()
        and read_exact(repo.root / path) == repo.show_file(commit, path)
    ]
    if ours:
        repo.run("checkout", parent, "--", *ours)


def _keep_copy(source: Path, target: Path) -> None:
    """Copy the user's file, never over an earlier copy that differs (it may be the only one of an older edit)."""
    n = 1
    candidate = target
    while candidate.exists() and candidate.read_bytes() != source.read_bytes():
        n += 1
        candidate = target.with_name(f"{target.name}.{n}")
    candidate.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, candidate)


def _write(root: Path, files: dict[str, str]) -> None:
    """Write beside, then rename: a full disk leaves the file as it was, never cut short."""
    for path, text in files.items():
        target = root / path
        tmp = target.with_name(f".{target.name}.autoresearch.tmp")
        try:
            write_exact(tmp, text)
            shutil.copymode(target, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def sentence(result: TakeOff, number: int, commit: str, branch: str, copies: str, verdict: str = "discarded") -> str:
    """What the user reads when a take-off needs them (an overlap or a git failure) or kept their edit."""
    files = ", ".join(result.edited)
    if result.outcome == "overlap":
        return (
            f"You edited {files} during experiment #{number} in lines the experiment changed too, so the {verdict} "
            f"experiment ({commit[:7]}) is still on {branch}; your edit is untouched (a copy is in {copies}): "
            "put it aside (git stash) and run again, which takes the experiment off first."
        )
    if result.outcome == "failed":
        return (
            f"git could not take {verdict} experiment #{number} ({commit[:7]}) off {branch} ({result.error}); "
            "fix that (free disk space if the disk is full) and run again, which takes it off first."
        )
    return (
        f"You edited {files} during experiment #{number}, which was {verdict}: it is off {branch} now and your edit "
        f"is kept, uncommitted, on top of the last kept version (a copy is in {copies}); commit it or stash it "
        "(git stash), then run again."
    )
