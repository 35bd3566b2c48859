"""The evaluation spec and the held-out dataset it names.

An evaluation is "these endpoints, on this held-out chat JSONL, with these sampling parameters, graded so". It can
be given on the command line (``tuneport eval heldout.jsonl --endpoint base --endpoint ft``) or as a YAML / JSON
spec, which adds what the command line cannot say well: each endpoint's own system prompt and few-shot prefix
(a fine-tuned model expects the prompt it was trained with; a base model may need instructions to answer in the
same format), per-endpoint sampling overrides, grader configs and self-hosting prices::

    dataset: heldout.jsonl          # relative to the spec file
    endpoints:
      - base                        # a saved name, openai:MODEL, URL#MODEL or recorded:NAME
      - name: ft
        endpoint: ft:gpt-4.1-mini-2025-04-14:acme::abc
        system: "Classify the ticket. Answer with JSON."
      - name: local
        endpoint: http://127.0.0.1:8000/v1#tiny-chat
        hourly_usd: "2.10"
    params: {temperature: 0, max_tokens: 256}
    graders: [json_valid, {name: json_match, fields: [category]},
              {name: pairwise_judge, judge: openai:gpt-4.1}]   # an LLM judge, asked in both orders

Unknown keys are errors with a suggestion (``temprature`` -> ``did you mean "temperature"?``) and the line they
are on, so a typo never silently changes what was measured.

Each dataset line is a chat example; its **last message must be the assistant's** (the reference answer) and the
messages before it are the prompt.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tuneport.data.reader import file_sha256, iter_records
from tuneport.errors import DataError, SpecError
from tuneport.spec.parsing import read_yaml

__all__ = [
    "EvalSpec",
    "EndpointConfig",
    "SamplingParams",
    "EvalItem",
    "load_eval_spec",
    "load_items",
    "item_key",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingParams(_Strict):
    """Sampling parameters sent with every request (``None``: left to the server). Greedy by default, so a
    re-run measures the same thing and the response cache is meaningful."""

    temperature: float | None = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    top_p: float | None = Field(None, gt=0.0, le=1.0)

    def body(self) -> dict[str, Any]:
        """The request-body fields that are set."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class EndpointConfig(_Strict):
    """One endpoint under evaluation and how to prompt it."""

    endpoint: str = Field(description="a saved name, openai:MODEL, URL#MODEL or recorded:NAME")
    name: str | None = Field(None, description="the label in results (default: the endpoint reference)")
    system: str | None = Field(None, description="replaces the dataset's system message(s) for this endpoint")
    few_shot: list[dict[str, Any]] | None = Field(
        None, description="messages inserted after the system message, before each item's prompt"
    )
    shots: int | None = Field(
        None, ge=1, description="K few-shot examples drawn (seeded) from the training file, never from eval items"
    )
    params: SamplingParams | None = Field(None, description="overrides of the run's sampling parameters")
    hourly_usd: Decimal | None = Field(None, ge=0, description="$/hour of a self-hosted endpoint, for cost")
    job_id: str | None = Field(
        None, description="the job that trained it (its training file is leak-checked)"
    )

    @field_validator("few_shot")
    @classmethod
    def _check_few_shot(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, message in enumerate(value or []):
            if message.get("role") not in ("system", "user", "assistant") or not isinstance(
                message.get("content"), str
            ):
                raise ValueError(
                    f"few_shot[{i}] must be a message with role system/user/assistant and text content"
                )
        return value

    @property
    def label(self) -> str:
        return self.name or self.endpoint


class EvalSpec(_Strict):
    """A whole evaluation: dataset, endpoints, sampling parameters, graders, and optional extras."""

    dataset: str
    endpoints: list[EndpointConfig | str] = Field(min_length=1)
    params: SamplingParams = SamplingParams()
    graders: list[str | dict[str, Any]] | None = None
    train: str | None = Field(None, description="training data to check the eval items against (leakage)")
    name: str | None = None
    concurrency: int = Field(8, ge=1, le=4096)
    train_sample: int | None = Field(
        None, ge=1, description="also score this many training items per endpoint (training vs held-out)"
    )
    sample_seed: int = Field(0, description="seed of the few-shot draw and the training sample (recorded)")
    baseline: str | None = Field(None, description="the endpoint candidates are tested non-inferior to")
    margin: float | None = Field(None, gt=0.0, lt=1.0, description="the non-inferiority margin, in (0, 1)")

    def endpoint_configs(self) -> list[EndpointConfig]:
        return [EndpointConfig(endpoint=e) if isinstance(e, str) else e for e in self.endpoints]


# ----------------------------------------------------------------------------------------------- loading specs


def load_eval_spec(path: str | Path) -> EvalSpec:
    """Read a YAML or JSON eval spec; relative ``dataset`` / ``train`` paths are taken from the spec's folder.

    Every problem is reported at once, each with its key path, line and (for unknown keys) the closest valid key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the eval spec ({exc.strerror or exc})") from None
    # bounded like a job spec: invalid YAML, exploding aliases or nesting past the limit are a SpecError naming
    # the file and line, never a RecursionError or a hang
    data, node, duplicates = read_yaml(text, str(path), what="eval spec")
    if duplicates:
        raise SpecError(
            f"{path}: the eval spec has duplicate keys:\n  " + "\n  ".join(str(p) for p in duplicates),
            hint="Keep one of each; YAML would silently keep only the last.",
        )
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: an eval spec must be a mapping with dataset, endpoints, ...; got {type(data).__name__}",
            hint="See `tuneport eval --help` for an example spec.",
        )
    try:
        spec = EvalSpec.model_validate(data)
    except ValidationError as exc:
        problems = [p for err in exc.errors(include_url=False) if (p := _describe(err, data, node, path))]
        raise SpecError(
            f"{path}: the eval spec has {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n  "
            + "\n  ".join(problems),
            hint="Fix the keys above; `tuneport eval --help` shows an example spec.",
        ) from None
    base = path.parent
    changes: dict[str, Any] = {"dataset": str(_relative_to(base, spec.dataset))}
    if spec.train:
        changes["train"] = str(_relative_to(base, spec.train))
    return spec.model_copy(update=changes)


def _relative_to(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds keys at ``loc`` (None when not a model)."""
    model: type[BaseModel] = EvalSpec
    i = 0
    while i < len(loc):
        part = loc[i]
        if model is EvalSpec and part == "endpoints":
            # endpoints.N.(EndpointConfig|str).key ...
            i += 2
            if i < len(loc) and loc[i] in ("EndpointConfig", "str"):
                i += 1
            model = EndpointConfig
            continue
        if part == "params":
            model, i = SamplingParams, i + 1
            continue
        return None
    return model


def _describe(err: dict[str, Any], data: Any, node: Any, path: Path) -> str:
    loc = tuple(err["loc"])
    # pydantic names union members in the location ("endpoints.1.EndpointConfig.sytem"): drop them.
    clean = tuple(p for p in loc if p not in ("EndpointConfig", "str", "list[str]", "dict[str,any]"))
    if err["type"] == "extra_forbidden":
        model = _model_at(clean[:-1])
        valid = list(model.model_fields) if model is not None else []
        key = str(clean[-1])
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        message = f'unknown key "{key}"' + (
            f'; did you mean "{close[0]}"?' if close else f"; valid keys here: {', '.join(valid)}"
        )
    elif err["type"] == "missing":
        message = "is required"
    elif err["type"] == "string_type" and len(loc) > len(clean):
        return ""  # the str branch of an endpoint union failing is noise next to the mapping branch's errors
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
    line = _line_of(node, clean)
    dotted = ".".join(str(p) for p in clean) or "(top level)"
    return f"{dotted}: {message}" + (f" (line {line})" if line else "")


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the key (or item) at ``loc`` in a composed YAML node, or of its nearest parent."""
    import yaml

    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# ---------------------------------------------------------------------------------------------- the eval items


@dataclass(frozen=True, slots=True)
class EvalItem:
    """One held-out item: the prompt (every message before the last) and the reference (the last, assistant)."""

    index: int
    lineno: int
    prompt: list[dict[str, Any]]
    reference: str
    key: str  # sha256 of the prompt messages: how recordings find an item again, whatever the file's order


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(p, str) for p in parts) and parts:
            return "".join(parts)
    return None


def item_key(prompt: list[dict[str, Any]]) -> str:
    """A stable identity for a prompt (sha256 of its canonical JSON)."""
    return hashlib.sha256(orjson.dumps(prompt, option=orjson.OPT_SORT_KEYS)).hexdigest()


def load_items(path: str | Path) -> tuple[list[EvalItem], str]:
    """Read a held-out chat JSONL into items; returns ``(items, sha256 of the file)``.

    Every problem (a broken line, a line whose last message is not the assistant's answer, a prompt with no
    messages) is collected with its line number and raised together as a :class:`DataError`.
    """
    path = Path(path)
    items: list[EvalItem] = []
    problems: list[str] = []
    for record in iter_records(path):
        where = f"{path}:{record.lineno}"
        if record.error is not None:
            if record.error == "blank_line":
                continue
            problems.append(f"{where}: {record.detail}")
            continue
        obj = record.obj
        messages = obj.get("messages") if isinstance(obj, dict) else None
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            problems.append(f'{where}: not a chat example (needs a "messages" list of message objects)')
            continue
        if len(messages) < 2 or messages[-1].get("role") != "assistant":
            problems.append(
                f"{where}: the last message must be the assistant's reference answer, after at least one "
                "prompt message"
            )
            continue
        reference = _text(messages[-1].get("content"))
        if reference is None:
            problems.append(f"{where}: the reference (last assistant message) has no text content")
            continue
        prompt = [dict(m) for m in messages[:-1]]
        for m in prompt:
            m.pop("weight", None)  # a training-only field; servers reject it
        items.append(EvalItem(len(items), record.lineno, prompt, reference, item_key(prompt)))
    if problems:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError(
            f"{path}: {len(problems)} line{'s' if len(problems) > 1 else ''} cannot be evaluated:\n  "
            + "\n  ".join(shown)
            + more,
            hint="Each line must be a chat example ending with the assistant's reference answer "
            "(`tuneport data validate` checks the file).",
        )
    if not items:
        raise DataError(
            f"{path}: the dataset has no items to evaluate (the file is empty)",
            hint="Give a held-out chat JSONL, e.g. from `tuneport data split`.",
        )
    return items, file_sha256(path)


def parse_hourly(value: str | Decimal | int) -> Decimal:
    """A non-negative $/hour figure as an exact Decimal (a clear SpecError otherwise)."""
    try:
        amount = Decimal(str(value).strip().lstrip("$"))
    except InvalidOperation:
        raise SpecError(f"hourly price {value!r} is not a number", hint="For example --hourly 2.10") from None
    if not amount.is_finite() or amount < 0:
        raise SpecError(f"hourly price {value!r} must be a non-negative number")
    return amount
