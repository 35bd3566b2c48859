"""Scripted evaluation data shared by the evaluation, judge, report and CLI tests: N support tickets, and
answers that make ``ft`` right on every item and ``base`` wrong on items 0..29.

The ``server`` fixture (one loopback :class:`FakeEvalServer` per test module, reset and taught before each test)
is defined here once: ``tests/evaluation/conftest.py`` and the CLI tests import it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fake_eval_server import FakeEvalServer

from tuneport.http import RetryPolicy

N = 60
NO_RETRY = RetryPolicy(max_attempts=1)
CATEGORIES = ["billing", "bug", "feature"]


def _question(i: int) -> str:
    return f"Ticket {i}: please classify this message about topic {i * 7 % 13}"


def _reference(i: int) -> str:
    return json.dumps({"category": CATEGORIES[i % 3], "priority": "high" if i % 2 else "low"})


def write_dataset(path: Path, n: int = N, *, text: bool = False) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            answer = f"The answer is number {i}." if text else _reference(i)
            messages = [
                {"role": "system", "content": "You classify support tickets."},
                {"role": "user", "content": _question(i)},
                {"role": "assistant", "content": answer},
            ]
            fh.write(json.dumps({"messages": messages}) + "\n")
    return path


def teach(server: FakeEvalServer, n: int = N, *, text: bool = False) -> None:
    """ft answers the reference; base is wrong on items 0..23 (category) and 24..29 (prose)."""
    ft, base = {}, {}
    for i in range(n):
        ref = f"The answer is number {i}." if text else _reference(i)
        ft[_question(i)] = ref
        if text:
            base[_question(i)] = ref if i >= 30 else f"the answer is number {i}"
        elif i < 24:
            wrong = json.loads(ref)
            wrong["category"] = CATEGORIES[(i + 1) % 3]
            base[_question(i)] = json.dumps(wrong)
        elif i < 30:
            base[_question(i)] = "I think this ticket is about billing."
        else:
            base[_question(i)] = ref
    server.answers["ft"] = ft
    server.answers["base"] = base


@pytest.fixture(scope="module", name="_running_eval_server")
def running_eval_server() -> Iterator[FakeEvalServer]:
    server = FakeEvalServer().start()
    yield server
    server.stop()


@pytest.fixture(name="server")
def eval_server(_running_eval_server: FakeEvalServer) -> FakeEvalServer:
    """The module's fake eval server with no requests counted, no failures set, and ``teach``'s answers."""
    _running_eval_server.reset()
    teach(_running_eval_server)
    return _running_eval_server
