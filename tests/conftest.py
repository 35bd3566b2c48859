"""Test isolation: every test gets its own tuneport home and a tiktoken cache of the session's own, so no test
touches (or depends on) a user's state or anything outside the repository.

The tiktoken cache starts empty: tuneport fills it from the copy of tiktoken's files that comes with the install
(bpe-openai), which is the path a fresh clone, offline, takes.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _tiktoken_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiktoken-cache")


@pytest.fixture(autouse=True)
def _tuneport_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _tiktoken_cache: Path) -> Path:
    home = tmp_path / "tuneport-home"
    monkeypatch.setenv("TUNEPORT_HOME", str(home))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(_tiktoken_cache))
    return home
