"""The HF ``Trainer`` both training methods build on: token accuracy in the step logs, exact token-weighted
evaluation over the whole validation file, and the ``TrainingArguments`` every run uses.

SFT trains with :func:`make_trainer_class` as is; DPO (:mod:`tuneport.local_backend.training.dpo`) subclasses it.
Classes are built lazily so that importing this module never imports transformers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tuneport.local_backend.training.train_config import TrainConfig

__all__ = [
    "ListDataset",
    "labelled_positions",
    "make_trainer_class",
    "token_accuracy",
    "training_arguments",
    "printer_callback_cls",
]


class ListDataset:
    """A torch-style map dataset over rendered examples (HF Trainer only needs __len__ and __getitem__)."""

    def __init__(self, examples: list[Any]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Any:
        return self.examples[i]


def token_accuracy(logits: Any, labels: Any) -> tuple[int, int]:
    """Next-token accuracy over labelled positions (shifted like the loss): (correct, total)."""
    preds = logits[..., :-1, :].argmax(-1)
    targets = labels[..., 1:]
    mask = targets != -100
    return int((preds[mask] == targets[mask]).sum().item()), int(mask.sum().item())


def labelled_positions(model: Any, labels: Any) -> Any:
    """The positions whose next token is labelled (in any row), or None where the model can't keep only those.

    The loss only reads the logits that predict a labelled token; the output head and the log-softmax over the
    vocabulary cost as much at every other position (prompts, system turns) for nothing. With a real vocabulary
    (128k-256k tokens) that head is a large share of a small model's compute. Models whose ``forward`` takes
    ``logits_to_keep`` (every causal LM transformers generates) return just those rows; the loss is the same sum
    over the same labelled tokens.
    """
    import inspect

    import torch

    if labels is None or labels.dim() != 2 or labels.shape[1] < 2:
        return None
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(inner, "module", inner)  # DDP
    try:
        takes = "logits_to_keep" in inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - a forward without a signature
        takes = False
    if not takes:
        return None
    keep = torch.nonzero((labels[:, 1:] != -100).any(0)).flatten()
    if keep.numel() == 0:
        return None
    return keep


def make_trainer_class() -> type:
    """The ``TuneportTrainer`` class (HF Trainer + token accuracy + full, token-weighted evaluation)."""
    import torch
    from transformers import Trainer

    class TuneportTrainer(Trainer):
        """HF Trainer + token accuracy in the step logs + exact token-weighted evaluation over the full file."""

        def __init__(self, *args: Any, eval_collator: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._acc_correct = 0
            self._acc_total = 0
            self._eval_collator = eval_collator
            self.tuneport_extra_logs: dict[str, float] = {}

        # -- training loss and metrics
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
            keep = labelled_positions(model, inputs.get("labels"))
            if keep is None:
                loss, outputs = super().compute_loss(
                    model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
                )
                with torch.no_grad():
                    correct, total = token_accuracy(outputs.logits, inputs["labels"])
            else:
                loss, outputs, correct, total = self._labelled_loss(model, inputs, keep, num_items_in_batch)
            self._acc_correct += correct
            self._acc_total += total
            return (loss, outputs) if return_outputs else loss

        def _labelled_loss(self, model, inputs, keep, num_items_in_batch):
            """The loss of transformers' causal-LM loss, from the logits of the labelled positions only."""
            labels = inputs["labels"]
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, logits_to_keep=keep)
            logits = outputs.logits.float()
            targets = labels[:, keep + 1].to(logits.device)
            flat_logits = logits.reshape(-1, logits.shape[-1])
            flat_targets = targets.reshape(-1)
            if num_items_in_batch is None:
                loss = torch.nn.functional.cross_entropy(flat_logits, flat_targets, ignore_index=-100)
            else:
                loss = torch.nn.functional.cross_entropy(
                    flat_logits, flat_targets, ignore_index=-100, reduction="sum"
                )
                if torch.is_tensor(num_items_in_batch):
                    num_items_in_batch = num_items_in_batch.to(loss.device)
                loss = loss / num_items_in_batch
                if self.args.average_tokens_across_devices:
                    loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss does
            with torch.no_grad():
                mask = flat_targets != -100
                correct = int((flat_logits[mask].argmax(-1) == flat_targets[mask]).sum().item())
                total = int(mask.sum().item())
            return loss, outputs, correct, total

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:  # noqa: D102
            if "loss" in logs and self._acc_total:
                logs["train_mean_token_accuracy"] = self._acc_correct / self._acc_total
                self._acc_correct = self._acc_total = 0
            super().log(logs, start_time)

        # -- evaluation over the whole validation file, token-weighted
        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):  # noqa: D102
            dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
            metrics = self.full_evaluation(dataset, metric_key_prefix)
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

        def full_evaluation(self, dataset: Any, prefix: str = "eval") -> dict[str, float]:
            model = self.model
            was_training = model.training
            model.eval()
            loss_sum = 0.0
            correct = total = 0
            device = self.args.device
            bs = self.args.per_device_eval_batch_size
            try:
                with torch.no_grad():
                    for i in range(0, len(dataset), bs):
                        batch = self._eval_collator([dataset[j] for j in range(i, min(i + bs, len(dataset)))])
                        batch = {k: v.to(device) for k, v in batch.items()}
                        labels = batch.pop("labels")
                        logits = model(**batch).logits.float()
                        shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
                        shift_labels = labels[:, 1:].reshape(-1)
                        loss_sum += torch.nn.functional.cross_entropy(
                            shift_logits, shift_labels, ignore_index=-100, reduction="sum"
                        ).item()
                        c, t = token_accuracy(logits, labels)
                        correct += c
                        total += t
            finally:
                model.train(was_training)
            return {
                f"{prefix}_loss": loss_sum / max(total, 1),
                f"{prefix}_mean_token_accuracy": correct / max(total, 1),
            }

    return TuneportTrainer


def training_arguments(
    config: TrainConfig, checkpoints_dir: Path, total_steps: int, device: str, *, has_validation: bool
) -> Any:
    """HF ``TrainingArguments`` for the run: one log per step, checkpoints by steps or epochs, no reporting."""
    from transformers import TrainingArguments

    warmup = math.ceil(total_steps * config.warmup_ratio) if config.warmup_ratio else 0
    return TrainingArguments(
        output_dir=str(checkpoints_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.n_epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=warmup,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        optim="adamw_torch",
        seed=config.seed,
        data_seed=config.seed,
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="epoch" if has_validation else "no",
        save_strategy="steps" if config.save_steps else "epoch",
        save_steps=config.save_steps or 500,
        save_total_limit=config.keep_checkpoints,
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        dataloader_pin_memory=device == "cuda",
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        ddp_find_unused_parameters=False if config.uses_lora else None,
        disable_tqdm=True,
        use_cache=False,
    )


def printer_callback_cls() -> Any:
    """HF's stdout printer, which every run removes (progress goes through events)."""
    from transformers.trainer_callback import PrinterCallback

    return PrinterCallback
