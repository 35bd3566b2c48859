"""The fallback engine's model: a base plus named LoRA adapters in one peft model, generating one request at a time.

Adapters are peft multi-adapter: one :class:`peft.PeftModel` holds them all; a request selects one with
``set_adapter`` or runs the base inside ``disable_adapter()``. Greedy output equals vLLM's token for token in fp32.
torch, transformers and peft are imported only when an engine is built (the CLI must start instantly).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tuneport.local_backend.protocol import ApiError
from tuneport.local_backend.serving.adapters import AdapterError, AdapterSpec
from tuneport.local_backend.training.stop_tokens import turn_end_ids

__all__ = ["TransformersEngine", "stop_index", "model_not_found"]


def model_not_found(model: str) -> ApiError:
    """The one answer for a model this server does not serve (whatever it names: no probing of paths)."""
    return ApiError(404, f"The model `{model[:200]}` does not exist.", param="model", code="model_not_found")


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
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = model
        self.base_path = Path(base_path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        remote = {"trust_remote_code": trust_remote_code}
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.base_path), **remote)
        self.model: Any = AutoModelForCausalLM.from_pretrained(str(self.base_path), dtype=dtype, **remote).to(
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
        ids.update(turn_end_ids(self.tokenizer))  # where the template ends a turn, when that is not the eos
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
        """``/v1/models`` entries: names only (``root`` is the name too, as for a hub model: no folder shown)."""

        def card(name: str, parent: str | None) -> dict[str, Any]:
            return {"id": name, "object": "model", "created": self.created, "owned_by": "tuneport",
                    "root": name, "parent": parent, "max_model_len": self.max_model_len}  # fmt: skip

        return [card(self.name, None)] + [card(a.name, self.name) for a in self.adapters.values()]

    # -- requests ---------------------------------------------------------------------------------------------

    def prompt_ids(self, messages: Any) -> list[int]:
        if not isinstance(messages, list) or not messages:
            raise ApiError(
                400, "`messages` must be a non-empty list of {role, content} objects", param="messages"
            )
        try:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except (
            Exception
        ) as exc:  # the template's own errors (unsupported roles, ...) are the caller's problem
            raise ApiError(400, f"the chat template rejected the messages: {exc}", param="messages") from None
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
                raise ApiError(
                    400, f"`{key}` must be a{'n integer' if kind is int else ' number'}", param=key
                )
            if not lo <= value <= hi:
                raise ApiError(400, f"`{key}` must be between {lo:g} and {hi:g}, got {value}", param=key)
            return kind(value)

        room = self.max_model_len - prompt_len
        if room <= 0:
            raise ApiError(
                400,
                f"the prompt has {prompt_len} tokens, at or above this model's maximum context length "
                f"({self.max_model_len})",
                param="messages",
            )
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        max_tokens = room if max_tokens is None else number(key, None, 1, 1 << 30, int)
        if max_tokens > room:
            raise ApiError(
                400,
                f"`{key}` is {max_tokens}, but the prompt has {prompt_len} tokens and the context is "
                f"{self.max_model_len}: at most {room} can be generated",
                param=key,
            )
        stop = body.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
            raise ApiError(400, "`stop` must be a string or a list of non-empty strings", param="stop")
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
        raise model_not_found(model)

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
        cut = stop_index(text, params["stop"])
        if cut is not None:
            return text[:cut], "stop", tokens
        return text, "stop" if ended_on_eos else "length", tokens


def stop_index(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None
