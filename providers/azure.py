"""Azure OpenAI's fine-tuning API as a :class:`~tuneport.providers.base.Provider`, on the OpenAI provider's code.

Azure serves the same wire API as OpenAI (files, ``fine_tuning/jobs``, events, checkpoints, cancel/pause/resume),
so :class:`AzureProvider` subclasses :class:`~tuneport.providers.openai.OpenAIProvider` and changes only what
differs:

- **where and how**: ``{AZURE_OPENAI_ENDPOINT}/openai/...`` with ``?api-version=`` on every request
  (``AZURE_OPENAI_API_VERSION`` or ``OPENAI_API_VERSION``, default :data:`DEFAULT_API_VERSION`) and the key in an
  ``api-key`` header (``AZURE_OPENAI_API_KEY``), never in a URL, log or the store;
- **statuses**: Azure's ``pending`` and ``notRunning`` (accepted, not started) read as ``queued``, ``created`` as
  ``validating_files``, ``canceled`` as ``cancelled``; the raw value stays in the job's ``azure_status`` field;
- **files** are imported asynchronously (``pending`` -> ``processed``): an upload waits until the file is
  ``processed``, so a job is never created on a file Azure has not finished reading; files over 512 MB are
  refused (Azure takes those from Blob storage), the Uploads API is not used;
- **trainingType**: ``Standard`` (regional, data stays in the region), ``Global`` (``GlobalStandard``, cheaper) or
  ``Developer`` (``developerTier``, cheapest, pre-emptible), chosen in the spec's ``metadata`` as
  ``azure_training_type`` (the key itself is not sent as metadata);
- **exactly one job per create**: the client key rides in ``metadata`` as on OpenAI, but Azure's job list cannot
  filter by metadata, so the recent jobs are scanned client-side; a job whose metadata did not survive is matched
  by training file, model and suffix among the jobs created since the create began;
- **the deployment step**: a fine-tuned model answers only once it is deployed (Azure's control plane,
  ``management.azure.com``, with an ARM bearer token). :meth:`AzureProvider.deploy`, :meth:`list_deployments`
  and :meth:`undeploy` do it when ``AZURE_SUBSCRIPTION_ID``, ``AZURE_RESOURCE_GROUP``, ``AZURE_OPENAI_RESOURCE``
  and ``AZURE_ACCESS_TOKEN`` are set, and otherwise say which ``az`` command does it. A deployment becomes a saved
  endpoint (``{endpoint}/openai/deployments/{name}?api-version=...``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx

from tuneport.errors import (
    APIStatusError,
    AuthenticationError,
    DataError,
    InvalidFileError,
    NotSupportedError,
    ProviderError,
    SpecError,
    WaitTimeoutError,
)
from tuneport.http import HTTPClient
from tuneport.jobs.objects import FileObject, FineTuningJob, ListPage
from tuneport.providers.base import Endpoint, LaunchEstimate, ProgressCallback, SpecPreview, TokenPrices
from tuneport.providers.openai import CLIENT_KEY_FIELD, FILES_API_LIMIT, MiB, OpenAIProvider

if TYPE_CHECKING:
    from tuneport.jobs.store import Store
    from tuneport.spec.jobspec import JobSpec

__all__ = [
    "AzureProvider",
    "DEFAULT_API_VERSION",
    "TRAINING_TYPE_KEY",
    "TRAINING_TYPES",
    "deployment_name_for",
]

log = logging.getLogger("tuneport.providers.azure")

#: the data-plane authoring version: the newest with fine-tuning pause/resume, checkpoints and trainingType
DEFAULT_API_VERSION = "2025-04-01-preview"
#: the control-plane (Azure Resource Manager) version for Microsoft.CognitiveServices deployments
ARM_API_VERSION = "2024-10-01"
ARM_BASE_URL = "https://management.azure.com"
ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"
KEY_ENV = "AZURE_OPENAI_API_KEY"
TOKEN_ENV = "AZURE_ACCESS_TOKEN"
API_VERSION_ENVS = ("AZURE_OPENAI_API_VERSION", "OPENAI_API_VERSION")
ARM_ENVS = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_OPENAI_RESOURCE", TOKEN_ENV)
#: the spec's metadata key that picks Azure's training type
TRAINING_TYPE_KEY = "azure_training_type"
#: what a spec says -> what Azure's API takes, and the deployment SKU its fine-tunes usually get
TRAINING_TYPES: dict[str, tuple[str, str]] = {
    "Standard": ("Standard", "Standard"),
    "Global": ("GlobalStandard", "GlobalStandard"),
    "Developer": ("developerTier", "DeveloperTier"),
}
#: Azure's job statuses that OpenAI's vocabulary spells differently
STATUS_MAP = {
    "pending": "queued",
    "notRunning": "queued",
    "created": "validating_files",
    "canceled": "cancelled",
    "cancelling": "running",
    "completed": "succeeded",
}
#: how far back the client-side scan for a lost create looks (jobs newest first)
_SCAN_PAGES, _SCAN_PAGE_SIZE = 5, 100
_DEPLOYMENT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def deployment_name_for(job_id: str) -> str:
    """The deployment name ``tuneport jobs deploy JOB_ID`` uses unless told another: the job id, made legal
    (letters, digits, ``.``, ``_``, ``-``; at most 64 characters)."""
    return _DEPLOYMENT_NAME.sub("-", job_id).strip("-")[:64] or "tuneport-deployment"


def _api_version() -> str:
    return next((os.environ[e] for e in API_VERSION_ENVS if os.environ.get(e)), DEFAULT_API_VERSION)


def _endpoint_from_env() -> str | None:
    value = (os.environ.get(ENDPOINT_ENV) or "").strip().rstrip("/")
    return value or None


def _catalog() -> dict[str, dict[str, Any]]:
    from tuneport.cost.catalog import provider_catalog

    return dict(provider_catalog("azure")["models"])


def _model_entry(model: str) -> dict[str, Any] | None:
    """The Azure catalog entry for a base id, alias or ``ft:``/Azure fine-tune id (``gpt-4o-mini-2024-07-18.ft-...``)."""
    from tuneport.cost.catalog import base_model_of

    base = base_model_of(model).split(".ft-")[0]
    for model_id, entry in _catalog().items():
        if base == model_id or base in entry.get("aliases", ()):
            return entry
    return None


def _training_type(spec: JobSpec) -> str:
    raw = (spec.metadata or {}).get(TRAINING_TYPE_KEY, "Standard")
    for name in TRAINING_TYPES:
        if raw.strip().lower() in (name.lower(), TRAINING_TYPES[name][0].lower()):
            return name
    raise SpecError(
        f'metadata.{TRAINING_TYPE_KEY}: "{raw}" is not an Azure training type',
        hint=f"Use one of: {', '.join(TRAINING_TYPES)} (Standard keeps data in the resource's region).",
    )


class AzureProvider(OpenAIProvider):
    """Fine-tuning on an Azure OpenAI resource (``AZURE_OPENAI_ENDPOINT``), including the deployment step.

    ``arm_transport``/``arm_base_url`` are the control plane's test seams; the other options are OpenAIProvider's.
    """

    name = "azure"
    label = "Azure OpenAI"
    paid = True
    billing = "tokens"
    secret_env = (KEY_ENV, TOKEN_ENV)

    # -- what tuneport asks of the backend before and after a job ---------------------------------------------
    @classmethod
    def check_spec(cls, spec: JobSpec) -> list[str]:
        """What Azure would refuse (as warnings: `spec check` asks every backend) and settings it ignores; a
        job on Azure is refused for them before any upload (:meth:`refuse`)."""
        try:
            return cls.refuse(spec)
        except SpecError as exc:
            return [f"{exc.message}" + (f" ({exc.hint})" if exc.hint else "")]

    @classmethod
    def refuse(cls, spec: JobSpec) -> list[str]:
        """Raises :class:`SpecError` for what Azure cannot train (naming what it can); returns the warnings."""
        from tuneport.cost.retirements import retired_problem
        from tuneport.spec.mapping import openai_warnings

        entry = _model_entry(spec.model)
        if entry is None or not ({"supervised", "dpo"} & set(entry.get("methods", ()))):
            trainable = [m for m, e in _catalog().items() if {"supervised", "dpo"} & set(e.get("methods", ()))]
            raise SpecError(
                f'model: "{spec.model}" is not a model Azure OpenAI fine-tunes with supervised or DPO training',
                hint=f"Use one of: {', '.join(trainable)}.",
            )
        method = "dpo" if spec.method.type == "dpo" else "supervised"
        if method not in entry.get("methods", ()):
            raise SpecError(f'method.type: Azure OpenAI does not offer {method} training for {entry["id"]}',
                            hint=f"It offers: {', '.join(entry.get('methods', ()))}.")  # fmt: skip
        kind = _training_type(spec)
        if kind not in entry.get("training_types", ()):
            raise SpecError(
                f"metadata.{TRAINING_TYPE_KEY}: {entry['id']} cannot be trained with the {kind} training type",
                hint=f"It can be trained with: {', '.join(entry.get('training_types', ()))}.",
            )
        if spec.integrations:
            raise SpecError("integrations: Azure OpenAI's fine-tuning API takes no integrations (Weights & "
                            "Biases is OpenAI's)", hint="Remove `integrations` for --backend azure.")  # fmt: skip
        problem = retired_problem(spec.model, cls.name, label=cls.label)
        if problem:
            raise SpecError(problem, hint="Pick a model from `tuneport cost catalog` that still trains on Azure.")
        warnings = [w.replace("OpenAI", "Azure OpenAI") for w in openai_warnings(spec)
                    if "not a model OpenAI is known to fine-tune" not in w]  # fmt: skip
        if kind == "Developer":
            warnings.append("metadata.azure_training_type: Developer jobs run on pre-emptible capacity and may "
                            "be paused and resumed by Azure; their deployments are deleted after 24 hours")  # fmt: skip
        return warnings

    @classmethod
    def create_body(cls, spec: JobSpec, training_file: str | None, validation_file: str | None) -> dict[str, Any]:
        """OpenAI's create body for the spec, with Azure's ``trainingType`` and without tuneport's metadata key."""
        from tuneport.spec.mapping import to_openai_create_body

        body = to_openai_create_body(spec, training_file, validation_file)
        body["trainingType"] = TRAINING_TYPES[_training_type(spec)][0]
        metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != TRAINING_TYPE_KEY}
        if metadata:
            body["metadata"] = metadata
        else:
            body.pop("metadata", None)
        return body

    @classmethod
    def preview(cls, spec: JobSpec, files: Mapping[str, Mapping[str, Any]]) -> SpecPreview:
        title = f"Azure OpenAI: POST {{endpoint}}/openai/fine_tuning/jobs?api-version={_api_version()}"
        try:
            cls.refuse(spec)
        except SpecError as exc:  # a preview says why, it does not fail `spec check` for another backend
            return SpecPreview(title=title, reason=f"{exc.message} ({exc.hint})" if exc.hint else exc.message)

        def file_id(name: str) -> str | None:
            info = files.get(name)
            if info is None or info.get("kind") == "openai_file_id":
                return None
            return f"<file id of {Path(str(info['value'])).name} after upload>"

        body = cls.create_body(spec, file_id("training_file"), file_id("validation_file"))
        return SpecPreview(title=title, data={"create_body": body}, request=body)

    @classmethod
    def estimate(cls, spec: JobSpec) -> LaunchEstimate | None:
        """Billed tokens (OpenAI's counting: Azure bills the same tokens) at Azure's price for the training type."""
        cls.refuse(spec)
        stats = cls.training_stats(spec)
        if stats is None:
            return None
        entry = _model_entry(spec.model) or {}
        kind = _training_type(spec)
        per_1m = (entry.get("training_per_1m") or {}).get(kind)
        price = None if per_1m is None else Decimal(stats.billed_tokens) * Decimal(str(per_1m)) / Decimal(10**6)
        source = f"{entry.get('price_source', '')} (as of {entry.get('price_as_of', '?')}; {kind} training)"
        return LaunchEstimate(file=str(spec.training_path), model=spec.model, examples=stats.examples,
                              n_epochs=stats.n_epochs, billed_tokens=stats.billed_tokens, price_usd=price,
                              price_source=source if per_1m is not None else None)  # fmt: skip

    @classmethod
    def finished_job_endpoint(cls, job_id: str, fine_tuned_model: str) -> Endpoint:
        """Where the job's deployment answers; a ProviderError saying how to deploy when it has none yet."""
        from tuneport.jobs.store import Store

        with Store() as store:
            return cls._deployed_endpoint(store, job_id, fine_tuned_model)

    @classmethod
    def _deployed_endpoint(cls, store: Any, job_id: str, fine_tuned_model: str) -> Endpoint:
        for row in store.list_endpoints():
            if row.get("kind") == cls.name and job_id in (row.get("job_id"), (row.get("extra") or {}).get("job")):
                return Endpoint(base_url=row["base_url"], model=row["model"], api_key_env=KEY_ENV,
                                kind=cls.name, job_id=job_id)  # fmt: skip
        raise ProviderError(
            f"job {job_id}'s model {fine_tuned_model} answers only once it is deployed on Azure",
            hint=f"`tuneport jobs deploy {job_id}` deploys it (needs {', '.join(ARM_ENVS)}), or: "
            + _az_create_command(deployment_name_for(job_id), fine_tuned_model),
        )

    @classmethod
    def inference_prices(cls, model: str) -> TokenPrices | None:
        """Per-token prices of a fine-tuned deployment (plus its hourly hosting, in the note)."""
        entry = _model_entry(model)
        prices = (entry or {}).get("inference_per_1m") or {}
        if not entry or "input" not in prices or "output" not in prices:
            return None
        hosting = entry.get("hosting_per_hour") or {}
        note = "fine-tuned deployment rates; a Standard/Global deployment also costs " + (
            f"${hosting.get('Standard', '?')}/hour while it exists" if hosting else "an hourly hosting fee"
        )
        return TokenPrices(model=entry["id"], input_per_1m=Decimal(prices["input"]),
                           output_per_1m=Decimal(prices["output"]), source=entry.get("price_source", ""),
                           as_of=entry.get("price_as_of", ""), note=note)  # fmt: skip

    @classmethod
    def owns_base_url(cls, base_url: str) -> bool:
        host = base_url.split("://", 1)[-1].split("/", 1)[0].lower()
        return host.endswith((".openai.azure.com", ".cognitiveservices.azure.com"))

    @classmethod
    def auth_headers(cls, api_key: str) -> dict[str, str]:
        """Azure wants the key in ``api-key``, not ``Authorization``."""
        return {"api-key": api_key}

    # -- construction -----------------------------------------------------------------------------------------
    def __init__(
        self,
        *,
        api_key: str | None = None,
        endpoint: str | None = None,
        api_version: str | None = None,
        store: Store | Literal[False] | None = None,
        arm_transport: Any = None,
        arm_base_url: str | None = None,
        access_token: str | None = None,
        file_ready_timeout: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        **options: Any,
    ) -> None:
        self.endpoint_url = (endpoint or _endpoint_from_env() or "").rstrip("/")
        self.api_version = api_version or _api_version()
        base_url = f"{self.endpoint_url}/openai" if self.endpoint_url else "https://<AZURE_OPENAI_ENDPOINT>/openai"
        super().__init__(api_key=api_key, base_url=base_url, store=store, api_key_env=KEY_ENV, **options)
        self.organization = self.project = None  # OpenAI's headers mean nothing to Azure
        self._arm_transport = arm_transport
        self.arm_base_url = (arm_base_url or os.environ.get("AZURE_RESOURCE_MANAGER_URL") or ARM_BASE_URL).rstrip("/")
        self._access_token = access_token if access_token is not None else os.environ.get(TOKEN_ENV) or None
        self._arm: HTTPClient | None = None
        self.file_ready_timeout = file_ready_timeout
        self._sleep = sleep
        self._create_started: float | None = None

    def __repr__(self) -> str:  # never show the key
        return f"AzureProvider(endpoint={self.endpoint_url!r}, api_version={self.api_version!r})"

    def _missing_key_error(self) -> AuthenticationError:
        return AuthenticationError(
            f"No Azure OpenAI API key: set {KEY_ENV}.",
            hint=f"export {KEY_ENV}=... (Azure portal > your Azure OpenAI resource > Keys and Endpoint).",
        )

    def _make_client(self) -> HTTPClient:
        if not self.endpoint_url:
            raise AuthenticationError(
                f"No Azure OpenAI endpoint: set {ENDPOINT_ENV}.",
                hint=f"export {ENDPOINT_ENV}=https://YOUR-RESOURCE.openai.azure.com (Keys and Endpoint page).",
            )
        return super()._make_client()

    def _auth_headers(self, api_key: str) -> dict[str, str]:
        return self.auth_headers(api_key)

    def _query_params(self) -> dict[str, str]:
        return {"api-version": self.api_version}

    @property
    def _store_provider(self) -> str:
        return f"azure@{self.endpoint_url}"

    # -- statuses -----------------------------------------------------------------------------------------------
    def _parse_job(self, data: Any) -> FineTuningJob:
        if isinstance(data, dict) and data.get("status") in STATUS_MAP:
            data = {**data, "azure_status": data["status"], "status": STATUS_MAP[data["status"]]}
        return super()._parse_job(data)

    def _parse_job_page(self, data: Any) -> ListPage[FineTuningJob]:
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            page = ListPage[FineTuningJob].model_validate({**data, "data": []})
            page.data = [self._parse_job(item) for item in data["data"]]
            return page
        return super()._parse_job_page(data)

    # -- files ------------------------------------------------------------------------------------------------
    def start(self, spec: JobSpec, *, progress: ProgressCallback | None = None) -> FineTuningJob:
        """Refuse what Azure cannot train before anything is validated, uploaded or paid for."""
        self.refuse(spec)
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
        """``POST /openai/files``, then wait until Azure has imported the file (``processed``)."""
        path = Path(path)
        if method == "uploads":
            raise DataError(f"{path}: Azure OpenAI has no Uploads API here; files go up whole (up to 512 MB)")
        if path.is_file() and path.stat().st_size > FILES_API_LIMIT:
            raise DataError(
                f"{path}: {path.stat().st_size / MiB:.0f} MB is more than Azure OpenAI takes in one upload (512 MB)",
                hint="Import it from Azure Blob storage in Azure AI Foundry, or split it (`tuneport data split`).",
            )
        file = super().upload(path, purpose=purpose, progress=progress, method="files", reuse=reuse)
        return self._wait_processed(file, path)

    def _wait_processed(self, file: FileObject, path: Path) -> FileObject:
        deadline = time.monotonic() + self.file_ready_timeout
        while file.status not in ("processed", None):
            if file.status in ("error", "deleted", "deleting"):
                raise InvalidFileError(
                    f"Azure OpenAI could not import {path} as {file.id}: {file.status_details or file.status}",
                    file=str(path),
                )
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"Azure OpenAI is still importing {path} ({file.id}, {file.status}) after "
                    f"{self.file_ready_timeout:g}s", hint="Run the command again later: the file is reused.",
                )  # fmt: skip
            self._sleep(self.poll_interval)
            file = self.get_file(file.id)
        return file

    def file_content(self, file_id: str) -> bytes:
        """``GET /openai/files/{id}/content``; Azure hands out result files only, so a training file it refuses
        is a NotSupportedError saying how to give ``tuneport import`` the local copy instead."""
        try:
            return super().file_content(file_id)
        except APIStatusError as exc:
            if exc.status_code not in (400, 403, 405):
                raise
            raise NotSupportedError(
                f"Azure OpenAI does not hand out the content of {file_id} ({exc.message})",
                hint="Give the copy you uploaded: `tuneport import azure JOB_ID --training-file PATH` "
                "(and --validation-file PATH); it is checked against the size Azure holds.",
            ) from exc

    # -- jobs -------------------------------------------------------------------------------------------------
    def create(
        self,
        spec: JobSpec,
        *,
        training_file: str,
        validation_file: str | None = None,
        client_key: str | None = None,
    ) -> FineTuningJob:
        """Start one job: OpenAI's body plus ``trainingType`` (see :meth:`create_body`), exactly once."""
        self.refuse(spec)
        body = self.create_body(spec, training_file, validation_file)
        job = self.create_from_body(body, client_key=client_key, _record=False)
        self._record_job(job, spec=spec)
        return job

    def create_from_body(
        self, body: Mapping[str, Any], *, client_key: str | None = None, _record: bool = True
    ) -> FineTuningJob:
        self._create_started = time.time()
        self._create_body = dict(body)
        return super().create_from_body(body, client_key=client_key, _record=_record)

    def list(
        self, *, after: str | None = None, limit: int = 20, metadata: Mapping[str, str] | None = None
    ) -> ListPage[FineTuningJob]:
        """Azure's job list has no metadata filter: with ``metadata``, the recent jobs are filtered here."""
        if not metadata:
            return super().list(after=after, limit=limit)
        found: list[FineTuningJob] = []
        cursor = after
        for _ in range(_SCAN_PAGES):
            page = super().list(after=cursor, limit=_SCAN_PAGE_SIZE)
            found += [j for j in page.data if all((j.metadata or {}).get(k) == v for k, v in metadata.items())]
            if not page.has_more or not page.data or len(found) >= limit:
                break
            cursor = page.data[-1].id
        return ListPage[FineTuningJob](data=found[:limit], has_more=len(found) > limit)

    def _job_with_key(self, key: str, *, after_failure: Any = None) -> FineTuningJob | None:
        """The job created with ``key``: by metadata, else (metadata dropped) by file, model and suffix among
        the jobs created since this create began."""
        found = super()._job_with_key(key, after_failure=after_failure)
        if found is not None or self._create_started is None:
            return found
        body = getattr(self, "_create_body", {})
        since = int(self._create_started) - 5
        page = super().list(limit=_SCAN_PAGE_SIZE)
        for job in page.data:
            if job.created_at < since:
                break
            if (job.metadata or {}).get(CLIENT_KEY_FIELD) not in (None, key):
                continue  # another tuneport create
            same = (job.training_file == body.get("training_file") and job.model == body.get("model")
                    and (getattr(job, "user_provided_suffix", None) or getattr(job, "suffix", None))
                    == body.get("suffix"))  # fmt: skip
            if same:
                return job
        return None

    def endpoint(self, job: FineTuningJob) -> Endpoint:
        if job.status != "succeeded" or not job.fine_tuned_model:
            raise ProviderError(
                f"job {job.id} has no fine-tuned model yet (status {job.status})",
                hint=f"`tuneport jobs wait {job.id} --backend azure` waits for it to finish.",
            )
        if self.store is None:
            return self.finished_job_endpoint(job.id, job.fine_tuned_model)
        return self._deployed_endpoint(self.store, job.id, job.fine_tuned_model)

    def _on_succeeded(self, store: Any, row: Any) -> None:
        """A succeeded Azure job answers only once deployed: its endpoint is saved by :meth:`deploy`."""

    # -- deployments (Azure's control plane) -----------------------------------------------------------------
    def deployment_url(self, name: str) -> str:
        """The OpenAI-compatible base URL of deployment ``name`` (the client appends ``/chat/completions``)."""
        return f"{self.endpoint_url}/openai/deployments/{quote(name, safe='')}?api-version={self.api_version}"

    @property
    def arm(self) -> HTTPClient:
        if self._arm is None:
            missing = [e for e in ARM_ENVS[:3] if not os.environ.get(e)]
            self._access_token = self._access_token or os.environ.get(TOKEN_ENV) or None
            if not self._access_token:
                missing.append(TOKEN_ENV)
            if missing:
                raise ProviderError(
                    f"deploying on Azure needs the control plane: set {', '.join(missing)}",
                    hint=f"{TOKEN_ENV} comes from `az account get-access-token --query accessToken -o tsv`; "
                    "or deploy with the Azure CLI: " + _az_create_command("NAME", "FINE_TUNED_MODEL"),
                )
            sub, group, account = (quote(os.environ[e], safe="") for e in ARM_ENVS[:3])
            base = (f"{self.arm_base_url}/subscriptions/{sub}/resourceGroups/{group}/providers/"
                    f"Microsoft.CognitiveServices/accounts/{account}")  # fmt: skip
            self._arm = HTTPClient(
                base, headers={"Authorization": f"Bearer {self._access_token}"},
                params={"api-version": ARM_API_VERSION}, retry=self._retry, transport=self._arm_transport,
                secrets=[self._access_token or ""], service="Azure Resource Manager", api_key_env=TOKEN_ENV,
            )  # fmt: skip
        return self._arm

    def deploy(self, job_id: str, *, name: str | None = None, sku: str | None = None, capacity: int = 1) -> dict[str, Any]:
        """Deploy a succeeded job's model (``PUT .../deployments/{name}``) and save its endpoint under the
        fine-tuned model's name. Idempotent: deploying again under the same name updates the deployment."""
        job = self.get(job_id)
        if job.status != "succeeded" or not job.fine_tuned_model:
            raise ProviderError(f"job {job_id} is {job.status}: it has no fine-tuned model to deploy yet",
                                hint=f"`tuneport jobs wait {job_id} --backend azure` waits for it.")  # fmt: skip
        name = name or deployment_name_for(job_id)
        if _DEPLOYMENT_NAME.search(name) or len(name) > 64:
            raise ProviderError(f"{name!r} is not a valid deployment name",
                                hint="Use up to 64 letters, digits, '.', '_' or '-'.")  # fmt: skip
        training = getattr(job, "trainingType", None) or "Standard"
        default_sku = next((s for t, s in TRAINING_TYPES.values() if t.lower() == str(training).lower()), "Standard")
        body = {"sku": {"name": sku or default_sku, "capacity": capacity},
                "properties": {"model": {"format": "OpenAI", "name": job.fine_tuned_model, "version": "1"}}}  # fmt: skip
        result = self.arm.request("PUT", f"deployments/{quote(name, safe='')}", json=body, parse=lambda r: r.json())
        store = self.store
        if store is not None:
            store.add_endpoint(job.fine_tuned_model, base_url=self.deployment_url(name), model=name,
                               api_key_env=KEY_ENV, kind=self.name, replace=True,
                               job_id=job_id if store.get_job(job_id) is not None else None,
                               extra={"backend": self.name, "job": job_id, "deployment": name})  # fmt: skip
        return _deployment_view(result)

    def list_deployments(self) -> list[dict[str, Any]]:
        """Every deployment of the resource (``GET .../deployments``), following ``nextLink`` pages."""
        views: list[dict[str, Any]] = []
        page = self.arm.request("GET", "deployments", parse=lambda r: r.json())
        for _ in range(100):
            views += [_deployment_view(d) for d in page.get("value", [])]
            link = page.get("nextLink")
            if not link:
                break
            url = httpx.URL(link)  # ARM's continuation: the same path with a $skipToken in its query
            page = self.arm.request("GET", str(url.copy_with(query=None)), params=dict(url.params),
                                    parse=lambda r: r.json())  # fmt: skip
        return views

    def undeploy(self, name: str) -> None:
        """Delete deployment ``name`` (hosting stops being billed) and forget its saved endpoint."""
        self.arm.request("DELETE", f"deployments/{quote(name, safe='')}")
        store = self.store
        if store is not None:
            for row in store.list_endpoints():
                if row.get("kind") == self.name and row.get("base_url") == self.deployment_url(name):
                    store.remove_endpoint(row["name"])

    def close(self) -> None:
        super().close()
        if self._arm is not None:
            self._arm.close()
            self._arm = None


def _deployment_view(raw: Mapping[str, Any]) -> dict[str, Any]:
    props = raw.get("properties") or {}
    model = props.get("model") or {}
    return {"name": raw.get("name"), "model": model.get("name"), "sku": (raw.get("sku") or {}).get("name"),
            "capacity": (raw.get("sku") or {}).get("capacity"), "state": props.get("provisioningState")}  # fmt: skip


def _az_create_command(name: str, model: str) -> str:
    return (
        "az cognitiveservices account deployment create --resource-group RESOURCE_GROUP --name AZURE_RESOURCE "
        f"--deployment-name {name} --model-name {model} --model-version 1 --model-format OpenAI "
        "--sku-name Standard --sku-capacity 1"
    )
