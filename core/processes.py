"""Whether a process still runs: one answer for every part of tuneport that holds something for a process (a job's
runner, an eval run's lease, a server's scratch folder) and must tell a live holder from a dead one."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["pid_alive"]


def pid_alive(pid: int | None) -> bool:
    """True if a process with this pid exists on this machine and is not a zombie (a zombie has exited)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        # Field 3 is the state; the command name before it is in parentheses and may hold spaces.
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all we know
    return state not in ("Z", "X")
