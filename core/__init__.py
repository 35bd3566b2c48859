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
    "JobSpec": "tuneport.spec.jobspec",
    "LocalSettings": "tuneport.spec.jobspec",
    "SpecProblem": "tuneport.spec.jobspec",
    "load_spec": "tuneport.spec.jobspec",
    "spec_hash": "tuneport.spec.jobspec",
    "LocalTrainingPlan": "tuneport.spec.mapping",
    "check_spec": "tuneport.spec.mapping",
    "resolve_local_hyperparameters": "tuneport.spec.mapping",
    "to_openai_create_body": "tuneport.spec.mapping",
    # providers and the OpenAI object shapes every backend uses
    "Provider": "tuneport.providers.base",
    "Endpoint": "tuneport.providers.base",
    "get_provider": "tuneport.providers.registry",
    "register_provider": "tuneport.providers.registry",
    "OpenAIProvider": "tuneport.providers.openai",
    "LocalProvider": "tuneport.providers.local",
    "FileObject": "tuneport.jobs.objects",
    "FineTuningJob": "tuneport.jobs.objects",
    "FineTuningJobEvent": "tuneport.jobs.objects",
    "FineTuningJobCheckpoint": "tuneport.jobs.objects",
    # local training and the built-in model
    "TrainConfig": "tuneport.local_backend.training.train_config",
    "TrainResult": "tuneport.local_backend.training.trainer",
    "train": "tuneport.local_backend.training.trainer",
    "ensure_tiny_model": "tuneport.fixtures.tiny_model",
    "resolve_model": "tuneport.models.resolve",
    # serving
    "start_server": "tuneport.local_backend.serving.serve",
    "ServeError": "tuneport.local_backend.serving.serve",
    # inference and endpoints
    "InferenceClient": "tuneport.endpoints.client",
    "ChatResult": "tuneport.endpoints.client",
    "ChatEndpoint": "tuneport.endpoints.client",
    "resolve_endpoint": "tuneport.endpoints.client",
    "register_job_endpoint": "tuneport.endpoints.registry",
    # evaluation, statistics, reports, costs
    "make_grader": "tuneport.evaluation.graders",
    "GradeResult": "tuneport.evaluation.graders",
    "compare_paired": "tuneport.evaluation.stats",
    "PairedComparison": "tuneport.evaluation.stats",
    "wilson_interval": "tuneport.evaluation.stats",
    "mcnemar_exact": "tuneport.evaluation.stats",
    "paired_bootstrap_ci": "tuneport.evaluation.stats",
    "render_report": "tuneport.report.render",
    "run_eval": "tuneport.evaluation.runner",
    "load_run": "tuneport.evaluation.runner",
    "record_endpoint": "tuneport.evaluation.runner",
    "EvalSpec": "tuneport.evaluation.spec",
    "load_eval_spec": "tuneport.evaluation.spec",
    "run_quickstart": "tuneport.quickstart",
    "Figure": "tuneport.cost.figures",
    "hosted_training_estimate": "tuneport.cost.training",
    "hosted_training_actual": "tuneport.cost.training",
    "local_training_actual": "tuneport.cost.training",
    "local_training_estimate": "tuneport.cost.training",
    "compare_inference": "tuneport.cost.inference",
    "import_openai_job": "tuneport.jobs.importer",
    # data
    "validate_file": "tuneport.data.validate",
    "ValidationReport": "tuneport.data.validate",
    "Finding": "tuneport.data.validate",
    "dataset_stats": "tuneport.data.validate",
    "DatasetStats": "tuneport.data.stats",
    "count_tokens": "tuneport.data.tokens",
    "split_file": "tuneport.data.split",
    "SplitResult": "tuneport.data.split",
    "find_leakage": "tuneport.data.leakage",
    "LeakageReport": "tuneport.data.leakage",
    # store
    "Store": "tuneport.jobs.store",
    "open_store": "tuneport.jobs.store",
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
    from tuneport.cost.figures import Figure  # noqa: F401
    from tuneport.cost.inference import compare_inference  # noqa: F401
    from tuneport.cost.training import (  # noqa: F401
        hosted_training_actual,
        hosted_training_estimate,
        local_training_actual,
        local_training_estimate,
    )
    from tuneport.data.leakage import LeakageReport, find_leakage  # noqa: F401
    from tuneport.data.split import SplitResult, split_file  # noqa: F401
    from tuneport.data.stats import DatasetStats  # noqa: F401
    from tuneport.data.tokens import count_tokens  # noqa: F401
    from tuneport.data.validate import Finding, ValidationReport, dataset_stats, validate_file  # noqa: F401
    from tuneport.endpoints.client import ChatEndpoint, ChatResult, InferenceClient, resolve_endpoint  # noqa: F401
    from tuneport.endpoints.registry import register_job_endpoint  # noqa: F401
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
    from tuneport.evaluation.graders import GradeResult, make_grader  # noqa: F401
    from tuneport.evaluation.runner import load_run, record_endpoint, run_eval  # noqa: F401
    from tuneport.evaluation.spec import EvalSpec, load_eval_spec  # noqa: F401
    from tuneport.evaluation.stats import (  # noqa: F401
        PairedComparison,
        compare_paired,
        mcnemar_exact,
        paired_bootstrap_ci,
        wilson_interval,
    )
    from tuneport.fixtures.tiny_model import ensure_tiny_model  # noqa: F401
    from tuneport.jobs.importer import import_openai_job  # noqa: F401
    from tuneport.jobs.objects import FileObject, FineTuningJob, FineTuningJobCheckpoint, FineTuningJobEvent  # noqa: F401
    from tuneport.jobs.store import Store, open_store  # noqa: F401
    from tuneport.local_backend.serving.serve import ServeError, start_server  # noqa: F401
    from tuneport.local_backend.training.train_config import TrainConfig  # noqa: F401
    from tuneport.local_backend.training.trainer import TrainResult, train  # noqa: F401
    from tuneport.models.resolve import resolve_model  # noqa: F401
    from tuneport.paths import home_dir  # noqa: F401
    from tuneport.providers.base import Endpoint, Provider  # noqa: F401
    from tuneport.providers.local import LocalProvider  # noqa: F401
    from tuneport.providers.openai import OpenAIProvider  # noqa: F401
    from tuneport.providers.registry import get_provider, register_provider  # noqa: F401
    from tuneport.quickstart import run_quickstart  # noqa: F401
    from tuneport.report.render import render_report  # noqa: F401
    from tuneport.spec.jobspec import JobSpec, LocalSettings, SpecProblem, load_spec, spec_hash  # noqa: F401
    from tuneport.spec.mapping import (  # noqa: F401
        LocalTrainingPlan,
        check_spec,
        resolve_local_hyperparameters,
        to_openai_create_body,
    )
