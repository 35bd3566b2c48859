"""The backend seam holds: a third backend, installed as a plugin through the ``tuneport.providers`` entry-point
group (a small provider written here, in the test), works through ``spec check``, ``train``, ``jobs
list|show|events``, its finished job's endpoint and an evaluation's cost line, with no change to tuneport.

The plugin is a real distribution on ``PYTHONPATH`` (a ``.dist-info`` folder with ``entry_points.txt``), and every
command runs as its own ``tuneport`` process, so the registry discovers it the way it discovers any installed
plugin. Its jobs succeed at once; its fine-tuned model answers on a loopback fake chat server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from _eval_support import teach, write_dataset
from _fake_eval_server import FakeEvalServer

PLUGIN = '''
"""acme: a hosted fine-tuning service that bills by the token (a tuneport plugin written for the seam test)."""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal
from pathlib import Path

from tuneport.jobs.objects import FileObject, FineTuningJob, FineTuningJobCheckpoint, FineTuningJobEvent, ListPage
from tuneport.jobs.store import Store
from tuneport.providers.base import Endpoint, LaunchEstimate, Provider, SpecPreview, TokenPrices


class AcmeProvider(Provider):
    name = "acme"
    label = "Acme"
    paid = True
    billing = "tokens"
    secret_env = ("ACME_API_KEY",)

    def __init__(self, *, store=None):
        self._store = store
        self._state = Path(os.environ["TUNEPORT_HOME"]) / "acme.json"

    @property
    def store(self):
        if self._store is None:
            self._store = Store()
        return self._store

    # -- the seam --------------------------------------------------------------------------------------------
    @classmethod
    def check_spec(cls, spec):
        return [] if spec.suffix is None else [f"suffix: acme ignores suffixes (got {spec.suffix!r})"]

    @classmethod
    def preview(cls, spec, files):
        body = {"base": spec.model, "data": files["training_file"]["value"], "rounds": 2}
        return SpecPreview(title="Acme: POST /tune", data={"acme_body": body}, request=body)

    @classmethod
    def estimate(cls, spec):
        lines = [line for line in Path(spec.training_path).read_text().splitlines() if line.strip()]
        return LaunchEstimate(file=str(spec.training_path), model=spec.model, examples=len(lines), n_epochs=2,
                              billed_tokens=1000 * len(lines), price_usd=Decimal("0.25"), price_source="acme")

    @classmethod
    def finished_job_endpoint(cls, job_id, fine_tuned_model):
        return Endpoint(base_url=os.environ["ACME_BASE_URL"], model=fine_tuned_model, api_key_env="ACME_API_KEY",
                        kind=cls.name, job_id=job_id)

    @classmethod
    def inference_prices(cls, model):
        return TokenPrices(model=model, input_per_1m=Decimal("2"), output_per_1m=Decimal("8"),
                           source="acme price list", as_of="2026-12-01")

    # -- the job API -----------------------------------------------------------------------------------------
    def _load(self):
        return json.loads(self._state.read_text()) if self._state.exists() else {}

    def upload(self, path, *, purpose="fine-tune", progress=None):
        return FileObject(id="acme-file-1", bytes=Path(path).stat().st_size, created_at=int(time.time()),
                          filename=Path(path).name, purpose=purpose)

    def create(self, spec, *, training_file, validation_file=None):
        job = FineTuningJob(id="acme-job-1", created_at=int(time.time()), model=spec.model, status="succeeded",
                            fine_tuned_model="ft" if spec.model == "base" else f"{spec.model}-acme",
                            finished_at=int(time.time()), training_file=training_file, trained_tokens=60000)
        self._state.parent.mkdir(parents=True, exist_ok=True)
        self._state.write_text(json.dumps({job.id: job.to_api()}))
        row = self.store.upsert_job(job.id, backend=self.name, status=job.status, model=job.model,
                                    fine_tuned_model=job.fine_tuned_model, training_file=training_file,
                                    trained_tokens=job.trained_tokens)
        from tuneport.endpoints.registry import register_job_endpoint

        register_job_endpoint(self.store, row)
        return job

    def get(self, job_id):
        return FineTuningJob(**self._load()[job_id])

    def list(self, *, after=None, limit=20, metadata=None):
        return ListPage[FineTuningJob](data=[FineTuningJob(**j) for j in self._load().values()], has_more=False)

    def cancel(self, job_id):
        return self.get(job_id)

    def events(self, job_id, *, after=None, limit=20):
        events = [FineTuningJobEvent(id=f"acme-ev-{i}", created_at=i, level="info", message=text)
                  for i, text in enumerate(["Acme queued the job", "Acme finished the job"])]
        events.reverse()
        if after is not None:
            events = events[[e.id for e in events].index(after) + 1:]
        return ListPage[FineTuningJobEvent](data=events[:limit], has_more=len(events) > limit)

    def checkpoints(self, job_id, *, after=None, limit=10):
        return ListPage[FineTuningJobCheckpoint](data=[], has_more=False)
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the acme plugin as an installed distribution would: the module and its dist-info."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "tuneport_acme.py").write_text(PLUGIN)
    info = root / "tuneport_acme-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tuneport-acme\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[tuneport.providers]\nacme = tuneport_acme:AcmeProvider\n")
    return root


@pytest.fixture()
def server():
    fake = FakeEvalServer().start()
    yield fake
    fake.stop()


def _env(home: Path, plugin: Path, server: FakeEvalServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUNEPORT_"))}
    env.update(TUNEPORT_HOME=str(home), PYTHONPATH=str(plugin), ACME_BASE_URL=server.base_url,
               ACME_API_KEY="acme-secret-key-123")  # fmt: skip
    return env


def _tp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuneport.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip


def test_a_plugin_backend_runs_through_spec_train_jobs_endpoint_and_eval_cost(tmp_path, plugin_path, server):
    env = _env(tmp_path / "home", plugin_path, server)
    data = write_dataset(tmp_path / "train.jsonl", n=12)
    spec = tmp_path / "acme.yaml"
    spec.write_text(textwrap.dedent(f"""\
        model: base
        training_file: {data}
        suffix: demo
        backend: acme
    """))

    # spec check: the spec's backend is the plugin's name; its preview and warning are the plugin's own
    checked = _tp(env, "spec", "check", str(spec), "--json")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["backend"] == "acme"
    assert report["acme"]["acme_body"] == {"base": "base", "data": str(data), "rounds": 2}
    assert report["acme"]["warnings"] == ["suffix: acme ignores suffixes (got 'demo')"]
    shown = _tp(env, "spec", "check", str(spec), "--backend", "acme")
    assert shown.returncode == 0, shown.stderr
    assert "Acme: POST /tune" in shown.stdout and "warning (acme)" in shown.stdout

    # train: a paid backend is asked to confirm, with its own estimate; --yes starts it
    declined = _tp(env, "train", str(spec))
    assert declined.returncode == 130, declined.stderr
    assert "Acme will bill about 12,000 training tokens" in declined.stderr and "$0.25" in declined.stderr
    started = _tp(env, "train", str(spec), "--yes", "--json")
    assert started.returncode == 0, started.stderr
    job = json.loads(started.stdout)
    assert job["id"] == "acme-job-1" and job["status"] == "succeeded"

    # jobs list / show / events: the store knows the job's backend; the plugin answers for it
    listed = _tp(env, "jobs", "list", "--json")
    assert [(j["id"], j["backend"]) for j in json.loads(listed.stdout)["data"]] == [("acme-job-1", "acme")]
    assert _tp(env, "jobs", "list", "--backend", "acme", "--json").returncode == 0
    assert json.loads(_tp(env, "jobs", "show", "acme-job-1", "--json").stdout)["fine_tuned_model"] == "ft"
    events = _tp(env, "jobs", "events", "acme-job-1")
    assert events.returncode == 0, events.stderr
    assert events.stdout.index("Acme queued the job") < events.stdout.index("Acme finished the job")

    # the finished job's endpoint is where the plugin says, with its key variable (never the key)
    endpoints = json.loads(_tp(env, "endpoints", "list", "--json").stdout)
    (saved,) = [e for e in endpoints if e["name"] == "ft"]
    assert saved["base_url"] == server.base_url and saved["kind"] == "acme"
    assert saved["api_key_env"] == "ACME_API_KEY" and "acme-secret-key-123" not in json.dumps(endpoints)

    # eval: the endpoint is priced by the plugin's per-token prices
    teach(server, n=12)
    ran = _tp(env, "eval", str(data), "-e", "ft", "--json")
    assert ran.returncode == 0, ran.stderr
    target = json.loads(ran.stdout)["summary"]["ft"]
    cost, tokens = target["cost"], target["tokens"]
    expected = (Decimal(tokens["prompt"]) * 2 + Decimal(tokens["completion"]) * 8) / Decimal(1_000_000)
    assert tokens["prompt"] > 0
    assert Decimal(cost["per_1000"]) == (expected / 12 * 1000).quantize(Decimal("0.00000001")).normalize()
    assert cost["inputs"]["backend"] == "acme" and cost["inputs"]["source"] == "acme price list"


def test_without_the_plugin_its_name_is_refused_with_the_known_backends(tmp_path, server):
    env = _env(tmp_path / "home", tmp_path, server)
    spec = tmp_path / "acme.yaml"
    spec.write_text(f"model: base\ntraining_file: {write_dataset(tmp_path / 'train.jsonl', n=12)}\nbackend: acme\n")
    checked = _tp(env, "spec", "check", str(spec))
    assert checked.returncode == 3
    assert "backend" in checked.stderr and "must be one of" in checked.stderr
    known = checked.stderr.split("must be one of", 1)[1].split("(got", 1)[0]
    assert "local" in known and "openai" in known and "acme" not in known
