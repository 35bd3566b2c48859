"""The mapping from a JobSpec to OpenAI's create-job body and to the local trainer's plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _openai_schema import SPEC_PATH
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tuneport.errors import DataError, SpecError
from tuneport.spec.jobspec import SEED_MAX, JobSpec, spec_hash
from tuneport.spec.mapping import (
    auto_batch_size,
    auto_n_epochs,
    check_spec,
    openai_base_model,
    resolve_local_hyperparameters,
    to_openai_create_body,
)

SCHEMA_FILE = SPEC_PATH  # the OpenAI contract the repository carries (tests/contracts/openai)


@pytest.fixture(scope="module")
def create_job_validator() -> Draft4Validator:
    """A validator for OpenAI's CreateFineTuningJobRequest, $refs resolved against the whole document.

    The document is OpenAPI with 3.0-style keywords (boolean exclusiveMinimum, nullable), i.e. JSON Schema draft 4.
    """
    document = json.loads(SCHEMA_FILE.read_text())
    registry = Registry().with_resource(
        "urn:openai", Resource.from_contents(document, default_specification=DRAFT4)
    )
    return Draft4Validator(
        {"$ref": "urn:openai#/components/schemas/CreateFineTuningJobRequest"}, registry=registry
    )


def errors(validator: Draft4Validator, body: dict) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]


def spec(**fields) -> JobSpec:
    data = {"model": "gpt-4o-mini-2024-07-18", "training_file": "data/train.jsonl"}
    data.update(fields)
    return JobSpec.from_dict(data)


# ---- OpenAI ------------------------------------------------------------------------------------------------


def test_validator_is_not_vacuous(create_job_validator: Draft4Validator) -> None:
    bad = {
        "model": "m",
        "training_file": "file-1",
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0, "batch_size": 0}}},
        "seed": -1,
    }
    assert len(errors(create_job_validator, bad)) == 3
    assert errors(create_job_validator, {"model": "m"})  # training_file is required


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"method": "supervised"},
        {"method": {"type": "supervised", "hyperparameters": {"n_epochs": 50, "batch_size": 256}}},
        {"method": {"type": "supervised", "hyperparameters": {"learning_rate_multiplier": 1e-6}}},
        {"method": "dpo"},
        {"method": {"type": "dpo", "hyperparameters": {"beta": 2, "n_epochs": 1, "batch_size": 1}}},
        {"method": {"type": "dpo", "hyperparameters": {"beta": 1e-5, "learning_rate_multiplier": 3}}},
        {
            "validation_file": "data/val.jsonl",
            "suffix": "x" * 64,
            "seed": SEED_MAX,
            "metadata": {f"k{i}": "v" * 512 for i in range(16)},
            "integrations": [{"type": "wandb", "wandb": {"project": "p", "name": "n", "tags": ["t"]}}],
        },
        {"seed": 0, "local": {"lora_r": 64, "learning_rate": 1e-4, "finetuning_type": "full"}},
    ],
)
def test_openai_body_validates_against_official_schema(
    create_job_validator: Draft4Validator, fields: dict
) -> None:
    job = spec(**fields)
    body = to_openai_create_body(job, "file-train1", "file-val1" if job.validation_file else None)
    assert errors(create_job_validator, body) == []


def test_openai_body_is_exactly_openais_shape() -> None:
    job = spec(
        validation_file="data/val.jsonl",
        method={"type": "dpo", "hyperparameters": {"beta": 0.3, "n_epochs": 2}},
        suffix="triage",
        seed=7,
        metadata={"team": "support"},
        backend="openai",
        local={"lora_r": 4, "learning_rate": 1e-4},
    )
    assert to_openai_create_body(job, "file-t", "file-v") == {
        "model": "gpt-4o-mini-2024-07-18",
        "training_file": "file-t",
        "validation_file": "file-v",
        "method": {
            "type": "dpo",
            "dpo": {
                "hyperparameters": {
                    "n_epochs": 2,
                    "batch_size": "auto",
                    "learning_rate_multiplier": "auto",
                    "beta": 0.3,
                }
            },
        },
        "suffix": "triage",
        "seed": 7,
        "metadata": {"team": "support"},
    }


def test_openai_body_leaves_out_unset_optionals() -> None:
    body = to_openai_create_body(spec(), "file-t")
    assert set(body) == {"model", "training_file", "method"}
    assert body["method"] == {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
        },
    }


def test_openai_body_uses_file_ids_from_spec_and_refuses_local_paths() -> None:
    job = spec(training_file="file-abc123", validation_file="file-def456")
    body = to_openai_create_body(job)
    assert (body["training_file"], body["validation_file"]) == ("file-abc123", "file-def456")
    with pytest.raises(SpecError, match="training_file: 'data/train.jsonl' is a local file"):
        to_openai_create_body(spec())
    with pytest.raises(SpecError, match="validation_file"):
        to_openai_create_body(spec(validation_file="v.jsonl"), "file-t")


# ---- auto epochs and batch size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "epochs"),
    [
        (5, 20),
        (50, 3),
        (1000, 3),
        (20000, 1),
        (1, 25),
        (3, 25),
        (4, 25),
        (5, 20),
        (33, 3),
        (34, 3),
        (8333, 3),
        (8334, 2),
        (12500, 2),
        (12501, 1),
        (100000, 1),
    ],
)
def test_auto_epochs_follow_openais_rule(n: int, epochs: int) -> None:
    assert auto_n_epochs(n) == epochs
    job = spec(training_file="file-x")
    assert resolve_local_hyperparameters(job, n).n_epochs == epochs


def test_auto_epochs_small_set_edges() -> None:
    # 32 * 3 = 96 < 100 -> 100 // 32 = 3 ; 20 * 3 = 60 -> 5
    assert auto_n_epochs(32) == 3
    assert auto_n_epochs(20) == 5


@pytest.mark.parametrize(
    ("n", "batch"),
    [
        (1, 1),
        (5, 1),
        (50, 1),
        (999, 1),
        (1000, 2),
        (1999, 2),
        (2000, 4),
        (20000, 32),
        (128000, 256),
        (10**7, 256),
    ],
)
def test_auto_batch_size(n: int, batch: int) -> None:
    assert auto_batch_size(n) == batch
    assert resolve_local_hyperparameters(spec(training_file="file-x"), n).batch_size == batch


def test_explicit_hyperparameters_pass_through() -> None:
    job = spec(method={"type": "supervised", "hyperparameters": {"n_epochs": 7, "batch_size": 16}})
    plan = resolve_local_hyperparameters(job, 1000)
    assert (plan.n_epochs, plan.batch_size, plan.per_device_train_batch_size) == (7, 16, 16)
    assert not any(note.startswith(("n_epochs auto", "batch_size auto")) for note in plan.notes)


# ---- learning rate and beta ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "local", "multiplier", "expected"),
    [
        ("supervised", {}, "auto", 2e-4),
        ("supervised", {}, 0.5, 1e-4),
        ("supervised", {"finetuning_type": "qlora", "device": "cuda"}, "auto", 2e-4),
        ("supervised", {"finetuning_type": "full"}, 2, 4e-5),
        ("dpo", {}, "auto", 5e-6),
        ("dpo", {"finetuning_type": "full"}, "auto", 5e-7),
        ("supervised", {"learning_rate": 3e-5}, 0.5, 3e-5),  # absolute rate wins
    ],
)
def test_learning_rate(method: str, local: dict, multiplier, expected: float) -> None:
    job = spec(
        method={"type": method, "hyperparameters": {"learning_rate_multiplier": multiplier}}, local=local
    )
    plan = resolve_local_hyperparameters(job, 100)
    assert plan.learning_rate == pytest.approx(expected)
    if "learning_rate" in local:
        assert any("ignored locally" in note for note in plan.notes)


def test_beta() -> None:
    assert resolve_local_hyperparameters(spec(method="dpo"), 10).beta == 0.1
    explicit = spec(method={"type": "dpo", "hyperparameters": {"beta": 0.3}})
    assert resolve_local_hyperparameters(explicit, 10).beta == 0.3
    assert resolve_local_hyperparameters(spec(), 10).beta is None


# ---- batch layout, steps, packing, seed ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch", "accum", "procs", "expected"),
    [
        # (per_device, accum, procs, effective)
        (8, 2, 2, (2, 2, 2, 8)),
        (8, 1, 1, (8, 1, 1, 8)),
        (1, 4, 1, (1, 1, 1, 1)),  # accumulation lowered to fit the batch
        (3, 1, 2, (2, 1, 2, 4)),  # rounded up to a multiple of the processes
        (10, 4, 1, (3, 4, 1, 12)),
    ],
)
def test_batch_layout(batch: int, accum: int, procs: int, expected: tuple) -> None:
    job = spec(
        method={"type": "supervised", "hyperparameters": {"batch_size": batch}},
        local={"gradient_accumulation_steps": accum, "num_processes": procs},
    )
    plan = resolve_local_hyperparameters(job, 100)
    got = (
        plan.per_device_train_batch_size,
        plan.gradient_accumulation_steps,
        plan.num_processes,
        plan.batch_size,
    )
    assert got == expected
    assert (
        plan.batch_size
        == plan.per_device_train_batch_size * plan.gradient_accumulation_steps * plan.num_processes
    )
    if expected[3] != batch:
        assert any("effective batch" in note for note in plan.notes)


def test_steps_and_warmup() -> None:
    job = spec(
        method={"type": "supervised", "hyperparameters": {"batch_size": 8}}, local={"warmup_ratio": 0.05}
    )
    plan = resolve_local_hyperparameters(job, 500, n_train_tokens=40_000)
    assert (plan.n_epochs, plan.steps_per_epoch, plan.total_steps, plan.warmup_steps) == (3, 63, 189, 10)
    assert plan.estimated_trained_tokens == 120_000


def test_packing_resolution() -> None:
    assert resolve_local_hyperparameters(spec(), 10).packing is True
    assert resolve_local_hyperparameters(spec(method="dpo"), 10).packing is False
    assert resolve_local_hyperparameters(spec(local={"packing": False}), 10).packing is False
    assert resolve_local_hyperparameters(spec(method="dpo", local={"packing": True}), 10).packing is True


def test_seed_explicit_or_derived_from_hash() -> None:
    assert resolve_local_hyperparameters(spec(seed=123), 10).seed == 123
    job = spec()
    derived = resolve_local_hyperparameters(job, 10).seed
    assert derived == resolve_local_hyperparameters(spec(), 10).seed
    assert derived == int(spec_hash(job)[:8], 16) % (SEED_MAX + 1)
    assert derived != resolve_local_hyperparameters(spec(suffix="other"), 10).seed


def test_lora_fields_and_full_finetuning() -> None:
    plan = resolve_local_hyperparameters(
        spec(local={"lora_r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}), 10
    )
    assert (plan.lora_r, plan.lora_alpha, plan.target_modules, plan.uses_lora) == (4, 8, ("q_proj",), True)
    assert plan.to_dict()["target_modules"] == ["q_proj"]
    full = resolve_local_hyperparameters(spec(local={"finetuning_type": "full"}), 10)
    assert (full.lora_r, full.lora_alpha, full.lora_dropout, full.target_modules, full.uses_lora) == (
        None,
        None,
        None,
        None,
        False,
    )


def test_output_dir_resolves_against_spec_folder(tmp_path: Path) -> None:
    job = JobSpec.from_dict(
        {"model": "m", "training_file": "t.jsonl", "local": {"output_dir": "runs/one"}}, base_dir=tmp_path
    )
    assert resolve_local_hyperparameters(job, 10).output_dir == str((tmp_path / "runs" / "one").resolve())
    assert resolve_local_hyperparameters(spec(), 10).output_dir is None


@pytest.mark.parametrize("n", [0, -1, True, 2.5])
def test_plan_needs_examples(n) -> None:
    with pytest.raises(DataError):
        resolve_local_hyperparameters(spec(), n)


def test_plan_to_dict_is_json() -> None:
    data = resolve_local_hyperparameters(spec(method="dpo"), 40, 1000).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["method"] == "dpo" and isinstance(data["notes"], list) and data["notes"]


# ---- warnings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18"),
        ("gpt-4.1-nano", "gpt-4.1-nano-2025-04-14"),
        ("ft:gpt-4o-mini-2024-07-18:acme:triage:abc123", "gpt-4o-mini-2024-07-18"),
        ("gpt-3.5-turbo", "gpt-3.5-turbo-0125"),
        ("tiny-chat", None),
        ("Qwen/Qwen2.5-0.5B-Instruct", None),
    ],
)
def test_openai_base_model(model: str, base: str | None) -> None:
    assert openai_base_model(model) == base


def test_check_spec_openai() -> None:
    assert check_spec(spec(), "openai") == []
    [warning] = check_spec(spec(model="tiny-chat"), "openai")
    assert "not a model OpenAI is known to fine-tune" in warning
    [warning] = check_spec(spec(model="gpt-3.5-turbo", method="dpo"), "openai")
    assert "does not offer DPO" in warning
    warnings = check_spec(spec(local={"learning_rate": 1e-4, "lora_r": 8}), "openai")
    assert any("local.learning_rate (0.0001) is not sent" in w for w in warnings)
    assert any(
        "ignored by OpenAI" in w and "local.lora_r" in w and "learning_rate," not in w for w in warnings
    )


def test_check_spec_local() -> None:
    assert check_spec(spec(model="tiny-chat")) == []
    assert any("no downloadable weights" in w for w in check_spec(spec(), "local"))
    warnings = check_spec(spec(model="m", local={"finetuning_type": "qlora"}))
    assert any("needs a CUDA GPU" in w for w in warnings)
    warnings = check_spec(
        spec(
            model="m",
            method={"hyperparameters": {"learning_rate_multiplier": 2}},
            local={"learning_rate": 1e-4},
        )
    )
    assert any("learning_rate_multiplier is ignored locally" in w for w in warnings)
    warnings = check_spec(
        spec(model="m", local={"finetuning_type": "full", "lora_r": 8, "save_merged": True})
    )
    assert any("ignored with finetuning_type full: local.lora_r" in w for w in warnings)
    assert any("save_merged has no effect" in w for w in warnings)
    warnings = check_spec(spec(model="m", validation_file="data/train.jsonl"))
    assert any("validation_file is the training file" in w for w in warnings)
    with pytest.raises(SpecError):
        check_spec(spec(), "no-such-backend")
