"""The offline search on scripts in the three shapes real projects have: argparse defaults (makemore), a
config file plus --key=value flags (nanoGPT with its configurator), module constants (karpathy/autoresearch).

On each, the real loop with the offline agent runs 10 experiments on a deterministic metric: it must improve
on the baseline and never change a measurement or bookkeeping name (seeds, eval/log intervals, counters).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from autoresearch.core.knobs import DEFAULT_EXCLUDE, is_excluded
from autoresearch.core.results import read_results
from autoresearch.core.setup import setup_session

from tests.conftest import FIXTURES, cli, git

SHAPES = FIXTURES / "shapes"


def shape_repo(tmp_path: Path, shape: str) -> Path:
    root = tmp_path / shape
    shutil.copytree(SHAPES / shape, root)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    return root


CASES = {
    "makemore": dict(script="makemore.py", metric_name="val_loss", run_command=None),
    "nanogpt": dict(
        script="train.py",
        metric_name="val_loss",
        run_command="python train.py config/train_small.py --max_iters=500 --eval_interval=10",
    ),
    "constants": dict(script="train.py", metric_name="val_bpb", run_command=None),
}


def changed_names(diff: str) -> set[str]:
    """Names on the lines a diff removes or adds: `NAME = ...` or `add_argument("--name", ...)`."""
    names = set()
    for line in diff.splitlines():
        if not line.startswith(("+", "-")) or line.startswith(("+++", "---")):
            continue
        if found := re.match(r"[+-]\s*([A-Za-z_]\w*)\s*=", line):
            names.add(found.group(1))
        if found := re.search(r"add_argument\(\"--([\w-]+)\"", line):
            names.add(found.group(1).replace("-", "_"))
    return names


@pytest.mark.parametrize("shape", sorted(CASES))
def test_the_offline_search_improves_and_leaves_measurement_alone(tmp_path: Path, shape: str) -> None:
    case = dict(CASES[shape])
    root = shape_repo(tmp_path, shape)
    script = str(case.pop("script"))
    options = {k: v for k, v in case.items() if v is not None}
    setup_session(root, script, agent="mutate", tag="shapes", max_experiments=10, **options)
    done = cli(root, "run", "--headless", timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reached max_experiments (10)" in done.stdout
    rows = read_results(root / "results.tsv").rows
    assert len(rows) == 10 and rows[0].status == "baseline"
    assert min(r.metric for r in rows if r.status != "crash") < rows[0].metric
    assert any(r.status == "keep" for r in rows)
    touched: set[str] = set()
    diffs: list[str] = []
    for number in range(2, 11):
        diff = (root / ".autoresearch" / "experiments" / f"{number:04d}" / "diff.patch").read_text()
        diffs += diff.split("diff --git")[1:]
        names = changed_names(diff)
        assert names, f"#{number} changed no knob: {diff}"
        touched |= names
    measurement = {n for n in touched if is_excluded(n, DEFAULT_EXCLUDE)}
    assert not measurement, f"{shape}: the search changed {measurement}"
    config = json.loads((root / ".autoresearch.json").read_text())
    assert config["search"] == "tpe"
    if shape == "nanogpt":
        # Setup offered the config file as editable and the configurator as context.
        assert config["editable_files"] == ["train.py", "config/train_small.py"]
        assert config["readonly_files"] == ["configurator.py"]
        # A value the config file or a flag overrides is never edited in train.py; a flag's value never at all.
        in_config = changed_names((SHAPES / "nanogpt" / "config" / "train_small.py").read_text().replace("\n", "\n+"))
        script_diffs = [d for d in diffs if d.startswith(" a/train.py")]
        assert not {n for d in script_diffs for n in changed_names(d)} & in_config
        assert "max_iters" not in touched
    if shape == "constants":
        assert config["readonly_files"] == ["prepare.py", "program.md"]
