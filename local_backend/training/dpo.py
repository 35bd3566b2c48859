"""Direct Preference Optimization on HF Trainer, from OpenAI's preference format.

Why not TRL's DPOTrainer: it brings ``datasets``, ``pandas``, ``pyarrow`` and its own tokenization, which cannot
follow our rendering (the model's chat template, loss on the output messages only) or our padding-free batches.
The DPO loss itself is small and is tested against its formula here (:func:`dpo_loss`), and everything around it
(optimizer, schedule, checkpoints, resume) is the same HF Trainer the SFT path uses.

Reference model: for LoRA the base model itself, i.e. the same network with the adapter disabled (no second copy
in memory); for full fine-tuning a frozen copy made before training.
"""

from __future__ import annotations

import contextlib
from typing import Any

from tuneport.local_backend.training.hf_trainer import make_trainer_class, token_accuracy

__all__ = ["dpo_loss", "sequence_logps", "make_dpo_trainer_class"]


def sequence_logps(logits: Any, labels: Any, seq_index: Any, n_sequences: int) -> Any:
    """Sum of log p(label) over each sequence's labelled tokens (shifted as in causal-LM loss).

    ``seq_index`` gives each position's sequence number (-1 for padding); it works for padded rows (one
    sequence per row) and padding-free rows (many sequences per row) alike.
    """
    import torch

    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    owner = seq_index[:, 1:]
    mask = targets != -100
    safe_targets = targets.masked_fill(~mask, 0)
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    token_logps = token_logps * mask
    owner = owner.masked_fill(~mask, 0)
    out = torch.zeros(n_sequences, dtype=token_logps.dtype, device=token_logps.device)
    return out.index_add(0, owner.reshape(-1), token_logps.reshape(-1))


def dpo_loss(
    policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any, beta: float
) -> tuple[Any, Any, Any]:
    """The sigmoid DPO loss (Rafailov et al. 2023) per pair, and the implicit rewards of both outputs.

    loss = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))
    """
    import torch

    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    losses = -torch.nn.functional.logsigmoid(chosen_rewards - rejected_rewards)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


def make_dpo_trainer_class() -> type:
    """The DPO Trainer subclass, built lazily (transformers imported only when training)."""
    import torch

    base = make_trainer_class()

    class DPOTrainer(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, beta: float, ref_model: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.beta = beta
            self.ref_model = ref_model
            # The loss is a mean over pairs of this micro-batch: let the Trainer divide by accumulation steps.
            self.model_accepts_loss_kwargs = False
            self.loss_is_scaled_for_ga = False
            self._dpo_stats: dict[str, float] = {}
            self._dpo_count = 0
            if ref_model is not None:
                ref_model.to(self.args.device)

        def _reference_context(self, model: Any):
            if self.ref_model is not None:
                return contextlib.nullcontext()
            unwrapped = self.accelerator.unwrap_model(model)
            return unwrapped.disable_adapter()

        def _forward_logps(self, model: Any, inputs: dict[str, Any]) -> tuple[Any, Any, int, Any]:
            n_pairs = int(inputs["n_pairs"])
            feed = {k: v for k, v in inputs.items() if k not in ("labels", "seq_index", "n_pairs")}
            out = model(**feed)
            logps = sequence_logps(out.logits, inputs["labels"], inputs["seq_index"], 2 * n_pairs)
            with torch.no_grad():
                if self.ref_model is not None:
                    ref_logits = self.ref_model(**feed).logits
                else:
                    with self._reference_context(model):
                        ref_logits = model(**feed).logits
                ref_logps = sequence_logps(ref_logits, inputs["labels"], inputs["seq_index"], 2 * n_pairs)
            return logps, ref_logps, n_pairs, out

        def pair_losses(self, model: Any, inputs: dict[str, Any]) -> tuple[Any, dict[str, Any], Any]:
            """Per-pair DPO losses, reward statistics and the policy outputs of one batch."""
            logps, ref_logps, n, out = self._forward_logps(model, inputs)
            losses, chosen_r, rejected_r = dpo_loss(
                logps[:n], logps[n:], ref_logps[:n], ref_logps[n:], self.beta
            )
            stats = {
                "rewards/chosen": chosen_r.mean().item(),
                "rewards/rejected": rejected_r.mean().item(),
                "rewards/accuracies": (chosen_r > rejected_r).float().mean().item(),
                "rewards/margins": (chosen_r - rejected_r).mean().item(),
            }
            return losses, stats, out

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
            losses, stats, out = self.pair_losses(model, inputs)
            for k, v in stats.items():
                self._dpo_stats[k] = self._dpo_stats.get(k, 0.0) + v
            self._dpo_count += 1
            # Token accuracy of the preferred outputs: comparable with the SFT metric.
            with torch.no_grad():
                chosen_labels = inputs["labels"].masked_fill(
                    (inputs["seq_index"] >= int(inputs["n_pairs"])) | (inputs["seq_index"] < 0), -100
                )
                c, t = token_accuracy(out.logits, chosen_labels)
            self._acc_correct += c
            self._acc_total += t
            loss = losses.mean()
            return (loss, out) if return_outputs else loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:  # noqa: D102
            if "loss" in logs and self._dpo_count:
                for k, v in self._dpo_stats.items():
                    logs[k] = v / self._dpo_count
                self._dpo_stats, self._dpo_count = {}, 0
            super().log(logs, start_time)

        def full_evaluation(self, dataset: Any, prefix: str = "eval") -> dict[str, float]:
            model = self.model
            was_training = model.training
            model.eval()
            loss_sum = acc_sum = 0.0
            correct = total = 0
            pairs = 0
            bs = self.args.per_device_eval_batch_size
            try:
                with torch.no_grad():
                    for i in range(0, len(dataset), bs):
                        batch = self._eval_collator([dataset[j] for j in range(i, min(i + bs, len(dataset)))])
                        batch = {k: v.to(self.args.device) for k, v in batch.items()}
                        losses, stats, out = self.pair_losses(model, batch)
                        n = int(batch["n_pairs"])
                        loss_sum += losses.sum().item()
                        acc_sum += stats["rewards/accuracies"] * n
                        pairs += n
                        chosen_labels = batch["labels"].masked_fill(
                            (batch["seq_index"] >= n) | (batch["seq_index"] < 0), -100
                        )
                        c, t = token_accuracy(out.logits, chosen_labels)
                        correct += c
                        total += t
            finally:
                model.train(was_training)
            return {
                f"{prefix}_loss": loss_sum / max(pairs, 1),
                f"{prefix}_mean_token_accuracy": correct / max(total, 1),
                f"{prefix}_rewards_accuracy": acc_sum / max(pairs, 1),
            }

    return DPOTrainer
