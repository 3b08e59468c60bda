"""`autoresearch ablate`: which kept changes still matter, on a real session with real runs and real git."""

from __future__ import annotations

import json
from pathlib import Path

from autoresearch.core.ablate import latest
from autoresearch.core.analysis import build_analysis
from autoresearch.core.loop import ExperimentLoop
from autoresearch.core.proposer import ExperimentRecord, Proposal, ProposalContext
from autoresearch.core.results import read_results

from tests.conftest import cli, make_repo, setup_args


class TurnOn:
    """Turns on WARMUP, then SCHEDULE: each kept at its time, the second making the first redundant."""

    name = "turn-on"
    drafts_ahead = False

    def __init__(self) -> None:
        self.left = ["WARMUP", "SCHEDULE"]

    def observe(self, record: ExperimentRecord) -> None:
        return None

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        if not self.left:
            return None
        name = self.left.pop(0)
        text = ctx.files["train.py"].replace(f"{name} = 0\n", f"{name} = 1\n")
        return Proposal(description=f"{name} 0 -> 1", files={"train.py": text}, category="other")


def _session(root: Path) -> Path:
    make_repo(root, script="train_redundant.py")
    done = cli(root, *setup_args("--max-experiments", "0"))
    assert done.returncode == 0, done.stderr
    assert "Repeats vary the seed through AUTORESEARCH_SEED" in done.stdout
    stopped = ExperimentLoop(root, lambda _e: None, TurnOn()).run()
    assert stopped.ok, stopped.reason
    rows = read_results(root / "results.tsv").rows
    assert [r.status for r in rows] == ["baseline", "keep", "keep"]
    return root


def test_ablate_names_a_first_keep_that_a_later_one_made_redundant(tmp_path: Path) -> None:
    root = _session(tmp_path / "p")
    branch_before = (root / "train.py").read_text()
    done = cli(root, "ablate", "--json")
    assert done.returncode == 0, done.stderr
    found = {a["number"]: a for a in json.loads(done.stdout)}
    assert set(found) == {2, 3}
    assert found[2]["description"] == "WARMUP 0 -> 1" and found[2]["helps"] is False
    assert abs(found[2]["contribution"]) < 0.01  # the best does as well without it
    assert found[3]["helps"] is True and found[3]["contribution"] > 0.04  # SCHEDULE still gives its 0.05
    assert (root / "train.py").read_text() == branch_before  # the user's checkout is never touched
    # The plain form says it in words, and the analysis includes the latest ablation.
    words = cli(root, "ablate", "--seeds", "2")
    assert words.returncode == 0, words.stderr
    assert "#2 WARMUP 0 -> 1: no longer helps" in words.stdout and "#3 SCHEDULE 0 -> 1: still helps" in words.stdout
    assert "No longer helping: #2 (the best does as well without each of them)." in words.stdout
    saved = latest(root)
    assert saved is not None and saved[0] == 3
    analysis = build_analysis(root)
    assert "## Ablation" in analysis and "#2 WARMUP 0 -> 1: no longer helps" in analysis


def test_ablate_without_a_session_is_one_sentence(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "p")
    done = cli(root, "ablate")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("autoresearch: ")
