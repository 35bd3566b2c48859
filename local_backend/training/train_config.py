"""What one local training run needs, as plain values.

The job runner maps a spec's ``local`` section (plus OpenAI-style hyperparameters) onto :class:`TrainConfig`;
the trainer never sees the spec. Keeping this a frozen dataclass of plain values (no torch, no pydantic) means it
pickles across the runner's process boundary, hashes for provenance, and checks itself cheaply before anything
heavy is imported: every check here raises :class:`tuneport.errors.SpecError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tuneport.errors import SpecError
from tuneport.spec.jobspec import DTYPES, LR_SCHEDULERS
from tuneport.spec.rates import learning_rate_problem

__all__ = [
    "TrainConfig",
    "VLLM_LORA_RANKS",
    "LR_SCHEDULERS",
    "DTYPES",
]

# Ranks vLLM's LoRA kernels accept (``--max-lora-rank`` choices). An adapter with another rank cannot be served
# as an adapter; it must be merged into the base.
VLLM_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)

METHODS = ("sft", "dpo")
FINETUNING_TYPES = ("lora", "dora", "qlora", "full")


def _err(field_name: str, message: str, hint: str | None = None) -> SpecError:
    return SpecError(f"local training option `{field_name}`: {message}", hint=hint)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a local fine-tune needs.

    Paths are plain strings or ``Path``; ``output_dir`` receives ``checkpoints/``, ``adapter/`` (LoRA),
    ``merged/`` (when merged) or ``model/`` (full fine-tuning), and ``result.json``.

    ``packing``: True concatenates the examples of each batch into one row with positions restarting per example
    (no padding, no cross-example attention); False pads to the longest in the batch; "auto" packs when a short
    self-check on the actual model shows packed logits equal per-example logits, else pads.

    ``save_steps``: also checkpoint every N optimizer steps (for resuming a long epoch); epochs always checkpoint.
    ``num_threads``: torch CPU threads; None picks the number of currently free cores.
    ``early_stopping_patience``: stop after this many epoch evaluations whose validation loss did not improve on
    the best by more than ``early_stopping_min_delta``.
    ``max_steps``: stop after this many optimizer steps (overrides the epoch count; for smoke runs).
    ``trust_remote_code``: let transformers run the model repository's own code (only when the spec allows it).
    """

    model: str | Path
    training_file: str | Path
    output_dir: str | Path
    validation_file: str | Path | None = None
    method: Literal["sft", "dpo"] = "sft"
    finetuning_type: Literal["lora", "dora", "qlora", "full"] = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"
    modules_to_save: tuple[str, ...] = ()
    n_epochs: int = 3
    batch_size: int = 8
    learning_rate: float = 2e-4
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 2048
    packing: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = False
    seed: int = 42
    dtype: str = "auto"
    dpo_beta: float = 0.1
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    save_merged: bool = False
    save_steps: int | None = None
    keep_checkpoints: int | None = None
    num_threads: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_steps: int | None = None
    trust_remote_code: bool = False
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        # Lists are accepted for convenience and frozen into tuples so the config stays hashable.
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if isinstance(self.modules_to_save, list):
            object.__setattr__(self, "modules_to_save", tuple(self.modules_to_save))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly values (paths as strings), for result.json and provenance."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @property
    def uses_lora(self) -> bool:
        return self.finetuning_type in ("lora", "dora", "qlora")

    def validate(self) -> None:
        """Check values that need no model or data: ranges, choices, files present.

        Model-dependent checks (target modules, chat template, disk space) happen in the trainer once the model
        config is read.
        """
        if self.method not in METHODS:
            raise _err("method", f"{self.method!r} is not one of {', '.join(METHODS)}")
        if self.finetuning_type not in FINETUNING_TYPES:
            raise _err(
                "finetuning_type", f"{self.finetuning_type!r} is not one of {', '.join(FINETUNING_TYPES)}"
            )
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise _err("lr_scheduler", f"{self.lr_scheduler!r} is not one of {', '.join(LR_SCHEDULERS)}")
        if self.dtype not in DTYPES:
            raise _err("dtype", f"{self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise _err("device", f"{self.device!r} is not one of auto, cpu, cuda")
        if self.packing not in (True, False, "auto"):
            raise _err("packing", f'{self.packing!r} must be true, false or "auto"')

        def int_at_least(name: str, low: int, high: int | None = None, optional: bool = False) -> None:
            value = getattr(self, name)
            if value is None and optional:
                return
            if isinstance(value, bool) or not isinstance(value, int):
                raise _err(name, f"must be an integer, got {value!r}")
            if value < low or (high is not None and value > high):
                bound = f"between {low} and {high}" if high is not None else f"at least {low}"
                raise _err(name, f"must be {bound}, got {value}")

        def number_in(name: str, low: float, high: float, low_open: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise _err(name, f"must be a finite number, got {value!r}")
            if value < low or value > high or (low_open and value == low):
                left = "(" if low_open else "["
                raise _err(name, f"must be in {left}{low}, {high}], got {value}")

        int_at_least("n_epochs", 1, 1000)
        int_at_least("batch_size", 1, 4096)
        int_at_least("gradient_accumulation_steps", 1, 4096)
        int_at_least("max_seq_length", 16, 1 << 20)
        int_at_least("seed", 0, 2**32 - 1)
        int_at_least("early_stopping_patience", 1, optional=True)
        int_at_least("save_steps", 1, optional=True)
        int_at_least("keep_checkpoints", 1, optional=True)
        int_at_least("num_threads", 1, optional=True)
        int_at_least("max_steps", 1, optional=True)
        lr_problem = learning_rate_problem(self.learning_rate)  # the spec check refuses the same rates
        if lr_problem is not None:
            raise _err("learning_rate", lr_problem)
        number_in("warmup_ratio", 0.0, 1.0)
        number_in("weight_decay", 0.0, 1.0)
        number_in("max_grad_norm", 0.0, 1e6)
        number_in("dpo_beta", 0.0, 100.0, low_open=True)
        number_in("early_stopping_min_delta", 0.0, 1e6)
        if self.uses_lora:
            int_at_least("lora_r", 1, 4096)
            int_at_least("lora_alpha", 1, 1 << 16)
            number_in("lora_dropout", 0.0, 1.0)
            if self.lora_dropout >= 1.0:
                raise _err("lora_dropout", "must be below 1.0")
            if self.lora_r not in VLLM_LORA_RANKS and not self.save_merged:
                raise _err(
                    "lora_r",
                    f"rank {self.lora_r} cannot be served by vLLM as an adapter "
                    f"(allowed ranks: {', '.join(map(str, VLLM_LORA_RANKS))})",
                    hint="Pick an allowed rank, or set save_merged: true to serve a merged model instead.",
                )
            if isinstance(self.target_modules, str):
                if self.target_modules != "all-linear":
                    raise _err("target_modules", 'must be "all-linear" or a list of module names')
            elif not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
                raise _err(
                    "target_modules", f"must be a non-empty list of module names, got {self.target_modules!r}"
                )
        if self.early_stopping_patience is not None and self.validation_file is None:
            raise _err("early_stopping_patience", "needs a validation file to measure the validation loss")

        self._check_path(
            "model",
            self.model,
            want_dir=True,
            hint="Point `model` at a local model folder "
            "(config.json + weights + tokenizer), or use the built-in `tiny-chat`.",
        )
        self._check_path("training_file", self.training_file)
        if self.validation_file is not None:
            self._check_path("validation_file", self.validation_file)

    @staticmethod
    def _check_path(name: str, value: str | Path, want_dir: bool = False, hint: str | None = None) -> None:
        path = Path(value)
        if want_dir:
            if not path.is_dir():
                raise _err(name, f"model folder {path} does not exist", hint=hint)
            if not (path / "config.json").is_file():
                raise _err(name, f"{path} has no config.json: not a transformers model folder", hint=hint)
        elif not path.is_file():
            raise _err(name, f"file {path} does not exist")
