"""Seeded LoRA adapters that really change a model's outputs, for serving tests, benchmarks and demos.

A freshly initialised LoRA adapter has ``B = 0`` and so changes nothing: serving tests built on one would pass
even if the server silently ignored the adapter (exactly the failure the CPU mixed-batch bug produces). These
adapters draw ``B`` from a seeded generator, so each seed gives a different, reproducible model, visibly distinct
from the base under greedy decoding. No training needed: building one takes about a second.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["make_random_adapter"]

DEFAULT_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


def make_random_adapter(
    base_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    seed: int,
    rank: int = 8,
    alpha: int | None = None,
    scale: float = 0.5,
    target_modules: Sequence[str] = DEFAULT_TARGETS,
    declared_base: str | None = None,
) -> Path:
    """Save a LoRA adapter for ``base_path`` with seeded non-zero weights into ``out_dir``; return the folder.

    ``scale`` is the standard deviation of the ``B`` entries (``A`` keeps peft's init, drawn from the same seed).
    ``declared_base`` is what ``adapter_config.json`` names as the base (default: ``base_path``).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2 * rank,
        lora_dropout=0.0,
        target_modules=list(target_modules),
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(peft_model.named_parameters()):
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out), safe_serialization=True)
    config_path = out / "adapter_config.json"
    data = json.loads(config_path.read_text("utf-8"))
    data["base_model_name_or_path"] = declared_base if declared_base is not None else str(base_path)
    data["inference_mode"] = True
    config_path.write_text(json.dumps(data, indent=2, sort_keys=True), "utf-8")
    return out
