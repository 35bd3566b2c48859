"""Shared helpers for the benchmarks: a seeded generator of realistic chat datasets, medians, RSS of a child run."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import orjson

_COMMON = [
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "it",
    "you",
    "that",
    "he",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "I",
    "his",
    "they",
    "be",
    "at",
    "one",
    "have",
    "this",
    "from",
    "or",
    "had",
    "by",
    "not",
    "word",
    "but",
    "what",
    "some",
    "we",
    "can",
    "out",
    "other",
    "were",
    "all",
    "there",
    "when",
    "up",
    "use",
    "your",
    "how",
    "said",
    "an",
    "each",
    "she",
    "which",
    "do",
    "their",
    "time",
    "if",
    "will",
    "way",
    "about",
    "many",
    "then",
    "them",
    "write",
    "would",
    "like",
    "so",
    "these",
    "her",
    "long",
    "make",
    "thing",
    "see",
    "him",
    "two",
    "has",
    "look",
    "more",
    "day",
    "could",
    "go",
    "come",
    "did",
    "number",
    "sound",
    "no",
    "most",
    "people",
    "my",
    "over",
    "know",
    "water",
    "than",
    "call",
    "first",
    "who",
    "may",
    "down",
    "side",
    "been",
    "now",
    "find",
    "order",
    "refund",
    "account",
    "password",
    "shipping",
    "invoice",
    "please",
    "thanks",
    "customer",
    "support",
    "issue",
    "error",
    "request",
    "data",
    "model",
    "file",
    "server",
    "update",
    "version",
    "install",
    "configure",
    "python",
    "function",
    "return",
    "value",
    "list",
    "string",
    "table",
    "query",
]
_SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ne",
    "ra",
    "to",
    "shi",
    "vu",
    "en",
    "an",
    "or",
    "ex",
    "ter",
    "pro",
    "con",
    "di",
    "ble",
    "tion",
    "ment",
    "ing",
    "ly",
    "ous",
    "ive",
    "ist",
]
_PUNCT = [".", ",", "?", "!", ":", ";", " -", "'s"]


def _english_vocabulary() -> tuple[list[str], list[float]]:
    """Real English word frequencies: the words of the Python standard library's docstrings and comments (always
    on disk, so the benchmark needs no download). Falls back to a small built-in list."""
    import collections
    import glob
    import re
    import sysconfig

    counts: collections.Counter[str] = collections.Counter()
    for f in sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/*.py")):
        with open(f, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for m in re.finditer(r'"""(.*?)"""|#([^\n]*)', text, re.S):
            counts.update(re.findall(r"[A-Za-z][a-z']+", m.group(1) or m.group(2) or ""))
    if len(counts) < 1000:
        counts.update({w: 1000 // (i + 1) + 1 for i, w in enumerate(_COMMON)})
        counts.update({a + b: 1 for a in _SYLLABLES for b in _SYLLABLES})
    words = sorted(counts)
    return words, [float(counts[w]) for w in words]


class TextGen:
    """Pseudo-English with a Zipf-like vocabulary, numbers, punctuation, paragraphs and the odd code block.

    A pool of decorated words is drawn once; each text is a slice of it at a random offset (fast to generate,
    and every text is still different).
    """

    def __init__(self, rng: random.Random, pool_size: int = 400_000) -> None:
        self.rng = rng
        words, weights = _english_vocabulary()
        pool = rng.choices(words, weights=weights, k=pool_size)
        for i in range(pool_size):
            r = rng.random()
            if r < 0.02:
                pool[i] = str(rng.randint(0, 99999))
            elif r < 0.08:
                pool[i] += rng.choice(_PUNCT)
            elif r < 0.09:
                pool[i] += ".\n\n" + rng.choice(words).capitalize()
        self.pool = pool
        self.words = words

    def text(self, n_words: int) -> str:
        rng = self.rng
        start = rng.randrange(0, len(self.pool) - n_words)
        text = " ".join(self.pool[start : start + n_words]).replace("\n\n ", "\n\n").capitalize()
        if rng.random() < 0.05:
            n, word = rng.randint(2, 9), rng.choice(self.words)
            text += f"\n\n```python\ndef f(x):\n    return x * {n}  # {word}\n```"
        return text + "."


_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": desc,
            "parameters": {
                "type": "object",
                "properties": {p: {"type": t, "description": f"the {p}"} for p, t in params},
                "required": [params[0][0]],
            },
        },
    }
    for name, desc, params in [
        ("get_order", "Look up an order by id", [("order_id", "string"), ("include_items", "boolean")]),
        ("refund", "Refund an order", [("order_id", "string"), ("amount", "number"), ("reason", "string")]),
        ("search_docs", "Search the documentation", [("query", "string"), ("limit", "integer")]),
        ("get_weather", "Current weather for a city", [("city", "string"), ("unit", "string")]),
        ("create_ticket", "Open a support ticket", [("title", "string"), ("priority", "string")]),
    ]
]


def _lognormal_words(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(rng.lognormvariate(0, sigma) * median)))


def make_examples(n: int, seed: int = 1234, *, shared_system: bool = True):
    """Yield ``n`` realistic chat examples (seeded): system prompts, multi-turn, tools, weights, varied lengths.

    ``shared_system=False`` gives every example its own system prompt (no text repeats across examples), the
    worst case for tuneport's caches of repeated texts.
    """
    rng = random.Random(seed)
    gen = TextGen(rng)
    systems = [gen.text(rng.randint(30, 250)) for _ in range(8)]
    for k in range(n):
        messages = []
        if rng.random() < 0.85:
            system = systems[min(int(rng.expovariate(0.7)), 7)] if shared_system else gen.text(rng.randint(30, 250))
            messages.append({"role": "system", "content": system})
        example: dict = {}
        if rng.random() < 0.1:
            tools = rng.sample(_TOOLS, rng.randint(1, 3))
            example["tools"] = tools
            messages.append({"role": "user", "content": gen.text(_lognormal_words(rng, 25, 0.6, 3, 300))})
            calls = []
            for j in range(1 if rng.random() < 0.8 else 2):
                fn = rng.choice(tools)["function"]
                args = {
                    p: (gen.text(2) if spec["type"] == "string" else rng.randint(1, 500))
                    for p, spec in fn["parameters"]["properties"].items()
                }
                calls.append(
                    {
                        "id": f"call_{k}_{j}",
                        "type": "function",
                        "function": {"name": fn["name"], "arguments": json.dumps(args)},
                    }
                )
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
            for c in calls:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": c["id"],
                        "content": json.dumps({"result": gen.text(rng.randint(5, 60))}),
                    }
                )
            messages.append(
                {"role": "assistant", "content": gen.text(_lognormal_words(rng, 60, 0.7, 3, 800))}
            )
        else:
            turns = 1 if rng.random() < 0.7 else rng.randint(2, 4)
            for t in range(turns):
                messages.append({"role": "user", "content": gen.text(_lognormal_words(rng, 30, 0.8, 2, 600))})
                msg = {"role": "assistant", "content": gen.text(_lognormal_words(rng, 70, 0.8, 2, 1500))}
                if t < turns - 1 and rng.random() < 0.3:
                    msg["weight"] = 0
                messages.append(msg)
        example["messages"] = messages
        yield example


def write_dataset(path: Path, n: int, seed: int = 1234, *, shared_system: bool = True) -> int:
    """Write ``n`` examples as JSONL; returns the file size in bytes."""
    with open(path, "wb") as fh:
        for ex in make_examples(n, seed, shared_system=shared_system):
            fh.write(orjson.dumps(ex) + b"\n")
    return path.stat().st_size


def replicate_distinct(src: Path, dst: Path, times: int) -> int:
    """``times`` copies of ``src``, each copy's user turns tagged so no line duplicates another (bigger file,
    same shape)."""
    marker = b'"role":"user","content":"'
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for k in range(times):
            fin.seek(0)
            tag = marker + f"[{k}] ".encode()
            for line in fin:
                fout.write(line.replace(marker, tag) if k else line)
    return dst.stat().st_size


def message_texts(path: Path) -> list[str]:
    """Every text of a dataset that tuneport's count encodes, in memory (what a raw tokenizer loop would encode):
    message contents and names, and the compact JSON of tool calls and tool definitions. Role names are left out
    (a handful of short strings tuneport counts once), so the baseline does no work tuneport skips."""
    texts: list[str] = []
    with open(path, "rb") as fh:
        for line in fh:
            example = orjson.loads(line)
            for m in example["messages"]:
                c = m.get("content")
                if isinstance(c, str):
                    texts.append(c)
                elif isinstance(c, list):
                    texts.extend(
                        p["text"] for p in c if isinstance(p, dict) and isinstance(p.get("text"), str)
                    )
                if isinstance(m.get("name"), str):
                    texts.append(m["name"])
                for key in ("tool_calls", "function_call"):
                    if m.get(key) is not None:
                        texts.append(orjson.dumps(m[key]).decode())
            for key in ("tools", "functions"):
                if example.get(key):
                    texts.append(orjson.dumps(example[key]).decode())
    return texts


def median(values: list[float]) -> float:
    return statistics.median(values)


def run_child(code: str, *args: str, env: dict | None = None) -> tuple[str, float]:
    """Run ``python -c code args`` in a fresh process; return (stdout, elapsed seconds)."""
    import time

    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        check=True,
    ).stdout
    return out, time.perf_counter() - t0
