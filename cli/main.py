"""The ``tuneport`` command: a click group whose subcommands load on demand.

Errors are mapped to messages and exit codes here, and only here: every command raises
:class:`tuneport.errors.TuneportError` subclasses and this module turns them into ``error: ...`` / ``hint: ...``
lines on stderr (or a JSON error object on stdout under ``--json``) and the error's exit code.
"""

from __future__ import annotations

import importlib
import json
import sys

import click

from tuneport._version import __version__

# command name -> "module:attribute"; modules are imported only when the command is used (or listed by --help).
_COMMANDS: dict[str, str] = {
    "data": "tuneport.cli.data:data",
    "spec": "tuneport.cli.spec:spec",
    "train": "tuneport.cli.train:train",
    "jobs": "tuneport.cli.jobs:jobs",
    "serve": "tuneport.cli.serve:serve",
    "endpoints": "tuneport.cli.endpoints:endpoints",
    "chat": "tuneport.cli.chat:chat",
    "cost": "tuneport.cli.cost:cost",
    "server": "tuneport.cli.server:server",
    "import": "tuneport.cli.importer:import_",
    "eval": "tuneport.cli.eval:eval_",
    "report": "tuneport.cli.report:report",
    "quickstart": "tuneport.cli.quickstart:quickstart",
    "export": "tuneport.cli.export:export",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is needed."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module_name, attr = self._lazy[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tuneport")
def cli() -> None:
    """tuneport: one fine-tuning spec, any backend.

    Validate chat datasets with exact token counts, train on OpenAI's API or locally (transformers + peft),
    serve through vLLM, and compare fine-tuned against base models with real statistics.
    """


def register(name: str, target: str) -> None:
    """Add a lazily loaded subcommand (used by later parts of the CLI)."""
    cli._lazy[name] = target  # type: ignore[attr-defined]


def _wants_json(argv: list[str]) -> bool:
    return "--json" in argv


def render_error(exc: BaseException, *, as_json: bool) -> int:
    """Print a TuneportError the one way tuneport prints errors; return its exit code."""
    from tuneport.errors import TuneportError

    assert isinstance(exc, TuneportError)
    if as_json:
        payload = {"error": {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}}
        findings = getattr(exc, "findings", None)
        if findings:
            payload["error"]["findings"] = [f.to_dict() if hasattr(f, "to_dict") else f for f in findings]
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        click.echo(f"error: {exc}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
    return exc.exit_code


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    from tuneport.errors import TuneportError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = cli.main(args=args, prog_name="tuneport", standalone_mode=False)
        # Without standalone mode click returns (rather than raises) the code of a `click.exceptions.Exit`.
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except TuneportError as exc:
        sys.exit(render_error(exc, as_json=_wants_json(args)))
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
