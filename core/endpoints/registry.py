"""Named endpoints over the store: save, list, remove, and register a finished job's endpoint by itself.

A saved endpoint is a name for (base URL, model, the NAME of the key's environment variable). Names are what
users type (``tuneport chat my-ft``, ``tuneport eval --endpoint base --endpoint my-ft``), so they are checked
not to collide with the other reference forms (``openai:MODEL``, ``URL#MODEL``; see
:func:`tuneport.endpoints.client.resolve_endpoint`). The secret itself is never stored: the store refuses anything that
looks like a key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tuneport.endpoints.client import ChatEndpoint, EndpointError, check_base_url
from tuneport.providers.registry import backend_for_url, provider_class, provider_names

if TYPE_CHECKING:
    from tuneport.jobs.store import Row, Store

__all__ = [
    "add_endpoint",
    "list_endpoints",
    "remove_endpoint",
    "register_job_endpoint",
    "check_endpoint_name",
]

#: an endpoint's kind is the backend that serves it (so it is priced as that backend prices), or plain "url"
URL_KIND = "url"
_BAD_NAME = re.compile(r"\s|#|://")


def check_endpoint_name(name: str) -> str:
    """``name`` if it can be saved and typed back unambiguously; else an :class:`EndpointError` saying why."""
    if not name or not name.strip():
        raise EndpointError("An endpoint needs a non-empty name.", hint="For example: my-ft or base.")
    if _BAD_NAME.search(name):
        raise EndpointError(
            f"Endpoint name {name!r} contains whitespace, '#' or '://'.",
            hint="Those mark the URL#MODEL form: choose a plain name such as my-ft.",
        )
    return name


def add_endpoint(
    store: Store,
    name: str,
    *,
    base_url: str,
    model: str,
    api_key_env: str | None = None,
    kind: str | None = None,
    job_id: str | None = None,
    replace: bool = False,
) -> Row:
    """Save a named endpoint (checked: name, http(s) base URL, model, key variable NAME) and return its row.

    ``kind`` defaults to ``openai`` for api.openai.com and ``url`` otherwise (``local`` for tuneport's own server).
    """
    check_endpoint_name(name)
    base = check_base_url(base_url)
    if not model or not model.strip():
        raise EndpointError(
            f"Endpoint {name!r} needs a model.", hint="--model tiny-chat, --model gpt-4o-mini, ..."
        )
    kinds = (*provider_names(), URL_KIND)
    if kind is None:
        kind = backend_for_url(base) or URL_KIND
    if kind not in kinds:
        raise EndpointError(f"Unknown endpoint kind {kind!r}.", hint=f"One of: {', '.join(kinds)}.")
    return store.add_endpoint(
        name, base_url=base, model=model.strip(), kind=kind, api_key_env=api_key_env or None, job_id=job_id,
        replace=replace,
    )  # fmt: skip


def list_endpoints(store: Store) -> list[Row]:
    """Every saved endpoint by name, each with ``key_set``: whether its key variable is set here (never the key)."""
    rows = store.list_endpoints()
    for row in rows:
        env = row.get("api_key_env")
        row["key_set"] = None if env is None else bool(os.environ.get(env))
    return rows


def remove_endpoint(store: Store, name: str) -> None:
    """Delete a saved endpoint; an :class:`EndpointError` if there is none of that name."""
    if not store.remove_endpoint(name):
        raise EndpointError(
            f"No endpoint named {name!r}.", hint="`tuneport endpoints list` shows the saved ones."
        )


def register_job_endpoint(store: Store, job: Mapping[str, Any] | Any) -> Row:
    """Save a succeeded job's endpoint under its fine-tuned model's name, so ``tuneport chat NAME`` just works.

    ``job`` is a store row (``store.get_job(id)``) or a :class:`~tuneport.jobs.objects.FineTuningJob`. Where the
    model answers is the job's backend's to say (:meth:`~tuneport.providers.base.Provider.finished_job_endpoint`:
    local jobs at ``TUNEPORT_LOCAL_BASE_URL``, where ``tuneport serve`` listens, with no key; OpenAI jobs at
    ``OPENAI_BASE_URL`` with ``OPENAI_API_KEY``; a plugin backend wherever it says).
    Idempotent: registering the same job again updates its endpoint. If a *different* endpoint already holds the
    name (one the user saved by hand), it is left alone and this one is saved as ``NAME@JOB_SUFFIX``.
    """
    get = job.get if isinstance(job, Mapping) else lambda key, default=None: getattr(job, key, default)
    job_id, status, model = get("id"), get("status"), get("fine_tuned_model")
    if status != "succeeded" or not model:
        raise EndpointError(
            f"Job {job_id} is {status}: it has no fine-tuned model to register yet.",
            hint=f"`tuneport jobs wait {job_id}`, then register it.",
        )
    backend = get("backend") or ("local" if getattr(job, "local", None) else None)
    if backend is None:
        raise EndpointError(
            f"Job {job_id} does not say which backend ran it.",
            hint="Register it from the store's row (`store.get_job(id)`), which records the backend.",
        )
    found = provider_class(backend).finished_job_endpoint(job_id, model)
    endpoint = ChatEndpoint(model, check_base_url(found.base_url), found.model, found.api_key_env,
                            found.kind or backend, job_id)  # fmt: skip
    name = model
    existing = store.get_endpoint(name)
    if existing is not None and job_id not in (
        existing.get("job_id"),
        (existing.get("extra") or {}).get("job"),
    ):
        name = f"{model}@{str(job_id)[-8:]}"  # another endpoint holds the name: leave it as the user left it
    linked = job_id if job_id and store.get_job(job_id) is not None else None  # jobs(id) is a foreign key
    return store.add_endpoint(
        name, base_url=endpoint.base_url, model=endpoint.model, kind=endpoint.kind,
        api_key_env=endpoint.api_key_env, job_id=linked, extra={"backend": backend, "job": job_id},
        replace=True,
    )  # fmt: skip
