"""`autoresearch setup` through the real command: what it creates, and every refusal leaving nothing changed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from autoresearch.core.config import CONFIG_FILE
from autoresearch.core.errors import GitStateError
from autoresearch.core.setup import infer_metric_name, propose_tag

from tests.conftest import cli, git, make_repo, setup_args

HEADER = "commit\tval_loss\tmemory_gb\tduration_s\tstatus\tdescription\n"


def snapshot(root: Path) -> dict[str, object]:
    """Every file (content hash), folder and link under root, plus git's view: nothing may differ after a refusal."""
    files: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel == ".git/index" or rel.startswith(".git/logs/"):
                continue  # git refreshes stat data in the index on `git status`; content is compared below
            if path.is_symlink():
                files[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                files[rel] = "dir"
            else:
                files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()

    def run(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return f"{out.returncode}:{out.stdout}"

    return {
        "files": files,
        "status": run("status", "--porcelain", "--ignored", "--untracked-files=all"),
        "refs": run("for-each-ref", "--format=%(refname) %(objectname)"),
        "head": run("rev-parse", "--symbolic-full-name", "HEAD"),
        "staged": run("diff", "--cached", "--name-status"),
    }


def assert_refused(root: Path, args: list[str], *words: str) -> str:
    before = snapshot(root)
    result = cli(root, *args)
    message = result.stderr.strip()
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert len(message.splitlines()) == 1, message
    assert message.endswith("."), message
    for word in words:
        assert word in message, message
    assert result.stdout == ""
    assert snapshot(root) == before
    return message


def test_setup_creates_the_session(repo: Path) -> None:
    main_before = git(repo, "rev-parse", "main")
    result = cli(repo, *setup_args("--tag", "t1"))
    assert result.returncode == 0, result.stderr
    assert "autoresearch/t1" in result.stdout
    assert result.stderr == ""

    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "autoresearch/t1"
    assert git(repo, "rev-parse", "main") == main_before
    assert git(repo, "rev-parse", "HEAD~1") == main_before

    config = json.loads((repo / CONFIG_FILE).read_text(encoding="utf-8"))
    assert config["tag"] == "t1"
    assert config["branch"] == "autoresearch/t1"
    assert config["script_path"] == "train.py"
    assert config["run_command"] == "python train.py"
    assert config["metric_name"] == "val_loss"
    assert config["metric_grep"] == "^val_loss:"
    assert config["metric_direction"] == "lower"
    assert config["time_budget_minutes"] == 0.05
    assert config["timeout_minutes"] == 0.5
    assert config["editable_files"] == ["train.py"]
    assert config["readonly_files"] == []
    assert config["max_experiments"] == 50
    assert config["agent"] == "mutate"

    assert (repo / "results.tsv").read_text(encoding="utf-8") == HEADER
    ignored = (repo / ".gitignore").read_text(encoding="utf-8").splitlines()
    for entry in ("results.tsv", ".autoresearch.json", "run.log", ".autoresearch/"):
        assert entry in ignored
    assert (repo / ".autoresearch").is_dir()

    # Only the .gitignore change is committed; the session files stay untracked and ignored.
    stat = git(repo, "show", "--stat", "--format=%s", "HEAD")
    assert stat.splitlines()[2:][0].split("|")[0].strip() == ".gitignore"
    assert git(repo, "show", "--name-only", "--format=", "HEAD") == ".gitignore"
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(repo, "ls-files") == ".gitignore\nREADME.md\ntrain.py"


def test_existing_gitignore_only_gets_what_is_missing(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "p")
    (root / ".gitignore").write_text("__pycache__/\n/run.log\nresults.tsv")  # no final newline
    git(root, "add", ".gitignore")
    git(root, "commit", "-q", "-m", "ignore")
    assert cli(root, *setup_args("--tag", "g")).returncode == 0
    text = (root / ".gitignore").read_text(encoding="utf-8")
    assert text.startswith("__pycache__/\n/run.log\nresults.tsv\n")
    lines = text.splitlines()
    assert lines.count("results.tsv") == 1
    assert "run.log" not in lines
    assert ".autoresearch.json" in lines
    assert ".autoresearch/" in lines
    assert git(root, "status", "--porcelain", "--untracked-files=all") == ""


def test_nothing_to_add_to_gitignore_commits_nothing(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "p")
    (root / ".gitignore").write_text("results.tsv\n.autoresearch.json\nrun.log\n.autoresearch/\n")
    git(root, "add", ".gitignore")
    git(root, "commit", "-q", "-m", "ignore")
    head = git(root, "rev-parse", "HEAD")
    assert cli(root, *setup_args("--tag", "n")).returncode == 0
    assert git(root, "rev-parse", "HEAD") == head
    assert git(root, "rev-parse", "--abbrev-ref", "HEAD") == "autoresearch/n"


def test_flags_reach_the_config(repo: Path) -> None:
    (repo / "prepare.py").write_text("DATA = 1\n")
    git(repo, "add", "prepare.py")
    git(repo, "commit", "-q", "-m", "prepare")
    args = setup_args(
        "--tag",
        "f",
        "--direction",
        "higher",
        "--grep",
        r"^val_loss=",
        "--run-command",
        "python3 -u train.py",
        "--readonly",
        "prepare.py",
        "--max-experiments",
        "0",
        "--guard",
        "true",
    )
    result = cli(repo, *args)
    assert result.returncode == 0, result.stderr
    config = json.loads((repo / CONFIG_FILE).read_text(encoding="utf-8"))
    assert config["metric_direction"] == "higher"
    assert config["metric_grep"] == "^val_loss="
    assert config["run_command"] == "python3 -u train.py"
    assert config["readonly_files"] == ["prepare.py"]
    assert config["max_experiments"] == 0
    assert config["guard_command"] == "true"


def test_tag_proposal(repo: Path) -> None:
    day = date(2025, 11, 26)
    assert propose_tag(repo, day) == "nov26"
    git(repo, "branch", "autoresearch/nov26")
    assert propose_tag(repo, day) == "nov26-2"
    git(repo, "branch", "autoresearch/nov26-2")
    assert propose_tag(repo, day) == "nov26-3"
    assert propose_tag(repo, date(2025, 3, 5)) == "mar05"


def _without_tag(args: list[str]) -> list[str]:
    i = args.index("--tag")
    return args[:i] + args[i + 2 :]


def test_default_tag_is_todays(repo: Path) -> None:
    """Without --tag the branch is named after the day setup runs (`dec01`), then `dec01-2` when taken."""
    before = date.today()
    result = cli(repo, *_without_tag(setup_args()))
    after = date.today()
    assert result.returncode == 0, result.stderr
    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    days = {f"{months[d.month - 1]}{d.day:02d}" for d in (before, after)}  # setup may run across midnight
    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD").removeprefix("autoresearch/")
    assert branch in days
    git(repo, "checkout", "-q", "main")
    (repo / CONFIG_FILE).unlink()
    result = cli(repo, *_without_tag(setup_args()))
    assert result.returncode == 0, result.stderr
    second = git(repo, "rev-parse", "--abbrev-ref", "HEAD").removeprefix("autoresearch/")
    assert second == f"{branch}-2" or (second in days and second != branch)


def test_metric_name_inferred_from_the_script(repo: Path) -> None:
    args = [a for a in setup_args("--tag", "i") if a not in ("--metric", "val_loss")]
    result = cli(repo, *args)
    assert result.returncode == 0, result.stderr
    assert json.loads((repo / CONFIG_FILE).read_text(encoding="utf-8"))["metric_name"] == "val_loss"


def test_metric_name_that_cannot_be_inferred(repo: Path) -> None:
    (repo / "train.py").write_text("LR = 0.1\nprint('done')\n")
    git(repo, "commit", "-q", "-am", "no metric printed")
    args = [a for a in setup_args() if a not in ("--metric", "val_loss")]
    assert_refused(repo, args, "--metric")


def test_infer_metric_name() -> None:
    karpathy = 'print("---")\nprint(f"val_bpb:          {val_bpb:.6f}")\nprint(f"peak_vram_mb:     {vram:.1f}")\n'
    assert infer_metric_name(karpathy) == "val_bpb"
    assert infer_metric_name('print(f"train_loss: {a}")\nprint(f"val_loss: {b}")\n') == "val_loss"
    assert infer_metric_name("print('accuracy:', acc)\n") == "accuracy"
    assert infer_metric_name("print('hello')\n") is None


def test_without_yes_and_without_a_terminal(repo: Path) -> None:
    args = [a for a in setup_args() if a != "--yes"]
    assert_refused(repo, args, "--yes")


# Refusals: each a one-sentence message, a non-zero exit, nothing changed.


def test_not_a_git_repository(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    (root / "train.py").write_text("print('val_loss: 1')\n")
    assert_refused(root, setup_args(), "not inside a git repository")


def test_bare_repository(tmp_path: Path) -> None:
    root = tmp_path / "bare.git"
    root.mkdir()
    git(root, "init", "-q", "--bare")
    assert_refused(root, setup_args(), "bare")


def test_no_commits(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("print('val_loss: 1')\n")
    assert_refused(root, setup_args(), "no commits")


def test_dirty_tracked_file(repo: Path) -> None:
    with (repo / "README.md").open("a") as fh:
        fh.write("edited\n")
    assert_refused(repo, setup_args(), "uncommitted changes", "README.md")


def test_staged_change(repo: Path) -> None:
    (repo / "extra.py").write_text("x = 1\n")
    git(repo, "add", "extra.py")
    assert_refused(repo, setup_args(), "uncommitted changes")


def test_detached_head(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    assert_refused(repo, setup_args(), "detached")


def test_script_missing(repo: Path) -> None:
    args = setup_args()
    args[1] = "nope.py"
    assert_refused(repo, args, "nope.py", "does not exist")


def _outside_script(repo: Path) -> Path:
    outside = repo.parent / "elsewhere.py"
    outside.write_text("print('val_loss: 1')\n")
    return outside


@pytest.mark.parametrize(
    "script",
    [
        lambda repo: "../elsewhere.py",
        lambda repo: str(repo.parent / "elsewhere.py"),
        lambda repo: "link.py",
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_script_outside_the_repository(repo: Path, script: Callable[[Path], str]) -> None:
    _outside_script(repo)
    (repo / "link.py").symlink_to(repo.parent / "elsewhere.py")
    args = setup_args()
    args[1] = script(repo)
    assert_refused(repo, args, "outside the repository")


def test_editable_file_outside_the_repository(repo: Path) -> None:
    _outside_script(repo)
    assert_refused(repo, setup_args("--editable", "train.py", "../elsewhere.py"), "outside the repository")


def test_editable_file_missing(repo: Path) -> None:
    assert_refused(repo, setup_args("--editable", "train.py", "model.py"), "model.py", "does not exist")


def test_readonly_file_missing(repo: Path) -> None:
    assert_refused(repo, setup_args("--readonly", "prepare.py"), "prepare.py", "does not exist")


def test_untracked_script(repo: Path) -> None:
    (repo / "new_train.py").write_text("print('val_loss: 1')\n")
    args = setup_args()
    args[1] = "new_train.py"
    assert_refused(repo, args, "new_train.py", "not committed")


def test_empty_metric(repo: Path) -> None:
    args = setup_args()
    args[args.index("val_loss")] = ""
    assert_refused(repo, args, "metric")


def test_bad_regex(repo: Path) -> None:
    assert_refused(repo, setup_args("--grep", "val_loss: ("), "metric_grep", "regular expression")


def test_branch_already_exists(repo: Path) -> None:
    git(repo, "branch", "autoresearch/taken")
    assert_refused(repo, setup_args("--tag", "taken"), "autoresearch/taken", "already exists")


def test_bad_tag(repo: Path) -> None:
    assert_refused(repo, setup_args("--tag", "no spaces"), "tag")


def test_timeout_below_budget(repo: Path) -> None:
    args = setup_args()
    args[args.index("--timeout") + 1] = "0.01"
    assert_refused(repo, args, "timeout", "budget")


def test_llm_agent_without_a_model(repo: Path) -> None:
    args = setup_args()
    args[args.index("--agent") + 1] = "llm"
    assert_refused(repo, args, "--model")


def test_editable_and_readonly_both(repo: Path) -> None:
    assert_refused(repo, setup_args("--readonly", "train.py"), "both editable and readonly")


def test_plan_refuses_the_same_in_process(repo: Path) -> None:
    from autoresearch.core.setup import setup_session

    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(GitStateError):
        setup_session(repo, "train.py", metric_name="val_loss")


def test_setup_from_a_subdirectory_with_a_spaced_name(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "src").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "src" / "my train.py").write_text("print('val_loss: 1.0')\n")
    (root / "src" / "model.py").write_text("WIDTH = 4\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    args = setup_args("--tag", "sub", "--editable", "my train.py", "model.py")
    args[1] = "my train.py"  # relative to where the user stands
    result = cli(root / "src", *args)
    assert result.returncode == 0, result.stderr
    config = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    assert config["script_path"] == "src/my train.py"
    assert config["editable_files"] == ["src/my train.py", "src/model.py"]
    assert config["run_command"] == "python 'src/my train.py'"
    ran = subprocess.run(config["run_command"], shell=True, cwd=root, capture_output=True, text=True)
    assert ran.stdout == "val_loss: 1.0\n"
    assert not (root / "src" / CONFIG_FILE).exists()
    # A path from the repository root works from the subdirectory too.
    args = setup_args("--tag", "sub2")
    args[1] = "src/my train.py"
    git(root, "checkout", "-q", "main")
    assert cli(root / "src", *args).returncode == 0


def test_tracked_results_file(repo: Path) -> None:
    (repo / "results.tsv").write_text("old results\n")
    git(repo, "add", "results.tsv")
    git(repo, "commit", "-q", "-m", "results")
    assert_refused(repo, setup_args(), "results.tsv", "tracked")


def test_a_second_session_archives_the_first(repo: Path) -> None:
    assert cli(repo, *setup_args("--tag", "one")).returncode == 0
    with (repo / "results.tsv").open("a") as fh:
        fh.write("abc1234\t1.000000\t0.0\t1.0\tbaseline\tbaseline\n")
    git(repo, "checkout", "-q", "main")
    assert cli(repo, *setup_args("--tag", "two")).returncode == 0
    archived = repo / ".autoresearch" / "archive" / "one"
    assert "baseline" in (archived / "results.tsv").read_text(encoding="utf-8")
    assert json.loads((archived / CONFIG_FILE).read_text(encoding="utf-8"))["tag"] == "one"
    assert (repo / "results.tsv").read_text(encoding="utf-8") == HEADER
