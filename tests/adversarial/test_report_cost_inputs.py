"""Issue 13 items 6 (report) and 8: hostile numbers for ``tuneport cost`` and hostile nesting for ``tuneport report``.

Before the fixes, ``--hourly 1e30`` or ``--tokens-per-second 1e-30`` ended in a ``decimal.InvalidOperation``
traceback, and a report JSON nested 1000 levels deep in a ``RecursionError`` traceback. Each is now a clear error
(exit code of its error class, the option or file named, what is accepted); and within the accepted ranges the
cost maths cannot raise at all (checked with hypothesis over the ranges, ends included).
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_TESTS), str(_TESTS / "cli")]

from _cli import tp  # noqa: E402
from _report_fixture import build_run  # noqa: E402

from tuneport.cost import money  # noqa: E402
from tuneport.cost.figures import hourly_rate  # noqa: E402
from tuneport.cost.inference import compare_inference  # noqa: E402
from tuneport.cost.training import local_training_actual, local_training_estimate  # noqa: E402
from tuneport.errors import EXIT_CODES, EvaluationError, SpecError  # noqa: E402
from tuneport.report.render import render_report  # noqa: E402

SPEC_EXIT = EXIT_CODES["SpecError"]
EVAL_EXIT = EXIT_CODES["EvaluationError"]
MODEL = "gpt-4.1-mini"


def _clear_error(code: int, err: str, expected_code: int, *needles: str) -> None:
    assert code == expected_code, err
    assert "Traceback" not in err and "InvalidOperation" not in err and "RecursionError" not in err, err
    for needle in needles:
        assert needle in err, err


# ---------------------------------------------------------------------------------------------- item 8: cost


@pytest.mark.parametrize(
    ("option", "value", "others", "needles"),
    [
        (
            "--hourly",
            "1e30",
            ["--tokens-per-second", "300"],
            ["--hourly", "0.0001 and 1,000,000 USD per hour"],
        ),
        (
            "--hourly",
            "1e-30",
            ["--tokens-per-second", "300"],
            ["--hourly", "0.0001 and 1,000,000 USD per hour"],
        ),
        ("--hourly", "inf", ["--tokens-per-second", "300"], ["--hourly must be a finite number"]),
        ("--hourly", "nan", ["--tokens-per-second", "300"], ["--hourly must be a finite number"]),
        ("--hourly", "-2", ["--tokens-per-second", "300"], ["--hourly must be greater than 0"]),
        (
            "--tokens-per-second",
            "1e-30",
            ["--hourly", "2"],
            ["--tokens-per-second", "0.001 and 1,000,000,000"],
        ),
        (
            "--tokens-per-second",
            "1e30",
            ["--gpu", "h100"],
            ["--tokens-per-second", "0.001 and 1,000,000,000"],
        ),
        ("--tokens-per-second", "-inf", ["--gpu", "h100"], ["--tokens-per-second must be a finite number"]),
        ("--tokens-per-second", "NaN", ["--gpu", "h100"], ["--tokens-per-second must be a finite number"]),
    ],
)
def test_cost_inference_refuses_numbers_out_of_range(
    capsys: pytest.CaptureFixture, option: str, value: str, others: list[str], needles: list[str]
) -> None:
    code, _, err = tp(capsys, "cost", "inference", "--model", MODEL, option, value, *others,
                      "--output-tokens-per-month", "1000", "--no-record")  # fmt: skip
    _clear_error(code, err, SPEC_EXIT, *needles)


def test_cost_train_refuses_a_vanishing_throughput(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    row = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
    data.write_text((json.dumps(row) + "\n") * 2)
    code, _, err = tp(capsys, "cost", "train", str(data), "--model", MODEL, "--tokens-per-second", "1e-30",
                      "--hourly", "2", "--no-record")  # fmt: skip
    _clear_error(code, err, SPEC_EXIT, "--tokens-per-second", "between 0.001 and")
    code, _, err = tp(
        capsys, "cost", "train", str(data), "--model", MODEL, "--epochs", "10" * 15, "--no-record"
    )
    assert code == 2 and "--epochs" in err and "1<=x<=50" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--gpus", str(10**30)),
        ("--output-tokens-per-month", str(10**30)),
        ("--input-tokens-per-month", str(10**30)),
    ],
)
def test_cost_inference_refuses_huge_counts(capsys: pytest.CaptureFixture, option: str, value: str) -> None:
    code, _, err = tp(capsys, "cost", "inference", "--model", MODEL, "--tokens-per-second", "300", "--gpu", "h100",
                      option, value, "--no-record")  # fmt: skip
    assert code == 2 and option in err and "is not in the range" in err and "Traceback" not in err


def test_cost_job_refuses_corrupt_measured_seconds(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """A result.json that says 0 or 1e300 seconds would divide by zero or price a geological era."""
    from tuneport.jobs.store import Store

    (tmp_path / "result.json").write_text(
        json.dumps({"seconds": 1e300, "train_seconds": 0.0, "device": "cpu"})
    )
    with Store() as store:
        store.insert_job("ftjob-bad", backend="local", status="succeeded", model="tiny-chat",
                         trained_tokens=9000, outputs={"output_dir": str(tmp_path)})  # fmt: skip
    code, _, err = tp(capsys, "cost", "job", "ftjob-bad", "--hourly", "1", "--no-record")
    _clear_error(
        code, err, SPEC_EXIT, "seconds in", "result.json", "between 0.000001 and 10,000,000,000 seconds"
    )


def test_user_catalog_prices_out_of_range_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneport.cost.catalog import list_hardware, lookup_model

    catalog = tmp_path / "catalog.json"
    model = {"id": "my-model", "encoding": "o200k_base", "max_example_tokens": 1000, "source": "me",
             "as_of": "2026-01-01", "inference_per_1m": {"input": "NaN", "output": "1"}}  # fmt: skip
    catalog.write_text(json.dumps({"models": [model]}))
    monkeypatch.setenv("TUNEPORT_CATALOG", str(catalog))
    with pytest.raises(
        SpecError, match=r"catalog.json: catalog entry 'my-model': inference_per_1m.input must be"
    ):
        lookup_model("my-model")
    hw = {"h100": {"prices": {"aws": {"min": "1", "max": "1e30", "source": "me", "as_of": "2026-01-01"}}}}
    catalog.write_text(json.dumps({"hardware": hw}))
    with pytest.raises(SpecError, match=r"hardware.h100.prices.aws: max must be at most 1,000,000"):
        list_hardware()


_tps = st.decimals(min_value=money.TOKENS_PER_SECOND.low, max_value=money.TOKENS_PER_SECOND.high, places=3)
_hourly = st.decimals(min_value=money.HOURLY_USD.low, max_value=money.HOURLY_USD.high, places=4)
_tokens = st.integers(min_value=0, max_value=money.MAX_TOKENS_PER_MONTH)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(tps=_tps, hourly=_hourly, count=st.integers(1, money.MAX_ACCELERATORS), inp=_tokens, cached=_tokens,
       out=_tokens)  # fmt: skip
def test_cost_maths_cannot_raise_within_the_accepted_ranges(
    tps: Decimal, hourly: Decimal, count: int, inp: int, cached: int, out: int
) -> None:
    rate = hourly_rate(hourly=hourly, count=count)
    if inp + cached + out:
        comparison = compare_inference(MODEL, tps, rate, input_tokens_per_month=inp,
                                       cached_input_tokens_per_month=cached, output_tokens_per_month=out)  # fmt: skip
    else:
        comparison = compare_inference(MODEL, tps, rate)
    json.dumps(comparison.to_dict())
    for figure in (comparison.hosted, comparison.self_hosted, comparison.always_on_monthly):
        if figure is not None:
            assert figure.amount.is_finite() and figure.display().startswith("$")
    estimate = local_training_estimate(inp, tps, rate)
    assert estimate.amount.is_finite() and estimate.display().startswith("$")


@pytest.mark.parametrize("seconds", [money.SECONDS.low, money.SECONDS.high])
@pytest.mark.parametrize("hourly", [money.HOURLY_USD.low, money.HOURLY_USD.high])
def test_local_actual_at_the_ends_of_the_ranges(seconds: Decimal, hourly: Decimal) -> None:
    job = {"id": "j", "trained_tokens": 10**12, "outputs": {"result": {"seconds": str(seconds),
           "train_seconds": str(seconds), "device": "cpu"}}}  # fmt: skip
    figure = local_training_actual(job, hourly_rate(hourly=hourly, count=money.MAX_ACCELERATORS))
    assert figure.display().startswith("$") and json.dumps(figure.to_dict())


def test_money_displays_any_finite_amount() -> None:
    assert money.money(Decimal("7.3e32")) == "$730,000,000,000,000,000,000,000,000,000,000.00"
    assert money.money(Decimal("1e-30")) == "$0.000000"
    assert money.money(Decimal("NaN")) == "n/a"


# --------------------------------------------------------------------------------------------- item 6: report


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_report_of_a_json_nested_1000_deep_names_the_file(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 1000 + "]" * 1000)
    code, _, err = tp(capsys, "report", str(path), "-o", str(tmp_path / "out"))
    _clear_error(code, err, EVAL_EXIT, str(path), "nests lists/objects too deeply")
    assert not (tmp_path / "out").exists()


def test_report_of_a_run_with_a_deep_reference_names_file_and_place(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """Parseable (300 levels) but deeper than the renderers should recurse: refused before anything is written."""
    run = build_run(n_items=4)
    run["items"][2]["reference"] = _nested(300)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    code, _, err = tp(capsys, "report", str(path), "-o", str(tmp_path / "out"))
    _clear_error(code, err, EVAL_EXIT, str(path), "more than 100 levels deep", "items[2].reference")
    assert not (tmp_path / "out").exists()


def test_render_report_refuses_a_deep_run_given_directly(tmp_path: Path) -> None:
    run = build_run(n_items=3)
    run["items"][0]["results"]["base"]["output"] = {"x": _nested(2000)}
    with pytest.raises(
        EvaluationError, match=r"the evaluation run nests .* \(at items\[0\].results.base.output.x"
    ):
        render_report(run, tmp_path / "out")
    with pytest.raises(EvaluationError, match="the job events nests"):
        render_report(build_run(n_items=3), tmp_path / "out", job_events={"j": [{"data": _nested(500)}]})


def test_report_renders_a_reference_nested_up_to_the_bound(tmp_path: Path) -> None:
    """The bound leaves room: a reference 90 levels deep (the run adds its own few) renders in every format."""
    run = build_run(n_items=3)
    run["items"][1]["reference"] = _nested(90)
    written = render_report(run, tmp_path / "out", formats=("md", "html", "json"))
    assert json.loads(written["json"].read_text())["run"]["items"][1]["reference"] == _nested(90)
    assert written["md"].stat().st_size > 0 and "leaf" in written["html"].read_text()  # HTML shows every item
