"""Which kept changes still matter: each one reverted on its own from the session's best, and run.

A keep can be made redundant by a later one (a learning rate raised, then a schedule that makes the raise
pointless). `autoresearch ablate` takes the best's code, reverts one kept change's edits at a time (its diff
applied backwards on the best with git, without context lines, so the next line's later change does not block it), and
runs the result and the best under the same seeds (core/seeds.py), paired: the contribution of a change is
how much worse the best gets without it, averaged over the seeds, and its noise is the spread of those paired
differences. A change helps when its contribution clears `noise_sigmas` of that noise (when the seeds give
no spread, the relative floor of core/judge.py), and no longer helps otherwise.

Runs go through the session's executor, in worker 1's directory (core/worktrees.py): the user's checkout
is never touched. The latest ablation is kept in `.autoresearch/ablation.json` for `analyze`.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from git.exc import GitCommandError

from .config import SessionConfig, load_config
from .errors import UserError
from .execution import run_env
from .executor import make_executor
from .gitops import Repo
from .history import History, write_json_atomic
from .judge import Judge, epoch_start, reference
from .metric import read_metric
from .model_keys import hidden_from_training
from .results import read_results
from .seeds import ENV, seeded_command
from .session_lock import refuse_if_held
from .worktrees import WorkerDir, fresh_output, prepare, reset_tree, worker_dirs

ABLATION_FILE = "ablation.json"
SEEDS = 3
_RUNNING = "An autoresearch run (pid {pid}) is going on; ablate once it has stopped, so the two do not share a worker."


@dataclass(frozen=True)
class Ablation:
    number: int
    description: str
    contribution: float | None
    """How much worse the best gets without the change, in the metric's better direction; None: it did not run."""
    helps: bool
    noise: float | None
    seeds: int
    note: str = ""

    def line(self, metric: str) -> str:
        head = f"#{self.number} {self.description}"
        if self.contribution is None:
            return f"{head}: could not be judged ({self.note})"
        noise = "noise 0" if not self.noise else f"noise {self.noise:.4g}"
        said = f"{self.contribution:+.4g} {metric} without it ({noise} over {self.seeds} seeds)"
        return f"{head}: {'still helps' if self.helps else 'no longer helps'}, {said}"


def _run(config: SessionConfig, root: Path, tree: Path, log: Path, seed: int, number: int) -> tuple[float | None, str]:
    env = {**run_env(config, number, log.name), ENV: str(seed)}
    outcome = make_executor(config, root).run(
        seeded_command(config, env),
        tree,
        log,
        timeout_s=config.timeout_s,
        env=env,
        unset_env=hidden_from_training(config),
        cancel=threading.Event(),
    )
    if outcome.timed_out or outcome.exit_code or outcome.cancelled:
        return None, "the run failed" if not outcome.timed_out else "the run timed out"
    value = read_metric(log, config.metric_grep)
    return value, "" if value is not None else f"no {config.metric_name} printed"


def _reverted(
    repo: Repo, worker: WorkerDir, best: str, parent: str, commit: str, config: SessionConfig, patch: Path
) -> dict[str, str] | None:
    """The best's editable files with one change's edits taken back out (its diff applied in reverse, without
    context lines, so a later change on the next line does not block it); None when they no longer apply."""
    patch.write_text(repo.run("diff", "-U0", parent, commit, "--", *config.editable_files, strip=False))
    worktree = reset_tree(worker, best)
    try:
        worktree.run("apply", "-R", "--unidiff-zero", str(patch))
    except GitCommandError:
        return None
    return {p: (worker.tree / p).read_text(encoding="utf-8", errors="surrogateescape") for p in config.editable_files}


def ablate(root: Path, seeds: int = SEEDS, said: Callable[[str], None] = lambda _line: None) -> list[Ablation]:
    """Revert each kept change of the best on its own and judge what it still contributes (see the docstring)."""
    repo = Repo(root)
    root = repo.root
    refuse_if_held(repo, _RUNNING)
    config = load_config(root)
    history = History(root)
    table = read_results(root / "results.tsv")
    metas = history.all_meta()
    best = reference(table, metas, config.higher_is_better)
    if best is None:
        raise UserError("The session has no measured best yet; run `autoresearch run` first.")
    best_meta = metas.get(best.number)
    if best_meta is None or not best_meta.commit:
        raise UserError(f"#{best.number} has no record in .autoresearch; ablate needs the session's own history.")
    kept = [
        n
        for n in range(epoch_start(table), best.number + 1)
        if table.rows[n - 1].status == "keep" and (m := metas.get(n)) is not None and m.commit and m.parent
    ]
    judge = Judge(config)
    worker = worker_dirs(root, 1)[0]
    prepare(repo, worker, best_meta.commit, list(config.worker_outputs))
    logs = history.dir / "ablation"
    logs.mkdir(parents=True, exist_ok=True)

    def measure(files: dict[str, str] | None, name: str) -> list[tuple[float | None, str]]:
        results = []
        for seed in range(1, seeds + 1):
            tree = reset_tree(worker, best_meta.commit).root
            for path, text in (files or {}).items():
                (tree / path).write_text(text, encoding="utf-8", errors="surrogateescape")
            fresh_output(worker)
            results.append(_run(config, root, tree, logs / f"{name}-seed-{seed}.log", seed, best.number))
        return results

    said(f"running the best (#{best.number}) under {seeds} seeds")
    base = measure(None, f"best-{best.number}")
    found: list[Ablation] = []
    for number in kept:
        meta = metas[number]
        description = table.rows[number - 1].description.split(" (")[0]
        files = _reverted(repo, worker, best_meta.commit, meta.parent, meta.commit, config, logs / f"{number}.diff")
        if files is None:
            found.append(Ablation(number, description, None, False, None, 0, "its edits no longer revert cleanly"))
            said(found[-1].line(config.metric_name))
            continue
        said(f"#{number} reverted: running it under {seeds} seeds")
        runs = measure(files, f"without-{number}")
        pairs = [(b, w) for (b, _), (w, _) in zip(base, runs, strict=True) if b is not None and w is not None]
        if not pairs:
            why = next((why for value, why in [*runs, *base] if value is None), "no run gave a metric")
            found.append(Ablation(number, description, None, False, None, 0, why))
        else:
            losses = [judge.gain(w, b) for b, w in pairs]  # how much better the best is than the reverted code
            contribution = statistics.fmean(losses)
            spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
            if spread > 0:
                helps = contribution > config.noise_sigmas * spread / math.sqrt(len(losses))
            else:
                floor = config.relative_floor * abs(statistics.fmean(b for b, _ in pairs))
                helps = contribution > floor
            found.append(Ablation(number, description, contribution, helps, spread, len(pairs)))
        said(found[-1].line(config.metric_name))
    write_json_atomic(
        history.dir / ABLATION_FILE,
        {"best": best.number, "seeds": seeds, "changes": [asdict(a) for a in found]},
    )
    return found


def latest(root: Path) -> tuple[int, list[Ablation]] | None:
    """The last ablation written for this session: (the best it ran on, its results)."""
    import json

    try:
        data = json.loads((History(root).dir / ABLATION_FILE).read_text(encoding="utf-8"))
        return int(data["best"]), [Ablation(**a) for a in data["changes"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def summary(results: list[Ablation], metric: str) -> list[str]:
    """A line per kept change, then one sentence naming those that no longer help."""
    lines = [a.line(metric) for a in results]
    stale = [f"#{a.number}" for a in results if a.contribution is not None and not a.helps]
    if stale:
        lines.append(f"No longer helping: {', '.join(stale)} (the best does as well without each of them).")
    elif results:
        lines.append("Every kept change still helps.")
    else:
        lines.append("No kept change to ablate: the best is the baseline.")
    return lines
