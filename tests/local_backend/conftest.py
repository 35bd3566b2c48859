"""Shared fixtures for the trainer tests: the tiny-chat model (built once per session) and small data files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

FIXTURE_DATA = Path(__file__).resolve().parents[2] / "fixtures" / "data"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneport.fixtures.tiny_model import build_tiny_model

    return Path(build_tiny_model(tmp_path_factory.mktemp("tiny-chat") / "tiny-chat", seed=0))


@pytest.fixture(scope="session")
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model))


def write_head(src: str, n: int, dest: Path) -> Path:
    """The first ``n`` lines of a fixture data file (tests stay a few seconds each)."""
    lines = (FIXTURE_DATA / src).read_text("utf-8").splitlines()[:n]
    dest.write_text("\n".join(lines) + "\n", "utf-8")
    return dest


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    return {
        "train": write_head("support_train.jsonl", 12, d / "train.jsonl"),
        "val": write_head("support_val.jsonl", 4, d / "val.jsonl"),
        "dpo_train": write_head("support_dpo_train.jsonl", 8, d / "dpo_train.jsonl"),
        "dpo_val": write_head("support_dpo_val.jsonl", 4, d / "dpo_val.jsonl"),
    }


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    return path
