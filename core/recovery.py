"""Making a session consistent after the tool itself died (kill -9, power cut, SSH dropped without tmux)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

from git.exc import GitCommandError

from .config import DEFAULT_RAY_ADDRESS, STATE_DIR, SessionConfig
from .errors import GitStateError, UserError
from .gitops import Repo
from .history import History
from .results import read_results, repair_torn_tail
from .runner import kill_recorded
from .takeoff import sentence, take_off
from .worktrees import left_workers, remove_worker

RAY_NOTE = "ray-address"


def recover(repo: Repo, config: SessionConfig, history: History, results_path: Path) -> list[str]:
    """Repair what a dead run left behind; one line per repair, nothing when all was consistent."""
    repaired: list[str] = []
    killed = kill_recorded(history.pids_path)
    if killed:
        repaired.append(
            f"ended {len(killed)} training process(es) left by the last run ({', '.join(map(str, killed))})"
        )
    repaired += recover_workers(repo, config.workers if config.workers > 1 else 0)
    repaired += stop_ray_jobs(config, repo.root)
    if results_path.exists() and repair_torn_tail(results_path):
        repaired.append(f"removed a half-written last row of {results_path.name}")
    repaired += _remove_partial_writes(repo.root, config)
    journal = history.read_journal()
    if journal is None:
        return repaired
    number = journal.get("number")
    parent = str(journal.get("parent") or "")
    commit = str(journal.get("commit") or "")
    ref = f"refs/autoresearch/{config.tag}/{number}"
    on_branch = repo.current_branch() == config.branch
    head = repo.head_commit()
    rows = read_results(results_path).rows if results_path.exists() else ()
    recorded = isinstance(number, int) and len(rows) >= number and commit[:7] == rows[number - 1].commit
    if journal.get("stage") == "writing" and on_branch and head == parent:
        changed = set(repo.changed_tracked_files())
        editable = [p for p in config.editable_files if p in changed]
        if editable and changed <= set(config.editable_files):
            with contextlib.suppress(GitCommandError):
                repo.run("checkout", parent, "--", *editable)
                repaired.append(f"restored {', '.join(editable)} to the last commit (an experiment was half-written)")
    elif journal.get("stage") == "writing" and on_branch and head and _made_by_us(repo, head, parent, journal):
        # Killed between `git commit` and the journal's next step: the commit exists but never ran.
        repo.update_ref(ref, head)
        kept = _take_off(repo, config, history, number, head, parent, "interrupted")
        if kept is not None:
            repaired.append(
                f"reverted experiment #{number} ({head[:7]}), which was committed but never run; it stays at {ref}"
                + kept
            )
    elif commit and commit != parent and repo.resolve(f"refs/heads/{config.branch}") == commit:
        status = rows[number - 1].status if recorded and isinstance(number, int) else None
        if status not in ("keep", "baseline"):
            if repo.resolve(ref) != commit:
                repo.update_ref(ref, commit)
            verdict = {"discard": "discarded", "crash": "crashed"}.get(status or "", "interrupted")
            kept = _take_off(repo, config, history, number, commit, parent, verdict)
            if kept is None:
                pass
            elif status is None:
                repaired.append(
                    f"reverted experiment #{number} ({commit[:7]}), which had no results row; it stays at {ref}{kept}"
                )
            else:
                repaired.append(f"finished resetting {status} experiment #{number} ({commit[:7]}){kept}")
    elif not recorded and isinstance(number, int):
        repaired.append(f"experiment #{number} was interrupted before it was recorded; it will be run anew")
    history.clear_journal()
    return repaired


def recover_workers(repo: Repo, keep: int) -> list[str]:
    """End what any worker's last run left (whatever session or `workers` setting started it) and remove the
    worker directories beyond the first `keep` (every one when the session runs without workers)."""
    repaired: list[str] = []
    for worker in left_workers(repo.root):
        killed = kill_recorded(worker.pid_file)
        if killed:
            repaired.append(f"ended {len(killed)} process(es) left by worker {worker.index}'s last run")
        if worker.index > keep:
            remove_worker(repo, worker)
            repaired.append(f"removed worker {worker.index}'s worktree (the session now runs {_workers(keep)})")
    return repaired


def stop_ray_jobs(config: SessionConfig, root: Path) -> list[str]:
    """Stop this repository's Ray jobs that a tool which died left running, whatever the current executor (after
    kill -9 with the Ray executor and `config executor local`, they would hold the cluster's GPUs).

    A start with the Ray executor notes the cluster's address in `.autoresearch/ray-address` (that executor stops
    its jobs itself, core/execution.py); a start with another executor looks there while that note exists, and
    drops it once the cluster answered. Nothing when Ray is not installed.
    """
    note = root / STATE_DIR / RAY_NOTE
    if config.executor == "ray":
        address = config.ray_address or os.environ.get("RAY_ADDRESS") or DEFAULT_RAY_ADDRESS
        with contextlib.suppress(OSError):
            note.write_text(address + "\n", encoding="utf-8")
        return []
    if not note.exists() or importlib.util.find_spec("ray") is None:
        return []
    from .ray_executor import executor_for

    address = ""
    with contextlib.suppress(OSError):
        address = note.read_text(encoding="utf-8").strip()
    try:
        stopped = executor_for(config.model_copy(update={"ray_address": address}), root).recover()
    except UserError:  # the cluster does not answer now: look again at the next start
        return []
    note.unlink(missing_ok=True)
    if not stopped:
        return []
    return [f"stopped {len(stopped)} cluster job(s) left running by the last run on Ray ({', '.join(stopped)})"]


def _workers(count: int) -> str:
    return "without workers" if count == 0 else f"{count} worker{'s' if count != 1 else ''}"


def _take_off(
    repo: Repo, config: SessionConfig, history: History, number: object, commit: str, parent: str, verdict: str
) -> str | None:
    """Take the journal's experiment off the branch; raise with what to do (the journal stays) when it cannot.

    Returns the end of the repair's line (empty, or a note that the user's edit was kept on top), or None when
    the branch is no longer at the experiment (the user moved it: nothing to take off).
    """
    n = number if isinstance(number, int) else 0
    copies = history.edit_copies_dir(n)
    taken = take_off(repo, config.branch, commit, parent, copies)
    if taken.outcome in ("overlap", "failed"):
        shown = copies.relative_to(repo.root).as_posix()
        raise GitStateError(sentence(taken, n, commit, config.branch, shown, verdict))
    if not taken.done:
        return None
    if taken.edited:
        return f" (your uncommitted edit of {', '.join(taken.edited)} is kept on top of the last kept version)"
    return ""


def _made_by_us(repo: Repo, head: str, parent: str, journal: dict[str, object]) -> bool:
    """Whether HEAD is the experiment commit the journal announced: a child of its parent, with its message."""
    if not parent or repo.resolve(f"{head}^") != parent:
        return False
    subject = " ".join(repo.commit_message(head).split())
    expected = journal.get("message")
    if isinstance(expected, str):
        return subject == " ".join(expected.split())
    return subject.startswith("exp:")


def _remove_partial_writes(root: Path, config: SessionConfig) -> list[str]:
    """The loop writes each file beside itself first, then renames it into place; drop what a crash left."""
    removed = []
    for path in config.editable_files:
        target = root / path
        partial = target.with_name(f".{target.name}.autoresearch.tmp")
        with contextlib.suppress(OSError):
            partial.unlink()
            removed.append(f"removed a half-written copy of {path}")
    return removed
