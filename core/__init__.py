"""tuneport: one fine-tuning spec, any backend.

The public API is the names in ``__all__``. They are loaded on first access (PEP 562), so ``import tuneport`` and
``tuneport --help`` stay instant: nothing heavy (pydantic models, tiktoken, torch) is imported until it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tuneport._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "TuneportError": "tuneport.errors",
    "SpecError": "tuneport.errors",
    "DataError": "tuneport.errors",
    "StoreError": "tuneport.errors",
    "ProviderError": "tuneport.errors",
    "AuthenticationError": "tuneport.errors",
    "RateLimitError": "tuneport.errors",
    "QuotaExceededError": "tuneport.errors",
    "TrainingNotAvailableError": "tuneport.errors",
    "APIStatusError": "tuneport.errors",
    "APIConnectionError": "tuneport.errors",
    "ModelNotAvailableError": "tuneport.errors",
    "WaitTimeoutError": "tuneport.errors",
    "NotSupportedError": "tuneport.errors",
    "JobFailedError": "tuneport.errors",
    "InvalidFileError": "tuneport.errors",
    "EvaluationError": "tuneport.errors",
    # paths
    "home_dir": "tuneport.paths",
    # job spec and its mapping to backends
    "JobSpec": "tuneport.spec",
    "LocalSettings": "tuneport.spec",
    "SpecProblem": "tuneport.spec",
    "load_spec": "tuneport.spec",
    "spec_hash": "tuneport.spec",
    "LocalTrainingPlan": "tuneport.mapping",
    "check_spec": "tuneport.mapping",
    "resolve_local_hyperparameters": "tuneport.mapping",
    "to_openai_create_body": "tuneport.mapping",
    # providers and the OpenAI object shapes every backend uses
    "Provider": "tuneport.providers.base",
    "Endpoint": "tuneport.providers.base",
    "get_provider": "tuneport.providers.registry",
    "register_provider": "tuneport.providers.registry",
    "OpenAIProvider": "tuneport.providers.openai",
    "LocalProvider": "tuneport.providers.local",
    "FileObject": "tuneport.objects",
    "FineTuningJob": "tuneport.objects",
    "FineTuningJobEvent": "tuneport.objects",
    "FineTuningJobCheckpoint": "tuneport.objects",
    # local training and the built-in model
    "TrainConfig": "tuneport.local_backend.train_config",
    "TrainResult": "tuneport.local_backend.trainer",
    "train": "tuneport.local_backend.trainer",
    "ensure_tiny_model": "tuneport.fixtures.tiny_model",
    "resolve_model": "tuneport.fixtures.tiny_model",
    # store
    "Store": "tuneport.store",
    "open_store": "tuneport.store",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tuneport' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from tuneport.errors import (  # noqa: F401
        APIConnectionError,
        APIStatusError,
        AuthenticationError,
        DataError,
        EvaluationError,
        InvalidFileError,
        JobFailedError,
        ModelNotAvailableError,
        NotSupportedError,
        ProviderError,
        QuotaExceededError,
        RateLimitError,
        SpecError,
        StoreError,
        TrainingNotAvailableError,
        TuneportError,
        WaitTimeoutError,
    )
    from tuneport.fixtures.tiny_model import ensure_tiny_model, resolve_model  # noqa: F401
    from tuneport.local_backend.train_config import TrainConfig  # noqa: F401
    from tuneport.local_backend.trainer import TrainResult, train  # noqa: F401
    from tuneport.mapping import (  # noqa: F401
        LocalTrainingPlan,
        check_spec,
        resolve_local_hyperparameters,
        to_openai_create_body,
    )
    from tuneport.objects import FileObject, FineTuningJob, FineTuningJobCheckpoint, FineTuningJobEvent  # noqa: F401
    from tuneport.paths import home_dir  # noqa: F401
    from tuneport.providers.base import Endpoint, Provider  # noqa: F401
    from tuneport.providers.local import LocalProvider  # noqa: F401
    from tuneport.providers.openai import OpenAIProvider  # noqa: F401
    from tuneport.providers.registry import get_provider, register_provider  # noqa: F401
    from tuneport.spec import JobSpec, LocalSettings, SpecProblem, load_spec, spec_hash  # noqa: F401
    from tuneport.store import Store, open_store  # noqa: F401
