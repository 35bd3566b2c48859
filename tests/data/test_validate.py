"""Dataset validation: each category is found at the right line and JSON path, and nothing crashes on any input."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneport.data.validate import CATEGORIES, MIN_EXAMPLES, SeenHashes, validate_file
from tuneport.errors import DataError


def ex(i: int = 0, **extra) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Question number {i}?"},
            {"role": "assistant", "content": f"Answer number {i}."},
        ],
        **extra,
    }


def write(path: Path, lines: list) -> Path:
    with open(path, "wb") as fh:
        for item in lines:
            if isinstance(item, bytes):
                fh.write(item + b"\n")
            else:
                fh.write(json.dumps(item).encode() + b"\n")
    return path


def good(n: int = MIN_EXAMPLES) -> list:
    return [ex(i) for i in range(n)]


def findings_of(report, category: str):
    return [f for f in report.findings if f.category == category]


TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
]


def call(cid="c1", name="get_weather", arguments='{"city": "Paris"}'):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


# (bad line, category, JSON path). The bad line is written as line 11, after 10 good examples.
CASES = [
    ([1, 2], "data_type", ""),
    ("just a string", "data_type", ""),
    ({"prompt": "x", "completion": "y"}, "missing_messages_list", "messages"),
    ({"messages": []}, "missing_messages_list", "messages"),
    (
        {"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]},
        "message_missing_key",
        "messages[0]",
    ),
    (
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]},
        "message_missing_key",
        "messages[0]",
    ),
    (
        {"messages": [{"role": "user", "content": "q", "foo": 1}, {"role": "assistant", "content": "x"}]},
        "message_unrecognized_key",
        "messages[0].foo",
    ),
    (
        {"messages": [{"role": "bot", "content": "q"}, {"role": "assistant", "content": "x"}]},
        "unrecognized_role",
        "messages[0].role",
    ),
    (
        {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]},
        "missing_content",
        "messages[0].content",
    ),
    (
        {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "x"}]},
        "missing_content",
        "messages[0].content",
    ),
    (
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None}]},
        "missing_content",
        "messages[1].content",
    ),
    ({"messages": [{"role": "user", "content": "q"}]}, "example_missing_assistant_message", "messages"),
    ({"messages": ["hello", {"role": "assistant", "content": "x"}]}, "message_data_type", "messages[0]"),
    (
        {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]},
        "invalid_content_type",
        "messages[0].content",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": [{"type": "audio", "x": 1}]},
                {"role": "assistant", "content": "x"},
            ]
        },
        "invalid_content_type",
        "messages[0].content[0].type",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "x", "weight": 0.5},
            ]
        },
        "invalid_weight",
        "messages[1].weight",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "x", "weight": True},
            ]
        },
        "invalid_weight",
        "messages[1].weight",
    ),
    (
        {"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "x"}]},
        "weight_on_non_assistant",
        "messages[0].weight",
    ),
    ({"messages": [{"role": "user", "content": "q"}], "tools": {"a": 1}}, "invalid_tools", "tools"),
    (
        {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
            "tools": [{"type": "function", "function": {"parameters": {}}}],
        },
        "invalid_tools",
        "tools[0].function.name",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [call(arguments={"city": "Paris"})]},
            ],
            "tools": TOOLS,
        },
        "arguments_not_string",
        "messages[1].tool_calls[0].function.arguments",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [call(arguments="{city: Paris")]},
            ],
            "tools": TOOLS,
        },
        "arguments_invalid_json",
        "messages[1].tool_calls[0].function.arguments",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [call(name="send_email")]},
            ],
            "tools": TOOLS,
        },
        "undeclared_tool",
        "messages[1].tool_calls[0].function.name",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]},
            ]
        },
        "invalid_tool_call",
        "messages[1].tool_calls[0].function",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [call("c1")]},
                {"role": "tool", "tool_call_id": "c9", "content": "sunny"},
                {"role": "assistant", "content": "Sunny."},
            ],
            "tools": TOOLS,
        },
        "unknown_tool_call_id",
        "messages[2].tool_call_id",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "tool", "content": "sunny"},
                {"role": "assistant", "content": "x"},
            ]
        },
        "message_missing_key",
        "messages[1]",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [call("c1"), call("c1")]},
            ],
            "tools": TOOLS,
        },
        "duplicate_tool_call_id",
        "messages[1].tool_calls[1].id",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [call("c1"), call("c2")]},
            ],
            "tools": TOOLS,
            "parallel_tool_calls": False,
        },
        "parallel_tool_calls_not_allowed",
        "messages[1].tool_calls",
    ),
    (
        {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
            "parallel_tool_calls": "yes",
        },
        "invalid_parallel_tool_calls",
        "parallel_tool_calls",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
            ],
            "functions": [{"name": "g", "parameters": {}}],
        },
        "undeclared_function",
        "messages[1].function_call.name",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "function_call": "f"},
            ]
        },
        "invalid_function_call",
        "messages[1].function_call",
    ),
    (
        {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
            "functions": "f",
        },
        "invalid_functions",
        "functions",
    ),
    (
        {"messages": [{"role": "function", "content": "42"}, {"role": "assistant", "content": "x"}]},
        "message_missing_key",
        "messages[0]",
    ),
    (
        {"messages": [{"role": "user", "content": "q", "name": 7}, {"role": "assistant", "content": "x"}]},
        "invalid_type",
        "messages[0].name",
    ),
    (
        {
            "input": {"messages": [{"role": "user", "content": "q"}]},
            "preferred_output": [{"role": "assistant", "content": "a"}],
            "non_preferred_output": [{"role": "assistant", "content": "b"}],
        },
        "format_mismatch",
        "",
    ),
]

WARNING_CASES = [
    (
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x", "weight": 0}]},
        "all_assistant_weights_zero",
        "messages",
    ),
    (
        {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
            "metadata": {"a": 1},
        },
        "example_unrecognized_key",
        "metadata",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "x"},
                {"role": "user", "content": "more?"},
            ]
        },
        "last_message_not_assistant",
        "messages[2]",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [call("c1")]},
                {"role": "user", "content": "never mind"},
                {"role": "assistant", "content": "OK."},
            ],
            "tools": TOOLS,
        },
        "tool_call_without_response",
        "messages[1].tool_calls",
    ),
]


@pytest.mark.parametrize(("bad", "category", "path"), CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_error_category_line_and_path(tmp_path: Path, bad, category: str, path: str) -> None:
    report = validate_file(write(tmp_path / "d.jsonl", [*good(), bad]))
    hits = findings_of(report, category)
    assert hits, (category, [str(f) for f in report.findings])
    assert hits[0].line == MIN_EXAMPLES + 1
    assert hits[0].path == path
    assert hits[0].severity == "error"
    assert hits[0].hint
    assert not report.ok
    assert report.counts[category] >= 1
    assert report.valid_examples == MIN_EXAMPLES  # the bad example is excluded from statistics
    with pytest.raises(DataError) as err:
        report.raise_for_errors()
    assert any(f.category == category for f in err.value.findings)


@pytest.mark.parametrize(("bad", "category", "path"), WARNING_CASES, ids=[c[1] for c in WARNING_CASES])
def test_warning_category_does_not_fail(tmp_path: Path, bad, category: str, path: str) -> None:
    report = validate_file(write(tmp_path / "d.jsonl", [*good(), bad]))
    hits = findings_of(report, category)
    assert hits and hits[0].line == MIN_EXAMPLES + 1 and hits[0].path == path
    assert hits[0].severity == "warning"
    assert report.ok, [str(f) for f in report.findings]
    report.raise_for_errors()  # warnings alone never raise


def test_every_category_has_a_severity_and_hint() -> None:
    for code, (severity, hint) in CATEGORIES.items():
        assert code == code.lower() and " " not in code
        assert severity in ("error", "warning")
        assert hint.endswith(".") or hint.endswith(")")


def test_valid_file_has_no_findings(tmp_path: Path) -> None:
    tool_example = {
        "messages": [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": None, "tool_calls": [call("c1"), call("c2", arguments="{}")]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "c2", "content": "warm"},
            {"role": "assistant", "content": "Sunny and warm.", "weight": 1},
        ],
        "tools": TOOLS,
        "parallel_tool_calls": True,
    }
    final_call = {
        "messages": [
            {"role": "user", "content": "Paris?"},
            {"role": "assistant", "tool_calls": [call("c1")]},
        ],
        "tools": TOOLS,
    }
    report = validate_file(write(tmp_path / "d.jsonl", [*good(), tool_example, final_call]))
    assert report.ok and report.findings == [], [str(f) for f in report.findings]
    assert report.method == "sft" and report.valid_examples == MIN_EXAMPLES + 2


def test_line_level_errors_and_bom(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    lines = [json.dumps(e).encode() for e in good()]
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    body = (
        b"\n".join(lines)
        + b"\n\n"
        + b'{"messages": [\xff]}\n'
        + b'{"messages": [}\n'
        + b'{"messages": [{"role"'
    )
    p.write_bytes(body)
    report = validate_file(p)
    by = {f.category: f for f in report.findings}
    assert by["utf8_bom"].line == 1 and by["utf8_bom"].severity == "warning"
    assert by["blank_line"].line == 11
    assert by["invalid_utf8"].line == 12
    assert by["invalid_json"].line == 13
    assert by["truncated_last_line"].line == 14
    assert report.valid_examples == MIN_EXAMPLES


def test_too_few_examples(tmp_path: Path) -> None:
    report = validate_file(write(tmp_path / "d.jsonl", good(MIN_EXAMPLES - 1)))
    f = findings_of(report, "too_few_examples")
    assert f and f[0].line is None and "9 examples" in f[0].message
    assert not report.ok
    assert validate_file(write(tmp_path / "e.jsonl", good(MIN_EXAMPLES))).ok
    # the minimum is OpenAI's rule for training files; a validation file may be smaller
    assert validate_file(write(tmp_path / "v.jsonl", good(3)), min_examples=1).ok


def test_duplicates_name_the_first_line_even_with_other_key_order(tmp_path: Path) -> None:
    rows = good()
    reordered = {"messages": [{"content": m["content"], "role": m["role"]} for m in rows[2]["messages"]]}
    report = validate_file(write(tmp_path / "d.jsonl", [*rows, reordered, rows[5]]))
    dups = findings_of(report, "duplicate_example")
    assert [(d.line, d.message) for d in dups] == [
        (11, "the example duplicates line 3"),
        (12, "the example duplicates line 6"),
    ]
    assert report.ok


def test_over_the_model_limit_is_a_warning(tmp_path: Path) -> None:
    long = ex(99)
    long["messages"][2]["content"] = "word " * 17000  # > gpt-3.5-turbo's 16,385 tokens
    report = validate_file(write(tmp_path / "d.jsonl", [*good(), long]), model="gpt-3.5-turbo")
    f = findings_of(report, "example_too_long")
    assert f and f[0].line == 11 and "16385" in f[0].message
    assert report.ok and report.stats.over_limit == 1


def test_dpo_detected_and_checked(tmp_path: Path) -> None:
    def pair(i: int, **over):
        d = {
            "input": {"messages": [{"role": "user", "content": f"q{i}"}]},
            "preferred_output": [{"role": "assistant", "content": f"good {i}"}],
            "non_preferred_output": [{"role": "assistant", "content": f"bad {i}"}],
        }
        d.update(over)
        return d

    rows = [pair(i) for i in range(MIN_EXAMPLES)]
    rows.append(
        pair(
            10, input={"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
        )
    )
    rows.append(
        pair(
            11,
            preferred_output=[{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}],
        )
    )
    rows.append(
        pair(
            12,
            non_preferred_output=[{"role": "assistant", "content": "good 12"}],
            preferred_output=[{"role": "assistant", "content": "good 12"}],
        )
    )
    rows.append(
        {
            "input": {"messages": [{"role": "user", "content": "q"}]},
            "preferred_output": [{"role": "assistant", "content": "a"}],
        }
    )
    rows.append(ex(1))
    report = validate_file(write(tmp_path / "d.jsonl", rows))
    assert report.method == "dpo" and "detected from line 1" in report.method_source
    cats = {(f.category, f.line, f.path) for f in report.findings}
    assert ("dpo_input_must_end_with_user", 11, "input.messages[1]") in cats
    assert ("dpo_invalid_output", 12, "preferred_output") in cats
    assert ("dpo_identical_outputs", 13, "non_preferred_output") in cats
    assert ("dpo_missing_key", 14, "non_preferred_output") in cats
    assert ("format_mismatch", 15, "") in cats
    assert report.stats.examples == MIN_EXAMPLES + 1  # the identical pair is only a warning
    # gpt-3.5-turbo cannot be trained with DPO
    assert "method_not_supported" in validate_file(tmp_path / "d.jsonl", model="gpt-3.5-turbo").counts


def test_method_given_overrides_detection(tmp_path: Path) -> None:
    report = validate_file(write(tmp_path / "d.jsonl", good()), method="dpo")
    assert report.method == "dpo" and report.method_source == "given"
    assert report.counts["format_mismatch"] == MIN_EXAMPLES


def test_findings_cap_keeps_counts_complete(tmp_path: Path) -> None:
    report = validate_file(write(tmp_path / "d.jsonl", [[i] for i in range(30)]), max_findings=5)
    assert len(report.findings) == 5 and report.findings_omitted == 25
    assert report.counts["data_type"] == 30


def test_missing_file_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        validate_file(tmp_path / "nope.jsonl")


def test_seen_hashes_grows_and_remembers_first_line() -> None:
    seen = SeenHashes(4)
    for i in range(1, 5000):
        assert seen.add(i * 0x9E3779B97F4A7C15, i) == 0
    assert len(seen) == 4999
    assert seen.add(17 * 0x9E3779B97F4A7C15, 9999) == 17
    assert seen.add(0, 1) == 0 and seen.add(0, 2) == 1  # hash 0 is stored too


# -- never crash ----------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        "role",
        "content",
        "name",
        "weight",
        "tool_calls",
        "tool_call_id",
        "function_call",
        "type",
        "function",
        "id",
        "arguments",
        "text",
    ]
)
roles = st.sampled_from(["system", "user", "assistant", "tool", "function", "bot", ""])
messages = st.dictionaries(keys, json_values | roles, max_size=5)
examples = st.fixed_dictionaries(
    {"messages": st.lists(messages | json_values, max_size=5)},
    optional={"tools": json_values, "parallel_tool_calls": json_values, "functions": json_values},
) | st.fixed_dictionaries(
    {},
    optional={
        "input": st.fixed_dictionaries({"messages": st.lists(messages, max_size=3)}) | json_values,
        "preferred_output": st.lists(messages, max_size=2),
        "non_preferred_output": st.lists(messages, max_size=2),
    },
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=st.lists(examples | json_values, min_size=0, max_size=12))
def test_never_crashes_on_arbitrary_json(tmp_path: Path, lines: list) -> None:
    p = tmp_path / "h.jsonl"
    p.write_bytes(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    report = validate_file(p)
    assert report.errors + report.warnings == sum(report.counts.values())
    json.dumps(report.to_dict(), default=str)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000))
def test_never_crashes_on_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "b.jsonl"
    p.write_bytes(data)
    report = validate_file(p)
    assert report.errors >= 1  # at most a few lines: always too few examples, at least


def test_never_crashes_on_binary_garbage(tmp_path: Path) -> None:
    rnd = tmp_path / "random.jsonl"
    rnd.write_bytes(os.urandom(200_000))
    gz = tmp_path / "data.jsonl.gz"
    gz.write_bytes(gzip.compress(b"".join(json.dumps(e).encode() + b"\n" for e in good(50))))
    deep = tmp_path / "deep.jsonl"
    deep.write_text(
        "\n".join(
            [json.dumps(ex(i)) for i in range(10)]
            + ["[" * 1000 + "]" * 1000, '{"messages": ' + "[" * 900 + "]" * 900 + "}"]
        )
        + "\n"
    )
    for p in (rnd, gz, deep):
        report = validate_file(p)
        assert not report.ok
        assert report.errors == sum(n for c, n in report.counts.items() if CATEGORIES[c][0] == "error")
