"""The offline search on scripts in the three shapes real projects have: argparse defaults (makemore), a
config file plus --key=value flags (nanoGPT with its configurator), module constants (karpathy/autoresearch).

On each, the real loop with the offline agent runs 10 experiments on a deterministic metric: it must improve
on the baseline and never change a measurement or bookkeeping name (seeds, eval/log intervals, counters).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from autoresearch.core.agents import make_proposer
from autoresearch.core.config import SessionConfig
from autoresearch.core.knobs import DEFAULT_EXCLUDE, is_excluded
from autoresearch.core.mutate import MutateProposer
from autoresearch.core.proposer import ExperimentRecord, ProposalContext, ProposalSkipped
from autoresearch.core.results import read_results
from autoresearch.core.search import SearchProposer
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


# The search proposer on its own: a real study each time, rebuilt from the history it is given.


SCRIPT = "LR = 0.1\nWIDTH = 16\nSEED = 3\nprint(f'val_loss: {LR}')\n"


def ctx(files: dict[str, str], history: tuple[ExperimentRecord, ...] = (), **config: object) -> ProposalContext:
    cfg = SessionConfig(tag="t", script_path="train.py", metric_name="val_loss", **config)  # type: ignore[arg-type]
    return ProposalContext(cfg, len(history) + 1, files, {}, history, 1.0, 1.0, 1)


def record(number: int, status: str, metric: float, description: str) -> ExperimentRecord:
    return ExperimentRecord(number, f"c{number}", metric, status, description)


def test_the_search_warm_starts_from_the_history_and_goes_on_with_what_was_kept() -> None:
    history = (
        record(1, "baseline", 1.0, "baseline"),
        record(2, "discard", 1.2, "WIDTH 16 -> 20"),
        record(3, "crash", 0.0, "WIDTH 16 -> 64 (exit status 1)"),
        record(4, "keep", 0.8, "LR 0.1 -> 0.05"),
    )
    files = {"train.py": SCRIPT.replace("LR = 0.1", "LR = 0.05")}
    proposal = SearchProposer(ctx(files).config).propose(ctx(files, history))
    assert proposal is not None
    assert proposal.description.startswith("LR 0.05 -> ")  # the knob just kept goes first
    assert "after 4 measured points" in proposal.rationale and "log scale" in proposal.rationale
    (only,) = proposal.edits  # the knob's assignment alone
    assert only.old == ("LR = 0.05\n",) and only.new[0].startswith("LR = ") and len(only.new) == 1
    again = SearchProposer(ctx(files).config).propose(ctx(files, history))
    assert again is not None and again.description == proposal.description  # deterministic for a history


def test_the_search_never_proposes_a_seed_and_says_when_only_flags_are_left() -> None:
    files = {"train.py": "SEED = 3\nprint('val_loss: 1')\n"}
    proposer = SearchProposer(ctx(files).config)
    assert proposer.propose(ctx(files, run_command="python train.py --lr=0.1")) is None
    assert proposer.stop_reason is not None and "set by flags in the run command" in proposer.stop_reason


def test_an_idea_for_a_knob_the_run_command_sets_is_refused_with_the_flag() -> None:
    files = {"train.py": "LR = 0.1\n"}
    context = ProposalContext(
        ctx(files, run_command="python train.py --LR=0.2").config, 2, files, {}, (), 1.0, 1.0, 1, user_idea="LR = 0.3"
    )
    with pytest.raises(ProposalSkipped, match=r"LR is set by the run command \(--LR=0\.2\)"):
        SearchProposer(context.config).propose(context)


def test_the_hill_climb_stays_a_named_strategy() -> None:
    config = SessionConfig(tag="t", script_path="train.py", metric_name="val_loss", search="hill")
    assert isinstance(make_proposer(config, Path(".")), MutateProposer)
    assert isinstance(make_proposer(config.model_copy(update={"search": "tpe"}), Path(".")), SearchProposer)


def test_a_script_without_knobs_stops_with_the_sentence_saying_where_it_looked(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "train.py").write_text("import os\nSEED = 1\nprint('val_loss: 1.0')\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    setup_session(root, "train.py", metric_name="val_loss", tag="t")
    done = cli(root, "run", "--headless", timeout=120)
    assert done.returncode == 0, done.stderr
    assert (
        "nothing to search: no numeric knob (module constant, argparse/click default, config-file key or run-command "
        "flag) in train.py (left out as measurement: SEED)"
    ) in done.stdout


def test_the_llm_agent_is_told_the_knobs_and_which_the_run_command_sets(tmp_path: Path) -> None:
    from tests.llm_server import ScriptedLLMServer, message_text
    from tests.test_llm_loop import edit, head

    root = shape_repo(tmp_path, "nanogpt")
    command = f"{sys.executable} train.py config/train_small.py --n_embd=128 --max_iters=500"
    with ScriptedLLMServer(model="test") as server:
        server.script(
            head("raise the learning rate")
            + edit("learning_rate = 1e-4", "learning_rate = 1e-3", "config/train_small.py")
        )
        setup_session(
            root,
            "train.py",
            metric_name="val_loss",
            tag="llm",
            model="openai/test",
            api_base=server.url,
            run_command=command,
            max_experiments=2,
        )
        done = cli(root, "run", "--headless", timeout=120, env={"OPENAI_API_KEY": "sk-test"})
        assert done.returncode == 0, done.stdout + done.stderr
        prompt = message_text(server.requests[0])
    assert "## configurator.py" in prompt  # offered at setup as read-only context
    assert (
        "- n_embd = 128 in the run command (--n_embd=128); overrides train.py:15 says 768, config/train_small.py:7"
        in prompt
    )
    assert "- learning_rate = 0.0001 in config/train_small.py:5; overrides train.py:17 says 0.0006" in prompt
    assert "say in the Rationale which flag must change" in prompt
    assert "Measurement and bookkeeping, not knobs (leave them): eval_interval" in prompt
    rows = read_results(root / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep"]
