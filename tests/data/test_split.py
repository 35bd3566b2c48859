"""Deterministic, stratified, group-aware splits: what lands where, byte for byte, and the errors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuneport.cli.data_split import split_cmd
from tuneport.data.split import allocate, split_file
from tuneport.errors import DataError


def chat(user: str, assistant: str = "ok", **extra) -> dict:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
        **extra,
    }


def write_jsonl(path: Path, items: list) -> Path:
    lines = [item if isinstance(item, str) else json.dumps(item, ensure_ascii=False) for item in items]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def lines_of(path: Path | str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def labelled(tmp_path: Path, counts: dict[str, int], name: str = "data.jsonl") -> Path:
    items = []
    for label, count in counts.items():
        items += [chat(f"{label} question {i}", metadata={"label": label}) for i in range(count)]
    random.Random(7).shuffle(items)
    return write_jsonl(tmp_path / name, items)


def user_text(line: str) -> str:
    obj = json.loads(line)
    messages = obj["messages"] if "messages" in obj else obj["input"]["messages"]
    return next(m["content"] for m in messages if m["role"] == "user")


# ------------------------------------------------------------------------------------------ determinism + bytes


def test_same_seed_gives_byte_identical_outputs(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}") for i in range(300)])
    a = split_file(data, seed=5, train_out=tmp_path / "a.train", val_out=tmp_path / "a.val")
    b = split_file(data, seed=5, train_out=tmp_path / "b.train", val_out=tmp_path / "b.val")
    assert (tmp_path / "a.train").read_bytes() == (tmp_path / "b.train").read_bytes()
    assert (tmp_path / "a.val").read_bytes() == (tmp_path / "b.val").read_bytes()
    assert a.to_dict()["val"]["items"] == b.to_dict()["val"]["items"] == 30

    other = split_file(data, seed=6, train_out=tmp_path / "c.train", val_out=tmp_path / "c.val")
    assert other.val == 30
    assert set(lines_of(tmp_path / "c.val")) != set(lines_of(tmp_path / "a.val"))


def test_split_does_not_depend_on_python_hash_seed(tmp_path):
    data = write_jsonl(
        tmp_path / "d.jsonl", [chat(f"q{i}", metadata={"label": "ab"[i % 2]}) for i in range(60)]
    )
    code = (
        "import sys; from tuneport.data.split import split_file; "
        "split_file(sys.argv[1], seed=3, stratify='metadata.label', train_out=sys.argv[2], val_out=sys.argv[3])"
    )
    vals = []
    for hash_seed in ("0", "12345"):
        out = tmp_path / hash_seed
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [sys.executable, "-c", code, str(data), str(out) + ".train", str(out) + ".val"],
            env=env,
            check=True,
        )
        vals.append(Path(str(out) + ".val").read_bytes())
    assert vals[0] == vals[1] and vals[0]


def test_lines_are_copied_unchanged_and_in_order(tmp_path):
    odd_lines = [
        '{"messages": [{"role": "user", "content": "caf\\u00e9"}],   "note": 1}',
        '{"messages":[{"role":"user","content":"naïve — “quoted”"}],"z":[1,2.50,true]}',
    ] + [json.dumps(chat(f"item {i}"), indent=None, separators=(" , ", " : ")) for i in range(40)]
    data = tmp_path / "d.jsonl"
    data.write_bytes("\n".join(odd_lines).encode() + b"\n")
    result = split_file(data, val_fraction=0.25, seed=1)
    train, val = lines_of(result.train_path), lines_of(result.val_path)
    assert Counter(train + val) == Counter(odd_lines)
    # each output keeps the input order
    position = {line: i for i, line in enumerate(odd_lines)}
    assert [position[line] for line in train] == sorted(position[line] for line in train)
    assert [position[line] for line in val] == sorted(position[line] for line in val)


def test_crlf_bom_and_missing_final_newline(tmp_path):
    lines = [json.dumps(chat(f"q{i}")) for i in range(10)]
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode())  # BOM, CRLF, no final newline
    result = split_file(data, val_fraction=0.2, seed=0)
    train_bytes = Path(result.train_path).read_bytes()
    val_bytes = Path(result.val_path).read_bytes()
    assert not train_bytes.startswith(b"\xef\xbb\xbf") and not val_bytes.startswith(b"\xef\xbb\xbf")
    assert train_bytes.endswith(b"\n") and val_bytes.endswith(b"\n") and b"\r" not in train_bytes + val_bytes
    assert sorted(lines_of(result.train_path) + lines_of(result.val_path)) == sorted(lines)


def test_reordering_lines_does_not_change_the_validation_set(tmp_path):
    items = [chat(f"question number {i}") for i in range(120)]
    a = write_jsonl(tmp_path / "a.jsonl", items)
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    b = write_jsonl(tmp_path / "b.jsonl", shuffled)
    val_a = set(lines_of(split_file(a, seed=9).val_path))
    val_b = set(lines_of(split_file(b, seed=9).val_path))
    assert val_a == val_b and len(val_a) == 12


# ---------------------------------------------------------------------------------------------- proportions


@pytest.mark.parametrize(
    ("n", "val", "expected"),
    [(200, 0.1, 20), (33, 0.15, 5), (10, 0.01, 1), (10, 0.99, 9), (50, 7, 7), (50, 1, 1), (50, 7.0, 7)],
)
def test_validation_size(tmp_path, n, val, expected):
    data = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}") for i in range(n)])
    result = split_file(data, val_fraction=val, seed=2)
    assert (result.val, result.train, result.total) == (expected, n - expected, n)
    assert len(lines_of(result.val_path)) == expected and len(lines_of(result.train_path)) == n - expected


@pytest.mark.parametrize(
    ("val", "message"),
    [(0, "must be positive"), (-0.5, "must be positive"), (2.5, "whole number"), (20, "only 20 items")],
)
def test_bad_validation_size(tmp_path, val, message):
    data = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}") for i in range(20)])
    with pytest.raises(DataError, match=message):
        split_file(data, val_fraction=val)
    assert not (tmp_path / "d.train.jsonl").exists()


def test_too_few_items(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [chat("only one")])
    with pytest.raises(DataError, match="at least 2"):
        split_file(data)


# -------------------------------------------------------------------------------------------- stratification


def test_stratified_split_keeps_each_label_share(tmp_path):
    data = labelled(tmp_path, {"billing": 120, "shipping": 60, "returns": 18, "legal": 2})
    result = split_file(data, val_fraction=0.1, seed=4, stratify="metadata.label")
    assert result.val == 20
    assert result.labels == {
        "billing": {"total": 120, "train": 108, "val": 12},
        "shipping": {"total": 60, "train": 54, "val": 6},
        "returns": {"total": 18, "train": 17, "val": 1},  # 1.8 -> 1 after giving the 2-item label its one
        "legal": {"total": 2, "train": 1, "val": 1},  # at least one val item for labels with >= 2 items
    }
    val_labels = Counter(json.loads(line)["metadata"]["label"] for line in lines_of(result.val_path))
    assert val_labels == {"billing": 12, "shipping": 6, "returns": 1, "legal": 1}


def test_stratified_split_differs_from_unstratified_on_skewed_labels(tmp_path):
    data = labelled(tmp_path, {"common": 95, "rare": 5})
    for seed in range(5):
        result = split_file(data, val_fraction=0.2, seed=seed, stratify="metadata.label", force=True)
        assert result.labels["rare"]["val"] == 1 and result.labels["common"]["val"] == 19


def test_missing_labels_form_their_own_stratum(tmp_path):
    items = [chat(f"a{i}", label="pos") for i in range(30)]
    items += [chat(f"b{i}", label="neg") for i in range(30)]
    items.insert(4, chat("no label here"))  # line 5
    items.insert(9, chat("null label", label=None))  # line 10
    items += [chat(f"c{i}") for i in range(8)]
    data = write_jsonl(tmp_path / "d.jsonl", items)
    result = split_file(data, val_fraction=0.1, seed=0, stratify="label")
    assert result.missing_label == 10
    assert result.missing_label_lines[:2] == [5, 10]
    assert result.labels["(missing)"] == {"total": 10, "train": 9, "val": 1}
    assert result.labels["pos"]["val"] == 3 and result.labels["neg"]["val"] == 3
    assert result.to_dict()["missing_label"]["items"] == 10


def test_stratify_on_assistant_json(tmp_path):
    items = [
        chat(f"ticket {i}", json.dumps({"category": "bug" if i % 4 else "feature", "priority": i % 3}))
        for i in range(80)
    ]
    items.append(chat("ticket x", "not json"))  # missing label
    data = write_jsonl(tmp_path / "d.jsonl", items)
    result = split_file(data, val_fraction=0.1, seed=1, stratify="assistant_json.category")
    assert result.labels["bug"] == {"total": 60, "train": 54, "val": 6}
    assert result.labels["feature"] == {"total": 20, "train": 18, "val": 2}
    assert result.missing_label == 1 and result.missing_label_lines == [81]
    # non-string labels are compared by their JSON text
    by_priority = split_file(data, val_fraction=0.1, seed=1, stratify="assistant_json.priority", force=True)
    assert set(by_priority.labels) == {"0", "1", "2", "(missing)"}


def test_stratify_path_that_no_item_has(tmp_path):
    data = labelled(tmp_path, {"a": 10, "b": 10})
    with pytest.raises(DataError, match="no item of .* has this label") as info:
        split_file(data, stratify="metadata.lable")
    assert "the first item's fields: messages, metadata" in str(info.value)
    assert "assistant_json" in info.value.hint
    with pytest.raises(DataError, match="not a label path"):
        split_file(data, stratify="metadata..label")


def test_allocate():
    assert allocate([50, 30, 20], 10) == [5, 3, 2]
    assert allocate([97, 2, 1], 10) == [
        9,
        1,
        0,
    ]  # the 2-item stratum gets one, the single item stays in training
    assert allocate([5, 5, 5, 5], 2) == [1, 1, 0, 0]  # not enough for everyone: the earliest largest first
    assert allocate([3, 3], 5) == [3, 2]  # caps relaxed only when the request needs it
    for sizes, total in [([13, 7, 1, 1, 40], 9), ([1] * 10, 3), ([100], 99), ([2, 2, 2], 3)]:
        quotas = allocate(sizes, total)
        assert sum(quotas) == total and all(0 <= q <= s for q, s in zip(quotas, sizes, strict=True))


# ------------------------------------------------------------------------------------------------- grouping


def test_duplicates_stay_on_one_side(tmp_path):
    items = []
    for i in range(60):
        items.append(chat(f"Question {i}?", "first answer"))
        if i % 3 == 0:
            items.append(chat(f"Question {i}?", "another answer"))  # exact duplicate of the user turn
        if i % 5 == 0:
            items.append(chat(f"  question {i}", "yet another"))  # normalized duplicate
    random.Random(3).shuffle(items)
    data = write_jsonl(tmp_path / "d.jsonl", items)
    for seed in range(4):
        result = split_file(data, val_fraction=0.2, seed=seed, force=True)
        train_q = {
            " ".join(user_text(line).lower().strip("?").split()) for line in lines_of(result.train_path)
        }
        val_q = {" ".join(user_text(line).lower().strip("?").split()) for line in lines_of(result.val_path)}
        assert not train_q & val_q
        assert result.leakage is not None and result.leakage.leaked == 0
        assert result.groups == 60 and result.duplicate_groups == 28
        assert result.val == result.val_requested == round(len(items) * 0.2)


def test_without_grouping_duplicates_can_leak_and_the_check_says_so(tmp_path):
    items = [chat(f"q{i % 20}", f"answer {i}") for i in range(100)]  # every question five times
    data = write_jsonl(tmp_path / "d.jsonl", items)
    result = split_file(data, val_fraction=0.2, seed=0, group_duplicates=False)
    assert result.val == 20 and not result.grouped
    assert result.leakage.exact > 0
    grouped = split_file(data, val_fraction=0.2, seed=0, force=True)
    assert grouped.val == 20 and grouped.leakage.leaked == 0


def test_group_too_large_for_the_split(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [chat("same prompt", f"answer {i}") for i in range(10)])
    with pytest.raises(DataError, match="largest group has 10 items") as info:
        split_file(data, val_fraction=0.2)
    assert "--no-group" in info.value.hint


def test_dpo_items_are_grouped_by_their_input(tmp_path):
    def dpo(prompt: str, i: int) -> dict:
        return {
            "input": {"messages": [{"role": "user", "content": prompt}]},
            "preferred_output": [{"role": "assistant", "content": f"good {i}"}],
            "non_preferred_output": [{"role": "assistant", "content": f"bad {i}"}],
        }

    items = [dpo(f"prompt {i % 25}", i) for i in range(75)]  # three preference pairs per prompt
    data = write_jsonl(tmp_path / "d.jsonl", items)
    result = split_file(data, val_fraction=0.2, seed=2)
    assert result.groups == 25 and result.val == 15
    val_prompts = Counter(user_text(line) for line in lines_of(result.val_path))
    assert all(count == 3 for count in val_prompts.values()) and len(val_prompts) == 5
    assert result.leakage.leaked == 0


# --------------------------------------------------------------------------------------------------- errors


def test_broken_lines_are_refused_with_their_line_numbers(tmp_path):
    items = [chat(f"q{i}") for i in range(10)]
    items.insert(3, '{"messages": [')  # line 4
    items.insert(7, "[1, 2]")  # line 8
    data = write_jsonl(tmp_path / "d.jsonl", items)
    with pytest.raises(DataError) as info:
        split_file(data)
    message = str(info.value)
    assert "2 line(s) cannot be split" in message and "line 4 (not valid JSON" in message
    assert "line 8 (not a JSON object" in message
    assert "tuneport data validate" in info.value.hint
    assert [f["line"] for f in info.value.findings] == [4, 8]
    assert not (tmp_path / "d.train.jsonl").exists() and not (tmp_path / "d.val.jsonl").exists()


def test_outputs_are_not_overwritten_without_force(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}") for i in range(20)])
    (tmp_path / "d.val.jsonl").write_text("keep me\n")
    with pytest.raises(DataError, match="d.val.jsonl already exists") as info:
        split_file(data)
    assert "--force" in info.value.hint
    assert (tmp_path / "d.val.jsonl").read_text() == "keep me\n"
    assert not (tmp_path / "d.train.jsonl").exists()
    result = split_file(data, force=True)
    assert len(lines_of(result.val_path)) == 2
    with pytest.raises(DataError, match="is the input file"):
        split_file(data, train_out=data, force=True)
    with pytest.raises(DataError, match="the same file"):
        split_file(data, train_out=tmp_path / "x.jsonl", val_out=tmp_path / "x.jsonl", force=True)


def test_missing_input(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        split_file(tmp_path / "nope.jsonl")


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_split_text(tmp_path):
    data = labelled(tmp_path, {"a": 40, "b": 20})
    result = CliRunner().invoke(
        split_cmd, [str(data), "--val", "0.1", "--seed", "3", "--stratify", "metadata.label"]
    )
    assert result.exit_code == 0, result.output
    assert "60 items, seed 3" in result.output
    assert f"-> {tmp_path / 'data.val.jsonl'}" in result.output and "(10.0%)" in result.output
    assert "stratified by metadata.label" in result.output
    assert "leakage between train and val (same user turns): none" in result.output
    assert len(lines_of(tmp_path / "data.val.jsonl")) == 6


def test_cli_split_json_with_count_and_outputs(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}") for i in range(30)])
    train_out, val_out = tmp_path / "out" / "t.jsonl", tmp_path / "out" / "v.jsonl"
    args = [str(data), "--val", "4", "--train-out", str(train_out), "--val-out", str(val_out), "--json"]
    result = CliRunner().invoke(split_cmd, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["train"] == {"path": str(train_out), "items": 26}
    assert payload["val"] == {"path": str(val_out), "items": 4, "requested": 4}
    assert payload["leakage"]["exact"] == 0 and payload["seed"] == 0
    again = CliRunner().invoke(split_cmd, args)
    assert isinstance(again.exception, DataError) and "already exists" in str(again.exception)
    forced = CliRunner().invoke(split_cmd, [*args, "--force", "--seed", "1"])
    assert forced.exit_code == 0, forced.output


@pytest.mark.parametrize("bad", ["0", "-1", "1.5", "abc", "nan"])
def test_cli_rejects_bad_val(tmp_path, bad):
    data = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}") for i in range(30)])
    result = CliRunner().invoke(split_cmd, [str(data), "--val", bad])
    assert result.exit_code == 2
    assert "--val" in result.output
    assert not (tmp_path / "d.train.jsonl").exists()
