from __future__ import annotations

import os
from pathlib import Path

import pytest
from autoresearch.core.edit_blocks import (
    PathRefused,
    apply_blocks,
    apply_one,
    closest_lines,
    normalize_category,
    parse_reply,
    resolve_editable,
)

TRAIN = """import math

LEARNING_RATE = 0.02
BATCH_SIZE = 32


def train(steps):
    for step in range(steps):
        loss = 1.0 / (step + 1)
        if step % 10 == 0:
            print(step, loss)
    return loss
"""

CLEAN = """Description: increase learning rate to 0.04
Category: hyperparams
Rationale: The loss still falls at the end of the budget,
so a larger step may help.

train.py
```python
<<<<<<< SEARCH
LEARNING_RATE = 0.02
=======
LEARNING_RATE = 0.04
>>>>>>> REPLACE
```
"""


def test_parse_clean_reply() -> None:
    parsed = parse_reply(CLEAN, ["train.py"])
    assert parsed.description == "increase learning rate to 0.04"
    assert parsed.category == "hyperparams"
    assert parsed.rationale == "The loss still falls at the end of the budget, so a larger step may help."
    assert len(parsed.blocks) == 1
    block = parsed.blocks[0]
    assert (block.path, block.search, block.replace, block.index) == (
        "train.py",
        "LEARNING_RATE = 0.02",
        "LEARNING_RATE = 0.04",
        1,
    )
    assert not parsed.problems


def test_parse_tolerates_bold_case_missing_fences_and_prose() -> None:
    reply = """Sure! Here is my idea.

**Description:** Use a larger batch
**CATEGORY**: Hyperparameters
- rationale: bigger batches give smoother gradients

File: `train.py`
<<<<<<< search
BATCH_SIZE = 32
=======
BATCH_SIZE = 64
>>>>>>> replace

and another in the same file:

<<<<<<< SEARCH
import math
=======
import math
import os
>>>>>>> REPLACE
"""
    parsed = parse_reply(reply, ["train.py"])
    assert parsed.description == "Use a larger batch"
    assert parsed.category == "hyperparams"
    assert parsed.rationale == "bigger batches give smoother gradients"
    assert [b.path for b in parsed.blocks] == ["train.py", "train.py"]
    assert parsed.blocks[1].replace == "import math\nimport os"


def test_parse_file_name_forms_and_basename() -> None:
    reply = "### src/model.py\n```\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```\n"
    assert parse_reply(reply, ["pkg/src/model.py", "train.py"]).blocks[0].path == "pkg/src/model.py"
    fenced = "```python train.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```\n"
    assert parse_reply(fenced, ["other.py", "train.py"]).blocks[0].path == "train.py"
    unknown = "secrets.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"
    assert parse_reply(unknown, ["train.py"]).blocks[0].path == "secrets.py"


def test_parse_ignores_thinking_sections() -> None:
    thinking = "<think>\nmaybe\ntrain.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n</think>\n" + CLEAN
    parsed = parse_reply(thinking, ["train.py"])
    assert [b.search for b in parsed.blocks] == ["LEARNING_RATE = 0.02"]
    assert parsed.description == "increase learning rate to 0.04"


def test_parse_reports_unterminated_and_nameless_blocks() -> None:
    broken = "Description: x\n\ntrain.py\n<<<<<<< SEARCH\nLEARNING_RATE = 0.02\n=======\nLEARNING_RATE = 1\n"
    parsed = parse_reply(broken, ["train.py"])
    assert not parsed.blocks
    assert "REPLACE" in parsed.problems[0]
    nameless = "Description: x\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"
    parsed = parse_reply(nameless, ["a.py", "b.py"])
    assert not parsed.blocks and "file name" in parsed.problems[0]
    # With a single editable file, the name may be left out.
    assert parse_reply(nameless, ["train.py"]).blocks[0].path == "train.py"


def test_description_on_next_line_and_category_synonyms() -> None:
    parsed = parse_reply("Description:\n  add dropout 0.1\nCategory: regularisation\n", [])
    assert parsed.description == "add dropout 0.1"
    assert parsed.category == "regularization"
    assert normalize_category("Optimizer (AdamW)") == "optimizer"
    assert normalize_category("model architecture") == "architecture"
    assert normalize_category("weird") == "other"


def test_apply_exact_whole_lines_only() -> None:
    text = "LR = 0.025\nLR2 = 0.02\n"
    # "LR = 0.02" must not match inside "LR = 0.025".
    assert apply_one(text, "LR = 0.02", "LR = 0.04") is None
    assert apply_one("LR = 0.02  # rate\n", "LR = 0.02", "LR = 0.04") == "LR = 0.04  # rate\n"
    assert apply_one(TRAIN, "BATCH_SIZE = 32", "BATCH_SIZE = 64") == TRAIN.replace("32", "64")


def test_apply_tolerates_trailing_whitespace_and_indentation() -> None:
    search = "for step in range(steps):   \n    loss = 1.0 / (step + 1)"
    replace = "for step in range(steps):\n    loss = 2.0 / (step + 1)"
    out = apply_one(TRAIN, search, replace)
    assert out is not None
    assert "        loss = 2.0 / (step + 1)\n" in out
    assert "    for step in range(steps):\n" in out
    # Too deep an indentation in SEARCH is shifted back.
    deep = "            if step % 10 == 0:\n                print(step, loss)"
    out = apply_one(TRAIN, deep, "            if step % 5 == 0:\n                print(step, loss)")
    assert out is not None and "        if step % 5 == 0:\n            print(step, loss)\n" in out


def test_apply_keeps_crlf_and_fails_cleanly() -> None:
    text = "a = 1\r\nb = 2\r\n"
    assert apply_one(text, "a = 1 \nb = 2", "a = 3\nb = 2") == "a = 3\r\nb = 2\r\n"
    assert apply_one(TRAIN, "LEARNING_RATE = 0.5", "x") is None
    assert apply_one(TRAIN, "", "x") is None
    assert apply_one("", "", "new = 1\n") == "new = 1\n"


def test_closest_lines_points_at_the_near_miss() -> None:
    near = closest_lines(TRAIN, "LEARNING_RATE = 0.03\nBATCH_SIZE = 32")
    assert "LEARNING_RATE = 0.02" in near and "BATCH_SIZE = 32" in near
    assert closest_lines(TRAIN, "completely unrelated text that matches nothing at all") == ""


def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "train.py").write_text(TRAIN)
    (root / "prepare.py").write_text("EVAL = 1\n")
    return root


def test_resolve_editable_refuses_paths_outside(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    outside = tmp_path / "outside.py"
    outside.write_text("x = 1\n")
    os.symlink(outside, root / "link.py")
    editable = ["train.py", "link.py"]
    assert resolve_editable("train.py", root, editable) == "train.py"
    assert resolve_editable("./sub/../train.py", root, editable) == "train.py"
    assert resolve_editable(str(root / "train.py"), root, editable) == "train.py"
    for bad, words in (
        ("../outside.py", "outside the repository"),
        (str(outside), "outside the repository"),
        ("link.py", "outside the repository"),
        ("prepare.py", "not an editable file"),
        ("../repo/../outside.py", "outside the repository"),
    ):
        with pytest.raises(PathRefused, match=words):
            resolve_editable(bad, root, editable)


def test_apply_blocks_checks_all_and_reports_each(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    reply = (
        "train.py\n<<<<<<< SEARCH\nLEARNING_RATE = 0.02\n=======\nLEARNING_RATE = 0.04\n>>>>>>> REPLACE\n"
        "prepare.py\n<<<<<<< SEARCH\nEVAL = 1\n=======\nEVAL = 2\n>>>>>>> REPLACE\n"
        "train.py\n<<<<<<< SEARCH\nBATCH = 32\n=======\nBATCH = 64\n>>>>>>> REPLACE\n"
    )
    parsed = parse_reply(reply, ["train.py"])
    files = {"train.py": TRAIN}
    result = apply_blocks(parsed.blocks, files, root, ["train.py"])
    assert files == {"train.py": TRAIN}, "the input mapping is never changed"
    assert [b.index for b in result.applied] == [1]
    assert [(f.block.index, f.reason.split(";")[0]) for f in result.failures] == [
        (2, "prepare.py is not an editable file"),
        (3, "its SEARCH part does not match any lines of train.py exactly"),
    ]
    assert "BATCH_SIZE = 32" in result.failures[1].closest
    assert not result.ok
    assert (root / "prepare.py").read_text() == "EVAL = 1\n"


def test_resent_block_counts_as_already_applied(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    block = parse_reply(CLEAN, ["train.py"]).blocks[0]
    first = apply_blocks([block], {"train.py": TRAIN}, root, ["train.py"])
    assert first.ok and "LEARNING_RATE = 0.04" in first.files["train.py"]
    again = apply_blocks([block], first.files, root, ["train.py"], [(block.path, block.search, block.replace)])
    assert again.ok and again.already == [block] and again.files == first.files
    # Without that memory the same block is a failure, not a silent no-op.
    assert not apply_blocks([block], first.files, root, ["train.py"]).ok
