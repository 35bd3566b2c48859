"""Benchmark: cold start of `tuneport --help` and `tuneport data validate --help` (target < 0.3 s median), and proof
that neither (nor a real `data validate` run) imports torch / transformers / vllm / peft.

    python benchmarks/bench_cold_start.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "transformers", "vllm", "peft")

_WRAPPER = """
import sys
from tuneport.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY_NAMES))
sys.stderr.write('HEAVY_MODULES=' + ','.join(heavy) + '\\n')
""".replace("HEAVY_NAMES", repr(HEAVY))


def time_runs(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - t)
    return times


def heavy_imports(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True)
    for line in proc.stderr.splitlines():
        if line.startswith("HEAVY_MODULES="):
            return line.split("=", 1)[1]
    raise RuntimeError(f"wrapper failed: {proc.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("tuneport")
    entry = [str(exe)] if exe.exists() else [sys.executable, "-m", "tuneport.cli.main"]
    baseline = statistics.median(time_runs([sys.executable, "-c", "pass"], args.runs))
    print(f"python -c pass: {baseline:.3f} s (interpreter start, for reference)")
    ok = True
    for cmd in (["--help"], ["data", "validate", "--help"]):
        times = time_runs([*entry, *cmd], args.runs)
        med = statistics.median(times)
        heavy = heavy_imports(cmd)
        ok &= med < 0.3 and not heavy
        print(
            f"tuneport {' '.join(cmd)}: median {med:.3f} s over {args.runs} runs (min {min(times):.3f}, max {max(times):.3f}); "
            f"heavy modules imported: {heavy or 'none'}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "d.jsonl"
        p.write_text(
            "".join(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": f"q{i}"},
                            {"role": "assistant", "content": "a"},
                        ]
                    }
                )
                + "\n"
                for i in range(20)
            )
        )
        heavy = heavy_imports(["data", "validate", str(p), "--json"])
        ok &= not heavy
        print(f"tuneport data validate FILE (a real run): heavy modules imported: {heavy or 'none'}")
    print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
