"""How a run reports: :class:`RunState` collects what the run produced and sends events, and the HF callback
turns Trainer hooks into OpenAI-shaped events, job checkpoints, stop requests and early stopping.

Events name checkpoints relative to the run's folder (``checkpoints/checkpoint-N``): they reach API clients, and a
folder on the server is not theirs to know. The checkpoint objects keep the absolute folder for the local side
(resume, serving), which strips it before answering a client.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuneport.local_backend.training.events import (
    EventSink,
    checkpoint_object,
    job_event,
    step_metrics_message,
)
from tuneport.local_backend.training.train_config import TrainConfig

__all__ = ["RunState", "make_callback", "relative_checkpoint", "CHECKPOINTS_DIR"]

CHECKPOINTS_DIR = "checkpoints"


@dataclass
class RunState:
    """One run's progress as the callback sees it, and the sink its events go to."""

    config: TrainConfig
    on_event: EventSink
    should_stop: Callable[[], bool] | None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    cancelled: bool = False
    stopped_early: bool = False

    def emit(self, message: str, *, level: str = "info", data: dict[str, Any] | None = None) -> None:
        if level == "warn":
            self.warnings.append(message)
        self.on_event(job_event(message, level=level, data=data))


def make_callback(run: RunState) -> Any:
    """The ``TrainerCallback`` that reports ``run`` (built lazily: transformers is imported here)."""
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        """Turns HF Trainer hooks into OpenAI-shaped events; handles cancel and early stopping."""

        def __init__(self) -> None:
            self.last_train: dict[str, float] = {}
            self.last_eval: dict[str, float] = {}
            self.epoch_end_pending = False
            self.best: float | None = None
            self.bad_evals = 0
            self.last_saved_step = -1
            self.announced: set[int] = set()

        def on_train_begin(self, args, state, control, **kwargs):
            run.emit(
                f"Training started: {state.max_steps} steps over {run.config.n_epochs} epoch(s)",
                data={"total_steps": state.max_steps, "resumed_from_step": state.global_step or None},
            )

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" not in logs:
                return
            self.last_train = {
                "train_loss": float(logs["loss"]),
                "train_mean_token_accuracy": logs.get("train_mean_token_accuracy"),
            }
            run.train_losses.append(float(logs["loss"]))
            data = {
                "step": state.global_step,
                "total_steps": state.max_steps,
                "train_loss": float(logs["loss"]),
                "train_mean_token_accuracy": logs.get("train_mean_token_accuracy"),
                "learning_rate": logs.get("learning_rate"),
                "epoch": round(state.epoch or 0.0, 4),
                "trained_tokens": int(state.num_input_tokens_seen),
            }
            for k, v in logs.items():
                if k.startswith("rewards/") or k.startswith("dpo/"):
                    data[k] = v
            run.emit(
                step_metrics_message(state.global_step, state.max_steps, "training", logs["loss"]), data=data
            )

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            metrics = metrics or {}
            if "eval_loss" not in metrics:
                return
            self.last_eval = {
                "valid_loss": metrics["eval_loss"],
                "valid_mean_token_accuracy": metrics.get("eval_mean_token_accuracy"),
                "full_valid_loss": metrics["eval_loss"],
                "full_valid_mean_token_accuracy": metrics.get("eval_mean_token_accuracy"),
            }
            run.emit(
                step_metrics_message(state.global_step, state.max_steps, "validation", metrics["eval_loss"]),
                data={
                    "step": state.global_step,
                    "total_steps": state.max_steps,
                    **self.last_train,
                    **self.last_eval,
                },
            )
            if self.epoch_end_pending and self.last_saved_step == state.global_step:
                self._announce(args, state)
            self._early_stopping(metrics["eval_loss"], control)

        def _early_stopping(self, eval_loss: float, control: Any) -> None:
            patience = run.config.early_stopping_patience
            if patience is None:
                return
            if self.best is None or eval_loss < self.best - run.config.early_stopping_min_delta:
                self.best = eval_loss
                self.bad_evals = 0
                return
            self.bad_evals += 1
            if self.bad_evals >= patience:
                run.stopped_early = True
                control.should_training_stop = True
                control.should_save = True
                run.emit(
                    f"Early stopping: validation loss has not improved for {patience} evaluation(s) "
                    f"(best {self.best:.4f})"
                )

        def on_epoch_end(self, args, state, control, **kwargs):
            # Every epoch ends with a checkpoint, whatever the step-based policy is. If this step was saved
            # already (a step checkpoint, or a stop request), the job checkpoint is announced once its epoch-end
            # evaluation is known rather than saving the same folder twice.
            self.epoch_end_pending = True
            if self.last_saved_step != state.global_step:
                control.should_save = True
            elif args.eval_strategy == "no" or run.config.validation_file is None:
                self._announce(args, state)

        def on_step_end(self, args, state, control, **kwargs):
            if run.should_stop is not None and run.should_stop():
                run.cancelled = True
                control.should_save = True
                control.should_training_stop = True
                run.emit("Stop requested: saving a checkpoint, then stopping")

        def on_save(self, args, state, control, **kwargs):
            self.last_saved_step = state.global_step
            run.emit(
                f"Checkpoint saved at step {state.global_step}: {relative_checkpoint(state.global_step)}"
            )
            if self.epoch_end_pending:
                self._announce(args, state)

        def _announce(self, args, state) -> None:
            self.epoch_end_pending = False
            if state.global_step in self.announced:
                return
            self.announced.add(state.global_step)
            ckpt = checkpoint_object(
                state.global_step,
                {**self.last_train, **self.last_eval},
                os.path.join(args.output_dir, f"checkpoint-{state.global_step}"),
                round(state.epoch or 0.0, 4),
            )
            run.checkpoints.append(ckpt)
            run.on_event(ckpt)

    return EventCallback()


def relative_checkpoint(step: int) -> str:
    """A checkpoint's folder as events name it: relative to the run's folder."""
    return f"{CHECKPOINTS_DIR}/checkpoint-{step}"
