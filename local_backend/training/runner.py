"""The job runner: the process that carries one local fine-tuning job from ``validating_files`` to the end.

``tuneport train`` (through :class:`tuneport.providers.local.LocalProvider`) records the job and starts
``python -m tuneport.local_backend.training.runner JOB_ID`` detached; the CLI returns at once and the job survives the
terminal. Everything the runner learns goes to the store, so any process can follow it.

What the runner does, in order:

1. **validating_files** -- checks the base model resolves to a local folder, then validates the training and
   validation files (:func:`tuneport.data.validate.validate_file` with the model's tokenizer). Any error fails the
   job here, before any training, with every finding as an event and the first ones in ``error.message``.
2. **queued** -- plans the run (:func:`tuneport.spec.mapping.resolve_local_hyperparameters`: what each "auto" becomes)
   and checks the plan (:meth:`TrainConfig.validate`: ranges, a rank vLLM can serve, ...).
3. **running** -- trains (:func:`tuneport.local_backend.training.trainer.train`), turning its OpenAI-shaped events and
   checkpoints into store rows. With ``local.num_processes`` N > 1 it launches N workers through
   ``python -m torch.distributed.run`` (gloo on CPU, NCCL on GPUs); only rank 0 writes to the store, and every
   rank agrees on a stop request through an all-reduce, so they all stop at the same step.
4. **succeeded** (adapter, merged model and result recorded in ``outputs``; ``fine_tuned_model`` named), or
   **cancelled** / **paused** after a stop request (a checkpoint is saved first), or **failed** with
   ``error = {code, message, param}``.

Error codes (``error.code``): ``invalid_training_file`` / ``invalid_validation_file`` (the dataset failed
validation or changed since upload), ``invalid_model`` (no such local model, no tokenizer or chat template),
``invalid_hyperparameters`` (a setting out of range, a LoRA rank vLLM cannot serve, target modules the model lacks),
``insufficient_disk_space``, ``training_error`` (a distributed run whose workers failed) and ``internal_error``
(a bug: the traceback is in ``runner.log``).

Stop requests, SIGTERM and interruptions: see :mod:`tuneport.local_backend.training.jobs`.

Environment knobs: ``TUNEPORT_NUM_THREADS`` (torch threads per process; default: the free cores, divided among
the processes), ``TUNEPORT_RUNNER_STEP_DELAY_S`` (sleep after each optimizer step: slows a tiny run down so that
tests and demos can pause, cancel or kill it mid-way).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from tuneport.errors import DataError, SpecError, TuneportError
from tuneport.local_backend.training import jobs as J

__all__ = ["run_job", "main", "find_resume_checkpoint", "JobFailure", "classify_error"]

MAX_FINDING_EVENTS = 50
MAX_FINDINGS_IN_MESSAGE = 5


class JobFailure(Exception):
    """Ends the job as ``failed`` with OpenAI's error shape."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


class _StopRequested(BaseException):
    """Raised out of the SIGTERM handler while no training loop is running to poll the request."""


# OpenAI-facing names of TrainConfig fields, for ``error.param``.
_PARAM_NAMES = {
    "n_epochs": "hyperparameters.n_epochs",
    "batch_size": "hyperparameters.batch_size",
    "learning_rate": "local.learning_rate",
    "dpo_beta": "hyperparameters.beta",
    "model": "model",
    "training_file": "training_file",
    "validation_file": "validation_file",
}


def classify_error(exc: BaseException) -> JobFailure:
    """Map an exception raised while preparing or running training to ``error = {code, message, param}``."""
    if isinstance(exc, JobFailure):
        return exc
    message = str(exc)
    hint = getattr(exc, "hint", None)
    text = message + (f" ({hint})" if hint else "")
    if isinstance(exc, DataError):
        return JobFailure("invalid_training_file", text, "training_file")
    if isinstance(exc, SpecError):
        if "disk space" in message:
            return JobFailure("insufficient_disk_space", text, None)
        match = re.search(r"`(\w+)`", message)
        field = match.group(1) if match else None
        if field == "model" or "chat template" in message or "tokenizer" in message:
            return JobFailure("invalid_model", text, "model")
        if field in ("training_file", "validation_file"):
            return JobFailure(f"invalid_{field}", text, field)
        param = _PARAM_NAMES.get(field, f"local.{field}") if field else None
        return JobFailure("invalid_hyperparameters", text, param)
    if isinstance(exc, TuneportError):
        return JobFailure("invalid_request", text, None)
    return JobFailure(
        "internal_error", f"{type(exc).__name__}: {exc} (traceback in the job's runner.log)", None
    )


def find_resume_checkpoint(checkpoints_dir: str | os.PathLike[str]) -> Path | None:
    """The checkpoint a resumed run starts from (see :func:`tuneport.local_backend.training.jobs.latest_checkpoint`)."""
    return J.latest_checkpoint(checkpoints_dir)


# ------------------------------------------------------------------------------------------------- the runner


class _Heartbeat:
    """Refreshes ``heartbeat_at`` from a background thread, so liveness does not depend on step length."""

    def __init__(self, store: Any, job_id: str) -> None:
        self._store, self._job_id = store, job_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tuneport-heartbeat", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def _beat(self) -> None:
        with contextlib.suppress(TuneportError):  # a busy database: the next beat will do
            self._store.update_job(self._job_id, heartbeat_at=time.time())

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
        self.fine_tuned_model: str = ""

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

    def save_outputs(self, **changes: Any) -> None:
        self.outputs.update({k: v for k, v in changes.items()})
        self.row = self.store.update_job(self.job_id, outputs=self.outputs) or self.row

    # -- stop requests ------------------------------------------------------------------------------------------

    def on_sigterm(self, signum: int, frame: Any) -> None:
        if J.read_request(self.job_id) is None:
            J.request_stop(self.job_id, "pause", reason=f"the runner received signal {signum}")
        self.stop_flag = True
        if not self.in_training:
            raise _StopRequested()

    def should_stop(self) -> bool:
        delay = _float_env("TUNEPORT_RUNNER_STEP_DELAY_S")
        if delay:
            time.sleep(delay)
        return self.stop_flag or J.read_request(self.job_id) is not None

    def check_request(self) -> None:
        if J.read_request(self.job_id) is not None:
            raise _StopRequested()

    # -- the job ------------------------------------------------------------------------------------------------

    def run(self) -> int:
        row = self.store.get_job(self.job_id)
        if row is None:
            print(f"runner: no job {self.job_id} in {self.store.path}", file=sys.stderr)
            return 2
        self.row, self.outputs = row, dict(row.get("outputs") or {})
        self.outputs.pop("interrupted", None)
        self.store.update_job(self.job_id, pid=os.getpid(), outputs=self.outputs)
        heartbeat = _Heartbeat(self.store, self.job_id)
        heartbeat.start()
        previous = signal.signal(signal.SIGTERM, self.on_sigterm)
        try:
            return self._run()
        finally:
            signal.signal(signal.SIGTERM, previous)
            heartbeat.stop()

    def _run(self) -> int:
        from tuneport.spec.jobspec import JobSpec

        try:
            self.check_request()
            spec = JobSpec.from_dict(self.row["spec"])
            self.fine_tuned_model = J.fine_tuned_model_name(spec.model, spec.suffix, self.job_id)
            output_dir = Path(self.outputs.get("output_dir") or J.job_dir(self.job_id))
            resume_from = find_resume_checkpoint(output_dir / "checkpoints") if self.resume else None
            if resume_from is None:
                if self.resume:
                    self.event("No checkpoint to resume from: the job starts over")
                model_dir, n_examples, n_tokens = self.validate(spec)
            else:
                model_dir, n_examples, n_tokens = self.check_unchanged(spec)
            config = self.plan(spec, model_dir, n_examples, n_tokens, output_dir)
            self.check_request()
            if resume_from is not None:
                self.event(
                    f"Resuming from the checkpoint at {resume_from}", data={"resume_from": str(resume_from)}
                )
            # The job stays queued while the model loads and the trainer checks it; the sink moves it to
            # running when the first optimizer step is about to happen.
            nproc = int(spec.local.num_processes)
            if nproc > 1:
                result = self.train_distributed(config, nproc, resume_from)
            else:
                result = self.train_here(config, resume_from)
        except (_StopRequested, KeyboardInterrupt):
            if J.read_request(self.job_id) is None:
                J.request_stop(self.job_id, "pause", reason="the runner was interrupted")
            return self.stopped(step=None)
        except Exception as exc:  # every failure must end the job, never leave it "running"
            failure = classify_error(exc)
            if failure.code == "internal_error":
                traceback.print_exc()
            return self.fail(failure)
        if result.get("cancelled"):
            return self.stopped(step=result.get("steps"))
        return self.succeed(result)

    # -- phases -------------------------------------------------------------------------------------------------

    def _file_path(self, which: str) -> Path | None:
        value = self.outputs.get(f"{which}_path")
        return Path(value) if value else None

    def validate(self, spec: Any) -> tuple[Path, int, int | None]:
        """validating_files: the model resolves, both files pass validation. Returns (model dir, examples, tokens)."""
        from tuneport.data.reader import file_sha256
        from tuneport.data.validate import MIN_EXAMPLES, validate_file
        from tuneport.fixtures.tiny_model import resolve_model

        if self.row["status"] != "validating_files":
            self.set_status("validating_files", expect=("queued", "validating_files"))
        try:
            model_dir = resolve_model(spec.model)
        except SpecError as exc:
            raise JobFailure("invalid_model", _with_hint(exc), "model") from None
        self.save_outputs(model_path=str(model_dir))
        method = "dpo" if spec.method.type == "dpo" else "sft"
        counts: tuple[int, int | None] = (0, None)
        for which in ("training", "validation"):
            path = self._file_path(which)
            if path is None:
                continue
            param = f"{which}_file"
            if not path.is_file():
                raise JobFailure(f"invalid_{param}", f"{param} {path} does not exist any more", param)
            expected = self.outputs.get(f"{which}_sha256")
            if expected and file_sha256(path) != expected:
                raise JobFailure(
                    f"invalid_{param}",
                    f"{param} {path} changed since it was uploaded (sha256 differs)",
                    param,
                )
            self.event(f"Validating {param} {path}")
            # OpenAI's minimum of 10 examples applies to training files; a validation file may be smaller.
            report = validate_file(
                path,
                model=str(model_dir),
                method=method,
                min_examples=MIN_EXAMPLES if param == "training_file" else 1,
            )
            for finding in report.findings[:MAX_FINDING_EVENTS]:
                level = "error" if finding.severity == "error" else "warn"
                self.event(f"{param}: {finding}", level=level, data={"file": param, **finding.to_dict()})
            if len(report.findings) > MAX_FINDING_EVENTS:
                self.event(
                    f"{param}: {len(report.findings) - MAX_FINDING_EVENTS} more finding(s) not shown; "
                    f"`tuneport data validate {path}` lists them all",
                    level="warn",
                )
            if not report.ok:
                errors = [f for f in report.findings if f.severity == "error"][:MAX_FINDINGS_IN_MESSAGE]
                message = (
                    f"{param} {path} failed validation: {report.errors} error(s) in {report.invalid_examples} "
                    f"example(s): "
                    + "; ".join(str(f) for f in errors)
                    + f". Run `tuneport data validate {path}` for every finding."
                )
                raise JobFailure(f"invalid_{param}", message, param)
            if which == "training":
                counts = (report.valid_examples, _total_tokens(report))
        self.event(
            f"Files validated: {counts[0]} training examples",
            data={"n_train_examples": counts[0], "n_train_tokens": counts[1]},
        )
        self.save_outputs(n_train_examples=counts[0], n_train_tokens=counts[1])
        self.set_status("queued", expect=("validating_files",))
        return model_dir, counts[0], counts[1]

    def check_unchanged(self, spec: Any) -> tuple[Path, int, int | None]:
        """On resume from a checkpoint: the same bytes must still be there (the data position depends on them)."""
        from tuneport.data.reader import file_sha256
        from tuneport.fixtures.tiny_model import resolve_model

        try:
            model_dir = resolve_model(spec.model)
        except SpecError as exc:
            raise JobFailure("invalid_model", _with_hint(exc), "model") from None
        for which in ("training", "validation"):
            path = self._file_path(which)
            expected = self.outputs.get(f"{which}_sha256")
            if path is None or expected is None:
                continue
            param = f"{which}_file"
            if not path.is_file() or file_sha256(path) != expected:
                raise JobFailure(
                    f"invalid_{param}",
                    f"cannot resume: {param} {path} is missing or changed since the job started, so the data "
                    "position saved in the checkpoint would point into different data",
                    param,
                )
        n = self.outputs.get("n_train_examples")
        if not n:
            raise JobFailure(
                "internal_error", "cannot resume: the job has no recorded training-set size", None
            )
        return model_dir, int(n), self.outputs.get("n_train_tokens")

    def plan(self, spec: Any, model_dir: Path, n_examples: int, n_tokens: int | None, output_dir: Path):
        """queued: resolve every "auto", build and check the TrainConfig."""
        from tuneport.local_backend.training.train_config import TrainConfig
        from tuneport.spec.mapping import resolve_local_hyperparameters

        try:
            plan = resolve_local_hyperparameters(spec, n_examples, n_tokens)
        except TuneportError as exc:
            raise classify_error(exc) from None
        nproc = plan.num_processes
        threads = _int_env("TUNEPORT_NUM_THREADS")
        if threads is None and nproc > 1:
            from tuneport.local_backend.training.trainer import pick_num_threads

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
        )
        try:
            config.validate()
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

    # -- training -----------------------------------------------------------------------------------------------

    def train_here(self, config: Any, resume_from: Path | None) -> dict[str, Any]:
        from tuneport.local_backend.training.trainer import train

        sink = StoreSink(self.store, self.job_id, self.fine_tuned_model)
        self.in_training = True
        try:
            result = train(config, on_event=sink, should_stop=self.should_stop, resume_from=resume_from)
        finally:
            self.in_training = False
        return result.to_dict()

    def train_distributed(self, config: Any, nproc: int, resume_from: Path | None) -> dict[str, Any]:
        folder = J.job_dir(self.job_id, create=True)
        result_path = folder / "worker_result.json"
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
            f"the distributed training processes exited with status {code}; see {J.log_path(self.job_id)}",
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
        ckpt = find_resume_checkpoint(
            Path(self.outputs.get("checkpoints_dir") or J.job_dir(self.job_id) / "checkpoints")
        )
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
        self.save_outputs(
            adapter=result.get("adapter_dir"),
            merged=result.get("merged_dir"),
            model=result.get("model_dir"),
            serve_path=result.get("serve_path"),
            serve_as=result.get("serve_as"),
            result=summary,
        )
        events = (
            self.register_endpoint(),
            {"message": f"New fine-tuned model created: {self.fine_tuned_model}",
             "data": {"serve_path": result.get("serve_path")}},
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
        from tuneport.endpoints.registry import register_job_endpoint
        from tuneport.errors import TuneportError

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


class StoreSink:
    """The trainer's ``on_event``: stores its events and checkpoints, and marks the job ``running`` when the
    trainer announces its first step (everything before -- loading, checks -- happens while ``queued``)."""

    def __init__(self, store: Any, job_id: str, fine_tuned_model: str) -> None:
        self.store, self.job_id, self.fine_tuned_model = store, job_id, fine_tuned_model
        self.started = False

    def __call__(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if not self.started and "total_steps" in data:
            self.started = True
            if self.store.update_job(self.job_id, if_status="queued", status="running") is not None:
                self.store.add_event(self.job_id, "Fine-tuning job started")
        record_event(self.store, self.job_id, self.fine_tuned_model, event)


def record_event(store: Any, job_id: str, fine_tuned_model: str, event: dict[str, Any]) -> None:
    """Store a trainer event (``fine_tuning.job.event``) or checkpoint (``fine_tuning.job.checkpoint``)."""
    created = int(event.get("created_at") or time.time())
    if event.get("object") == "fine_tuning.job.checkpoint":
        step = int(event["step_number"])
        name = J.checkpoint_model_name(fine_tuned_model, step)
        store.add_checkpoint(
            job_id, step, metrics=event.get("metrics") or {}, path=event.get("path"),
            fine_tuned_model_checkpoint=name, created_at=created,
        )  # fmt: skip
        store.add_event(
            job_id,
            f"Checkpoint created at step {step}",
            data={
                "step_number": step,
                "checkpoint": name,
                "path": event.get("path"),
                "epoch": event.get("epoch"),
            },
            created_at=created,
        )
        return
    level = event.get("level", "info")
    kind = event.get("type") or "message"
    store.add_event(
        job_id,
        str(event.get("message", "")),
        level=level if level in ("info", "warn", "error") else "info",
        type=kind if kind in ("message", "metrics") else "message",
        data=event.get("data"),
        created_at=created,
    )


# ------------------------------------------------------------------------------------- distributed workers


def _run_worker(job_id: str, supervisor: int, resume_from: str | None) -> int:
    """One rank of a ``torch.distributed.run`` launch. Rank 0 writes events and the result file."""
    from tuneport.jobs.store import Store
    from tuneport.local_backend.training.train_config import TrainConfig
    from tuneport.local_backend.training.trainer import train

    rank = int(os.environ.get("RANK", "0"))
    folder = J.job_dir(job_id)
    data = json.loads((folder / "train_config.json").read_text("utf-8"))
    config = TrainConfig(**data)
    store = Store() if rank == 0 else None
    row = store.get_job(job_id) if store is not None else None
    ftm = (row or {}).get("fine_tuned_model") or ""
    if store is not None and row is not None:
        from tuneport.spec.jobspec import JobSpec

        spec = JobSpec.from_dict(row["spec"])
        ftm = J.fine_tuned_model_name(spec.model, spec.suffix, job_id)

    store_sink = StoreSink(store, job_id, ftm) if store is not None else None

    def sink(event: dict[str, Any]) -> None:
        if store_sink is not None:
            store_sink(event)

    def should_stop() -> bool:
        import torch
        import torch.distributed as dist

        delay = _float_env("TUNEPORT_RUNNER_STEP_DELAY_S")
        if delay:
            time.sleep(delay)
        local = J.read_request(job_id) is not None or not J.pid_alive(supervisor)
        if not (dist.is_available() and dist.is_initialized()):
            return local
        # Every rank must stop at the same step (a rank that stops alone would hang the others in a collective).
        flag = torch.tensor([1 if local else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    try:
        result = train(config, on_event=sink, should_stop=should_stop, resume_from=resume_from)
    except BaseException as exc:
        if rank == 0:
            failure = classify_error(exc)
            if failure.code == "internal_error":
                traceback.print_exc()
            payload = {"error": {"code": failure.code, "message": failure.message, "param": failure.param}}
            (folder / "worker_result.json").write_text(json.dumps(payload), "utf-8")
        raise
    if rank == 0:
        tmp = folder / "worker_result.json.tmp"
        tmp.write_text(json.dumps(result.to_dict()), "utf-8")
        os.replace(tmp, folder / "worker_result.json")
    return 0


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


def _with_hint(exc: TuneportError) -> str:
    return str(exc) + (f" ({exc.hint})" if exc.hint else "")


def _float_env(name: str) -> float | None:
    try:
        return float(os.environ[name])
    except (KeyError, ValueError):
        return None


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
    from tuneport.jobs.store import Store

    own = store is None
    store = store or Store()
    try:
        return _Runner(store, job_id, resume).run()
    finally:
        if own:
            store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tuneport.local_backend.training.runner", description="Run one local tuneport fine-tuning job."
    )
    parser.add_argument("job_id")
    parser.add_argument("--resume", action="store_true", help="continue from the job's last checkpoint")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--supervisor", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--resume-from", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        sys.exit(_run_worker(args.job_id, args.supervisor, args.resume_from))
    sys.exit(run_job(args.job_id, resume=args.resume))


if __name__ == "__main__":
    main()
