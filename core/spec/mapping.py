"""From one :class:`~tuneport.spec.jobspec.JobSpec` to each backend's parameters.

Two directions of one mapping, documented as a table in ``docs/spec.md``:

* :func:`to_openai_create_body` -- the exact body of OpenAI's ``POST /v1/fine_tuning/jobs`` (validated in the
  tests against OpenAI's published schema). Only OpenAI's own fields go out: ``backend`` and the ``local`` section
  never leave the machine.
* :func:`resolve_local_hyperparameters` -- a :class:`LocalTrainingPlan` saying what every "auto" becomes for the
  local trainer, and why (``notes``).

What does not carry over between backends is reported by :func:`check_spec` as warnings, not errors: the spec is
meant to run on either backend unchanged, so settings the chosen backend cannot honour are named, never silently
dropped. In particular an absolute ``local.learning_rate`` is never sent to OpenAI: OpenAI does not publish the base
rate its ``learning_rate_multiplier`` scales, so any conversion would be a guess. OpenAI gets the spec's
``learning_rate_multiplier`` (default "auto") and a warning says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from tuneport.errors import DataError, SpecError
from tuneport.providers.registry import provider_class, provider_names
from tuneport.spec.jobspec import SEED_MAX, JobSpec, LocalSettings, is_openai_file_id, spec_hash
from tuneport.spec.rates import AUTO_LEARNING_RATE_MULTIPLIER, BASE_LEARNING_RATES, base_learning_rate

__all__ = [
    "LocalTrainingPlan",
    "resolve_local_hyperparameters",
    "to_openai_create_body",
    "check_spec",
    "openai_warnings",
    "local_warnings",
    "auto_n_epochs",
    "auto_batch_size",
    "base_learning_rate",
    "openai_base_model",
    "OPENAI_FINE_TUNABLE_MODELS",
    "OPENAI_DPO_MODELS",
    "BASE_LEARNING_RATES",
    "DEFAULT_DPO_BETA",
]

# OpenAI's rule for "auto" epochs, from the fine-tuning data preparation cookbook: aim at ~3 passes, but see at
# least 100 and at most 25,000 examples in total.
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25

# "auto" batch size: OpenAI is reported to use about 0.2% of the training examples, at most 256. Rounded down to a
# power of two (so it splits evenly over processes and accumulation steps), at least 1.
AUTO_BATCH_FRACTION = 0.002
MAX_BATCH_SIZE = 256

DEFAULT_DPO_BETA = 0.1  # TRL's DPOConfig default

# Models OpenAI's fine-tuning API accepts (snapshot -> aliases). "ft:" models (continued fine-tuning) are accepted
# when their base is listed.
OPENAI_FINE_TUNABLE_MODELS: dict[str, tuple[str, ...]] = {
    "gpt-4.1-2025-04-14": ("gpt-4.1",),
    "gpt-4.1-mini-2025-04-14": ("gpt-4.1-mini",),
    "gpt-4.1-nano-2025-04-14": ("gpt-4.1-nano",),
    "gpt-4o-2024-08-06": ("gpt-4o",),
    "gpt-4o-mini-2024-07-18": ("gpt-4o-mini",),
    "gpt-3.5-turbo-0125": ("gpt-3.5-turbo",),
}
# Snapshots that also support DPO (OpenAI's preference fine-tuning guide).
OPENAI_DPO_MODELS = frozenset(
    {
        "gpt-4.1-2025-04-14",
        "gpt-4.1-mini-2025-04-14",
        "gpt-4.1-nano-2025-04-14",
        "gpt-4o-2024-08-06",
        "gpt-4o-mini-2024-07-18",
    }
)


# --------------------------------------------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------------------------------------------


def openai_base_model(model: str) -> str | None:
    """The fine-tunable snapshot a model name refers to (alias, snapshot, or ``ft:BASE:...``), else None."""
    name = model.split(":")[1] if model.startswith("ft:") and model.count(":") >= 1 else model
    if name in OPENAI_FINE_TUNABLE_MODELS:
        return name
    for snapshot, aliases in OPENAI_FINE_TUNABLE_MODELS.items():
        if name in aliases:
            return snapshot
    return None


def _file_id(spec: JobSpec, field: str, given: str | None) -> str | None:
    if given is not None:
        return given
    value = getattr(spec, field)
    if value is None:
        return None
    if is_openai_file_id(value):
        return value
    raise SpecError(
        f"{field}: {value!r} is a local file; OpenAI needs the id of an uploaded file",
        hint="Upload it first (`tuneport train --backend openai` does) and pass the returned file id.",
    )


def to_openai_create_body(
    spec: JobSpec, training_file_id: str | None = None, validation_file_id: str | None = None
) -> dict[str, Any]:
    """The body of OpenAI's ``POST /v1/fine_tuning/jobs`` for this spec.

    ``training_file_id`` / ``validation_file_id`` are the ids of the uploaded files; they may be left out when the
    spec already names OpenAI file ids. Hyperparameters are always sent explicitly (including "auto") so the
    request shows exactly what was asked. Never contains ``backend`` or anything from ``local``.
    """
    training = _file_id(spec, "training_file", training_file_id)
    assert training is not None
    validation = _file_id(spec, "validation_file", validation_file_id)
    kind = spec.method.type
    body: dict[str, Any] = {
        "model": spec.model,
        "training_file": training,
        "method": {"type": kind, kind: {"hyperparameters": spec.hyperparameters.model_dump(mode="json")}},
    }
    if validation is not None:
        body["validation_file"] = validation
    if spec.suffix is not None:
        body["suffix"] = spec.suffix
    if spec.seed is not None:
        body["seed"] = spec.seed
    if spec.metadata is not None:
        body["metadata"] = dict(spec.metadata)
    if spec.integrations:
        body["integrations"] = [i.model_dump(mode="json", exclude_none=True) for i in spec.integrations]
    return body


# --------------------------------------------------------------------------------------------------------------
# Local
# --------------------------------------------------------------------------------------------------------------


def auto_n_epochs(n_train_examples: int) -> int:
    """OpenAI's "auto" epochs: 3, raised so tiny sets see >= 100 examples (max 25 epochs), lowered so huge sets
    see <= 25,000 (min 1 epoch)."""
    n = n_train_examples
    if n * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n)
    if n * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n)
    return TARGET_EPOCHS


def auto_batch_size(n_train_examples: int) -> int:
    """ "auto" batch size: ~0.2% of the examples, rounded down to a power of two, clamped to [1, 256]."""
    target = n_train_examples * AUTO_BATCH_FRACTION
    size = 1
    while size * 2 <= target and size * 2 <= MAX_BATCH_SIZE:
        size *= 2
    return size


@dataclass(frozen=True)
class LocalTrainingPlan:
    """Every training setting the local trainer uses, with each "auto" resolved.

    ``batch_size`` is the effective batch (examples per optimizer step, OpenAI's meaning) and equals
    ``per_device_train_batch_size * gradient_accumulation_steps * num_processes``. LoRA fields are None for full
    fine-tuning; ``beta`` is None for supervised. ``dtype`` and ``device`` "auto" are resolved by the trainer at
    start (that needs torch). ``notes`` says what each "auto" became and why.
    """

    method: str
    model: str
    n_train_examples: int
    n_train_tokens: int | None
    n_epochs: int
    batch_size: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    num_processes: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    learning_rate: float
    base_learning_rate: float
    learning_rate_multiplier: float
    beta: float | None
    lr_scheduler: str
    warmup_ratio: float
    weight_decay: float
    finetuning_type: str
    quantization: str
    lora_r: int | None
    lora_alpha: int | None
    lora_dropout: float | None
    target_modules: str | tuple[str, ...] | None
    use_dora: bool
    max_seq_length: int
    packing: bool
    gradient_checkpointing: bool
    dtype: str
    device: str
    seed: int
    early_stopping_patience: int | None
    save_merged: bool
    output_dir: str | None
    estimated_trained_tokens: int | None
    notes: tuple[str, ...] = ()

    @property
    def uses_lora(self) -> bool:
        return self.finetuning_type in ("lora", "qlora")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        if isinstance(self.target_modules, tuple):
            data["target_modules"] = list(self.target_modules)
        return data


def resolve_local_hyperparameters(
    spec: JobSpec, n_train_examples: int, n_train_tokens: int | None = None
) -> LocalTrainingPlan:
    """What the spec means for the local trainer, given the training set's size.

    ``n_train_examples`` counts training examples (preference pairs for DPO); ``n_train_tokens`` (optional) the
    tokens in them, for the trained-token estimate (tokens x epochs, as OpenAI bills).
    """
    if isinstance(n_train_examples, bool) or not isinstance(n_train_examples, int) or n_train_examples < 1:
        raise DataError(
            f"the training set has {n_train_examples!r} examples; at least 1 is needed to plan training",
            hint="Check the training file with `tuneport data validate FILE`.",
        )
    if n_train_tokens is not None and (isinstance(n_train_tokens, bool) or n_train_tokens < 0):
        raise DataError(f"n_train_tokens must be a non-negative integer (got {n_train_tokens!r})")
    hp = spec.hyperparameters
    local: LocalSettings = spec.local
    kind = spec.method.type
    notes: list[str] = []

    if hp.n_epochs == "auto":
        n_epochs = auto_n_epochs(n_train_examples)
        notes.append(f"n_epochs auto -> {n_epochs} (OpenAI's rule for {n_train_examples} examples)")
    else:
        n_epochs = int(hp.n_epochs)

    if hp.batch_size == "auto":
        requested_batch = auto_batch_size(n_train_examples)
        notes.append(
            f"batch_size auto -> {requested_batch} (0.2% of {n_train_examples} examples, power of two in [1, 256])"
        )
    else:
        requested_batch = int(hp.batch_size)
    procs = local.num_processes
    accum = max(1, min(local.gradient_accumulation_steps, requested_batch // procs))
    if accum != local.gradient_accumulation_steps:
        notes.append(
            f"gradient_accumulation_steps lowered from {local.gradient_accumulation_steps} to {accum} "
            f"to fit batch_size {requested_batch}"
        )
    per_device = math.ceil(requested_batch / (procs * accum))
    batch = per_device * accum * procs
    if batch != requested_batch:
        notes.append(
            f"effective batch is {batch}, not {requested_batch}: it must be a multiple of "
            f"num_processes x gradient_accumulation_steps = {procs * accum}"
        )

    base_lr = base_learning_rate(kind, local.finetuning_type)
    multiplier = (
        AUTO_LEARNING_RATE_MULTIPLIER
        if hp.learning_rate_multiplier == "auto"
        else float(hp.learning_rate_multiplier)
    )
    if local.learning_rate is not None:
        learning_rate = local.learning_rate
        notes.append(f"learning_rate {learning_rate:g} from local.learning_rate (absolute)")
        if hp.learning_rate_multiplier != "auto":
            notes.append("learning_rate_multiplier is ignored locally because local.learning_rate is set")
    else:
        learning_rate = base_lr * multiplier
        source = "auto -> 1.0" if hp.learning_rate_multiplier == "auto" else f"{multiplier:g}"
        notes.append(
            f"learning_rate {learning_rate:g} = base {base_lr:g} ({kind}, {local.finetuning_type}) "
            f"x learning_rate_multiplier ({source})"
        )

    beta: float | None = None
    if kind == "dpo":
        raw_beta = spec.method.hyperparameters.beta  # type: ignore[union-attr]
        if raw_beta == "auto":
            beta = DEFAULT_DPO_BETA
            notes.append(f"beta auto -> {DEFAULT_DPO_BETA}")
        else:
            beta = float(raw_beta)

    if local.packing == "auto":
        packing = kind == "supervised"
        notes.append(
            "packing auto -> "
            + (
                "true (padding-free: examples share rows but never attend to each other)"
                if packing
                else "false (DPO keeps each chosen/rejected pair in its own row)"
            )
        )
    else:
        packing = bool(local.packing)

    if spec.seed is not None:
        seed = spec.seed
    else:
        seed = int(spec_hash(spec)[:8], 16) % (SEED_MAX + 1)
        notes.append(f"seed {seed} derived from the spec hash (set seed to choose one)")

    steps_per_epoch = math.ceil(n_train_examples / batch)
    total_steps = steps_per_epoch * n_epochs
    warmup_steps = math.ceil(local.warmup_ratio * total_steps)
    lora = local.finetuning_type != "full"
    target = local.target_modules
    return LocalTrainingPlan(
        method=kind,
        model=spec.model,
        n_train_examples=n_train_examples,
        n_train_tokens=n_train_tokens,
        n_epochs=n_epochs,
        batch_size=batch,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accum,
        num_processes=procs,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        learning_rate=learning_rate,
        base_learning_rate=base_lr,
        learning_rate_multiplier=multiplier,
        beta=beta,
        lr_scheduler=local.lr_scheduler,
        warmup_ratio=local.warmup_ratio,
        weight_decay=local.weight_decay,
        finetuning_type=local.finetuning_type,
        quantization=local.quantization,
        lora_r=local.lora_r if lora else None,
        lora_alpha=local.lora_alpha if lora else None,
        lora_dropout=local.lora_dropout if lora else None,
        target_modules=(target if isinstance(target, str) else tuple(target)) if lora else None,
        use_dora=local.use_dora and lora,
        max_seq_length=local.max_seq_length,
        packing=packing,
        gradient_checkpointing=local.gradient_checkpointing,
        dtype=local.dtype,
        device=local.device,
        seed=seed,
        early_stopping_patience=local.early_stopping_patience,
        save_merged=local.save_merged,
        output_dir=str(spec.resolve_path(local.output_dir)) if local.output_dir else None,
        estimated_trained_tokens=n_train_tokens * n_epochs if n_train_tokens is not None else None,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------------------------
# Warnings: what the chosen backend cannot honour
# --------------------------------------------------------------------------------------------------------------

_LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "use_dora")


def _changed_local_fields(spec: JobSpec) -> list[str]:
    defaults = LocalSettings()
    return [
        name for name in LocalSettings.model_fields if getattr(spec.local, name) != getattr(defaults, name)
    ]


def check_spec(spec: JobSpec, backend: str | None = None) -> list[str]:
    """Warnings for running ``spec`` on ``backend`` (default: the spec's own ``backend``).

    Errors (impossible combinations) are raised while loading; these are the things that work but not as the
    spec might suggest: settings the backend ignores, a model the backend is unlikely to accept, resources the
    machine may lack. Each warning names the field and what happens instead. What is backend-specific comes from
    the backend itself (:meth:`tuneport.providers.base.Provider.check_spec`).
    """
    backend = backend or spec.backend
    names = provider_names()
    if backend not in names:
        raise SpecError(f'backend: must be one of {", ".join(names)} (got "{backend}")')
    warnings: list[str] = []
    if spec.validation_file is not None and spec.validation_file == spec.training_file:
        warnings.append("validation_file is the training file: validation metrics will not show overfitting")
    return warnings + provider_class(backend).check_spec(spec)


def openai_warnings(spec: JobSpec) -> list[str]:
    """What OpenAI's fine-tuning API will not do as the spec says (see :func:`check_spec`)."""
    warnings: list[str] = []
    base = openai_base_model(spec.model)
    if base is None:
        known = ", ".join(a[0] for a in OPENAI_FINE_TUNABLE_MODELS.values())
        warnings.append(
            f'model: "{spec.model}" is not a model OpenAI is known to fine-tune; expect the API to refuse it '
            f"(known: {known}, their dated snapshots, and ft: models built on them)"
        )
    elif spec.method.type == "dpo" and base not in OPENAI_DPO_MODELS:
        warnings.append(f'method: OpenAI does not offer DPO for "{spec.model}"; use a gpt-4o or gpt-4.1 model')
    if spec.local.learning_rate is not None:
        warnings.append(
            f"local.learning_rate ({spec.local.learning_rate:g}) is not sent: OpenAI takes no absolute "
            "learning rate and does not publish the base its multiplier scales; it gets "
            f"learning_rate_multiplier={spec.hyperparameters.learning_rate_multiplier} instead"
        )
    ignored = [f"local.{n}" for n in _changed_local_fields(spec) if n != "learning_rate"]
    if ignored:
        warnings.append(f"ignored by OpenAI (local-only settings): {', '.join(ignored)}")
    return warnings


def local_warnings(spec: JobSpec) -> list[str]:
    """What the local trainer will not do as the spec says (see :func:`check_spec`)."""
    warnings: list[str] = []
    if spec.model.startswith(("ft:", "gpt-", "o1", "o3", "o4", "davinci-", "babbage-")):
        warnings.append(
            f'model: "{spec.model}" is an OpenAI model with no downloadable weights; the local backend needs an '
            "open model (a Hugging Face id, a local folder, or tiny-chat)"
        )
    if spec.integrations:
        warnings.append("integrations are OpenAI-only; the local trainer ignores them")
    if spec.local.learning_rate is not None and spec.hyperparameters.learning_rate_multiplier != "auto":
        warnings.append(
            "learning_rate_multiplier is ignored locally because local.learning_rate sets the rate directly"
        )
    if spec.local.device == "auto" and (
        spec.local.finetuning_type == "qlora" or spec.local.quantization != "none"
    ):
        warnings.append(
            f"local.quantization {spec.local.quantization} needs a CUDA GPU (bitsandbytes); on a CPU-only machine "
            "the job fails at start -- use finetuning_type: lora with quantization: none there"
        )
    if spec.local.finetuning_type == "full":
        defaults = LocalSettings()
        lora_set = [f"local.{n}" for n in _LORA_FIELDS if getattr(spec.local, n) != getattr(defaults, n)]
        if lora_set:
            warnings.append(f"ignored with finetuning_type full: {', '.join(lora_set)}")
        if spec.local.save_merged:
            warnings.append(
                "local.save_merged has no effect with finetuning_type full (the model is saved whole)"
            )
    return warnings
