"""The hosted backends from the command line, against their fakes: Azure's deployment commands, deadlines in
`jobs list` and the once-per-process notice, retired models refused before any upload, and `tuneport import`
for azure and together beside openai."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest
from fake_azure import ARM_TOKEN, AZURE_KEY, ENDPOINT, FakeAzure
from fake_openai import CANARY_KEY as OPENAI_KEY
from fake_openai import FakeOpenAI
from fake_together import CANARY_KEY as TOGETHER_KEY
from fake_together import FakeTogether

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from _cli import tp  # noqa: E402

from tuneport.cost import retirements  # noqa: E402
from tuneport.errors import NotSupportedError, ProviderError, SpecError  # noqa: E402
from tuneport.http import RetryPolicy  # noqa: E402
from tuneport.jobs.store import Store  # noqa: E402
from tuneport.spec.jobspec import JobSpec, load_spec  # noqa: E402

LINES = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
         for i in range(12)]  # fmt: skip
TOGETHER_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


def _retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=3, initial_backoff=0.01, jitter=0.0, sleep=lambda s: None)


@pytest.fixture(autouse=True)
def _fresh_notices(monkeypatch):
    """Each test is a fresh process as far as the once-per-process notice goes."""
    monkeypatch.setattr(retirements, "_warned", set())


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in LINES))
    return path


@pytest.fixture
def azure_env(monkeypatch):
    values = {"AZURE_OPENAI_ENDPOINT": ENDPOINT, "AZURE_OPENAI_API_KEY": AZURE_KEY, "AZURE_SUBSCRIPTION_ID": "sub-1",
              "AZURE_RESOURCE_GROUP": "rg", "AZURE_OPENAI_RESOURCE": "tuneport-test", "AZURE_ACCESS_TOKEN": ARM_TOKEN}
    for name, value in values.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    for name in ("AZURE_OPENAI_API_VERSION", "OPENAI_API_VERSION"):
        monkeypatch.delenv(name, raising=False)


def _wire(monkeypatch, factories: dict) -> None:
    """Every provider the CLI builds for a backend is one wired to that backend's fake (with the options it asks)."""
    from tuneport.providers import registry

    real = registry.get_provider

    def get_provider(name: str, **options):
        return factories[name](**options) if name in factories else real(name, **options)

    monkeypatch.setattr(registry, "get_provider", get_provider)


@pytest.fixture
def azure(monkeypatch, azure_env):
    from tuneport.providers.azure import AzureProvider

    fake = FakeAzure()

    def make(**options):
        return AzureProvider(transport=fake.transport, arm_transport=fake.transport, poll_interval=0.0,
                             retry=_retry(), sleep=lambda s: None, **options)  # fmt: skip

    _wire(monkeypatch, {"azure": make})
    return fake, make


@pytest.fixture
def together(monkeypatch):
    from tuneport.providers.together import TogetherProvider

    fake = FakeTogether()
    monkeypatch.setenv("TOGETHER_API_KEY", TOGETHER_KEY)
    monkeypatch.delenv("TOGETHER_BASE_URL", raising=False)

    def make(**options):
        return TogetherProvider(transport=fake.transport, retry=_retry(), poll_interval=0, **options)

    _wire(monkeypatch, {"together": make})
    return fake, make


def _azure_job(make, tmp_path: Path, data: Path, **extra) -> str:
    spec = JobSpec.from_dict({"model": "gpt-4o-mini-2024-07-18", "training_file": data.name, "backend": "azure",
                              "suffix": "support", "seed": 11, **extra}, base_dir=tmp_path)  # fmt: skip
    with make() as provider:  # the default store: the one the CLI reads
        return provider.wait(provider.start(spec).id, poll=0).id


# -- Azure's deployment step ----------------------------------------------------------------------------------


def test_deploy_deployments_undeploy_through_the_cli(azure, tmp_path, data, capsys):
    fake, make = azure
    job_id = _azure_job(make, tmp_path, data)
    code, out, err = tp(capsys, "jobs", "deploy", job_id, "--name", "support-v1", "--json")
    assert code == 0, err
    view = json.loads(out)
    assert view["name"] == "support-v1" and view["model"].startswith("gpt-4o-mini-2024-07-18.ft-")
    assert fake.deployments["support-v1"]["properties"]["model"]["name"] == view["model"]
    with Store() as store:  # the deployment became a saved endpoint, named after the fine-tuned model
        row = store.get_endpoint(view["model"])
    assert row["kind"] == "azure" and "/openai/deployments/support-v1?api-version=" in row["base_url"]

    code, out, err = tp(capsys, "jobs", "deployments")
    assert code == 0, err
    assert "support-v1" in out and view["model"][:20] in out

    code, out, err = tp(capsys, "jobs", "undeploy", "support-v1", "--backend", "azure")
    assert code == 0, err
    assert "deleted deployment support-v1" in out and "support-v1" not in fake.deployments
    with Store() as store:
        assert store.get_endpoint(view["model"]) is None
    code, out, _ = tp(capsys, "jobs", "deployments", "--json")
    assert json.loads(out)["data"] == []


def test_deploy_a_job_that_is_not_done_says_how_to_wait(azure, tmp_path, data, capsys):
    fake, make = azure
    fake.auto_advance = False
    spec = JobSpec.from_dict({"model": "gpt-4o-mini-2024-07-18", "training_file": data.name, "backend": "azure"},
                             base_dir=tmp_path)  # fmt: skip
    with make() as provider:
        job = provider.start(spec)
    code, _, err = tp(capsys, "jobs", "deploy", job.id)
    assert code == ProviderError.exit_code
    assert "no fine-tuned model to deploy yet" in err and f"tuneport jobs wait {job.id}" in err
    assert fake.deployments == {}


def test_a_backend_without_deployments_says_so(together, tmp_path, data, capsys):
    fake, make = together
    with make() as provider:
        job = provider.create_from_body({"training_file": provider.upload(data).id, "model": TOGETHER_MODEL,
                                         "n_epochs": 1, "learning_rate": 1e-4})  # fmt: skip
    code, _, err = tp(capsys, "jobs", "deploy", job.id)
    assert code == NotSupportedError.exit_code
    assert "needs no deployment" in err and "endpoints list" in err
    code, _, err = tp(capsys, "jobs", "deployments", "--backend", "together")
    assert code == NotSupportedError.exit_code and "no deployments" in err


# -- deadlines --------------------------------------------------------------------------------------------------


def test_jobs_list_shows_shutdown_dates_and_days_left(azure, tmp_path, data, capsys):
    fake, make = azure
    job_id = _azure_job(make, tmp_path, data)
    code, out, err = tp(capsys, "jobs", "list", "--json")
    assert code == 0, err
    row = next(j for j in json.loads(out)["data"] if j["id"] == job_id)
    shutdown = retirements.shutdown_of("gpt-4o-mini-2024-07-18", "azure")
    assert row["shutdown"] == {"date": shutdown.date.isoformat(), "days_left": shutdown.days_left(),
                               "source": shutdown.source, "as_of": shutdown.as_of}  # fmt: skip
    assert row["shutdown"]["date"].startswith("2027-10") and "retirement schedule" in row["shutdown"]["source"]
    code, out, err = tp(capsys, "jobs", "list")
    assert code == 0, err
    assert "shuts down (days left)" in out and f"{shutdown.date.isoformat()} ({shutdown.days_left()})" in out
    assert f"as of {shutdown.as_of}" in err


def test_an_openai_job_lists_openais_shutdown(monkeypatch, tmp_path, data, capsys):
    from tuneport.providers.openai import OpenAIProvider

    fake = FakeOpenAI(api_key=OPENAI_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    spec = JobSpec.from_dict({"model": "gpt-4.1-mini-2025-04-14", "training_file": data.name, "backend": "openai"},
                             base_dir=tmp_path)  # fmt: skip
    with OpenAIProvider(api_key=OPENAI_KEY, transport=fake.transport, retry=_retry(), poll_interval=0) as provider:
        job = provider.start(spec)
    code, out, _ = tp(capsys, "jobs", "list", "--json")
    row = next(j for j in json.loads(out)["data"] if j["id"] == job.id)
    assert row["shutdown"]["date"] == "2027-01-14" and row["backend"] == "openai"
    local = [j for j in json.loads(out)["data"] if j["backend"] == "local"]
    assert all(j["shutdown"] is None for j in local)


def test_the_notice_is_one_line_once_per_process(tmp_path, data, capsys):
    today = dt.date(2026, 12, 4)
    notice = retirements.retiring_notice("gpt-4o-mini-2024-07-18", "openai", label="OpenAI", today=today)
    assert notice == ("note: gpt-4o-mini-2024-07-18 on OpenAI takes no new fine-tuning jobs in 33 days (2027-01-06) "
                      "and stops answering in 41 days (2027-01-14): move it with `tuneport import openai JOB_ID` "
                      "and keep its scores with `tuneport eval record`.")  # fmt: skip
    assert retirements.retiring_notice("gpt-4o-mini-2024-07-18", "openai", label="OpenAI",
                                       today=dt.date(2026, 10, 1)) is None  # fmt: skip
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"model: gpt-4o-mini-2024-07-18\ntraining_file: {data.name}\nbackend: openai\n")
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(retirements, "days_left", lambda date, today=None: (date - dt.date(2026, 12, 4)).days)
        load_spec(spec_file)
        load_spec(spec_file)  # the same model again: nothing more
        from tuneport.endpoints.client import resolve_endpoint

        resolve_endpoint("openai:gpt-4o-mini-2024-07-18")  # an endpoint of it: still nothing more
        resolve_endpoint("http://127.0.0.1:9/v1#gpt-4o-mini-2024-07-18")  # a self-hosted server: never
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in 33 days (2027-01-06)" in err and "tuneport eval record" in err


def test_spec_check_and_chat_say_it_on_stderr(tmp_path, data, capsys, monkeypatch):
    monkeypatch.setattr(retirements, "days_left", lambda date, today=None: (date - dt.date(2026, 12, 20)).days)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"model: gpt-4.1-mini-2025-04-14\ntraining_file: {data.name}\nbackend: openai\n")
    code, out, err = tp(capsys, "spec", "check", str(spec_file))
    assert code == 0, err
    assert "gpt-4.1-mini-2025-04-14 on OpenAI" in err and "in 17 days (2027-01-06)" in err
    assert "note: gpt-4.1-mini" not in out  # stdout stays what scripts read


@pytest.mark.parametrize("backend", ["openai", "azure"])
def test_a_retired_model_is_refused_before_any_upload(backend, monkeypatch, tmp_path, data, azure_env):
    from tuneport.providers.azure import AzureProvider
    from tuneport.providers.openai import OpenAIProvider

    if backend == "openai":
        fake, model = FakeOpenAI(api_key=OPENAI_KEY), "gpt-4.1-nano-2025-04-14"  # shut down 2026-10-23
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        provider = OpenAIProvider(api_key=OPENAI_KEY, transport=fake.transport, retry=_retry(), store=False)
    else:  # Azure's gpt-4o family trains until 2027-04-01: look from the day after
        monkeypatch.setattr(retirements, "days_left", lambda date, today=None: (date - dt.date(2027, 4, 2)).days)
        fake, model = FakeAzure(), "gpt-4o-mini-2024-07-18"
        provider = AzureProvider(transport=fake.transport, retry=_retry(), store=False, sleep=lambda s: None)
    spec = JobSpec.from_dict({"model": model, "training_file": data.name, "backend": backend}, base_dir=tmp_path)
    with provider, pytest.raises(SpecError) as info:
        provider.start(spec)
    assert "was shut down" in info.value.message or "stopped taking fine-tuning jobs" in info.value.message
    assert "as of" in info.value.message and info.value.hint
    with pytest.raises(SpecError):
        type(provider).estimate(spec)  # `tuneport train` shows the estimate first: refused there too
    assert fake.requests == []  # nothing reached the service, least of all an upload


# -- tuneport import azure|together ------------------------------------------------------------------------------


def test_import_azure(azure, tmp_path, data, capsys):
    fake, make = azure
    job_id = _azure_job(make, tmp_path, data, hyperparameters={"n_epochs": 2, "batch_size": 4})
    out_dir = tmp_path / "imported"
    code, out, err = tp(capsys, "import", "azure", job_id, "-o", str(out_dir))
    assert code == NotSupportedError.exit_code and "--training-file PATH" in err  # Azure keeps training files
    assert not out_dir.exists()
    other = tmp_path / "other.jsonl"
    other.write_text(data.read_text()[:-40] + "\n")
    code, out, err = tp(capsys, "import", "azure", job_id, "-o", str(out_dir), "--training-file", str(other))
    assert code == SpecError.exit_code and "not the file the job was trained on" in err
    code, out, err = tp(capsys, "import", "azure", job_id, "-o", str(out_dir), "--training-file", str(data),
                        "--json")  # fmt: skip
    assert code == 0, err
    info = json.loads(out)
    assert info["backend"] == "azure" and info["azure_job_id"] == job_id
    assert (out_dir / "training.jsonl").read_bytes() == data.read_bytes()
    spec = load_spec(out_dir / "spec.yaml")
    assert spec.backend == "local" and spec.model == "tiny-chat" and spec.suffix == "support" and spec.seed == 11
    assert spec.hyperparameters.n_epochs == 2 and spec.hyperparameters.batch_size == 4
    assert spec.metadata["imported_from"] == "azure" and spec.metadata["azure_model"] == "gpt-4o-mini-2024-07-18"
    assert "tuneport_client_key" not in spec.metadata and "azure_training_type" not in spec.metadata
    assert "Imported from Azure OpenAI fine-tuning job" in (out_dir / "spec.yaml").read_text()


def test_import_together_keeps_the_rate_and_the_lora_settings(together, tmp_path, data, capsys):
    fake, make = together
    spec = JobSpec.from_dict({"model": TOGETHER_MODEL, "training_file": data.name, "backend": "together",
                              "suffix": "sup", "seed": 3, "hyperparameters": {"n_epochs": 2},
                              "local": {"learning_rate": 2e-4, "lora_r": 8, "lora_alpha": 16}},
                             base_dir=tmp_path)  # fmt: skip
    with make() as provider:
        job = provider.wait(provider.start(spec).id, poll=0)
    out_dir = tmp_path / "from-together"
    code, out, err = tp(capsys, "import", "together", job.id, "-o", str(out_dir))
    assert code == 0, err
    assert out.strip() == str(out_dir / "spec.yaml") and "kept what the together job ran with" in err
    loaded = load_spec(out_dir / "spec.yaml")
    assert loaded.local.learning_rate == 2e-4 and loaded.local.lora_r == 8 and loaded.local.lora_alpha == 16
    assert loaded.hyperparameters.n_epochs == 2 and loaded.suffix == "sup" and loaded.seed == 3
    assert loaded.metadata["together_job_id"] == job.id and loaded.metadata["together_fine_tuned_model"]
    assert (out_dir / "training.jsonl").read_bytes() == data.read_bytes()


def test_import_of_a_lost_file_writes_nothing(together, tmp_path, data, capsys):
    fake, make = together
    with make() as provider:
        file = provider.upload(data)
        job = provider.create_from_body({"training_file": file.id, "model": TOGETHER_MODEL, "n_epochs": 1,
                                         "learning_rate": 1e-4})  # fmt: skip
    del fake.files[file.id]
    out_dir = tmp_path / "nothing"
    code, _, err = tp(capsys, "import", "together", job.id, "-o", str(out_dir))
    assert code != 0 and f"cannot download the training file {file.id}" in err and "Together AI" in err
    assert not out_dir.exists()
