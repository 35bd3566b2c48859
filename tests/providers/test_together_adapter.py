"""Hosted training, local serving: a Together job's LoRA adapter -- a REAL peft adapter, trained on tiny-chat by
tuneport's local trainer in this module, shipped by the fake as Together ships adapters (a zstd tar) -- is
downloaded into the store, checked against the local base, and served by the fallback engine (not vLLM: one
vLLM server on CPU does not fit this test's time) next to a local adapter; an adapter for another base is
refused before serving. Then ONE ``tuneport eval`` compares the locally served adapter with the Together-hosted
endpoint of the same job (the fake answers for the job's model with that adapter's greedy output, by asking the
locally served copy): parity, item by item."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("peft")
pytest.importorskip("zstandard")

from fake_together import CANARY_KEY, FakeTogether  # noqa: E402

from tuneport.http import RetryPolicy  # noqa: E402
from tuneport.local_backend.serving.adapters import AdapterError, resolve_adapter  # noqa: E402
from tuneport.providers.together import TogetherProvider  # noqa: E402

MODEL = "tiny-chat"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from tuneport.fixtures.tiny_model import build_tiny_model

    return Path(build_tiny_model(tmp_path_factory.mktemp("tiny-chat") / "tiny-chat", seed=0))


FIXTURE_DATA = Path(__file__).resolve().parents[2] / "fixtures" / "data"


@pytest.fixture(scope="module")
def adapters(tiny, tmp_path_factory) -> dict[str, Path]:
    """``hosted``: what "Together trained" -- a LoRA trained here with tuneport's trainer (a few steps);
    ``local``: another adapter of the same base, served beside it."""
    from tuneport.local_backend.serving.serve_fixtures import make_random_adapter
    from tuneport.local_backend.training.train_config import TrainConfig
    from tuneport.local_backend.training.trainer import train

    root = tmp_path_factory.mktemp("adapters")
    data = root / "train.jsonl"
    data.write_text("\n".join((FIXTURE_DATA / "support_train.jsonl").read_text("utf-8").splitlines()[:12]) + "\n")
    result = train(TrainConfig(model=tiny, training_file=data, output_dir=root / "trained", n_epochs=1,
                               batch_size=4, learning_rate=5e-3, lora_r=8, lora_alpha=16, seed=3,
                               num_threads=1))  # fmt: skip
    assert result.adapter_dir and result.steps > 0 and not result.cancelled
    return {"hosted": Path(result.adapter_dir), "local": make_random_adapter(tiny, root / "local", seed=2)}


def _finished_job(provider: TogetherProvider, fake: FakeTogether, tmp_path: Path) -> str:
    path = tmp_path / "train.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            for i in range(12)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    file = provider.upload(path)
    body = {"training_file": file.id, "model": MODEL, "n_epochs": 1, "learning_rate": 1e-4,
            "training_type": {"type": "Lora", "lora_r": 8, "lora_alpha": 16}}  # fmt: skip
    job = provider.create_from_body(body)
    provider.wait(job.id, poll=0)
    return job.id


@pytest.fixture
def setup(tmp_path, store, adapters, monkeypatch):
    fake = FakeTogether(models={MODEL: {}})
    fake.adapters[MODEL] = adapters["hosted"]
    monkeypatch.setenv("TOGETHER_API_KEY", CANARY_KEY)
    provider = TogetherProvider(store=store, transport=fake.transport, poll_interval=0,
                                retry=RetryPolicy(max_attempts=3, jitter=0.0, sleep=lambda s: None))  # fmt: skip
    yield fake, provider, _finished_job(provider, fake, tmp_path)
    provider.close()


def test_download_unpacks_the_adapter_into_the_store_once(setup, store, adapters):
    fake, provider, job_id = setup
    folder = provider.download_adapter(job_id)
    assert (folder / "adapter_config.json").read_bytes() == (adapters["hosted"] / "adapter_config.json").read_bytes()
    assert store.get_job(job_id)["outputs"]["adapter"] == str(folder)
    assert provider.download_adapter(job_id) == folder
    assert fake.count("GET", "/finetune/download") == 1


def test_download_survives_a_reset_and_a_5xx(setup):
    fake, provider, job_id = setup
    fake.fail("GET", "/finetune/download", exc=httpx.RemoteProtocolError)
    fake.fail("GET", "/finetune/download", status=503)
    assert (provider.download_adapter(job_id) / "adapter_model.safetensors").is_file()


def test_served_next_to_a_local_adapter(setup, tiny, adapters, store, monkeypatch):
    fake, provider, job_id = setup
    monkeypatch.setattr("tuneport.providers.together.TogetherProvider.__init__",
                        _bound_init(provider), raising=True)  # fmt: skip
    hosted = resolve_adapter(f"support=together:{job_id}", base_model="tiny", base_path=tiny, store=store)
    local = resolve_adapter(f"mine={adapters['local']}", base_model="tiny", base_path=tiny, store=store)
    assert hosted.rank == 8 and hosted.name == "support"

    from tuneport.local_backend.serving.engine import EngineOptions
    from tuneport.local_backend.serving.fallback_server import FallbackServer

    server = FallbackServer("tiny", tiny, [hosted, local], EngineOptions(log=lambda line: None)).start()
    try:
        answers = {}
        for name in ("tiny", "support", "mine"):
            r = httpx.post(server.base_url + "/chat/completions", timeout=120, json={
                "model": name, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 6,
                "temperature": 0})  # fmt: skip
            assert r.status_code == 200, r.text
            answers[name] = r.json()["choices"][0]["message"]["content"]
        assert len(set(answers.values())) > 1  # the adapters change what the base says
    finally:
        server.stop()


def test_an_adapter_for_another_base_is_refused(setup, tiny, tmp_path, store):
    fake, provider, job_id = setup
    folder = provider.download_adapter(job_id)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "adapter_model.safetensors"))
    key = next(k for k in tensors if "lora_A" in k)
    tensors[key] = tensors[key][:, :-1].contiguous()  # an input size the base does not have
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    with pytest.raises(AdapterError, match="does not fit"):
        resolve_adapter(str(folder), base_model="tiny", base_path=tiny, store=store)


def _bound_init(provider: TogetherProvider):
    """``get_provider('together')`` inside the serve hook builds a provider: make it this test's (the fake's)."""
    state = dict(provider.__dict__)

    def init(self, **options):
        self.__dict__.update(state)
        self._http = None

    return init


def test_jobs_download_command(setup, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from tuneport.cli.jobs import jobs

    fake, provider, job_id = setup
    monkeypatch.setattr("tuneport.providers.together.TogetherProvider.__init__", _bound_init(provider))
    result = CliRunner().invoke(jobs, ["download", job_id, "--backend", "together", "-o", str(tmp_path / "ad"),
                                       "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Path(json.loads(result.output)["adapter"], "adapter_config.json").is_file()


class ServingTogether(FakeTogether):
    """Together serving a finished job's model on ``/v1/chat/completions``: it answers with the job's adapter's
    greedy output, by asking the copy of that adapter served on this machine (``forward_to``: base URL, name)."""

    forward_to: tuple[str, str] | None = None

    def _route(self, request: httpx.Request, route: str) -> httpx.Response:
        if request.method != "POST" or route != "/chat/completions" or self.forward_to is None:
            return super()._route(request, route)
        body = json.loads(request.content)
        if not any(j.get("model_output_name") == body.get("model") and j["status"] == "completed"
                   for j in self.jobs.values()):  # fmt: skip
            return self._error(404, f"Unable to access model {body.get('model')}", "model_not_available")
        url, served = self.forward_to
        answer = httpx.post(f"{url}/chat/completions", json={**body, "model": served}, timeout=120)
        data = answer.json()
        if answer.status_code == 200:
            data["model"] = body["model"]
        return httpx.Response(answer.status_code, json=data)


def test_one_eval_shows_the_local_copy_answers_as_the_hosted_job(tiny, adapters, store, tmp_path, capsys,
                                                                   monkeypatch):  # fmt: skip
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
    from _cli import tp

    fake = ServingTogether(models={MODEL: {}})
    fake.adapters[MODEL] = adapters["hosted"]
    fake.serve()
    monkeypatch.setenv("TOGETHER_API_KEY", CANARY_KEY)
    provider = TogetherProvider(base_url=fake.base_url, store=store, poll_interval=0,
                                retry=RetryPolicy(max_attempts=3, jitter=0.0, sleep=lambda s: None))  # fmt: skip
    job_id = _finished_job(provider, fake, tmp_path)
    done = provider.get(job_id)
    monkeypatch.setattr("tuneport.providers.together.TogetherProvider.__init__", _bound_init(provider))
    hosted = resolve_adapter(f"support=together:{job_id}", base_model="tiny", base_path=tiny, store=store)
    local = resolve_adapter(f"mine={adapters['local']}", base_model="tiny", base_path=tiny, store=store)
    assert (Path(hosted.path) / "adapter_model.safetensors").read_bytes() == (
        adapters["hosted"] / "adapter_model.safetensors").read_bytes()  # fmt: skip

    from tuneport.local_backend.serving.engine import EngineOptions
    from tuneport.local_backend.serving.fallback_server import FallbackServer

    server = FallbackServer("tiny", tiny, [hosted, local], EngineOptions(log=lambda line: None)).start()
    try:
        fake.forward_to = (server.base_url, "support")
        store.add_endpoint("together-support", base_url=fake.base_url, model=done.fine_tuned_model,
                           api_key_env="TOGETHER_API_KEY", kind="together", job_id=job_id)  # fmt: skip
        data = tmp_path / "heldout.jsonl"
        data.write_text("\n".join((FIXTURE_DATA / "support_test.jsonl").read_text("utf-8").splitlines()[:5]) + "\n")
        local_ref = f"{server.base_url}#support"
        monkeypatch.setenv("TUNEPORT_HOME", str(Path(store.path).parent))  # the CLI reads the same store
        code, out, err = tp(capsys, "eval", str(data), "-e", local_ref, "-e", "together-support", "-j", "1",
                            "--max-tokens", "8", "--grader", "exact", "--grader", "rouge_l", "--json")  # fmt: skip
        assert code == 0, err
        run = json.loads(out)
        assert run["status"] == "complete"
        mine, theirs = run["summary"][local_ref], run["summary"]["together-support"]
        assert mine["errors"] == theirs["errors"] == 0
        assert mine["graders"] == theirs["graders"]  # the same scores, grader by grader
        assert run["comparisons"]
        for comparison in run["comparisons"]:
            scores = comparison["scores"]
            assert scores["mean_diff"] == 0.0 and not scores["sd_diff"]  # item by item, the same scores
            if comparison.get("pass"):
                assert comparison["pass"]["mcnemar"]["n_discordant"] == 0  # the same items passed and failed
        assert fake.count("POST", "/chat/completions") == 5  # every hosted answer came from the fake
        with_adapter = httpx.post(server.base_url + "/chat/completions", timeout=120, json={
            "model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8})  # fmt: skip
        assert with_adapter.status_code == 200
    finally:
        server.stop()
        fake.stop()
        provider.close()
