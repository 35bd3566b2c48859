"""The scratch folder each server run owns: temporary files, sockets and caches, removed when it stops."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from tuneport.paths import home_dir
from tuneport.processes import pid_alive

__all__ = ["ScratchDir"]


class ScratchDir:
    """A folder under tuneport's home that one server run owns: TMPDIR, caches and sockets go here.

    vLLM (and torch.compile, ZMQ, tokenizers) write to ``/tmp``, ``~/.cache/vllm`` and ``/tmp/torchinductor_*`` by
    default and leave files behind after the server stops. Pointing them here and deleting the folder on stop
    leaves nothing behind; folders of runs whose process died without cleaning are removed by the next run.

    ZMQ's ``ipc://`` socket paths must fit in 107 bytes; when the home folder's path is too long for that, the
    temporary folder (where vLLM puts its sockets) is a short ``tuneport-*`` folder in the system temp dir instead,
    owned and removed the same way.
    """

    _SOCKET_ROOM = 50  # "/" + a uuid4 socket name, with margin

    def __init__(self, home: Path | None = None, prefix: str = "serve") -> None:
        if home is None:
            home = home_dir()
        root = Path(home) / "run"
        root.mkdir(parents=True, exist_ok=True)
        self._sweep(root)
        self.path = root / f"{prefix}-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        self.path.mkdir()
        tmp = self.path / "tmp"
        if len(str(tmp)) + self._SOCKET_ROOM > 107:
            base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
            tmp = Path(tempfile.mkdtemp(prefix="tuneport-", dir=base if Path(base).is_dir() else None))
        else:
            tmp.mkdir()
        self.tmp = tmp
        (self.path / "owner").write_text(json.dumps({"pid": os.getpid(), "tmp": str(tmp)}))

    @staticmethod
    def _sweep(root: Path) -> None:
        for folder in root.glob("*-*-*"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                owner = json.loads((folder / "owner").read_text())
                if owner["pid"] != os.getpid() and not pid_alive(int(owner["pid"])):
                    shutil.rmtree(owner["tmp"], ignore_errors=True)
                    shutil.rmtree(folder, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """Environment variables that send every temporary file and cache of the engine into this folder."""
        tmp = str(self.tmp)
        return {
            "TMPDIR": tmp,
            "TEMP": tmp,
            "TMP": tmp,
            "VLLM_RPC_BASE_PATH": tmp,
            "VLLM_CACHE_ROOT": str(self.path / "vllm-cache"),
            "VLLM_CONFIG_ROOT": str(self.path / "vllm-config"),
            "TORCHINDUCTOR_CACHE_DIR": str(self.path / "inductor"),
            "TRITON_CACHE_DIR": str(self.path / "triton"),
            "NUMBA_CACHE_DIR": str(self.path / "numba"),
            "OUTLINES_CACHE_DIR": str(self.path / "outlines"),
        }

    def remove(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.path, ignore_errors=True)


