"""Proof that llama.cpp runs the exported GGUF: same tokens as transformers' tokenizer, same greedy ids as
transformers on the merged model (f16: every id of 32 steps; q8_0: logits within 5% of the largest along that
path, and the same id wherever the top-2 margin beats the error). Skips only where llama-cpp-python (the ``gguf``
extra) is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

llama_cpp = pytest.importorskip("llama_cpp")

from tuneport.local_backend.export.run import GGUF_NAME, export_source  # noqa: E402
from tuneport.local_backend.export.source import source_from_folders  # noqa: E402
from tuneport.local_backend.export.turns import CHECK_CONVERSATIONS  # noqa: E402

FIXTURE_DATA = Path(__file__).resolve().parents[3] / "fixtures" / "data"
STEPS = 32
Q8_LOGIT_TOLERANCE = 0.05  # |llama.cpp q8_0 - transformers f32| logits, relative to the largest logit


@pytest.fixture(scope="module")
def exported(tiny_model: Path, tiny_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("llama-cpp")
    source = source_from_folders(job_id="ftjob-llamacpp0001", base_model=str(tiny_model), base_path=tiny_model,
                                 adapter=tiny_adapter, model=None)  # fmt: skip
    out = {"merged": export_source(source, "merged", output=root / "merged").output}
    for quant in ("f16", "q8_0"):
        out[quant] = export_source(source, "gguf", quant=quant, output=root / quant).output / GGUF_NAME
    return out


def _llama(path: Path) -> llama_cpp.Llama:
    # logits_all: llama-cpp-python keeps logits in `scores` only then (its sampler needs none)
    return llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=1, n_batch=512, logits_all=True, verbose=False)


def _prompts(tokenizer) -> list[list[int]]:
    conversations = [c if c[-1]["role"] == "user" else c[:-1] for c in CHECK_CONVERSATIONS]
    return [list(tokenizer.apply_chat_template(c, add_generation_prompt=True)["input_ids"]) for c in conversations]


def _hf_greedy(model, prompt: list[int], steps: int, eos: int) -> tuple[list[int], np.ndarray]:
    ids, out, first = list(prompt), [], None
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            first = logits.numpy() if first is None else first
            token = int(logits.argmax())
            out.append(token)
            if token == eos:
                break
            ids.append(token)
    return out, first


def _llama_greedy(llm, prompt: list[int], steps: int, eos: int) -> tuple[list[int], np.ndarray]:
    llm.reset()
    llm.eval(prompt)
    out, first = [], None
    for _ in range(steps):
        logits = np.array(llm.scores[llm.n_tokens - 1])
        first = logits if first is None else first
        token = int(np.argmax(logits))
        out.append(token)
        if token == eos:
            break
        llm.eval([token])
    return out, first


def test_llama_cpp_tokenizes_like_the_hf_tokenizer(exported, tokenizer) -> None:
    llm = _llama(exported["f16"])
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in CHECK_CONVERSATIONS]
    with (FIXTURE_DATA / "support_train.jsonl").open() as fh:
        texts += [m["content"] for line in list(fh)[:20] for m in json.loads(line)["messages"]]
    for text in texts:
        expected = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == expected, text
    assert llm.metadata["tokenizer.chat_template"] == tokenizer.chat_template
    assert llm.token_eos() == tokenizer.eos_token_id and llm.token_bos() == tokenizer.bos_token_id


def test_f16_greedy_ids_equal_transformers_on_the_merged_model(exported, tokenizer) -> None:
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(exported["merged"]), dtype=torch.float32).eval()
    llm = _llama(exported["f16"])
    eos = tokenizer.eos_token_id
    for prompt in _prompts(tokenizer):
        hf_ids, hf_logits = _hf_greedy(merged, prompt, STEPS, eos)
        cpp_ids, cpp_logits = _llama_greedy(llm, prompt, STEPS, eos)
        assert cpp_ids == hf_ids
        assert np.abs(cpp_logits - hf_logits).max() < 0.01 * max(1.0, np.abs(hf_logits).max())


def test_q8_0_logits_within_tolerance_and_greedy_ids_where_the_margin_is_clear(exported, tokenizer) -> None:
    """q8_0 rounds every weight, so on a random tiny model some steps are near-ties and free-running greedy paths
    part ways by chance. Checked instead, along transformers' greedy path (teacher-forced): every step's logits
    within 5% of the largest, and llama.cpp's argmax equal to transformers' at every step whose top-2 margin is
    more than twice that step's logit error (the steps where quantization cannot honestly flip the choice)."""
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(exported["merged"]), dtype=torch.float32).eval()
    llm = _llama(exported["q8_0"])
    decisive = total = 0
    for prompt in _prompts(tokenizer):
        hf_ids, _ = _hf_greedy(merged, prompt, STEPS, tokenizer.eos_token_id)
        sequence = prompt + hf_ids
        with torch.no_grad():
            hf = merged(input_ids=torch.tensor([sequence])).logits[0].numpy()
        llm.reset()
        llm.eval(sequence)
        for step in range(len(hf_ids)):
            row = len(prompt) - 1 + step
            ref, got = hf[row], np.array(llm.scores[row])
            error = np.abs(got - ref).max()
            assert error < Q8_LOGIT_TOLERANCE * max(1.0, np.abs(ref).max()), (step, error)
            top2 = np.sort(ref)[-2:]
            total += 1
            if top2[1] - top2[0] > 2 * error:
                decisive += 1
                assert int(np.argmax(got)) == hf_ids[step] == int(np.argmax(ref))
    assert decisive >= total // 2  # most steps are decided, so the id check is not vacuous
