"""The pairwise LLM judge: which of two outputs answers an item better, asked in both orders; and the
win / tie / loss summary with its sign test."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tuneport.errors import EvaluationError
from tuneport.evaluation.graders.base import Grader, register_grader
from tuneport.evaluation.graders.results import GradeResult, JudgeFn, Message, Reference, _item_error, _short
from tuneport.evaluation.graders.text import _reference_text
from tuneport.evaluation.stats import mcnemar_exact

DEFAULT_JUDGE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user question displayed below. Choose the assistant that follows the user's instructions and answers the "
    "user's question better, considering helpfulness, relevance, accuracy and level of detail. Avoid any position "
    "bias: the order in which the responses were presented must not influence your decision. Do not let the "
    "length of the responses or the names of the assistants influence your evaluation. Be as objective as "
    "possible. After a short explanation, output your final verdict by strictly following this format: "
    '"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)


DEFAULT_JUDGE_TEMPLATE = (
    "[User Question]\n{question}\n{reference_block}\n"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)


_PLACEHOLDER_RE = re.compile(r"\{(question|answer_a|answer_b|reference|reference_block)\}")


_VERDICT_RE = re.compile(r"\[\[\s*(A|B|C|TIE)\s*\]\]", re.IGNORECASE)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def conversation_text(item: dict | None) -> str:
    """The question part of an item for a judge prompt: its conversation without the final assistant answer.

    Understands chat items (``messages``), DPO items (``input.messages``) and plain ``question`` / ``prompt``
    strings. A single user message is given as is; longer conversations as ``ROLE: text`` lines.
    """
    if not item:
        return ""
    for key in ("question", "prompt"):
        if isinstance(item.get(key), str):
            return item[key]
    messages = item.get("messages")
    if messages is None and isinstance(item.get("input"), dict):
        messages = item["input"].get("messages")
    if not isinstance(messages, list):
        return ""
    messages = [m for m in messages if isinstance(m, dict)]
    if messages and messages[-1].get("role") == "assistant":
        messages = messages[:-1]
    turns = [m for m in messages if m.get("role") != "system"]
    if len(turns) == 1:
        return _content_text(turns[0].get("content"))
    return "\n".join(
        f"{str(m.get('role', '?')).upper()}: {_content_text(m.get('content'))}" for m in messages
    )


@dataclass(frozen=True)
class PairwiseResult:
    """The judge's decision on one item, asked in both orders.

    ``winner`` is ``"a"`` or ``"b"`` only when both orders agree; ``"tie"`` when both say tie or the orders
    disagree (position bias: ``details["orders_disagree"]``); ``None`` with ``error`` set when either answer could
    not be parsed. ``verdicts`` are the two parsed verdicts mapped back to A/B/tie (first: A shown first).
    """

    winner: Literal["a", "b", "tie"] | None
    error: str | None = None
    verdicts: tuple[str | None, str | None] = (None, None)
    raw: tuple[str | None, str | None] = (None, None)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def score_a(self) -> float | None:
        """1 for an A win, 0.5 for a tie, 0 for a B win (None on error)."""
        return {"a": 1.0, "tie": 0.5, "b": 0.0}.get(self.winner) if self.winner else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "winner": self.winner,
            "error": self.error,
            "verdicts": list(self.verdicts),
            "raw": list(self.raw),
            "details": self.details,
        }


@register_grader
class PairwiseJudgeGrader(Grader):
    """LLM-as-judge, pairwise: which of two outputs answers the item better?

    Each item is judged twice, with the outputs in both orders (A/B, then B/A), and a win counts only when both
    orders agree, which cancels the judge's position bias (Zheng et al., 2023, "Judging LLM-as-a-Judge").
    Disagreement is a tie. An answer with no verdict, or with conflicting verdicts, is a per-item error, never a
    silent tie. Identical outputs are a tie without asking the judge.

    ``template`` (the user message) may use ``{question}``, ``{reference}``, ``{reference_block}`` (an empty
    string, or the reference under a ``[Reference Answer]`` heading) and must use ``{answer_a}`` and
    ``{answer_b}``; other braces are left alone, so JSON examples need no escaping. The judge must end with
    ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). ``system`` replaces the system prompt (``null`` for none).

    The judge is a ``judge(messages) -> str`` callable, sync or async, given to :func:`make_grader` (or per call).
    Exceptions from it propagate: the runner decides whether a failed call is retried or recorded.
    """

    name = "pairwise_judge"
    kind = "pairwise"
    needs_reference = False

    def __init__(
        self,
        *,
        judge: JudgeFn | None = None,
        template: str | None = None,
        system: str | None = DEFAULT_JUDGE_SYSTEM,
    ) -> None:
        template = DEFAULT_JUDGE_TEMPLATE if template is None else template
        if not isinstance(template, str):
            raise EvaluationError(f"grader 'pairwise_judge': template must be a string, got {template!r}")
        used = set(_PLACEHOLDER_RE.findall(template))
        missing = {"answer_a", "answer_b"} - used
        if missing:
            raise EvaluationError(
                f"grader 'pairwise_judge': the template must contain {', '.join('{' + m + '}' for m in sorted(missing))}",
                hint="Placeholders: {question}, {reference}, {reference_block}, {answer_a}, {answer_b}.",
            )
        if system is not None and not isinstance(system, str):
            raise EvaluationError(f"grader 'pairwise_judge': system must be a string or null, got {system!r}")
        if judge is not None and not callable(judge):
            raise EvaluationError(f"grader 'pairwise_judge': judge must be callable, got {judge!r}")
        self.template = template
        self.system = system
        self.judge = judge
        self.params = {"template": template, "system": system}

    # -- prompts ---------------------------------------------------------------------------------------------

    def build_messages(
        self, first: str, second: str, *, item: dict | None = None, reference: Reference = None
    ) -> list[Message]:
        """The judge prompt with ``first`` shown as assistant A and ``second`` as assistant B."""
        ref_text = (
            "" if reference is None else reference if isinstance(reference, str) else json.dumps(reference)
        )
        values = {
            "question": conversation_text(item),
            "reference": ref_text,
            "reference_block": f"\n[Reference Answer]\n{ref_text}\n[End of Reference Answer]\n"
            if ref_text
            else "",
            "answer_a": first,
            "answer_b": second,
        }
        content = _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], self.template)
        messages: list[Message] = [] if self.system is None else [{"role": "system", "content": self.system}]
        messages.append({"role": "user", "content": content})
        return messages

    @staticmethod
    def parse_verdict(text: str) -> tuple[str | None, str | None]:
        """("A" | "B" | "tie", None) or (None, why it is unparseable)."""
        if not isinstance(text, str):
            return None, f"judge returned {type(text).__name__}, not text"
        found = {m.upper() for m in _VERDICT_RE.findall(text)}
        found = {"tie" if v in ("C", "TIE") else v for v in found}
        if not found:
            return None, "judge output has no verdict ([[A]], [[B]] or [[C]])"
        if len(found) > 1:
            return None, f"judge output has conflicting verdicts ({', '.join(sorted(found))})"
        return found.pop(), None

    # -- deciding ----------------------------------------------------------------------------------------------

    def _decide(self, raw_ab: str, raw_ba: str) -> PairwiseResult:
        v1, e1 = self.parse_verdict(raw_ab)
        v2, e2 = self.parse_verdict(raw_ba)
        raw = (_short(raw_ab, 2000), _short(raw_ba, 2000))
        # Second order showed B as "A": map its verdict back.
        v2 = {"A": "b", "B": "a", "tie": "tie"}.get(v2) if v2 else None
        v1 = {"A": "a", "B": "b", "tie": "tie"}.get(v1) if v1 else None
        if e1 or e2:
            parts = [f"A-first order: {e1}" if e1 else "", f"B-first order: {e2}" if e2 else ""]
            return PairwiseResult(None, error="; ".join(p for p in parts if p), verdicts=(v1, v2), raw=raw)
        if v1 == v2:
            return PairwiseResult(v1, verdicts=(v1, v2), raw=raw)  # type: ignore[arg-type]
        return PairwiseResult("tie", verdicts=(v1, v2), raw=raw, details={"orders_disagree": True})

    def _pick_judge(self, judge: JudgeFn | None) -> JudgeFn:
        judge = judge or self.judge
        if judge is None:
            raise EvaluationError(
                "grader 'pairwise_judge' has no judge to ask",
                hint="Pass judge=callable to make_grader(...) or to compare(...); the runner provides one.",
            )
        return judge

    def compare(
        self,
        output_a: str,
        output_b: str,
        *,
        item: dict | None = None,
        reference: Reference = None,
        judge: JudgeFn | None = None,
    ) -> PairwiseResult:
        """Judge one item synchronously (an async judge is run with ``asyncio.run`` when no loop is running)."""
        judge = self._pick_judge(judge)
        if output_a == output_b:
            return _identical()
        answers = self._ask_both(judge, output_a, output_b, item, reference)
        if any(inspect.isawaitable(a) for a in answers):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                answers = asyncio.run(_settle(answers))
            else:
                for a in answers:
                    if inspect.iscoroutine(a):
                        a.close()
                raise EvaluationError(
                    "the judge is async and an event loop is running: use `await grader.acompare(...)` instead"
                ) from None
        return self._decide(*answers)

    async def acompare(
        self,
        output_a: str,
        output_b: str,
        *,
        item: dict | None = None,
        reference: Reference = None,
        judge: JudgeFn | None = None,
    ) -> PairwiseResult:
        """Judge one item, asking both orders concurrently when the judge is async."""
        judge = self._pick_judge(judge)
        if output_a == output_b:
            return _identical()
        return self._decide(*await _settle(self._ask_both(judge, output_a, output_b, item, reference)))

    def _ask_both(
        self, judge: JudgeFn, a: str, b: str, item: dict | None, reference: Reference
    ) -> list[str | Awaitable[str]]:
        """The judge's answers with A shown first, then B shown first: text from a sync judge, awaitables from an
        async one (:meth:`compare` and :meth:`acompare` differ only in how they wait for those)."""
        return [
            judge(self.build_messages(a, b, item=item, reference=reference)),
            judge(self.build_messages(b, a, item=item, reference=reference)),
        ]

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        """Judge ``prediction`` (as A) against the reference answer (as B): 1 for a win, 0.5 tie, 0 loss."""
        ref, err = _reference_text(reference, self.name)
        if err is not None:
            return _item_error(err)
        result = self.compare(prediction, ref, item=item)
        if result.error is not None:
            return _item_error(result.error, raw=list(result.raw))
        details = {"winner": result.winner, "verdicts": list(result.verdicts), **result.details}
        return GradeResult(score=result.score_a or 0.0, passed=result.winner == "a", details=details)


def _identical() -> PairwiseResult:
    """Identical outputs are a tie without asking the judge."""
    return PairwiseResult("tie", verdicts=("tie", "tie"), details={"shortcut": "identical outputs"})


async def _settle(answers: Sequence[str | Awaitable[str]]) -> list[str]:
    """``answers`` with every awaitable awaited (concurrently), in order."""
    pending = [a for a in answers if inspect.isawaitable(a)]
    done = iter(await asyncio.gather(*pending))
    return [next(done) if inspect.isawaitable(a) else a for a in answers]  # type: ignore[misc]


@dataclass(frozen=True)
class PairwiseSummary:
    """Win / tie / loss counts of B against A from the pairwise judge, with an exact sign test on the wins.

    The sign test is McNemar's exact test with ``b`` = A's wins and ``c`` = B's wins (ties carry no information
    about direction and are left out, as in McNemar's test the concordant pairs are).
    """

    n: int
    wins_a: int
    wins_b: int
    ties: int
    errors: int
    orders_disagree: int
    win_rate_b: float | None
    p_value: float
    winner: Literal["a", "b"] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_pairwise(results: Sequence[PairwiseResult], *, alpha: float = 0.05) -> PairwiseSummary:
    """Aggregate pairwise verdicts; ``winner`` is set only when the sign test is significant at ``alpha``."""
    wins_a = sum(1 for r in results if r.winner == "a")
    wins_b = sum(1 for r in results if r.winner == "b")
    ties = sum(1 for r in results if r.winner == "tie")
    test = mcnemar_exact(wins_a, wins_b, alpha=alpha)
    decided = wins_a + wins_b + ties
    return PairwiseSummary(
        n=len(results),
        wins_a=wins_a,
        wins_b=wins_b,
        ties=ties,
        errors=sum(1 for r in results if r.error is not None),
        orders_disagree=sum(1 for r in results if r.details.get("orders_disagree")),
        win_rate_b=(wins_b + 0.5 * ties) / decided if decided else None,
        p_value=test.p_value,
        winner=test.winner if test.significant else None,
    )
