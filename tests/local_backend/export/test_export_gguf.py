"""GGUF files written with the gguf package, read back with its reader: metadata, vocabulary, tensors, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from tuneport.local_backend.export.errors import ExportError  # noqa: E402
from tuneport.local_backend.export.gguf_file import (  # noqa: E402
    gguf_plan,
    permute_rotary,
    rope_settings,
    write_gguf,
)
from tuneport.local_backend.export.gguf_vocab import pre_tokenizer_name, read_vocab  # noqa: E402
from tuneport.local_backend.export.turns import render_with, turn_format  # noqa: E402


def _field(reader, key: str):
    f = reader.fields[key]
    if f.types and f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
        return [bytes(f.parts[i]).decode("utf-8") if f.types[-1] == gguf.GGUFValueType.STRING else f.parts[i][0]
                for i in f.data]  # fmt: skip
    return f.parts[f.data[0]][0]


@pytest.fixture(scope="module")
def written(tiny_model: Path, tokenizer, tmp_path_factory) -> dict:
    out = {}
    fmt = turn_format(render_with(tokenizer))
    vocab = read_vocab(tiny_model, tokenizer, 1024, fmt.end_of_turn)
    for quant in ("f16", "q8_0"):
        path = tmp_path_factory.mktemp(quant) / "model.gguf"
        write_gguf(gguf_plan(tiny_model, quant), vocab, path, name="tiny-test")
        out[quant] = gguf.GGUFReader(path)
    return out


def test_metadata_follows_the_llama_conventions(written, tokenizer) -> None:
    r = written["f16"]
    assert _field(r, "general.architecture") == "llama" and _field(r, "general.name") == "tiny-test"
    expected = {"llama.block_count": 2, "llama.embedding_length": 128, "llama.feed_forward_length": 352,
                "llama.attention.head_count": 4, "llama.attention.head_count_kv": 4, "llama.context_length": 2048,
                "llama.rope.dimension_count": 32, "llama.vocab_size": 1024}  # fmt: skip
    for key, value in expected.items():
        assert _field(r, key) == value, key
    assert _field(r, "llama.rope.freq_base") == pytest.approx(10000.0)
    assert _field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert _field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_F16
    assert _field(written["q8_0"], "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0


def test_vocabulary_special_tokens_and_chat_template(written, tokenizer, tiny_model) -> None:
    r = written["f16"]
    assert _field(r, "tokenizer.ggml.model") == "gpt2" and _field(r, "tokenizer.ggml.pre") == "gpt-2"
    tokens = _field(r, "tokenizer.ggml.tokens")
    vocab = tokenizer.get_vocab()
    assert len(tokens) == 1024 and all(tokens[i] == t for t, i in vocab.items())
    types = _field(r, "tokenizer.ggml.token_type")
    assert [int(types[i]) for i in range(6)] == [gguf.TokenType.CONTROL] * 6  # pad, bos, end, role tokens
    merges = _field(r, "tokenizer.ggml.merges")
    model = json.loads((tiny_model / "tokenizer.json").read_text())["model"]
    assert merges == [m if isinstance(m, str) else " ".join(m) for m in model["merges"]] and len(merges) > 100
    ids = {k: int(_field(r, f"tokenizer.ggml.{k}_token_id")) for k in ("bos", "eos", "padding", "eot")}
    assert ids == {"bos": 1, "eos": 2, "padding": 0, "eot": 2}  # <|end|> ends a turn and is the eos
    assert not _field(r, "tokenizer.ggml.add_bos_token")  # the chat template writes <|bos|> itself
    assert _field(r, "tokenizer.chat_template") == tokenizer.chat_template


def test_tensors_names_types_and_the_rotary_permutation(written, tiny_model) -> None:
    from safetensors.numpy import load_file

    hf = load_file(str(tiny_model / "model.safetensors"))
    for quant, reader in written.items():
        tensors = {t.name: t for t in reader.tensors}
        assert len(tensors) == 2 + 2 * 9 + 1
        assert {"token_embd.weight", "output_norm.weight", "output.weight", "blk.1.ffn_down.weight"} <= set(tensors)
        want = gguf.GGMLQuantizationType.F16 if quant == "f16" else gguf.GGMLQuantizationType.Q8_0
        assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
        assert tensors["blk.0.attn_q.weight"].tensor_type == want
        q = gguf.quants.dequantize(tensors["blk.0.attn_q.weight"].data, tensors["blk.0.attn_q.weight"].tensor_type)
        expected = permute_rotary(hf["model.layers.0.self_attn.q_proj.weight"], 4)
        atol = 1e-3 if quant == "f16" else 2e-3
        np.testing.assert_allclose(q.reshape(expected.shape), expected, atol=atol)
        v = gguf.quants.dequantize(tensors["blk.0.attn_v.weight"].data, tensors["blk.0.attn_v.weight"].tensor_type)
        np.testing.assert_allclose(v.reshape(128, 128), hf["model.layers.0.self_attn.v_proj.weight"], atol=atol)


def test_permutation_matches_llama_cpp_rotary_pairs() -> None:
    # One head of dim 8: HF rotates (0,4) (1,5) (2,6) (3,7); llama.cpp rotates adjacent rows (0,1) (2,3) ...
    rows = np.arange(8)[:, None] * np.ones((1, 3))
    assert permute_rotary(rows, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    two_heads = np.arange(8)
    assert permute_rotary(two_heads, 2).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_rope_is_read_from_either_config_layout() -> None:
    # transformers < 5 and the Hub's configs: rope_theta and rope_scaling at the top
    old = {"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    assert rope_settings(old) == (500000.0, {"rope_type": "llama3", "factor": 8.0})
    # transformers >= 5: rope_parameters holds both (a base read as 10000 here made llama.cpp's logits drift)
    new = {"rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}}
    assert rope_settings(new) == (500000.0, {"rope_type": "default"})
    assert rope_settings({}) == (10000.0, {})


def test_rope_base_and_llama3_factors_are_written_from_rope_parameters(tiny_model, tmp_path) -> None:
    rope = {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}  # fmt: skip
    from transformers import AutoTokenizer

    folder = _variant(tiny_model, tmp_path / "llama31", rope_parameters=rope)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    vocab = read_vocab(folder, tokenizer, 1024, turn_format(render_with(tokenizer)).end_of_turn)
    write_gguf(gguf_plan(folder, "f16"), vocab, tmp_path / "m.gguf", name="llama31")
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    assert _field(reader, "llama.rope.freq_base") == pytest.approx(500000.0)
    factors = {t.name: t for t in reader.tensors}["rope_freqs.weight"].data
    assert len(factors) == 16 and factors[0] == pytest.approx(1.0) and factors[-1] == pytest.approx(8.0)


def _variant(tiny_model: Path, dest: Path, **config_changes) -> Path:
    shutil.copytree(tiny_model, dest)
    config = json.loads((dest / "config.json").read_text())
    config.update(config_changes)
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def test_refusals_come_from_config_and_headers_before_any_weight(tiny_model, tmp_path) -> None:
    with pytest.raises(ExportError, match="architecture GPT2LMHeadModel is not one"):
        gguf_plan(_variant(tiny_model, tmp_path / "gpt2", architectures=["GPT2LMHeadModel"]), "f16")
    with pytest.raises(ExportError, match="rope scaling 'yarn'"):
        gguf_plan(_variant(tiny_model, tmp_path / "yarn", rope_scaling={"rope_type": "yarn", "factor": 4.0}), "f16")
    yarn = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}  # the layout transformers >= 5 writes
    with pytest.raises(ExportError, match="rope scaling 'yarn'"):
        gguf_plan(_variant(tiny_model, tmp_path / "yarn5", rope_parameters=yarn), "f16")
    with pytest.raises(ExportError, match="MLP has biases"):
        gguf_plan(_variant(tiny_model, tmp_path / "bias", mlp_bias=True), "q8_0")
    with pytest.raises(ExportError, match="'q4_k' is not one of f16, q8_0"):
        gguf_plan(tiny_model, "q4_k")


def test_q8_0_refuses_rows_that_are_not_whole_blocks(tiny_model, tmp_path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = _variant(tiny_model, tmp_path / "odd", intermediate_size=100)
    weights = load_file(str(folder / "model.safetensors"))
    for i in range(2):
        p = f"model.layers.{i}.mlp."
        weights[p + "gate_proj.weight"] = weights[p + "gate_proj.weight"][:100]
        weights[p + "up_proj.weight"] = weights[p + "up_proj.weight"][:100]
        weights[p + "down_proj.weight"] = np.ascontiguousarray(weights[p + "down_proj.weight"][:, :100])
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(ExportError, match="blocks of 32 values") as exc:
        gguf_plan(folder, "q8_0")
    assert "model.layers.0.mlp.down_proj.weight (rows of 100)" in exc.value.message
    assert "--quant f16" in exc.value.hint
    assert gguf_plan(folder, "f16").quant == "f16"  # f16 takes any row size


def test_tokenizers_llama_cpp_cannot_split_the_same_way_are_refused(tiny_model) -> None:
    base = json.loads((tiny_model / "tokenizer.json").read_text())
    assert pre_tokenizer_name(base, tiny_model) == "gpt-2"
    spm = {**base, "model": {**base["model"], "byte_fallback": True}}
    with pytest.raises(ExportError, match="byte fallback"):
        pre_tokenizer_name(spm, tiny_model)
    unknown = {**base, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}}  # fmt: skip
    with pytest.raises(ExportError, match="no pre-tokenizer for the split regex"):
        pre_tokenizer_name(unknown, tiny_model)
    with pytest.raises(ExportError, match="normalizes text"):
        pre_tokenizer_name({**base, "normalizer": {"type": "NFKC"}}, tiny_model)
