"""The README's main job, end to end through the CLI: build, validate, train, serve, evaluate, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_quickstart_runs_the_whole_loop_and_the_adapter_beats_the_base(tmp_path: Path) -> None:
    out = tmp_path / "report"
    env = {**os.environ, "TUNEPORT_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tuneport.cli.main", "quickstart", "--output", str(out), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    # progress was shown throughout (on stderr under --json)
    for step in ("model", "data", "train", "serve", "eval", "report"):
        assert step in proc.stderr
    head = result["headline"]
    assert {head["a"], head["b"]} == {"tiny-chat", "support-ft"}
    passes = head["pass"]
    fine_tuned = passes["rate_b"] if head["b"] == "support-ft" else passes["rate_a"]
    base = passes["rate_a"] if head["b"] == "support-ft" else passes["rate_b"]
    assert fine_tuned["rate"] > base["rate"] + 0.2
    assert passes["mcnemar"]["p_value"] < 0.01 and passes["mcnemar"]["winner"] == ("b" if head["b"] == "support-ft" else "a")
    for kind in ("md", "html", "json"):
        assert Path(result["report"][kind]).stat().st_size > 1000
    html = Path(result["report"]["html"]).read_text("utf-8")
    assert "support-ft" in html and "McNemar" in html
    report = json.loads(Path(result["report"]["json"]).read_text("utf-8"))
    labels = json.dumps(report)
    assert "local training actual" in labels and "hosted training estimate" in labels
    # The report opens with the verdict, and prices both self-hosted endpoints at this machine's $/hour.
    md = Path(result["report"]["md"]).read_text("utf-8")
    assert md.split("\n## ")[1].startswith("Verdict")
    verdict = next(line for line in md.splitlines() if line.startswith("- support-ft ") and " tiny-chat on json\\_match:" in line)
    assert verdict.startswith("- support-ft beats tiny-chat on json\\_match: +"), verdict
    assert verdict.count("$") == 2 and "n/a per 1,000" not in verdict, verdict
    assert 'id="verdict"' in html and html.index('id="verdict"') < html.index('id="scores"')
