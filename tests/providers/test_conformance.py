"""The same checks for every backend: upload, create, list, get, events after a cursor, checkpoints, cancel, the
endpoint of a finished job, typed errors -- the hosted ones against their fakes, the local one training tiny-chat
for real -- and, for the hosted ones, the fault matrix (0 duplicate jobs, 0 lost events). A backend joins by one
entry in ``BACKENDS``.

The fault matrix does not apply to the local backend by design: it makes no network request (its jobs are rows in
the store and a runner process), which :func:`test_the_local_backend_has_no_network_path` asserts.
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
    #: whether it talks to a service over the network (and so has a fault matrix)
    networked: bool = True


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


def _local(fake, store, monkeypatch):
    from tuneport.providers.local import LocalProvider

    return LocalProvider(store=store)


BACKENDS = [
    Backend("openai", "gpt-4o-mini-2024-07-18", _openai, _fake("fake_openai", "FakeOpenAI"), "/fine_tuning/jobs",
            lambda f: len(f.jobs), lambda f, j: len(f.events[j])),
    Backend("azure", "gpt-4o-mini-2024-07-18", _azure, _fake("fake_azure", "FakeAzure"), "/fine_tuning/jobs",
            lambda f: len(f.jobs), lambda f, j: len(f.events[j])),
    Backend("together", "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", _together,
            _fake("fake_together", "FakeTogether"), "/fine-tunes", lambda f: len(f.jobs),
            lambda f, j: len(f.jobs[j].get("events", [])) if isinstance(f.jobs[j], dict) else 0),
    Backend("local", "<tiny-chat>", _local, lambda: None, "", lambda f: 0, lambda f, j: 0, networked=False),
]  # fmt: skip
HOSTED = [b for b in BACKENDS if b.networked]


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory) -> str:
    pytest.importorskip("peft")
    from tuneport.fixtures.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-chat") / "tiny-chat", seed=0))


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request) -> Backend:
    return request.param


@pytest.fixture(params=HOSTED, ids=lambda b: b.name)
def hosted(request) -> Backend:
    return request.param


def _env(backend: Backend, request, monkeypatch, tmp_path):
    from tuneport.jobs.store import Store

    # the local backend's runner process finds its job in the default store (this test's TUNEPORT_HOME)
    store = Store() if not backend.networked else request.getfixturevalue("store")
    model = request.getfixturevalue("tiny_chat") if not backend.networked else backend.model
    fake = backend.fake()
    provider = backend.make(fake, store, monkeypatch)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in LINES))
    extra = {} if backend.networked else {"hyperparameters": {"n_epochs": 1, "batch_size": 4},
                                          "local": {"max_seq_length": 256}}  # fmt: skip
    spec = JobSpec.from_dict({"model": model, "training_file": "train.jsonl", "backend": backend.name, **extra},
                             base_dir=tmp_path)  # fmt: skip
    return fake, provider, spec, store


@pytest.fixture
def env(backend, request, monkeypatch, tmp_path):
    fake, provider, spec, store = _env(backend, request, monkeypatch, tmp_path)
    yield fake, provider, spec
    provider.close()
    if not backend.networked:
        store.close()


@pytest.fixture
def hosted_env(hosted, request, monkeypatch, tmp_path):
    fake, provider, spec, _ = _env(hosted, request, monkeypatch, tmp_path)
    yield fake, provider, spec
    provider.close()


def test_upload_create_list_get_events_checkpoints_endpoint(env, backend):
    fake, provider, spec = env
    job = provider.start(spec)
    assert provider.list(limit=5).data[0].id == job.id
    done = provider.wait(job.id, poll=0 if backend.networked else 0.5, timeout=None if backend.networked else 300)
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
    if not backend.networked:
        provider.launch = False  # no runner: the request is what the local backend's cancel does
    job = provider.start(spec)
    if backend.networked:
        assert provider.cancel(job.id).status == "cancelled"
    else:  # the job's runner acts on the request (saving a checkpoint first); here it is asked, not yet done
        from tuneport.local_backend.training import jobs as J

        assert provider.cancel(job.id).status not in ("failed", "succeeded")
        assert J.read_request(job.id)["action"] == "cancel"
    if not backend.networked:  # no HTTP here: a typed ProviderError with OpenAI's not_found code
        with pytest.raises(ProviderError) as info:
            provider.get("ftjob-does-not-exist")
        assert info.value.code == "not_found" and "tuneport jobs list" in (info.value.hint or "")
        return
    with pytest.raises(APIStatusError) as missing:
        provider.get("ftjob-does-not-exist")
    assert missing.value.status_code == 404


def test_the_local_backend_has_no_network_path(monkeypatch, tmp_path, request):
    """Why the fault matrix leaves the local backend out: upload, create, list, get, events and cancel make no
    network request at all (every socket connection fails here, and none is tried)."""
    import socket

    local = next(b for b in BACKENDS if b.name == "local")
    assert not local.networked and local not in HOSTED and {b.name for b in HOSTED} == {"openai", "azure", "together"}
    tried: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        tried.append(args)
        raise OSError("no network in this test")

    fake, provider, spec, store = _env(local, request, monkeypatch, tmp_path)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    provider.launch = False
    try:
        job = provider.start(spec)
        assert provider.list(limit=5).data[0].id == job.id and provider.get(job.id).id == job.id
        assert list(provider.iter_events(job.id))
        provider.cancel(job.id)
        from tuneport.local_backend.training import jobs as J

        assert J.read_request(job.id)["action"] == "cancel"  # asked of its runner through the store's folder
    finally:
        provider.close()
        store.close()
    assert tried == []


FAULTS = {
    "429 + Retry-After": {"status": 429, "headers": {"Retry-After": "0"}},
    "503": {"status": 503},
    "connection reset": {"exc": httpx.ReadError},
    "timeout": {"exc": httpx.ReadTimeout},
}


@pytest.mark.parametrize("fault", [*FAULTS, "ambiguous create on the last attempt"])
def test_fault_matrix_no_duplicate_jobs_no_lost_events(hosted_env, hosted, fault):
    fake, provider, spec = hosted_env
    backend = hosted
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
