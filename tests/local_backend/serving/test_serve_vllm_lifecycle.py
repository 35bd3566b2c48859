"""vLLM process lifecycle: start failures with the log tail, a crash detected (not a hang), nothing left behind."""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
import time
from pathlib import Path

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed in this environment", allow_module_level=True)

from tuneport.local_backend.serving.engine import ServerCrashedError, ServerStartError  # noqa: E402
from tuneport.local_backend.serving.serve import start_server  # noqa: E402

pytestmark = pytest.mark.slow

_LEFTOVER_PREFIXES = ("torchinductor_", "vllm", "tmp", "pymp-", "ipc")


def _tmp_entries() -> set[str]:
    return {p.name for p in Path("/tmp").iterdir() if p.name.startswith(_LEFTOVER_PREFIXES)}


def test_a_bad_engine_flag_fails_fast_with_the_log_tail(tiny_model: Path, tmp_path: Path) -> None:
    began = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        start_server(
            str(tiny_model), engine="vllm", extra_args=["--no-such-flag"], home=tmp_path, startup_timeout=120
        )
    assert "exited with status" in info.value.message
    assert "no-such-flag" in info.value.message  # vLLM's own complaint, from the log tail
    assert time.monotonic() - began < 110
    assert not list((tmp_path / "run").iterdir())  # the scratch folder is gone


def test_a_crash_is_reported_and_nothing_is_left_behind(tiny_model: Path, tmp_path: Path) -> None:
    before = _tmp_entries()
    cache = Path.home() / ".cache" / "vllm"
    cache_before = cache.exists() and sorted(p.name for p in cache.iterdir())
    server = start_server(str(tiny_model), engine="vllm", home=tmp_path, max_model_len=256)
    try:
        pids = server.processes()
        assert server.proc.pid in pids and len(pids) >= 2  # API server + EngineCore (+ worker)
        scratch = server.scratch.path
        assert scratch.is_relative_to(tmp_path) and server.scratch.tmp.is_dir()
        short_tmp = server.scratch.tmp
        names = {p: Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode() for p in pids}
        engine_core = [p for p, name in names.items() if "EngineCore" in name]
        assert engine_core, names
        engine_core = engine_core[0]
        os.kill(engine_core, signal.SIGKILL)
        outcome: list[BaseException] = []

        def waiter() -> None:
            try:
                server.wait(health_every=2.0)
            except BaseException as exc:  # what the test inspects
                outcome.append(exc)

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        thread.join(timeout=90)
        assert not thread.is_alive(), "wait() hung after the engine died"
        assert outcome and isinstance(outcome[0], ServerCrashedError), outcome
        assert "vLLM log tail" in outcome[0].message
    finally:
        server.stop()
    assert server.processes() == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not scratch.exists() and not short_tmp.exists()
    assert _tmp_entries() - before == set()
    assert (cache.exists() and sorted(p.name for p in cache.iterdir())) == cache_before
    assert list((tmp_path / "logs").glob("serve-*.log"))  # the log stays for the user
