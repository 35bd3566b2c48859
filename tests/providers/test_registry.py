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
