"""Taking a commit off the branch (core/takeoff.py) on a real repository: only the tip, only onto its own parent."""

from __future__ import annotations

from pathlib import Path

from autoresearch.core.gitops import Repo
from autoresearch.core.takeoff import take_off

from tests.conftest import git, make_repo


def _commit(root: Path, text: str) -> str:
    (root / "train.py").write_text(text)
    git(root, "commit", "-q", "-am", text)
    return git(root, "rev-parse", "HEAD")


def test_the_tip_goes_back_to_its_parent_and_nothing_else_is_reset(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "project")
    first = git(root, "rev-parse", "HEAD")
    second = _commit(root, "two\n")
    third = _commit(root, "three\n")
    repo = Repo(root)
    assert repo.branch_head_parent(third) == ("main", third, second)

    # A parent other than the commit's own (the user committed in between) is refused: nothing moves.
    assert take_off(repo, "main", third, first, tmp_path / "copies").outcome == "moved"
    assert git(root, "rev-parse", "HEAD") == third
    # A commit that is not the tip is refused too.
    assert take_off(repo, "main", second, first, tmp_path / "copies").outcome == "moved"
    assert git(root, "rev-parse", "HEAD") == third

    assert take_off(repo, "main", third, second, tmp_path / "copies").done
    assert git(root, "rev-parse", "HEAD") == second
    assert (root / "train.py").read_text() == "two\n"
    assert git(root, "status", "--porcelain") == ""


def test_a_detached_head_or_a_root_commit(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "project")
    first = git(root, "rev-parse", "HEAD")
    second = _commit(root, "two\n")
    repo = Repo(root)
    assert repo.branch_head_parent(first) is None  # a root commit has no parent
    assert take_off(repo, "main", first, second, tmp_path / "copies").outcome == "moved"
    git(root, "checkout", "-q", "--detach", "HEAD")
    assert repo.branch_head_parent(second) == (None, second, first)
    # The session's branch is not checked out: it is moved by its ref alone, the detached checkout stays.
    result = take_off(repo, "main", second, first, tmp_path / "copies")
    assert result.done and result.elsewhere == "a detached HEAD"
    assert git(root, "rev-parse", "main") == first
    assert git(root, "rev-parse", "HEAD") == second
