"""One rank of a multi-process local job (``local.num_processes`` N > 1, launched by the runner through
``python -m torch.distributed.run``): gloo on CPU, NCCL on GPUs.

Only rank 0 writes to the store and the result file; every rank agrees on a stop request through an all-reduce,
so they all stop at the same step (a rank that stops alone would hang the others in a collective). A rank whose
runner (the supervisor) has died stops too.
"""

from __future__ import annotations

import json
import os
import traceback
from typing import Any

from tuneport.jobs.store import Store
from tuneport.local_backend.training import jobs as J
from tuneport.local_backend.training.checkpoints import checkpoint_step
from tuneport.local_backend.training.job_errors import classify_error
from tuneport.local_backend.training.store_sink import StoreSink
from tuneport.local_backend.training.train_config import TrainConfig
from tuneport.local_backend.training.trainer import train
from tuneport.spec.jobspec import JobSpec

__all__ = ["run_worker", "WORKER_RESULT"]

WORKER_RESULT = "worker_result.json"


def run_worker(job_id: str, supervisor: int, resume_from: str | None) -> int:
    """Train this rank; rank 0 records events and writes ``worker_result.json`` (the result or the error)."""
    rank = int(os.environ.get("RANK", "0"))
    folder = J.job_dir(job_id)
    config = TrainConfig(**json.loads((folder / "train_config.json").read_text("utf-8")))
    store = Store() if rank == 0 else None
    sink = _rank_zero_sink(store, job_id, resume_from)

    def should_stop() -> bool:
        import torch
        import torch.distributed as dist

        J.step_delay()
        local = J.read_request(job_id) is not None or not J.pid_alive(supervisor)
        if not (dist.is_available() and dist.is_initialized()):
            return local
        flag = torch.tensor([1 if local else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    try:
        result = train(config, on_event=sink, should_stop=should_stop, resume_from=resume_from)
    except BaseException as exc:
        if rank == 0:
            failure = classify_error(exc)
            if failure.code == "internal_error":
                traceback.print_exc()
            payload = {"error": {"code": failure.code, "message": failure.message, "param": failure.param}}
            (folder / WORKER_RESULT).write_text(json.dumps(payload), "utf-8")
        raise
    if rank == 0:
        tmp = folder / f"{WORKER_RESULT}.tmp"
        tmp.write_text(json.dumps(result.to_dict()), "utf-8")
        os.replace(tmp, folder / WORKER_RESULT)
    return 0


def _rank_zero_sink(store: Any, job_id: str, resume_from: str | None) -> Any:
    """Rank 0 stores events like a one-process run; the other ranks drop theirs."""
    if store is None:
        return lambda _event: None
    row = store.get_job(job_id)
    ftm = (row or {}).get("fine_tuned_model") or ""
    if row is not None:
        spec = JobSpec.from_dict(row["spec"])
        ftm = J.fine_tuned_model_name(spec.model, spec.suffix, job_id)
    step = checkpoint_step(resume_from) if resume_from else None
    return StoreSink(store, job_id, ftm, resumed_from_step=step)
