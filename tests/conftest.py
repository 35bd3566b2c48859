"""Test isolation: every test gets its own tuneport home, so no test touches (or depends on) a user's state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_TIKTOKEN_CACHE = Path(__file__).resolve().parents[2] / "shared" / "tiktoken"


@pytest.fixture(autouse=True)
def _tuneport_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "tuneport-home"
    monkeypatch.setenv("TUNEPORT_HOME", str(home))
    if "TIKTOKEN_CACHE_DIR" not in os.environ and _TIKTOKEN_CACHE.is_dir():
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(_TIKTOKEN_CACHE))
    return home
