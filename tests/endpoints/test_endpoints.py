"""Named endpoints over the store (tuneport.endpoints.registry): checks, secret refusal, and a finished job's endpoint."""

from __future__ import annotations

import pytest

from tuneport.endpoints.client import resolve_endpoint
from tuneport.endpoints.registry import add_endpoint, list_endpoints, register_job_endpoint, remove_endpoint
from tuneport.errors import EndpointError, StoreError
from tuneport.jobs.store import Store


@pytest.fixture
def store() -> Store:
    with Store() as s:
        yield s


def test_add_list_remove(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "x")
    monkeypatch.delenv("OTHER_KEY", raising=False)
    add_endpoint(
        store, "hosted", base_url="https://api.openai.com/v1/", model="gpt-4o-mini", api_key_env="MY_KEY"
    )
    add_endpoint(
        store, "local", base_url="http://127.0.0.1:8000/v1", model="tiny-chat", api_key_env="OTHER_KEY"
    )
    rows = {row["name"]: row for row in list_endpoints(store)}
    assert rows["hosted"]["base_url"] == "https://api.openai.com/v1" and rows["hosted"]["kind"] == "openai"
    assert rows["hosted"]["key_set"] is True and rows["local"]["key_set"] is False
    assert rows["local"]["kind"] == "url"
    with pytest.raises(StoreError, match="already exists"):
        add_endpoint(store, "local", base_url="http://127.0.0.1:9/v1", model="m")
    add_endpoint(store, "local", base_url="http://127.0.0.1:9/v1", model="m", replace=True)
    assert resolve_endpoint("local", store=store).base_url == "http://127.0.0.1:9/v1"
    remove_endpoint(store, "local")
    assert [row["name"] for row in list_endpoints(store)] == ["hosted"]
    with pytest.raises(EndpointError, match="No endpoint named 'local'"):
        remove_endpoint(store, "local")


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"name": "has space"}, "whitespace"),
        ({"name": "a#b"}, "'#'"),
        ({"name": ""}, "non-empty"),
        ({"base_url": "127.0.0.1:8000/v1"}, "not an http"),
        ({"model": " "}, "needs a model"),
        ({"kind": "vllm"}, "Unknown endpoint kind"),
    ],
)
def test_bad_definitions_are_refused(store: Store, kwargs: dict, text: str) -> None:
    args = {"name": "e", "base_url": "http://h/v1", "model": "m", **kwargs}
    with pytest.raises(EndpointError, match=text) as info:
        add_endpoint(store, args.pop("name"), **args)
    assert info.value.hint
    assert store.list_endpoints() == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_key_env": "sk-proj-abcdefghijklmnopqrstuvwx"},
        {"base_url": "https://user:hunter2@h/v1"},
        {"model": "sk-abcdefghijklmnopqrstuvwxyz012345"},
    ],
)
def test_secrets_are_never_stored(store: Store, kwargs: dict) -> None:
    args = {"base_url": "http://h/v1", "model": "m", **kwargs}
    with pytest.raises(StoreError, match="(?i)refusing|environment variable") as info:
        add_endpoint(store, "e", **args)
    assert "environment variable" in (info.value.hint or "")
    assert store.list_endpoints() == []


def _job(store: Store, job_id: str, backend: str, model: str | None, status: str = "succeeded") -> dict:
    return store.insert_job(job_id, backend=backend, status=status, model="tiny-chat", fine_tuned_model=model)


def test_register_local_job(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNEPORT_LOCAL_BASE_URL", raising=False)
    row = register_job_endpoint(store, _job(store, "ftjob-local1", "local", "ft:tiny-chat:demo:abc"))
    assert row["name"] == "ft:tiny-chat:demo:abc" and row["base_url"] == "http://127.0.0.1:8000/v1"
    assert row["kind"] == "local" and row["api_key_env"] is None and row["job_id"] == "ftjob-local1"
    ep = resolve_endpoint("ft:tiny-chat:demo:abc", store=store)  # a saved name wins over other forms
    assert ep.model == "ft:tiny-chat:demo:abc" and ep.job_id == "ftjob-local1"
    monkeypatch.setenv("TUNEPORT_LOCAL_BASE_URL", "http://10.0.0.5:9000/v1/")
    again = register_job_endpoint(store, store.get_job("ftjob-local1"))  # idempotent: same name, updated
    assert again["name"] == row["name"] and again["base_url"] == "http://10.0.0.5:9000/v1"
    assert len(store.list_endpoints()) == 1


def test_register_hosted_job_and_name_clash(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    model = "ft:gpt-4o-mini-2024-07-18:org::A1b2C3"
    add_endpoint(store, model, base_url="http://my-proxy/v1", model=model)  # the user's own, same name
    row = register_job_endpoint(store, _job(store, "ftjob-abcdef123456", "openai", model))
    assert row["name"] == f"{model}@ef123456" and row["base_url"] == "https://api.openai.com/v1"
    assert row["api_key_env"] == "OPENAI_API_KEY" and row["kind"] == "openai"
    assert store.get_endpoint(model)["base_url"] == "http://my-proxy/v1"  # left as the user saved it


def test_register_refuses_unfinished_job(store: Store) -> None:
    with pytest.raises(EndpointError, match="running"):
        register_job_endpoint(store, _job(store, "ftjob-run", "local", None, status="running"))
