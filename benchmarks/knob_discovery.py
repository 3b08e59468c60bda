"""Knob discovery on a 2,000-line training script, against ast.parse of the same text in the same run.

The script has what real ones have: module constants, an argparse parser, a model, a training loop, a config
file and run-command flags over them. A second row times one proposal of the offline search (discovery and
a TPE study rebuilt from 50 results) beside the same yardstick.
"""

from __future__ import annotations

import argparse
import ast
import time

from autoresearch.core.config import SessionConfig
from autoresearch.core.knobs import discover
from autoresearch.core.proposer import ExperimentRecord, ProposalContext
from autoresearch.core.search import SearchProposer

from .common import Row, fmt_s, median, print_table, time_calls

LINES = 2_000
GOAL_RATIO = 4.0
"""Discovery may cost a few parses: one ast.parse, one walk for argparse and click calls, the rest is small."""


def make_script(lines: int = LINES) -> str:
    head = [
        '"""A generated training script of realistic shape."""',
        "import argparse",
        "import math",
        "",
        "LEARNING_RATE = 3e-4",
        "WEIGHT_DECAY = 0.1",
        "BATCH_SIZE = 2**6",
        "N_LAYER = 12",
        "DROPOUT = 0.1",
        "EVAL_INTERVAL = 500",
        "SEED = 1337",
        "parser = argparse.ArgumentParser()",
    ]
    for i in range(40):
        kind = ("float", "3e-4") if i % 2 else ("int", str(32 + i))
        head.append(f'parser.add_argument("--option-{i}", type={kind[0]}, default={kind[1]}, help="setting {i}")')
    body: list[str] = []
    block = 0
    while len(head) + len(body) < lines - 10:
        body += [
            "",
            f"class Block{block}:",
            f'    """Layer {block}."""',
            "",
            "    def __init__(self, width: int, heads: int) -> None:",
            "        self.width = width",
            "        self.heads = heads",
            f"        self.scale = 1.0 / math.sqrt(width / heads) * {block + 1}",
            "",
            "    def forward(self, x: list[float]) -> list[float]:",
            "        out = []",
            "        for i, value in enumerate(x):",
            "            if i % self.heads == 0:",
            "                value = value * self.scale + LEARNING_RATE",
            "            out.append(max(0.0, value) - DROPOUT * value)",
            "        return out",
            "",
            f"def step_{block}(params: dict[str, float], grads: dict[str, float]) -> None:",
            "    for key, grad in grads.items():",
            "        params[key] -= LEARNING_RATE * (grad + WEIGHT_DECAY * params[key])",
        ]
        block += 1
    tail = [
        "",
        "args = parser.parse_args()",
        "for step in range(10):",
        "    loss = 1.0 / (step + 1)",
        "    if step % EVAL_INTERVAL == 0:",
        '        print(f"step {step}: loss {loss:.4f}")',
        'print(f"val_loss: {loss:.6f}")',
    ]
    return "\n".join(head + body + tail) + "\n"


CONFIG = "learning_rate = 1e-3\nn_layer = 6\neval_interval = 250\n"
COMMAND = "python train.py config/small.py --option-3=1e-3 --batch_size 128"


def _history(n: int) -> tuple[ExperimentRecord, ...]:
    records = [ExperimentRecord(1, "c1", 1.0, "baseline", "baseline")]
    value = 0.001
    for i in range(2, n + 1):
        new = value * (1.3 if i % 3 else 0.8)
        status = "keep" if i % 4 == 0 else "discard"
        records.append(ExperimentRecord(i, f"c{i}", 1.0 - i / 1000, status, f"learning_rate {value:.6g} -> {new:.6g}"))
        if status == "keep":
            value = new
    return tuple(records)


def run(quick: bool = False) -> list[Row]:
    runs = 5 if quick else 30
    script = make_script(300 if quick else LINES)
    files = {"train.py": script, "config/small.py": CONFIG}
    lines = script.count("\n")
    report = discover(files, COMMAND, "train.py")
    parse_times = time_calls(lambda: ast.parse(script), runs)
    discover_times = time_calls(lambda: discover(files, COMMAND, "train.py"), runs)
    parse_s, discover_s = median(parse_times), median(discover_times)
    ratio = discover_s / parse_s

    config = SessionConfig(tag="b", script_path="train.py", metric_name="val_loss", run_command=COMMAND)
    history = _history(10 if quick else 50)
    ctx = ProposalContext(config, len(history) + 1, files, {}, history, 1.0, 0.95, 4)
    began = time.perf_counter()
    SearchProposer(config).propose(ctx)  # the first one imports optuna
    first_s = time.perf_counter() - began
    propose_times = time_calls(lambda: SearchProposer(config).propose(ctx), max(3, runs // 5), warmup=0)
    propose_s = median(propose_times)
    return [
        Row(
            what=f"knob discovery in a {lines:,}-line script (+ config file and flags)",
            measured=f"median {fmt_s(discover_s)} (n={runs}); {len(report.knobs)} knobs, "
            f"{len(report.left_out)} left out",
            goal=f"<= {GOAL_RATIO:g}x ast.parse of the same file",
            met=ratio <= GOAL_RATIO,
            ratio=f"{ratio:.2f}x ast.parse ({fmt_s(parse_s)})",
            data={"discover_s": discover_times, "parse_s": parse_times, "knobs": len(report.knobs)},
        ),
        Row(
            what=f"search proposal on that script with {len(history)} results (TPE study rebuilt)",
            measured=f"median {fmt_s(propose_s)} (n={len(propose_times)}); first {fmt_s(first_s)} (imports optuna)",
            goal="",
            met=None,
            ratio=f"{propose_s / parse_s:.1f}x ast.parse ({fmt_s(parse_s)})",
            data={"propose_s": propose_times, "first_s": first_s},
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (smoke test)")
    print_table(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
