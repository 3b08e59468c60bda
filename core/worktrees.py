"""The directories parallel workers run in: one git worktree per worker under `.autoresearch/workers/<i>/tree`.

Each worktree is detached at the commit its experiment is built on, so no branch is checked out twice and the
user's checkout is never touched. What the training reads that git does not track (data files, a prepared
`train.bin`, a virtualenv inside the repository) is linked from the user's checkout into every worktree,
unchanged; the output folders named in `worker_outputs` are not linked but made fresh per worktree, so one
worker's checkpoint never lands on another's. Every run is also told `AUTORESEARCH_OUTPUT_DIR`, a folder of
its worker's own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from git.exc import GitCommandError

from .config import CONFIG_FILE, RESULTS_FILE, RUN_LOG, STATE_DIR
from .errors import UserError
from .gitops import Repo, describe_git_error

_NEVER_LINKED = {".git", STATE_DIR, RESULTS_FILE, RUN_LOG, CONFIG_FILE}


@dataclass(frozen=True)
class WorkerDir:
    index: int
    home: Path
    """`.autoresearch/workers/<i>`: the worker's tree, logs, pid file and output folder."""

    @property
    def tree(self) -> Path:
        return self.home / "tree"

    @property
    def output_dir(self) -> Path:
        return self.home / "output"

    @property
    def pid_file(self) -> Path:
        return self.home / "run.pids"

    def log(self, name: str = "run.log") -> Path:
        return self.home / "logs" / name


def workers_state_path(root: Path) -> Path:
    """What each worker does now, for `status` (written by the scheduler while a session runs)."""
    return root / STATE_DIR / "workers.json"


def workers_root(root: Path) -> Path:
    return root / STATE_DIR / "workers"


def worker_dirs(root: Path, count: int) -> list[WorkerDir]:
    return [WorkerDir(i, workers_root(root) / str(i)) for i in range(1, count + 1)]


def untracked_inputs(repo: Repo, outputs: list[str]) -> list[str]:
    """Paths in the user's checkout that git does not track (collapsed to their topmost untracked folder),
    except the session's own files and the output folders."""
    out = repo.run("ls-files", "--others", "--directory", "-z", strip=False)
    found = []
    skip = set(outputs)
    for path in (p.rstrip("/") for p in out.split("\0") if p):
        top = path.split("/", 1)[0]
        if top in _NEVER_LINKED or path in skip or top in skip:
            continue
        found.append(path)
    ignored = repo.run("ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "-z", strip=False)
    for path in (p.rstrip("/") for p in ignored.split("\0") if p):
        top = path.split("/", 1)[0]
        if top in _NEVER_LINKED or path in skip or top in skip or path in found:
            continue
        found.append(path)
    return sorted(found)


def prepare(repo: Repo, worker: WorkerDir, commit: str, outputs: list[str]) -> None:
    """Make the worker's tree a clean checkout of `commit` with the untracked inputs linked in."""
    tree = worker.tree
    try:
        if (tree / ".git").exists():
            reset_tree(worker, commit)
        else:
            if tree.exists():
                shutil.rmtree(tree)
            repo.run("worktree", "prune")
            worker.home.mkdir(parents=True, exist_ok=True)
            repo.run("worktree", "add", "-q", "--detach", "--force", str(tree), commit)
    except (GitCommandError, OSError) as exc:
        why = describe_git_error(exc) if isinstance(exc, GitCommandError) else str(exc)
        raise UserError(
            f"Could not prepare worker {worker.index}'s directory {tree} ({why}); remove it and run again."
        ) from None
    for path in untracked_inputs(repo, outputs):
        link = tree / path
        if link.is_symlink() or link.exists() or not link.parent.is_dir():
            continue
        with contextlib.suppress(OSError):
            os.symlink(repo.root / path, link)
    for name in outputs:
        with contextlib.suppress(OSError):
            (tree / name).mkdir(exist_ok=True)
    fresh_output(worker)


def fresh_output(worker: WorkerDir) -> Path:
    """The worker's AUTORESEARCH_OUTPUT_DIR, emptied for its next run."""
    out = worker.output_dir
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def reset_tree(worker: WorkerDir, commit: str) -> Repo:
    """Put the worker's tree back at `commit`, dropping what the last experiment wrote to tracked files."""
    worktree = Repo(worker.tree)
    worktree.run("checkout", "-q", "--detach", "--force", commit)
    return worktree


def remove_all(repo: Repo, root: Path) -> None:
    """Remove every worker directory and its worktree registration (the session ended)."""
    home = workers_root(root)
    if not home.is_dir():
        return
    for child in sorted(home.iterdir()):
        tree = child / "tree"
        if (tree / ".git").exists():
            with contextlib.suppress(GitCommandError):
                repo.run("worktree", "remove", "--force", str(tree))
        shutil.rmtree(child, ignore_errors=True)
    with contextlib.suppress(GitCommandError):
        repo.run("worktree", "prune")
    with contextlib.suppress(OSError):
        home.rmdir()
