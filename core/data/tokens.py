"""Exact token counts, the way OpenAI's fine-tuning cookbook counts them.

Why this module exists: cost estimates, the per-example token limit and the epochs OpenAI picks all depend on token
counts, and a count that is silently wrong is worse than none. So the encoding is resolved from the model (``ft:``
ids to their base first: tiktoken 0.14 maps ``ft:gpt-4.1-...`` to the wrong encoding), loaded without ever waiting
long on the network, and when it cannot be loaded the counter says so and falls back to a clearly labelled estimate
(``exact = False``) instead of failing or pretending.

Counting rule (OpenAI cookbook "Chat_finetuning_data_prep"): per message 3 tokens + the tokens of every string
value (role, content, name, ...) + 1 per ``name``; 3 tokens of reply priming per example. Content given as a list
of text parts counts its texts. ``tool_calls``, ``function_call``, ``tools`` and ``functions`` are counted through
their compact JSON text: OpenAI renders them differently internally, so those parts are approximate (usually
within a few tokens per call). ``weight`` is not text and costs nothing. Image parts are not counted.

Where the BPE files come from: tiktoken encodes, and reads its files from its cache (``$TIKTOKEN_CACHE_DIR``, under
the sha1 of the download address). When the cache lacks a file, the copy that arrives with the install takes the
place of the download: the ``bpe-openai`` wheel (a dependency) carries o200k_base and cl100k_base, and its bytes are
checked against the sha256 tiktoken pins before they are put in the cache, so tiktoken loads its own file byte for
byte and the counts are tiktoken's. Only when neither is there do we download, with a short timeout (never
tiktoken's unbounded request), or not at all when ``TUNEPORT_OFFLINE=1``.

bpe-openai is read as data, not imported: importing the package parses all three of its vocabularies in Python
(about 0.55 s and 80 MB) before anything is encoded, and tiktoken's own load is then still needed. Its Rust encoder
counts about 25% faster than tiktoken, but reaching it alone means bypassing the package's import; tiktoken stays
the one encoder, exact by construction.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "TokenCounter",
    "ExampleTokens",
    "get_counter",
    "count_tokens",
    "load_encoding",
    "bundled_bpe_file",
    "DEFAULT_ENCODING",
]

DEFAULT_ENCODING = "o200k_base"

# The BPE files tiktoken downloads for the encodings OpenAI's fine-tunable models use, with the sha256 tiktoken
# checks (from tiktoken_ext/openai_public.py).
_BLOBS: dict[str, tuple[str, str]] = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

# The installed distribution that carries those files, and where they are inside it (gzip-compressed).
_BUNDLE_DIST = "bpe-openai"
_BUNDLE_PATH = "bpe_openai/data/{name}.tiktoken.gz"

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

# Bounded caches of token counts: short strings (roles, names, ids, "Thanks!") and long texts of system/developer
# messages and tool definitions, which repeat across a dataset. Bounded by entries and characters so memory stays flat.
_SMALL_TEXT = 64
_SMALL_CACHE_ENTRIES = 4096
_BIG_CACHE_ENTRIES = 4096
_BIG_CACHE_CHARS = 32 << 20

_load_lock = threading.Lock()
_loaded: dict[tuple[str, str], Any] = {}


def _offline() -> bool:
    return os.environ.get("TUNEPORT_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _tiktoken_cache_dir() -> str:
    """The folder tiktoken reads its cache from (same precedence as tiktoken.load.read_file_cached)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _download(url: str, sha256: str, timeout: float) -> bytes:
    import httpx

    resp = httpx.get(url, timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)), follow_redirects=True)
    resp.raise_for_status()
    data = resp.content
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"downloaded {url} does not have the expected sha256")
    return data


def bundled_bpe_file(name: str) -> tuple[bytes | None, str | None]:
    """tiktoken's BPE file for ``name`` from the installed bpe-openai wheel: ``(bytes, None)`` or ``(None, why not)``.

    The bytes are those tiktoken would download (their sha256 is the one tiktoken pins), decompressed. Read through
    the distribution's file list, without importing bpe_openai (see the module docstring).
    """
    if name not in _BLOBS:
        return None, f"no copy of {name} comes with the install (only {', '.join(_BLOBS)} do)"
    try:
        dist = metadata.distribution(_BUNDLE_DIST)
    except metadata.PackageNotFoundError:
        return (
            None,
            f"{_BUNDLE_DIST}, which carries tiktoken's files, is not installed (pip install {_BUNDLE_DIST})",
        )
    path = Path(os.fspath(dist.locate_file(_BUNDLE_PATH.format(name=name))))
    where = f"{_BUNDLE_DIST} {dist.version}"
    try:
        data = gzip.decompress(path.read_bytes())
    except OSError as exc:  # missing, unreadable, or not gzip (gzip.BadGzipFile is an OSError)
        return None, f"{where} has no readable copy of {name} at {path} ({exc}); reinstall {_BUNDLE_DIST}"
    except EOFError:
        return None, f"{where}'s copy of {name} at {path} is truncated; reinstall {_BUNDLE_DIST}"
    if hashlib.sha256(data).hexdigest() != _BLOBS[name][1]:
        return None, f"{where}'s copy of {name} at {path} is not tiktoken's file (sha256 differs)"
    return data, None


def _write_cache_file(folder: str, key: str, data: bytes) -> None:
    """Put one file into a tiktoken cache folder atomically (a reader never sees half a file)."""
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, key)
    tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _private_cache_dir() -> str:
    """A tiktoken cache of tuneport's own, for when tiktoken's is switched off (empty) or cannot be written."""
    from tuneport.paths import home_dir

    return str(home_dir() / "tiktoken-cache")


def _fetch(name: str, where: str, allow_download: bool, timeout: float) -> tuple[bytes | None, str | None]:
    """The bytes of ``name``'s BPE file when the cache lacks it: the installed copy, else a bounded download."""
    data, not_bundled = bundled_bpe_file(name)
    if data is not None:
        return data, None
    if not allow_download:
        return (
            None,
            f"the {name} BPE file is not in tiktoken's cache {where}, {not_bundled}, and downloads are off",
        )
    url, sha = _BLOBS[name]
    try:
        return _download(url, sha, timeout), None
    except Exception as exc:  # network errors of every kind: we fall back, never crash
        return (
            None,
            f"the {name} BPE file is not in tiktoken's cache {where}, {not_bundled}, "
            f"and it could not be downloaded ({exc})",
        )


def _get_tiktoken_encoding(name: str, cache_dir: str) -> Any:
    """``tiktoken.get_encoding(name)`` reading its files from ``cache_dir`` (which already holds them)."""
    import tiktoken

    if cache_dir == _tiktoken_cache_dir():
        return tiktoken.get_encoding(name)
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = cache_dir
    try:
        return tiktoken.get_encoding(name)
    finally:
        if old is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


def load_encoding(
    name: str, *, allow_download: bool | None = None, timeout: float = 5.0
) -> tuple[Any, str | None]:
    """Load a tiktoken encoding without risking a long network wait.

    Returns ``(encoding, None)`` or ``(None, reason)``. The cache file is checked first (a stat, no network); when
    it is missing, the copy that comes with the install is put into tiktoken's cache, and only when there is none
    is it downloaded (bounded; ``allow_download`` defaults to "unless TUNEPORT_OFFLINE=1"). When tiktoken's cache
    is switched off (``TIKTOKEN_CACHE_DIR=""``) or cannot be written, the file goes to a cache in tuneport's home.
    """
    if allow_download is None:
        allow_download = not _offline()
    cache_dir = _tiktoken_cache_dir()
    key = (name, cache_dir)
    with _load_lock:
        if key in _loaded:
            return _loaded[key], None
        try:
            import tiktoken  # noqa: F401
        except ImportError:  # pragma: no cover - tiktoken is a dependency
            return None, "tiktoken is not installed (pip install tiktoken)"
        if name not in _BLOBS:
            return None, f"unknown encoding {name!r}"
        url, _ = _BLOBS[name]
        cache_key = hashlib.sha1(url.encode()).hexdigest()
        source_dir = cache_dir
        if not cache_dir or not os.path.exists(os.path.join(cache_dir, cache_key)):
            where = f"{cache_dir!r}" if cache_dir else "(caching disabled: TIKTOKEN_CACHE_DIR is empty)"
            data, problem = _fetch(name, where, allow_download, timeout)
            if data is None:
                return None, problem
            written = False
            if cache_dir:
                try:
                    _write_cache_file(cache_dir, cache_key, data)
                    written = True
                except OSError:  # a read-only cache (a shared folder): use tuneport's own instead
                    pass
            if not written:
                source_dir = _private_cache_dir()
                try:
                    _write_cache_file(source_dir, cache_key, data)
                except OSError as exc:
                    return None, f"cannot write a tiktoken cache in {source_dir!r} ({exc.strerror})"
        try:
            enc = _get_tiktoken_encoding(name, source_dir)
        except Exception as exc:  # a corrupt cache file: fall back with the reason
            return None, f"tiktoken could not load {name} ({exc})"
        _loaded[key] = enc
        return enc, None


@dataclass(frozen=True, slots=True)
class ExampleTokens:
    """Token counts of one example: ``total`` is what OpenAI bills; ``assistant`` is what the model learns to write
    (assistant messages with weight != 0, their content plus tool/function calls)."""

    total: int
    assistant: int


class TokenCounter:
    """Counts tokens of texts and chat examples with one encoding.

    ``exact`` is False when the counts are an estimate (bytes / 4) because the encoding could not be loaded;
    ``note`` says why, or which default was assumed. Every output that depends on the counts carries ``exact``.
    """

    def __init__(
        self, encoding_name: str, encode: Any | None, *, exact: bool, note: str | None = None
    ) -> None:
        self.encoding = encoding_name
        self.exact = exact
        self.note = note
        self._encode = encode
        self._small: dict[str, int] = {}
        self._big: dict[str, int] = {}
        self._big_chars = 0

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def estimate(cls, note: str) -> TokenCounter:
        """A counter that estimates 1 token per 4 UTF-8 bytes (rounded up), labelled as such."""
        return cls("estimate:bytes/4", None, exact=False, note=note)

    # -- text ---------------------------------------------------------------------------------------------------
    def count_text(self, text: str) -> int:
        """Tokens of one string (no special tokens are interpreted: ``<|endoftext|>`` in data is plain text)."""
        if len(text) <= _SMALL_TEXT:
            small = self._small
            n = small.get(text)
            if n is None:
                n = self._raw(text)
                if len(small) < _SMALL_CACHE_ENTRIES:
                    small[text] = n
            return n
        return self._raw(text)

    def count_repeated_text(self, text: str) -> int:
        """Like :meth:`count_text` for texts likely to repeat (system prompts, tool definitions): cached, bounded."""
        if len(text) <= _SMALL_TEXT:
            return self.count_text(text)
        big = self._big
        n = big.get(text)
        if n is None:
            n = self._raw(text)
            if len(big) < _BIG_CACHE_ENTRIES and self._big_chars + len(text) <= _BIG_CACHE_CHARS:
                big[text] = n
                self._big_chars += len(text)
        return n

    def _raw(self, text: str) -> int:
        enc = self._encode
        if enc is None:
            return (len(text.encode("utf-8", "surrogatepass")) + 3) // 4
        try:
            return len(enc(text))
        except (UnicodeEncodeError, ValueError):  # lone surrogates from "\ud800" escapes in JSON
            return len(enc(text.encode("utf-8", "replace").decode("utf-8")))

    def count_json(self, value: Any) -> int:
        """Tokens of a value's compact JSON text (tool calls, tool definitions: approximate, see module doc)."""
        if isinstance(value, str):
            return self.count_repeated_text(value)
        try:
            text = orjson.dumps(value).decode("utf-8")
        except (TypeError, orjson.JSONEncodeError):  # nested deeper than orjson writes (validation flags it)
            return 0
        return self.count_repeated_text(text)

    # -- chat ---------------------------------------------------------------------------------------------------
    def count_content(self, content: Any, *, repeated: bool = False) -> int:
        """Tokens of a message ``content``: a string, or a list of parts whose ``text`` values are counted."""
        if type(content) is str:
            return self.count_repeated_text(content) if repeated else self.count_text(content)
        if type(content) is list:
            n = 0
            for part in content:
                if type(part) is dict:
                    text = part.get("text")
                    if type(text) is str:
                        n += self.count_repeated_text(text) if repeated else self.count_text(text)
            return n
        return 0

    def count_messages(
        self,
        messages: Iterable[Mapping[str, Any]],
        *,
        tools: Any = None,
        functions: Any = None,
    ) -> ExampleTokens:
        """Count a conversation like OpenAI's cookbook does (see the module docstring), plus tool definitions.

        Tolerant: values of unexpected types are skipped, never raised on (validation reports them).
        """
        total = REPLY_PRIMING
        assistant = 0
        count_text = self.count_text
        raw = self._raw
        for m in messages:
            if type(m) is not dict:
                continue
            role = m.get("role")
            repeated = role == "system" or role == "developer"
            if len(m) == 2:
                content = m.get("content")
                if type(content) is str and type(role) is str:
                    # the common {"role", "content"} message, without the generic loop below
                    if repeated:
                        n = self.count_repeated_text(content)
                    elif len(content) > _SMALL_TEXT:
                        n = raw(content)
                    else:
                        n = count_text(content)
                    total += TOKENS_PER_MESSAGE + count_text(role) + n
                    if role == "assistant":
                        assistant += n
                    continue
            total += TOKENS_PER_MESSAGE
            msg_assistant = 0
            for key, value in m.items():
                if key == "weight":
                    continue
                if key == "content":
                    n = self.count_content(value, repeated=repeated)
                    msg_assistant += n
                elif key == "tool_calls" or key == "function_call":
                    n = self.count_json(value) if value is not None else 0
                    msg_assistant += n
                elif type(value) is str:
                    n = count_text(value)
                    if key == "name":
                        n += TOKENS_PER_NAME
                else:
                    n = 0
                total += n
            if role == "assistant" and m.get("weight", 1) != 0:
                assistant += msg_assistant
        if tools:
            total += self.count_json(tools)
        if functions:
            total += self.count_json(functions)
        return ExampleTokens(total, assistant)

    def count_example(self, example: Any) -> ExampleTokens:
        """Count one dataset line: the SFT shape (``messages``) or the DPO shape (``input`` + outputs).

        For DPO, ``total`` is the input plus both outputs (every token the job reads) and ``assistant`` the tokens of
        both outputs.
        """
        if type(example) is not dict:
            return ExampleTokens(0, 0)
        if "messages" in example or "input" not in example:
            messages = example.get("messages")
            if type(messages) is not list:
                return ExampleTokens(0, 0)
            return self.count_messages(
                messages, tools=example.get("tools"), functions=example.get("functions")
            )
        inp = example.get("input")
        inp = inp if type(inp) is dict else {}
        msgs = inp.get("messages")
        base = self.count_messages(
            msgs if type(msgs) is list else [], tools=inp.get("tools"), functions=inp.get("functions")
        )
        total, assistant = base.total, 0
        for key in ("preferred_output", "non_preferred_output"):
            out = example.get(key)
            if type(out) is list:
                t = self.count_messages(out)
                total += t.total - REPLY_PRIMING
                assistant += t.assistant
        return ExampleTokens(total, assistant)

    def describe(self) -> dict[str, Any]:
        """What the counts are based on, for reports: encoding, exact, note."""
        return {"encoding": self.encoding, "exact": self.exact, "note": self.note}


def _hf_counter(folder: Path) -> TokenCounter | None:
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        return None
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    try:
        tok = Tokenizer.from_file(str(tokenizer_file))
    except Exception:  # a malformed tokenizer.json: the caller falls back to the default encoding
        return None

    def encode(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False).ids

    return TokenCounter(
        f"hf:{folder}",
        encode,
        exact=True,
        note=(
            f"content tokens counted with the tokenizer in {folder}; the per-message overhead follows OpenAI's "
            "rule (3 per message), not this model's chat template"
        ),
    )


def get_counter(model: str | None = None, *, allow_download: bool | None = None) -> TokenCounter:
    """The token counter for a model id (OpenAI id, alias, ``ft:`` id), a local tokenizer folder, or None.

    Unknown models and None count with o200k_base (the encoding of every current fine-tunable OpenAI model) and say
    so in ``note``. When the encoding cannot be loaded, an estimate is returned with ``exact = False``.
    """
    from tuneport.cost.catalog import encoding_for

    note: str | None = None
    name: str | None = None
    if model:
        folder = Path(model).expanduser()
        if folder.is_dir():
            counter = _hf_counter(folder)
            if counter is not None:
                return counter
            note = f"{model} is a folder without a loadable tokenizer.json; counted with {DEFAULT_ENCODING} instead"
            name = DEFAULT_ENCODING
        else:
            name = encoding_for(model)
            if name is None:
                note = f"unknown model {model!r}: counted with {DEFAULT_ENCODING} (the gpt-4o / gpt-4.1 encoding)"
                name = DEFAULT_ENCODING
    else:
        name = DEFAULT_ENCODING
        note = f"no model given: counted with {DEFAULT_ENCODING} (the gpt-4o / gpt-4.1 / o-series encoding)"
    enc, problem = load_encoding(name, allow_download=allow_download)
    if enc is None:
        reason = f"ESTIMATE, not exact: {problem}; counted 1 token per 4 UTF-8 bytes"
        hint = (
            " For exact counts, install bpe-openai (a tuneport dependency: it carries tiktoken's files) or set"
            " TIKTOKEN_CACHE_DIR to a folder holding tiktoken's cache files."
        )
        return TokenCounter.estimate(reason + "." + hint + (f" ({note})" if note else ""))
    return TokenCounter(name, enc.encode_ordinary, exact=True, note=note)


def count_tokens(text_or_example: Any, model: str | None = None) -> int:
    """Tokens of a string, or of a chat example (dict with ``messages``, or the DPO shape), for ``model``.

    Convenience for one-off counts; for many, reuse :func:`get_counter`'s counter (it caches repeated texts).
    """
    counter = get_counter(model)
    if isinstance(text_or_example, str):
        return counter.count_text(text_or_example)
    return counter.count_example(text_or_example).total
