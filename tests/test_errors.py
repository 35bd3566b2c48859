"""One exception tree: every error tuneport raises on purpose has an exit code and a hint, mapped in one place."""

from __future__ import annotations

import json

import click
import pytest

import tuneport
from tuneport import errors
from tuneport.cli import main as cli_main

ERROR_NAMES = [n for n in tuneport.__all__ if n.endswith("Error")]


def test_every_public_error_derives_from_the_root() -> None:
    assert ERROR_NAMES, "no errors exported"
    for name in ERROR_NAMES:
        cls = getattr(tuneport, name)
        assert issubclass(cls, errors.TuneportError), name
        assert isinstance(cls.exit_code, int) and cls.exit_code >= 1, name


def test_categories_have_distinct_exit_codes() -> None:
    codes = {
        cls.exit_code
        for cls in (
            errors.SpecError,
            errors.DataError,
            errors.StoreError,
            errors.ProviderError,
            errors.AuthenticationError,
            errors.RateLimitError,
            errors.QuotaExceededError,
            errors.TrainingNotAvailableError,
            errors.JobFailedError,
            errors.EvaluationError,
        )
    }
    assert len(codes) == 10


def test_training_not_available_hint_points_to_the_local_backend() -> None:
    exc = errors.TrainingNotAvailableError("refused", status_code=403, code="training_not_available")
    assert "--backend local" in exc.hint
    assert "HTTP 403" in str(exc) and "training_not_available" in str(exc)


def _run_failing(exc: Exception, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    @click.command("boom")
    @click.option("--json", "as_json", is_flag=True)
    def boom(as_json: bool) -> None:
        raise exc

    cli_main.cli.add_command(boom)
    try:
        with pytest.raises(SystemExit) as info:
            cli_main.main(["boom", *args])
    finally:
        cli_main.cli.commands.pop("boom", None)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_cli_maps_errors_to_message_hint_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_failing(errors.SpecError("spec.yaml:3: model: missing", hint="add a model"), [], capsys)
    assert code == errors.SpecError.exit_code
    assert "error: spec.yaml:3: model: missing" in err and "hint: add a model" in err
    assert out == ""


def test_cli_maps_errors_to_json_under_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run_failing(errors.QuotaExceededError("no quota", status_code=429), ["--json"], capsys)
    assert code == errors.QuotaExceededError.exit_code
    payload = json.loads(out)["error"]
    assert payload["type"] == "QuotaExceededError" and payload["message"] == "no quota" and payload["hint"]
