"""Streaming JSONL reading with exact line numbers.

Everything that reads a dataset (validation, statistics, splitting, leakage checks, uploads) goes through
:func:`iter_records`, so every part reports the same 1-based line numbers and classifies broken lines the same
way. Files are read in binary with a bounded buffer: memory stays flat however large the file is.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tuneport.errors import DataError

__all__ = ["Record", "iter_records", "file_sha256", "unreadable", "LINE_ERRORS", "MAX_EXAMPLE_LINE_BYTES"]

_BUFFER = 1 << 20
_BOM = b"\xef\xbb\xbf"

# The longest line an example can need: no model tuneport trains takes more than 262,144 tokens per example (the
# bound of local.max_seq_length; OpenAI's largest is 65,536), and no token of o200k_base or cl100k_base is more than
# 128 bytes of JSON (the longest tokens are runs of spaces). A longer line cannot fit any model's context, so
# validation reports it without reading it whole or parsing it.
MAX_EXAMPLE_LINE_BYTES = 262_144 * 128

# Line-level problems a record can carry (its ``error`` field). Each is a category in validation summaries.
LINE_ERRORS = {
    "blank_line": "blank line",
    "invalid_utf8": "bytes that are not valid UTF-8",
    "invalid_json": "not valid JSON",
    "truncated_last_line": "last line is cut off (no newline and not valid JSON)",
    "line_too_long": "longer than any model's context",
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
        return Record(
            lineno, raw, error="invalid_json", detail=f"{exc.msg} at character {exc.pos + 1}", bom=bom
        )
    except RecursionError:  # pragma: no cover - orjson reports depth as JSONDecodeError; kept as a guard
        return Record(lineno, raw, error="invalid_json", detail="JSON nested too deeply", bom=bom)
    return Record(lineno, raw, obj=obj, bom=bom, newline=not is_last_without_newline)


def unreadable(path: Path) -> DataError | None:
    """Why ``path`` cannot be opened as a dataset (missing, a symlink loop, a dangling link, a folder...), or None.

    One wording for every command: a symlink loop is not "no such file", and a dangling link names its target.
    """
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return DataError(
                f"{path}: is a symbolic link loop (following the links never reaches a file)",
                hint="Point the link (or a folder link on the way) at the real file: `ls -l` shows where it goes.",
            )
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            if os.path.islink(path):
                return DataError(
                    f"{path}: is a symbolic link to {os.readlink(path)}, which does not exist",
                    hint="Point the link at the real file, or give the file's own path.",
                )
            return DataError(
                f"{path}: no such file",
                hint="Check the path; relative paths are relative to the current folder.",
            )
        return DataError(f"{path}: cannot be read ({exc.strerror})", hint="Check the file's permissions.")
    if path.is_dir():
        return DataError(f"{path}: is a folder, not a JSONL file", hint="Give the path of a .jsonl file.")
    return None


def _too_long(lineno: int, head: bytes, rest: int, newline: bool, limit: int) -> Record:
    size = len(head) + rest
    return Record(
        lineno,
        b"",
        error="line_too_long",
        detail=(
            f"the line is {size:,} bytes ({size / (1 << 20):,.1f} MiB), over the {limit:,} bytes an example can "
            "need; it was not parsed"
        ),
        bom=lineno == 1 and head.startswith(_BOM),
        newline=newline,
    )


def _skip_rest_of_line(fh: Any) -> tuple[int, bool]:
    """Read past the rest of the current line in bounded chunks: (bytes skipped, whether a newline ended it)."""
    skipped = 0
    while True:
        chunk = fh.readline(_BUFFER)
        if not chunk:
            return skipped, False
        if chunk.endswith(b"\n"):
            return skipped + len(_strip_eol(chunk)), True
        skipped += len(chunk)


def iter_records(path: str | Path, *, max_line_bytes: int | None = None) -> Iterator[Record]:
    """Yield every line of ``path`` as a :class:`Record`, in order, never raising on content.

    Raises :class:`~tuneport.errors.DataError` only when the file itself cannot be opened.
    Line endings ``\\n`` and ``\\r\\n`` are both accepted. A final newline is optional. With ``max_line_bytes``,
    a longer line is skipped in bounded chunks and yielded as a ``line_too_long`` record (no ``raw``, not parsed),
    so memory stays bounded by that size whatever the file holds.
    """
    path = Path(path)
    try:
        fh = open(path, "rb", buffering=_BUFFER)  # noqa: SIM115 - closed in finally, generator-safe
    except OSError as exc:
        problem = unreadable(path)
        if problem is None:  # it exists and is a file, yet cannot be opened (permissions)
            problem = DataError(
                f"{path}: cannot be read ({exc.strerror})", hint="Check the file's permissions."
            )
        raise problem from None
    # +2: room for the line ending, so that a line of exactly max_line_bytes is read whole
    limit = -1 if max_line_bytes is None else max_line_bytes + 2
    readline = fh.readline
    try:
        lineno = 0
        while chunk := readline(limit):
            lineno += 1
            ended = chunk.endswith(b"\n")
            raw = _strip_eol(chunk)
            if max_line_bytes is not None and len(raw) > max_line_bytes:
                if ended:
                    yield _too_long(lineno, raw, 0, True, max_line_bytes)
                else:
                    rest, newline = _skip_rest_of_line(fh)
                    yield _too_long(lineno, chunk, rest, newline, max_line_bytes)
                continue
            yield _classify(raw, lineno, not ended)  # a line without a newline is the file's last
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
