"""``tuneport jobs ...``: list, inspect, follow and control fine-tuning jobs of any backend.

Everything goes through the Provider interface (:mod:`tuneport.providers`), so local and hosted jobs are handled
the same way; the backend of a job is looked up in the store (``--backend`` overrides it). Rendering only: the
logic lives in the providers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click

from tuneport.cli._options import BackendChoice
from tuneport.errors import ProviderError

__all__ = ["jobs", "get_backend", "provider_for_job", "follow_job", "print_job", "finish"]

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
_backend_option = click.option(
    "--backend",
    type=BackendChoice(),
    default=None,
    help="The job's backend (default: the one recorded for the job in the local store).",
)


def get_backend(name: str) -> Any:
    """A Provider instance for ``name``."""
    from tuneport.providers import registry

    return registry.get_provider(name)


def provider_for_job(job_id: str, backend: str | None) -> Any:
    """The provider that owns ``job_id``: ``backend`` if given, else the backend the store recorded for it."""
    if backend is None:
        from tuneport.jobs.store import Store

        with Store() as store:
            row = store.get_job(job_id)
        if row is None:
            raise ProviderError(
                f"no job {job_id!r} in the local store",
                hint="`tuneport jobs list` shows local jobs; add --backend openai for a job created elsewhere.",
            )
        backend = row["backend"]
    return get_backend(backend)


def _echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, stderr=stderr)


def _when(ts: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


# ------------------------------------------------------------------------------------------------- rendering


def print_job(job: Any, *, as_json: bool) -> None:
    """One job: every field under --json (local jobs include ``local``: where things are on disk)."""
    if as_json:
        _echo_json(job.to_api())
        return
    rows: list[tuple[str, Any]] = [
        ("id", job.id),
        ("status", job.status),
        ("model", job.model),
        ("fine_tuned_model", job.fine_tuned_model),
        ("created", _when(job.created_at)),
        ("finished", _when(job.finished_at) if job.finished_at else None),
        ("training_file", job.training_file),
        ("validation_file", job.validation_file),
        ("hyperparameters", ", ".join(f"{k}={v}" for k, v in (job.hyperparameters or {}).items()) or None),
        ("trained_tokens", job.trained_tokens),
    ]
    if job.error is not None:
        rows.append(
            (
                "error",
                f"[{job.error.code}] {job.error.message}"
                + (f" (param: {job.error.param})" if job.error.param else ""),
            )
        )
    local = getattr(job, "local", None) or {}
    if local.get("interrupted"):
        info = local["interrupted"]
        rows.append(
            (
                "interrupted",
                f"{info.get('reason')} (last checkpoint: step {info.get('last_checkpoint_step')})",
            )
        )
    for key in ("adapter", "merged", "model", "checkpoints_dir", "log"):
        if local.get(key):
            rows.append((key if key != "model" else "model_dir", local[key]))
    if local.get("latest_checkpoint"):
        rows.append(("latest_checkpoint", local["latest_checkpoint"]))
    # Plain lines, never wrapped or cut: paths must survive copy and paste.
    for name, value in rows:
        if value is not None and value != "":
            click.echo(f"{name:<18} {value}")
    if job.status == "paused":
        click.echo(f"Paused: `tuneport jobs resume {job.id}` continues it from its last checkpoint.")


def _event_line(event: Any) -> str:
    from rich.markup import escape

    style = {"error": "red", "warn": "yellow"}.get(event.level, "")
    text = f"{_when(event.created_at)} {event.level:<5} {escape(event.message)}"
    return f"[{style}]{text}[/{style}]" if style else text


def follow_job(
    provider: Any,
    job_id: str,
    *,
    as_json: bool,
    quiet: bool = False,
    poll: float | None = None,
    stop_on: Callable[[Any], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Stream a job's events (with a progress bar: step/total, loss) until it ends or pauses; return the job.

    ``--json`` prints one event object per line instead; ``quiet`` prints nothing (``--wait``). Stops when the job
    is terminal, paused (an interrupted job is paused too: nothing would come), or ``stop_on(job)`` is true.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    interval = provider.poll_interval if poll is None else poll
    newest: str | None = None
    console = _console(stderr=as_json)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet or as_json,
    )

    def handle(event: Any) -> None:
        data = event.data or {}
        if as_json:
            click.echo(json.dumps(event.to_api(), ensure_ascii=False, default=str))
            return
        if quiet:
            return
        if "total_steps" in data:
            progress.update(task, total=data["total_steps"])
        if event.type == "metrics" and "step" in data:
            loss = data.get("train_loss")
            valid = data.get("valid_loss")
            text = (f"loss {loss:.4f}" if isinstance(loss, int | float) else "") + (
                f"  valid {valid:.4f}" if isinstance(valid, int | float) else ""
            )
            progress.update(task, completed=data["step"], description="training", loss=text)
            if "valid_loss" not in data:
                return  # per-step losses live in the bar; epoch validations are worth a line
        progress.console.print(_event_line(event))

    def drain() -> None:
        nonlocal newest
        for event in provider.iter_events(job_id, after=newest):
            newest = event.id
            handle(event)

    with progress:
        task = progress.add_task("starting", total=None, loss="")
        while True:
            # The status first: events written before a terminal status are then all drained.
            job = provider.get(job_id)
            progress.update(task, description=job.status)
            drain()
            if job.is_terminal or job.status == "paused" or (stop_on is not None and stop_on(job)):
                break
            sleep(interval)
        drain()
    return job


def finish(provider: Any, job: Any, *, as_json: bool, quiet_status: bool = False) -> None:
    """Print the final job and map its status to the exit: failed raises (exit 11), others return."""
    if as_json:
        _echo_json(job.to_api())
    elif not quiet_status:
        console = _console()
        if job.status == "succeeded":
            local = getattr(job, "local", None) or {}
            where = local.get("serve_path")
            console.print(f"{job.id} succeeded: {job.fine_tuned_model}" + (f" ({where})" if where else ""))
        elif job.status == "paused":
            why = ((getattr(job, "local", None) or {}).get("interrupted") or {}).get("reason")
            console.print(
                f"{job.id} is paused"
                + (f" (interrupted: {why})" if why else "")
                + f"; `tuneport jobs resume {job.id}` continues it"
            )
        elif job.status != "failed":
            console.print(f"{job.id} {job.status}")
    if job.status == "failed":
        raise provider._failure(job)


# ---------------------------------------------------------------------------------------------------- commands


@click.group("jobs")
def jobs() -> None:
    """List, inspect, follow and control fine-tuning jobs (local and hosted)."""


@jobs.command("list")
@click.option(
    "--backend",
    type=BackendChoice(extra=("all",)),
    default="all",
    show_default=True,
    help="all: every backend's jobs from the local store (hosted ones as last synced, no network call); "
    "a backend's name: ask that backend (for OpenAI: the organization's jobs).",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--after", default=None, help="Continue after this job id (paging).")
@_json_option
def list_cmd(backend: str, limit: int, after: str | None, as_json: bool) -> None:
    """Jobs, newest first: hosted and local together."""
    if backend == "all":
        from tuneport.providers.registry import list_stored_jobs

        rows, has_more = list_stored_jobs(after=after, limit=limit)
    else:
        with get_backend(backend) as provider:
            page = provider.list(after=after, limit=limit)
        rows, has_more = [(backend, job) for job in page.data], page.has_more
    shutdowns = {(name, job.model): _shutdown(name, job) for name, job in rows}
    if as_json:
        data = [{**job.to_api(), "backend": name, "shutdown": shutdowns[(name, job.model)]} for name, job in rows]
        _echo_json({"object": "list", "data": data, "has_more": has_more})
        return
    from rich.markup import escape
    from rich.table import Table

    if not rows:
        which = "" if backend == "all" else f"{backend} "
        click.echo(f"no {which}jobs yet: start one with `tuneport train SPEC`")
        return
    table = Table(show_edge=False)
    for name in ("id", "backend", "status"):
        table.add_column(name, no_wrap=True)
    for name in ("model", "created", "fine_tuned_model / error"):
        table.add_column(name, overflow="fold")  # narrow terminals wrap these; nothing is cut off
    dated = any(shutdowns.values())
    if dated:
        table.add_column("shuts down (days left)", no_wrap=True)
    for name, job in rows:
        detail = job.fine_tuned_model or (f"[{job.error.code}] {job.error.message[:60]}" if job.error else "")
        status = job.status + (
            " (interrupted)" if (getattr(job, "local", None) or {}).get("interrupted") else ""
        )
        model = job.model.rstrip("/").rsplit("/", 1)[-1]  # a model folder: its name is enough here
        cells = [job.id, name, status, escape(model), _when(job.created_at), escape(detail)]
        if dated:
            when = shutdowns[(name, job.model)]
            cells.append(f"{when['date']} ({when['days_left']})" if when else "")
        table.add_row(*cells)
    _console().print(table)
    sources = {(w["source"], w["as_of"]) for w in shutdowns.values() if w}
    for source, as_of in sorted(sources):
        click.echo(f"shutdown dates: {source}, as of {as_of}", err=True)
    if has_more:
        click.echo(f"more: tuneport jobs list --after {rows[-1][1].id}")


def _shutdown(backend: str, job: Any) -> dict[str, Any] | None:
    """When a hosted job's model (and with it the job's fine-tune) stops answering, from the backend's catalog;
    None when the catalog has no date for it (local jobs, open models)."""
    from tuneport.cost.retirements import shutdown_of

    deadline = shutdown_of(job.model, backend) if job.model else None
    if deadline is None:
        return None
    return {"date": deadline.date.isoformat(), "days_left": deadline.days_left(), "source": deadline.source,
            "as_of": deadline.as_of}  # fmt: skip


@jobs.command("show")
@click.argument("job_id")
@_backend_option
@_json_option
def show_cmd(job_id: str, backend: str | None, as_json: bool) -> None:
    """A job's state; --json includes where a local job's adapter and checkpoints are."""
    from tuneport.cost.retirements import warn_if_retiring

    with provider_for_job(job_id, backend) as provider:
        job = provider.get(job_id)
        warn_if_retiring(job.model, type(provider))
        print_job(job, as_json=as_json)


@jobs.command("events")
@click.argument("job_id")
@_backend_option
@click.option("--limit", type=click.IntRange(1, 100000), default=None, help="Only the last N events.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the job ends.")
@_json_option
def events_cmd(job_id: str, backend: str | None, limit: int | None, follow: bool, as_json: bool) -> None:
    """A job's events, oldest first."""
    with provider_for_job(job_id, backend) as provider:
        if follow:
            job = follow_job(provider, job_id, as_json=as_json)
            if not as_json:
                finish(provider, job, as_json=False)
            return
        if limit is not None:
            events = list(reversed(provider.events(job_id, limit=limit).data))
        else:
            events = list(provider.iter_events(job_id))
    if as_json:
        _echo_json({"object": "list", "data": [e.to_api() for e in events]})
        return
    console = _console()
    for event in events:
        console.print(_event_line(event))


@jobs.command("checkpoints")
@click.argument("job_id")
@_backend_option
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@_json_option
def checkpoints_cmd(job_id: str, backend: str | None, limit: int, as_json: bool) -> None:
    """A job's checkpoints, newest first (local ones with their folder)."""
    with provider_for_job(job_id, backend) as provider:
        page = provider.checkpoints(job_id, limit=limit)
    if as_json:
        _echo_json(page.to_api())
        return
    from rich.markup import escape
    from rich.table import Table

    if not page.data:
        click.echo(f"{job_id} has no checkpoints yet")
        return
    table = Table(show_edge=False)
    for col in ("step", "checkpoint", "train_loss", "valid_loss", "path"):
        table.add_column(col)
    for c in page.data:
        m = c.metrics or {}

        def num(key: str, m: dict = m) -> str:
            return f"{m[key]:.4f}" if isinstance(m.get(key), int | float) else ""

        table.add_row(
            str(c.step_number), escape(c.fine_tuned_model_checkpoint), num("train_loss"), num("valid_loss"),
            escape(str(getattr(c, "path", "") or "")),
        )  # fmt: skip
    _console().print(table)


@jobs.command("download")
@click.argument("job_id")
@_backend_option
@click.option("--output", "-o", type=click.Path(file_okay=False), default=None,
              help="Folder for the adapter (default: the store's adapters folder).")  # fmt: skip
@_json_option
def download_cmd(job_id: str, backend: str | None, output: str | None, as_json: bool) -> None:
    """Download a finished hosted job's LoRA adapter to this machine (serve it with --adapter NAME=PATH, or
    directly with --adapter NAME=BACKEND:JOB_ID)."""
    with provider_for_job(job_id, backend) as provider:
        path = provider.download_adapter(job_id, output)
    if as_json:
        _echo_json({"id": job_id, "adapter": str(path)})
        return
    click.echo(str(path))


@jobs.command("deploy")
@click.argument("job_id")
@_backend_option
@click.option("--name", default=None, help="The deployment's name (default: the job id, made legal).")
@_json_option
def deploy_cmd(job_id: str, backend: str | None, name: str | None, as_json: bool) -> None:
    """Deploy a succeeded job's model where its backend needs that before it answers (Azure OpenAI), and save
    its endpoint under the fine-tuned model's name."""
    with provider_for_job(job_id, backend) as provider:
        view = provider.deploy(job_id, name=name)
    if as_json:
        _echo_json(view)
        return
    click.echo(f"deployed {view['model']} as {view['name']} ({view['sku']}, state {view['state']})")
    click.echo(f"endpoint saved as {view['model']}: `tuneport chat {view['model']}` talks to it; "
               f"`tuneport jobs undeploy {view['name']}` stops its hosting fee", err=True)  # fmt: skip


def _deployments_backend(backend: str | None) -> str:
    """The backend whose deployments to show: ``--backend``, else the only one that has deployments."""
    if backend is not None:
        return backend
    from tuneport.providers.base import Provider
    from tuneport.providers.registry import provider_class, provider_names

    names = []
    for name in provider_names():
        try:
            if provider_class(name).deploy is not Provider.deploy:
                names.append(name)
        except ProviderError:  # a plugin that cannot load here
            continue
    if len(names) != 1:
        raise ProviderError(
            "say which backend's deployments: " + (", ".join(names) or "no backend has deployments"),
            hint="Add --backend NAME.",
        )
    return names[0]


@jobs.command("deployments")
@click.option("--backend", type=BackendChoice(), default=None,
              help="The backend (default: the one backend that deploys models, Azure OpenAI).")  # fmt: skip
@_json_option
def deployments_cmd(backend: str | None, as_json: bool) -> None:
    """Every deployment of the backend's resource (each one may cost an hourly hosting fee)."""
    with get_backend(_deployments_backend(backend)) as provider:
        views = provider.list_deployments()
    if as_json:
        _echo_json({"object": "list", "data": views})
        return
    if not views:
        click.echo("no deployments: `tuneport jobs deploy JOB_ID` deploys a succeeded job's model")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False)
    for col in ("name", "model", "sku", "capacity", "state"):
        table.add_column(col, overflow="fold")
    for view in views:
        table.add_row(*(escape(str(view.get(col) if view.get(col) is not None else "")) for col in
                        ("name", "model", "sku", "capacity", "state")))  # fmt: skip
    _console().print(table)


@jobs.command("undeploy")
@click.argument("name")
@click.option("--backend", type=BackendChoice(), default=None,
              help="The backend (default: the one backend that deploys models, Azure OpenAI).")  # fmt: skip
@_json_option
def undeploy_cmd(name: str, backend: str | None, as_json: bool) -> None:
    """Delete deployment NAME (its hosting stops being billed) and forget its saved endpoint."""
    with get_backend(_deployments_backend(backend)) as provider:
        provider.undeploy(name)
    if as_json:
        _echo_json({"name": name, "deleted": True})
        return
    click.echo(f"deleted deployment {name}")


def _control(action: str, job_id: str, backend: str | None, wait: bool, as_json: bool) -> None:
    with provider_for_job(job_id, backend) as provider:
        job = getattr(provider, action)(job_id)
        if wait:
            target = {"cancel": ("cancelled",), "pause": ("paused",), "resume": ()}[action]
            job = follow_job(
                provider, job_id, as_json=False, quiet=True, stop_on=lambda j: j.status in target
            )
        if as_json:
            _echo_json(job.to_api())
        else:
            message = {
                "cancel": "cancellation requested" if job.status != "cancelled" else "cancelled",
                "pause": "pause requested" if job.status != "paused" else "paused",
                "resume": "resumed",
            }[action]
            click.echo(f"{job.id}: {message} (status: {job.status})")


@jobs.command("cancel")
@click.argument("job_id")
@_backend_option
@click.option("--wait", is_flag=True, help="Wait until the job has stopped.")
@_json_option
def cancel_cmd(job_id: str, backend: str | None, wait: bool, as_json: bool) -> None:
    """Cancel a job (a running local job saves a checkpoint first)."""
    _control("cancel", job_id, backend, wait, as_json)


@jobs.command("pause")
@click.argument("job_id")
@_backend_option
@click.option("--wait", is_flag=True, help="Wait until the job has stopped.")
@_json_option
def pause_cmd(job_id: str, backend: str | None, wait: bool, as_json: bool) -> None:
    """Pause a running job: it saves a checkpoint, then stops; `jobs resume` continues it."""
    _control("pause", job_id, backend, wait, as_json)


@jobs.command("resume")
@click.argument("job_id")
@_backend_option
@click.option("--follow", "-f", is_flag=True, help="Stream the job's progress until it ends.")
@click.option("--wait", is_flag=True, help="Wait silently until the job ends.")
@_json_option
def resume_cmd(job_id: str, backend: str | None, follow: bool, wait: bool, as_json: bool) -> None:
    """Resume a paused or interrupted job from its last checkpoint."""
    with provider_for_job(job_id, backend) as provider:
        job = provider.resume(job_id)
        if not (follow or wait):
            if as_json:
                _echo_json(job.to_api())
            else:
                click.echo(f"{job.id}: resumed (status: {job.status})")
            return
        job = follow_job(provider, job_id, as_json=as_json and follow, quiet=wait)
        finish(provider, job, as_json=as_json)


@jobs.command("wait")
@click.argument("job_id")
@_backend_option
@click.option(
    "--timeout", type=float, default=None, help="Give up after this many seconds (the job goes on)."
)
@_json_option
def wait_cmd(job_id: str, backend: str | None, timeout: float | None, as_json: bool) -> None:
    """Wait until the job ends (or pauses); exit 11 if it failed."""
    with provider_for_job(job_id, backend) as provider:
        deadline = None if timeout is None else time.monotonic() + timeout

        def expired(_job: Any) -> bool:
            return deadline is not None and time.monotonic() >= deadline

        job = follow_job(provider, job_id, as_json=False, quiet=True, stop_on=expired)
        if not (job.is_terminal or job.status == "paused"):
            from tuneport.providers.base import WaitTimeoutError

            raise WaitTimeoutError(f"job {job_id} is still {job.status} after {timeout:g}s")
        finish(provider, job, as_json=as_json)
