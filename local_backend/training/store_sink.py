"""The trainer's ``on_event`` in a job: its events and checkpoints become rows of the job in the store.

Two things happen on the way:

- the job moves to ``running`` when the trainer announces its first step (loading and checks happen while
  ``queued``);
- a resumed run re-runs the steps its interrupted attempt did after the last checkpoint, with the same losses
  (training is deterministic). Their metrics are already in the job's log, so they are not written a second time:
  a step has one training and one validation metrics event, however often the job was resumed.

Only names relative to the job's folder go into events (``checkpoints/checkpoint-N``): events are served to API
clients. The checkpoint rows keep the absolute folder (the local side resumes and serves from it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tuneport.local_backend.training import jobs as J
from tuneport.local_backend.training.events import step_metrics_key

__all__ = ["StoreSink", "record_event"]


class StoreSink:
    """Stores a run's events; ``resumed_from_step``: the checkpoint step a resumed run starts from."""

    def __init__(
        self, store: Any, job_id: str, fine_tuned_model: str, *, resumed_from_step: int | None = None
    ) -> None:
        self.store, self.job_id, self.fine_tuned_model = store, job_id, fine_tuned_model
        self.started = False
        self.logged: set[tuple[int, str]] = set()
        self.repeated: list[int] = []
        if resumed_from_step is not None:
            for row in store.list_events(job_id, limit=None):
                key = step_metrics_key(dict(row))
                if key is not None and key[0] > resumed_from_step:
                    self.logged.add(key)
        self.resumed_from_step = resumed_from_step

    def __call__(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if not self.started and "total_steps" in data:
            self.started = True
            if self.store.update_job(self.job_id, if_status="queued", status="running") is not None:
                self.store.add_event(self.job_id, "Fine-tuning job started")
        key = step_metrics_key(event)
        if key is not None and key in self.logged:
            if key[0] not in self.repeated:
                self.repeated.append(key[0])
                if len(self.repeated) == 1:
                    self.store.add_event(
                        self.job_id,
                        f"Steps after {self.resumed_from_step} run again from the checkpoint; the metrics the "
                        "interrupted attempt logged for them stay as they are (training is deterministic)",
                    )
            return
        if key is not None:
            self.logged.add(key)
        record_event(self.store, self.job_id, self.fine_tuned_model, event)


def record_event(store: Any, job_id: str, fine_tuned_model: str, event: dict[str, Any]) -> None:
    """Store a trainer event (``fine_tuning.job.event``) or checkpoint (``fine_tuning.job.checkpoint``)."""
    created = int(event.get("created_at") or time.time())
    if event.get("object") == "fine_tuning.job.checkpoint":
        step = int(event["step_number"])
        name = J.checkpoint_model_name(fine_tuned_model, step)
        path = event.get("path")
        store.add_checkpoint(
            job_id, step, metrics=event.get("metrics") or {}, path=path,
            fine_tuned_model_checkpoint=name, created_at=created,
        )  # fmt: skip
        store.add_event(
            job_id,
            f"Checkpoint created at step {step}",
            data={
                "step_number": step,
                "checkpoint": name,
                "path": f"{Path(path).parent.name}/{Path(path).name}" if path else None,
                "epoch": event.get("epoch"),
            },
            created_at=created,
        )
        return
    level = event.get("level", "info")
    kind = event.get("type") or "message"
    store.add_event(
        job_id,
        str(event.get("message", "")),
        level=level if level in ("info", "warn", "error") else "info",
        type=kind if kind in ("message", "metrics") else "message",
        data=event.get("data"),
        created_at=created,
    )
