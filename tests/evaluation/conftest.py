"""What the evaluation tests share: the fake eval server (``server``, defined in ``_eval_support`` so the CLI
tests use the same one), a store of the test's own, and the scripted held-out dataset."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from _eval_support import eval_server, running_eval_server, write_dataset  # noqa: F401

from tuneport.jobs.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "db.sqlite") as s:
        yield s


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "heldout.jsonl")
