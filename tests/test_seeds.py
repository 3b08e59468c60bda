"""Varying a seed the script fixes as a module constant (core/seeds.py): a repeat runs the script from its text
with the constant replaced, through a real python process; the file is never changed."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from autoresearch.core.config import SessionConfig
from autoresearch.core.seeds import ENV, SEED_CALLS, find_seed, seeded_command

PY = sys.executable
SCRIPT = """import random, sys
SEED: int = 1337  # the seed
random.seed(SEED)
print("seed", SEED, __name__, __file__ == __import__("os").path.abspath("train.py"), sys.argv[1:])
"""


def config(run_command: str) -> SessionConfig:
    return SessionConfig(
        tag="t", script_path="train.py", metric_name="val_loss", run_command=run_command, seed_via="SEED"
    )


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, check=False)


def test_a_repeat_runs_the_script_with_the_constant_replaced_and_the_file_untouched(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    cfg = config(f"{PY} -u train.py --steps 3")
    assert seeded_command(cfg, {}) == cfg.run_command  # a first run keeps the script's own seed
    done = run(seeded_command(cfg, {ENV: "7"}), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "seed 7 __main__ True ['--steps', '3']\n"
    assert run(cfg.run_command, tmp_path).stdout == "seed 1337 __main__ True ['--steps', '3']\n"
    assert (tmp_path / "train.py").read_text() == SCRIPT
    # Renamed since setup: the run keeps its own seed and says so.
    (tmp_path / "train.py").write_text(SCRIPT.replace("SEED", "SEED_0"))
    renamed = run(seeded_command(cfg, {ENV: "7"}), tmp_path)
    assert renamed.stdout.startswith("seed 1337 ") and "no SEED = <int> in train.py" in renamed.stderr


@pytest.mark.parametrize(
    ("run_command", "via"),
    [
        ("python train.py", "SEED"),
        ("OMP_NUM_THREADS=1 python3 -u train.py --x 1", "SEED"),
        ("torchrun train.py", None),  # not run by python directly: the text cannot be replaced
        ("python train.py | tee log", None),  # more than one command for the shell
        ("python other.py", None),  # the constant is not in the script the command runs
    ],
)
def test_setup_offers_a_constant_seed_only_where_a_repeat_can_replace_it(run_command: str, via: str | None) -> None:
    found, said = find_seed({"train.py": SCRIPT}, run_command, "train.py")
    assert found == via
    assert ("a repeat runs the script with its value replaced" in said) == (via is not None)


CALLS = """import random
offset = 0
random.seed(1337 + offset)  # as nanoGPT seeds: a literal plus an offset
print("draw", random.random())
"""


def test_a_repeat_replaces_the_literal_of_every_seeding_call_and_leaves_the_file_untouched(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(CALLS)
    cfg = SessionConfig(
        tag="t", script_path="train.py", metric_name="val_loss", run_command=f"{PY} train.py", seed_via=SEED_CALLS
    )
    assert seeded_command(cfg, {}) == cfg.run_command
    first = run(cfg.run_command, tmp_path)
    assert first.stdout == f"draw {random.Random(1337).random()}\n"
    repeat = run(seeded_command(cfg, {ENV: "7"}), tmp_path)
    assert repeat.returncode == 0, repeat.stderr
    assert repeat.stdout == f"draw {random.Random(7).random()}\n"
    assert (tmp_path / "train.py").read_text() == CALLS


@pytest.mark.parametrize(
    ("script", "run_command", "via"),
    [
        ("import torch\ntorch.manual_seed(1337)\n", "python train.py", SEED_CALLS),
        ("import numpy as np\nnp.random.seed(0)\n", "python -u train.py --x 1", SEED_CALLS),
        ("import torch\ntorch.manual_seed(1337)\n", "torchrun train.py", None),
        ("import torch\ntorch.manual_seed(seed)\n", "python train.py", None),  # no literal to replace
    ],
)
def test_setup_offers_the_seeding_calls_where_a_repeat_can_replace_their_literal(
    script: str, run_command: str, via: str | None
) -> None:
    found, said = find_seed({"train.py": script}, run_command, "train.py")
    assert found == via, said
    assert ("the literals replaced" in said) == (via is not None)
