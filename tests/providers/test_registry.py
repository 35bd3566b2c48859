"""The provider registry: names to backends, imported lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tuneport.errors import ProviderError
from tuneport.providers import registry
from tuneport.providers.base import NotSupportedError, Provider
from tuneport.providers.openai import OpenAIProvider


@pytest.fixture(autouse=True)
def _restore_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_openai_is_built_in():
    assert "openai" in registry.provider_names()
    provider = registry.get_provider("openai", store=False, api_key="sk-test-registry-000000000")
    assert isinstance(provider, OpenAIProvider)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ProviderError) as info:
        registry.get_provider("nope")
    assert "openai" in info.value.hint


def test_lazy_registration_imports_only_on_use():
    code = (
        "import sys\n"
        "from tuneport.providers.registry import register_provider, provider_class\n"
        "register_provider('demo', 'tuneport.providers.openai:OpenAIProvider')\n"
        "assert 'tuneport.providers.openai' not in sys.modules\n"
        "print(provider_class('demo').__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "OpenAIProvider"


def test_a_broken_lazy_target_is_a_provider_error():
    registry.register_provider("broken", "tuneport.no_such_module:Thing")
    with pytest.raises(ProviderError, match="cannot be loaded"):
        registry.provider_class("broken")


def test_taken_names_need_replace():
    class Other(OpenAIProvider):
        name = "other"

    registry.register_provider("other", Other)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_provider("other", OpenAIProvider)
    registry.register_provider("other", OpenAIProvider, replace=True)
    assert registry.provider_class("other") is OpenAIProvider
    with pytest.raises(ValueError):
        registry.register_provider("x", "no-colon")


def test_pause_is_not_supported_unless_a_backend_implements_it():
    class Minimal(Provider):
        name = "minimal"
        upload = create = get = list = cancel = events = checkpoints = endpoint = lambda *a, **k: None  # noqa: E731

    with pytest.raises(NotSupportedError, match="minimal"):
        Minimal().pause("job")


def test_jobs_list_shows_hosted_and_local_jobs_together_without_a_network_call(monkeypatch):
    import json

    from click.testing import CliRunner

    from tuneport.cli.main import cli
    from tuneport.jobs.store import Store
    from tuneport.providers.registry import list_stored_jobs

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a network call would fail for want of a key
    with Store() as store:
        store.upsert_job("ftjob-hosted1", backend="openai", status="succeeded", model="gpt-4.1-mini-2025-04-14",
                         fine_tuned_model="ft:gpt-4.1-mini-2025-04-14:org::abc", training_file="file-abc",
                         created_at=100)  # fmt: skip
        store.insert_job("ftjob-local1", backend="local", status="failed", model="tiny-chat",
                         training_file="/data/train.jsonl", created_at=200,
                         error={"code": "invalid_training_file", "message": "bad line 3", "param": None})  # fmt: skip
        jobs, has_more = list_stored_jobs(store=store)
    assert [(b, j.id) for b, j in jobs] == [("local", "ftjob-local1"), ("openai", "ftjob-hosted1")]
    assert not has_more
    result = CliRunner().invoke(cli, ["jobs", "list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["data"]
    assert [(j["backend"], j["id"], j["status"]) for j in data] == [
        ("local", "ftjob-local1", "failed"),
        ("openai", "ftjob-hosted1", "succeeded"),
    ]
    table = CliRunner().invoke(cli, ["jobs", "list"])
    assert "ftjob-hosted1" in table.output and "openai" in table.output and "ftjob-local1" in table.output
