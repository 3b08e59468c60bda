"""The LLM proposer: asks a model (through litellm) for one change, applies its edits in memory, and
reflects every failure back to it for a few rounds before giving up on this experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from .config import SessionConfig
from .edit_blocks import ApplyResult, ParsedReply, apply_blocks, parse_reply
from .errors import ProviderError
from .prompt import CHARS_PER_TOKEN, DEFAULT_BUDGET_TOKENS, Message, build_messages
from .proposer import ExperimentRecord, Proposal, ProposalContext, ProposalSkipped, Usage, content_key
from .provider import RetryPolicy, TransientProviderError, complete, load_litellm, tries

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


def _quote(text: str) -> str:
    ticks = "````" if "```" in text else "```"
    return f"{ticks}\n{text.rstrip()}\n{ticks}"


def _failure_feedback(parsed: ParsedReply, result: ApplyResult) -> str:
    parts: list[str] = []
    total = len(parsed.blocks)
    bad = len(result.failures)
    if bad:
        parts.append(f"{bad} of your {total} SEARCH/REPLACE blocks failed; nothing has been run yet.")
    for problem in parsed.problems:
        parts.append(f"Your reply could not be read fully: {problem}.")
    for failure in result.failures:
        block = failure.block
        parts.append(f"## Block {block.index} failed: {failure.reason}\n{_quote(block.quote())}")
        if failure.closest:
            parts.append(f"Did you mean these lines of the file?\n{_quote(failure.closest)}")
    done = result.applied + result.already
    if done:
        names = ", ".join(f"block {b.index} ({b.path})" for b in sorted(done, key=lambda b: b.index))
        parts.append(f"These blocks applied and are in place now: {names}. Do not send them again.")
    parts.append(
        "Reply with corrected SEARCH/REPLACE blocks for the failed blocks only. SEARCH must copy the current "
        "lines of the file exactly, with their indentation; drop any block for a file you may not edit."
    )
    return "\n\n".join(parts)


def _no_blocks_feedback(parsed: ParsedReply) -> str:
    extra = "".join(f" ({p})" for p in parsed.problems)
    return (
        f"Your reply holds no usable SEARCH/REPLACE block{extra}. Reply in the format asked: the Description, "
        "Category and Rationale lines, then the file's path alone on a line followed by a block:\n"
        "<<<<<<< SEARCH\n<exact current lines>\n=======\n<new lines>\n>>>>>>> REPLACE"
    )


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
        self.last_messages: list[Message] = []
        self._budget: int | None = None

    def budget_tokens(self) -> int:
        if self._budget is None:
            self._budget = prompt_budget_tokens(self.config)
        return self._budget

    def observe(self, record: ExperimentRecord) -> None:
        """Nothing to keep: every prompt is rebuilt from the full history the loop passes in."""

    def _ask(self, config: SessionConfig, messages: list[Message], usage: Usage) -> tuple[str, Usage]:
        self.last_messages = list(messages)
        try:
            reply = complete(config, messages, stream=self.stream, on_text=self.on_text, retry=self.retry)
        except TransientProviderError as exc:
            raise ProposalSkipped(str(exc), usage) from None
        return reply.text, usage + reply.usage

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        config = ctx.config
        editable = list(config.editable_files)
        messages = build_messages(ctx, self.budget_tokens())
        usage = Usage()
        state: dict[str, str] = dict(ctx.files)
        applied_before: list[tuple[str, str, str]] = []
        description = category = rationale = ""
        category_given = False
        last_problem = "no reply"
        rounds = 1 + config.max_reflections
        for _ in range(rounds):
            text, usage = self._ask(config, messages, usage)
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
                feedback, last_problem = verdict
                state, applied_before = dict(ctx.files), []
            elif not parsed.blocks:
                feedback = _no_blocks_feedback(parsed)
                last_problem = "the reply held no SEARCH/REPLACE block"
            else:
                result = apply_blocks(parsed.blocks, state, self.root, editable, applied_before)
                state = result.files
                applied_before += [(b.path, b.search, b.replace) for b in result.applied]
                if result.failures or parsed.problems:
                    feedback = _failure_feedback(parsed, result)
                    last_problem = (
                        f"block {result.failures[0].block.index}: {result.failures[0].reason}"
                        if result.failures
                        else parsed.problems[0]
                    )
                else:
                    verdict = self._verdict(ctx, state)
                    if verdict is None:
                        return self._proposal(ctx, state, description, category, rationale, usage)
                    feedback, last_problem = verdict
                    state, applied_before = dict(ctx.files), []
            messages = [*messages, {"role": "assistant", "content": text}, {"role": "user", "content": feedback}]
        self.last_messages = messages
        raise ProposalSkipped(f"the model's edits could not be used after {tries(rounds)}: {last_problem}", usage)

    def _verdict(self, ctx: ProposalContext, state: Mapping[str, str]) -> tuple[str, str] | None:
        """None when the edited files are a new version; else feedback for the model and a short reason."""
        if all(ctx.files.get(p, "") == t for p, t in state.items()):
            return (
                "Your blocks change nothing: each REPLACE leaves the file as it was. Propose a change that "
                "actually modifies the code, in the same format.",
                "the edit changes nothing",
            )
        number = ctx.tried.get(content_key(state))
        if number is not None:
            record = next((r for r in ctx.history if r.number == number), None)
            what = f" ({record.description}, {record.status})" if record else ""
            return (
                f"That result is identical to experiment #{number}{what}, which was already run. Propose a "
                "different idea, against the files as they were shown to you first.",
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
    text = reply.text.strip()
    return text or None
