"""Rendering with the model's chat template and the loss mask: token by token, weight 0, tools, errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tuneport.errors import DataError, SpecError
from tuneport.local_backend.training.chat_data import (
    IGNORE_INDEX,
    check_chat_template,
    load_preference_examples,
    load_sft_examples,
    render_with_labels,
)

CONVERSATION = [
    {"role": "system", "content": "You triage tickets."},
    {"role": "user", "content": "My invoice is wrong."},
    {"role": "assistant", "content": "billing, low", "weight": 0},
    {"role": "user", "content": "It is urgent, we are blocked."},
    {"role": "assistant", "content": "billing, urgent"},
]


def _trained_ranges(labels: list[int]) -> list[tuple[int, int]]:
    ranges, start = [], None
    for i, x in enumerate([*labels, IGNORE_INDEX]):
        if x != IGNORE_INDEX and start is None:
            start = i
        elif x == IGNORE_INDEX and start is not None:
            ranges.append((start, i))
            start = None
    return ranges


def _positions(ids: list[int], token_id: int) -> list[int]:
    return [i for i, t in enumerate(ids) if t == token_id]


def test_label_mask_token_by_token_skips_weight_zero_turn(tokenizer) -> None:
    ex = render_with_labels(tokenizer, CONVERSATION)
    full = tokenizer.apply_chat_template(
        [{k: v for k, v in m.items() if k != "weight"} for m in CONVERSATION]
    )
    assert ex.input_ids == list(full["input_ids"])  # exactly the template's rendering, nothing of ours

    assistant = tokenizer.convert_tokens_to_ids("<|assistant|>")
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    second_turn = _positions(ex.input_ids, assistant)[1]
    # The trained span starts after "<|assistant|>\n" of the second assistant turn and ends with its <|end|>.
    first = second_turn + 1 + len(newline)
    last = next(i for i in _positions(ex.input_ids, end) if i > second_turn)
    for i, (tok, label) in enumerate(zip(ex.input_ids, ex.labels, strict=True)):
        if first <= i <= last:
            assert label == tok, f"token {i} ({tokenizer.decode([tok])!r}) should carry loss"
        else:
            assert label == IGNORE_INDEX, f"token {i} ({tokenizer.decode([tok])!r}) should not carry loss"
    assert tokenizer.decode([t for t in ex.labels if t != IGNORE_INDEX]) == "billing, urgent<|end|>"


def test_weight_one_turns_are_all_trained(tokenizer) -> None:
    conv = copy.deepcopy(CONVERSATION)
    conv[2]["weight"] = 1
    ex = render_with_labels(tokenizer, conv)
    spans = _trained_ranges(ex.labels)
    assert [tokenizer.decode(ex.input_ids[a:b]) for a, b in spans] == [
        "billing, low<|end|>",
        "billing, urgent<|end|>",
    ]


def test_template_without_generation_markers_uses_prefix_diff(tokenizer) -> None:
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = tok.chat_template.replace("{%- generation -%}", "").replace(
        "{%- endgeneration -%}", ""
    )
    assert "endgeneration" not in tok.chat_template
    ex = render_with_labels(tok, CONVERSATION)
    spans = _trained_ranges(ex.labels)
    # Without markers the span is the whole assistant turn after its header, end-of-turn text included.
    assert [tok.decode(ex.input_ids[a:b]) for a, b in spans] == ["billing, urgent<|end|>\n"]


TOOL_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- if tools -%}<|system|>\ntools: {{ tools | map(attribute='function.name') | join(',') }}<|end|>\n{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'assistant' -%}<|assistant|>\n"
    "{%- if m.tool_calls -%}{%- for c in m.tool_calls -%}call {{ c.function.name }} {{ c.function.arguments | tojson }}"
    "{%- endfor -%}{%- else -%}{{ m.content }}{%- endif -%}<|end|>\n"
    "{%- elif m.role == 'tool' -%}<|user|>\nresult {{ m.content }}<|end|>\n"
    "{%- else -%}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>\n{%- endif -%}"
)


def test_tool_calls_are_trained_and_tool_results_are_not(tokenizer) -> None:
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = TOOL_TEMPLATE
    tools = [{"type": "function", "function": {"name": "get_order", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "user", "content": "Where is order 7?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_order", "arguments": '{"id": 7}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "shipped"},
        {"role": "assistant", "content": "It has shipped."},
    ]
    ex = render_with_labels(tok, messages, tools=tools)
    text = tok.decode(ex.input_ids)
    assert "tools: get_order" in text
    assert (
        'call get_order {"id": 7}' in text
    )  # OpenAI's JSON-string arguments reach the template as an object
    trained = [tok.decode(ex.input_ids[a:b]) for a, b in _trained_ranges(ex.labels)]
    assert trained == ['call get_order {"id": 7}<|end|>', "It has shipped.<|end|>"]
    assert all("result" not in t for t in trained)


def test_truncation_cuts_at_the_end(tokenizer) -> None:
    ex = render_with_labels(tokenizer, CONVERSATION, max_seq_length=20)
    assert ex.truncated and len(ex.input_ids) == 20 == len(ex.labels)


def test_tokenizer_without_chat_template_is_refused(tokenizer) -> None:
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = None
    with pytest.raises(SpecError, match="no chat template"):
        check_chat_template(tok, "/models/base")


def _write(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), "utf-8")
    return path


def test_load_sft_names_the_bad_line(tokenizer, tmp_path: Path) -> None:
    good = {"messages": CONVERSATION}
    path = _write(tmp_path / "bad.jsonl", [good, {"messages": [{"content": "no role"}]}])
    with pytest.raises(
        DataError, match=r"bad.jsonl, line 2: `messages\[0\]` must be an object with a `role`"
    ):
        load_sft_examples(path, tokenizer, 512)
    path = _write(tmp_path / "broken.jsonl", [good, "{not json"])
    with pytest.raises(DataError, match="broken.jsonl, line 2"):
        load_sft_examples(path, tokenizer, 512)
    path = _write(tmp_path / "role.jsonl", [{"messages": [{"role": "tool", "content": "x"}]}])
    with pytest.raises(DataError, match="role.jsonl, line 1: the model's chat template cannot render"):
        load_sft_examples(path, tokenizer, 512)


def test_load_sft_skips_examples_with_nothing_to_learn(tokenizer, tmp_path: Path) -> None:
    nothing = copy.deepcopy(CONVERSATION[:3])
    path = _write(tmp_path / "d.jsonl", [{"messages": CONVERSATION}, {"messages": nothing}])
    data = load_sft_examples(path, tokenizer, 512)
    assert len(data.examples) == 1 and data.skipped_lines == [2]
    with pytest.raises(DataError, match="no example has an assistant token to learn"):
        load_sft_examples(_write(tmp_path / "e.jsonl", [{"messages": nothing}]), tokenizer, 512)


def test_preference_pair_trains_only_the_outputs(tokenizer, tmp_path: Path) -> None:
    record = {
        "input": {"messages": CONVERSATION[:4]},
        "preferred_output": [{"role": "assistant", "content": "billing, urgent"}],
        "non_preferred_output": [{"role": "assistant", "content": "billing, low"}],
    }
    data = load_preference_examples(_write(tmp_path / "p.jsonl", [record]), tokenizer, 512)
    pair = data.examples[0]
    for ex, want in ((pair.chosen, "billing, urgent<|end|>"), (pair.rejected, "billing, low<|end|>")):
        assert tokenizer.decode([t for t in ex.labels if t != IGNORE_INDEX]) == want
    # Same prompt tokens in both.
    n_prompt = next(i for i, x in enumerate(pair.chosen.labels) if x != IGNORE_INDEX)
    assert pair.chosen.input_ids[:n_prompt] == pair.rejected.input_ids[:n_prompt]
    bad = {**record, "preferred_output": [{"role": "user", "content": "x"}]}
    with pytest.raises(DataError, match="line 1: `preferred_output` must contain assistant messages only"):
        load_preference_examples(_write(tmp_path / "q.jsonl", [bad]), tokenizer, 512)
