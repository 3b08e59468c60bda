"""Creating a session: validate everything first, then branch, config, results header, .gitignore."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

from git.exc import GitCommandError

from .config import (
    CONFIG_FILE,
    IGNORED_PATHS,
    RESULTS_FILE,
    RUN_LOG,
    SessionConfig,
    parse_config,
    save_config,
)
from .errors import ConfigError, GitStateError
from .first_run import check_interpreter, related_files
from .gitops import Repo, describe_git_error
from .history import History
from .results import write_header
from .sandbox import check_sandbox
from .session_lock import refuse_if_held

_RUN_GOING = (
    "An autoresearch run (pid {pid}) is going on in this repository; stop it (or wait for it to end) before "
    "setting up a new session, so the two sessions' records do not mix."
)

_METRIC_LINE = re.compile(r"""print\(\s*f?["']([A-Za-z_][A-Za-z0-9_]*)\s*:""")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_METRIC_HINTS = ("val_", "valid", "test_", "eval", "accuracy", "acc", "bpb", "loss", "perplexity", "score")


def propose_tag(root: Path, today: date | None = None) -> str:
    """Today's date as `nov26`, then `nov26-2`, `nov26-3`... when a branch of that name exists."""
    day = today or date.today()
    base = f"{_MONTHS[day.month - 1]}{day.day:02d}"  # not strftime: %b follows the locale
    repo = Repo(root)
    tag, n = base, 1
    while repo.branch_exists(f"autoresearch/{tag}"):
        n += 1
        tag = f"{base}-{n}"
    return tag


def infer_metric_name(script_text: str) -> str | None:
    """A metric name when the script plainly prints `name: value` lines, preferring validation-like names."""
    names = _METRIC_LINE.findall(script_text)
    if not names:
        return None
    for hint in _METRIC_HINTS:
        for name in reversed(names):
            if hint in name.lower():
                return str(name)
    return None


def seed_plan(root: Path, config: SessionConfig) -> tuple[str | None, str]:
    """(seed_via, a sentence for setup) from the script and the run command (core/seeds.py)."""
    from .knobs import config_files_in
    from .seeds import find_seed

    root = Repo(root).root
    files: dict[str, str] = {}
    for path in [config.script_path, *config_files_in(config.run_command)]:
        with contextlib.suppress(OSError):
            files[path] = (root / path).read_text(encoding="utf-8", errors="surrogateescape")
    return find_seed(files, config.run_command, config.script_path)


def repo_files(root: Path) -> list[str]:
    return Repo(root).tracked_files()


def _inside(root: Path, rel: str, what: str, cwd: Path | None = None) -> str:
    """The path relative to the repository root, refusing anything that leaves it.

    A relative path means what it means in the user's shell (from `cwd`), or else from the repository root.
    """
    candidate = Path(rel)
    full = candidate if candidate.is_absolute() else root / candidate
    if cwd is not None and not candidate.is_absolute() and (cwd / candidate).exists():
        full = cwd / candidate
    try:
        resolved = full.resolve()
        inside = resolved.relative_to(root)
    except (ValueError, OSError):
        raise ConfigError(f"{what} {rel} is outside the repository {root}; list files inside it.") from None
    if not resolved.is_file():
        raise ConfigError(f"{what} {rel} does not exist; check the path (relative to here or to {root}).")
    return inside.as_posix()


def plan_session(root: Path, script: str, **options: Any) -> SessionConfig:
    """Validate a session without writing anything. Options are SessionConfig keys."""
    repo = Repo(root)
    cwd = Path(root).resolve()
    root = repo.root
    if repo.head_commit() is None:
        raise GitStateError("The repository has no commits yet; commit your training code first (git commit).")
    refuse_if_held(repo, _RUN_GOING)
    data: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    script_rel = _inside(root, script, "The script", cwd)
    data["script_path"] = script_rel
    if "metric_name" not in data:
        try:
            guess = infer_metric_name((root / script_rel).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            guess = None
        if guess is None:
            raise ConfigError(
                "No metric name given and none could be guessed from the script; pass --metric NAME (e.g. val_loss)."
            )
        data["metric_name"] = guess
    if not str(data.get("metric_name", "")).strip():
        raise ConfigError(
            "The metric name is empty; pass --metric NAME with the name the script prints, e.g. val_loss."
        )
    data.setdefault("tag", propose_tag(root))
    if data.get("model") and "agent" not in data:
        data["agent"] = "llm"
    if data.get("agent") == "llm" and not data.get("model"):
        raise ConfigError("The llm agent needs a model; pass --model NAME (e.g. openai/gpt-4o-mini) or --agent mutate.")
    for key, what in (("editable_files", "The editable file"), ("readonly_files", "The readonly file")):
        if key in data:
            data[key] = [_inside(root, p, what, cwd) for p in data[key]]
    config = parse_config(data, source="")
    if "seed_via" not in data:
        config = config.model_copy(update={"seed_via": seed_plan(root, config)[0]})
    _offer_related_files(repo, config, data)
    for path in config.editable_files:
        if not repo.is_tracked(path):
            raise GitStateError(repo.untracked_message(path))
        if path in config.readonly_files:
            raise ConfigError(f"{path} is listed as both editable and readonly; keep it in one list.")
    if repo.branch_exists(config.branch):
        raise GitStateError(
            f"Branch {config.branch} already exists; choose another tag (--tag) or continue it with autoresearch run."
        )
    if repo.current_branch() is None:
        raise GitStateError("HEAD is detached; check out a branch first (git checkout main).")
    if repo.is_tracked(RUN_LOG):
        raise GitStateError(
            f"{RUN_LOG} is tracked by git, but every run rewrites it, so the working tree would never be clean; "
            f"untrack it (git rm --cached {RUN_LOG} && git commit) and run setup again."
        )
    dirty = repo.changed_tracked_files()
    if dirty:
        shown = ", ".join(dirty[:3]) + (" ..." if len(dirty) > 3 else "")
        raise GitStateError(
            f"The working tree has uncommitted changes ({shown}); commit or stash them first (git stash)."
        )
    check_sandbox(config)
    problem = check_interpreter(root, config) if config.executor == "local" else None  # else: the cluster's python
    if problem:
        raise ConfigError(problem)
    if config.executor == "ray":
        from .ray_executor import executor_for

        executor_for(config, root).check()
    return config


def _offer_related_files(repo: Repo, config: SessionConfig, given: dict[str, Any]) -> None:
    """Config files the run command names become editable, files the script reads readonly, unless listed."""
    tracked = [p for p in repo.tracked_files() if p not in config.referee_files]  # never offered to the model
    editable, readonly = related_files(repo.root, config.script_path, config.run_command, tracked)
    if "editable_files" not in given and editable:
        config.editable_files = [*config.editable_files, *(p for p in editable if p not in config.editable_files)]
    if "readonly_files" not in given:
        offered = [p for p in readonly if p not in config.editable_files]
        if offered:
            config.readonly_files = offered


def _gitignore_additions(root: Path) -> list[str]:
    path = root / ".gitignore"
    present = set()
    if path.exists():
        present = {ln.strip().rstrip("/") for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()}
    return [p for p in IGNORED_PATHS if p.rstrip("/") not in present and "/" + p.rstrip("/") not in present]


def create_session(root: Path, config: SessionConfig) -> None:
    """Create the branch, write the config and results header, and commit the .gitignore lines."""
    repo = Repo(root)
    refuse_if_held(repo, _RUN_GOING)
    root = repo.root
    for name in (CONFIG_FILE, RESULTS_FILE):
        existing = root / name
        if existing.exists() and repo.is_tracked(name):
            raise GitStateError(f"{name} is tracked by git; remove it from the index first (git rm --cached {name}).")
    start = repo.current_branch()
    gitignore = root / ".gitignore"
    before = gitignore.read_bytes() if gitignore.exists() else None
    repo.create_branch(config.branch)
    additions = _gitignore_additions(root)
    if additions:
        text = before.decode("utf-8", errors="surrogateescape") if before is not None else ""
        if text and not text.endswith("\n"):
            text += "\n"
        text += "# autoresearch session files\n" + "".join(p + "\n" for p in additions)
        gitignore.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            repo.commit_paths([".gitignore"], "autoresearch: ignore session files")
        except GitCommandError as exc:
            _undo_branch(repo, start, config.branch, gitignore, before)
            raise GitStateError(
                f"git could not commit the .gitignore lines ({describe_git_error(exc)}); nothing was changed, "
                "fix the repository and run setup again."
            ) from None
    _archive_previous_session(root)
    save_config(root, config)
    write_header(root / RESULTS_FILE, config.metric_name)
    History(root).ensure()


def _undo_branch(repo: Repo, start: str | None, branch: str, gitignore: Path, before: bytes | None) -> None:
    with contextlib.suppress(GitCommandError):
        repo.run("reset", "-q", "--", ".gitignore")
    if before is None:
        gitignore.unlink(missing_ok=True)
    else:
        gitignore.write_bytes(before)
    with contextlib.suppress(GitCommandError):
        if start:
            repo.checkout(start)
        repo.run("branch", "-q", "-D", branch)


def _archive_previous_session(root: Path) -> None:
    """Move an earlier session's files to .autoresearch/archive/<tag>/ so nothing of it is overwritten."""
    history = History(root)
    old_files = [root / CONFIG_FILE, root / RESULTS_FILE, history.experiments_dir]
    if not any(p.exists() for p in old_files):
        return
    old_tag = "previous"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        old_tag = str(json.loads((root / CONFIG_FILE).read_text(encoding="utf-8")).get("tag") or old_tag)
    dest = history.dir / "archive" / old_tag
    n = 1
    while dest.exists():
        n += 1
        dest = history.dir / "archive" / f"{old_tag}-{n}"
    dest.mkdir(parents=True)
    for path in old_files:
        if path.exists():
            path.rename(dest / path.name)


def setup_session(root: Path, script: str, **options: Any) -> SessionConfig:
    config = plan_session(root, script, **options)
    create_session(root, config)
    return config
