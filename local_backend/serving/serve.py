"""Serving base + adapters behind one OpenAI-compatible API: :func:`start_server` picks the engine and starts it.

Two engines serve the same API (``/v1/models``, ``/v1/chat/completions``, ``/v1/load_lora_adapter``,
``/v1/unload_lora_adapter``, ``/health``):

- **vLLM** (:mod:`tuneport.local_backend.serving.vllm_server`): the fast one, run as a child process;
- **transformers + peft** (:mod:`tuneport.local_backend.serving.fallback_server`): the slower fallback, in-process, for
  machines without vLLM (or ``--engine transformers``).

What both need before a weight is loaded lives beside this module, each by job: checked adapters
(:mod:`.adapters`), port / memory / install checks (:mod:`.preflight`), the run's scratch folder (:mod:`.scratch`),
the options and handle every engine shares (:mod:`.engine`); :mod:`.watch` keeps a running server current with
jobs that finish. Nothing heavy (torch, transformers, vLLM) is imported here: the CLI imports this module to
parse and check arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from tuneport.errors import ServeError
from tuneport.local_backend.serving.adapters import AdapterError, resolve_adapter
from tuneport.local_backend.serving.engine import EngineOptions, ServerHandle, served_name
from tuneport.local_backend.serving.fallback_server import FallbackServer
from tuneport.local_backend.serving.preflight import vllm_available
from tuneport.local_backend.serving.vllm_server import VLLMServer
from tuneport.models.checks import read_model_config, remote_code_reason
from tuneport.models.resolve import resolve_model

__all__ = ["Engine", "ServeError", "start_server"]


def _check_remote_code(name: str, base_path: Path, options: EngineOptions) -> None:
    """Refuse, before any engine starts, a model whose classes live in its repository unless the user allowed it."""
    reason = remote_code_reason(read_model_config(base_path))
    if reason is not None and not options.trust_remote_code:
        raise ServeError(
            f"model {name} needs trust_remote_code: {reason}; tuneport serves a model with its repository's code "
            "only when you allow it",
            hint="Read the model repository's Python files, then add --trust-remote-code if you trust them (the "
            "job that trained it had `local.trust_remote_code: true`).",
            exit_code=2,
        )

Engine = Literal["vllm", "transformers", "auto"]


def start_server(
    model: str,
    adapters: Sequence[str] = (),
    *,
    engine: Engine = "auto",
    options: EngineOptions | None = None,
    startup_timeout: float = 300.0,
    **option_fields: Any,
) -> ServerHandle:
    """Start a server for ``model`` (a folder or ``tiny-chat``) plus ``adapters`` and return once it is healthy.

    ``engine="auto"`` uses vLLM where it is importable and the transformers fallback otherwise. ``adapters`` are
    ``--adapter`` values (``NAME=JOB_ID``, ``NAME=PATH``, or a bare job id / path). ``options`` (or its fields
    given as keywords: ``host=``, ``port=``, ``log=``...) are the :class:`EngineOptions` the engine runs with.
    The base model is served under :func:`served_name`: ``tiny-chat``, or the model folder's name.
    """
    options = replace(options or EngineOptions(), **option_fields)
    base_path = resolve_model(model)
    name = served_name(model, base_path)
    _check_remote_code(name, base_path, options)
    specs = [resolve_adapter(a, base_model=model, base_path=base_path) for a in adapters]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes or name in names:
        raise AdapterError(
            f"adapter name(s) used twice or equal to the base model's name: {', '.join(dupes or [name])}",
            hint="Give each adapter its own name with --adapter NAME=...",
        )
    if engine == "auto":
        engine = "vllm" if vllm_available() else "transformers"
        if engine == "transformers":
            options.say("vLLM is not installed here: using the slower transformers fallback engine")
    if engine == "vllm":
        return VLLMServer(name, base_path, specs, options).start(timeout=startup_timeout)
    if engine == "transformers":
        return FallbackServer(name, base_path, specs, options).start()
    raise ServeError(f"unknown engine {engine!r}", hint="Use --engine vllm, transformers or auto.")
