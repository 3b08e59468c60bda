"""The sandbox (`sandbox: on`) and the referee (issue 22): each attack of a hostile training run with the real
runner, once without the sandbox (where it gets through: the test can see it) and once inside (where it must
not); a benign training that gives the same metric both ways; the key kept from an ancestor's environment even
without the sandbox; and the referee's verify command scoring outside the sandbox. docs/RELIABILITY.md."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from autoresearch.core.config import SessionConfig, parse_config
from autoresearch.core.edit_blocks import PathRefused, resolve_editable
from autoresearch.core.errors import ConfigError
from autoresearch.core.executor import LocalExecutor
from autoresearch.core.model_keys import REDACTED, scrub
from autoresearch.core.runner import RunOutcome
from autoresearch.core.sandbox import Sandbox, sandbox_for, unavailable_reason

from tests.conftest import FIXTURES, cli, git, make_repo, setup_args
from tests.test_runner import killed_afterwards, marked_processes, sleep_marker

WHY_NOT = unavailable_reason()
needs_bwrap = pytest.mark.skipif(WHY_NOT is not None, reason=f"the sandbox cannot run here: {WHY_NOT}")
KEY = "sk-sandbox-0123456789abcdefXYZ"
HOLDOUT = "holdout-row-7f3a9c"


def _config(**values: object) -> SessionConfig:
    return SessionConfig.model_validate({"tag": "t", "script_path": "train.py", "metric_name": "val_loss", **values})


def _hostile_repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "project", "train_hostile.py")
    (root / "results.tsv").write_text("commit\tval_loss\tmemory_gb\tstatus\tdescription\n")
    (root / "holdout.csv").write_text(HOLDOUT + "\n")
    return root


def _run(root: Path, sandboxed: bool, attack: str, target: str = "", **config: object) -> tuple[RunOutcome, str]:
    box = sandbox_for(_config(sandbox=True, referee_files=["holdout.csv"], **config), root) if sandboxed else None
    log = root.parent / f"{attack}-{sandboxed}.log"
    outcome = LocalExecutor(box).run(
        f"{sys.executable} train.py",
        root,
        log,
        timeout_s=60,
        env={"HOSTILE_ATTACKS": attack, "HOSTILE_TARGET": target},
        cancel=threading.Event(),
    )
    return outcome, log.read_text()


SANDBOXED = [pytest.param(False, id="without-sandbox"), pytest.param(True, id="sandboxed", marks=needs_bwrap)]


@pytest.mark.parametrize("sandboxed", SANDBOXED)
def test_a_listener_on_localhost_is_unreachable(tmp_path: Path, sandboxed: bool) -> None:
    root = _hostile_repo(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.1)
        _, log = _run(root, sandboxed, "connect", f"127.0.0.1:{server.getsockname()[1]}")
        try:
            received = server.accept()[0].recv(100)
        except TimeoutError:
            received = b""
    assert ("connect: connected" in log) is not sandboxed, log
    assert (received == b"exfiltrated") is not sandboxed


@pytest.mark.parametrize("sandboxed", SANDBOXED)
def test_the_users_git_hooks_cannot_be_written(tmp_path: Path, sandboxed: bool) -> None:
    root = _hostile_repo(tmp_path)
    _run(root, sandboxed, "hook")
    assert (root / ".git/hooks/post-commit").exists() is not sandboxed


@pytest.mark.parametrize("sandboxed", SANDBOXED)
def test_results_tsv_cannot_be_appended_to(tmp_path: Path, sandboxed: bool) -> None:
    root = _hostile_repo(tmp_path)
    _run(root, sandboxed, "results")
    assert ("forged" in (root / "results.tsv").read_text()) is not sandboxed


@pytest.mark.parametrize("sandboxed", SANDBOXED)
def test_nothing_is_written_outside_the_repository(tmp_path: Path, sandboxed: bool) -> None:
    root = _hostile_repo(tmp_path)
    outside = tmp_path / "elsewhere" / "escaped.txt"
    _run(root, sandboxed, "outside", str(outside))
    assert outside.exists() is not sandboxed


@pytest.mark.parametrize("sandboxed", SANDBOXED)
def test_home_secrets_cannot_be_read(tmp_path: Path, sandboxed: bool) -> None:
    root = _hostile_repo(tmp_path)
    ssh = Path.home() / ".ssh"  # a temporary HOME (tests/conftest.py)
    ssh.mkdir(exist_ok=True)
    (ssh / "id_rsa").write_text("PRIVATE-KEY-abc123\n")
    _, log = _run(root, sandboxed, "ssh")
    assert ("PRIVATE-KEY-abc123" in log) is not sandboxed, log


@pytest.mark.parametrize("sandboxed", SANDBOXED)
def test_the_referee_file_cannot_be_read(tmp_path: Path, sandboxed: bool) -> None:
    root = _hostile_repo(tmp_path)
    _, log = _run(root, sandboxed, "holdout", str(root / "holdout.csv"))
    assert (HOLDOUT in log) is not sandboxed, log


@pytest.mark.parametrize("sandboxed", SANDBOXED)
def test_a_setsid_daemon_ends_with_the_run(tmp_path: Path, sandboxed: bool) -> None:
    # The runner ends it without the sandbox too (tests/test_runner.py); inside, the PID namespace also does.
    root = _hostile_repo(tmp_path)
    marker = sleep_marker()
    with killed_afterwards(marker):
        _, log = _run(root, sandboxed, "daemon", marker)
        assert "daemon: started" in log
        assert marked_processes(marker) == []


def _tool_with_key(root: Path, *flags: str) -> str:
    """The log of a hostile training run by a tool process that started with the key in its environment."""
    env = {**os.environ, "AR_TEST_KEY": KEY, "HOSTILE_ATTACKS": "environ"}
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).parent / "scripts" / "tool_with_key.py"),
            str(root),
            "python train.py",
            *flags,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _carries(log: str, key: str) -> bool:
    return key in log or key[::-1] in log or scrub(log, [key]) != log


def test_a_training_reads_the_key_from_the_tools_environ_unless_the_tool_hides_it(tmp_path: Path) -> None:
    root = _hostile_repo(tmp_path)
    assert _carries(_tool_with_key(root, "--leave-key"), KEY)  # the attack, when nothing stops it
    log = _tool_with_key(root)
    assert "environ:" in log
    assert not _carries(log, KEY), log[-300:]


@needs_bwrap
def test_the_sandbox_shows_no_ancestor_at_all(tmp_path: Path) -> None:
    root = _hostile_repo(tmp_path)
    log = _tool_with_key(root, "--sandbox", "--leave-key")
    assert "environ:" in log
    assert not _carries(log, KEY), log[-300:]


def test_encoded_forms_of_the_key_are_scrubbed() -> None:
    for text in (
        base64.b64encode(f"OPENAI_API_KEY={KEY}\n".encode()).decode(),
        base64.urlsafe_b64encode(f"x{KEY}".encode()).decode(),
        KEY[::-1],
        KEY.encode().hex(),
    ):
        assert REDACTED in scrub(f"crash: {text} end", [KEY]), text
    assert scrub("loss 0.25 at step 10", [KEY]) == "loss 0.25 at step 10"


BENIGN = """
import multiprocessing, os, pathlib, sys
def square(x):
    return x * x
if __name__ == "__main__":
    data = [float(v) for v in pathlib.Path("data/train.csv").read_text().split()]
    with multiprocessing.Pool(4) as pool:
        total = sum(pool.map(square, data))
    pathlib.Path("out").mkdir(exist_ok=True)
    pathlib.Path("out/model.txt").write_text(str(total))
    print("venv:", sys.prefix != sys.base_prefix, "gpu:", os.environ.get("CUDA_VISIBLE_DEVICES"))
    print(f"val_loss: {total / len(data):.6f}")
"""


@needs_bwrap
def test_a_benign_training_gives_the_same_metric_inside_and_outside(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "project")
    (root / "train.py").write_text(BENIGN)
    (root / "data").mkdir()
    (root / "data/train.csv").write_text(" ".join(str(i / 7) for i in range(100)))
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(root / "venv")], check=True
    )
    logs = []
    for box in (None, sandbox_for(_config(sandbox=True), root)):
        log = root.parent / f"benign-{box is not None}.log"
        outcome = LocalExecutor(box).run(
            "venv/bin/python train.py",
            root,
            log,
            timeout_s=120,
            env={"CUDA_VISIBLE_DEVICES": "0"},
            cancel=threading.Event(),
        )
        assert outcome.exit_code == 0, log.read_text()
        assert (root / "out/model.txt").exists()
        logs.append(log.read_text())
    assert logs[0] == logs[1]
    assert "venv: True gpu: 0" in logs[1] and "val_loss:" in logs[1]


@needs_bwrap
def test_an_allowed_port_is_reachable_inside_and_no_other(tmp_path: Path) -> None:
    root = _hostile_repo(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as allowed, socket.create_server(("127.0.0.1", 0)) as other:
        port = allowed.getsockname()[1]
        _, log = _run(root, True, "connect", f"127.0.0.1:{port}", sandbox_allow_net=[str(port)])
        assert "connect: connected" in log, log
        assert allowed.accept()[0].recv(100) == b"exfiltrated"
        _, log = _run(root, True, "connect", f"127.0.0.1:{other.getsockname()[1]}", sandbox_allow_net=[str(port)])
        assert "connect: blocked" in log, log


def test_an_edit_of_a_referee_file_is_refused_with_its_reason(tmp_path: Path) -> None:
    root = _hostile_repo(tmp_path)
    with pytest.raises(PathRefused, match=r"holdout\.csv is a referee file"):
        resolve_editable("holdout.csv", root, ["train.py"], ["holdout.csv"])


def test_a_referee_file_cannot_also_be_shown_to_the_model() -> None:
    data = {"tag": "t", "script_path": "train.py", "metric_name": "val_loss", "readonly_files": ["holdout.csv"]}
    with pytest.raises(ConfigError, match="list it only in referee_files"):
        parse_config({**data, "referee_files": ["holdout.csv"]})


CHEAT = """
import pathlib
try:
    truth = pathlib.Path("holdout.csv").read_text().split()
except OSError:
    truth = []
pathlib.Path("predictions.txt").write_text("\\n".join(truth or ["0.5"] * 3))
print("done")
"""
VERIFY = (
    "python -c \"import pathlib; t=[float(v) for v in pathlib.Path('holdout.csv').read_text().split()]; "
    "p=[float(v) for v in pathlib.Path('predictions.txt').read_text().split()]; "
    "print(f'val_loss: {sum((a-b)**2 for a, b in zip(t, p)) / len(t):.6f}')\""
)


@pytest.mark.parametrize("sandboxed", SANDBOXED)
def test_a_training_that_reads_the_holdout_scores_perfectly_only_without_the_sandbox(
    tmp_path: Path, sandboxed: bool
) -> None:
    root = make_repo(tmp_path / "project")
    (root / "train.py").write_text(CHEAT)
    (root / "holdout.csv").write_text("0.1\n0.9\n0.3\n")
    (root / ".gitignore").write_text("predictions.txt\n")
    git(root, "add", "train.py", "holdout.csv", ".gitignore")
    git(root, "commit", "-q", "-m", "cheat")
    flags = ["--sandbox"] if sandboxed else []
    done = cli(root, *setup_args("--referee", "holdout.csv", "--verify", VERIFY, "--max-experiments", "1", *flags))
    assert done.returncode == 0, done.stdout + done.stderr
    done = cli(root, "run", "--headless")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = (root / "results.tsv").read_text().splitlines()
    assert len(rows) == 2, rows
    metric = float(rows[1].split("\t")[1])
    assert (metric == 0.0) is not sandboxed, rows


def _bin_without_bwrap(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "bash", "sh", "env"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    (bin_dir / "python").symlink_to(sys.executable)
    return bin_dir


def test_setup_says_in_one_sentence_when_bubblewrap_is_missing(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "project")
    done = cli(root, *setup_args("--sandbox"), env={"PATH": str(_bin_without_bwrap(tmp_path))})
    assert done.returncode != 0
    said = (done.stdout + done.stderr).strip()
    assert "The sandbox needs bubblewrap, which is not installed; install bubblewrap" in said, said
    assert "Traceback" not in said and len(said.splitlines()) == 1
    assert not (root / ".autoresearch.json").exists()


def test_setup_says_in_one_sentence_when_user_namespaces_are_off(tmp_path: Path) -> None:
    # A bwrap that fails as bubblewrap does where unprivileged user namespaces are disabled.
    root = make_repo(tmp_path / "project")
    bin_dir = _bin_without_bwrap(tmp_path)
    (bin_dir / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    (bin_dir / "bwrap").chmod(0o755)
    done = cli(root, *setup_args("--sandbox"), env={"PATH": str(bin_dir)})
    assert done.returncode != 0
    said = (done.stdout + done.stderr).strip()
    assert said.startswith("autoresearch: bubblewrap cannot create namespaces here (bwrap: No permissions"), said
    assert "enable unprivileged user namespaces" in said and len(said.splitlines()) == 1


SNOOP = """
import pathlib
for path in ("holdout.csv", "../../../../holdout.csv"):
    try:
        print("holdout:", pathlib.Path(path).read_text().strip())
    except OSError:
        pass
try:
    with open("../../../../results.tsv", "a") as f:
        f.write("0000000\\t0.0\\t0.0\\t0.0\\tkeep\\tforged\\n")
except OSError:
    pass
"""


@needs_bwrap
def test_sandboxed_workers_run_in_their_trees_and_reach_neither_the_referee_nor_the_session(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "project")
    (root / "train.py").write_text(SNOOP + (FIXTURES / "train_tiny.py").read_text())
    (root / "holdout.csv").write_text(HOLDOUT + "\n")
    git(root, "add", "train.py", "holdout.csv")
    git(root, "commit", "-q", "-m", "snoop")
    done = cli(root, *setup_args("--sandbox", "--referee", "holdout.csv", "--workers", "2", "--max-experiments", "4"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Sandbox: on" in done.stdout
    done = cli(root, "run", "--headless", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = (root / "results.tsv").read_text()
    rows = results.splitlines()[1:]
    assert len(rows) == 4 and all(float(row.split("\t")[1]) > 0 for row in rows if "crash" not in row), results
    assert "forged" not in results
    logs = "".join(p.read_text(errors="replace") for p in (root / ".autoresearch").rglob("*.log"))
    assert "val_loss:" in logs and HOLDOUT not in logs


def test_setup_never_offers_a_referee_file_as_context(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "project")
    (root / "scoring.py").write_text("def score(p):\n    return 0.0\n")
    (root / "train.py").write_text("import scoring\n" + (root / "train.py").read_text())
    git(root, "add", "scoring.py", "train.py")
    git(root, "commit", "-q", "-m", "scoring")
    assert cli(root, *setup_args("--tag", "offered")).returncode == 0  # imported: offered as context
    assert "scoring.py" in parse_config(json.loads((root / ".autoresearch.json").read_text())).readonly_files
    git(root, "checkout", "-q", "main")
    (root / ".autoresearch.json").unlink()
    (root / "results.tsv").unlink()
    done = cli(root, *setup_args("--referee", "scoring.py"))
    assert done.returncode == 0, done.stdout + done.stderr
    config = parse_config(json.loads((root / ".autoresearch.json").read_text()))
    assert config.referee_files == ["scoring.py"] and "scoring.py" not in config.readonly_files
    assert "referee files, seen only by the verify command: scoring.py" in done.stdout


@needs_bwrap
def test_device_nodes_are_passed_through_where_they_exist(tmp_path: Path) -> None:
    # Stand-ins for /dev/nvidia0 and /dev/nvidiactl, in a folder the sandbox otherwise hides (/tmp is private).
    gpus = tmp_path / "dev"
    gpus.mkdir()
    for name in ("nvidia0", "nvidiactl"):
        (gpus / name).write_text(f"device {name}\n")
    root = make_repo(tmp_path / "project")
    box = Sandbox(shutil.which("bwrap") or "bwrap", root, devices=(str(gpus / "nvidia*"), str(gpus / "kfd")))
    log = tmp_path / "devices.log"
    outcome = LocalExecutor(box).run(
        f"cat {gpus}/nvidia0 {gpus}/nvidiactl; ls {gpus}", root, log, timeout_s=60, env={}, cancel=threading.Event()
    )
    assert outcome.exit_code == 0, log.read_text()
    assert log.read_text().split() == ["device", "nvidia0", "device", "nvidiactl", "nvidia0", "nvidiactl"]


@needs_bwrap
def test_a_sandboxed_run_that_hangs_is_ended_at_its_timeout_with_all_it_started(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "project")
    marker = sleep_marker()
    box = sandbox_for(_config(sandbox=True), root)
    with killed_afterwards(marker):
        outcome = LocalExecutor(box).run(
            f"(setsid sleep {marker} &); trap '' TERM; sleep {marker}",
            root,
            tmp_path / "hang.log",
            timeout_s=1,
            env={},
            cancel=threading.Event(),
        )
        assert outcome.timed_out and outcome.exit_code is None
        assert marked_processes(marker) == []


@needs_bwrap
def test_a_virtual_environment_under_tmp_stays_usable_and_the_rest_of_tmp_unseen(tmp_path: Path) -> None:
    assert Path("/tmp") in tmp_path.parents, "the test needs its files under /tmp"
    root = make_repo(tmp_path / "project", "train_hostile.py")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {Path(sys.executable).parent}\n")
    (venv / "lib").mkdir()
    (venv / "lib" / "marker.txt").write_text("site-packages reached\n")
    tool = venv / "bin" / "train"
    tool.write_text(f"#!/bin/sh\ncat {venv}/lib/marker.txt\nls {tmp_path} | sort | tr '\\n' ' '\n")
    tool.chmod(0o755)
    (tmp_path / "elsewhere.txt").write_text("another program's file in /tmp\n")
    box = sandbox_for(_config(sandbox=True), root)
    log = tmp_path / "venv-run.log"
    outcome = LocalExecutor(box).run(str(tool), root, log, timeout_s=60, env={}, cancel=threading.Event())
    text = log.read_text()
    assert outcome.exit_code == 0, text
    assert "site-packages reached" in text
    assert "elsewhere.txt" not in text  # only the environment is bound again, not the rest of /tmp
