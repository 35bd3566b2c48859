"""How close the inference client gets to the concurrency/latency bound (one command).

A loopback OpenAI-compatible server (aiohttp, in a separate process) answers every chat request after a fixed
50 ms. With ``j`` requests in flight the most one can get is ``j / 0.05`` requests/s; the client sends
``--requests`` requests at each ``-j`` and prints what it achieved, as requests/s and as % of that bound, with the
client's CPU time per request. Targets: >= 90 % of the bound at -j 8 and 32, >= 1,500 requests/s at -j 128 (on a
2-core machine, where the server process takes its share of the CPU too).

    python benchmarks/bench_client.py [--requests 2000] [-j 8 -j 32 -j 128] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import textwrap
import time

_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from aiohttp import web

    LATENCY = float(sys.argv[1])
    BODY = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench","choices":[{"index":0,'
            b'"message":{"role":"assistant","content":"ok"},"logprobs":null,"finish_reason":"stop"}],'
            b'"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}')

    async def chat(request):
        await request.read()
        await asyncio.sleep(LATENCY)
        return web.Response(body=BODY, content_type="application/json")

    async def main():
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is the capital of France? Answer in one word."},
]


async def _run(base_url: str, concurrency: int, requests: int) -> tuple[float, float, int]:
    from tuneport.endpoints.client import ChatEndpoint, InferenceClient

    endpoint = ChatEndpoint("bench", base_url, "bench")
    async with InferenceClient(concurrency=concurrency, timeout=30.0) as client:
        await asyncio.gather(
            *(client.chat(endpoint, MESSAGES, temperature=0) for _ in range(concurrency))
        )  # warm
        cpu, started = time.process_time(), time.perf_counter()
        results = await asyncio.gather(
            *(client.chat(endpoint, MESSAGES, temperature=0, max_tokens=8) for _ in range(requests))
        )
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    assert all(r.text == "ok" for r in results)
    return elapsed, cpu, client.stats.retries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("-j", "--concurrency", type=int, action="append", dest="levels")
    parser.add_argument("--latency", type=float, default=0.05, help="server latency in seconds")
    args = parser.parse_args()
    levels = args.levels or [8, 32, 128]

    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(args.latency)], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        base_url = f"http://127.0.0.1:{port}/v1"
        print(f"inference client vs loopback server ({args.latency * 1000:g} ms latency), "
              f"{args.requests} requests per level, {os.cpu_count()} CPUs")  # fmt: skip
        print(f"{'-j':>5} {'req/s':>9} {'bound':>9} {'% bound':>8} {'client CPU/req':>15} {'retries':>8}")
        for level in levels:
            elapsed, cpu, retries = asyncio.run(_run(base_url, level, args.requests))
            rate = args.requests / elapsed
            bound = level / args.latency
            print(f"{level:>5} {rate:>9.0f} {bound:>9.0f} {rate / bound:>8.1%} {cpu / args.requests * 1e6:>12.0f} us"
                  f" {retries:>8}")  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
