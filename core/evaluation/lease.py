"""One process at a time fills in a run's answers.

Three ``tuneport eval --resume RUN`` started together used to each ask (and pay for) every missing item. The
process that continues a run holds its lease in the store (:meth:`~tuneport.jobs.store.Store.acquire_eval_lease`)
while it asks, beating a heartbeat from a background thread; another process is told who holds the run and since
when. A lease whose process died (same machine: its pid is gone) or stopped beating for ``STALE_AFTER_S`` seconds
(another machine sharing the store) is taken over.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tuneport.errors import EvaluationError
from tuneport.jobs.store import Store

#: Seconds between heartbeats, and how long without one makes a lease stale.
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


@contextmanager
def run_lease(store: Store, run_id: str) -> Iterator[None]:
    """Hold ``run_id``'s lease for the ``with`` block; raises EvaluationError when a live process holds it."""
    holder = uuid.uuid4().hex
    host = socket.gethostname()
    lease = store.acquire_eval_lease(run_id, holder, host=host, pid=os.getpid(), stale_after=STALE_AFTER_S)
    if lease["holder"] != holder:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lease["acquired_at"]))
        beat = max(0, round(time.time() - lease["heartbeat_at"]))
        raise EvaluationError(
            f"run {run_id} is being filled in by another process: pid {lease['pid']} on {lease['host']}, since "
            f"{since} (last heartbeat {beat}s ago); asking its missing items here too would ask them twice",
            hint=f"Wait for that process to finish, then `tuneport eval --resume {run_id}` to see the run (it asks "
            f"only what is still missing). A lease whose process died is taken over on the next try (from another "
            f"machine: after {STALE_AFTER_S:.0f}s without a heartbeat).",
        )
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                if not store.heartbeat_eval_lease(run_id, holder):
                    return  # taken over (we looked dead): the taker asks; our writes are the same answers
            except Exception:  # a missed heartbeat must not kill the run; the next one retries
                continue

    thread = threading.Thread(target=beat, name=f"lease {run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        store.release_eval_lease(run_id, holder)
