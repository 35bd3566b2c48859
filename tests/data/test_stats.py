"""Statistics: exact percentiles, OpenAI's auto epochs, billed tokens and a Decimal price with its source."""

from __future__ import annotations

import json
import statistics
from decimal import Decimal
from pathlib import Path

from tuneport.data.stats import Distribution, auto_epochs
from tuneport.data.tokens import get_counter
from tuneport.data.validate import dataset_stats


def test_auto_epochs_cookbook_rule() -> None:
    assert auto_epochs(0) == 0
    assert auto_epochs(10) == 10  # 100 // 10
    assert auto_epochs(3) == 25  # capped at 25
    assert auto_epochs(34) == 3  # 34 * 3 >= 100
    assert auto_epochs(1000) == 3
    assert auto_epochs(8334) == 2  # 8334 * 3 = 25002 > 25000 -> 25000 // 8334 = 2
    assert auto_epochs(8333) == 3
    assert auto_epochs(9000) == 2
    assert auto_epochs(100_000) == 1


def _numpy_style_quantile(values: list[int], q: float) -> float:
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def test_distribution_percentiles_are_exact() -> None:
    values = [5, 1, 9, 9, 3, 100, 42, 7, 7, 8, 2]
    hist: dict[int, int] = {}
    for v in values:
        hist[v] = hist.get(v, 0) + 1
    d = Distribution.from_histogram(hist)
    assert (d.min, d.max, d.total) == (1, 100, sum(values))
    assert d.median == statistics.median(values)
    assert abs(d.p90 - _numpy_style_quantile(values, 0.9)) < 1e-9
    assert Distribution.from_histogram({}).total == 0


def test_dataset_stats_billed_tokens_and_price(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    rows = []
    for i in range(12):
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": "q " * (i + 1)},
                    {"role": "assistant", "content": "answer " * (2 * i + 1)},
                ]
            }
        )
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = dataset_stats(p, model="gpt-4.1-mini")
    counter = get_counter("gpt-4.1-mini")
    per_example = [counter.count_example(r).total for r in rows]
    assert s.examples == 12 and s.exact and s.encoding == "o200k_base"
    assert s.tokens.total == sum(per_example) and s.tokens.max == max(per_example)
    assert s.messages.median == 2
    assert s.n_epochs == auto_epochs(12) == 8
    assert s.billed_tokens == sum(per_example) * 8
    assert isinstance(s.estimated_price_usd, Decimal)
    assert s.estimated_price_usd == (
        Decimal(s.billed_tokens) * Decimal("5.00") / Decimal(1_000_000)
    ).quantize(Decimal("0.0001"))
    assert s.price_source and s.price_as_of
    # epochs given by the user win
    assert dataset_stats(p, model="gpt-4.1-mini", n_epochs=2).billed_tokens == sum(per_example) * 2


def test_billed_tokens_cap_long_examples_at_the_limit(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(10)
    ]
    rows.append(
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "word " * 17000}]}
    )
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = dataset_stats(p, model="gpt-3.5-turbo")
    assert s.over_limit == 1 and s.token_limit == 16385
    assert s.billed_tokens_per_epoch == s.tokens.total - s.tokens.max + 16385


def test_no_model_no_price_but_a_note(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            )
            + "\n"
            for i in range(10)
        )
    )
    s = dataset_stats(p)
    assert s.estimated_price_usd is None and any("--model" in n for n in s.notes)
    assert "assumed" in s.token_limit_source
