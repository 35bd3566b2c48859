"""The OpenAI provider against a strict in-memory fake of the API (every body checked against OpenAI's schema)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path

import httpx
import pytest
from fake_openai import CANARY_KEY, FakeOpenAI

from tuneport.errors import (
    APIConnectionError,
    AuthenticationError,
    DataError,
    JobFailedError,
    ProviderError,
    QuotaExceededError,
    TrainingNotAvailableError,
)
from tuneport.http import ModelNotAvailableError, RetryPolicy
from tuneport.jobs.objects import FineTuningJob
from tuneport.providers.base import Endpoint, InvalidFileError, WaitTimeoutError
from tuneport.providers.openai import CLIENT_KEY_FIELD, OpenAIProvider
from tuneport.spec.jobspec import JobSpec

EXAMPLE = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write_dataset(path: Path, n: int = 20, *, bad_line: int | None = None, pad: int = 0) -> Path:
    lines = []
    for i in range(n):
        example = {"messages": [{"role": "user", "content": f"question {i} " + "x" * pad},
                                {"role": "assistant", "content": f"answer {i}"}]}  # fmt: skip
        lines.append("{not json" if bad_line == i + 1 else json.dumps(example))
    path.write_text("\n".join(lines) + "\n")
    return path


def make_spec(tmp_path: Path, **extra) -> JobSpec:
    data = {"model": "gpt-4o-mini-2024-07-18", "training_file": "train.jsonl", "backend": "openai", **extra}
    return JobSpec.from_dict(data, base_dir=tmp_path)


# -- files ----------------------------------------------------------------------------------------------------


def test_upload_small_file_through_files_api(provider, fake, tmp_path, store):
    path = write_dataset(tmp_path / "train.jsonl")
    seen = []
    file = provider.upload(path, progress=lambda done, total: seen.append((done, total)))
    assert file.purpose == "fine-tune" and file.bytes == path.stat().st_size
    assert fake.file_bytes[file.id] == path.read_bytes()
    assert fake.count("POST", "/files") == 1 and fake.count("POST", "/uploads") == 0
    assert seen[-1] == (file.bytes, file.bytes)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    row = store.find_file("openai", sha, "fine-tune")
    assert row["provider_file_id"] == file.id and row["size_bytes"] == file.bytes


def test_same_bytes_are_not_uploaded_twice(provider, fake, tmp_path):
    first = provider.upload(write_dataset(tmp_path / "a.jsonl"))
    copy = tmp_path / "copy-with-another-name.jsonl"
    copy.write_bytes((tmp_path / "a.jsonl").read_bytes())
    again = provider.upload(copy)
    assert again.id == first.id
    assert fake.count("POST", "/files") == 1
    assert fake.count("GET", f"/files/{first.id}") == 1  # checked that OpenAI still has it


def test_reuse_is_survived_by_a_remote_deletion(provider, fake, tmp_path, store):
    path = write_dataset(tmp_path / "a.jsonl")
    first = provider.upload(path)
    del fake.files[first.id]  # deleted on the platform
    second = provider.upload(path)
    assert second.id != first.id
    assert fake.count("POST", "/files") == 2
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert store.find_file("openai", sha, "fine-tune")["provider_file_id"] == second.id


def test_changed_bytes_are_uploaded_again(provider, fake, tmp_path):
    path = write_dataset(tmp_path / "a.jsonl")
    provider.upload(path)
    write_dataset(path, n=21)
    provider.upload(path)
    assert fake.count("POST", "/files") == 2


def test_large_file_goes_through_uploads_api_in_ordered_parallel_parts(provider, fake, tmp_path):
    path = write_dataset(tmp_path / "big.jsonl", n=400, pad=900)  # ~380 KB: above the 256 KB test threshold
    size = path.stat().st_size
    assert size > provider.files_api_limit
    active, peak, lock = [0], [0], threading.Lock()
    handle = fake.handle

    def instrumented(request: httpx.Request) -> httpx.Response:
        is_part = request.url.path.endswith("/parts")
        if is_part:
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            # the first part is the slowest, so parts finish out of order
            time.sleep(0.05 if b"question 0 " in request.content else 0.005)
        try:
            return handle(request)
        finally:
            if is_part:
                with lock:
                    active[0] -= 1

    provider._transport = httpx.MockTransport(instrumented)
    progress = []
    file = provider.upload(path, progress=lambda d, t: progress.append(d))
    n_parts = -(-size // provider.part_size)
    assert fake.count("POST", r"/uploads/[^/]+/parts") == n_parts
    assert fake.count("POST", "/files") == 0
    assert fake.file_bytes[file.id] == path.read_bytes()  # ordered ids + matching md5, or the fake refuses
    assert 1 < peak[0] <= provider.upload_concurrency
    assert progress[-1] == size


def test_uploads_api_can_be_forced_for_a_small_file(provider, fake, tmp_path):
    path = write_dataset(tmp_path / "small.jsonl")
    file = provider.upload(path, method="uploads")
    assert fake.count("POST", "/uploads") == 1 and fake.count("POST", "/files") == 0
    assert fake.file_bytes[file.id] == path.read_bytes()


def test_a_failed_part_is_retried(provider, fake, tmp_path, waits):
    path = write_dataset(tmp_path / "small.jsonl")
    fake.fail("POST", r"/uploads/[^/]+/parts", status=503)
    file = provider.upload(path, method="uploads")
    assert fake.file_bytes[file.id] == path.read_bytes()
    assert waits == [0.5]


def test_a_part_that_keeps_failing_cancels_the_upload(provider, fake, tmp_path):
    path = write_dataset(tmp_path / "big.jsonl", n=200, pad=900)
    fake.fail("POST", r"/uploads/[^/]+/parts", status=400, times=1000,
              body={"error": {"message": "bad part", "type": "invalid_request_error", "param": None, "code": None}})  # fmt: skip
    with pytest.raises(ProviderError, match="bad part"):
        provider.upload(path, method="uploads")
    assert fake.count("POST", r"/uploads/[^/]+/cancel") == 1
    (upload,) = fake.uploads.values()
    assert upload["status"] == "cancelled"
    assert not fake.files


def test_missing_or_empty_dataset_is_a_data_error(provider, tmp_path):
    from tuneport.errors import DataError

    with pytest.raises(DataError, match="nope.jsonl"):
        provider.upload(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        provider.upload(tmp_path / "empty.jsonl")


# -- jobs -----------------------------------------------------------------------------------------------------


def start_job(provider, tmp_path, **spec_extra) -> FineTuningJob:
    write_dataset(tmp_path / "train.jsonl")
    return provider.start(make_spec(tmp_path, **spec_extra))


def test_create_sends_the_mapped_body_tagged_with_a_client_key(provider, fake, tmp_path, store):
    job = start_job(provider, tmp_path, suffix="demo", metadata={"team": "search"}, seed=7)
    assert job.status == "validating_files" and job.model == "gpt-4o-mini-2024-07-18"
    sent = fake.jobs[job.id]
    assert sent["metadata"]["team"] == "search"
    assert sent["metadata"][CLIENT_KEY_FIELD].startswith("tp-")
    assert sent["seed"] == 7
    row = store.get_job(job.id)
    assert row["dataset_sha256"] == hashlib.sha256((tmp_path / "train.jsonl").read_bytes()).hexdigest()
    assert row["backend"] == "openai" and row["spec_hash"] == make_spec(tmp_path, suffix="demo",
           metadata={"team": "search"}, seed=7).spec_hash()  # fmt: skip


def test_start_with_validation_file(provider, fake, tmp_path):
    write_dataset(tmp_path / "train.jsonl")
    write_dataset(tmp_path / "valid.jsonl", n=5)
    job = provider.start(make_spec(tmp_path, validation_file="valid.jsonl"))
    assert job.validation_file in fake.files and job.validation_file != job.training_file


@pytest.mark.parametrize(
    "fault",
    [
        {"exc": httpx.ReadTimeout, "after": True},  # created, answer lost in a timeout
        {"exc": httpx.RemoteProtocolError, "after": True},  # created, connection reset before the answer
        {"status": 502, "after": True},  # created, the gateway answered 502
        {"status": 500, "after": False},  # not created: re-sent after checking
        {"exc": httpx.ConnectError, "after": False},  # never sent: re-sent
        {"exc": httpx.ReadTimeout, "after": False},  # sent, not processed: re-sent after checking
    ],
)
def test_a_retried_create_never_starts_a_second_job(provider, fake, tmp_path, fault):
    fake.fail("POST", "/fine_tuning/jobs", **fault)
    job = start_job(provider, tmp_path)
    assert len(fake.jobs) == 1
    assert job.id in fake.jobs


def test_ambiguous_create_on_the_last_attempt_is_still_found(provider, fake, tmp_path):
    provider._retry = RetryPolicy(max_attempts=1, jitter=0.0, sleep=lambda s: None)
    fake.fail("POST", "/fine_tuning/jobs", exc=httpx.ReadTimeout, after=True)
    job = start_job(provider, tmp_path)
    assert list(fake.jobs) == [job.id]


def test_ambiguous_create_that_cannot_be_checked_is_not_resent(provider, fake, tmp_path):
    fake.fail("POST", "/fine_tuning/jobs", exc=httpx.ReadTimeout)
    fake.fail("GET", "/fine_tuning/jobs", exc=httpx.ConnectError, times=100)
    with pytest.raises(APIConnectionError) as info:
        start_job(provider, tmp_path)
    assert fake.count("POST", "/fine_tuning/jobs") == 1
    assert CLIENT_KEY_FIELD in info.value.hint


def test_an_explicit_client_key_makes_a_rerun_return_the_same_job(provider, fake, tmp_path):
    write_dataset(tmp_path / "train.jsonl")
    spec = make_spec(tmp_path)
    file = provider.upload(tmp_path / "train.jsonl")
    first = provider.create(spec, training_file=file.id, client_key="run-42")
    second = provider.create(spec, training_file=file.id, client_key="run-42")
    assert first.id == second.id and len(fake.jobs) == 1


def test_metadata_full_of_user_keys_is_refused_before_sending(provider, fake, tmp_path):
    from tuneport.errors import SpecError

    with pytest.raises(SpecError, match="16"):
        start_job(provider, tmp_path, metadata={f"k{i}": "v" for i in range(16)})
    assert fake.count("POST", "/fine_tuning/jobs") == 0


def test_training_not_available_is_typed_and_not_retried(provider, fake, tmp_path):
    fake.blocked = True
    with pytest.raises(TrainingNotAvailableError) as info:
        start_job(provider, tmp_path)
    assert info.value.hint == (
        "OpenAI no longer accepts new fine-tuning jobs for this organization: run the same spec with --backend local."
    )
    assert info.value.status_code == 403 and info.value.request_id
    assert fake.count("POST", "/fine_tuning/jobs") == 1


def test_model_that_cannot_be_fine_tuned(provider, fake, tmp_path):
    with pytest.raises(ModelNotAvailableError, match="gpt-4o-mini-2024-07-18|not available"):
        fake_model = "gpt-4o-mini-2024-07-18"
        fake.jobs.clear()
        from fake_openai import TUNABLE

        TUNABLE.discard(fake_model)
        try:
            start_job(provider, tmp_path)
        finally:
            TUNABLE.add(fake_model)


def test_insufficient_quota_on_create(provider, fake, tmp_path, waits):
    body = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": None,
                      "code": "insufficient_quota"}}  # fmt: skip
    fake.fail("POST", "/fine_tuning/jobs", status=429, body=body, headers={"retry-after": "1"})
    with pytest.raises(QuotaExceededError):
        start_job(provider, tmp_path)
    assert fake.count("POST", "/fine_tuning/jobs") == 1 and waits == []


def test_rate_limited_create_waits_as_told_then_succeeds(provider, fake, tmp_path, waits):
    fake.fail("POST", "/fine_tuning/jobs", status=429, headers={"retry-after-ms": "1500"},
              body={"error": {"message": "Rate limit", "type": "requests", "param": None, "code": "rate_limit_exceeded"}})  # fmt: skip
    start_job(provider, tmp_path)
    assert waits == [1.5] and len(fake.jobs) == 1


def test_wait_returns_the_succeeded_job_and_its_endpoint(provider, fake, tmp_path):
    job = start_job(provider, tmp_path, suffix="demo")
    statuses = []
    done = provider.wait(job.id, poll=0, on_update=lambda j: statuses.append(j.status), sleep=lambda s: None)
    assert done.status == "succeeded" and done.fine_tuned_model.startswith("ft:gpt-4o-mini-2024-07-18")
    assert statuses == ["queued", "running", "succeeded"]
    endpoint = provider.endpoint(done)
    assert endpoint == Endpoint(
        base_url="https://api.openai.com/v1", model=done.fine_tuned_model, api_key_env="OPENAI_API_KEY",
        kind="openai", job_id=job.id,
    )  # fmt: skip
    with pytest.raises(ProviderError, match="no fine-tuned model"):
        provider.endpoint(job)


def test_start_refuses_invalid_data_before_any_request(provider, fake, tmp_path):
    write_dataset(tmp_path / "train.jsonl", bad_line=3)
    with pytest.raises(DataError) as info:
        provider.start(make_spec(tmp_path))
    assert "line 3" in str(info.value) and "invalid_json" in str(info.value)
    assert fake.requests == []  # nothing uploaded, no paid job


def test_wait_raises_invalid_file_error_naming_the_local_file(provider, fake, tmp_path):
    # OpenAI can still reject a file tuneport accepted: the upload and create go through, the job fails later.
    write_dataset(tmp_path / "train.jsonl", bad_line=3)
    spec = make_spec(tmp_path)
    uploaded = provider.upload(spec.training_path)
    job = provider.create(spec, training_file=uploaded.id)
    with pytest.raises(InvalidFileError) as info:
        provider.wait(job.id, poll=0, sleep=lambda s: None)
    assert isinstance(info.value, JobFailedError)
    assert "Invalid file format. Line 3" in str(info.value)
    assert str(tmp_path / "train.jsonl") in str(info.value) and info.value.file == str(
        tmp_path / "train.jsonl"
    )


def test_wait_times_out_with_a_typed_error(provider, fake, tmp_path):
    fake.auto_advance = False
    job = start_job(provider, tmp_path)
    clock = iter(range(0, 1000, 10))
    with pytest.raises(WaitTimeoutError, match="validating_files"):
        provider.wait(job.id, poll=10, timeout=25, sleep=lambda s: None, clock=lambda: next(clock))


def test_list_filters_by_metadata_and_pages_with_after(provider, fake, tmp_path):
    write_dataset(tmp_path / "train.jsonl")
    ids = [
        provider.start(make_spec(tmp_path, metadata={"batch": "a" if i % 2 else "b"})).id for i in range(5)
    ]
    first = provider.list(limit=2)
    assert [j.id for j in first] == ids[::-1][:2] and first.has_more
    rest = provider.list(after=first.data[-1].id, limit=10)
    assert [j.id for j in rest] == ids[::-1][2:] and not rest.has_more
    only_a = provider.list(metadata={"batch": "a"})
    assert sorted(j.id for j in only_a) == sorted(ids[1::2])


def test_events_page_newest_first_and_iterate_oldest_first(provider, fake, tmp_path):
    job = start_job(provider, tmp_path)
    provider.wait(job.id, poll=0, sleep=lambda s: None)
    everything = [e["id"] for e in fake.events[job.id]]
    assert len(everything) > 5
    page = provider.events(job.id, limit=3)
    assert [e.id for e in page] == everything[::-1][:3] and page.has_more
    older = provider.events(job.id, after=page.data[-1].id, limit=3)
    assert [e.id for e in older] == everything[::-1][3:6]
    assert [e.id for e in provider.iter_events(job.id, page_size=2)] == everything
    assert [e.id for e in provider.iter_events(job.id, after=everything[2], page_size=2)] == everything[3:]
    metrics = [e for e in provider.iter_events(job.id) if e.type == "metrics"]
    assert metrics and metrics[0].data["step"] == 1


def test_follow_yields_every_event_once_in_order_as_they_arrive(provider, fake, tmp_path):
    job = start_job(provider, tmp_path)
    sleeps = []
    followed = [e.id for e in provider.follow(job.id, poll=5, page_size=2, sleep=sleeps.append)]
    assert followed == [e["id"] for e in fake.events[job.id]]
    assert len(sleeps) >= 3  # it waited between polls, so events really arrived over time


def test_follow_from_a_known_event(provider, fake, tmp_path):
    job = start_job(provider, tmp_path)
    provider.wait(job.id, poll=0, sleep=lambda s: None)
    all_ids = [e["id"] for e in fake.events[job.id]]
    assert [e.id for e in provider.follow(job.id, after=all_ids[1], sleep=lambda s: None)] == all_ids[2:]


def test_checkpoints(provider, fake, tmp_path):
    job = start_job(provider, tmp_path)
    done = provider.wait(job.id, poll=0, sleep=lambda s: None)
    page = provider.checkpoints(job.id)
    assert len(page) == 1
    checkpoint = page.data[0]
    assert checkpoint.fine_tuning_job_id == job.id and checkpoint.step_number == fake.steps
    assert checkpoint.fine_tuned_model_checkpoint.startswith(done.fine_tuned_model)
    assert checkpoint.metrics["train_loss"] == pytest.approx(1.0 / fake.steps)


def test_pause_resume_cancel(provider, fake, tmp_path, store):
    job = start_job(provider, tmp_path)
    provider.get(job.id)  # queued
    provider.get(job.id)  # running
    paused = provider.pause(job.id)
    assert paused.status == "paused" and not paused.is_terminal  # not in the schema's enum, but live
    assert store.get_job(job.id)["status"] == "paused"
    assert provider.resume(job.id).status == "running"
    cancelled = provider.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.is_terminal
    assert provider.wait(job.id, poll=0, sleep=lambda s: None).status == "cancelled"


def test_cancel_whose_answer_was_lost_is_not_sent_again(provider, fake, tmp_path):
    job = start_job(provider, tmp_path)
    fake.auto_advance = False
    fake.fail("POST", r"/fine_tuning/jobs/[^/]+/cancel", exc=httpx.ReadTimeout, after=True)
    assert provider.cancel(job.id).status == "cancelled"
    assert fake.count("POST", r"/fine_tuning/jobs/[^/]+/cancel") == 1


def test_unknown_job_is_a_clear_404(provider):
    with pytest.raises(ProviderError) as info:
        provider.get("ftjob-doesnotexist")
    assert info.value.status_code == 404 and "ftjob-doesnotexist" in str(info.value)


# -- credentials ------------------------------------------------------------------------------------------------


def test_no_key_is_an_authentication_error_before_any_request(fake, monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    p = OpenAIProvider(store=False, transport=fake.transport)
    with pytest.raises(AuthenticationError, match="set OPENAI_API_KEY"):
        p.get("ftjob-1")
    assert fake.requests == []


def test_bad_key_names_the_variable_and_never_shows_the_key(fake, monkeypatch):
    wrong = "sk-canary-wrong-key-abcdefabcdefabcdef"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    p = OpenAIProvider(store=False, transport=fake.transport)  # the fake echoes the key it got in its 401
    with pytest.raises(AuthenticationError) as info:
        p.get("ftjob-1")
    text = f"{info.value} {info.value.hint}"
    assert "OPENAI_API_KEY" in text and wrong not in text and "***" in text


def test_org_project_and_base_url_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-123")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_456")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy.test/v1/")
    fake = FakeOpenAI(api_key=CANARY_KEY)
    seen = []

    def handler(request):
        seen.append(request)
        request = httpx.Request(request.method, str(request.url).replace("http://proxy.test", "https://x"),
                                headers=request.headers, content=request.content)  # fmt: skip
        return fake.handle(request)

    p = OpenAIProvider(store=False, transport=httpx.MockTransport(handler))
    with pytest.raises(ProviderError):
        p.get("ftjob-1")
    assert str(seen[0].url) == "http://proxy.test/v1/fine_tuning/jobs/ftjob-1"
    assert seen[0].headers["OpenAI-Organization"] == "org-123"
    assert seen[0].headers["OpenAI-Project"] == "proj_456"
    assert CANARY_KEY not in repr(p)


def test_the_key_never_reaches_logs_errors_or_the_database(provider, fake, tmp_path, store, caplog):
    caplog.set_level(logging.DEBUG)
    errors = []
    write_dataset(tmp_path / "train.jsonl")
    fake.fail("POST", "/files", status=500)
    fake.fail("POST", "/fine_tuning/jobs", exc=httpx.ReadTimeout, after=True)
    job = provider.start(make_spec(tmp_path, suffix="canary"))
    provider.wait(job.id, poll=0, sleep=lambda s: None)
    list(provider.iter_events(job.id))
    provider.checkpoints(job.id)
    provider.upload(tmp_path / "train.jsonl", method="uploads", reuse=False)
    for action in (lambda: provider.get("ftjob-missing"), lambda: provider.cancel(job.id)):
        with pytest.raises(ProviderError) as info:
            action()
        errors.append(f"{info.value} {info.value.hint} {info.value.args}")
    store.close()
    db_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("tuneport.db*"))
    assert db_bytes  # the store was written to
    assert job.id.encode() in db_bytes
    assert CANARY_KEY.encode() not in db_bytes
    assert CANARY_KEY not in caplog.text
    assert all(CANARY_KEY not in e for e in errors)
    assert "req_fault_500" in caplog.text  # failures were logged, with their request id


def test_parts_are_streamed_from_disk_in_small_reads(provider, fake, tmp_path, monkeypatch):
    # Memory must not grow with the part (64 MB in production) or the file: bytes leave in small reads.
    from tuneport.providers import openai as module

    reads: list[int] = []
    original = module._FileWindow.read

    def recording_read(self, size=-1):
        chunk = original(self, size)
        reads.append(len(chunk))
        return chunk

    monkeypatch.setattr(module._FileWindow, "read", recording_read)
    provider.part_size = 512 * 1024
    path = write_dataset(tmp_path / "big.jsonl", n=1200, pad=900)  # ~1.1 MB: three 512 KB parts
    file = provider.upload(path, method="uploads")
    assert fake.file_bytes[file.id] == path.read_bytes()
    assert sum(reads) == path.stat().st_size
    assert max(reads) <= 64 * 1024
