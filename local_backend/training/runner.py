"""The job runner: the process that carries one local fine-tuning job from ``validating_files`` to the end.

``tuneport train`` (through :class:`tuneport.providers.local.LocalProvider`) records the job and starts
``python -m tuneport.local_backend.training.runner JOB_ID`` detached; the CLI returns at once and the job survives
the terminal. Everything the runner learns goes to the store, so any process can follow it.

What the runner does, in order:

1. **validating_files** -- checks the base model resolves to a local folder, then validates the training and
   validation files (:func:`tuneport.data.validate.validate_file` with the model's tokenizer). Any error fails the
   job here, before any training, with every finding as an event and the first ones in ``error.message``.
2. **queued** -- plans the run (:func:`tuneport.spec.mapping.resolve_local_hyperparameters`: what each "auto"
   becomes) and checks the plan (:meth:`TrainConfig.validate`: ranges, a rank vLLM can serve, ...).
3. **running** -- trains (:func:`tuneport.local_backend.training.trainer.train`), turning
   its events and checkpoints into store rows (:mod:`~tuneport.local_backend.training.store_sink`). With
   ``local.num_processes`` N > 1 it launches N workers (:mod:`~tuneport.local_backend.training.workers`).
4. **succeeded** (adapter, merged model and result recorded in ``outputs``; ``fine_tuned_model`` named), or
   **cancelled** / **paused** after a stop request (a checkpoint is saved first), or **failed** with
   ``error = {code, message, param}`` (codes: :mod:`~tuneport.local_backend.training.job_errors`).

The trainer writes in the job's folder, or in the spec's ``local.output_dir``, which the provider claimed for this
job alone when it was created (:mod:`~tuneport.local_backend.training.job_outputs`).

Resuming starts from the newest checkpoint whose files are intact (:mod:`~tuneport.local_backend.training.
checkpoints`); a damaged newer one is set aside, with an event saying so.

A runner owns its job only while the job is active and its row names the runner's pid. A reader that finds the
runner silent marks the job paused (:func:`tuneport.local_backend.training.jobs.reconcile`); a runner that was
merely stalled (a suspended machine, a stopped process) finds that out at its next heartbeat, status change or
step, and exits without writing anything more, so it never races the runner a resume starts.

Stop requests, SIGTERM and interruptions: see :mod:`tuneport.local_backend.training.jobs`. Environment knobs:
``TUNEPORT_NUM_THREADS`` (torch threads per process; default: the free cores, divided among the processes),
``TUNEPORT_RUNNER_STEP_DELAY_S`` (sleep after each optimizer step, for tests and demos).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from tuneport.data.reader import file_sha256
from tuneport.data.validate import MIN_EXAMPLES, validate_file
from tuneport.endpoints.registry import register_job_endpoint
from tuneport.errors import SpecError, TuneportError
from tuneport.jobs.store import Store
from tuneport.local_backend.training import jobs as J
from tuneport.local_backend.training.checkpoints import checkpoint_step, resume_point, set_aside
from tuneport.local_backend.training.job_errors import JobFailure, classify_error, with_hint
from tuneport.local_backend.training.machine import pick_num_threads
from tuneport.local_backend.training.store_sink import StoreSink, record_event
from tuneport.local_backend.training.train_config import TrainConfig
from tuneport.local_backend.training.trainer import train
from tuneport.local_backend.training.workers import WORKER_RESULT, run_worker
from tuneport.models.checks import check_base_model, read_model_config
from tuneport.models.fit import FitSettings, check_fit
from tuneport.models.resolve import resolve_model, resolve_model_source
from tuneport.spec.jobspec import JobSpec
from tuneport.spec.mapping import resolve_local_hyperparameters

__all__ = [
    "run_job",
    "main",
    "find_resume_checkpoint",
    "JobFailure",
    "classify_error",
    "StoreSink",
    "record_event",
]

MAX_FINDING_EVENTS = 50
MAX_FINDINGS_IN_MESSAGE = 5


class _StopRequested(BaseException):
    """Raised out of the SIGTERM handler while no training loop is running to poll the request."""


class _JobTakenAway(BaseException):
    """The job is no longer this runner's (marked interrupted while the runner was stalled, then maybe resumed
    by another runner): stop at once and write nothing more."""


def find_resume_checkpoint(checkpoints_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint folder (see :func:`tuneport.local_backend.training.jobs.latest_checkpoint`)."""
    return J.latest_checkpoint(checkpoints_dir)


# ------------------------------------------------------------------------------------------------- the runner


class _Heartbeat:
    """Refreshes ``heartbeat_at`` from a background thread, so liveness does not depend on step length.

    Each beat is conditional on the job still being active; a beat that finds the job gone from this runner
    (another status, another pid) calls ``on_lost`` instead.
    """

    def __init__(self, store: Any, job_id: str, on_lost: Any) -> None:
        self._store, self._job_id, self._on_lost = store, job_id, on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tuneport-heartbeat", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def _beat(self) -> None:
        with contextlib.suppress(TuneportError):  # a busy database: the next beat will do
            row = self._store.update_job(self._job_id, if_status=J.ACTIVE_STATUSES, heartbeat_at=time.time())
            if row is None or row.get("pid") != os.getpid():
                self._on_lost()

    def _loop(self) -> None:
        while not self._stop.wait(J.HEARTBEAT_INTERVAL_S):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _Runner:
    def __init__(self, store: Any, job_id: str, resume: bool) -> None:
        self.store, self.job_id, self.resume = store, job_id, resume
        self.row: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.in_training = False
        self.stop_flag = False
        self.lost = False
        self.fine_tuned_model: str = ""
        self.work_dir = J.job_dir(job_id)

    # -- store helpers ------------------------------------------------------------------------------------------

    def event(
        self,
        message: str,
        *,
        level: str = "info",
        data: dict[str, Any] | None = None,
        type: str | None = None,
    ) -> None:
        kind = type or ("metrics" if data and "step" in data and "train_loss" in data else "message")
        self.store.add_event(self.job_id, message, level=level, type=kind, data=data)

    def set_status(
        self,
        status: str,
        *,
        expect: str | tuple[str, ...],
        events: tuple[dict[str, Any], ...] = (),
        **fields: Any,
    ) -> bool:
        """Move the job to ``status`` if it is still in ``expect``; ``events`` are written in the same
        transaction, so whoever sees the new status also sees them (a follower stops at a terminal status)."""
        row = self.store.update_job(self.job_id, if_status=expect, status=status, events=events, **fields)
        if row is None:
            current = self.store.get_job(self.job_id)
            print(f"runner: not moving to {status}: job is {current and current['status']}", file=sys.stderr)
            return False
        self.row = row
        return True

    def advance(self, status: str, *, expect: str | tuple[str, ...]) -> None:
        """A status change on the way to training: failing it means the job was taken from this runner."""
        if not self.set_status(status, expect=expect):
            raise _JobTakenAway()

    def save_outputs(self, **changes: Any) -> None:
        self.outputs.update(changes)
        row = self.store.update_job(
            self.job_id, if_status=(*J.ACTIVE_STATUSES, "succeeded"), outputs=self.outputs
        )
        if row is None:
            raise _JobTakenAway()
        self.row = row

    def on_lost(self) -> None:
        self.lost = True

    # -- stop requests ------------------------------------------------------------------------------------------

    def on_sigterm(self, signum: int, frame: Any) -> None:
        if J.read_request(self.job_id) is None:
            J.request_stop(self.job_id, "pause", reason=f"the runner received signal {signum}")
        self.stop_flag = True
        if not self.in_training:
            raise _StopRequested()

    def check_owner(self) -> None:
        """Raise :class:`_JobTakenAway` unless the job is still active and this runner's (one indexed read)."""
        if not self.lost:
            row = self.store.get_job(self.job_id)
            self.lost = row is None or row["status"] not in J.ACTIVE_STATUSES or row.get("pid") != os.getpid()
        if self.lost:
            raise _JobTakenAway()

    def should_stop(self) -> bool:
        J.step_delay()
        self.check_owner()
        return self.stop_flag or J.read_request(self.job_id) is not None

    def check_request(self) -> None:
        self.check_owner()
        if J.read_request(self.job_id) is not None:
            raise _StopRequested()

    # -- the job ------------------------------------------------------------------------------------------------

    def run(self) -> int:
        row = self.store.get_job(self.job_id)
        if row is None:
            print(f"runner: no job {self.job_id} in {self.store.path}", file=sys.stderr)
            return 2
        if row["status"] not in J.ACTIVE_STATUSES:
            print(f"runner: job {self.job_id} is {row['status']}: nothing to run", file=sys.stderr)
            return 2
        self.row, self.outputs = row, dict(row.get("outputs") or {})
        self.outputs.pop("interrupted", None)
        self.store.update_job(self.job_id, pid=os.getpid(), outputs=self.outputs)
        heartbeat = _Heartbeat(self.store, self.job_id, self.on_lost)
        heartbeat.start()
        previous = signal.signal(signal.SIGTERM, self.on_sigterm)
        try:
            return self._run()
        except _JobTakenAway:
            print(
                f"runner: job {self.job_id} is no longer this runner's (marked interrupted while this process "
                "was not reporting); stopping without writing anything more",
                file=sys.stderr,
            )
            return 3
        finally:
            signal.signal(signal.SIGTERM, previous)
            heartbeat.stop()

    def _run(self) -> int:
        try:
            self.check_request()
            spec = JobSpec.from_dict(self.row["spec"])
            self.fine_tuned_model = J.fine_tuned_model_name(spec.model, spec.suffix, self.job_id)
            resume_from = self.resume_point() if self.resume else None
            if resume_from is None:
                if self.resume:
                    self.event("No checkpoint to resume from: the job starts over")
                model_dir, n_examples, n_tokens = self.validate(spec)
            else:
                model_dir, n_examples, n_tokens = self.check_unchanged(spec)
            config = self.plan(spec, model_dir, n_examples, n_tokens, self.output_dir())
            self.check_request()
            if resume_from is not None:
                where = f"{resume_from.parent.name}/{resume_from.name}"
                self.event(f"Resuming from the checkpoint at {where}", data={"resume_from": where})
            # The job stays queued while the model loads and the trainer checks it; the sink moves it to
            # running when the first optimizer step is about to happen.
            nproc = int(spec.local.num_processes)
            if nproc > 1:
                result = self.train_distributed(config, nproc, resume_from)
            else:
                result = self.train_here(config, resume_from)
        except _JobTakenAway:
            raise
        except (_StopRequested, KeyboardInterrupt):
            if J.read_request(self.job_id) is None:
                J.request_stop(self.job_id, "pause", reason="the runner was interrupted")
            return self.stopped(step=None)
        except Exception as exc:  # every failure must end the job, never leave it "running"
            failure = classify_error(exc)
            if failure.code == "internal_error":
                traceback.print_exc()
            return self.fail(failure)
        if self.lost:
            raise _JobTakenAway()
        if result.get("cancelled"):
            return self.stopped(step=result.get("steps"))
        return self.succeed(result)

    # -- phases -------------------------------------------------------------------------------------------------

    def _file_path(self, which: str) -> Path | None:
        value = self.outputs.get(f"{which}_path")
        return Path(value) if value else None

    def _file_label(self, which: str) -> str:
        """How messages name a dataset: the user's file name (or the file id), never the store's copy."""
        source = self.outputs.get(f"{which}_source")
        file_id = self.row.get(f"{which}_file")
        if source:
            return f"{Path(source).name} ({file_id})" if file_id else Path(source).name
        return file_id or f"the {which} file"

    def _validate_hint(self, which: str) -> str:
        source = self.outputs.get(f"{which}_source")
        return f"`tuneport data validate {source}`" if source else "`tuneport data validate` on your file"

    def output_dir(self) -> Path:
        """Where the trainer writes: the spec's claimed ``local.output_dir``, else the job's own folder."""
        return Path(self.outputs.get("output_dir") or self.work_dir)

    def resume_point(self) -> Path | None:
        """The newest intact checkpoint; damaged newer ones are set aside, each with a warning event."""
        checkpoints_dir = self.output_dir() / "checkpoints"
        found, damaged = resume_point(checkpoints_dir)
        for path, problem in damaged:
            set_aside(path)
            self.event(
                f"Checkpoint at step {checkpoint_step(path)} cannot be resumed from: {problem}; it is set aside "
                f"as damaged-{path.name}"
                + (f" and the job resumes from step {checkpoint_step(found)}" if found else ""),
                level="warn",
                data={"damaged_checkpoint_step": checkpoint_step(path), "problem": problem},
            )
        return found

    def validate(self, spec: Any) -> tuple[Path, int, int | None]:
        """validating_files: the model resolves, both files pass validation. Returns (model dir, examples, tokens)."""

        if self.row["status"] != "validating_files":
            self.advance("validating_files", expect=("queued", "validating_files"))
        try:
            source = resolve_model_source(spec.model)
            check_base_model(
                source.path,
                trust_remote_code=spec.local.trust_remote_code,
                label=spec.model,
                known_model_types=_known_model_types(),
            )
        except SpecError as exc:
            raise JobFailure("invalid_model", with_hint(exc), "model") from None
        model_dir = source.path
        # Provenance: the folder, and for a Hub model the commit its revision resolved to.
        self.save_outputs(model_path=str(model_dir), model_source=source.provenance)
        if source.kind == "hub":
            self.event(
                f"Base model {spec.model} at commit {source.provenance['sha']} (from the Hugging Face cache)",
                data={"base_model": source.provenance},
            )
        method = "dpo" if spec.method.type == "dpo" else "sft"
        counts: tuple[int, int | None] = (0, None)
        for which in ("training", "validation"):
            path = self._file_path(which)
            if path is None:
                continue
            param, label = f"{which}_file", self._file_label(which)
            if not path.is_file():
                raise JobFailure(f"invalid_{param}", f"{param} {label} does not exist any more", param)
            expected = self.outputs.get(f"{which}_sha256")
            if expected and file_sha256(path) != expected:
                raise JobFailure(
                    f"invalid_{param}",
                    f"{param} {label} changed since it was uploaded (sha256 differs)",
                    param,
                )
            self.event(f"Validating {param} {label}")
            # OpenAI's minimum of 10 examples applies to training files; a validation file may be smaller.
            report = validate_file(
                path,
                model=str(model_dir),
                method=method,
                min_examples=MIN_EXAMPLES if param == "training_file" else 1,
            )
            self.check_request()
            for finding in report.findings[:MAX_FINDING_EVENTS]:
                level = "error" if finding.severity == "error" else "warn"
                self.event(f"{param}: {finding}", level=level, data={"file": param, **finding.to_dict()})
            if len(report.findings) > MAX_FINDING_EVENTS:
                self.event(
                    f"{param}: {len(report.findings) - MAX_FINDING_EVENTS} more finding(s) not shown; "
                    f"{self._validate_hint(which)} lists them all",
                    level="warn",
                )
            if not report.ok:
                errors = [f for f in report.findings if f.severity == "error"][:MAX_FINDINGS_IN_MESSAGE]
                message = (
                    f"{param} {label} failed validation: {report.errors} error(s) in {report.invalid_examples} "
                    f"example(s): "
                    + "; ".join(str(f) for f in errors)
                    + f". Run {self._validate_hint(which)} for every finding."
                )
                raise JobFailure(f"invalid_{param}", message, param)
            if which == "training":
                counts = (report.valid_examples, _total_tokens(report))
                longest = _max_tokens(report)
                if longest is not None:
                    self.save_outputs(n_train_max_tokens=longest)
        self.event(
            f"Files validated: {counts[0]} training examples",
            data={"n_train_examples": counts[0], "n_train_tokens": counts[1]},
        )
        self.save_outputs(n_train_examples=counts[0], n_train_tokens=counts[1])
        self.advance("queued", expect=("validating_files",))
        return model_dir, counts[0], counts[1]

    def check_unchanged(self, spec: Any) -> tuple[Path, int, int | None]:
        """On resume from a checkpoint: the same bytes must still be there (the data position depends on them)."""

        try:
            model_dir = resolve_model(spec.model)
        except SpecError as exc:
            raise JobFailure("invalid_model", with_hint(exc), "model") from None
        for which in ("training", "validation"):
            path = self._file_path(which)
            expected = self.outputs.get(f"{which}_sha256")
            if path is None or expected is None:
                continue
            param = f"{which}_file"
            if not path.is_file() or file_sha256(path) != expected:
                raise JobFailure(
                    f"invalid_{param}",
                    f"cannot resume: {param} {self._file_label(which)} is missing or changed since the job "
                    "started, so the data position saved in the checkpoint would point into different data",
                    param,
                )
        n = self.outputs.get("n_train_examples")
        if not n:
            raise JobFailure(
                "internal_error", "cannot resume: the job has no recorded training-set size", None
            )
        return model_dir, int(n), self.outputs.get("n_train_tokens")

    def plan(
        self, spec: Any, model_dir: Path, n_examples: int, n_tokens: int | None, output_dir: Path
    ) -> Any:
        """queued: resolve every "auto", build and check the TrainConfig."""

        try:
            plan = resolve_local_hyperparameters(spec, n_examples, n_tokens)
        except TuneportError as exc:
            raise classify_error(exc) from None
        nproc = plan.num_processes
        threads = _int_env("TUNEPORT_NUM_THREADS")
        if threads is None and nproc > 1:
            threads = max(1, pick_num_threads(None)[0] // nproc)
        save_steps = getattr(spec.local, "save_steps", None) or _auto_save_steps(plan)
        finetuning_type = "dora" if plan.use_dora else plan.finetuning_type
        config = TrainConfig(
            model=str(model_dir),
            training_file=str(self._file_path("training")),
            validation_file=str(self._file_path("validation")) if self._file_path("validation") else None,
            output_dir=str(output_dir),
            method="dpo" if plan.method == "dpo" else "sft",
            finetuning_type=finetuning_type,
            lora_r=plan.lora_r or 8,
            lora_alpha=plan.lora_alpha or 16,
            lora_dropout=plan.lora_dropout or 0.0,
            target_modules=plan.target_modules or "all-linear",
            n_epochs=plan.n_epochs,
            batch_size=plan.per_device_train_batch_size,
            gradient_accumulation_steps=plan.gradient_accumulation_steps,
            learning_rate=plan.learning_rate,
            lr_scheduler=plan.lr_scheduler,
            warmup_ratio=plan.warmup_ratio,
            weight_decay=plan.weight_decay,
            max_seq_length=plan.max_seq_length,
            packing=plan.packing,
            gradient_checkpointing=plan.gradient_checkpointing,
            seed=plan.seed,
            dtype=plan.dtype,
            dpo_beta=plan.beta if plan.beta is not None else 0.1,
            early_stopping_patience=plan.early_stopping_patience,
            save_merged=plan.save_merged,
            save_steps=save_steps,
            num_threads=threads,
            device=plan.device,
            trust_remote_code=spec.local.trust_remote_code,
            # Provenance for result.json: where the base model came from (the Hub commit sha).
            extra={"model_source": self.outputs.get("model_source")},
        )
        try:
            config.validate()
            self.check_fit(config, spec.model)
        except TuneportError as exc:
            raise classify_error(exc) from None
        hyper = {
            "n_epochs": plan.n_epochs,
            "batch_size": plan.batch_size,
            "learning_rate_multiplier": plan.learning_rate_multiplier,
        }
        if plan.beta is not None:
            hyper["beta"] = plan.beta
        method = {"type": spec.method.type, spec.method.type: {"hyperparameters": hyper}}
        self.store.update_job(self.job_id, hyperparameters=hyper, method=method, seed=plan.seed)
        self.save_outputs(
            output_dir=str(output_dir),
            checkpoints_dir=str(output_dir / "checkpoints"),
            num_processes=nproc,
            plan=plan.to_dict(),
        )
        self.event(
            f"Planned {plan.total_steps} steps: {plan.n_epochs} epoch(s) of {plan.steps_per_epoch} step(s), batch "
            f"{plan.batch_size}, learning rate {plan.learning_rate:g}, checkpoint every "
            f"{save_steps or plan.steps_per_epoch} step(s) and every epoch"
            + (f", {nproc} processes" if nproc > 1 else ""),
            data={"plan_notes": list(plan.notes), "total_steps": plan.total_steps},
        )
        (J.job_dir(self.job_id, create=True) / "train_config.json").write_text(
            json.dumps(config.to_dict(), indent=2), "utf-8"
        )
        return config

    def check_fit(self, config: TrainConfig, label: str) -> None:
        """Refuse a job whose estimated memory exceeds the free RAM / VRAM, before any weights load."""
        from tuneport.local_backend.training.machine import resolve_device, torch_dtype

        device = resolve_device(config)
        dtype = str(torch_dtype(config, device)).removeprefix("torch.")
        longest = self.outputs.get("n_train_max_tokens")
        settings = FitSettings(
            dtype=dtype,
            finetuning_type=config.finetuning_type,
            lora_r=config.lora_r,
            target_modules=config.target_modules,
            batch_size=config.batch_size,
            tokens=min(config.max_seq_length, int(longest)) if longest else config.max_seq_length,
            gradient_checkpointing=config.gradient_checkpointing,
            device=device,
        )
        fit = check_fit(read_model_config(Path(config.model)), settings, where=f"{config.model}/config.json")
        self.save_outputs(memory_estimate={"bytes": fit.estimate.total, "free_bytes": fit.free})
        if not fit.fits:
            error = fit.error(label)
            raise JobFailure("insufficient_memory", with_hint(error), None)
        self.event(fit.summary().capitalize(), data={"memory_estimate_bytes": fit.estimate.total})

    # -- training -----------------------------------------------------------------------------------------------

    def train_here(self, config: Any, resume_from: Path | None) -> dict[str, Any]:

        step = checkpoint_step(resume_from) if resume_from is not None else None
        sink = StoreSink(self.store, self.job_id, self.fine_tuned_model, resumed_from_step=step)
        self.in_training = True
        try:
            result = train(config, on_event=sink, should_stop=self.should_stop, resume_from=resume_from)
        finally:
            self.in_training = False
        return result.to_dict()

    def train_distributed(self, config: Any, nproc: int, resume_from: Path | None) -> dict[str, Any]:
        folder = J.job_dir(self.job_id, create=True)
        result_path = folder / WORKER_RESULT
        result_path.unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(nproc),
            "-m", "tuneport.local_backend.training.runner", self.job_id, "--worker",
            "--supervisor", str(os.getpid()),
        ]  # fmt: skip
        if resume_from is not None:
            cmd += ["--resume-from", str(resume_from)]
        env = dict(os.environ)
        if config.num_threads:
            env["OMP_NUM_THREADS"] = str(config.num_threads)
        self.event(f"Launching {nproc} training processes (torch.distributed)")
        self.in_training = True  # from here SIGTERM only writes the request; the workers poll it
        try:
            proc = subprocess.Popen(cmd, cwd=folder, env=env, stdin=subprocess.DEVNULL)
            code = proc.wait()
        finally:
            self.in_training = False
        if result_path.is_file():
            data = json.loads(result_path.read_text("utf-8"))
            if "error" in data:
                raise JobFailure(**data["error"])
            if code == 0:
                return data
        raise JobFailure(
            "training_error",
            f"the distributed training processes exited with status {code}; see the job's runner.log",
            None,
        )

    # -- endings ------------------------------------------------------------------------------------------------

    def stopped(self, step: int | None) -> int:
        request = J.read_request(self.job_id) or {"action": "pause", "reason": "stopped"}
        J.clear_request(self.job_id)
        at = f" at step {step}" if step else ""
        if request["action"] == "cancel":
            cancelled = {"message": f"Fine-tuning job cancelled{at} ({request.get('reason', 'requested')})"}
            self.set_status(
                "cancelled", expect=J.ACTIVE_STATUSES, events=(cancelled,), finished_at=int(time.time())
            )
            return 0
        ckpt = find_resume_checkpoint(self.output_dir() / "checkpoints")
        where = f"from {ckpt.name}" if ckpt else "from the start"
        paused = {
            "message": f"Fine-tuning job paused{at} ({request.get('reason', 'requested')}); "
            f"`tuneport jobs resume {self.job_id}` continues {where}",
            "data": {"paused": True, "step": step} if step else {"paused": True},
        }
        self.set_status("paused", expect=J.ACTIVE_STATUSES, events=(paused,))
        return 0

    def fail(self, failure: JobFailure) -> int:
        J.clear_request(self.job_id)
        error = {"code": failure.code, "message": failure.message, "param": failure.param}
        failed = {
            "message": f"Fine-tuning job failed: {failure.message}",
            "level": "error",
            "data": {"error": error},
        }
        self.set_status(
            "failed", expect=J.ACTIVE_STATUSES, events=(failed,), error=error, finished_at=int(time.time())
        )
        print(f"runner: job failed [{failure.code}]: {failure.message}", file=sys.stderr)
        return 1

    def succeed(self, result: dict[str, Any]) -> int:
        J.clear_request(self.job_id)
        summary = {
            k: result.get(k)
            for k in ("steps", "total_steps", "epochs_completed", "seconds", "trained_tokens", "packing",
                      "num_threads", "device", "stopped_early", "final_metrics", "unservable_reasons")
        }  # fmt: skip
        serve_path = result.get("serve_path")
        self.save_outputs(
            adapter=result.get("adapter_dir"),
            merged=result.get("merged_dir"),
            model=result.get("model_dir"),
            serve_path=serve_path,
            serve_as=result.get("serve_as"),
            result=summary,
        )
        events = (
            self.register_endpoint(),
            {"message": f"New fine-tuned model created: {self.fine_tuned_model}",
             "data": {"serve_as": result.get("serve_as"), "serve_path": Path(serve_path).name if serve_path else None}},
            {"message": "The job has successfully completed"},  # OpenAI's last event, last here too
        )  # fmt: skip
        self.set_status(
            "succeeded",
            expect=("running", "queued"),
            events=events,
            fine_tuned_model=self.fine_tuned_model,
            trained_tokens=int(result.get("trained_tokens") or 0),
            finished_at=int(time.time()),
        )
        return 0

    def register_endpoint(self) -> dict[str, Any]:
        """Save the finishing job as a named endpoint (``tuneport chat MODEL``); never fails the job.

        Called just before the job is marked succeeded (so that the event it returns lands with that status):
        the endpoint is registered from the row as it is about to be.
        """

        finishing = {
            **self.store.get_job(self.job_id),
            "status": "succeeded",
            "fine_tuned_model": self.fine_tuned_model,
        }
        try:
            row = register_job_endpoint(self.store, finishing)
        except TuneportError as exc:
            return {"message": f"Could not save an endpoint for this job: {exc}", "level": "warn"}
        return {
            "message": f"Endpoint {row['name']} saved (serve it with `tuneport serve --adapter {self.job_id}`)"
        }


# ---------------------------------------------------------------------------------------------------- helpers


def _auto_save_steps(plan: Any) -> int | None:
    """Checkpoints within an epoch: LoRA checkpoints are small, so four per epoch (a kill loses at most a
    quarter epoch); full fine-tuning checkpoints hold the whole model, so only at epoch ends."""
    if plan.finetuning_type == "full" or plan.steps_per_epoch < 4:
        return None
    return max(1, math.ceil(plan.steps_per_epoch / 4))


def _total_tokens(report: Any) -> int | None:
    stats = getattr(report, "stats", None)
    tokens = getattr(stats, "tokens", None)
    total = getattr(tokens, "total", None) if tokens is not None else None
    return int(total) if isinstance(total, int | float) else None


def _max_tokens(report: Any) -> int | None:
    tokens = getattr(getattr(report, "stats", None), "tokens", None)
    longest = getattr(tokens, "max", None) if tokens is not None else None
    return int(longest) if isinstance(longest, int | float) else None


def _known_model_types() -> set[str]:
    """The model types transformers has built in (a config with another one needs its repository's code)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return set(CONFIG_MAPPING_NAMES)


def _int_env(name: str) -> int | None:
    try:
        value = int(os.environ[name])
    except (KeyError, ValueError):
        return None
    return value if value > 0 else None


def run_job(job_id: str, *, resume: bool = False, store: Any = None) -> int:
    """Run (or, with ``resume``, continue) the local job ``job_id`` in this process; return an exit status.

    This is what the detached runner process executes; tests may call it directly.
    """

    own = store is None
    store = store or Store()
    try:
        return _Runner(store, job_id, resume).run()
    finally:
        if own:
            store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tuneport.local_backend.training.runner",
        description="Run one local tuneport fine-tuning job.",
    )
    parser.add_argument("job_id")
    parser.add_argument("--resume", action="store_true", help="continue from the job's last checkpoint")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--supervisor", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--resume-from", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        sys.exit(run_worker(args.job_id, args.supervisor, args.resume_from))
    sys.exit(run_job(args.job_id, resume=args.resume))


if __name__ == "__main__":
    main()
