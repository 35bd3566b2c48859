"""Dataset validation: every check OpenAI's data-preparation cookbook makes, and what it misses.

Why: a fine-tuning job that fails on its data fails after upload and queueing, sometimes after money is spent. So
the whole file is checked up front, in one streaming pass that also counts tokens exactly and gathers statistics,
and every problem is reported with its line, the JSON path inside the example, what is wrong and what to do.

Nothing here raises on content: any bytes, any JSON value, give findings, never an exception. Memory stays flat:
lines are streamed, statistics are histograms and duplicate detection keeps one 64-bit hash and one line number
per example in compact arrays (12 bytes per example, see :class:`SeenHashes`).

Categories are stable snake_case codes (scripts may rely on them); :data:`CATEGORIES` lists every one with its
severity and a default hint.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tuneport.data.reader import Record, iter_records
from tuneport.data.stats import DEFAULT_EXAMPLE_TOKEN_LIMIT, DatasetStats, StatsAccumulator, build_stats

__all__ = [
    "Finding",
    "ValidationReport",
    "validate_file",
    "validate_records",
    "CATEGORIES",
    "MIN_EXAMPLES",
    "SeenHashes",
]

MIN_EXAMPLES = 10  # OpenAI rejects training files with fewer examples.

ERROR = "error"
WARNING = "warning"

# category -> (severity, hint). The first seven are the cookbook's own categories.
CATEGORIES: dict[str, tuple[str, str]] = {
    "data_type": (ERROR, 'Each line must be one JSON object, e.g. {"messages": [...]}.'),
    "missing_messages_list": (ERROR, 'Give the conversation as a non-empty list under "messages".'),
    "message_missing_key": (
        ERROR,
        'Every message needs "role" and "content" (tool messages also "tool_call_id").',
    ),
    "message_unrecognized_key": (ERROR, "Remove the key, or move it to a role that allows it."),
    "unrecognized_role": (ERROR, "Use one of: system, user, assistant, tool (or the legacy function)."),
    "missing_content": (
        ERROR,
        "Give non-empty content; only an assistant message with tool_calls/function_call may have null content.",
    ),
    "example_missing_assistant_message": (
        ERROR,
        "Add at least one assistant message: it is what the model learns to write.",
    ),
    # line level (from the reader)
    "blank_line": (ERROR, "Remove the blank line: every line must hold one example."),
    "invalid_utf8": (ERROR, "Re-save the file as UTF-8."),
    "invalid_json": (ERROR, "Fix the JSON on this line (one complete object per line, no trailing commas)."),
    "truncated_last_line": (ERROR, "The file was cut off: re-export it, or remove the incomplete last line."),
    "utf8_bom": (WARNING, "Save the file as UTF-8 without a byte order mark; some tools choke on it."),
    # structure
    "message_data_type": (ERROR, 'Each message must be a JSON object with "role" and "content".'),
    "example_unrecognized_key": (
        WARNING,
        "Remove keys that are not part of the format (OpenAI may reject them).",
    ),
    "invalid_content_type": (
        ERROR,
        'Content must be a string or a list of {"type": "text", "text": "..."} parts.',
    ),
    "invalid_type": (ERROR, "Use the type the format expects for this field."),
    "invalid_weight": (ERROR, "weight must be 0 (do not train on this message) or 1 (train on it)."),
    "weight_on_non_assistant": (ERROR, "Only assistant messages can carry a weight: remove it here."),
    "all_assistant_weights_zero": (
        WARNING,
        "Every assistant message has weight 0: the example teaches nothing. Set weight 1 on at least one.",
    ),
    "last_message_not_assistant": (
        WARNING,
        "Messages after the last assistant message are not trained on; end the example with the assistant's reply.",
    ),
    # tools and functions
    "invalid_tools": (
        ERROR,
        'tools must be a list of {"type": "function", "function": {"name": ..., "parameters": {...}}}.',
    ),
    "invalid_functions": (ERROR, 'functions must be a list of {"name": ..., "parameters": {...}}.'),
    "invalid_tool_call": (
        ERROR,
        'A tool call is {"id": ..., "type": "function", "function": {"name": ..., "arguments": "{...}"}}.',
    ),
    "invalid_function_call": (ERROR, 'function_call is {"name": ..., "arguments": "{...}"}.'),
    "arguments_not_string": (
        ERROR,
        "arguments must be a JSON *string* (json.dumps the object), not an object.",
    ),
    "arguments_invalid_json": (ERROR, "arguments must hold valid JSON text."),
    "undeclared_tool": (ERROR, 'Declare the tool in the example\'s "tools" list, or fix the name.'),
    "undeclared_function": (
        ERROR,
        'Declare the function in the example\'s "functions" list, or fix the name.',
    ),
    "duplicate_tool_call_id": (ERROR, "Give every tool call in an example its own id."),
    "unknown_tool_call_id": (
        ERROR,
        "A tool message must answer a tool call made by an earlier assistant message (same id).",
    ),
    "tool_call_without_response": (
        WARNING,
        "Add a tool message answering each tool call before the conversation goes on.",
    ),
    "invalid_parallel_tool_calls": (ERROR, "parallel_tool_calls must be true or false."),
    "parallel_tool_calls_not_allowed": (
        ERROR,
        "Set parallel_tool_calls to true, or make one tool call per assistant message.",
    ),
    "mixed_tools_and_functions": (
        WARNING,
        "Use tools/tool_calls only; functions/function_call are the deprecated form.",
    ),
    # preference (DPO) format
    "dpo_missing_key": (
        ERROR,
        'A preference example has "input", "preferred_output" and "non_preferred_output".',
    ),
    "dpo_invalid_input": (ERROR, '"input" must be an object with a non-empty "messages" list.'),
    "dpo_invalid_output": (ERROR, "Each output must be a list with exactly one assistant message."),
    "dpo_input_must_end_with_user": (
        ERROR,
        "The input conversation must end with a user message (the turn being answered).",
    ),
    "dpo_identical_outputs": (
        WARNING,
        "Preferred and non-preferred outputs are identical: the pair teaches nothing.",
    ),
    "format_mismatch": (
        ERROR,
        'Keep one format per file: chat examples ("messages") for sft, preference examples for dpo.',
    ),
    # file level
    "too_few_examples": (
        ERROR,
        "OpenAI needs at least 10 examples (50-100 good ones usually help much more).",
    ),
    "method_not_supported": (
        ERROR,
        "Choose a model that supports this method (see `tuneport cost models`), or change the method.",
    ),
    # content
    "duplicate_example": (WARNING, "Remove the duplicate: repeated examples skew training toward them."),
    "example_too_long": (
        WARNING,
        "OpenAI truncates examples over the limit: shorten or split the conversation.",
    ),
}

_SFT_TOP = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
_DPO_TOP = frozenset({"input", "preferred_output", "non_preferred_output"})
_DPO_INPUT = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
_ROLE_KEYS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "weight", "tool_calls", "function_call"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}
_COMMON_KEYS = frozenset({"role", "content"})
_ROLE_LIST = "system, user, assistant, tool, function"


@dataclass(slots=True)
class Finding:
    """One problem: where (line, JSON path), what (category, message) and what to do (hint).

    ``line`` is 1-based; None for findings about the whole file. ``path`` is the JSON path inside the example,
    e.g. ``messages[2].content`` ("" for the whole line).
    """

    severity: str
    category: str
    line: int | None
    path: str
    message: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "category": self.category,
            "line": self.line,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
        }

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        if self.path:
            where += f" {self.path}"
        return f"{where}: {self.severity}: {self.message} [{self.category}]"


@dataclass
class ValidationReport:
    """The result of validating a dataset: findings, counts by category, the detected format and statistics.

    ``counts`` counts every finding by category (like the cookbook's summary), even when ``findings`` was capped
    (``findings_omitted`` says how many were not kept). ``ok`` is True when there is no error (warnings allowed).
    """

    path: str
    method: str
    method_source: str
    model: str | None
    tokens: dict[str, Any]
    lines: int
    examples: int
    valid_examples: int
    errors: int
    warnings: int
    counts: dict[str, int]
    findings: list[Finding]
    findings_omitted: int
    stats: DatasetStats
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    @property
    def invalid_examples(self) -> int:
        return self.examples - self.valid_examples

    def by_severity(self, severity: str) -> dict[str, int]:
        return {c: n for c, n in sorted(self.counts.items()) if CATEGORIES.get(c, (ERROR,))[0] == severity}

    def summary(self) -> str:
        return (
            f"{self.path}: {self.examples} examples ({self.method}), {self.errors} errors, {self.warnings} warnings"
            + (f" in {self.invalid_examples} examples" if self.invalid_examples else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "method": self.method,
            "method_source": self.method_source,
            "model": self.model,
            "tokens": dict(self.tokens),
            "lines": self.lines,
            "examples": self.examples,
            "valid_examples": self.valid_examples,
            "invalid_examples": self.invalid_examples,
            "errors": self.errors,
            "warnings": self.warnings,
            "counts": {
                "errors": self.by_severity(ERROR),
                "warnings": self.by_severity(WARNING),
            },
            "findings": [f.to_dict() for f in self.findings],
            "findings_omitted": self.findings_omitted,
            "stats": self.stats.to_dict(),
            "notes": list(self.notes),
        }

    def raise_for_errors(self) -> None:
        """Raise :class:`~tuneport.errors.DataError` carrying the findings when there is any error."""
        if self.ok:
            return
        from tuneport.errors import DataError

        top = ", ".join(
            f"{c}: {n}" for c, n in sorted(self.by_severity(ERROR).items(), key=lambda kv: -kv[1])[:3]
        )
        first = next((f for f in self.findings if f.severity == ERROR), None)
        message = f"{self.summary()} ({top})"
        if first is not None:
            message += f"; first: {first}"
        hint = "Fix the lines listed (`tuneport data validate FILE --json` lists every finding), then validate again."
        raise DataError(message, hint=hint, findings=list(self.findings))


class SeenHashes:
    """A set of 64-bit hashes remembering the first line of each, in ~12 bytes per entry.

    Open addressing with linear probing over an ``array('Q')`` of hashes and an ``array('I')`` of line numbers.
    Sized by ``reserve`` from an estimate of the number of lines, so a large file rarely rehashes. Sizes are not
    powers of two (index = hash % size): the table grows in proportion to the data, not in doubling jumps.
    """

    __slots__ = ("_keys", "_lines", "_size", "_n", "_limit")
    _LOAD = 0.75

    def __init__(self, capacity: int = 1024) -> None:
        self._n = 0
        self._alloc(max(8, int(capacity / self._LOAD) + 1))

    def _alloc(self, size: int) -> None:
        self._size = size
        self._keys = array("Q", [0]) * size
        self._lines = array("I", [0]) * size
        self._limit = int(size * self._LOAD)

    def __len__(self) -> int:
        return self._n

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` entries in total (one rehash now instead of several later)."""
        if capacity > self._limit:
            self._rehash(int(capacity / self._LOAD) + 1)

    def _rehash(self, size: int) -> None:
        keys, lines = self._keys, self._lines
        self._alloc(size)
        self._n = 0
        for k, line in zip(keys, lines, strict=False):
            if k:
                self.add(k, line)

    def add(self, h: int, line: int) -> int:
        """Insert a hash; return 0 if it is new, else the line where it was first seen."""
        h &= 0xFFFFFFFFFFFFFFFF
        if h == 0:
            h = 1
        keys = self._keys
        size = self._size
        i = h % size
        while True:
            k = keys[i]
            if k == 0:
                keys[i] = h
                self._lines[i] = line if line < 0xFFFFFFFF else 0xFFFFFFFF
                self._n += 1
                if self._n > self._limit:
                    self._rehash(int(size * 1.5) + 1)
                return 0
            if k == h:
                return self._lines[i]
            i += 1
            if i == size:
                i = 0


def _dup_hash(obj: Any, raw: bytes) -> int:
    """Hash of the example's canonical JSON (sorted keys, no spaces): lines that differ only in key order or
    whitespace are duplicates too. Python's keyed 64-bit SipHash is enough within one run."""
    try:
        return hash(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS))
    except orjson.JSONEncodeError:  # nesting deeper than orjson writes: hash the line as it is
        return hash(raw)


def _is_weight_value(w: Any) -> bool:
    return type(w) in (int, float) and (w == 0 or w == 1)


def _json_args_ok(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _short(value: Any, limit: int = 60) -> str:
    text = _json_text(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _typename(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


class _Validator:
    """The streaming state of one validation run (see :func:`validate_records`)."""

    def __init__(
        self,
        *,
        method: str,
        model: str | None,
        counter: Any,
        limit: int,
        max_findings: int | None,
        file_size: int | None,
        min_examples: int = 10,
    ) -> None:
        self.min_examples = min_examples
        self.method = method if method in ("sft", "dpo") else None
        self.method_line: int | None = None
        self.model = model
        self.counter = counter
        self.max_findings = max_findings
        self.findings: list[Finding] = []
        self.omitted = 0
        self.counts: dict[str, int] = {}
        self.errors = 0
        self.warnings = 0
        self.lines = 0
        self.examples = 0
        self.valid = 0
        self.stats = StatsAccumulator(limit)
        self.limit = limit
        self.seen = SeenHashes(_SAMPLE_LINES)
        self.file_size = file_size
        self.bytes_seen = 0
        self.ex_errors = 0  # errors in the current example

    # -- findings -----------------------------------------------------------------------------------------------
    def add(self, category: str, line: int | None, path: str, message: str, hint: str | None = None) -> None:
        severity, default_hint = CATEGORIES[category]
        self.counts[category] = self.counts.get(category, 0) + 1
        if severity == ERROR:
            self.errors += 1
            self.ex_errors += 1
        else:
            self.warnings += 1
        if self.max_findings is None or len(self.findings) < self.max_findings:
            self.findings.append(Finding(severity, category, line, path, message, hint or default_hint))
        else:
            self.omitted += 1

    # -- one line -----------------------------------------------------------------------------------------------
    def feed(self, rec: Record) -> None:
        self.lines += 1
        line = rec.lineno
        if self.lines <= _SAMPLE_LINES:
            self.bytes_seen += len(rec.raw) + 1
            if self.lines == _SAMPLE_LINES and self.file_size:
                # size the duplicate table once, from the average line length so far
                self.seen.reserve(int(self.file_size / (self.bytes_seen / _SAMPLE_LINES) * 1.05))
        if rec.bom:
            self.add("utf8_bom", line, "", "the file starts with a UTF-8 byte order mark (BOM)")
        if rec.error is not None:
            if rec.error != "blank_line":
                self.examples += 1
            self.ex_errors = 0
            self.add(rec.error, line, "", f"{_LINE_MESSAGES.get(rec.error, rec.error)}: {rec.detail}")
            return
        self.examples += 1
        self.ex_errors = 0
        obj = rec.obj
        if type(obj) is not dict:
            self.add("data_type", line, "", f"the line is {_typename(obj)}, not a JSON object")
            return
        fmt = self._format_of(obj, line)
        if fmt is None:
            return
        counted = self._check_dpo(obj, line) if fmt == "dpo" else self._check_sft(obj, line)
        if counted is None or self.ex_errors:
            return
        n_messages, tokens = counted
        self.valid += 1
        total = tokens.total
        self.stats.add(n_messages, total, tokens.assistant)
        if total > self.limit:
            self.add(
                "example_too_long",
                line,
                "",
                f"the example has {total} tokens, over the {self.limit}-token limit: OpenAI truncates it to {self.limit}",
            )
        first = self.seen.add(_dup_hash(obj, rec.raw), line)
        if first:
            self.add("duplicate_example", line, "", f"the example duplicates line {first}")

    def _format_of(self, obj: dict, line: int) -> str | None:
        """sft or dpo for this example; a format_mismatch finding (and None) when it contradicts the file's."""
        looks_dpo = "messages" not in obj and (
            "input" in obj or "preferred_output" in obj or "non_preferred_output" in obj
        )
        fmt = "dpo" if looks_dpo else "sft"
        if self.method is None:
            self.method = fmt
            self.method_line = line
            return fmt
        if fmt == self.method:
            return fmt
        if self.method_line is not None:
            where = f"line {self.method_line} set the file's format to {self.method}"
        else:
            where = f"the method is {self.method}"
        if fmt == "dpo":
            msg = f"this is a preference (DPO) example but {where}"
        else:
            msg = f'this is a chat (SFT) example with "messages" but {where}'
        self.add("format_mismatch", line, "", msg)
        return None

    # -- SFT ----------------------------------------------------------------------------------------------------
    def _check_sft(self, obj: dict, line: int) -> tuple[int, Any] | None:
        messages = obj.get("messages")
        if type(messages) is not list or not messages:
            if messages is None:
                what = 'has no "messages" key' if "messages" not in obj else 'has "messages": null'
            elif type(messages) is list:
                what = 'has an empty "messages" list'
            else:
                what = f'has "messages" as {_typename(messages)}, not a list'
            self.add("missing_messages_list", line, "messages", f"the example {what}")
            return None
        tools = functions = None
        parallel = True
        if len(obj) > 1:
            tools, functions, parallel = self._check_top(obj, line, "", _SFT_TOP)
        self._check_conversation(messages, line, "messages", tools, functions, parallel, final=True)
        if self.ex_errors:
            return None
        return len(messages), self.counter.count_messages(
            messages, tools=obj.get("tools"), functions=obj.get("functions")
        )

    def _check_top(
        self, obj: dict, line: int, prefix: str, allowed: frozenset[str]
    ) -> tuple[set[str] | None, set[str] | None, bool]:
        """Top-level keys besides messages: tools, functions, parallel_tool_calls, and unknown keys."""
        tools = functions = None
        parallel = True
        for key in obj:
            if key not in allowed:
                self.add(
                    "example_unrecognized_key",
                    line,
                    prefix + str(key),
                    f"unrecognized key {key!r} (the format has: {', '.join(sorted(allowed))})",
                )
        if "tools" in obj:
            tools = self._check_tools(obj["tools"], line, prefix + "tools")
        if "functions" in obj:
            functions = self._check_functions(obj["functions"], line, prefix + "functions")
        if "tools" in obj and "functions" in obj:
            self.add(
                "mixed_tools_and_functions",
                line,
                prefix + "functions",
                "the example has both tools and functions",
            )
        if "parallel_tool_calls" in obj:
            p = obj["parallel_tool_calls"]
            if type(p) is not bool:
                self.add(
                    "invalid_parallel_tool_calls",
                    line,
                    prefix + "parallel_tool_calls",
                    f"parallel_tool_calls is {_typename(p)} ({_short(p)}), not true/false",
                )
            else:
                parallel = p
        return tools, functions, parallel

    def _check_tools(self, tools: Any, line: int, path: str) -> set[str] | None:
        if type(tools) is not list:
            self.add("invalid_tools", line, path, f"tools is {_typename(tools)}, not a list")
            return None
        names: set[str] = set()
        for j, tool in enumerate(tools):
            p = f"{path}[{j}]"
            if type(tool) is not dict:
                self.add("invalid_tools", line, p, f"the tool is {_typename(tool)}, not an object")
                continue
            if tool.get("type") != "function":
                self.add(
                    "invalid_tools",
                    line,
                    p + ".type",
                    f'tool type is {_short(tool.get("type"))}, expected "function"',
                )
            fn = tool.get("function")
            if type(fn) is not dict:
                self.add("invalid_tools", line, p + ".function", 'the tool has no "function" object')
                continue
            name = self._check_declaration(fn, line, p + ".function", "invalid_tools")
            if name is not None:
                if name in names:
                    self.add("invalid_tools", line, p + ".function.name", f"tool {name!r} is declared twice")
                names.add(name)
        return names

    def _check_functions(self, functions: Any, line: int, path: str) -> set[str] | None:
        if type(functions) is not list:
            self.add("invalid_functions", line, path, f"functions is {_typename(functions)}, not a list")
            return None
        names: set[str] = set()
        for j, fn in enumerate(functions):
            p = f"{path}[{j}]"
            if type(fn) is not dict:
                self.add("invalid_functions", line, p, f"the function is {_typename(fn)}, not an object")
                continue
            name = self._check_declaration(fn, line, p, "invalid_functions")
            if name is not None:
                names.add(name)
        return names

    def _check_declaration(self, fn: dict, line: int, path: str, category: str) -> str | None:
        name = fn.get("name")
        ok_name = None
        if type(name) is not str or not name:
            self.add(
                category,
                line,
                path + ".name",
                f"the function name is {_short(name)}, expected a non-empty string",
            )
        else:
            ok_name = name
        if "parameters" in fn and type(fn["parameters"]) is not dict:
            self.add(
                category,
                line,
                path + ".parameters",
                f"parameters is {_typename(fn['parameters'])}, expected a JSON Schema object",
            )
        if "description" in fn and type(fn["description"]) is not str:
            self.add(
                category,
                line,
                path + ".description",
                f"description is {_typename(fn['description'])}, expected a string",
            )
        return ok_name

    def _check_conversation(
        self,
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
        n_assistant = 0
        n_trainable = 0
        call_ids: dict[str, int] = {}  # tool call id -> index of the assistant message that made it
        answered: set[str] = set()
        pending: list[tuple[int, str]] = []  # (message index, call id) not yet answered
        last_role: str | None = None
        last_assistant = -1
        role_keys = _ROLE_KEYS
        for i, m in enumerate(messages):
            if type(m) is not dict:
                self.add(
                    "message_data_type",
                    line,
                    f"{prefix}[{i}]",
                    f"the message is {_typename(m)}, not an object",
                )
                last_role = None
                continue
            role = m.get("role")
            allowed = role_keys.get(role) if type(role) is str else None
            if allowed is None:
                if "role" not in m:
                    self.add("message_missing_key", line, f"{prefix}[{i}]", 'the message has no "role"')
                else:
                    self.add(
                        "unrecognized_role",
                        line,
                        f"{prefix}[{i}].role",
                        f"role {_short(role)} is not one of: {_ROLE_LIST}",
                    )
                last_role = None
                continue
            last_role = role
            content = m.get("content", _MISSING)
            if len(m) == 2 and type(content) is str and content:
                # the common case: {"role": ..., "content": "..."}
                if role == "assistant":
                    n_assistant += 1
                    n_trainable += 1
                    last_assistant = i
                elif role == "tool":
                    self.add(
                        "message_missing_key",
                        line,
                        f"{prefix}[{i}]",
                        'the tool message has no "tool_call_id"',
                    )
                elif role == "function":
                    self.add(
                        "message_missing_key", line, f"{prefix}[{i}]", 'the function message has no "name"'
                    )
                continue
            keys = m.keys()
            if not keys <= allowed:
                for key in keys - allowed:
                    if key == "weight":
                        self.add(
                            "weight_on_non_assistant",
                            line,
                            f"{prefix}[{i}].weight",
                            f"a {role} message has a weight; only assistant messages can",
                        )
                    else:
                        where = [r for r, ks in role_keys.items() if key in ks]
                        extra = f" (allowed on: {', '.join(where)})" if where else ""
                        self.add(
                            "message_unrecognized_key",
                            line,
                            f"{prefix}[{i}].{key}",
                            f"key {key!r} is not allowed on a {role} message{extra}",
                        )
            has_call = role == "assistant" and (
                m.get("tool_calls") not in (None, []) or m.get("function_call") is not None
            )
            self._check_content(content, role, has_call, line, f"{prefix}[{i}]")
            if "name" in m and (type(m["name"]) is not str or not m["name"]):
                self.add(
                    "invalid_type",
                    line,
                    f"{prefix}[{i}].name",
                    f"name is {_short(m['name'])}, expected a non-empty string",
                )
            if role == "assistant":
                n_assistant += 1
                last_assistant = i
                if "weight" in m:
                    w = m["weight"]
                    if not _is_weight_value(w):
                        self.add(
                            "invalid_weight",
                            line,
                            f"{prefix}[{i}].weight",
                            f"weight is {_short(w)}; it must be 0 or 1",
                        )
                        n_trainable += 1  # already an error: don't also warn that nothing is trained
                    elif w == 1:
                        n_trainable += 1
                else:
                    n_trainable += 1
                if "tool_calls" in m:
                    for call_id in self._check_tool_calls(
                        m["tool_calls"], line, f"{prefix}[{i}].tool_calls", tools, parallel, call_ids, i
                    ):
                        pending.append((i, call_id))
                if "function_call" in m:
                    self._check_function_call(
                        m["function_call"], line, f"{prefix}[{i}].function_call", functions
                    )
            elif role == "tool":
                if "tool_call_id" not in m:
                    self.add(
                        "message_missing_key",
                        line,
                        f"{prefix}[{i}]",
                        'the tool message has no "tool_call_id"',
                    )
                else:
                    tcid = m["tool_call_id"]
                    if type(tcid) is not str or not tcid:
                        self.add(
                            "invalid_type",
                            line,
                            f"{prefix}[{i}].tool_call_id",
                            f"tool_call_id is {_short(tcid)}, expected a string",
                        )
                    elif tcid not in call_ids:
                        known = ", ".join(repr(c) for c in list(call_ids)[:5]) or "none"
                        self.add(
                            "unknown_tool_call_id",
                            line,
                            f"{prefix}[{i}].tool_call_id",
                            f"tool_call_id {tcid!r} matches no earlier assistant tool call (earlier ids: {known})",
                        )
                    else:
                        answered.add(tcid)
            elif role == "function" and "name" not in m:
                self.add("message_missing_key", line, f"{prefix}[{i}]", 'the function message has no "name"')
        if final:
            if n_assistant == 0:
                self.add(
                    "example_missing_assistant_message", line, prefix, "the example has no assistant message"
                )
            elif n_trainable == 0:
                self.add(
                    "all_assistant_weights_zero",
                    line,
                    prefix,
                    "every assistant message has weight 0: nothing in this example is trained on",
                )
            if n_assistant and last_role is not None and last_role != "assistant" and last_assistant >= 0:
                self.add(
                    "last_message_not_assistant",
                    line,
                    f"{prefix}[{len(messages) - 1}]",
                    f"the example ends with a {last_role} message after the last assistant message",
                )
        last_index = len(messages) - 1
        for i, call_id in pending:
            if call_id not in answered and i < last_index:
                self.add(
                    "tool_call_without_response",
                    line,
                    f"{prefix}[{i}].tool_calls",
                    f"tool call {call_id!r} gets no tool message before the conversation continues",
                )
        return n_assistant, n_trainable, last_role

    def _check_content(self, content: Any, role: str, has_call: bool, line: int, path: str) -> None:
        if content is _MISSING:
            if not has_call:
                self.add("message_missing_key", line, path, f'the {role} message has no "content"')
            return
        if type(content) is str:
            if not content and not has_call:
                self.add("missing_content", line, path + ".content", f"the {role} message has empty content")
            return
        if content is None:
            if not has_call:
                what = (
                    "an assistant message without tool_calls" if role == "assistant" else f"a {role} message"
                )
                self.add("missing_content", line, path + ".content", f"content is null in {what}")
            return
        if type(content) is not list:
            self.add(
                "invalid_content_type",
                line,
                path + ".content",
                f"content is {_typename(content)}, expected a string or a list of text parts",
            )
            return
        if not content:
            if not has_call:
                self.add(
                    "missing_content",
                    line,
                    path + ".content",
                    f"the {role} message has an empty content list",
                )
            return
        for j, part in enumerate(content):
            p = f"{path}.content[{j}]"
            if type(part) is not dict:
                self.add(
                    "invalid_content_type", line, p, f"the content part is {_typename(part)}, not an object"
                )
                continue
            ptype = part.get("type")
            if ptype == "text":
                if type(part.get("text")) is not str:
                    self.add(
                        "invalid_content_type",
                        line,
                        p + ".text",
                        f"text part has text {_short(part.get('text'))}, expected a string",
                    )
            elif ptype == "image_url":
                if role != "user":
                    self.add(
                        "invalid_content_type",
                        line,
                        p,
                        f"image parts are only allowed in user messages, not {role}",
                    )
                else:
                    img = part.get("image_url")
                    url = img.get("url") if type(img) is dict else None
                    if type(url) is not str or not url:
                        self.add(
                            "invalid_content_type",
                            line,
                            p + ".image_url",
                            'image part needs {"image_url": {"url": "..."}}',
                        )
            else:
                self.add(
                    "invalid_content_type",
                    line,
                    p + ".type",
                    f'content part type {_short(ptype)} is not supported (use "text")',
                )

    def _check_tool_calls(
        self,
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
            self.add("invalid_tool_call", line, path, f"tool_calls is {_typename(calls)}, not a list")
            return []
        if len(calls) > 1 and not parallel:
            self.add(
                "parallel_tool_calls_not_allowed",
                line,
                path,
                f"{len(calls)} tool calls in one message but the example sets parallel_tool_calls to false",
            )
        made: list[str] = []
        for j, call in enumerate(calls):
            p = f"{path}[{j}]"
            if type(call) is not dict:
                self.add("invalid_tool_call", line, p, f"the tool call is {_typename(call)}, not an object")
                continue
            for key in call:
                if key not in ("id", "type", "function"):
                    self.add(
                        "invalid_tool_call",
                        line,
                        f"{p}.{key}",
                        f"unrecognized key {key!r} in the tool call (it has id, type, function)",
                    )
            cid = call.get("id")
            if type(cid) is not str or not cid:
                self.add(
                    "invalid_tool_call",
                    line,
                    p + ".id",
                    f"the tool call id is {_short(cid)}, expected a non-empty string",
                )
            elif cid in call_ids:
                self.add(
                    "duplicate_tool_call_id",
                    line,
                    p + ".id",
                    f"tool call id {cid!r} is used twice in this example",
                )
            else:
                call_ids[cid] = msg_index
                made.append(cid)
            if call.get("type", "function") != "function":
                self.add(
                    "invalid_tool_call",
                    line,
                    p + ".type",
                    f'tool call type is {_short(call.get("type"))}, expected "function"',
                )
            fn = call.get("function")
            if type(fn) is not dict:
                self.add("invalid_tool_call", line, p + ".function", 'the tool call has no "function" object')
                continue
            name = fn.get("name")
            if type(name) is not str or not name:
                self.add(
                    "invalid_tool_call",
                    line,
                    p + ".function.name",
                    f"the called name is {_short(name)}, expected a string",
                )
            elif tools is not None and name not in tools:
                declared = ", ".join(sorted(tools)[:10]) or "none"
                self.add(
                    "undeclared_tool",
                    line,
                    p + ".function.name",
                    f"tool {name!r} is called but not declared in tools (declared: {declared})",
                )
            self._check_arguments(fn, line, p + ".function", "invalid_tool_call")
        return made

    def _check_function_call(self, fc: Any, line: int, path: str, functions: set[str] | None) -> None:
        if fc is None:
            return
        if type(fc) is not dict:
            self.add("invalid_function_call", line, path, f"function_call is {_typename(fc)}, not an object")
            return
        name = fc.get("name")
        if type(name) is not str or not name:
            self.add(
                "invalid_function_call",
                line,
                path + ".name",
                f"the called name is {_short(name)}, expected a string",
            )
        elif functions is not None and name not in functions:
            declared = ", ".join(sorted(functions)[:10]) or "none"
            self.add(
                "undeclared_function",
                line,
                path + ".name",
                f"function {name!r} is called but not declared in functions (declared: {declared})",
            )
        self._check_arguments(fc, line, path, "invalid_function_call")

    def _check_arguments(self, fn: dict, line: int, path: str, category: str) -> None:
        for key in fn:
            if key not in ("name", "arguments"):
                self.add(
                    category,
                    line,
                    f"{path}.{key}",
                    f"unrecognized key {key!r} in the call (it has name and arguments)",
                )
        if "arguments" not in fn:
            self.add(category, line, path, 'the call has no "arguments"')
            return
        args = fn["arguments"]
        if type(args) is not str:
            self.add(
                "arguments_not_string",
                line,
                path + ".arguments",
                f"arguments is {_typename(args)}; it must be a string holding JSON, e.g. {_short(_json_text(args), 40)}",
            )
        elif not _json_args_ok(args):
            self.add(
                "arguments_invalid_json",
                line,
                path + ".arguments",
                f"arguments {_short(args, 40)} is not valid JSON",
            )

    # -- DPO ----------------------------------------------------------------------------------------------------
    def _check_dpo(self, obj: dict, line: int) -> tuple[int, Any] | None:
        for key in obj:
            if key not in _DPO_TOP:
                self.add(
                    "example_unrecognized_key",
                    line,
                    str(key),
                    f"unrecognized key {key!r} in a preference example (the format has: {', '.join(sorted(_DPO_TOP))})",
                )
        for key in ("input", "preferred_output", "non_preferred_output"):
            if key not in obj:
                self.add("dpo_missing_key", line, key, f"the preference example has no {key!r}")
        inp = obj.get("input")
        messages = None
        if "input" in obj:
            if type(inp) is not dict:
                self.add("dpo_invalid_input", line, "input", f"input is {_typename(inp)}, not an object")
            else:
                messages = inp.get("messages")
                if type(messages) is not list or not messages:
                    self.add(
                        "dpo_invalid_input", line, "input.messages", 'input has no non-empty "messages" list'
                    )
                    messages = None
                tools, functions, parallel = (
                    self._check_top(inp, line, "input.", _DPO_INPUT) if len(inp) > 1 else (None, None, True)
                )
                if messages is not None:
                    _, _, last_role = self._check_conversation(
                        messages, line, "input.messages", tools, functions, parallel, final=False
                    )
                    if last_role is not None and last_role != "user":
                        self.add(
                            "dpo_input_must_end_with_user",
                            line,
                            f"input.messages[{len(messages) - 1}]",
                            f"the input ends with a {last_role} message; it must end with the user turn being answered",
                        )
        outputs = []
        for key in ("preferred_output", "non_preferred_output"):
            if key not in obj:
                continue
            out = obj[key]
            if type(out) is not list or len(out) != 1:
                what = f"{_typename(out)}" if type(out) is not list else f"a list of {len(out)} messages"
                self.add(
                    "dpo_invalid_output",
                    line,
                    key,
                    f"{key} is {what}; it must be a list with exactly one assistant message",
                )
                continue
            msg = out[0]
            if type(msg) is dict and msg.get("role") != "assistant":
                self.add(
                    "dpo_invalid_output",
                    line,
                    f"{key}[0].role",
                    f'the {key} message has role {_short(msg.get("role"))}, expected "assistant"',
                )
                continue
            self._check_conversation(out, line, key, None, None, True, final=False)
            outputs.append(msg)
        if len(outputs) == 2 and not self.ex_errors and _same(outputs[0], outputs[1]):
            self.add(
                "dpo_identical_outputs",
                line,
                "non_preferred_output",
                "the preferred and non-preferred outputs are identical",
            )
        if self.ex_errors or messages is None:
            return None
        return len(messages) + 2, self.counter.count_example(obj)

    # -- end of file --------------------------------------------------------------------------------------------
    def finish(self) -> None:
        if self.examples < self.min_examples:
            self.add(
                "too_few_examples",
                None,
                "",
                f"the file has {self.examples} example{'s' if self.examples != 1 else ''}; OpenAI requires at least {self.min_examples}",
            )


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):  # nested deeper than orjson writes
        return f"<{_typename(value)}>"


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    try:
        return a == b
    except RecursionError:  # pragma: no cover - only for values nested ~1000 deep
        return False


_LINE_MESSAGES = {
    "blank_line": "blank line",
    "invalid_utf8": "invalid UTF-8",
    "invalid_json": "invalid JSON",
    "truncated_last_line": "truncated last line",
}


_SAMPLE_LINES = 2048


def _file_size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def validate_records(
    records: Iterable[Record],
    *,
    path: str = "<records>",
    model: str | None = None,
    method: str = "auto",
    max_findings: int | None = 10000,
    n_epochs: int | None = None,
    file_size: int | None = None,
    counter: Any = None,
    min_examples: int = MIN_EXAMPLES,
) -> ValidationReport:
    """Validate records from :func:`~tuneport.data.reader.iter_records` (or any iterable of them) in one pass.

    See :func:`validate_file` for the arguments.
    """
    from tuneport.cost.catalog import lookup_model
    from tuneport.data.tokens import get_counter

    if method not in ("auto", "sft", "dpo"):
        from tuneport.errors import DataError

        raise DataError(f"unknown method {method!r}", hint="Use auto, sft or dpo.")
    if counter is None:
        counter = get_counter(model)
    info = lookup_model(model) if model else None
    notes: list[str] = []
    if info is not None:
        limit, limit_source = info.max_example_tokens, f"{info.id} (catalog)"
    else:
        limit, limit_source = (
            DEFAULT_EXAMPLE_TOKEN_LIMIT,
            "assumed: the gpt-4o / gpt-4.1 limit (no known model given)",
        )
    v = _Validator(
        method=method,
        model=model,
        counter=counter,
        limit=limit,
        max_findings=max_findings,
        file_size=file_size,
        min_examples=min_examples,
    )
    for rec in records:
        v.feed(rec)
    v.finish()
    detected = v.method or "sft"
    if method == "auto":
        source = (
            f"detected from line {v.method_line}"
            if v.method_line is not None
            else "default (no example to detect from)"
        )
        notes.append(f"format: {detected} ({source})")
    else:
        source = "given"
    if info is not None:
        wanted = "dpo" if detected == "dpo" else "supervised"
        if wanted not in info.methods:
            v.add(
                "method_not_supported",
                None,
                "",
                f"{info.id} does not support {wanted} fine-tuning (it supports: {', '.join(info.methods)})",
            )
    if counter.note:
        notes.append(counter.note)
    stats = build_stats(
        v.stats,
        counter_info=counter.describe(),
        model=model,
        model_info=info,
        method=detected,
        limit_source=limit_source,
        n_epochs=n_epochs,
    )
    return ValidationReport(
        path=path,
        method=detected,
        method_source=source,
        model=model,
        tokens=counter.describe(),
        lines=v.lines,
        examples=v.examples,
        valid_examples=v.valid,
        errors=v.errors,
        warnings=v.warnings,
        counts=dict(v.counts),
        findings=v.findings,
        findings_omitted=v.omitted,
        stats=stats,
        notes=notes,
    )


def validate_file(
    path: str | Path,
    *,
    model: str | None = None,
    method: str = "auto",
    max_findings: int | None = 10000,
    n_epochs: int | None = None,
    min_examples: int = MIN_EXAMPLES,
) -> ValidationReport:
    """Validate a chat (SFT) or preference (DPO) JSONL dataset and gather its statistics, in one streaming pass.

    ``model`` picks the tokenizer, the per-example token limit and the price (any OpenAI id, alias or ``ft:`` id;
    a local tokenizer folder; None counts with o200k_base). ``method`` is ``auto`` (detected from the first
    example), ``sft`` or ``dpo``. ``max_findings`` caps the findings kept in memory (None keeps all); the counts
    by category are always complete. ``n_epochs`` overrides OpenAI's auto epochs in the cost estimate.
    ``min_examples`` is OpenAI's minimum for a training file (10); a validation file has none (give 1).

    Never raises on the file's content; raises :class:`~tuneport.errors.DataError` only when the file cannot be
    opened. Use :meth:`ValidationReport.raise_for_errors` to turn errors into an exception.
    """
    p = Path(path)
    records = iter_records(p)
    # open the file now, so a missing file raises before any work
    first = next(records, None)

    def chained() -> Iterable[Record]:
        if first is not None:
            yield first
            yield from records

    return validate_records(
        chained(),
        path=str(path),
        model=model,
        method=method,
        max_findings=max_findings,
        n_epochs=n_epochs,
        file_size=_file_size(p),
        min_examples=min_examples,
    )
