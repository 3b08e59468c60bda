"""results.tsv: the skill's format and karpathy/autoresearch's, torn tails, appends, best and baseline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from autoresearch.core.errors import UserError
from autoresearch.core.results import (
    ResultRow,
    append_row,
    header,
    is_better,
    parse_results,
    read_results,
    repair_torn_tail,
    write_header,
)

SKILL = (
    "commit\tval_loss\tmemory_gb\tduration_s\tstatus\tdescription\n"
    "a1b2c3d\t1.000000\t44.0\t300.2\tbaseline\tbaseline\n"
    "b2c3d4e\t0.993000\t44.2\t301.0\tkeep\tincrease LR to 0.04\n"
    "c3d4e5f\t1.005000\t44.0\t299.9\tdiscard\tswitch to GeLU activation\n"
    "d4e5f6a\t0.000000\t0.0\t0\tcrash\tdouble model width (OOM)\n"
    "e5f6a7b\t0.990000\t44.1\t300.5\tkeep\tLEARNING_RATE 0.04 -> 0.08\n"
)
KARPATHY = (
    "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
    "a1b2c3d\t0.997900\t44.0\tkeep\tbaseline\n"
    "b2c3d4e\t0.993200\t44.2\tkeep\tincrease LR to 0.04\n"
    "c3d4e5f\t1.005000\t44.0\tdiscard\tswitch to GeLU activation\n"
    "d4e5f6g\t0.000000\t0.0\tcrash\tdouble model width (OOM)\n"
)


def row(metric: float, status: str = "keep", commit: str = "abc1234", description: str = "x") -> ResultRow:
    return ResultRow(commit, metric, 1.5, 12.0, status, description)


def test_skill_format() -> None:
    table = parse_results(SKILL)
    assert table.metric_name == "val_loss"
    assert table.has_duration
    assert not table.torn_tail
    assert len(table.rows) == 5
    first, *_, last = table.rows
    assert first == ResultRow("a1b2c3d", 1.0, 44.0, 300.2, "baseline", "baseline")
    assert last.description == "LEARNING_RATE 0.04 -> 0.08"
    assert [r.status for r in table.rows] == ["baseline", "keep", "discard", "crash", "keep"]
    assert table.baseline() == 1.0
    assert table.best(higher_is_better=False) == (5, table.rows[4])
    assert [n for n, _ in table.measured()] == [1, 2, 3, 5]


def test_karpathy_format() -> None:
    table = parse_results(KARPATHY)
    assert table.metric_name == "val_bpb"
    assert not table.has_duration
    assert len(table.rows) == 4
    assert table.rows[1] == ResultRow("b2c3d4e", 0.9932, 44.2, 0.0, "keep", "increase LR to 0.04")
    assert table.rows[3].status == "crash"
    assert table.rows[3].description == "double model width (OOM)"
    # karpathy's baseline is the first row, recorded as `keep`.
    assert table.baseline() == 0.9979
    assert table.best(higher_is_better=False) == (2, table.rows[1])


def test_crlf_and_bom() -> None:
    table = parse_results("\ufeff" + SKILL.replace("\n", "\r\n"))
    assert table.metric_name == "val_loss"
    assert len(table.rows) == 5
    assert table.rows[0].description == "baseline"


def test_not_a_results_file() -> None:
    for text in ("", "\n", "a,b,c\n1,2,3\n"):
        with pytest.raises(UserError) as info:
            parse_results(text)
        assert "\n" not in str(info.value)
        assert "results.tsv" in str(info.value)


def test_torn_last_line_is_not_a_row(tmp_path: Path) -> None:
    path = tmp_path / "results.tsv"
    path.write_text(SKILL + "f6a7b8c\t0.98")
    table = read_results(path)
    assert table.torn_tail
    assert len(table.rows) == 5

    assert repair_torn_tail(path) is True
    assert path.read_text() == SKILL
    assert repair_torn_tail(path) is False
    assert path.read_text() == SKILL


@pytest.mark.parametrize("cut", ["f6a7b8c", "f6a7b8c\t0.980000\t1.0\t2.0\tke", "f6a7b8c\t0.980000\t1.0\t2.0\tkeep\t"])
def test_every_partial_row_is_cut(tmp_path: Path, cut: str) -> None:
    path = tmp_path / "results.tsv"
    path.write_text(SKILL + cut)
    assert len(read_results(path).rows) == 5
    assert repair_torn_tail(path)
    assert path.read_text() == SKILL


def test_complete_last_row_without_newline_is_kept(tmp_path: Path) -> None:
    # A file edited by hand or by the skill's agent may lack the final newline; its last row is real.
    path = tmp_path / "results.tsv"
    path.write_text(KARPATHY.rstrip("\n"))
    table = read_results(path)
    assert len(table.rows) == 4
    assert not table.torn_tail
    assert repair_torn_tail(path) is False
    assert path.read_text() == KARPATHY
    append_row(path, row(0.9, "discard"), with_duration=False)
    assert len(read_results(path).rows) == 5


def test_repair_on_a_header_only_file(tmp_path: Path) -> None:
    path = tmp_path / "results.tsv"
    write_header(path, "val_loss")
    assert repair_torn_tail(path) is False
    assert path.read_text() == header("val_loss")
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    assert repair_torn_tail(empty) is False


def test_append_row_writes_one_line(tmp_path: Path) -> None:
    path = tmp_path / "results.tsv"
    write_header(path, "val_loss")
    append_row(path, ResultRow("abc1234", 0.5, 2.25, 61.04, "keep", "LR 0.02 -> 0.04"))
    append_row(path, ResultRow("def5678", 0.0, 0.0, 3.0, "crash", "two\nlines\tand tabs"))
    append_row(path, ResultRow("0123456", 0.7, 2.0, 60.0, "discard", "   "))
    assert path.read_text().splitlines()[1:] == [
        "abc1234\t0.500000\t2.2\t61.0\tkeep\tLR 0.02 -> 0.04",
        "def5678\t0.000000\t0.0\t3.0\tcrash\ttwo lines and tabs",
        "0123456\t0.700000\t2.0\t60.0\tdiscard\t-",
    ]
    table = read_results(path)
    assert [r.commit for r in table.rows] == ["abc1234", "def5678", "0123456"]
    assert table.rows[1].description == "two lines and tabs"


def test_append_in_karpathy_format(tmp_path: Path) -> None:
    path = tmp_path / "results.tsv"
    path.write_text(KARPATHY)
    append_row(path, ResultRow("abc1234", 0.99, 44.0, 300.0, "discard", "x"), with_duration=False)
    lines = path.read_text().splitlines()
    assert lines[-1] == "abc1234\t0.990000\t44.0\tdiscard\tx"
    assert all(len(line.split("\t")) == 5 for line in lines)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only files")
def test_read_only_results_file(tmp_path: Path) -> None:
    path = tmp_path / "results.tsv"
    write_header(path, "val_loss")
    path.chmod(0o444)
    with pytest.raises(UserError) as info:
        append_row(path, row(1.0))
    message = str(info.value)
    assert "results.tsv" in message and "not writable" in message
    assert "\n" not in message


@pytest.mark.parametrize("make", ["directory", "missing"])
def test_unwritable_results_file_is_one_sentence(tmp_path: Path, make: str) -> None:
    path = tmp_path / "results.tsv"
    if make == "directory":
        path.mkdir()
    with pytest.raises(UserError) as info:
        append_row(path, row(1.0))
    message = str(info.value)
    assert message.startswith("results.tsv")
    assert message.endswith(".")
    assert "\n" not in message


def test_unreadable_results_file(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        read_results(tmp_path / "results.tsv")
    assert "autoresearch setup" in str(info.value)


def test_is_better() -> None:
    assert is_better(0.9, 1.0, higher_is_better=False)
    assert not is_better(1.1, 1.0, higher_is_better=False)
    assert is_better(1.1, 1.0, higher_is_better=True)
    assert not is_better(0.9, 1.0, higher_is_better=True)
    assert not is_better(1.0, 1.0, higher_is_better=False)
    assert not is_better(1.0, 1.0, higher_is_better=True)
    assert is_better(-2.0, -1.0, higher_is_better=False)
    assert is_better(5.0, None, higher_is_better=False)
    assert not is_better(float("nan"), 1.0, higher_is_better=False)
    assert not is_better(float("-inf"), 1.0, higher_is_better=False)
    assert not is_better(float("inf"), 1.0, higher_is_better=True)


def test_best_and_baseline_lower_and_higher() -> None:
    text = (
        header("acc")
        + "c000001\t0.500000\t0.0\t1.0\tbaseline\tbaseline\n"
        + "c000002\t0.700000\t0.0\t1.0\tkeep\tbetter if higher\n"
        + "c000003\t0.400000\t0.0\t1.0\tdiscard\tlower but discarded\n"
        + "c000004\t0.000000\t0.0\t1.0\tcrash\tcrashed\n"
        + "c000005\t0.700000\t0.0\t1.0\tkeep\tequal to #2\n"
        + "c000006\t0.600000\t0.0\t1.0\tkeep\tbetter if lower\n"
    )
    table = parse_results(text)
    assert table.baseline() == 0.5
    best_high = table.best(higher_is_better=True)
    assert best_high is not None and best_high[0] == 2  # the first of equal values
    best_low = table.best(higher_is_better=False)
    assert best_low is not None and best_low[0] == 1  # discard and crash rows never count


def test_no_rows() -> None:
    table = parse_results(header("val_loss"))
    assert table.rows == ()
    assert table.baseline() is None
    assert table.best(higher_is_better=False) is None


def test_unknown_status_rows_are_not_rows_and_are_named() -> None:
    table = parse_results(
        header("val_loss") + "abc1234\t1.0\t0.0\t1.0\tkeep\tx\n" + "bcd2345\t1.0\t0.0\t1.0\tpending\tx\n"
    )
    assert [r.commit for r in table.rows] == ["abc1234"]
    assert table.unreadable_lines == (3,)


def test_columns_are_found_by_name() -> None:
    # Another tool inserted a column before status: every row still reads right, and the column is named.
    text = (
        "commit\tval_loss\tmemory_gb\tduration_s\tnotes\tstatus\tdescription\n"
        "a1b2c3d\t1.000000\t44.0\t300.2\tfirst\tbaseline\tbaseline\n"
        "b2c3d4e\t0.993000\t44.2\t301.0\t-\tkeep\tincrease LR to 0.04\n"
    )
    table = parse_results(text)
    assert table.foreign_columns == ("notes",)
    assert table.unreadable_lines == ()
    assert table.rows[1] == ResultRow("b2c3d4e", 0.993, 44.2, 301.0, "keep", "increase LR to 0.04")
    assert parse_results(SKILL).foreign_columns == () and parse_results(KARPATHY).foreign_columns == ()


def test_header_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "results.tsv"
    path.write_text(KARPATHY.splitlines()[0])
    assert read_results(path).rows == ()
    assert repair_torn_tail(path) is False
    assert path.read_text() == KARPATHY.splitlines()[0] + "\n"


@pytest.mark.parametrize("value", [1e-320, 0.0, 0.1234567, 2.487933333333333, 1e300, 0.9979, -3.5])
def test_results_tsv_keeps_every_digit_the_value_has(tmp_path: Path, value: float) -> None:
    path = tmp_path / "results.tsv"
    write_header(path, "val_loss")
    append_row(path, row(value))
    assert read_results(path).rows[0].metric == value
    if value in (0.0, 0.9979, -3.5):  # six decimals, as the skill writes them, whenever they are exact
        assert path.read_text().split("\n")[1].split("\t")[1] == f"{value:.6f}"


def test_a_denormal_best_is_the_best_for_status_as_for_the_branch(tmp_path: Path) -> None:
    path = tmp_path / "results.tsv"
    write_header(path, "val_loss")
    append_row(path, row(0.0, "baseline"))
    append_row(path, row(1e-320, "discard"))
    append_row(path, row(5e-324, "keep", "bbbbbbb"))
    table = read_results(path)
    assert table.best(higher_is_better=True) == (2 + 1, table.rows[2])
    assert table.best(higher_is_better=False) == (1, table.rows[0])
