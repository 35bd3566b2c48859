"""When hosted models stop: each backend's shutdown and training deadlines, days left, and the one-line notice.

Why a module of its own: OpenAI's fine-tuned models retire with their base models, and a person with fine-tunes on
a hosted service needs to know, before the date, which of them stop and when, so they can move them
(``tuneport import``) and keep the evidence of how well they did (``tuneport eval record``). The dates are data,
each with its ``source`` and ``as_of``, in the backends' catalogs (``resources/{backend}_models.json``):

- OpenAI: ``retirements.models[id].shutdown`` (the model and every fine-tune of it stop answering) and
  ``wind_down.no_new_jobs_from`` (no new fine-tuning jobs for anyone);
- Azure OpenAI and others: each model's ``training_until`` (no new jobs after) and ``deployments_until`` (its
  fine-tunes' deployments stop), from the ``models`` list.

A backend without dates in its catalog simply has none: nothing here names a backend.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, TextIO

from tuneport.cost.catalog import base_model_of, lookup_model, provider_catalog, wind_down
from tuneport.errors import ProviderError, SpecError
from tuneport.providers.registry import provider_class

if TYPE_CHECKING:
    from tuneport.providers.base import Provider

__all__ = [
    "Deadline",
    "deadlines_for",
    "shutdown_of",
    "days_left",
    "retired_problem",
    "retiring_notice",
    "warn_retiring",
    "warn_if_retiring",
    "WARN_WITHIN_DAYS",
]

#: a model this close to its shutdown (or its backend to its last training day) is mentioned on stderr
WARN_WITHIN_DAYS = 60
_NEXT_STEPS = "move it with `tuneport import {backend} JOB_ID` and keep its scores with `tuneport eval record`"


@dataclass(frozen=True)
class Deadline:
    """One date after which something stops: ``kind`` is ``shutdown`` (the model stops answering) or ``training``
    (no new fine-tuning jobs)."""

    backend: str
    model: str
    kind: str
    date: dt.date
    source: str
    as_of: str
    note: str = ""

    def days_left(self, today: dt.date | None = None) -> int:
        return days_left(self.date, today)

    def to_dict(self, today: dt.date | None = None) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "kind": self.kind, "date": self.date.isoformat(),
                "days_left": self.days_left(today), "source": self.source, "as_of": self.as_of,
                "note": self.note}  # fmt: skip


def days_left(date: dt.date, today: dt.date | None = None) -> int:
    """Whole days from ``today`` (default: the local date) to ``date``; negative once it has passed."""
    return (date - (today or dt.date.today())).days


def _date(value: Any, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise SpecError(
            f"{where}: {value!r} is not a date", hint="Dates in the catalog are YYYY-MM-DD."
        ) from None


@lru_cache(maxsize=8)
def _backend_catalog(backend: str) -> dict[str, Any] | None:
    """The shipped ``resources/{backend}_models.json``, or None when the backend ships no catalog."""
    try:
        text = resources.files("tuneport").joinpath(f"resources/{backend}_models.json").read_text("utf-8")
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text)


def _model_entries(backend: str) -> dict[str, dict[str, Any]]:
    """A backend's model entries by id (its user-catalog overrides included), with their aliases."""
    if _backend_catalog(backend) is None:
        return {}
    try:
        return dict(provider_catalog(backend).get("models", {}))
    except (FileNotFoundError, OSError):
        return {}


def deadlines_for(model: str, backend: str) -> list[Deadline]:
    """Every known deadline for ``model`` (a base id, alias or ``ft:`` id) on ``backend``, earliest first."""
    found: list[Deadline] = []
    base = base_model_of(model)
    shipped = _backend_catalog(backend) or {}
    retirements = shipped.get("retirements") or {}
    if retirements:  # OpenAI's shape: dated shutdowns by model id, plus the wind-down of training itself
        info = lookup_model(base)
        ids = {base, info.id} if info else {base}
        facts = wind_down()
        retirements = facts.get("retirements") or retirements
        for model_id, entry in (retirements.get("models") or {}).items():
            if model_id in ids or model_id.startswith(f"{base}-"):
                found.append(Deadline(backend, model_id, "shutdown",
                                      _date(entry["shutdown"], f"{backend} retirements.{model_id}"),
                                      str(retirements.get("source", "")), str(retirements.get("as_of", "")),
                                      "the model and every fine-tune of it stop answering"))  # fmt: skip
        if facts.get("no_new_jobs_from") and (info is not None or found):
            found.append(Deadline(backend, base, "training", _date(facts["no_new_jobs_from"], "wind_down"),
                                  str(facts.get("source", "")), str(facts.get("as_of", "")),
                                  "no new fine-tuning jobs for anyone"))  # fmt: skip
    for model_id, entry in _model_entries(backend).items():
        if base != model_id and base not in entry.get("aliases", ()):
            continue
        source, as_of = str(entry.get("source", "")), str(entry.get("as_of", ""))
        if entry.get("training_until"):
            found.append(Deadline(backend, model_id, "training",
                                  _date(entry["training_until"], f"{backend} {model_id}.training_until"),
                                  source, as_of, "no new fine-tuning jobs on it"))  # fmt: skip
        if entry.get("deployments_until"):
            found.append(Deadline(backend, model_id, "shutdown",
                                  _date(entry["deployments_until"], f"{backend} {model_id}.deployments_until"),
                                  source, as_of, "deployments of its fine-tunes stop"))  # fmt: skip
    return sorted(found, key=lambda d: d.date)


def shutdown_of(model: str, backend: str) -> Deadline | None:
    """The date ``model`` (or a fine-tune of it) stops answering on ``backend``; None when none is known."""
    return next((d for d in deadlines_for(model, backend) if d.kind == "shutdown"), None)


def retired_problem(model: str, backend: str, *, label: str, today: dt.date | None = None) -> str | None:
    """Why a new job on ``model`` cannot start on ``backend`` any more (a passed shutdown or last training day),
    or None. Used to refuse a spec before any upload or paid job."""
    for deadline in deadlines_for(model, backend):
        if deadline.days_left(today) <= 0:
            what = "was shut down" if deadline.kind == "shutdown" else "stopped taking fine-tuning jobs"
            return (f'model: "{model}" {what} on {label} on {deadline.date.isoformat()} '
                    f"({deadline.note}; {deadline.source}, as of {deadline.as_of})")  # fmt: skip
    return None


def retiring_notice(model: str, backend: str, *, label: str, today: dt.date | None = None) -> str | None:
    """The one line to show when ``model`` meets deadlines on ``backend`` within :data:`WARN_WITHIN_DAYS` (every
    such deadline in that one line: the last training day and the shutdown may both be near)."""
    parts: list[str] = []
    for deadline in deadlines_for(model, backend):
        left = deadline.days_left(today)
        if left > WARN_WITHIN_DAYS:
            continue
        if left > 0:
            stops = "stops answering" if deadline.kind == "shutdown" else "takes no new fine-tuning jobs"
            parts.append(f"{stops} in {left} day{'s' if left != 1 else ''} ({deadline.date.isoformat()})")
        else:
            stops = "stopped answering" if deadline.kind == "shutdown" else "stopped taking fine-tuning jobs"
            parts.append(f"{stops} on {deadline.date.isoformat()}")
    if not parts:
        return None
    return f"note: {model} on {label} {' and '.join(dict.fromkeys(parts))}: {_NEXT_STEPS.format(backend=backend)}."


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_retiring(
    model: str, backend: str, *, label: str, stream: TextIO | None = None, today: dt.date | None = None
) -> bool:
    """Print :func:`retiring_notice` to stderr once per process and base model; True when it printed."""
    key = (backend, base_model_of(model))
    with _warned_lock:
        if key in _warned:
            return False
        notice = retiring_notice(model, backend, label=label, today=today)
        if notice is None:
            return False
        _warned.add(key)
    print(notice, file=stream or sys.stderr)
    return True


def warn_if_retiring(model: str | None, backend: str | type[Provider] | None, *, stream: TextIO | None = None,
                     today: dt.date | None = None) -> bool:  # fmt: skip
    """The hook every command that touches a hosted model goes through (a spec loaded, an endpoint resolved, a
    job shown or imported): :func:`warn_retiring` for ``model`` on ``backend`` (a registered name or Provider
    class). Nothing for a backend that is unknown here or has no dates, and a catalog that cannot be read never
    fails the command it only comments on."""
    if not model or backend is None:
        return False
    try:
        cls = provider_class(backend) if isinstance(backend, str) else backend
    except ProviderError:
        return False
    if not cls.name:
        return False
    try:
        return warn_retiring(model, cls.name, label=cls.label or cls.name, stream=stream, today=today)
    except (SpecError, OSError, ValueError) as exc:
        print(f"note: the {cls.name} catalog's dates cannot be read ({exc}); deadlines not checked",
              file=stream or sys.stderr)  # fmt: skip
        return False
