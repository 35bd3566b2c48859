"""Cross-field checks: combinations of valid values that cannot run (errors, raised while loading).

Backend-dependent warnings (settings a backend ignores) live in :func:`tuneport.spec.mapping.check_spec`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuneport.spec.problems import Loc
from tuneport.spec.rates import LEARNING_RATE_MAX, base_learning_rate, learning_rate_problem
from tuneport.spec.sections import LocalSettings, Method

__all__ = ["Semantic", "semantic_problems"]


@dataclass(frozen=True)
class Semantic:
    """One cross-field problem at ``loc``; ``related`` are the other fields it depends on (when one of them was
    itself invalid and replaced by its default, the problem is not reported: it would be about the default)."""

    loc: Loc
    message: str
    related: tuple[Loc, ...] = ()


def _quantization_problems(local: LocalSettings) -> list[Semantic]:
    found: list[Semantic] = []
    quantized = local.quantization != "none"
    if local.finetuning_type == "qlora" and local.quantization != "4bit":
        found.append(
            Semantic(
                ("local", "quantization"),
                f'must be "4bit" for finetuning_type qlora (got "{local.quantization}"); '
                "for an 8-bit or unquantized base use finetuning_type: lora",
                (("local", "finetuning_type"),),
            )
        )
    if local.finetuning_type == "full" and quantized:
        found.append(
            Semantic(
                ("local", "quantization"),
                f'"{local.quantization}" cannot be combined with finetuning_type full: quantized weights cannot '
                "be trained directly; use finetuning_type: qlora or lora, or quantization: none",
                (("local", "finetuning_type"),),
            )
        )
    if local.device == "cpu" and (local.finetuning_type == "qlora" or quantized):
        qlora = local.finetuning_type == "qlora"
        what = "finetuning_type qlora" if qlora else f"quantization {local.quantization}"
        where = ("local", "finetuning_type") if qlora else ("local", "quantization")
        found.append(
            Semantic(
                where,
                f"{what} needs a CUDA GPU (bitsandbytes quantization); it is not available with device cpu. "
                "Use finetuning_type: lora with quantization: none on CPU, or device: cuda",
                (("local", "device"), ("local", "quantization"), ("local", "finetuning_type")),
            )
        )
    return found


def _learning_rate_problems(local: LocalSettings, method: Method) -> list[Semantic]:
    """The rate the local trainer would use must be one it accepts (the same check, the same words)."""
    multiplier = method.hyperparameters.learning_rate_multiplier
    if local.learning_rate is not None or multiplier == "auto":
        return []  # an absolute local.learning_rate is range-checked as a field; "auto" is 1.0
    base = base_learning_rate(method.type, local.finetuning_type)
    rate = base * float(multiplier)
    problem = learning_rate_problem(rate)
    if problem is None:
        return []
    return [
        Semantic(
            ("method", method.type, "hyperparameters", "learning_rate_multiplier"),
            f"{multiplier:g} makes the local learning rate {base:g} x {multiplier:g} = {rate:g}, and the local "
            f"trainer's learning_rate {problem}; use a multiplier of at most {LEARNING_RATE_MAX / base:g} "
            f"({method.type}, {local.finetuning_type}), or set local.learning_rate",
            (("local", "finetuning_type"), ("local", "learning_rate"), ("method", "type")),
        )
    ]


def semantic_problems(local: LocalSettings, *, method: Method, validation_file: str | None) -> list[Semantic]:
    """Every cross-field problem of a spec whose fields are each valid on their own."""
    found = _quantization_problems(local)
    if local.device == "cpu" and local.dtype == "float16":
        found.append(
            Semantic(
                ("local", "dtype"),
                "float16 training is not supported on CPU; use bfloat16 (fast on CPUs with AVX-512 bf16) or float32",
                (("local", "device"),),
            )
        )
    if local.use_dora and local.finetuning_type == "full":
        found.append(
            Semantic(
                ("local", "use_dora"),
                "DoRA is a LoRA variant; it cannot be used with finetuning_type full",
                (("local", "finetuning_type"),),
            )
        )
    if local.early_stopping_patience is not None and validation_file is None:
        found.append(
            Semantic(
                ("local", "early_stopping_patience"),
                "needs a validation_file: early stopping watches the validation loss",
                (("validation_file",),),
            )
        )
    found.extend(_learning_rate_problems(local, method))
    return found
