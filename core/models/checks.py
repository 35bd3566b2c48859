"""What a model folder must have before a chat fine-tune starts, read from its JSON files (no torch, no weights).

Why before: a base model without a chat template, or an architecture whose code lives in the repository
(``trust_remote_code``), fails deep inside transformers after minutes of loading, or worse, trains in a format
nothing serves. Both are visible in ``config.json`` / ``tokenizer_config.json``, so they are refused at once, with
what to do.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from tuneport.errors import SpecError

__all__ = ["read_model_config", "has_chat_template", "remote_code_reason", "check_base_model"]


def read_model_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a model folder as a dict; a clear error when it is not valid JSON of an object."""
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise SpecError(f"model folder {folder} has no config.json") from None
    except (OSError, ValueError) as exc:
        raise SpecError(f"{path} is not valid JSON: {exc}", hint="Re-download the model.") from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{path} holds {type(data).__name__}, not a JSON object", hint="Re-download the model."
        )
    return data


def has_chat_template(folder: Path) -> bool:
    """Whether the tokenizer files carry a chat template (in tokenizer_config.json or a chat_template file)."""
    folder = Path(folder)
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


def remote_code_reason(
    config: dict[str, Any], known_model_types: Collection[str] | None = None
) -> str | None:
    """Why loading this config would run code from the model's repository, None when transformers has it built in.

    ``auto_map`` in config.json points the Auto classes at the repository's Python files; a ``model_type`` not in
    ``known_model_types`` (transformers' own, passed by callers that have transformers loaded already; importing it
    takes seconds) can only be loaded that way.
    """
    auto_map = config.get("auto_map")
    if isinstance(auto_map, dict) and any("CausalLM" in key or key == "AutoModel" for key in auto_map):
        return (
            f"its config.json maps the model class to code in the repository ({', '.join(sorted(auto_map))})"
        )
    model_type = config.get("model_type")
    known = known_model_types
    if known is not None and isinstance(model_type, str) and model_type and model_type not in known:
        return f"model_type {model_type!r} is not built into the installed transformers"
    return None


def check_base_model(
    folder: Path,
    *,
    trust_remote_code: bool,
    label: str | None = None,
    known_model_types: Collection[str] | None = None,
) -> None:
    """Refuse a folder a chat fine-tune cannot start from: no chat template, or remote code the spec did not allow."""
    name = label or str(folder)
    reason = remote_code_reason(read_model_config(folder), known_model_types)
    if reason is not None and not trust_remote_code:
        raise SpecError(
            f"model {name} needs trust_remote_code: {reason}; tuneport runs a repository's code only when the "
            "spec allows it",
            hint="Read the model repository's Python files, then set `local.trust_remote_code: true` in the spec "
            "if you trust them (or pick a model transformers supports natively).",
        )
    if not has_chat_template(folder):
        raise SpecError(
            f"model {name} has no chat template (tokenizer_config.json has no `chat_template` and there is no "
            "chat_template.jinja): it looks like a base model, and chat examples cannot be rendered the way the "
            "fine-tune will be served",
            hint="Use the instruct/chat variant of the model (e.g. ...-Instruct), or add the family's "
            "`chat_template` to its tokenizer_config.json.",
        )
