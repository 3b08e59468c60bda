"""Whether a change left the training unchanged, from what the two runs printed.

An equal metric alone does not show it: a coarse metric (an accuracy on 100 examples, a loss rounded to
two decimals) is often equal after a change that moved the whole training. "No effect" is claimed only when
the run's own output shows the training unchanged:

- both logs print a loss curve (core/loss_curve.py's lines), and the two curves are the same, value for value;
- or neither prints one, and the metric as printed is precise (at least PRECISE_DIGITS significant digits)
  and the same to its last digit.
"""

from __future__ import annotations

import re
from pathlib import Path

from .loss_curve import all_losses
from .metric import last_line

PRECISE_DIGITS = 5
_DIGITS = re.compile(r"[-+]?(\d*\.?\d+(?:[eE][-+]?\d+)?)")


def _significant(text: str) -> int:
    mantissa = re.split(r"[eE]", text)[0].replace("-", "").replace("+", "").replace(".", "").replace("_", "")
    return len(mantissa.lstrip("0").replace(",", ""))


def _printed_metric(log: Path, pattern: str) -> str | None:
    line = last_line(log, pattern)
    if line is None:
        return None
    match = re.search(pattern, line)
    rest = line[match.end() :] if match else line
    found = _DIGITS.search(rest)
    return found.group(0) if found else None


def same_training(log: Path, parent_log: Path, pattern: str) -> bool:
    """The change's run printed the same training as its parent's (see the module's docstring)."""
    mine, theirs = all_losses(log), all_losses(parent_log)
    if mine or theirs:
        return mine == theirs
    printed, before = _printed_metric(log, pattern), _printed_metric(parent_log, pattern)
    return printed is not None and printed == before and _significant(printed) >= PRECISE_DIGITS
