"""The corpus of realistic model replies (tests/fixtures/replies/*.txt) and the measure of how many apply as
the model meant them: first time, and within 3 reflections. `python -m tests.reply_corpus` prints the table
docs/EDIT-FORMATS.md holds; tests/test_reply_corpus.py checks the goal and that the document is current.

A case file: `form:` and `files:` lines (and `run:`, the run command, when a flag matters), then one
`===== reply` section per reply of the model (the later ones are what a model answers to the feedback it was
sent; `===== reply cut` is served with finish_reason `length`, as when the output limit cut it; `{ROOT}` stands
for the repository's absolute path), then one `===== expect <path>` section per file the change touches, made
of `----- old` / `----- new` pairs applied exactly to that file's fixture. Fixtures are compared byte for byte:
a CRLF or BOM fixture's expected text keeps its line endings and BOM.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autoresearch.core.config import SessionConfig
from autoresearch.core.llm_agent import LLMProposer
from autoresearch.core.proposer import ExperimentRecord, Proposal, ProposalContext, ProposalSkipped
from autoresearch.core.provider import RetryPolicy
from autoresearch.core.syntax_check import syntax_problem
from autoresearch.core.text_files import Layout, read_exact, write_exact

from tests.llm_server import Reply, ScriptedLLMServer

CORPUS = Path(__file__).parent / "fixtures" / "replies"
DOC = Path(__file__).parent.parent / "docs" / "EDIT-FORMATS.md"
REFLECTIONS = 3
KEY_ENV = "AUTORESEARCH_CORPUS_KEY"
_SECTION = re.compile(r"^===== (reply|expect)\b ?(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Case:
    name: str
    form: str
    files: tuple[str, ...]
    replies: tuple[str, ...]
    expect: dict[str, str]
    cut: frozenset[int] = frozenset()
    """Replies (0-based) the output limit cut: served with finish_reason `length`."""
    run_command: str = ""


@dataclass(frozen=True)
class Outcome:
    case: Case
    as_meant: bool
    replies_used: int
    compiles: bool
    note: str

    @property
    def first_time(self) -> bool:
        return self.as_meant and self.replies_used == 1


def fixture(path: str) -> str:
    """A fixture byte for byte: its line endings and BOM are part of what a case checks."""
    return read_exact(CORPUS / Path(path).name)


def _apply_expected(base: str, body: str, where: str) -> str:
    pairs = re.split(r"^----- (old|new)\n", body, flags=re.MULTILINE)[1:]
    layout = Layout(base)
    text = layout.plain(base)
    for k in range(0, len(pairs), 4):
        old, new = pairs[k + 1], pairs[k + 3]
        assert pairs[k] == "old" and pairs[k + 2] == "new", where
        assert text.count(old) == 1, f"{where}: the expected old text must occur once: {old!r}"
        text = text.replace(old, new)
    return layout.restore(text)


def load_case(path: Path) -> Case:
    raw = path.read_text()
    head, _, _ = raw.partition("\n===== ")
    meta = dict(line.split(":", 1) for line in head.splitlines() if ":" in line)
    files = tuple(meta.get("files", "train.py").split())
    marks = list(_SECTION.finditer(raw))
    replies: list[str] = []
    expect: dict[str, str] = {}
    cut: set[int] = set()
    for n, mark in enumerate(marks):
        end = marks[n + 1].start() if n + 1 < len(marks) else len(raw)
        body = raw[mark.end() + 1 : end]
        if mark.group(1) == "reply":
            if mark.group(2).strip() == "cut":
                cut.add(len(replies))
            replies.append(body.replace("\\r\\n", "\r\n").replace("\\x00", "\x00"))
        else:
            target = mark.group(2).strip()
            expect[target] = _apply_expected(fixture(target), body, f"{path.name} {target}")
    assert replies and expect, path.name
    form = meta.get("form", "").strip()
    return Case(path.stem, form, files, tuple(replies), expect, frozenset(cut), meta.get("run", "").strip())


def load_corpus() -> list[Case]:
    return [load_case(p) for p in sorted(CORPUS.glob("*.txt"))]


def _context(config: SessionConfig, files: dict[str, str]) -> ProposalContext:
    base = ExperimentRecord(number=1, commit="abc1234", metric=1.5, status="baseline", description="baseline")
    return ProposalContext(
        config=config,
        number=2,
        files=files,
        readonly={"data.py": fixture("data.py")},
        history=(base,),
        baseline=1.5,
        best=1.5,
        best_number=1,
    )


def run_case(case: Case, server: ScriptedLLMServer, workdir: Path) -> Outcome:
    server.reset()
    root = workdir / case.name
    server.script(
        *(
            Reply(text.replace("{ROOT}", str(root.resolve())), finish_reason="length" if n in case.cut else "stop")
            for n, text in enumerate(case.replies)
        )
    )
    files = {path: fixture(path) for path in case.files}
    for path, text in {**files, "data.py": fixture("data.py")}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        write_exact(root / path, text)
    config = SessionConfig(
        tag="corpus",
        script_path=case.files[0],
        editable_files=list(case.files),
        readonly_files=["data.py"],
        metric_name="val_loss",
        agent="llm",
        model="openai/test-model",
        api_base=server.url,
        api_key_env=KEY_ENV,
        request_timeout_s=10,
        max_reflections=REFLECTIONS,
        run_command=case.run_command,
    )
    proposer = LLMProposer(config, root, retry=RetryPolicy(attempts=1))
    try:
        proposal: Proposal | None = proposer.propose(_context(config, files))
    except ProposalSkipped as exc:
        return Outcome(case, False, len(server.requests), True, f"skipped: {exc.reason}")
    if proposal is None:
        return Outcome(case, False, len(server.requests), True, "no proposal")
    result = {**files, **proposal.files}
    meant = all(result[p] == t for p, t in case.expect.items()) and all(
        result[p] == files[p] for p in files if p not in case.expect
    )
    compiles = syntax_problem(result, files) is None
    return Outcome(case, meant, len(server.requests), compiles, "" if meant else "applied other than meant")


def run_corpus(cases: list[Case] | None = None) -> list[Outcome]:
    os.environ.setdefault(KEY_ENV, "sk-corpus")
    with ScriptedLLMServer() as server, tempfile.TemporaryDirectory() as tmp:
        return [run_case(case, server, Path(tmp)) for case in cases or load_corpus()]


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    return {
        "cases": len(outcomes),
        "first": sum(o.first_time for o in outcomes),
        "within": sum(o.as_meant and o.replies_used <= 1 + REFLECTIONS for o in outcomes),
        "not_compiling": sum(not o.compiles for o in outcomes),
    }


def table(outcomes: list[Outcome]) -> str:
    s = summary(outcomes)
    pct = 100 * s["within"] / s["cases"]
    lines = [
        f"{s['cases']} replies: {s['first']} applied as meant first time "
        f"({100 * s['first'] / s['cases']:.0f} %), {s['within']} within {REFLECTIONS} reflections ({pct:.0f} %); "
        f"proposals that would not compile: {s['not_compiling']}.",
        "",
        "| case | form | replies used | as meant |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.case.name} | {o.case.form} | {o.replies_used} | {'yes' if o.as_meant else 'no: ' + o.note} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(table(run_corpus()) + "\n")
