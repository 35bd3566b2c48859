"""OpenAI object shapes: parse what the live service sends, dump what the schema accepts."""

from __future__ import annotations

import json

import _openai_schema as schema
import pytest
from pydantic import ValidationError

from tuneport.jobs.objects import (
    FileObject,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    ListPage,
    Upload,
)

# A job as the live API returns it: `"error": {}`, fields the schema does not list, a paused status.
LIVE_JOB = {
    "object": "fine_tuning.job",
    "id": "ftjob-abc123",
    "model": "gpt-4o-mini-2024-07-18",
    "created_at": 1721764800,
    "finished_at": None,
    "fine_tuned_model": None,
    "organization_id": "org-123",
    "result_files": [],
    "status": "paused",
    "validation_file": None,
    "training_file": "file-abc123",
    "hyperparameters": {"batch_size": 1, "learning_rate_multiplier": 1.8, "n_epochs": 3},
    "trained_tokens": None,
    "error": {},
    "user_provided_suffix": "demo",
    "seed": 42,
    "estimated_finish": None,
    "integrations": [],
    "metadata": None,
    "method": {
        "type": "supervised",
        "supervised": {"hyperparameters": {"batch_size": 1, "n_epochs": 3, "learning_rate_multiplier": 1.8}},
    },  # fmt: skip
    "usage_metrics": {"trained_tokens": 0},
    "shared_with_openai": False,
}


def test_live_job_parses_with_open_status_empty_error_and_extra_fields():
    job = FineTuningJob.model_validate(LIVE_JOB)
    assert job.status == "paused" and not job.is_terminal
    assert job.error is None
    assert job.user_provided_suffix == "demo"  # type: ignore[attr-defined]
    assert job.method_type == "supervised"
    dumped = job.to_api()
    assert dumped["usage_metrics"] == {"trained_tokens": 0}  # unknown fields survive a round trip
    assert dumped["error"] is None
    schema.validate_component(dumped, "FineTuningJob", live=True)
    with pytest.raises(AssertionError, match="paused"):
        schema.validate_component(dumped, "FineTuningJob")  # the published enum really lacks it


def test_failed_job_error_is_kept():
    job = FineTuningJob.model_validate({**LIVE_JOB, "status": "failed", "error": {
        "code": "invalid_training_file", "message": "Invalid file format.", "param": "training_file"}})  # fmt: skip
    assert (
        job.is_terminal and job.error.code == "invalid_training_file" and job.error.param == "training_file"
    )
    schema.validate_component(job.to_api(), "FineTuningJob")


def test_job_without_method_is_supervised_and_minimal_dump_validates():
    job = FineTuningJob(id="ftjob-1", created_at=1, model="gpt-4o-mini", status="queued", training_file="file-1",
                        seed=3, organization_id="org-1")  # fmt: skip
    assert job.method_type == "supervised"
    data = job.to_api()
    assert "method" not in data  # not nullable in the schema: omitted, not null
    schema.validate_component(data, "FineTuningJob")


def test_required_fields_are_enforced():
    with pytest.raises(ValidationError):
        FineTuningJob.model_validate({"id": "x", "status": "queued"})


def test_file_and_upload():
    file = FileObject.model_validate({"id": "file-1", "object": "file", "bytes": 10, "created_at": 1,
                                      "filename": "a.jsonl", "purpose": "fine-tune"})  # fmt: skip
    schema.validate_component(file.to_api(), "OpenAIFile")
    upload = Upload.model_validate({"id": "upload_1", "object": "upload", "bytes": 10, "created_at": 1,
                                    "expires_at": 2, "filename": "a.jsonl", "purpose": "fine-tune",
                                    "status": "completed", "file": file.to_api()})  # fmt: skip
    assert upload.file == file
    schema.validate_component(upload.to_api(), "Upload")
    pending = Upload.model_validate({**upload.to_api(), "status": "pending", "file": None})
    schema.validate_component(pending.to_api(), "Upload")


def test_event_and_checkpoint_pages():
    events = ListPage[FineTuningJobEvent].model_validate({"object": "list", "has_more": True, "data": [
        {"object": "fine_tuning.job.event", "id": "ftevent-2", "created_at": 2, "level": "info",
         "message": "Step 1/2: training loss=0.5", "type": "metrics", "data": {"step": 1, "train_loss": 0.5}},
        {"object": "fine_tuning.job.event", "id": "ftevent-1", "created_at": 1, "level": "warn", "message": "x"},
    ]})  # fmt: skip
    assert len(events) == 2 and [e.id for e in events] == ["ftevent-2", "ftevent-1"]
    assert events.data[0].data["train_loss"] == 0.5
    dumped = events.to_api()
    assert "type" not in dumped["data"][1]  # optional, non-nullable: omitted
    schema.validate_component(dumped, "ListFineTuningJobEventsResponse")

    checkpoints = ListPage[FineTuningJobCheckpoint].model_validate({"object": "list", "has_more": False,
        "first_id": "ftckpt_1", "last_id": "ftckpt_1", "data": [{
            "object": "fine_tuning.job.checkpoint", "id": "ftckpt_1", "created_at": 1,
            "fine_tuned_model_checkpoint": "ft:gpt-4o-mini:org::abc:ckpt-step-10", "fine_tuning_job_id": "ftjob-1",
            "metrics": {"step": 10, "train_loss": 0.2, "full_valid_loss": 0.3}, "step_number": 10}]})  # fmt: skip
    schema.validate_component(checkpoints.to_api(), "ListFineTuningJobCheckpointsResponse")
    assert checkpoints.data[0].metrics["full_valid_loss"] == 0.3


def test_job_list_page_round_trip():
    page = ListPage[FineTuningJob].model_validate({"object": "list", "data": [LIVE_JOB], "has_more": False})
    assert json.loads(json.dumps(page.to_api()))["data"][0]["id"] == "ftjob-abc123"
    schema.validate_component(page.to_api(), "ListPaginatedFineTuningJobsResponse", live=True)


def test_schema_helper_rejects_what_openai_would():
    with pytest.raises(AssertionError):
        schema.validate_request({"model": "gpt-4o-mini"}, "/fine_tuning/jobs", "post")  # no training_file
    with pytest.raises(AssertionError):
        schema.validate_request({"part_ids": ["a"], "extra": 1}, "/uploads/{upload_id}/complete", "post")
    schema.validate_request({"model": "m", "training_file": "f", "suffix": None}, "/fine_tuning/jobs", "post")
