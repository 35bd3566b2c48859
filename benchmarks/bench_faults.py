"""Run the conformance fault matrix N times per hosted backend against its fake; print duplicates and lost events.

Goal: 0 duplicate jobs and 0 lost events for every backend and fault. One command, a few seconds:

    .venv/bin/python benchmarks/bench_faults.py --runs 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests" / "providers"), str(HERE.parent / "tests")]  # the fakes and _openai_schema

import logging  # noqa: E402

import test_conformance as suite  # noqa: E402

from tuneport.jobs.store import Store  # noqa: E402
from tuneport.spec.jobspec import JobSpec  # noqa: E402


class _Env:
    """The bits of pytest's monkeypatch the backends' constructors use, on the real environment."""

    def setenv(self, name: str, value: str) -> None:
        import os

        os.environ[name] = value

    def delenv(self, name: str, raising: bool = True) -> None:
        import os

        os.environ.pop(name, None)


def run(runs: int) -> int:
    logging.disable(logging.WARNING)  # the injected faults are expected; the table is the result
    faults = [*suite.FAULTS, "ambiguous create on the last attempt"]
    worst = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in suite.LINES))
        print(f"{'backend':<10} {'fault':<38} {'runs':>4} {'duplicates':>10} {'lost events':>11}")
        for backend in suite.BACKENDS:
            spec = JobSpec.from_dict({"model": backend.model, "training_file": "train.jsonl",
                                      "backend": backend.name}, base_dir=folder)  # fmt: skip
            for fault in faults:
                duplicates = lost = 0
                for i in range(runs):
                    store = Store(folder / f"{backend.name}-{i}.db")
                    fake = backend.fake()
                    provider = backend.make(fake, store, _Env())
                    try:
                        if fault in suite.FAULTS:
                            fake.fail("POST", backend.create, times=2, **suite.FAULTS[fault])
                        else:
                            fake.fail("POST", backend.create, times=4, after=True, exc=suite.httpx.ReadTimeout)
                        job = provider.start(spec)
                        duplicates += backend.jobs(fake) - 1
                        provider.wait(job.id, poll=0)
                        seen = {e.id for e in provider.iter_events(job.id, page_size=3)}
                        if backend.name != "together":
                            lost += backend.events(fake, job.id) - len(seen)
                    finally:
                        provider.close()
                        store.close()
                worst = max(worst, duplicates, lost)
                print(f"{backend.name:<10} {fault:<38} {runs:>4} {duplicates:>10} {lost:>11}")
    return 1 if worst else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per backend and fault (default 10)")
    sys.exit(run(parser.parse_args().runs))
