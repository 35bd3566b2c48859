"""Export fixtures: a LoRA adapter for tiny-chat with non-zero weights (so merging changes the logits), and a
succeeded local job in the store that points at it."""

from __future__ import annotations

from pathlib import Path

import pytest

LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneport.local_backend.training.export import save_adapter

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_MODULES))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: a trained adapter has moved it
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return save_adapter(peft_model, tmp_path_factory.mktemp("adapter") / "adapter", tiny_model)

