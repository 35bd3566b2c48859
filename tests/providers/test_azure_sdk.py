"""The official ``openai.AzureOpenAI`` client drives the fake Azure resource: the proof that the fake speaks Azure.

If the SDK's URLs (``/openai/...?api-version=``), its ``api-key`` header, its request bodies or its parsing of the
fake's answers disagreed with the fake, these tests would fail; the provider tests then run against the same fake.
"""

from __future__ import annotations

import io
import json

import httpx
import openai
import pytest
from fake_azure import AZURE_KEY, ENDPOINT, FakeAzure

API_VERSION = "2025-04-01-preview"
LINE = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.fixture
def fake() -> FakeAzure:
    return FakeAzure()


@pytest.fixture
def client(fake: FakeAzure) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=ENDPOINT, api_key=AZURE_KEY, api_version=API_VERSION, max_retries=0,
        http_client=httpx.Client(transport=fake.transport),
    )  # fmt: skip


def _upload(client: openai.AzureOpenAI) -> str:
    data = ("\n".join(json.dumps(LINE) for _ in range(10)) + "\n").encode()
    return client.files.create(file=("train.jsonl", io.BytesIO(data)), purpose="fine-tune").id


def test_sdk_uploads_and_sees_the_file_become_processed(client, fake):
    file_id = _upload(client)
    assert fake.requests[0][:2] == ("POST", "/files") and fake.requests[0][2]["api-version"] == API_VERSION
    assert fake.headers_seen[0]["api-key"] == AZURE_KEY and "authorization" not in fake.headers_seen[0]
    assert client.files.retrieve(file_id).status == "processed"


def test_sdk_runs_a_job_with_training_type_through_pending_to_succeeded(client, fake):
    file_id = _upload(client)
    client.files.retrieve(file_id)
    job = client.fine_tuning.jobs.create(model="gpt-4.1-mini-2025-04-14", training_file=file_id,
                                         extra_body={"trainingType": "GlobalStandard"}, suffix="triage")  # fmt: skip
    assert job.status == "pending" and fake.bodies[-1]["trainingType"] == "GlobalStandard"
    statuses = [client.fine_tuning.jobs.retrieve(job.id).status for _ in range(fake.steps + 1)]
    assert statuses[0] == "running" and statuses[-1] == "succeeded"
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.fine_tuned_model.startswith("gpt-4.1-mini-2025-04-14.ft-")
    events = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert len(events.data) == 2 and events.has_more
    older = client.fine_tuning.jobs.list_events(job.id, after=events.data[-1].id, limit=100)
    assert {e.id for e in events.data}.isdisjoint(e.id for e in older.data)
    [checkpoint] = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoint.step_number == fake.steps


def test_sdk_pages_jobs_newest_first_and_can_pause_resume_cancel(client, fake):
    file_id = _upload(client)
    client.files.retrieve(file_id)
    ids = [client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=file_id).id
           for _ in range(3)]  # fmt: skip
    page = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in page.data] == ids[::-1][:2] and page.has_more
    client.fine_tuning.jobs.retrieve(ids[0])  # pending -> running
    assert client.fine_tuning.jobs.pause(ids[0]).status == "paused"
    assert client.fine_tuning.jobs.resume(ids[0]).status == "running"
    assert client.fine_tuning.jobs.cancel(ids[0]).status == "cancelled"


def test_sdk_sees_azure_errors(client, fake):
    with pytest.raises(openai.BadRequestError) as bad:
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file="file-missing")
    assert bad.value.code == "invalidPayload"
    file_id = _upload(client)  # still pending: Azure has not imported it yet
    with pytest.raises(openai.BadRequestError, match="not ready"):
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=file_id)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    wrong = openai.AzureOpenAI(azure_endpoint=ENDPOINT, api_key="wrong", api_version=API_VERSION, max_retries=0,
                               http_client=httpx.Client(transport=fake.transport))  # fmt: skip
    with pytest.raises(openai.AuthenticationError):
        wrong.fine_tuning.jobs.list()
