"""A first run that says what to fix: checks at setup, a short trial run, and the sentence for a failed baseline.

- `related_files`: what setup offers beside the script: the config files the run command names (editable,
  their knobs live there) and the files the script reads as context (its local imports, files it `exec`s
  such as nanoGPT's configurator.py, a `program.md`), read-only.
- `check_interpreter`: the run command's python exists and finds the script's top-level imports
  (importlib.util.find_spec, run by that interpreter), or one sentence naming the run command.
- `trial_run`: `setup --check` runs the command once and shows the metric line it found.
- `diagnose`: why a run gave no metric, naming what to change: the run command, the grep, or the script.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .config import RUN_LOG, SessionConfig
from .executor import make_executor
from .knobs import config_files_in, parse_run_command
from .metric import find_last, read_metric, tail_text
from .runner import RunOutcome
from .sanitize import safe_line

CONTEXT_NAMES = ("program.md",)
SHELL_WORDS = frozenset(
    ("cd", "source", ".", "exec", "env", "time", "nice", "export", "set", "eval", "(", "{", "if", "for", "while")
)
CHECK_BUDGET_S = 60.0
IMPORT_CHECK_TIMEOUT_S = 30.0
_MISSING_MODULE = re.compile(r"(?:ModuleNotFoundError|ImportError): No module named '?([\w.]+)'?")
_NOT_FOUND = re.compile(r"(?:command not found|No such file or directory|can't open file)")
_FIND_SPECS = (
    "import importlib.util, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "for name in sys.argv[2:]:\n"
    "    try:\n"
    "        found = importlib.util.find_spec(name) is not None\n"
    "    except (ImportError, ValueError):\n"
    "        found = False\n"
    "    if not found:\n"
    "        print(name)\n"
)


def _read(root: Path, rel: str) -> str:
    try:
        return (root / rel).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _tree(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def top_level_imports(text: str) -> list[str]:
    """First components of the modules a script imports unconditionally at its top level."""
    tree = _tree(text)
    if tree is None:
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    return list(dict.fromkeys(n for n in names if n != "__future__"))


def _executed_files(text: str) -> list[str]:
    """Files a script runs or reads by a literal name: `exec(open("configurator.py").read())`, `open("x.md")`."""
    tree = _tree(text)
    if tree is None:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(first.value)
    return found


def related_files(root: Path, script: str, run_command: str, tracked: list[str]) -> tuple[list[str], list[str]]:
    """(editable, readonly) to offer beside the script, each a tracked file of the repository."""
    known = set(tracked)
    folder = PurePosixPath(script).parent
    editable = [p for p in config_files_in(run_command) if p in known and p != script]
    text = _read(root, script)
    readonly: list[str] = []
    for name in top_level_imports(text):
        for candidate in (folder / f"{name}.py", folder / name / "__init__.py"):
            readonly.append(candidate.as_posix())
    for name in _executed_files(text):
        readonly.append((folder / name).as_posix())
        readonly.append(PurePosixPath(name).as_posix())
    readonly += [(folder / n).as_posix() for n in CONTEXT_NAMES] + list(CONTEXT_NAMES)
    offered = [p.removeprefix("./") for p in readonly]
    readonly = [p for p in dict.fromkeys(offered) if p in known and p != script and p not in editable]
    return editable, readonly


# The interpreter.


def _resolve(program: str, root: Path) -> str | None:
    if "/" in program:
        path = Path(program) if Path(program).is_absolute() else root / program
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(program)


def _venv_python(root: Path) -> str | None:
    for rel in (".venv/bin/python", "venv/bin/python", "env/bin/python"):
        if (root / rel).is_file():
            return rel
    return None


def missing_imports(python: str, root: Path, script: str, names: list[str]) -> list[str] | None:
    """The names `python` cannot find (None when the check itself could not run)."""
    if not names:
        return []
    folder = str((root / script).parent)
    try:
        done = subprocess.run(
            [python, "-c", _FIND_SPECS, folder, *names],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=IMPORT_CHECK_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def check_interpreter(root: Path, config: SessionConfig) -> str | None:
    """None when the run command's python exists and has the script's imports, else one sentence naming it."""
    parsed = parse_run_command(config.run_command)
    venv = _venv_python(root)
    suggestion = f" (e.g. --run-command '{venv} {shlex.quote(config.script_path)}')" if venv else ""
    program = parsed.interpreter or parsed.program
    plain = program is not None and re.fullmatch(r"[\w./+~-]+", program) is not None
    if program and plain and program not in SHELL_WORDS and _resolve(program, root) is None:
        return (
            f"The run command `{config.run_command}` starts {program}, which is not found; pass "
            f"--run-command with a {'python' if parsed.interpreter else 'program'} that exists{suggestion}."
        )
    if parsed.interpreter is None:
        return None
    python = _resolve(parsed.interpreter, root)
    assert python is not None
    script = parsed.script if parsed.script and (root / parsed.script).is_file() else config.script_path
    missing = missing_imports(python, root, script, top_level_imports(_read(root, script)))
    if not missing:
        return None
    shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
    if venv and _resolve(venv, root) and not missing_imports(str(root / venv), root, script, missing):
        suggestion = f" (e.g. --run-command '{venv} {shlex.quote(config.script_path)}', which has them)"
    return (
        f"The run command `{config.run_command}` runs {python}, which cannot import {shown} "
        f"({script} imports {'it' if len(missing) == 1 else 'them'}); pass --run-command with the python of your "
        f"training environment{suggestion}, or install {'it' if len(missing) == 1 else 'them'} there."
    )


# Why a run gave no metric.


def _fix(config: SessionConfig, key: str, flag: str, value: str, in_setup: bool) -> str:
    """The command that changes a setting: `config KEY VALUE` on a session, setup's flag before there is one."""
    if in_setup:
        return f"`autoresearch setup {config.script_path} --{flag} {value} --yes`"
    return f"`autoresearch config {key} {value}`"


def diagnose(
    config: SessionConfig,
    outcome: RunOutcome | None,
    log: Path,
    what: str = "The baseline run",
    in_setup: bool = False,
) -> str:
    """One sentence: what happened, the last line of the log, and what to change (run command, grep, script).

    `in_setup`: no session exists yet, so the advice names setup's flags instead of `autoresearch config`."""
    tail = tail_text(log, max_lines=3, max_bytes=300).strip().splitlines()
    last_line = f"last line of {RUN_LOG}: {safe_line(tail[-1]).strip()[:120]}" if tail else f"{RUN_LOG} is empty"
    text = tail_text(log, max_lines=40, max_bytes=8192)
    run_fix = _fix(config, "run_command", "run-command", "'...'", in_setup)
    change_command = f"fix the run command ({run_fix}; now `{config.run_command}`)"
    if outcome is not None and outcome.timed_out:
        return (
            f"{what} hit the {config.timeout_minutes:g} min timeout ({last_line}); raise timeout_minutes "
            f"({_fix(config, 'timeout_minutes', 'timeout', 'N', in_setup)}) or shorten the run, then run again."
        )
    printed = find_last(log, config.metric_grep)
    if outcome is not None and outcome.exit_code:
        shown = f" after printing {config.metric_name} {printed:g}" if printed is not None else ""
        missing = _MISSING_MODULE.search(text)
        if missing:
            return (
                f"{what} failed with {_exit_text(outcome.exit_code)}: the run command's python has no module "
                f"{missing.group(1)} ({last_line}); {change_command} to use the python of your training environment, "
                "then run again."
            )
        if outcome.exit_code in (126, 127) or (outcome.exit_code == 2 and _NOT_FOUND.search(text)):
            return (
                f"{what} failed with {_exit_text(outcome.exit_code)}{shown}: the run command cannot start "
                f"({last_line}); {change_command}, then run again."
            )
        return (
            f"{what} failed with {_exit_text(outcome.exit_code)}{shown} ({last_line}); fix the script "
            "and run again (a run counts only when it exits with status 0)."
        )
    if printed is not None:
        return (
            f"{what} printed {config.metric_name} {printed:g}, which is not a finite number ({last_line}); "
            "fix the training (a NaN or inf usually means it diverged) and run again."
        )
    grep_fix = _fix(config, "metric_grep", "grep", "REGEX", in_setup) + (" or --metric NAME" if in_setup else "")
    near = _mentions(log, config.metric_name)
    hint = f"; a line that mentions it: {near!r}" if near and tail and near != tail[-1].strip()[:80] else ""
    return (
        f"{what} produced no {config.metric_name} matching {config.metric_grep!r} ({last_line}{hint}); "
        f"fix the grep ({grep_fix}) or make the script print it, then run again."
    )


def _mentions(log: Path, name: str) -> str | None:
    needle = name.lower().replace("_", "")
    for line in reversed(tail_text(log, max_lines=200, max_bytes=32768).splitlines()):
        if needle and needle in line.lower().replace("_", "").replace(" ", ""):
            return safe_line(line).strip()[:80]
    return None


def _exit_text(code: int | None) -> str:
    return f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"


# setup --check.


@dataclass(frozen=True)
class TrialResult:
    ok: bool
    message: str
    metric: float | None = None


def trial_run(
    root: Path, config: SessionConfig, budget_s: float = CHECK_BUDGET_S, cancel: threading.Event | None = None
) -> TrialResult:
    """Run the command once, as the loop would, with a short budget in its environment; report the metric line.

    Setting `cancel` ends the run and everything it started (the command's signal handlers set it)."""
    with tempfile.TemporaryDirectory(prefix="autoresearch-check-") as tmp:
        log = Path(tmp) / RUN_LOG
        outcome = make_executor(config, root).run(
            config.run_command,
            root,
            log,
            timeout_s=config.timeout_s,
            env={
                "AUTORESEARCH_TIME_BUDGET_S": f"{min(budget_s, config.time_budget_s):g}",
                "AUTORESEARCH_EXPERIMENT": "0",
                "AUTORESEARCH_TAG": config.tag,
            },
            cancel=cancel or threading.Event(),
        )
        if outcome.infra_error:
            return TrialResult(False, f"The check run did not run: {outcome.infra_error}.")
        failed = outcome.timed_out or bool(outcome.exit_code) or outcome.cancelled
        metric = None if failed else read_metric(log, config.metric_grep)
        if metric is None:
            return TrialResult(False, diagnose(config, outcome, log, what="The check run", in_setup=True))
        line = _matching_line(log, config.metric_grep)
        return TrialResult(
            True,
            f"The check run printed {line!r}: {config.metric_name} = {metric:g} (matched by "
            f"{config.metric_grep!r}) in {outcome.duration_s:.1f} s.",
            metric,
        )


def _matching_line(log: Path, pattern: str) -> str:
    regex = re.compile(pattern)
    for line in reversed(tail_text(log, max_lines=400, max_bytes=65536).splitlines()):
        if regex.search(line):
            return line.strip()[:120]
    return ""
