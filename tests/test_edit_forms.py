"""The reply forms beyond SEARCH/REPLACE, and the tolerant matching every form goes through."""

from __future__ import annotations

from pathlib import Path

import pytest
from autoresearch.core.edit_blocks import PathRefused, apply_blocks, parse_reply, resolve_editable
from autoresearch.core.edit_match import match_edit
from autoresearch.core.loss_curve import READ_WHOLE_BYTES, SAMPLE_WINDOWS, loss_curve, parse_loss
from autoresearch.core.syntax_check import syntax_problem

TRAIN = """import math

LR = 0.02


class Net:
    def __init__(self):
        self.width = 4
        self.depth = 2

    def step(self, x):
        for i in range(3):
            if x > i:
                x = x - 1
        return x


def evaluate(net):
    total = 0
    for i in range(3):
        total += net.step(i)
    return total
"""


def apply(reply: str, text: str = TRAIN, editable: tuple[str, ...] = ("train.py",), root: Path = Path(".")):
    parsed = parse_reply(reply, list(editable))
    return parsed, apply_blocks(parsed.blocks, {"train.py": text}, root, list(editable))


def block(search: str, replace: str, path: str = "train.py") -> str:
    return f"{path}\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"


def test_unified_diff_with_headers_is_applied_hunk_by_hunk_whatever_its_line_numbers() -> None:
    reply = (
        "Description: two changes\n\n```diff\n--- a/train.py\n+++ b/train.py\n@@ -1,4 +1,4 @@\n"
        " import math\n \n-LR = 0.02\n+LR = 0.04\n@@ -90,3 +90,4 @@ def evaluate(net):\n"
        "     total = 0\n+    scale = 2\n     for i in range(3):\n```\n"
    )
    parsed, result = apply(reply)
    assert [b.origin for b in parsed.blocks] == ["hunk", "hunk"] and result.ok
    assert result.files["train.py"] == TRAIN.replace("LR = 0.02", "LR = 0.04").replace(
        "    total = 0\n", "    total = 0\n    scale = 2\n"
    )


def test_bare_hunk_takes_the_file_line_above_it(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text("A = 1\n")
    reply = "model.py\n```diff\n@@ ... @@\n-A = 1\n+A = 2\n```\n"
    parsed = parse_reply(reply, ["train.py", "model.py"])
    assert [(b.path, b.search, b.replace, b.origin) for b in parsed.blocks] == [("model.py", "A = 1", "A = 2", "hunk")]
    hunk_for_gitignore = "```diff\n--- a/.gitignore\n+++ b/.gitignore\n@@ -1 +1,2 @@\n *.pyc\n+*.pt\n```\n"
    parsed, result = apply(hunk_for_gitignore, root=tmp_path)
    assert [b.path for b in parsed.blocks] == [".gitignore"]
    assert result.failures and ".gitignore is not an editable file" in result.failures[0].reason


def test_hunk_that_misses_is_reported_as_a_hunk() -> None:
    _, result = apply("@@ -1 +1 @@\n-LR = 0.5\n+LR = 0.04\n")
    assert result.failures[0].short == "hunk 1's lines match nothing in train.py"
    assert "LR = 0.02" in result.failures[0].closest


def test_apply_patch_envelope_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("X = 1\n")
    reply = "*** Begin Patch\n*** Update File: a.py\n@@\n-X = 1\n+X = 3\n*** End Patch\n"
    parsed = parse_reply(reply, ["train.py", "a.py"])
    assert [(b.path, b.replace) for b in parsed.blocks] == [("a.py", "X = 3")]


def test_whole_file_after_its_name_replaces_the_file() -> None:
    new = TRAIN.replace("self.depth = 2", "self.depth = 3")
    parsed, result = apply(f"Description: deeper\n\ntrain.py\n```python\n{new}```\n")
    assert [b.origin for b in parsed.blocks] == ["file"] and result.ok
    assert result.files["train.py"] == new
    parsed, result = apply(f"```python train.py\n{new.rstrip()}\n```\n")
    assert result.ok and result.files["train.py"] == new


def test_whole_file_is_refused_when_it_is_not_clearly_the_whole_file() -> None:
    _, result = apply("train.py\n```python\nLR = 0.04\n```\n")
    assert not result.ok and "does not look like the whole file" in result.failures[0].reason
    # A file that leaves the rest out is a sketch: applied only where its part is anchored for certain.
    lazy = TRAIN.split("class Net")[0].replace("LR = 0.02", "LR = 0.03") + "# ... rest of the code unchanged ...\n"
    assert apply(f"train.py\n```python\n{lazy}```\n")[1].files["train.py"] == TRAIN.replace("0.02", "0.03")
    unanchored = "import os\n" + lazy.replace("import math\n", "")
    _, result = apply(f"train.py\n```python\n{unanchored}```\n")
    assert not result.ok and "leaves lines out (line 6: `# ... rest of the code unchanged ...`)" in (
        result.failures[0].reason
    )
    # Without a name, only something very like the whole file is taken.
    nameless = TRAIN.replace("LR = 0.02", "LR = 0.03")
    assert apply(f"Here it is:\n```python\n{nameless}```\n")[1].files["train.py"] == nameless
    # An unnamed snippet far from the whole file is an illustration, not a failed whole-file edit.
    snippet = apply("Try this:\n```python\nLR = 0.03\n```\n")[1]
    assert len(snippet.snippets) == 1 and not snippet.applied and snippet.files["train.py"] == TRAIN
    half = TRAIN.split("class Net")[0] + "# ... rest of the code unchanged ...\n"
    assert apply(f"Like so:\n```python\n{half}```\n")[1].failures


def test_fences_without_markers_are_ignored_when_the_reply_has_blocks() -> None:
    reply = "In general:\n```python\nlr = base * 0.5\n```\n" + block("LR = 0.02", "LR = 0.04")
    parsed, result = apply(reply)
    assert [b.origin for b in parsed.blocks] == ["block"] and result.ok


def test_elisions_in_search_and_replace_keep_the_lines_they_stand_for() -> None:
    search = "    def step(self, x):\n        ...\n        return x"
    replace = "    def step(self, x):\n        ...\n        x = x * 2\n        return x"
    out = match_edit(TRAIN, search, replace).text
    assert out == TRAIN.replace(
        "                x = x - 1\n        return x", "                x = x - 1\n        x = x * 2\n        return x"
    )
    commented = search.replace("...", "# ... existing code ...")
    assert match_edit(TRAIN, commented, replace.replace("...", "# ... existing code ...")).text == out
    uneven = match_edit(TRAIN, search, "    def step(self, x):\n        return 0")
    assert uneven.text is None and "elision" in uneven.problem


def test_replace_that_leaves_lines_out_is_refused_not_applied() -> None:
    outcome = match_edit(
        TRAIN, "        self.width = 4\n        self.depth = 2", "        self.width = 8\n        # ... rest unchanged"
    )
    assert outcome.text is None and "`# ... rest unchanged`" in outcome.problem and "delete" in outcome.problem
    comment = match_edit(TRAIN, "LR = 0.02", "# the rate stays unchanged during warmup\nLR = 0.02")
    assert comment.text is not None, "a new comment that merely says 'unchanged' is not an elision"
    # A bare `...` is Python: a stub body is fine.
    stub = match_edit(TRAIN, "def evaluate(net):", "def helper():\n    ...\n\n\ndef evaluate(net):")
    assert stub.text is not None and "def helper():\n    ...\n" in stub.text


def test_tabs_for_spaces_are_repaired_and_deeper_lines_follow() -> None:
    search = "\tdef step(self, x):\n\t\tfor i in range(3):"
    replace = "\tdef step(self, x):\n\t\tfor i in range(3):\n\t\t\tx += 0\n\t\t\tif x < 0:\n\t\t\t\tbreak"
    out = match_edit(TRAIN, search, replace).text
    assert out is not None
    assert "        for i in range(3):\n            x += 0\n            if x < 0:\n                break\n" in out
    assert "                break\n            if x > i:" in out


def test_spaces_for_tabs_are_repaired_too() -> None:
    tabbed = "def f(x):\n\tif x:\n\t\treturn 1\n\treturn 0\n"
    search, replace = (
        "    if x:\n        return 1",
        "    if x:\n        if x > 1:\n            return 2\n        return 1",
    )
    assert match_edit(tabbed, search, replace).text == tabbed.replace(
        "\t\treturn 1", "\t\tif x > 1:\n\t\t\treturn 2\n\t\treturn 1"
    )


def test_stripped_search_spanning_nesting_levels_is_reindented_where_it_matched() -> None:
    search = "for i in range(3):\nif x > i:\nx = x - 1\nreturn x"
    replace = "for i in range(3):\nif x > i:\nx = x - 2\nreturn x"
    out = match_edit(TRAIN, search, replace).text
    assert out == TRAIN.replace("x = x - 1", "x = x - 2")
    inserted = match_edit(TRAIN, "if x > i:\nx = x - 1", "if x > i:\nx = x - 1\nif x < 0:\nx = 0").text
    assert (
        inserted is not None
        and "                x = x - 1\n                if x < 0:\n                    x = 0\n" in inserted
    )


def test_two_space_indentation_is_mapped_to_the_files_four() -> None:
    search = "  def step(self, x):\n    for i in range(3):"
    replace = "  def step(self, x):\n    x = abs(x)\n    for i in range(3):"
    out = match_edit(TRAIN, search, replace).text
    assert out is not None and "    def step(self, x):\n        x = abs(x)\n        for i in range(3):\n" in out


def test_a_search_matching_two_places_is_sent_back_with_both() -> None:
    outcome = match_edit(TRAIN, "for i in range(3):", "for i in range(4):")
    assert outcome.text is None and outcome.places == (12, 20)
    _, result = apply(block("for i in range(3):", "for i in range(4):"))
    assert apply(block("    for i in range(3):", "    for i in range(4):"))[1].ok, "the exact indentation picks one"
    failure = result.failures[0]
    assert failure.short == "block 1's SEARCH matches 2 places in train.py"
    assert "Place 1, from line 12" in failure.places and "Place 2, from line 20" in failure.places
    assert "   20 |     for i in range(3):" in failure.places
    assert result.files["train.py"] == TRAIN, "never applied to the first place"
    # Inside lines too.
    assert match_edit("a = f(1)\nb = f(1)\n", "f(1)", "f(2)").places == (1, 2)


def test_numbered_lines_copied_from_the_feedback_still_match() -> None:
    search = "   12 |         for i in range(3):\n   13 |             if x > i:"
    replace = "   12 |         for i in range(3):\n   13 |             if x >= i:"
    assert match_edit(TRAIN, search, replace).text == TRAIN.replace("if x > i:", "if x >= i:")
    plain_replace = "        for i in range(3):\n            if x >= i:"
    assert match_edit(TRAIN, search, plain_replace).text == TRAIN.replace("if x > i:", "if x >= i:")


def test_file_line_naming_another_file_is_refused_by_name(tmp_path: Path) -> None:
    for name in (".gitignore", "train.py\x00", "\x00", "Makefile.in", "../train.py.bak"):
        parsed, result = apply(block("LR = 0.02", "LR = 0.04", name), root=tmp_path)
        assert [b.path for b in parsed.blocks] == [name]
        assert not result.ok and result.files["train.py"] == TRAIN, name
    assert (
        "holds a control character"
        in apply(block("LR = 0.02", "LR = 0.04", "train.py\x00"), root=tmp_path)[1].failures[0].reason
    )
    with pytest.raises(PathRefused, match="control character"):
        resolve_editable("a\x00b", tmp_path, ["train.py"])
    # A word that is not a file name still leaves the block to the only editable file.
    parsed, result = apply("Change:\n<<<<<<< SEARCH\nLR = 0.02\n=======\nLR = 0.04\n>>>>>>> REPLACE\n")
    assert result.ok


def test_other_tools_markers() -> None:
    cline = "train.py\n------- SEARCH\nLR = 0.02\n=======\nLR = 0.05\n+++++++ REPLACE\n"
    roo = "train.py\n<<<<<<< SEARCH\n:start_line:3\n-------\nLR = 0.02\n=======\nLR = 0.06\n>>>>>>> REPLACE\n"
    legacy = "train.py\n<<<<<<< ORIGINAL\nLR = 0.02\n=======\nLR = 0.07\n>>>>>>> UPDATED\n"
    for reply, value in ((cline, "0.05"), (roo, "0.06"), (legacy, "0.07")):
        assert apply(reply)[1].files["train.py"] == TRAIN.replace("0.02", value)


def test_compile_check_names_the_line_and_ignores_files_that_never_compiled() -> None:
    broken = TRAIN.replace("LR = 0.02", "LR = = 0.03")
    problem = syntax_problem({"train.py": broken}, {"train.py": TRAIN})
    assert problem is not None and problem.line == 3
    assert problem.short == "train.py would not compile (line 3: invalid syntax)"
    assert ">    3 | LR = = 0.03" in problem.feedback()
    assert syntax_problem({"train.py": TRAIN.replace("0.02", "0.03")}, {"train.py": TRAIN}) is None
    assert syntax_problem({"notes.md": "= ="}, {"notes.md": ""}) is None
    newer = "match x:\n    case 1: pass\nprint(f'{x!r:>{w}}')\n" + "x = (\n"
    assert syntax_problem({"train.py": newer + "1)\n"}, {"train.py": newer}) is None, "it did not compile before"
    assert syntax_problem({"train.py": "x = 1\x00\n"}, {"train.py": "x = 1\n"}) is not None
    outside_function = syntax_problem({"train.py": TRAIN + "return 1\n"}, {"train.py": TRAIN})
    assert outside_function is not None and "'return' outside function" in outside_function.message


def test_loss_curve_reads_the_log_and_samples_a_huge_one(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("".join(f"step {i} loss: {10 / (i + 1):.4f}\nval_loss: 9\n" for i in range(1000)))
    curve = loss_curve(log)
    assert curve is not None and len(curve.points) == 10 and curve.seen == 1000 and not curve.sampled
    assert curve.points[0] == 10.0 and curve.points[-1] == pytest.approx(0.01)
    assert list(curve.points) == sorted(curve.points, reverse=True)
    assert curve.describe().startswith("loss 10 ") and "(10 of 1,000 logged values, first to last)" in curve.describe()
    line = "iter 12 | loss=2.5e-1 | lr 0.1 | " + "x" * 80 + "\n"
    with log.open("w") as handle:
        for _ in range(READ_WHOLE_BYTES * 3 // len(line)):
            handle.write(line)
        handle.write("iter 13 | loss=0.125\n")
    big = loss_curve(log)
    assert big is not None and big.sampled and big.points[0] == 0.25 and big.points[-1] == 0.125
    assert big.seen == SAMPLE_WINDOWS and "(10 of 64 sampled logged values" in big.describe()
    noise = "".join(f"eval {i} ok {'y' * 200}\n" for i in range(40))
    with log.open("w") as handle:  # a loss every 40 lines of other output, and a last line cut short
        for i in range(READ_WHOLE_BYTES * 3 // len(noise)):
            handle.write(f"{noise}step {i} loss {8 / (i + 1):.5f}\n")
        handle.write("loss 0.0001\nstep 9")
    sparse = loss_curve(log)
    assert sparse is not None and sparse.seen == SAMPLE_WINDOWS and len(sparse.points) == 10
    assert sparse.points[0] == 8.0 and sparse.points[-1] == 0.0001
    assert list(sparse.points) == sorted(sparse.points, reverse=True)
    assert loss_curve(tmp_path / "missing.log") is None
    log.write_text("no numbers\nloss: nan\n")
    assert loss_curve(log) is None
    assert parse_loss("train_loss 1.5") == 1.5 and parse_loss("val_loss: 0.07") is None
