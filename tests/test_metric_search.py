"""find_last's fast paths (a memory-mapped search for a pattern's plain text, a whole-block prefilter)
give exactly what reading every line does, on logs with carriage returns, odd bytes and 1 MB block edges."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest
from autoresearch.core.metric import MEMORY_TAIL_BYTES, find_last, number_after, read_memory_gb, read_metric

PIECES = [
    "val_loss: 0.5",
    "val_loss:1",
    "xval_loss: 2",
    "step 3 val_loss: 4",
    "\r",
    "\n",
    "\n",
    "\r\n",
    "loss: 9",
    "val_loss",
    "val_loss: nan",
    "peak_vram_mb: 100",
    "é",
    "acc=0.3",
    "val_loss=0.7",
    " ",
    "epoch 2 val_loss=0.1",
    "va",
    "l_loss: 3",
]
PATTERNS = [
    "^val_loss:",
    "val_loss:",
    r"^val_loss: [\d.]+$",
    r"val_loss=([\d.]+)",
    "^peak_vram_mb:",
    r"epoch (\d+) val_loss",
    "val_loss?:",
    r"^val\_loss",
    "^va",
    "acc|loss",
    "(?i)VAL_LOSS:",
    "l_loss: 3$",
    "^l_loss",
    r"^\s*val_loss:",
    "(?i)^VAL_loss:",
    "(?<!x)val_loss:",
    r"\Aval",
    r"^(val|acc)",
    "^[^v]al",
]


def every_line(data: bytes, pattern: str) -> float | None:
    """The plain definition: the last matching line, the text after its last matching carriage return."""
    regex = re.compile(pattern)
    value: float | None = None
    for raw in data.split(b"\n"):
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        for part in reversed(line.split("\r")):
            match = regex.search(part)
            if match:
                value = number_after(part, match)
                break
    return value


def within(data: bytes, max_bytes: int) -> bytes | None:
    """The lines that start after the first newline of the last max_bytes (all of them in a short file)."""
    if len(data) <= max_bytes:
        return data
    newline = data.find(b"\n", len(data) - max_bytes)
    return None if newline < 0 else data[newline + 1 :]


def same(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def test_small_logs_agree_with_reading_every_line(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "run.log"
    for _ in range(300):
        data = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 25))).encode()
        if rng.random() < 0.2:
            data += b"\xff\xfe"
        path.write_bytes(data)
        for pattern in PATTERNS:
            assert same(find_last(path, pattern), every_line(data, pattern)), (data, pattern)
            bound = rng.randint(1, 60)
            tail = within(data, bound)
            expected = None if tail is None else every_line(tail, pattern)
            assert same(find_last(path, pattern, max_bytes=bound), expected), (data, pattern, bound)


@pytest.mark.parametrize("where", [0, 1 << 20, (1 << 20) - 5, (2 << 20) + 3])
def test_large_logs_agree_across_block_edges(tmp_path: Path, where: int) -> None:
    filler = b"step 1234 | loss: 0.123456 | lr 6e-4 | " + b"x" * 60 + b"\n"  # 100 bytes
    filler *= 22_000
    data = filler[:where] + b"\nval_loss: 0.25\rpeak_vram_mb: 512\n" + filler[where:] + b"done\r\n"
    path = tmp_path / "run.log"
    path.write_bytes(data)
    for pattern in ("^val_loss:", r"val_loss=([\d.]+)", r"^\s*val_loss:", "(?<!x)val_loss:", "acc|loss"):
        assert same(find_last(path, pattern), every_line(data, pattern)), pattern
        for bound in (where + 40, (1 << 20) + 7):
            tail = within(data, bound)
            assert tail is not None
            assert same(find_last(path, pattern, max_bytes=bound), every_line(tail, pattern)), (pattern, bound)
    assert read_metric(path, "^val_loss:") == 0.25
    assert read_memory_gb(path, "^peak_vram_mb:") == 0.5
    assert read_metric(path, "^accuracy:") is None


def test_memory_is_read_from_the_log_end_only(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    filler = b"step 1 | loss: 0.5\n" * (MEMORY_TAIL_BYTES // 19 + 10)
    path.write_bytes(b"peak_vram_mb: 2048\n" + filler + b"val_loss: 0.25\n")
    assert read_memory_gb(path, "^peak_vram_mb:") is None
    assert read_metric(path, "^val_loss:") == 0.25
    path.write_bytes(filler + b"peak_vram_mb: 2048\n" + filler[: len(filler) // 2])
    assert read_memory_gb(path, "^peak_vram_mb:") == 2.0


def test_the_first_line_and_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"val_loss: 0.5\n" + b"x\n" * 1000)
    assert read_metric(path, "^val_loss:") == 0.5
    path.write_bytes(b"")
    assert read_metric(path, "^val_loss:") is None
    assert read_metric(tmp_path / "missing.log", "^val_loss:") is None
