"""``tuneport data convert``: prompt/completion, Alpaca and ShareGPT JSONL to chat JSONL, then validated.

Why convert instead of accepting these formats everywhere: one format (OpenAI's chat JSONL) is what both backends
train on and what every check is written for; a converter that writes it once, names the line and field of
anything it cannot carry over, and then runs the same validator as ``tuneport data validate`` keeps the rest of
tuneport single-format. The output is written only when every line converted (through a temporary file, so a
failed run never leaves half a dataset behind).

Mappings:
- prompt-completion: ``prompt`` -> user turn, ``completion`` -> assistant turn (``system`` kept when present).
- Alpaca: ``instruction`` + ``input`` (a blank line between, ``input`` optional) -> user turn, ``output`` ->
  assistant turn, ``system`` -> system message.
- ShareGPT: ``conversations`` of ``{"from", "value"}``; ``human``/``user`` -> user, ``gpt``/``assistant`` ->
  assistant, ``system`` -> system, ``function_call`` -> an assistant turn with ``tool_calls`` (the value is the
  JSON call ``{"name", "arguments"}``, or a list of them), ``observation``/``tool`` -> a ``tool`` message answering
  the oldest unanswered call; a top-level ``system`` string and ``tools`` (JSON list of function definitions)
  are kept.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneport.data.formats import FOREIGN_FORMATS, describe_format, foreign_format
from tuneport.data.reader import LINE_ERRORS, iter_records
from tuneport.data.validate import ValidationReport, validate_file
from tuneport.errors import DataError

__all__ = ["CONVERT_FORMATS", "ConversionResult", "convert_file", "convert_example"]

CONVERT_FORMATS = ("auto", *FOREIGN_FORMATS)
#: Problems listed in one error before the rest are only counted.
MAX_LISTED = 20

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "system": "system", "function_call": "call", "observation": "tool",
                   "tool": "tool", "function_response": "tool"}  # fmt: skip


class _Problem(Exception):
    """One line cannot be converted: ``field`` names where (a JSON path), the message says what to do."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class ConversionResult:
    """What ``convert_file`` did: the format it read, how many examples it wrote, and the validator's report."""

    source: Path
    output: Path
    format: str
    detected: bool
    examples: int
    report: ValidationReport

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "output": str(self.output), "format": self.format,
                "detected": self.detected, "examples": self.examples, "validation": self.report.to_dict()}  # fmt: skip


def _text(obj: Mapping[str, Any], key: str, fmt: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _Problem(key, f"field {key!r} is missing ({describe_format(fmt)} needs it)")
        return None
    if not isinstance(value, str):
        raise _Problem(key, f"field {key!r} must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise _Problem(key, f"field {key!r} is empty")
    return value


def _system(obj: Mapping[str, Any], fmt: str) -> list[dict[str, Any]]:
    system = _text(obj, "system", fmt, required=False)
    return [{"role": "system", "content": system}] if system and system.strip() else []


def _prompt_completion(obj: Mapping[str, Any]) -> dict[str, Any]:
    fmt = "prompt-completion"
    prompt, completion = _text(obj, "prompt", fmt), _text(obj, "completion", fmt)
    return {"messages": [*_system(obj, fmt), {"role": "user", "content": prompt},
                         {"role": "assistant", "content": completion}]}  # fmt: skip


def _alpaca(obj: Mapping[str, Any]) -> dict[str, Any]:
    fmt = "alpaca"
    instruction, output = _text(obj, "instruction", fmt), _text(obj, "output", fmt)
    extra = _text(obj, "input", fmt, required=False)
    user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    return {"messages": [*_system(obj, fmt), {"role": "user", "content": user},
                         {"role": "assistant", "content": output}]}  # fmt: skip


def _calls(value: str, where: str, line_id: str, start: int) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise _Problem(where, f"a function_call value must be JSON {{\"name\", \"arguments\"}}: {exc}") from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    out = []
    for k, call in enumerate(calls):
        if not isinstance(call, Mapping) or not isinstance(call.get("name"), str) or not call["name"]:
            raise _Problem(where, 'a function call needs a "name" (the value is {"name": ..., "arguments": {...}})')
        args = call.get("arguments", {})
        if isinstance(args, str):
            try:
                json.loads(args)
            except ValueError:
                raise _Problem(where, f"the arguments of {call['name']!r} are not JSON") from None
            text = args
        else:
            text = json.dumps(args, ensure_ascii=False)
        out.append({"id": f"call_{line_id}_{start + k}", "type": "function",
                    "function": {"name": call["name"], "arguments": text}})  # fmt: skip
    return out


def _tools(obj: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    raw = obj.get("tools")
    if raw is None:
        return None
    try:
        tools = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise _Problem("tools", f"'tools' must be a JSON list of function definitions: {exc}") from None
    if not isinstance(tools, list) or not all(isinstance(t, Mapping) and t.get("name") or
                                              isinstance(t, Mapping) and t.get("type") == "function"
                                              for t in tools):  # fmt: skip
        raise _Problem("tools", "'tools' must be a list of function definitions, each with a \"name\"")
    return [dict(t) if t.get("type") == "function" else {"type": "function", "function": dict(t)} for t in tools]


def _sharegpt(obj: Mapping[str, Any], line: int) -> dict[str, Any]:
    turns = obj.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise _Problem("conversations", "field 'conversations' is missing or empty (sharegpt needs a list of turns)")
    messages = _system(obj, "sharegpt")
    pending: list[str] = []
    n_calls = 0
    for i, turn in enumerate(turns):
        where = f"conversations[{i}]"
        if not isinstance(turn, Mapping) or "from" not in turn or "value" not in turn:
            raise _Problem(where, 'each turn needs "from" and "value"')
        role = _SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise _Problem(f"{where}.from", f"unknown role {turn['from']!r}; known: {', '.join(_SHAREGPT_ROLES)}")
        value = turn["value"]
        if not isinstance(value, str):
            raise _Problem(f"{where}.value", f"the value must be a string, not {type(value).__name__}")
        if role == "call":
            calls = _calls(value, f"{where}.value", str(line), n_calls)
            n_calls += len(calls)
            pending += [c["id"] for c in calls]
            messages.append({"role": "assistant", "tool_calls": calls})
        elif role == "tool":
            if not pending:
                raise _Problem(where, "an observation/tool turn answers no function_call before it")
            messages.append({"role": "tool", "tool_call_id": pending.pop(0), "content": value})
        else:
            messages.append({"role": role, "content": value})
    out: dict[str, Any] = {"messages": messages}
    tools = _tools(obj)
    if tools:
        out["tools"] = tools
    return out


def convert_example(obj: Any, fmt: str, line: int = 0) -> dict[str, Any]:
    """One example in ``fmt`` (not ``auto``) as a chat example; raises ``_Problem`` naming the field."""
    if not isinstance(obj, Mapping):
        raise _Problem("", f"the line is not a JSON object ({type(obj).__name__})")
    if fmt == "prompt-completion":
        return _prompt_completion(obj)
    if fmt == "alpaca":
        return _alpaca(obj)
    return _sharegpt(obj, line)


def _check_format(fmt: str) -> None:
    if fmt not in CONVERT_FORMATS:
        raise DataError(f"unknown input format {fmt!r}",
                        hint=f"Use --from with one of: {', '.join(CONVERT_FORMATS)}.")  # fmt: skip


def _convert_lines(src: Path, fmt: str) -> tuple[list[bytes], str, list[str]]:
    """(converted lines, the format, problems as "line N, field F: message")."""
    chosen = None if fmt == "auto" else fmt
    chosen_line = 0
    lines: list[bytes] = []
    problems: list[str] = []
    for rec in iter_records(src):
        if rec.error == "blank_line":
            continue
        if rec.error is not None:
            problems.append(f"line {rec.lineno}: {LINE_ERRORS.get(rec.error, rec.error)}: {rec.detail}")
            continue
        seen = foreign_format(rec.obj)
        if chosen is None:
            if seen is None:
                keys = ", ".join(sorted(rec.obj)) if isinstance(rec.obj, dict) else type(rec.obj).__name__
                problems.append(f"line {rec.lineno}: not a format convert reads (keys: {keys}); it reads "
                                + "; ".join(describe_format(f) for f in FOREIGN_FORMATS))  # fmt: skip
                continue
            chosen, chosen_line = seen, rec.lineno
        elif fmt == "auto" and seen is not None and seen != chosen:
            problems.append(f"line {rec.lineno}: this example is {seen} but line {chosen_line} is {chosen}: "
                            "one format per file")  # fmt: skip
            continue
        try:
            example = convert_example(rec.obj, chosen, rec.lineno)
        except _Problem as p:
            field = f", field {p.field}" if p.field else ""
            problems.append(f"line {rec.lineno}{field}: {p.message}")
            continue
        lines.append(json.dumps(example, ensure_ascii=False).encode("utf-8"))
    return lines, chosen or fmt, problems


def convert_file(src: str | Path, out: str | Path, *, fmt: str = "auto", model: str | None = None) -> ConversionResult:
    """Convert ``src`` (``fmt``: auto, prompt-completion, alpaca or sharegpt) to chat JSONL at ``out``, then
    validate ``out``. Raises :class:`DataError` listing each line and field that cannot be converted (and writes
    nothing then); validation findings are returned in the report, not raised."""
    _check_format(fmt)
    source, target = Path(src), Path(out)
    if source.resolve() == target.resolve():
        raise DataError(f"{target} is the input file", hint="Write the chat JSONL to a new file.")
    lines, chosen, problems = _convert_lines(source, fmt)
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise DataError(f"{source}: {len(problems)} line(s) cannot be converted from {chosen}:\n  {listed}{more}",
                        hint="Fix those lines (or pick the right --from) and run convert again; nothing was "
                        "written.")  # fmt: skip
    if not lines:
        raise DataError(f"{source} has no examples to convert", hint="Give a JSONL file with one example a line.")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"\n".join(lines) + b"\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    report = validate_file(target, model=model)
    return ConversionResult(source, target, chosen, fmt == "auto", len(lines), report)
