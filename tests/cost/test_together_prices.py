"""Together's inference prices: base models at their serverless per-token rates (by training or serverless id),
fine-tunes not priced per token (Together bills them by the hour on a dedicated endpoint), every figure dated."""

from __future__ import annotations

import json
from decimal import Decimal

from tuneport.cost.catalog import provider_catalog
from tuneport.providers.together import TogetherProvider

BASE = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


def _entry(model_id: str) -> dict:
    return provider_catalog("together")["models"][model_id]


def test_base_model_priced_at_its_serverless_rates_by_either_id() -> None:
    entry = _entry(BASE)
    by_training_id = TogetherProvider.inference_prices(BASE)
    by_serverless_id = TogetherProvider.inference_prices(entry["serverless_model"])
    assert by_training_id == by_serverless_id and by_training_id is not None
    assert by_training_id.model == entry["serverless_model"]
    assert by_training_id.input_per_1m == Decimal(entry["inference_per_1m"]["input"])
    assert by_training_id.output_per_1m == Decimal(entry["inference_per_1m"]["output"])
    assert by_training_id.source.startswith("https://") and by_training_id.as_of.startswith("2026")
    assert "base model rates" in by_training_id.note and "as transcribed" in by_training_id.note


def test_every_inference_price_is_sourced_dated_and_plausible() -> None:
    priced = 0
    for model in provider_catalog("together")["models"].values():
        serving = model["fine_tuned_serving"]
        assert serving["billing"] == "hourly" and Decimal(serving["hourly_usd"]) > 0
        assert serving["source"].startswith("https://docs.together.ai/") and serving["as_of"]
        if "inference_per_1m" not in model:
            assert TogetherProvider.inference_prices(model["id"]) is None
            continue
        priced += 1
        assert model["inference_source"].startswith("https://") and model["inference_as_of"]
        assert model["serverless_model"] != model["id"]
        for kind in ("input", "output"):
            assert Decimal(0) < Decimal(model["inference_per_1m"][kind]) < Decimal(10)
    assert priced >= 3


def test_fine_tuned_output_name_is_not_priced_per_token() -> None:
    # Together's output names: account/<base model name>-<suffix>-<hash> (as the fake server builds them)
    assert TogetherProvider.inference_prices("user/Meta-Llama-3.1-8B-Instruct-Reference-demo-1a2b3c4d") is None
    assert TogetherProvider.inference_prices("not/a-model") is None


def test_a_user_catalog_overrides_inference_prices(tmp_path, monkeypatch) -> None:
    mine = dict(_entry(BASE), inference_per_1m={"input": "0.10", "output": "0.20"},
                inference_source="https://contract.example", inference_as_of="2026-10-01")  # fmt: skip
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"together": {"models": [mine]}}))
    monkeypatch.setenv("TUNEPORT_CATALOG", str(path))
    prices = TogetherProvider.inference_prices(BASE)
    assert (prices.input_per_1m, prices.output_per_1m) == (Decimal("0.10"), Decimal("0.20"))
    assert prices.source == "https://contract.example" and prices.as_of == "2026-10-01"
