"""The Together AI provider against the in-memory fake: mapping, statuses, paging, exactly-once create, faults."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from fake_together import CANARY_KEY, FakeTogether

from tuneport.errors import APIConnectionError, AuthenticationError, DataError, SpecError
from tuneport.http import RetryPolicy
from tuneport.providers.base import InvalidFileError
from tuneport.providers.registry import backend_for_url, provider_class, secret_env_names
from tuneport.providers.together import TogetherProvider, together_base_url
from tuneport.spec.jobspec import JobSpec

MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


def write_dataset(path: Path, n: int = 20) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}
            for i in range(n)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_spec(tmp_path: Path, **extra) -> JobSpec:
    write_dataset(tmp_path / "train.jsonl")
    data = {"model": MODEL, "training_file": "train.jsonl", "backend": "together", **extra}
    return JobSpec.from_dict(data, base_dir=tmp_path)


@pytest.fixture
def fake() -> FakeTogether:
    return FakeTogether()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def provider(fake, store, waits, monkeypatch) -> TogetherProvider:
    monkeypatch.setenv("TOGETHER_API_KEY", CANARY_KEY)
    monkeypatch.delenv("TOGETHER_BASE_URL", raising=False)
    p = TogetherProvider(store=store, transport=fake.transport, poll_interval=0.0,
                         retry=RetryPolicy(max_attempts=4, jitter=0.0, sleep=waits.append))  # fmt: skip
    yield p
    p.close()


# -- the mapped body ----------------------------------------------------------------------------------------


def test_create_sends_the_mapped_body(provider, fake, tmp_path, store):
    spec = make_spec(tmp_path, suffix="support", seed=7, method={"type": "supervised", "supervised": {
        "hyperparameters": {"n_epochs": 2, "batch_size": 16}}},
        local={"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "learning_rate": 1e-4, "lr_scheduler": "cosine",
               "warmup_ratio": 0.1, "max_seq_length": 4096, "target_modules": ["q_proj", "v_proj"]})  # fmt: skip
    job = provider.start(spec)
    body = fake.bodies[job.id]
    assert body["model"] == MODEL and body["training_file"] in fake.files
    assert (body["n_epochs"], body["batch_size"], body["learning_rate"]) == (2, 16, 1e-4)
    assert body["training_type"] == {"type": "Lora", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.1,
                                     "lora_trainable_modules": "q_proj,v_proj"}  # fmt: skip
    assert body["training_method"] == {"method": "sft", "train_on_inputs": False}
    assert body["lr_scheduler"]["lr_scheduler_type"] == "cosine" and body["warmup_ratio"] == 0.1
    assert (body["suffix"], body["random_seed"], body["max_seq_length"]) == ("support", 7, 4096)
    assert (body["n_checkpoints"], body["n_evals"]) == (1, 0)
    assert job.status == "validating_files" and job.together_status == "pending"
    row = store.get_job(job.id)
    assert row["backend"] == "together" and row["metadata"]["tuneport_client_key"].startswith("tp-")


def test_dpo_with_beta_and_full_training(provider, fake, tmp_path):
    rows = [{"input": {"messages": [{"role": "user", "content": f"q{i}"}]},
             "preferred_output": [{"role": "assistant", "content": "good"}],
             "non_preferred_output": [{"role": "assistant", "content": "bad"}]} for i in range(12)]  # fmt: skip
    (tmp_path / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = JobSpec.from_dict({"model": MODEL, "training_file": "prefs.jsonl", "backend": "together",
                              "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}},
                              "local": {"finetuning_type": "full"}}, base_dir=tmp_path)  # fmt: skip
    body = fake.bodies[provider.start(spec).id]
    assert body["training_method"] == {"method": "dpo", "dpo_beta": 0.2}
    assert body["training_type"] == {"type": "Full"}
    assert body["learning_rate"] == pytest.approx(5e-7)  # tuneport's DPO full base rate, as locally


@pytest.mark.parametrize(
    ("local", "words"),
    [({"finetuning_type": "qlora"}, "qlora"), ({"use_dora": True}, "DoRA"), ({"lr_scheduler": "constant"}, "linear")],
)
def test_what_together_cannot_do_is_refused_before_any_request(provider, fake, tmp_path, local, words):
    with pytest.raises(SpecError, match=words):
        provider.start(make_spec(tmp_path, local=local))
    assert fake.calls == []


def test_a_suffix_over_40_characters_is_refused(provider, fake, tmp_path):
    with pytest.raises(SpecError, match="40"):
        provider.start(make_spec(tmp_path, suffix="s" * 41))
    assert fake.calls == []


def test_a_model_together_does_not_train_is_refused_before_upload_naming_those_it_does(provider, fake, tmp_path):
    with pytest.raises(SpecError) as info:
        provider.start(make_spec(tmp_path, model="gpt-4o-mini-2024-07-18"))
    assert "gpt-4o-mini" in info.value.message and "Qwen/Qwen2.5-7B-Instruct" in info.value.hint
    assert fake.count("POST", "/files") == 0


def test_values_outside_the_model_limits_are_refused_before_upload(provider, fake, tmp_path):
    with pytest.raises(SpecError, match="lora_r.*64"):
        provider.start(make_spec(tmp_path, local={"lora_r": 128, "lora_alpha": 256}))
    assert fake.count("POST", "/files") == 0


def test_invalid_data_is_refused_before_any_request(provider, fake, tmp_path):
    spec = make_spec(tmp_path)
    (tmp_path / "train.jsonl").write_text("{not json\n" * 12)
    with pytest.raises(DataError):
        provider.start(spec)
    assert fake.calls == []


def test_preview_shows_the_body_and_check_spec_warns(tmp_path):
    spec = make_spec(tmp_path, metadata={"team": "a"}, local={"gradient_checkpointing": True})
    preview = TogetherProvider.preview(spec, {"training_file": {"kind": "local", "value": "train.jsonl", "examples": 20}})
    assert preview.request["n_epochs"] == 5 and preview.request["training_file"].startswith("<file id")
    warnings = TogetherProvider.check_spec(spec)
    assert any("metadata" in w for w in warnings) and any("gradient_checkpointing" in w for w in warnings)


def test_estimate_prices_billed_tokens_by_model_size(tmp_path):
    estimate = TogetherProvider.estimate(make_spec(tmp_path, method={"type": "supervised", "supervised": {
        "hyperparameters": {"n_epochs": 3}}}))  # fmt: skip
    assert estimate.n_epochs == 3 and estimate.billed_tokens > 0
    assert float(estimate.price_usd) == pytest.approx(estimate.billed_tokens * 0.48 / 1e6)
    assert "third party" in estimate.price_source and "2026-09" in estimate.price_source
    assert TogetherProvider.training_price("Qwen/Qwen2.5-32B-Instruct", "sft", "lora")[0] == 1.5


def test_a_user_catalog_overrides_the_prices(tmp_path, monkeypatch):
    user = tmp_path / "catalog.json"
    user.write_text(json.dumps({"together": {"training_tiers": [
        {"method": "sft", "training_type": "lora", "per_1m": "0.40", "source": "my contract", "as_of": "2026-12"}]}}))
    monkeypatch.setenv("TUNEPORT_CATALOG", str(user))
    price, source = TogetherProvider.training_price(MODEL, "sft", "lora")
    assert str(price) == "0.40" and "my contract" in source


# -- lifecycle ----------------------------------------------------------------------------------------------


def test_statuses_events_checkpoints_and_endpoint(provider, fake, tmp_path, store):
    job = provider.start(make_spec(tmp_path))
    seen = []
    done = provider.wait(job.id, on_update=lambda j: seen.append((j.status, j.together_status)))
    # uploading maps to running as well, so wait() reports three changes of tuneport's status
    assert seen == [("queued", "queued"), ("running", "running"), ("succeeded", "completed")]
    assert done.fine_tuned_model == fake.jobs[job.id]["model_output_name"]
    events = list(provider.iter_events(job.id))
    assert [e.together_type for e in events] == ["job_pending", "training_start", "checkpoint_save", "job_complete"]
    newest = provider.events(job.id, limit=2)
    assert newest.has_more and provider.events(job.id, after=newest.data[-1].id).data[0].id == events[1].id
    points = provider.checkpoints(job.id)
    assert points.data[0].id == f"{job.id}:10" and points.data[0].step_number == 10
    endpoint = provider.endpoint(done)
    assert endpoint.model == done.fine_tuned_model and endpoint.api_key_env == "TOGETHER_API_KEY"
    assert store.get_job(job.id)["status"] == "succeeded"


def test_follow_yields_every_event_once(provider, fake, tmp_path):
    job = provider.start(make_spec(tmp_path))
    ids = [e.id for e in provider.follow(job.id, poll=0, sleep=lambda s: None)]
    assert len(ids) == len(set(ids)) == len(fake.jobs[job.id]["events"])


def test_user_error_fails_with_the_local_file_named(provider, fake, tmp_path):
    spec = make_spec(tmp_path)
    job = provider.start(spec)
    fake.bad_files.add(job.training_file)
    with pytest.raises(InvalidFileError) as info:
        provider.wait(job.id)
    assert "line 3" in str(info.value) and str(tmp_path / "train.jsonl") in str(info.value)


def test_list_pages_newest_first_and_cancel(provider, fake, tmp_path):
    jobs = [provider.start(make_spec(tmp_path, suffix=f"s{i}")) for i in range(3)]
    for i, job in enumerate(jobs):
        fake.jobs[job.id]["created_at"] = f"2026-10-0{i + 1}T00:00:00Z"
    first = provider.list(limit=2)
    assert [j.id for j in first.data] == [jobs[2].id, jobs[1].id] and first.has_more
    assert [j.id for j in provider.list(after=first.data[-1].id).data] == [jobs[0].id]
    assert provider.cancel(jobs[0].id).status == "cancelled"


def test_same_bytes_are_not_uploaded_twice_and_files_api(provider, fake, tmp_path):
    path = write_dataset(tmp_path / "a.jsonl")
    first = provider.upload(path)
    assert provider.upload(path).id == first.id and fake.count("POST", "/files") == 1
    assert provider.file_content(first.id) == path.read_bytes()
    assert [f.id for f in provider.list_files()] == [first.id]
    assert provider.delete_file(first.id) and provider.upload(path).id != first.id


# -- exactly once under faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"exc": httpx.ReadTimeout, "after": True},
        {"exc": httpx.RemoteProtocolError, "after": True},  # connection reset after the job was made
        {"status": 502, "after": True},
        {"status": 500, "after": False},
        {"exc": httpx.ConnectError, "after": False},
        {"status": 429, "after": False, "headers": {"retry-after": "3"}},
    ],
)
def test_a_retried_create_never_starts_a_second_job(provider, fake, tmp_path, fault, waits):
    fake.fail("POST", "/fine-tunes", **fault)
    job = provider.start(make_spec(tmp_path))
    assert list(fake.jobs) == [job.id]
    if fault.get("status") == 429:
        assert waits == [3.0]


def test_ambiguous_create_on_the_last_attempt_is_still_found(provider, fake, tmp_path):
    provider._retry = RetryPolicy(max_attempts=1, jitter=0.0, sleep=lambda s: None)
    fake.fail("POST", "/fine-tunes", exc=httpx.ReadTimeout, after=True)
    job = provider.start(make_spec(tmp_path))
    assert list(fake.jobs) == [job.id]


def test_an_earlier_job_on_the_same_file_is_not_taken_for_the_lost_one(provider, fake, tmp_path):
    spec = make_spec(tmp_path)
    earlier = provider.start(spec)
    provider._retry = RetryPolicy(max_attempts=1, jitter=0.0, sleep=lambda s: None)
    provider.close()  # the next request makes a client with the new policy
    fake.fail("POST", "/fine-tunes", exc=httpx.ReadTimeout, after=False)  # sent, never processed
    with pytest.raises(APIConnectionError) as info:
        provider.create(spec, training_file=earlier.training_file)
    assert len(fake.jobs) == 1 and "safe" in info.value.hint


def test_ambiguous_create_that_cannot_be_checked_is_not_resent(provider, fake, tmp_path):
    spec = make_spec(tmp_path)
    file = provider.upload(tmp_path / "train.jsonl")
    fake.fail("POST", "/fine-tunes", exc=httpx.ReadTimeout)
    fake.fail("GET", "/fine-tunes", exc=httpx.ConnectError, times=100)
    fake.faults[-1].times = 0  # the first look (before sending) works ...
    original = fake.handle

    def handle(request):
        if request.method == "POST" and request.url.path == "/v1/fine-tunes":
            fake.faults[-1].times = 100  # ... every look after the lost attempt fails
        return original(request)

    provider._transport = httpx.MockTransport(handle)
    provider.close()
    with pytest.raises(APIConnectionError) as info:
        provider.create(spec, training_file=file.id)
    assert fake.count("POST", "/fine-tunes") == 1 and "before starting it again" in info.value.hint


def test_an_explicit_client_key_makes_a_rerun_return_the_same_job(provider, fake, tmp_path):
    spec = make_spec(tmp_path)
    file = provider.upload(tmp_path / "train.jsonl")
    first = provider.create(spec, training_file=file.id, client_key="run-42")
    again = provider.create(spec, training_file=file.id, client_key="run-42")
    assert first.id == again.id and len(fake.jobs) == 1


def test_events_survive_5xx_and_resets_without_loss(provider, fake, tmp_path):
    job = provider.start(make_spec(tmp_path))
    provider.wait(job.id)
    fake.fail("GET", r"/fine-tunes/[^/]+/events", status=503)
    fake.fail("GET", r"/fine-tunes/[^/]+/events", exc=httpx.RemoteProtocolError)
    events = list(provider.iter_events(job.id))
    assert len(events) == len(fake.jobs[job.id]["events"])


# -- keys ---------------------------------------------------------------------------------------------------


def test_no_key_is_an_authentication_error_before_any_request(fake, monkeypatch, tmp_path):
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="TOGETHER_API_KEY"):
        TogetherProvider(store=False, transport=fake.transport).get("ft-1")
    assert fake.calls == []


def test_the_key_never_reaches_logs_errors_store_or_storage(provider, fake, tmp_path, store, caplog):
    seen_auth = []
    original = fake.handle

    def handle(request):
        if request.url.path.startswith("/v1/storage/"):
            seen_auth.append(request.headers.get("authorization"))
        return original(request)

    provider._transport = httpx.MockTransport(handle)
    caplog.set_level(logging.DEBUG)
    fake.fail("POST", "/fine-tunes", status=500, times=2)
    job = provider.start(make_spec(tmp_path))
    provider.wait(job.id)
    assert seen_auth == [None]  # the presigned PUT never carries the key
    dump = caplog.text + json.dumps([dict(r) for r in store.list_jobs()], default=str)
    assert CANARY_KEY not in dump
    assert "TOGETHER_API_KEY" in secret_env_names()


def test_registry_and_base_url(monkeypatch):
    assert provider_class("together") is TogetherProvider
    assert backend_for_url("https://api.together.xyz/v1") == "together"
    monkeypatch.setenv("TOGETHER_BASE_URL", "http://127.0.0.1:9/")
    assert together_base_url() == "http://127.0.0.1:9/v1"
