"""Varying the seed so that the noise floor is measured where it lives.

Almost every training script fixes its seed, so two runs of the same code print the same number and the
noise measured by repetition is 0. Every repeat of the same code (the baseline's second run, a confirmation
re-run, a re-measure of the best) therefore runs under another seed, while each experiment's first run keeps
the script's own: single runs stay comparable, and the spread between repeats is the seed-to-seed spread.

How a run gets its seed:
- `AUTORESEARCH_SEED` in its environment (always set on a repeat; scripts read it, docs/JUDGING.md);
- and, when the script takes the seed as an argparse default or the run command passes it as a flag,
  that flag appended to the run command (`--seed=2`), the last value on the command line winning.

When neither is possible (the seed is a constant, or a literal in `torch.manual_seed(1337)`), setup says so,
and the judge applies a relative floor (core/judge.py).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from .config import SessionConfig

ENV = "AUTORESEARCH_SEED"
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
    if seed is None or not (config.seed_via or "").startswith("-"):
        return config.run_command
    return f"{config.run_command} {shlex.quote(f'{config.seed_via}={seed}')}"


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
        return None, (
            f"{knob.name} is fixed in {knob.place.describe()}, so repeats cannot vary it: read it from {ENV} "
            f"(`{knob.name} = int(os.environ.get('{ENV}', {knob.text()}))`) so the noise is measured across seeds; "
            "until then a gain under the relative floor is not clear."
        )
    return None, (
        f"No seed found to vary: if the script fixes one (torch.manual_seed(1337)), read it from {ENV} so the noise "
        "is measured across seeds; until then a gain under the relative floor is not clear."
    )
