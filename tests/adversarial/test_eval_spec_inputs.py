"""An eval spec is read with the same bounds as a job spec: nesting, alias bombs and duplicate keys are spec
errors naming the file, never a RecursionError, a hang or a silently dropped key (issue 13 item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneport.errors import SpecError
from tuneport.evaluation.spec import load_eval_spec


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eval.yaml"
    path.write_text(text)
    return path


def test_deeply_nested_yaml_is_a_spec_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "dataset: d.jsonl\nendpoints: " + "[" * 500 + "]" * 500 + "\n")
    with pytest.raises(SpecError) as info:
        load_eval_spec(path)
    assert str(path) in str(info.value) and "nest" in str(info.value)


def test_deeply_nested_json_is_a_spec_error(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"dataset": "d.jsonl", "endpoints": ' + "[" * 1000 + "]" * 1000 + "}")
    with pytest.raises(SpecError) as info:
        load_eval_spec(path)
    assert str(path) in str(info.value)


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = _write(tmp_path, "\n".join(lines) + "\ndataset: d.jsonl\nendpoints: [*a8]\n")
    with pytest.raises(SpecError) as info:
        load_eval_spec(path)
    assert str(path) in str(info.value)


def test_a_duplicate_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "dataset: a.jsonl\ndataset: b.jsonl\nendpoints: [x]\n")
    with pytest.raises(SpecError) as info:
        load_eval_spec(path)
    assert "duplicate" in str(info.value) and "dataset" in str(info.value)
