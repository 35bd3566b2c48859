"""Padding-free batches are exact -- and the use_cache trap that silently breaks them."""

from __future__ import annotations

import pytest
import torch

from tuneport.local_backend.training.chat_data import IGNORE_INDEX, RenderedExample, render_with_labels
from tuneport.local_backend.training.collate import PackedCollator, PaddingCollator, pad_efficiency
from tuneport.local_backend.training.model_setup import disable_cache, packing_is_exact


def _examples(tokenizer) -> list[RenderedExample]:
    convs = [
        [
            {"role": "user", "content": "Refund my order please"},
            {"role": "assistant", "content": "billing, high"},
        ],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "other, low"}],
        [
            {"role": "system", "content": "You triage support tickets for Acme."},
            {"role": "user", "content": "The dashboard is blank in Chrome since this morning."},
            {"role": "assistant", "content": "technical, urgent"},
        ],
    ]
    return [render_with_labels(tokenizer, c) for c in convs]


@pytest.fixture(scope="module")
def model(tiny_model):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    m.eval()
    return m


def test_packed_collator_restarts_positions_and_masks_boundaries(tokenizer) -> None:
    exs = _examples(tokenizer)
    batch = PackedCollator()(exs)
    lengths = [len(e) for e in exs]
    assert batch["input_ids"].shape == (1, sum(lengths))
    assert "attention_mask" not in batch  # a mask would disable the block-diagonal construction
    expected_pos = [p for n in lengths for p in range(n)]
    assert batch["position_ids"][0].tolist() == expected_pos
    starts = [sum(lengths[:k]) for k in range(len(lengths))]
    assert all(batch["labels"][0, s].item() == IGNORE_INDEX for s in starts)
    flat = [x for e in exs for x in [IGNORE_INDEX, *e.labels[1:]]]
    assert batch["labels"][0].tolist() == flat


def test_padding_collator_pads_right_with_mask(tokenizer) -> None:
    exs = _examples(tokenizer)
    batch = PaddingCollator(pad_token_id=0)(exs)
    longest = max(len(e) for e in exs)
    assert batch["input_ids"].shape == (3, longest)
    for row, e in enumerate(exs):
        n = len(e)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (longest - n)
        assert batch["labels"][row, n:].eq(IGNORE_INDEX).all()
        assert batch["input_ids"][row, :n].tolist() == e.input_ids


def _packed_vs_alone(model, exs) -> float:
    batch = PackedCollator()(exs)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        worst, offset = 0.0, 0
        for e in exs:
            alone = model(input_ids=torch.tensor([e.input_ids])).logits[0]
            worst = max(worst, (packed[offset : offset + len(e)] - alone).abs().max().item())
            offset += len(e)
    return worst


def test_packed_logits_equal_per_example_logits_with_cache_off(model, tokenizer) -> None:
    disable_cache(model)
    assert _packed_vs_alone(model, _examples(tokenizer)) < 1e-4
    ok, worst = packing_is_exact(model, _examples(tokenizer))
    assert ok and worst < 1e-4


def test_trap_use_cache_true_lets_packed_examples_attend_to_each_other(model, tokenizer) -> None:
    """transformers 5.x builds the block-diagonal mask only without a cache: with use_cache=True it is skipped."""
    model.config.use_cache = True
    try:
        assert _packed_vs_alone(model, _examples(tokenizer)) > 1e-2
        ok, _ = packing_is_exact(model, _examples(tokenizer))
        assert not ok  # the trainer's pre-flight check catches it
    finally:
        disable_cache(model)


def test_pad_efficiency() -> None:
    assert pad_efficiency([10, 10, 10, 10], 2) == 1.0
    assert pad_efficiency([10, 30], 2) == pytest.approx(40 / 60)


def test_per_example_attention_is_exact_and_matches_the_masked_path(model, tokenizer) -> None:
    from tuneport.local_backend.training.segmented_attention import NAME, use_segmented_attention

    disable_cache(model)
    exs = _examples(tokenizer)
    masked = _packed_vs_alone(model, exs)
    batch = PackedCollator()(exs)
    with torch.no_grad():
        before = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
    assert use_segmented_attention(model) and model.config._attn_implementation == NAME
    try:
        assert _packed_vs_alone(model, exs) < 1e-4
        with torch.no_grad():
            after = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
            padded = PaddingCollator(0)(exs)  # padded batches fall through to the stock SDPA path
            out = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
        assert (after - before).abs().max() < 1e-4 and masked < 1e-4
        for row, e in enumerate(exs):
            alone = model(input_ids=torch.tensor([e.input_ids])).logits[0]
            assert (out[row, : len(e)] - alone).abs().max() < 1e-4
    finally:
        model.set_attn_implementation("sdpa")
