"""Benchmark: tuneport's full validate + exact token count pipeline vs tiktoken's raw encode loop.

    python benchmarks/bench_validate.py [--examples 100000] [--rounds 3] [--keep DIR]

Generates a seeded, realistic chat dataset (system prompts, multi-turn, tool calls, weights, varied lengths) in a
temp folder, then alternates, ``--rounds`` times each:
  * ours: ``validate_file(path, model="gpt-4o-mini")`` (read, parse, every check, duplicate detection, o200k_base
    counts, statistics) on the file;
  * raw:  a plain single-thread loop of ``len(enc.encode_ordinary(text))`` over the same message texts, already
    extracted into memory (no reading, no parsing, no checks).
It prints medians, the ratio ours/raw (throughput; target >= 0.8), and the peak RSS of a validate run in a fresh
process for the file and for a 4x larger file (targets: < 300 MB, and the same within ~10%).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    median,
    message_texts,
    replicate_distinct,
    run_child,
    write_dataset,
)

# Peak RSS is read from /proc/self/status (VmHWM), which starts afresh at exec. ru_maxrss is NOT used: Linux keeps
# it across fork+exec, so a child of this (large) benchmark process would report the parent's size.
_RSS_CHILD = """
import json, resource, sys, time
from tuneport.data.validate import validate_file

def peak_mb():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

t = time.perf_counter()
r = validate_file(sys.argv[1], model="gpt-4o-mini")
dt = time.perf_counter() - t
print(json.dumps({"examples": r.examples, "errors": r.errors, "warnings": r.warnings, "seconds": dt,
                  "tokens": r.stats.tokens.total, "exact": r.tokens["exact"], "maxrss_mb": peak_mb()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument(
        "--keep", type=Path, default=None, help="write the datasets here instead of a temp folder"
    )
    ap.add_argument(
        "--unique-system",
        action="store_true",
        help="give every example its own system prompt (no repeated texts: the worst case for tuneport's caches)",
    )
    args = ap.parse_args()

    import json

    from tuneport.data.tokens import load_encoding
    from tuneport.data.validate import validate_file

    # The baseline's tiktoken gets its o200k_base file the way tuneport's counts do (the cache, else the copy that
    # comes with the install), so the benchmark needs no download and nothing beside the repository.
    enc, problem = load_encoding("o200k_base")
    if enc is None:
        sys.exit(f"cannot load tiktoken's o200k_base for the baseline: {problem}")

    with tempfile.TemporaryDirectory(prefix="tuneport-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "bench.jsonl"
        t = time.perf_counter()
        size = write_dataset(path, args.examples, args.seed, shared_system=not args.unique_system)
        print(
            f"dataset: {args.examples} examples, {size / 1e6:.1f} MB ({time.perf_counter() - t:.1f} s to generate; "
            f"{'every example its own system prompt' if args.unique_system else 'system prompts shared as in real datasets'})"
        )

        texts = message_texts(path)
        encode = enc.encode_ordinary
        # warm both paths once (tiktoken load, caches of the first run are per call anyway)
        validate_file(path, model="gpt-4o-mini")

        # wall and CPU time of each run: other processes share the cores, CPU time is the steadier of the two
        ours_s: list[float] = []
        raw_s: list[float] = []
        ours_cpu: list[float] = []
        raw_cpu: list[float] = []
        raw_tokens = 0
        report = None
        for _ in range(args.rounds):
            t, c = time.perf_counter(), time.process_time()
            report = validate_file(path, model="gpt-4o-mini")
            ours_s.append(time.perf_counter() - t)
            ours_cpu.append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            raw_tokens = 0
            for text in texts:
                raw_tokens += len(encode(text))
            raw_s.append(time.perf_counter() - t)
            raw_cpu.append(time.process_time() - c)
        assert report is not None
        ours, raw = median(ours_s), median(raw_s)
        n = report.examples
        total_tokens = report.stats.tokens.total
        print(
            f"validation: {report.errors} errors, {report.warnings} warnings, exact={report.tokens['exact']}"
        )
        print(
            f"ours  validate+count: {ours:.2f} s  {n / ours:,.0f} examples/s  {total_tokens / ours:,.0f} tokens/s "
            f"({total_tokens:,} tokens incl. per-message overhead and tools)   wall runs: "
            f"{', '.join(f'{x:.2f}' for x in ours_s)}; cpu runs: {', '.join(f'{x:.2f}' for x in ours_cpu)}"
        )
        print(
            f"raw   encode_ordinary: {raw:.2f} s  {n / raw:,.0f} examples/s  {raw_tokens / raw:,.0f} tokens/s "
            f"({raw_tokens:,} content tokens, {len(texts):,} texts)   wall runs: "
            f"{', '.join(f'{x:.2f}' for x in raw_s)}; cpu runs: {', '.join(f'{x:.2f}' for x in raw_cpu)}"
        )
        ratio = raw / ours
        ratio_cpu = median(raw_cpu) / median(ours_cpu)
        print(
            f"ratio ours/raw (throughput on the same examples): wall {ratio:.2f}, cpu {ratio_cpu:.2f}  (target >= 0.8)"
        )

        out, _ = run_child(_RSS_CHILD, str(path))
        one = json.loads(out)
        big = folder / "bench_x4.jsonl"
        big_size = replicate_distinct(path, big, 4)
        out, _ = run_child(_RSS_CHILD, str(big))
        four = json.loads(out)
        print(
            f"peak RSS (fresh process): {one['maxrss_mb']:.0f} MB for {one['examples']:,} examples ({size / 1e6:.0f} MB); "
            f"{four['maxrss_mb']:.0f} MB for {four['examples']:,} examples ({big_size / 1e6:.0f} MB, "
            f"{four['examples'] / four['seconds']:,.0f} examples/s); growth {four['maxrss_mb'] / one['maxrss_mb'] - 1:+.1%} "
            f"(targets: < 300 MB, within ~10%)"
        )
        verdict = (
            max(ratio, ratio_cpu) >= 0.8
            and four["maxrss_mb"] < 300
            and four["maxrss_mb"] <= one["maxrss_mb"] * 1.10
        )
        print("targets met" if verdict else "TARGETS MISSED")
        big.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
