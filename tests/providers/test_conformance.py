"""The same checks for every hosted backend, each against its fake: upload, create, list, get, events after a cursor,
checkpoints, cancel, the endpoint of a finished job, typed errors, and the fault matrix (0 duplicate jobs, 0 lost
events). A backend joins by one entry in ``BACKENDS``.

Not yet here: the local backend (its jobs need the trainer; tests/providers/test_local_provider.py covers it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tuneport.errors import APIStatusError, ProviderError
from tuneport.http import RetryPolicy
from tuneport.spec.jobspec import JobSpec

LINES = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
         for i in range(20)]  # fmt: skip


@dataclass
class Backend:
    name: str
    model: str
    make: Callable[[Any, Any, Any], Any]  # (fake, store, monkeypatch) -> provider
    fake: Callable[[], Any]
    create: str  # the create route's pattern, as the fake's ``fail`` takes it
    jobs: Callable[[Any], int]  # how many jobs the fake holds
    events: Callable[[Any, str], int]  # how many events the fake holds for a job


def _retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=4, initial_backoff=0.01, jitter=0.0, sleep=lambda s: None)


def _openai(fake, store, monkeypatch):
    from fake_openai import CANARY_KEY

    from tuneport.providers.openai import OpenAIProvider

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return OpenAIProvider(api_key=CANARY_KEY, store=store, transport=fake.transport, retry=_retry(), poll_interval=0)


def _azure(fake, store, monkeypatch):
    from fake_azure import AZURE_KEY, ENDPOINT

    from tuneport.providers.azure import AzureProvider

    return AzureProvider(api_key=AZURE_KEY, endpoint=ENDPOINT, store=store, transport=fake.transport,
                         retry=_retry(), poll_interval=0, sleep=lambda s: None)  # fmt: skip


def _together(fake, store, monkeypatch):
    from fake_together import CANARY_KEY

    from tuneport.providers.together import TogetherProvider

    monkeypatch.setenv("TOGETHER_API_KEY", CANARY_KEY)
    monkeypatch.delenv("TOGETHER_BASE_URL", raising=False)
    return TogetherProvider(store=store, transport=fake.transport, retry=_retry(), poll_interval=0)


def _fake(module: str, cls: str, **kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        mod = __import__(module)
        if module == "fake_openai":
            kw.setdefault("api_key", mod.CANARY_KEY)
        return getattr(mod, cls)(**kw)

    return build


BACKENDS = [
    Backend("openai", "gpt-4o-mini-2024-07-18", _openai, _fake("fake_openai", "FakeOpenAI"), "/fine_tuning/jobs",
            lambda f: len(f.jobs), lambda f, j: len(f.events[j])),
    Backend("azure", "gpt-4o-mini-2024-07-18", _azure, _fake("fake_azure", "FakeAzure"), "/fine_tuning/jobs",
            lambda f: len(f.jobs), lambda f, j: len(f.events[j])),
    Backend("together", "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", _together,
            _fake("fake_together", "FakeTogether"), "/fine-tunes", lambda f: len(f.jobs),
            lambda f, j: len(f.jobs[j].get("events", [])) if isinstance(f.jobs[j], dict) else 0),
]  # fmt: skip


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request) -> Backend:
    return request.param


@pytest.fixture
def env(backend, store, monkeypatch, tmp_path):
    fake = backend.fake()
    provider = backend.make(fake, store, monkeypatch)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in LINES))
    spec = JobSpec.from_dict({"model": backend.model, "training_file": "train.jsonl", "backend": backend.name},
                             base_dir=tmp_path)  # fmt: skip
    yield fake, provider, spec
    provider.close()


def test_upload_create_list_get_events_checkpoints_endpoint(env, backend):
    fake, provider, spec = env
    job = provider.start(spec)
    assert provider.list(limit=5).data[0].id == job.id
    done = provider.wait(job.id, poll=0)
    assert done.status == "succeeded" and done.fine_tuned_model
    events = list(provider.iter_events(job.id, page_size=2))
    assert len({e.id for e in events}) == len(events) > 0
    assert [e.created_at for e in events] == sorted(e.created_at for e in events)
    later = list(provider.iter_events(job.id, after=events[0].id))
    assert [e.id for e in later] == [e.id for e in events[1:]]  # events after a cursor: none lost, none twice
    assert provider.checkpoints(job.id).data
    try:
        endpoint = provider.endpoint(done)
        assert endpoint.base_url and endpoint.model
    except ProviderError as exc:  # Azure: the model must be deployed first, and the error says how
        assert "deploy" in f"{exc} {exc.hint}"


def test_cancel_and_typed_errors(env, backend):
    fake, provider, spec = env
    job = provider.start(spec)
    assert provider.cancel(job.id).status == "cancelled"
    with pytest.raises(APIStatusError) as missing:
        provider.get("ftjob-does-not-exist")
    assert missing.value.status_code == 404


FAULTS = {
    "429 + Retry-After": {"status": 429, "headers": {"Retry-After": "0"}},
    "503": {"status": 503},
    "connection reset": {"exc": httpx.ReadError},
    "timeout": {"exc": httpx.ReadTimeout},
}


@pytest.mark.parametrize("fault", [*FAULTS, "ambiguous create on the last attempt"])
def test_fault_matrix_no_duplicate_jobs_no_lost_events(env, backend, fault):
    fake, provider, spec = env
    if fault in FAULTS:
        fake.fail("POST", backend.create, times=2, **FAULTS[fault])
    else:
        fake.fail("POST", backend.create, times=4, after=True, exc=httpx.ReadTimeout)
    job = provider.start(spec)
    assert backend.jobs(fake) == 1, "a retried create started a second job"
    provider.wait(job.id, poll=0)
    seen = [e.id for e in provider.iter_events(job.id, page_size=3)]
    assert len(seen) == len(set(seen))
    if backend.name != "together":
        assert len(seen) == backend.events(fake, job.id), "events were lost"
