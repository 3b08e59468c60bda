"""Every benchmark, one table: `python -m benchmarks` (add --quick for a tiny configuration)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import (
    cli_startup,
    duty_cycle,
    harness_overhead,
    judging,
    knob_discovery,
    pruning,
    sandbox_overhead,
    timeout_kill,
    workers_throughput,
)
from .common import Row, machine, make_repo, measure_references, print_table, rows_json, use_git_identity

NAMES = ("overhead", "cli", "app", "timeout", "duty", "gpu", "knobs", "judging", "pruning", "workers", "ray", "sandbox")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny configurations, a few seconds each (smoke test)")
    parser.add_argument("--only", nargs="+", choices=NAMES, help="run only these benchmarks")
    parser.add_argument("--flood-seconds", type=float, help="how long the app is flooded with output (60; quick 2)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows and the machine as JSON")
    args = parser.parse_args(argv)
    chosen = args.only or list(NAMES)

    use_git_identity()
    before = machine()
    with tempfile.TemporaryDirectory(prefix="ar-bench-ref-") as tmp:
        refs = measure_references(make_repo(Path(tmp) / "repo", 3, "print('x')\n", files=2))
    print(
        f"machine: {before['cpus']} CPUs ({before['cpu_model']}), {before['memory_gib']} GiB, "
        f"Python {before['python']}, {before['os']}; load average {before['loadavg']}",
        flush=True,
    )
    print(
        f"references at the start: git rev-parse {refs.git_spawn_s * 1000:.1f} ms, "
        f"python -c pass {refs.python_startup_s * 1000:.1f} ms (each benchmark measures them again beside its figures)",
        flush=True,
    )

    def app_rows() -> list[Row]:
        from .app_run import run as run_app

        return run_app(args.quick, flood_s=args.flood_seconds)

    def gpu_rows() -> list[Row]:
        from .gpu_memory_check import run as run_gpu

        return run_gpu(args.quick)

    def ray_rows() -> list[Row]:
        try:
            import ray.job_submission  # noqa: F401
        except ImportError:
            return [Row("Ray executor", "not run: Ray is not installed (pip install 'autoresearch[ray]')", "", None)]
        from .ray_overhead import run as run_ray

        return run_ray(args.quick)

    steps: dict[str, Callable[[], list[Row]]] = {
        "overhead": lambda: harness_overhead.run(args.quick),
        "cli": lambda: cli_startup.run(args.quick),
        "app": app_rows,
        "timeout": lambda: timeout_kill.run(args.quick),
        "duty": lambda: duty_cycle.run(args.quick),
        "gpu": gpu_rows,
        "knobs": lambda: knob_discovery.run(args.quick),
        "judging": lambda: judging.run(args.quick),
        "pruning": lambda: pruning.run(args.quick),
        "workers": lambda: workers_throughput.run(args.quick),
        "ray": ray_rows,
        "sandbox": lambda: sandbox_overhead.run(args.quick),
    }
    rows: list[Row] = []
    failed = False
    for name in chosen:
        began = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            got = steps[name]()
        except Exception as exc:
            failed = True
            traceback.print_exc()
            got = [Row(what=name, measured=f"failed: {exc}", goal="", met=False)]
        rows.extend(got)
        print(f"  {name} took {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
    after = machine()
    print()
    print_table(rows)
    print(f"\nload average before {before['loadavg']}, after {after['loadavg']} (the CPUs may be shared)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": before,
                    "loadavg_after": after["loadavg"],
                    "references": {"git_rev_parse_s": refs.git_spawn_s, "python_startup_s": refs.python_startup_s},
                    "quick": args.quick,
                    "rows": rows_json(rows),
                },
                indent=2,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
