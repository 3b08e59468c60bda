"""The lock a running loop holds, so a second run or a new `setup` cannot mix its records with the run's.

It lives in the repository's git directory, not in `.autoresearch/`: deleting that folder during a run
(which the loop survives) must not delete the lock with it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import UserError
from .gitops import Repo

LOCK_NAME = "autoresearch.lock"


def lock_path(repo: Repo) -> Path:
    return repo.git_dir() / LOCK_NAME


class SessionLock:
    """An exclusive flock on the session; the holder's pid is written in the file for the refusal's sentence."""

    def __init__(self, repo: Repo) -> None:
        self.path = lock_path(repo)
        self._fd: int | None = None

    def acquire(self, refusal: str) -> None:
        """Take the lock or raise UserError(refusal), where `{pid}` in `refusal` names the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(refusal.format(pid=holder)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def holder(repo: Repo) -> str | None:
    """The pid of the run holding the lock ("?" when unreadable), None when no run holds it; creates nothing."""
    try:
        fd = os.open(lock_path(repo), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 32).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)
    return None


def refuse_if_held(repo: Repo, refusal: str) -> None:
    """Raise UserError(refusal) while a run holds the lock; creates nothing (a refusal must leave no trace)."""
    pid = holder(repo)
    if pid is not None:
        raise UserError(refusal.format(pid=pid))
