"""The training script's knobs, found where they live: one list both agents read.

A knob is a number the training takes as a setting: a module-level constant (`LEARNING_RATE = 3e-4`),
an argparse or click default (`add_argument("--lr", type=float, default=3e-4)`), a key of a config file the
run command names (a Python config module as nanoGPT's configurator reads, YAML, JSON or TOML), or a flag in
the run command itself (`--lr=3e-4`, `--max_iters 500`, `lr=3e-4`). Later sources override earlier ones in
that order: the script's value, then the config file's, then the flag's. Each knob says its value, where that
value lives, and what it overrides or what overrides it.

Names that measure or keep count rather than train (evaluation and log intervals, evaluation iterations,
seeds, counters and running state such as `iter_num` or `best_val_loss`) are left out by `DEFAULT_EXCLUDE`;
a session's `knob_exclude` key adds to that list (its item `no-default` drops the default list). State is
left out by what the code does with it (core/knob_uses.py): a name the script reassigns or increments later
(`step += 1`, a weight updated in the loop) and a constant used only in what is printed (a peak-FLOPS figure
for the MFU line) are not settings.
"""

from __future__ import annotations

import ast
import fnmatch
import math
import operator
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from .knob_uses import not_settings

Source = Literal["constant", "argparse", "click", "config", "flag"]
CONFIG_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".toml")
RUN_COMMAND = "the run command"

DEFAULT_EXCLUDE: tuple[str, ...] = (
    "*seed*",
    "*eval_interval*",
    "*eval_iters*",
    "*eval_every*",
    "*eval_steps*",
    "*eval_freq*",
    "*log_interval*",
    "*log_every*",
    "*log_freq*",
    "*print_every*",
    "*print_interval*",
    "*save_interval*",
    "*save_every*",
    "*checkpoint*",
    "*ckpt*",
    "*iter_num*",
    "*step_num*",
    "best_*",
    "running_*",
    "*_count",
    "*counter*",
    "*num_workers*",
    "*verbose*",
    "*time_budget*",
    "*timeout*",
    "*port*",
    "*rank*",
    "*world_size*",
)
"""fnmatch patterns, matched case-insensitively against the knob's name (its last part for `a.b.c`)."""

_UNDECODABLE = re.compile("[\udc80-\udcff]")
_LINE_END = re.compile(r"\r\n|\r|\n")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_FLAG = re.compile(r"^--?([A-Za-z_][\w.-]*)(?:=(.*))?$")
_ASSIGN = re.compile(r"^([A-Za-z_][\w.]*)=(.*)$")
_INTERPRETERS = re.compile(r"^(?:.*/)?(?:python[\d.]*|pypy[\d.]*)$")


@dataclass(frozen=True)
class Place:
    """Where one value of a knob is written: a file and its character span, or a flag of the run command."""

    path: str
    line: int
    start: int = 0
    end: int = 0
    source: Source = "constant"
    flag: str = ""

    @property
    def in_run_command(self) -> bool:
        return self.source == "flag"

    def describe(self) -> str:
        if self.in_run_command:
            return f"{RUN_COMMAND} ({self.flag})"
        what = {"argparse": "argparse default", "click": "click default"}.get(self.source)
        return f"{self.path}:{self.line}" + (f" ({what})" if what else "")


@dataclass(frozen=True)
class Knob:
    name: str
    value: float
    is_int: bool
    place: Place
    """Where the value that takes effect lives."""
    shadowed: tuple[tuple[Place, float], ...] = ()
    """Values elsewhere that this one overrides (the script's default under a config file or a flag)."""
    editable: bool = True
    """False when the value lives in the run command or in a file the agent may not change."""

    @property
    def overridden_by_run_command(self) -> bool:
        return self.place.in_run_command

    def text(self) -> str:
        return format_number(self.value, self.is_int)

    def describe(self) -> str:
        line = f"{self.name} = {self.text()} in {self.place.describe()}"
        if self.shadowed:
            under = ", ".join(f"{p.describe()} says {format_number(v, self.is_int)}" for p, v in self.shadowed)
            line += f"; overrides {under}"
        return line


@dataclass(frozen=True)
class KnobReport:
    knobs: tuple[Knob, ...]
    looked_in: tuple[str, ...]
    left_out: tuple[str, ...] = ()
    """Names found but left out as measurement or bookkeeping (knob_exclude)."""

    @property
    def searchable(self) -> tuple[Knob, ...]:
        return tuple(k for k in self.knobs if k.editable)

    @property
    def fixed_by_run_command(self) -> tuple[Knob, ...]:
        return tuple(k for k in self.knobs if k.overridden_by_run_command)

    def nothing_to_search(self) -> str:
        """One sentence saying where the search looked and why it found nothing to change."""
        where = ", ".join(self.looked_in) or "no readable file"
        if self.fixed_by_run_command and not self.searchable:
            names = ", ".join(k.name for k in self.fixed_by_run_command[:4])
            return (
                f"nothing to search: the only knobs ({names}) are set by flags in the run command, which the offline "
                "agent does not edit; change them with `autoresearch config run_command ...` or make a config file "
                "editable"
            )
        extra = f" (left out as measurement: {', '.join(self.left_out[:4])})" if self.left_out else ""
        return (
            f"nothing to search: no numeric knob (module constant, argparse/click default, config-file key or "
            f"run-command flag) in {where}{extra}; make the file that holds the hyperparameters editable or use "
            "--agent llm"
        )


def format_number(value: float, is_int: bool) -> str:
    if is_int:
        return str(round(value))
    text = f"{value:.6g}"
    if "e" not in text and "." not in text and "inf" not in text and "nan" not in text:
        text += ".0"
    return text


NO_DEFAULT = "no-default"
"""An item of knob_exclude that drops DEFAULT_EXCLUDE: the other items are then the whole list."""


def exclude_patterns(configured: Sequence[str] | None) -> tuple[str, ...]:
    """The patterns a session leaves out: DEFAULT_EXCLUDE plus its own, or only its own after `no-default`."""
    own = tuple(p for p in configured or () if p != NO_DEFAULT)
    return own if configured and NO_DEFAULT in configured else (*DEFAULT_EXCLUDE, *own)


def set_aside(name: str, no_effect: Mapping[str, int]) -> bool:
    """The knob was changed by an experiment that had no effect (names as core/judge.changed_names gives them):
    no value of it reaches the training, so neither offline strategy proposes it again."""
    lower = name.lower()
    return lower in no_effect or lower.rsplit(".", 1)[-1] in no_effect


def all_set_aside(no_effect: Mapping[str, int]) -> str:
    """The stop reason when every knob left was set aside for having no effect."""
    shown = ", ".join(f"{n} (#{k})" for n, k in list(no_effect.items())[:4])
    return f"every knob left was set aside for having no effect ({shown}); change what the training really uses"


def is_excluded(name: str, patterns: Sequence[str]) -> bool:
    last = name.rsplit(".", 1)[-1].lower()
    return any(fnmatch.fnmatchcase(last, p.lower()) or fnmatch.fnmatchcase(name.lower(), p.lower()) for p in patterns)


# Parsing a run command.


@dataclass(frozen=True)
class RunCommand:
    interpreter: str | None
    """The python the command runs (`python`, `.venv/bin/python3`), or None when it is not a python."""
    script: str | None
    args: tuple[str, ...] = ()
    program: str | None = None
    """The first word the shell runs, whatever it is."""


def parse_run_command(command: str) -> RunCommand:
    """The interpreter, the script and the script's arguments of `[ENV=x] python [-u] SCRIPT args...`."""
    try:
        words = shlex.split(command)
    except ValueError:
        return RunCommand(None, None)
    while words and _ASSIGN.match(words[0]) and not words[0].startswith("-"):
        words = words[1:]
    if words and words[0] in ("exec", "env", "nice", "time"):
        words = words[1:]
    if not words:
        return RunCommand(None, None)
    for end, word in enumerate(words):
        if word in ("&&", "||", ";", "|", "&") or word.endswith(";"):
            words = words[:end]
            break
    if not words:
        return RunCommand(None, None)
    program = words[0]
    interpreter = program if _INTERPRETERS.match(program) else None
    rest = words[1:] if interpreter else words
    if interpreter:
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
            rest = rest[1:]
        if rest and rest[0] in ("-m", "-c"):
            return RunCommand(interpreter, None, tuple(rest[2:]), program)
    if not rest:
        return RunCommand(interpreter, None, program=program)
    return RunCommand(interpreter, rest[0], tuple(rest[1:]), program)


def _as_number(text: str) -> float | int | None:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def command_flags(args: Sequence[str]) -> tuple[list[tuple[str, float | int, str]], list[str]]:
    """(name, value, flag as written) for numeric `--k=v`, `--k v` and `k=v`; and the positional arguments."""
    flags: list[tuple[str, float | int, str]] = []
    positional: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        flag = _FLAG.match(word)
        if flag:
            name, value = flag.group(1), flag.group(2)
            written = word
            if value is None and i + 1 < len(args) and _as_number(args[i + 1]) is not None:
                value = args[i + 1]
                written = f"{word} {value}"
                i += 1
            number = _as_number(value) if value is not None else None
            if number is not None:
                flags.append((name.replace("-", "_"), number, written))
        elif assign := _ASSIGN.match(word):
            number = _as_number(assign.group(2))
            if number is not None:
                flags.append((assign.group(1), number, word))
        else:
            positional.append(word)
        i += 1
    return flags, positional


def config_files_in(command: str) -> list[str]:
    """Files the run command hands the script that look like configs (`config/x.py`, `conf.yaml`, `--config c.toml`)."""
    parsed = parse_run_command(command)
    found = []
    for word in parsed.args:
        value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        if PurePosixPath(value).suffix in CONFIG_SUFFIXES and not value.startswith("-"):
            found.append(PurePosixPath(value).as_posix().removeprefix("./"))
    return found


# Reading files.


def _char_offsets(text: str) -> list[int]:
    return [0] + [m.end() for m in _LINE_END.finditer(text)]


def _span(text: str, starts: list[int], node: ast.expr) -> tuple[int, int] | None:
    """Character offsets of a one-line node (ast counts UTF-8 bytes within the line)."""
    if node.end_lineno != node.lineno or node.end_col_offset is None:
        return None
    begin = starts[node.lineno - 1]
    line = text[begin : starts[node.lineno] if node.lineno < len(starts) else len(text)]
    raw = line.encode("utf-8", errors="surrogateescape")
    start = len(raw[: node.col_offset].decode("utf-8", errors="surrogateescape"))
    end = len(raw[: node.end_col_offset].decode("utf-8", errors="surrogateescape"))
    return begin + start, begin + end


def _number_of(node: ast.expr) -> float | int | None:
    """A literal number, a signed one, or a small arithmetic of literals (`2**19`, `64 * 8`, `1e-3 / 2`)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value  # type: ignore[return-value]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _number_of(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Pow, ast.Div, ast.Add, ast.Sub)):
        left, right = _number_of(node.left), _number_of(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
            return None
        try:
            value = _OPERATORS[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError):
            return None
        return value if isinstance(value, (int, float)) and math.isfinite(value) else None
    return None


_OPERATORS: dict[type, Any] = {
    ast.Mult: operator.mul,
    ast.Pow: operator.pow,
    ast.Div: operator.truediv,
    ast.Add: operator.add,
    ast.Sub: operator.sub,
}


@dataclass
class _Found:
    name: str
    value: float | int
    place: Place
    flags: tuple[str, ...] = ()


def module_assignments(tree: ast.Module) -> Iterator[tuple[ast.Name, ast.expr]]:
    """`NAME = value` and `NAME: type = value` at a module's top level, in order."""
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and value is not None:
            yield target, value


def _python_knobs(path: str, text: str, source: Source, metric: str | None = None) -> list[_Found]:
    try:
        tree = ast.parse(_UNDECODABLE.sub("?", text))
    except (SyntaxError, ValueError):
        return []
    starts = _char_offsets(text)
    found: dict[str, _Found] = {}
    state = not_settings(tree, metric)
    for target, value in module_assignments(tree):
        number = _number_of(value)
        span = _span(text, starts, value) if number is not None else None
        found.pop(target.id, None)  # only the last assignment takes effect
        if number is not None and span is not None and not isinstance(number, bool) and target.id not in state:
            found[target.id] = _Found(target.id, number, Place(path, value.lineno, *span, source=source))
    result = list(found.values())
    if source == "constant":
        result += _option_defaults(path, text, tree, starts)
    return result


def _option_defaults(path: str, text: str, tree: ast.Module, starts: list[int]) -> list[_Found]:
    """argparse `add_argument(...)` and click `option(...)` calls with a numeric `default=`."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        kind: Source | None = {"add_argument": "argparse", "option": "click"}.get(node.func.attr)  # type: ignore[assignment]
        if kind is None:
            continue
        options = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        options = [o for o in options if o.startswith("-")]
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        default = keywords.get("default")
        if not options or default is None:
            continue
        number = _number_of(default)
        span = _span(text, starts, default) if number is not None else None
        if number is None or span is None:
            continue
        dest_node = keywords.get("dest")
        if isinstance(dest_node, ast.Constant) and isinstance(dest_node.value, str):
            name = dest_node.value
        else:
            longest = max(options, key=lambda o: (o.startswith("--"), len(o)))
            name = longest.lstrip("-").replace("-", "_")
        type_node = keywords.get("type")
        if isinstance(type_node, ast.Name) and type_node.id == "float" and isinstance(number, int):
            number = float(number)
        flags = tuple(o.lstrip("-").replace("-", "_") for o in options)
        found.append(_Found(name, number, Place(path, default.lineno, *span, source=kind), flags))
    return found


def _structured_knobs(path: str, text: str) -> list[_Found]:
    """Numeric leaves of a YAML or JSON file (dotted names for nested keys), with their exact spans."""
    try:
        import yaml

        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except Exception:
        return []
    found: list[_Found] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    walk(value, f"{prefix}{key.value}.")
        elif isinstance(node, yaml.ScalarNode) and node.style is None:
            number = _as_number(node.value)
            if number is not None:
                place = Place(path, node.start_mark.line + 1, node.start_mark.index, node.end_mark.index, "config")
                found.append(_Found(prefix.rstrip("."), number, place))

    walk(root, "")
    return found


_TOML_TABLE = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+\s*(?:#.*)?$")
_TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*([-+]?[\d_]*\.?[\d_]+(?:[eE][-+]?\d+)?)\s*(?:#.*)?$")


def _toml_knobs(path: str, text: str) -> list[_Found]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return []
    try:
        tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError):
        return []
    found, table = [], ""
    starts = _char_offsets(text)
    for number, line in enumerate(_LINE_END.split(text), 1):
        if header := _TOML_TABLE.match(line):
            table = header.group(1) + "."
        elif pair := _TOML_KEY.match(line):
            value = _as_number(pair.group(2).replace("_", ""))
            if value is not None:
                begin = starts[number - 1] + pair.start(2)
                place = Place(path, number, begin, begin + len(pair.group(2)), "config")
                found.append(_Found(table + pair.group(1), value, place))
    return found


def knobs_in_file(path: str, text: str, as_config: bool = False, metric: str | None = None) -> list[_Found]:
    suffix = PurePosixPath(path).suffix
    if suffix == ".py":
        return _python_knobs(path, text, "config" if as_config else "constant", metric)
    if suffix in (".yaml", ".yml", ".json"):
        return _structured_knobs(path, text)
    if suffix == ".toml":
        return _toml_knobs(path, text)
    return []


# Putting it together.


def discover(
    files: Mapping[str, str],
    run_command: str,
    script_path: str,
    *,
    editable: Iterable[str] | None = None,
    exclude: Sequence[str] | None = None,
    metric: str | None = None,
) -> KnobReport:
    """Every knob in `files` (path -> text; the script, config files, any other .py) and the run command.

    `editable` names the files the agent may change (default: all of `files`); a knob whose value lives
    elsewhere, or in the run command, is listed but not editable. With `metric` (the session's metric name),
    a constant used only in other printed figures is left out.
    """
    patterns = exclude_patterns(exclude)
    may_edit = set(files if editable is None else editable)
    configs = [p for p in config_files_in(run_command) if p != script_path]
    order = [p for p in files if p not in configs] + [p for p in configs if p in files]
    layers: list[list[_Found]] = [knobs_in_file(p, files[p], p in configs, metric) for p in order]
    parsed = parse_run_command(run_command)
    flags, _ = command_flags(parsed.args)
    layers.append([_Found(n, v, Place(RUN_COMMAND, 0, source="flag", flag=w)) for n, v, w in flags])

    by_name: dict[str, list[_Found]] = {}
    aliases: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            for alias in item.flags:
                aliases.setdefault(alias, item.name)
            key = aliases.get(item.name, item.name)
            if item.place.source == "flag" or item.place.source == "config":
                key = _match_name(key, by_name)
            by_name.setdefault(key, []).append(item)

    knobs: list[Knob] = []
    left_out: list[str] = []
    for name, items in by_name.items():
        if is_excluded(name, patterns):
            left_out.append(name)
            continue
        last = items[-1]
        is_int = all(isinstance(i.value, int) for i in items)
        shadowed = tuple((i.place, float(i.value)) for i in items[:-1])
        knobs.append(
            Knob(
                name,
                float(last.value),
                is_int,
                last.place,
                shadowed,
                editable=not last.place.in_run_command and last.place.path in may_edit,
            )
        )
    looked = [*order, *([RUN_COMMAND] if parsed.args else [])]
    return KnobReport(tuple(knobs), tuple(looked), tuple(left_out))


def _match_name(name: str, known: Mapping[str, Any]) -> str:
    """A flag or config key names a script knob by its exact name, else case-insensitively, else by its last part."""
    if name in known:
        return name
    lower = {k.lower(): k for k in known}
    if name.lower() in lower:
        return lower[name.lower()]
    last = name.rsplit(".", 1)[-1].lower()
    return lower.get(last, name)


def set_value(text: str, place: Place, new_text: str) -> str:
    return text[: place.start] + new_text + text[place.end :]


@dataclass(frozen=True)
class KnobChange:
    knob: Knob
    new_value: float

    @property
    def description(self) -> str:
        return f"{self.knob.name} {self.knob.text()} -> {format_number(self.new_value, self.knob.is_int)}"


def apply_changes(files: Mapping[str, str], changes: Sequence[KnobChange]) -> dict[str, str]:
    """The new text of each file the changes touch; spans are rewritten from the end so earlier ones stay valid."""
    out: dict[str, str] = {}
    ordered = sorted(changes, key=lambda c: (c.knob.place.path, -c.knob.place.start))
    for change in ordered:
        place = change.knob.place
        text = out.get(place.path, files[place.path])
        out[place.path] = set_value(text, place, format_number(change.new_value, change.knob.is_int))
    return out


def describe_knobs(report: KnobReport, limit: int = 40, for_model: bool = True) -> str:
    """The knob list as the LLM agent reads it: where each value lives and which the run command fixes."""
    if not report.knobs:
        return ""
    lines = ["# Knobs (numeric settings found where they live; later sources override earlier ones)"]
    fixed = (
        " [set by the run command: an edit in a file has no effect; say the flag must change]"
        if for_model
        else " [set by the run command: the offline agent leaves it; change it with autoresearch config run_command]"
    )
    for knob in report.knobs[:limit]:
        note = ""
        if knob.overridden_by_run_command:
            note = fixed
        elif not knob.editable:
            note = " [in a file that is not editable]"
        lines.append(f"- {knob.describe()}{note}")
    if len(report.knobs) > limit:
        lines.append(f"- ... and {len(report.knobs) - limit} more")
    if report.left_out:
        lines.append(f"Measurement and bookkeeping, not knobs (leave them): {', '.join(report.left_out[:20])}.")
    return "\n".join(lines)
