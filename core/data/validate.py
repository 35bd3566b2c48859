"""Dataset validation: every check OpenAI's data-preparation cookbook makes, and what it misses.

Why: a fine-tuning job that fails on its data fails after upload and queueing, sometimes after money is spent. So
the whole file is checked up front, in one streaming pass that also counts tokens exactly and gathers statistics,
and every problem is reported with its line, the JSON path inside the example, what is wrong and what to do.

Nothing here raises on content: any bytes, any JSON value, give findings, never an exception. Memory stays flat:
lines are streamed (a line longer than any model's context is skipped in bounded chunks, not parsed), statistics
are histograms and duplicate detection keeps one 64-bit hash and one line number per example in compact arrays
(12 bytes per example, see :class:`~tuneport.data.seen.SeenHashes`).

This module walks the file and each line; the checks are in :mod:`tuneport.data.messages` (conversations),
:mod:`tuneport.data.tools` (tools and calls), :mod:`tuneport.data.preference` (DPO) and
:mod:`tuneport.data.jsonkeys` (repeated keys); categories, findings and the report in :mod:`tuneport.data.findings`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tuneport.cost.catalog import lookup_model
from tuneport.data.describe import typename
from tuneport.data.findings import CATEGORIES, Finding, FindingSink, ValidationReport
from tuneport.data.formats import describe_format, foreign_format
from tuneport.data.jsonkeys import may_repeat_message_keys, repeated_keys
from tuneport.data.messages import check_conversation
from tuneport.data.preference import check_dpo
from tuneport.data.reader import LINE_ERRORS, MAX_EXAMPLE_LINE_BYTES, Record, iter_records
from tuneport.data.seen import SeenHashes, dup_hash
from tuneport.data.stats import DEFAULT_EXAMPLE_TOKEN_LIMIT, DatasetStats, StatsAccumulator, build_stats
from tuneport.data.tokens import get_counter
from tuneport.data.tools import check_top
from tuneport.errors import DataError

__all__ = [
    "Finding",
    "ValidationReport",
    "validate_file",
    "validate_records",
    "dataset_stats",
    "CATEGORIES",
    "MIN_EXAMPLES",
    "SeenHashes",
]

MIN_EXAMPLES = 10  # OpenAI rejects training files with fewer examples.

_SFT_TOP = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
_SAMPLE_LINES = 2048
_LINE_MESSAGES = {
    "blank_line": "blank line",
    "invalid_utf8": "invalid UTF-8",
    "invalid_json": "invalid JSON",
    "truncated_last_line": "truncated last line",
    "line_too_long": "line too long",
}
assert set(_LINE_MESSAGES) == set(LINE_ERRORS)


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
        min_examples: int = MIN_EXAMPLES,
    ) -> None:
        self.min_examples = min_examples
        self.method = method if method in ("sft", "dpo") else None
        self.method_line: int | None = None
        self.model = model
        self.counter = counter
        self.out = FindingSink(max_findings)
        self.lines = 0
        self.examples = 0
        self.valid = 0
        self.stats = StatsAccumulator(limit)
        self.limit = limit
        self.seen = SeenHashes(_SAMPLE_LINES)
        self.file_size = file_size
        self.bytes_seen = 0

    def _size_duplicate_table(self, rec: Record) -> None:
        self.bytes_seen += len(rec.raw) + 1
        if self.lines == _SAMPLE_LINES and self.file_size:
            # size the duplicate table once, from the average line length so far
            self.seen.reserve(int(self.file_size / (self.bytes_seen / _SAMPLE_LINES) * 1.05))

    def feed(self, rec: Record) -> None:
        """Check one line."""
        out = self.out
        self.lines += 1
        line = rec.lineno
        if self.lines <= _SAMPLE_LINES:
            self._size_duplicate_table(rec)
        if rec.bom:
            out.add("utf8_bom", line, "", "the file starts with a UTF-8 byte order mark (BOM)")
        out.ex_errors = 0
        if rec.error is not None:
            if rec.error != "blank_line":
                self.examples += 1
            out.add(rec.error, line, "", f"{_LINE_MESSAGES.get(rec.error, rec.error)}: {rec.detail}")
            return
        self.examples += 1
        obj = rec.obj
        if type(obj) is not dict:
            out.add("data_type", line, "", f"the line is {typename(obj)}, not a JSON object")
            return
        if may_repeat_message_keys(rec.raw, obj):
            for path, message in repeated_keys(rec.raw):
                out.add("duplicate_key", line, path, message)
        fmt = self._format_of(obj, line)
        if fmt is None:
            return
        counted = check_dpo(out, obj, line, self.counter) if fmt == "dpo" else self._check_sft(obj, line)
        if counted is None or out.ex_errors:
            return
        self._count(obj, rec, line, *counted)

    def _count(self, obj: dict, rec: Record, line: int, n_messages: int, tokens: Any) -> None:
        """A valid example: statistics, the token limit, duplicates."""
        self.valid += 1
        total = tokens.total
        self.stats.add(n_messages, total, tokens.assistant)
        if total > self.limit:
            self.out.add(
                "example_too_long",
                line,
                "",
                f"the example has {total} tokens, over the {self.limit}-token limit: OpenAI truncates it to {self.limit}",
            )
        first = self.seen.add(dup_hash(obj, rec.raw), line)
        if first:
            self.out.add("duplicate_example", line, "", f"the example duplicates line {first}")

    def _format_of(self, obj: dict, line: int) -> str | None:
        """sft or dpo for this example; a format_mismatch finding (and None) when it contradicts the file's; a
        missing_messages_list finding naming the format (and None) when it is Alpaca, ShareGPT or
        prompt/completion."""
        foreign = foreign_format(obj)
        if foreign is not None:
            self.out.add("missing_messages_list", line, "messages",
                         f'this example is in the {describe_format(foreign)} format, not chat JSONL (no "messages"): '
                         f"convert the file with `tuneport data convert FILE OUT --from {foreign}`")  # fmt: skip
            return None
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
        self.out.add("format_mismatch", line, "", msg)
        return None

    def _check_sft(self, obj: dict, line: int) -> tuple[int, Any] | None:
        messages = obj.get("messages")
        if type(messages) is not list or not messages:
            if messages is None:
                what = 'has no "messages" key' if "messages" not in obj else 'has "messages": null'
            elif type(messages) is list:
                what = 'has an empty "messages" list'
            else:
                what = f'has "messages" as {typename(messages)}, not a list'
            self.out.add("missing_messages_list", line, "messages", f"the example {what}")
            return None
        tools = functions = None
        parallel = True
        if len(obj) > 1:
            tools, functions, parallel = check_top(self.out, obj, line, "", _SFT_TOP)
        check_conversation(self.out, messages, line, "messages", tools, functions, parallel, final=True)
        if self.out.ex_errors:
            return None
        return len(messages), self.counter.count_messages(
            messages, tools=obj.get("tools"), functions=obj.get("functions")
        )

    def finish(self) -> None:
        if self.examples < self.min_examples:
            self.out.add(
                "too_few_examples",
                None,
                "",
                f"the file has {self.examples} example{'s' if self.examples != 1 else ''}; OpenAI requires at least {self.min_examples}",
            )


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
    if method not in ("auto", "sft", "dpo"):
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
            v.out.add(
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
        errors=v.out.errors,
        warnings=v.out.warnings,
        counts=dict(v.out.counts),
        findings=v.out.findings,
        findings_omitted=v.out.omitted,
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
    records = iter_records(p, max_line_bytes=MAX_EXAMPLE_LINE_BYTES)
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


def dataset_stats(
    path: str | Path, *, model: str | None = None, method: str = "auto", n_epochs: int | None = None
) -> DatasetStats:
    """Statistics of a dataset (one streaming pass, shared with validation: see :func:`validate_file`)."""
    return validate_file(path, model=model, method=method, n_epochs=n_epochs).stats
