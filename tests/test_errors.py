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


def _tree(cls: type) -> list[type]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _tree(sub))]


def test_every_exit_code_comes_from_the_one_table() -> None:
    import tuneport.endpoints.client  # noqa: F401 - load the modules that define errors of their own
    import tuneport.local_backend.serving.serve  # noqa: F401

    table = errors.EXIT_CODES
    assert len(set(table.values())) == len(table), "two families share an exit code"
    for cls in _tree(errors.TuneportError):
        assert cls.exit_code in table.values(), cls
        if cls.__name__ in table and cls.__module__ == "tuneport.errors":
            assert cls.exit_code == table[cls.__name__], cls


def test_endpoint_error_is_part_of_the_tree(capsys: pytest.CaptureFixture[str]) -> None:
    from tuneport.endpoints.client import EndpointError

    assert EndpointError is errors.EndpointError and issubclass(EndpointError, errors.TuneportError)
    code, _, err = _run_failing(errors.EndpointError("No endpoint named 'x'."), [], capsys)
    assert code == errors.EXIT_CODES["EndpointError"] == 2
    assert "error: No endpoint named 'x'." in err and "hint: `tuneport endpoints list`" in err


def test_redaction_masks_keys_and_key_shapes_but_not_prose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "local")  # a placeholder, not a key: "local" stays readable
    monkeypatch.setenv("TUNEPORT_SERVER_TOKEN", "tok_0123456789")
    text = ("run with --backend local; Authorization: Bearer abc.DEF-123_xyz; key sk-proj-AbCdEf0123456789xyz; "
            "token tok_0123456789; set a bearer token or send `Authorization: Bearer <token>`; task-specific")  # fmt: skip
    assert errors.redact(text) == (
        "run with --backend local; Authorization: Bearer ***; key ***; token ***; "
        "set a bearer token or send `Authorization: Bearer <token>`; task-specific"
    )


def test_registered_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_TUNE_KEY", "acme-4f1e2d3c")
    assert "acme-4f1e2d3c" in errors.redact("key acme-4f1e2d3c")
    monkeypatch.setattr(errors, "_SECRET_ENVS", set(errors._SECRET_ENVS))  # undone after the test
    errors.register_secret_env("ACME_TUNE_KEY")
    assert "ACME_TUNE_KEY" in errors.secret_envs()
    assert errors.redact("key acme-4f1e2d3c") == "key ***"
    monkeypatch.setattr(errors, "_SECRET_VALUES", set())
    errors.register_secret("given-in-process-42")
    assert str(errors.StoreError("db given-in-process-42")) == "db ***"
    with pytest.raises(ValueError, match="not an environment variable name"):
        errors.register_secret_env("ACME KEY")
