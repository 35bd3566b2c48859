"""Loading what a run trains: the tokenizer, the model (optionally 4-bit), LoRA on top, and the packing check.

Each step fails with a :class:`~tuneport.errors.SpecError` naming the option at fault, before any training.
Padding-free packing is trusted only after :func:`packing_is_exact` confirmed it on the real model: a model whose
attention ignores restarting positions (or a KV cache left on) would otherwise train on cross-contaminated
examples without any error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneport.errors import SpecError
from tuneport.local_backend.training.collate import PackedCollator
from tuneport.local_backend.training.train_config import TrainConfig

__all__ = [
    "quiet_transformers",
    "load_tokenizer",
    "load_model",
    "wrap_lora",
    "frozen_copy",
    "linear_module_names",
    "check_target_modules",
    "disable_cache",
    "packing_is_exact",
    "choose_packing",
]


def quiet_transformers() -> None:
    """No progress bars or info logs on stderr: progress goes through events (the runner owns the output)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_warning()


def load_tokenizer(config: TrainConfig) -> Any:
    """The model's tokenizer, with a chat template (checked) and a pad token (eos when it has none)."""
    from transformers import AutoTokenizer

    from tuneport.local_backend.training.chat_data import check_chat_template

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(config.model), trust_remote_code=config.trust_remote_code
        )
    except Exception as exc:
        raise SpecError(
            f"local training option `model`: cannot load a tokenizer from {config.model}: {exc}",
            hint="The model folder needs tokenizer files (tokenizer.json / tokenizer_config.json).",
        ) from exc
    check_chat_template(tokenizer, config.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(config: TrainConfig, dtype: Any, device: str) -> Any:
    """The base model in ``dtype`` (4-bit NF4 for qlora), its KV cache off for training."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": config.trust_remote_code}
    if config.finetuning_type == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(config.model), **kwargs)
    except Exception as exc:
        raise SpecError(f"local training option `model`: cannot load {config.model}: {exc}") from exc
    disable_cache(model)
    return model


def wrap_lora(model: Any, config: TrainConfig) -> Any:
    """The model with a LoRA (or DoRA / QLoRA) adapter to train, as the config describes it.

    Plain LoRA layers compute through :mod:`~tuneport.local_backend.training.fused_lora` (the same result and
    gradients as peft's, faster on CPU).
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.finetuning_type == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules
        if isinstance(config.target_modules, str)
        else list(config.target_modules),
        modules_to_save=list(config.modules_to_save) or None,
        use_dora=config.finetuning_type == "dora",
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    if config.finetuning_type == "lora":
        from tuneport.local_backend.training.fused_lora import fuse_lora_layers

        fuse_lora_layers(peft_model)  # same arithmetic, one autograd node per layer
    disable_cache(peft_model)
    return peft_model


def frozen_copy(model: Any) -> Any:
    """A frozen copy of ``model`` (DPO's reference for full fine-tuning)."""
    import copy

    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def linear_module_names(model: Any) -> list[str]:
    """Distinct last names of the linear layers LoRA could target (the output head excluded)."""
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in (
            "Conv1D",
            "Linear4bit",
            "Linear8bitLt",
        ):
            last = name.rsplit(".", 1)[-1]
            if last not in ("lm_head", "score", "classifier"):
                names.add(last)
    return sorted(names)


def check_target_modules(model: Any, config: TrainConfig) -> None:
    """Refuse ``target_modules`` the model does not have, listing the linear layers it does have."""
    if isinstance(config.target_modules, str):
        return
    all_names = [name for name, _ in model.named_modules()]
    available = linear_module_names(model)
    missing = [t for t in config.target_modules if not any(n == t or n.endswith("." + t) for n in all_names)]
    if missing:
        raise SpecError(
            f"local training option `target_modules`: the model {config.model} has no module named "
            f"{', '.join(missing)}; its linear layers are: {', '.join(available)}",
            hint='Pick from those names, or use "all-linear".',
        )


def disable_cache(model: Any) -> None:
    """Turn the KV cache off on a model (and a peft wrapper's base) before training it.

    With ``use_cache=True`` transformers creates a cache in ``forward`` and then skips the block-diagonal mask
    it would build from restarting ``position_ids``: packed examples silently attend to each other.
    """
    seen = set()
    m = model
    while m is not None and id(m) not in seen:
        seen.add(id(m))
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "use_cache"):
            cfg.use_cache = False
        m = getattr(m, "base_model", None) if getattr(m, "base_model", None) is not m else None
        if m is None:
            break
        inner = getattr(m, "model", None)
        if inner is not None and getattr(inner, "config", None) is not None:
            inner.config.use_cache = False


def packing_is_exact(model: Any, examples: list[Any], atol: float | None = None) -> tuple[bool, float]:
    """Whether a padding-free row gives each example the same log-probabilities as running it alone."""
    import torch

    sample = sorted(examples, key=len)[:3]
    if len(sample) < 2:
        return True, 0.0
    sample = [s if not hasattr(s, "chosen") else s.chosen for s in sample]
    param = next(model.parameters())
    if atol is None:
        atol = 1e-3 if param.dtype == torch.float32 else 0.15
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = PackedCollator()(sample)
            packed = (
                model(
                    input_ids=batch["input_ids"].to(param.device),
                    position_ids=batch["position_ids"].to(param.device),
                )
                .logits[0]
                .float()
                .log_softmax(-1)
            )
            worst = 0.0
            offset = 0
            for example in sample:
                ids = torch.tensor([example.input_ids], device=param.device)
                alone = model(input_ids=ids).logits[0].float().log_softmax(-1)
                diff = (packed[offset : offset + len(example)] - alone).abs().max().item()
                worst = max(worst, diff)
                offset += len(example)
    finally:
        model.train(was_training)
    return worst <= atol, worst


def choose_packing(
    model: Any, config: TrainConfig, examples: list[Any], device: str, emit: Callable[[str], None]
) -> tuple[bool, bool]:
    """(packing, segmented attention) for this model: packing only where it is verified exact.

    Per-example (segmented) attention is tried first and dropped for sdpa if it is not exact; ``packing: true``
    on a model that mixes packed examples is an error, ``auto`` falls back to padding with a message.
    """
    if config.packing is False:
        return False, False
    from tuneport.local_backend.training.segmented_attention import use_segmented_attention

    model.to(device)
    segmented = use_segmented_attention(model)
    exact, worst = packing_is_exact(model, examples)
    if not exact and segmented:
        model.set_attn_implementation("sdpa")
        segmented = False
        exact, worst = packing_is_exact(model, examples)
    if exact:
        return True, segmented
    if config.packing is True:
        raise SpecError(
            f"local training option `packing`: packed examples of {config.model} do not get the same "
            f"outputs as unpacked ones (max log-prob difference {worst:.3g}): this model's attention does "
            "not separate examples by position ids",
            hint='Set packing: false (or "auto", which falls back to padding).',
        )
    emit(
        f"Packing turned off: {config.model} does not separate packed examples (difference {worst:.3g}); "
        "batches are padded instead"
    )
    return False, False
