"""The tokens a chat turn ends with, and the served config that stops on them.

Why: a model stops generating at its ``eos_token_id`` (transformers reads it from ``generation_config.json``, vLLM
too), but many families end an assistant turn with another token than the tokenizer's eos: Gemma's
``<end_of_turn>`` vs ``<eos>``, Phi-3's ``<|end|>`` vs ``<|endoftext|>``, Llama 3's ``<|eot_id|>`` vs
``<|end_of_text|>``. A fine-tune trained on the template learns to end answers with the turn end; served with only
the eos as a stop, it then runs on to ``max_tokens`` with a made-up next turn (LLaMA-Factory #7454, TRL #2059,
Unsloth #384). The turn end is read from the template itself: the first special token rendered after an assistant
message's content.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

__all__ = ["turn_end_ids", "stop_ids", "missing_stop_ids", "write_generation_stops", "system_role_note"]

_PROBE = "tuneport-probe-answer"
_SYSTEM_PROBE = "tuneport-probe-system"
_USER_PROBE = "tuneport-probe-user"


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(int(i) for i, tok in decoder.items() if getattr(tok, "special", False))
    return ids


def turn_end_ids(tokenizer: Any) -> list[int]:
    """The token id the chat template closes an assistant turn with (empty when it closes it with plain text)."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    text = None
    for conversation in (
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE}],
    ):
        with contextlib.suppress(Exception):  # a template that needs another shape: try the next one
            text = tokenizer.apply_chat_template(conversation, tokenize=False)
            break
    if text is None or _PROBE not in text:
        return []
    after = text[text.rindex(_PROBE) + len(_PROBE) :]
    special = _special_ids(tokenizer)
    for token_id in tokenizer(after, add_special_tokens=False)["input_ids"]:
        if token_id in special:
            return [int(token_id)]
        if tokenizer.decode([token_id]).strip():  # real text before any special token: no token ends the turn
            return []
    return []


def _eos_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(value)] if isinstance(value, int) else [int(v) for v in value]


def _generation_config(folder: Path) -> dict[str, Any]:
    path = folder / "generation_config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stop_ids(tokenizer: Any, folder: str | Path | None = None) -> list[int]:
    """Every id generation should stop at: the folder's generation-config eos ids, the tokenizer's eos, the turn end."""
    ids = set(_eos_list(_generation_config(Path(folder)).get("eos_token_id"))) if folder is not None else set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    ids.update(turn_end_ids(tokenizer))
    return sorted(ids)


def missing_stop_ids(tokenizer: Any, folder: str | Path) -> list[int]:
    """Stop ids (see :func:`stop_ids`) that the folder's ``generation_config.json`` does not name."""
    named = set(_eos_list(_generation_config(Path(folder)).get("eos_token_id")))
    return [i for i in stop_ids(tokenizer, folder) if i not in named]


def write_generation_stops(folder: str | Path, tokenizer: Any, *, into: str | Path | None = None) -> list[int]:
    """Write ``generation_config.json`` (in ``into``, default ``folder``) whose ``eos_token_id`` lists every stop id.

    The rest of ``folder``'s generation config is kept. Returns the ids that were added (nothing is written when
    none are missing and ``into`` is the folder itself).
    """
    source = Path(folder)
    target = Path(into) if into is not None else source
    missing = missing_stop_ids(tokenizer, source)
    if not missing and target == source:
        return []
    config = _generation_config(source)
    config["eos_token_id"] = stop_ids(tokenizer, source)
    target.mkdir(parents=True, exist_ok=True)
    (target / "generation_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", "utf-8")
    return missing


def system_role_note(tokenizer: Any) -> str | None:
    """A sentence saying how the template handles a system message when it has no system turn of its own.

    None when the system message gets its own turn (a special token separates it from the user's). Gemma's format,
    for one, has no system role and puts the system text in front of the first user message.
    """
    conversation = [{"role": "system", "content": _SYSTEM_PROBE}, {"role": "user", "content": _USER_PROBE}]
    try:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # noqa: BLE001 - any template error means it refuses system messages
        return f"this model's chat template refuses system messages ({exc}); drop them from the data"
    if _SYSTEM_PROBE not in text:
        return (
            "this model's chat template drops the system message from this conversation; the model is trained "
            "without it"
        )
    if _USER_PROBE not in text:
        return None
    between = text[text.index(_SYSTEM_PROBE) + len(_SYSTEM_PROBE) : text.index(_USER_PROBE)]
    special = _special_ids(tokenizer)
    if any(t in special for t in tokenizer(between, add_special_tokens=False)["input_ids"]):
        return None
    return (
        "this model's chat format has no system role: as its template documents, the system message is put in "
        f"front of the first user message (joined by {between!r})"
    )
