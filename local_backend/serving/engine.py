"""What every serving engine shares: its options, the handle it returns, how it binds and names what it serves.

Both engines (:mod:`~tuneport.local_backend.serving.vllm_server` and
:mod:`~tuneport.local_backend.serving.fallback_server`) take one :class:`EngineOptions` and return a
:class:`ServerHandle`; :func:`~tuneport.local_backend.serving.serve.start_server` picks the engine. One options
type, so a new flag is added once and every engine sees it (or refuses it, by name).

Binding follows ``tuneport server``'s rule: loopback by default; any other address needs a bearer token, which
every request except ``/health`` must then carry. The address reported is the one bound, and what a client sees
of the models are their names, never the folders they were loaded from.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tuneport.errors import ServeError
from tuneport.local_backend.protocol import check_token, is_loopback
from tuneport.local_backend.serving.adapters import AdapterSpec
from tuneport.models.resolve import TINY_MODEL_NAME

__all__ = [
    "EngineOptions",
    "ServerHandle",
    "ServerStartError",
    "ServerCrashedError",
    "TOKEN_ENV",
    "is_wildcard",
    "served_name",
]

#: where ``tuneport serve`` reads its bearer token (``tuneport server --serve-url`` forwards with the same one)
TOKEN_ENV = "TUNEPORT_SERVE_API_KEY"


class ServerStartError(ServeError):
    """The inference server did not become healthy (it exited, or ``/health`` never answered in time)."""

    default_hint = "Read the server log shown above; `tuneport serve --engine transformers` needs no vLLM."


class ServerCrashedError(ServeError):
    """The inference server process exited while it was serving."""

    default_hint = (
        "Read the server log tail above; restart with `tuneport serve ...` once the cause is fixed."
    )


def is_wildcard(host: str) -> bool:
    """True for an address that listens on every interface (``0.0.0.0``, ``::``)."""
    return host.strip("[]") in ("0.0.0.0", "::", "")


def served_name(model: str, base_path: Path) -> str:
    """The name requests use for the base model: ``tiny-chat``, or the model folder's own name (never its path)."""
    if model == TINY_MODEL_NAME:
        return model
    return base_path.name or "model"


@dataclass(frozen=True)
class EngineOptions:
    """Everything a server is started with, whichever engine runs it.

    ``token``: the bearer token requests must carry (required off loopback). ``runtime_slots``: vLLM LoRA slots
    kept for adapters loaded later (``--watch-jobs``) when ``max_loras`` is not given. ``extra_args``: flags
    passed to vLLM verbatim (the transformers engine takes none). ``trust_remote_code``: let the engine run the
    model repository's own Python code (a model whose config maps its classes there is refused without it).
    ``log``: a callable taking one progress line.
    """

    host: str = "127.0.0.1"
    port: int | None = None
    token: str | None = field(default=None, repr=False)
    max_loras: int | None = None
    max_lora_rank: int | None = None
    max_model_len: int | None = None
    tensor_parallel_size: int | None = None
    extra_args: tuple[str, ...] = ()
    runtime_slots: int = 0
    trust_remote_code: bool = False
    home: Path | None = None
    log: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        object.__setattr__(self, "token", check_token(self.token, source=f"the serving token ({TOKEN_ENV})"))
        if not is_loopback(self.host) and self.token is None:
            raise ServeError(
                f"refusing to serve on {self.host}: anyone who can reach it could use (and load adapters into) "
                "the server, with no authentication",
                hint=f"Set a bearer token (--api-key or {TOKEN_ENV}) to listen beyond this machine, or keep the "
                "default --host 127.0.0.1.",
                exit_code=2,
            )

    def say(self, line: str) -> None:
        """Pass a progress line to ``log`` (when one is set)."""
        if self.log is not None:
            self.log(line)

    def local_host(self) -> str:
        """The address this machine's own requests (health checks, the CLI's) go to."""
        return "127.0.0.1" if is_wildcard(self.host) else self.host

    def listen_address(self, port: int) -> str:
        """``host:port`` as bound (``0.0.0.0:8000`` for every interface), for what the server reports."""
        host = self.host if self.host else "0.0.0.0"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def base_url(self, port: int) -> str:
        """The ``/v1`` URL a client on this machine uses (the wildcard address is reached over loopback)."""
        host = self.local_host()
        host = f"[{host.strip('[]')}]" if ":" in host else host
        return f"http://{host}:{port}/v1"

    def auth_headers(self) -> dict[str, str]:
        """Headers this process's own requests to the server carry."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


class ServerHandle(Protocol):
    """What a running server offers, whichever engine runs it."""

    engine: str
    base_url: str  # ends in /v1; reachable from this machine
    listen: str  # host:port as bound
    model: str  # the base model's name in requests
    options: EngineOptions

    def models(self) -> list[str]: ...
    def load_adapter(self, name: str, path: str | os.PathLike[str]) -> AdapterSpec: ...
    def unload_adapter(self, name: str) -> None: ...
    def check(self) -> None: ...
    def wait(self) -> int: ...
    def stop(self) -> None: ...
