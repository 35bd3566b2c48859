"""How a local job fails: OpenAI's ``error = {code, message, param}``, from whatever went wrong.

Error codes: ``invalid_training_file`` / ``invalid_validation_file`` (the dataset failed validation or changed
since upload), ``invalid_model`` (no such local model, no tokenizer or chat template), ``invalid_hyperparameters``
(a setting out of range, a LoRA rank vLLM cannot serve, target modules the model lacks),
``insufficient_disk_space``, ``insufficient_memory`` (the fit check's estimate exceeds the free RAM /
VRAM), ``invalid_request`` (any other refusal of ours), ``training_error`` (a distributed
run whose workers failed) and ``internal_error`` (a bug: the traceback is in ``runner.log``).
"""

from __future__ import annotations

import re

from tuneport.errors import DataError, SpecError, TuneportError

__all__ = ["JobFailure", "classify_error", "with_hint"]


class JobFailure(Exception):
    """Ends the job as ``failed`` with OpenAI's error shape."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


# OpenAI-facing names of TrainConfig fields, for ``error.param``.
_PARAM_NAMES = {
    "n_epochs": "hyperparameters.n_epochs",
    "batch_size": "hyperparameters.batch_size",
    "learning_rate": "local.learning_rate",
    "dpo_beta": "hyperparameters.beta",
    "model": "model",
    "training_file": "training_file",
    "validation_file": "validation_file",
}


def with_hint(exc: TuneportError) -> str:
    """The error's message with its hint in parentheses (a job error has one message field)."""
    return str(exc) + (f" ({exc.hint})" if exc.hint else "")


def classify_error(exc: BaseException) -> JobFailure:
    """Map an exception raised while preparing or running training to ``error = {code, message, param}``."""
    if isinstance(exc, JobFailure):
        return exc
    message = str(exc)
    hint = getattr(exc, "hint", None)
    text = message + (f" ({hint})" if hint else "")
    if isinstance(exc, DataError):
        return JobFailure("invalid_training_file", text, "training_file")
    if isinstance(exc, SpecError):
        if "disk space" in message:
            return JobFailure("insufficient_disk_space", text, None)
        match = re.search(r"`(\w+)`", message)
        field = match.group(1) if match else None
        if field == "model" or "chat template" in message or "tokenizer" in message:
            return JobFailure("invalid_model", text, "model")
        if field in ("training_file", "validation_file"):
            return JobFailure(f"invalid_{field}", text, field)
        param = _PARAM_NAMES.get(field, f"local.{field}") if field else None
        return JobFailure("invalid_hyperparameters", text, param)
    if isinstance(exc, TuneportError):
        return JobFailure("invalid_request", text, None)
    return JobFailure(
        "internal_error", f"{type(exc).__name__}: {exc} (traceback in the job's runner.log)", None
    )
