"""Where tuneport keeps its state: one home folder, overridable with ``TUNEPORT_HOME``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["home_dir", "db_path"]


def home_dir() -> Path:
    """The tuneport home folder (created on first use).

    ``TUNEPORT_HOME`` wins; otherwise the platform's user data dir (``~/.local/share/tuneport`` on Linux).
    """
    env = os.environ.get("TUNEPORT_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir("tuneport", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    """The SQLite database file inside the home folder."""
    return home_dir() / "tuneport.db"
