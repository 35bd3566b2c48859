"""Record and replay: an endpoint's answers stored under a name, served later as ``recorded:NAME`` (so a
hosted fine-tuned model can still be compared after it retires)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneport.endpoints.client import EndpointError
from tuneport.evaluation.asking import Progress
from tuneport.evaluation.collect import _collect
from tuneport.evaluation.spec import EndpointConfig, EvalSpec, SamplingParams, load_items
from tuneport.evaluation.targets import _RECORDING_RUN, RECORDED_PREFIX, _resolve_targets, _run_fingerprint
from tuneport.jobs.store import Store

if TYPE_CHECKING:
    from tuneport.http import RetryPolicy


def record_endpoint(
    endpoint: str,
    dataset: str | Path,
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    system: str | None = None,
    concurrency: int = 8,
    use_cache: bool = True,
    store: Store | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Ask ``endpoint`` every item of ``dataset`` and keep its answers as the recording ``name`` (default: the
    endpoint reference), usable later as ``recorded:NAME``. Recording the same endpoint and data again under the
    same name continues an unfinished recording. Returns {"name", "id" (the run id, under the key ``run_eval``
    uses), "run_id" (the same, kept for scripts), "status", "n_items", "recorded", "errors", "endpoint"}."""
    if endpoint.startswith(RECORDED_PREFIX):
        raise EndpointError(f"{endpoint} is already a recording.", hint="Record a live endpoint.")
    label = name or endpoint
    own = store is None
    store = store or Store()
    try:
        sampling = SamplingParams(**{k: v for k, v in (params or {}).items() if v is not None})
        spec = EvalSpec(dataset=str(dataset), endpoints=[EndpointConfig(endpoint=endpoint, name=label, system=system)],
                        params=sampling, concurrency=concurrency)  # fmt: skip
        (target,) = _resolve_targets(spec, store, None)
        items, sha = load_items(dataset)
        fingerprint = _run_fingerprint(sha, [target], "recording")
        run_id = None
        for run in store.list_eval_runs():
            if run.get("name") == _RECORDING_RUN + label and run.get("spec_hash") == fingerprint:
                run_id = run["id"]
                break
        meta = {"kind": "recording", "recording": label, "base_url": target.base_url, "model": target.model,
                "job_id": target.job_id, "endpoint_kind": target.endpoint_kind, "dataset_path": str(dataset),
                "params": target.params}  # fmt: skip
        if run_id is None:
            run_id = store.create_eval_run(
                name=_RECORDING_RUN + label, status="running", config={"targets": [target.config()]},
                spec_hash=fingerprint, dataset_sha256=sha, endpoints=[label], metadata=meta,
            )["id"]  # fmt: skip
        _collect(store, run_id, [target], items, concurrency=concurrency, use_cache=use_cache, retry=retry,
                 timeout=timeout, progress=progress)  # fmt: skip
        rows = store.list_responses(run_id, endpoint=label)
        errors = sum(1 for r in rows if r["error"] is not None)
        recorded = sum(1 for r in rows if r["error"] is None)
        status = "complete" if recorded == len(items) else "incomplete"
        store.update_eval_run(run_id, status=status, finished_at=int(time.time()))
        return {"name": label, "id": run_id, "run_id": run_id, "status": status, "n_items": len(items), "recorded": recorded,
                "errors": errors, "endpoint": target.describe() | {"kind": "live"},
                "use_as": RECORDED_PREFIX + label}  # fmt: skip
    finally:
        if own:
            store.close()
