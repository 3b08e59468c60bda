"""Edits that cannot reach the training: a value changed in a file while a flag of the run command sets it.
Such an edit would run and be recorded as 'no effect'; the proposer refuses it before any run instead."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .knobs import command_flags, knobs_in_file, parse_run_command


@dataclass(frozen=True)
class Overridden:
    path: str
    name: str
    flag: str
    """The flag as the run command writes it (`--batch_size 32`)."""

    def sentence(self) -> str:
        return f"{self.name} in {self.path} is set by `{self.flag}` in the run command"


def overridden_edits(before: Mapping[str, str], after: Mapping[str, str], run_command: str) -> list[Overridden]:
    """The values the edit changes (before -> after) that a flag of `run_command` overrides."""
    flags, _ = command_flags(parse_run_command(run_command).args)
    if not flags:
        return []
    by_name = {name.lower(): written for name, _, written in flags}
    found: list[Overridden] = []
    for path, new in after.items():
        old = before.get(path)
        if old is None or old == new:
            continue
        old_values = {k.name: k.value for k in knobs_in_file(path, old)}
        for knob in knobs_in_file(path, new):
            if knob.name not in old_values or old_values[knob.name] == knob.value:
                continue
            names = [knob.name, knob.name.rsplit(".", 1)[-1], *(f.lstrip("-").replace("-", "_") for f in knob.flags)]
            flag = next((by_name[n.lower()] for n in names if n.lower() in by_name), None)
            if flag is not None:
                found.append(Overridden(path, knob.name, flag))
    return found
