"""Bad input for the Ray executor, one sentence each (rows of docs/RELIABILITY.md's table, through
tests/test_bad_input.py): Ray not installed, an unreachable address, a cluster without the GPUs asked for, a job
that never starts, a working directory too large to ship."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from autoresearch.core.results import read_results

from tests.conftest import cli, git
from tests.ray_cluster import RayHead
from tests.test_bad_input import PY, Case, cases, new_repo, said, snapshot

_SETUP = ["setup", "train.py", "--yes", "--metric", "val_loss", "--tag", "bad", "--executor", "ray"]
_RUN_CHECK = "nothing recorded and no job left running"

SETUP_CASES: list[Case] = [
    Case(
        "ray-not-installed",
        "setup ... --executor ray where Ray is not installed",
        'autoresearch: The executor is "ray" but Ray is not installed in this environment; pip install '
        "'autoresearch[ray]', or run on this machine with the executor local.",
        action=["--ray-address", "http://127.0.0.1:8265"],
    ),
    Case(
        "ray-unreachable",
        "setup ... --executor ray --ray-address http://127.0.0.1:PORT (nothing listens there)",
        "autoresearch: Cannot reach the Ray cluster at <url>; check ray_address (the head's dashboard, e.g. "
        "http://HEAD:8265) and that the cluster is up (ray status on the head).",
        action=["--ray-address", "<url>"],
    ),
]

RUN_CASES: list[Case] = [
    Case(
        "ray-no-gpu",
        'ray_resources: {"num_gpus": 3} on a cluster with 2 GPUs',
        "stopped: The Ray cluster at <url> has 2 GPU(s) and each experiment asks for 3; add GPU nodes, or ask for "
        "none with autoresearch config ray_resources '{\"num_gpus\": 0}'.",
        action={"ray_resources": {"num_gpus": 3}},
        outcome="nothing changed, no job submitted",
    ),
    Case(
        "ray-never-starts",
        'ray_resources: {"num_gpus": 1, "tpu": 1} (no node has a tpu), ray_pending_limit_minutes: 0.05',
        "stopped: The Ray job waited 0.<n> min without starting (it asks for num_gpus 1, tpu 1); free or add "
        "resources on the cluster (ray status), or lower ray_resources (tried twice); the experiment was not "
        "recorded: fix the cluster, then run again.",
        action={"ray_resources": {"num_gpus": 1, "tpu": 1}, "ray_pending_limit_minutes": 0.05},
        outcome=_RUN_CHECK,
    ),
    Case(
        "ray-too-large",
        "a 20 MiB data file beside the code, on a cluster that ships at most 16 MiB (Ray's default: 512)",
        "stopped: The working directory <repo> is too large to ship to the Ray cluster (Ray ships at most 16 MiB, "
        "zipped); add its large files to ray_excludes, or put the code on a filesystem every node mounts and set "
        "ray_shared_dir.",
        action={},
        outcome=_RUN_CHECK,
        options={"data_bytes": 20 * 2**20},
    ),
]


GROUPS: list[tuple[str, list[Case]]] = [("The Ray executor (docs/RAY.md)", [*SETUP_CASES, *RUN_CASES])]


def _free_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@cases(SETUP_CASES)
def test_setup(tmp_path: Path, case: Case) -> None:
    root = new_repo(tmp_path / "project")
    env: dict[str, str] = {}
    url = _free_url()
    if case.id == "ray-not-installed":
        shadow = tmp_path / "shadow" / "ray"
        shadow.mkdir(parents=True)
        (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
        env["PYTHONPATH"] = os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])
    else:
        pytest.importorskip("ray.job_submission", reason="Ray is not installed here (pip install 'autoresearch[ray]')")
    before = snapshot(root)
    args = [a.replace("<url>", url) for a in case.action]
    done = cli(root, *_SETUP, "--run-command", f"{PY} train.py", *args, env=env)
    said(case, done, url=url, repo=str(root))
    assert snapshot(root) == before


@cases(RUN_CASES)
def test_run(tmp_path: Path, case: Case, ray_cluster: RayHead) -> None:
    root = new_repo(tmp_path / "project")
    done = cli(
        root, *_SETUP, "--ray-address", ray_cluster.address, "--run-command", f"{PY} train.py", "--budget", "0.05"
    )
    assert done.returncode == 0, done.stderr
    path = root / ".autoresearch.json"
    config: dict[str, Any] = {**json.loads(path.read_text()), **case.action}
    path.write_text(json.dumps(config, indent=2))
    if case.options.get("data_bytes"):
        (root / "data.bin").write_bytes(os.urandom(case.options["data_bytes"]))
    before = snapshot(root)
    done = cli(root, "run", "--headless", timeout=300)
    said(case, done, url=ray_cluster.address, repo=str(root))
    assert read_results(root / "results.tsv").rows == ()
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
    if case.id == "ray-no-gpu":
        assert snapshot(root) == before
    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(ray_cluster.address).list_jobs()
    mine = [j for j in jobs if (j.metadata or {}).get("autoresearch_session", "").startswith("bad-")]
    assert not [j for j in mine if str(j.status).endswith("RUNNING")]
