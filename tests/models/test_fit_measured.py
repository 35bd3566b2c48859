"""The fit estimate against a measured peak: a random Llama trained two steps in a fresh process (CPU).

Tolerance: the measured peak RSS growth is within 0.8x-1.4x of the estimate (benchmarks/bench_fit.py measured
0.91-1.08x over five configurations). Outside it the estimate would refuse jobs that fit, or pass jobs that do not.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fit.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_fit", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_estimate_matches_the_measured_peak(tmp_path: Path) -> None:
    from tuneport.fixtures.tiny_model import build_tiny_model

    bench = _bench()
    tiny = build_tiny_model(tmp_path / "tiny")
    model = bench.build_model(tiny, tmp_path / "model", hidden=256, layers=4, inter=704)
    data = bench.write_long_data(tmp_path / "long.jsonl", 16, 700)
    settings = {"batch": 8, "seq": 512}
    estimate = bench.estimate(model, **settings).total
    measured = bench.measure(model, data, tmp_path / "out", steps=2, threads=1, **settings)
    assert 0.8 <= measured / estimate <= 1.4, (
        f"measured {measured / 1e6:.0f} MB, estimated {estimate / 1e6:.0f} MB"
    )
