"""Dataset statistics and the training-cost estimate, computed in the same streaming pass as validation
(:func:`tuneport.data.validate.dataset_stats` runs that pass for the statistics alone).

Why histograms: per-example counts (tokens, assistant tokens, messages) are kept as ``{value: how many}`` maps, not
lists. Their size is bounded by the number of distinct values (at most the token limit), not by the number of
examples, so memory stays flat however large the file, and percentiles are still exact.

The epoch rule and the billed-token formula are the ones in OpenAI's cookbook (Chat_finetuning_data_prep): with
``n_epochs="auto"`` OpenAI aims at 3 epochs, raised for small datasets (at least 100 example-passes, at most 25
epochs) and lowered for large ones (at most 25,000 example-passes, at least 1 epoch). Billed tokens are
``sum(min(limit, tokens))`` per epoch times the epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "DatasetStats",
    "Distribution",
    "auto_epochs",
    "TARGET_EPOCHS",
    "MIN_TARGET_EXAMPLES",
    "MAX_TARGET_EXAMPLES",
    "MIN_DEFAULT_EPOCHS",
    "MAX_DEFAULT_EPOCHS",
    "DEFAULT_EXAMPLE_TOKEN_LIMIT",
]

TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25

# The per-example limit of gpt-4o / gpt-4.1 fine-tuning, assumed when no model is given.
DEFAULT_EXAMPLE_TOKEN_LIMIT = 65536


def auto_epochs(n_examples: int) -> int:
    """The number of epochs OpenAI picks for ``n_epochs="auto"`` (cookbook rule); 0 for an empty dataset."""
    if n_examples <= 0:
        return 0
    n_epochs = TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        n_epochs = min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    elif n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        n_epochs = max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return n_epochs


@dataclass(frozen=True)
class Distribution:
    """min / median / p90 / max / mean / total of a per-example quantity (exact; percentiles interpolate linearly
    between ranks, like numpy's default, so they match the cookbook's numbers)."""

    min: float
    median: float
    p90: float
    max: float
    mean: float
    total: int

    @classmethod
    def from_histogram(cls, hist: dict[int, int]) -> Distribution:
        n = sum(hist.values())
        if n == 0:
            return cls(0, 0, 0, 0, 0.0, 0)
        items = sorted(hist.items())
        total = sum(v * c for v, c in items)
        return cls(
            min=items[0][0],
            median=_quantile(items, n, 0.5),
            p90=_quantile(items, n, 0.9),
            max=items[-1][0],
            mean=total / n,
            total=total,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "min": self.min,
            "median": self.median,
            "p90": self.p90,
            "max": self.max,
            "mean": round(self.mean, 3),
            "total": self.total,
        }


def _value_at(items: list[tuple[int, int]], rank: int) -> int:
    """The value at 0-based ``rank`` of the sorted multiset described by (value, count) pairs."""
    seen = 0
    for value, count in items:
        seen += count
        if rank < seen:
            return value
    return items[-1][0]


def _quantile(items: list[tuple[int, int]], n: int, q: float) -> float:
    pos = (n - 1) * q
    lo = int(pos)
    frac = pos - lo
    a = _value_at(items, lo)
    if frac == 0:
        return a
    b = _value_at(items, lo + 1)
    result = a + (b - a) * frac
    return int(result) if result == int(result) else round(result, 3)


class StatsAccumulator:
    """Collects per-example numbers during the validation pass (constant memory per distinct value)."""

    __slots__ = (
        "tokens",
        "assistant",
        "messages",
        "n",
        "billed_per_epoch",
        "over_limit",
        "limit",
        "max_over",
    )

    def __init__(self, limit: int) -> None:
        self.tokens: dict[int, int] = {}
        self.assistant: dict[int, int] = {}
        self.messages: dict[int, int] = {}
        self.n = 0
        self.billed_per_epoch = 0
        self.over_limit = 0
        self.limit = limit

    def add(self, n_messages: int, total: int, assistant: int) -> None:
        self.n += 1
        tokens = self.tokens
        tokens[total] = tokens.get(total, 0) + 1
        a = self.assistant
        a[assistant] = a.get(assistant, 0) + 1
        m = self.messages
        m[n_messages] = m.get(n_messages, 0) + 1
        if total > self.limit:
            self.over_limit += 1
            self.billed_per_epoch += self.limit
        else:
            self.billed_per_epoch += total


@dataclass
class DatasetStats:
    """What a dataset contains and what training on it would cost.

    Counts cover the examples without errors (those OpenAI would accept). ``exact`` is False when token counts are
    an estimate (see ``token_note``); every token-derived number (billed tokens, price) inherits it.
    ``estimated_price_usd`` is None when no known OpenAI model was given.
    """

    examples: int
    messages: Distribution
    tokens: Distribution
    assistant_tokens: Distribution
    token_limit: int
    token_limit_source: str
    over_limit: int
    billed_tokens_per_epoch: int
    n_epochs: int
    n_epochs_source: str
    billed_tokens: int
    encoding: str
    exact: bool
    token_note: str | None = None
    model: str | None = None
    method: str = "sft"
    price_per_1m_usd: Decimal | None = None
    estimated_price_usd: Decimal | None = None
    price_source: str | None = None
    price_as_of: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "messages_per_example": self.messages.to_dict(),
            "tokens_per_example": self.tokens.to_dict(),
            "assistant_tokens_per_example": self.assistant_tokens.to_dict(),
            "token_limit": self.token_limit,
            "token_limit_source": self.token_limit_source,
            "examples_over_limit": self.over_limit,
            "billed_tokens_per_epoch": self.billed_tokens_per_epoch,
            "n_epochs": self.n_epochs,
            "n_epochs_source": self.n_epochs_source,
            "billed_tokens": self.billed_tokens,
            "encoding": self.encoding,
            "exact": self.exact,
            "token_note": self.token_note,
            "model": self.model,
            "method": self.method,
            "price_per_1m_usd": str(self.price_per_1m_usd) if self.price_per_1m_usd is not None else None,
            "estimated_price_usd": str(self.estimated_price_usd)
            if self.estimated_price_usd is not None
            else None,
            "price_source": self.price_source,
            "price_as_of": self.price_as_of,
            "notes": list(self.notes),
        }


def build_stats(
    acc: StatsAccumulator,
    *,
    counter_info: dict[str, Any],
    model: str | None,
    model_info: Any,
    method: str,
    limit_source: str,
    n_epochs: int | None = None,
) -> DatasetStats:
    """Turn the accumulated numbers into :class:`DatasetStats`, with the auto epochs and the catalog price."""
    epochs = n_epochs if n_epochs is not None else auto_epochs(acc.n)
    epochs_source = "given" if n_epochs is not None else "auto (OpenAI's rule for n_epochs=auto)"
    billed = acc.billed_per_epoch * epochs
    notes: list[str] = []
    price_per_1m = price = None
    source = as_of = None
    if model_info is not None:
        key = "dpo" if method == "dpo" else "supervised"
        per_1m = model_info.training_per_1m.get(key)
        if per_1m is None:
            notes.append(f"the catalog has no {key} training price for {model_info.id}")
        else:
            price_per_1m = per_1m
            price = (Decimal(billed) * per_1m / Decimal(1_000_000)).quantize(Decimal("0.0001"))
            source, as_of = model_info.source, model_info.as_of
            if not counter_info.get("exact", True):
                notes.append("the price is based on ESTIMATED token counts")
    elif model:
        notes.append(f"no price: {model!r} is not an OpenAI model in the catalog")
    else:
        notes.append("no price: give --model to estimate the training cost")
    if method == "dpo":
        notes.append(
            "DPO tokens count the input once plus both outputs; OpenAI's exact DPO billing may differ"
        )
    return DatasetStats(
        examples=acc.n,
        messages=Distribution.from_histogram(acc.messages),
        tokens=Distribution.from_histogram(acc.tokens),
        assistant_tokens=Distribution.from_histogram(acc.assistant),
        token_limit=acc.limit,
        token_limit_source=limit_source,
        over_limit=acc.over_limit,
        billed_tokens_per_epoch=acc.billed_per_epoch,
        n_epochs=epochs,
        n_epochs_source=epochs_source,
        billed_tokens=billed,
        encoding=counter_info.get("encoding", "?"),
        exact=bool(counter_info.get("exact", False)),
        token_note=counter_info.get("note"),
        model=model,
        method=method,
        price_per_1m_usd=price_per_1m,
        estimated_price_usd=price,
        price_source=source,
        price_as_of=as_of,
        notes=notes,
    )
