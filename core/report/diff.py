"""Word-level differences between a reference and an output, for the HTML report's highlights."""

from __future__ import annotations

import difflib
import re

__all__ = ["word_diff"]

_MAX_DIFF_TOKENS = 4000  # beyond this, difflib's quadratic worst case is not worth a highlight
_DIFF_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)


def word_diff(reference: str, output: str) -> list[tuple[str, str]] | None:
    """Word-level diff of ``output`` against ``reference``: ``[(op, text), ...]`` with op ``equal``, ``insert``
    (in the output, not the reference) or ``delete`` (in the reference, missing from the output).

    Whitespace runs are tokens too, so joining every ``equal`` and ``insert`` text gives back the output exactly.
    ``None`` when either side is too long to diff quickly (the report then shows the output plainly).
    """
    a = _DIFF_TOKEN.findall(reference)
    b = _DIFF_TOKEN.findall(output)
    if len(a) > _MAX_DIFF_TOKENS or len(b) > _MAX_DIFF_TOKENS:
        return None
    out: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(("equal", "".join(b[j1:j2])))
            continue
        if op in ("delete", "replace"):
            out.append(("delete", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            out.append(("insert", "".join(b[j1:j2])))
    return out
