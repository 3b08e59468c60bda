"""The offline mutate agent: which constants it sees, how it edits them, and how it learns from results."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
from autoresearch.core.config import SessionConfig
from autoresearch.core.mutate import MutateProposer, find_constants
from autoresearch.core.proposer import CrashInfo, ExperimentRecord, Proposal, ProposalContext, content_key

SCRIPT = '''"""A training script."""
import math  # LEARNING_RATE = 9.0 in a comment is not a constant

LEARNING_RATE = 0.02
WIDTH = 16
BETA: float = -0.5
EPS = 1e-3
NAME = "model"
USE_BIAS = True
MAYBE = None
PAIR = (1, 2)
A = B = 3
SCALED = 2 * 8


def train(steps=10):
    INNER = 5
    return INNER * steps


class Model:
    HIDDEN = 64


if __name__ == "__main__":
    MAIN_ONLY = 7
    print(f"val_loss: {train():.4f}")
'''

CONFIG = SessionConfig(tag="t", script_path="train.py", metric_name="val_loss")
_DESC = re.compile(r"^([A-Z_]+) (\S+) -> (\S+)$")


def context(
    files: Mapping[str, str],
    tried: Mapping[str, int] | None = None,
    crash: CrashInfo | None = None,
    idea: str | None = None,
) -> ProposalContext:
    return ProposalContext(
        config=CONFIG,
        number=2,
        files=dict(files),
        readonly={},
        history=(),
        baseline=1.0,
        best=1.0,
        best_number=1,
        crash=crash,
        user_idea=idea,
        tried=dict(tried or {}),
    )


def changed_name(proposal: Proposal) -> tuple[str, float, float]:
    match = _DESC.match(proposal.description)
    assert match, proposal.description
    return match.group(1), float(match.group(2)), float(match.group(3))


def test_finds_module_level_numbers_only() -> None:
    found = {c.name: c for c in find_constants("train.py", SCRIPT)}
    assert set(found) == {"LEARNING_RATE", "WIDTH", "BETA", "EPS"}
    assert found["LEARNING_RATE"].value == 0.02 and not found["LEARNING_RATE"].is_int
    assert found["WIDTH"].value == 16 and found["WIDTH"].is_int
    assert found["BETA"].value == -0.5
    assert found["EPS"].value == 0.001
    assert find_constants("notes.txt", "X = 1\n") == []
    assert find_constants("broken.py", "X = (\n") == []


def test_description_and_exactly_one_change() -> None:
    proposal = MutateProposer(CONFIG).propose(context({"train.py": SCRIPT}))
    assert proposal is not None
    assert proposal.description == "LEARNING_RATE 0.02 -> 0.04"
    assert proposal.category == "hyperparams"
    new = proposal.files["train.py"]
    assert new == SCRIPT.replace("LEARNING_RATE = 0.02\n", "LEARNING_RATE = 0.04\n")
    assert set(proposal.files) == {"train.py"}
    # It carries its edit, the knob's assignment alone, for a re-apply on a newer best.
    (only,) = proposal.edits
    assert (only.path, only.old, only.new) == ("train.py", ("LEARNING_RATE = 0.02\n",), ("LEARNING_RATE = 0.04\n",))


def _apply(files: dict[str, str], proposal: Proposal) -> dict[str, str]:
    return {**files, **proposal.files}


def _diff_is_one_value(old: str, new: str) -> None:
    """Everything is byte-identical except one number on one line."""
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert len(changed) == 1
    a, b = changed[0]
    prefix = len(a.split("=")[0])
    assert a[:prefix] == b[:prefix]


@pytest.mark.parametrize(
    "text",
    [
        SCRIPT,
        SCRIPT.replace("\n", "\r\n"),
        "# café ünïcode\nNOTE = 'ü'; LEARNING_RATE = 0.02  # tuned\nWIDTH = 16\n",
        "\x0c\n# a form feed above, as some files have\nLEARNING_RATE = 0.02\nWIDTH = 16\n",
        '"""A docstring with a line separator \u2028 inside."""\nLEARNING_RATE = 0.02\n',
        "LEARNING_RATE=0.02\nWIDTH = 16",
        "# old Mac line ends\rLEARNING_RATE = 0.02\rWIDTH = 16\r",
    ],
    ids=["plain", "crlf", "unicode", "formfeed", "line-separator", "no-final-newline", "cr"],
)
def test_every_other_byte_is_unchanged(text: str) -> None:
    files = {"train.py": text}
    proposer = MutateProposer(CONFIG)
    tried: dict[str, int] = {content_key(files): 1}
    seen = 0
    for _ in range(6):
        proposal = proposer.propose(context(files, tried))
        if proposal is None:
            break
        new = proposal.files["train.py"]
        _diff_is_one_value(text, new)
        name, old_value, new_value = changed_name(proposal)
        constant = {c.name: c for c in find_constants("train.py", new)}[name]
        assert constant.value == pytest.approx(new_value)
        assert {c.name: c.value for c in find_constants("train.py", text)}[name] == pytest.approx(old_value)
        tried[content_key(_apply(files, proposal))] = len(tried) + 1
        seen += 1
    assert seen >= 2


def test_negative_and_scientific_constants() -> None:
    text = "BETA = -0.5\nEPS = 1e-3\n"
    files = {"train.py": text}
    proposer = MutateProposer(CONFIG)
    first = proposer.propose(context(files))
    assert first is not None
    assert first.description == "BETA -0.5 -> -0.25"
    assert first.files["train.py"] == "BETA = -0.25\nEPS = 1e-3\n"
    tried = {content_key(_apply(files, first)): 2}
    second = proposer.propose(context(files, tried))
    assert second is not None and second.description == "BETA -0.5 -> -1.0"
    tried[content_key(_apply(files, second))] = 3
    third = proposer.propose(context(files, tried))
    assert third is not None and third.description == "EPS 0.001 -> 0.002"
    assert third.files["train.py"] == "BETA = -0.5\nEPS = 0.002\n"


def _record(number: int, proposal: Proposal, status: str) -> ExperimentRecord:
    return ExperimentRecord(number, f"{number:07d}", 1.0, status, proposal.description)


def test_after_a_keep_it_repeats_the_direction() -> None:
    files = {"train.py": "WIDTH = 16\nLEARNING_RATE = 0.02\n"}
    proposer = MutateProposer(CONFIG)
    first = proposer.propose(context(files))
    assert first is not None and first.description == "WIDTH 16 -> 32"
    proposer.observe(_record(2, first, "keep"))
    files = _apply(files, first)
    second = proposer.propose(context(files))
    assert second is not None and second.description == "WIDTH 32 -> 64"

    # Kept in the downward direction too: it goes on downward.
    proposer = MutateProposer(CONFIG)
    files = {"train.py": "LEARNING_RATE = 0.02\n"}
    up = proposer.propose(context(files))
    assert up is not None
    proposer.observe(_record(2, up, "discard"))
    down = proposer.propose(context(files, {content_key(_apply(files, up)): 2}))
    assert down is not None and down.description == "LEARNING_RATE 0.02 -> 0.01"
    proposer.observe(_record(3, down, "keep"))
    files = _apply(files, down)
    again = proposer.propose(context(files))
    assert again is not None and again.description == "LEARNING_RATE 0.01 -> 0.005"


def test_after_discards_it_tries_other_constants_then_smaller_steps() -> None:
    files = {"train.py": "LEARNING_RATE = 0.02\nWIDTH = 16\n"}
    proposer = MutateProposer(CONFIG)
    tried: dict[str, int] = {content_key(files): 1}
    descriptions = []
    for number in range(2, 8):
        proposal = proposer.propose(context(files, tried))
        assert proposal is not None
        descriptions.append(proposal.description)
        tried[content_key(_apply(files, proposal))] = number
        proposer.observe(_record(number, proposal, "discard"))
    assert descriptions[:4] == [
        "LEARNING_RATE 0.02 -> 0.04",
        "LEARNING_RATE 0.02 -> 0.01",
        "WIDTH 16 -> 32",
        "WIDTH 16 -> 8",
    ]
    # Then smaller steps of the same constants.
    assert descriptions[4:] == ["LEARNING_RATE 0.02 -> 0.03", "LEARNING_RATE 0.02 -> 0.0133333"]


def test_a_crash_counts_against_that_direction() -> None:
    files = {"train.py": "LEARNING_RATE = 0.02\nWIDTH = 16\n"}
    proposer = MutateProposer(CONFIG)
    first = proposer.propose(context(files))
    assert first is not None
    proposer.observe(_record(2, first, "crash"))
    second = proposer.propose(context(files, {content_key(_apply(files, first)): 2}))
    assert second is not None and second.description == "LEARNING_RATE 0.02 -> 0.01"


def test_never_proposes_a_tried_version_and_ends_with_none() -> None:
    files = {"train.py": "LEARNING_RATE = 0.02\nWIDTH = 3\nDROPOUT = 0.0\n"}
    proposer = MutateProposer(CONFIG)
    tried: dict[str, int] = {content_key(files): 1}
    for number in range(2, 200):
        proposal = proposer.propose(context(files, tried))
        if proposal is None:
            break
        key = content_key(_apply(files, proposal))
        assert key not in tried, proposal.description
        tried[key] = number
        proposer.observe(_record(number, proposal, "discard"))
    else:
        pytest.fail("the proposer never ran out of changes")
    assert 6 <= len(tried) - 1 <= 20


def test_nothing_to_change() -> None:
    proposer = MutateProposer(CONFIG)
    assert proposer.propose(context({"train.py": "def f():\n    X = 1\n"})) is None
    assert proposer.propose(context({"README.md": "X = 1\n"})) is None
    assert proposer.propose(context({})) is None


def test_no_fix_for_a_crash() -> None:
    crash = CrashInfo(
        number=3, description="LEARNING_RATE 0.02 -> 0.4", category="hyperparams", diff="", log_tail="", attempt=1
    )
    assert MutateProposer(CONFIG).propose(context({"train.py": SCRIPT}, crash=crash)) is None


@pytest.mark.parametrize(
    ("idea", "description"),
    [
        ("LEARNING_RATE = 0.05", "LEARNING_RATE 0.02 -> 0.05"),
        ("try LEARNING_RATE -> 0.001", "LEARNING_RATE 0.02 -> 0.001"),
        ("set WIDTH to 24", "WIDTH 16 -> 24"),
        ("please, go to 3 layers: WIDTH = 8", "WIDTH 16 -> 8"),
        ("learning_rate = 0.05", "LEARNING_RATE 0.02 -> 0.05"),
    ],
)
def test_a_user_idea_is_applied(idea: str, description: str) -> None:
    proposal = MutateProposer(CONFIG).propose(context({"train.py": SCRIPT}, idea=idea))
    assert proposal is not None
    assert proposal.description == description
    name, _, new = changed_name(proposal)
    assert {c.name: c.value for c in find_constants("train.py", proposal.files["train.py"])}[name] == new


def test_an_idea_it_cannot_apply_falls_back_to_its_own() -> None:
    proposal = MutateProposer(CONFIG).propose(context({"train.py": SCRIPT}, idea="use a bigger model"))
    assert proposal is not None
    assert proposal.description == "LEARNING_RATE 0.02 -> 0.04"


def test_several_editable_files() -> None:
    files = {"train.py": "LEARNING_RATE = 0.02\n", "model.py": "DEPTH = 4\n"}
    proposal = MutateProposer(CONFIG).propose(context(files))
    assert proposal is not None
    assert proposal.description == "DEPTH 4 -> 8"
    assert proposal.files == {"model.py": "DEPTH = 8\n"}


def test_a_reassigned_constant_is_changed_where_it_takes_effect() -> None:
    text = "WIDTH = 8\nWIDTH = 16\n"
    proposal = MutateProposer(CONFIG).propose(context({"train.py": text}))
    assert proposal is not None
    assert proposal.files["train.py"] == "WIDTH = 8\nWIDTH = 32\n"


def test_bytes_that_are_not_utf8_survive() -> None:
    raw = b"# caf\xe9 (latin-1)\nLEARNING_RATE = 0.02  # \xff\n"
    text = raw.decode("utf-8", errors="surrogateescape")  # as the loop reads editable files
    proposal = MutateProposer(CONFIG).propose(context({"train.py": text}))
    assert proposal is not None
    new = proposal.files["train.py"].encode("utf-8", errors="surrogateescape")
    assert new == raw.replace(b"0.02", b"0.04")


def test_the_random_seed_is_left_alone_unless_asked() -> None:
    files = {"train.py": "SEED = 42\nTORCH_SEED = 1\n"}
    assert MutateProposer(CONFIG).propose(context(files)) is None
    asked = MutateProposer(CONFIG).propose(context(files, idea="SEED = 7"))
    assert asked is not None and asked.files["train.py"] == "SEED = 7\nTORCH_SEED = 1\n"
