"""GPU check: a small PyTorch training on CUDA run through the real loop, comparing the peak GPU memory
the loop measures (NVML, per process of the run's tree) with what the script reports from
torch.cuda.max_memory_allocated() and max_memory_reserved().

Needs torch with CUDA and nvidia-ml-py (`pip install -e .[gpu]`); without them it prints a skipped row
and exits 0. The loop is told to ignore the script's own memory line (memory_grep matches nothing),
so results.tsv's memory_gb is the NVML figure.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from pathlib import Path

from .common import PY, Row, make_repo, print_table, use_git_identity

TRAIN = """import os
import time

import torch

WIDTH = 2048
torch.manual_seed(0)
device = torch.device("cuda")
layers = [torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU(), torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU()]
model = torch.nn.Sequential(*layers, torch.nn.Linear(WIDTH, 1)).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
x = torch.randn(4096, WIDTH, device=device)
y = x[:, :1].clone()
budget = float(os.environ.get("AUTORESEARCH_TIME_BUDGET_S", "10"))
began = time.time()
step = 0
while time.time() - began < budget:
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    step += 1
    if step % 50 == 0:
        print(f"step {step} loss: {loss.item():.6f}", flush=True)
torch.cuda.synchronize()
print(f"torch_max_allocated_mb: {torch.cuda.max_memory_allocated() / 1024**2:.1f}")
print(f"torch_max_reserved_mb: {torch.cuda.max_memory_reserved() / 1024**2:.1f}")
print(f"val_loss: {loss.item():.6f}")
"""


def _skip(reason: str) -> list[Row]:
    return [
        Row(
            what="GPU: loop's peak GPU memory vs torch.cuda.max_memory_allocated",
            measured=f"skipped: {reason}",
            goal="report",
            met=None,
        )
    ]


def _reported(log: str, name: str) -> float:
    found = re.findall(rf"^{name}: ([\d.]+)$", log, re.MULTILINE)
    return float(found[-1]) if found else float("nan")


def run(quick: bool = False) -> list[Row]:
    try:
        import torch
    except ImportError:
        return _skip("PyTorch is not installed")
    if not torch.cuda.is_available():
        return _skip("no CUDA GPU is available")
    from autoresearch.core.gpu import nvml_available

    if not nvml_available():
        return _skip("NVML is not available (pip install nvidia-ml-py)")

    from autoresearch.core import events as ev
    from autoresearch.core.loop import ExperimentLoop
    from autoresearch.core.results import read_results
    from autoresearch.core.setup import setup_session

    use_git_identity()
    workdir = Path(tempfile.mkdtemp(prefix="ar-bench-gpu-"))
    try:
        root = make_repo(workdir / "repo", 3, TRAIN, files=2)
        setup_session(
            root,
            "train.py",
            metric_name="val_loss",
            agent="mutate",
            run_command=f"{PY} train.py",
            time_budget_minutes=(3 if quick else 15) / 60,
            timeout_minutes=2,
            max_experiments=1,
            tag="gpu",
            memory_grep="^no_such_memory_line:",
        )
        finished: list[ev.RunFinished] = []

        def sink(event: ev.Event) -> None:
            if isinstance(event, ev.RunFinished):
                finished.append(event)

        stopped = ExperimentLoop(root, sink).run()
        rows = read_results(root / "results.tsv").rows
        log = (root / "run.log").read_text(errors="replace")
        if not stopped.ok or not rows or rows[0].status == "crash":
            tail = "\n".join(log.splitlines()[-5:])
            return _skip(f"the training did not finish ({stopped.reason}): {tail}")
        allocated = _reported(log, "torch_max_allocated_mb")
        reserved = _reported(log, "torch_max_reserved_mb")
        nvml_mb = finished[0].memory_gb * 1024 if finished else float("nan")
        name = torch.cuda.get_device_name(0)
        return [
            Row(
                what=f"GPU ({name}): loop's peak GPU memory vs torch.cuda.max_memory_allocated",
                measured=f"loop (NVML) {nvml_mb:.0f} MB; torch allocated {allocated:.0f} MB, "
                f"reserved {reserved:.0f} MB",
                goal="report",
                met=None,
                ratio=f"NVML - reserved = {nvml_mb - reserved:.0f} MB (the CUDA context and kernels)",
                note="results.tsv memory_gb is rounded to 0.1 GB; the figure here is the RunFinished event's",
                data={"nvml_mb": nvml_mb, "torch_allocated_mb": allocated, "torch_reserved_mb": reserved},
            )
        ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 3 s training instead of 15 s")
    print_table(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
