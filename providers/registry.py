"""Providers by name: ``get_provider("openai")``.

Entries are classes or lazy ``"module:Class"`` strings, so naming a backend imports only that backend (the local
one pulls in torch). Third-party packages can add backends through the ``tuneport.providers`` entry-point group.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from tuneport.errors import ProviderError
from tuneport.providers.base import Provider

__all__ = [
    "register_provider",
    "get_provider",
    "provider_class",
    "provider_names",
    "backend_for_url",
    "backend_for_endpoint",
    "secret_env_names",
    "list_stored_jobs",
]

_ENTRY_POINT_GROUP = "tuneport.providers"

# name -> Provider subclass, or "module:Class" imported on first use
_REGISTRY: dict[str, type[Provider] | str] = {
    "openai": "tuneport.providers.openai:OpenAIProvider",
    "local": "tuneport.providers.local:LocalProvider",
    "azure": "tuneport.providers.azure:AzureProvider",
    "together": "tuneport.providers.together:TogetherProvider",
}
_lock = threading.Lock()
_entry_points_loaded = False


def register_provider(name: str, target: type[Provider] | str, *, replace: bool = False) -> None:
    """Register a backend under ``name``: a Provider subclass, or ``"package.module:ClassName"`` (lazy).

    Registering a taken name raises unless ``replace=True`` (so two plugins cannot silently shadow each other).
    """
    if not name or not name.replace("-", "_").isidentifier():
        raise ValueError(f"provider name must be a simple word like 'openai', not {name!r}")
    if isinstance(target, str) and target.count(":") != 1:
        raise ValueError(f"lazy provider target must look like 'package.module:ClassName', not {target!r}")
    with _lock:
        if name in _REGISTRY and not replace and _REGISTRY[name] != target:
            raise ValueError(
                f"a provider named {name!r} is already registered ({_describe(_REGISTRY[name])})"
            )
        _REGISTRY[name] = target


def provider_names() -> list[str]:
    """Every registered backend name, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def provider_class(name: str) -> type[Provider]:
    """The Provider subclass registered as ``name`` (importing it if it was registered lazily)."""
    _load_entry_points()
    target = _REGISTRY.get(name)
    if target is None:
        raise ProviderError(
            f"unknown backend {name!r}",
            hint=f"Use one of: {', '.join(sorted(_REGISTRY))}.",
        )
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ProviderError(
                f"backend {name!r} cannot be loaded from {target}: {exc}",
                hint="Install the extra it needs (for the local backend: pip install 'tuneport[local]').",
            ) from exc
        with _lock:
            _REGISTRY[name] = cls
        return cls
    return target


def get_provider(name: str, **options: Any) -> Provider:
    """A new instance of the backend ``name``; ``options`` go to its constructor (e.g. ``store=``)."""
    return provider_class(name)(**options)


def backend_for_url(base_url: str) -> str | None:
    """The backend whose hosted API ``base_url`` is (``"openai"`` for api.openai.com), or None."""
    for name in provider_names():
        try:
            if provider_class(name).owns_base_url(base_url):
                return name
        except ProviderError:  # a plugin that cannot load owns nothing
            continue
    return None


def backend_for_endpoint(kind: str | None, base_url: str | None) -> type[Provider] | None:
    """The backend that serves an endpoint: its ``kind`` when that names a backend, else the one whose hosted API
    the URL is; None for a plain URL (a self-hosted server, priced by the hour)."""
    _load_entry_points()
    if kind and kind in _REGISTRY:
        return provider_class(kind)
    name = backend_for_url(base_url or "")
    return provider_class(name) if name else None


def secret_env_names() -> tuple[str, ...]:
    """Every environment variable a registered backend keeps credentials in (for redaction)."""
    names: list[str] = []
    for name in provider_names():
        try:
            names.extend(provider_class(name).secret_env)
        except ProviderError:
            continue
    return tuple(dict.fromkeys(names))


def _describe(target: type | str) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    from importlib.metadata import entry_points

    with _lock:
        if _entry_points_loaded:
            return
        for ep in entry_points(group=_ENTRY_POINT_GROUP):
            _REGISTRY.setdefault(ep.name, ep.value)
        _entry_points_loaded = True


def list_stored_jobs(
    *, after: str | None = None, limit: int = 20, store: Any = None
) -> tuple[list[tuple[str, Any]], bool]:
    """Every backend's jobs from the local store, newest first, without a network call: local jobs as their
    provider shows them (interrupted runners detected), hosted ones as last synced. Returns
    ``([(backend, FineTuningJob), ...], has_more)``."""
    from tuneport.jobs.store import Store

    own = store is None
    store = store or Store()
    try:
        rows = store.list_jobs(after=after, limit=limit + 1)
        jobs = []
        for row in rows[:limit]:
            try:
                backend = provider_class(row["backend"])
            except ProviderError:  # a plugin that is not installed here any more: show the job as last stored
                backend = Provider
            jobs.append((row["backend"], backend.job_from_store(row, store)))
        return jobs, len(rows) > limit
    finally:
        if own:
            store.close()
