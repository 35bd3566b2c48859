"""Write what serving needs: a LoRA adapter vLLM can load, a merged model, or a full model folder.

vLLM refuses some adapters (DoRA, ``modules_to_save``, ranks outside its kernel sizes). Such a result is still
saved as an adapter (transformers + peft can use it), and a merged model is written next to it so there is always
something vLLM can serve; the reasons are returned so the trainer can say so in a warning event and in the result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneport.local_backend.training.stop_tokens import write_generation_stops
from tuneport.local_backend.training.train_config import VLLM_LORA_RANKS

__all__ = [
    "ADAPTER_FILES",
    "BASE_IDENTITY_FILE",
    "BASE_IDENTITY_KEYS",
    "unservable_reasons",
    "read_adapter_config",
    "save_adapter",
    "save_merged",
    "save_full_model",
]

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
BASE_IDENTITY_FILE = "tuneport_base.json"
BASE_IDENTITY_KEYS = ("architectures", "model_type", "hidden_size", "num_hidden_layers", "vocab_size")


def read_adapter_config(adapter_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(adapter_dir) / "adapter_config.json").read_text("utf-8"))


def unservable_reasons(adapter_config: dict[str, Any]) -> list[str]:
    """Why vLLM would refuse this adapter (empty when it can serve it)."""
    reasons = []
    if adapter_config.get("use_dora"):
        reasons.append("DoRA adapters are not supported by vLLM")
    if adapter_config.get("modules_to_save"):
        reasons.append(
            f"vLLM does not load `modules_to_save` ({', '.join(adapter_config['modules_to_save'])})"
        )
    rank = adapter_config.get("r")
    if rank not in VLLM_LORA_RANKS:
        reasons.append(f"rank {rank} is not one vLLM supports ({', '.join(map(str, VLLM_LORA_RANKS))})")
    if adapter_config.get("rank_pattern") or adapter_config.get("alpha_pattern"):
        reasons.append("per-module rank/alpha patterns are not supported by vLLM")
    return reasons


def save_adapter(peft_model: Any, out_dir: str | Path, base_model_path: str | Path) -> Path:
    """Save the adapter as safetensors, its config pointing at the local base model.

    No tokenizer goes in the folder: vLLM would then treat the adapter as carrying its own vocabulary.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out), safe_serialization=True)
    config_path = out / "adapter_config.json"
    config = json.loads(config_path.read_text("utf-8"))
    config["base_model_name_or_path"] = str(base_model_path)
    config["inference_mode"] = True
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True), "utf-8")
    _write_base_identity(out, base_model_path)
    missing = [f for f in ADAPTER_FILES if not (out / f).is_file()]
    if missing:  # pragma: no cover - peft changed its file names
        raise RuntimeError(f"peft did not write {', '.join(missing)} in {out}")
    return out


def _write_base_identity(out: Path, base_model_path: str | Path) -> None:
    """Record which architecture the adapter was trained on (:data:`BASE_IDENTITY_FILE`).

    Two bases of different families can have the same module names and shapes (a Qwen2 and a Llama of one size):
    shapes alone would let an adapter run on the wrong base, silently. Serving compares this record first.
    """
    config_file = Path(base_model_path) / "config.json"
    if not config_file.is_file():
        return
    base = json.loads(config_file.read_text("utf-8"))
    identity = {key: base.get(key) for key in BASE_IDENTITY_KEYS}
    (out / BASE_IDENTITY_FILE).write_text(json.dumps(identity, indent=2, sort_keys=True), "utf-8")


def save_merged(peft_model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """Fold the adapter into the base weights and save a plain model folder (consumes ``peft_model``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged = peft_model.merge_and_unload(safe_merge=True)
    _save_plain(merged, tokenizer, out)
    return out


def save_full_model(model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """A fully fine-tuned model: weights, config, generation config and tokenizer in one folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _save_plain(model, tokenizer, out)
    return out


def _save_plain(model: Any, tokenizer: Any, out: Path) -> None:
    # Served models should generate with a cache; training turned it off.
    model.config.use_cache = True
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    # Stop where the chat template ends a turn, not only at the tokenizer's eos (see stop_tokens).
    write_generation_stops(out, tokenizer)
