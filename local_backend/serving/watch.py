"""``tuneport serve --watch-jobs``: a running server picks up the adapter of every local job that finishes."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

from tuneport.errors import TuneportError
from tuneport.jobs.store import open_store
from tuneport.local_backend.serving.adapters import job_adapter
from tuneport.local_backend.serving.engine import ServerHandle
from tuneport.models.resolve import model_folder, resolve_model

__all__ = ["JobWatcher", "WATCH_SLOTS"]


# LoRA slots ``tuneport serve --watch-jobs`` reserves for adapters of jobs that finish later (vLLM's slot count is
# fixed at start; unloaded adapters keep theirs, so this bounds the loads per server run, not the adapters served).
WATCH_SLOTS = 4


def _job_base_matches(job_model: str, base_path: Path) -> bool:
    """Whether a job trained on ``job_model`` (its spec's ``model``) used the served base model's folder.

    Compared by folder, not by name: the server answers to the folder's name, and a folder of any name may hold
    any model (``tiny-chat`` is the built-in model's own folder, wherever a folder of that name sits).
    """
    if not job_model:
        return False
    candidate = model_folder(job_model)
    with contextlib.suppress(OSError):
        return candidate.resolve() == base_path.resolve()
    return False


class JobWatcher:
    """Loads the adapter of each local job that succeeds while a server runs, under the job's model name.

    A long-running ``tuneport serve`` otherwise serves only what it was started with: a job finishing later would
    need a restart. Every ``interval`` seconds the store is read for local jobs that succeeded and were not
    succeeded when the watcher started (the start snapshot is by id, so clock granularity cannot re-load an old
    job or miss a new one), trained on the served base model. Each one's adapter is loaded through the server
    handle's ``load_adapter`` under the job's ``fine_tuned_model`` name (the name ``--adapter JOB_ID`` gives):
    the same checks as at start, and on vLLM the CPU mixed-batch guard's slot count, hold. An adapter that cannot
    be loaded (a full-model job, another base, a rank or slot the server lacks) is skipped once with a message
    saying why and what to do; the server keeps serving.
    """

    def __init__(
        self,
        server: ServerHandle,
        *,
        interval: float = 5.0,
        store: Any | None = None,
        log: Any = None,
    ) -> None:
        self.server = server
        self.interval = interval
        self._log = log or (lambda line: None)
        self._own_store = store is None
        if store is None:
            store = open_store()
        self.store = store
        self.base_path: Path = getattr(server, "base_path", None) or resolve_model(server.model)
        self._seen: set[str] = {r["id"] for r in self._succeeded()}
        self.loaded: dict[str, str] = {}  # job id -> adapter name
        self.skipped: dict[str, str] = {}  # job id -> why
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _succeeded(self) -> list[Any]:
        return self.store.list_jobs(backend="local", status="succeeded")

    def poll(self) -> list[str]:
        """One pass: load the adapters of jobs that succeeded since the last pass; return their names."""
        names = []
        for row in reversed(self._succeeded()):  # oldest first: slots go to jobs in the order they finished
            if row["id"] in self._seen:
                continue
            self._seen.add(row["id"])
            if not _job_base_matches(row.get("model") or "", self.base_path):
                continue  # another base model's job: not this server's business
            try:
                path, name = job_adapter(row["id"], self.store)
                if name in self.server.models():
                    self.skipped[row["id"]] = f"a model named {name!r} is already served"
                    self._log(f"job {row['id']} succeeded; {name!r} is already served, so it was not reloaded")
                    continue
                self.server.load_adapter(name, path)
            except TuneportError as exc:
                self.server.check()  # a crashed server is the caller's error, not this job's
                self.skipped[row["id"]] = exc.message
                hint = f" ({exc.hint})" if getattr(exc, "hint", None) else ""
                self._log(f"job {row['id']} succeeded but its adapter was not loaded: {exc.message}{hint}")
                continue
            self.loaded[row["id"]] = name
            names.append(name)
            self._log(f"job {row['id']} succeeded: now serving its adapter as {name!r}")
        return names

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except TuneportError as exc:
                self._log(f"stopped watching for finished jobs: {exc.message}")
                return
            except Exception as exc:  # keep serving whatever a store hiccup or a bug does to the watcher
                self._log(f"error while watching for finished jobs (will retry): {exc!r}")

    def start(self) -> JobWatcher:
        """Watch in a background thread until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tuneport-job-watcher", daemon=True)
            self._thread.start()
            self._log(f"watching for local jobs on {self.server.model} that finish (every {self.interval:g} s)")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.interval, 1.0) + 30)
            self._thread = None
        if self._own_store:
            self.store.close()

    def __enter__(self) -> JobWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
