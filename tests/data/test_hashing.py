"""User-turn extraction, normalization, example keys and the compact hash table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tuneport.data.hashing import (
    HashIndex,
    content_text,
    example_key,
    hash_turns,
    normalize_text,
    user_turns,
)


def chat(*users: str, assistant: str = "ok", system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    for text in users:
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": assistant}]
    return {"messages": messages}


def test_user_turns_of_chat_and_dpo_items():
    assert user_turns(chat("a", "b", system="sys")) == ["a", "b"]
    dpo = {
        "input": {"messages": [{"role": "user", "content": "pick one"}]},
        "preferred_output": [{"role": "assistant", "content": "x"}],
        "non_preferred_output": [{"role": "assistant", "content": "y"}],
    }
    assert user_turns(dpo) == ["pick one"]
    assert user_turns({"messages": [{"role": "assistant", "content": "hi"}]}) == []
    assert user_turns({"prompt": "x"}) is None
    assert user_turns([1, 2]) is None


def test_text_parts_are_joined_and_other_parts_distinguish_items():
    parts = [{"type": "text", "text": "look at"}, {"type": "text", "text": "this"}]
    assert content_text(parts) == "look at\nthis"
    img_a = parts + [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]
    img_b = parts + [{"type": "image_url", "image_url": {"url": "https://x/b.png"}}]
    key_a = example_key({"messages": [{"role": "user", "content": img_a}]})
    key_b = example_key({"messages": [{"role": "user", "content": img_b}]})
    assert key_a.exact != key_b.exact
    assert key_a.normalized != key_b.normalized


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What's the capital of France?", "whats the capital of france"),
        ("Hello,   world!\n", "hello world"),
        ("ＨＥＬＬＯ ｗｏｒｌｄ", "hello world"),  # full-width letters (NFKC)
        ("“Straße” — ok…", "strasse ok"),  # curly quotes, dash, ellipsis; ß casefolds to ss
        ("tab\tand\u00a0nbsp", "tab and nbsp"),
    ],
)
def test_normalize_text_equates_near_duplicates(a, b):
    assert normalize_text(a) == normalize_text(b)


def test_normalize_text_keeps_symbols_and_words_apart():
    assert normalize_text("2 + 2") != normalize_text("2 - 2")
    assert normalize_text("cat") != normalize_text("cats")
    assert normalize_text("a b") != normalize_text("ab")


def test_example_key_exact_vs_normalized():
    k1 = example_key(chat("What is 2 + 2?"))
    k2 = example_key(chat("what is 2 + 2"))
    k3 = example_key(chat("What is 2 + 2?", assistant="different answer", system="other system prompt"))
    assert k1.exact != k2.exact and k1.normalized == k2.normalized
    assert k1 == k3  # only user turns count
    # turn boundaries count: ["a b"] is not ["a", "b"]
    assert example_key(chat("a b")).exact != example_key(chat("a", "b")).exact
    assert example_key(chat("a b")).normalized != example_key(chat("a", "b")).normalized
    # items with no user turn have no key; punctuation-only turns are compared exactly only
    assert example_key({"messages": [{"role": "assistant", "content": "x"}]}) is None
    only_punct = example_key(chat("???"))
    assert only_punct.normalized is None and only_punct.group == only_punct.exact


def test_hashes_do_not_depend_on_python_hash_seed():
    code = (
        "from tuneport.data.hashing import hash_turns; print(hash_turns(['héllo', 'world'], normalized=True))"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outputs.add(
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout
        )
    assert outputs == {f"{hash_turns(['héllo', 'world'], normalized=True)}\n"}


def test_hash_index_setdefault_get_and_growth():
    index = HashIndex()  # starts tiny: forces several regrowths
    keys = [hash_turns([str(i)]) for i in range(5000)]
    for line, key in enumerate(keys, start=1):
        assert index.setdefault(key, line) == line
    assert len(index) == 5000
    for line, key in enumerate(keys, start=1):
        assert index.get(key) == line
        assert key in index
        assert index.setdefault(key, 99999) == line  # the first line wins
    assert index.get(hash_turns(["absent"])) is None
    assert hash_turns(["absent"]) not in index
    with pytest.raises(ValueError):
        index.setdefault(0, 1)


def test_hash_index_colliding_slots_probe_correctly():
    index = HashIndex(expected=4)
    capacity = index.nbytes // 12
    same_slot = [capacity * k + 3 for k in range(1, 6)]  # all start at slot 3
    for line, key in enumerate(same_slot, start=1):
        index.setdefault(key, line)
    assert [index.get(key) for key in same_slot] == [1, 2, 3, 4, 5]


def test_hash_index_is_compact():
    index = HashIndex(expected=100_000)
    assert index.nbytes <= 100_000 * 18
