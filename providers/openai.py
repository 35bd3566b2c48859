"""OpenAI's hosted fine-tuning API as a :class:`~tuneport.providers.base.Provider`.

What this path must get exactly right, and how:

- **Credentials** come from ``OPENAI_API_KEY`` (``OPENAI_BASE_URL``, ``OPENAI_ORG_ID`` -> ``OpenAI-Organization``,
  ``OPENAI_PROJECT_ID`` -> ``OpenAI-Project``). The key lives only in request headers: it is never stored, logged
  or put in an error message (the HTTP client scrubs it even if a server echoes it back).
- **Files** go up once: by sha256 the store remembers which file id holds which bytes, and a remembered id is reused
  after ``GET /files/{id}`` confirms OpenAI still has it. Up to 512 MB a file goes through ``POST /files``; larger
  ones (or on request) through the Uploads API in 64 MB parts, a few in parallel, streamed from disk so memory does
  not grow with the file; completion sends the ordered part ids and the file's md5.
- **Exactly one job per create**: each create carries a client key in ``metadata`` (``tuneport_client_key``). When
  a create fails ambiguously (the request was sent, the answer was lost), the jobs list filtered by that key is
  checked before anything is re-sent, so a retry can never start a second paid job.
- **Typed errors** for what users hit: no key / bad key, quota, rate limits, ``403 training_not_available`` (the
  platform wind-down), a model that cannot be fine-tuned, a file rejected at validation.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from tuneport.endpoints.client import OPENAI_BASE_URL
from tuneport.errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    DataError,
    ProviderError,
    SpecError,
    StoreError,
    TuneportError,
)
from tuneport.http import Failure, HTTPClient, RetryPolicy
from tuneport.jobs.objects import (
    FileObject,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    ListPage,
    Upload,
    UploadPart,
)
from tuneport.providers.base import (
    Endpoint,
    LaunchEstimate,
    ProgressCallback,
    Provider,
    SpecPreview,
    TokenPrices,
)

if TYPE_CHECKING:
    from tuneport.jobs.store import Store
    from tuneport.spec.jobspec import JobSpec

__all__ = ["OpenAIProvider", "CLIENT_KEY_FIELD", "DEFAULT_BASE_URL"]

log = logging.getLogger("tuneport.providers.openai")

DEFAULT_BASE_URL = OPENAI_BASE_URL  # defined once, in tuneport.endpoints.client
#: the metadata key that tags every job tuneport creates (see the module docstring)
CLIENT_KEY_FIELD = "tuneport_client_key"

MiB = 1024 * 1024
#: ``POST /files`` takes files up to 512 MB; above that, the Uploads API.
FILES_API_LIMIT = 512 * MiB
#: the largest part the Uploads API accepts
MAX_PART_SIZE = 64 * MiB
#: the largest file one Upload accepts
UPLOADS_API_LIMIT = 8 * 1024 * MiB
_METADATA_MAX_PAIRS = 16
_HASH_BLOCK = 4 * MiB


class _Progress:
    """Thread-safe byte counter behind the user's ``progress(done, total)`` callback.

    Counts each part's high-water mark, so a part re-sent after a retry is not counted twice.
    """

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self._callback = callback
        self._lock = threading.Lock()
        self._high: dict[int, int] = {}
        self._done = 0

    def report(self, part: int, position: int) -> None:
        if self._callback is None:
            return
        with self._lock:
            previous = self._high.get(part, 0)
            if position <= previous:
                return
            self._high[part] = position
            self._done += position - previous
            self._callback(self._done, self.total)


class _FileWindow(io.RawIOBase):
    """A read-only view of ``length`` bytes of a file from ``offset``, read with ``pread`` (no shared seek).

    httpx streams multipart bodies by reading 64 KB at a time from this object, so a 64 MB part never sits in
    memory. It has no ``fileno`` on purpose: httpx would otherwise take the whole file's size as the part's.
    """

    def __init__(self, fd: int, offset: int, length: int, progress: _Progress, part: int) -> None:
        super().__init__()
        self._fd, self._offset, self._length = fd, offset, length
        self._pos = 0
        self._progress, self._part = progress, part
        self._lock = threading.Lock() if not hasattr(os, "pread") else None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = min(max(base + offset, 0), self._length)
        return self._pos

    def fileno(self) -> int:
        raise OSError("not a real file")

    def read(self, size: int = -1) -> bytes:
        remaining = self._length - self._pos
        n = remaining if size is None or size < 0 else min(size, remaining)
        if n <= 0:
            return b""
        where = self._offset + self._pos
        if self._lock is None:
            chunk = os.pread(self._fd, n, where)
        else:  # pragma: no cover - platforms without pread
            with self._lock:
                os.lseek(self._fd, where, os.SEEK_SET)
                chunk = os.read(self._fd, n)
        self._pos += len(chunk)
        self._progress.report(self._part, self._pos)
        return chunk

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file in one bounded-memory pass."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _mime_type(path: Path) -> str:
    return "text/jsonl" if path.suffix.lower() in (".jsonl", ".json") else "application/octet-stream"


class OpenAIProvider(Provider):
    """Fine-tuning on OpenAI's API (or any server that speaks it: point ``base_url`` at it).

    ``store``: a :class:`~tuneport.jobs.store.Store` (file ids and jobs are remembered there), ``None`` to open the
    default one on first use, or ``False`` for none. ``transport`` and ``retry`` are test seams.
    """

    name = "openai"
    label = "OpenAI"
    paid = True
    billing = "tokens"
    secret_env = ("OPENAI_API_KEY",)

    # -- what tuneport asks of the backend before and after a job (see Provider) ------------------------------
    @classmethod
    def check_spec(cls, spec: JobSpec) -> list[str]:
        from tuneport.spec.mapping import openai_warnings

        return openai_warnings(spec)

    @classmethod
    def preview(cls, spec: JobSpec, files: Mapping[str, Mapping[str, Any]]) -> SpecPreview:
        """The create-job request the spec becomes (local files shown as the ids they get after upload)."""
        from tuneport.spec.mapping import to_openai_create_body

        def file_id(name: str) -> str | None:
            info = files.get(name)
            if info is None or info.get("kind") == "openai_file_id":
                return None
            return f"<file id of {Path(str(info['value'])).name} after upload>"

        body = to_openai_create_body(spec, file_id("training_file"), file_id("validation_file"))
        return SpecPreview(title="OpenAI: POST /v1/fine_tuning/jobs", data={"create_body": body}, request=body)

    @classmethod
    def refuse_retired(cls, spec: JobSpec) -> None:
        """A SpecError, before anything is validated, uploaded or paid for, when the spec's model is past a
        deadline in this backend's catalog (shut down, or no new fine-tuning jobs any more)."""
        from tuneport.cost.retirements import retired_problem

        problem = retired_problem(spec.model, cls.name, label=cls.label)
        if problem:
            raise SpecError(problem, hint="Train it with --backend together or --backend local "
                            "(`tuneport cost catalog` lists what each backend still trains).")  # fmt: skip

    @classmethod
    def training_stats(cls, spec: JobSpec) -> Any:
        """The training file's statistics as OpenAI bills them (billed tokens, epochs, price), after validating
        it: nobody is asked to pay for a job on data that fails. None when the file is already a provider id."""
        from tuneport.data.validate import validate_file

        path = spec.training_path
        if path is None:
            return None
        n_epochs = spec.hyperparameters.n_epochs
        method = "dpo" if spec.method.type == "dpo" else "sft"
        report = validate_file(
            path, model=spec.model, method=method, n_epochs=n_epochs if isinstance(n_epochs, int) else None
        )
        report.raise_for_errors()
        return report.stats

    @classmethod
    def estimate(cls, spec: JobSpec) -> LaunchEstimate | None:
        """Billed tokens and price of the training file (None when the file is already an OpenAI file id)."""
        cls.refuse_retired(spec)
        stats = cls.training_stats(spec)
        if stats is None:
            return None
        return LaunchEstimate(
            file=str(spec.training_path), model=spec.model, examples=stats.examples, n_epochs=stats.n_epochs,
            billed_tokens=stats.billed_tokens, price_usd=stats.estimated_price_usd,
            price_source=stats.price_source,
        )  # fmt: skip

    @classmethod
    def finished_job_endpoint(cls, job_id: str, fine_tuned_model: str) -> Endpoint:
        """OpenAI serves a fine-tuned model on the same API (``OPENAI_BASE_URL``), with the same key."""
        base_url = (os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        return Endpoint(base_url=base_url, model=fine_tuned_model, api_key_env="OPENAI_API_KEY",
                        kind=cls.name, job_id=job_id)  # fmt: skip

    @classmethod
    def inference_prices(cls, model: str) -> TokenPrices | None:
        """The catalog's per-token prices for ``model`` (an ``ft:`` id is priced as its fine-tuned base)."""
        from tuneport.cost.catalog import lookup_model

        info = lookup_model(model)
        if info is None:
            return None
        tuned = model.startswith("ft:")
        prices, source = info.inference_per_1m, info.source
        note = "fine-tuned rates (an ft: model is billed at these, not at its base model's)"
        if not tuned and "input" in info.base_inference_per_1m and "output" in info.base_inference_per_1m:
            prices, source = info.base_inference_per_1m, info.base_price_source
            note = "base model rates (its fine-tunes are billed at the higher fine-tuned rates)"
        elif not tuned:
            note = "the catalog has no base price for this model: fine-tuned rates, which overstate a base model"
        if "input" not in prices or "output" not in prices:
            return None
        return TokenPrices(model=info.id, input_per_1m=prices["input"], output_per_1m=prices["output"],
                           source=source, as_of=info.as_of, note=note)  # fmt: skip

    @classmethod
    def owns_base_url(cls, base_url: str) -> bool:
        return "api.openai.com" in base_url

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        store: Store | Literal[False] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        part_size: int = MAX_PART_SIZE,
        upload_concurrency: int = 4,
        files_api_limit: int = FILES_API_LIMIT,
        poll_interval: float = 10.0,
        api_key_env: str = "OPENAI_API_KEY",
    ) -> None:
        if not 0 < part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between 1 byte and 64 MB, not {part_size}")
        if upload_concurrency < 1:
            raise ValueError("upload_concurrency must be at least 1")
        self.api_key_env = api_key_env
        self._api_key = api_key if api_key is not None else os.environ.get(api_key_env) or None
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.organization = organization or os.environ.get("OPENAI_ORG_ID") or None
        self.project = project or os.environ.get("OPENAI_PROJECT_ID") or None
        self._store_arg = store
        self._store: Store | None = store or None
        self._transport = transport
        self._retry = retry
        self._timeout = timeout
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency
        self.files_api_limit = files_api_limit
        self.poll_interval = poll_interval
        self._http: HTTPClient | None = None
        self._http_lock = threading.Lock()
        self._local_paths: dict[str, str] = {}  # provider file id -> local path, for error messages
        self._sha256s: dict[str, str] = {}  # provider file id -> dataset sha256, for the job's provenance

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIProvider(base_url={self.base_url!r})"

    # -- plumbing ---------------------------------------------------------------------------------------------
    @property
    def http(self) -> HTTPClient:
        """The HTTP client, created on first use (so a missing key only matters when a request is made)."""
        if self._http is None:
            with self._http_lock:
                if self._http is None:
                    self._http = self._make_client()
        return self._http

    def _make_client(self) -> HTTPClient:
        if not self._api_key:
            raise self._missing_key_error()
        return HTTPClient(
            self.base_url,
            headers=self._auth_headers(self._api_key),
            params=self._query_params(),
            timeout=self._timeout,
            retry=self._retry,
            transport=self._transport,
            secrets=[self._api_key],
            service=self.label,
            api_key_env=self.api_key_env,
            max_connections=max(8, self.upload_concurrency * 2),
        )

    # Hooks for services that speak this API with other credentials or URLs (Azure OpenAI overrides them).
    def _missing_key_error(self) -> AuthenticationError:
        return AuthenticationError(
            f"No OpenAI API key: set {self.api_key_env}.",
            hint=f"export {self.api_key_env}=sk-... (a key from platform.openai.com/api-keys), "
            "or train locally with --backend local.",
        )

    def _auth_headers(self, api_key: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {api_key}"}
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers

    def _parse_job(self, data: Any) -> FineTuningJob:
        """A job object as this service sends it (Azure maps its own statuses here)."""
        return FineTuningJob.model_validate(data)

    def _parse_job_page(self, data: Any) -> ListPage[FineTuningJob]:
        return ListPage[FineTuningJob].model_validate(data)

    def _query_params(self) -> dict[str, str]:
        """Query parameters sent with every request (none for OpenAI)."""
        return {}

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    @property
    def store(self) -> Store | None:
        if self._store is None and self._store_arg is None:
            from tuneport.jobs.store import Store

            self._store = Store()
            self._store_arg = self._store
        return self._store

    @property
    def _store_provider(self) -> str:
        """The store's provider name: file ids are only valid on the server that issued them."""
        return "openai" if self.base_url == DEFAULT_BASE_URL else f"openai@{self.base_url}"

    # -- files ------------------------------------------------------------------------------------------------
    def get_file(self, file_id: str) -> FileObject:
        """``GET /files/{id}``."""
        return self.http.request(
            "GET", f"files/{file_id}", parse=lambda r: FileObject.model_validate(r.json())
        )

    def file_content(self, file_id: str) -> bytes:
        """``GET /files/{id}/content``: the bytes as uploaded (``tuneport import`` downloads a job's data)."""
        return self.http.request("GET", f"files/{file_id}/content", parse=lambda r: r.content)

    def job_spec_fields(self, job: FineTuningJob) -> dict[str, Any]:
        """Provider's reading, plus the suffix from the model id (``ft:BASE:ORG:SUFFIX:ID``) when the API sent
        none, and without tuneport's client key."""
        fields = super().job_spec_fields(job)
        parts = (job.fine_tuned_model or "").split(":")
        if not fields["suffix"] and len(parts) == 5 and parts[0] == "ft" and parts[3]:
            fields["suffix"] = parts[3]
        fields["metadata"].pop(CLIENT_KEY_FIELD, None)
        return fields

    def start(self, spec: JobSpec, *, progress: ProgressCallback | None = None) -> FineTuningJob:
        """Validate the spec's local files before anything is uploaded: no paid job starts on data that fails
        validation (OpenAI would bill nothing but reject it later, after the upload and the queue)."""
        from tuneport.data.validate import MIN_EXAMPLES, validate_file

        self.refuse_retired(spec)
        method = "dpo" if spec.method.type == "dpo" else "sft"
        for path, min_examples in ((spec.training_path, MIN_EXAMPLES), (spec.validation_path, 1)):
            if path is not None:
                validate_file(
                    path, model=spec.model, method=method, min_examples=min_examples
                ).raise_for_errors()
        return super().start(spec, progress=progress)

    def upload(
        self,
        path: str | Path,
        *,
        purpose: str = "fine-tune",
        progress: ProgressCallback | None = None,
        method: Literal["auto", "files", "uploads"] = "auto",
        reuse: bool = True,
    ) -> FileObject:
        """Upload a dataset (or reuse the copy OpenAI already holds) and return its file object.

        ``method``: ``"auto"`` picks ``POST /files`` up to 512 MB and the Uploads API above; ``"uploads"`` forces
        the Uploads API. ``progress(done_bytes, total_bytes)`` is called as bytes go out (from worker threads).
        """
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise DataError(f"{path}: cannot read the dataset ({exc.strerror or exc})") from None
        if not path.is_file():
            raise DataError(f"{path}: not a file")
        if size == 0:
            raise DataError(
                f"{path}: the file is empty", hint="A fine-tuning dataset needs at least one example."
            )
        if size > UPLOADS_API_LIMIT:
            raise DataError(
                f"{path}: {size / MiB / 1024:.1f} GB is more than OpenAI accepts for one file (8 GB)",
                hint="Split the dataset (`tuneport data split`) or train locally with --backend local.",
            )
        sha256, md5 = _digests(path)
        if reuse:
            existing = self._reusable_file(sha256, purpose, size)
            if existing is not None:
                log.info("%s: reusing %s (same sha256 already uploaded)", path, existing.id)
                self._local_paths[existing.id] = str(path)
                self._sha256s[existing.id] = sha256
                if progress is not None:
                    progress(size, size)
                return existing
        use_uploads = method == "uploads" or (method == "auto" and size > self.files_api_limit)
        if method == "files" and size > FILES_API_LIMIT:
            raise DataError(
                f"{path}: {size} bytes is more than POST /files accepts (512 MB); use the Uploads API"
            )
        tracker = _Progress(size, progress)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            if use_uploads:
                file = self._upload_in_parts(fd, path, size, md5, purpose, tracker)
            else:
                file = self._upload_whole(fd, path, size, purpose, tracker)
        finally:
            os.close(fd)
        self._local_paths[file.id] = str(path)
        self._sha256s[file.id] = sha256
        self._remember_file(file, sha256, purpose, size, path)
        return file

    def _reusable_file(self, sha256: str, purpose: str, size: int) -> FileObject | None:
        """A file id remembered for these bytes that OpenAI still has (stale records are forgotten)."""
        store = self.store
        if store is None:
            return None
        while True:
            row = store.find_file(self._store_provider, sha256, purpose)
            if row is None:
                return None
            file_id = row["provider_file_id"]
            try:
                file = self.get_file(file_id)
            except APIStatusError as exc:
                if exc.status_code != 404:
                    raise
                file = None
            if file is not None and file.bytes == size and file.status not in ("error", "deleted"):
                return file
            log.info("forgetting %s: OpenAI no longer holds it as uploaded", file_id)
            store.forget_file(self._store_provider, file_id)

    def _remember_file(self, file: FileObject, sha256: str, purpose: str, size: int, path: Path) -> None:
        store = self.store
        if store is None:
            return
        try:
            store.record_file(
                self._store_provider,
                file.id,
                dataset_sha256=sha256,
                purpose=purpose,
                size_bytes=size,
                filename=path.name,
                created_at=file.created_at,
            )
        except StoreError as exc:  # the upload worked; not remembering it only costs a re-upload later
            log.warning("could not remember uploaded file %s in the store: %s", file.id, exc)

    def _upload_whole(self, fd: int, path: Path, size: int, purpose: str, tracker: _Progress) -> FileObject:
        def files() -> dict[str, Any]:
            return {"file": (path.name, _FileWindow(fd, 0, size, tracker, 0), _mime_type(path))}

        return self.http.request(
            "POST",
            "files",
            data={"purpose": purpose},
            files=files,
            parse=lambda r: FileObject.model_validate(r.json()),
        )

    def _upload_in_parts(
        self, fd: int, path: Path, size: int, md5: str, purpose: str, tracker: _Progress
    ) -> FileObject:
        upload = self.http.request(
            "POST",
            "uploads",
            json={"filename": path.name, "purpose": purpose, "bytes": size, "mime_type": _mime_type(path)},
            parse=lambda r: Upload.model_validate(r.json()),
        )
        n_parts = max(1, math.ceil(size / self.part_size))
        log.info(
            "uploading %s as %d parts of up to %d bytes (upload %s)", path, n_parts, self.part_size, upload.id
        )

        def send(index: int) -> str:
            offset = index * self.part_size
            length = min(self.part_size, size - offset)

            def files() -> dict[str, Any]:
                window = _FileWindow(fd, offset, length, tracker, index)
                return {"data": (f"part-{index}", window, "application/octet-stream")}

            part = self.http.request(
                "POST",
                f"uploads/{upload.id}/parts",
                files=files,
                parse=lambda r: UploadPart.model_validate(r.json()),
            )
            return part.id

        pool = ThreadPoolExecutor(
            max_workers=min(self.upload_concurrency, n_parts), thread_name_prefix="upload"
        )
        try:
            futures = [pool.submit(send, i) for i in range(n_parts)]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                self._cancel_upload(upload.id)
                raise failed.exception()  # type: ignore[misc]
            part_ids = [f.result() for f in futures]  # in file order, whatever order they finished in
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        completed = self.http.request(
            "POST",
            f"uploads/{upload.id}/complete",
            json={"part_ids": part_ids, "md5": md5},
            parse=lambda r: Upload.model_validate(r.json()),
        )
        if completed.status != "completed" or completed.file is None:
            raise ProviderError(
                f"OpenAI did not complete upload {upload.id} of {path} (status {completed.status!r})",
                hint="Retry the command; the partial upload expires by itself.",
            )
        return completed.file

    def _cancel_upload(self, upload_id: str) -> None:
        try:
            self.http.request("POST", f"uploads/{upload_id}/cancel")
        except ProviderError as exc:  # best effort: an abandoned Upload expires after an hour anyway
            log.warning("could not cancel upload %s: %s", upload_id, exc)

    # -- jobs -------------------------------------------------------------------------------------------------
    def create(
        self,
        spec: JobSpec,
        *,
        training_file: str,
        validation_file: str | None = None,
        client_key: str | None = None,
    ) -> FineTuningJob:
        """Start one job from ``spec`` on uploaded files (the request body is :func:`tuneport.spec.mapping.to_openai_create_body`).

        ``client_key`` (default: a new random one) tags the job in ``metadata``; passing the same key again
        returns the job already started with it instead of starting another.
        """
        from tuneport.spec.mapping import to_openai_create_body

        self.refuse_retired(spec)
        body = to_openai_create_body(spec, training_file, validation_file)
        job = self.create_from_body(body, client_key=client_key, _record=False)
        self._record_job(job, spec=spec)
        return job

    def create_from_body(
        self, body: Mapping[str, Any], *, client_key: str | None = None, _record: bool = True
    ) -> FineTuningJob:
        """``POST /fine_tuning/jobs`` with ``body``, exactly once (see the module docstring)."""
        body = copy.deepcopy(dict(body))
        metadata = dict(body.get("metadata") or {})
        key = client_key or metadata.get(CLIENT_KEY_FIELD) or f"tp-{uuid.uuid4().hex}"
        if CLIENT_KEY_FIELD not in metadata and len(metadata) >= _METADATA_MAX_PAIRS:
            raise SpecError(
                f"metadata: has {len(metadata)} keys, the most OpenAI accepts; tuneport needs one for "
                f"{CLIENT_KEY_FIELD!r} (which makes job creation safe to retry)",
                hint="Remove one metadata key from the spec.",
            )
        metadata[CLIENT_KEY_FIELD] = key
        body["metadata"] = metadata

        if client_key is not None:  # an explicit key may have been used before (a re-run after a crash)
            existing = self._job_with_key(key)
            if existing is not None:
                log.info(
                    "a job with client key %s exists already (%s): not creating another", key, existing.id
                )
                return existing

        def look_for_lost_job(failure: Failure) -> FineTuningJob | None:
            return self._job_with_key(key, after_failure=failure)

        try:
            job = self.http.request(
                "POST",
                "fine_tuning/jobs",
                json=body,
                headers={"Idempotency-Key": key},
                idempotent=False,
                before_resend=look_for_lost_job,
                parse=lambda r: self._parse_job(r.json()),
            )
        except (APIConnectionError, APIStatusError) as exc:
            ambiguous = (
                isinstance(exc, APIConnectionError) or (exc.status_code or 0) >= 500 or exc.status_code == 409
            )
            if not ambiguous:
                raise
            # The last attempt may have created the job although its answer was lost: one last look.
            try:
                found = self._job_with_key(key)
            except ProviderError:
                exc.hint = (
                    f"The job may or may not have been created: look for a job with metadata "
                    f"{CLIENT_KEY_FIELD}={key} (`tuneport jobs list`) before starting it again."
                )
                raise exc from None
            if found is not None:
                return found
            exc.hint = (
                f"No job with metadata {CLIENT_KEY_FIELD}={key} exists; running the command again is safe."
            )
            raise
        if _record:
            self._record_job(job)
        return job

    def _job_with_key(self, key: str, *, after_failure: Failure | None = None) -> FineTuningJob | None:
        try:
            page = self.list(metadata={CLIENT_KEY_FIELD: key}, limit=10)
        except ProviderError as exc:
            if after_failure is None:
                raise
            raise APIConnectionError(
                f"creating the job failed ambiguously ({after_failure.describe()}) and checking whether it was "
                f"created failed too: {exc.message}",
                hint=f"Look for a job with metadata {CLIENT_KEY_FIELD}={key} (`tuneport jobs list`) before "
                "starting it again.",
            ) from exc
        matches = [job for job in page.data if (job.metadata or {}).get(CLIENT_KEY_FIELD) == key]
        return matches[0] if matches else None

    def get(self, job_id: str) -> FineTuningJob:
        job = self.http.request(
            "GET", f"fine_tuning/jobs/{job_id}", parse=lambda r: self._parse_job(r.json())
        )
        self._record_job(job)
        return job

    def list(
        self, *, after: str | None = None, limit: int = 20, metadata: Mapping[str, str] | None = None
    ) -> ListPage[FineTuningJob]:
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        for key, value in (metadata or {}).items():
            params[f"metadata[{key}]"] = value
        return self.http.request(
            "GET",
            "fine_tuning/jobs",
            params=params,
            parse=lambda r: self._parse_job_page(r.json()),
        )

    def _action(self, job_id: str, action: str, done: Callable[[FineTuningJob], bool]) -> FineTuningJob:
        """POST cancel/pause/resume; after an ambiguous failure, look at the job before sending it again."""

        def already_done(failure: Failure) -> FineTuningJob | None:
            job = self.get(job_id)
            return job if done(job) else None

        job = self.http.request(
            "POST",
            f"fine_tuning/jobs/{job_id}/{action}",
            idempotent=False,
            before_resend=already_done,
            parse=lambda r: self._parse_job(r.json()),
        )
        self._record_job(job)
        return job

    def cancel(self, job_id: str) -> FineTuningJob:
        return self._action(job_id, "cancel", lambda job: job.status == "cancelled")

    def pause(self, job_id: str) -> FineTuningJob:
        return self._action(job_id, "pause", lambda job: job.status == "paused")

    def resume(self, job_id: str) -> FineTuningJob:
        return self._action(job_id, "resume", lambda job: job.status != "paused")

    def events(
        self, job_id: str, *, after: str | None = None, limit: int = 20
    ) -> ListPage[FineTuningJobEvent]:
        return self._page(f"fine_tuning/jobs/{job_id}/events", ListPage[FineTuningJobEvent], after, limit)

    def checkpoints(
        self, job_id: str, *, after: str | None = None, limit: int = 10
    ) -> ListPage[FineTuningJobCheckpoint]:
        return self._page(f"fine_tuning/jobs/{job_id}/checkpoints", ListPage[FineTuningJobCheckpoint], after, limit)

    def _page(self, path: str, page_type: Any, after: str | None, limit: int) -> Any:
        """GET one page of a job's events or checkpoints (OpenAI's ``after`` / ``limit`` paging)."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        return self.http.request("GET", path, params=params, parse=lambda r: page_type.model_validate(r.json()))

    def endpoint(self, job: FineTuningJob) -> Endpoint:
        """OpenAI serves a succeeded job's model on the same API, with the same key."""
        if job.status != "succeeded" or not job.fine_tuned_model:
            raise ProviderError(
                f"job {job.id} has no fine-tuned model yet (status {job.status})",
                hint=f"`tuneport jobs wait {job.id}` waits for it to finish.",
            )
        return Endpoint(
            base_url=self.base_url,
            model=job.fine_tuned_model,
            api_key_env=self.api_key_env,
            kind="openai",
            job_id=job.id,
        )

    # -- store sync -------------------------------------------------------------------------------------------
    def _file_paths(self, job: FineTuningJob) -> dict[str, str]:
        return dict(self._local_paths)

    def _record_job(self, job: FineTuningJob, *, spec: JobSpec | None = None) -> None:
        """Keep the store's copy of the job current (so `tuneport jobs` works across backends, offline)."""
        store = self.store
        if store is None:
            return
        existing = store.get_job(job.id)
        if existing is not None and existing["backend"] != self.name:
            # The "OpenAI" at OPENAI_BASE_URL is this machine's own `tuneport server`, sharing this store: the
            # job is already recorded as the local job it is; a second, hosted copy under the same id would
            # take its place.
            return
        fields: dict[str, Any] = {
            "model": job.model,
            "fine_tuned_model": job.fine_tuned_model,
            "training_file": job.training_file,
            "validation_file": job.validation_file,
            "method": job.method,
            "hyperparameters": job.hyperparameters or None,
            "seed": job.seed,
            "result_files": job.result_files,
            "error": job.error.to_api() if job.error else None,
            "trained_tokens": job.trained_tokens,
            "estimated_finish": job.estimated_finish,
            "metadata": job.metadata,
            "created_at": job.created_at,
            "finished_at": job.finished_at,
        }
        if spec is not None:
            fields.update(spec=spec.to_dict(), spec_hash=spec.spec_hash(), suffix=spec.suffix)
            if job.training_file in self._sha256s:
                fields["dataset_sha256"] = self._sha256s[job.training_file]
        try:
            row = store.upsert_job(job.id, backend=self.name, status=job.status, **fields)
        except StoreError as exc:
            log.warning("could not record job %s in the store: %s", job.id, exc)
            return
        if job.status == "succeeded" and job.fine_tuned_model:
            self._on_succeeded(store, row)

    def _on_succeeded(self, store: Any, row: Any) -> None:
        """A succeeded job's model answers on this API at once: save its endpoint (Azure waits for a deployment)."""
        _register_endpoint(store, row)


def _register_endpoint(store: Any, row: Any) -> None:
    """A succeeded job becomes a named endpoint by itself; a naming problem must never fail the job."""
    from tuneport.endpoints.registry import register_job_endpoint

    try:
        register_job_endpoint(store, row)
    except TuneportError as exc:
        log.warning("could not register an endpoint for job %s: %s", row.get("id") if row else "?", exc)
