"""Options several commands share. Only click is imported here: ``tuneport --help`` stays instant."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["BackendChoice"]


class BackendChoice(click.Choice):
    """A ``--backend`` whose choices are the provider registry's names (built-ins and plugins), read when the
    option is first shown or parsed rather than when the command module is imported."""

    def __init__(self, *, extra: tuple[str, ...] = ()) -> None:
        self._extra = extra
        super().__init__((), case_sensitive=True)

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from tuneport.providers.registry import provider_names

        return (*self._extra, *provider_names())

    @choices.setter
    def choices(self, value: Any) -> None:  # click.Choice.__init__ assigns it; the registry is the source
        pass
