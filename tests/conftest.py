"""Shared fixtures: real git repositories in temp dirs and the real `autoresearch` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ray_cluster import RayHead, ray_head

FIXTURES = Path(__file__).parent / "fixtures"
TERMINAL_WAIT_S = float(os.environ.get("AUTORESEARCH_TERMINAL_WAIT_S", "180"))
"""How long a real-terminal test waits for what it looks for: long enough for a machine loaded several times
over (CI on two shared cores); a test waits on what the screen shows, so a fast machine never waits this long."""
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    for key in _REPOSITORY_ENV:  # set by a git hook or `git bisect run`: they would aim a test at the developer's repo
        monkeypatch.delenv(key, raising=False)


_REPOSITORY_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY", "GIT_PREFIX")


def git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def make_repo(root: Path, script: str = "train_tiny.py", name: str = "train.py") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    shutil.copy(FIXTURES / script, root / name)
    (root / "README.md").write_text("a training project\n")
    git(root, "add", name, "README.md")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project")


def cli(
    root: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `autoresearch` command (this interpreter's) in `root`."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "autoresearch.core.cli", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def setup_args(*extra: str) -> list[str]:
    return [
        "setup",
        "train.py",
        "--yes",
        "--metric",
        "val_loss",
        "--agent",
        "mutate",
        "--tag",
        "nov26",
        "--budget",
        "0.05",
        "--timeout",
        "0.5",
        *extra,
    ]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayHead]:
    """A Ray head (two logical GPUs) for the Ray tests of one module; they skip where Ray cannot be imported.

    Per module, not per session: a head left running would count as the leftover processes of other modules'
    tests (tests/test_runner.py checks that none are left). Its limit on what a job ships is 16 MiB (Ray's
    default: 512), so that a test can go over it cheaply."""
    pytest.importorskip("ray.job_submission", reason="Ray is not installed here (pip install 'autoresearch[ray]')")
    env = {"RAY_TEST_SECRET": "shh", "RAY_max_grpc_message_size": str(16 * 2**20)}
    with ray_head(num_gpus=2, num_cpus=2, env=env) as started:
        yield started
