"""Leakage between two files and duplicates inside one: hits, kinds, line numbers, memory, CLI."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuneport.cli.data_split import leakage_cmd
from tuneport.data.leakage import LeakageHit, ReferenceIndex, find_duplicates, find_leakage
from tuneport.errors import DataError


def chat(user: str, assistant: str = "ok") -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def dpo(user: str) -> dict:
    return {
        "input": {"messages": [{"role": "user", "content": user}]},
        "preferred_output": [{"role": "assistant", "content": "good"}],
        "non_preferred_output": [{"role": "assistant", "content": "bad"}],
    }


def write_jsonl(path: Path, items: list) -> Path:
    lines = [item if isinstance(item, str) else json.dumps(item, ensure_ascii=False) for item in items]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    train = write_jsonl(
        tmp_path / "train.jsonl",
        [
            chat("What is the capital of France?"),  # 1
            chat("Translate 'cat' to German."),  # 2
            "{broken",  # 3
            chat("Name a prime number."),  # 4
            {"prompt": "not a chat item"},  # 5
            chat("What is the capital of France?", "again"),  # 6: same as line 1
        ],
    )
    other = write_jsonl(
        tmp_path / "val.jsonl",
        [
            chat("Name an even number."),  # 1: new
            chat("name a prime number"),  # 2: normalized duplicate of train 4
            chat("What is the capital of France?", "Paris"),  # 3: exact duplicate of train 1
            "",  # 4: blank
            chat("TRANSLATE “cat” to German"),  # 5: normalized duplicate of train 2
            chat("Translate 'cat' to German."),  # 6: exact duplicate of train 2
        ],
    )
    return train, other


def test_find_leakage_exact_and_normalized_with_line_numbers(files):
    train, other = files
    report = find_leakage(train, other)
    assert (report.exact, report.normalized, report.leaked) == (2, 2, 4)
    assert report.hits == [
        LeakageHit(candidate_line=2, reference_line=4, kind="normalized"),
        LeakageHit(candidate_line=3, reference_line=1, kind="exact"),  # the first training line with it
        LeakageHit(candidate_line=5, reference_line=2, kind="normalized"),
        LeakageHit(candidate_line=6, reference_line=2, kind="exact"),
    ]
    assert report.reference_items == 4 and report.candidate_items == 5
    assert report.reference_skipped == {"broken": 1, "not_an_example": 1}
    assert report.candidate_skipped == {"broken": 1}
    assert report.has_leak and not report.hits_truncated


def test_find_leakage_no_overlap(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [chat(f"question {i}") for i in range(20)])
    b = write_jsonl(tmp_path / "b.jsonl", [chat(f"question {i}") for i in range(20, 30)])
    report = find_leakage(a, b)
    assert not report.has_leak and report.hits == [] and report.candidate_items == 10


def test_find_leakage_dpo_against_chat(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [dpo("Rate this poem."), dpo("Summarize the text.")])
    other = write_jsonl(tmp_path / "other.jsonl", [chat("summarize the text"), dpo("Rate this poem.")])
    report = find_leakage(train, other)
    assert report.hits == [LeakageHit(1, 2, "normalized"), LeakageHit(2, 1, "exact")]


def test_multi_turn_items_match_on_the_whole_sequence(tmp_path):
    def two_turns(a: str, b: str) -> dict:
        return {
            "messages": [
                {"role": "user", "content": a},
                {"role": "assistant", "content": "..."},
                {"role": "user", "content": b},
            ]
        }

    train = write_jsonl(tmp_path / "t.jsonl", [two_turns("hi", "what time is it?")])
    other = write_jsonl(
        tmp_path / "o.jsonl", [chat("hi"), two_turns("hi", "what time is it?"), two_turns("hi", "no")]
    )
    report = find_leakage(train, other)
    assert report.hits == [LeakageHit(2, 1, "exact")]


def test_max_hits_keeps_counting(tmp_path):
    items = [chat(f"q{i}") for i in range(30)]
    a = write_jsonl(tmp_path / "a.jsonl", items)
    b = write_jsonl(tmp_path / "b.jsonl", items)
    report = find_leakage(a, b, max_hits=5)
    assert report.exact == 30 and len(report.hits) == 5 and report.hits_truncated
    assert report.to_dict()["hits_truncated"] is True


def test_reference_index_reusable_for_in_memory_items(files):
    train, _ = files
    index = ReferenceIndex.from_file(train)
    assert index.match_item(chat("what is the capital of france")) == ("normalized", 1)
    assert index.match_item(chat("Name a prime number.")) == ("exact", 4)
    assert index.match_item(chat("something else")) is None
    assert index.match_item({"messages": []}) is None
    mem = ReferenceIndex.from_items([chat("x"), {"nope": 1}, chat("y")])
    assert mem.match_item(chat("Y!")) == ("normalized", 3)
    assert mem.skipped == {"not_an_example": 1}


def test_find_duplicates_within_one_file(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [chat("one"), chat("two"), chat("One."), chat("two"), "[1]", chat("two", "other answer")],
    )
    report = find_duplicates(path)
    assert report.hits == [
        LeakageHit(3, 1, "normalized"),
        LeakageHit(4, 2, "exact"),
        LeakageHit(6, 2, "exact"),
    ]
    assert report.reference_skipped == {"not_an_example": 1}


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        find_leakage(tmp_path / "nope.jsonl", tmp_path / "nope2.jsonl")


def _short_items(n: int, prefix: str):
    # short lines keep the test fast; the per-line work is the same as for long ones
    return (f'{{"messages":[{{"role":"user","content":"{prefix} {i}"}}]}}\n' for i in range(n))


def test_memory_stays_flat(tmp_path):
    """find_leakage holds only compact hashes of the reference and nothing per candidate line."""
    big = tmp_path / "big.jsonl"
    big.write_text("".join(_short_items(50_000, "item")))
    small = tmp_path / "small.jsonl"
    small.write_text("".join(_short_items(1_000, "item")))
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text("".join(_short_items(25_000, "item")))

    started = time.perf_counter()
    tracemalloc.start()
    try:
        report = find_leakage(small, candidates)  # small reference, 25k candidates
        _, peak_small_ref = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        report_big = find_leakage(big, small)  # 50k reference
        _, peak_big_ref = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started

    assert report.exact == 1_000 and report.candidate_items == 25_000
    assert report_big.exact == 1_000 and report_big.reference_items == 50_000
    # streaming 25k candidates costs nothing per line (even 40 bytes a line would add 1 MB)
    assert peak_small_ref < 1_600_000, peak_small_ref  # the 1 MiB read buffer + a 1k-entry index
    # 50k reference items: two hash tables at ~17-24 bytes per entry, far below a dict's ~100+ bytes
    assert peak_big_ref < 4_000_000, peak_big_ref
    assert elapsed < 30, (
        elapsed
    )  # ~2 s on an idle machine; generous for shared CI, still catches quadratic work


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_leakage_text(files):
    train, other = files
    result = CliRunner().invoke(leakage_cmd, [str(train), str(other)])
    assert result.exit_code == 0, result.output
    assert "exact duplicates of user turns:             2" in result.output
    assert "normalized-only duplicates:                 2" in result.output
    assert f"{other} line 3  =  {train} line 1  (exact)" in result.output
    assert f"{other} line 2  =  {train} line 4  (normalized)" in result.output


def test_cli_leakage_json(files):
    train, other = files
    result = CliRunner().invoke(leakage_cmd, [str(train), str(other), "--json", "--show", "1"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["exact"] == 2 and payload["normalized"] == 2
    assert payload["hits"] == [{"candidate_line": 2, "reference_line": 4, "kind": "normalized"}]
    assert payload["hits_truncated"] is True
    assert payload["candidate"]["skipped"] == {"broken": 1}


def test_cli_fail_on_leak(files, tmp_path):
    train, other = files
    result = CliRunner().invoke(leakage_cmd, [str(train), str(other), "--fail-on-leak"])
    assert isinstance(result.exception, DataError)
    assert "4 of 5 items repeat user turns" in str(result.exception)
    assert "2 exact, 2 after normalization" in str(result.exception)
    assert result.exception.hint and "tuneport data split" in result.exception.hint
    assert len(result.exception.findings) == 4
    assert "exact duplicates" in result.output  # the report is shown before the error

    clean = write_jsonl(tmp_path / "clean.jsonl", [chat("brand new question")])
    ok = CliRunner().invoke(leakage_cmd, [str(train), str(clean), "--fail-on-leak"])
    assert ok.exit_code == 0 and "no leakage" in ok.output
