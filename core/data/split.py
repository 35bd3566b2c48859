"""Deterministic, stratified, group-aware train/validation splits that stream.

Why each property matters:

* **Deterministic**: the same file and seed give byte-identical outputs on any machine and in any process (no
  use of Python's randomized ``hash``), so a split can be re-created from its provenance instead of stored.
* **Group-aware**: items whose user turns are the same (exactly or after normalization) always land on the same
  side; otherwise validation loss rewards memorizing training prompts. The result re-checks the two outputs with
  :func:`~tuneport.data.leakage.find_leakage` and reports what it found.
* **Stratified** (``stratify="metadata.label"`` etc.): every label keeps its share in both outputs, and each label
  with two or more items gets at least one validation item where the requested size allows.
* **Streaming**: pass one keeps about 30 bytes per line (a group number, a label number, a 64-bit priority per
  group); pass two copies each line's bytes unchanged to its output.

Each group gets a priority from a seeded 64-bit mix of its hash; within each label the lowest-priority groups go to
validation until the label's quota is met. Priorities come from content, not position: reordering the lines of a
file does not change which items go to validation (only tie-breaks between labels follow the file's order).
"""

from __future__ import annotations

import hashlib
import math
import os
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tuneport.data.hashing import HashIndex, content_text, example_key, line_key, messages_of
from tuneport.data.leakage import LeakageReport, count_lines, find_leakage
from tuneport.data.reader import LINE_ERRORS, iter_records, unreadable
from tuneport.errors import DataError

__all__ = ["split_file", "SplitResult", "LabelPath", "MISSING_LABEL", "allocate"]

MISSING_LABEL = "(missing)"
_MASK64 = (1 << 64) - 1
_VALIDATE_HINT = (
    "Run `tuneport data validate FILE` to see every problem with its line number, fix them, then split."
)


def _mix64(z: int) -> int:
    """splitmix64's finalizer: a bijective scramble of 64 bits (cheap, and the same in every process)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _seed_key(seed: int) -> int:
    return int.from_bytes(
        hashlib.blake2b(str(seed).encode(), digest_size=8, person=b"tuneport-seed").digest(), "little"
    )


# --------------------------------------------------------------------------------------------------- labels


def _label_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _last_assistant_content(obj: Any) -> Any:
    """The content of the last assistant message (a DPO item's preferred output)."""
    messages: Any = None
    if isinstance(obj, dict) and isinstance(obj.get("preferred_output"), list):
        messages = obj["preferred_output"]
    if messages is None:
        messages = messages_of(obj)
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "assistant":
            return message.get("content")
    return None


@dataclass(frozen=True, slots=True)
class LabelPath:
    """Where an item's stratification label lives.

    ``metadata.label`` or ``label``: a field of the JSON line (dots descend into objects; a number indexes a list).
    ``assistant_json.category``: the last assistant message's content parsed as JSON, then its ``category`` field
    -- for classification data whose answers are JSON objects.
    """

    text: str
    from_assistant_json: bool
    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> LabelPath:
        parts = tuple(text.split("."))
        if not text or any(not part for part in parts):
            raise DataError(
                f"--stratify {text!r} is not a label path",
                hint="Name a field with dots between levels, e.g. `label`, `metadata.label` or `assistant_json.category`.",
            )
        if parts[0] == "assistant_json":
            return cls(text, True, parts[1:])
        return cls(text, False, parts)

    def extract(self, obj: Any) -> str | None:
        """The item's label as a string (non-strings as compact JSON); None when it is missing or null."""
        value: Any = obj
        if self.from_assistant_json:
            content = _last_assistant_content(obj)
            if content is None:
                return None
            try:
                value = orjson.loads(content_text(content))
            except orjson.JSONDecodeError:
                return None
        for part in self.parts:
            if isinstance(value, dict):
                if part not in value:
                    return None
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return _label_string(value)


# ----------------------------------------------------------------------------------------------- allocation


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def allocate(sizes: list[int], total: int) -> list[int]:
    """Split ``total`` validation items across strata of the given sizes, proportionally.

    Largest-remainder rounding, so the quotas add up to ``total`` exactly. Where ``total`` allows, every stratum
    with two or more items gets at least one, and every stratum keeps at least one item for training (single-item
    strata stay in training). Ties go to the larger, then the earlier, stratum.
    """
    n = sum(sizes)
    if n == 0 or total <= 0:
        return [0] * len(sizes)
    total = min(total, n)
    ideal = [size * total / n for size in sizes]
    caps = [size - 1 if size >= 2 else 0 for size in sizes]
    if sum(caps) < total:  # the request needs every item somewhere: relax the keep-one-for-training rule
        caps = list(sizes)
    quotas = [min(math.floor(e), cap) for e, cap in zip(ideal, caps, strict=True)]
    needing = [i for i, size in enumerate(sizes) if size >= 2 and quotas[i] == 0 and caps[i] > 0]
    budget = total - sum(quotas)
    needing.sort(key=lambda i: (-ideal[i], -sizes[i], i))
    for i in needing[:budget]:
        quotas[i] = 1
    while sum(quotas) < total:
        open_ = [i for i in range(len(sizes)) if quotas[i] < caps[i]]
        open_.sort(key=lambda i: (-(ideal[i] - quotas[i]), -sizes[i], i))
        for i in open_[: total - sum(quotas)]:
            quotas[i] += 1
    return quotas


def _resolve_val_count(val: float | int, n: int, path: Path) -> int:
    """How many validation items ``--val`` asks for: a fraction of the file below 1, a count from 1 up."""
    if isinstance(val, bool) or not isinstance(val, (int, float)) or math.isnan(val) or math.isinf(val):
        raise DataError(
            f"--val {val!r} is not a number", hint="Give a fraction like 0.1 or a count like 500."
        )
    if val <= 0:
        raise DataError(
            f"--val {val} must be positive",
            hint="Give a fraction between 0 and 1 (e.g. 0.1) or a count of at least 1.",
        )
    if val < 1:
        return min(max(_round_half_up(n * val), 1), n - 1)
    if val != int(val):
        raise DataError(
            f"--val {val}: a count must be a whole number",
            hint="Use a fraction below 1 (e.g. 0.1) for a share of the file, or a whole number for a count.",
        )
    count = int(val)
    if count >= n:
        raise DataError(
            f"--val {count} asks for {count} validation items but {path} has only {n} items",
            hint=f"Ask for fewer than {n}, or give a fraction such as 0.1.",
        )
    return count


# --------------------------------------------------------------------------------------------------- result


@dataclass(slots=True)
class SplitResult:
    """What a split did: where the outputs are, how many items each got, per label, and the leakage re-check."""

    input_path: str
    train_path: str
    val_path: str
    seed: int
    total: int
    train: int
    val: int
    val_requested: int
    grouped: bool
    groups: int
    duplicate_groups: int
    duplicate_items: int
    stratify: str | None = None
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    missing_label: int = 0
    missing_label_lines: list[int] = field(default_factory=list)
    leakage: LeakageReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input_path,
            "train": {"path": self.train_path, "items": self.train},
            "val": {"path": self.val_path, "items": self.val, "requested": self.val_requested},
            "total": self.total,
            "seed": self.seed,
            "grouped": self.grouped,
            "groups": self.groups,
            "duplicate_groups": self.duplicate_groups,
            "duplicate_items": self.duplicate_items,
            "stratify": self.stratify,
            "labels": {label: dict(counts) for label, counts in self.labels.items()},
            "missing_label": {"items": self.missing_label, "first_lines": list(self.missing_label_lines)},
            "leakage": self.leakage.to_dict() if self.leakage is not None else None,
        }


# ----------------------------------------------------------------------------------------------------- split


def _default_outputs(path: Path) -> tuple[Path, Path]:
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(f"{stem}.train.jsonl"), path.with_name(f"{stem}.val.jsonl")


def _check_outputs(path: Path, train_out: Path, val_out: Path, force: bool) -> None:
    source = path.resolve()
    if train_out.resolve() == val_out.resolve():
        raise DataError(
            f"--train-out and --val-out are the same file ({train_out})", hint="Give two different paths."
        )
    for out in (train_out, val_out):
        if out.resolve() == source:
            raise DataError(
                f"{out} is the input file; splitting would overwrite it", hint="Write the outputs elsewhere."
            )
        if out.is_dir():
            raise DataError(f"{out} is a folder", hint="Give a file path such as data.train.jsonl.")
        if out.exists() and not force:
            raise DataError(
                f"{out} already exists",
                hint="Pass --force to overwrite it, or choose other paths with --train-out / --val-out.",
            )


class _Pass1:
    """The compact per-line and per-group arrays of the first pass."""

    def __init__(self, expected: int) -> None:
        self.line_group = array("I")  # group number of each item
        self.line_label = array("I")  # label number of each item
        self.group_priority = array("Q")
        self.group_size = array("I")
        self.group_label = array("I")  # label of the group's first item: the stratum it is allocated in
        self.index = HashIndex(expected)
        self.crc = 0


def _first_pass(
    path: Path, label_path: LabelPath | None, grouped: bool, seed: int
) -> tuple[_Pass1, list, dict]:
    state = _Pass1(count_lines(path) if grouped else 0)
    seed_key = _seed_key(seed)
    labels: dict[str | None, int] = {}
    problems: list[dict[str, Any]] = []
    problem_count = 0
    missing_lines: list[int] = []
    missing = 0
    first_keys: list[str] | None = None
    for record in iter_records(path):
        if record.error is None and not isinstance(record.obj, dict):
            record.error, record.detail = (
                "not_an_object",
                f"a JSON {type(record.obj).__name__}, not an object",
            )
        if record.error is not None:
            problem_count += 1
            if len(problems) < 10:
                what = LINE_ERRORS.get(record.error, "not a JSON object")
                problems.append(
                    {"line": record.lineno, "error": record.error, "message": f"{what}: {record.detail}"}
                )
            continue
        if problem_count:
            continue  # the split is refused; keep counting problems only
        state.crc = zlib.crc32(record.raw, state.crc)
        if first_keys is None:
            first_keys = [str(k) for k in record.obj][:12]
        key = example_key(record.obj)
        content_key = key.group if key is not None else line_key(record.raw)
        if grouped:
            new = len(state.group_size)
            group = state.index.setdefault(content_key, new + 1) - 1
        else:
            group = new = len(state.group_size)
            content_key = (content_key ^ _mix64(record.lineno)) or 1  # identical lines still differ
        label = label_path.extract(record.obj) if label_path is not None else None
        if label is None and label_path is not None:
            missing += 1
            if len(missing_lines) < 10:
                missing_lines.append(record.lineno)
        label_id = labels.setdefault(label, len(labels))
        if group == new:
            state.group_priority.append(_mix64(content_key ^ seed_key))
            state.group_size.append(1)
            state.group_label.append(label_id)
        else:
            state.group_size[group] += 1
        state.line_group.append(group)
        state.line_label.append(label_id)
    if problem_count:
        first = ", ".join(f"line {p['line']} ({p['message']})" for p in problems[:3])
        more = f" and {problem_count - 3} more" if problem_count > 3 else ""
        raise DataError(
            f"{path}: {problem_count} line(s) cannot be split: {first}{more}",
            hint=_VALIDATE_HINT.replace("FILE", str(path)),
            findings=problems,
        )
    return state, missing_lines, {"labels": labels, "missing": missing, "first_keys": first_keys or []}


def _select(state: _Pass1, chosen: bytearray, quotas: dict[int, int], strata: array | None) -> None:
    """Mark groups for validation: per stratum, in priority order, each group that still fits in the quota.

    Equivalent to sorting each stratum's unchosen groups by priority and filling greedily, but only groups below a
    per-stratum priority threshold (about 1.25 x the quota) are collected and sorted; a stratum whose fill falls
    short doubles its threshold and is scanned again. Memory stays proportional to the validation set. ``strata``
    None puts every group in stratum 0.
    """
    priorities, sizes = state.group_priority, state.group_size
    group_count = len(sizes)
    stratum_items = {s: 0 for s in quotas}
    for g in range(group_count):
        s = strata[g] if strata is not None else 0
        if s in stratum_items and not chosen[g]:
            stratum_items[s] += sizes[g]
    pending = {s: q for s, q in quotas.items() if q > 0 and stratum_items[s] > 0}
    share = {s: min(1.0, (q * 1.25 + 16) / stratum_items[s]) for s, q in pending.items()}
    while pending:
        limits = {s: _MASK64 + 1 if share[s] >= 1.0 else int(share[s] * (_MASK64 + 1)) for s in pending}
        buckets: dict[int, list[int]] = {s: [] for s in pending}
        for g in range(group_count):
            if chosen[g]:
                continue
            s = strata[g] if strata is not None else 0
            limit = limits.get(s)
            if limit is not None and priorities[g] < limit:
                buckets[s].append((priorities[g] << 32) | g)
        for s, candidates in buckets.items():
            candidates.sort()
            quota, filled, marked = pending[s], 0, []
            for packed in candidates:
                g = packed & 0xFFFFFFFF
                if filled + sizes[g] <= quota:
                    marked.append(g)
                    filled += sizes[g]
                    if filled == quota:
                        break
            if filled == quota or share[s] >= 1.0:
                for g in marked:
                    chosen[g] = 1
                del pending[s]
            else:
                share[s] = min(1.0, share[s] * 2)


def split_file(
    path: str | Path,
    *,
    val_fraction: float | int = 0.1,
    seed: int = 0,
    stratify: str | None = None,
    train_out: str | Path | None = None,
    val_out: str | Path | None = None,
    force: bool = False,
    group_duplicates: bool = True,
    check_leakage: bool = True,
) -> SplitResult:
    """Split a JSONL dataset into training and validation files.

    ``val_fraction`` below 1 is a share of the items (rounded, at least one); a whole number from 1 up is a count.
    ``stratify`` is a label path (see :class:`LabelPath`); items without the label form their own stratum,
    reported as ``(missing)``. Items with the same user turns stay together unless ``group_duplicates`` is False.
    Outputs default to ``<stem>.train.jsonl`` and ``<stem>.val.jsonl`` next to the input and are never
    overwritten without ``force``; they are written to temporary files and renamed into place at the end.
    Lines are copied byte for byte (a missing final newline is added, a UTF-8 BOM dropped).
    """
    path = Path(path)
    default_train, default_val = _default_outputs(path)
    train_path = Path(train_out) if train_out is not None else default_train
    val_path = Path(val_out) if val_out is not None else default_val
    label_path = LabelPath.parse(stratify) if stratify is not None else None
    problem = unreadable(path)  # a symlink loop or a dangling link is said as such, not "no such file"
    if problem is not None:
        raise problem
    _check_outputs(path, train_path, val_path, force)

    state, missing_lines, info = _first_pass(path, label_path, group_duplicates, seed)
    labels: dict[str | None, int] = info["labels"]
    n = len(state.line_group)
    if n < 2:
        raise DataError(
            f"{path} has {n} item(s); a split needs at least 2", hint="Add more examples before splitting."
        )
    if label_path is not None and info["missing"] == n:
        raise DataError(
            f"--stratify {label_path.text}: no item of {path} has this label "
            f"(the first item's fields: {', '.join(info['first_keys']) or 'none'})",
            hint="Check the label path: `label` or `metadata.label` for a field of each line, "
            "`assistant_json.FIELD` for a field of the JSON answer.",
        )
    val_count = _resolve_val_count(val_fraction, n, path)

    # Allocate the validation quota across strata (each group counts in the stratum of its first item).
    group_count = len(state.group_size)
    stratum_sizes = [0] * len(labels)
    for g in range(group_count):
        stratum_sizes[state.group_label[g]] += state.group_size[g]
    quotas = allocate(stratum_sizes, val_count)
    chosen = bytearray(group_count)
    _select(state, chosen, dict(enumerate(quotas)), state.group_label)
    val_total = sum(state.group_size[g] for g in range(group_count) if chosen[g])
    if val_total < val_count:  # large duplicate groups blocked some strata: top up from any stratum
        _select(state, chosen, {0: val_count - val_total}, None)
        val_total = sum(state.group_size[g] for g in range(group_count) if chosen[g])
    if val_total == 0 or val_total == n:
        biggest = max(state.group_size)
        raise DataError(
            f"{path}: cannot put {val_count} of {n} items in validation without splitting a group of items with the "
            f"same user turns (the largest group has {biggest} items)",
            hint="Ask for a different --val, or pass --no-group to allow duplicates on both sides.",
        )

    _second_pass(path, state, chosen, train_path, val_path)

    label_names = {
        label_id: (MISSING_LABEL if label is None else label) for label, label_id in labels.items()
    }
    per_label: dict[str, dict[str, int]] = {}
    if label_path is not None:
        totals = [0] * len(labels)
        vals = [0] * len(labels)
        for group, label_id in zip(state.line_group, state.line_label, strict=True):
            totals[label_id] += 1
            vals[label_id] += chosen[group]
        for label_id in sorted(range(len(labels)), key=lambda i: (-totals[i], label_names[i])):
            per_label[label_names[label_id]] = {
                "total": totals[label_id],
                "train": totals[label_id] - vals[label_id],
                "val": vals[label_id],
            }
    duplicate_groups = sum(1 for size in state.group_size if size > 1)
    duplicate_items = sum(size for size in state.group_size if size > 1)
    leakage = find_leakage(train_path, val_path, max_hits=20) if check_leakage else None
    return SplitResult(
        input_path=str(path),
        train_path=str(train_path),
        val_path=str(val_path),
        seed=seed,
        total=n,
        train=n - val_total,
        val=val_total,
        val_requested=val_count,
        grouped=group_duplicates,
        groups=group_count,
        duplicate_groups=duplicate_groups if group_duplicates else 0,
        duplicate_items=duplicate_items if group_duplicates else 0,
        stratify=label_path.text if label_path is not None else None,
        labels=per_label,
        missing_label=info["missing"],
        missing_label_lines=missing_lines,
        leakage=leakage,
    )


def _second_pass(path: Path, state: _Pass1, chosen: bytearray, train_path: Path, val_path: Path) -> None:
    """Copy each line to its side through temporary files, then rename them into place."""
    for out in (train_path, val_path):
        out.parent.mkdir(parents=True, exist_ok=True)
    tmp_train = train_path.with_name(f".{train_path.name}.{os.getpid()}.tmp")
    tmp_val = val_path.with_name(f".{val_path.name}.{os.getpid()}.tmp")
    line_group = state.line_group
    crc = 0
    i = 0
    try:
        with (
            open(tmp_train, "wb", buffering=1 << 20) as train_fh,
            open(tmp_val, "wb", buffering=1 << 20) as val_fh,
        ):
            for record in iter_records(path):
                if record.error is not None or not isinstance(record.obj, dict) or i >= len(line_group):
                    raise DataError(
                        f"{path} changed while it was being split (line {record.lineno})",
                        hint="Split a file that nothing else is writing to.",
                    )
                crc = zlib.crc32(record.raw, crc)
                out = val_fh if chosen[line_group[i]] else train_fh
                out.write(record.raw)
                out.write(b"\n")
                i += 1
        if i != len(line_group) or crc != state.crc:
            raise DataError(
                f"{path} changed while it was being split",
                hint="Split a file that nothing else is writing to.",
            )
        os.replace(tmp_train, train_path)
        os.replace(tmp_val, val_path)
    finally:
        for tmp in (tmp_train, tmp_val):
            if tmp.exists():
                tmp.unlink()
