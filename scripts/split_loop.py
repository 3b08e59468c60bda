"""Move ExperimentLoop's methods, verbatim, into layered modules (each layer may use those below it)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LAYERS = [
    (
        "session_state",
        "SessionState",
        None,
        '"""The state one session shares across its parts: config, history, results.tsv, usage, controls, events.\n\n'
        "The loop is built in layers, each a class in its own module that may use the layers below it:\n"
        "SessionState (this) < Workspace (git position, commit, reset) < Execution (runs through an Executor)\n"
        "< Measuring (what the judge needs measured) < Proposing (asking the model, drafts) < Experiment (one\n"
        "experiment: propose, commit, run, judge, record) < ExperimentLoop (core/loop.py: the scheduler).\n"
        '"""',
        [
            "__init__",
            "_emit",
            "_set_phase",
            "_rows_count",
            "_rows_from_history",
            "_reconcile",
            "_write_results",
            "_save_carry",
        ],
    ),
    (
        "workspace",
        "Workspace",
        ("session_state", "SessionState"),
        '"""The checkout an experiment works in: the session lock, the branch and its position, the editable files,\n'
        'writing and committing them, and taking a commit off the branch again (only one the tool made)."""',
        [
            "_acquire_lock",
            "_release_lock",
            "_check_session_files",
            "_enter_branch",
            "_require_clean",
            "_check_position",
            "_check_before_writing",
            "_read_editable",
            "_files_at",
            "_write_files",
            "_restore",
            "_claim",
            "_reset_to_parent",
            "_revert_unrecorded",
            "_not_taken_off",
        ],
    ),
    (
        "execution",
        "Execution",
        ("workspace", "Workspace"),
        '"""Running a training, a guard or a verify command through the session\'s executor (core/executor.py),\n'
        'with the run\'s environment, its events, its log kept per experiment and its peak memory."""',
        ["_execute", "_keep_log", "_memory_gb", "_run_aux", "_guard_passes"],
    ),
    (
        "measuring",
        "Measuring",
        ("execution", "Execution"),
        '"""What the judge (core/judge.py) needs measured: the metric of a run, confirmation re-runs, the best code\n'
        'run again after a timeout, and why a baseline failed."""',
        ["_measure", "_run_again", "_judge_change", "_timeout_note", "_baseline_failure"],
    ),
    (
        "proposing",
        "Proposing",
        ("measuring", "Measuring"),
        '"""Asking the proposer for the next change (core/proposer.py): its context, the helper thread it answers on,\n'
        'the checks a proposal must pass before anything is written, the tokens of unusable ones."""',
        [
            "_note_skipped",
            "_records",
            "_context",
            "_ask",
            "_propose",
            "_check_proposal",
            "_check_not_without_effect",
            "_ask_fix",
        ],
    ),
    (
        "experiment",
        "Experiment",
        ("proposing", "Proposing"),
        '"""One experiment: commit the proposal, run it, have it judged, record it (results.tsv, .autoresearch/),\n'
        'keep it or take it off the branch; the fixes of a crash; the baseline."""',
        [
            "_experiment_with_fixes",
            "_commit_and_run",
            "_baseline",
            "_remeasure_elsewhere",
            "_run_and_judge",
            "_baseline_failed",
        ],
    ),
]


def main(core: Path) -> None:
    path = core / "loop.py"
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ExperimentLoop")
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    import_text = "".join("".join(lines[n.lineno - 1 : n.end_lineno]) for n in imports)
    import_text = import_text.replace("from __future__ import annotations\n", "")
    # Module-level definitions besides imports and the class: they move to session_state.
    defs = [
        n
        for n in tree.body
        if n not in imports and n is not cls and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
    ]
    def_text = "\n\n".join("".join(lines[n.lineno - 1 : n.end_lineno]) for n in defs)
    def_names = []
    for n in defs:
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            def_names.append(n.name)
        elif isinstance(n, ast.Assign):
            def_names += [t.id for t in n.targets if isinstance(t, ast.Name)]
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            def_names.append(n.target.id)
    methods = {}
    prev_end = cls.body[0].lineno - 1
    for node in cls.body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        # Leading comments (section titles) travel with the method after them.
        seg_start = start - 1
        probe = seg_start
        while probe - 1 >= prev_end and (not lines[probe - 1].strip() or lines[probe - 1].strip().startswith("#")):
            probe -= 1
            if lines[probe].strip().startswith("#"):
                seg_start = probe
        methods[node.name] = "".join(lines[seg_start : node.end_lineno])
        prev_end = node.end_lineno
    used = set()
    state_import = f"from .session_state import {', '.join(sorted(def_names))}\n"
    for module, name, base, doc, names in LAYERS:
        names = [m for m in names if m in methods]  # a version of loop.py without some of them
        used.update(names)
        body = "\n".join(methods[m].rstrip("\n") + "\n" for m in names)
        head = f"{doc}\n\nfrom __future__ import annotations\n\n{import_text}"
        if module == "session_state":
            head += "\n\n" + def_text + "\n"
            parent = ""
        else:
            head += state_import + f"from .{base[0]} import {base[1]}\n"
            parent = f"({base[1]})"
        (core / f"{module}.py").write_text(f"{head}\n\nclass {name}{parent}:\n{body}")
    rest = [m for m in methods if m not in used]
    docstring = ast.get_docstring(tree)
    body = "\n".join(methods[m].rstrip("\n") + "\n" for m in rest)
    path.write_text(
        f'"""{docstring}\n"""\n\nfrom __future__ import annotations\n\n{import_text}{state_import}'
        f"from .experiment import Experiment\n\n\nclass ExperimentLoop(Experiment):\n"
        '    """The scheduler: one experiment after another until a stop rule, the user or a failure ends '
        "the session.\n\n"
        "    The parts of an experiment are the layers it is built on (core/session_state.py lists them).\n"
        f'    """\n\n{body}'
    )
    print("loop keeps:", rest)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
