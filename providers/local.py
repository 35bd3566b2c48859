"""The ``local`` backend: fine-tuning jobs trained on this machine, behind the same Provider interface as OpenAI.

Jobs, events and checkpoints come back as OpenAI's objects, built from the store; a detached runner process
(:mod:`tuneport.local_backend.training.runner`) does the work. Nothing here imports torch: listing or showing jobs is instant.

Local specifics, all documented on the objects:

- ``upload`` copies the file into ``$TUNEPORT_HOME/files/<file id>.jsonl`` (content-addressed: the same bytes are
  stored once per purpose), so a job always trains on, and resumes with, exactly the bytes it was started with.
- Job objects carry an extra ``local`` field (kept by :class:`~tuneport.jobs.objects.FineTuningJob`'s ``extra="allow"``)
  saying where things are on disk: the job folder, its log, the adapter / merged model / full model, the
  checkpoints folder and each checkpoint, and whether the runner was interrupted.
- A job whose runner died (SIGKILL, a machine restart) is found whenever jobs are read and shown as ``paused``
  with ``local.interrupted`` set and a warning event; :meth:`LocalProvider.resume` continues it from its last
  checkpoint.
- ``fine_tuned_model`` is ``ft:<base>:local:<suffix>:<8 chars of the job id>`` (see
  :func:`tuneport.local_backend.training.jobs.fine_tuned_model_name`); checkpoints are ``<that>:ckpt-step-<N>``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import string
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneport.errors import DataError, ProviderError, StoreError
from tuneport.local_backend.training import jobs as J
from tuneport.local_backend.training.job_outputs import claim_output_dir
from tuneport.providers.base import Endpoint, ProgressCallback, Provider, SpecPreview

if TYPE_CHECKING:
    from tuneport.jobs.objects import (
        FileObject,
        FineTuningJob,
        FineTuningJobCheckpoint,
        FineTuningJobEvent,
        ListPage,
    )
    from tuneport.spec.jobspec import JobSpec

__all__ = ["LocalProvider", "files_dir", "DEFAULT_LOCAL_BASE_URL"]

#: Where ``tuneport serve`` listens by default; override with ``TUNEPORT_LOCAL_BASE_URL``.
DEFAULT_LOCAL_BASE_URL = "http://127.0.0.1:8000/v1"

_ALNUM = string.ascii_letters + string.digits


def files_dir() -> Path:
    """Where uploaded datasets are kept: ``$TUNEPORT_HOME/files``."""
    from tuneport.paths import home_dir

    path = home_dir() / "files"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _int_id(value: str | None, prefix: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value.removeprefix(prefix))
    except ValueError:
        raise ProviderError(
            f"{value!r} is not an id this backend issued (expected {prefix}<number>)"
        ) from None


class LocalProvider(Provider):
    """Fine-tuning on this machine (transformers + peft), one detached runner process per job.

    ``store``: the Store to use (default: the one in ``TUNEPORT_HOME``). ``launch=False`` records jobs without
    starting a runner (the caller runs :func:`tuneport.local_backend.training.runner.run_job` itself).
    ``allow_output_dir=False`` refuses ``local.output_dir`` (outputs in a folder outside the job's own): what
    ``tuneport server`` uses, so that nothing a client sends makes a job write outside its folder.
    """

    name = "local"
    label = "this machine"
    poll_interval = 1.0
    billing = "hourly"

    # -- what tuneport asks of the backend before and after a job (see Provider) ------------------------------
    @classmethod
    def check_spec(cls, spec: JobSpec) -> list[str]:
        from tuneport.spec.mapping import local_warnings

        return local_warnings(spec)

    @classmethod
    def preview(cls, spec: JobSpec, files: Mapping[str, Mapping[str, Any]]) -> SpecPreview:
        """The local trainer's plan: what each "auto" becomes for this training file."""
        from tuneport.spec.mapping import resolve_local_hyperparameters

        training = files.get("training_file") or {}
        data: dict[str, Any] = {"plan": None}
        n_examples = training.get("examples")
        if n_examples:
            try:
                plan = resolve_local_hyperparameters(spec, n_examples).to_dict()
            except DataError as exc:  # pragma: no cover - n_examples >= 1 here
                data["reason"] = exc.message
            else:
                data["plan"] = plan
                settings = {k: v for k, v in plan.items() if k != "notes"}
                return SpecPreview(title="Local trainer plan", data=data, settings=settings,
                                   notes=list(plan.get("notes") or []))  # fmt: skip
        elif training.get("kind") == "openai_file_id":
            data["reason"] = (
                "training_file is an OpenAI file id: the local plan needs the examples "
                "(`tuneport import openai` downloads them)"
            )
        else:
            data["reason"] = "training_file has no examples"
        return SpecPreview(title="Local trainer", data=data, reason=data["reason"])

    @classmethod
    def job_from_store(cls, row: Mapping[str, Any], store: Any) -> FineTuningJob:
        """The job with its runner checked: one that died shows as interrupted."""
        return cls(store=store).get(row["id"])

    @classmethod
    def finished_job_endpoint(cls, job_id: str, fine_tuned_model: str) -> Endpoint:
        """Where ``tuneport serve`` answers for the job's model (``TUNEPORT_LOCAL_BASE_URL``), with no key."""
        base_url = os.environ.get("TUNEPORT_LOCAL_BASE_URL", DEFAULT_LOCAL_BASE_URL)
        return Endpoint(base_url=base_url, model=fine_tuned_model, kind=cls.name, job_id=job_id)

    def __init__(self, *, store: Any = None, launch: bool = True, allow_output_dir: bool = True) -> None:
        self._store = store
        self._own_store = store is None
        self.launch = launch
        self.allow_output_dir = allow_output_dir

    @property
    def store(self) -> Any:
        if self._store is None:
            from tuneport.jobs.store import Store

            self._store = Store()
        return self._store

    def close(self) -> None:
        if self._own_store and self._store is not None:
            self._store.close()
            self._store = None

    # -- files --------------------------------------------------------------------------------------------------

    def upload(
        self,
        path: str | Path,
        *,
        purpose: str = "fine-tune",
        progress: ProgressCallback | None = None,
        take: bool = False,
    ) -> FileObject:
        """Keep a copy of the dataset under the tuneport home; the same bytes are copied once.

        ``take=True`` is for a temporary file the caller gives up (``tuneport server``'s finished uploads): it is
        moved into place instead of copied, which saves a second full write of a large file.
        """
        from tuneport.data.reader import file_sha256
        from tuneport.jobs.objects import FileObject

        source = Path(path).expanduser()
        if not source.is_file():
            raise DataError(
                f"{source}: file not found", hint="Check the training_file / validation_file path."
            )
        sha = file_sha256(source)
        size = source.stat().st_size
        filename = source.name
        existing = self.store.find_file(self.name, sha, purpose)
        if existing is not None and (files_dir() / f"{existing['provider_file_id']}.jsonl").is_file():
            if progress is not None:
                progress(size, size)
            return FileObject(
                id=existing["provider_file_id"], bytes=existing["size_bytes"] or size,
                created_at=existing["created_at"], filename=existing["filename"] or filename, purpose=purpose,
            )  # fmt: skip
        file_id = "file-" + "".join(secrets.choice(_ALNUM) for _ in range(24))
        dest = files_dir() / f"{file_id}.jsonl"
        tmp = dest.with_name(f".{file_id}.partial")
        try:
            if take:
                os.replace(source, dest)
                source = dest
            else:
                shutil.copyfile(source, tmp)
                os.replace(tmp, dest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DataError(f"cannot copy {source} into {dest.parent}: {exc.strerror or exc}") from exc
        now = int(time.time())
        self.store.upsert_dataset(sha, path=str(source.resolve()), size_bytes=size)
        self.store.record_file(
            self.name, file_id, dataset_sha256=sha, purpose=purpose, size_bytes=size, filename=filename,
            created_at=now,
        )  # fmt: skip
        if progress is not None:
            progress(size, size)
        return FileObject(id=file_id, bytes=size, created_at=now, filename=filename, purpose=purpose)

    def _uploaded(self, file_id: str, param: str) -> tuple[Path, str]:
        """(path, sha256) of a file this backend holds."""
        from tuneport.data.reader import file_sha256

        path = files_dir() / f"{file_id}.jsonl"
        if not path.is_file():
            raise ProviderError(
                f"{param} {file_id!r} is not a file the local backend holds",
                hint="Give a local path in the spec (it is uploaded for you), or upload it with this backend first.",
            )
        return path, file_sha256(path)

    # -- jobs ---------------------------------------------------------------------------------------------------

    def create(
        self, spec: JobSpec, *, training_file: str, validation_file: str | None = None
    ) -> FineTuningJob:
        """Record the job (status ``validating_files``) and start its runner; return at once."""
        requested_dir = self._requested_output_dir(spec)
        job_id = J.new_job_id()
        folder = J.job_dir(job_id, create=True)
        train_path, train_sha = self._uploaded(training_file, "training_file")
        outputs: dict[str, Any] = {
            "job_dir": str(folder),
            "log": str(folder / "runner.log"),
            "training_path": str(train_path),
            "training_sha256": train_sha,
        }
        if validation_file is not None:
            val_path, val_sha = self._uploaded(validation_file, "validation_file")
            outputs.update(validation_path=str(val_path), validation_sha256=val_sha)
        data = spec.to_dict()
        if requested_dir is not None:
            # The runner does not know where the spec file was: pin relative output folders now.
            data["local"]["output_dir"] = str(requested_dir)
        output_dir = requested_dir or folder  # a claimed output_dir holds this job's outputs, nobody else's
        outputs.update(output_dir=str(output_dir), checkpoints_dir=str(output_dir / "checkpoints"))
        for name in ("training", "validation"):
            original = spec.training_path if name == "training" else spec.validation_path
            if original is not None:
                outputs[f"{name}_source"] = str(original)
        if requested_dir is not None:
            try:
                claim_output_dir(requested_dir, job_id, self.store)
            except ProviderError:
                shutil.rmtree(folder, ignore_errors=True)  # nothing of this job exists yet
                raise
        hyper = spec.hyperparameters.model_dump(mode="json")
        from tuneport.spec.mapping import resolve_local_hyperparameters

        # OpenAI reports the seed a job uses from the start; it does not depend on the data size.
        seed = resolve_local_hyperparameters(spec, 1).seed
        self.store.insert_job(
            job_id, backend=self.name, status="validating_files", model=spec.model, spec=data,
            spec_hash=spec.spec_hash(), dataset_sha256=train_sha, training_file=training_file,
            validation_file=validation_file, method=spec.method.model_dump(mode="json"), hyperparameters=hyper,
            seed=seed, suffix=spec.suffix, metadata=spec.metadata, outputs=outputs,
        )  # fmt: skip
        self.store.add_event(job_id, f"Created fine-tuning job: {job_id}")
        if self.launch:
            self._spawn(job_id, resume=False)
        return self.get(job_id)

    def _requested_output_dir(self, spec: JobSpec) -> Path | None:
        """The folder ``local.output_dir`` names (absolute), or None; refused unless ``allow_output_dir``.

        The folder is claimed for the job in :meth:`create` (see
        :mod:`tuneport.local_backend.training.job_outputs`): one folder never holds two jobs' outputs.
        """
        if not spec.local.output_dir:
            return None
        if not self.allow_output_dir:
            raise ProviderError(
                "local.output_dir is not accepted here: every job's outputs stay in its own folder on this "
                "machine, and nothing a client sends names a folder to write to",
                hint="Leave local.output_dir out; download the results through the API instead.",
            )
        return spec.resolve_path(spec.local.output_dir)

    def _spawn(self, job_id: str, *, resume: bool) -> None:
        try:
            pid = J.spawn_runner(job_id, resume=resume)
        except OSError as exc:
            error = {
                "code": "internal_error",
                "message": f"cannot start the runner process: {exc}",
                "param": None,
            }
            self.store.update_job(job_id, status="failed", error=error, finished_at=int(time.time()))
            raise ProviderError(f"cannot start the runner process for {job_id}: {exc}") from exc
        self.store.update_job(job_id, pid=pid, heartbeat_at=None)

    def _row(self, job_id: str) -> dict[str, Any]:
        row = self.store.get_job(job_id)
        if row is None or row.get("backend") != self.name:
            raise ProviderError(
                f"no local job {job_id!r}" + (f" (it is a {row['backend']} job)" if row else ""),
                hint="`tuneport jobs list` shows your local jobs.",
                code="not_found",
            )
        return J.reconcile(self.store, row)

    def get(self, job_id: str) -> FineTuningJob:
        return self._job(self._row(job_id))

    def list(
        self, *, after: str | None = None, limit: int = 20, metadata: Mapping[str, str] | None = None
    ) -> ListPage[FineTuningJob]:
        from tuneport.jobs.objects import ListPage

        try:
            rows = self.store.list_jobs(backend=self.name, after=after, limit=limit + 1, metadata=metadata)
        except StoreError as exc:
            raise ProviderError(str(exc), hint=exc.hint) from exc
        jobs = [self._job(J.reconcile(self.store, row)) for row in rows[:limit]]
        return ListPage(
            data=jobs,
            has_more=len(rows) > limit,
            first_id=jobs[0].id if jobs else None,
            last_id=jobs[-1].id if jobs else None,
        )

    def cancel(self, job_id: str) -> FineTuningJob:
        """Cancel: a running job checkpoints, then stops as ``cancelled``; a paused one is cancelled at once."""
        row = self._row(job_id)
        status = row["status"]
        if status == "cancelled":
            return self._job(row)
        if status in J.TERMINAL_STATUSES:
            raise ProviderError(f"job {job_id} already {status}; only unfinished jobs can be cancelled")
        if status == "paused":
            done = self.store.update_job(
                job_id, if_status="paused", status="cancelled", finished_at=int(time.time())
            )
            if done is not None:
                J.clear_request(job_id)
                self.store.add_event(job_id, "Fine-tuning job cancelled")
                return self._job(done)
            return self.cancel(job_id)  # it moved on meanwhile (a resume): ask its runner instead
        J.request_stop(job_id, "cancel")
        J.signal_runner(row.get("pid"), job_id)
        self.store.add_event(job_id, "Cancellation requested: the job saves a checkpoint, then stops")
        return self._job(self.store.get_job(job_id))

    def pause(self, job_id: str) -> FineTuningJob:
        """Pause: the runner saves a checkpoint, then stops as ``paused``. :meth:`resume` continues it."""
        row = self._row(job_id)
        status = row["status"]
        if status == "paused":
            return self._job(row)
        if status in J.TERMINAL_STATUSES:
            raise ProviderError(f"job {job_id} already {status}; only running jobs can be paused")
        J.request_stop(job_id, "pause")
        J.signal_runner(row.get("pid"), job_id)
        self.store.add_event(job_id, "Pause requested: the job saves a checkpoint, then stops")
        return self._job(self.store.get_job(job_id))

    def resume(self, job_id: str) -> FineTuningJob:
        """Continue a paused (or interrupted) job from its last checkpoint in a new runner process."""
        row = self._row(job_id)
        status = row["status"]
        if status in J.ACTIVE_STATUSES:
            request = J.read_request(job_id)
            if request is not None and request["action"] == "pause":
                J.clear_request(job_id)
                self.store.add_event(job_id, "Pause request withdrawn")
            return self._job(row)
        if status != "paused":
            raise ProviderError(
                f"job {job_id} is {status}; only paused jobs can be resumed",
                hint="Start a new job with `tuneport train SPEC`.",
            )
        outputs = dict(row.get("outputs") or {})
        interrupted = outputs.pop("interrupted", None)
        J.clear_request(job_id)
        updated = self.store.update_job(
            job_id, if_status="paused", status="queued", outputs=outputs, pid=None, heartbeat_at=None
        )
        if updated is None:
            return self.get(job_id)
        self.store.add_event(
            job_id,
            "Resuming fine-tuning job" + (" after an interruption" if interrupted else ""),
            data={"resumed": True},
        )
        if self.launch:
            self._spawn(job_id, resume=True)
        return self.get(job_id)

    # -- events and checkpoints -----------------------------------------------------------------------------------

    def events(
        self, job_id: str, *, after: str | None = None, limit: int = 20
    ) -> ListPage[FineTuningJobEvent]:
        from tuneport.jobs.objects import FineTuningJobEvent, ListPage

        self._row(job_id)
        rows = self.store.list_events(job_id, after=_int_id(after, "ftevent-"), limit=limit + 1, order="desc")
        events = [
            FineTuningJobEvent(
                id=f"ftevent-{r['id']}",
                created_at=r["created_at"],
                level=r["level"],
                message=r["message"],
                type=r["type"],
                data=r["data"]
                if isinstance(r["data"], dict)
                else ({} if r["data"] is None else {"value": r["data"]}),
            )  # fmt: skip
            for r in rows[:limit]
        ]
        return ListPage(
            data=events,
            has_more=len(rows) > limit,
            first_id=events[0].id if events else None,
            last_id=events[-1].id if events else None,
        )

    def checkpoints(
        self, job_id: str, *, after: str | None = None, limit: int = 10
    ) -> ListPage[FineTuningJobCheckpoint]:
        from tuneport.jobs.objects import ListPage

        self._row(job_id)
        rows = self.store.list_checkpoints(
            job_id, after=_int_id(after, "ftckpt-"), limit=limit + 1, order="desc"
        )
        items = [self._checkpoint(r) for r in rows[:limit]]
        return ListPage(
            data=items,
            has_more=len(rows) > limit,
            first_id=items[0].id if items else None,
            last_id=items[-1].id if items else None,
        )

    @staticmethod
    def _checkpoint(r: dict[str, Any]) -> FineTuningJobCheckpoint:
        from tuneport.jobs.objects import FineTuningJobCheckpoint

        return FineTuningJobCheckpoint(
            id=f"ftckpt-{r['id']}",
            created_at=r["created_at"],
            fine_tuned_model_checkpoint=r["fine_tuned_model_checkpoint"] or f"ckpt-step-{r['step']}",
            fine_tuning_job_id=r["job_id"],
            step_number=r["step"],
            metrics=r["metrics"] or {"step": r["step"]},
            path=r["path"],
        )

    # -- objects ------------------------------------------------------------------------------------------------

    def _file_paths(self, job: FineTuningJob) -> dict[str, str]:
        local = getattr(job, "local", None) or {}
        out = {}
        for name, file_id in (("training", job.training_file), ("validation", job.validation_file)):
            path = local.get(f"{name}_source") or local.get(f"{name}_path")
            if file_id and path:
                out[file_id] = path
        return out

    def _job(self, row: dict[str, Any]) -> FineTuningJob:
        from tuneport.jobs.objects import FineTuningJob

        outputs = dict(row.get("outputs") or {})
        local = {
            key: outputs.get(key)
            for key in ("job_dir", "log", "output_dir", "checkpoints_dir", "adapter", "merged", "model",
                        "serve_path", "serve_as", "model_path", "training_path", "validation_path",
                        "training_source", "validation_source", "num_processes", "result", "interrupted")
            if outputs.get(key) is not None
        }  # fmt: skip
        if row["status"] not in J.TERMINAL_STATUSES:
            local["runner_pid"] = row.get("pid")
        checkpoints = self.store.list_checkpoints(row["id"], limit=50, order="desc")
        local["checkpoints"] = [{"step": c["step"], "path": c["path"]} for c in checkpoints]
        if outputs.get("checkpoints_dir"):
            latest = J.latest_checkpoint(outputs["checkpoints_dir"])
            local["latest_checkpoint"] = str(latest) if latest is not None else None
        return FineTuningJob(
            id=row["id"],
            created_at=row["created_at"],
            model=row.get("model") or "",
            status=row["status"],
            error=row.get("error"),
            fine_tuned_model=row.get("fine_tuned_model"),
            finished_at=row.get("finished_at"),
            hyperparameters=row.get("hyperparameters") or {},
            result_files=list(row.get("result_files") or []),
            trained_tokens=row.get("trained_tokens"),
            training_file=row.get("training_file") or "",
            validation_file=row.get("validation_file"),
            seed=row.get("seed"),
            organization_id=self.name,
            estimated_finish=row.get("estimated_finish"),
            method=row.get("method"),
            metadata=row.get("metadata"),
            local=local,
        )
