"""Chat examples -> token ids and loss labels, rendered by the base model's own chat template.

Why the model's template: a fine-tune must see exactly the text the model will be served with (vLLM renders
requests with the same template), so the training data is rendered by ``tokenizer.apply_chat_template`` and never
by a format of our own.

Which tokens carry loss: assistant messages only, and not those with ``"weight": 0`` (OpenAI's rule for
multi-turn examples). The mask is found by rendering prefixes of the conversation and diffing the *text*: the
assistant message ``i`` occupies the characters between "conversation up to ``i`` with a generation prompt" and
"conversation through ``i``". Tokens are then mapped to characters through the fast tokenizer's offsets, so BPE
merges and special tokens cannot shift the mask. When the template marks assistant output with
``{% generation %}``, the mask is further narrowed to what the template marks (the role header and the newline
after the end-of-turn token are then excluded, exactly as the template's author intended).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneport.errors import DataError, SpecError

__all__ = [
    "IGNORE_INDEX",
    "RenderedExample",
    "PreferenceExample",
    "LoadedData",
    "render_with_labels",
    "load_sft_examples",
    "load_preference_examples",
    "check_chat_template",
]

IGNORE_INDEX = -100


@dataclass(slots=True)
class RenderedExample:
    """One training sequence: ``labels[i]`` is ``input_ids[i]`` where loss applies, else ``IGNORE_INDEX``."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    line: int | None = None

    @property
    def n_loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(slots=True)
class PreferenceExample:
    """One DPO pair: the same prompt completed by the preferred and the non-preferred output."""

    chosen: RenderedExample
    rejected: RenderedExample
    line: int | None = None

    def __len__(self) -> int:
        return len(self.chosen) + len(self.rejected)


@dataclass
class LoadedData:
    """Examples of one file plus what had to be dropped or cut, so the trainer can say so in an event."""

    path: str
    examples: list[Any]
    skipped_lines: list[int] = field(default_factory=list)
    truncated_lines: list[int] = field(default_factory=list)
    system_lines: list[int] = field(default_factory=list)  # lines with a system message (some formats have none)

    @property
    def n_tokens(self) -> int:
        return sum(len(e) for e in self.examples)


def check_chat_template(tokenizer: Any, model_path: str | Path) -> None:
    """Refuse a tokenizer without a chat template: guessing a format would train a different model than is served."""
    if not getattr(tokenizer, "chat_template", None):
        raise SpecError(
            f"the tokenizer of {model_path} has no chat template, so chat examples cannot be rendered the way the "
            "model will be served",
            hint="Use an instruct/chat variant of the model, or add a `chat_template` to its tokenizer_config.json.",
        )


def _clean_message(message: dict[str, Any]) -> dict[str, Any]:
    """What the template should see: no ``weight`` key, tool-call arguments as objects.

    OpenAI stores ``function.arguments`` as a JSON string; Hugging Face templates expect a mapping (most
    ``tojson`` it), so a string holding a JSON object is parsed. Anything else is passed through unchanged.
    """
    out = {k: v for k, v in message.items() if k != "weight"}
    calls = out.get("tool_calls")
    if isinstance(calls, list):
        fixed = []
        for call in calls:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                fn = dict(call["function"])
                args = fn.get("arguments")
                if isinstance(args, str):
                    try:
                        parsed = json.loads(args)
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, dict):
                        fn["arguments"] = parsed
                call = {**call, "function": fn}
            fixed.append(call)
        out["tool_calls"] = fixed
    if out.get("content") is None and out.get("role") == "assistant":
        out["content"] = ""
    return out


def _tools_of(record: dict[str, Any]) -> list[dict[str, Any]] | None:
    """OpenAI ``tools`` as given, or legacy ``functions`` wrapped as tools."""
    tools = record.get("tools")
    if tools:
        return tools
    functions = record.get("functions")
    if functions:
        return [{"type": "function", "function": f} for f in functions]
    return None


def _render_text(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
    )


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _assistant_spans(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Any, full_text: str, trained: Sequence[bool]
) -> list[tuple[int, int]] | None:
    """Character spans of the trained assistant messages in ``full_text``; None if the template is not prefix-stable.

    Prefix-stable means rendering the first ``k`` messages yields a prefix of rendering all of them, which holds
    for nearly every template (ones that rewrite earlier turns depending on later ones are the exception). A
    trailer the template writes once at the end of a whole conversation (Phi-3 ends one with the eos token) is
    not part of the prefix: a rendering that is a prefix of the full one plus that same ending still counts.
    """
    trailer = _conversation_trailer(tokenizer, messages, tools, full_text)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant" or not trained[i]:
            continue
        through = _without_trailer(_render_text(tokenizer, messages[: i + 1], tools, False), trailer)
        if not full_text.startswith(through):
            return None
        if i == 0:
            start = 0
        else:
            before = _without_trailer(_render_text(tokenizer, messages[:i], tools, False), trailer)
            with_prompt = _render_text(tokenizer, messages[:i], tools, True)
            if not through.startswith(before):
                return None
            # The generation prompt (e.g. "<|assistant|>\n") belongs to the prompt, not to what is learned. Some
            # templates render a generation prompt that differs from the real turn's header (a think block):
            # then only the shared part counts as prompt.
            start = max(len(before), _common_prefix_len(with_prompt, through))
        spans.append((start, len(through)))
    return spans


def _conversation_trailer(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, full_text: str) -> str:
    """What the template appends after a finished conversation only (``""`` for most templates).

    Found as the part of the one-message-shorter rendering that is not a prefix of ``full_text`` when that part
    ends ``full_text`` too; anything else (a template that really rewrites earlier turns) is not a trailer.
    """
    if len(messages) < 2:
        return ""
    shorter = _render_text(tokenizer, messages[:-1], tools, False)
    cut = _common_prefix_len(shorter, full_text)
    if cut == len(shorter):
        return ""
    # Snap back to the start of the token the texts part in ("<|endoftext|>" and "<|assistant|>" share "<|").
    _, offsets = _offsets(tokenizer, shorter)
    for s, e in offsets or ():
        if s <= cut < e:
            cut = s
            break
    tail = shorter[cut:]
    return tail if full_text.endswith(tail) and len(tail) < len(full_text) else ""


def _without_trailer(text: str, trailer: str) -> str:
    """``text`` (a rendering of a prefix of the conversation) less the conversation trailer: no answer learns it."""
    if trailer and text.endswith(trailer):
        return text[: -len(trailer)]
    return text


def _offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    enc = tokenizer(text, add_special_tokens=False)
    return list(enc["input_ids"]), None


def _generation_mask(tokenizer: Any, messages: list[dict[str, Any]], tools: Any) -> list[int] | None:
    """The template's own ``{% generation %}`` assistant mask, when it has one."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    if not re.search(r"\{%-?\s*generation\s*-?%\}", template):
        return None
    out = tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return list(out["assistant_masks"])


def render_with_labels(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    max_seq_length: int | None = None,
    trained: Sequence[bool] | None = None,
) -> RenderedExample:
    """Render ``messages`` with the tokenizer's chat template; labels on the trained assistant tokens only.

    ``trained[i]`` says whether message ``i`` is learned; by default every assistant message except those with
    ``"weight": 0``. Tool messages and assistant tool calls render through the template like any other message
    (assistant tool calls are learned, tool results are not). Sequences longer than ``max_seq_length`` are cut
    at the end (``truncated`` is set).
    """
    if trained is None:
        trained = [m.get("role") == "assistant" and m.get("weight", 1) != 0 for m in messages]
    clean = [_clean_message(m) for m in messages]
    full_text = _render_text(tokenizer, clean, tools, False)
    ids, offsets = _offsets(tokenizer, full_text)
    spans = _assistant_spans(tokenizer, clean, tools, full_text, trained)
    gen_mask = _generation_mask(tokenizer, clean, tools)
    if gen_mask is not None and len(gen_mask) != len(ids):
        gen_mask = (
            None  # the template's tokenization differs from ours: ignore the narrowing rather than guess
        )

    if spans is not None and offsets is not None:
        mask = [False] * len(ids)
        for j, (s, e) in enumerate(offsets):
            if e <= s:
                continue
            mask[j] = any(a <= s < b for a, b in spans)
    elif spans is not None:
        mask = _mask_from_token_prefixes(tokenizer, clean, tools, ids, trained)
    elif gen_mask is not None and all(
        trained[i] for i, m in enumerate(clean) if m.get("role") == "assistant"
    ):
        mask = [bool(x) for x in gen_mask]
        gen_mask = None
    else:
        raise DataError(
            "the chat template renders earlier turns differently depending on later ones and has no "
            "{% generation %} markers, so the assistant tokens to learn cannot be located"
            + (" (this example has an assistant message with weight 0)" if not all(trained) else ""),
            hint="Use a model whose chat template is prefix-stable, or drop `weight: 0` assistant messages.",
        )
    if gen_mask is not None:
        mask = [m and bool(g) for m, g in zip(mask, gen_mask, strict=True)]

    labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]
    truncated = False
    if max_seq_length is not None and len(ids) > max_seq_length:
        ids, labels, truncated = ids[:max_seq_length], labels[:max_seq_length], True
    return RenderedExample(ids, labels, truncated)


def _mask_from_token_prefixes(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Any, ids: list[int], trained: Sequence[bool]
) -> list[bool]:
    """Slow-tokenizer fallback: diff token ids of rendered prefixes (needs token-level prefix stability)."""

    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    mask = [False] * len(ids)
    for i, message in enumerate(messages):
        if message.get("role") != "assistant" or not trained[i]:
            continue
        start = len(encode(_render_text(tokenizer, messages[:i], tools, True))) if i else 0
        through = encode(_render_text(tokenizer, messages[: i + 1], tools, False))
        if ids[: len(through)] != through:
            raise DataError(
                "the tokenizer is not a fast tokenizer and the chat template does not tokenize prefix-stably, so "
                "the assistant tokens to learn cannot be located",
                hint="Save the model with a fast tokenizer (tokenizer.json).",
            )
        for j in range(start, len(through)):
            mask[j] = True
    return mask


def _read(path: str | Path) -> Iterable[tuple[int, Any]]:
    from tuneport.data.reader import iter_records

    for record in iter_records(path):
        if record.error is not None:
            raise DataError(
                f"{path}, line {record.lineno}: {record.detail or record.error}",
                findings=[{"line": record.lineno, "error": record.error}],
            )
        yield record.lineno, record.obj


def _bad(path: str | Path, line: int, what: str) -> DataError:
    return DataError(f"{path}, line {line}: {what}", findings=[{"line": line, "error": what}])


def _check_messages(path: str | Path, line: int, messages: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _bad(path, line, f"`{where}` must be a non-empty list of messages")
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _bad(path, line, f"`{where}[{k}]` must be an object with a `role`")
    return messages


def _render_checked(tokenizer: Any, path: str | Path, line: int, **kwargs: Any) -> RenderedExample:
    try:
        example = render_with_labels(tokenizer, **kwargs)
    except DataError as exc:
        raise DataError(f"{path}, line {line}: {exc.message}", hint=exc.hint) from exc
    except (
        Exception
    ) as exc:  # template errors (jinja raise_exception, unsupported roles) are data problems here
        raise DataError(
            f"{path}, line {line}: the model's chat template cannot render this example: {exc}",
            hint="Check the roles and tool calls this model's template supports.",
        ) from exc
    example.line = line
    return example


def load_sft_examples(path: str | Path, tokenizer: Any, max_seq_length: int) -> LoadedData:
    """Render every line of an OpenAI chat-format file (``messages``, optional ``tools``/``functions``).

    Examples left with no trained token (all assistant turns weight 0, or cut off by ``max_seq_length``) are
    skipped and listed in ``skipped_lines``; a file with nothing to learn is an error.
    """
    data = LoadedData(str(path), [])
    for line, obj in _read(path):
        if not isinstance(obj, dict):
            raise _bad(path, line, "each line must be a JSON object with `messages`")
        messages = _check_messages(path, line, obj.get("messages"), "messages")
        if any(m.get("role") == "system" for m in messages):
            data.system_lines.append(line)
        example = _render_checked(
            tokenizer, path, line, messages=messages, tools=_tools_of(obj), max_seq_length=max_seq_length
        )
        if example.truncated:
            data.truncated_lines.append(line)
        if example.n_loss_tokens == 0:
            data.skipped_lines.append(line)
            continue
        data.examples.append(example)
    if not data.examples:
        raise DataError(
            f"{path}: no example has an assistant token to learn"
            + (
                f" ({len(data.skipped_lines)} skipped: weight 0 or cut off by max_seq_length)"
                if data.skipped_lines
                else ""
            ),
            hint="Add assistant messages with weight 1, or raise max_seq_length.",
        )
    return data


def load_preference_examples(path: str | Path, tokenizer: Any, max_seq_length: int) -> LoadedData:
    """Render an OpenAI preference file: ``input.messages`` + ``preferred_output`` / ``non_preferred_output``.

    Loss (and the DPO log-probabilities) cover only the output messages; the prompt's own assistant turns are
    context.
    """
    data = LoadedData(str(path), [])
    for line, obj in _read(path):
        if not isinstance(obj, dict) or not isinstance(obj.get("input"), dict):
            raise _bad(
                path,
                line,
                "each line must be an object with `input`, `preferred_output`, `non_preferred_output`",
            )
        prompt = _check_messages(path, line, obj["input"].get("messages"), "input.messages")
        if any(m.get("role") == "system" for m in prompt):
            data.system_lines.append(line)
        tools = _tools_of(obj["input"])
        pair = []
        for key in ("preferred_output", "non_preferred_output"):
            output = _check_messages(path, line, obj.get(key), key)
            if any(m.get("role") != "assistant" for m in output):
                raise _bad(path, line, f"`{key}` must contain assistant messages only")
            messages = [*prompt, *output]
            trained = [False] * len(prompt) + [True] * len(output)
            pair.append(
                _render_checked(
                    tokenizer,
                    path,
                    line,
                    messages=messages,
                    tools=tools,
                    max_seq_length=max_seq_length,
                    trained=trained,
                )
            )
        chosen, rejected = pair
        if chosen.truncated or rejected.truncated:
            data.truncated_lines.append(line)
        if chosen.n_loss_tokens == 0 or rejected.n_loss_tokens == 0:
            data.skipped_lines.append(line)
            continue
        data.examples.append(PreferenceExample(chosen, rejected, line))
    if not data.examples:
        raise DataError(
            f"{path}: no preference pair has output tokens left to compare",
            hint="Raise max_seq_length (the outputs were cut off) or check the file.",
        )
    return data
