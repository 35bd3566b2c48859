"""The fine-tuned families' formats, proven on tiny models: rendering token by token, exact label masks (multi-turn,
``weight: 0``, tool turns), exact packing, the turn-end stop, the system role Gemma lacks, and the bad inputs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from tuneport.errors import DataError
from tuneport.fixtures.families import FAMILIES, build_family
from tuneport.local_backend.training.chat_data import IGNORE_INDEX, load_sft_examples, render_with_labels
from tuneport.local_backend.training.collate import PackedCollator
from tuneport.local_backend.training.model_setup import disable_cache, packing_is_exact
from tuneport.local_backend.training.segmented_attention import use_segmented_attention
from tuneport.local_backend.training.stop_tokens import (
    missing_stop_ids,
    stop_ids,
    system_role_note,
    turn_end_ids,
    write_generation_stops,
)

NAMES = sorted(FAMILIES)


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root / name) for name in NAMES}


@pytest.fixture(scope="session")
def tokenizers(family_dirs: dict[str, Path]) -> dict:
    from transformers import AutoTokenizer

    return {name: AutoTokenizer.from_pretrained(str(path)) for name, path in family_dirs.items()}


SYSTEM, Q1, A1, Q2, A2 = "You triage tickets.", "Refund please", "billing, high", "And my login?", "account, low"
MULTI = [
    {"role": "user", "content": Q1},
    {"role": "assistant", "content": A1},
    {"role": "user", "content": Q2},
    {"role": "assistant", "content": A2},
]
WITH_SYSTEM = [{"role": "system", "content": SYSTEM}, *MULTI[:2]]


def _today() -> str:
    return time.strftime("%d %b %Y")  # what the Llama 3.1 template's strftime_now("%d %b %Y") writes


def _llama_system(day: str, system: str = "") -> str:
    return (
        "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        f"Today Date: {day}\n\n{system}<|eot_id|>"
    )


# The published formats, written out by hand: (conversation, expected rendering) per family. Llama 3.1's system
# header carries the day the template renders on: DAY stands for it until the test knows which day that was.
DAY = "{DAY}"
EXPECTED_MULTI = {
    "tiny-llama3": "<|begin_of_text|>" + _llama_system(DAY)
    + f"<|start_header_id|>user<|end_header_id|>\n\n{Q1}<|eot_id|>"
    f"<|start_header_id|>assistant<|end_header_id|>\n\n{A1}<|eot_id|>"
    f"<|start_header_id|>user<|end_header_id|>\n\n{Q2}<|eot_id|>"
    f"<|start_header_id|>assistant<|end_header_id|>\n\n{A2}<|eot_id|>",
    "tiny-qwen2": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    f"<|im_start|>user\n{Q1}<|im_end|>\n<|im_start|>assistant\n{A1}<|im_end|>\n"
    f"<|im_start|>user\n{Q2}<|im_end|>\n<|im_start|>assistant\n{A2}<|im_end|>\n",
    "tiny-mistral": f"<s>[INST] {Q1}[/INST] {A1}</s>[INST] {Q2}[/INST] {A2}</s>",
    "tiny-gemma3": f"<bos><start_of_turn>user\n{Q1}<end_of_turn>\n<start_of_turn>model\n{A1}<end_of_turn>\n"
    f"<start_of_turn>user\n{Q2}<end_of_turn>\n<start_of_turn>model\n{A2}<end_of_turn>\n",
    "tiny-phi3": f"<|user|>\n{Q1}<|end|>\n<|assistant|>\n{A1}<|end|>\n<|user|>\n{Q2}<|end|>\n<|assistant|>\n{A2}<|end|>\n"
    "<|endoftext|>",
}  # fmt: skip

EXPECTED_PROMPT_WITH_SYSTEM = {
    "tiny-llama3": "<|begin_of_text|>" + _llama_system(DAY, SYSTEM)
    + f"<|start_header_id|>user<|end_header_id|>\n\n{Q1}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "tiny-qwen2": f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{Q1}<|im_end|>\n<|im_start|>assistant\n",
    "tiny-mistral": f"<s>[INST] {SYSTEM}\n\n{Q1}[/INST]",
    "tiny-gemma3": f"<bos><start_of_turn>user\n{SYSTEM}\n\n{Q1}<end_of_turn>\n<start_of_turn>model\n",
    "tiny-phi3": f"<|system|>\n{SYSTEM}<|end|>\n<|user|>\n{Q1}<|end|>\n<|assistant|>\n",
}  # fmt: skip

# What a trained assistant turn covers: its content, the turn end, and what the template writes up to the next turn.
LEARNED = {
    "tiny-llama3": "{}<|eot_id|>",
    "tiny-qwen2": "{}<|im_end|>\n",
    "tiny-mistral": " {}</s>",
    "tiny-gemma3": "{}<end_of_turn>\n",
    "tiny-phi3": "{}<|end|>\n",
}
TURN_END = {"tiny-llama3": "<|eot_id|>", "tiny-qwen2": "<|im_end|>", "tiny-mistral": "</s>",
            "tiny-gemma3": "<end_of_turn>", "tiny-phi3": "<|end|>"}  # fmt: skip


def _tokens(tokenizer, text: str) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])


def _learned_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t in example.labels if t != IGNORE_INDEX])


# ------------------------------------------------------------------------------------------------ the models


@pytest.mark.parametrize("name", NAMES)
def test_built_with_the_family_architecture(family_dirs, name) -> None:
    config = json.loads((family_dirs[name] / "config.json").read_text())
    assert config["architectures"] == [FAMILIES[name].architecture]
    assert config["head_dim"] == 32 and config["num_key_value_heads"] == 2
    sizes = sum(p.stat().st_size for p in family_dirs[name].iterdir())
    assert sizes < 6_000_000


@pytest.mark.parametrize("name", NAMES)
def test_special_tokens_are_single_tokens(tokenizers, name) -> None:
    tokenizer = tokenizers[name]
    for token in FAMILIES[name].special_tokens:
        assert _tokens(tokenizer, token) == [token]
    assert tokenizer.eos_token == FAMILIES[name].eos


def test_rebuild_is_identical(family_dirs, tmp_path) -> None:
    again = build_family("tiny-gemma3", tmp_path / "again")
    for f in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json"):
        assert (again / f).read_bytes() == (family_dirs["tiny-gemma3"] / f).read_bytes()


# ------------------------------------------------------------------------------------------------ rendering


@pytest.mark.parametrize("name", NAMES)
def test_rendering_matches_the_published_format_token_by_token(tokenizers, name) -> None:
    tokenizer = tokenizers[name]
    for _ in range(2):  # rendered again if the day changed meanwhile (a run across midnight)
        day = _today()
        text = tokenizer.apply_chat_template(MULTI, tokenize=False)
        ids = tokenizer.apply_chat_template(MULTI, tokenize=True, return_dict=True)["input_ids"]
        prompt = tokenizer.apply_chat_template(WITH_SYSTEM[:2], tokenize=False, add_generation_prompt=True)
        if _today() == day:
            break
    expected = EXPECTED_MULTI[name].replace(DAY, day)
    assert text == expected
    assert tokenizer.convert_ids_to_tokens(ids) == _tokens(tokenizer, expected)
    assert prompt == EXPECTED_PROMPT_WITH_SYSTEM[name].replace(DAY, day)


# ------------------------------------------------------------------------------------------------ label masks


@pytest.mark.parametrize("name", NAMES)
def test_masks_cover_exactly_the_answers_multi_turn(tokenizers, name) -> None:
    tokenizer = tokenizers[name]
    example = render_with_labels(tokenizer, MULTI)
    assert _learned_text(tokenizer, example) == LEARNED[name].format(A1) + LEARNED[name].format(A2)
    # Learned tokens are exactly the ids at those positions, nothing else.
    assert all(lab in (IGNORE_INDEX, tok) for lab, tok in zip(example.labels, example.input_ids, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_weight_zero_turn_is_not_learned(tokenizers, name) -> None:
    tokenizer = tokenizers[name]
    messages = [*MULTI[:1], {**MULTI[1], "weight": 0}, *MULTI[2:]]
    example = render_with_labels(tokenizer, messages)
    assert _learned_text(tokenizer, example) == LEARNED[name].format(A2)
    assert example.input_ids == render_with_labels(tokenizer, MULTI).input_ids  # the same text is seen


@pytest.mark.parametrize("name", [n for n in NAMES if n != "tiny-mistral"])
def test_system_prompt_single_turn(tokenizers, name) -> None:
    tokenizer = tokenizers[name]
    example = render_with_labels(tokenizer, WITH_SYSTEM)
    assert _learned_text(tokenizer, example) == LEARNED[name].format(A1)
    assert SYSTEM in tokenizer.decode(example.input_ids)


TOOLS = [{"type": "function", "function": {"name": "lookup_order", "description": "Find an order",
          "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}}]  # fmt: skip
CALL = {"id": "call12345", "type": "function",
        "function": {"name": "lookup_order", "arguments": '{"order_id": "A17"}'}}  # fmt: skip
TOOL_CONVERSATION = [
    {"role": "user", "content": "Where is order A17?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call12345", "content": '{"status": "shipped"}'},
    {"role": "assistant", "content": "It shipped."},
]
LEARNED_TOOLS = {
    "tiny-llama3": '{"name": "lookup_order", "parameters": {"order_id": "A17"}}<|eot_id|>It shipped.<|eot_id|>',
    "tiny-qwen2": '<tool_call>\n{"name": "lookup_order", "arguments": {"order_id": "A17"}}\n</tool_call><|im_end|>\n'
    "It shipped.<|im_end|>\n",
    "tiny-mistral": '[TOOL_CALLS] [{"name": "lookup_order", "arguments": {"order_id": "A17"}, "id": "call12345"}]</s>'
    " It shipped.</s>",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(LEARNED_TOOLS))
def test_tool_turns_learn_the_call_and_the_answer_not_the_result(tokenizers, name) -> None:
    tokenizer = tokenizers[name]
    assert FAMILIES[name].has_tools
    example = render_with_labels(tokenizer, TOOL_CONVERSATION, tools=TOOLS)
    learned = _learned_text(tokenizer, example)
    assert learned == LEARNED_TOOLS[name]
    text = tokenizer.decode(example.input_ids)
    assert "status" not in learned and "status" in text  # the tool's result is context, not learned
    assert text.count("lookup_order") >= 2  # the tool list and the call


# ------------------------------------------------------------------------------------------------ system role


def test_gemma_has_no_system_role_and_tuneport_says_so(tokenizers) -> None:
    tokenizer = tokenizers["tiny-gemma3"]
    note = system_role_note(tokenizer)
    assert note is not None and "no system role" in note and "first user message" in note
    text = tokenizer.decode(render_with_labels(tokenizer, WITH_SYSTEM).input_ids)
    assert f"<start_of_turn>user\n{SYSTEM}\n\n{Q1}<end_of_turn>" in text  # Gemma's documented placement
    for name in ("tiny-llama3", "tiny-qwen2", "tiny-phi3"):
        assert system_role_note(tokenizers[name]) is None


def test_training_event_says_how_the_system_prompt_is_handled(family_dirs, tmp_path) -> None:
    from tuneport.local_backend.training.train_config import TrainConfig
    from tuneport.local_backend.training.trainer import train

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": WITH_SYSTEM}) + "\n" for _ in range(4)), "utf-8")
    events: list[dict] = []
    config = TrainConfig(model=str(family_dirs["tiny-gemma3"]), training_file=str(data),
                         output_dir=str(tmp_path / "out"), max_steps=1, batch_size=2, max_seq_length=128)  # fmt: skip
    train(config, on_event=events.append)
    messages = [e.get("message", "") for e in events]
    assert any("4 example(s) have a system message" in m and "no system role" in m for m in messages), messages


def test_mistral_system_prompt_in_training_data_is_refused_clearly(tokenizers, tmp_path) -> None:
    # Mistral v0.3's template writes the system message only into a final user turn: a finished conversation is
    # rendered without it, so what would be trained differs from what is served. Refused, not guessed.
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"messages": WITH_SYSTEM}) + "\n", "utf-8")
    with pytest.raises(DataError, match=r"line 1: the chat template renders earlier turns differently"):
        load_sft_examples(data, tokenizers["tiny-mistral"], 256)


# ------------------------------------------------------------------------------------------------ bad templates

# Marks each turn with its distance from the end: earlier turns change when a turn is added. Neither prefix-stable
# nor marked with {% generation %}.
SHIFTING_TEMPLATE = (
    "{%- for m in messages -%}<|im_start|>{{ m['role'] }} {{ messages|length - loop.index0 }}\n"
    "{{ m['content'] }}<|im_end|>\n{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)


def test_unstable_unmarked_template_is_refused_before_training(family_dirs, tmp_path) -> None:
    import shutil

    from tuneport.local_backend.training.train_config import TrainConfig
    from tuneport.local_backend.training.trainer import train

    model = tmp_path / "model"
    shutil.copytree(family_dirs["tiny-qwen2"], model)
    config_path = model / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text())
    tok_config["chat_template"] = SHIFTING_TEMPLATE
    config_path.write_text(json.dumps(tok_config))
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"messages": MULTI}) + "\n", "utf-8")
    config = TrainConfig(model=str(model), training_file=str(data), output_dir=str(tmp_path / "out"), max_steps=1)
    with pytest.raises(DataError) as info:
        train(config)
    assert "line 1" in str(info.value) and "{% generation %}" in str(info.value)
    assert info.value.hint
    assert not (tmp_path / "out" / "adapter").exists()


# ------------------------------------------------------------------------------------------------ packing


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("segmented", [False, True], ids=["sdpa", "per-example"])
def test_packed_logits_equal_per_example_logits(family_dirs, tokenizers, name, segmented) -> None:
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizers[name]
    convs = [MULTI, MULTI[:2], [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
             [{"role": "user", "content": " ".join(["My invoice is wrong and the refund never came."] * 6)},
              {"role": "assistant", "content": "billing, urgent " * 8}]]  # fmt: skip
    examples = [render_with_labels(tokenizer, c) for c in convs]
    assert max(len(e) for e in examples) > 100  # longer than Gemma 3's 64-token sliding window
    model = AutoModelForCausalLM.from_pretrained(str(family_dirs[name]), dtype=torch.float32).eval()
    disable_cache(model)
    if segmented:
        assert use_segmented_attention(model)
    batch = PackedCollator()(examples)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        offset = 0
        for e in examples:
            alone = model(input_ids=torch.tensor([e.input_ids])).logits[0]
            assert (packed[offset : offset + len(e)] - alone).abs().max().item() < 1e-4, (name, len(e))
            offset += len(e)
    assert packing_is_exact(model, examples)[0]


# ------------------------------------------------------------------------------------------------ stop tokens


@pytest.mark.parametrize("name", NAMES)
def test_turn_end_is_read_from_the_template(tokenizers, family_dirs, name) -> None:
    tokenizer = tokenizers[name]
    assert tokenizer.convert_ids_to_tokens(turn_end_ids(tokenizer)) == [TURN_END[name]]
    assert tokenizer.convert_tokens_to_ids(TURN_END[name]) in stop_ids(tokenizer, family_dirs[name])


@pytest.mark.parametrize("name", NAMES)
def test_generation_config_gains_the_turn_end(tokenizers, family_dirs, tmp_path, name) -> None:
    import shutil

    tokenizer = tokenizers[name]
    folder = tmp_path / name
    shutil.copytree(family_dirs[name], folder)
    turn_end = tokenizer.convert_tokens_to_ids(TURN_END[name])
    differs = FAMILIES[name].eos != TURN_END[name]
    assert missing_stop_ids(tokenizer, folder) == ([turn_end] if differs else [])
    assert write_generation_stops(folder, tokenizer) == ([turn_end] if differs else [])
    eos = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    assert turn_end in (eos if isinstance(eos, list) else [eos])
    assert tokenizer.eos_token_id in (eos if isinstance(eos, list) else [eos])
    assert missing_stop_ids(tokenizer, folder) == []


class _ForceAt:
    """Make ``token`` the only choice at generation step ``step`` (a model that ends its answer there)."""

    def __init__(self, prompt_len: int, step: int, token: int) -> None:
        self.at, self.token = prompt_len + step, token

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] == self.at:
            scores = torch.full_like(scores, -1e9)
            scores[:, self.token] = 0.0
        return scores


@pytest.mark.parametrize("name", ["tiny-gemma3", "tiny-phi3", "tiny-llama3"])
def test_transformers_stops_at_the_turn_end_once_the_config_has_it(tokenizers, family_dirs, tmp_path, name) -> None:
    """The bug and the fix in one: with only the tokenizer's eos in generation_config.json, an answer that ends with
    the turn end runs on to the token limit; with the completed config it stops right there."""
    import shutil

    from transformers import AutoModelForCausalLM, LogitsProcessorList

    tokenizer = tokenizers[name]
    folder = tmp_path / name
    shutil.copytree(family_dirs[name], folder)
    turn_end = tokenizer.convert_tokens_to_ids(TURN_END[name])
    prompt = tokenizer.apply_chat_template(MULTI[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    n = prompt["input_ids"].shape[1]

    def generate() -> list[int]:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=12, do_sample=False,
                                 logits_processor=LogitsProcessorList([_ForceAt(n, 3, turn_end)]))  # fmt: skip
        return out[0, n:].tolist()

    before = generate()
    assert before[3] == turn_end and len(before) == 12  # ran past the end of its turn
    write_generation_stops(folder, tokenizer)
    after = generate()
    assert after == before[:4]  # stopped on the turn end
