"""The Provider interface: one training backend (OpenAI's hosted API, the local trainer) behind one shape.

Jobs, events and checkpoints are OpenAI's objects (:mod:`tuneport.jobs.objects`) for every backend, and the paging
rules are OpenAI's, so a caller (the CLI, the evaluation, the local API server) never asks which backend ran:

- :meth:`Provider.list` pages jobs newest first; ``after`` is the id of the last job of the previous page;
- :meth:`Provider.events` returns a job's events **newest first**; ``after`` is the id of the last (oldest) event
  of the previous page, so paging goes back in time. :meth:`Provider.iter_events` and :meth:`Provider.follow`
  turn that into the chronological stream people read (and :meth:`Provider.follow` keeps it live);
- :meth:`Provider.checkpoints` pages the same way.

A backend implements the abstract methods; ``wait``, ``iter_events``, ``follow`` and ``start`` come for free.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tuneport.errors import (  # noqa: F401 - re-exported: providers raise these
    InvalidFileError,
    JobFailedError,
    NotSupportedError,
    ProviderError,
    WaitTimeoutError,
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
    #: seconds between status polls in :meth:`wait` and :meth:`follow`
    poll_interval: float = 10.0

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

    @abstractmethod
    def endpoint(self, job: FineTuningJob) -> Endpoint:
        """Where the finished job's model can be called (raises if the job has produced no model)."""

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
