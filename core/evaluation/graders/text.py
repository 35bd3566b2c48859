"""Text normalization and tokenization shared by the text and overlap graders."""

from __future__ import annotations

import re
import unicodedata

from tuneport.evaluation.graders.results import Reference

_ARTICLES = frozenset({"a", "an", "the"})


def normalize_text(
    text: str, *, lowercase: bool = True, remove_punctuation: bool = True, remove_articles: bool = False
) -> str:
    """NFKC-normalize, casefold, drop punctuation and collapse whitespace (the SQuAD answer normalization, made
    Unicode-aware).

    NFKC folds compatibility forms (full-width letters, ligatures, non-breaking spaces) into their plain forms;
    ``casefold`` is the Unicode-correct lowercase (``"Straße"`` matches ``"STRASSE"``). Punctuation is any character
    in a Unicode ``P*`` category and is deleted, not replaced by a space (so ``"U.S."`` matches ``"US"``).
    ``remove_articles`` drops English ``a`` / ``an`` / ``the``.
    """
    text = unicodedata.normalize("NFKC", text)
    if lowercase:
        text = text.casefold()
    if remove_punctuation:
        text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    words = text.split()
    if remove_articles:
        words = [w for w in words if w.casefold() not in _ARTICLES]
    return " ".join(words)


_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


_WORD_RE = re.compile(r"\w+")


def tokenize(text: str, *, lowercase: bool = True, punctuation: bool = False) -> list[str]:
    """Split text into word tokens (Unicode ``\\w+`` runs) after NFKC; with ``punctuation`` each punctuation or
    symbol character becomes a token of its own (as BLEU tokenizers do)."""
    text = unicodedata.normalize("NFKC", text)
    if lowercase:
        text = text.casefold()
    return (_TOKEN_RE if punctuation else _WORD_RE).findall(text)


def _reference_text(reference: Reference, grader: str) -> tuple[str | None, str | None]:
    if isinstance(reference, str):
        return reference, None
    if reference is None:
        return None, f"{grader} needs a reference answer and this item has none"
    return None, (
        f"{grader} compares text but the reference is a JSON {type(reference).__name__}; "
        "use json_match or label for structured references"
    )
