"""`autoresearch status`: the skill's ASCII dashboard, and the same data as plain JSON.

Kept light on purpose: it runs as a whole CLI process on every call, so it reads results.tsv once
and of each meta.json only the usage numbers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RESULTS_FILE, SessionConfig, load_config
from .errors import UserError
from .history import History
from .judge import MACHINE_SLOWER, is_no_effect, is_over_budget, is_timeout
from .results import STATUSES, ResultRow, ResultsTable, is_better, read_results
from .sanitize import safe_text

RULE = "=" * 64
BAR_WIDTH = 20
RECENT = 10
LINE_WIDTH = 100
_LABEL = 13


def fmt_metric(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    # A tiny value (1e-320) must not show as 0.000000 beside a real 0.
    return f"{value:.6f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.6g}"


def fmt_delta(delta: float, percent: float | None) -> str:
    pct = "n/a" if percent is None else f"{percent:+.2f}%"
    return f"{delta:+.6f} ({pct})"


def fmt_tokens(tokens_in: int, tokens_out: int, cost_usd: float) -> str:
    text = f"{tokens_in + tokens_out:,} tokens ({tokens_in:,} in, {tokens_out:,} out)"
    if cost_usd > 0:
        text += f" · ${cost_usd:.4f}"
    return text


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def percent_change(new: float, old: float) -> float | None:
    return (new - old) / abs(old) * 100 if old else None


def find_baseline(table: ResultsTable) -> tuple[int, ResultRow, bool] | None:
    """(number, row, inferred). Without a `baseline` row (karpathy's files mark it `keep`), the first
    measured row is the baseline."""
    for i, row in enumerate(table.rows, 1):
        if row.status == "baseline":
            return i, row, False
    for i, row in enumerate(table.rows, 1):
        if row.has_metric and math.isfinite(row.metric):
            return i, row, True
    return None


USAGE_CACHE = "usage-cache.json"
_RACY_S = 5


@dataclass(frozen=True)
class MetaSummary:
    """What `status` needs from one experiment's meta.json."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    worker: int | None = None


def _read_summary(path: str) -> MetaSummary:
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return MetaSummary()
    if not isinstance(data, dict):
        return MetaSummary()
    t_in, t_out, usd = data.get("tokens_in"), data.get("tokens_out"), data.get("cost_usd")
    extra = data.get("extra")
    worker = extra.get("worker") if isinstance(extra, dict) else None
    return MetaSummary(
        t_in if isinstance(t_in, int) else 0,
        t_out if isinstance(t_out, int) else 0,
        float(usd) if isinstance(usd, (int, float)) and math.isfinite(usd) else 0.0,
        worker if isinstance(worker, int) and not isinstance(worker, bool) else None,
    )


def meta_summaries(root: Path) -> dict[int, MetaSummary]:
    """Every experiment's meta.json summed up (tokens, cost, worker), by experiment number.

    With thousands of experiments, reading every meta.json costs more than the rest of `status`, so
    the summaries are cached in .autoresearch/usage-cache.json, keyed by the file's inode, size
    and mtime; files changed in the last few seconds are always read again.
    """
    history = History(root)
    folder = history.experiments_dir
    try:
        names = [e.name for e in os.scandir(folder) if e.name.isdigit()]
    except OSError:
        names = []
    cache_path = history.dir / USAGE_CACHE
    cache: dict[str, Any] = {}
    if len(names) > 50:
        try:
            loaded = json.loads(cache_path.read_bytes())
            cache = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            cache = {}
    fresh: dict[str, list[Any]] = {}
    now_ns = time.time_ns()
    found: dict[int, MetaSummary] = {}
    prefix = f"{folder}{os.sep}"
    for name in names:
        path = f"{prefix}{name}{os.sep}meta.json"
        try:
            st = os.stat(path)
        except OSError:
            continue
        key = [st.st_ino, st.st_size, st.st_mtime_ns]
        hit = cache.get(name)
        if isinstance(hit, list) and len(hit) == 7 and hit[:3] == key:
            summary = MetaSummary(int(hit[3]), int(hit[4]), float(hit[5]), hit[6] if isinstance(hit[6], int) else None)
        else:
            summary = _read_summary(path)
        if now_ns - st.st_mtime_ns > _RACY_S * 1_000_000_000:
            fresh[name] = [*key, summary.tokens_in, summary.tokens_out, summary.cost_usd, summary.worker]
        found[int(name)] = summary
    if len(names) > 50 and fresh != cache:
        try:
            tmp = cache_path.with_name(f"{USAGE_CACHE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(fresh, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, cache_path)
        except OSError:
            pass
    return found


def usage_totals(summaries: Mapping[int, MetaSummary]) -> dict[str, Any]:
    """Tokens and cost summed over every experiment's meta.json (proposals that were skipped included)."""
    tokens_in = sum(m.tokens_in for m in summaries.values())
    tokens_out = sum(m.tokens_out for m in summaries.values())
    return {
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "tokens": tokens_in + tokens_out,
        "cost_usd": round(sum(m.cost_usd for m in summaries.values()), 6),
        "experiments_with_usage": sum(1 for m in summaries.values() if m.tokens_in or m.tokens_out or m.cost_usd),
    }


def _row_dict(number: int, row: ResultRow) -> dict[str, Any]:
    return {
        "number": number,
        "commit": row.commit,
        "metric": finite(row.metric) if row.has_metric else None,
        "memory_gb": finite(row.memory_gb),
        "duration_s": finite(row.duration_s),
        "status": row.status,
        "description": row.description,
    }


def judging_from(config: SessionConfig, table: ResultsTable, noise: dict[str, Any]) -> dict[str, Any]:
    """How results are judged, and how many rows each judgement produced (read from their descriptions)."""

    def count(test: Any) -> int:
        return sum(1 for r in table.rows if test(r.description))

    sigma = noise.get("sigma")
    return {
        "rule": config.judging,
        "noise_sigmas": config.noise_sigmas,
        "min_gain": config.min_gain,
        "noise": sigma if isinstance(sigma, (int, float)) else None,
        "noise_df": noise.get("df") if isinstance(noise.get("df"), int) else 0,
        "confirmed": count(lambda d: "(confirmed " in d),
        "within_noise": count(lambda d: "(within noise" in d or "(not confirmed " in d),
        "no_effect": count(is_no_effect),
        "over_budget": count(is_over_budget),
        "timeouts": count(is_timeout),
        "machine_slower": count(lambda d: f"({MACHINE_SLOWER}" in d),
        "remeasured": count(lambda d: "re-measured here" in d),
    }


def status_from(
    config: SessionConfig,
    table: ResultsTable,
    usage: dict[str, Any],
    noise: dict[str, Any] | None = None,
    workers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    higher = config.higher_is_better
    rows = table.rows
    count = len(rows)
    cap = config.max_experiments

    base = find_baseline(table)
    best = table.best(higher)
    baseline = None
    if base is not None:
        baseline = {**_row_dict(base[0], base[1]), "inferred": base[2]}
    improvement = None
    if base is not None and best is not None:
        delta = best[1].metric - base[1].metric
        improvement = {
            "delta": round(delta, 12),
            "percent": _round(percent_change(best[1].metric, base[1].metric)),
            "better": is_better(best[1].metric, base[1].metric, higher),
        }

    counts = dict.fromkeys(STATUSES, 0)
    for row in rows:
        counts[row.status] += 1
    breakdown = {
        status: {"count": n, "percent": round(n / count * 100, 1) if count else 0.0} for status, n in counts.items()
    }
    recent = [_row_dict(i, rows[i - 1]) for i in range(count, max(count - RECENT, 0), -1)]
    durations = sum(r.duration_s for r in rows if math.isfinite(r.duration_s))
    since_best = count - best[0] if best is not None else None

    return {
        "tag": config.tag,
        "branch": config.branch,
        "script_path": config.script_path,
        "metric_name": config.metric_name,
        "metric_direction": config.metric_direction,
        "results_format": "skill" if table.has_duration else "karpathy",
        "experiments": {
            "count": count,
            "max": cap,
            "remaining": max(cap - count, 0) if cap else None,
        },
        "best": _row_dict(best[0], best[1]) if best else None,
        "baseline": baseline,
        "improvement": improvement,
        "experiments_since_best": since_best,
        "recent": recent,
        "breakdown": breakdown,
        "duration_s": durations if table.has_duration else None,
        "usage": usage,
        "judging": judging_from(config, table, noise or {}),
        "workers": workers or {"count": config.workers, "devices": list(config.devices), "now": [], "per_worker": {}},
    }


def build_status(root: Path) -> dict[str, Any]:
    """Everything `status` shows, as plain JSON data. Raises ConfigError/UserError with one sentence."""
    config = load_config(root)
    table = read_results(root / RESULTS_FILE)
    noise: Any = None
    with contextlib.suppress(OSError, ValueError):
        noise = json.loads((History(root).dir / "noise.json").read_bytes())
    metas = meta_summaries(root)
    return status_from(
        config,
        table,
        usage_totals(metas),
        noise if isinstance(noise, dict) else None,
        workers_from(root, config, table, metas),
    )


def workers_from(
    root: Path, config: SessionConfig, table: ResultsTable, metas: Mapping[int, MetaSummary]
) -> dict[str, Any]:
    """The workers: what each does now (while a session runs) and how many experiments and keeps each recorded."""
    from .history import workers_state_path

    now: Any = []
    from .gitops import Repo
    from .session_lock import holder

    try:
        running = holder(Repo(root)) is not None  # after a crash the file still says what ran then
    except UserError:  # status also reads a results.tsv outside any repository
        running = False
    if running:
        with contextlib.suppress(OSError, ValueError):
            now = json.loads(workers_state_path(root).read_bytes())
    per_worker: dict[str, dict[str, int]] = {}
    for number, row in enumerate(table.rows, 1):
        meta = metas.get(number)
        worker = meta.worker if meta is not None else None
        if worker is not None:
            counts = per_worker.setdefault(str(worker), {"experiments": 0, "keeps": 0})
            counts["experiments"] += 1
            counts["keeps"] += row.status == "keep"
    return {
        "count": config.workers,
        "devices": list(config.devices),
        "now": now if isinstance(now, list) else [],
        "per_worker": per_worker,
    }


def _bar(count: int, cap: int) -> str:
    if not cap:
        return f"{count} (no cap)"
    filled = min(BAR_WIDTH, round(BAR_WIDTH * count / cap))
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {count}/{cap}"


def _line(label: str, value: str) -> str:
    return f"{label:<{_LABEL}}{value}".rstrip()


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def judging_line(j: dict[str, Any]) -> str:
    if j["rule"] == "greedy":
        text = "greedy: any gain is kept"
    else:
        noise = "not measured yet" if j["noise"] is None else f"{j['noise']:.4g} ({j['noise_df']} repeat runs)"
        text = f"gains over {j['noise_sigmas']:g}σ of noise, noise {noise}"
        if j["min_gain"]:
            text += f", min gain {j['min_gain']:g}"
    counts = [
        (j["confirmed"], "confirmed"),
        (j["within_noise"], "within noise"),
        (j["no_effect"], "no effect"),
        (j["over_budget"], "over budget"),
        (j["timeouts"], "timed out"),
        (j["remeasured"], "re-measured"),
    ]
    shown = ", ".join(f"{n} {what}" for n, what in counts if n)
    return f"{text}; {shown}" if shown else text


def render_status(data: dict[str, Any]) -> str:
    """The dashboard of the skill's `/autoresearch status`, from build_status's data."""
    exp = data["experiments"]
    out = [RULE, f"AUTORESEARCH · {data['tag']} · {data['script_path']}", RULE]
    out.append(_line("EXPERIMENTS", _bar(exp["count"], exp["max"])))
    out.append(_line("METRIC", f"{data['metric_name']} ({data['metric_direction']})"))

    best, base, imp = data["best"], data["baseline"], data["improvement"]
    out.append(
        _line("BEST", f"{fmt_metric(best['metric'])} (exp #{best['number']}, commit {best['commit']})")
        if best
        else _line("BEST", "-")
    )
    if base:
        note = f" (exp #{base['number']}, first result)" if base["inferred"] else ""
        out.append(_line("BASELINE", fmt_metric(base["metric"]) + note))
    else:
        out.append(_line("BASELINE", "-"))
    if imp:
        verdict = "better" if imp["better"] else "no change yet"
        out.append(_line("IMPROVEMENT", f"{fmt_delta(imp['delta'], imp['percent'])} {verdict}"))
    else:
        out.append(_line("IMPROVEMENT", "-"))

    out.append("RECENT EXPERIMENTS")
    recent = data["recent"]
    if recent:
        num_w = max(len(str(r["number"])) for r in recent) + 1
        commit_w = max(len(r["commit"]) for r in recent)
        metric_w = max(len(fmt_metric(r["metric"] if r["status"] != "crash" else 0.0)) for r in recent)
        for r in recent:
            metric = fmt_metric(r["metric"] if r["status"] != "crash" else 0.0)
            line = (
                f"  {'#' + str(r['number']):>{num_w}} {r['commit']:<{commit_w}} {metric:>{metric_w}} "
                f"{r['status']:<8} {r['description']}"
            )
            out.append(_clip(line.rstrip(), LINE_WIDTH))
    else:
        out.append("  (no experiments yet)")

    out.append("STATUS BREAKDOWN")
    breakdown = data["breakdown"]
    shown = [s for s in STATUSES if s != "baseline" or breakdown[s]["count"]]
    if exp["count"]:
        count_w = max(len(str(breakdown[s]["count"])) for s in shown)
        for status in shown:
            item = breakdown[status]
            pct = round(item["count"] / exp["count"] * 100)
            out.append(f"  {status + ':':<10}{item['count']:>{count_w}} ({pct}%)")
    else:
        out.append("  (no experiments yet)")

    out.append(_line("JUDGING", judging_line(data["judging"])))
    workers = data.get("workers") or {}
    if workers.get("count", 1) > 1 or workers.get("per_worker"):
        devices = f" on devices {','.join(workers['devices'])}" if workers.get("devices") else ""
        out.append(_line("WORKERS", f"{workers['count']}{devices}"))
        for item in workers.get("now", []):
            if item.get("state") in ("running", "confirming", "re-applying", "re-measuring", "guarding"):
                line = f"  worker {item['worker']}: {item['state']} {item.get('description', '')}"
                out.append(_clip(line.rstrip(), LINE_WIDTH))
        for worker, counts in sorted(workers.get("per_worker", {}).items(), key=lambda kv: int(kv[0])):
            out.append(f"  worker {worker}: {counts['experiments']} experiments, {counts['keeps']} kept")
    usage = data["usage"]
    if usage["tokens"] or usage["cost_usd"]:
        out.append(_line("TOKENS", fmt_tokens(usage["tokens_in"], usage["tokens_out"], usage["cost_usd"])))
    out.append(RULE)
    return safe_text("\n".join(out)) + "\n"
