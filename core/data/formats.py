"""Which common dataset format one JSONL example is in, when it is not tuneport's chat (or preference) format.

Shared by the validator (so an Alpaca or ShareGPT file is named for what it is and pointed at ``tuneport data
convert``, instead of being misread: an Alpaca ``input`` key once made it look like a DPO example) and by the
converter (``--from auto``). Detection is by the keys each format is defined by, nothing looser.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FOREIGN_FORMATS", "foreign_format", "describe_format"]

#: The formats ``tuneport data convert --from`` reads, with the keys that define each.
FOREIGN_FORMATS = {
    "alpaca": "instruction / input / output",
    "sharegpt": 'conversations: [{"from": ..., "value": ...}]',
    "prompt-completion": "prompt / completion",
}


def foreign_format(obj: Any) -> str | None:
    """``alpaca``, ``sharegpt`` or ``prompt-completion`` for an example in one of those formats, else ``None``
    (chat examples with ``messages`` and preference examples are tuneport's own)."""
    if not isinstance(obj, Mapping) or "messages" in obj:
        return None
    if "instruction" in obj and "output" in obj and "preferred_output" not in obj:
        return "alpaca"
    conversations = obj.get("conversations")
    if isinstance(conversations, list) and conversations and all(
        isinstance(t, Mapping) and "from" in t and "value" in t for t in conversations
    ):
        return "sharegpt"
    if "prompt" in obj and "completion" in obj:
        return "prompt-completion"
    return None


def describe_format(fmt: str) -> str:
    """The format's name with its defining keys, for messages."""
    return f"{fmt} ({FOREIGN_FORMATS[fmt]})"
