"""What dataset validation reports: the finding categories, one finding, the sink checks write to, the report.

Categories are stable snake_case codes (scripts may rely on them); :data:`CATEGORIES` lists every one with its
severity and a default hint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneport.data.stats import DatasetStats
from tuneport.errors import DataError

__all__ = ["ERROR", "WARNING", "CATEGORIES", "Finding", "FindingSink", "ValidationReport"]

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
    "line_too_long": (
        ERROR,
        "Shorten or split the conversation, or remove the line: no model tuneport trains takes an example "
        "that long (at most 262,144 tokens, and no token is more than 128 bytes of JSON).",
    ),
    "duplicate_key": (
        ERROR,
        "Remove the repeated key and keep the value you mean: JSON readers keep only one of them, and not "
        "always the same one.",
    ),
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


class FindingSink:
    """Where the checks put their findings: counts every finding by category, keeps up to ``max_findings``.

    ``ex_errors`` counts the errors of the example being checked (the walker resets it per line): an example
    with errors is not counted in the statistics.
    """

    __slots__ = ("max_findings", "findings", "omitted", "counts", "errors", "warnings", "ex_errors")

    def __init__(self, max_findings: int | None) -> None:
        self.max_findings = max_findings
        self.findings: list[Finding] = []
        self.omitted = 0
        self.counts: dict[str, int] = {}
        self.errors = 0
        self.warnings = 0
        self.ex_errors = 0

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
        top = ", ".join(
            f"{c}: {n}" for c, n in sorted(self.by_severity(ERROR).items(), key=lambda kv: -kv[1])[:3]
        )
        first = next((f for f in self.findings if f.severity == ERROR), None)
        message = f"{self.summary()} ({top})"
        if first is not None:
            message += f"; first: {first}"
        hint = "Fix the lines listed (`tuneport data validate FILE --json` lists every finding), then validate again."
        raise DataError(message, hint=hint, findings=list(self.findings))
