"""Knob discovery: every place a training script keeps its settings, what overrides what, what is left out."""

from __future__ import annotations

from autoresearch.core.knobs import (
    DEFAULT_EXCLUDE,
    KnobChange,
    apply_changes,
    command_flags,
    config_files_in,
    describe_knobs,
    discover,
    exclude_patterns,
    parse_run_command,
)


def by_name(report):  # type: ignore[no-untyped-def]
    return {k.name: k for k in report.knobs}


def test_module_constants_with_arithmetic_and_the_last_assignment() -> None:
    text = "import os\nLR = 0.04\nBATCH: int = 2**19\nWIDTH = 64 * 8\nLR = 0.02\nNAME = 'x'\nFLAG = True\n"
    knobs = by_name(discover({"train.py": text}, "python train.py", "train.py"))
    assert set(knobs) == {"LR", "BATCH", "WIDTH"}
    assert (knobs["LR"].value, knobs["LR"].place.line, knobs["LR"].is_int) == (0.02, 5, False)
    assert (knobs["BATCH"].value, knobs["BATCH"].is_int) == (524288, True)
    changed = apply_changes({"train.py": text}, [KnobChange(knobs["BATCH"], 262144)])
    assert "BATCH: int = 262144\n" in changed["train.py"]


def test_argparse_and_click_defaults_by_dest_and_the_flags_that_override_them() -> None:
    text = (
        "import argparse, click\n"
        "p = argparse.ArgumentParser()\n"
        'p.add_argument("--learning-rate", "-l", type=float, default=5e-4)\n'
        'p.add_argument("-b", "--batch-size", type=int, default=32)\n'
        'p.add_argument("--emb", type=int, default=64, dest="n_embd")\n'
        'p.add_argument("--name", default="x")\n'
        '@click.option("--dropout", default=0.1)\n'
        "def main(dropout): pass\n"
    )
    report = discover({"mm.py": text}, "python mm.py -b 64 --emb=128", "mm.py")
    knobs = by_name(report)
    assert set(knobs) == {"learning_rate", "batch_size", "n_embd", "dropout"}
    assert knobs["learning_rate"].editable and knobs["learning_rate"].place.source == "argparse"
    assert knobs["dropout"].place.source == "click"
    for name, value, flag in (("batch_size", 64, "-b 64"), ("n_embd", 128, "--emb=128")):
        assert knobs[name].overridden_by_run_command and not knobs[name].editable
        assert (knobs[name].value, knobs[name].place.flag) == (value, flag)
        assert knobs[name].shadowed[0][0].path == "mm.py"
    assert [k.name for k in report.searchable] == ["learning_rate", "dropout"]


def test_a_config_module_and_flags_override_the_script_in_order() -> None:
    script = "batch_size = 12\nlearning_rate = 6e-4\nn_embd = 768\neval_interval = 2000\niter_num = 0\n"
    config = "learning_rate = 1e-3\nn_embd = 384\neval_interval = 250\n"
    command = "python train.py config/small.py --n_embd=128 --eval_iters 20"
    report = discover({"train.py": script, "config/small.py": config}, command, "train.py")
    knobs = by_name(report)
    assert config_files_in(command) == ["config/small.py"]
    assert knobs["learning_rate"].place.path == "config/small.py" and knobs["learning_rate"].value == 1e-3
    assert [p.path for p, _ in knobs["learning_rate"].shadowed] == ["train.py"]
    assert knobs["n_embd"].overridden_by_run_command and [p.path for p, _ in knobs["n_embd"].shadowed] == [
        "train.py",
        "config/small.py",
    ]
    assert set(report.left_out) == {"eval_interval", "iter_num", "eval_iters"}
    text = describe_knobs(report)
    assert "n_embd = 128 in the run command (--n_embd=128)" in text and "say the flag must change" in text
    assert "learning_rate = 0.001 in config/small.py:1; overrides train.py:2 says 0.0006" in text


def test_yaml_json_and_toml_configs_with_nested_keys() -> None:
    yaml_text = "model:\n  n_layer: 6   # depth\n  name: gpt\noptim:\n  lr: 3.0e-4\n  wd: 1e-2\nseed: 1\n"
    json_text = '{"train": {"lr": 0.001, "batch_size": 64}, "log_every": 10}'
    toml_text = '[optim]\nlr = 3e-4  # rate\nwarmup = 1_000\n[data]\npath = "x"\n'
    files = {"train.py": "import yaml\n", "conf.yaml": yaml_text, "c.json": json_text, "c.toml": toml_text}
    command = "python train.py --config conf.yaml c.json c.toml optim.lr=0.01"
    report = discover(files, command, "train.py")
    knobs = by_name(report)
    assert knobs["model.n_layer"].value == 6 and knobs["optim.wd"].value == 0.01
    assert knobs["train.batch_size"].is_int and knobs["optim.warmup"].value == 1000
    assert knobs["optim.lr"].overridden_by_run_command  # the flag wins over the YAML and the TOML key
    assert "seed" in report.left_out and "log_every" in report.left_out
    changed = apply_changes(files, [KnobChange(knobs["model.n_layer"], 8), KnobChange(knobs["train.lr"], 0.002)])
    assert changed["conf.yaml"] == yaml_text.replace("n_layer: 6 ", "n_layer: 8 ")
    assert changed["c.json"] == json_text.replace("0.001", "0.002")


def test_measurement_names_are_left_out_unless_the_config_says_otherwise() -> None:
    text = "SEED = 1\nEVAL_INTERVAL = 100\nlog_interval = 10\nbest_val_loss = 1e9\nrunning_mfu = -1.0\nLR = 0.1\n"
    assert [k.name for k in discover({"t.py": text}, "python t.py", "t.py").knobs] == ["LR"]
    assert len(discover({"t.py": text}, "python t.py", "t.py", exclude=["no-default"]).knobs) == 6
    assert "*seed*" in DEFAULT_EXCLUDE


def test_run_commands_parsed_as_the_shell_would() -> None:
    parsed = parse_run_command("CUDA_VISIBLE_DEVICES=0 .venv/bin/python -u train.py cfg.py --lr=3e-4 && echo done")
    assert (parsed.interpreter, parsed.script, parsed.args) == (".venv/bin/python", "train.py", ("cfg.py", "--lr=3e-4"))
    assert parse_run_command("uv run train.py").program == "uv"
    flags, positional = command_flags(["--max_iters", "500", "--compile=False", "--lr=3e-4", "x.py", "--v"])
    assert flags == [("max_iters", 500, "--max_iters 500"), ("lr", 3e-4, "--lr=3e-4")]
    assert positional == ["x.py"]


def test_nothing_to_search_says_where_it_looked() -> None:
    report = discover({"train.py": "import torch\nSEED = 3\n"}, "python train.py --lr=0.1", "train.py")
    assert report.searchable == ()
    assert report.nothing_to_search().startswith("nothing to search: the only knobs (lr) are set by flags")
    empty = discover({"train.py": "import torch\n"}, "python train.py", "train.py")
    assert empty.nothing_to_search().startswith("nothing to search: no numeric knob (module constant, argparse")
    assert "in train.py;" in empty.nothing_to_search()


KARPATHY_LIKE = """
DEPTH = 8
MATRIX_LR = 0.04
H100_BF16_PEAK_FLOPS = 989.5e12
SEED = 42
step = 0
total_training_time = 0
smooth_train_loss = 0
b2 = 0.0
model = build(DEPTH, seed=SEED)
while total_training_time < 300:
    loss = model.step(MATRIX_LR, b2)
    smooth_train_loss = 0.9 * smooth_train_loss + 0.1 * loss
    total_training_time += 1.5
    mfu = 100 * model.flops / H100_BF16_PEAK_FLOPS
    print(f"step {step} loss {smooth_train_loss:.4f} mfu {mfu:.1f}")
    step += 1
    b2 -= MATRIX_LR * model.grad
val_bpb = evaluate(model)
print(f"val_bpb: {val_bpb:.6f}")
print(f"mfu_percent: {mfu:.2f}")
"""


def test_state_and_printed_figures_are_not_knobs() -> None:
    report = discover({"train.py": KARPATHY_LIKE}, "python train.py", "train.py", metric="val_bpb")
    assert [k.name for k in report.knobs] == ["DEPTH", "MATRIX_LR"]
    # Without the metric's name every print could be the metric's: only the state is left out.
    names = [k.name for k in discover({"train.py": KARPATHY_LIKE}, "python train.py", "train.py").knobs]
    assert names == ["DEPTH", "MATRIX_LR", "H100_BF16_PEAK_FLOPS"]


def test_a_global_updated_in_a_function_is_state_and_a_local_of_the_same_name_is_not() -> None:
    text = "LR = 0.1\nCOUNT_UP = 0\ndef tick():\n    global COUNT_UP\n    COUNT_UP = COUNT_UP + 1\n"
    text += "def f(x):\n    LR = x * 2\n    return LR\nprint(f(LR), tick())\n"
    assert [k.name for k in discover({"t.py": text}, "python t.py", "t.py", metric="loss").knobs] == ["LR"]


def test_knob_exclude_adds_to_the_default_list_unless_it_says_no_default() -> None:
    text = "SEED = 1\nSLEEP_S = 0.1\nb2 = 0.5\nLR = 0.1\nprint(SEED, SLEEP_S, b2, LR, 'loss')\n"
    added = discover({"t.py": text}, "python t.py", "t.py", exclude=["SLEEP_S", "b2"], metric="loss")
    assert [k.name for k in added.knobs] == ["LR"]
    assert exclude_patterns(["SLEEP_S"]) == (*DEFAULT_EXCLUDE, "SLEEP_S")
    only = discover({"t.py": text}, "python t.py", "t.py", exclude=["no-default", "b2"], metric="loss")
    assert [k.name for k in only.knobs] == ["SEED", "SLEEP_S", "LR"]
