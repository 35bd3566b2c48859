"""The Azure provider against the fake Azure resource: what differs from OpenAI, and the deployment step."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fake_azure import ARM_TOKEN, AZURE_KEY, ENDPOINT, FakeAzure

from tuneport.cost.retirements import retired_problem
from tuneport.errors import APIConnectionError, AuthenticationError, ProviderError, SpecError
from tuneport.http import RetryPolicy
from tuneport.providers.azure import DEFAULT_API_VERSION, AzureProvider, deployment_name_for
from tuneport.providers.registry import provider_class
from tuneport.spec.jobspec import JobSpec

LINE = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write_dataset(path, n=12):
    path.write_text("".join(json.dumps(LINE) + "\n" for _ in range(n)))
    return path


def make_spec(tmp_path, **extra):
    data = {"model": "gpt-4.1-mini-2025-04-14", "training_file": "train.jsonl", "backend": "azure", **extra}
    return JobSpec.from_dict(data, base_dir=tmp_path)


@pytest.fixture
def fake() -> FakeAzure:
    return FakeAzure()


@pytest.fixture
def azure(fake, store, monkeypatch) -> AzureProvider:
    for name in ("AZURE_OPENAI_API_VERSION", "OPENAI_API_VERSION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    p = AzureProvider(store=store, transport=fake.transport, arm_transport=fake.transport, poll_interval=0.0,
                      retry=RetryPolicy(max_attempts=4, initial_backoff=0.5, jitter=0.0, sleep=lambda s: None),
                      sleep=lambda s: None)  # fmt: skip
    yield p
    p.close()


@pytest.fixture
def arm_env(monkeypatch):
    for name, value in {"AZURE_SUBSCRIPTION_ID": "sub-1", "AZURE_RESOURCE_GROUP": "rg", "AZURE_OPENAI_RESOURCE":
                        "tuneport-test", "AZURE_ACCESS_TOKEN": ARM_TOKEN}.items():  # fmt: skip
        monkeypatch.setenv(name, value)


def test_registered_as_one_line_and_refuses_keys_in_the_store():
    cls = provider_class("azure")
    assert cls is AzureProvider and cls.paid and set(cls.secret_env) == {"AZURE_OPENAI_API_KEY", "AZURE_ACCESS_TOKEN"}
    assert cls.owns_base_url(f"{ENDPOINT}/openai/deployments/x?api-version=1")
    assert not cls.owns_base_url("https://api.openai.com/v1")
    assert cls.auth_headers("k") == {"api-key": "k"}


def test_a_job_runs_with_api_version_key_header_and_pending_mapped(azure, fake, tmp_path, store):
    write_dataset(tmp_path / "train.jsonl")
    job = azure.start(make_spec(tmp_path, metadata={"azure_training_type": "Global"}))
    assert job.status == "queued" and job.azure_status == "pending"
    body = fake.bodies[-1]
    assert body["trainingType"] == "GlobalStandard" and "azure_training_type" not in body["metadata"]
    assert all(p.get("api-version") == DEFAULT_API_VERSION for _, _, p in fake.requests)
    assert all(h.get("api-key") == AZURE_KEY and "authorization" not in h for h in fake.headers_seen)
    assert fake.count("GET", r"/files/file-.*") >= 1  # waited for "processed" before creating the job
    done = azure.wait(job.id, poll=0)
    assert done.status == "succeeded" and done.fine_tuned_model.startswith("gpt-4.1-mini-2025-04-14.ft-")
    assert store.get_job(job.id)["backend"] == "azure"
    assert AZURE_KEY not in json.dumps(store.get_job(job.id), default=str)


def test_api_version_comes_from_the_environment(fake, store, monkeypatch, tmp_path):
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    p = AzureProvider(store=store, transport=fake.transport)
    p.list()
    assert fake.requests[-1][2]["api-version"] == "2024-10-21"


def test_missing_endpoint_or_key_is_clear_before_any_request(fake, store, monkeypatch):
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    with pytest.raises(AuthenticationError, match="AZURE_OPENAI_ENDPOINT"):
        AzureProvider(store=store, transport=fake.transport).list()
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", ENDPOINT)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    with pytest.raises(AuthenticationError, match="AZURE_OPENAI_API_KEY"):
        AzureProvider(store=store, transport=fake.transport).list()
    assert fake.requests == []


def test_bad_key_is_typed_and_never_shown(fake, store, monkeypatch, caplog):
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", ENDPOINT)
    p = AzureProvider(api_key="azkey-wrong-1234567890", store=store, transport=fake.transport)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as info:
        p.list()
    assert "azkey-wrong-1234567890" not in str(info.value) + caplog.text


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"model": "gpt-3.5-turbo-0125"}, "gpt-4.1-2025-04-14"),  # the error lists what Azure can train
        ({"model": "o4-mini"}, "supervised or DPO"),
        ({"metadata": {"azure_training_type": "Spot"}}, "Standard, Global, Developer"),
        ({"model": "gpt-4o-mini", "metadata": {"azure_training_type": "Developer"}}, "cannot be trained with"),
        ({"integrations": [{"type": "wandb", "wandb": {"project": "p"}}]}, "integrations"),
    ],
)
def test_what_azure_cannot_do_is_refused_before_any_upload(azure, fake, tmp_path, extra, match):
    write_dataset(tmp_path / "train.jsonl")
    with pytest.raises(SpecError) as info:
        azure.start(make_spec(tmp_path, **extra))
    assert match in f"{info.value} {info.value.hint}"
    assert fake.requests == []


def test_a_retired_model_is_refused(tmp_path):
    import datetime as dt

    assert retired_problem("gpt-4o-mini", "azure", label="Azure OpenAI", today=dt.date(2027, 4, 2))
    assert retired_problem("gpt-4o-mini", "azure", label="Azure OpenAI", today=dt.date(2027, 3, 31)) is None


def test_ambiguous_create_on_the_last_attempt_is_found_even_without_metadata(fake, azure, tmp_path):
    fake.echo_metadata = False  # older api-versions drop metadata: the scan matches by file, model and suffix
    write_dataset(tmp_path / "train.jsonl")
    fake.fail("POST", "/fine_tuning/jobs", exc=httpx.ReadTimeout, after=True, times=4)
    job = azure.start(make_spec(tmp_path, suffix="x1"))
    assert len(fake.jobs) == 1 and job.id in fake.jobs


def test_a_create_that_failed_for_sure_is_not_mistaken_for_another_job(fake, azure, tmp_path):
    write_dataset(tmp_path / "train.jsonl")
    azure.start(make_spec(tmp_path, suffix="first"))
    fake.fail("POST", "/fine_tuning/jobs", exc=httpx.ReadTimeout, times=4)
    with pytest.raises(APIConnectionError) as info:
        azure.start(make_spec(tmp_path, suffix="second"))
    assert "running the command again is safe" in info.value.hint
    assert len(fake.jobs) == 1


def test_deploy_list_undeploy_and_the_endpoint(azure, fake, tmp_path, store, arm_env):
    write_dataset(tmp_path / "train.jsonl")
    job = azure.wait(azure.start(make_spec(tmp_path)).id, poll=0)
    with pytest.raises(ProviderError, match="answers only once it is deployed") as info:
        AzureProvider.finished_job_endpoint(job.id, job.fine_tuned_model)
    assert f"tuneport jobs deploy {job.id}" in info.value.hint
    view = azure.deploy(job.id)
    assert view["name"] == deployment_name_for(job.id) and view["model"] == job.fine_tuned_model
    assert fake.deployments[view["name"]]["properties"]["model"]["format"] == "OpenAI"
    endpoint = azure.endpoint(azure.get(job.id))
    assert endpoint.base_url == f"{ENDPOINT}/openai/deployments/{view['name']}?api-version={DEFAULT_API_VERSION}"
    assert endpoint.api_key_env == "AZURE_OPENAI_API_KEY" and endpoint.kind == "azure"
    for extra in ("b", "c"):
        azure.deploy(job.id, name=f"{view['name']}-{extra}")
    assert len(azure.list_deployments()) == 3  # two ARM pages, followed through nextLink
    azure.undeploy(view["name"])
    assert view["name"] not in fake.deployments


def test_deploy_without_the_control_plane_says_what_to_run(azure, fake, tmp_path, monkeypatch):
    for name in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_OPENAI_RESOURCE", "AZURE_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    write_dataset(tmp_path / "train.jsonl")
    job = azure.wait(azure.start(make_spec(tmp_path)).id, poll=0)
    with pytest.raises(ProviderError, match="AZURE_SUBSCRIPTION_ID") as info:
        azure.deploy(job.id)
    assert "az cognitiveservices account deployment create" in (info.value.hint or "")


def test_inference_client_sends_api_key_and_api_version_to_a_deployment(monkeypatch):
    import asyncio

    from tuneport.endpoints.client import ChatEndpoint, InferenceClient

    seen = {}
    ep = ChatEndpoint("ft", f"{ENDPOINT}/openai/deployments/d1?api-version=2024-10-21", "d1", "AZURE_OPENAI_API_KEY",
                      "azure")  # fmt: skip
    assert ep.url == f"{ENDPOINT}/openai/deployments/d1/chat/completions?api-version=2024-10-21"
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    client = InferenceClient()
    seen.update(client._auth_headers(ep))
    assert seen == {"api-key": AZURE_KEY}
    asyncio.run(client.aclose())


def test_prices_compare_base_and_fine_tuned(monkeypatch):
    from tuneport.providers.openai import OpenAIProvider

    base = OpenAIProvider.inference_prices("gpt-4o-mini-2024-07-18")
    tuned = OpenAIProvider.inference_prices("ft:gpt-4o-mini-2024-07-18:org::abc")
    assert (base.input_per_1m, base.output_per_1m) == (tuned.input_per_1m / 2, tuned.output_per_1m / 2)
    assert "base model" in base.note and "fine-tuned" in tuned.note
    azure = AzureProvider.inference_prices("gpt-4.1-mini-2025-04-14.ft-abc")
    assert azure is not None and "/hour" in azure.note and azure.as_of
