"""Duplicate detection in constant memory: one 64-bit hash and one line number per example.

Why not a set of hashes: a Python set costs ~60 bytes per entry; :class:`SeenHashes` keeps ~12, so a file of
millions of examples is checked for duplicates without growing the process by hundreds of megabytes.
"""

from __future__ import annotations

from array import array
from typing import Any

import orjson

__all__ = ["SeenHashes", "dup_hash"]


class SeenHashes:
    """A set of 64-bit hashes remembering the first line of each, in ~12 bytes per entry.

    Open addressing with linear probing over an ``array('Q')`` of hashes and an ``array('I')`` of line numbers.
    Sized by ``reserve`` from an estimate of the number of lines, so a large file rarely rehashes. Sizes are not
    powers of two (index = hash % size): the table grows in proportion to the data, not in doubling jumps.
    """

    __slots__ = ("_keys", "_lines", "_size", "_n", "_limit")
    _LOAD = 0.75

    def __init__(self, capacity: int = 1024) -> None:
        self._n = 0
        self._alloc(max(8, int(capacity / self._LOAD) + 1))

    def _alloc(self, size: int) -> None:
        self._size = size
        self._keys = array("Q", [0]) * size
        self._lines = array("I", [0]) * size
        self._limit = int(size * self._LOAD)

    def __len__(self) -> int:
        return self._n

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` entries in total (one rehash now instead of several later)."""
        if capacity > self._limit:
            self._rehash(int(capacity / self._LOAD) + 1)

    def _rehash(self, size: int) -> None:
        keys, lines = self._keys, self._lines
        self._alloc(size)
        self._n = 0
        for k, line in zip(keys, lines, strict=False):
            if k:
                self.add(k, line)

    def add(self, h: int, line: int) -> int:
        """Insert a hash; return 0 if it is new, else the line where it was first seen."""
        h &= 0xFFFFFFFFFFFFFFFF
        if h == 0:
            h = 1
        keys = self._keys
        size = self._size
        i = h % size
        while True:
            k = keys[i]
            if k == 0:
                keys[i] = h
                self._lines[i] = line if line < 0xFFFFFFFF else 0xFFFFFFFF
                self._n += 1
                if self._n > self._limit:
                    self._rehash(int(size * 1.5) + 1)
                return 0
            if k == h:
                return self._lines[i]
            i += 1
            if i == size:
                i = 0


def dup_hash(obj: Any, raw: bytes) -> int:
    """Hash of the example's canonical JSON (sorted keys, no spaces): lines that differ only in key order or
    whitespace are duplicates too. Python's keyed 64-bit SipHash is enough within one run."""
    try:
        return hash(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS))
    except orjson.JSONEncodeError:  # nesting deeper than orjson writes: hash the line as it is
        return hash(raw)
