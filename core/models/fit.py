"""Will this job fit? Training memory estimated from ``config.json`` alone, against the free RAM or VRAM.

Why from the config: the answer is needed before the weights load (a 70B model does not get to fill the machine
first), and ``spec check`` gives it without torch. The estimate adds up what a LoRA / full fine-tune keeps alive:

- base weights: parameters x bytes of the dtype (4-bit NF4 linear layers for qlora; embeddings stay in dtype);
- trainable parameters (the adapter, or the whole model) with their gradients and AdamW's two moments: the
  adapter is float32 (peft upcasts it), full fine-tuning keeps the model's dtype;
- activations kept for the backward pass, per token and layer (both norms' inputs and outputs, the rotated
  queries and keys, the values, the attention output, the gated MLP's four intermediate tensors), for ``batch x
  tokens`` -- with gradient checkpointing only each layer's input plus one layer recomputed; where the adapter is
  float32 and the model is not (bf16 LoRA, QLoRA), peft's float32 copy of each adapted layer's input; on a CPU
  also one layer's attention scores and probabilities with their gradients while its backward runs (torch's CPU
  attention kernels keep no scores between layers, masked or not);
- the logits and the float32 loss tensors (logits, their float copy, log-softmax, its gradient): ``tokens x vocab``
  is often the biggest single term for small models with large vocabularies;
- a fixed runtime overhead (allocator, autograd bookkeeping; the CUDA context on a GPU).

The figures are checked against measured peaks (tests/models/test_fit_measured.py, benchmarks/bench_fit.py: on CPU
the measured peak RSS growth is 0.91-1.08x the estimate over five configurations, fp32 and bf16, with and without
gradient checkpointing). A job that does not fit is refused with the figures and the settings that would fit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from tuneport.errors import SpecError

__all__ = [
    "ModelShape",
    "FitSettings",
    "MemoryEstimate",
    "FitResult",
    "model_shape",
    "estimate_memory",
    "free_memory",
    "check_fit",
    "DTYPE_BYTES",
]

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Bytes per parameter of a bitsandbytes NF4 weight with double-quantized absmax (block 64): 4 bits + ~0.127 bits.
_NF4_BYTES = 0.5 + 0.127 / 8
CPU_OVERHEAD = 200 << 20
GPU_OVERHEAD = 600 << 20


def _first(config: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = config.get(name)
        if value is not None:
            return value
    text = config.get("text_config")  # multimodal wrappers (Gemma 3) keep the language model's dims here
    if isinstance(text, dict):
        return _first(text, *names)
    return None


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a decoder-only transformer that its training memory depends on."""

    vocab: int
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    experts: int = 1
    attention_bias: bool = False

    @property
    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one block, by module name."""
        h, q, kv, i = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.intermediate,
        )
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def linear_params(self) -> int:
        """Parameters in the linear layers of all blocks (what qlora quantizes)."""
        per_layer = 0
        for name, (n_in, n_out) in self.linear_shapes.items():
            per_layer += n_in * n_out * (self.experts if name in ("gate_proj", "up_proj", "down_proj") else 1)
        if self.attention_bias:
            per_layer += (self.heads + 2 * self.kv_heads) * self.head_dim
        return per_layer * self.layers

    def other_params(self) -> int:
        """Embeddings, the output head and the norms."""
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return embed + self.hidden * (2 * self.layers + 1)

    @property
    def params(self) -> int:
        return self.linear_params() + self.other_params()


def model_shape(config: dict[str, Any], where: str = "config.json") -> ModelShape:
    """The :class:`ModelShape` of a transformers ``config.json``; a clear error naming what is missing."""
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(config, "num_attention_heads", "n_head")
    vocab = _first(config, "vocab_size")
    missing = [n for n, v in (("hidden_size", hidden), ("num_hidden_layers", layers),
                              ("num_attention_heads", heads), ("vocab_size", vocab)) if not v]  # fmt: skip
    if missing:
        raise SpecError(
            f"cannot estimate the memory of this model: {where} has no {', '.join(missing)}",
            hint="The fit check reads a decoder-only transformers config; is this a causal language model?",
        )
    hidden, layers, heads, vocab = int(hidden), int(layers), int(heads), int(vocab)
    kv = _first(config, "num_key_value_heads", "multi_query_group_num") or heads
    head_dim = _first(config, "head_dim") or hidden // heads
    intermediate = (
        _first(config, "moe_intermediate_size", "intermediate_size", "n_inner", "ffn_dim") or 4 * hidden
    )
    experts = _first(config, "num_local_experts", "num_experts", "n_routed_experts") or 1
    tied = _first(config, "tie_word_embeddings")
    bias = bool(_first(config, "attention_bias")) or config.get("model_type") in ("qwen2", "qwen2_moe")
    return ModelShape(
        vocab=vocab, hidden=hidden, layers=layers, intermediate=int(intermediate), heads=heads,
        kv_heads=int(kv), head_dim=int(head_dim), tied=True if tied is None else bool(tied),
        experts=int(experts), attention_bias=bias,
    )  # fmt: skip


@dataclass(frozen=True)
class FitSettings:
    """The job settings the estimate depends on (``tokens``: the longest row of a batch, in tokens)."""

    dtype: str = "float32"
    finetuning_type: str = "lora"
    lora_r: int = 16
    target_modules: str | tuple[str, ...] = "all-linear"
    batch_size: int = 8
    tokens: int = 2048
    gradient_checkpointing: bool = False
    device: str = "cpu"

    def describe(self) -> str:
        gc = "with" if self.gradient_checkpointing else "without"
        return (
            f"{self.finetuning_type} in {self.dtype}, batch {self.batch_size} x {self.tokens} tokens, {gc} "
            "gradient checkpointing"
        )


@dataclass(frozen=True)
class MemoryEstimate:
    """The estimate, by part (bytes)."""

    settings: FitSettings
    params: int
    trainable: int
    weights: int
    trainable_states: int
    activations: int
    logits: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.trainable_states + self.activations + self.logits + self.overhead

    def breakdown(self) -> str:
        return (
            f"weights {_gb(self.weights)} ({self.params / 1e9:.3g}B params), trainable parameters with "
            f"gradients and optimizer states {_gb(self.trainable_states)} ({self.trainable:,} params), "
            f"activations {_gb(self.activations)}, logits and loss {_gb(self.logits)}, runtime "
            f"{_gb(self.overhead)}"
        )


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _targeted(shape: ModelShape, target_modules: str | Iterable[str]) -> list[tuple[int, int]]:
    shapes = shape.linear_shapes
    if isinstance(target_modules, str):
        names: Iterable[str] = shapes if target_modules == "all-linear" else (target_modules,)
    else:
        names = target_modules
    aliases = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
    out: list[tuple[int, int]] = []
    for name in names:
        if name in aliases:  # fused projections (Phi-3): one LoRA pair over the concatenated outputs
            parts = [shapes[p] for p in aliases[name]]
            out.append((parts[0][0], sum(p[1] for p in parts)))
        elif name in shapes:
            out.append(shapes[name])
    return out


def estimate_memory(shape: ModelShape, settings: FitSettings) -> MemoryEstimate:
    """Peak training memory of ``shape`` with ``settings``, by part (see the module docstring for the model)."""
    b = DTYPE_BYTES.get(settings.dtype, 4)
    qlora = settings.finetuning_type == "qlora"
    if qlora:
        weights = int(shape.linear_params() * _NF4_BYTES + shape.other_params() * b)
    else:
        weights = shape.params * b
    if settings.finetuning_type == "full":
        trainable = shape.params
        # Gradients and AdamW's exp_avg and exp_avg_sq, in the model's dtype.
        trainable_states = trainable * b * 3
    else:
        pairs = _targeted(shape, settings.target_modules)
        trainable = settings.lora_r * sum(i + o for i, o in pairs) * shape.layers
        trainable_states = trainable * (4 + 4 + 8)  # float32 adapter, its gradient, two moments

    tokens = settings.batch_size * settings.tokens
    q, kv, i = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.intermediate
    # Two norms (input and output each), rotated q and k, v, the attention output, the MLP's gate, up, act, product.
    per_token_layer = 4 * shape.hidden + 2 * q + 2 * kv + 4 * i
    if b < 4:  # RMSNorm computes in float32: its input is kept upcast (two norms per block)
        per_token_layer += 2 * shape.hidden * 4 // b
    per_token_layer_bytes = per_token_layer * b
    if settings.finetuning_type in ("lora", "qlora") and b < 4:
        # peft casts each adapted layer's input to the float32 adapter and keeps that copy for the backward pass
        per_token_layer_bytes += 4 * sum(n_in for n_in, _ in _targeted(shape, settings.target_modules))
    if settings.gradient_checkpointing:
        activations = tokens * (b * shape.hidden * shape.layers + 2 * per_token_layer_bytes)
    else:
        # One more layer's worth for the gradients of the activations while the backward pass runs.
        activations = tokens * per_token_layer_bytes * (shape.layers + 1)
    if settings.device == "cpu":
        # On a CPU the backward of a layer's attention materializes its scores and probabilities and their
        # gradients (batch x heads x tokens^2 each); no layer keeps them in between. Measured in bench_fit.py.
        activations += settings.batch_size * shape.heads * settings.tokens**2 * b * 4
    logits = tokens * shape.vocab * (b + 4 + 4 + 4)
    overhead = GPU_OVERHEAD if settings.device == "cuda" else CPU_OVERHEAD
    return MemoryEstimate(
        settings=settings, params=shape.params, trainable=trainable, weights=weights,
        trainable_states=trainable_states, activations=activations, logits=logits, overhead=overhead,
    )  # fmt: skip


def _cgroup_free() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, then v1), None when there is no limit."""
    candidates = (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    )
    for limit_file, usage_file in candidates:
        try:
            with open(limit_file, encoding="ascii") as fh:
                limit_text = fh.read().strip()
            with open(usage_file, encoding="ascii") as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit_text == "max" or int(limit_text) >= 1 << 60:
            return None
        return max(0, int(limit_text) - usage)
    return None


def _ram_free() -> int:
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:  # pragma: no cover - not Linux
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = _cgroup_free()
    return min(available, limit) if limit is not None else available


def _gpu_free() -> int | None:
    """Free VRAM of GPU 0: from torch when it is loaded already, else nvidia-smi; None when there is no GPU."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(0)[0])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
        return int(float(out.strip().splitlines()[0])) << 20
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def free_memory(device: str) -> tuple[int, str]:
    """(free bytes, what they are) on ``device`` ("cuda" or "cpu"); a GPU that cannot be read falls back to RAM."""
    if device == "cuda":
        gpu = _gpu_free()
        if gpu is not None:
            return gpu, "GPU memory free"
    limit = _cgroup_free()
    return _ram_free(), "RAM available" + (" (container limit)" if limit is not None else "")


@dataclass(frozen=True)
class FitResult:
    """The estimate against what is free, and the settings that would fit when it does not."""

    estimate: MemoryEstimate
    free: int
    free_label: str
    suggestions: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.estimate.total <= self.free

    def summary(self) -> str:
        verdict = "fits" if self.fits else "does NOT fit"
        return (
            f"memory: about {_gb(self.estimate.total)} needed ({self.estimate.settings.describe()}), "
            f"{_gb(self.free)} {self.free_label}: {verdict}"
        )

    def error(self, model: str) -> SpecError:
        if self.suggestions:
            hint = "Settings that would fit: " + "; ".join(self.suggestions) + "."
        else:
            hint = (
                "Nothing would fit: not batch 1, a shorter max_seq_length, gradient checkpointing or qlora; use a "
                "smaller model or a machine with more memory."
            )
        return SpecError(
            f"model {model} does not fit for training here: about {_gb(self.estimate.total)} needed "
            f"({self.estimate.settings.describe()}: {self.estimate.breakdown()}), only "
            f"{_gb(self.free)} {self.free_label}",
            hint=hint,
        )


def _suggestions(shape: ModelShape, settings: FitSettings, free: int) -> list[str]:
    """The single changes (or the first combinations) that bring the estimate under ``free``."""

    def fits(s: FitSettings) -> bool:
        return estimate_memory(shape, s).total <= free

    out: list[str] = []
    batch = settings.batch_size // 2
    while batch >= 1:
        if fits(replace(settings, batch_size=batch)):
            accum = -(-settings.batch_size // batch)
            out.append(
                f"local batch of {batch} (method hyperparameters batch_size {settings.batch_size} with "
                f"local.gradient_accumulation_steps {accum} keeps the effective batch)"
            )
            break
        batch //= 2
    tokens = settings.tokens // 2
    while tokens >= 16:
        if fits(replace(settings, tokens=tokens)):
            out.append(f"local.max_seq_length: {tokens}")
            break
        tokens //= 2
    if not settings.gradient_checkpointing:
        gc = replace(settings, gradient_checkpointing=True)
        if fits(gc):
            out.append("local.gradient_checkpointing: true")
        elif fits(replace(gc, batch_size=1)):
            out.append("local.gradient_checkpointing: true with a local batch of 1")
    if settings.finetuning_type in ("lora", "full") and settings.device == "cuda":
        q = replace(settings, finetuning_type="qlora", dtype="bfloat16", gradient_checkpointing=True)
        if fits(q):
            out.append("local.finetuning_type: qlora with gradient_checkpointing: true")
        elif fits(replace(q, batch_size=1)):
            out.append(
                "local.finetuning_type: qlora with gradient_checkpointing: true and a local batch of 1"
            )
    if settings.finetuning_type == "full" and fits(replace(settings, finetuning_type="lora")):
        out.append("local.finetuning_type: lora")
    return out


def check_fit(
    config: dict[str, Any],
    settings: FitSettings,
    *,
    free: tuple[int, str] | None = None,
    where: str = "config.json",
) -> FitResult:
    """Estimate ``settings`` on the model of ``config`` against the free memory (``free`` for tests and callers
    that know better); the result says whether it fits and, if not, what would."""
    shape = model_shape(config, where)
    estimate = estimate_memory(shape, settings)
    free_bytes, label = free if free is not None else free_memory(settings.device)
    suggestions = [] if estimate.total <= free_bytes else _suggestions(shape, settings, free_bytes)
    return FitResult(estimate, free_bytes, label, suggestions)
