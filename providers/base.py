"""The Provider interface: one training backend (OpenAI's hosted API, the local trainer) behind one shape.

Jobs, events and checkpoints are OpenAI's objects (:mod:`tuneport.jobs.objects`) for every backend, and the paging
rules are OpenAI's, so a caller (the CLI, the evaluation, the local API server) never asks which backend ran:

- :meth:`Provider.list` pages jobs newest first; ``after`` is the id of the last job of the previous page;
- :meth:`Provider.events` returns a job's events **newest first**; ``after`` is the id of the last (oldest) event
  of the previous page, so paging goes back in time. :meth:`Provider.iter_events` and :meth:`Provider.follow`
  turn that into the chronological stream people read (and :meth:`Provider.follow` keeps it live);
- :meth:`Provider.checkpoints` pages the same way.

A backend implements the abstract methods; ``wait``, ``iter_events``, ``follow`` and ``start`` come for free.

Everything the rest of tuneport needs to know about a backend *before* or *after* a job is asked of the backend
class, so no caller tests a backend's name (the third-backend test in ``tests/providers`` holds this seam):

- :meth:`Provider.check_spec` and :meth:`Provider.preview`: what ``tuneport spec check`` says of a spec on it;
- :meth:`Provider.estimate`: the pre-launch estimate (billed tokens, $) that ``tuneport train`` shows and, for a
  :attr:`Provider.paid` backend, asks to confirm;
- :meth:`Provider.finished_job_endpoint`: where a succeeded job's model answers, from configuration alone;
- :attr:`Provider.billing`, :meth:`Provider.inference_prices` and :meth:`Provider.owns_base_url`: how its
  endpoints and jobs are priced;
- :attr:`Provider.secret_env`: the environment variables holding its credentials (never logged or stored).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from tuneport.errors import (  # noqa: F401 - re-exported: providers raise these
    InvalidFileError,
    JobFailedError,
    NotSupportedError,
    ProviderError,
    WaitTimeoutError,
    register_secret_env,
)

if TYPE_CHECKING:
    from tuneport.jobs.objects import (
        FileObject,
        FineTuningJob,
        FineTuningJobCheckpoint,
        FineTuningJobEvent,
        ListPage,
    )
    from tuneport.spec.jobspec import JobSpec

__all__ = [
    "Provider",
    "Endpoint",
    "SpecPreview",
    "LaunchEstimate",
    "TokenPrices",
    "ProgressCallback",
    "InvalidFileError",
    "WaitTimeoutError",
    "NotSupportedError",
]

#: ``progress(done_bytes, total_bytes)``; may be called from worker threads (parallel upload parts).
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Endpoint:
    """Where a fine-tuned model answers chat requests: an OpenAI-compatible base URL and a model name.

    ``api_key_env`` is the NAME of the environment variable holding the key (never the key itself), so an
    endpoint can be stored and shown safely.
    """

    base_url: str
    model: str
    api_key_env: str | None = None
    kind: str = "openai"
    job_id: str | None = None


@dataclass
class SpecPreview:
    """What a spec becomes on one backend, for ``tuneport spec check``.

    ``data`` is what ``--json`` shows under the backend's name (for example OpenAI's ``create_body``, the local
    ``plan``); ``request`` is shown as JSON under ``title`` (the request the backend will receive) and ``settings``
    as a table (a resolved plan); ``notes`` are printed under them, ``reason`` says why a part could not be
    resolved yet.
    """

    title: str
    data: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    reason: str | None = None


@dataclass(frozen=True)
class LaunchEstimate:
    """What a job will bill before it starts: the training file's billed tokens and, when known, the price."""

    file: str
    model: str
    examples: int
    n_epochs: int
    billed_tokens: int
    price_usd: Decimal | None
    price_source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "model": self.model, "examples": self.examples, "n_epochs": self.n_epochs,
            "billed_tokens": self.billed_tokens,
            "estimated_price_usd": None if self.price_usd is None else float(self.price_usd),
            "price_source": self.price_source,
        }  # fmt: skip


@dataclass(frozen=True)
class TokenPrices:
    """What calling one model on a backend costs per 1M tokens, with where the figures come from."""

    model: str
    input_per_1m: Decimal
    output_per_1m: Decimal
    source: str
    as_of: str
    note: str = ""


def job_failure(job: FineTuningJob, *, files: Mapping[str, str] | None = None) -> JobFailedError:
    """The error for a job that ended ``failed``: the provider's message, and the file when the file was at fault.

    ``files`` maps provider file ids to local paths (when known), so the user sees which file on disk to fix.
    """
    error = job.error
    message = (error.message if error and error.message else None) or "no reason given"
    code = error.code if error else None
    param = error.param if error else None
    if param in ("training_file", "validation_file") or (code and "file" in code):
        file_id = job.validation_file if param == "validation_file" else job.training_file
        local = (files or {}).get(file_id or "")
        where = f"{param or 'training_file'} {file_id}" + (f" ({local})" if local else "")
        text = f"Job {job.id} failed validating {where}: {message}" + (f" [{code}]" if code else "")
        return InvalidFileError(text, file=local or file_id)
    return JobFailedError(f"Job {job.id} failed: {message}" + (f" [{code}]" if code else ""))


class Provider(ABC):
    """One training backend. Subclasses set :attr:`name` and implement the abstract methods."""

    #: the registry name (``"openai"``, ``"local"``)
    name: ClassVar[str] = ""
    #: how people call it in messages ("OpenAI", "this machine")
    label: ClassVar[str] = ""
    #: True when starting a job costs money: ``tuneport train`` shows :meth:`estimate` and asks first
    paid: ClassVar[bool] = False
    #: how its jobs and endpoints are priced: by the tokens billed, or by the hour of the machine they run on
    billing: ClassVar[Literal["tokens", "hourly"]] = "hourly"
    #: environment variables that hold this backend's credentials (redacted everywhere, never stored)
    secret_env: ClassVar[tuple[str, ...]] = ()
    #: seconds between status polls in :meth:`wait` and :meth:`follow`
    poll_interval: float = 10.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A backend's key variables are masked in every error from the moment the backend is defined."""
        super().__init_subclass__(**kwargs)
        register_secret_env(*cls.secret_env)

    # -- files ------------------------------------------------------------------------------------------------
    @abstractmethod
    def upload(
        self, path: str | Path, *, purpose: str = "fine-tune", progress: ProgressCallback | None = None
    ) -> FileObject:
        """Make a local dataset available to the backend; the same bytes are not uploaded twice."""

    # -- jobs ---------------------------------------------------------------------------------------------------
    @abstractmethod
    def create(
        self, spec: JobSpec, *, training_file: str, validation_file: str | None = None
    ) -> FineTuningJob:
        """Start a job from ``spec`` on already uploaded files (ids from :meth:`upload`). Starts exactly one job."""

    @abstractmethod
    def get(self, job_id: str) -> FineTuningJob:
        """The job's current state."""

    @abstractmethod
    def list(
        self, *, after: str | None = None, limit: int = 20, metadata: Mapping[str, str] | None = None
    ) -> ListPage[FineTuningJob]:
        """One page of jobs, newest first, optionally only those whose metadata has all of ``metadata``."""

    @abstractmethod
    def cancel(self, job_id: str) -> FineTuningJob:
        """Stop a job for good."""

    def pause(self, job_id: str) -> FineTuningJob:
        """Pause a running job (where the backend can)."""
        raise NotSupportedError(f"the {self.name} backend cannot pause jobs")

    def resume(self, job_id: str) -> FineTuningJob:
        """Resume a paused job (where the backend can)."""
        raise NotSupportedError(f"the {self.name} backend cannot resume jobs")

    @abstractmethod
    def events(
        self, job_id: str, *, after: str | None = None, limit: int = 20
    ) -> ListPage[FineTuningJobEvent]:
        """One page of the job's events, newest first; ``after`` = the oldest event id of the previous page."""

    @abstractmethod
    def checkpoints(
        self, job_id: str, *, after: str | None = None, limit: int = 10
    ) -> ListPage[FineTuningJobCheckpoint]:
        """One page of the job's checkpoints, newest first."""

    def download_adapter(self, job_id: str, dest: str | Path | None = None) -> Path:
        """Fetch a finished hosted job's LoRA adapter into ``dest`` (default: the store's adapters folder) and
        return the folder holding ``adapter_config.json``, so ``tuneport serve`` can serve it on this machine."""
        raise NotSupportedError(
            f"the {self.name} backend cannot hand out its jobs' adapters",
            hint="Serve a local job's adapter by its id, or an adapter folder by its path.",
        )

    # -- moving a job elsewhere (``tuneport import BACKEND JOB_ID``) --------------------------------------------
    def file_content(self, file_id: str) -> bytes:
        """The bytes of an uploaded file (a job's training or validation file), as the backend keeps them."""
        raise NotSupportedError(
            f"the {self.name} backend does not hand out the files its jobs were trained on",
            hint="Import a job from a hosted backend (openai, azure, together).",
        )

    def job_spec_fields(self, job: FineTuningJob) -> dict[str, Any]:
        """The spec fields ``job`` was created with, as far as the backend tells: ``method`` (type and
        hyperparameters), ``suffix``, ``seed``, ``metadata`` and, where the backend reports them, ``local``
        settings it honoured (an absolute learning rate, LoRA rank). OpenAI's job object is every backend's, so
        the default reads it; a backend whose jobs carry more overrides it."""
        method = dict(job.method or {})
        kind = method.get("type") or "supervised"
        section = method.get(kind) or {}
        hyper = dict((section.get("hyperparameters") if isinstance(section, dict) else None) or {})
        if not hyper and job.hyperparameters:  # jobs created with the deprecated top-level hyperparameters
            hyper = dict(job.hyperparameters)
        suffix = getattr(job, "user_provided_suffix", None) or getattr(job, "suffix", None)
        return {
            "method": {"type": kind, kind: {"hyperparameters": {k: v for k, v in hyper.items() if v is not None}}},
            "suffix": suffix if isinstance(suffix, str) and suffix else None,
            "seed": job.seed,
            "metadata": dict(job.metadata or {}),
            "integrations": bool(job.integrations),
            "local": {},
        }

    # -- the deployment step (Azure: a fine-tuned model answers only once deployed) ----------------------------
    def deploy(self, job_id: str, *, name: str | None = None) -> dict[str, Any]:
        """Make a succeeded job's model answer (``tuneport jobs deploy``) and save its endpoint; returns the
        deployment (``name``, ``model``, ``sku``, ``capacity``, ``state``)."""
        raise NotSupportedError(
            f"the {self.name} backend needs no deployment: a finished job's model answers as it is",
            hint="A succeeded job's model is saved as an endpoint by itself: `tuneport endpoints list` shows it.",
        )

    def list_deployments(self) -> list[dict[str, Any]]:
        """Every deployment the backend holds (``tuneport jobs deployments``)."""
        raise NotSupportedError(f"the {self.name} backend has no deployments to list")

    def undeploy(self, name: str) -> None:
        """Delete deployment ``name`` (``tuneport jobs undeploy``) and forget its saved endpoint."""
        raise NotSupportedError(f"the {self.name} backend has no deployments to delete")

    # -- what the rest of tuneport asks of a backend, without a job -------------------------------------------
    @classmethod
    def check_spec(cls, spec: JobSpec) -> list[str]:
        """Warnings for running ``spec`` here: settings this backend ignores or cannot honour, a model it is
        unlikely to accept. Raises :class:`~tuneport.errors.SpecError` for what it refuses outright."""
        return []

    @classmethod
    def preview(cls, spec: JobSpec, files: Mapping[str, Mapping[str, Any]]) -> SpecPreview:
        """What ``spec`` becomes here, without starting anything. ``files`` is ``spec check``'s view of the
        spec's files (``{"training_file": {"kind": "local"|"openai_file_id", "examples": N, ...}}``)."""
        return SpecPreview(title=f"{cls.label or cls.name}: the spec as given", data={"spec": spec.to_dict()})

    @classmethod
    def estimate(cls, spec: JobSpec) -> LaunchEstimate | None:
        """Billed tokens and price of the job before it starts (None where nothing is billed per token). A paid
        backend validates the data here: nobody is asked to pay for a job on data that fails validation."""
        return None

    @classmethod
    def finished_job_endpoint(cls, job_id: str, fine_tuned_model: str) -> Endpoint:
        """Where a succeeded job's model answers, from configuration alone (no request is made)."""
        raise NotSupportedError(f"the {cls.name} backend does not say where its fine-tuned models answer")

    @classmethod
    def inference_prices(cls, model: str) -> TokenPrices | None:
        """Per-token prices of ``model`` on this backend's endpoints (None: unknown, or priced by the hour)."""
        return None

    @classmethod
    def owns_base_url(cls, base_url: str) -> bool:
        """Whether an endpoint at ``base_url`` is this backend's hosted API (so it is priced as such)."""
        return False

    @classmethod
    def auth_headers(cls, api_key: str) -> dict[str, str]:
        """The headers that carry ``api_key`` to this backend's endpoints (a bearer token unless it says otherwise)."""
        return {"Authorization": f"Bearer {api_key}"}

    @classmethod
    def job_from_store(cls, row: Mapping[str, Any], store: Any) -> FineTuningJob:
        """The job as ``tuneport jobs list`` shows it from the store's row, without a network call (hosted jobs
        as last synced). A backend that can tell more from this machine (the local one: a runner that died)
        overrides it."""
        from tuneport.jobs.objects import FineTuningJob

        return FineTuningJob(
            id=row["id"], created_at=row.get("created_at") or 0, model=row.get("model") or "",
            status=row["status"], error=row.get("error"), fine_tuned_model=row.get("fine_tuned_model"),
            finished_at=row.get("finished_at"), trained_tokens=row.get("trained_tokens"),
            training_file=row.get("training_file") or "", validation_file=row.get("validation_file"),
            metadata=row.get("metadata"), seed=row.get("seed"), result_files=row.get("result_files") or [],
        )  # fmt: skip

    def endpoint(self, job: FineTuningJob) -> Endpoint:
        """Where the finished job's model can be called (raises if the job has produced no model)."""
        if job.status != "succeeded" or not job.fine_tuned_model:
            raise ProviderError(
                f"job {job.id} is {job.status}: it has no fine-tuned model yet",
                hint=f"`tuneport jobs wait {job.id}` waits for it to finish.",
            )
        return self.finished_job_endpoint(job.id, job.fine_tuned_model)

    # -- built on the above -----------------------------------------------------------------------------------
    def start(self, spec: JobSpec, *, progress: ProgressCallback | None = None) -> FineTuningJob:
        """Upload the spec's files (unless they are provider file ids already) and create the job."""
        training = spec.training_path
        training_id = self.upload(training, progress=progress).id if training else spec.training_file
        validation_id = spec.validation_file
        if spec.validation_path is not None:
            validation_id = self.upload(spec.validation_path, progress=progress).id
        return self.create(spec, training_file=training_id, validation_file=validation_id)

    def iter_events(
        self, job_id: str, *, after: str | None = None, page_size: int = 100
    ) -> Iterator[FineTuningJobEvent]:
        """Every event of the job so far, oldest first; with ``after`` only the events newer than that id."""
        yield from reversed(self._newer_events(job_id, after, page_size))

    def follow(
        self,
        job_id: str,
        *,
        after: str | None = None,
        poll: float | None = None,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        page_size: int = 100,
    ) -> Iterator[FineTuningJobEvent]:
        """Yield the job's events oldest first as they arrive, until the job is terminal (then drain and stop).

        No event is yielded twice and none is skipped: each poll pages back from the newest event until it
        reaches the newest one already yielded.
        """
        interval = self.poll_interval if poll is None else poll
        deadline = None if timeout is None else clock() + timeout
        seen: set[str] = set()
        newest = after
        while True:
            # Read the status *before* the events: events written before a terminal status are then all seen.
            terminal = self.get(job_id).is_terminal
            for event in reversed(self._newer_events(job_id, newest, page_size)):
                if event.id not in seen:
                    seen.add(event.id)
                    newest = event.id
                    yield event
            if terminal:
                return
            if deadline is not None and clock() >= deadline:
                raise WaitTimeoutError(
                    f"stopped following job {job_id} after {timeout:g}s; it is still running"
                )
            sleep(interval)

    def _newer_events(self, job_id: str, newest_seen: str | None, page_size: int) -> list[FineTuningJobEvent]:
        """Events newer than ``newest_seen`` (all when None), newest first, paging as far back as needed."""
        found: list[FineTuningJobEvent] = []
        cursor: str | None = None
        while True:
            page = self.events(job_id, after=cursor, limit=page_size)
            for event in page.data:
                if newest_seen is not None and event.id == newest_seen:
                    return found
                found.append(event)
            if not page.has_more or not page.data:
                # Reached the oldest event without meeting `newest_seen` (first poll, or the log lost that
                # event): return everything; `follow` drops ids it has already yielded.
                return found
            cursor = page.data[-1].id

    def wait(
        self,
        job_id: str,
        *,
        poll: float | None = None,
        timeout: float | None = None,
        on_update: Callable[[FineTuningJob], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> FineTuningJob:
        """Poll until the job is terminal. Returns it when ``succeeded`` or ``cancelled``.

        Raises :class:`~tuneport.errors.JobFailedError` (:class:`InvalidFileError` when the provider rejected a
        file) with the provider's message when it ``failed``, and :class:`WaitTimeoutError` after ``timeout``
        seconds. ``on_update`` is called with the job whenever its status changes.
        """
        interval = self.poll_interval if poll is None else poll
        deadline = None if timeout is None else clock() + timeout
        last_status: str | None = None
        while True:
            job = self.get(job_id)
            if job.status != last_status:
                last_status = job.status
                if on_update is not None:
                    on_update(job)
            if job.status == "failed":
                raise self._failure(job)
            if job.is_terminal:
                return job
            if deadline is not None and clock() >= deadline:
                raise WaitTimeoutError(f"job {job_id} is still {job.status} after {timeout:g}s")
            sleep(interval)

    def _failure(self, job: FineTuningJob) -> JobFailedError:
        """The error for a failed job; backends that know local paths for file ids override :meth:`_file_paths`."""
        return job_failure(job, files=self._file_paths(job))

    def _file_paths(self, job: FineTuningJob) -> dict[str, str]:
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Release network connections and the like."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
