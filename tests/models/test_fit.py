"""The fit estimate from config.json: parameter counts of real models, the parts, and refusals with what would fit."""

from __future__ import annotations

import pytest

from tuneport.errors import SpecError
from tuneport.models.fit import FitSettings, check_fit, estimate_memory, model_shape

QWEN25_05B = {
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
}
LLAMA3_70B = {"model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
              "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
              "tie_word_embeddings": False}  # fmt: skip
GB = 10**9


def test_parameter_counts_match_the_published_sizes() -> None:
    assert model_shape(QWEN25_05B).params == pytest.approx(494_032_768, rel=1e-3)  # Qwen2.5-0.5B: 0.49B
    assert model_shape(LLAMA3_70B).params == pytest.approx(70.55e9, rel=1e-3)  # Llama 3 70B: 70.6B


def test_the_parts_follow_the_settings() -> None:
    shape = model_shape(QWEN25_05B)
    fp32 = estimate_memory(shape, FitSettings(dtype="float32", batch_size=2, tokens=512))
    bf16 = estimate_memory(shape, FitSettings(dtype="bfloat16", batch_size=2, tokens=512))
    assert fp32.weights == 2 * bf16.weights == shape.params * 4
    # LoRA r=16 on all seven linears of 24 layers: r * (in + out) each; float32 with grads and two moments.
    per_layer = sum(i + o for i, o in shape.linear_shapes.values())
    assert fp32.trainable == 16 * per_layer * 24 and fp32.trainable_states == fp32.trainable * 16
    double = estimate_memory(shape, FitSettings(dtype="float32", batch_size=4, tokens=512))
    assert double.logits == 2 * fp32.logits and double.activations > 1.9 * fp32.activations
    ckpt = estimate_memory(
        shape, FitSettings(dtype="float32", batch_size=2, tokens=512, gradient_checkpointing=True)
    )
    assert ckpt.activations < fp32.activations / 5
    qlora = estimate_memory(shape, FitSettings(dtype="bfloat16", finetuning_type="qlora", device="cuda"))
    assert qlora.weights < bf16.weights / 2
    full = estimate_memory(
        shape, FitSettings(dtype="bfloat16", finetuning_type="full", batch_size=2, tokens=512)
    )
    assert full.trainable == shape.params and full.trainable_states == shape.params * 2 * 3


def test_an_oversized_job_is_refused_with_figures_and_what_would_fit() -> None:
    settings = FitSettings(dtype="bfloat16", batch_size=8, tokens=2048, device="cuda")
    result = check_fit(LLAMA3_70B, settings, free=(139 * GB, "GPU memory free"))
    assert not result.fits
    err = result.error("meta-llama/Llama-3.3-70B-Instruct")
    assert isinstance(err, SpecError)
    assert "meta-llama/Llama-3.3-70B-Instruct does not fit for training here" in err.message
    assert "weights 141.11 GB (70.6B params)" in err.message and "139.00 GB GPU memory free" in err.message
    assert "batch 8 x 2048 tokens" in err.message
    assert "qlora" in err.hint and err.hint.startswith("Settings that would fit")


def test_suggestions_are_settings_that_fit() -> None:
    settings = FitSettings(dtype="float32", batch_size=8, tokens=2048, device="cpu")
    need = estimate_memory(model_shape(QWEN25_05B), settings).total
    result = check_fit(QWEN25_05B, settings, free=(need // 3, "RAM available"))
    assert not result.fits
    joined = " | ".join(result.suggestions)
    assert "local batch of" in joined and "gradient_accumulation_steps" in joined
    assert "local.max_seq_length" in joined and "gradient_checkpointing" in joined
    assert "qlora" not in joined  # a CPU cannot run it
    for line in result.suggestions:
        if line.startswith("local.max_seq_length: "):
            tokens = int(line.split(": ")[1])
            small = FitSettings(dtype="float32", batch_size=8, tokens=tokens, device="cpu")
            assert estimate_memory(model_shape(QWEN25_05B), small).total <= need // 3
            big = FitSettings(dtype="float32", batch_size=8, tokens=tokens * 2, device="cpu")
            assert estimate_memory(model_shape(QWEN25_05B), big).total > need // 3  # the largest that fits


def test_nothing_fits() -> None:
    result = check_fit(LLAMA3_70B, FitSettings(device="cpu"), free=(GB, "RAM available"))
    assert not result.suggestions and "Nothing would fit" in result.error("m").hint


def test_a_config_without_dims_is_a_clear_error() -> None:
    with pytest.raises(SpecError, match="has no hidden_size, num_hidden_layers"):
        model_shape({"model_type": "mystery"}, "m/config.json")


def test_multimodal_configs_read_the_text_config() -> None:
    gemma3 = {"model_type": "gemma3", "text_config": {"hidden_size": 1152, "intermediate_size": 6912,
              "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
              "vocab_size": 262144}}  # fmt: skip
    assert model_shape(gemma3).params == pytest.approx(1.0e9, rel=0.05)  # Gemma 3 1B
