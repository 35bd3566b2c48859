"""Token counts: exact with the right encoding per model, and honestly labelled when only an estimate is possible."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tuneport.data.tokens import ExampleTokens, count_tokens, get_counter, load_encoding

SAMPLE = "Hello, world! Fine-tuning costs tokens."


def test_known_counts_o200k_and_cl100k() -> None:
    o200k = get_counter("gpt-4o-mini")
    cl100k = get_counter("gpt-3.5-turbo")
    assert (o200k.encoding, o200k.exact) == ("o200k_base", True)
    assert (cl100k.encoding, cl100k.exact) == ("cl100k_base", True)
    # reference values from tiktoken itself (o200k_base / cl100k_base)
    assert o200k.count_text("hello world") == 2
    assert cl100k.count_text("hello world") == 2
    assert o200k.count_text("tiktoken is great!") == 6
    assert cl100k.count_text("tiktoken is great!") == 6
    assert o200k.count_text("Привет, мир") == 4  # o200k_base is far better at non-English text
    assert cl100k.count_text("Привет, мир") == 6
    long = "   leading spaces\n\nand 12345 numbers " * 3  # > 64 chars: the uncached path
    assert o200k.count_text(long) == len(o200k._encode(long))
    # special-token text in data is plain text, not a special token
    assert o200k.count_text("<|endoftext|>") > 1


def test_ft_ids_resolve_to_their_base_encoding() -> None:
    counter = get_counter("ft:gpt-4.1-mini-2025-04-14:org::x")
    assert counter.encoding == "o200k_base" and counter.exact
    assert counter.count_text(SAMPLE) == get_counter("gpt-4.1-mini").count_text(SAMPLE)


def test_cookbook_message_rule() -> None:
    c = get_counter("gpt-4o")
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "name": "bob"},
        {"role": "assistant", "content": "Hello!"},
    ]
    expected = 3  # reply priming
    for m in msgs:
        expected += 3 + sum(c.count_text(v) for v in m.values())
    expected += 1  # the name
    got = c.count_messages(msgs)
    assert got == ExampleTokens(expected, c.count_text("Hello!"))
    # weight 0 assistant turns are billed but not trained on
    weighted = [*msgs[:2], {"role": "assistant", "content": "Hello!", "weight": 0}]
    assert c.count_messages(weighted).total == expected - 0 and c.count_messages(weighted).assistant == 0
    assert count_tokens({"messages": msgs}, "gpt-4o") == expected


def test_tools_and_tool_calls_add_their_json_tokens() -> None:
    c = get_counter("gpt-4o")
    base = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "Sunny."}]
    call = {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
    with_call = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    tools = [{"type": "function", "function": {"name": "w", "parameters": {}}}]
    assert c.count_messages(base, tools=tools).total > c.count_messages(base).total
    t = c.count_messages(with_call)
    assert t.assistant > 0 and t.total > t.assistant


def test_unknown_model_and_no_model_default_to_o200k_and_say_so() -> None:
    for model in (None, "llama-3-8b"):
        c = get_counter(model)
        assert c.encoding == "o200k_base" and c.exact and "o200k_base" in (c.note or "")


def test_fallback_estimate_is_fast_offline_and_labelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    monkeypatch.setenv("TUNEPORT_OFFLINE", "1")
    t = time.perf_counter()
    c = get_counter("gpt-4o-mini")
    assert time.perf_counter() - t < 1.0
    assert not c.exact and c.encoding.startswith("estimate")
    assert "ESTIMATE" in (c.note or "") and "TIKTOKEN_CACHE_DIR" in (c.note or "")
    assert c.count_text("abcdefgh") == 2  # 8 bytes / 4
    assert not any(empty.iterdir())  # nothing written, nothing fetched


def test_failed_download_falls_back_quickly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tuneport.data.tokens as tokens

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TUNEPORT_OFFLINE", raising=False)
    calls = []

    def refuse(url, sha, timeout):
        calls.append((url, timeout))
        raise OSError("network unreachable")

    monkeypatch.setattr(tokens, "_download", refuse)
    enc, problem = load_encoding("cl100k_base")
    assert enc is None and "could not be downloaded" in problem and "network unreachable" in problem
    assert calls and calls[0][1] <= 10


def test_validation_report_carries_exact_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneport.data.validate import validate_file

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    monkeypatch.setenv("TUNEPORT_OFFLINE", "1")
    p = tmp_path / "d.jsonl"
    p.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            )
            + "\n"
            for i in range(10)
        )
    )
    r = validate_file(p, model="gpt-4o-mini")
    d = r.to_dict()
    assert d["tokens"]["exact"] is False and d["stats"]["exact"] is False
    assert any("ESTIMATED" in n for n in d["stats"]["notes"])


def test_local_tokenizer_folder(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers

    tok = tokenizers.Tokenizer(models.WordLevel({"hello": 0, "world": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    c = get_counter(str(tmp_path))
    assert c.encoding.startswith("hf:") and c.exact and "chat template" in (c.note or "")
    assert c.count_text("hello world hello") == 3
