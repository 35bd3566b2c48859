"""A chat template read back as a fixed per-turn format: what goes before and after each role's content.

Why: Ollama's TEMPLATE is a Go template, and llama.cpp wants the end-of-turn token; neither can run the model's
Jinja template. Most chat formats are "prefix + (role header, content, role footer) per message + generation
prompt"; rendering the real template on probe conversations recovers those strings, and rendering it again on
several real-looking conversations proves the decomposition reproduces the template exactly. A template that
is not of that shape (one that folds the system prompt into the first user turn, numbers turns, injects dates)
is refused with the conversation where the two differ, instead of exporting a Modelfile that prompts the model
differently from how it was trained. Contents are checked without surrounding whitespace: a template that trims
them (Llama 3's) is taken as per-turn, and differs only for a message that starts or ends with whitespace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tuneport.local_backend.export.errors import ExportError

__all__ = ["TurnFormat", "turn_format", "render_with", "CHECK_CONVERSATIONS"]

Render = Callable[[list[dict[str, str]], bool], str]

# Probe contents: plain ASCII words no template rewrites, distinct from anything a template prints.
_U1, _A1, _U2, _S0 = "tuneportprobeuserone", "tuneportprobeassistant", "tuneportprobeusertwo", "tuneportprobesystem"

# Conversations the decomposition must reproduce exactly (multi-line, unicode, with and without a system prompt).
CHECK_CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "You are a support agent.\nBe brief."},
     {"role": "user", "content": "My invoice is wrong."}],
    [{"role": "user", "content": "Größe: 料金?"}, {"role": "assistant", "content": "It is 3 € a month."},
     {"role": "user", "content": "And\nyearly?"}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "Bonjour !"}, {"role": "user", "content": "bye"},
     {"role": "assistant", "content": "Au revoir."}],
]  # fmt: skip


@dataclass(frozen=True)
class TurnFormat:
    """``prefix`` once, then per message ``before[role] + content + after[role]``, then ``generation``.

    ``default_system`` is the block the template writes when a conversation has no system message (Qwen's
    "You are Qwen..."): it stands where a system message would. ``system`` is False for a format without a
    system role (the template refuses one).
    """

    prefix: str
    before: dict[str, str]
    after: dict[str, str]
    generation: str
    system: bool = True
    default_system: str = ""

    @property
    def end_of_turn(self) -> str:
        """What closes an assistant turn (``<|end|>\\n``, ``<|eot_id|>``): where generation must stop."""
        return self.after["assistant"]

    def render(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool) -> str:
        """The conversation as this format writes it (what the chat template renders, when it is of this shape)."""
        out = [self.prefix]
        if self.default_system and (not messages or messages[0]["role"] != "system"):
            out.append(self.default_system)
        for m in messages:
            out += [self.before[m["role"]], m["content"], self.after[m["role"]]]
        if add_generation_prompt:
            out.append(self.generation)
        return "".join(out)


def render_with(tokenizer: Any) -> Render:
    """The tokenizer's chat template as a function (messages, add_generation_prompt) -> text."""

    def render(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return text if isinstance(text, str) else str(text)

    return render


def _split(text: str, marker: str, what: str) -> tuple[str, str]:
    if text.count(marker) != 1:
        raise _not_turns(f"{what}: the message content appears {text.count(marker)} times, not once")
    head, _, tail = text.partition(marker)
    return head, tail


def _after(text: str, start: str, what: str) -> str:
    if not text.startswith(start):
        raise _not_turns(f"{what}: adding a message changed what the template wrote before it")
    return text[len(start) :]


def _not_turns(detail: str) -> ExportError:
    return ExportError(
        f"the model's chat template is not a fixed per-turn format ({detail}), so no Ollama TEMPLATE or "
        "end-of-turn token can be derived from it",
        hint="Export --format gguf (llama.cpp applies the Jinja template itself), or write the Modelfile's "
        "TEMPLATE by hand.",
    )


def turn_format(render: Render) -> TurnFormat:
    """Recover the per-turn format of a chat template, then check it on :data:`CHECK_CONVERSATIONS`."""
    from jinja2 import TemplateError

    try:
        user_only = render([{"role": "user", "content": _U1}], False)
        with_prompt = render([{"role": "user", "content": _U1}], True)
        turn = render([{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1}], False)
        two = render(
            [{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1},
             {"role": "user", "content": _U2}], False,
        )  # fmt: skip
    except TemplateError as exc:
        raise _not_turns(f"it fails on a user/assistant conversation: {exc}") from None
    generation = _after(with_prompt, user_only, "generation prompt")
    before_a, after_a = _split(_after(turn, user_only, "assistant turn"), _A1, "assistant turn")
    before_u, after_u = _split(_after(two, turn, "second user turn"), _U2, "second user turn")
    head, tail = _split(user_only, _U1, "first user turn")
    if tail != after_u or not head.endswith(before_u):
        raise _not_turns("the first user turn is written differently from later ones")
    prefix = head[: len(head) - len(before_u)]
    before = {"user": before_u, "assistant": before_a}
    after = {"user": after_u, "assistant": after_a}
    fmt = _with_system(render, prefix, before, after, generation)
    for conversation in CHECK_CONVERSATIONS:
        if not fmt.system and conversation[0]["role"] == "system":
            continue
        for gen in (True, False):
            expected = render(conversation, gen)
            got = fmt.render(conversation, gen)
            if got != expected:
                raise _not_turns(
                    f"for {[m['role'] for m in conversation]} it writes {expected!r}, a fixed per-turn format "
                    f"would write {got!r}"
                )
    return fmt


def _with_system(
    render: Render, prefix: str, before: dict[str, str], after: dict[str, str], generation: str
) -> TurnFormat:
    from jinja2 import TemplateError

    user_turn = before["user"] + _U1 + after["user"]
    try:
        text = render([{"role": "system", "content": _S0}, {"role": "user", "content": _U1}], False)
    except TemplateError:  # a format without a system role (the template raises on one)
        return TurnFormat(prefix, before, after, generation, system=False)
    head, tail = _split(text, _S0, "system turn")
    if not tail.endswith(user_turn):
        raise _not_turns("the system prompt changes how the user turn after it is written")
    after_s = tail[: len(tail) - len(user_turn)]
    if head.startswith(prefix):
        return TurnFormat(
            prefix, {**before, "system": head[len(prefix) :]}, {**after, "system": after_s}, generation
        )
    # The template writes a default system block when there is none: the prefix found from a conversation without
    # a system message is that block. The system message is the first one, so its header carries the real prefix.
    if prefix.startswith(head) and prefix.endswith(after_s) and len(prefix) >= len(head) + len(after_s):
        return TurnFormat(
            "", {**before, "system": head}, {**after, "system": after_s}, generation, default_system=prefix
        )
    raise _not_turns("what it writes before a system prompt does not extend what it writes without one")
