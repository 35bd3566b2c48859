"""Together AI's hosted fine-tuning as a :class:`~tuneport.providers.base.Provider`.

Wire format, from the official ``together`` SDK (3.x, generated from Together's OpenAPI spec:
``together/resources/fine_tuning.py``, ``together/lib/resources/files.py``, ``together/types/finetune_*.py``) and
Together's API reference (docs.together.ai/reference: post-fine-tunes, get-finetune-download):

- **Files**: ``POST /files`` (multipart form ``purpose``, ``file_name``, ``file_type``, ``checksum`` = sha256)
  answers ``302`` with a presigned ``Location`` and ``X-Together-File-Id``; the bytes go to ``Location`` by
  ``PUT`` (without our key: it is someone else's storage); ``POST /files/{id}/preprocess`` returns the file. Also
  ``GET /files``, ``GET /files/{id}``, ``DELETE /files/{id}``, ``GET /files/{id}/content``.
- **Jobs**: ``POST /fine-tunes``, ``GET /fine-tunes`` (every job in one ``{"data": [...]}``: no paging, no
  metadata filter), ``GET /fine-tunes/{id}``, ``POST /fine-tunes/{id}/cancel``, ``GET /fine-tunes/{id}/events`` and
  ``/checkpoints`` (``{"data": [...]}``, oldest first, events without ids), ``POST /fine-tunes/estimate-price``,
  ``GET /fine-tunes/models/limits?model_name=``, ``GET /finetune/download?ft_id=&checkpoint=adapter`` (a
  compressed tar archive: zstd, gzip or plain, told apart by their magic bytes).
- **Statuses** map onto tuneport's: ``pending`` -> validating_files, ``queued`` -> queued, ``running``,
  ``compressing``, ``uploading``, ``cancel_requested`` -> running (the job is still using the machine),
  ``completed`` -> succeeded, ``cancelled`` -> cancelled, ``error`` and ``user_error`` -> failed (the error code
  says which). The raw status stays on the job as ``together_status``.

What the spec maps to (and what is refused, before any upload): ``model``, the files, ``n_epochs`` (auto: OpenAI's
rule, as locally), ``batch_size`` (auto: ``"max"``), an absolute ``learning_rate`` (``local.learning_rate``, else
the multiplier times tuneport's local base rate, so the same spec trains at the same rate everywhere),
``lr_scheduler`` linear/cosine with ``warmup_ratio``, ``weight_decay``, ``gradient_accumulation_steps``,
``packing``, ``max_seq_length``, LoRA ``r``/``alpha``/``dropout``/trainable modules or full training,
``training_method`` sft/dpo with ``dpo_beta``, ``train_on_inputs`` (false: the loss is on assistant turns, as on
every backend), ``suffix`` (at most 40 characters), ``random_seed``, ``n_checkpoints`` 1 and ``n_evals`` (one per
epoch with a validation file, else 0: the spec has no field for either). Refused: qlora, quantization, DoRA,
other schedulers, a suffix over 40 characters, values outside the model's limits. Warned: integrations and
metadata (Together has no field for them; metadata stays in tuneport's store), local-only settings.

**Exactly one job per create.** Together has no metadata and no idempotency key, so a job is recognised by what it
is: before the first send, the ids of the jobs already on the training file are noted; after an ambiguous failure
(timeout, reset, 5xx), a job on the same file and model with the same suffix, created since the first send, that
was not there before, is the lost one and is returned instead of sending again. ``client_key`` (recorded in the
store's metadata as ``tuneport_client_key``) makes a re-run return the job already created with it.

The key comes from ``TOGETHER_API_KEY`` and lives only in request headers; ``TOGETHER_BASE_URL`` overrides the API
(with or without the trailing ``/v1``, as the SDK takes it without).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import httpx

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

__all__ = ["TogetherProvider", "DEFAULT_BASE_URL", "STATUS_MAP", "SUFFIX_MAX", "together_base_url"]

log = logging.getLogger("tuneport.providers.together")

DEFAULT_BASE_URL = "https://api.together.xyz/v1"
API_KEY_ENV = "TOGETHER_API_KEY"
CLIENT_KEY_FIELD = "tuneport_client_key"
SUFFIX_MAX = 40
STATUS_MAP: dict[str, str] = {
    "pending": "validating_files", "queued": "queued", "running": "running", "compressing": "running",
    "uploading": "running", "cancel_requested": "running", "cancelled": "cancelled", "error": "failed",
    "user_error": "failed", "completed": "succeeded",
}  # fmt: skip
#: how far Together's clock may be behind ours when matching a lost create by its creation time
CLOCK_SKEW_S = 300
_SCHEDULERS = ("linear", "cosine")
_LEVELS = {"warning": "warn", "legacy_iwarning": "warn", "error": "error", "legacy_ierror": "error"}
_LOCAL_ONLY = ("gradient_checkpointing", "num_processes", "dtype", "device", "save_merged", "save_steps",
               "output_dir", "early_stopping_patience")  # fmt: skip
_HASH_BLOCK = 4 * 1024 * 1024


def together_base_url() -> str:
    """The API root: ``TOGETHER_BASE_URL`` (the SDK's form, without ``/v1``, is accepted too) or the default."""
    url = (os.environ.get("TOGETHER_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _epoch(value: Any) -> int:
    """Together sends ISO-8601 times (``2026-10-01T12:00:00.123Z``); tuneport's objects carry Unix seconds."""
    if isinstance(value, int | float):
        return int(value)
    if not value:
        return 0
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _page(items: list[Any], after: str | None, limit: int) -> dict[str, Any]:
    """OpenAI's ``after``/``limit`` paging over a list Together sends whole (newest first already)."""
    if after is not None:
        ids = [item.id for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return {"data": items[:limit], "has_more": len(items) > limit}


class TogetherProvider(Provider):
    """Fine-tuning on Together AI. ``store``: a Store, None for the default one, False for none; ``transport`` and
    ``retry`` are test seams (as for :class:`~tuneport.providers.openai.OpenAIProvider`)."""

    name = "together"
    label = "Together AI"
    paid = True
    billing = "tokens"
    secret_env = (API_KEY_ENV,)

    # -- what tuneport asks of the backend before and after a job (see Provider) ------------------------------
    @classmethod
    def check_spec(cls, spec: JobSpec) -> list[str]:
        """Refuses what Together cannot train as written (SpecError, all at once); warns about what it ignores."""
        problems, warnings = [], []
        local = spec.local
        if local.finetuning_type == "qlora" or local.quantization != "none":
            problems.append(
                "local.finetuning_type/quantization: Together trains LoRA or full, not quantized (qlora)"
            )
        if local.use_dora:
            problems.append("local.use_dora: Together trains plain LoRA adapters, not DoRA")
        if local.lr_scheduler not in _SCHEDULERS:
            problems.append(
                f"local.lr_scheduler: Together offers {' and '.join(_SCHEDULERS)}, not {local.lr_scheduler}"
            )
        if spec.suffix is not None and len(spec.suffix) > SUFFIX_MAX:
            problems.append(f"suffix: Together takes at most {SUFFIX_MAX} characters, got {len(spec.suffix)}")
        if problems:
            raise SpecError(
                "the spec asks for what Together cannot do: " + "; ".join(problems),
                hint="Change these settings, or train with --backend local.",
            )
        if cls._known_model(spec.model) is None:
            known = ", ".join(sorted(cls._catalog()["models"]))
            warnings.append(
                f'model: "{spec.model}" is not in tuneport\'s list of models Together fine-tunes ({known}); '
                "`tuneport train` asks Together before uploading anything"
            )
        if spec.integrations:
            warnings.append(
                "integrations are not sent to Together (a W&B key would have to travel in the body)"
            )
        if spec.metadata:
            warnings.append("metadata: Together jobs have none; it is kept in tuneport's store only")
        defaults = type(local)()
        changed = [f"local.{n}" for n in _LOCAL_ONLY if getattr(local, n) != getattr(defaults, n)]
        if changed:
            warnings.append(f"ignored by Together (local-only settings): {', '.join(changed)}")
        return warnings

    @classmethod
    def preview(cls, spec: JobSpec, files: Mapping[str, Mapping[str, Any]]) -> SpecPreview:
        """The ``POST /fine-tunes`` body the spec becomes (local files shown as the ids they get after upload)."""

        def file_id(name: str) -> str | None:
            info = files.get(name)
            if info is None:
                return None
            if info.get("kind") == "openai_file_id":
                return str(info["value"])
            return f"<file id of {Path(str(info['value'])).name} after upload>"

        examples = files.get("training_file", {}).get("examples")
        body = cls.create_body(
            spec, file_id("training_file") or "", file_id("validation_file"), examples=examples
        )
        return SpecPreview(title="Together AI: POST /v1/fine-tunes", data={"create_body": body}, request=body)

    @classmethod
    def estimate(cls, spec: JobSpec) -> LaunchEstimate | None:
        """Billed tokens (tokens x epochs, counted with o200k_base: Together counts with the model's own tokenizer,
        so this is close, not exact) times the catalog's price for the model's size and method."""
        from tuneport.data.validate import validate_file

        path = spec.training_path
        if path is None:
            return None
        n_epochs = spec.hyperparameters.n_epochs
        method = "dpo" if spec.method.type == "dpo" else "sft"
        report = validate_file(path, method=method, n_epochs=n_epochs if isinstance(n_epochs, int) else None)
        report.raise_for_errors()  # never ask to pay for a job on data that fails validation
        stats = report.stats
        price, source = cls.training_price(spec.model, method, spec.local.finetuning_type)
        usd = None if price is None else (Decimal(stats.billed_tokens) * price / Decimal(1_000_000))
        return LaunchEstimate(
            file=str(path), model=spec.model, examples=stats.examples, n_epochs=stats.n_epochs,
            billed_tokens=stats.billed_tokens, price_usd=usd, price_source=source,
        )  # fmt: skip

    @classmethod
    def finished_job_endpoint(cls, job_id: str, fine_tuned_model: str) -> Endpoint:
        """Together serves a fine-tuned model on its OpenAI-compatible ``/v1/chat/completions``, by output name."""
        return Endpoint(base_url=together_base_url(), model=fine_tuned_model, api_key_env=API_KEY_ENV,
                        kind=cls.name, job_id=job_id)  # fmt: skip

    @classmethod
    def inference_prices(cls, model: str) -> TokenPrices | None:
        """Per-token prices of a base model on Together's serverless API, by the catalog id (a ``-Reference`` id
        is for training) or the ``serverless_model`` id it is served as; None for a model without a documented
        serverless price. A fine-tuned output name (``account/<base>-<suffix>-<hash>``) is None too: Together
        serves fine-tunes on a dedicated endpoint billed by the hour (the catalog's ``fine_tuned_serving``), not
        per token, so it is priced like any self-hosted endpoint (``--hourly``)."""
        models = cls._catalog()["models"]
        entry = models.get(model) or next(
            (m for m in models.values() if m.get("serverless_model") == model), None
        )
        prices = (entry or {}).get("inference_per_1m") or {}
        if entry is None or "input" not in prices or "output" not in prices:
            return None
        served = entry.get("serverless_model") or entry["id"]
        return TokenPrices(
            model=served, input_per_1m=Decimal(str(prices["input"])), output_per_1m=Decimal(str(prices["output"])),
            source=str(entry.get("inference_source") or entry["source"]),
            as_of=str(entry.get("inference_as_of") or entry["as_of"]),
            note=f"base model rates ({entry.get('inference_note') or f'serverless {served}'}); a "
                 "fine-tune of it is billed by the hour on a dedicated endpoint, not at these rates",
        )  # fmt: skip

    @classmethod
    def owns_base_url(cls, base_url: str) -> bool:
        return "api.together.xyz" in base_url or "api.together.ai" in base_url

    # -- catalog ----------------------------------------------------------------------------------------------
    @classmethod
    def _catalog(cls) -> dict[str, Any]:
        from tuneport.cost.catalog import provider_catalog

        return provider_catalog(cls.name)

    @classmethod
    def _known_model(cls, model: str) -> dict[str, Any] | None:
        return cls._catalog()["models"].get(model)

    @classmethod
    def training_price(
        cls, model: str, method: str, finetuning_type: str
    ) -> tuple[Decimal | None, str | None]:
        """$ per 1M training tokens for ``model`` (by its size in the catalog) and where the figure comes from."""
        entry = cls._known_model(model)
        if entry is None or entry.get("params_b") is None:
            return None, None
        size = float(entry["params_b"])
        kind = "full" if finetuning_type == "full" else "lora"
        for tier in cls._catalog()["training_tiers"]:
            if (tier["method"], tier["training_type"]) == (method, kind) and (
                float(tier.get("min_params_b", 0)) <= size <= float(tier.get("max_params_b", 1e9))
            ):
                return Decimal(str(tier["per_1m"])), f"{tier['source']} (as of {tier['as_of']})"
        return None, None

    # -- the request body -------------------------------------------------------------------------------------
    @classmethod
    def create_body(
        cls, spec: JobSpec, training_file: str, validation_file: str | None, *, examples: int | None = None
    ) -> dict[str, Any]:
        """The body of ``POST /fine-tunes`` for ``spec`` (see the module docstring for each field)."""
        from tuneport.spec.mapping import auto_n_epochs
        from tuneport.spec.rates import AUTO_LEARNING_RATE_MULTIPLIER, base_learning_rate

        cls.check_spec(spec)
        hyper, local = spec.hyperparameters, spec.local
        dpo = spec.method.type == "dpo"
        n_epochs = hyper.n_epochs if isinstance(hyper.n_epochs, int) else (auto_n_epochs(examples) if examples else 3)
        multiplier = hyper.learning_rate_multiplier
        rate = local.learning_rate
        if rate is None:
            factor = AUTO_LEARNING_RATE_MULTIPLIER if multiplier == "auto" else float(multiplier)
            rate = factor * base_learning_rate(spec.method.type, local.finetuning_type)
        body: dict[str, Any] = {
            "training_file": training_file, "model": spec.model, "n_epochs": n_epochs,
            "n_checkpoints": 1, "n_evals": n_epochs if validation_file else 0,
            "batch_size": hyper.batch_size if isinstance(hyper.batch_size, int) else "max",
            "gradient_accumulation_steps": local.gradient_accumulation_steps,
            "learning_rate": rate, "warmup_ratio": local.warmup_ratio, "weight_decay": local.weight_decay,
            "max_grad_norm": 1.0, "max_seq_length": local.max_seq_length,
            "packing": local.packing if isinstance(local.packing, bool) else True,
            "lr_scheduler": {"lr_scheduler_type": local.lr_scheduler,
                             "lr_scheduler_args": {"min_lr_ratio": 0.0, **({"num_cycles": 0.5}
                                                   if local.lr_scheduler == "cosine" else {})}},
        }  # fmt: skip
        if validation_file:
            body["validation_file"] = validation_file
        if local.finetuning_type == "full":
            body["training_type"] = {"type": "Full"}
        else:
            modules = local.target_modules
            body["training_type"] = {
                "type": "Lora", "lora_r": local.lora_r, "lora_alpha": local.lora_alpha,
                "lora_dropout": local.lora_dropout,
                "lora_trainable_modules": modules if isinstance(modules, str) else ",".join(modules),
            }  # fmt: skip
        if dpo:
            beta = getattr(hyper, "beta", "auto")
            body["training_method"] = {"method": "dpo", **({"dpo_beta": beta} if beta != "auto" else {})}
        else:
            body["training_method"] = {"method": "sft", "train_on_inputs": False}
        if spec.suffix:
            body["suffix"] = spec.suffix
        if spec.seed is not None:
            body["random_seed"] = spec.seed
        return body

    @staticmethod
    def check_limits(body: Mapping[str, Any], limits: Mapping[str, Any]) -> list[str]:
        """What in ``body`` is outside the model's limits (``GET /fine-tunes/models/limits``), one line each."""
        out: list[str] = []
        model, dpo = body["model"], body["training_method"]["method"] == "dpo"
        full = body["training_type"]["type"] == "Full"
        if full and not limits.get("supports_full_training", limits.get("full_training") is not None):
            out.append(f"local.finetuning_type: Together trains {model} with LoRA only, not full")
        kind = (limits.get("full_training") if full else limits.get("lora_training")) or {}

        def outside(what: str, value: Any, low: Any, high: Any) -> None:
            if value is not None and low is not None and high is not None and not low <= value <= high:
                out.append(f"{what}: {model} accepts {low} to {high} on Together, got {value}")

        outside("n_epochs", body["n_epochs"], 1, limits.get("max_num_epochs"))
        outside(
            "learning_rate",
            body["learning_rate"],
            limits.get("min_learning_rate"),
            limits.get("max_learning_rate"),
        )
        seq_max = limits.get("max_seq_length_dpo" if dpo else "max_seq_length_sft")
        outside("local.max_seq_length", body["max_seq_length"], limits.get("min_max_seq_length"), seq_max)
        if isinstance(body["batch_size"], int) and kind:
            high = kind.get("max_batch_size_dpo" if dpo else "max_batch_size")
            outside("batch_size", body["batch_size"], kind.get("min_batch_size"), high)
        if not full:
            lora = limits.get("lora_training") or {}
            outside("local.lora_r", body["training_type"]["lora_r"], 1, lora.get("max_rank"))
            allowed = set(lora.get("target_modules") or [])
            asked = body["training_type"]["lora_trainable_modules"]
            extra = sorted(set(asked.split(",")) - allowed) if asked != "all-linear" and allowed else []
            if extra:
                out.append(
                    f"local.target_modules: {model} has no {', '.join(extra)} (it has {', '.join(sorted(allowed))})"
                )
        return out

    # -- construction and plumbing ----------------------------------------------------------------------------
    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        store: Store | Literal[False] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        poll_interval: float = 10.0,
    ) -> None:
        self._api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self.base_url = base_url.rstrip("/") if base_url else together_base_url()
        self._store_arg = store
        self._store: Store | None = store or None
        self._transport, self._retry, self._timeout = transport, retry, timeout
        self.poll_interval = poll_interval
        self._http: HTTPClient | None = None
        self._local_paths: dict[str, str] = {}
        self._sha256s: dict[str, str] = {}
        self._examples: int | None = (
            None  # the training file's examples, counted by start() for "auto" epochs
        )

    def __repr__(self) -> str:  # never show the key
        return f"TogetherProvider(base_url={self.base_url!r})"

    @property
    def http(self) -> HTTPClient:
        """The API client, made on first use (a missing key only matters once a request is made)."""
        if self._http is None:
            if not self._api_key:
                raise AuthenticationError(
                    f"No Together AI API key: set {API_KEY_ENV}.",
                    hint=f"export {API_KEY_ENV}=... (a key from api.together.ai/settings/api-keys), "
                    "or train locally with --backend local.",
                )
            self._http = HTTPClient(
                self.base_url, headers={"Authorization": f"Bearer {self._api_key}"}, timeout=self._timeout,
                retry=self._retry, transport=self._transport, secrets=[self._api_key], service="Together AI",
                api_key_env=API_KEY_ENV,
            )  # fmt: skip
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    @property
    def store(self) -> Store | None:
        if self._store is None and self._store_arg is None:
            from tuneport.jobs.store import Store

            self._store = self._store_arg = Store()
        return self._store

    @property
    def _store_provider(self) -> str:
        return "together" if self.base_url == DEFAULT_BASE_URL else f"together@{self.base_url}"

    # -- files ------------------------------------------------------------------------------------------------
    @staticmethod
    def _file(data: Mapping[str, Any]) -> FileObject:
        status = {"COMPLETED": "processed", "FAILED": "error", "INVALID_FORMAT": "error"}.get(
            str(data.get("processing_status") or "COMPLETED"), "uploaded"
        )
        report = data.get("validation_report") or {}
        return FileObject(
            id=data["id"], bytes=int(data.get("bytes") or 0), created_at=_epoch(data.get("created_at")),
            filename=data.get("filename") or "", purpose=data.get("purpose") or "fine-tune", status=status,
            status_details=report.get("error"),
        )  # fmt: skip

    def get_file(self, file_id: str) -> FileObject:
        """``GET /files/{id}``."""
        return self.http.request("GET", f"files/{file_id}", parse=lambda r: self._file(r.json()))

    def list_files(self) -> list[FileObject]:
        """``GET /files``: every file of the account."""
        return self.http.request("GET", "files", parse=lambda r: [self._file(f) for f in r.json()["data"]])

    def delete_file(self, file_id: str) -> bool:
        """``DELETE /files/{id}``; the store forgets it too."""
        deleted = self.http.request(
            "DELETE", f"files/{file_id}", parse=lambda r: bool(r.json().get("deleted"))
        )
        if self.store is not None:
            self.store.forget_file(self._store_provider, file_id)
        return deleted

    def file_content(self, file_id: str) -> bytes:
        """``GET /files/{id}/content``: the bytes as uploaded."""
        return self.http.request("GET", f"files/{file_id}/content", parse=lambda r: r.content)

    def job_spec_fields(self, job: FineTuningJob) -> dict[str, Any]:
        """Provider's reading, plus what Together's job says that a local job honours: the absolute learning
        rate and the LoRA settings (or full training). Together jobs carry no metadata: the store's is used."""
        fields = super().job_spec_fields(job)
        local: dict[str, Any] = {}
        if isinstance(getattr(job, "learning_rate", None), int | float):
            local["learning_rate"] = float(job.learning_rate)
        kind = getattr(job, "training_type", None) or {}
        if kind.get("type") == "Full":
            local["finetuning_type"] = "full"
        elif kind.get("type") == "Lora":
            for key in ("lora_r", "lora_alpha", "lora_dropout"):
                if kind.get(key) is not None:
                    local[key] = kind[key]
            modules = kind.get("lora_trainable_modules")
            if isinstance(modules, str) and modules and modules != "all-linear":
                local["target_modules"] = [m.strip() for m in modules.split(",") if m.strip()]
        fields["local"] = local
        row = self.store.get_job(job.id) if self.store is not None else None
        fields["metadata"] = {k: v for k, v in ((row or {}).get("metadata") or {}).items() if k != CLIENT_KEY_FIELD}
        return fields

    def start(self, spec: JobSpec, *, progress: ProgressCallback | None = None) -> FineTuningJob:
        """Check everything that can be checked before anything is uploaded: the data (tuneport's validator), the
        spec (:meth:`check_spec`) and the body against the model's limits, which Together gives for the models
        it trains only (a model it does not train is refused here, naming those it does)."""
        from tuneport.data.validate import MIN_EXAMPLES, validate_file

        method = "dpo" if spec.method.type == "dpo" else "sft"
        examples = None
        for path, least in ((spec.training_path, MIN_EXAMPLES), (spec.validation_path, 1)):
            if path is not None:
                report = validate_file(path, method=method, min_examples=least)
                report.raise_for_errors()
                examples = report.stats.examples if examples is None else examples
        body = self.create_body(spec, "<training file>", spec.validation_file, examples=examples)
        problems = self.check_limits(body, self.model_limits(spec.model))
        if problems:
            raise SpecError("Together would refuse this job: " + "; ".join(problems),
                            hint="Change these settings in the spec (`tuneport spec check` shows the body).")  # fmt: skip
        self._examples = examples
        return super().start(spec, progress=progress)

    def model_limits(self, model: str) -> dict[str, Any]:
        """``GET /fine-tunes/models/limits``; a model Together does not train is a SpecError naming those it does."""
        try:
            return self.http.request("GET", "fine-tunes/models/limits", params={"model_name": model},
                                     parse=lambda r: r.json())  # fmt: skip
        except APIStatusError as exc:
            if exc.status_code not in (400, 404):
                raise
            known = ", ".join(sorted(self._catalog()["models"]))
            raise SpecError(
                f'model: Together does not fine-tune "{model}" ({exc.message})',
                hint=f"Models tuneport knows Together trains: {known}. Together's current list: "
                "docs.together.ai/docs/fine-tuning-models.",
            ) from None

    def upload(
        self, path: str | Path, *, purpose: str = "fine-tune", progress: ProgressCallback | None = None
    ) -> FileObject:
        """Upload a dataset once (a file Together still holds with the same sha256 is reused)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: not a readable file")
        size = path.stat().st_size
        if size == 0:
            raise DataError(
                f"{path}: the file is empty", hint="A fine-tuning dataset needs at least one example."
            )
        if path.suffix.lower() not in (".jsonl", ".parquet", ".csv"):
            raise DataError(
                f"{path}: Together takes .jsonl, .parquet or .csv files", hint="Rename it to .jsonl."
            )
        sha = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                sha.update(block)
        sha256 = sha.hexdigest()
        existing = self._reusable_file(sha256, purpose, size)
        if existing is not None:
            file = existing
        else:
            answer = self.http.request(
                "POST", "files", files={"purpose": (None, purpose), "file_name": (None, path.name),
                                        "file_type": (None, path.suffix.lower().lstrip(".")),
                                        "checksum": (None, sha256)},
                accept=(302, 409),
            )  # fmt: skip
            location, file_id = answer.headers.get("location"), answer.headers.get("x-together-file-id")
            if (
                answer.status_code == 409
            ):  # Together holds these bytes already (same checksum): its id is in the body
                file_id, location = (answer.json() or {}).get("file_id"), None
            if (
                not file_id
                or (answer.status_code == 302 and not location)
                or answer.status_code not in (302, 409)
            ):
                raise ProviderError(
                    f"Together did not hand out an upload address for {path} (HTTP {answer.status_code})",
                    hint="Retry the command; nothing was stored.",
                )
            if location is not None:
                self._put(location, path, size, progress)
                file = self.http.request(
                    "POST", f"files/{file_id}/preprocess", parse=lambda r: self._file(r.json())
                )
            else:
                file = self.get_file(file_id)
            if self.store is not None:
                try:
                    self.store.record_file(self._store_provider, file.id, dataset_sha256=sha256, purpose=purpose,
                                           size_bytes=size, filename=path.name, created_at=file.created_at)  # fmt: skip
                except StoreError as exc:
                    log.warning("could not remember uploaded file %s: %s", file.id, exc)
        self._local_paths[file.id], self._sha256s[file.id] = str(path), sha256
        if progress is not None:
            progress(size, size)
        return file

    def _put(self, location: str, path: Path, size: int, progress: ProgressCallback | None) -> None:
        """PUT the bytes to the presigned address: a client of its own, so the API key never goes there."""
        parts = urlsplit(location)
        with HTTPClient(f"{parts.scheme}://{parts.netloc}", retry=self._retry, transport=self._transport,
                        timeout=self._timeout, service="Together AI storage") as storage:  # fmt: skip

            def body() -> Any:
                def chunks() -> Any:
                    done = 0
                    with open(path, "rb") as fh:
                        while block := fh.read(1024 * 1024):
                            done += len(block)
                            if progress is not None:
                                progress(done, size)
                            yield block

                return chunks()

            storage.request("PUT", location, content=body, headers={"Content-Length": str(size)})

    def _reusable_file(self, sha256: str, purpose: str, size: int) -> FileObject | None:
        store = self.store
        while store is not None:
            row = store.find_file(self._store_provider, sha256, purpose)
            if row is None:
                return None
            try:
                file = self.get_file(row["provider_file_id"])
            except APIStatusError as exc:
                if exc.status_code != 404:
                    raise
                file = None
            if file is not None and file.bytes == size and file.status != "error":
                return file
            store.forget_file(self._store_provider, row["provider_file_id"])
        return None

    # -- jobs -------------------------------------------------------------------------------------------------
    def _job(self, data: Mapping[str, Any]) -> FineTuningJob:
        """A Together job as tuneport's job object (the status mapped, the raw one kept as ``together_status``)."""
        raw = str(data.get("status") or "pending")
        status = STATUS_MAP.get(raw, "running")
        method_raw = data.get("training_method") or {}
        kind = "dpo" if method_raw.get("method") == "dpo" else "supervised"
        batch = data.get("batch_size")
        hyper: dict[str, Any] = {"n_epochs": data.get("n_epochs") or "auto",
                                 "batch_size": batch if isinstance(batch, int) else "auto"}  # fmt: skip
        if kind == "dpo" and method_raw.get("dpo_beta") is not None:
            hyper["beta"] = method_raw["dpo_beta"]
        error = None
        if status == "failed":
            message = next((e.get("message") for e in reversed(data.get("events") or [])
                            if isinstance(e, dict) and e.get("type") in ("job_error", "JOB_ERROR", "JOB_USER_ERROR")),
                           None)  # fmt: skip
            text = message or f"Together ended the job with status {raw}"
            # user_error is Together's "your input was at fault"; a message about the file names the file
            at_file = raw == "user_error" and ("file" in text.lower() or "format" in text.lower())
            error = {"code": raw, "message": text, "param": "training_file" if at_file else None}
        updated = _epoch(data.get("updated_at"))
        progress = data.get("progress") or {}
        return FineTuningJob(
            id=data["id"], created_at=_epoch(data.get("created_at")), model=data.get("model") or "",
            status=status, error=error,
            fine_tuned_model=(data.get("model_output_name") or None) if status == "succeeded" else None,
            finished_at=updated if status in ("succeeded", "failed", "cancelled") else None,
            hyperparameters=hyper, training_file=data.get("training_file") or "",
            validation_file=data.get("validation_file") or None, seed=data.get("random_seed"),
            trained_tokens=data.get("token_count"), method={"type": kind, kind: {"hyperparameters": hyper}},
            estimated_finish=int(time.time() + progress["seconds_remaining"])
            if progress.get("estimate_available") and status not in ("succeeded", "failed", "cancelled") else None,
            together_status=raw, suffix=data.get("suffix"), training_type=data.get("training_type"),
            learning_rate=data.get("learning_rate"), adapter_output_name=data.get("adapter_output_name"),
        )  # fmt: skip

    def create(
        self,
        spec: JobSpec,
        *,
        training_file: str,
        validation_file: str | None = None,
        client_key: str | None = None,
    ) -> FineTuningJob:
        """Start one job from ``spec`` on uploaded files, exactly once (see the module docstring)."""
        body = self.create_body(spec, training_file, validation_file, examples=self._examples)
        return self.create_from_body(body, client_key=client_key, spec=spec)

    def create_from_body(
        self, body: Mapping[str, Any], *, client_key: str | None = None, spec: JobSpec | None = None
    ) -> FineTuningJob:
        """``POST /fine-tunes`` with ``body``; never a second job for one call (nor for one ``client_key``)."""
        key = client_key or f"tp-{uuid.uuid4().hex}"
        if client_key is not None:
            known = self._job_with_key(client_key)
            if known is not None:
                log.info("a job with client key %s exists already (%s): not creating another", key, known.id)
                return known
        training_file, model, suffix = body["training_file"], body["model"], body.get("suffix")
        before = {j["id"] for j in self._raw_jobs() if j.get("training_file") == training_file}
        sent_at = time.time()

        def lost_job(failure: Failure | None = None) -> FineTuningJob | None:
            for raw in sorted(self._raw_jobs(), key=lambda j: _epoch(j.get("created_at"))):
                if (raw["id"] not in before and raw.get("training_file") == training_file and raw.get("model") == model
                        and (raw.get("suffix") or None) == suffix
                        and _epoch(raw.get("created_at")) >= sent_at - CLOCK_SKEW_S):  # fmt: skip
                    return self._job(raw)
            return None

        def look(failure: Failure) -> FineTuningJob | None:
            try:
                return lost_job(failure)
            except ProviderError as exc:
                raise APIConnectionError(
                    f"creating the job failed ambiguously ({failure.describe()}) and checking whether it was "
                    f"created failed too: {exc.message}",
                    hint=f"Look for a new job on {training_file} (`tuneport jobs list --backend together`) "
                    "before starting it again.",
                ) from exc

        try:
            job = self.http.request("POST", "fine-tunes", json=dict(body), idempotent=False, before_resend=look,
                                    parse=lambda r: self._job(r.json()))  # fmt: skip
        except (APIConnectionError, APIStatusError) as exc:
            if not (
                isinstance(exc, APIConnectionError) or (exc.status_code or 0) >= 500 or exc.status_code == 409
            ):
                raise
            try:  # the last attempt may have created the job although its answer was lost: one last look
                found = lost_job()
            except ProviderError:
                exc.hint = (f"The job may or may not have been created: look for a new job on {training_file} "
                            "(`tuneport jobs list --backend together`) before starting it again.")  # fmt: skip
                raise exc from None
            if found is None:
                exc.hint = f"No new job on {training_file} exists; running the command again is safe."
                raise
            job = found
        self._record_job(job, spec=spec, client_key=key)
        return job

    def _raw_jobs(self) -> list[dict[str, Any]]:
        return self.http.request("GET", "fine-tunes", parse=lambda r: list(r.json().get("data") or []))

    def _job_with_key(self, key: str) -> FineTuningJob | None:
        store = self.store
        if store is None:
            return None
        for row in store.list_jobs(limit=10_000):
            if row.get("backend") == self.name and (row.get("metadata") or {}).get(CLIENT_KEY_FIELD) == key:
                return self.get(row["id"])
        return None

    def get(self, job_id: str) -> FineTuningJob:
        job = self.http.request("GET", f"fine-tunes/{job_id}", parse=lambda r: self._job(r.json()))
        self._record_job(job)
        return job

    def list(
        self, *, after: str | None = None, limit: int = 20, metadata: Mapping[str, str] | None = None
    ) -> ListPage[FineTuningJob]:
        """Jobs newest first. Together has no metadata: a filter matches the metadata tuneport stored for a job."""
        jobs = sorted((self._job(j) for j in self._raw_jobs()), key=lambda j: j.created_at, reverse=True)
        if metadata:
            stored = {}
            if self.store is not None:
                stored = {r["id"]: r.get("metadata") or {} for r in self.store.list_jobs(limit=10_000)}
            jobs = [j for j in jobs if all(stored.get(j.id, {}).get(k) == v for k, v in metadata.items())]
        return ListPage[FineTuningJob].model_validate(_page(jobs, after, limit))

    def cancel(self, job_id: str) -> FineTuningJob:
        """``POST /fine-tunes/{id}/cancel``; after an ambiguous failure the job is looked at before re-sending."""

        def already(failure: Failure) -> FineTuningJob | None:
            job = self.get(job_id)
            return (
                job if job.together_status in ("cancel_requested", "cancelled") or job.is_terminal else None
            )

        job = self.http.request("POST", f"fine-tunes/{job_id}/cancel", idempotent=False, before_resend=already,
                                parse=lambda r: self._job(r.json()))  # fmt: skip
        self._record_job(job)
        return job

    def events(
        self, job_id: str, *, after: str | None = None, limit: int = 20
    ) -> ListPage[FineTuningJobEvent]:
        """The job's events newest first. Together's carry no id: an event's id is the job's id and its place in
        the log (which only grows), so ids are stable across polls and ``after`` pages as on OpenAI."""
        raw = self.http.request(
            "GET", f"fine-tunes/{job_id}/events", parse=lambda r: list(r.json().get("data") or [])
        )
        events = []
        for index, e in enumerate(raw):
            data = {k: e[k] for k in ("step", "total_steps", "token_count", "param_count", "checkpoint_path",
                                      "wandb_url") if e.get(k) is not None}  # fmt: skip
            events.append(FineTuningJobEvent(
                id=f"{job_id}:event-{index:06d}", created_at=_epoch(e.get("created_at")),
                level=_LEVELS.get(str(e.get("level") or "").lower(), "info"), message=e.get("message") or "",
                type="metrics" if e.get("step") is not None else "message", data=data or None,
                together_type=e.get("type"),
            ))  # fmt: skip
        events.reverse()
        return ListPage[FineTuningJobEvent].model_validate(_page(events, after, limit))

    def checkpoints(
        self, job_id: str, *, after: str | None = None, limit: int = 10
    ) -> ListPage[FineTuningJobCheckpoint]:
        """The job's checkpoints newest first; an id is Together's own ``JOB_ID:STEP`` form."""
        raw = self.http.request("GET", f"fine-tunes/{job_id}/checkpoints",
                                parse=lambda r: list(r.json().get("data") or []))  # fmt: skip
        points = sorted(
            (FineTuningJobCheckpoint(
                id=f"{job_id}:{c['step']}", created_at=_epoch(c.get("created_at")),
                fine_tuned_model_checkpoint=c.get("object_name") or c.get("path") or f"{job_id}:{c['step']}",
                fine_tuning_job_id=job_id, step_number=int(c["step"]), path=c.get("path"),
                checkpoint_type=c.get("checkpoint_type"),
            ) for c in raw),
            key=lambda c: c.step_number, reverse=True,
        )  # fmt: skip
        return ListPage[FineTuningJobCheckpoint].model_validate(_page(points, after, limit))

    def estimate_price(self, training_file: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /fine-tunes/estimate-price`` for an uploaded file (Together's own figure, and whether the
        account's credit allows the job)."""
        request = {k: body[k] for k in ("model", "n_epochs", "n_evals", "training_method", "training_type",
                                        "validation_file") if k in body}  # fmt: skip
        return self.http.request("POST", "fine-tunes/estimate-price", json={"training_file": training_file, **request},
                                 parse=lambda r: r.json())  # fmt: skip

    # -- hosted training, local serving -----------------------------------------------------------------------
    def download_adapter(self, job_id: str, dest: str | Path | None = None) -> Path:
        """Download a finished LoRA job's adapter (``GET /finetune/download?checkpoint=adapter``) into ``dest``
        (default ``$TUNEPORT_HOME/adapters/together/JOB_ID``), once: a folder already there is reused."""
        from tuneport.paths import home_dir

        job = self.get(job_id)
        if job.status != "succeeded":
            raise ProviderError(f"job {job_id} is {job.status}: it has no adapter yet",
                                hint=f"`tuneport jobs wait {job_id}` waits for it to finish.")  # fmt: skip
        if (job.training_type or {}).get("type") == "Full":
            raise ProviderError(f"job {job_id} trained the full model, so it has no LoRA adapter to download",
                                hint="Serve a LoRA job's adapter; a full model is Together's to serve.")  # fmt: skip
        target = Path(dest).expanduser() if dest else home_dir() / "adapters" / self.name / job_id
        found = _adapter_folder(target) if target.is_dir() else None
        if found is None:
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                archive = staging / "download"
                self.http.request("GET", "finetune/download", params={"ft_id": job_id, "checkpoint": "adapter"},
                                  headers={"Accept": "application/octet-stream"},
                                  parse=lambda r: archive.write_bytes(r.content))  # fmt: skip
                unpacked = staging / "adapter"
                _unpack(archive, unpacked, job_id)
                if _adapter_folder(unpacked) is None:
                    raise ProviderError(f"the download of job {job_id} holds no adapter_config.json",
                                        hint="Together may not have finished uploading the adapter; retry later.")  # fmt: skip
                if target.exists():
                    shutil.rmtree(target)
                os.replace(unpacked, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            found = _adapter_folder(target)
        assert found is not None
        if self.store is not None:
            try:
                self.store.upsert_job(
                    job.id, backend=self.name, status=job.status, outputs={"adapter": str(found)}
                )
            except StoreError as exc:
                log.warning("could not record the adapter of %s: %s", job_id, exc)
        return found

    # -- store sync -------------------------------------------------------------------------------------------
    def _file_paths(self, job: FineTuningJob) -> dict[str, str]:
        return dict(self._local_paths)

    def _record_job(
        self, job: FineTuningJob, *, spec: JobSpec | None = None, client_key: str | None = None
    ) -> None:
        """Keep the store's copy current, so ``tuneport jobs`` lists Together jobs offline too."""
        store = self.store
        if store is None:
            return
        fields: dict[str, Any] = {
            "model": job.model, "fine_tuned_model": job.fine_tuned_model, "training_file": job.training_file,
            "validation_file": job.validation_file, "method": job.method, "hyperparameters": job.hyperparameters,
            "seed": job.seed, "error": job.error.to_api() if job.error else None, "trained_tokens": job.trained_tokens,
            "estimated_finish": job.estimated_finish, "created_at": job.created_at, "finished_at": job.finished_at,
        }  # fmt: skip
        if client_key is not None:
            fields["metadata"] = {**((spec.metadata if spec else None) or {}), CLIENT_KEY_FIELD: client_key}
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
            from tuneport.endpoints.registry import register_job_endpoint

            try:  # a naming problem must never fail the job
                register_job_endpoint(store, row)
            except TuneportError as exc:
                log.warning("could not register an endpoint for job %s: %s", job.id, exc)


def _adapter_folder(root: Path) -> Path | None:
    """The folder under ``root`` (itself included) that holds ``adapter_config.json``."""
    if (root / "adapter_config.json").is_file():
        return root
    return next((p.parent for p in sorted(root.rglob("adapter_config.json"))), None)


def _unpack(archive: Path, into: Path, job_id: str) -> None:
    """Unpack Together's archive (zstd-, gzip- or un-compressed tar) without letting a member leave ``into``."""
    head = archive.read_bytes()[:4]
    tar_path = archive
    if head == b"\x28\xb5\x2f\xfd":  # zstd
        tar_path = archive.with_suffix(".tar")
        try:
            import zstandard
        except ImportError:
            if shutil.which("zstd") is None:
                raise ProviderError(
                    f"the adapter of job {job_id} is zstd-compressed and neither the zstandard package nor the "
                    "zstd program is installed",
                    hint="pip install zstandard (or apt-get install zstd).",
                ) from None
            import subprocess

            subprocess.run(["zstd", "-d", "-q", "-f", str(archive), "-o", str(tar_path)], check=True)
        else:
            with open(archive, "rb") as src, open(tar_path, "wb") as out:
                zstandard.ZstdDecompressor().copy_stream(src, out)
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            tar.extractall(into, filter="data")  # refuses absolute paths, '..', links out and devices
    except (tarfile.TarError, OSError) as exc:
        raise ProviderError(
            f"the adapter download of job {job_id} is not a readable archive: {exc}",
            hint="Retry the download; if it persists, download it with Together's CLI.",
        ) from None
