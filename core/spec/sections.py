"""The sections of a job spec: OpenAI's method and hyperparameters, integrations, and tuneport's ``local``.

Frozen pydantic models that forbid unknown keys: a typo in a hyperparameter name would otherwise fall back to a
default and cost a training run. Value rules come from :mod:`tuneport.spec.fields`; the top level is
:class:`tuneport.spec.jobspec.JobSpec`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from tuneport.spec.fields import (
    AUTO,
    DEVICES,
    DTYPES,
    FINETUNING_TYPES,
    LR_SCHEDULERS,
    METHOD_TYPES,
    QUANTIZATIONS,
    BatchSize,
    Beta,
    Epochs,
    LRMultiplier,
    boolean,
    choice,
    fail,
    integer,
    number,
    packing_value,
    str_list,
    target_module_list,
    text,
)
from tuneport.spec.problems import dotted
from tuneport.spec.rates import LEARNING_RATE_MAX, LEARNING_RATE_MIN
from tuneport.spec.shorthands import normalize_method

__all__ = [
    "SpecModel",
    "SupervisedHyperparameters",
    "DPOHyperparameters",
    "SupervisedMethod",
    "DPOMethod",
    "Method",
    "WandbIntegration",
    "Integration",
    "LocalSettings",
]


class SpecModel(BaseModel):
    """Base of every spec section."""

    # Frozen: a spec is a value (it is hashed for provenance); forbid: unknown keys are errors.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _null_sections_are_defaults(cls, data: Any) -> Any:
        # "local:" with every line below it commented out is YAML null: read it as the default section.
        if isinstance(data, dict):
            empty = [
                k
                for k, v in data.items()
                if v is None and k in cls.model_fields and cls.model_fields[k].default_factory
            ]
            if empty:
                data = {k: v for k, v in data.items() if k not in empty}
        return data


# ---- OpenAI's part ------------------------------------------------------------------------------------------


class SupervisedHyperparameters(SpecModel):
    """OpenAI's FineTuneSupervisedHyperparameters: each value an explicit number or "auto"."""

    n_epochs: Epochs = AUTO
    batch_size: BatchSize = AUTO
    learning_rate_multiplier: LRMultiplier = AUTO


class DPOHyperparameters(SupervisedHyperparameters):
    """OpenAI's FineTuneDPOHyperparameters: the supervised ones plus ``beta`` (0 < beta <= 2)."""

    beta: Beta = AUTO


class SupervisedMethod(SpecModel):
    hyperparameters: SupervisedHyperparameters = Field(default_factory=SupervisedHyperparameters)


class DPOMethod(SpecModel):
    hyperparameters: DPOHyperparameters = Field(default_factory=DPOHyperparameters)


class Method(SpecModel):
    """OpenAI's FineTuneMethod, limited to the two methods tuneport can run everywhere (supervised, dpo).

    In canonical form exactly the section named by ``type`` is present (filled with defaults when absent).
    """

    type: Annotated[Literal["supervised", "dpo"], choice(METHOD_TYPES)] = "supervised"
    supervised: SupervisedMethod | None = None
    dpo: DPOMethod | None = None

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, data: Any) -> Any:
        canonical, _, problems = normalize_method(data)
        if problems:
            loc, message = problems[0]
            raise fail(f"{dotted(loc)}: {message}")
        return canonical

    @model_serializer(mode="wrap")
    def _drop_inactive(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # OpenAI's shape has only the active section; "supervised: null" would be noise in dumps and hashes.
        data = handler(self)
        return {k: v for k, v in data.items() if k == "type" or k == self.type}

    @property
    def hyperparameters(self) -> SupervisedHyperparameters | DPOHyperparameters:
        """The active method's hyperparameters."""
        section = self.dpo if self.type == "dpo" else self.supervised
        assert section is not None  # guaranteed by _canonical
        return section.hyperparameters


class WandbIntegration(SpecModel):
    project: Annotated[str, text()]
    name: Annotated[str | None, text(nullable=True)] = None
    entity: Annotated[str | None, text(nullable=True)] = None
    tags: Annotated[list[str], PlainValidator(str_list)] = Field(default_factory=list)


class Integration(SpecModel):
    """OpenAI's job integrations (Weights and Biases). Passed to OpenAI as is; the local trainer ignores them."""

    type: Annotated[Literal["wandb"], choice(["wandb"])]
    wandb: WandbIntegration


# ---- the local section --------------------------------------------------------------------------------------


class LocalSettings(SpecModel):
    """Settings only the local trainer reads (transformers + peft). OpenAI never sees them.

    Defaults follow common LoRA recipes: r=16, alpha=32 (alpha = 2r), dropout 0.05, every linear layer targeted.
    ``quantization`` defaults to "4bit" for qlora and "none" otherwise.
    """

    finetuning_type: Annotated[Literal["lora", "qlora", "full"], choice(FINETUNING_TYPES)] = "lora"
    lora_r: Annotated[int, integer(1, 1024)] = 16
    lora_alpha: Annotated[int, integer(1, 4096)] = 32
    lora_dropout: Annotated[float, number(0, 1, hi_open=True)] = 0.05
    target_modules: Annotated[Literal["all-linear"] | list[str], PlainValidator(target_module_list)] = (
        "all-linear"
    )
    use_dora: Annotated[bool, boolean()] = False
    quantization: Annotated[Literal["none", "4bit", "8bit"], choice(QUANTIZATIONS)] = "none"
    max_seq_length: Annotated[int, integer(16, 262_144)] = 2048
    packing: Annotated[Literal["auto"] | bool, PlainValidator(packing_value)] = AUTO
    learning_rate: Annotated[
        float | None, number(LEARNING_RATE_MIN, LEARNING_RATE_MAX, lo_open=True, nullable=True)
    ] = None
    lr_scheduler: Annotated[str, choice(LR_SCHEDULERS)] = "linear"
    warmup_ratio: Annotated[float, number(0, 1, hi_open=True)] = 0.0
    weight_decay: Annotated[float, number(0, 1)] = 0.0
    gradient_accumulation_steps: Annotated[int, integer(1, 1024)] = 1
    gradient_checkpointing: Annotated[bool, boolean()] = False
    num_processes: Annotated[int, integer(1, 64)] = 1
    dtype: Annotated[Literal["auto", "float32", "bfloat16", "float16"], choice(DTYPES)] = "auto"
    early_stopping_patience: Annotated[int | None, integer(1, 100, nullable=True)] = None
    save_merged: Annotated[bool, boolean()] = False
    save_steps: Annotated[int | None, integer(1, 1_000_000, nullable=True)] = None
    output_dir: Annotated[str | None, text(nullable=True)] = None
    device: Annotated[Literal["auto", "cpu", "cuda"], choice(DEVICES)] = "auto"
    trust_remote_code: Annotated[bool, boolean()] = False

    @model_serializer(mode="wrap")
    def _drop_off_opt_ins(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An opt-in added after specs were first hashed is left out while off, so that the hash (and the seed
        # derived from it) of every spec written before it stays the same.
        data = handler(self)
        if not data.get("trust_remote_code"):
            data.pop("trust_remote_code", None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_quantization(cls, data: Any) -> Any:
        if isinstance(data, dict) and "quantization" not in data and data.get("finetuning_type") == "qlora":
            data = {**data, "quantization": "4bit"}
        return data
