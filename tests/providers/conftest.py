"""Fixtures for provider tests: a strict fake of OpenAI's API and a provider wired to it with fast retries."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib (no sys.path changes): make this folder's helpers
# (schema.py, fake_openai.py) importable by the tests next to them.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from fake_openai import CANARY_KEY, FakeOpenAI  # noqa: E402

from tuneport.http import RetryPolicy  # noqa: E402
from tuneport.jobs.store import Store  # noqa: E402
from tuneport.providers.openai import OpenAIProvider  # noqa: E402


@pytest.fixture
def waits() -> list[float]:
    """Every back-off the client asked for (instead of sleeping)."""
    return []


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI(api_key=CANARY_KEY)


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "tuneport.db")
    yield s
    s.close()


@pytest.fixture
def provider(
    fake: FakeOpenAI, store: Store, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> OpenAIProvider:
    for name in ("OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    p = OpenAIProvider(
        store=store,
        transport=fake.transport,
        retry=RetryPolicy(
            max_attempts=4, initial_backoff=0.5, max_backoff=4.0, jitter=0.0, sleep=waits.append
        ),
        part_size=64 * 1024,
        files_api_limit=256 * 1024,
        poll_interval=0.0,
    )
    yield p
    p.close()
