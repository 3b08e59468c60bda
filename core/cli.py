"""The `autoresearch` command. Imports stay inside the commands so `--help` answers at once."""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from . import __version__

_SETUP_FLAGS: dict[str, str] = {
    "metric": "metric_name",
    "direction": "metric_direction",
    "grep": "metric_grep",
    "run_command": "run_command",
    "budget": "time_budget_minutes",
    "timeout": "timeout_minutes",
    "editable": "editable_files",
    "readonly": "readonly_files",
    "max_experiments": "max_experiments",
    "tag": "tag",
    "agent": "agent",
    "model": "model",
    "api_base": "api_base",
    "api_key_env": "api_key_env",
    "pass_api_key_to_training": "pass_api_key_to_training",
    "temperature": "temperature",
    "max_tokens": "max_output_tokens",
    "request_timeout": "request_timeout_s",
    "max_reflections": "max_reflections",
    "fix_attempts": "fix_attempts",
    "target": "target_metric",
    "plateau": "plateau_experiments",
    "max_cost": "max_cost_usd",
    "guard": "guard_command",
    "verify": "verify_command",
    "judging": "judging",
    "noise_sigmas": "noise_sigmas",
    "min_gain": "min_gain",
    "equal_compute": "equal_compute",
    "baseline_runs": "baseline_runs",
    "confirm_runs": "confirm_runs",
    "budget_allowance": "budget_allowance_s",
    "prune": "prune",
    "executor": "executor",
    "ray_address": "ray_address",
    "workers": "workers",
    "devices": "devices",
    "sandbox": "sandbox",
    "sandbox_allow_net": "sandbox_allow_net",
    "referee": "referee_files",
    "notify": "notify",
}


_CHOICE = re.compile(r"argument (\S+): invalid choice: (.*?) \(choose from (.*)\)$")
_VALUE = re.compile(r"argument (\S+): invalid (float|int) value: (.*)$")


def _usage_sentence(message: str) -> str:
    """argparse's complaint as one sentence, worded the same on every Python version."""
    if found := _CHOICE.match(message):
        flag, value, choices = found.groups()
        value, choices = value.strip("'\""), choices.replace("'", "").replace('"', "")
        if flag == "COMMAND":
            return f"unknown command '{value}' (the commands are {choices})"
        return f"{flag} must be one of {choices} (got '{value}')"
    if found := _VALUE.match(message):
        flag, kind, value = found.groups()
        return f"{flag} needs {'a number' if kind == 'float' else 'a whole number'} (got {value})"
    if message.endswith("required: script"):
        return "the training script is missing (e.g. autoresearch setup train.py)"
    return message


def _device_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


class _Parser(argparse.ArgumentParser):
    """A usage mistake prints one line saying what is wrong and where help is, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {_usage_sentence(message)}; see {self.prog} --help.\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="autoresearch",
        description="An autonomous ML experiment loop: an agent proposes one change at a time; autoresearch "
        "commits it, runs the training with a time budget, keeps improvements and resets the rest.",
    )
    parser.add_argument("--version", action="version", version=f"autoresearch {__version__}")
    parser.add_argument("-C", dest="repo", metavar="PATH", default=".", help="run as if started in PATH")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    setup = sub.add_parser("setup", help="start a session on a training script (wizard, or --yes)")
    setup.add_argument("script", help="the training script, e.g. train.py")
    setup.add_argument("--yes", "-y", action="store_true", help="no wizard: take the flags and defaults")
    setup.add_argument("--metric", help="the metric the script prints, e.g. val_loss")
    setup.add_argument("--direction", choices=["lower", "higher"], help="which way is better (default lower)")
    setup.add_argument("--grep", help="regex of the metric line (default ^<metric>:)")
    setup.add_argument("--run-command", help="how to run the training (default: python SCRIPT)")
    setup.add_argument("--budget", type=float, metavar="MIN", help="time budget per experiment, minutes (5)")
    setup.add_argument("--timeout", type=float, metavar="MIN", help="hard timeout per run, minutes (10)")
    setup.add_argument("--editable", nargs="+", metavar="FILE", help="files the agent may change (the script)")
    setup.add_argument("--readonly", nargs="+", metavar="FILE", help="files the agent reads, never changes")
    setup.add_argument("--max-experiments", type=int, metavar="N", help="cap on results rows, 0 = none (50)")
    setup.add_argument("--tag", help="session tag (default: today's date, e.g. nov26)")
    setup.add_argument("--agent", choices=["mutate", "llm"], help="offline mutate agent, or a model (llm)")
    setup.add_argument("--model", help="litellm model name, e.g. openai/gpt-4o-mini (selects the llm agent)")
    setup.add_argument("--api-base", metavar="URL", help="base URL of an OpenAI-compatible server")
    setup.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key")
    setup.add_argument(
        "--pass-api-key-to-training",
        action="store_true",
        default=None,
        help="let the training see the model's key variables (off: they are removed from its environment)",
    )
    setup.add_argument("--temperature", type=float, help="model temperature (0.7)")
    setup.add_argument("--max-tokens", type=int, metavar="N", help="max output tokens per reply (4096)")
    setup.add_argument("--request-timeout", type=float, metavar="S", help="seconds per model request (120)")
    setup.add_argument("--max-reflections", type=int, metavar="N", help="rounds to repair a bad reply (3)")
    setup.add_argument("--fix-attempts", type=int, metavar="N", help="attempts to fix a crash (2)")
    setup.add_argument("--target", type=float, metavar="VALUE", help="stop once the metric reaches VALUE")
    setup.add_argument("--plateau", type=int, metavar="N", help="stop after N experiments without improvement")
    setup.add_argument("--max-cost", type=float, metavar="USD", help="stop once the model cost reaches USD")
    setup.add_argument("--guard", metavar="CMD", help="command that must pass before a result is kept")
    setup.add_argument("--verify", metavar="CMD", help="command whose output gives the metric")
    setup.add_argument(
        "--check", action="store_true", help="run the script once first and show the metric line it prints"
    )
    setup.add_argument("--judging", choices=["noise", "greedy"], help="keep gains clear of noise, or any gain")
    setup.add_argument("--noise-sigmas", type=float, metavar="K", help="keep gains over K noise std devs (2)")
    setup.add_argument("--min-gain", type=float, metavar="X", help="smallest gain in the metric worth keeping (0)")
    setup.add_argument("--equal-compute", choices=["mark", "strict"], help="a gain from a much longer run (mark)")
    setup.add_argument("--baseline-runs", type=int, metavar="N", help="runs of the baseline, to measure noise (2)")
    setup.add_argument("--confirm-runs", type=int, metavar="N", help="re-runs of a small win before keeping it (2)")
    setup.add_argument("--prune", choices=["off", "on"], help="stop runs whose loss curve is clearly behind (on)")
    setup.add_argument("--budget-allowance", type=float, metavar="S", help="seconds allowed over the budget")
    setup.add_argument("--executor", choices=["local", "ray"], help="run on this machine, or as Ray jobs (local)")
    setup.add_argument("--ray-address", metavar="ADDRESS", help="the Ray cluster, e.g. http://HEAD:8265 (docs/RAY.md)")
    setup.add_argument("--workers", type=int, metavar="N", help="experiments at once, each in its own worktree (1)")
    setup.add_argument(
        "--devices", type=_device_list, metavar="IDS", help="one accelerator per worker, e.g. 0,1,2,3 (none)"
    )

    setup.add_argument(
        "--sandbox", action="store_true", default=None, help="run training and guard under bubblewrap (off)"
    )
    setup.add_argument("--sandbox-allow-net", nargs="+", metavar="ADDR", help="PORT or HOST:PORT the sandbox may reach")
    setup.add_argument("--referee", nargs="+", metavar="FILE", help="files only the verify command reads (none)")
    setup.add_argument("--notify", nargs="+", metavar="URL", help="URLs told of a new best and the end (none)")

    run = sub.add_parser("run", help="run the experiment loop (live screen, or --headless)")
    run.add_argument("--headless", action="store_true", help="plain lines instead of the screen (nohup, CI)")

    watch = sub.add_parser("watch", help="the live screen of the run another process runs here; its keys act on it")
    watch.add_argument("--headless", action="store_true", help="print its events as plain lines instead")
    watch.add_argument(
        "--exit-on-stop", action="store_true", help="with --headless: end when the run does (else wait for the next)"
    )
    watch.add_argument("--by", default="a watcher", help=argparse.SUPPRESS)

    serve = sub.add_parser("serve", help="the live screen in a browser (textual-serve), on 127.0.0.1 by default")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1; others need a token)")

    status = sub.add_parser("status", help="print the progress dashboard")
    status.add_argument("--json", action="store_true", help="the same data as JSON")

    analyze = sub.add_parser("analyze", help="write autoresearch-<tag>-analysis.md (and show it in a terminal)")
    analyze.add_argument("--headless", action="store_true", help="only write the file")
    analyze.add_argument("--no-model", action="store_true", help="compute the recommendations, ask no model")

    ablate = sub.add_parser("ablate", help="revert each kept change from the best on its own: which still help")
    ablate.add_argument("--json", action="store_true", help="a list: number, description, contribution, helps")
    ablate.add_argument("--seeds", type=int, default=3, metavar="N", help="runs of each version, one per seed (3)")

    demo = sub.add_parser("demo", help="a bundled example in a temporary repository, offline, no API key")
    demo.add_argument("--headless", action="store_true", help="plain lines instead of the screen")
    demo.add_argument("--model", help="use this litellm model instead of the offline agent")
    demo.add_argument("--api-base", metavar="URL", help="base URL of an OpenAI-compatible server")
    demo.add_argument("--experiments", type=int, metavar="N", help="number of experiments (40)")
    demo.add_argument("--dir", metavar="PATH", help="make the demo repository here instead of a temp dir")

    config = sub.add_parser("config", help="show the session's settings, or change one: config KEY VALUE")
    config.add_argument("key", nargs="?", help="a setting, e.g. run_command, grep, budget, files, model, agent")
    config.add_argument("value", nargs="*", help="its new value (several files for a file list)")
    config.add_argument("--edit", action="store_true", help="open the wizard on this session to edit it")
    return parser


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _fail(message: str) -> int:
    print(f"autoresearch: {message}", file=sys.stderr)
    return 1


def _setup_options(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, flag) for flag, key in _SETUP_FLAGS.items() if getattr(args, flag, None) is not None}


def _cmd_setup(root: Path, args: argparse.Namespace) -> int:
    options = _setup_options(args)
    if not args.yes:
        if not _interactive():
            return _fail("setup opens a wizard, which needs a terminal; pass --yes to take the flags as they are.")
        from autoresearch.tui import launch

        return launch(root, "setup", script=args.script, options=options)
    from .setup import create_session, plan_session

    config = plan_session(root, args.script, **options)
    if args.check:
        from .first_run import trial_run

        print(f"checking: {config.run_command} ...", flush=True)
        received = _on_signals((cancel := threading.Event()).set)
        trial = trial_run(root, config, cancel=cancel)
        if received:
            _fail("The check run was stopped by a signal and ended with what it started; nothing was set up.")
            return 128 + received[0]
        if not trial.ok:
            return _fail(trial.message + " Nothing was set up.")
        print(trial.message)
    create_session(root, config)
    agent = config.model if config.agent == "llm" else "offline mutate agent"
    print(
        f"Session {config.tag} ready on branch {config.branch}: {config.metric_name} ({config.metric_direction} is "
        f"better), {config.time_budget_minutes:g} min budget, {config.timeout_minutes:g} min timeout, agent: {agent}."
    )
    extra = [p for p in config.editable_files if p != config.script_path]
    if extra or config.readonly_files:
        editable = f"editable: {', '.join(config.editable_files)}" if extra else ""
        readonly = f"read-only context: {', '.join(config.readonly_files)}" if config.readonly_files else ""
        print("Files: " + "; ".join(p for p in (editable, readonly) if p) + " (change: autoresearch config files ...).")
    print(_isolation_line(config))
    from .setup import seed_plan

    print(seed_plan(root, config)[1])
    print("Start it with: autoresearch run")
    return 0


def _isolation_line(config: Any) -> str:
    """Which mode the training runs in (docs/RELIABILITY.md, threat model), and the referee files if any."""
    referee = f"; referee files, seen only by the verify command: {', '.join(config.referee_files)}"
    referee = referee if config.referee_files else ""
    if config.sandbox and config.executor == "ray":
        return f"Sandbox: not used on Ray (the cluster's own isolation applies, docs/RAY.md){referee}."
    if config.sandbox:
        return f"Sandbox: on (bubblewrap: no network, read-only outside the run's tree){referee}."
    return f"Sandbox: off (the training runs with your rights; --sandbox confines it){referee}."


def _cmd_config(root: Path, args: argparse.Namespace) -> int:
    from . import settings

    if args.edit:
        settings.load_config(root)
        if not _interactive():
            return _fail("config --edit opens the wizard, which needs a terminal; use autoresearch config KEY VALUE.")
        from autoresearch.tui import launch

        return launch(root, "config")
    if args.key is None:
        sys.stdout.write(settings.show(root))
        return 0
    print(settings.change(root, args.key, args.value))
    return 0


def _on_signals(action: Callable[[], None]) -> list[int]:
    """SIGTERM, SIGHUP and SIGINT call `action` (which ends the run going on, with its children); the list of the
    signals received."""
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        action()

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    return received


def run_headless(root: Path) -> int:
    from .events import Event, LoopStopped
    from .loop import ExperimentLoop
    from .publishing import Publisher
    from .sanitize import safe_text

    def sink(event: Event) -> None:
        line = event.describe()
        if line is None:
            return
        stream = sys.stderr if isinstance(event, LoopStopped) and not event.ok else sys.stdout
        print(safe_text(line), file=stream, flush=True)

    publisher = Publisher(root, sink)
    loop = ExperimentLoop(root, publisher, when_stuck="stop")
    publisher.listen(loop)
    received = _on_signals(loop.stop_now)
    from .runner import suspend_with_runs

    signal.signal(signal.SIGTSTP, suspend_with_runs)
    try:
        stopped = loop.run()
    finally:
        publisher.close()
    if received:
        return 128 + received[0]
    return 0 if stopped.ok else 1


def _cmd_run(root: Path, args: argparse.Namespace) -> int:
    from .publishing import running_pid

    pid = running_pid(root)
    if pid is not None:
        busy = f"Another autoresearch run (pid {pid}) is using this session"
        if args.headless or not _interactive():
            return _fail(f"{busy}; watch it with `autoresearch watch` (or stop it first).")
        if input(f"{busy}. Watch it? [Y/n] ").strip().lower() not in ("", "y", "yes"):
            return 1
        return _cmd_watch(root, argparse.Namespace(headless=False, exit_on_stop=False, by="a watcher"))
    if args.headless or not _interactive():
        return run_headless(root)
    from .config import load_config

    load_config(root)
    from autoresearch.tui import launch

    return launch(root, "run")


def _cmd_watch(root: Path, args: argparse.Namespace) -> int:
    from .config import load_config

    load_config(root)
    if not args.headless and (_interactive() or os.environ.get("TEXTUAL_DRIVER")):  # a terminal, or textual-serve
        from autoresearch.tui import launch

        return launch(root, "watch", options={"by": args.by})
    from .events import Event
    from .sanitize import safe_text
    from .watching import SessionFollower

    def show(event: Event) -> None:
        line = event.describe()
        if line is not None:
            print(safe_text(line), flush=True)

    follower = SessionFollower(root, show, by=args.by, keep_following=not args.exit_on_stop, parent=os.getppid())
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: follower.stop_now())
    return 0 if follower.run().ok else 1


def _cmd_serve(root: Path, args: argparse.Namespace) -> int:
    from .config import load_config
    from .serving import serve

    load_config(root)
    return serve(root, args.host, args.port)


def _cmd_status(root: Path, args: argparse.Namespace) -> int:
    from .status import build_status, render_status

    data = build_status(root)
    if args.json:
        import json

        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(render_status(data))
    return 0


def _cmd_analyze(root: Path, args: argparse.Namespace) -> int:
    from .analysis import build_analysis, write_analysis
    from .config import load_config

    config = load_config(root)
    advice = None
    if config.agent == "llm" and config.model and not args.no_model:
        from .llm_agent import llm_recommendations

        advice = llm_recommendations(config, build_analysis(root))
    path = write_analysis(root, recommendations_text=advice)
    if args.headless or not _interactive():
        source = f"by {config.model}" if advice else "computed from the results"
        print(f"wrote {path} (recommendations {source})")
        return 0
    from autoresearch.tui import launch

    return launch(root, "analyze")


def _cmd_ablate(root: Path, args: argparse.Namespace) -> int:
    import json

    from .ablate import ablate, summary
    from .config import load_config

    if args.seeds < 1:
        return _fail("--seeds must be 1 or more.")
    results = ablate(root, args.seeds, said=(lambda _line: None) if args.json else lambda line: print(line, flush=True))
    if args.json:
        keys = ("number", "description", "contribution", "helps")
        print(json.dumps([{k: getattr(a, k) for k in keys} for a in results], indent=2))
        return 0
    print("\n".join(summary(results, load_config(root).metric_name)[len(results) :]))
    return 0


def _cmd_demo(root: Path, args: argparse.Namespace) -> int:
    from .demo import DEMO_EXPERIMENTS, prepare_demo

    options: dict[str, Any] = {"max_experiments": args.experiments or DEMO_EXPERIMENTS}
    if args.model:
        options.update(model=args.model, api_base=args.api_base, agent="llm")
    demo_root, _config = prepare_demo(Path(args.dir).resolve() if args.dir else None, **options)
    print(f"demo repository: {demo_root}", flush=True)
    if args.headless or not _interactive():
        code = run_headless(demo_root)
        print(f"The demo repository stays in {demo_root}; reopen it with: autoresearch -C {demo_root} run", flush=True)
        return code
    from autoresearch.tui import launch

    return launch(demo_root, "run")


def session_root(start: Path) -> Path:
    """Where the session of `start` lives: the nearest folder up to the repository's top holding the session
    file, else that top (as setup, which works from a subdirectory, finds it), else `start` itself."""
    from .config import CONFIG_FILE

    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file() or (folder / ".git").exists():
            return folder
    return start


def _unknown_arguments(command: str | None, sub: argparse.ArgumentParser, extra: list[str]) -> str:
    """What to type instead of arguments the command does not take: a session setting given to another command
    is changed with `autoresearch config`; a misspelt flag gets the nearest one."""
    import difflib

    given = next((arg for arg in extra if arg.startswith("-")), extra[0])
    flag, _, value = given.partition("=")
    name = flag.lstrip("-").replace("-", "_")
    if command not in (None, "setup") and name in _SETUP_FLAGS:
        after = extra[extra.index(given) + 1 :]
        value = value or (after[0] if after and not after[0].startswith("-") else "VALUE")
        return (
            f"{flag} is a session setting, not an option of {command}: "
            f"change it with autoresearch config {name} {value}"
        )
    options = [opt for action in sub._actions for opt in action.option_strings if opt.startswith("--")]
    near = difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
    what = "unknown option" if given.startswith("-") else "unexpected argument"
    return f"{what} {' '.join(extra)}" + (f" (did you mean {near[0]}?)" if near else "")


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub: argparse.ArgumentParser = action.choices[command]
            return sub
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = _subparser(parser, args.command)
        sub.error(_unknown_arguments(args.command, sub, extra))
    if args.command is None:
        parser.print_help()
        return 0
    root = Path(args.repo).resolve()
    if not root.is_dir():
        return _fail(f"{args.repo} is not a directory; pass -C with the path of your repository.")
    if args.command in ("run", "status", "analyze", "watch", "serve", "ablate"):
        root = session_root(root)
    commands = {
        "setup": _cmd_setup,
        "run": _cmd_run,
        "watch": _cmd_watch,
        "serve": _cmd_serve,
        "status": _cmd_status,
        "analyze": _cmd_analyze,
        "ablate": _cmd_ablate,
        "demo": _cmd_demo,
        "config": _cmd_config,
    }
    from .errors import UserError

    try:
        return commands[args.command](root, args)
    except UserError as exc:
        return _fail(exc.message)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os._exit(0)
    except Exception as exc:
        from git.exc import GitCommandError

        if isinstance(exc, GitCommandError):
            from .gitops import describe_git_error

            return _fail(f"git failed: {describe_git_error(exc)}; fix the repository and try again.")
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            from .writable import unwritable_message

            return _fail(unwritable_message(root, exc))
        if os.environ.get("AUTORESEARCH_DEBUG"):
            raise
        return _fail(_internal_error(root, exc))


def _internal_error(root: Path, exc: Exception) -> str:
    """A bug of ours: one sentence for the user, the traceback kept in a file for the report."""
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(exc))
    folder = root / ".autoresearch" if (root / ".autoresearch").is_dir() else Path(tempfile.gettempdir())
    path = folder / f"autoresearch-error-{time.strftime('%Y%m%d-%H%M%S')}.log"
    try:
        path.write_text(text, encoding="utf-8")
        where = f"the traceback is in {path}"
    except OSError:
        where = "set AUTORESEARCH_DEBUG=1 to see the traceback"
    return f"internal error ({type(exc).__name__}: {exc}); {where}; please report it with that file."


if __name__ == "__main__":
    sys.exit(main())
