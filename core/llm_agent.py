"""The LLM proposer: asks a model (through litellm) for one change, applies its edits in memory, and
reflects every failure back to it for a few rounds before giving up on this experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from .config import SessionConfig
from .edit_blocks import apply_blocks, parse_reply
from .edit_reach import overridden_edits
from .edits import file_edits
from .errors import ProviderError
from .litellm_import import load_litellm
from .prompt import CHARS_PER_TOKEN, DEFAULT_BUDGET_TOKENS, Message, build_messages
from .proposer import ExperimentRecord, Proposal, ProposalContext, ProposalSkipped, Usage, content_key
from .provider import Completion, RetryPolicy, TransientProviderError, complete, tries
from .reflection import conversation, cut_feedback, failure_feedback, no_edits_feedback, room_chars
from .syntax_check import syntax_problem

_ABANDON = ("abandon", "give up", "no fix", "none")


def _extra(config: SessionConfig, key: str) -> object:
    return (config.model_extra or {}).get(key)


def prompt_budget_tokens(config: SessionConfig) -> int:
    """Tokens the prompt may use: prompt_budget_tokens if set, else the default capped by the model's window."""
    given = _extra(config, "prompt_budget_tokens")
    if isinstance(given, int) and given > 0:
        return given
    budget = DEFAULT_BUDGET_TOKENS
    try:
        info = load_litellm().get_model_info(config.model or "")
        window = int(info.get("max_input_tokens") or 0)
    except Exception:
        window = 0
    if window:
        budget = min(budget, max(1000, window - config.max_output_tokens - 500))
    return budget


class LLMProposer:
    """A Proposer backed by a model reached through litellm (see core.proposer.Proposer)."""

    name = "llm"

    def __init__(
        self,
        config: SessionConfig,
        root: Path,
        *,
        retry: RetryPolicy | None = None,
        stream: bool | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.root = root
        self.retry = retry
        self.stream = bool(_extra(config, "stream")) if stream is None else stream
        self.on_text = on_text
        self._budget: int | None = None

    def budget_tokens(self) -> int:
        if self._budget is None:
            self._budget = prompt_budget_tokens(self.config)
        return self._budget

    def observe(self, record: ExperimentRecord) -> None:
        """Nothing to keep: every prompt is rebuilt from the full history the loop passes in."""

    def _ask(self, config: SessionConfig, messages: list[Message], usage: Usage) -> tuple[Completion, Usage]:
        try:
            reply = complete(config, messages, stream=self.stream, on_text=self.on_text, retry=self.retry)
        except TransientProviderError as exc:
            raise ProposalSkipped(str(exc), usage) from None
        return reply, usage + reply.usage

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        config = ctx.config
        editable = list(config.editable_files)
        base = build_messages(ctx, self.budget_tokens())
        budget_chars = self.budget_tokens() * CHARS_PER_TOKEN
        feedback_limit = room_chars(base, budget_chars) // 2
        exchanges: list[tuple[str, str]] = []
        usage = Usage()
        state: dict[str, str] = dict(ctx.files)
        applied_before: list[tuple[str, str, str]] = []
        description = category = rationale = ""
        category_given = False
        last_problem = "no reply"
        rounds = 1 + config.max_reflections
        for round_number in range(1, rounds + 1):
            reply, usage = self._ask(config, conversation(base, exchanges, budget_chars), usage)
            text = reply.text
            if reply.cut:
                # A reply the output limit cut may end mid-file or mid-block: none of it is applied.
                exchanges.append((text, cut_feedback(config.max_output_tokens)))
                last_problem = "the reply was cut off by the output limit"
                if round_number < rounds and ctx.on_retry is not None:
                    ctx.on_retry(round_number, "cut off by the output limit")
                continue
            parsed = parse_reply(text, editable)
            description = parsed.description or description
            rationale = parsed.rationale or rationale
            if parsed.category_given or not category_given:
                category, category_given = parsed.category, parsed.category_given or category_given
            if ctx.crash is not None and not parsed.blocks and parsed.description.lower().strip(" .!") in _ABANDON:
                return None
            feedback: str
            if not parsed.blocks and not parsed.problems and state != dict(ctx.files):
                # The blocks that applied earlier stand on their own; the model dropped the failed ones.
                verdict = self._verdict(ctx, state)
                if verdict is None:
                    return self._proposal(ctx, state, description, category, rationale, usage)
                feedback, last_problem, short = verdict
                state, applied_before = dict(ctx.files), []
            elif not parsed.blocks:
                feedback = no_edits_feedback(parsed)
                last_problem = "the reply held no SEARCH/REPLACE block"
                short = "no edit found in it"
            else:
                result = apply_blocks(parsed.blocks, state, self.root, editable, applied_before, config.referee_files)
                state = result.files
                applied_before += [(b.path, b.search, b.replace) for b in result.applied]
                if len(result.snippets) == len(parsed.blocks):
                    feedback = no_edits_feedback(parsed, snippets=len(result.snippets))
                    last_problem = "the reply held no edit, only a code snippet"
                    short = "no edit found in it (only a snippet)"
                elif result.failures or parsed.problems:
                    feedback = failure_feedback(parsed, result, feedback_limit)
                    first = result.failures[0] if result.failures else None
                    last_problem = f"{first.block.label}: {first.reason}" if first else parsed.problems[0]
                    short = first.short if first else parsed.problems[0].split(",")[0]
                    if len(result.failures) > 1:
                        short += f" (and {len(result.failures) - 1:,} more failed)"
                else:
                    verdict = self._verdict(ctx, state)
                    if verdict is None:
                        return self._proposal(ctx, state, description, category, rationale, usage)
                    feedback, last_problem, short = verdict
                    state, applied_before = dict(ctx.files), []
            exchanges.append((text, feedback))
            if round_number < rounds and ctx.on_retry is not None:
                ctx.on_retry(round_number, short)
        raise ProposalSkipped(f"the model's edits could not be used after {tries(rounds)}: {last_problem}", usage)

    def _verdict(self, ctx: ProposalContext, state: Mapping[str, str]) -> tuple[str, str, str] | None:
        """None when the edited files are a new version that compiles; else feedback, a reason and a short one."""
        if all(ctx.files.get(p, "") == t for p, t in state.items()):
            return (
                "Your blocks change nothing: each REPLACE leaves the file as it was. Propose a change that "
                "actually modifies the code, in the same format.",
                "the edit changes nothing",
                "the edit changes nothing",
            )
        broken = syntax_problem(state, ctx.files)
        if broken is not None:
            return (
                f"{broken.feedback()}\nNothing was run. Send your change again as SEARCH/REPLACE blocks against "
                "the files as they were shown to you first, written so that every file is valid Python.",
                broken.short,
                broken.short,
            )
        dead = overridden_edits(ctx.files, state, ctx.config.run_command)
        if dead:
            said = "; ".join(d.sentence() for d in dead)
            return (
                f"Nothing was run: {said}, which overrides the value in the file, so this edit would not reach "
                "the training. The run command cannot be edited; change something the training really uses, as "
                "SEARCH/REPLACE blocks against the files as they were shown to you first.",
                f"the edit changes {dead[0].name}, which `{dead[0].flag}` in the run command overrides",
                f"{dead[0].name} is set by `{dead[0].flag}` in the run command",
            )
        number = ctx.tried.get(content_key(state))
        if number is not None:
            record = next((r for r in ctx.history if r.number == number), None)
            what = f" ({record.description}, {record.status})" if record else ""
            return (
                f"That result is identical to experiment #{number}{what}, which was already run. Propose a "
                "different idea, against the files as they were shown to you first.",
                f"the edit is identical to experiment #{number}",
                f"the edit is identical to experiment #{number}",
            )
        return None

    def _proposal(
        self,
        ctx: ProposalContext,
        state: Mapping[str, str],
        description: str,
        category: str,
        rationale: str,
        usage: Usage,
    ) -> Proposal:
        changed = {p: t for p, t in state.items() if ctx.files.get(p, "") != t}
        if not description:
            if ctx.crash is not None:
                description = f"fix: {ctx.crash.description}"
            else:
                first = rationale.split(". ")[0] if rationale else ""
                description = first[:100] or f"edit {', '.join(sorted(changed))}"
        if ctx.crash is not None and category in ("", "other"):
            category = ctx.crash.category
        return Proposal(
            description=description,
            files=changed,
            edits=file_edits(ctx.files, changed),
            category=category or "other",
            rationale=rationale,
            usage=usage,
        )


def llm_recommendations(config: SessionConfig, analysis_markdown: str) -> str | None:
    """The model's Recommendations section for `analyze`, or None without a model or when it fails."""
    if not config.model:
        return None
    limit = min(prompt_budget_tokens(config), DEFAULT_BUDGET_TOKENS) * CHARS_PER_TOKEN
    direction = "higher" if config.higher_is_better else "lower"
    messages: list[Message] = [
        {
            "role": "system",
            "content": (
                "You advise on an autonomous ML experiment session. From its analysis, write only the body of the "
                "Recommendations section in Markdown: 3 to 7 bullets ordered by risk (lowest first), each a concrete "
                f"next experiment to make {config.metric_name} {direction}, building on what was kept and avoiding "
                "what failed. Prefer simple changes. No heading, no preamble."
            ),
        },
        {"role": "user", "content": analysis_markdown[-limit:]},
    ]
    try:
        reply = complete(config, messages)
    except (ProviderError, TransientProviderError):
        return None
    from .analysis import is_recommendations

    text = reply.text.strip()
    return text if text and is_recommendations(text) else None
