"""OpenAI's wire protocol as tuneport's two standard-library servers speak it: errors, bodies, bearer tokens.

``tuneport server`` (the fine-tuning API) and the fallback serving engine both answer OpenAI clients, so both send
the same error object (``{"error": {"message", "type", "param", "code"}}``), refuse the same malformed requests
the same way (a ``Content-Length`` that is not a number or is negative, a body over the cap, a chunk size that
is not hex: a clear 400/413, never a traceback, a 500 or a read that waits forever), and check bearer tokens in
constant time. One module, so a fix here reaches both.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from tuneport.errors import TuneportError

__all__ = [
    "ApiError",
    "BodyTooLarge",
    "BadBody",
    "CHUNK",
    "DEFAULT_READ_TIMEOUT",
    "content_length",
    "is_chunked",
    "read_body_chunks",
    "read_body",
    "parse_json_object",
    "check_bearer",
    "check_token",
    "is_loopback",
]

CHUNK = 64 * 1024
#: seconds a connection may stay silent (idle between requests, or stalled inside one) before it is closed
DEFAULT_READ_TIMEOUT = 60.0
_DIGITS = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")


class ApiError(Exception):
    """An error response in OpenAI's shape, with its HTTP status.

    ``type`` defaults to OpenAI's: ``invalid_request_error`` for 4xx, ``server_error`` for 5xx. ``close`` says the
    connection cannot serve another request (the body was not read to its end).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,  # noqa: A002 - OpenAI's field name
        param: str | None = None,
        code: str | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.close = status, message, param, code, close
        self.type = type or ("server_error" if status >= 500 else "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class BodyTooLarge(ApiError):
    """The request body is over the cap (413); ``what_to_do`` says how to send it (or raise the cap)."""

    def __init__(self, limit: int, what_to_do: str = "", *, code: str = "request_too_large") -> None:
        message = f"the request body is larger than this server accepts ({limit} bytes)"
        super().__init__(413, message + (f"; {what_to_do}" if what_to_do else ""), code=code, close=True)
        self.limit = limit


class BadBody(ApiError):
    """The request body cannot be read or parsed (400); the connection is closed after the answer."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(400, message, param=param, close=True)


def is_chunked(headers: Mapping[str, str]) -> bool:
    """Whether the body comes in chunked transfer encoding (which then wins over any ``Content-Length``)."""
    encoding = (headers.get("Transfer-Encoding") or "").strip().lower()
    if encoding and encoding != "chunked":
        raise BadBody(f"Transfer-Encoding {encoding[:40]!r} is not supported; send the body as it is or chunked")
    return encoding == "chunked"


def content_length(headers: Any) -> int | None:
    """The declared body size, or None without the header; a 400 for anything but one whole number >= 0."""
    values = headers.get_all("Content-Length") if hasattr(headers, "get_all") else None
    if values is None:
        one = headers.get("Content-Length")
        values = [] if one is None else [one]
    if not values:
        return None
    distinct = {str(v).strip() for v in values}
    if len(distinct) > 1:
        raise BadBody("the request has several different Content-Length headers; send exactly one")
    raw = distinct.pop()
    if not _DIGITS.fullmatch(raw):
        raise BadBody(
            f"Content-Length must be the body's size as a whole number of bytes (0 or more), not {raw[:40]!r}"
        )
    return int(raw)


def read_body_chunks(
    rfile: BinaryIO,
    *,
    content_length: int | None,
    chunked: bool,
    limit: int,
    too_large: str = "",
    code: str = "request_too_large",
) -> Iterator[bytes]:
    """One request's body as chunks, raising :class:`BodyTooLarge` as soon as more than ``limit`` arrived.

    The cap is counted while the body streams, so a client that lies about (or omits) its size is stopped at
    the cap all the same; ``too_large`` is the hint a 413 carries, ``code`` its error code.
    """
    total = 0

    def count(data: bytes) -> bytes:
        nonlocal total
        total += len(data)
        if total > limit:
            raise BodyTooLarge(limit, too_large, code=code)
        return data

    if chunked:
        while True:
            line = rfile.readline(1024)
            size_text = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_text):
                raise BadBody("malformed chunked transfer encoding (a chunk size is not a hex number)")
            size = int(size_text, 16)
            if size == 0:
                while rfile.readline(1024) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return
            if total + size > limit:
                raise BodyTooLarge(limit, too_large, code=code)
            remaining = size
            while remaining:
                data = rfile.read(min(CHUNK, remaining))
                if not data:
                    raise BadBody("the request body ended early")
                remaining -= len(data)
                yield count(data)
            rfile.readline(16)  # CRLF after the chunk
        return
    if content_length is None:
        return
    if content_length < 0:
        raise BadBody("Content-Length cannot be negative")
    if content_length > limit:
        raise BodyTooLarge(limit, too_large, code=code)
    remaining = content_length
    while remaining:
        data = rfile.read(min(CHUNK, remaining))
        if not data:
            raise BadBody("the request body ended before Content-Length bytes arrived")
        remaining -= len(data)
        yield count(data)


def read_body(rfile: BinaryIO, headers: Any, *, limit: int, too_large: str = "") -> bytes:
    """The whole (small) body of a request: ``Content-Length`` or chunked, at most ``limit`` bytes."""
    chunked = is_chunked(headers)
    length = None if chunked else content_length(headers)
    return b"".join(
        read_body_chunks(rfile, content_length=length, chunked=chunked, limit=limit, too_large=too_large)
    )


def parse_json_object(data: bytes, *, empty: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request body as a JSON object (``empty`` for no body); a 400 saying what is wrong otherwise."""
    if not data.strip():
        if empty is None:
            raise ApiError(400, "the request has no body; send a JSON object")
        return dict(empty)
    try:
        body = json.loads(data)
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply to be a request") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def check_bearer(authorization: str | None, token: str | None) -> None:
    """Nothing when ``token`` is None or the ``Authorization`` header carries it (compared in constant time)."""
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(
            401,
            "Missing or wrong bearer token: send `Authorization: Bearer <token>` with the token the server was "
            "started with",
            code="invalid_api_key",
        )


def check_token(token: str | None, *, source: str) -> str | None:
    """A usable bearer token, or None when none is set; an error for one no client could send back.

    Empty means "no token". A token of only whitespace, or with whitespace at either end, is refused: HTTP
    clients strip header values, so it could never match (and a blank one looks set while protecting nothing).
    """
    if token is None or token == "":
        return None
    if not token.strip():
        raise TuneportError(
            f"{source} is set but holds only whitespace, so it cannot be used as a bearer token",
            hint=f"Set {source} to a real secret (for example `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`), or unset it to listen on loopback only.",
            exit_code=2,
        )
    if token != token.strip() or any(c.isspace() or not c.isprintable() for c in token):
        raise TuneportError(
            f"{source} contains whitespace or control characters; a bearer token must be one printable word",
            hint=f"Remove the spaces or newline from {source} (a trailing newline from a file is a common cause).",
            exit_code=2,
        )
    return token


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
