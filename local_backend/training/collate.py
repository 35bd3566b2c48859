"""Batching: padding-free rows (examples concatenated, positions restarting) or padding to the longest.

Why padding-free: on chat data with long-tailed lengths, padded batches are mostly padding (measured 40-42% real
tokens), and every pad token costs a full forward and backward. Concatenating the examples of a batch into one
row removes that waste while keeping the same examples in the same step, so the loss curve is the padded one's
(unlike fixed-size bin packing, which regroups examples).

Correctness rests on the model building a block-diagonal mask from ``position_ids`` that restart at 0 for each
example. transformers does that only when no ``attention_mask`` is passed *and* no KV cache exists: a model with
``config.use_cache=True`` creates a cache in ``forward`` and then silently lets examples attend to each other.
The trainer turns the cache off on every model it trains (see :func:`tuneport.local_backend.training.trainer.disable_cache`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tuneport.local_backend.training.chat_data import IGNORE_INDEX, PreferenceExample, RenderedExample

__all__ = [
    "PackedCollator",
    "PaddingCollator",
    "PreferenceCollator",
    "pad_efficiency",
]


def _ids_labels(example: Any) -> tuple[list[int], list[int]]:
    if isinstance(example, RenderedExample):
        return example.input_ids, example.labels
    return list(example["input_ids"]), list(example["labels"])


def pad_efficiency(lengths: Sequence[int], batch_size: int) -> float:
    """Share of real tokens when consecutive batches of ``lengths`` are padded to their longest."""
    real = padded = 0
    for i in range(0, len(lengths), batch_size):
        chunk = lengths[i : i + batch_size]
        real += sum(chunk)
        padded += max(chunk) * len(chunk)
    return real / padded if padded else 1.0


@dataclass
class PackedCollator:
    """All examples of a batch in one row; ``position_ids`` restart per example; no attention mask.

    The first label of every example is ignored so the last token of one example is never trained to predict the
    first token of the next. ``seq_index`` (token -> example number) is added when ``with_seq_index`` is set
    (DPO needs per-sequence sums); plain causal-LM training leaves it out so the model sees only what it accepts.
    """

    with_seq_index: bool = False

    def __call__(self, examples: Sequence[Any]) -> dict[str, Any]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        seq_index: list[int] = []
        for k, example in enumerate(examples):
            e_ids, e_labels = _ids_labels(example)
            ids.extend(e_ids)
            labels.append(IGNORE_INDEX)
            labels.extend(e_labels[1:])
            positions.extend(range(len(e_ids)))
            seq_index.extend([k] * len(e_ids))
        batch = {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
        }
        if self.with_seq_index:
            batch["seq_index"] = torch.tensor([seq_index], dtype=torch.long)
        return batch


@dataclass
class PaddingCollator:
    """Right-pad to the longest example of the batch, with an attention mask (the classic batching)."""

    pad_token_id: int
    with_seq_index: bool = False
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: Sequence[Any]) -> dict[str, Any]:
        import torch

        pairs = [_ids_labels(e) for e in examples]
        longest = max(len(i) for i, _ in pairs)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        ids = torch.full((len(pairs), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(pairs), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(pairs), longest), dtype=torch.long)
        seq_index = torch.full((len(pairs), longest), -1, dtype=torch.long)
        for row, (e_ids, e_labels) in enumerate(pairs):
            n = len(e_ids)
            ids[row, :n] = torch.tensor(e_ids, dtype=torch.long)
            labels[row, :n] = torch.tensor(e_labels, dtype=torch.long)
            labels[row, 0] = IGNORE_INDEX
            mask[row, :n] = 1
            seq_index[row, :n] = row
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if self.with_seq_index:
            batch["seq_index"] = seq_index
        return batch


@dataclass
class PreferenceCollator:
    """DPO batches: the chosen sequences of the batch, then the rejected ones, in one forward.

    ``n_pairs`` tells the loss where chosen ends; ``seq_index`` maps each token to its sequence (-1 for pads).
    """

    packed: bool
    pad_token_id: int = 0

    def __call__(self, pairs: Sequence[PreferenceExample]) -> dict[str, Any]:
        import torch

        sequences = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        inner = (
            PackedCollator(with_seq_index=True) if self.packed else PaddingCollator(self.pad_token_id, True)
        )
        batch = inner(sequences)
        batch["n_pairs"] = torch.tensor(len(pairs), dtype=torch.long)
        return batch
