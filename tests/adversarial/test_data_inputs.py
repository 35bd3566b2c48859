"""Issue 13 items 7 and 14: hostile datasets get findings, in bounded memory; `split` names a symlink loop.

Reproductions: one line longer than any model's context (200 MB took 10.6 GB and ~4 minutes; here 40 MB, over the
32 MiB bound, must stay under a few hundred MB), a key given twice inside a message (passed silently), and a
symlink loop (``split`` said "no such file"). Then hypothesis throws arbitrary JSON lines at the validator: findings,
never an exception.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneport.data.reader import MAX_EXAMPLE_LINE_BYTES, iter_records
from tuneport.data.split import split_file
from tuneport.data.validate import validate_file, validate_records
from tuneport.errors import DataError

GOOD = json.dumps(
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
)


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ---- item 7: a line longer than any model's context ---------------------------------------------------------


_PEAK_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from tuneport.data.validate import validate_file
    report = validate_file(sys.argv[1])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak_mb, "report": report.to_dict()}))
    """
)


def _validate_in_fresh_process(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_line_over_the_bound_is_a_finding_and_memory_stays_bounded(tmp_path: Path) -> None:
    size = MAX_EXAMPLE_LINE_BYTES + 8 * (1 << 20)  # 40 MiB
    path = tmp_path / "huge.jsonl"
    huge = '{"messages": [{"role": "user", "content": "' + "x" * size + '"}]}'
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(10):
            fh.write(GOOD + "\n")
        fh.write(huge + "\n")
        fh.write(GOOD + "\n")
    small = _write_lines(tmp_path / "small.jsonl", [GOOD] * 11)
    result = _validate_in_fresh_process(path)
    report = result["report"]
    [finding] = [f for f in report["findings"] if f["category"] == "line_too_long"]
    assert finding["line"] == 11 and finding["severity"] == "error"
    assert f"{len(huge):,} bytes" in finding["message"]  # its size, as written
    assert "not parsed" in finding["message"] and finding["hint"]
    assert report["examples"] == 12 and report["valid_examples"] == 11  # the lines after it are still read
    # The same process on a small file: the tokenizer and the interpreter. The huge line may add one bounded read
    # buffer (32 MiB), nothing in proportion to the line (before: a 20 MB line alone added ~1 GB).
    baseline = _validate_in_fresh_process(small)["peak_mb"]
    assert result["peak_mb"] - baseline < 100, (result["peak_mb"], baseline)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b""])
def test_line_bound_is_exact(tmp_path: Path, newline: bytes) -> None:
    path = tmp_path / "d.jsonl"
    at_bound = b'"' + b"a" * 98 + b'"'  # 100 bytes: a JSON string, allowed
    over = b'"' + b"a" * 99 + b'"'  # 101 bytes
    path.write_bytes(at_bound + b"\n" + over + b"\n" + at_bound + newline)
    records = list(iter_records(path, max_line_bytes=100))
    assert [(r.lineno, r.error) for r in records] == [(1, None), (2, "line_too_long"), (3, None)]
    assert "101 bytes" in records[1].detail and records[1].raw == b""
    assert records[2].newline == bool(newline)


def test_a_last_line_over_the_bound_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'"ok"\n' + b"x" * 5000)
    records = list(iter_records(path, max_line_bytes=100))
    assert [(r.lineno, r.error, r.newline) for r in records] == [(1, None, True), (2, "line_too_long", False)]
    assert "5,000 bytes" in records[1].detail


def test_without_a_bound_the_reader_keeps_every_line_whole(tmp_path: Path) -> None:
    # split and the uploads copy lines byte for byte: they read without a bound
    path = _write_lines(tmp_path / "d.jsonl", ['"' + "y" * 5000 + '"'])
    [record] = list(iter_records(path))
    assert record.error is None and len(record.raw) == 5002


# ---- item 14: repeated keys inside a message ----------------------------------------------------------------


def test_a_key_given_twice_in_a_message_is_a_finding(tmp_path: Path) -> None:
    bad = '{"messages": [{"role": "user", "role": "assistant", "content": "hi"}, {"role": "assistant", "content": "x"}]}'
    path = _write_lines(tmp_path / "d.jsonl", [GOOD] * 3 + [bad])
    report = validate_file(path, min_examples=1)
    [finding] = [f for f in report.findings if f.category == "duplicate_key"]
    assert (finding.line, finding.path, finding.severity) == (4, "messages[0].role", "error")
    assert "'role' is given 2 times" in finding.message and '"assistant"' in finding.message
    assert not report.ok and report.valid_examples == 3


def test_repeated_weight_and_dpo_keys_are_findings(tmp_path: Path) -> None:
    weight = (
        '{"messages": [{"role": "user", "content": "q"}, '
        '{"role": "assistant", "content": "a", "weight": 0, "weight": 1}]}'
    )
    dpo = (
        '{"input": {"messages": [{"role": "user", "content": "q", "content": "r"}]}, '
        '"preferred_output": [{"role": "assistant", "content": "a"}], '
        '"non_preferred_output": [{"role": "assistant", "content": "b"}]}'
    )
    sft = validate_file(_write_lines(tmp_path / "w.jsonl", [weight]), min_examples=1)
    assert [(f.path, f.category) for f in sft.findings if f.category == "duplicate_key"] == [
        ("messages[1].weight", "duplicate_key")
    ]
    pref = validate_file(_write_lines(tmp_path / "p.jsonl", [dpo]), min_examples=1)
    assert [f.path for f in pref.findings if f.category == "duplicate_key"] == ["input.messages[0].content"]


def test_the_word_role_inside_a_text_is_not_a_repeated_key(tmp_path: Path) -> None:
    text = json.dumps(
        {
            "messages": [
                {"role": "user", "content": 'what does "role" mean in {"role": "user"}?'},
                {"role": "assistant", "content": 'the "content" key holds the text'},
            ]
        }
    )
    report = validate_file(_write_lines(tmp_path / "d.jsonl", [text]), min_examples=1)
    assert report.ok, [str(f) for f in report.findings]


# ---- item 14: split and a symlink loop ----------------------------------------------------------------------


def test_split_names_a_symlink_loop(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(DataError) as exc:
        split_file(a, val_fraction=0.5)
    assert "symbolic link loop" in str(exc.value) and "no such file" not in str(exc.value)
    with pytest.raises(DataError, match="symbolic link loop"):
        list(iter_records(a))


def test_split_names_a_dangling_link_and_a_missing_file(tmp_path: Path) -> None:
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "gone.jsonl")
    with pytest.raises(DataError, match=r"is a symbolic link to .*gone\.jsonl, which does not exist"):
        split_file(link, val_fraction=0.5)
    with pytest.raises(DataError, match="no such file"):
        split_file(tmp_path / "missing.jsonl", val_fraction=0.5)


# ---- hypothesis: arbitrary lines ----------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["role", "content", "weight", "tool_calls", "name", "messages", "input", "x"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "function", "x"])},
    optional={"content": _json, "weight": _json, "tool_calls": _json, "tool_call_id": _json, "name": _json},
)
_example = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(_message | _json, max_size=4)}, optional={"tools": _json}),
    st.fixed_dictionaries(
        {"input": st.fixed_dictionaries({"messages": st.lists(_message, max_size=3)})},
        optional={"preferred_output": st.lists(_message, max_size=2), "non_preferred_output": _json},
    ),
    _json,
)


def _parses(text: str) -> bool:
    try:
        orjson.loads(text)  # json.dumps writes lone surrogates that orjson (rightly) refuses
    except orjson.JSONDecodeError:
        return False
    return True


def _line(value: object, repeat_key: bool) -> str:
    text = json.dumps(value)
    if repeat_key and text.startswith('{"messages": [{"role": '):
        text = text.replace('{"role": ', '{"role": "user", "role": ', 1)
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    examples=st.lists(st.tuples(_example, st.booleans()), min_size=1, max_size=6),
    junk=st.lists(st.binary(max_size=30), max_size=2),
)
def test_arbitrary_lines_give_findings_never_exceptions(
    tmp_path: Path, examples: list[tuple[object, bool]], junk: list[bytes]
) -> None:
    path = tmp_path / "d.jsonl"
    lines = [_line(value, repeat).encode() for value, repeat in examples] + [
        j.replace(b"\n", b" ") for j in junk
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = validate_file(path, min_examples=1)
    assert report.examples + report.counts.get("blank_line", 0) == len(lines)
    assert sum(report.counts.values()) == report.errors + report.warnings
    for value, repeat in examples:
        if repeat and _line(value, True) != json.dumps(value) and _parses(json.dumps(value)):
            assert report.counts.get("duplicate_key")
    records = list(iter_records(path, max_line_bytes=64))
    again = validate_records(records, min_examples=1)  # the bounded path gives findings too
    assert again.lines == len(lines)
