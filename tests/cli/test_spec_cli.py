"""`tuneport spec check`: JSON and human output, backends, and error exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuneport.cli.main import main
from tuneport.cli.spec import spec as spec_group
from tuneport.errors import SpecError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.y*ml")) + sorted((REPO / "examples").glob("*.toml"))


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the real entry point (where errors become exit codes) and capture its output."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def write_spec(tmp_path: Path, text: str) -> Path:
    (tmp_path / "train.jsonl").write_text('{"messages": []}\n' * 50)
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_check_clean(example: Path) -> None:
    result = CliRunner().invoke(spec_group, ["check", str(example), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and len(report["spec_hash"]) == 64
    assert report["files"]["training_file"]["exists"] is True
    assert report["local"]["plan"] is not None or report["backend"] == "openai"


def test_json_report_shows_both_backends(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        "model: tiny-chat\ntraining_file: train.jsonl\nmethod: {type: dpo, hyperparameters: {beta: 0.2}}\n",
    )
    result = CliRunner().invoke(spec_group, ["check", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["spec"]["method"]["dpo"]["hyperparameters"]["beta"] == 0.2
    body = report["openai"]["create_body"]
    assert body["method"]["type"] == "dpo" and "local" not in body and "backend" not in body
    assert body["training_file"] == "<file id of train.jsonl after upload>"
    assert any("not a model OpenAI is known" in w for w in report["openai"]["warnings"])
    plan = report["local"]["plan"]
    assert (plan["n_train_examples"], plan["n_epochs"], plan["beta"], plan["packing"]) == (50, 3, 0.2, False)
    assert report["local"]["warnings"] == []


def test_backend_option_limits_and_overrides(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "model: gpt-4o-mini\ntraining_file: train.jsonl\n")
    report = json.loads(
        CliRunner().invoke(spec_group, ["check", str(path), "--json", "--backend", "openai"]).stdout
    )
    assert report["backend"] == "openai" and "local" not in report and report["openai"]["warnings"] == []
    report = json.loads(
        CliRunner().invoke(spec_group, ["check", str(path), "--json", "--backend", "local"]).output
    )
    assert "openai" not in report
    assert any("no downloadable weights" in w for w in report["local"]["warnings"])


def test_file_id_spec_has_no_local_plan(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("model: gpt-4o-mini\ntraining_file: file-abc123\n")
    report = json.loads(CliRunner().invoke(spec_group, ["check", str(path), "--json"]).output)
    assert report["openai"]["create_body"]["training_file"] == "file-abc123"
    assert report["local"]["plan"] is None and "OpenAI file id" in report["local"]["reason"]


def test_human_output(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "model: tiny-chat\ntraining_file: train.jsonl\nlocal: {lora_r: 8}\n")
    result = CliRunner().invoke(spec_group, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "spec OK" in result.output
    assert "Local trainer plan" in result.output and "n_epochs auto -> 3" in result.output
    assert "POST /v1/fine_tuning/jobs" in result.output
    assert "ignored by OpenAI" in result.output  # lora_r is local-only


def test_invalid_spec_exits_3_with_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(
        tmp_path, "model: tiny-chat\ntraining_file: train.jsonl\nseed: -1\nlocal:\n  lora_rr: 8\n"
    )
    code, out, err = run_main(["spec", "check", str(path)], capsys)
    assert code == 3
    assert f"{path}:3: seed: must be an integer from 0 to 2147483647 (got -1)" in err
    assert f'{path}:5: local.lora_rr: unknown key "lora_rr"; did you mean "lora_r"?' in err
    assert "hint:" in err and out == ""


def test_invalid_spec_json_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, "model: tiny-chat\ntraining_file: train.jsonl\nmethod:\n  type: sft\n")
    code, out, _ = run_main(["spec", "check", str(path), "--json"], capsys)
    assert code == 3
    error = json.loads(out)["error"]
    assert error["type"] == "SpecError"
    assert error["findings"] == [
        {
            "file": str(path),
            "line": 4,
            "path": "method.type",
            "message": 'must be one of supervised, dpo (got "sft")',
        }
    ]


def test_missing_spec_file_and_bad_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["spec", "check", str(tmp_path / "nope.yaml")], capsys)
    assert code == 3 and "spec file not found" in err
    path = write_spec(tmp_path, "model: m\ntraining_file: train.jsonl\n")
    code, _, _ = run_main(["spec", "check", str(path), "--backend", "no-such-backend"], capsys)
    assert code == 2  # click usage error


def test_group_raises_spec_error_for_the_main_handler(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "model: m\ntraining_file: train.jsonl\nn_epochs: 2\n")
    result = CliRunner().invoke(spec_group, ["check", str(path)])
    assert isinstance(result.exception, SpecError)
    assert "method.supervised.hyperparameters.n_epochs" in str(result.exception)


def test_cli_module_import_is_light() -> None:
    code = "import sys, tuneport.cli.spec; bad = {'pydantic', 'yaml', 'rich'} & set(sys.modules); print(sorted(bad))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
