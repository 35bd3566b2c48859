"""`tuneport data validate|stats`: exit codes, human output, --json structure, and no heavy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuneport.cli.data import data
from tuneport.errors import DataError


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _ex(i: int) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"Question {i}?"},
            {"role": "assistant", "content": f"Answer {i}."},
        ]
    }


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "good.jsonl", [_ex(i) for i in range(12)] + [_ex(3)]
    )  # one duplicate (a warning)


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    rows = [_ex(i) for i in range(12)]
    rows.insert(4, {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]})
    rows.append("{not json")
    return _write(tmp_path / "bad.jsonl", rows)


def test_validate_ok_with_warnings_exits_zero(good: Path) -> None:
    result = CliRunner().invoke(data, ["validate", str(good), "--model", "gpt-4o-mini"])
    assert result.exit_code == 0, result.output
    assert "duplicate_example" in result.output and "line 13" in result.output
    assert "OK" in result.output and "o200k_base (exact)" in result.output
    assert "estimated training price: $" in result.output


def test_validate_json_structure(good: Path) -> None:
    result = CliRunner().invoke(data, ["validate", str(good), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    assert d["ok"] is True and d["examples"] == 13 and d["errors"] == 0 and d["warnings"] == 1
    assert d["counts"] == {"errors": {}, "warnings": {"duplicate_example": 1}}
    f = d["findings"][0]
    assert set(f) == {"severity", "category", "line", "path", "message", "hint"}
    assert (f["category"], f["line"]) == ("duplicate_example", 13)
    assert d["tokens"]["exact"] is True and d["stats"]["exact"] is True
    assert d["stats"]["tokens_per_example"]["total"] > 0


def test_validate_errors_raise_data_error_with_findings(bad: Path) -> None:
    result = CliRunner().invoke(data, ["validate", str(bad)])
    assert isinstance(result.exception, DataError)
    cats = {(f.category, f.line) for f in result.exception.findings}
    assert ("unrecognized_role", 5) in cats and ("invalid_json", 14) in cats
    assert "unrecognized_role" in result.output and "line 5 messages[0].role" in result.output


def test_validate_exit_code_and_json_error_through_main(bad: Path) -> None:
    env = {**os.environ}
    proc = subprocess.run(
        [sys.executable, "-m", "tuneport.cli.main", "data", "validate", str(bad), "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == DataError.exit_code, proc.stderr
    # One JSON document on stdout (the whole report), errors signalled by the exit code and a line on stderr.
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["errors"] >= 2
    assert "error:" in proc.stderr
    assert {(f["category"], f["line"], f["path"]) for f in report["findings"]} >= {
        ("unrecognized_role", 5, "messages[0].role"),
        ("invalid_json", 14, ""),
    }


def test_findings_listing_is_capped(tmp_path: Path) -> None:
    p = _write(tmp_path / "many.jsonl", [[i] for i in range(80)])
    result = CliRunner().invoke(data, ["validate", str(p)])
    assert "30 more findings (use --json to see all)" in result.output  # 80 data_type errors, 50 listed


def test_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(data, ["validate", str(tmp_path / "nope.jsonl")])
    assert isinstance(result.exception, DataError) and "no such file" in str(result.exception)


def test_stats_json_and_human(good: Path) -> None:
    result = CliRunner().invoke(data, ["stats", str(good), "--model", "gpt-4.1-mini", "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    assert d["examples"] == 13 and d["n_epochs"] == 7 and d["errors"] == 0
    assert d["estimated_price_usd"] is not None and d["price_source"] and d["price_as_of"]
    assert d["billed_tokens"] == d["billed_tokens_per_epoch"] * 7
    human = CliRunner().invoke(data, ["stats", str(good), "--model", "gpt-4.1-mini", "--epochs", "2"])
    assert human.exit_code == 0 and "x 2 epochs (given)" in human.output


def test_stats_mentions_errors(bad: Path) -> None:
    result = CliRunner().invoke(data, ["stats", str(bad)])
    assert result.exit_code == 0 and "2 errors in 2 examples" in result.output


def test_validate_does_not_import_heavy_modules(good: Path) -> None:
    code = (
        "import sys\n"
        "from tuneport.cli.main import main\n"
        "try:\n"
        f"    main(['data', 'validate', {str(good)!r}, '--json'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'vllm', 'peft'))\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in proc.stderr, proc.stderr
