"""Checks of tools and functions: declarations (``tools``, ``functions``), calls (``tool_calls``,
``function_call``) and their JSON-string ``arguments``, as OpenAI's fine-tuning format defines them."""

from __future__ import annotations

from typing import Any

import orjson

from tuneport.data.describe import json_text, short, typename
from tuneport.data.findings import FindingSink

__all__ = ["check_top", "check_tool_calls", "check_function_call"]


def _json_args_ok(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def check_top(
    out: FindingSink, obj: dict, line: int, prefix: str, allowed: frozenset[str]
) -> tuple[set[str] | None, set[str] | None, bool]:
    """Top-level keys besides messages: tools, functions, parallel_tool_calls, and unknown keys."""
    tools = functions = None
    parallel = True
    for key in obj:
        if key not in allowed:
            out.add(
                "example_unrecognized_key",
                line,
                prefix + str(key),
                f"unrecognized key {key!r} (the format has: {', '.join(sorted(allowed))})",
            )
    if "tools" in obj:
        tools = _check_tools(out, obj["tools"], line, prefix + "tools")
    if "functions" in obj:
        functions = _check_functions(out, obj["functions"], line, prefix + "functions")
    if "tools" in obj and "functions" in obj:
        out.add(
            "mixed_tools_and_functions",
            line,
            prefix + "functions",
            "the example has both tools and functions",
        )
    if "parallel_tool_calls" in obj:
        p = obj["parallel_tool_calls"]
        if type(p) is not bool:
            out.add(
                "invalid_parallel_tool_calls",
                line,
                prefix + "parallel_tool_calls",
                f"parallel_tool_calls is {typename(p)} ({short(p)}), not true/false",
            )
        else:
            parallel = p
    return tools, functions, parallel


def _check_tools(out: FindingSink, tools: Any, line: int, path: str) -> set[str] | None:
    if type(tools) is not list:
        out.add("invalid_tools", line, path, f"tools is {typename(tools)}, not a list")
        return None
    names: set[str] = set()
    for j, tool in enumerate(tools):
        p = f"{path}[{j}]"
        if type(tool) is not dict:
            out.add("invalid_tools", line, p, f"the tool is {typename(tool)}, not an object")
            continue
        if tool.get("type") != "function":
            out.add(
                "invalid_tools",
                line,
                p + ".type",
                f'tool type is {short(tool.get("type"))}, expected "function"',
            )
        fn = tool.get("function")
        if type(fn) is not dict:
            out.add("invalid_tools", line, p + ".function", 'the tool has no "function" object')
            continue
        name = _check_declaration(out, fn, line, p + ".function", "invalid_tools")
        if name is not None:
            if name in names:
                out.add("invalid_tools", line, p + ".function.name", f"tool {name!r} is declared twice")
            names.add(name)
    return names


def _check_functions(out: FindingSink, functions: Any, line: int, path: str) -> set[str] | None:
    if type(functions) is not list:
        out.add("invalid_functions", line, path, f"functions is {typename(functions)}, not a list")
        return None
    names: set[str] = set()
    for j, fn in enumerate(functions):
        p = f"{path}[{j}]"
        if type(fn) is not dict:
            out.add("invalid_functions", line, p, f"the function is {typename(fn)}, not an object")
            continue
        name = _check_declaration(out, fn, line, p, "invalid_functions")
        if name is not None:
            names.add(name)
    return names


def _check_declaration(out: FindingSink, fn: dict, line: int, path: str, category: str) -> str | None:
    name = fn.get("name")
    ok_name = None
    if type(name) is not str or not name:
        out.add(
            category,
            line,
            path + ".name",
            f"the function name is {short(name)}, expected a non-empty string",
        )
    else:
        ok_name = name
    if "parameters" in fn and type(fn["parameters"]) is not dict:
        out.add(
            category,
            line,
            path + ".parameters",
            f"parameters is {typename(fn['parameters'])}, expected a JSON Schema object",
        )
    if "description" in fn and type(fn["description"]) is not str:
        out.add(
            category,
            line,
            path + ".description",
            f"description is {typename(fn['description'])}, expected a string",
        )
    return ok_name


def check_tool_calls(
    out: FindingSink,
    calls: Any,
    line: int,
    path: str,
    tools: set[str] | None,
    parallel: bool,
    call_ids: dict[str, int],
    msg_index: int,
) -> list[str]:
    if calls is None:
        return []
    if type(calls) is not list:
        out.add("invalid_tool_call", line, path, f"tool_calls is {typename(calls)}, not a list")
        return []
    if len(calls) > 1 and not parallel:
        out.add(
            "parallel_tool_calls_not_allowed",
            line,
            path,
            f"{len(calls)} tool calls in one message but the example sets parallel_tool_calls to false",
        )
    made: list[str] = []
    for j, call in enumerate(calls):
        p = f"{path}[{j}]"
        if type(call) is not dict:
            out.add("invalid_tool_call", line, p, f"the tool call is {typename(call)}, not an object")
            continue
        for key in call:
            if key not in ("id", "type", "function"):
                out.add(
                    "invalid_tool_call",
                    line,
                    f"{p}.{key}",
                    f"unrecognized key {key!r} in the tool call (it has id, type, function)",
                )
        cid = call.get("id")
        if type(cid) is not str or not cid:
            out.add(
                "invalid_tool_call",
                line,
                p + ".id",
                f"the tool call id is {short(cid)}, expected a non-empty string",
            )
        elif cid in call_ids:
            out.add(
                "duplicate_tool_call_id",
                line,
                p + ".id",
                f"tool call id {cid!r} is used twice in this example",
            )
        else:
            call_ids[cid] = msg_index
            made.append(cid)
        if call.get("type", "function") != "function":
            out.add(
                "invalid_tool_call",
                line,
                p + ".type",
                f'tool call type is {short(call.get("type"))}, expected "function"',
            )
        fn = call.get("function")
        if type(fn) is not dict:
            out.add("invalid_tool_call", line, p + ".function", 'the tool call has no "function" object')
            continue
        name = fn.get("name")
        if type(name) is not str or not name:
            out.add(
                "invalid_tool_call",
                line,
                p + ".function.name",
                f"the called name is {short(name)}, expected a string",
            )
        elif tools is not None and name not in tools:
            declared = ", ".join(sorted(tools)[:10]) or "none"
            out.add(
                "undeclared_tool",
                line,
                p + ".function.name",
                f"tool {name!r} is called but not declared in tools (declared: {declared})",
            )
        _check_arguments(out, fn, line, p + ".function", "invalid_tool_call")
    return made


def check_function_call(out: FindingSink, fc: Any, line: int, path: str, functions: set[str] | None) -> None:
    if fc is None:
        return
    if type(fc) is not dict:
        out.add("invalid_function_call", line, path, f"function_call is {typename(fc)}, not an object")
        return
    name = fc.get("name")
    if type(name) is not str or not name:
        out.add(
            "invalid_function_call",
            line,
            path + ".name",
            f"the called name is {short(name)}, expected a string",
        )
    elif functions is not None and name not in functions:
        declared = ", ".join(sorted(functions)[:10]) or "none"
        out.add(
            "undeclared_function",
            line,
            path + ".name",
            f"function {name!r} is called but not declared in functions (declared: {declared})",
        )
    _check_arguments(out, fc, line, path, "invalid_function_call")


def _check_arguments(out: FindingSink, fn: dict, line: int, path: str, category: str) -> None:
    for key in fn:
        if key not in ("name", "arguments"):
            out.add(
                category,
                line,
                f"{path}.{key}",
                f"unrecognized key {key!r} in the call (it has name and arguments)",
            )
    if "arguments" not in fn:
        out.add(category, line, path, 'the call has no "arguments"')
        return
    args = fn["arguments"]
    if type(args) is not str:
        out.add(
            "arguments_not_string",
            line,
            path + ".arguments",
            f"arguments is {typename(args)}; it must be a string holding JSON, e.g. {short(json_text(args), 40)}",
        )
    elif not _json_args_ok(args):
        out.add(
            "arguments_invalid_json",
            line,
            path + ".arguments",
            f"arguments {short(args, 40)} is not valid JSON",
        )
