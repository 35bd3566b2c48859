"""The JSON report: the report's inputs (so it can be rendered again) plus the views a script would recompute.

``render_report(**load_report_json(path), out_dir=...)`` renders a report again from its own ``report.json``, or
from the JSON that ``tuneport eval --json`` printed. Reading refuses, with the file's name, anything that is not
such a document, including one nested so deeply that parsing or rendering it would run out of recursion.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuneport.errors import EvaluationError
from tuneport.report.model import MAX_NESTING, check_nesting

__all__ = ["render_json", "load_report_json", "REPORT_JSON_FORMAT"]

REPORT_JSON_FORMAT = "tuneport.report/1"
_FILE_HINT = "Give a run id, or the JSON file that `tuneport eval --json` or `tuneport report` wrote."


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)  # Decimal amounts stay exact as strings


def render_json(
    run: Mapping[str, Any], model: Mapping[str, Any], job_events: Any, costs: Any, monthly_requests: int | None = None
) -> str:
    """The report's inputs (to render it again) plus the derived views a script would otherwise recompute."""
    payload = {
        "format": REPORT_JSON_FORMAT,
        "run": run,
        "job_events": job_events or {},
        "costs": list(costs or []),
        "monthly_requests": monthly_requests,
        "report": {
            "verdicts": model["verdicts"],
            "roi": [{k: v for k, v in line.items()} for line in model["cost_view"]["roi"]],
            "warnings": model["warnings"],
            "disagreements": [{"index": it["index"], "graders": it["disagree_on"]} for it in model["items"] if it["disagree"]],
            "loss_curves": {e["job_id"]: e["curve"] for e in model["loss"]},
        },
    }  # fmt: skip
    return json.dumps(payload, ensure_ascii=False, indent=2, default=_json_default) + "\n"


def load_report_json(path: str | Path) -> dict[str, Any]:
    """Read a run JSON (``tuneport eval --json`` output) or a report JSON back as ``render_report`` arguments:
    ``{"run": ..., "job_events": ..., "costs": ...}``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvaluationError(f"cannot read {p}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise EvaluationError(
            f"{p} is not UTF-8 text (byte {exc.start}: {exc.reason})", hint=_FILE_HINT
        ) from None
    except json.JSONDecodeError as exc:
        raise EvaluationError(
            f"{p} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", hint=_FILE_HINT
        ) from exc
    except RecursionError:  # the parser recurses once per level: only a hostile or broken file gets here
        raise EvaluationError(
            f"{p} nests lists/objects too deeply to read (more than {MAX_NESTING} levels)", hint=_FILE_HINT
        ) from None
    check_nesting(data, str(p))
    if isinstance(data, Mapping) and data.get("format") == REPORT_JSON_FORMAT:
        return {
            "run": data.get("run"),
            "job_events": data.get("job_events") or None,
            "costs": data.get("costs") or None,
            **({"monthly_requests": data["monthly_requests"]} if isinstance(data.get("monthly_requests"), int) else {}),
        }
    return {"run": data, "job_events": None, "costs": None}
