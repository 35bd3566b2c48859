"""OpenAI-shaped progress objects for local training.

The job runner stores and serves exactly these dicts (adding ``id`` and the job id), so a caller reading events or
checkpoints cannot tell a local job from a hosted one. Only plain values go in: they cross a process boundary as
JSON.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "EventSink",
    "job_event",
    "checkpoint_object",
    "step_metrics_message",
    "step_metrics_key",
    "CHECKPOINT_METRIC_KEYS",
]

EventSink = Callable[[dict[str, Any]], None]

CHECKPOINT_METRIC_KEYS = (
    "step",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)


def job_event(
    message: str, *, level: str = "info", data: dict[str, Any] | None = None, type: str | None = None
) -> dict[str, Any]:
    """A ``fine_tuning.job.event``: ``type`` is "metrics" when ``data`` carries step metrics, else "message"."""
    if level not in ("info", "warn", "error"):
        raise ValueError(f"event level {level!r}")
    event: dict[str, Any] = {
        "object": "fine_tuning.job.event",
        "created_at": int(time.time()),
        "level": level,
        "message": message,
        "type": type or ("metrics" if data and "step" in data else "message"),
    }
    if data is not None:
        event["data"] = data
    return event


_STEP_METRICS = re.compile(r"Step (\d+)/\d+: (training|validation) loss=")


def step_metrics_message(step: int, total_steps: int, kind: str, loss: float) -> str:
    """The message of a per-step metrics event (``kind``: "training" or "validation")."""
    return f"Step {step}/{total_steps}: {kind} loss={loss:.4f}"


def step_metrics_key(event: dict[str, Any]) -> tuple[int, str] | None:
    """(step, "training" | "validation") for a per-step metrics event, None for any other event.

    A resumed run repeats the steps its interrupted attempt ran after the last checkpoint; this key is how the
    runner recognises a step whose metrics are already in the job's log.
    """
    match = _STEP_METRICS.match(str(event.get("message", "")))
    if event.get("type") != "metrics" or match is None:
        return None
    return int(match.group(1)), match.group(2)


def checkpoint_object(step: int, metrics: dict[str, Any], path: str, epoch: float | None) -> dict[str, Any]:
    """A ``fine_tuning.job.checkpoint`` with the local folder that holds it (``path``) for resume and serving.

    ``id`` and ``fine_tuning_job_id`` are left for the runner, which knows the job; ``fine_tuned_model_checkpoint``
    names the checkpoint by step like OpenAI's ``...:ckpt-step-N``.
    """
    clean = {k: metrics.get(k) for k in CHECKPOINT_METRIC_KEYS if metrics.get(k) is not None}
    clean["step"] = step
    return {
        "object": "fine_tuning.job.checkpoint",
        "created_at": int(time.time()),
        "fine_tuned_model_checkpoint": f"ckpt-step-{step}",
        "step_number": step,
        "metrics": clean,
        "path": path,
        "epoch": epoch,
    }
