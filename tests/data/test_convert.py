"""`tuneport data convert`: every input format to chat JSONL (validated after), format detection in the validator,
and bad input named by line and field with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuneport.cli.data import data
from tuneport.data.convert import convert_file
from tuneport.data.formats import foreign_format
from tuneport.data.validate import validate_file
from tuneport.errors import DataError


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), "utf-8")
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


ALPACA = [{"instruction": f"Classify ticket {i}", "input": f"my card was charged {i} times" if i % 2 else "",
           "output": "billing", **({"system": "Answer with one word."} if i == 0 else {})} for i in range(12)]  # fmt: skip
PROMPT_COMPLETION = [{"prompt": f"Q{i}: 2+{i}?", "completion": str(2 + i)} for i in range(12)]


def _sharegpt(i: int) -> dict:
    call = json.dumps({"name": "get_weather", "arguments": {"city": f"City{i}"}})
    tools = json.dumps([{"name": "get_weather", "description": "current weather",
                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])  # fmt: skip
    return {"system": "You are a weather bot.", "tools": tools, "conversations": [
        {"from": "human", "value": f"Weather in City{i}?"}, {"from": "function_call", "value": call},
        {"from": "observation", "value": json.dumps({"temp_c": 20 + i})}, {"from": "gpt", "value": f"{20 + i} C"}]}  # fmt: skip


def test_alpaca_instruction_and_input_become_the_user_turn(tmp_path: Path) -> None:
    result = convert_file(_write(tmp_path / "a.jsonl", ALPACA), tmp_path / "chat.jsonl")
    assert result.format == "alpaca" and result.detected and result.examples == 12
    rows = _read(tmp_path / "chat.jsonl")
    assert rows[0]["messages"] == [{"role": "system", "content": "Answer with one word."},
                                   {"role": "user", "content": "Classify ticket 0"},
                                   {"role": "assistant", "content": "billing"}]  # fmt: skip
    assert rows[1]["messages"][0] == {"role": "user", "content": "Classify ticket 1\n\nmy card was charged 1 times"}
    assert result.report.ok, result.report.to_dict()


def test_prompt_completion(tmp_path: Path) -> None:
    result = convert_file(_write(tmp_path / "pc.jsonl", PROMPT_COMPLETION), tmp_path / "chat.jsonl",
                          fmt="prompt-completion")  # fmt: skip
    assert not result.detected and result.report.ok
    assert _read(tmp_path / "chat.jsonl")[3]["messages"] == [{"role": "user", "content": "Q3: 2+3?"},
                                                             {"role": "assistant", "content": "5"}]  # fmt: skip


def test_sharegpt_roles_and_function_calls_become_tool_calls_and_tool_messages(tmp_path: Path) -> None:
    result = convert_file(_write(tmp_path / "sg.jsonl", [_sharegpt(i) for i in range(12)]), tmp_path / "chat.jsonl")
    assert result.format == "sharegpt" and result.report.ok, result.report.to_dict()
    row = _read(tmp_path / "chat.jsonl")[2]
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    call = row["messages"][2]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "City2"}'}
    assert row["messages"][3] == {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 22}'}
    assert row["tools"][0]["type"] == "function" and row["tools"][0]["function"]["name"] == "get_weather"


def test_validator_names_the_format_it_saw_instead_of_calling_alpaca_dpo(tmp_path: Path) -> None:
    report = validate_file(_write(tmp_path / "a.jsonl", ALPACA))
    cats = {f.category for f in report.findings}
    assert "missing_messages_list" in cats and not any("DPO" in f.message or "preferred" in f.message for f in report.findings)
    first = next(f for f in report.findings if f.category == "missing_messages_list")
    assert first.line == 1 and "alpaca" in first.message and "tuneport data convert" in first.message
    assert foreign_format(_sharegpt(0)) == "sharegpt" and foreign_format(PROMPT_COMPLETION[0]) == "prompt-completion"
    assert foreign_format({"messages": []}) is None
    assert foreign_format({"input": [], "preferred_output": [], "non_preferred_output": []}) is None


def test_unknown_format_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown input format 'jsonl'") as err:
        convert_file(_write(tmp_path / "a.jsonl", ALPACA), tmp_path / "o.jsonl", fmt="jsonl")
    assert "alpaca" in err.value.hint
    unknown = _write(tmp_path / "u.jsonl", [{"question": "x", "answer": "y"}])
    with pytest.raises(DataError, match=r"line 1: not a format convert reads \(keys: answer, question\)"):
        convert_file(unknown, tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()


def test_mixed_formats_and_missing_fields_name_line_and_field(tmp_path: Path) -> None:
    mixed = _write(tmp_path / "m.jsonl", [ALPACA[0], ALPACA[1], PROMPT_COMPLETION[0]])
    with pytest.raises(DataError, match="line 3: this example is prompt-completion but line 1 is alpaca"):
        convert_file(mixed, tmp_path / "o.jsonl")
    missing = _write(tmp_path / "x.jsonl", [ALPACA[0], {"instruction": "no output here", "input": ""},
                                             {"instruction": 5, "output": "x"}, "{not json"])  # fmt: skip
    with pytest.raises(DataError) as err:
        convert_file(missing, tmp_path / "o.jsonl", fmt="alpaca")
    text = err.value.message
    assert "line 2, field output: field 'output' is missing (alpaca (instruction / input / output) needs it)" in text
    assert "line 3, field instruction: field 'instruction' must be a string, not int" in text
    assert "line 4:" in text and "3 line(s) cannot be converted" in text
    bad_turns = dict(_sharegpt(0), conversations=[{"from": "human", "value": "hi"}, {"from": "robot", "value": "x"},
                                                   {"from": "observation", "value": "{}"}])  # fmt: skip
    with pytest.raises(DataError) as err:
        convert_file(_write(tmp_path / "s.jsonl", [bad_turns]), tmp_path / "o.jsonl", fmt="sharegpt")
    assert "line 1, field conversations[1].from: unknown role 'robot'" in err.value.message
    orphan = dict(_sharegpt(0), conversations=[{"from": "human", "value": "hi"}, {"from": "observation", "value": "{}"}])
    with pytest.raises(DataError, match=r"field conversations\[1\]: an observation/tool turn answers no function_call"):
        convert_file(_write(tmp_path / "o2.jsonl", [orphan]), tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_converts_then_prints_the_validation(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.jsonl", ALPACA)
    result = CliRunner().invoke(data, ["convert", str(src), str(tmp_path / "chat.jsonl")])
    assert result.exit_code == 0, result.output
    assert "alpaca (detected)" in result.output and "12 chat examples" in result.output and "OK" in result.output
    few = _write(tmp_path / "few.jsonl", ALPACA[:2])
    result = CliRunner().invoke(data, ["convert", str(few), str(tmp_path / "few_chat.jsonl"), "--json"])
    assert result.exit_code != 0
    out = json.loads(result.output.split("\nerror")[0]) if result.output.lstrip().startswith("{") else None
    assert out is None or out["format"] == "alpaca"
    assert (tmp_path / "few_chat.jsonl").exists()  # converted; the validator's findings decide the exit code
