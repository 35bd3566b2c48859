"""Benchmark: OpenAI provider uploads over real HTTP (loopback): throughput and peak memory vs file size.

    python benchmarks/bench_upload.py [--sizes 128,512] [--part-mb 64] [--concurrency 4] [--method uploads]

A small stand-in for OpenAI's Uploads / Files API runs in a separate process on 127.0.0.1 and streams every part to
disk (so its memory does not count). For each size, a fresh client process writes nothing but uploads a generated
JSONL file with ``OpenAIProvider.upload`` (sha256 + md5 pass, parallel 64 MB parts, ordered completion with md5,
which the server checks) and reports its wall time and peak RSS.

What it shows: peak RSS stays flat while the file grows (parts are streamed from disk in 64 KB reads, never held
whole), and the throughput the client reaches on loopback. Prints figures and the ratios RSS(large)/RSS(small)
against size(large)/size(small).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MiB = 1024 * 1024
KEY = "sk-bench-0000000000000000000000"


# ---------------------------------------------------------------------------------------------- the fake server


def serve(root: Path) -> None:
    """Run the stand-in API until killed; print the port on the first stdout line."""
    parts: dict[str, tuple[str, Path, int, int]] = {}  # part id -> (upload id, file, data start, data end)
    uploads: dict[str, dict] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:8]}")
            self.end_headers()
            self.wfile.write(data)

        def body_to(self, path: Path) -> int:
            remaining = int(self.headers["content-length"])
            total = remaining
            with open(path, "wb") as fh:
                while remaining:
                    chunk = self.rfile.read(min(remaining, MiB))
                    if not chunk:
                        raise ConnectionError("client went away")
                    fh.write(chunk)
                    remaining -= len(chunk)
            return total

        def multipart_file(self, path: Path) -> tuple[int, int]:
            """(start, end) of the single file field's data inside a multipart body stored at ``path``."""
            boundary = re.search(r"boundary=([^;]+)", self.headers["content-type"]).group(1).encode()
            with open(path, "rb") as fh:
                head = fh.read(4096)
            start = head.index(b"\r\n\r\n") + 4
            end = path.stat().st_size - len(b"\r\n--" + boundary + b"--\r\n")
            return start, end

        def file_object(self, file_id: str, upload: dict) -> dict:
            return {"id": file_id, "object": "file", "bytes": upload["bytes"], "created_at": int(time.time()),
                    "filename": upload["filename"], "purpose": upload["purpose"], "status": "processed"}  # fmt: skip

        def do_GET(self) -> None:  # noqa: N802
            self.reply(404, {"error": {"message": "No such File", "type": "invalid_request_error", "param": None,
                                       "code": None}})  # fmt: skip

        def do_POST(self) -> None:  # noqa: N802
            if self.headers.get("authorization") != f"Bearer {KEY}":
                self.reply(401, {"error": {"message": "bad key", "type": "x", "param": None, "code": None}})
                return
            path = self.path.split("?")[0]
            if path == "/v1/uploads":
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                upload_id = f"upload_{uuid.uuid4().hex[:12]}"
                now = int(time.time())
                with lock:
                    uploads[upload_id] = {**body, "id": upload_id, "object": "upload", "created_at": now,
                                          "expires_at": now + 3600, "status": "pending", "file": None}  # fmt: skip
                    self.reply(200, {k: v for k, v in uploads[upload_id].items() if k != "mime_type"})
                return
            match = re.fullmatch(r"/v1/uploads/([^/]+)/(parts|complete|cancel)", path)
            if match:
                upload_id, action = match.groups()
                if action == "parts":
                    part_id = f"part_{uuid.uuid4().hex[:12]}"
                    stored = root / part_id
                    self.body_to(stored)
                    start, end = self.multipart_file(stored)
                    with lock:
                        parts[part_id] = (upload_id, stored, start, end)
                    self.reply(200, {"id": part_id, "object": "upload.part", "created_at": int(time.time()),
                                     "upload_id": upload_id})  # fmt: skip
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                upload = uploads[upload_id]
                if action == "cancel":
                    upload["status"] = "cancelled"
                    self.reply(200, upload)
                    return
                md5, size = hashlib.md5(), 0
                for part_id in body["part_ids"]:
                    owner, stored, start, end = parts[part_id]
                    assert owner == upload_id
                    with open(stored, "rb") as fh:
                        fh.seek(start)
                        remaining = end - start
                        while remaining:
                            chunk = fh.read(min(remaining, MiB))
                            md5.update(chunk)
                            remaining -= len(chunk)
                            size += len(chunk)
                    stored.unlink()
                if size != upload["bytes"] or md5.hexdigest() != body.get("md5"):
                    self.reply(400, {"error": {"message": f"md5/size mismatch ({size} bytes)",
                                               "type": "invalid_request_error", "param": None, "code": None}})  # fmt: skip
                    return
                upload.update(
                    status="completed", file=self.file_object(f"file-{uuid.uuid4().hex[:12]}", upload)
                )
                self.reply(200, {k: v for k, v in upload.items() if k != "mime_type"})
                return
            if path == "/v1/files":
                stored = root / f"whole_{uuid.uuid4().hex[:8]}"
                self.body_to(stored)
                start, end = self.multipart_file(
                    stored
                )  # the file field is last: data ends before the trailer
                stored.unlink()
                up = {"bytes": end - start, "filename": "upload.jsonl", "purpose": "fine-tune"}
                self.reply(200, self.file_object(f"file-{uuid.uuid4().hex[:12]}", up))
                return
            self.reply(
                404, {"error": {"message": f"no route {path}", "type": "x", "param": None, "code": None}}
            )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


# ---------------------------------------------------------------------------------------------- the client side

_CLIENT = """
import json, resource, sys, time
from tuneport.providers.openai import OpenAIProvider
path, port, part_mb, concurrency, method = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
p = OpenAIProvider(api_key=sys.argv[6], base_url=f"http://127.0.0.1:{port}/v1", store=False,
                   part_size=part_mb * 1024 * 1024, upload_concurrency=concurrency)
p.http  # build the client (imports) before measuring the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
f = p.upload(path, method=method)
dt = time.perf_counter() - t
print(json.dumps({"file": f.id, "bytes": f.bytes, "seconds": dt, "baseline_mb": base,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
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
    ap.add_argument("--sizes", default="128,512", help="file sizes in MB, comma-separated")
    ap.add_argument("--part-mb", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--method", choices=["uploads", "files", "auto"], default="uploads")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(Path(args.serve))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="tuneport-bench-upload-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "server").mkdir()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(tmp_path / "server")], stdout=subprocess.PIPE, text=True
        )
        try:
            port = int(server.stdout.readline())
            results = []
            for size_mb in sizes:
                data = tmp_path / f"data-{size_mb}.jsonl"
                make_file(data, size_mb * MiB)
                out = subprocess.run(
                    [sys.executable, "-c", _CLIENT, str(data), str(port), str(args.part_mb),
                     str(args.concurrency), args.method, KEY],  # fmt: skip
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                if out.returncode != 0:
                    sys.exit(f"client failed for {size_mb} MB:\n{out.stderr}")
                r = json.loads(out.stdout)
                data.unlink()
                results.append((size_mb, r))
                print(
                    f"{size_mb:>6} MB  {r['seconds']:7.2f} s  {r['bytes'] / MiB / r['seconds']:8.1f} MB/s  "
                    f"peak RSS {r['peak_mb']:7.1f} MB (baseline {r['baseline_mb']:.1f} MB, "
                    f"+{r['peak_mb'] - r['baseline_mb']:.1f} MB)"
                )
        finally:
            server.terminate()
            server.wait()
    if len(results) >= 2:
        (s0, r0), (s1, r1) = results[0], results[-1]
        print(
            f"size ratio {s1 / s0:.1f}x -> peak RSS ratio {r1['peak_mb'] / r0['peak_mb']:.2f}x "
            f"(growth above baseline: {r0['peak_mb'] - r0['baseline_mb']:.1f} MB -> "
            f"{r1['peak_mb'] - r1['baseline_mb']:.1f} MB)"
        )
    print(
        f"method={args.method} part={args.part_mb} MB concurrency={args.concurrency} (loopback, {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
