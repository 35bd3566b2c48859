"""Leakage checks: which items of one file repeat the user turns of another.

A validation or evaluation item whose prompt also appears in the training data measures memory, not skill. The
reference file (usually the training data) is read once into a :class:`ReferenceIndex` -- only two 64-bit hashes
and a line number per distinct item, in flat arrays -- and the candidate file is streamed past it. Memory grows
by about 35 bytes per reference item and not at all with the candidate file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneport.data.hashing import ExampleKey, HashIndex, example_key, messages_of
from tuneport.data.reader import iter_records

__all__ = [
    "LeakageHit",
    "LeakageReport",
    "ReferenceIndex",
    "find_leakage",
    "find_duplicates",
    "count_lines",
    "SKIP_REASONS",
]

# Why a line was not compared (keys of the ``*_skipped`` counts).
SKIP_REASONS = {
    "broken": "not a readable JSON line (run `tuneport data validate`)",
    "not_an_example": "a JSON value without a message list",
    "no_user_turns": "an example without any user turn",
}

EXACT = "exact"
NORMALIZED = "normalized"


def count_lines(path: str | Path) -> int:
    """The number of lines of a file (a final line without newline counts), read in bounded chunks.

    Cheap next to parsing (about 1 GB/s): used to size hash tables once instead of regrowing them.
    """
    count = 0
    last = b"\n"
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                count += block.count(b"\n")
                last = block[-1:]
    except OSError:
        return 0  # iter_records raises the proper DataError when the file is actually read
    return count + (last != b"\n")


@dataclass(frozen=True, slots=True)
class LeakageHit:
    """One candidate item that repeats a reference item's user turns."""

    candidate_line: int
    reference_line: int
    kind: str  # "exact" (same user-turn texts) or "normalized" (same after normalization only)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate_line": self.candidate_line,
            "reference_line": self.reference_line,
            "kind": self.kind,
        }


@dataclass(slots=True)
class LeakageReport:
    """How many candidate items repeat reference items, and the first of them with both line numbers.

    ``exact`` counts items with the same sequence of user-turn texts; ``normalized`` those that match only after
    normalization (so the two never overlap). ``hits`` keeps at most ``max_hits`` of them, in candidate order.
    """

    reference_path: str
    candidate_path: str
    reference_items: int = 0
    candidate_items: int = 0
    exact: int = 0
    normalized: int = 0
    hits: list[LeakageHit] = field(default_factory=list)
    max_hits: int | None = 100
    reference_skipped: dict[str, int] = field(default_factory=dict)
    candidate_skipped: dict[str, int] = field(default_factory=dict)

    @property
    def leaked(self) -> int:
        """Candidate items that repeat a reference item, exactly or after normalization."""
        return self.exact + self.normalized

    @property
    def has_leak(self) -> bool:
        return self.leaked > 0

    @property
    def hits_truncated(self) -> bool:
        return len(self.hits) < self.leaked

    def add_hit(self, line: int, kind: str, reference_line: int) -> None:
        """Count one repeated item (``kind`` exact or normalized); keep it while fewer than ``max_hits`` are kept."""
        if kind == EXACT:
            self.exact += 1
        else:
            self.normalized += 1
        if self.max_hits is None or len(self.hits) < self.max_hits:
            self.hits.append(LeakageHit(line, reference_line, kind))

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": {
                "path": self.reference_path,
                "items": self.reference_items,
                "skipped": dict(self.reference_skipped),
            },
            "candidate": {
                "path": self.candidate_path,
                "items": self.candidate_items,
                "skipped": dict(self.candidate_skipped),
            },
            "exact": self.exact,
            "normalized": self.normalized,
            "leaked": self.leaked,
            "hits": [hit.to_dict() for hit in self.hits],
            "hits_truncated": self.hits_truncated,
        }


def _skip_reason(record_error: str | None, obj: Any) -> str | None:
    if record_error is not None:
        return "broken"
    if messages_of(obj) is None:
        return "not_an_example"
    return "no_user_turns"


class ReferenceIndex:
    """The user-turn hashes of a reference dataset, for repeated "is this item in there?" questions.

    Built from a file (:meth:`from_file`) or item by item (:meth:`add`), so an evaluation can hold its training
    data's index and check each eval item, and a validator can check a file against itself.
    """

    __slots__ = ("exact", "normalized", "items", "skipped")

    def __init__(self, expected: int = 0) -> None:
        self.exact = HashIndex(expected)
        self.normalized = HashIndex(expected)
        self.items = 0
        self.skipped: dict[str, int] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> ReferenceIndex:
        """Index every example of a JSONL file; broken and non-example lines are skipped and counted."""
        index = cls(expected=count_lines(path))
        for record in iter_records(path):
            key = example_key(record.obj) if record.error is None else None
            if key is None:
                index.skip(_skip_reason(record.error, record.obj))
            else:
                index.add(key, record.lineno)
        return index

    @classmethod
    def from_items(cls, items: Iterable[Any]) -> ReferenceIndex:
        """Index in-memory items (their 1-based position stands in for the line number)."""
        index = cls()
        for position, obj in enumerate(items, start=1):
            key = example_key(obj)
            if key is None:
                index.skip(_skip_reason(None, obj))
            else:
                index.add(key, position)
        return index

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def add(self, key: ExampleKey, lineno: int) -> None:
        """Record an item; the first line with a given key is the one hits point at."""
        self.items += 1
        self.exact.setdefault(key.exact, lineno)
        if key.normalized is not None:
            self.normalized.setdefault(key.normalized, lineno)

    def match(self, key: ExampleKey) -> tuple[str, int] | None:
        """``("exact"|"normalized", reference line)`` of the item ``key`` repeats, or None."""
        line = self.exact.get(key.exact)
        if line is not None:
            return EXACT, line
        if key.normalized is not None:
            line = self.normalized.get(key.normalized)
            if line is not None:
                return NORMALIZED, line
        return None

    def match_item(self, obj: Any) -> tuple[str, int] | None:
        """Like :meth:`match` for a parsed item; None also when the item has no user turns."""
        key = example_key(obj)
        return None if key is None else self.match(key)

    @property
    def nbytes(self) -> int:
        return self.exact.nbytes + self.normalized.nbytes


def find_leakage(
    reference_path: str | Path,
    candidate_path: str | Path,
    *,
    max_hits: int | None = 100,
    reference: ReferenceIndex | None = None,
) -> LeakageReport:
    """Candidate items whose user turns repeat a reference item's, exactly or after normalization.

    Streams both files; holds only the reference's hashes (pass ``reference`` to reuse an index already built
    from ``reference_path``). Counts every hit; keeps the first ``max_hits`` (None: all) with both line numbers.
    """
    index = reference if reference is not None else ReferenceIndex.from_file(reference_path)
    report = LeakageReport(
        reference_path=str(reference_path),
        candidate_path=str(candidate_path),
        reference_items=index.items,
        reference_skipped=dict(index.skipped),
        max_hits=max_hits,
    )
    for record in iter_records(candidate_path):
        key = example_key(record.obj) if record.error is None else None
        if key is None:
            reason = _skip_reason(record.error, record.obj)
            report.candidate_skipped[reason] = report.candidate_skipped.get(reason, 0) + 1
            continue
        report.candidate_items += 1
        found = index.match(key)
        if found is None:
            continue
        report.add_hit(record.lineno, *found)
    return report


def find_duplicates(path: str | Path, *, max_hits: int | None = 100) -> LeakageReport:
    """Items of one file that repeat the user turns of an earlier item of the same file.

    The report's reference and candidate are both ``path``; each hit names the later line and the first line
    with the same user turns. One pass, same compact memory as :func:`find_leakage`.
    """
    index = ReferenceIndex(expected=count_lines(path))
    report = LeakageReport(reference_path=str(path), candidate_path=str(path), max_hits=max_hits)
    for record in iter_records(path):
        key = example_key(record.obj) if record.error is None else None
        if key is None:
            index.skip(_skip_reason(record.error, record.obj))
            continue
        found = index.match(key)
        index.add(key, record.lineno)
        if found is None:
            continue
        report.add_hit(record.lineno, *found)
    report.reference_items = report.candidate_items = index.items
    report.reference_skipped = dict(index.skipped)
    report.candidate_skipped = dict(index.skipped)
    return report
