"""Hashing what makes two examples "the same": their user turns.

Leakage checks (training vs validation or evaluation data), group-aware splitting and duplicate reports inside one
file all ask the same question -- do these two items show the model the same prompts? -- so they share one answer:

* :func:`user_turns` extracts the user turns of a chat item (``{"messages": [...]}``) or a DPO item
  (``{"input": {"messages": [...]}, ...}``).
* :func:`example_key` turns them into two 64-bit hashes: ``exact`` (the same sequence of user-turn texts) and
  ``normalized`` (the same after :func:`normalize_text`: Unicode NFKC, casefold, punctuation removed, whitespace
  collapsed).
* :class:`HashIndex` stores such hashes with a line number in two flat arrays (open addressing), about 17 bytes per
  entry instead of ~100 for a Python dict, so millions of lines fit in tens of MB.

Hashes are keyed blake2b digests, independent of Python's hash randomization: the same file gives the same
hashes in every process. At 64 bits the chance of any false match among ten million items is about 3 in a million.
"""

from __future__ import annotations

import hashlib
import sys
import unicodedata
from array import array
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

__all__ = [
    "ExampleKey",
    "HashIndex",
    "messages_of",
    "content_text",
    "user_turns",
    "normalize_text",
    "hash_turns",
    "example_key",
    "line_key",
]

_EXACT = b"tuneport-exact"
_NORMALIZED = b"tuneport-norm"
_LINE = b"tuneport-line"
_MASK64 = (1 << 64) - 1


def messages_of(obj: Any) -> list | None:
    """The message list of a chat item or of a DPO item's ``input``; None when ``obj`` has neither."""
    if not isinstance(obj, dict):
        return None
    messages = obj.get("messages")
    if messages is None:
        inp = obj.get("input")
        if isinstance(inp, dict):
            messages = inp.get("messages")
    return messages if isinstance(messages, list) else None


def _canonical(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # pragma: no cover - values from orjson.loads always serialize
        return repr(value)


def content_text(content: Any) -> str:
    """A message content as one string: text parts joined with newlines.

    Non-text parts (images, audio, files) are appended as their canonical JSON after a NUL, so two items with the
    same words but different images are not taken for duplicates.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        others: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                others.append(_canonical(part))
        text = "\n".join(texts)
        if others:
            text += "".join("\n\x00" + other for other in others)
        return text
    return _canonical(content)


def user_turns(obj: Any) -> list[str] | None:
    """The texts of the user turns of a chat or DPO item, in order.

    Returns None when ``obj`` is not an example (no message list); an empty list when it has no user turn.
    """
    messages = messages_of(obj)
    if messages is None:
        return None
    return [
        content_text(message.get("content"))
        for message in messages
        if isinstance(message, dict) and message.get("role") == "user"
    ]


@lru_cache(maxsize=1)
def _punctuation_table() -> dict[int, None]:
    # Every code point in a Unicode punctuation category (Pc Pd Ps Pe Pi Pf Po): ~800 entries, built once (~0.1 s).
    return {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")}


_ASCII_PUNCTUATION = bytes(c for c in range(128) if unicodedata.category(chr(c)).startswith("P"))


def normalize_text(text: str) -> str:
    """Unicode NFKC, casefold, punctuation (Unicode category P) removed, whitespace collapsed to single spaces.

    Catches the near-duplicates that slip past an exact comparison: ``"What's 2 + 2?"`` and ``"whats 2 + 2"``,
    full-width letters, curly quotes, doubled spaces. Symbols (``+ $ < =``) are kept: they change meaning.
    """
    if text.isascii():  # fast path: NFKC is the identity and casefold is lower() on ASCII
        stripped = text.lower().encode("ascii").translate(None, _ASCII_PUNCTUATION).decode("ascii")
    else:
        folded = unicodedata.normalize("NFKC", text).casefold()
        stripped = folded.translate(_punctuation_table())
    return " ".join(stripped.split())


def _to_int(digest: bytes) -> int:
    # 0 marks an empty slot in HashIndex, so no key may be 0.
    return int.from_bytes(digest, "little") or 1


def hash_turns(turns: list[str], *, normalized: bool = False) -> int:
    """A non-zero 64-bit hash of a sequence of texts (length-prefixed, so turn boundaries count)."""
    h = hashlib.blake2b(digest_size=8, person=_NORMALIZED if normalized else _EXACT)
    for turn in turns:
        data = turn.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return _to_int(h.digest())


def line_key(raw: bytes) -> int:
    """A non-zero 64-bit hash of a raw line: the identity of items that have no user turns."""
    return _to_int(hashlib.blake2b(raw, digest_size=8, person=_LINE).digest())


class ExampleKey(NamedTuple):
    """The two hashes of an item's user turns (a tuple: cheap to make once per line).

    ``normalized`` is None when every user turn normalizes to nothing (e.g. only punctuation): such items are
    compared exactly only, instead of all matching each other.
    """

    exact: int
    normalized: int | None

    @property
    def group(self) -> int:
        """The key that puts near-duplicates together (normalized when there is one)."""
        return self.normalized if self.normalized is not None else self.exact


def example_key(obj: Any) -> ExampleKey | None:
    """The :class:`ExampleKey` of a chat or DPO item; None when it is not an example or has no user turn."""
    turns = user_turns(obj)
    if not turns:
        return None
    normalized_turns = [normalize_text(turn) for turn in turns]
    if any(normalized_turns):
        return ExampleKey(hash_turns(turns), hash_turns(normalized_turns, normalized=True))
    return ExampleKey(hash_turns(turns), None)


class HashIndex:
    """A set of non-zero 64-bit keys, each with a uint32 value (a line number), in two flat arrays.

    Open addressing with linear probing, at most 70% full: 12 bytes per slot, about 17-24 bytes per key. Pass the
    expected number of keys to avoid regrowing. ``setdefault`` is the duplicate check in one step: it returns the
    value already stored for the key (the first line that had it), or stores and returns the new one.
    """

    __slots__ = ("_keys", "_values", "_capacity", "_size")

    _MAX_LOAD = 0.7

    def __init__(self, expected: int = 0) -> None:
        self._size = 0
        self._allocate(max(8, int(expected / self._MAX_LOAD) + 1))

    def _allocate(self, capacity: int) -> None:
        self._capacity = capacity
        self._keys = array("Q", [0]) * capacity
        self._values = array("I", [0]) * capacity

    def _slot(self, key: int) -> int:
        keys = self._keys
        capacity = self._capacity
        i = key % capacity
        while True:
            k = keys[i]
            if k == key or k == 0:
                return i
            i += 1
            if i == capacity:
                i = 0

    def _grow(self) -> None:
        old_keys, old_values = self._keys, self._values
        self._allocate(self._capacity * 2)
        for key, value in zip(old_keys, old_values, strict=True):
            if key:
                i = self._slot(key)
                self._keys[i] = key
                self._values[i] = value

    @staticmethod
    def _check(key: int) -> None:
        if not 0 < key <= _MASK64:
            raise ValueError(f"HashIndex keys are non-zero 64-bit integers, got {key}")

    def get(self, key: int, default: int | None = None) -> int | None:
        """The value stored for ``key``, or ``default``."""
        self._check(key)
        i = self._slot(key)
        return self._values[i] if self._keys[i] == key else default

    def setdefault(self, key: int, value: int) -> int:
        """Store ``value`` for ``key`` unless the key is present; return the stored value either way."""
        self._check(key)
        i = self._slot(key)
        if self._keys[i] == key:
            return self._values[i]
        if self._size + 1 > self._capacity * self._MAX_LOAD:
            self._grow()
            i = self._slot(key)
        self._keys[i] = key
        self._values[i] = value
        self._size += 1
        return value

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, int) or not 0 < key <= _MASK64:
            return False
        return self._keys[self._slot(key)] == key

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Memory held by the two arrays."""
        return self._capacity * (self._keys.itemsize + self._values.itemsize)
