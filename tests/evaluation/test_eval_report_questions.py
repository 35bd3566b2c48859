"""The report shows the prompted-base, training-vs-held-out and non-inferiority rows (Markdown and HTML)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _eval_support import NO_RETRY  # noqa: E402
from test_eval_questions import _train_file  # noqa: E402

from tuneport.evaluation.runner import run_eval  # noqa: E402
from tuneport.evaluation.spec import EndpointConfig  # noqa: E402
from tuneport.report.html import render_html  # noqa: E402
from tuneport.report.markdown import render_markdown  # noqa: E402
from tuneport.report.model import build_report_model  # noqa: E402


def test_report_rows_for_the_three_questions(server, data, store, tmp_path):
    train = _train_file(tmp_path, server)
    prompted = EndpointConfig(endpoint=server.url("base"), system="Answer with <JSON>.", shots=2)
    run = run_eval(data, endpoints=[prompted, server.url("ft")], train=train, train_sample=10, store=store,
                   baseline=server.url("ft"), margin=0.05, retry=NO_RETRY)  # fmt: skip
    label = f"{server.url('base')} (prompted: system + 2-shot)"
    model = build_report_model(run)
    md = render_markdown(model, {})
    assert "## Prompted baselines" in md and f"| {label} | system prompt + 2-shot | training lines " in md
    assert f"- {server.url('ft')} beats {label} on json_match: +50 points [" in md
    assert "## Training vs held-out" in md and f"| {server.url('ft')} | json_match | 100% (n = 10) | 100% (n = 60) | 0 pts |" in md
    assert "## Non-inferiority" in md and f"{label} may be worse than {server.url('ft')} by more than 5 points" in md
    page = render_html(model, {})
    assert '<h2 id="prompted">Prompted baselines</h2>' in page and '<h2 id="overfitting">' in page
    assert "Answer with <JSON>" not in page  # nothing unescaped reaches the page
