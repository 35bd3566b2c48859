"""The report's costs and its opening verdict: per-endpoint cost per 1,000 items with its interval, n/a with the
run's reason, the judge in the totals, the ROI line and payback (hand-computed), no raw JSON or long floats."""

from __future__ import annotations

import copy
import json
import math
import re
from decimal import Decimal
from pathlib import Path

import pytest
from _report_fixture import build_costs, build_run

from tuneport.errors import EvaluationError
from tuneport.report.costs import DEFAULT_MONTHLY_REQUESTS, per_item_costs
from tuneport.report.format import flat_rows, readable
from tuneport.report.json_file import load_report_json
from tuneport.report.model import build_report_model
from tuneport.report.render import render_report

PRICE_IN, PRICE_OUT = Decimal("0.40"), Decimal("1.60")  # $/1M tokens of the hosted base
HOURLY = Decimal("0.096")  # $/hour of the machine behind the fine-tune


def costed_run() -> dict:
    """The fixture run with real cost figures: ``base`` priced per token (long prompts: instructions and
    examples), ``tuned`` (a fine-tune with a job) self-hosted at $/hour with short prompts, and a pairwise judge."""
    run = copy.deepcopy(build_run())
    for item in run["items"]:
        i = item["index"]
        item["results"]["base"]["usage"] = {"prompt_tokens": 400 + i % 3, "completion_tokens": 20 + i % 4}
        item["results"]["tuned"]["usage"] = {"prompt_tokens": 40, "completion_tokens": 18 + i % 2}
    for name in ("base", "tuned"):
        good = [it["results"][name] for it in run["items"] if not it["results"][name]["error"]]
        prompt = sum(r["usage"]["prompt_tokens"] for r in good)
        completion = sum(r["usage"]["completion_tokens"] for r in good)
        run["summary"][name]["n_answered"] = len(good)
        run["summary"][name]["tokens"] = {"prompt": prompt, "completion": completion,
                                          "per_item": {"prompt": prompt / len(good), "completion": completion / len(good)}}  # fmt: skip
        if name == "base":
            per_item = (Decimal(prompt) * PRICE_IN + Decimal(completion) * PRICE_OUT) / Decimal(1_000_000) / len(good)
            inputs = {"method": "tokens x catalog price", "backend": "openai", "model": "gpt-4.1-mini-2025-04-14",
                      "input_per_1m": str(PRICE_IN), "output_per_1m": str(PRICE_OUT), "prompt_tokens": prompt,
                      "completion_tokens": completion, "items": len(good), "source": "https://openai.com/api/pricing",
                      "as_of": "2026-11-01", "note": "catalog price of the base model"}  # fmt: skip
        else:
            wall = Decimal("3.5")
            timed = sum(1 for r in good if not r["cached"])  # cached answers were not asked: not timed
            per_item = HOURLY * wall / Decimal(3600) / timed
            inputs = {"method": "hourly price x measured wall time", "hourly_usd": str(HOURLY), "wall_s": str(wall),
                      "requests": timed, "concurrency": 8}  # fmt: skip
        run["summary"][name]["cost"] = {"per_item": str(per_item), "per_1000": str(per_item * 1000),
                                        "currency": "USD", "inputs": inputs}  # fmt: skip
    run["pairwise"] = [{
        "a": "base", "b": "tuned", "grader": "pref", "judge": {"name": "openai:gpt-4.1", "model": "gpt-4.1"},
        "excluded": {"no_answer": 1, "judge_failed": 0},
        "summary": {"n": 39, "wins_a": 5, "wins_b": 25, "ties": 9, "win_rate_b": 0.756, "p_value": 0.0003, "winner": "b"},
        "items": [], "usage": {"requests": 78, "priced": 78, "prompt_tokens": 31_200, "completion_tokens": 780},
        "cost": {"total": "0.01872", "currency": "USD", "inputs": {"method": "tokens x catalog price"}},
    }]  # fmt: skip
    return run


def training_figure(amount: str = "0.50") -> dict:
    return {"label": "local training actual (ftjob-local-abc123)", "amount": amount, "currency": "USD",
            "kind": "train_actual_local", "formula": "seconds / 3600 x hourly_usd",
            "inputs": {"seconds": 1800, "hourly_usd": "1.00", "tokens_per_second": 14431.918405876936,
                       "hourly": {"per_accelerator_hour": [{"cloud": "aws", "min": "0.0832", "max": "0.1",
                                                            "source": "https://aws.amazon.com/ec2/pricing/"}]}}}  # fmt: skip


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("costed")
    return render_report(costed_run(), out, costs=[*build_costs(), training_figure()], monthly_requests=50_000)


def test_each_endpoint_is_priced_its_own_way_with_an_interval_around_its_mean() -> None:
    run = costed_run()
    model = build_report_model(run, costs=[training_figure()])
    rows = {r["endpoint"]: r for r in model["cost_view"]["endpoints"]}
    base, tuned = rows["base"], rows["tuned"]
    assert base["billed"] == "per token" and tuned["billed"] == "per hour (self-hosted)"
    assert base["per_1000"] == Decimal(run["summary"]["base"]["cost"]["per_1000"])
    # The interval is centred on the figure the run reported: the mean of the per-item costs.
    for name, row in rows.items():
        per_item = per_item_costs(run["summary"][name]["cost"], [it["results"][name] for it in run["items"]])
        assert math.isclose(sum(per_item) / len(per_item) * 1000, float(row["per_1000"]), rel_tol=1e-9)
        assert row["low"] < float(row["per_1000"]) < row["high"]
    assert base["prices"] == "$0.40 input / $1.60 output per 1M tokens (gpt-4.1-mini-2025-04-14)"
    timed = run["summary"]["tuned"]["cost"]["inputs"]["requests"]
    assert tuned["prices"] == f"$0.096 per hour x 3.5 s measured for {timed} requests"


def test_roi_line_and_payback_are_hand_computed() -> None:
    model = build_report_model(costed_run(), costs=[training_figure("0.50")], monthly_requests=50_000)
    (line,) = model["cost_view"]["roi"]
    answered = [it for it in costed_run()["items"] if not it["results"]["base"]["error"]]
    base_prompt = sum(400 + it["index"] % 3 for it in answered) / len(answered)
    assert math.isclose(line["saved_per_request"], base_prompt - 40)
    # saved tokens x 50,000 requests x $0.40 / 1M
    expected_month = Decimal(repr((base_prompt - 40) * 50_000)) * PRICE_IN / Decimal(1_000_000)
    assert line["monthly_usd"] == expected_month
    assert math.isclose(float(line["payback_months"]), 0.50 / float(expected_month))
    sentence = line["sentence"]
    assert sentence.startswith(f"tuned saves {base_prompt - 40:,.0f} prompt tokens per request against base")
    assert "at 50,000 requests a month" in sentence and f"= ${expected_month:,.2f} a month saved" in sentence
    assert "training cost $0.50 is paid back in" in sentence


def test_roi_without_a_recorded_training_cost_says_how_to_get_one() -> None:
    (line,) = build_report_model(costed_run())["cost_view"]["roi"]
    assert line["payback_months"] is None
    assert "payback n/a (no training cost recorded for its job: `tuneport cost job JOB` records it)" in line["sentence"]
    assert DEFAULT_MONTHLY_REQUESTS == 100_000 and "at 100,000 requests a month" in line["sentence"]


def test_an_unpriced_endpoint_shows_the_runs_reason_never_a_price() -> None:
    run = costed_run()
    run["summary"]["base"]["cost"] = {"per_item": None, "per_1000": None, "currency": "USD",
                                      "inputs": {"note": "n/a (no catalog inference price for my-base-model)"}}  # fmt: skip
    model = build_report_model(run)
    base = next(r for r in model["cost_view"]["endpoints"] if r["endpoint"] == "base")
    assert base["per_1000_text"] == "n/a" and base["interval_text"] == "n/a"
    assert base["reason"] == "n/a (no catalog inference price for my-base-model)"
    (line,) = model["cost_view"]["roi"]
    assert line["monthly_usd"] is None and "$ n/a" in line["sentence"]
    assert any(v.endswith("; $0.00 vs n/a per 1,000 items") or "vs n/a per 1,000 items" in v for v in model["verdicts"])


def test_the_judge_is_in_the_totals() -> None:
    model = build_report_model(costed_run())
    view = model["cost_view"]
    (judge,) = view["judges"]
    assert judge["total"] == Decimal("0.01872") and judge["requests"] == 78
    endpoint_prompt = sum(r["prompt_tokens"] for r in view["endpoints"])
    assert view["totals"]["prompt_tokens"] == endpoint_prompt + 31_200
    spent = sum(r["per_item"] * r["answered"] for r in view["endpoints"]) + Decimal("0.01872")
    assert view["totals"]["amount"] == spent and view["totals"]["judge_included"]


def test_report_opens_with_the_verdict_and_its_prices(written: dict[str, Path]) -> None:
    md = written["md"].read_text("utf-8")
    assert md.split("\n## ")[1].startswith("Verdict\n")
    verdicts = md.split("## Verdict\n\n")[1].split("\n\n")[0].splitlines()
    assert len(verdicts) == 3  # two paired comparisons and the judged pair
    assert re.match(r"- tuned beats base on category: \+\d+ points.*, p = [\d.e-]+ \(n = \d+\); \$[\d.]+ vs \$[\d.]+ "
                    r"per 1,000 items$", verdicts[0]), verdicts[0]  # fmt: skip
    html = written["html"].read_text("utf-8")
    assert html.index('id="verdict"') < html.index('id="scores"') < html.index('id="costs"')
    assert json.loads(written["json"].read_text())["report"]["verdicts"][0] == verdicts[0][2:].replace("\\", "")


def test_cost_section_is_readable_no_raw_json_no_long_floats(written: dict[str, Path]) -> None:
    html = written["html"].read_text("utf-8")
    md = written["md"].read_text("utf-8")
    costs_html = html[html.index('id="costs"'):html.index('id="loss"')]
    costs_md = md[md.index("## Costs"):md.index("## Training loss")]
    for text in (costs_html, costs_md):
        assert "{" not in text and "[{" not in text  # no JSON object anywhere a person reads
        assert not re.search(r"\d\.\d{7,}", text), re.search(r"\d\.\d{7,}", text)
        assert "14,431.92" in text and "14431.918405876936" not in text
    assert '<a href="https://openai.com/api/pricing"' in costs_html
    assert '<a href="https://aws.amazon.com/ec2/pricing/"' in costs_html
    assert "hourly / per_accelerator_hour 1 / min: 0.0832" in costs_md.replace("\\_", "_")
    assert "it cost $" in costs_md and "(the judge's included)" in costs_md
    assert "![cost per 1,000 items per endpoint](cost.png)" in costs_md


def test_monthly_volume_is_checked_and_kept_in_the_json(written: dict[str, Path], tmp_path: Path) -> None:
    again = load_report_json(written["json"])
    assert again["monthly_requests"] == 50_000
    rerendered = render_report(out_dir=tmp_path, **again)
    assert rerendered["md"].read_text() == written["md"].read_text()
    for bad in (0, -5, 10**13, 2.5, True):
        with pytest.raises(EvaluationError, match="monthly request volume must be a whole number"):
            build_report_model(costed_run(), monthly_requests=bad)  # type: ignore[arg-type]


def test_readable_values() -> None:
    assert readable(14431.918405876936) == "14,431.92"
    assert readable(0.000123456) == "0.0001235"
    assert readable("0.12000000001") == "0.12" and readable("0.30") == "0.30" and readable("2026-11-01") == "2026-11-01"
    assert readable(True) == "yes" and readable(None) == "n/a" and readable(123450) == "123450"
    assert readable(float("nan")) == "n/a" and readable(["a", 1.5]) == "a, 1.5"
    assert flat_rows({"a": {"b": 1, "c": [{"d": 2}]}, "e": [1, 2]}) == [("a / b", 1), ("a / c 1 / d", 2), ("e", [1, 2])]
