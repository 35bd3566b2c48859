"""OpenAI's object shapes (files, uploads, fine-tuning jobs, events, checkpoints, list pages) for every backend.

Every backend returns these, so a caller never knows whether a job ran on OpenAI or on this machine. The models
follow ``openapi-finetuning.json`` but parse what the *live* service sends, which differs from the schema:

- ``FineTuningJob.status`` is an open string (``/pause`` returns ``"paused"``, absent from the schema's enum);
- a healthy job carries ``"error": {}``: an empty error object means *no error* and parses to ``None``;
- objects carry fields the schema does not list (``user_provided_suffix``, ``usage_metrics``, ...): they are kept
  (``extra="allow"``) and survive a round trip, so a server of this project can pass them through.

:meth:`OpenAIObject.to_api` dumps an object the way the API sends it: optional fields the schema does not allow to
be ``null`` are left out instead of being sent as ``null``, so the output validates against the schema.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "OpenAIObject",
    "FileObject",
    "Upload",
    "UploadPart",
    "FineTuningJobError",
    "FineTuningJob",
    "FineTuningJobEvent",
    "FineTuningJobCheckpoint",
    "ListPage",
    "TERMINAL_STATUSES",
    "ACTIVE_STATUSES",
]

#: A job in one of these states will not change again.
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
#: States in which a job is still making (or may resume making) progress.
ACTIVE_STATUSES: frozenset[str] = frozenset({"validating_files", "queued", "running", "paused"})


class OpenAIObject(BaseModel):
    """Base of every object: unknown fields are kept, never rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    #: Optional fields that the schema types as non-nullable: omitted from :meth:`to_api` output when ``None``.
    _omit_if_none: ClassVar[frozenset[str]] = frozenset()

    def to_api(self) -> dict[str, Any]:
        """The object as the API sends it (JSON-ready dict, extra fields included)."""
        data = self.model_dump(mode="json", by_alias=True)
        for name in type(self).model_fields:  # nested objects follow their own rules
            value = getattr(self, name)
            if isinstance(value, OpenAIObject):
                data[name] = value.to_api()
            elif isinstance(value, list) and any(isinstance(v, OpenAIObject) for v in value):
                data[name] = [v.to_api() if isinstance(v, OpenAIObject) else v for v in value]
        for key in self._omit_if_none:
            if data.get(key) is None:
                data.pop(key, None)
        return data


class FileObject(OpenAIObject):
    """An uploaded file (``object: "file"``)."""

    _omit_if_none: ClassVar[frozenset[str]] = frozenset({"expires_at", "status_details", "status"})

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str | None = "processed"
    status_details: str | None = None
    expires_at: int | None = None


class UploadPart(OpenAIObject):
    """One part of a multipart Upload (``object: "upload.part"``)."""

    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str


class Upload(OpenAIObject):
    """An Upload (``object: "upload"``): a large file sent in parts; ``file`` is set once it is completed."""

    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: str
    file: FileObject | None = None


class FineTuningJobError(OpenAIObject):
    """Why a job failed. ``param`` names the offending parameter (``training_file``, ``validation_file``) if any."""

    code: str | None = None
    message: str = ""
    param: str | None = None


class FineTuningJob(OpenAIObject):
    """A fine-tuning job (``object: "fine_tuning.job"``), whatever backend runs it."""

    _omit_if_none: ClassVar[frozenset[str]] = frozenset({"method", "seed", "organization_id"})

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    model: str
    status: str
    error: FineTuningJobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    organization_id: str | None = None
    result_files: list[str] = Field(default_factory=list)
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    integrations: list[dict[str, Any]] | None = None
    seed: int | None = None
    estimated_finish: int | None = None
    method: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None

    @field_validator("error", mode="before")
    @classmethod
    def _empty_error_is_none(cls, value: Any) -> Any:
        # The live API sends `"error": {}` on healthy jobs; anything without a message or code is "no error".
        if isinstance(value, dict) and not (value.get("message") or value.get("code")):
            return None
        return value

    @property
    def is_terminal(self) -> bool:
        """True once the job can no longer change (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES

    @property
    def method_type(self) -> str:
        """``supervised``, ``dpo`` or ``reinforcement`` (jobs created without ``method`` are supervised)."""
        if self.method and isinstance(self.method.get("type"), str):
            return self.method["type"]
        return "supervised"


class FineTuningJobEvent(OpenAIObject):
    """One event of a job's log (``object: "fine_tuning.job.event"``)."""

    _omit_if_none: ClassVar[frozenset[str]] = frozenset({"type", "data"})

    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: str
    message: str
    type: str | None = None
    data: dict[str, Any] | None = None


class FineTuningJobCheckpoint(OpenAIObject):
    """A usable model checkpoint of a job (``object: "fine_tuning.job.checkpoint"``)."""

    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, Any] = Field(default_factory=dict)


T = TypeVar("T", bound=OpenAIObject)


class ListPage(OpenAIObject, Generic[T]):
    """One page of a list (``object: "list"``). Page on with ``after=`` the id of the last item."""

    _omit_if_none: ClassVar[frozenset[str]] = frozenset({"first_id", "last_id"})

    object: Literal["list"] = "list"
    data: list[T] = Field(default_factory=list)
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None

    def __iter__(self):  # type: ignore[override]  # iterate items, like a list
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
