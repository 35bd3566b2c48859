"""A model folder (safetensors + config + tokenizer) written as one GGUF file for llama.cpp, with the ``gguf`` package.

Conventions are llama.cpp's ``convert_hf_to_gguf.py`` for ``LlamaForCausalLM``: tensor names from
``gguf.get_tensor_name_map``; Q and K rows permuted from Hugging Face's rotary layout (the two halves of each head)
to llama.cpp's interleaved pairs; 1-D tensors and norms kept in F32; Llama 3 rope scaling written as the
``rope_freqs`` tensor. :func:`gguf_plan` checks everything from the config and the safetensors headers alone
(architecture, rope, biases, the quantization's block size against every row) so that a model the format
cannot take is refused before a tensor is read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneport.local_backend.export.errors import ExportError
from tuneport.local_backend.export.gguf_vocab import GGUFVocab
from tuneport.local_backend.serving.weights import safetensors_header, weight_files

__all__ = ["QUANTS", "SUPPORTED_ARCHITECTURES", "GGUFPlan", "gguf_plan", "write_gguf", "permute_rotary"]

QUANTS = ("f16", "q8_0")
QUANT_BLOCK = {"f16": 1, "q8_0": 32}  # values per block: a quantized row must hold whole blocks
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
_SKIPPED = (".rotary_emb.inv_freq",)


@dataclass(frozen=True)
class GGUFPlan:
    """What :func:`write_gguf` will write: the config, each tensor's GGUF name / shape / type."""

    folder: Path
    config: dict[str, Any]
    quant: str
    tensors: list[tuple[str, str, tuple[int, ...], str]]  # (hf name, gguf name, shape, "f32" | quant)

    @property
    def n_head(self) -> int:
        return int(self.config["num_attention_heads"])

    @property
    def n_head_kv(self) -> int:
        return int(self.config.get("num_key_value_heads") or self.n_head)

    @property
    def head_dim(self) -> int:
        return int(self.config.get("head_dim") or self.config["hidden_size"] // self.n_head)


def _refuse(folder: Path, detail: str, hint: str | None = None) -> ExportError:
    return ExportError(
        f"{folder} cannot be exported to GGUF: {detail}",
        hint=hint or "Export --format merged and convert that folder with llama.cpp's convert_hf_to_gguf.py.",
    )


def gguf_plan(folder: Path, quant: str) -> GGUFPlan:
    """Check ``folder`` can be written as GGUF at ``quant`` and say how (no weights are read)."""
    if quant not in QUANTS:
        raise ExportError(f"--quant {quant!r} is not one of {', '.join(QUANTS)}")
    config = json.loads((folder / "config.json").read_text("utf-8"))
    archs = config.get("architectures") or []
    if not any(a in SUPPORTED_ARCHITECTURES for a in archs):
        raise _refuse(folder, f"its architecture {', '.join(archs) or '(none given)'} is not one tuneport writes "
                      f"as GGUF ({', '.join(SUPPORTED_ARCHITECTURES)})")  # fmt: skip
    _, rope = rope_settings(config)
    rope_type = rope.get("rope_type", rope.get("type"))
    if rope_type not in (None, "default", "linear", "llama3"):
        raise _refuse(folder, f"its rope scaling {rope_type!r} is not written (only linear and llama3 are)")
    if config.get("mlp_bias"):
        raise _refuse(folder, "its MLP has biases, which llama.cpp's llama architecture does not load")
    import gguf  # the `gguf` extra; imported here so that planning an export fails early and clearly without it

    n_blocks = int(config["num_hidden_layers"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
    files = weight_files(folder)
    if not files:
        raise _refuse(folder, "it has no .safetensors weights")
    tensors = []
    problems = []
    block = QUANT_BLOCK[quant]
    for f in files:
        for name, info in safetensors_header(f).items():
            if name == "__metadata__" or name.endswith(_SKIPPED):
                continue
            new = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if new is None:
                raise _refuse(folder, f"its tensor {name} has no GGUF name for the llama architecture")
            shape = tuple(info["shape"])
            kind = "f32" if len(shape) <= 1 or new.endswith("_norm.weight") else quant
            if kind != "f32" and shape[-1] % block:
                problems.append(f"{name} (rows of {shape[-1]})")
            tensors.append((name, new, shape, kind))
    if problems:
        shown = ", ".join(problems[:3]) + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise _refuse(
            folder,
            f"{quant} packs rows in blocks of {block} values and {shown} is not a multiple of {block}",
            hint="Export with --quant f16, which takes any row size.",
        )
    return GGUFPlan(folder=folder, config=config, quant=quant, tensors=tensors)


def permute_rotary(weights: Any, n_head: int) -> Any:
    """Hugging Face's Q/K rows (each head: first half, second half of the rotary pairs) in llama.cpp's order
    (each head: pairs interleaved). Works on a weight (rows x cols) or a bias (rows)."""
    rows = weights.shape[0]
    return weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def rope_settings(config: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(rope base, scaling) of a config in either layout: ``rope_theta`` + ``rope_scaling`` (the Hub's configs,
    transformers < 5) or ``rope_parameters`` (what transformers >= 5 writes: the base and the scaling together).
    A non-empty ``rope_scaling`` is the scaling whichever layout holds the base."""
    params = config.get("rope_parameters")
    params = params if isinstance(params, dict) else {}
    theta = params.get("rope_theta", config.get("rope_theta"))
    scaling = config.get("rope_scaling")
    if not isinstance(scaling, dict) or not scaling:
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    return float(10000.0 if theta is None else theta), dict(scaling)


def _llama3_rope_factors(config: dict[str, Any], head_dim: int) -> list[float]:
    # convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors, on the config's rope scaling.
    base, rope = rope_settings(config)
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings", config.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old / low, old / high
    factors = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi / (1.0 / base ** (i / head_dim))
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(float(factor))
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return factors


def _arrays(plan: GGUFPlan) -> Iterator[tuple[str, Any]]:
    from safetensors import safe_open

    by_name = {hf: new for hf, new, _, _ in plan.tensors}
    for f in weight_files(plan.folder):
        with safe_open(str(f), framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                if name not in by_name:
                    continue
                data = fh.get_tensor(name).float()
                if name.endswith(("q_proj.weight", "q_proj.bias")):
                    data = permute_rotary(data, plan.n_head)
                elif name.endswith(("k_proj.weight", "k_proj.bias")):
                    data = permute_rotary(data, plan.n_head_kv)
                yield name, data.numpy()


def write_gguf(plan: GGUFPlan, vocab: GGUFVocab, out: Path, *, name: str) -> Path:
    """Write the planned model and ``vocab`` to ``out`` (through a temporary file renamed into place)."""
    import gguf
    import numpy as np

    config = plan.config
    qtype = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[plan.quant]
    ftype = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[plan.quant]
    tmp = out.with_name(f".{out.name}.partial")
    # use_temp_file: tensors past 256 MB wait in a spooled temporary file rather than in memory.
    writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA], use_temp_file=True)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(int(config.get("max_position_embeddings") or 2048))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(plan.n_head)
    writer.add_head_count_kv(plan.n_head_kv)
    rope_base, rope = rope_settings(config)
    writer.add_rope_freq_base(rope_base)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    if config.get("head_dim") is not None:
        writer.add_key_length(plan.head_dim)
        writer.add_value_length(plan.head_dim)
    writer.add_file_type(ftype)
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_rope_dimension_count(plan.head_dim)
    if rope.get("rope_type", rope.get("type")) == "linear" and "factor" in rope:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    adders = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unk": writer.add_unk_token_id,
              "pad": writer.add_pad_token_id, "eot": writer.add_eot_token_id}  # fmt: skip
    for key, token_id in vocab.special_ids.items():
        adders[key](token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    if rope.get("rope_type") == "llama3":
        factors = np.asarray(_llama3_rope_factors(config, plan.head_dim), dtype=np.float32)
        writer.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", factors)
    kinds = {hf: (new, kind) for hf, new, _, kind in plan.tensors}
    for hf_name, array in _arrays(plan):
        new, kind = kinds[hf_name]
        raw = gguf.GGMLQuantizationType.F32 if kind == "f32" else qtype
        writer.add_tensor(new, gguf.quants.quantize(array, raw), raw_dtype=raw)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    tmp.replace(out)
    return out
