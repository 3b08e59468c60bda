"""Varying the seed so that the noise floor is measured where it lives.

Almost every training script fixes its seed, so two runs of the same code print the same number and the
noise measured by repetition is 0. Every repeat of the same code (the baseline's second run, a confirmation
re-run, a re-measure of the best) therefore runs under another seed, while each experiment's first run keeps
the script's own: single runs stay comparable, and the spread between repeats is the seed-to-seed spread.

How a run gets its seed:
- `AUTORESEARCH_SEED` in its environment (always set on a repeat; scripts read it, docs/JUDGING.md);
- and, when the script takes the seed as an argparse default or the run command passes it as a flag,
  that flag appended to the run command (`--seed=2`), the last value on the command line winning;
- or, when the seed is an integer constant of the script the run command runs with python (`SEED = 1337`),
  the script run from its text with that constant's value replaced (`python -c <program> train.py ...`): the
  file, the tree and the branch are never changed, so nothing can be left behind by a run that dies;
- or, when the script passes a literal to a seeding call (`torch.manual_seed(1337)`, `np.random.seed(0)`,
  `random.seed(42)`, `set_seed(7)`, nanoGPT's `torch.manual_seed(1337 + seed_offset)`), the script run the same
  way with the literal of every such call replaced (`seed_via: "seed calls"`).

When none is possible (a constant of an imported module, a script not run by python directly), setup says
so, and the judge applies a relative floor (core/judge.py).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from .config import SessionConfig

ENV = "AUTORESEARCH_SEED"
SEED_CALLS = "seed calls"
"""`seed_via` when the script seeds with literals: every seeding call's literal is replaced on a repeat."""
_CALLEES = (
    r"(?:torch\.(?:cuda\.)?manual_seed(?:_all)?|(?:np|numpy)\.random\.seed|random\.seed|tf\.random\.set_seed"
    r"|set_seed|seed_everything)"
)
_SEED_CALL = r"(\b" + _CALLEES + r"\(\s*)[-+]?\d+\b"
_CONSTANT = r"^({name}[ \t]*(?::[^=\n]*)?=[ \t]*)[-+]?\d+\b"
_REPEAT = re.compile(r"^run-(\d+)\.log$")
_OTHER_RUN = ("best-", "remeasure")
OFFSET_OF_BEST_RUNS = 100
"""Re-measures of the best take seeds from here on (plus the experiment's number), apart from run-N's."""


def seed_for(log_name: str, number: int) -> int | None:
    """The seed of a run, from its log's name: None for an experiment's first run (the script's own seed)."""
    repeat = _REPEAT.match(log_name)
    if repeat:
        return int(repeat.group(1)) - 1
    if log_name.startswith(_OTHER_RUN):
        return OFFSET_OF_BEST_RUNS + number
    return None


def seed_env(log_name: str, number: int) -> dict[str, str]:
    seed = seed_for(log_name, number)
    return {} if seed is None else {ENV: str(seed)}


def seeded_command(config: SessionConfig, env: Mapping[str, str]) -> str:
    """The run command for a run with this environment: the seed flag appended on a repeat."""
    seed = env.get(ENV)
    via = config.seed_via or ""
    if seed is None or via == ENV or not via:
        return config.run_command
    if via.startswith("-"):
        return f"{config.run_command} {shlex.quote(f'{via}={seed}')}"
    words = _constant_words(config.run_command, config.script_path)
    if words is None:
        return config.run_command
    at = words.index(config.script_path)
    program = _with_calls(int(seed)) if via == SEED_CALLS else _with_constant(via, int(seed))
    return shlex.join([*words[:at], "-c", program, *words[at:]])


_OPERATORS = ("&&", "||", ";", "|", "&", ">", "<", ">>", "2>", "2>&1")

# Runs the script (argv[1]) as `python script` would (in __main__), from its text with one constant's value
# replaced; it imports nothing of autoresearch, so it runs wherever the executor runs the command.
_PROGRAM = r"""import sys


def _seeded(path):
    import os, re

    with open(path, encoding="utf-8") as f:
        text = f.read()
    text, found = re.subn({pattern!r}, r"\g<1>{seed}", text, {count}, re.M)
    if not found:
        print("autoresearch: no {what} in " + path + ": this run keeps its own seed", file=sys.stderr)
    full = os.path.abspath(path)
    sys.path[0] = os.path.dirname(full)
    return compile(text, full, "exec"), full


_code, __file__ = _seeded(sys.argv[1])
del _seeded
sys.argv = sys.argv[1:]
exec(globals().pop("_code"))
"""


def _with_constant(name: str, seed: int) -> str:
    return _PROGRAM.format(pattern=_CONSTANT.format(name=re.escape(name)), seed=seed, count=1, what=f"{name} = <int>")


def _with_calls(seed: int) -> str:
    return _PROGRAM.format(pattern=_SEED_CALL, seed=seed, count=0, what="seeding call with a literal seed")


def _constant_words(run_command: str, script_path: str) -> list[str] | None:
    """The run command's words when it is `[VAR=x] python [flags] SCRIPT args` with nothing else for the shell
    (a constant can then be replaced by running the script from its text), else None."""
    from .knobs import parse_run_command

    try:
        words = shlex.split(run_command)
    except ValueError:
        return None
    parsed = parse_run_command(run_command)
    if parsed.interpreter is None or parsed.script != script_path or any(w in _OPERATORS for w in words):
        return None
    return words if script_path in words else None


def find_seed(files: Mapping[str, str], run_command: str, script_path: str) -> tuple[str | None, str]:
    """(seed_via: ENV, the flag to append, or None when no seed can vary; a sentence for setup)."""
    from .knobs import discover, is_excluded

    if any(ENV in text for text in files.values()):
        return ENV, f"Repeats vary the seed through {ENV}, which the script reads."
    report = discover(files, run_command, script_path, exclude=["no-default"])
    for knob in report.knobs:
        if not is_excluded(knob.name, ("*seed*",)):
            continue
        written = knob.place.flag.split("=")[0].split()[0] if knob.place.source == "flag" else ""
        flag = written if written.startswith("-") else f"--{knob.name}" if knob.place.source == "argparse" else ""
        if flag:
            return flag, f"Repeats vary the seed through {flag} (and {ENV})."
        constant = knob.place.source == "constant" and knob.place.path == script_path and knob.is_int
        if constant and knob.name.isidentifier() and _constant_words(run_command, script_path) is not None:
            return knob.name, (
                f"Repeats vary the seed through {knob.name} in {knob.place.describe()}: a repeat runs the script with "
                "its value replaced, the file untouched."
            )
        return None, (
            f"{knob.name} is fixed in {knob.place.describe()}, so repeats cannot vary it: read it from {ENV} "
            f"(`{knob.name} = int(os.environ.get('{ENV}', {knob.text()}))`) so the noise is measured across seeds; "
            "until then a gain under the relative floor is not clear."
        )
    call = re.search(_SEED_CALL, files.get(script_path, ""), re.M)
    if call is not None:
        shown = call.group(0) + ")" if call.group(0).count("(") > call.group(0).count(")") else call.group(0)
        if _constant_words(run_command, script_path) is not None:
            return SEED_CALLS, (
                f"Repeats vary the seed in {shown} (and every seeding call's literal): a repeat runs the script with "
                "the literals replaced, the file untouched."
            )
        return None, (
            f"{shown} fixes the seed and the run command does not run the script with python directly, so repeats "
            f"cannot vary it: read it from {ENV} so the noise is measured across seeds; until then a gain under the "
            "relative floor is not clear."
        )
    return None, (
        f"No seed found to vary: if the script fixes one (torch.manual_seed(1337)), read it from {ENV} so the noise "
        "is measured across seeds; until then a gain under the relative floor is not clear."
    )
