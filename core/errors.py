"""One exception tree for the whole project.

Every error tuneport raises on purpose derives from :class:`TuneportError`. Each carries an exit code (so the CLI
can map all of them in one place) and a hint: the next thing the user should do. Messages say *what* and *where*
(file, line, field); hints say *what to do*.
"""

from __future__ import annotations

__all__ = [
    "TuneportError",
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
]


class TuneportError(Exception):
    """Root of every error tuneport raises on purpose.

    ``exit_code`` is what the CLI exits with; ``hint`` is one sentence telling the user what to do next.
    """

    exit_code: int = 1
    default_hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class SpecError(TuneportError):
    """The job spec is invalid: unknown key, out-of-range value, unreadable file."""

    exit_code = 3
    default_hint = "Fix the spec file; `tuneport spec check SPEC` re-checks it without starting anything."


class DataError(TuneportError):
    """A dataset cannot be used: unreadable, or it fails validation."""

    exit_code = 4
    default_hint = "Run `tuneport data validate FILE` to see every finding with its line number."

    def __init__(self, message: str, *, hint: str | None = None, findings: list | None = None) -> None:
        super().__init__(message, hint=hint)
        self.findings = findings or []


class StoreError(TuneportError):
    """The local database cannot be opened or migrated."""

    exit_code = 5
    default_hint = "Check TUNEPORT_HOME points at a writable folder."


class ProviderError(TuneportError):
    """A training backend refused or failed a request."""

    exit_code = 6

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
        self.request_id = request_id
        self.code = code

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

    exit_code = 7
    default_hint = "Set OPENAI_API_KEY to a valid key (and OPENAI_ORG_ID / OPENAI_PROJECT_ID if your key needs them)."


class RateLimitError(ProviderError):
    """Too many requests; retried already, still refused."""

    exit_code = 8
    default_hint = "Wait a minute and retry, or lower the concurrency."


class QuotaExceededError(ProviderError):
    """The account has no quota left (never retried: retrying cannot help)."""

    exit_code = 9
    default_hint = "Add credit or raise the spending limit in the provider's billing settings."


class TrainingNotAvailableError(ProviderError):
    """The platform no longer accepts new fine-tuning jobs (OpenAI: ``403 training_not_available``)."""

    exit_code = 10
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

    exit_code = 11
    default_hint = "`tuneport jobs events JOB_ID` shows what happened."


class InvalidFileError(JobFailedError):
    """A job failed because the provider rejected its training or validation file."""

    default_hint = "Run `tuneport data validate FILE` on the file, fix what it reports, and start the job again."

    def __init__(self, message: str, *, file: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.file = file


class EvaluationError(TuneportError):
    """An evaluation cannot run or cannot be scored."""

    exit_code = 12
