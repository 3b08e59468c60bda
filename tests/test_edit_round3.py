"""The third round of reply forms and file shapes: line endings and BOMs, thinking, repeated blocks, the
dedent boundary, editor fences, JSON edits and tool calls, numbered lists, sketches, hunk headers."""

from __future__ import annotations

from pathlib import Path

from autoresearch.core.edit_blocks import apply_blocks, parse_reply
from autoresearch.core.edit_match import match_edit
from autoresearch.core.edit_reach import overridden_edits
from autoresearch.core.text_files import Layout, read_exact, write_exact

TRAIN = """import math

LR = 0.02
WIDTH = 4


class Attention:
    def __init__(self):
        self.drop = 0.1

    def forward(self, x):
        return x


class MLP:
    def __init__(self):
        self.drop = 0.1

    def forward(self, x):
        return x * 2


def train(steps):
    for step in range(steps):
        for micro in range(4):
            loss = step * micro
            print(loss)
        print(step)
    return loss
"""


def apply(reply: str, text: str = TRAIN, editable: tuple[str, ...] = ("train.py",), root: Path = Path(".")):
    parsed = parse_reply(reply, list(editable))
    return parsed, apply_blocks(parsed.blocks, {p: text for p in editable}, root, list(editable))


def block(search: str, replace: str, path: str = "train.py") -> str:
    return f"{path}\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"


def test_crlf_and_bom_are_kept_outside_the_edited_lines(tmp_path: Path) -> None:
    windows = "\ufeff" + TRAIN.replace("\n", "\r\n")
    write_exact(tmp_path / "train.py", windows)
    assert (tmp_path / "train.py").read_bytes() == windows.encode()
    assert read_exact(tmp_path / "train.py") == windows
    _, result = apply(block("import math", "import math, os"), windows)
    assert result.files["train.py"] == windows.replace("import math\r\n", "import math, os\r\n", 1)
    # A file mixing endings is edited as it is: only the edited line changes.
    mixed = TRAIN.replace("LR = 0.02\n", "LR = 0.02\r\n")
    assert match_edit(mixed, "WIDTH = 4", "WIDTH = 8").text == mixed.replace("WIDTH = 4", "WIDTH = 8")
    layout = Layout(windows)
    assert layout.bom and layout.crlf and layout.restore(layout.plain(windows)) == windows


def test_thinking_without_its_opening_tag_is_never_applied_and_headers_after_the_edit_are_read() -> None:
    reply = (
        "The user wants a change. Draft:\n"
        + block("LR = 0.02", "LR = 0.5")
        + "No, too high.\n</think>\n\n"
        + block("LR = 0.02", "LR = 0.03")
        + "\nDescription: a slightly larger learning rate\nCategory: hyperparams\nRationale: still falling.\n"
    )
    parsed, result = apply(reply)
    assert [b.replace for b in parsed.blocks] == ["LR = 0.03"]
    assert parsed.description == "a slightly larger learning rate" and parsed.category == "hyperparams"
    assert result.files["train.py"] == TRAIN.replace("LR = 0.02", "LR = 0.03")
    # A header-like comment inside a fence after the edit is code, not the description.
    fenced = block("LR = 0.02", "LR = 0.03") + "```python\n# Description: not this\n```\nDescription: this one\n"
    assert parse_reply(fenced, ["train.py"]).description == "this one"


def test_a_block_repeated_verbatim_is_applied_once() -> None:
    once = block("LR = 0.02", "LR = 0.02\nWARMUP = 10")
    parsed, result = apply(f"Description: warmup\n\n{once}\n## Complete edit\n\n{once}")
    assert len(parsed.blocks) == 1
    assert result.files["train.py"].count("WARMUP = 10") == 1


def test_new_lines_follow_replace_structure_when_search_lost_its_first_indentation() -> None:
    search = "for micro in range(4):\n            loss = step * micro\n            print(loss)"
    replace = search + "\n        loss = loss / 4"
    new = match_edit(TRAIN, search, replace).text
    assert new == TRAIN.replace("            print(loss)\n", "            print(loss)\n        loss = loss / 4\n")


def test_editor_fences_name_their_file_in_the_info_string() -> None:
    two = ("train.py", "config/small.py")
    for opening in ("```python:train.py", '```python title="train.py"', "```py filename=train.py", "```12:20:train.py"):
        reply = f"{opening}\n<<<<<<< SEARCH\nLR = 0.02\n=======\nLR = 0.03\n>>>>>>> REPLACE\n```\n"
        parsed = parse_reply(reply, list(two))
        assert [b.path for b in parsed.blocks] == ["train.py"], opening
    titled = '```python title="config/small.py"\n<<<<<<< SEARCH\nLR = 0.02\n=======\nLR = 0.03\n>>>>>>> REPLACE\n```\n'
    assert [b.path for b in parse_reply(titled, list(two)).blocks] == ["config/small.py"]


def test_blocks_without_names_are_each_reported_once() -> None:
    reply = "<<<<<<< SEARCH\nLR = 0.02\n=======\nLR = 0.03\n>>>>>>> REPLACE\n" * 2
    parsed = parse_reply(reply, ["train.py", "model.py"])
    assert [p.split(" has ")[0] for p in parsed.problems] == ["block 1", "block 2"]


def test_json_edit_objects_and_tool_calls_are_edits(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    as_json = '```json\n{"path": "train.py", "edits": [{"search": "LR = 0.02", "replace": "LR = 0.03"}]}\n```\n'
    parsed, result = apply(as_json, root=tmp_path)
    assert [b.origin for b in parsed.blocks] == ["json"] and result.files["train.py"] == TRAIN.replace("0.02", "0.03")
    absolute = str(tmp_path.resolve() / "train.py")
    call = (
        '<tool_call>\n{"name": "str_replace_editor", "arguments": {"command": "str_replace", '
        f'"path": "{absolute}", "old_str": "WIDTH = 4", "new_str": "WIDTH = 8"}}}}\n</tool_call>\n'
    )
    _, result = apply(call, root=tmp_path)
    assert result.ok and result.files["train.py"] == TRAIN.replace("WIDTH = 4", "WIDTH = 8")
    outside = call.replace(absolute, "/elsewhere/train.py")
    _, result = apply(outside, root=tmp_path)
    assert "outside the repository" in result.failures[0].reason


def test_blocks_in_an_indented_list_item_lose_the_item_indentation() -> None:
    reply = (
        "1. Nudge the rate:\n\n   train.py\n   ```python\n   <<<<<<< SEARCH\n   LR = 0.02\n   =======\n"
        "   LR = 0.03\n   >>>>>>> REPLACE\n   ```\n"
    )
    parsed, result = apply(reply)
    assert parsed.blocks[0].search == "LR = 0.02" and result.files["train.py"] == TRAIN.replace("0.02", "0.03")


def test_an_editor_sketch_applies_only_where_each_part_is_certain() -> None:
    loop = "def train(steps):\n    for step in range(steps):\n        for micro in range(8):\n"
    gap = "# ... existing code ...\n"
    sketch = f"train.py\n```python\n{gap}import math\n\nLR = 0.03\n{gap}{loop}{gap}```\n"
    _, result = apply(sketch)
    assert result.files["train.py"] == TRAIN.replace("0.02", "0.03").replace("range(4)", "range(8)")
    # A part whose first line is not in the file has no anchor: nothing is applied, and the reply is told why.
    unanchored = f"train.py\n```python\n{gap}LR = 0.03\nWIDTH = 4\n{gap}{loop}{gap}```\n"
    _, result = apply(unanchored)
    assert not result.applied and "leaves lines out" in result.failures[0].reason
    # A first line found twice (in both classes) is no anchor either.
    twice = f"train.py\n```python\n{gap}    def __init__(self):\n        self.drop = 0.2\n{gap}```\n"
    assert not apply(twice)[1].applied


def test_a_hunk_matching_two_places_goes_where_its_header_points() -> None:
    def hunk(header: str) -> str:
        body = "         self.drop = 0.1\n+        self.scale = 2\n"
        return f"```diff\n--- a/train.py\n+++ b/train.py\n{header}\n{body}```\n"

    by_function = apply(hunk("@@ -2,1 +2,2 @@ class MLP:"))[1]
    expected = TRAIN.replace(
        "class MLP:\n    def __init__(self):\n        self.drop = 0.1\n",
        "class MLP:\n    def __init__(self):\n        self.drop = 0.1\n        self.scale = 2\n",
    )
    assert by_function.files["train.py"] == expected
    by_line = apply(hunk("@@ -17,1 +17,2 @@"))[1]
    assert by_line.files["train.py"] == expected
    unknown = apply(hunk("@@ -40,1 +40,2 @@"))[1]
    assert unknown.failures and unknown.failures[0].places.count("Place ") == 2


def test_values_a_run_command_flag_sets_are_named() -> None:
    before = {"train.py": TRAIN}
    after = {"train.py": TRAIN.replace("WIDTH = 4", "WIDTH = 8")}
    dead = overridden_edits(before, after, "python train.py --width=16")
    assert [(d.name, d.flag) for d in dead] == [("WIDTH", "--width=16")]
    assert overridden_edits(before, after, "python train.py --lr 0.1") == []
    argparse = "import argparse\np = argparse.ArgumentParser()\np.add_argument('--batch-size', type=int, default=8)\n"
    changed = {"train.py": argparse.replace("default=8", "default=16")}
    assert [d.flag for d in overridden_edits({"train.py": argparse}, changed, "python train.py --batch-size 4")] == [
        "--batch-size 4"
    ]
