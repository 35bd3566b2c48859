"""Checks of one preference (DPO) example: ``input`` (a conversation ending with the user turn being
answered), ``preferred_output`` and ``non_preferred_output`` (one assistant message each, not identical)."""

from __future__ import annotations

from typing import Any

from tuneport.data.describe import short, typename
from tuneport.data.findings import FindingSink
from tuneport.data.messages import check_conversation
from tuneport.data.tools import check_top

__all__ = ["DPO_TOP", "check_dpo"]

DPO_TOP = frozenset({"input", "preferred_output", "non_preferred_output"})
_DPO_INPUT = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})


def _same(a: Any, b: Any) -> bool:
    try:
        return a == b
    except RecursionError:  # pragma: no cover - only for values nested ~1000 deep
        return False


def check_dpo(out: FindingSink, obj: dict, line: int, counter: Any) -> tuple[int, Any] | None:
    """Check one preference example; (messages, token counts) when it has no error, else None."""
    for key in obj:
        if key not in DPO_TOP:
            out.add(
                "example_unrecognized_key",
                line,
                str(key),
                f"unrecognized key {key!r} in a preference example (the format has: {', '.join(sorted(DPO_TOP))})",
            )
    for key in ("input", "preferred_output", "non_preferred_output"):
        if key not in obj:
            out.add("dpo_missing_key", line, key, f"the preference example has no {key!r}")
    inp = obj.get("input")
    messages = None
    if "input" in obj:
        if type(inp) is not dict:
            out.add("dpo_invalid_input", line, "input", f"input is {typename(inp)}, not an object")
        else:
            messages = inp.get("messages")
            if type(messages) is not list or not messages:
                out.add("dpo_invalid_input", line, "input.messages", 'input has no non-empty "messages" list')
                messages = None
            tools, functions, parallel = (
                check_top(out, inp, line, "input.", _DPO_INPUT) if len(inp) > 1 else (None, None, True)
            )
            if messages is not None:
                _, _, last_role = check_conversation(
                    out, messages, line, "input.messages", tools, functions, parallel, final=False
                )
                if last_role is not None and last_role != "user":
                    out.add(
                        "dpo_input_must_end_with_user",
                        line,
                        f"input.messages[{len(messages) - 1}]",
                        f"the input ends with a {last_role} message; it must end with the user turn being answered",
                    )
    outputs = []
    for key in ("preferred_output", "non_preferred_output"):
        if key not in obj:
            continue
        given = obj[key]
        if type(given) is not list or len(given) != 1:
            what = f"{typename(given)}" if type(given) is not list else f"a list of {len(given)} messages"
            out.add(
                "dpo_invalid_output",
                line,
                key,
                f"{key} is {what}; it must be a list with exactly one assistant message",
            )
            continue
        msg = given[0]
        if type(msg) is dict and msg.get("role") != "assistant":
            out.add(
                "dpo_invalid_output",
                line,
                f"{key}[0].role",
                f'the {key} message has role {short(msg.get("role"))}, expected "assistant"',
            )
            continue
        check_conversation(out, given, line, key, None, None, True, final=False)
        outputs.append(msg)
    if len(outputs) == 2 and not out.ex_errors and _same(outputs[0], outputs[1]):
        out.add(
            "dpo_identical_outputs",
            line,
            "non_preferred_output",
            "the preferred and non-preferred outputs are identical",
        )
    if out.ex_errors or messages is None:
        return None
    return len(messages) + 2, counter.count_example(obj)
