"""Run ``tuneport ...`` in this process, through the real entry point (its one error mapping included)."""

from __future__ import annotations

import pytest

from tuneport.cli.main import main


def tp(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run ``tuneport ARGS``; (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err
