"""The job spec: loading (YAML, TOML), shorthands, ranges, unknown keys with line numbers, cross-field errors, hash."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pydantic
import pytest

from tuneport.errors import SpecError
from tuneport.spec.jobspec import JobSpec, LocalSettings, load_spec, spec_hash

BASE = {"model": "tiny-chat", "training_file": "file-abc123"}


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(exc: pytest.ExceptionInfo[SpecError]) -> list[dict]:
    return [p.to_dict() for p in exc.value.findings]


def spec_with(**overrides) -> dict:
    data = dict(BASE)
    data.update(overrides)
    return data


def errors_for(data: dict) -> list[dict]:
    with pytest.raises(SpecError) as exc:
        JobSpec.from_dict(data)
    return problems_of(exc)


# ---- unknown keys ------------------------------------------------------------------------------------------


def test_unknown_key_names_full_path_line_and_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny-chat
        training_file: file-abc123
        method:
          type: supervised
          supervised:
            hyperparameters:
              n_epoch: 3
        """,
    )
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    [problem] = problems_of(exc)
    assert problem["path"] == "method.supervised.hyperparameters.n_epoch"
    assert problem["line"] == 7
    assert 'did you mean "n_epochs"' in problem["message"]
    assert f"{path}:7: method.supervised.hyperparameters.n_epoch: unknown key" in str(exc.value)
    assert exc.value.exit_code == 3


def test_unknown_key_in_shorthand_reports_path_as_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny-chat
        training_file: file-abc123
        method:
          type: dpo
          hyperparameters:
            betta: 0.2
        """,
    )
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    [problem] = problems_of(exc)
    assert problem["path"] == "method.hyperparameters.betta"
    assert problem["line"] == 6
    assert 'did you mean "beta"' in problem["message"]


def test_key_in_wrong_section_points_to_where_it_belongs() -> None:
    [problem] = errors_for(spec_with(learning_rate=1e-4))
    assert problem["path"] == "learning_rate"
    assert "local.learning_rate" in problem["message"]
    [problem] = errors_for(spec_with(n_epochs=3))
    assert "method.supervised.hyperparameters.n_epochs" in problem["message"]


def test_unknown_key_without_near_match_lists_valid_keys() -> None:
    [problem] = errors_for(spec_with(local={"zzzzzz": 1}))
    assert problem["path"] == "local.zzzzzz"
    assert "valid keys here:" in problem["message"] and "lora_r" in problem["message"]


def test_local_typo_suggests_field() -> None:
    [problem] = errors_for(spec_with(local={"lora_rank": 8}))
    assert problem["path"] == "local.lora_rank"
    assert 'did you mean "lora_r"' in problem["message"]


def test_beta_under_supervised_explains_it_is_dpo_only() -> None:
    [problem] = errors_for(spec_with(method={"type": "supervised", "hyperparameters": {"beta": 0.1}}))
    assert problem["path"] == "method.hyperparameters.beta"
    assert "only to DPO" in problem["message"]


def test_all_problems_are_collected_with_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny-chat
        training_file: file-abc123
        method:
          type: supervised
          supervised:
            hyperparameters:
              n_epochs: 0
              batch_size: 300
        seed: -5
        colour: blue
        local:
          lora_r: 0
          device: cpu
          finetuning_type: qlora
        """,
    )
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    found = {(p["path"], p["line"]) for p in problems_of(exc)}
    assert found == {
        ("method.supervised.hyperparameters.n_epochs", 7),
        ("method.supervised.hyperparameters.batch_size", 8),
        ("seed", 9),
        ("colour", 10),
        ("local.lora_r", 12),
        ("local.finetuning_type", 14),  # cross-field check, found despite the other errors
    }
    assert "(6 problems)" in str(exc.value)


def test_cross_field_check_skipped_when_its_inputs_were_invalid() -> None:
    # validation_file is invalid; "early stopping needs a validation_file" would be a false second report.
    problems = errors_for(spec_with(validation_file=5, local={"early_stopping_patience": 2}))
    assert [p["path"] for p in problems] == ["validation_file"]


def test_missing_required_fields() -> None:
    problems = errors_for({"method": "supervised"})
    assert {p["path"]: p["message"] for p in problems} == {
        "model": "is required",
        "training_file": "is required",
    }


# ---- ranges ------------------------------------------------------------------------------------------------

H = "method.supervised.hyperparameters"
D = "method.dpo.hyperparameters"

RANGES = [
    # (dotted path, valid values, invalid values, text the error must contain)
    (f"{H}.n_epochs", [1, 50, "auto"], [0, 51, 2.5, True, "3", "AUTO"], 'an integer from 1 to 50, or "auto"'),
    (f"{H}.batch_size", [1, 256, "auto"], [0, 257, -1], 'an integer from 1 to 256, or "auto"'),
    (f"{H}.learning_rate_multiplier", [1e-9, 0.1, 10, "auto"], [0, -0.5, False], "greater than 0"),
    (f"{D}.beta", [1e-6, 2, 2.0, "auto"], [0, 2.0001, -1], "greater than 0 and at most 2"),
    ("seed", [0, 2147483647], [-1, 2147483648, 1.5], "an integer from 0 to 2147483647"),
    ("suffix", ["a" * 64, "v1.2_x-y"], ["a" * 65], "at most 64 characters"),
    ("suffix", ["ok"], ["has space", "a:b", "ünï"], "letters, digits"),
    ("suffix", [None], [""], "non-empty string"),
    ("local.lora_r", [1, 1024], [0, 1025], "an integer from 1 to 1024"),
    ("local.lora_alpha", [1, 4096], [0, 4097], "an integer from 1 to 4096"),
    ("local.lora_dropout", [0, 0.5, 0.999], [1, -0.1], "at least 0 and less than 1"),
    ("local.max_seq_length", [16, 262144], [15, 262145], "an integer from 16 to 262144"),
    ("local.learning_rate", [1, 1e-7, None], [0, 1.5, "fast"], "greater than 0 and at most 1"),
    ("local.warmup_ratio", [0, 0.5], [1, -0.01], "at least 0 and less than 1"),
    ("local.weight_decay", [0, 1], [1.01, -1], "at least 0 and at most 1"),
    ("local.gradient_accumulation_steps", [1, 1024], [0, 1025], "an integer from 1 to 1024"),
    ("local.num_processes", [1, 64], [0, 65], "an integer from 1 to 64"),
    ("local.early_stopping_patience", [1, 100], [0, 101], "an integer from 1 to 100"),
    ("local.finetuning_type", ["lora", "qlora", "full"], ["lora2", "LoRA"], "one of lora, qlora, full"),
    ("local.quantization", ["none", "4bit", "8bit"], ["4-bit", 4], "one of none, 4bit, 8bit"),
    ("local.dtype", ["auto", "float32", "bfloat16", "float16"], ["bf16"], "one of auto, float32, bfloat16"),
    ("local.device", ["auto", "cpu", "cuda"], ["gpu", "mps"], "one of auto, cpu, cuda"),
    ("local.packing", ["auto", True, False], ["maybe", 1], '"auto", true or false'),
    ("local.lr_scheduler", ["linear", "cosine", "constant"], ["cosin"], "one of linear, cosine"),
    ("local.use_dora", [True, False], ["yes", 0], "true or false"),
    ("local.target_modules", ["all-linear", ["q_proj", "v_proj"]], [[], ["q", "q"], [1]], "module"),
    ("backend", ["local", "openai", "azure", "together"], ["azzure", "acme"], "one of azure, local, openai, together"),
    ("model", ["gpt-4o-mini"], ["", 5, " padded "], ""),
]


def _set(path: str, value) -> dict:
    data: dict = {"model": "tiny-chat", "training_file": "file-abc123", "validation_file": "file-val1"}
    if path.startswith("method.dpo"):
        data["method"] = {"type": "dpo"}
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "good", "bad", "text"), RANGES, ids=[r[0] + ":" + r[3][:12] for r in RANGES]
)
def test_range_boundaries(path: str, good: list, bad: list, text: str) -> None:
    for value in good:
        spec = JobSpec.from_dict(_set(path, value))
        got = spec.to_dict()
        for part in path.split("."):
            got = got[part]
        assert got == value or (isinstance(value, int) and got == float(value)), (path, value, got)
    for value in bad:
        problems = errors_for(_set(path, value))
        assert [p["path"] for p in problems] == [path], (path, value, problems)
        assert text in problems[0]["message"], (path, value, problems[0]["message"])


def test_choice_error_suggests_nearest() -> None:
    [problem] = errors_for(spec_with(local={"finetuning_type": "qlra"}))
    assert 'did you mean "qlora"' in problem["message"]


def test_metadata_limits() -> None:
    ok = {f"k{i}": "v" for i in range(16)}
    assert JobSpec.from_dict(spec_with(metadata=ok)).metadata == ok
    [problem] = errors_for(spec_with(metadata={f"k{i}": "v" for i in range(17)}))
    assert problem["path"] == "metadata" and "at most 16" in problem["message"]
    JobSpec.from_dict(spec_with(metadata={"k" * 64: "v" * 512}))
    [problem] = errors_for(spec_with(metadata={"k" * 65: "v"}))
    assert problem["path"] == "metadata." + "k" * 65 and "at most 64 characters" in problem["message"]
    [problem] = errors_for(spec_with(metadata={"k": "v" * 513}))
    assert problem["path"] == "metadata.k" and "at most 512 characters" in problem["message"]
    [problem] = errors_for(spec_with(metadata={"run": 3}))
    assert "must be strings" in problem["message"]


def test_single_target_module_string_becomes_list() -> None:
    assert JobSpec.from_dict(spec_with(local={"target_modules": "q_proj"})).local.target_modules == ["q_proj"]


# ---- auto and defaults -------------------------------------------------------------------------------------


def test_auto_is_the_default_and_survives_round_trip() -> None:
    spec = JobSpec.from_dict(BASE)
    assert spec.method.type == "supervised"
    assert spec.hyperparameters.model_dump() == {
        "n_epochs": "auto",
        "batch_size": "auto",
        "learning_rate_multiplier": "auto",
    }
    again = JobSpec.from_dict(spec.to_dict())
    assert again == spec and spec_hash(again) == spec_hash(spec)


def test_dpo_auto_beta_and_local_defaults() -> None:
    spec = JobSpec.from_dict(spec_with(method="dpo"))
    assert spec.hyperparameters.beta == "auto"
    assert spec.local == LocalSettings()
    assert spec.backend == "local"
    assert spec.local.target_modules == "all-linear" and spec.local.quantization == "none"


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny-chat
        training_file: file-abc123
        method:
          type: dpo
          dpo:
            hyperparameters:
        local:
          # lora_r: 8
        """,
    )
    spec = load_spec(path)
    assert spec.local == LocalSettings() and spec.hyperparameters.beta == "auto"


def test_qlora_defaults_to_4bit() -> None:
    assert JobSpec.from_dict(spec_with(local={"finetuning_type": "qlora"})).local.quantization == "4bit"


# ---- shorthands --------------------------------------------------------------------------------------------

CANONICAL_DPO = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 2}}}


@pytest.mark.parametrize(
    "method",
    [
        CANONICAL_DPO,
        {"type": "dpo", "hyperparameters": {"beta": 0.2, "n_epochs": 2}},
        {"dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 2}}},
    ],
)
def test_dpo_shorthands_normalize_to_openai_shape(method: dict) -> None:
    spec = JobSpec.from_dict(spec_with(method=method))
    assert spec.to_dict()["method"] == {
        "type": "dpo",
        "dpo": {
            "hyperparameters": {
                "n_epochs": 2,
                "batch_size": "auto",
                "learning_rate_multiplier": "auto",
                "beta": 0.2,
            }
        },
    }
    assert spec_hash(spec) == spec_hash(JobSpec.from_dict(spec_with(method=CANONICAL_DPO)))


@pytest.mark.parametrize(
    "data",
    [
        spec_with(method="supervised"),
        spec_with(method={"type": "supervised"}),
        spec_with(method={"hyperparameters": {}}),
        spec_with(method=None),
        spec_with(hyperparameters={}),  # OpenAI's deprecated top-level form
        dict(BASE),
    ],
)
def test_supervised_shorthands_are_the_default(data: dict) -> None:
    spec = JobSpec.from_dict(data)
    assert spec.to_dict()["method"] == {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
        },
    }


def test_deprecated_top_level_hyperparameters_move_under_supervised() -> None:
    spec = JobSpec.from_dict(spec_with(hyperparameters={"n_epochs": 4}))
    assert spec.method.supervised.hyperparameters.n_epochs == 4
    [problem] = errors_for(spec_with(hyperparameters={"n_epochs": 0}))
    assert problem["path"] == "hyperparameters.n_epochs"


@pytest.mark.parametrize(
    ("method", "path", "text"),
    [
        ("reinforcement", "method", "not supported"),
        ("sft", "method", "one of supervised, dpo"),
        ({"type": "supervised", "dpo": {}}, "method.dpo", 'method.type is "supervised"'),
        (
            {"type": "dpo", "hyperparameters": {}, "dpo": {"hyperparameters": {}}},
            "method.hyperparameters",
            "twice",
        ),
        ({"type": "reinforcement"}, "method.type", "not supported"),
        ({"type": "dpoo"}, "method.type", 'did you mean "dpo"'),
    ],
)
def test_method_shape_errors(method, path: str, text: str) -> None:
    [problem] = errors_for(spec_with(method=method))
    assert problem["path"] == path and text in problem["message"]


def test_top_level_hyperparameters_with_method_is_an_error() -> None:
    [problem] = errors_for(spec_with(method="dpo", hyperparameters={"n_epochs": 2}))
    assert problem["path"] == "hyperparameters" and "deprecated" in problem["message"]


def test_openai_create_body_is_a_valid_spec() -> None:
    body = {
        "model": "gpt-4o-mini-2024-07-18",
        "training_file": "file-abc123",
        "validation_file": "file-def456",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}},
        "suffix": "custom-model-name",
        "seed": 42,
        "metadata": {"team": "support"},
        "integrations": [{"type": "wandb", "wandb": {"project": "p", "tags": ["a"]}}],
    }
    spec = JobSpec.from_dict(body)
    assert spec.integrations[0].wandb.project == "p"
    assert spec.training_path is None  # a file id, not a path


# ---- cross-field errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "path", "text"),
    [
        (
            {"finetuning_type": "qlora", "device": "cpu"},
            "local.finetuning_type",
            "not available with device cpu",
        ),
        ({"quantization": "4bit", "device": "cpu"}, "local.quantization", "needs a CUDA GPU"),
        ({"quantization": "8bit", "device": "cpu"}, "local.quantization", "not available with device cpu"),
        ({"finetuning_type": "full", "quantization": "4bit"}, "local.quantization", "cannot be combined"),
        ({"finetuning_type": "qlora", "quantization": "none"}, "local.quantization", 'must be "4bit"'),
        ({"dtype": "float16", "device": "cpu"}, "local.dtype", "not supported on CPU"),
        ({"use_dora": True, "finetuning_type": "full"}, "local.use_dora", "LoRA variant"),
        ({"early_stopping_patience": 3}, "local.early_stopping_patience", "needs a validation_file"),
    ],
)
def test_cross_field_errors(local: dict, path: str, text: str) -> None:
    problems = errors_for(spec_with(local=local))
    assert path in [p["path"] for p in problems]
    assert any(text in p["message"] for p in problems if p["path"] == path)


def test_cross_field_combinations_that_are_fine() -> None:
    JobSpec.from_dict(spec_with(local={"finetuning_type": "qlora", "device": "cuda"}))
    JobSpec.from_dict(spec_with(local={"quantization": "8bit"}))  # 8-bit LoRA, device decided at start
    JobSpec.from_dict(spec_with(validation_file="file-v1", local={"early_stopping_patience": 3}))
    JobSpec.from_dict(spec_with(local={"dtype": "bfloat16", "device": "cpu"}))


def test_direct_construction_also_runs_cross_checks() -> None:
    with pytest.raises(pydantic.ValidationError, match="not available with device cpu"):
        JobSpec(model="m", training_file="t.jsonl", local={"finetuning_type": "qlora", "device": "cpu"})
    assert JobSpec(model="m", training_file="t.jsonl", method="dpo").method.type == "dpo"


def test_spec_is_immutable() -> None:
    spec = JobSpec.from_dict(BASE)
    with pytest.raises(pydantic.ValidationError):
        spec.model = "other"  # type: ignore[misc]


# ---- files: YAML, TOML, paths -------------------------------------------------------------------------------

YAML_SPEC = """
model: tiny-chat
training_file: data/train.jsonl
method:
  type: dpo
  hyperparameters:
    beta: 0.25
    learning_rate_multiplier: 2e-1
local:
  lora_r: 8
  learning_rate: 1e-4
  target_modules: [q_proj, v_proj]
metadata:
  team: support
"""

TOML_SPEC = """
model = "tiny-chat"
training_file = "data/train.jsonl"

[method]
type = "dpo"

[method.dpo.hyperparameters]
beta = 0.25
learning_rate_multiplier = 0.2

[local]
lora_r = 8
learning_rate = 1e-4
target_modules = ["q_proj", "v_proj"]

[metadata]
team = "support"
"""


def test_yaml_and_toml_give_the_same_spec(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("{}\n")
    from_yaml = load_spec(write(tmp_path, YAML_SPEC, "job.yaml"))
    from_toml = load_spec(write(tmp_path, TOML_SPEC, "job.toml"))
    assert from_yaml == from_toml
    assert spec_hash(from_yaml) == spec_hash(from_toml)
    # YAML 1.1 would read "1e-4" as a string; the spec loader reads it as the number it obviously is.
    assert from_yaml.local.learning_rate == 1e-4
    assert from_yaml.hyperparameters.learning_rate_multiplier == 0.2


def test_toml_errors_have_paths_and_lines(tmp_path: Path) -> None:
    text = TOML_SPEC.replace("lora_r = 8", "lora_rr = 8").replace("beta = 0.25", "beta = 3")
    path = write(tmp_path, text, "job.toml")
    with pytest.raises(SpecError) as exc:
        load_spec(path, check_files=False)
    found = {(p["path"], p["line"]) for p in problems_of(exc)}
    assert found == {("method.dpo.hyperparameters.beta", 8), ("local.lora_rr", 12)}


def test_invalid_toml_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'model = "x"\ntraining_file = \n', "bad.toml")
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    [problem] = problems_of(exc)
    assert problem["line"] == 2 and "not valid TOML" in problem["message"]


def test_relative_paths_resolve_against_spec_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("{}\n")
    (tmp_path / "data" / "val.jsonl").write_text("{}\n")
    path = write(tmp_path, "model: m\ntraining_file: data/train.jsonl\nvalidation_file: data/val.jsonl\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = load_spec(path)
    assert spec.training_path == (tmp_path / "data" / "train.jsonl").resolve()
    assert spec.validation_path == (tmp_path / "data" / "val.jsonl").resolve()
    assert spec.training_file == "data/train.jsonl"  # kept as written: the hash does not depend on location


def test_missing_local_file_is_an_error_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, "model: m\ntraining_file: nope.jsonl\n")
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    [problem] = problems_of(exc)
    assert (problem["path"], problem["line"]) == ("training_file", 2)
    assert "file not found" in problem["message"] and str(tmp_path / "nope.jsonl") in problem["message"]
    assert load_spec(path, check_files=False).training_file == "nope.jsonl"


def test_file_ids_versus_paths() -> None:
    spec = JobSpec.from_dict(spec_with(training_file="file-AbC123xyz", validation_file="file-train.jsonl"))
    assert spec.training_path is None
    assert spec.validation_path is not None and spec.validation_path.name == "file-train.jsonl"


def test_hash_is_location_independent(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    text = "model: m\ntraining_file: file-abc123\nseed: 3\n"
    assert spec_hash(load_spec(write(a, text))) == spec_hash(load_spec(write(b, text)))


def test_hash_is_canonical() -> None:
    explicit = {
        "training_file": "file-abc123",
        "model": "tiny-chat",
        "backend": "local",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": "auto"}}},
        "local": {"lora_r": 16},
    }
    h = spec_hash(JobSpec.from_dict(BASE))
    assert h == spec_hash(JobSpec.from_dict(explicit))
    assert len(h) == 64 and int(h, 16) >= 0
    assert h != spec_hash(JobSpec.from_dict(spec_with(seed=1)))
    assert h != spec_hash(JobSpec.from_dict(spec_with(local={"lora_r": 8})))


def test_duplicate_yaml_key_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "model: a\ntraining_file: file-abc123\nmodel: b\n")
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    [problem] = problems_of(exc)
    assert (problem["path"], problem["line"]) == ("model", 3)
    assert "first given on line 1" in problem["message"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("model: [unclosed\ntraining_file: x\n", 2, "not valid YAML"),
        ("", None, "empty"),
        ("- a\n- b\n", 1, "must be a mapping"),
        ("model: m\ntraining_file: file-abc123\n---\nmodel: n\n", 3, "not valid YAML"),
    ],
)
def test_unreadable_yaml(tmp_path: Path, text: str, line: int | None, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    [problem] = problems_of(exc)
    assert message in problem["message"]
    if line is not None:
        assert problem["line"] == line


def test_missing_and_binary_spec_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "none.yaml")
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(binary)


def test_from_dict_error_format_without_file() -> None:
    with pytest.raises(SpecError) as exc:
        JobSpec.from_dict(spec_with(seed=-1))
    assert "\n  seed: must be an integer from 0 to 2147483647 (got -1)" in str(exc.value)


def test_from_dict_with_source_names_file() -> None:
    with pytest.raises(SpecError) as exc:
        JobSpec.from_dict(spec_with(seed=-1), source="job.yaml")
    assert "job.yaml: seed: must be" in str(exc.value)


def test_for_backend_and_yaml_round_trip(tmp_path: Path) -> None:
    spec = JobSpec.from_dict(spec_with(method={"type": "dpo", "hyperparameters": {"beta": 0.5}}, seed=9))
    assert spec.for_backend("openai").backend == "openai"
    with pytest.raises(SpecError):
        spec.for_backend("no-such-backend")
    again = load_spec(write(tmp_path, spec.to_yaml()))
    assert again == spec
