"""Reading the metric and memory from run.log: the last matching line, robust to padding, odd bytes and size."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from autoresearch.core.metric import failure_note, find_last, read_memory_gb, read_metric, tail_text


def log(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "run.log"
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def test_last_matching_line_wins(tmp_path: Path) -> None:
    path = log(tmp_path, "val_loss: 3.0\nstep 1\nval_loss: 2.5\nstep 2\nval_loss: 1.25\ndone\n")
    assert read_metric(path, "^val_loss:") == 1.25


def test_only_lines_matching_the_pattern(tmp_path: Path) -> None:
    path = log(tmp_path, "val_loss: 1.5\ntrain val_loss: 9.0\nmy_val_loss: 8.0\n")
    assert read_metric(path, "^val_loss:") == 1.5


@pytest.mark.parametrize(
    ("line", "pattern", "value"),
    [
        ("val_bpb:          0.997900", "^val_bpb:", 0.9979),
        ("val_loss: 1e-3", "^val_loss:", 1e-3),
        ("val_loss: 2.5E+2", "^val_loss:", 250.0),
        ("val_loss: -0.5", "^val_loss:", -0.5),
        ("val_loss:-0.5", "^val_loss:", -0.5),
        ("val_loss: .5", "^val_loss:", 0.5),
        ("val_loss: 7", "^val_loss:", 7.0),
        ("val_loss: 0.25 (best so far)", "^val_loss:", 0.25),
        ("accuracy=0.93", "^accuracy=", 0.93),
        ("val_loss: 0.31", r"^val_loss: [0-9.]+", 0.31),
        ("top1_acc: 0.75", "^top1_acc:", 0.75),
    ],
)
def test_number_after_the_match(tmp_path: Path, line: str, pattern: str, value: float) -> None:
    assert read_metric(log(tmp_path, f"start\n{line}\nend\n"), pattern) == pytest.approx(value)


@pytest.mark.parametrize(
    "content",
    [
        "val_loss: nan\n",
        "val_loss: NaN\n",
        "val_loss: inf\n",
        "val_loss: -inf\n",
        "val_loss: Infinity\n",
        "val_loss: N/A\n",
        "top1_acc: N/A\n",
        "step 1 loss: 0.3\n",
        "",
        "val_loss: 0.5\nval_loss: nan\n",
    ],
)
def test_no_usable_metric_is_none(tmp_path: Path, content: str) -> None:
    pattern = "^top1_acc:" if content.startswith("top1") else "^val_loss:"
    assert read_metric(log(tmp_path, content), pattern) is None


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert read_metric(tmp_path / "absent.log", "^val_loss:") is None
    assert tail_text(tmp_path / "absent.log") == ""


def test_crlf_lines(tmp_path: Path) -> None:
    path = log(tmp_path, "val_loss: 2.0\r\nval_loss: 1.5\r\nbye\r\n")
    assert read_metric(path, "^val_loss:") == 1.5
    assert read_metric(path, r"^val_loss: [\d.]+$") == 1.5
    assert tail_text(path) == "val_loss: 2.0\nval_loss: 1.5\nbye"


def test_metric_after_a_carriage_return_progress_line(tmp_path: Path) -> None:
    path = log(tmp_path, "\rstep 1 50%\rstep 2 100%\rval_loss: 0.42\n")
    assert read_metric(path, "^val_loss:") == 0.42


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = log(tmp_path, b"\xff\xfe garbage \x80\nval_loss: 0.7 \xe9t\xe9\n\xc3\x28 more\n")
    assert read_metric(path, "^val_loss:") == 0.7
    assert "more" in tail_text(path)


def test_no_trailing_newline(tmp_path: Path) -> None:
    assert read_metric(log(tmp_path, "a\nval_loss: 0.9"), "^val_loss:") == 0.9


def test_a_30_mb_log_gives_its_last_metric(tmp_path: Path) -> None:
    noise = b"".join(b"step %07d loss: 1.2345 lr: 0.0004 tokens/s: 123456\n" % i for i in range(600_000))
    assert len(noise) > 30_000_000
    path = log(tmp_path, b"val_loss: 9.0\n" + noise + b"val_loss: 0.123\n" + b"shutting down\n")
    assert read_metric(path, "^val_loss:") == 0.123
    assert read_memory_gb(path, "^peak_vram_mb:") is None  # absent: scans the whole file

    only_at_start = log(tmp_path, b"val_loss: 9.0\n" + noise)
    start = time.perf_counter()
    assert read_metric(only_at_start, "^val_loss:") == 9.0
    assert time.perf_counter() - start < 5.0
    tail = tail_text(only_at_start, max_lines=3)
    assert tail.splitlines()[-1].startswith("step 0599999 ")


def test_memory_from_the_log(tmp_path: Path) -> None:
    path = log(tmp_path, "val_bpb: 0.99\npeak_vram_mb:     1024\ntotal_tokens_M: 499.6\n")
    assert read_memory_gb(path, "^peak_vram_mb:") == 1.0
    assert read_memory_gb(log(tmp_path, "peak_vram_mb: 45060.2\n"), "^peak_vram_mb:") == pytest.approx(44.004, 1e-3)
    assert read_memory_gb(log(tmp_path, "mem_gb: 3.5\n"), "^mem_gb:", unit="gb") == 3.5
    assert read_memory_gb(log(tmp_path, "peak_vram_mb: nan\n"), "^peak_vram_mb:") is None
    assert read_memory_gb(log(tmp_path, "val_loss: 1\n"), "^peak_vram_mb:") is None


def test_find_last_limited_to_the_last_lines(tmp_path: Path) -> None:
    path = log(tmp_path, "val_loss: 1.0\na\nb\nc\n")
    assert find_last(path, "^val_loss:", max_lines=3) is None
    assert find_last(path, "^val_loss:", max_lines=10) == 1.0


def test_tail_text_bounded_by_lines(tmp_path: Path) -> None:
    path = log(tmp_path, "".join(f"line {i}\n" for i in range(200)) + "\n\n")
    tail = tail_text(path, max_lines=50)
    lines = tail.splitlines()
    assert len(lines) == 50
    assert lines[0] == "line 150"
    assert lines[-1] == "line 199"


def test_tail_text_bounded_by_bytes(tmp_path: Path) -> None:
    path = log(tmp_path, "".join(f"{i:04d} " + "é" * 100 + "\n" for i in range(100)))
    tail = tail_text(path, max_lines=50, max_bytes=1000)
    assert len(tail.encode("utf-8")) <= 1000
    assert tail.splitlines()[-1].startswith("0099 ")
    assert len(tail.splitlines()) >= 4

    one_long_line = log(tmp_path, "x" * 100 + "é" * 10_000 + "END\n")
    tail = tail_text(one_long_line, max_bytes=500)
    assert len(tail.encode("utf-8")) <= 500
    assert tail.endswith("END")
    assert "\ufffd" not in tail


def test_a_capture_group_picks_the_number(tmp_path: Path) -> None:
    path = log(tmp_path, "epoch 3 val_loss=0.81 acc=0.7\n")
    assert read_metric(path, r"val_loss=([\d.]+)") == 0.81
    assert read_metric(path, r"epoch (\d+) val_loss") == 3.0
    assert read_metric(path, r"^epoch \d+ (val_loss)=") == 0.81


def test_tail_of_a_huge_last_line_reads_a_bounded_window(tmp_path: Path) -> None:
    """A crash whose last line is tens of MB without a newline: the tail holds at most max_bytes of its end,
    and reading it costs memory bounded by that window, not by the line (it used to grow quadratically)."""
    path = tmp_path / "run.log"
    with path.open("wb") as fh:
        fh.write(b"step 1 loss: 2.0\n")
        for _ in range(40):
            fh.write(b"x" * (1 << 20))
        fh.write(b" RuntimeError: out of memory")
    tracemalloc.start()
    try:
        tail = tail_text(path, 50, 4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tail.endswith("x RuntimeError: out of memory") and set(tail[:-28]) == {"x"}
    assert len(tail.encode()) <= 4096
    assert peak < 256 << 10, f"peak {peak} bytes"


def test_tail_skips_trailing_blank_lines_without_reading_them_all(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"first\nlast words\n" + b"\n" * 5_000_000)
    assert tail_text(path, 2, 4096) == "first\nlast words"


def test_a_metric_after_a_huge_line_is_found_with_a_pattern_that_needs_lines(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    with path.open("wb") as fh:
        fh.write(b"val_loss: 1.5\n")
        for _ in range(30):
            fh.write(b"y" * (1 << 20))
    tracemalloc.start()
    try:
        value = find_last(path, r"(?i)val_loss:")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert value == 1.5
    assert peak < 6 * 30 << 20, f"peak {peak} bytes"  # the line itself a few times (its copies), not its square


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("val_loss: 1_000.0", 1000.0),
        ("val_loss: 1_000", 1000.0),
        ("val_loss: 0x10", 16.0),
        ("val_loss: -0x1F", -31.0),
        ("val_loss: 1e-320", 1e-320),
        ("val_loss: 1,000.5", 1000.5),
    ],
)
def test_every_form_python_prints_is_read_as_the_number_printed(tmp_path: Path, line: str, value: float) -> None:
    assert read_metric(log(tmp_path, f"{line}\n"), "^val_loss:") == value


def test_negative_zero_is_the_zero_it_equals(tmp_path: Path) -> None:
    value = read_metric(log(tmp_path, "val_loss: -0.0\n"), "^val_loss:")
    assert value == 0.0 and str(value) == "0.0"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("val_loss: 1e400\n", "val_loss 1e400 is beyond the float range"),
        ("val_loss: 0x" + "f" * 300 + "\n", "is beyond the float range"),
        ("val_loss: -inf\n", "val_loss was -inf"),
        ("val_loss: nan\n", "val_loss was nan"),
        ("val_loss: N/A\n", "no number on the val_loss line: val_loss: N/A"),
        ("step 1 loss: 0.3\n", "no val_loss printed: no line matches ^val_loss:"),
    ],
)
def test_a_metric_that_cannot_be_read_is_refused_with_a_reason(tmp_path: Path, content: str, reason: str) -> None:
    path = log(tmp_path, content)
    assert read_metric(path, "^val_loss:") is None
    assert reason in failure_note(0, path, "^val_loss:", "val_loss")


def test_a_failed_exit_is_the_reason_and_says_whether_the_metric_came_first(tmp_path: Path) -> None:
    path = log(tmp_path, "val_loss: 0.5\nTraceback\n")
    assert failure_note(1, path, "^val_loss:", "val_loss") == "exit status 1 after printing val_loss"
    assert failure_note(-9, log(tmp_path, "step 1\n"), "^val_loss:", "val_loss") == "signal 9"
