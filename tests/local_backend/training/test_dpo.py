"""DPO: the loss against its formula, per-sequence log-probs packed vs padded, a short training run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tuneport.local_backend.training.chat_data import render_with_labels
from tuneport.local_backend.training.collate import PackedCollator, PaddingCollator
from tuneport.local_backend.training.dpo import dpo_loss, sequence_logps
from tuneport.local_backend.training.model_setup import disable_cache
from tuneport.local_backend.training.train_config import TrainConfig
from tuneport.local_backend.training.trainer import train


def test_dpo_loss_matches_the_formula() -> None:
    pc, pr = torch.tensor([-3.0, -10.0]), torch.tensor([-5.0, -4.0])
    rc, rr = torch.tensor([-4.0, -9.0]), torch.tensor([-4.5, -6.0])
    beta = 0.2
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta)
    for i in range(2):
        margin = beta * ((pc[i] - rc[i]) - (pr[i] - rr[i])).item()
        assert losses[i].item() == pytest.approx(-math.log(1 / (1 + math.exp(-margin))), rel=1e-6)
    assert chosen.tolist() == pytest.approx([0.2, -0.2])
    assert rejected.tolist() == pytest.approx([-0.1, 0.4])
    # Policy equal to reference: every pair costs log 2.
    same, _, _ = dpo_loss(pc, pr, pc, pr, beta)
    assert same.tolist() == pytest.approx([math.log(2)] * 2)


def test_sequence_logps_packed_equals_padded(tiny_model, tokenizer) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32).eval()
    disable_cache(model)
    exs = [
        render_with_labels(tokenizer, [{"role": "user", "content": u}, {"role": "assistant", "content": a}])
        for u, a in [
            ("Refund please", "billing, high"),
            ("Hi", "other, low"),
            ("Site down!", "technical, urgent"),
        ]
    ]
    packed = PackedCollator(with_seq_index=True)(exs)
    padded = PaddingCollator(0, with_seq_index=True)(exs)
    with torch.no_grad():
        lp_packed = sequence_logps(
            model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits,
            packed["labels"],
            packed["seq_index"],
            3,
        )
        lp_padded = sequence_logps(
            model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits,
            padded["labels"],
            padded["seq_index"],
            3,
        )
        alone = []
        for e in exs:
            logits = model(input_ids=torch.tensor([e.input_ids])).logits[0, :-1].log_softmax(-1)
            alone.append(sum(logits[i - 1, t].item() for i, t in enumerate(e.labels) if t != -100))
    assert lp_packed.tolist() == pytest.approx(alone, abs=1e-3)
    assert lp_padded.tolist() == pytest.approx(alone, abs=1e-3)


def test_dpo_training_run(tiny_model, small_data, tmp_path: Path) -> None:
    events: list[dict] = []
    cfg = TrainConfig(
        model=tiny_model,
        training_file=small_data["dpo_train"],
        validation_file=small_data["dpo_val"],
        output_dir=tmp_path / "dpo",
        method="dpo",
        n_epochs=2,
        batch_size=4,
        learning_rate=5e-3,
        dpo_beta=0.5,
        seed=3,
        num_threads=1,
    )
    res = train(cfg, on_event=events.append)
    assert res.packing is True and res.steps == 4
    # LoRA starts as the identity (B = 0): the policy equals the reference, so the first loss is log 2.
    assert res.train_losses[0] == pytest.approx(math.log(2), abs=1e-5)
    assert res.train_losses[-1] < res.train_losses[0]
    step_data = [
        e["data"] for e in events if e.get("type") == "metrics" and "rewards/margins" in e.get("data", {})
    ]
    assert len(step_data) == 4 and step_data[-1]["rewards/margins"] > 0
    assert [c["step_number"] for c in res.checkpoints] == [2, 4]
    valid = [c["metrics"]["full_valid_loss"] for c in res.checkpoints]
    assert all(math.isfinite(v) and v > 0 for v in valid) and valid[0] != valid[1]
    assert (Path(res.adapter_dir) / "adapter_model.safetensors").is_file()

    # Padded batches give the same DPO losses (padding-free is exact for pairs too).
    padded = train(cfg.replace(output_dir=tmp_path / "dpo-padded", packing=False, validation_file=None))
    assert padded.train_losses == pytest.approx(res.train_losses, abs=1e-5)
