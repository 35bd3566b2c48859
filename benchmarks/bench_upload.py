"""Benchmark: a large upload through the Uploads API into the real local server: throughput, parallelism, memory.

    python benchmarks/bench_upload.py [--sizes 150,600] [--part-mb 64] [--concurrency 4]

For each size a fresh ``tuneport server`` (local_backend/api_server.py) starts as a subprocess on a free loopback
port, with its own TUNEPORT_HOME in a temporary folder, a bearer token and a --max-upload-bytes above the file's
size. A fresh client process then uploads a generated JSONL file with ``OpenAIProvider.upload(method="uploads")``:
the project's real path (sha256 + md5 pass, 64 MB parts sent in parallel from a thread pool, ordered completion
with the md5, which the server checks). A counting transport wrapped around the client's HTTP transport records
how many part requests were in flight at once.

Printed per size: wall time and MB/s end to end, split into the client's hashing pass, the parts phase (with its
own MB/s) and the server's completion (join + md5 check + storing the file); parts and the most in flight at once;
the client's peak RSS (and its growth above the baseline taken after imports) and the server's peak RSS (VmHWM). Then the ratios of both peak RSS between the largest and the smallest size against the ratio of
sizes: RSS independent of file size shows as ratios near 1.0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MiB = 1024 * 1024
KEY = "sk-bench-0000000000000000000000"


# ---------------------------------------------------------------------------------------------- the real server


def start_server(home: Path, max_upload_bytes: int) -> tuple[subprocess.Popen, str]:
    """``tuneport server --port 0`` with its own home; returns the process and its /v1 URL."""
    env = {**os.environ, "TUNEPORT_HOME": str(home)}
    cmd = [sys.executable, "-m", "tuneport.cli.main", "server", "--port", "0", "--json", "--token", KEY,
           "--max-upload-bytes", str(max_upload_bytes)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        sys.exit(f"tuneport server did not start:\n{proc.stderr.read()}")
    return proc, json.loads(line)["url"]


def status_mb(pid: int, field: str) -> float:
    """A memory figure of a process from /proc (VmHWM: peak RSS; VmRSS: now), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------------------------- the client side

_CLIENT = """
import json, resource, sys, threading, time
import httpx
from tuneport.providers.openai import OpenAIProvider

path, base_url, part_mb, concurrency, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]


class Counting(httpx.HTTPTransport):
    # Counts part requests in flight: a part's time is spent sending its body, inside handle_request.
    def __init__(self):
        super().__init__()
        self.lock, self.now, self.most, self.parts = threading.Lock(), 0, 0, 0
        self.first = self.last = None
        self.complete = 0.0

    def handle_request(self, request):
        if request.url.path.endswith("/complete"):
            began = time.perf_counter()
            try:
                return super().handle_request(request)
            finally:
                self.complete = time.perf_counter() - began
        if not request.url.path.endswith("/parts"):
            return super().handle_request(request)
        with self.lock:
            self.now += 1
            self.parts += 1
            self.most = max(self.most, self.now)
            self.first = self.first or time.perf_counter()
        try:
            return super().handle_request(request)
        finally:
            with self.lock:
                self.now -= 1
                self.last = time.perf_counter()


transport = Counting()
p = OpenAIProvider(api_key=key, base_url=base_url, store=False, transport=transport,
                   part_size=part_mb * 1024 * 1024, upload_concurrency=concurrency)
p.http  # build the client (imports) before measuring the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
f = p.upload(path, method="uploads")
dt = time.perf_counter() - t
print(json.dumps({"file": f.id, "bytes": f.bytes, "seconds": dt, "baseline_mb": base,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "parts": transport.parts, "most_in_flight": transport.most,
                  "parts_seconds": (transport.last or t) - (transport.first or t),
                  "hash_seconds": (transport.first or t) - t, "complete_seconds": transport.complete}))
"""


def make_file(path: Path, size: int) -> None:
    """A JSONL file of about ``size`` bytes (distinct lines; content does not matter to an upload)."""
    template = (
        '{"messages":[{"role":"user","content":"question %d %s"},{"role":"assistant","content":"answer"}]}\n'
    )
    pad = "lorem ipsum dolor sit amet " * 30
    with open(path, "w") as fh:
        written, i = 0, 0
        block: list[str] = []
        while written < size:
            line = template % (i, pad)
            block.append(line)
            written += len(line)
            i += 1
            if len(block) == 2000:
                fh.write("".join(block))
                block = []
        fh.write("".join(block))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="150,600", help="file sizes in MB, comma-separated (smallest first)")
    ap.add_argument("--part-mb", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()

    sizes = sorted(int(s) for s in args.sizes.split(","))
    results = []
    with tempfile.TemporaryDirectory(prefix="tuneport-bench-upload-") as tmp:
        tmp_path = Path(tmp)
        for size_mb in sizes:
            data = tmp_path / f"data-{size_mb}.jsonl"
            make_file(data, size_mb * MiB)
            size = data.stat().st_size
            server, url = start_server(tmp_path / f"home-{size_mb}", max_upload_bytes=size + 64 * MiB)
            try:
                server_start_mb = status_mb(server.pid, "VmHWM")
                out = subprocess.run(
                    [sys.executable, "-c", _CLIENT, str(data), url, str(args.part_mb), str(args.concurrency), KEY],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                server_peak_mb = status_mb(server.pid, "VmHWM")
            finally:
                server.terminate()
                server.wait(timeout=30)
            if out.returncode != 0:
                sys.exit(f"client failed for {size_mb} MB:\n{out.stderr}")
            r = json.loads(out.stdout)
            held = sorted((tmp_path / f"home-{size_mb}" / "files").glob("file-*.jsonl"))
            if r["bytes"] != size or len(held) != 1 or held[0].stat().st_size != size:
                sys.exit(f"the server does not hold the {size} bytes uploaded ({r}, {held})")
            data.unlink()
            r.update(server_start_mb=server_start_mb, server_peak_mb=server_peak_mb)
            results.append((size_mb, r))
            print(
                f"{size_mb:>5} MB  {r['seconds']:6.2f} s  {r['bytes'] / MiB / r['seconds']:7.1f} MB/s end to end "
                f"(hashing {r['hash_seconds']:.2f} s, parts {r['parts_seconds']:.2f} s = "
                f"{r['bytes'] / MiB / r['parts_seconds']:.1f} MB/s, complete {r['complete_seconds']:.2f} s)  "
                f"{r['parts']} parts, at most {r['most_in_flight']} in flight  |  "
                f"client peak RSS {r['peak_mb']:6.1f} MB (+{r['peak_mb'] - r['baseline_mb']:.1f} over baseline)  "
                f"server peak RSS {server_peak_mb:6.1f} MB (+{server_peak_mb - server_start_mb:.1f} over start)",
                flush=True,
            )
    if len(results) >= 2:
        (s0, r0), (s1, r1) = results[0], results[-1]
        print(
            f"size ratio {s1 / s0:.1f}x -> client peak RSS ratio {r1['peak_mb'] / r0['peak_mb']:.2f}x, "
            f"server peak RSS ratio {r1['server_peak_mb'] / r0['server_peak_mb']:.2f}x"
        )
    print(
        f"Uploads API, part={args.part_mb} MB, concurrency={args.concurrency}, real `tuneport server` on loopback "
        f"({os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
