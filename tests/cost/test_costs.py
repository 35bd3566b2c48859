"""Cost figures: exact decimals, estimate vs actual, break-even arithmetic, the price catalog and its override."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tuneport.cost.catalog import list_hardware, lookup_hardware
from tuneport.cost.figures import hourly_rate
from tuneport.cost.inference import compare_inference, read_serving_throughput
from tuneport.cost.plot import plot_inference
from tuneport.cost.records import record_figure
from tuneport.cost.training import (
    hosted_training_actual,
    hosted_training_estimate,
    local_training_actual,
    local_training_estimate,
    measured_seconds,
    throughput_from_job,
    training_price,
)
from tuneport.errors import SpecError, TuneportError


class _Stats:
    """The fields of DatasetStats that the estimate reads (the real thing is exercised in the CLI tests)."""

    def __init__(self, billed: int, *, model: str = "gpt-4.1-mini", epochs: int = 1) -> None:
        self.model, self.method, self.examples = model, "sft", 10
        self.billed_tokens_per_epoch, self.n_epochs, self.n_epochs_source = billed // epochs, epochs, "given"
        self.billed_tokens, self.encoding, self.exact, self.token_note, self.notes = (
            billed,
            "o200k_base",
            True,
            None,
            [],
        )


def test_hosted_estimate_is_exact_decimal() -> None:
    fig = hosted_training_estimate(_Stats(168_237))
    assert fig.amount == Decimal("0.841185")
    assert isinstance(fig.amount, Decimal)
    assert fig.inputs["price_per_1m_usd"] == Decimal("5.00")
    assert fig.inputs["price_source"] and fig.inputs["price_as_of"]
    d = fig.to_dict()
    assert Decimal(d["amount"]) == Decimal("0.841185")
    assert d["display"] == "$0.84"


def test_hosted_estimate_vs_actual() -> None:
    est = hosted_training_estimate(_Stats(300_000, epochs=3))
    job = {
        "id": "ftjob-1",
        "status": "succeeded",
        "model": "gpt-4.1-mini-2025-04-14",
        "method": {"type": "supervised"},
        "trained_tokens": 297_000,
    }
    actual = hosted_training_actual(job)
    assert est.amount == Decimal("1.5")
    assert actual.amount == Decimal("1.485")
    assert actual.inputs["trained_tokens"] == 297_000
    dpo = hosted_training_actual({**job, "model": "gpt-4.1-2025-04-14", "method": {"type": "dpo"}})
    assert dpo.amount == Decimal("7.425")  # 297,000 x $25 / 1M


def test_hosted_actual_needs_trained_tokens() -> None:
    with pytest.raises(TuneportError, match="no trained_tokens"):
        hosted_training_actual({"id": "ftjob-2", "status": "running", "model": "gpt-4.1-mini"})


def test_unknown_model_lists_known() -> None:
    with pytest.raises(SpecError, match="gpt-4.1-mini-2025-04-14"):
        training_price("llama-3-8b")


def test_local_actual_from_result_json(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text(
        json.dumps({"seconds": 5400.0, "train_seconds": 3600.0, "device": "cuda"})
    )
    job = {
        "id": "ftjob-local",
        "backend": "local",
        "status": "succeeded",
        "trained_tokens": 7_200_000,
        "outputs": {"output_dir": str(tmp_path), "result": {"seconds": 1.0}},
    }
    fig = local_training_actual(job, hourly_rate(hourly="2.50"))
    assert fig.amount == Decimal("3.75")  # 1.5 h x $2.50
    assert fig.inputs["seconds_from"].endswith("result.json")
    assert fig.inputs["tokens_per_second"] == Decimal(2000)
    tps, inputs = throughput_from_job(job)
    assert tps == Decimal(2000) and "train_seconds" in inputs["seconds_kind"]


def test_local_actual_falls_back_to_job_row_and_range() -> None:
    job = {"id": "j", "backend": "local", "status": "succeeded", "outputs": {"result": {"seconds": 360}}}
    fig = local_training_actual(job, hourly_rate("h100", "lambda"))
    # 0.1 h at Lambda's H100 list range (a range: PCIe to SXM), priced at its midpoint
    price = lookup_hardware("h100").prices["lambda"]
    assert price.min < price.max
    tenth = Decimal("0.1")
    assert (fig.low, fig.high, fig.amount) == (price.min * tenth, price.max * tenth, (price.min + price.max) / 2 * tenth)


def test_job_without_measured_seconds() -> None:
    with pytest.raises(TuneportError, match="no measured seconds"):
        measured_seconds({"id": "j", "backend": "local", "status": "running", "outputs": {}})


def test_local_estimate_from_throughput() -> None:
    fig = local_training_estimate(1_800_000, "500", hourly_rate(hourly="3.00", count=2))
    assert fig.inputs["seconds"] == Decimal(3600)
    assert fig.amount == Decimal("6.00")


def test_hourly_rate_errors_list_known() -> None:
    with pytest.raises(SpecError) as err:
        hourly_rate("tpu-v5")
    assert "h100" in str(err.value) and "a100-80gb" in str(err.value)
    with pytest.raises(SpecError) as err:
        hourly_rate("l4", "azure")
    assert "aws" in str(err.value) and "gcp" in str(err.value)
    with pytest.raises(SpecError, match="not both"):
        hourly_rate("h100", hourly="2")
    with pytest.raises(SpecError, match="greater than 0"):
        hourly_rate(hourly="0")


def test_every_gpu_price_has_source_and_valid_range() -> None:
    ids = {h.id for h in list_hardware()}
    assert {"h100", "a100-80gb", "a100-40gb", "l4", "cpu"} <= ids
    for hw in list_hardware():
        assert len(hw.prices) >= 2, hw.id
        for price in hw.prices.values():
            assert price.source.startswith("https://") and price.as_of
            assert Decimal(0) < price.min <= price.max
    assert len(lookup_hardware("h100").prices) >= 4


def test_break_even_hand_computed() -> None:
    # gpt-4.1-mini: $0.80 in, $3.20 out per 1M; 1:1 mix -> $2.00 per 1M; $2/h x 730 h = $1,460 -> 730M tokens.
    c = compare_inference("gpt-4.1-mini", 1000, hourly_rate(hourly="2.00"))
    assert c.blended_per_1m == Decimal("2.00")
    assert c.break_even["tokens_per_month"] == Decimal(730_000_000)
    assert c.always_on_monthly.amount == Decimal(1460)
    assert c.hosted_cost(Decimal(730_000_000)) == c.self_hosted_cost(Decimal(730_000_000))


def test_inference_at_volume_and_replicas() -> None:
    # 10 tokens/s -> 26.28M output tokens/month per replica; 60M output tokens need 3 replicas.
    c = compare_inference(
        "ft:gpt-4.1-nano-2025-04-14:org::abc",
        "10",
        hourly_rate(hourly="1"),
        input_tokens_per_month=100_000_000,
        output_tokens_per_month=60_000_000,
    )
    assert c.hosted.amount == Decimal("68.000")  # 100 x 0.20 + 60 x 0.80
    assert c.self_hosted_replicas == 3
    assert c.self_hosted.amount == Decimal(3 * 730)
    # one replica at full use costs $730 / 26.28M output tokens > hosted: never breaks even
    assert c.break_even["tokens_per_month"] is None and "never" in c.break_even["never_because"]


def test_catalog_override_via_user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "catalog.json"
    user.write_text(json.dumps({
        "models": [{"id": "gpt-4.1-mini-2025-04-14", "aliases": ["gpt-4.1-mini"], "encoding": "o200k_base",
                    "max_example_tokens": 65536, "training_per_1m": {"supervised": "4.00"},
                    "inference_per_1m": {"input": "1", "output": "1"}, "source": "my contract", "as_of": "2026-01-01"}],
        "hardware": {"h100": {"prices": {"mycloud": {"min": "1.50", "max": "1.50", "source": "https://x.example",
                                                     "as_of": "2026-01-01"}}},
                     "b200": {"label": "NVIDIA B200", "prices": {"aws": {"min": "9", "max": "10",
                              "source": "https://y.example", "as_of": "2026-01-01"}}}},
    }))  # fmt: skip
    monkeypatch.setenv("TUNEPORT_CATALOG", str(user))
    fig = hosted_training_estimate(_Stats(1_000_000))
    assert fig.amount == Decimal("4.00") and fig.inputs["price_source"] == "my contract"
    assert hourly_rate("h100", "mycloud").amount == Decimal("1.50")
    assert "aws" in lookup_hardware("h100").prices  # shipped clouds kept
    assert hourly_rate("b200").low == Decimal(9)
    user.write_text(
        json.dumps(
            {"hardware": {"h100": {"prices": {"aws": {"min": "3", "max": "2", "source": "s", "as_of": "d"}}}}}
        )
    )
    import os

    os.utime(user, ns=(1, 1))
    with pytest.raises(SpecError, match="min <= max"):
        lookup_hardware("h100")


def test_plot_is_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    c = compare_inference(
        "gpt-4.1-mini",
        200,
        hourly_rate("l4"),
        input_tokens_per_month=10**8,
        output_tokens_per_month=10**7,
    )
    out = plot_inference(c, tmp_path / "sub" / "cost.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5000


def test_throughput_file(tmp_path: Path) -> None:
    good = tmp_path / "b.json"
    good.write_text(json.dumps({"output_tokens_per_s": 812.5, "model": "tiny-chat"}))
    tps, inputs = read_serving_throughput(good)
    assert tps == Decimal("812.5") and inputs["model"] == "tiny-chat"
    bad = tmp_path / "c.json"
    bad.write_text("{}")
    with pytest.raises(SpecError, match="output_tokens_per_s"):
        read_serving_throughput(bad)


def test_record_figure_in_store() -> None:
    from tuneport.jobs.store import Store

    with Store() as store:
        fig = hosted_training_estimate(_Stats(168_237))
        row = record_figure(store, "train_estimate_hosted", fig)
        assert row["amount"] == Decimal("0.841185")
        assert row["inputs"]["inputs"]["billed_tokens"] == 168_237
        assert row["inputs"]["formula"].startswith("billed_tokens")
