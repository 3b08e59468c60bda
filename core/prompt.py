"""The messages sent to the model: rules, files, results, history and the task, within a token budget.

Tokens are estimated at about 4 characters each. The editable files always go in full (SEARCH blocks
must quote them); readonly files are cut when large; the history keeps every recent row and
summarises the oldest ones when it would not fit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from .config import CATEGORIES, SessionConfig
from .proposer import CrashInfo, ExperimentRecord, ProposalContext
from .results import is_pruned

Message = dict[str, str]

CHARS_PER_TOKEN = 4
DEFAULT_BUDGET_TOKENS = 24_000
RECENT_DETAILS = 3
MIN_RECENT_ROWS = 30
LOG_TAIL_LINES = 50
LOG_TAIL_CHARS = 4_000


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def messages_tokens(messages: Sequence[Message]) -> int:
    return sum(estimate_tokens(m.get("content", "")) + 4 for m in messages)


def log_tail(text: str, lines: int = LOG_TAIL_LINES, max_chars: int = LOG_TAIL_CHARS) -> str:
    tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return tail if len(tail) <= max_chars else "..." + tail[-max_chars:]


def _cut(text: str, limit: int, note: str = "[... cut to fit the prompt]") -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(note) - 1)].rstrip() + "\n" + note


def _fence(text: str, lang: str = "") -> str:
    ticks = "````" if "```" in text else "```"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _metric(record: ExperimentRecord) -> str:
    if record.status == "crash":
        return "timeout" if "(timed out" in record.description else "crash"
    if is_pruned(record.description):
        return "pruned"
    return f"{record.metric:.6g}"


def _direction(config: SessionConfig) -> str:
    return "higher" if config.higher_is_better else "lower"


def system_prompt(config: SessionConfig) -> str:
    editable = ", ".join(config.editable_files)
    first = config.editable_files[0] if config.editable_files else config.script_path
    return f"""You are an ML research agent in an autonomous experiment loop. Each turn you propose ONE change \
to the training code. A harness commits it, runs `{config.run_command}` with a fixed time budget of \
{config.time_budget_minutes:g} minutes (killed after {config.timeout_minutes:g}), reads the metric \
{config.metric_name} from the log and keeps the change only if {config.metric_name} gets {_direction(config)} \
than the best so far ({_direction(config)} is better); otherwise the change is reverted.

Rules:
1. One idea per experiment. Never combine unrelated changes: a mixed change teaches nothing.
2. Edit only these files: {editable}. Never touch the evaluation: not how {config.metric_name} is computed or \
printed (the harness reads lines matching `{config.metric_grep}`), not the validation data, not the time budget.
3. Each run must finish within {config.time_budget_minutes:g} minutes; keep the code's own time limit and do not \
make it run out of memory.
4. Simplicity: all else being equal, simpler is better. A tiny gain that adds ugly complexity is not worth it; \
an equal result from simpler code (removing something) is a win.
5. Never repeat an experiment from the history; build on what was kept, learn from what was discarded or crashed.

Reply in exactly this format:
Description: <one line saying what this experiment changes, e.g. increase learning rate to 0.04>
Category: <one of {"|".join(CATEGORIES)}>
Rationale: <one to three sentences: why this may improve {config.metric_name}>

then one or more SEARCH/REPLACE blocks, each after a line holding the file's path:

{first}
```python
<<<<<<< SEARCH
<lines copied exactly from the current file, with their indentation>
=======
<the new lines>
>>>>>>> REPLACE
```

SEARCH must copy existing lines exactly, just enough of them to be unique. Prefer several small blocks to one \
big one; to delete lines leave REPLACE empty. Never write whole files."""


def strategy_notes(history: Sequence[ExperimentRecord]) -> str:
    rows = [r for r in history if r.status != "baseline"]
    guide = [
        "- Start with low-risk changes (hyperparameters), then escalate to optimizer, architecture and more.",
        "- After a keep, try a variation on the same theme (if a higher learning rate helped, go a bit further).",
        "- After 3 discards in one category, switch to another category.",
        "- After 3 crashes in a row, change approach: smaller, safer changes.",
    ]
    if not rows:
        return "\n".join(guide)
    stats: dict[str, Counter[str]] = {}
    since_keep: Counter[str] = Counter()
    for r in rows:
        stats.setdefault(r.category, Counter())[r.status] += 1
        if r.status == "keep":
            since_keep[r.category] = 0
        elif r.status == "discard":
            since_keep[r.category] += 1
    lines = ["", "By category (tried: keep/discard/crash):"]
    for cat in sorted(stats, key=lambda c: (-sum(stats[c].values()), c)):
        s = stats[cat]
        lines.append(f"- {cat}: {sum(s.values())} ({s['keep']}/{s['discard']}/{s['crash']})")
    untried = [c for c in CATEGORIES if c not in stats and c != "other"]
    if untried:
        lines.append(f"- not tried yet: {', '.join(untried)}")
    now = []
    stuck = [c for c, n in since_keep.items() if n >= 3]
    if stuck:
        now.append(
            f"- {', '.join(sorted(stuck))}: 3 or more discards since the last keep in that category; "
            f"choose another category now."
        )
    crashes = 0
    for r in reversed(rows):
        if r.status != "crash":
            break
        crashes += 1
    if crashes >= 3:
        now.append(f"- The last {crashes} experiments crashed: change approach, make a smaller and safer change.")
    if now:
        lines += ["", "Now:", *now]
    return "\n".join(guide + lines)


def _row(r: ExperimentRecord, width: int = 110) -> str:
    desc = r.description if len(r.description) <= width else r.description[: width - 3] + "..."
    return f"#{r.number} {r.status} {_metric(r)} [{r.category}] {desc}"


def training_line(r: ExperimentRecord, config: SessionConfig | None) -> str:
    """How the run went: its duration against the budget, and its loss curve when the log printed one."""
    parts = []
    if r.duration_s > 0:
        budget = f" of the {config.time_budget_minutes * 60:.0f} s budget" if config is not None else ""
        parts.append(f"ran {r.duration_s:.0f} s{budget}" if r.duration_s >= 10 else f"ran {r.duration_s:.2g} s{budget}")
    if r.curve is not None:
        parts.append(r.curve.describe())
    return "Training: " + "; ".join(parts) if parts else ""


def _detail(r: ExperimentRecord, diff_chars: int, config: SessionConfig | None, rationale_chars: int = 400) -> str:
    parts = [f"## #{r.number} {r.status} {_metric(r)} [{r.category}] {r.description}"]
    training = training_line(r, config)
    if training:
        parts.append(training)
    if r.rationale:
        parts.append(f"Rationale: {_cut(r.rationale, rationale_chars, '...')}")
    if r.diff and diff_chars > 0:
        parts.append(_fence(_cut(r.diff, diff_chars, "[... diff cut]"), "diff"))
    return "\n".join(parts)


def _summary(older: Sequence[ExperimentRecord], limit: int) -> str:
    if not older:
        return ""
    statuses = Counter(r.status for r in older)
    counts = ", ".join(f"{n} {s}" for s, n in statuses.most_common())
    head = f"Experiments #{older[0].number} to #{older[-1].number}, summarised ({counts}):"
    lines = [head]
    kept = [r for r in older if r.status in ("keep", "baseline")]
    if kept:
        lines.append("kept: " + "; ".join(f"#{r.number} {r.description[:60]}" for r in kept))
    tried = [r for r in older if r.status not in ("keep", "baseline")]
    if tried:
        lines.append("discarded or crashed: " + "; ".join(f"#{r.number} {r.description[:40]}" for r in tried))
    return _cut("\n".join(lines), limit, "[... older ideas omitted]")


def history_section(history: Sequence[ExperimentRecord], limit_chars: int, config: SessionConfig | None = None) -> str:
    """Every experiment as a compact row, the latest in detail; the oldest rows summarised to fit."""
    if not history:
        return "No experiments yet."
    recent = [r for r in history if r.status != "baseline"][-RECENT_DETAILS:]
    rows = [_row(r) for r in history]

    def details(diff_chars: int, count: int) -> str:
        if not count or not recent:
            return ""
        shown = [_detail(r, diff_chars, config) for r in recent[-count:]]
        return "\n\n# The latest experiments in detail\n" + "\n\n".join(shown)

    for diff_chars in (2500, 1200):
        full = "\n".join(rows) + details(diff_chars, RECENT_DETAILS)
        if len(full) <= limit_chars:
            return full
    detail_text = ""
    for diff_chars, count in ((1200, RECENT_DETAILS), (800, 1), (0, 1)):
        detail_text = details(diff_chars, count)
        if len(detail_text) <= limit_chars * 0.35:
            break
    else:
        detail_text = ""
    room = limit_chars - len(detail_text)
    kept: list[str] = []
    used = 0
    for row in reversed(rows):
        if used + len(row) + 1 > room * 0.75 and len(kept) >= MIN_RECENT_ROWS:
            break
        kept.append(row)
        used += len(row) + 1
    kept.reverse()
    older = list(history[: len(history) - len(kept)])
    summary = _summary(older, max(200, room - used - 4))
    return (summary + "\n\n" if summary else "") + "\n".join(kept) + detail_text


def _files_section(title: str, files: Mapping[str, str], limit: int | None = None) -> str:
    if not files:
        return ""
    share = None if limit is None else max(400, limit // max(1, len(files)))
    parts = [f"# {title}"]
    for path, text in files.items():
        body = text if share is None else _cut(text, share)
        parts.append(f"## {path}\n{_fence(body)}")
    return "\n\n".join(parts)


def _diff_applied(diff: str, files: Mapping[str, str]) -> bool:
    added = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    added = [a for a in added if a]
    if not added:
        return False
    text = "\n".join(files.values())
    return sum(a in text for a in added) * 2 > len(added)


def crash_task(crash: CrashInfo, files: Mapping[str, str], fix_attempts: int) -> str:
    state = (
        "The files above still contain the change that crashed: fix it in place."
        if _diff_applied(crash.diff, files)
        else "The files above are the version before the crash: make the same change again, fixed."
    )
    return f"""# Fix the crash
Experiment #{crash.number} ({crash.description}) [{crash.category}] crashed. Fix attempt \
{crash.attempt} of {fix_attempts}.

The end of its log:
{_fence(log_tail(crash.log_tail))}

The change that crashed:
{_fence(_cut(crash.diff, 6000, "[... diff cut]"), "diff")}

{state} Propose the smallest fix that keeps the same idea (Description: start with "fix:"). If the idea \
cannot work at all, reply with the single line `Description: abandon` and no blocks."""


def task_section(ctx: ProposalContext) -> str:
    if ctx.crash is not None:
        return crash_task(ctx.crash, ctx.files, ctx.config.fix_attempts)
    if ctx.user_idea:
        return (
            f"# Your task\nThe user asked for this idea; implement it as experiment #{ctx.number}, "
            f"in its simplest clean form:\n{ctx.user_idea}"
        )
    task = (
        f"# Your task\nPropose experiment #{ctx.number}: one new idea, not in the history, most likely to make "
        f"{ctx.config.metric_name} {_direction(ctx.config)}."
    )
    return f"{ctx.in_flight}\n\n{task}" if ctx.in_flight else task


def results_section(ctx: ProposalContext) -> str:
    cfg = ctx.config
    rows = [r for r in ctx.history if r.status != "baseline"]
    counts = Counter(r.status for r in rows)
    parts = [f"# Results\nMetric: {cfg.metric_name} ({_direction(cfg)} is better)."]
    if ctx.baseline is not None:
        parts.append(f"Baseline: {ctx.baseline:.6g}.")
    if ctx.best is not None:
        where = f" (experiment #{ctx.best_number})" if ctx.best_number is not None else ""
        parts.append(f"Best so far: {ctx.best:.6g}{where}.")
        best = next((r for r in ctx.history if r.number == ctx.best_number), None)
        training = training_line(best, cfg) if best is not None else ""
        if training:
            parts.append(f"{training} (the best's run).")
    parts.append(
        f"Experiments run: {len(rows)} (keep {counts['keep']}, discard {counts['discard']}, crash {counts['crash']})."
    )
    return " ".join(parts)


def knobs_section(ctx: ProposalContext) -> str:
    """The knobs where they live, and which values the run command sets (an edit in a file cannot change those)."""
    from .knobs import describe_knobs
    from .search import knob_report

    report = knob_report(ctx.config, ctx.files, ctx.readonly, None)
    text = describe_knobs(report)
    if report.fixed_by_run_command:
        text += (
            f"\nThe run command is `{ctx.config.run_command}`: its flags win over the files. To change a value it "
            "sets, do not edit the file; say in the Rationale which flag must change (the user changes the run "
            "command)."
        )
    return text


def build_messages(ctx: ProposalContext, budget_tokens: int = DEFAULT_BUDGET_TOKENS) -> list[Message]:
    cfg = ctx.config
    system = system_prompt(cfg)
    editable = _files_section("Editable files (current version, in full)", ctx.files)
    knobs = knobs_section(ctx)
    task = task_section(ctx)
    results = results_section(ctx)
    strategy = "# Strategy guide\n" + strategy_notes(ctx.history)
    budget = budget_tokens * CHARS_PER_TOKEN
    fixed = (
        len(system) + len(editable) + len(knobs) + len(task) + len(results) + len(strategy) + len(ctx.judging_notes)
    ) + 200
    readonly_room = max(2000, (budget - fixed) // 3)
    readonly = _files_section("Readonly files (context; never edit them)", ctx.readonly, readonly_room)
    room = max(2000, budget - fixed - len(readonly) - 40)
    history = "# History, oldest first (#number status metric [category] description)\n" + history_section(
        ctx.history, room, cfg
    )
    sections = [s for s in (readonly, editable, knobs, results, history, strategy, ctx.judging_notes, task) if s]
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(sections)}]
