"""The few git operations the loop needs, each checked, through GitPython's command runner."""

from __future__ import annotations

import os
from pathlib import Path

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from .errors import GitStateError

# Experiment commits are the tool's own: no hooks that could refuse or rewrite them (--no-verify alone still
# runs prepare-commit-msg and post-commit), no signing prompt that could hang.
_COMMIT_OPTS = ("-c", "commit.gpgsign=false", "-c", f"core.hooksPath={os.devnull}")
# `git status` refreshes the index when it can; these queries must never write (nor take the user's index lock).
_READ_ONLY = ("--no-optional-locks",)
_DISK_FULL = ("No space left on device", "Out of diskspace", "Disk quota exceeded")
_NEARLY_FULL_BYTES = 1 << 20
_FALLBACK_IDENTITY = ("-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost")


def _first_line(exc: GitCommandError) -> str:
    text = (exc.stderr or exc.stdout or "").strip()
    for line in text.splitlines():
        line = line.strip().removeprefix("stderr: ").strip("'").strip()
        if line:
            return line
    return f"git exited with status {exc.status}"


class Repo:
    """A non-bare git repository with a work tree, found from `path` or one of its parents."""

    def __init__(self, path: Path) -> None:
        try:
            repo = git.Repo(path, search_parent_directories=True)
        except (InvalidGitRepositoryError, NoSuchPathError):
            raise GitStateError(
                f"{path} is not inside a git repository; run `git init` and commit your training code first."
            ) from None
        if repo.bare or repo.working_tree_dir is None:
            raise GitStateError(
                f"{path} is a bare git repository; clone it (git clone) and run autoresearch in the clone."
            )
        self.root = Path(repo.working_tree_dir).resolve()
        self._git = git.Git(str(self.root))
        self._identity: tuple[str, ...] | None = None
        self._pin: tuple[str, ...] = ()

    @classmethod
    def pinned(cls, tree: Path, git_dir: Path) -> Repo:
        """A work tree whose every git command names its git directory and work tree, so git never searches for
        a repository: a tree whose `.git` file is gone or wrong cannot lead a command to the one around it."""
        repo = cls.__new__(cls)
        repo.root = tree.resolve()
        repo._git = git.Git(str(repo.root))
        repo._identity = None
        repo._pin = ("--git-dir", str(git_dir), "--work-tree", str(repo.root))
        return repo

    def run(self, *args: str, strip: bool = True) -> str:
        out: str = self._git.execute(["git", *self._pin, *args], strip_newline_in_stdout=strip)
        return out

    def try_run(self, *args: str) -> str | None:
        try:
            return self.run(*args)
        except GitCommandError:
            return None

    # Where we are.

    def head_commit(self) -> str | None:
        return self.try_run("rev-parse", "--verify", "-q", "HEAD^{commit}")

    def current_branch(self) -> str | None:
        """The checked-out branch, or None on a detached HEAD."""
        ref = self.try_run("symbolic-ref", "-q", "HEAD")
        return ref.removeprefix("refs/heads/") if ref else None

    def branch_exists(self, name: str) -> bool:
        return self.try_run("rev-parse", "--verify", "-q", f"refs/heads/{name}") is not None

    def changed_tracked_files(self) -> list[str]:
        """Tracked files with uncommitted changes (staged or not); untracked files are the user's business."""
        out = self.run(*_READ_ONLY, "status", "--porcelain", "-z", "--untracked-files=no", strip=False)
        entries = [e for e in out.split("\0") if e]
        return [e[3:] for e in entries if len(e) > 3]

    def position(self) -> tuple[str | None, str | None, list[str]]:
        """(branch or None when detached, HEAD commit or None, changed tracked files) from one git call."""
        out = self.run(*_READ_ONLY, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=no", strip=False)
        branch: str | None = None
        head: str | None = None
        changed: list[str] = []
        records = out.split("\0")
        i = 0
        while i < len(records):
            record = records[i]
            i += 1
            if record.startswith("# branch.oid "):
                oid = record[len("# branch.oid ") :]
                head = None if oid == "(initial)" else oid
            elif record.startswith("# branch.head "):
                name = record[len("# branch.head ") :]
                branch = None if name == "(detached)" else name
            elif record[:2] == "1 ":
                changed.append(record.split(" ", 8)[8])
            elif record[:2] == "2 ":
                changed.append(record.split(" ", 9)[9])
                i += 1
            elif record[:2] == "u ":
                changed.append(record.split(" ", 10)[10])
        return branch, head, changed

    def branch_head_parent(self, commit: str) -> tuple[str | None, str, str] | None:
        """(branch or None when detached, HEAD commit, `commit`'s parent) from one git call; None when one of
        them does not resolve (no HEAD yet, a root commit)."""
        out = self.try_run("rev-parse", "HEAD", f"{commit}^", "--symbolic-full-name", "HEAD")
        lines = (out or "").splitlines()
        if len(lines) != 3:
            return None
        head, parent, name = lines
        return (name.removeprefix("refs/heads/") if name.startswith("refs/heads/") else None), head, parent

    def git_dir(self) -> Path:
        """This work tree's own git directory (a linked worktree has its own)."""
        return Path(self.run("rev-parse", "--absolute-git-dir"))

    def is_tracked(self, path: str) -> bool:
        return bool(self.try_run("ls-files", "--error-unmatch", "--", path))

    def untracked_message(self, path: str) -> str:
        """Why an editable file cannot be used when git does not track it, and what to do."""
        folder = (self.root / path).parent
        while folder != self.root and self.root in folder.parents:
            if (folder / ".git").exists():
                inner = folder.relative_to(self.root).as_posix()
                return (
                    f"{path} is inside {inner}, a git repository of its own (a submodule or a nested clone), "
                    f"where this session cannot commit; run autoresearch inside {inner} instead (cd {inner})."
                )
            folder = folder.parent
        return (
            f"{path} is not committed to git; commit it first (git add {path} && git commit), "
            "so experiments can be reset safely."
        )

    def tracked_files(self) -> list[str]:
        return [p for p in self.run("ls-files", "-z", strip=False).split("\0") if p]

    def resolve(self, rev: str) -> str | None:
        return self.try_run("rev-parse", "--verify", "-q", f"{rev}^{{commit}}")

    def commit_message(self, commit: str) -> str:
        return self.run("log", "-1", "--format=%s", commit)

    # Changing things.

    def _identity_opts(self) -> tuple[str, ...]:
        if self._identity is None:
            has_name = self.try_run("config", "user.name")
            has_email = self.try_run("config", "user.email")
            env_ok = os.environ.get("GIT_AUTHOR_EMAIL") or os.environ.get("EMAIL")
            self._identity = () if (has_name and has_email) or env_ok else _FALLBACK_IDENTITY
        return self._identity

    def commit_paths(self, paths: list[str], message: str, *, add: bool = True) -> str:
        """Commit exactly these paths (and nothing else staged) and return the new commit.

        `add=False` is for paths git already tracks: `commit -- paths` takes their content itself.
        """
        if add:
            self.run("add", "--", *paths)
        self.run(*_COMMIT_OPTS, *self._identity_opts(), "commit", "--no-verify", "-q", "-m", message, "--", *paths)
        head = self.head_commit()
        assert head is not None
        return head

    def create_branch(self, name: str) -> None:
        self.run("checkout", "-q", "-b", name)

    def checkout(self, name: str) -> None:
        self.run("checkout", "-q", name)

    def reset_keep(self, commit: str) -> None:
        """Move the branch back to `commit`, refusing (instead of overwriting) if local edits are in the way."""
        # A file rewritten with the same bytes (a restore) has a new stat, and reset --keep reads that stale stat as
        # an edit ("not uptodate") unless the index is refreshed first; a failed refresh is no reason to stop here.
        self.try_run("update-index", "-q", "--refresh")
        self.run("reset", "-q", "--keep", commit)

    def update_ref(self, ref: str, commit: str) -> None:
        self.run("update-ref", ref, commit)

    def create_ref(self, ref: str, commit: str) -> bool:
        """Point a ref that does not exist yet at `commit`; False (nothing done) when it exists already."""
        return self.try_run("update-ref", ref, commit, "") is not None

    def move_branch(self, branch: str, new: str, old: str) -> bool:
        """Point a branch that is not checked out from `old` to `new`; False (nothing done) when it is not at `old`."""
        return self.try_run("update-ref", f"refs/heads/{branch}", new, old) is not None

    def changed_between(self, old: str, new: str) -> list[str]:
        return [p for p in self.run("diff", "--name-only", "-z", old, new, strip=False).split("\0") if p]

    def merge_texts(self, ours: str, base: str, theirs: str, scratch: Path) -> str | None:
        """A three-way merge of file texts (git merge-file); None when the two sides' changes overlap."""
        scratch.mkdir(parents=True, exist_ok=True)
        paths = [scratch / name for name in ("ours", "base", "theirs")]
        for path, text in zip(paths, (ours, base, theirs), strict=True):
            path.write_text(text, encoding="utf-8", errors="surrogateescape")
        status, out, _ = self._git.execute(
            ["git", "merge-file", "-p", *map(str, paths)],
            with_extended_output=True,
            with_exceptions=False,
            strip_newline_in_stdout=False,
        )
        for path in paths:
            path.unlink(missing_ok=True)
        return str(out) if status == 0 else None

    def diff(self, old: str, new: str, paths: list[str] | None = None) -> str:
        args = ["diff", "--no-color", "--no-ext-diff", old, new]
        if paths:
            args += ["--", *paths]
        return self.run(*args, strip=False)

    def show_file(self, commit: str, path: str) -> str | None:
        try:
            return self.run("show", f"{commit}:{path}", strip=False)
        except GitCommandError:
            return None


def describe_git_error(exc: GitCommandError) -> str:
    return _first_line(exc)


def disk_full(exc: GitCommandError, where: Path | None = None) -> bool:
    """Git failed for want of space: it says so, or (some messages only say a file "couldn't write") the file
    system of `where` has almost nothing left."""
    text = f"{exc.stderr or ''}{exc.stdout or ''}"
    if any(words in text for words in _DISK_FULL):
        return True
    if where is None:
        return False
    try:
        stat = os.statvfs(where)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < _NEARLY_FULL_BYTES
