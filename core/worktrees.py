"""The directories parallel workers run in: one git worktree per worker under `.autoresearch/workers/<i>/tree`.

Each worktree is detached at the commit its experiment is built on, so no branch is checked out twice and the
user's checkout is never touched. What the training reads that git does not track (data files, a prepared
`train.bin`, a virtualenv inside the repository) is linked from the user's checkout into every worktree,
unchanged; the output folders named in `worker_outputs` are not linked but made fresh per worktree, so one
worker's checkpoint never lands on another's. Every run is also told `AUTORESEARCH_OUTPUT_DIR`, a folder of
its worker's own.

A worktree lives inside the user's checkout, so git's search for a repository from a tree whose `.git` file a
training deleted or rewrote would end at the user's: every git command on a tree therefore names the tree's own
git directory (as the checkout's repository registered it) and work tree, and the tree's `.git` file is written
again before each use.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from git.exc import GitCommandError

from .config import CONFIG_FILE, RESULTS_FILE, RUN_LOG, STATE_DIR
from .errors import UserError
from .gitops import Repo, describe_git_error
from .history import History

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

    @property
    def checkout(self) -> Path:
        """The user's checkout the worker belongs to (`<checkout>/.autoresearch/workers/<i>`)."""
        return self.home.parents[2]

    def log(self, name: str = "run.log") -> Path:
        return self.home / "logs" / name


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


def registered_git_dir(repo: Repo, tree: Path) -> Path | None:
    """The tree's own git directory, found from what the checkout's repository recorded for it (never from the
    tree's `.git` file, which a training may have deleted or rewritten); None when it is not registered."""
    common = Path(repo.run("rev-parse", "--git-common-dir"))
    home = (common if common.is_absolute() else repo.root / common) / "worktrees"
    target = (tree / ".git").resolve()
    for entry in sorted(home.iterdir()) if home.is_dir() else ():
        with contextlib.suppress(OSError):
            if Path((entry / "gitdir").read_text(encoding="utf-8").strip()).resolve() == target:
                return entry
    return None


def tree_repo(repo: Repo, worker: WorkerDir) -> Repo | None:
    """The worker's tree with every git command pinned to it, its `.git` file written again; None when the
    tree or its registration is gone (then it is built anew)."""
    tree = worker.tree
    git_dir = registered_git_dir(repo, tree) if tree.is_dir() else None
    if git_dir is None:
        return None
    dot_git = tree / ".git"
    pointer = f"gitdir: {git_dir}\n"
    if dot_git.is_symlink():  # written through, it would change what it points to
        dot_git.unlink()
    elif dot_git.is_dir():
        shutil.rmtree(dot_git)
    if not dot_git.exists() or dot_git.read_text(encoding="utf-8", errors="replace") != pointer:
        dot_git.write_text(pointer, encoding="utf-8")
    return Repo.pinned(tree, git_dir)


def session_began(root: Path) -> float | None:
    """When the session's first run (its baseline) started; None before there is one. From its exact start when
    recorded: a file written a moment before the session (the last input the user made) is an input, not an
    output of the runs; older sessions have only the second, read a second early."""
    meta = History(root).load_meta(1)
    exact = meta.extra.get("started_ts") if meta else None
    if isinstance(exact, int | float):
        return float(exact)
    try:
        return datetime.fromisoformat(meta.started_at).timestamp() - 1.0 if meta and meta.started_at else None
    except ValueError:
        return None


def written_since(path: Path, since: float, limit: int = 20000) -> bool:
    """Whether a file at or under `path` was written at `since` or later (looking at `limit` entries at most)."""
    stack, seen = [path], 0
    while stack and seen < limit:
        current = stack.pop()
        try:
            if current.is_symlink():
                continue
            if current.is_dir():
                children = list(os.scandir(current))
                seen += len(children)
                stack += [Path(c.path) for c in children]
            elif current.stat().st_mtime >= since:
                return True
        except OSError:
            continue
    return False


def prepare(repo: Repo, worker: WorkerDir, commit: str, outputs: list[str]) -> None:
    """Make the worker's tree a clean checkout of `commit` with the untracked inputs linked in."""
    tree = worker.tree
    try:
        if tree_repo(repo, worker) is not None:
            reset_tree(worker, commit, repo)
        else:
            if tree.exists():
                shutil.rmtree(tree)
            repo.run("worktree", "prune")
            worker.home.mkdir(parents=True, exist_ok=True)
            repo.run("worktree", "add", "-q", "--detach", "--force", str(tree), commit)
            reset_tree(worker, commit, repo)
    except (GitCommandError, OSError) as exc:
        why = describe_git_error(exc) if isinstance(exc, GitCommandError) else str(exc)
        raise UserError(
            f"Could not prepare worker {worker.index}'s directory {tree} ({why}); remove it and run again."
        ) from None
    since = session_began(repo.root)
    for path in untracked_inputs(repo, outputs):
        link = tree / path
        if since is not None and written_since(repo.root / path, since):
            # The session's own runs write there (nanoGPT's out-shakespeare-char/ckpt.pt): a folder of the
            # worker's own, never a link through which a run would write into the user's checkout.
            with contextlib.suppress(OSError):
                if link.is_symlink():
                    link.unlink()
                if (repo.root / path).is_dir() and link.parent.is_dir():
                    link.mkdir(exist_ok=True)
            continue
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


def reset_tree(worker: WorkerDir, commit: str, repo: Repo | None = None) -> Repo:
    """Put the worker's tree back at `commit`, dropping what the last experiment wrote to tracked files (and
    writing its `.git` file again); a tree whose registration is gone stops the session with one sentence."""
    worktree = tree_repo(repo or Repo(worker.checkout), worker)
    if worktree is None:
        raise UserError(
            f"Worker {worker.index}'s worktree {worker.tree} is gone (a run removed it or its git registration); "
            "run again to rebuild it."
        )
    worktree.run("checkout", "-q", "--detach", "--force", commit)
    if (worker.tree / ".gitmodules").is_file():
        check_out_submodules(worktree, worker)
    with contextlib.suppress(OSError):
        (worker.tree / RUN_LOG).unlink()  # a script's own ./run.log is read only from the run that wrote it
    return worktree


def check_out_submodules(worktree: Repo, worker: WorkerDir) -> None:
    """The tree's submodules at the commits it records, cloned from those checked out in the user's checkout
    (offline, and the commits are there) or else from their URLs, what a run changed in them dropped."""
    listed = worktree.try_run("config", "-f", ".gitmodules", "--get-regexp", r"^submodule\..*\.path$") or ""
    urls: list[str] = []
    for line in listed.splitlines():
        key, _, path = line.partition(" ")
        source = worker.checkout / path
        if (source / ".git").exists():
            urls += ["-c", f"{key.removesuffix('.path')}.url={source}"]
    try:
        worktree.run(
            "-c", "protocol.file.allow=always", *urls, "submodule", "update", "--init", "--recursive", "--force"
        )
    except GitCommandError as exc:
        raise UserError(
            f"Worker {worker.index} could not check out the submodules in its worktree ({describe_git_error(exc)}); "
            "run `git submodule update --init` in your checkout, or run without workers (autoresearch config "
            "workers 1)."
        ) from None


def own_run_log(worker: WorkerDir) -> Path | None:
    """The `./run.log` a script wrote itself in its worker's tree (in the checkout that is where the tool's log
    is, so a metric written there is read there); None when it wrote none."""
    path = worker.tree / RUN_LOG
    return path if path.is_file() and not path.is_symlink() else None


_RELATIVE_OUT = re.compile(r"""(?<![^\s=:'"])\.\.(?:/[^\s;|&<>()'"`$]*)?""")


def worker_command(command: str, checkout: Path) -> str:
    """`command` as a worker's tree runs it: a relative path that leads out of the checkout (a
    `../venv/bin/python`) is made absolute, since from the tree, deeper inside the checkout, it would lead
    elsewhere. Paths inside the checkout need nothing: the tree has the same files, or links to them."""
    root = checkout.resolve()

    def absolute(match: re.Match[str]) -> str:
        target = (root / match.group(0)).resolve()
        if target == root or root in target.parents or not os.path.lexists(target):
            return match.group(0)
        return shlex.quote(str(target))

    return _RELATIVE_OUT.sub(absolute, command)


def left_workers(root: Path) -> list[WorkerDir]:
    """Every worker directory on disk, whatever session or setting made it (numbered ones, in order)."""
    home = workers_root(root)
    if not home.is_dir():
        return []
    found = [WorkerDir(int(d.name), d) for d in home.iterdir() if d.is_dir() and d.name.isdigit()]
    return sorted(found, key=lambda w: w.index)


def remove_worker(repo: Repo, worker: WorkerDir) -> None:
    """Remove one worker's directory and its worktree registration (and the workers' folder, left empty)."""
    if registered_git_dir(repo, worker.tree) is not None:
        with contextlib.suppress(GitCommandError):
            repo.run("worktree", "remove", "--force", str(worker.tree))
    shutil.rmtree(worker.home, ignore_errors=True)
    with contextlib.suppress(OSError):
        worker.home.parent.rmdir()
    with contextlib.suppress(GitCommandError):
        repo.run("worktree", "prune")


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
