"""Streaming JSONL reading with exact line numbers.

Everything that reads a dataset (validation, statistics, splitting, leakage checks, uploads) goes through
:func:`iter_records`, so every part reports the same 1-based line numbers and classifies broken lines the same
way. Files are read in binary with a bounded buffer: memory stays flat however large the file is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tuneport.errors import DataError

__all__ = ["Record", "iter_records", "file_sha256", "LINE_ERRORS"]

_BUFFER = 1 << 20
_BOM = b"\xef\xbb\xbf"

# Line-level problems a record can carry (its ``error`` field). Each is a category in validation summaries.
LINE_ERRORS = {
    "blank_line": "blank line",
    "invalid_utf8": "bytes that are not valid UTF-8",
    "invalid_json": "not valid JSON",
    "truncated_last_line": "last line is cut off (no newline and not valid JSON)",
}


@dataclass(slots=True)
class Record:
    """One line of a JSONL file.

    ``obj`` is the parsed value (any JSON type) when ``error`` is None. ``error`` is a key of
    :data:`LINE_ERRORS` and ``detail`` says exactly what is wrong (with a byte or character offset).
    ``raw`` is the line's bytes without the line ending, for hashing and re-writing the line unchanged.
    """

    lineno: int
    raw: bytes
    obj: Any = None
    error: str | None = None
    detail: str | None = None
    bom: bool = False
    newline: bool = True


def _classify(raw: bytes, lineno: int, is_last_without_newline: bool) -> Record:
    bom = False
    if lineno == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
        bom = True
    if not raw.strip():
        return Record(lineno, raw, error="blank_line", detail="the line is empty", bom=bom)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return Record(
                lineno,
                raw,
                error="invalid_utf8",
                detail=f"byte {uexc.start + 1} of the line (0x{raw[uexc.start]:02x}) is not valid UTF-8",
                bom=bom,
            )
        if is_last_without_newline:
            return Record(
                lineno,
                raw,
                error="truncated_last_line",
                detail=f"the file ends in the middle of a JSON value ({exc.msg})",
                bom=bom,
                newline=False,
            )
        return Record(lineno, raw, error="invalid_json", detail=f"{exc.msg} at character {exc.pos + 1}", bom=bom)
    except RecursionError:  # pragma: no cover - orjson reports depth as JSONDecodeError; kept as a guard
        return Record(lineno, raw, error="invalid_json", detail="JSON nested too deeply", bom=bom)
    return Record(lineno, raw, obj=obj, bom=bom, newline=not is_last_without_newline)


def iter_records(path: str | Path) -> Iterator[Record]:
    """Yield every line of ``path`` as a :class:`Record`, in order, never raising on content.

    Raises :class:`~tuneport.errors.DataError` only when the file itself cannot be opened.
    Line endings ``\\n`` and ``\\r\\n`` are both accepted. A final newline is optional.
    """
    path = Path(path)
    try:
        fh = open(path, "rb", buffering=_BUFFER)  # noqa: SIM115 - closed in finally, generator-safe
    except FileNotFoundError:
        raise DataError(f"{path}: no such file", hint="Check the path; relative paths are relative to the current folder.") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a JSONL file", hint="Give the path of a .jsonl file.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})", hint="Check the file's permissions.") from None
    try:
        lineno = 0
        pending: bytes | None = None
        for chunk in fh:
            if pending is not None:
                lineno += 1
                yield _classify(_strip_eol(pending), lineno, False)
            pending = chunk
        if pending is not None:
            lineno += 1
            yield _classify(_strip_eol(pending), lineno, not pending.endswith(b"\n"))
    finally:
        fh.close()


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in bounded chunks (the dataset's identity in the store)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BUFFER):
            h.update(block)
    return h.hexdigest()
