"""The tiny families through GGUF export: Llama 3 (grouped queries, eot ``<|eot_id|>`` unlike its eos) and Mistral
are written and run by llama.cpp with transformers' greedy ids; Qwen2, Gemma 3 and Phi-3 are refused up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from tuneport.fixtures.families import FAMILIES, build_family  # noqa: E402
from tuneport.local_backend.export.errors import ExportError  # noqa: E402
from tuneport.local_backend.export.run import GGUF_NAME, export_source  # noqa: E402
from tuneport.local_backend.export.source import source_from_folders  # noqa: E402

WRITTEN = ("tiny-llama3", "tiny-mistral")


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root / name) for name in FAMILIES}


def _source(folder: Path):
    return source_from_folders(job_id=f"ftjob-{folder.name}", base_model=str(folder), base_path=folder,
                               adapter=None, model=folder)  # fmt: skip


@pytest.mark.parametrize("name", sorted(set(FAMILIES) - set(WRITTEN)))
def test_architectures_llama_cpp_conversion_is_not_written_for_are_refused(family_dirs, name, tmp_path) -> None:
    with pytest.raises(ExportError, match="is not one tuneport writes as GGUF") as exc:
        export_source(_source(family_dirs[name]), "gguf", output=tmp_path / "g")
    assert "--format merged" in exc.value.hint and not (tmp_path / "g").exists()


def test_llama3_eot_is_the_turn_end_and_the_modelfile_stops_there(family_dirs, tmp_path) -> None:
    from transformers import AutoTokenizer

    folder = family_dirs["tiny-llama3"]
    tok = AutoTokenizer.from_pretrained(str(folder))
    result = export_source(_source(folder), "ollama", output=tmp_path / "o")
    assert result.stops == ["<|eot_id|>", tok.eos_token] and tok.eos_token != "<|eot_id|>"
    reader = gguf.GGUFReader(tmp_path / "o" / GGUF_NAME)
    field = reader.fields["tokenizer.ggml.eot_token_id"]
    assert int(field.parts[field.data[0]][0]) == tok.convert_tokens_to_ids("<|eot_id|>")
    field = reader.fields["llama.attention.head_count_kv"]
    assert int(field.parts[field.data[0]][0]) == 2
    field = reader.fields["llama.rope.freq_base"]  # Llama 3's base, from the rope_parameters transformers 5 writes
    assert float(field.parts[field.data[0]][0]) == 500000.0


def test_mistral_gguf_is_written_but_its_template_is_no_fixed_turn_format(family_dirs, tmp_path) -> None:
    folder = family_dirs["tiny-mistral"]
    result = export_source(_source(folder), "gguf", output=tmp_path / "g")
    assert any("no end-of-turn token written" in n for n in result.notes)
    with pytest.raises(ExportError, match="not a fixed per-turn format"):
        export_source(_source(folder), "ollama", output=tmp_path / "o")


@pytest.mark.parametrize("name", WRITTEN)
def test_llama_cpp_greedy_ids_equal_transformers(family_dirs, name, tmp_path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = family_dirs[name]
    export_source(_source(folder), "gguf", output=tmp_path / "g")
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    llm = llama_cpp.Llama(model_path=str(tmp_path / "g" / GGUF_NAME), n_ctx=512, n_threads=1, logits_all=True,
                          verbose=False)  # fmt: skip
    conversation = [{"role": "user", "content": "My invoice shows a charge twice."}]
    prompt = list(tok.apply_chat_template(conversation, add_generation_prompt=True)["input_ids"])
    text = tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == prompt
    ids = list(prompt)
    llm.reset()
    llm.eval(prompt)
    for _ in range(24):
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        got = np.array(llm.scores[llm.n_tokens - 1])
        # f16 weights: within 2e-3 of the largest logit (a wrong rope base drifted 1% by the 20th position)
        assert np.abs(got - ref).max() <= 2e-3 * np.abs(ref).max(), len(ids) - len(prompt)
        assert int(np.argmax(got)) == int(np.argmax(ref))
        ids.append(int(np.argmax(ref)))
        llm.eval([ids[-1]])
