"""Checks of one conversation (a list of messages): roles and their keys, contents, weights, tool messages
answering tool calls, and what a whole training example needs (an assistant message, something to train on).

Each check is its own function over a :class:`~tuneport.data.findings.FindingSink`; :func:`check_conversation`
walks the messages once and keeps what later messages depend on (tool call ids, the last role) in
:class:`_Walk`. The common message (``{"role": ..., "content": "..."}``) takes a short path: it is most of
every dataset.
"""

from __future__ import annotations

from typing import Any

from tuneport.data.describe import MISSING, short, typename
from tuneport.data.findings import FindingSink
from tuneport.data.tools import check_function_call, check_tool_calls

__all__ = ["ROLE_KEYS", "check_conversation", "check_content"]

ROLE_KEYS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "weight", "tool_calls", "function_call"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}
_ROLE_LIST = "system, user, assistant, tool, function"


def _is_weight_value(w: Any) -> bool:
    return type(w) in (int, float) and (w == 0 or w == 1)


class _Walk:
    """What the walk over one conversation remembers from earlier messages."""

    __slots__ = (
        "n_assistant",
        "n_trainable",
        "call_ids",
        "answered",
        "pending",
        "last_role",
        "last_assistant",
    )

    def __init__(self) -> None:
        self.n_assistant = 0
        self.n_trainable = 0
        self.call_ids: dict[str, int] = {}  # tool call id -> index of the assistant message that made it
        self.answered: set[str] = set()
        self.pending: list[tuple[int, str]] = []  # (message index, call id) not yet answered
        self.last_role: str | None = None
        self.last_assistant = -1


def _role_of(out: FindingSink, m: dict, line: int, path: str) -> str | None:
    """The message's role when it is one of the five; else a finding and None."""
    role = m.get("role")
    if type(role) is str and role in ROLE_KEYS:
        return role
    if "role" not in m:
        out.add("message_missing_key", line, path, 'the message has no "role"')
    else:
        out.add("unrecognized_role", line, f"{path}.role", f"role {short(role)} is not one of: {_ROLE_LIST}")
    return None


def _check_keys(out: FindingSink, m: dict, role: str, line: int, path: str) -> None:
    """Keys the role does not allow (a weight anywhere but on an assistant message has its own category)."""
    allowed = ROLE_KEYS[role]
    keys = m.keys()
    if keys <= allowed:
        return
    for key in keys - allowed:
        if key == "weight":
            out.add(
                "weight_on_non_assistant",
                line,
                f"{path}.weight",
                f"a {role} message has a weight; only assistant messages can",
            )
        else:
            where = [r for r, ks in ROLE_KEYS.items() if key in ks]
            extra = f" (allowed on: {', '.join(where)})" if where else ""
            out.add(
                "message_unrecognized_key",
                line,
                f"{path}.{key}",
                f"key {key!r} is not allowed on a {role} message{extra}",
            )


def _check_weight(out: FindingSink, walk: _Walk, m: dict, line: int, path: str) -> None:
    """An assistant message's weight: 0 (not trained on) or 1; absent means 1."""
    if "weight" not in m:
        walk.n_trainable += 1
        return
    w = m["weight"]
    if not _is_weight_value(w):
        out.add("invalid_weight", line, f"{path}.weight", f"weight is {short(w)}; it must be 0 or 1")
        walk.n_trainable += 1  # already an error: don't also warn that nothing is trained
    elif w == 1:
        walk.n_trainable += 1


def _check_assistant(
    out: FindingSink,
    walk: _Walk,
    i: int,
    m: dict,
    line: int,
    path: str,
    tools: set[str] | None,
    functions: set[str] | None,
    parallel: bool,
) -> None:
    walk.n_assistant += 1
    walk.last_assistant = i
    _check_weight(out, walk, m, line, path)
    if "tool_calls" in m:
        for call_id in check_tool_calls(
            out, m["tool_calls"], line, f"{path}.tool_calls", tools, parallel, walk.call_ids, i
        ):
            walk.pending.append((i, call_id))
    if "function_call" in m:
        check_function_call(out, m["function_call"], line, f"{path}.function_call", functions)


def _check_tool_message(out: FindingSink, walk: _Walk, m: dict, line: int, path: str) -> None:
    """A tool message answers an earlier assistant tool call, by its id."""
    if "tool_call_id" not in m:
        out.add("message_missing_key", line, path, 'the tool message has no "tool_call_id"')
        return
    tcid = m["tool_call_id"]
    if type(tcid) is not str or not tcid:
        out.add(
            "invalid_type", line, f"{path}.tool_call_id", f"tool_call_id is {short(tcid)}, expected a string"
        )
    elif tcid not in walk.call_ids:
        known = ", ".join(repr(c) for c in list(walk.call_ids)[:5]) or "none"
        out.add(
            "unknown_tool_call_id",
            line,
            f"{path}.tool_call_id",
            f"tool_call_id {tcid!r} matches no earlier assistant tool call (earlier ids: {known})",
        )
    else:
        walk.answered.add(tcid)


def _check_plain(out: FindingSink, walk: _Walk, i: int, role: str, line: int, prefix: str) -> None:
    """The common case, ``{"role": ..., "content": "..."}`` with non-empty text."""
    if role == "assistant":
        walk.n_assistant += 1
        walk.n_trainable += 1
        walk.last_assistant = i
    elif role == "tool":
        out.add("message_missing_key", line, f"{prefix}[{i}]", 'the tool message has no "tool_call_id"')
    elif role == "function":
        out.add("message_missing_key", line, f"{prefix}[{i}]", 'the function message has no "name"')


def _check_message(
    out: FindingSink,
    walk: _Walk,
    i: int,
    m: Any,
    line: int,
    prefix: str,
    tools: set[str] | None,
    functions: set[str] | None,
    parallel: bool,
) -> None:
    if type(m) is not dict:
        out.add("message_data_type", line, f"{prefix}[{i}]", f"the message is {typename(m)}, not an object")
        walk.last_role = None
        return
    role = m.get("role")
    content = m.get("content", MISSING)
    if len(m) == 2 and type(content) is str and content and type(role) is str and role in ROLE_KEYS:
        walk.last_role = role
        _check_plain(out, walk, i, role, line, prefix)
        return
    path = f"{prefix}[{i}]"
    role = _role_of(out, m, line, path)
    walk.last_role = role
    if role is None:
        return
    _check_keys(out, m, role, line, path)
    has_call = role == "assistant" and (
        m.get("tool_calls") not in (None, []) or m.get("function_call") is not None
    )
    check_content(out, content, role, has_call, line, path)
    if "name" in m and (type(m["name"]) is not str or not m["name"]):
        out.add(
            "invalid_type", line, f"{path}.name", f"name is {short(m['name'])}, expected a non-empty string"
        )
    if role == "assistant":
        _check_assistant(out, walk, i, m, line, path, tools, functions, parallel)
    elif role == "tool":
        _check_tool_message(out, walk, m, line, path)
    elif role == "function" and "name" not in m:
        out.add("message_missing_key", line, path, 'the function message has no "name"')


def _check_example_end(out: FindingSink, walk: _Walk, messages: list, line: int, prefix: str) -> None:
    """What a whole training example needs: an assistant message, one trained on, and to end with it."""
    if walk.n_assistant == 0:
        out.add("example_missing_assistant_message", line, prefix, "the example has no assistant message")
    elif walk.n_trainable == 0:
        out.add(
            "all_assistant_weights_zero",
            line,
            prefix,
            "every assistant message has weight 0: nothing in this example is trained on",
        )
    last_role = walk.last_role
    if walk.n_assistant and last_role is not None and last_role != "assistant" and walk.last_assistant >= 0:
        out.add(
            "last_message_not_assistant",
            line,
            f"{prefix}[{len(messages) - 1}]",
            f"the example ends with a {last_role} message after the last assistant message",
        )


def _check_unanswered(out: FindingSink, walk: _Walk, last_index: int, line: int, prefix: str) -> None:
    for i, call_id in walk.pending:
        if call_id not in walk.answered and i < last_index:
            out.add(
                "tool_call_without_response",
                line,
                f"{prefix}[{i}].tool_calls",
                f"tool call {call_id!r} gets no tool message before the conversation continues",
            )


def check_conversation(
    out: FindingSink,
    messages: list,
    line: int,
    prefix: str,
    tools: set[str] | None,
    functions: set[str] | None,
    parallel: bool,
    *,
    final: bool,
) -> tuple[int, int, str | None]:
    """Check every message; returns (assistant messages, trainable assistant messages, last role).

    ``final`` means the conversation is a whole training example (SFT): its example-level checks run here.
    """
    walk = _Walk()
    for i, m in enumerate(messages):
        _check_message(out, walk, i, m, line, prefix, tools, functions, parallel)
    if final:
        _check_example_end(out, walk, messages, line, prefix)
    _check_unanswered(out, walk, len(messages) - 1, line, prefix)
    return walk.n_assistant, walk.n_trainable, walk.last_role


def check_content(out: FindingSink, content: Any, role: str, has_call: bool, line: int, path: str) -> None:
    if content is MISSING:
        if not has_call:
            out.add("message_missing_key", line, path, f'the {role} message has no "content"')
        return
    if type(content) is str:
        if not content and not has_call:
            out.add("missing_content", line, path + ".content", f"the {role} message has empty content")
        return
    if content is None:
        if not has_call:
            what = "an assistant message without tool_calls" if role == "assistant" else f"a {role} message"
            out.add("missing_content", line, path + ".content", f"content is null in {what}")
        return
    if type(content) is not list:
        out.add(
            "invalid_content_type",
            line,
            path + ".content",
            f"content is {typename(content)}, expected a string or a list of text parts",
        )
        return
    if not content:
        if not has_call:
            out.add(
                "missing_content",
                line,
                path + ".content",
                f"the {role} message has an empty content list",
            )
        return
    for j, part in enumerate(content):
        p = f"{path}.content[{j}]"
        if type(part) is not dict:
            out.add("invalid_content_type", line, p, f"the content part is {typename(part)}, not an object")
            continue
        ptype = part.get("type")
        if ptype == "text":
            if type(part.get("text")) is not str:
                out.add(
                    "invalid_content_type",
                    line,
                    p + ".text",
                    f"text part has text {short(part.get('text'))}, expected a string",
                )
        elif ptype == "image_url":
            if role != "user":
                out.add(
                    "invalid_content_type",
                    line,
                    p,
                    f"image parts are only allowed in user messages, not {role}",
                )
            else:
                img = part.get("image_url")
                url = img.get("url") if type(img) is dict else None
                if type(url) is not str or not url:
                    out.add(
                        "invalid_content_type",
                        line,
                        p + ".image_url",
                        'image part needs {"image_url": {"url": "..."}}',
                    )
        else:
            out.add(
                "invalid_content_type",
                line,
                p + ".type",
                f'content part type {short(ptype)} is not supported (use "text")',
            )
