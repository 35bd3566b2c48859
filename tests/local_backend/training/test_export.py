"""Outputs: a vLLM-loadable adapter, merged models for what vLLM cannot serve, full fine-tuning folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tuneport.local_backend.training.export import unservable_reasons
from tuneport.local_backend.training.train_config import TrainConfig
from tuneport.local_backend.training.trainer import train


def _cfg(tiny_model, small_data, out: Path, **kw) -> TrainConfig:
    base = dict(
        model=tiny_model,
        training_file=small_data["train"],
        output_dir=out,
        n_epochs=1,
        max_steps=2,
        batch_size=4,
        learning_rate=5e-3,
        num_threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def test_unservable_reasons() -> None:
    assert unservable_reasons({"r": 8, "use_dora": False, "modules_to_save": None}) == []
    reasons = unservable_reasons({"r": 12, "use_dora": True, "modules_to_save": ["lm_head"]})
    assert len(reasons) == 3
    assert any("DoRA" in r for r in reasons) and any("modules_to_save" in r for r in reasons)
    assert any("rank 12" in r and "320" in r for r in reasons)


def test_lora_adapter_and_merged_model_agree(tiny_model, small_data, tmp_path, tokenizer) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    res = train(_cfg(tiny_model, small_data, tmp_path / "o", save_merged=True))
    adapter = Path(res.adapter_dir)
    assert sorted(p.name for p in adapter.iterdir() if p.suffix in (".json", ".safetensors")) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "tuneport_base.json",  # the base's architecture and sizes, checked when the adapter is served
    ]
    base = json.loads((adapter / "tuneport_base.json").read_text())
    assert base["architectures"] == ["LlamaForCausalLM"]
    assert not (adapter / "tokenizer.json").exists()  # vLLM would take the adapter for one with its own vocab
    conf = json.loads((adapter / "adapter_config.json").read_text())
    assert conf["r"] == 8 and not conf.get("use_dora") and not conf.get("modules_to_save")
    assert conf["base_model_name_or_path"] == str(tiny_model)
    assert res.unservable_reasons == [] and res.serve_as == "adapter"

    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "My invoice is wrong"}], add_generation_prompt=True
    )
    ids = list(ids["input_ids"])
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32).eval()
    base_logits = _logits(base, ids)
    with_adapter = PeftModel.from_pretrained(base, str(adapter)).eval()
    adapted = _logits(with_adapter, ids)
    assert (adapted - base_logits).abs().max() > 1e-3  # training changed something
    merged = AutoModelForCausalLM.from_pretrained(res.merged_dir, dtype=torch.float32).eval()
    assert (_logits(merged, ids) - adapted).abs().max() < 1e-4
    assert merged.config.use_cache is True  # served models generate with a cache
    assert (Path(res.merged_dir) / "tokenizer.json").is_file()


def test_dora_is_merged_automatically_with_a_warning(tiny_model, small_data, tmp_path) -> None:
    events: list[dict] = []
    res = train(_cfg(tiny_model, small_data, tmp_path / "d", finetuning_type="dora"), on_event=events.append)
    assert any("DoRA" in r for r in res.unservable_reasons)
    assert res.merged_dir and (Path(res.merged_dir) / "model.safetensors").is_file()
    assert res.serve_as == "model" and res.serve_path == res.merged_dir
    warns = [e for e in events if e.get("level") == "warn"]
    assert any("vLLM cannot serve this adapter" in e["message"] and "DoRA" in e["message"] for e in warns)
    assert res.warnings == [e["message"] for e in warns]


def test_unservable_rank_is_allowed_when_merged(tiny_model, small_data, tmp_path) -> None:
    res = train(_cfg(tiny_model, small_data, tmp_path / "r", lora_r=4, save_merged=True))
    assert any("rank 4" in r for r in res.unservable_reasons) and res.serve_as == "model"


def test_full_fine_tuning_writes_a_model_folder(tiny_model, small_data, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    res = train(_cfg(tiny_model, small_data, tmp_path / "f", finetuning_type="full", learning_rate=1e-3))
    model_dir = Path(res.model_dir)
    assert res.adapter_dir is None and res.serve_as == "model" and res.serve_path == str(model_dir)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (model_dir / name).is_file(), name
    tuned = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    diff = max((a - b).abs().max().item() for a, b in zip(tuned.parameters(), base.parameters(), strict=True))
    assert diff > 0


@pytest.mark.parametrize("bad", [{"lora_r": 7}])
def test_unservable_rank_without_merge_is_refused_before_training(
    tiny_model, small_data, tmp_path, bad
) -> None:
    from tuneport.errors import SpecError

    with pytest.raises(SpecError, match="cannot be served by vLLM") as exc:
        train(_cfg(tiny_model, small_data, tmp_path / "x", **bad))
    assert "save_merged" in exc.value.hint
