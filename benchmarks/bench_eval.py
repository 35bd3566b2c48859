"""Evaluation runner throughput against a loopback endpoint with a fixed latency.

One command: ``python benchmarks/bench_eval.py [--items 2000] [--latency 0.05] [--jobs 8 32 128]``.

Starts an OpenAI-compatible server in a separate process (aiohttp.web) that answers every chat request after
exactly ``--latency`` seconds, then runs the whole evaluation (``run_eval``: dataset load, requests through the
inference client, batched store writes, grading, summary) on ``--items`` items with ``use_cache=False`` at each
``-j``. With a fixed latency L and j requests in flight, no client can exceed j / L requests/s: that is the bound.
Reported per -j: requests/s of the request phase (first request to last response written) and of the whole
``run_eval`` call, each against the bound.

Targets (2 cores): >= 90% of the bound at -j 8 and -j 32; >= 1,500 requests/s at -j 128.

Against a peer (``--peer-jobs 32``, on by default where promptfoo is found): the same items (same messages, the
same exact-match check) go through promptfoo (``npm install -g promptfoo``, or ``--promptfoo PATH`` to a local
install's ``node_modules/.bin/promptfoo``) against the same endpoint at the same concurrency, ``--no-cache``;
its requests/s is the items over its own reported evaluation time, and the line printed is tuneport's whole-run
requests/s (grading, Wilson intervals, latency summary and store writes included) over promptfoo's. Target:
tuneport >= 2x promptfoo at -j 32. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def serve(port: int, latency: float) -> None:
    """The fake endpoint (run in its own process): a canned completion after ``latency`` seconds."""
    import asyncio

    import orjson
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        await asyncio.sleep(latency)
        last = body["messages"][-1]["content"]
        completion = {
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer to {last[-12:]}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24},
        }  # fmt: skip
        return web.Response(body=orjson.dumps(completion), content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=1024)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the benchmark server did not start")


def run_promptfoo(binary: str, port: int, items: int, jobs: int, workdir: Path) -> float:
    """Seconds promptfoo reports for evaluating the same ``items`` at ``-j jobs`` (no cache, no table, no sharing)."""
    prompt = workdir / "promptfoo_prompt.json"
    prompt.write_text(json.dumps([{"role": "system", "content": "Answer briefly."},
                                  {"role": "user", "content": "{{question}}"}]))  # fmt: skip
    config = workdir / "promptfooconfig.json"
    config.write_text(json.dumps({
        "prompts": [f"file://{prompt}"],
        "providers": [{"id": "openai:chat:bench",
                       "config": {"apiBaseUrl": f"http://127.0.0.1:{port}/v1", "apiKey": "bench"}}],
        "tests": [{"vars": {"question": f"Question number {i}: what is {i} plus {i}?"},
                   "assert": [{"type": "equals", "value": f"answer to {i} plus {i}?"}]} for i in range(items)],
    }))  # fmt: skip
    out = workdir / "promptfoo_out.json"
    env = {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1",
           "PROMPTFOO_CONFIG_DIR": str(workdir / "promptfoo_home"), "PROMPTFOO_DISABLE_SHARING": "1"}  # fmt: skip
    proc = subprocess.run([binary, "eval", "-c", str(config), "-j", str(jobs), "--no-cache", "--no-progress-bar",
                           "--no-table", "-o", str(out)], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=3600)  # fmt: skip
    if proc.returncode not in (0, 100):  # 100: the run finished and some assertions failed
        raise RuntimeError(f"promptfoo exited {proc.returncode}: {proc.stderr[-2000:]}")
    stats = json.loads(out.read_text())["results"]["stats"]
    done = stats["successes"] + stats["failures"]
    if done != items or stats["errors"]:
        raise RuntimeError(f"promptfoo answered {done} of {items} items with {stats['errors']} errors")
    return stats["durationMs"] / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--jobs", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--rounds", type=int, default=3, help="runs per -j; the median is reported")
    parser.add_argument("--peer-jobs", type=int, nargs="*", default=[32],
                        help="-j values to also run through promptfoo (none: skip the peer)")  # fmt: skip
    parser.add_argument("--promptfoo", default=None, help="the promptfoo executable (default: promptfoo on PATH)")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.latency)
        return 0

    home = tempfile.mkdtemp(prefix="tuneport-bench-eval-")
    os.environ["TUNEPORT_HOME"] = home
    data = Path(home) / "heldout.jsonl"
    with data.open("w") as fh:
        for i in range(args.items):
            messages = [{"role": "system", "content": "Answer briefly."},
                        {"role": "user", "content": f"Question number {i}: what is {i} plus {i}?"},
                        {"role": "assistant", "content": f"answer to {i} plus {i}?"}]  # fmt: skip
            fh.write(json.dumps({"messages": messages}) + "\n")

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--latency", str(args.latency)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(port)
        from tuneport.evaluation.runner import run_eval
        from tuneport.jobs.store import Store

        endpoint = f"http://127.0.0.1:{port}/v1#bench"
        # Warm-up (imports, first connections), not measured.
        warm = Path(home) / "warm.jsonl"
        warm.write_text("".join(line for line, _ in zip(data.open(), range(50), strict=False)))
        run_eval(warm, endpoints=[endpoint], graders=["exact"], use_cache=False, concurrency=8)

        rows = []
        for j in args.jobs:
            bound = j / args.latency
            phases, totals = [], []
            for _ in range(args.rounds):
                with Store() as store:
                    started = time.perf_counter()
                    run = run_eval(data, endpoints=[endpoint], graders=["exact"], use_cache=False, concurrency=j,
                                   store=store)  # fmt: skip
                    totals.append(time.perf_counter() - started)
                assert run["status"] == "complete" and run["summary"][endpoint]["errors"] == 0, run[
                    "warnings"
                ]
                phases.append(run["session"]["wall_s"][endpoint])
            phase, total = statistics.median(phases), statistics.median(totals)
            rows.append((j, bound, args.items / phase, args.items / total, phase, total))

        print(f"eval runner vs a loopback endpoint with {args.latency * 1000:.0f} ms latency, {args.items} items, "
              f"--no-cache, grader exact, {os.cpu_count()} CPUs, median of {args.rounds} runs per -j")  # fmt: skip
        print(f"{'-j':>5} {'bound req/s':>12} {'phase req/s':>12} {'% bound':>8} {'total req/s':>12} "
              f"{'% bound':>8} {'phase s':>8} {'total s':>8}")  # fmt: skip
        for j, bound, rps, rps_total, phase, total in rows:
            print(f"{j:>5} {bound:>12.0f} {rps:>12.0f} {100 * rps / bound:>7.1f}% {rps_total:>12.0f} "
                  f"{100 * rps_total / bound:>7.1f}% {phase:>8.2f} {total:>8.2f}")  # fmt: skip
        checks = []
        for j, bound, _rps, rps_total, *_ in rows:
            if j in (8, 32):
                checks.append((f"-j {j}: whole run >= 90% of the bound", rps_total >= 0.9 * bound))
            if j == 128:
                checks.append(("-j 128: whole run >= 1,500 requests/s", rps_total >= 1500))
        promptfoo = args.promptfoo or shutil.which("promptfoo")
        peers = [j for j in args.peer_jobs if j in args.jobs]
        if peers and promptfoo is None:
            print("promptfoo not found (npm install -g promptfoo, or --promptfoo PATH): peer comparison skipped")
        elif peers:
            print(f"against promptfoo ({promptfoo}), same {args.items} items, same endpoint, --no-cache:")
            print(f"{'-j':>5} {'tuneport req/s':>15} {'promptfoo req/s':>16} {'ratio':>7}")
            for j in peers:
                tuneport_rps = next(r[3] for r in rows if r[0] == j)
                peer_rps = args.items / run_promptfoo(promptfoo, port, args.items, j, Path(home))
                ratio = tuneport_rps / peer_rps
                print(f"{j:>5} {tuneport_rps:>15.0f} {peer_rps:>16.0f} {ratio:>6.1f}x")
                if j == 32:
                    checks.append(("-j 32: tuneport >= 2x promptfoo", ratio >= 2))
        for label, ok in checks:
            print(f"  {'ok  ' if ok else 'MISS'} {label}")
        print("targets met" if all(ok for _, ok in checks) else "TARGETS MISSED")
        return 0 if all(ok for _, ok in checks) else 1
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
