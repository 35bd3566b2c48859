"""One exception tree for the whole project.

Every error tuneport raises on purpose derives from :class:`TuneportError`. Each carries an exit code (so the CLI
can map all of them in one place) and a hint: the next thing the user should do. Messages say *what* and *where*
(file, line, field); hints say *what to do*.

Exit codes live in one table, :data:`EXIT_CODES`, so scripts can rely on them and no two families share one by
accident. Why secrets are redacted here: a server may echo the ``Authorization`` header back in an error message
or a request id, and every message, hint, code and request id tuneport prints, logs, stores or reports is built by
:class:`TuneportError`, so masking them in its constructor covers every path at once. The values of the key
variables registered with :func:`register_secret_env` (each backend declares its own) and ``Bearer ...`` /
``sk-...``-shaped strings become ``***``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = [
    "EXIT_CODES",
    "redact",
    "register_secret",
    "register_secret_env",
    "secret_envs",
    "TuneportError",
    "EndpointError",
    "SpecError",
    "DataError",
    "StoreError",
    "ProviderError",
    "AuthenticationError",
    "RateLimitError",
    "QuotaExceededError",
    "TrainingNotAvailableError",
    "APIStatusError",
    "APIConnectionError",
    "ModelNotAvailableError",
    "WaitTimeoutError",
    "NotSupportedError",
    "JobFailedError",
    "InvalidFileError",
    "EvaluationError",
    "ServeError",
    "QualityGateError",
]


#: The one table of exit codes: what ``tuneport`` exits with for each family of errors (subclasses share their
#: family's code). 2 is also click's code for a command line it cannot parse.
EXIT_CODES: Mapping[str, int] = {
    "TuneportError": 1,
    "EndpointError": 2,
    "SpecError": 3,
    "DataError": 4,
    "StoreError": 5,
    "ProviderError": 6,
    "AuthenticationError": 7,
    "RateLimitError": 8,
    "QuotaExceededError": 9,
    "TrainingNotAvailableError": 10,
    "JobFailedError": 11,
    "EvaluationError": 12,
    "ServeError": 13,
    "QualityGateError": 14,  # `tuneport eval`: not shown non-inferior (--baseline/--margin), or under --fail-under
}

# -- secrets ---------------------------------------------------------------------------------------------------

#: Variables whose values are keys: every backend's, tuneport's own server and serving tokens, Hugging Face's.
_SECRET_ENVS: set[str] = {
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "TOGETHER_API_KEY",
    "TUNEPORT_SERVER_TOKEN",
    "TUNEPORT_SERVE_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
}
#: Keys handed to tuneport in-process rather than through a variable (``OpenAIProvider(api_key=...)``).
_SECRET_VALUES: set[str] = set()
#: Shorter values are placeholders (``OPENAI_API_KEY=local`` for a token-less server), not keys: masking every
#: "local" in every message would garble the messages and protect nothing.
_MIN_SECRET_LENGTH = 8
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MASK = "***"
#: ``Bearer CREDENTIAL`` and ``sk-...`` keys; the credential must hold a digit, so prose ("a bearer token") stays.
_SHAPED = re.compile(
    r"\b(?P<scheme>[Bb]earer)\s+(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}"
    r"|\bsk-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{16,}"
)


def register_secret_env(*names: str) -> None:
    """Declare environment variables that hold keys: their values are masked in every error from now on.

    Backends call this for their key variables; the inference client for an endpoint's ``api_key_env``.
    """
    for name in names:
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ValueError(f"register_secret_env: {name!r} is not an environment variable name")
        _SECRET_ENVS.add(name)


def register_secret(value: str) -> None:
    """Declare a key tuneport was given directly (not through a variable); it is masked in every error."""
    if value and len(value.strip()) >= _MIN_SECRET_LENGTH:
        _SECRET_VALUES.add(value.strip())


def secret_envs() -> frozenset[str]:
    """The names of the variables whose values are masked."""
    return frozenset(_SECRET_ENVS)


def redact(text: str) -> str:
    """``text`` with every known key and every ``Bearer ...`` / ``sk-...``-shaped string replaced by ``***``.

    Keys are read from the registered variables at each call, so a key exported after start-up is masked too.
    """
    if not text:
        return text
    known = set(_SECRET_VALUES)
    for name in _SECRET_ENVS:
        value = os.environ.get(name, "").strip()
        if len(value) >= _MIN_SECRET_LENGTH:
            known.add(value)
    for value in sorted(known, key=len, reverse=True):  # longest first: a key containing another goes whole
        if value in text:
            text = text.replace(value, _MASK)
    return _SHAPED.sub(lambda m: f"{m.group('scheme')} {_MASK}" if m.group("scheme") else _MASK, text)


def _redact_optional(text: str | None) -> str | None:
    return redact(text) if isinstance(text, str) else text


# -- the tree ----------------------------------------------------------------------------------------------------


class TuneportError(Exception):
    """Root of every error tuneport raises on purpose.

    ``exit_code`` is what the CLI exits with; ``hint`` is one sentence telling the user what to do next. Both the
    message and the hint are redacted (:func:`redact`) when set, at construction and on any later change.
    """

    exit_code: int = EXIT_CODES["TuneportError"]
    default_hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None) -> None:
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        self._message = redact(str(value))
        self.args = (self._message,)

    @property
    def hint(self) -> str | None:
        return self._hint

    @hint.setter
    def hint(self, value: str | None) -> None:
        self._hint = _redact_optional(value)

    def __str__(self) -> str:
        return self.message


class EndpointError(TuneportError):
    """An endpoint reference cannot be resolved, or an endpoint definition is invalid."""

    exit_code = EXIT_CODES["EndpointError"]
    default_hint = "`tuneport endpoints list` shows the saved endpoints; `tuneport endpoints add` saves one."


class SpecError(TuneportError):
    """The job spec is invalid: unknown key, out-of-range value, unreadable file."""

    exit_code = EXIT_CODES["SpecError"]
    default_hint = "Fix the spec file; `tuneport spec check SPEC` re-checks it without starting anything."


class DataError(TuneportError):
    """A dataset cannot be used: unreadable, or it fails validation."""

    exit_code = EXIT_CODES["DataError"]
    default_hint = "Run `tuneport data validate FILE` to see every finding with its line number."

    def __init__(self, message: str, *, hint: str | None = None, findings: list | None = None) -> None:
        super().__init__(message, hint=hint)
        self.findings = findings or []


class StoreError(TuneportError):
    """The local database cannot be opened or migrated."""

    exit_code = EXIT_CODES["StoreError"]
    default_hint = "Check TUNEPORT_HOME points at a writable folder."


class ProviderError(TuneportError):
    """A training backend refused or failed a request."""

    exit_code = EXIT_CODES["ProviderError"]

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.request_id = _redact_optional(request_id)  # servers echo headers into it
        self.code = _redact_optional(code)

    def __str__(self) -> str:
        extra = []
        if self.status_code is not None:
            extra.append(f"HTTP {self.status_code}")
        if self.code:
            extra.append(f"code={self.code}")
        if self.request_id:
            extra.append(f"request id {self.request_id}")
        return f"{self.message} ({', '.join(extra)})" if extra else self.message


class AuthenticationError(ProviderError):
    """No API key, or the key was rejected."""

    exit_code = EXIT_CODES["AuthenticationError"]
    default_hint = "Set OPENAI_API_KEY to a valid key (and OPENAI_ORG_ID / OPENAI_PROJECT_ID if your key needs them)."


class RateLimitError(ProviderError):
    """Too many requests; retried already, still refused."""

    exit_code = EXIT_CODES["RateLimitError"]
    default_hint = "Wait a minute and retry, or lower the concurrency."


class QuotaExceededError(ProviderError):
    """The account has no quota left (never retried: retrying cannot help)."""

    exit_code = EXIT_CODES["QuotaExceededError"]
    default_hint = "Add credit or raise the spending limit in the provider's billing settings."


class TrainingNotAvailableError(ProviderError):
    """The platform no longer accepts new fine-tuning jobs (OpenAI: ``403 training_not_available``)."""

    exit_code = EXIT_CODES["TrainingNotAvailableError"]
    default_hint = (
        "OpenAI no longer accepts new fine-tuning jobs for this organization: run the same spec with --backend local."
    )


class APIStatusError(ProviderError):
    """Any other HTTP error status from a provider."""


class APIConnectionError(ProviderError):
    """The provider could not be reached (connection refused, reset, timeout)."""

    default_hint = "Check the network and the base URL (OPENAI_BASE_URL), then retry."


class ModelNotAvailableError(APIStatusError):
    """The model does not exist or cannot be fine-tuned (by this organization)."""

    default_hint = (
        "Choose a model that supports fine-tuning (`tuneport cost catalog` lists the known ones), "
        "or run the same spec with --backend local."
    )


class WaitTimeoutError(ProviderError):
    """``wait`` gave up before the job reached a terminal status (the job itself goes on)."""

    default_hint = "The job is still running: `tuneport jobs wait JOB_ID` waits again."


class NotSupportedError(ProviderError):
    """The backend cannot do this (for example pausing a job that it cannot pause)."""


class JobFailedError(TuneportError):
    """A fine-tuning job ended in ``failed`` (or could not start)."""

    exit_code = EXIT_CODES["JobFailedError"]
    default_hint = "`tuneport jobs events JOB_ID` shows what happened."


class InvalidFileError(JobFailedError):
    """A job failed because the provider rejected its training or validation file."""

    default_hint = "Run `tuneport data validate FILE` on the file, fix what it reports, and start the job again."

    def __init__(self, message: str, *, file: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.file = file


class EvaluationError(TuneportError):
    """An evaluation cannot run or cannot be scored."""

    exit_code = EXIT_CODES["EvaluationError"]


class QualityGateError(EvaluationError):
    """An evaluation ran, but a quality gate a CI job set did not pass (``--baseline``/``--margin``,
    ``--fail-under``)."""

    exit_code = EXIT_CODES["QualityGateError"]


class ServeError(TuneportError):
    """Serving cannot start or continue: bad arguments, no memory, a port in use, an engine that failed."""

    exit_code = EXIT_CODES["ServeError"]
