"""What the machine gives a run: torch threads, the device, the dtype, and disk space for the outputs.

Checked before any model is loaded, so a run that cannot fit or cannot run here fails at once with a
:class:`~tuneport.errors.SpecError` naming the option to change.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneport.errors import SpecError
from tuneport.local_backend.training.train_config import TrainConfig

__all__ = [
    "pick_num_threads",
    "torch_threads",
    "resolve_device",
    "torch_dtype",
    "estimate_output_bytes",
    "dir_bytes",
    "check_disk",
]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _busy_cores(sample_s: float = 0.25) -> float | None:
    """Cores other processes keep busy, from two /proc/stat samples (we sleep in between, so it's not us)."""

    def read() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            parts = [int(x) for x in fh.readline().split()[1:]]
        idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
        return sum(parts), idle

    try:
        total1, idle1 = read()
        time.sleep(sample_s)
        total2, idle2 = read()
    except (OSError, ValueError, IndexError):
        return None
    if total2 <= total1:
        return None
    busy_share = 1.0 - (idle2 - idle1) / (total2 - total1)
    ncpu = os.cpu_count() or 1  # /proc/stat covers every online core
    return busy_share * ncpu


def pick_num_threads(requested: int | None = None) -> tuple[int, str | None]:
    """Torch threads for this run and, when it had to differ from the request, why.

    More threads than free cores is disastrous on these machines (one busy core made a run 27x slower), so the
    default is the number of cores nobody else is using, and a request above the core count is capped.
    """
    cores = _cpu_count()
    if requested is not None:
        if requested > cores:
            return cores, f"num_threads {requested} exceeds the {cores} cores available; using {cores}"
        return requested, None
    busy = _busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # pragma: no cover
            busy = 0.0
    free = max(1, min(cores, int(cores - busy + 0.5)))
    return free, None


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, restoring the caller's setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(config: TrainConfig) -> str:
    """``cuda`` or ``cpu`` for this run; refuses what this machine cannot do (qlora without a GPU, ...)."""
    import torch

    has_cuda = torch.cuda.is_available()
    if config.finetuning_type == "qlora":
        if not has_cuda or config.device == "cpu":
            raise SpecError(
                "local training option `finetuning_type`: qlora (4-bit base weights) needs a CUDA GPU; "
                "this machine has none"
                if not has_cuda
                else "qlora cannot run with device: cpu",
                hint="Use finetuning_type: lora on CPU (same adapter format, full-precision base).",
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise SpecError(
                "local training option `finetuning_type`: qlora needs the bitsandbytes package",
                hint="pip install bitsandbytes",
            ) from exc
    if config.device == "cuda" and not has_cuda:
        raise SpecError("local training option `device`: cuda was asked for but no CUDA GPU is available")
    return "cuda" if has_cuda and config.device in ("auto", "cuda") else "cpu"


def torch_dtype(config: TrainConfig, device: str) -> Any:
    """The torch dtype of the weights: ``auto`` is bfloat16 on a GPU that has it, float32 otherwise."""
    import torch

    if config.dtype == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32  # exact and deterministic on CPU; pick bfloat16 explicitly for speed
    if config.dtype == "float16" and device == "cpu":
        raise SpecError(
            "local training option `dtype`: float16 training is not supported on CPU; use bfloat16"
        )
    return getattr(torch, config.dtype)


def dir_bytes(path: Path, patterns: tuple[str, ...] = ("*.safetensors", "*.bin", "*.pt")) -> int:
    """Bytes of the weight files directly in ``path`` (a model folder)."""
    total = 0
    for pattern in patterns:
        total += sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())
    return total


def estimate_output_bytes(
    config: TrainConfig, model_bytes: int, trainable_params: int, n_checkpoints: int, merge: bool
) -> int:
    """Disk the run will write: checkpoints (weights + Adam's two moments) and the final outputs."""
    if config.uses_lora:
        per_checkpoint = trainable_params * (4 + 8)
        final = trainable_params * 4 + (model_bytes if merge else 0)
    else:
        per_checkpoint = model_bytes + trainable_params * 8
        final = model_bytes
    return per_checkpoint * n_checkpoints + final


def check_disk(config: TrainConfig, needed: int) -> None:
    """Refuse to start when the outputs (with a 10% margin) would not fit on the output folder's disk."""
    out = Path(config.output_dir)
    probe = out
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    margin = int(needed * 1.1) + (16 << 20)
    if free < margin:
        raise SpecError(
            f"not enough disk space for the outputs in {out}: about {margin / 1e9:.2f} GB needed "
            f"(checkpoints and final model), {free / 1e9:.2f} GB free",
            hint="Free some space, choose another output_dir, keep fewer checkpoints (keep_checkpoints), "
            "or train LoRA instead of full fine-tuning.",
        )
