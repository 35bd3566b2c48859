"""Serving benchmark: base model vs a LoRA adapter on the same server (vLLM, or the transformers fallback).

One command: ``python benchmarks/bench_serve.py [--engine vllm|transformers] [--tokens 64]``. Builds tiny-chat
and a seeded rank-8 adapter in a temporary tuneport home, starts one server with both, and measures startup time,
output tokens/s and request latency p50/p95 at concurrency 1, 8 and 32 for each, peak RSS summed over the server's
process tree, and the adapter/base ratios. Every request generates exactly ``--tokens`` tokens (min_tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


class PeakRSS:
    """Samples the RSS of a process tree every 0.2 s in a thread; ``peak`` is the largest sum seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(self.pid))
            self._stop.wait(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


async def _level(base_url: str, model: str, concurrency: int, n_requests: int, tokens: int) -> dict:
    import httpx

    messages = [{"role": "user", "content": "My invoice shows a double charge for March, please help."}]
    latencies: list[float] = []
    out_tokens = 0
    queue: asyncio.Queue = asyncio.Queue()
    for _ in range(n_requests):
        queue.put_nowait(None)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=600, limits=httpx.Limits(max_connections=64)
    ) as c:

        async def worker() -> None:
            nonlocal out_tokens
            while not queue.empty():
                queue.get_nowait()
                t = time.perf_counter()
                r = await c.post("/chat/completions", json={
                    "model": model, "messages": messages, "max_tokens": tokens, "min_tokens": tokens,
                    "temperature": 0})  # fmt: skip
                r.raise_for_status()
                latencies.append(time.perf_counter() - t)
                out_tokens += r.json()["usage"]["completion_tokens"]

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - began
    latencies.sort()
    return {
        "tok_s": out_tokens / wall,
        "p50": statistics.median(latencies),
        "p95": latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))],
        "requests": n_requests,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["vllm", "transformers"],
                        default="vllm" if importlib.util.find_spec("vllm") else "transformers")  # fmt: skip
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per request")
    parser.add_argument("--levels", default="1,8,32")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]

    with tempfile.TemporaryDirectory(prefix="tp-bench-") as tmp:
        os.environ["TUNEPORT_HOME"] = tmp
        from tuneport.fixtures.tiny_model import ensure_tiny_model
        from tuneport.local_backend.serving.serve import start_server
        from tuneport.local_backend.serving.serve_fixtures import make_random_adapter

        base = ensure_tiny_model()
        adapter = make_random_adapter(base, Path(tmp) / "adapter", seed=1, rank=8)
        began = time.perf_counter()
        server = start_server("tiny-chat", [f"support={adapter}"], engine=args.engine, max_model_len=512)
        startup = time.perf_counter() - began
        pid = server.proc.pid if getattr(server, "proc", None) is not None else os.getpid()
        rss = PeakRSS(pid)
        rows = []
        try:
            for model in ("tiny-chat", "support"):  # warm-up (first adapter use loads it into a slot)
                asyncio.run(_level(server.base_url, model, 1, 2, 8))
            for level in levels:
                n = max(8, 4 * level) if args.engine == "vllm" else max(4, level)
                res = {
                    m: asyncio.run(_level(server.base_url, m, level, n, args.tokens))
                    for m in ("tiny-chat", "support")
                }
                rows.append((level, res))
        finally:
            peak = rss.stop()
            server.stop()

    print(
        f"engine: {args.engine}; model: tiny-chat (fp32, CPU), adapter rank 8; {args.tokens} output tokens/request"
    )
    print(f"startup to healthy (base + adapter): {startup:.1f} s; peak RSS of the server process tree: "
          f"{peak / 2**30:.2f} GiB")  # fmt: skip
    header = (f"{'conc':>4} {'reqs':>5} | {'base tok/s':>10} {'p50 s':>7} {'p95 s':>7} | {'adapter tok/s':>13} "
              f"{'p50 s':>7} {'p95 s':>7} | {'tok/s ratio':>11} {'p50 ratio':>9}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for level, res in rows:
        b, a = res["tiny-chat"], res["support"]
        print(f"{level:>4} {b['requests']:>5} | {b['tok_s']:>10.0f} {b['p50']:>7.3f} {b['p95']:>7.3f} | "
              f"{a['tok_s']:>13.0f} {a['p50']:>7.3f} {a['p95']:>7.3f} | {a['tok_s'] / b['tok_s']:>11.2f} "
              f"{a['p50'] / b['p50']:>9.2f}")  # fmt: skip
    print("ratios are adapter / base (tok/s below 1 and p50 above 1 mean the adapter costs throughput)")


if __name__ == "__main__":
    sys.exit(main())
