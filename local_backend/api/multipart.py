"""multipart/form-data bodies for the local API server, parsed as they stream in: file fields go straight to disk.

Why hand-written: the server runs on the standard library (no web framework to install), and the stdlib's
``email`` / ``cgi`` parsers hold a whole body in memory. The body arrives as chunks already counted against the
server's cap (:func:`tuneport.local_backend.protocol.read_body_chunks`); each file field is capped here too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from tuneport.local_backend.protocol import BadBody, BodyTooLarge

__all__ = [
    "FormFile",
    "Form",
    "parse_multipart",
    "boundary_of",
    "safe_filename",
]

#: the largest plain (non-file) form field accepted, e.g. ``purpose``
MAX_FIELD_BYTES = 64 * 1024
_MAX_HEADER_BYTES = 16 * 1024


@dataclass
class FormFile:
    """A file field, already written to ``path``."""

    filename: str
    path: Path
    size: int
    content_type: str | None = None


@dataclass
class Form:
    """A parsed form: plain fields as text, file fields on disk."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, FormFile] = field(default_factory=dict)


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a ``Content-Type`` header, or :class:`BadBody`."""
    msg = Message()
    msg["content-type"] = content_type or ""
    if msg.get_content_type() != "multipart/form-data":
        raise BadBody(f"expected a multipart/form-data body, got {content_type or 'no Content-Type'!r}")
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 200:
        raise BadBody("the multipart/form-data Content-Type has no valid boundary")
    return boundary.encode("latin-1")


_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def safe_filename(name: str | None, default: str = "upload.jsonl") -> str:
    """A file name that is only a name: no folders, no ``..``, no control or shell characters, at most 200 chars.

    What the client sent is used only for display (``filename`` in the file object); storage names are ids.
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:200] or default


def _part_headers(raw: bytes) -> tuple[str, str | None, str | None]:
    """(field name, filename or None, content type) of one part's headers."""
    msg = Message()
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        if ":" in line:
            key, _, value = line.partition(":")
            msg[key.strip()] = value.strip()
    disposition = msg.get("content-disposition")
    if disposition is None:
        raise BadBody("a multipart part has no Content-Disposition header")
    holder = Message()
    holder["content-disposition"] = disposition
    name = holder.get_param("name", header="content-disposition")
    filename = holder.get_param("filename", header="content-disposition")
    if not isinstance(name, str) or not name:
        raise BadBody("a multipart part has no field name")
    if isinstance(filename, tuple):  # RFC 2231 encoded
        filename = filename[2]
    return name, filename if isinstance(filename, str) else None, msg.get("content-type")


def parse_multipart(
    chunks: Iterator[bytes],
    boundary: bytes,
    *,
    folder: Path,
    file_fields: tuple[str, ...],
    file_limit: int,
) -> Form:
    """Parse a multipart/form-data body; the fields named in ``file_fields`` are written under ``folder``.

    Each file may hold at most ``file_limit`` bytes (:class:`BodyTooLarge` otherwise).
    """
    return _Parser(chunks, boundary).parse(folder, file_fields, file_limit)


class _Parser:
    def __init__(self, chunks: Iterator[bytes], boundary: bytes) -> None:
        self.stream = iter(chunks)
        self.delimiter = b"\r\n--" + boundary
        self.buf = b"\r\n"  # so the first delimiter looks like every other one
        self.exhausted = False

    def fill(self) -> bool:
        if self.exhausted:
            return False
        try:
            self.buf += next(self.stream)
        except StopIteration:
            self.exhausted = True
            return False
        return True

    def parse(self, folder: Path, file_fields: tuple[str, ...], file_limit: int) -> Form:
        form = Form()
        delimiter = self.delimiter
        while (at := self.buf.find(delimiter)) < 0:  # preamble
            self.buf = self.buf[-len(delimiter) :]
            if not self.fill():
                raise BadBody("the multipart body has no part (boundary not found)")
        self.buf = self.buf[at + len(delimiter) :]
        while True:
            while len(self.buf) < 2 and self.fill():
                pass
            if self.buf.startswith(b"--"):
                # Closing delimiter: drain the epilogue so the connection stays usable.
                while self.fill():
                    self.buf = b""
                return form
            if not self.buf.startswith(b"\r\n"):
                raise BadBody("malformed multipart delimiter")
            self.buf = self.buf[2:]
            while (end := self.buf.find(b"\r\n\r\n")) < 0:
                if len(self.buf) > _MAX_HEADER_BYTES or not self.fill():
                    raise BadBody("a multipart part's headers are missing or too long")
            name, filename, content_type = _part_headers(self.buf[:end])
            self.buf = self.buf[end + 4 :]
            if name in file_fields:
                if name in form.files:
                    raise BadBody(f"the form has more than one {name!r} field")
                path = folder / f"field-{len(form.files)}"
                with open(path, "wb") as out:
                    size = self.copy_part(out.write, file_limit)
                form.files[name] = FormFile(
                    filename=safe_filename(filename), path=path, size=size, content_type=content_type
                )
            else:
                pieces: list[bytes] = []
                try:
                    self.copy_part(pieces.append, MAX_FIELD_BYTES)
                except BodyTooLarge:
                    raise BadBody(f"the form field {name!r} is longer than {MAX_FIELD_BYTES} bytes") from None
                try:
                    form.fields[name] = b"".join(pieces).decode("utf-8")
                except UnicodeDecodeError:
                    raise BadBody(f"the form field {name!r} is not UTF-8 text") from None

    def copy_part(self, write: Callable[[bytes], object], limit: int) -> int:
        """Pass the current part's data (up to the next delimiter) to ``write``; return its size."""
        size = 0
        keep = len(self.delimiter) - 1
        while True:
            at = self.buf.find(self.delimiter)
            if at >= 0:
                data, self.buf = self.buf[:at], self.buf[at + len(self.delimiter) :]
            else:
                cut = max(0, len(self.buf) - keep)
                data, self.buf = self.buf[:cut], self.buf[cut:]
            if data:
                size += len(data)
                if size > limit:
                    raise BodyTooLarge(limit)
                write(data)
            if at >= 0:
                return size
            if not self.fill():
                raise BadBody("the multipart body ended inside a part (closing boundary missing)")
