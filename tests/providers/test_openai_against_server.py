"""tuneport's own OpenAI client against ``tuneport server``, over real HTTP on loopback.

The same spec that would train on OpenAI runs end to end through :class:`OpenAIProvider` pointed at the local
server (``OPENAI_BASE_URL``, a dummy key); ``tuneport train --backend openai`` asks before a paid job; and
``tuneport import openai`` turns a job (here the server's) into a local spec that loads and validates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from _openai_schema import validate_request
from click.testing import CliRunner

from tuneport.errors import SpecError
from tuneport.jobs.store import Store
from tuneport.providers.openai import CLIENT_KEY_FIELD, OpenAIProvider
from tuneport.spec.jobspec import load_spec

pytest.importorskip("torch")
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``tuneport server --port 0`` in its own process (and TUNEPORT_HOME); (base URL, its home)."""
    home = tmp_path_factory.mktemp("server-home")
    env = {**os.environ, "TUNEPORT_HOME": str(home), "TUNEPORT_NUM_THREADS": "1"}
    code = "import sys; from tuneport.cli.server import server; server.main(sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    assert line, f"the server did not start: {proc.stderr.read()}"
    yield json.loads(line)["url"], home
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    from tuneport.local_backend.training import jobs as J

    with Store(home / "tuneport.db") as store:
        for row in store.list_jobs():
            if J.runner_alive(row.get("pid"), row["id"]):
                os.killpg(row["pid"], signal.SIGKILL)


@pytest.fixture
def env(server, monkeypatch: pytest.MonkeyPatch) -> str:
    url, _ = server
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-dummy")
    for name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    return url


def write_spec(folder: Path, *, n_train: int = 30, **extra) -> Path:
    lines = (FIXTURES / "support_train.jsonl").read_text("utf-8").splitlines()
    (folder / "train.jsonl").write_text("\n".join(lines[:n_train]) + "\n", "utf-8")
    val = (FIXTURES / "support_val.jsonl").read_text("utf-8").splitlines()
    (folder / "val.jsonl").write_text("\n".join(val[:10]) + "\n", "utf-8")
    spec = {
        "model": "tiny-chat", "training_file": "train.jsonl", "validation_file": "val.jsonl", "suffix": "port",
        "seed": 5, "backend": "openai", "metadata": {"team": "support"},
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
        **extra,
    }  # fmt: skip
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), "utf-8")
    return path


@pytest.fixture(scope="module")
def finished_job(server, tmp_path_factory) -> dict:
    """One spec run end to end through OpenAIProvider (shared by the tests that need a finished job)."""
    url, _ = server
    folder = tmp_path_factory.mktemp("spec")
    spec = load_spec(write_spec(folder))
    with Store(folder / "client.db") as store, OpenAIProvider(
        base_url=url, api_key="sk-local-dummy", store=store, poll_interval=0.5, part_size=4096
    ) as provider:  # fmt: skip
        from tuneport.spec.mapping import to_openai_create_body

        job = provider.start(spec)
        validate_request(
            to_openai_create_body(spec, job.training_file, job.validation_file), "/fine_tuning/jobs", "POST"
        )
        done = provider.wait(job.id, timeout=120)
        events = list(provider.iter_events(job.id, page_size=4))
        checkpoints = provider.checkpoints(job.id).data
        endpoint = provider.endpoint(done)
        by_key = provider.list(metadata={CLIENT_KEY_FIELD: job.metadata[CLIENT_KEY_FIELD]}).data
        parts_file = provider.upload(spec.training_path, method="uploads", reuse=False)
        recorded = store.get_job(job.id)
    return {"spec": spec, "job": job, "done": done, "events": events, "checkpoints": checkpoints,
            "endpoint": endpoint, "by_key": by_key, "parts_file": parts_file, "recorded": recorded, "url": url}  # fmt: skip


def test_openai_provider_trains_a_spec_on_the_local_server(finished_job: dict) -> None:
    job, done = finished_job["job"], finished_job["done"]
    assert job.id.startswith("ftjob-") and job.model == "tiny-chat"
    assert job.metadata["team"] == "support" and job.metadata[CLIENT_KEY_FIELD].startswith("tp-")
    assert done.status == "succeeded" and done.fine_tuned_model.startswith("ft:tiny-chat:local:port:")
    assert done.validation_file and done.trained_tokens > 0 and done.seed == 5
    messages = [e.message for e in finished_job["events"]]
    assert messages[0].startswith("Created fine-tuning job") and "successfully completed" in messages[-1]
    ids = [int(e.id.removeprefix("ftevent-")) for e in finished_job["events"]]
    assert ids == sorted(set(ids))  # oldest first, paged 4 at a time, nothing twice
    assert finished_job["checkpoints"] and finished_job["checkpoints"][0].fine_tuning_job_id == job.id
    assert finished_job["endpoint"].base_url == finished_job["url"]
    assert finished_job["endpoint"].model == done.fine_tuned_model
    assert [j.id for j in finished_job["by_key"]] == [job.id]
    # The Uploads API path (parts of 4 KiB, md5 checked by the server) yields the same content-addressed file.
    assert finished_job["parts_file"].id == job.training_file
    assert (
        finished_job["recorded"]["backend"] == "openai" and finished_job["recorded"]["status"] == "succeeded"
    )


def test_import_turns_the_job_into_a_local_spec(finished_job: dict, env: str, tmp_path: Path) -> None:
    from tuneport.cli.importer import import_

    done, spec = finished_job["done"], finished_job["spec"]
    out = tmp_path / "imported"
    result = CliRunner().invoke(import_, ["openai", done.id, "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["openai_job_id"] == done.id and info["next"].endswith("--backend local")
    assert (out / "training.jsonl").read_bytes() == spec.training_path.read_bytes()
    assert (out / "validation.jsonl").read_bytes() == spec.validation_path.read_bytes()
    loaded = load_spec(out / "spec.yaml")
    assert loaded.backend == "local" and loaded.model == "tiny-chat" and loaded.suffix == "port"
    assert loaded.seed == 5 and loaded.method.type == "supervised"
    assert loaded.hyperparameters.n_epochs == 1 and loaded.hyperparameters.batch_size == 4
    assert loaded.metadata["openai_job_id"] == done.id and loaded.metadata["openai_model"] == "tiny-chat"
    assert loaded.metadata["openai_fine_tuned_model"] == done.fine_tuned_model
    assert loaded.metadata["team"] == "support" and CLIENT_KEY_FIELD not in loaded.metadata
    assert loaded.training_path == (out / "training.jsonl").resolve()
    again = CliRunner().invoke(import_, ["openai", done.id, "--output", str(out)])
    assert isinstance(again.exception, SpecError) and "already exist" in str(again.exception)
    other = CliRunner().invoke(
        import_, ["openai", done.id, "-o", str(out), "--force", "--base-model", "/models/x"]
    )
    assert other.exit_code == 0, other.output
    assert load_spec(out / "spec.yaml", check_files=False).model == "/models/x"


def test_train_asks_before_starting_a_paid_job(env: str, server, tmp_path: Path) -> None:
    from tuneport.cli.train import train

    spec_path = write_spec(tmp_path, n_train=12)
    _, home = server
    with Store(home / "tuneport.db") as store:
        before = len(store.list_jobs())

    declined = CliRunner().invoke(train, [str(spec_path)], input="n\n")
    assert declined.exit_code != 0 and "Start this paid fine-tuning job on OpenAI?" in declined.output
    assert "OpenAI will bill about" in declined.output and "training tokens" in declined.output
    assert "12 examples x 1 epochs" in declined.output

    scripted = CliRunner().invoke(train, [str(spec_path), "--json"])
    assert isinstance(scripted.exception, SpecError) and "--yes" in str(scripted.exception)
    assert scripted.exception.exit_code == 2
    with Store(home / "tuneport.db") as store:
        assert len(store.list_jobs()) == before  # nothing was started

    started = CliRunner().invoke(train, [str(spec_path), "--json", "--yes"])
    assert started.exit_code == 0, started.output
    job = json.loads(started.output[started.output.index("{") :])
    assert job["object"] == "fine_tuning.job" and job["model"] == "tiny-chat"
    with OpenAIProvider(store=False) as provider:  # don't let it train on: the test only needed it to start
        provider.cancel(job["id"])


def test_a_client_sharing_the_servers_home_keeps_the_job_local(server, tmp_path) -> None:
    # `tuneport server` and a client pointed at it on the same machine share one store: the client must not
    # record a hosted copy of the job over the server's local one (the server then lost its own job).
    url, home = server
    spec = load_spec(write_spec(tmp_path))
    with Store(home / "tuneport.db") as store, OpenAIProvider(
        base_url=url, api_key="sk-local-dummy", store=store, poll_interval=0.5
    ) as provider:  # fmt: skip
        job = provider.start(spec)
        done = provider.wait(job.id, timeout=120)
        assert done.status == "succeeded"
        assert store.get_job(job.id)["backend"] == "local"
