"""The spec's value rules: allowed choices and ranges, and the validators that say what is wrong in one sentence.

Why custom validators: each raises one PydanticCustomError whose message is the whole human sentence (the range,
the value as written, the nearest valid choice), so the error collector never has to rewrite pydantic's generic
wording ("Input should be ...").
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import PlainValidator
from pydantic_core import PydanticCustomError

from tuneport.spec.problems import show

__all__ = [
    "AUTO",
    "METHOD_TYPES",
    "FINETUNING_TYPES",
    "QUANTIZATIONS",
    "DTYPES",
    "DEVICES",
    "LR_SCHEDULERS",
    "SEED_MAX",
    "SUFFIX_MAX",
    "SUFFIX_PATTERN",
    "is_openai_file_id",
    "fail",
    "integer",
    "number",
    "choice",
    "boolean",
    "text",
    "Epochs",
    "BatchSize",
    "LRMultiplier",
    "Beta",
]

AUTO = "auto"
METHOD_TYPES = ("supervised", "dpo")
FINETUNING_TYPES = ("lora", "qlora", "full")
QUANTIZATIONS = ("none", "4bit", "8bit")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
SEED_MAX = 2_147_483_647
SUFFIX_MAX = 64
METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512

# OpenAI file ids look like "file-abc123" (letters and digits after the dash). A dot never occurs in one, so
# "file-train.jsonl" is a path; write "./file-x" for a local file whose name has no dot.
_FILE_ID = re.compile(r"^file-[A-Za-z0-9_-]+$")
# OpenAI documents only the suffix length. It becomes one field of the colon-separated model id
# ("ft:gpt-4o-mini:org:SUFFIX:id"), so tuneport allows the characters that are safe there and in file names.
SUFFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")


def is_openai_file_id(value: str) -> bool:
    """Whether a ``training_file`` / ``validation_file`` value names an uploaded OpenAI file, not a local path."""
    return bool(_FILE_ID.match(value))


def fail(message: str) -> PydanticCustomError:
    """The error a validator raises: ``message`` is the whole sentence the user reads."""
    return PydanticCustomError("tuneport", "{msg}", {"msg": message})


def _or_auto(words: str, auto: bool) -> str:
    return f'{words}, or "auto"' if auto else words


def integer(lo: int, hi: int, *, auto: bool = False, nullable: bool = False) -> PlainValidator:
    """An integer in [lo, hi] (booleans are not integers here), optionally "auto" or null."""
    want = _or_auto(f"an integer from {lo} to {hi}", auto)

    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if auto and value == AUTO:
            return AUTO
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"must be {want} (got {show(value)})")
        if not lo <= value <= hi:
            raise fail(f"must be {want} (got {value})")
        return value

    return PlainValidator(check)


def number(
    lo: float,
    hi: float | None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    auto: bool = False,
    nullable: bool = False,
) -> PlainValidator:
    """A finite number within the bounds (open or closed at each end), optionally "auto" or null."""
    low = f"greater than {lo:g}" if lo_open else f"at least {lo:g}"
    bounds = low if hi is None else f"{low} and {'less than' if hi_open else 'at most'} {hi:g}"
    want = _or_auto(f"a number {bounds}", auto)

    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if auto and value == AUTO:
            return AUTO
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail(f"must be {want} (got {show(value)})")
        too_low = value <= lo if lo_open else value < lo
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            raise fail(f"must be {want} (got {value:g})")
        return float(value)

    return PlainValidator(check)


def choice(options: Iterable[str], *, nullable: bool = False) -> PlainValidator:
    """One of ``options``; a near miss gets "did you mean"."""
    opts = tuple(options)

    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if isinstance(value, str) and value in opts:
            return value
        message = f"must be one of {', '.join(opts)} (got {show(value)})"
        if isinstance(value, str):
            close = difflib.get_close_matches(value.lower(), opts, n=1, cutoff=0.6)
            if close:
                message += f'; did you mean "{close[0]}"?'
        raise fail(message)

    return PlainValidator(check)


def boolean() -> PlainValidator:
    """true or false, nothing that merely looks like one."""

    def check(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise fail(f"must be true or false (got {show(value)})")

    return PlainValidator(check)


def text(
    *,
    max_len: int | None = None,
    pattern: re.Pattern[str] | None = None,
    pattern_text: str = "",
    nullable: bool = False,
    what: str = "a non-empty string",
) -> PlainValidator:
    """A non-empty string without surrounding whitespace, optionally bounded in length and shape."""

    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value:
            raise fail(f"must be {what} (got {show(value)})")
        if value != value.strip():
            raise fail(f"must not start or end with whitespace (got {show(value)})")
        if max_len is not None and len(value) > max_len:
            raise fail(f"must be at most {max_len} characters (got {len(value)})")
        if pattern is not None and not pattern.match(value):
            raise fail(f"{pattern_text} (got {show(value)})")
        return value

    return PlainValidator(check)


def packing_value(value: Any) -> Any:
    """``local.packing``: "auto", true or false (also the strings "true"/"false")."""
    if value is True or value is False or value == AUTO:
        return value
    if value in ("true", "false"):
        return value == "true"
    raise fail(f'must be "auto", true or false (got {show(value)})')


def target_module_list(value: Any) -> Any:
    """``local.target_modules``: "all-linear" or a list of distinct module names (one name is a list of one)."""
    if value == "all-linear":
        return value
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise fail(f'must be "all-linear" or a non-empty list of module names (got {show(value)})')
    bad = [v for v in value if not isinstance(v, str) or not v.strip()]
    if bad:
        raise fail(f"module names must be non-empty strings (got {show(bad[0])})")
    dupes = sorted({v for v in value if list(value).count(v) > 1})
    if dupes:
        raise fail(f"lists module {', '.join(dupes)} more than once")
    return list(value)


def metadata_key(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise fail(f"metadata keys must be non-empty strings (got {show(value)})")
    if len(value) > METADATA_KEY_MAX:
        raise fail(f"metadata keys must be at most {METADATA_KEY_MAX} characters (got {len(value)})")
    return value


def metadata_value(value: Any) -> str:
    if not isinstance(value, str):
        raise fail(f"metadata values must be strings; quote it (got {show(value)})")
    if len(value) > METADATA_VALUE_MAX:
        raise fail(f"metadata values must be at most {METADATA_VALUE_MAX} characters (got {len(value)})")
    return value


def metadata_size(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is not None and len(value) > METADATA_MAX_PAIRS:
        raise fail(f"at most {METADATA_MAX_PAIRS} key-value pairs (got {len(value)})")
    return value


def str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(f"must be a list of strings (got {show(value)})")
    return value


Epochs = Annotated[int | Literal["auto"], integer(1, 50, auto=True)]
BatchSize = Annotated[int | Literal["auto"], integer(1, 256, auto=True)]
LRMultiplier = Annotated[float | Literal["auto"], number(0, None, lo_open=True, auto=True)]
Beta = Annotated[float | Literal["auto"], number(0, 2, lo_open=True, auto=True)]
