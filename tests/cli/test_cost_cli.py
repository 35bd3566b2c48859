"""`tuneport cost ...`: --json shapes, recorded figures, and clear errors."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuneport.cli.cost import cost
from tuneport.cost.catalog import lookup_hardware
from tuneport.errors import SpecError, StoreError, TuneportError
from tuneport.jobs.store import Store


def _run(*args: str):
    return CliRunner().invoke(cost, list(args), catch_exceptions=False)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": f"Answer number {i}."}]} for i in range(20)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_json_hosted_and_local(dataset: Path) -> None:
    result = _run("train", str(dataset), "--model", "gpt-4.1-mini", "--epochs", "2",
                  "--tokens-per-second", "100", "--hourly", "3.60", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    hosted, local = out["hosted"], out["local"]
    billed = hosted["inputs"]["billed_tokens"]
    assert hosted["inputs"]["n_epochs"] == 2 and billed > 0
    assert Decimal(hosted["amount"]) == Decimal(billed) * Decimal("5.00") / Decimal(1_000_000)
    # billed tokens / 100 tok/s seconds at $3.60/h = $0.001 per second
    assert Decimal(local["amount"]) == Decimal(billed) / 100 * Decimal("0.001")
    assert out["validation"]["errors"] == 0 and len(out["dataset_sha256"]) == 64
    rows = Store().list_costs()
    assert [r["kind"] for r in rows] == ["train_estimate_hosted", "train_estimate_local"]
    assert [r["id"] for r in rows] == out["recorded_cost_ids"]
    assert rows[0]["dataset_sha256"] == out["dataset_sha256"]


def test_train_unknown_model_without_local(dataset: Path) -> None:
    with pytest.raises(SpecError, match="known: .*gpt-4.1-mini"):
        _run("train", str(dataset), "--model", "mistral-7b")


def _local_job(store: Store, tmp_path: Path, *, seconds: float | None, device: str = "cpu") -> None:
    outputs: dict = {"output_dir": str(tmp_path)}
    if seconds is not None:
        (tmp_path / "result.json").write_text(json.dumps({"seconds": seconds, "train_seconds": seconds / 2,
                                                          "device": device}))  # fmt: skip
    store.insert_job("ftjob-loc", backend="local", status="succeeded" if seconds else "running", model="tiny-chat",
                     trained_tokens=9000 if seconds else None, outputs=outputs)  # fmt: skip


def test_job_local_cpu_default_and_gpu(tmp_path: Path) -> None:
    _local_job(Store(), tmp_path, seconds=7200.0)
    out = json.loads(_run("job", "ftjob-loc", "--json").output)
    assert out["cost"]["inputs"]["hourly"]["hardware"] == "cpu"
    assert Decimal(out["cost"]["low"]) == Decimal("0.134")  # 2 h x GCP e2-standard-2 $0.067
    out = json.loads(_run("job", "ftjob-loc", "--gpu", "h100", "--cloud", "lambda", "--json").output)
    lam = lookup_hardware("h100").prices["lambda"]
    assert Decimal(out["cost"]["amount"]) == 2 * (lam.min + lam.max) / 2  # 2 h x midpoint of Lambda's range
    assert Decimal(out["cost"]["inputs"]["tokens_per_second"]) == Decimal("2.5")
    assert [r["kind"] for r in Store().list_costs(job_id="ftjob-loc")] == ["train_actual_local"] * 2


def test_job_without_measured_seconds(tmp_path: Path) -> None:
    _local_job(Store(), tmp_path, seconds=None)
    with pytest.raises(TuneportError, match="no measured seconds"):
        _run("job", "ftjob-loc", "--hourly", "1")


def test_job_unknown_gpu_and_cloud(tmp_path: Path) -> None:
    _local_job(Store(), tmp_path, seconds=60.0, device="cuda")
    with pytest.raises(SpecError, match="say which hardware"):
        _run("job", "ftjob-loc")
    with pytest.raises(SpecError, match="known hardware: h100"):
        _run("job", "ftjob-loc", "--gpu", "v100")
    with pytest.raises(SpecError, match="clouds with l4 prices: " + ", ".join(sorted(lookup_hardware("l4").prices))):
        _run("job", "ftjob-loc", "--gpu", "l4", "--cloud", "azure")
    with pytest.raises(StoreError, match="no job 'nope'"):
        _run("job", "nope")


def test_job_hosted() -> None:
    Store().insert_job("ftjob-oai", backend="openai", status="succeeded", model="gpt-4o-mini-2024-07-18",
                       method={"type": "supervised"}, trained_tokens=1_000_000)  # fmt: skip
    out = json.loads(_run("job", "ftjob-oai", "--json").output)
    assert out["cost"]["amount"] == "3.00" and out["job"]["backend"] == "openai"
    with pytest.raises(SpecError, match="local jobs only"):
        _run("job", "ftjob-oai", "--gpu", "h100")


def test_inference_json_and_plot(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"output_tokens_per_s": 1000}))
    png = tmp_path / "cost.png"
    try:
        import matplotlib  # noqa: F401

        plot = ("--plot", str(png))
    except ImportError:  # the plot is optional (the `report` extra); the figures are not
        plot = ()
    result = _run("inference", "--model", "gpt-4.1-mini", "--throughput-file", str(bench), "--hourly", "2",
                  "--input-tokens-per-month", "300000000", "--output-tokens-per-month", "100000000",
                  *plot, "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    # mix 3:1 -> blended $1.40/1M; $1,460 / $1.40 per 1M
    assert Decimal(out["blended_hosted_per_1m_usd"]) == Decimal("1.4")
    assert Decimal(out["break_even"]["tokens_per_month"]).quantize(Decimal(1)) == Decimal(1_042_857_143)
    assert Decimal(out["hosted_monthly"]["amount"]) == Decimal("560")
    assert Decimal(out["self_hosted_monthly"]["amount"]) == Decimal("1460")
    assert out["throughput"]["from"] == str(bench)
    if plot:
        assert out["plot"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"
    assert len(out["recorded_cost_ids"]) == 2


def test_inference_needs_one_throughput() -> None:
    with pytest.raises(SpecError, match="exactly one"):
        _run("inference", "--model", "gpt-4.1-mini", "--gpu", "h100")


def test_catalog_json_and_text() -> None:
    out = json.loads(_run("catalog", "--json").output)
    assert {m["id"] for m in out["models"]} >= {"gpt-4.1-mini-2025-04-14"}
    assert out["wind_down"]["no_new_jobs_from"] == "2027-01-06"
    for hw in out["hardware"]:
        for price in hw["prices"].values():
            assert price["source"] and price["as_of"]
    text = _run("catalog").output
    assert "h100" in text and "as of" in text
