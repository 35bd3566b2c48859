"""Bookkeeping for local jobs that every side shares: the CLI, the local provider, the runner process.

Kept free of heavy imports (no torch, no pydantic): it is imported on every ``tuneport jobs ...`` call.

A local job lives in two places:

- its row in the store (status, spec, error, ``outputs``, ``pid``, ``heartbeat_at``) plus its events and
  checkpoints, and
- its folder ``$TUNEPORT_HOME/jobs/<id>/``: ``runner.log`` (the runner's stdout/stderr), ``control.json`` (a stop
  request for the runner), and the trainer's outputs (``checkpoints/``, ``adapter/``, ``merged/``, ``result.json``),
  which belong to this job alone (``local.output_dir`` only receives a copy: see ``job_outputs``).

How the CLI talks to a running job: it writes ``control.json`` (``{"action": "cancel" | "pause"}``) and sends
SIGTERM to the runner. The runner (and every rank of a multi-process run) polls the file between optimizer steps,
so all ranks read the same request; SIGTERM only wakes a runner that is not yet in the training loop. A SIGTERM
with no request (a machine shutting down, a plain ``kill``) is treated as a pause: the job checkpoints and stops
as ``paused``, resumable, rather than being thrown away as ``cancelled``.

How an interrupted job is found: the runner records its pid and refreshes ``heartbeat_at`` every few seconds from
a background thread. Whenever jobs are read (:func:`reconcile`), a job in an active status whose runner process
is gone (no such pid, a zombie, or on Linux a pid now running something else) or whose heartbeat is older than
:func:`stale_after_s` is marked **paused** with ``outputs["interrupted"]`` set and a warning event, so
``tuneport jobs resume ID`` continues it from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import string
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tuneport.errors import ProviderError
from tuneport.processes import pid_alive

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "BACKEND",
    "new_job_id",
    "job_dir",
    "log_path",
    "control_path",
    "request_stop",
    "read_request",
    "clear_request",
    "pid_alive",
    "runner_alive",
    "spawn_runner",
    "signal_runner",
    "fine_tuned_model_name",
    "checkpoint_model_name",
    "reconcile",
    "latest_checkpoint",
    "stale_after_s",
    "step_delay",
    "HEARTBEAT_INTERVAL_S",
]

BACKEND = "local"
ACTIVE_STATUSES: tuple[str, ...] = ("validating_files", "queued", "running")
TERMINAL_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled")
STOP_ACTIONS = ("cancel", "pause")

HEARTBEAT_INTERVAL_S = 2.0
_DEFAULT_STALE_S = 90.0
# A job row may exist for a moment before its runner has a pid (created, then spawned): give it this long.
_SPAWN_GRACE_S = 30.0

_ID_ALPHABET = string.ascii_letters + string.digits
_JOB_ID = re.compile(r"ftjob-[A-Za-z0-9]{8,64}")


def new_job_id() -> str:
    """A job id shaped like OpenAI's: ``ftjob-`` and 24 random letters and digits."""
    return "ftjob-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def _check_id(job_id: str) -> str:
    # The id becomes a folder name: never let a crafted id walk out of the jobs folder.
    if not _JOB_ID.fullmatch(job_id):
        raise ProviderError(
            f"{job_id!r} is not a local job id (expected ftjob- followed by letters and digits)",
            hint="`tuneport jobs list` shows the ids of your jobs.",
        )
    return job_id


def job_dir(job_id: str, *, create: bool = False) -> Path:
    """The job's folder, ``$TUNEPORT_HOME/jobs/<id>/`` (also the trainer's ``output_dir``)."""
    from tuneport.paths import home_dir

    path = home_dir() / "jobs" / _check_id(job_id)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def log_path(job_id: str) -> Path:
    """Where the runner's stdout and stderr go."""
    return job_dir(job_id) / "runner.log"


def control_path(job_id: str) -> Path:
    return job_dir(job_id) / "control.json"


def stale_after_s() -> float:
    """Seconds without a heartbeat after which a runner counts as gone (``TUNEPORT_RUNNER_STALE_S``)."""
    try:
        return float(os.environ.get("TUNEPORT_RUNNER_STALE_S", _DEFAULT_STALE_S))
    except ValueError:
        return _DEFAULT_STALE_S


def step_delay() -> None:
    """Sleep ``TUNEPORT_RUNNER_STEP_DELAY_S`` after an optimizer step: slows a tiny run down so that tests and
    demos can pause, cancel or kill it mid-way."""
    try:
        delay = float(os.environ.get("TUNEPORT_RUNNER_STEP_DELAY_S", ""))
    except ValueError:
        return
    if delay > 0:
        time.sleep(delay)


# ----------------------------------------------------------------------------------------------- stop requests


def request_stop(job_id: str, action: str, *, reason: str = "requested by the user") -> None:
    """Ask the job's runner to checkpoint and stop; ``action`` says what status it ends in.

    A cancel overrides an earlier pause request, never the other way round.
    """
    if action not in STOP_ACTIONS:
        raise ValueError(f"action must be one of {STOP_ACTIONS}, not {action!r}")
    current = read_request(job_id)
    if current is not None and current["action"] == "cancel" and action != "cancel":
        return
    path = control_path(job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".control-{os.getpid()}-{threading.get_ident()}.json")
    tmp.write_text(json.dumps({"action": action, "reason": reason, "at": time.time()}), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a reader sees the old request or the new one, never half a file


def read_request(job_id: str) -> dict[str, Any] | None:
    """The pending stop request (``{"action", "reason", "at"}``), or None."""
    try:
        data = json.loads(control_path(job_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("action") not in STOP_ACTIONS:
        return None
    return data


def clear_request(job_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        control_path(job_id).unlink()


# ------------------------------------------------------------------------------------------- runner processes


def runner_alive(pid: int | None, job_id: str) -> bool:
    """True if ``pid`` is alive and (where ``/proc`` can tell) is this job's runner, not a reused pid."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    # Empty while the kernel is still setting up a fresh exec (Popen has returned, the new argv is not in place
    # yet): a runner just spawned is alive, not a reused pid. Read as gone, its job was marked interrupted.
    return not cmdline or job_id.encode() in cmdline


def spawn_runner(job_id: str, *, resume: bool = False, env: dict[str, str] | None = None) -> int:
    """Start ``python -m tuneport.local_backend.training.runner JOB_ID`` detached from this process; return its pid.

    The runner gets its own session (so Ctrl-C in the terminal, or the CLI exiting, does not reach it), stdin
    from /dev/null, and stdout/stderr appended to the job's ``runner.log``. Its cwd is the job folder, so a
    stray ``tuneport/`` folder in the user's cwd cannot shadow the installed package.
    """
    folder = job_dir(job_id, create=True)
    cmd = [sys.executable, "-m", "tuneport.local_backend.training.runner", job_id]
    if resume:
        cmd.append("--resume")
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    with open(folder / "runner.log", "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=child_env,
            start_new_session=True,
            close_fds=True,
        )
    # A long-lived parent (the API server, a test process) must reap the runner when it exits, or it lingers
    # as a zombie; a short-lived CLI exits first and the runner is re-parented to init.
    threading.Thread(target=proc.wait, name=f"reap-{job_id}", daemon=True).start()
    return proc.pid


def signal_runner(pid: int | None, job_id: str, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to the job's runner if it is alive and really is that runner. True if sent."""
    if not runner_alive(pid, job_id):
        return False
    try:
        os.kill(pid, sig)  # type: ignore[arg-type]
    except (ProcessLookupError, PermissionError):
        return False
    return True


# --------------------------------------------------------------------------------------------------- naming


def _name_part(text: str, default: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return cleaned or default


def fine_tuned_model_name(model: str, suffix: str | None, job_id: str) -> str:
    """The name a finished local job's model goes by, shaped like OpenAI's ``ft:`` ids.

    ``ft:<base>:local:<suffix>:<8 chars of the job id>``: ``local`` stands where OpenAI puts the organization,
    and the base is the model name (the folder name for a model given as a path, since ``:`` and ``/`` cannot
    appear in a part). For example ``ft:tiny-chat:local:support:Ab3dE9xQ``. ``catalog.base_model_of`` maps it
    back to the base.
    """
    base = _name_part(Path(model).name if ("/" in model or os.sep in model) else model, "model")
    return f"ft:{base}:local:{_name_part(suffix or '', '')}:{job_id.removeprefix('ftjob-')[:8]}"


def checkpoint_model_name(fine_tuned_model: str, step: int) -> str:
    """A checkpoint's name, as OpenAI names them: ``<fine-tuned model>:ckpt-step-<N>``."""
    return f"{fine_tuned_model}:ckpt-step-{step}"


# -------------------------------------------------------------------------------------- interrupted runners


def latest_checkpoint(checkpoints_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete HF checkpoint folder (``checkpoint-N`` holding its ``trainer_state.json``), or None.

    HF writes ``trainer_state.json`` after the weights, optimizer, scheduler and RNG states, so a folder without it
    is one a kill interrupted mid-save: it is skipped, and the previous checkpoint is used.
    """
    folder = Path(checkpoints_dir)
    found: list[tuple[int, Path]] = []
    if folder.is_dir():
        for child in folder.iterdir():
            match = re.fullmatch(r"checkpoint-(\d+)", child.name)
            if match and (child / "trainer_state.json").is_file():
                found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def _interruption(row: dict[str, Any], now: float) -> str | None:
    """Why the job's runner counts as gone, or None while it is (or may still be) alive."""
    pid, job_id = row.get("pid"), row["id"]
    heartbeat = row.get("heartbeat_at")
    if pid is None:
        # Not the heartbeat: a job resumed after a pause keeps its last runner's beat until the new runner
        # reports, and that old beat must not make the new runner look overdue.
        started = row.get("updated_at") or row.get("created_at") or now
        if now - started > max(_SPAWN_GRACE_S, stale_after_s()):
            return "its runner process never started"
        return None
    if not runner_alive(pid, job_id):
        return f"its runner process (pid {pid}) is gone"
    if heartbeat is not None and now - heartbeat > stale_after_s():
        return f"its runner process (pid {pid}) has not reported for {now - heartbeat:.0f} s"
    return None


def reconcile(store: Any, row: dict[str, Any]) -> dict[str, Any]:
    """Return the job row, first marking it interrupted (status ``paused``) if its runner is gone.

    Safe against races: the decision is taken on the row as it is now (not the caller's copy), the status change
    is conditional on that status, so a runner that finishes at the same moment wins and two readers cannot both
    record the interruption; and a runner that was only stalled, not gone, finds its job taken at its next
    heartbeat or step and exits without writing (see :mod:`tuneport.local_backend.training.runner`).
    """
    if row.get("backend") != BACKEND or row.get("status") not in ACTIVE_STATUSES:
        return row
    if _interruption(row, time.time()) is None:
        return row
    # ``row`` may have been read a while ago (a page of jobs, a long-lived caller): decide on the job as it is
    # now, so the record names the status and the checkpoints the runner really left behind.
    fresh = store.get_job(row["id"])
    if fresh is None or fresh.get("status") not in ACTIVE_STATUSES:
        return fresh or row
    row, now = fresh, time.time()
    reason = _interruption(row, now)
    if reason is None:
        return row
    outputs = dict(row.get("outputs") or {})
    latest = latest_checkpoint(outputs.get("checkpoints_dir") or job_dir(row["id"]) / "checkpoints")
    last_step = int(latest.name.rsplit("-", 1)[1]) if latest is not None else None
    outputs["interrupted"] = {
        "at": int(now),
        "reason": reason,
        "status": row["status"],
        "last_checkpoint_step": last_step,
    }
    updated = store.update_job(
        row["id"], if_status=row["status"], status="paused", outputs=outputs, heartbeat_at=None
    )
    if updated is None:
        # The status moved on meanwhile (the runner finished, or another reader got here first).
        return store.get_job(row["id"]) or row
    where = (
        f"from the checkpoint at step {last_step}"
        if last_step is not None
        else "from the start (no checkpoint yet)"
    )
    store.add_event(
        row["id"],
        f"Job interrupted while {row['status']}: {reason}. Marked paused; `tuneport jobs resume {row['id']}` "
        f"continues {where}.",
        level="warn",
        data={"interrupted": True, "reason": reason, "last_checkpoint_step": last_step},
    )
    return updated
