"""SIGKILL a local training job at K random steps, resume it each time, and compare with an uninterrupted run.

Both jobs run as real detached runners (what ``tuneport train`` starts) on the tiny-chat model, in a throwaway
TUNEPORT_HOME. The killed job is found interrupted the way ``tuneport jobs show`` finds it, then resumed (what
``tuneport jobs resume`` does). Printed: K, the steps killed at, the largest per-step training-loss difference and
adapter weight difference against the reference (target: 0 on CPU, <= 1e-6), and steps logged twice or never
(target: 0 and 0).

    python benchmarks/bench_resume.py [--kills 3] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
TOTAL_STEPS = 16  # 32 examples, batch 4, 2 epochs; a checkpoint every 2 steps


def _spec(folder: Path, model: Path) -> object:
    from tuneport.spec.jobspec import JobSpec

    lines = (FIXTURES / "support_train.jsonl").read_text("utf-8").splitlines()[:32]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    body = {
        "model": str(model), "training_file": "train.jsonl", "seed": 5,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}},
        "local": {"lora_r": 8, "lora_alpha": 16},
    }  # fmt: skip
    return JobSpec.from_dict(body, base_dir=folder)


def _step_events(store, job_id: str) -> list[tuple[int, float]]:
    return [
        (e["data"]["step"], e["data"]["train_loss"])
        for e in store.list_events(job_id, limit=None)
        if e["type"] == "metrics" and e["message"].startswith("Step ") and "training loss" in e["message"]
    ]


def _wait(provider, job_id: str, until, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return
        status = provider.get(job_id).status
        if status in ("failed", "cancelled"):
            raise SystemExit(f"job {job_id} ended {status}: {provider.get(job_id).error}")
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting on job {job_id}")


def _adapter(provider, job_id: str) -> dict:
    from safetensors.torch import load_file

    return load_file(
        str(Path(provider.get(job_id).to_api()["local"]["adapter"]) / "adapter_model.safetensors")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=3, help="K: how many times the job is SIGKILLed")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill steps (default: random)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    kill_steps = sorted(random.Random(seed).sample(range(2, TOTAL_STEPS), min(args.kills, TOTAL_STEPS - 2)))

    work = Path(tempfile.mkdtemp(prefix="bench-resume-"))
    os.environ["TUNEPORT_HOME"] = str(work / "home")
    os.environ.setdefault("TUNEPORT_NUM_THREADS", "1")
    from tuneport.fixtures.tiny_model import build_tiny_model
    from tuneport.jobs.store import Store
    from tuneport.local_backend.training import jobs as J
    from tuneport.providers.local import LocalProvider

    model = build_tiny_model(work / "tiny-chat", seed=0)
    (work / "ref").mkdir()
    (work / "victim").mkdir()
    started = time.monotonic()
    with Store() as store:
        provider = LocalProvider(store=store)
        reference = provider.start(_spec(work / "ref", model)).id
        _wait(provider, reference, lambda: provider.get(reference).status == "succeeded")
        os.environ["TUNEPORT_RUNNER_STEP_DELAY_S"] = "0.3"  # room to kill between steps
        victim = provider.start(_spec(work / "victim", model)).id
        for step in kill_steps:
            _wait(provider, victim, lambda s=step: any(k >= s for k, _ in _step_events(store, victim)))
            pid = store.get_job(victim)["pid"]
            os.kill(pid, signal.SIGKILL)
            while J.pid_alive(pid):
                time.sleep(0.02)
            job = provider.get(victim)  # reading the job finds the dead runner
            assert job.status == "paused", job.status
            provider.resume(victim)
        del os.environ["TUNEPORT_RUNNER_STEP_DELAY_S"]
        _wait(provider, victim, lambda: provider.get(victim).status == "succeeded")

        ref_losses = dict(_step_events(store, reference))
        logged = _step_events(store, victim)
        steps = [s for s, _ in logged]
        duplicates = len(steps) - len(set(steps))
        lost = sorted(set(range(1, TOTAL_STEPS + 1)) - set(steps))
        loss_diff = max(abs(loss - ref_losses[s]) for s, loss in logged)
        a, b = _adapter(provider, reference), _adapter(provider, victim)
        weight_diff = max((a[k] - b[k]).abs().max().item() for k in a)
        resumed_from = [
            e["data"]["resume_from"]
            for e in store.list_events(victim, limit=None)
            if e["message"].startswith("Resuming from the checkpoint")
        ]
    print(
        json.dumps(
            {
                "K": len(kill_steps),
                "seed": seed,
                "killed_after_steps": kill_steps,
                "resumed_from": resumed_from,
                "max_loss_diff": loss_diff,
                "max_adapter_weight_diff": weight_diff,
                "steps_logged_twice": duplicates,
                "steps_never_logged": lost,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )
    sys.exit(0 if loss_diff <= 1e-6 and weight_diff <= 1e-6 and not duplicates and not lost else 1)


if __name__ == "__main__":
    main()
