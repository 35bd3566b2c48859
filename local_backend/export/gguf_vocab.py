"""The tokenizer of a model folder as llama.cpp reads it from a GGUF: tokens, types, merges, special ids.

Only byte-level BPE tokenizers (GPT-2, Llama 3, Qwen 2 style; ``tokenizer.ggml.model = gpt2``) are written, and
only with a pre-tokenizer llama.cpp implements: the pre-tokenizer is what splits text before the merges, and a
wrong one silently changes every token id. It is recognised from ``tokenizer.json`` itself (its regex), not from
a hash of a known model's vocabulary, so a tokenizer trained for the job (tiny-chat's) is recognised too.
Conventions follow llama.cpp's ``convert_hf_to_gguf.py`` (``get_vocab_base``, ``_set_vocab_gpt2``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneport.local_backend.export.errors import ExportError

__all__ = ["GGUFVocab", "read_vocab", "pre_tokenizer_name"]

# llama.cpp's pre-tokenizer names for the split regexes of the byte-level BPE families (llama-vocab.cpp).
_LLAMA3_REGEX = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_QWEN2_REGEX = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_SPLIT_REGEXES = {_LLAMA3_REGEX: "llama-bpe", _QWEN2_REGEX: "qwen2"}

# gguf.TokenType values (kept here so that reading a tokenizer needs no gguf import).
NORMAL, UNUSED, CONTROL, USER_DEFINED = 1, 5, 3, 4


@dataclass
class GGUFVocab:
    """Everything ``tokenizer.ggml.*`` holds for a byte-level BPE tokenizer."""

    pre: str
    tokens: list[str]
    types: list[int]
    merges: list[str]
    special_ids: dict[str, int] = field(default_factory=dict)  # bos / eos / unk / pad / eot
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None


def _unsupported(folder: Path, detail: str) -> ExportError:
    return ExportError(
        f"the tokenizer in {folder} cannot be written to GGUF: {detail}",
        hint="GGUF export writes byte-level BPE tokenizers (GPT-2, Llama 3, Qwen 2 style); export --format "
        "merged and convert that folder with llama.cpp's convert_hf_to_gguf.py.",
    )


def pre_tokenizer_name(tokenizer_json: dict[str, Any], folder: Path) -> str:
    """llama.cpp's name for this tokenizer's pre-tokenizer (``gpt-2``, ``llama-bpe``, ``qwen2``), or an error."""
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise _unsupported(folder, f"its model is {model.get('type')}"
                           + (" with byte fallback" if model.get("byte_fallback") else "") + ", not byte-level BPE")  # fmt: skip
    if (tokenizer_json.get("decoder") or {}).get("type") != "ByteLevel":
        raise _unsupported(folder, "its decoder is not ByteLevel")
    pre = tokenizer_json.get("pre_tokenizer") or {}
    normalizer = tokenizer_json.get("normalizer")
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space") or not pre.get("use_regex", True):
            raise _unsupported(folder, "its ByteLevel pre-tokenizer adds a prefix space or has no split regex")
        name = "gpt-2"
    elif pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers") or []
        split = steps[0] if steps else {}
        regex = (split.get("pattern") or {}).get("Regex")
        tail = steps[1] if len(steps) == 2 else {}
        if split.get("type") != "Split" or tail.get("type") != "ByteLevel" or tail.get("use_regex", True):
            raise _unsupported(folder, "its pre-tokenizer sequence is not Split + ByteLevel")
        name = _SPLIT_REGEXES.get(regex or "")
        if name is None:
            raise _unsupported(folder, f"llama.cpp has no pre-tokenizer for the split regex {regex!r}")
    else:
        raise _unsupported(folder, f"its pre-tokenizer is {pre.get('type')}")
    if normalizer is not None and not (name == "qwen2" and normalizer.get("type") == "NFC"):
        raise _unsupported(folder, f"it normalizes text ({normalizer.get('type')}) before splitting")
    return name


def _merges(model: dict[str, Any]) -> list[str]:
    # tokenizers writes merges as "a b" strings (old) or ["a", "b"] pairs (new); GGUF takes "a b".
    return [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]


def read_vocab(folder: Path, tokenizer: Any, vocab_size: int, end_of_turn: str | None) -> GGUFVocab:
    """The GGUF vocabulary of ``folder``'s tokenizer (``tokenizer`` is it loaded with transformers).

    ``end_of_turn`` is what closes an assistant turn (see :class:`~.turns.TurnFormat`); its first special token
    becomes ``eot_token_id``, so llama.cpp stops there even where the tokenizer's eos is another token.
    """
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise _unsupported(folder, "it has no tokenizer.json (a fast tokenizer)")
    data = json.loads(path.read_text("utf-8"))
    pre = pre_tokenizer_name(data, folder)
    vocab: dict[str, int] = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise _unsupported(folder, f"token id {max(vocab.values())} is past the model's vocab_size {vocab_size}")
    reverse = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        token = reverse.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif i in added:
            tokens.append(token)
            types.append(CONTROL if added[i].special else USER_DEFINED)
        else:
            tokens.append(token)
            types.append(NORMAL)
    special: dict[str, int] = {}
    for name in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        if token_id is not None:
            special[name] = int(token_id)
    if end_of_turn:
        found = [(end_of_turn.find(added[i].content), i) for i in added if added[i].special
                 and added[i].content in end_of_turn]  # fmt: skip
        if found:
            special["eot"] = min(found)[1]
    probe = "tuneport"
    with_specials = tokenizer(probe, add_special_tokens=True)["input_ids"]
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    add_bos = "bos" in special and with_specials[:1] == [special["bos"]] and plain[:1] != [special["bos"]]
    add_eos = "eos" in special and with_specials[-1:] == [special["eos"]] and plain[-1:] != [special["eos"]]
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    return GGUFVocab(pre=pre, tokens=tokens, types=types, merges=_merges(data.get("model") or {}),
                     special_ids=special, add_bos=add_bos, add_eos=add_eos, chat_template=template)  # fmt: skip
