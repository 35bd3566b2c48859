"""The job spec: one file that describes a fine-tuning job for every backend.

A spec is a superset of the body of OpenAI's ``POST /v1/fine_tuning/jobs`` (``model``, ``training_file``,
``validation_file``, ``method``, ``suffix``, ``seed``, ``metadata``, ``integrations``) plus two things OpenAI has no
field for: ``backend`` (where to train) and a ``local`` section (LoRA, quantization, sequence length, absolute
learning rate, processes...). A body that OpenAI accepts is therefore a valid spec, and a hosted job can be re-run
locally by changing one word.

Why so strict: a typo in a hyperparameter name silently falls back to a default and costs a training run. So every
unknown key is an error that names its full dotted path and suggests the nearest valid key, every out-of-range
value states the allowed range, and every problem in the file is reported at once, each as
``file:line: path: message``.

The friendly shorthands (``method: dpo``, ``method: {type: dpo, hyperparameters: {...}}`` and OpenAI's deprecated
top-level ``hyperparameters``) are normalized to OpenAI's canonical shape, so the rest of the code sees one form.
The format reference is ``docs/spec.md``; the mapping to each backend is :mod:`tuneport.spec.mapping`.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tuneport.errors import SpecError
from tuneport.providers.registry import provider_names

__all__ = [
    "JobSpec",
    "Method",
    "SupervisedHyperparameters",
    "DPOHyperparameters",
    "SupervisedMethod",
    "DPOMethod",
    "LocalSettings",
    "Integration",
    "WandbIntegration",
    "SpecProblem",
    "load_spec",
    "spec_hash",
    "is_openai_file_id",
    "backend_names",
    "METHOD_TYPES",
]

AUTO = "auto"
METHOD_TYPES = ("supervised", "dpo")
FINETUNING_TYPES = ("lora", "qlora", "full")
QUANTIZATIONS = ("none", "4bit", "8bit")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
SEED_MAX = 2_147_483_647
SUFFIX_MAX = 64
METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512

# OpenAI file ids look like "file-abc123" (letters and digits after the dash). A dot never occurs in one, so
# "file-train.jsonl" is a path; write "./file-x" for a local file whose name has no dot.
_FILE_ID = re.compile(r"^file-[A-Za-z0-9_-]+$")
# OpenAI documents only the suffix length. It becomes one field of the colon-separated model id
# ("ft:gpt-4o-mini:org:SUFFIX:id"), so tuneport allows the characters that are safe there and in file names.
_SUFFIX = re.compile(r"^[A-Za-z0-9._-]+$")


def is_openai_file_id(value: str) -> bool:
    """Whether a ``training_file`` / ``validation_file`` value names an uploaded OpenAI file, not a local path."""
    return bool(_FILE_ID.match(value))


# --------------------------------------------------------------------------------------------------------------
# Field validators. Each raises one PydanticCustomError whose message is the whole human sentence, so the error
# collector never has to rewrite pydantic's generic wording ("Input should be ...").
# --------------------------------------------------------------------------------------------------------------


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("tuneport", "{msg}", {"msg": message})


def _show(value: Any) -> str:
    """A value the way the user wrote it in YAML/JSON terms (true, null, "text", 3)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def _or_auto(text: str, auto: bool) -> str:
    return f'{text}, or "auto"' if auto else text


def _integer(lo: int, hi: int, *, auto: bool = False, nullable: bool = False) -> PlainValidator:
    want = _or_auto(f"an integer from {lo} to {hi}", auto)

    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if auto and value == AUTO:
            return AUTO
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(f"must be {want} (got {_show(value)})")
        if not lo <= value <= hi:
            raise _fail(f"must be {want} (got {value})")
        return value

    return PlainValidator(check)


def _number(
    lo: float,
    hi: float | None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    auto: bool = False,
    nullable: bool = False,
) -> PlainValidator:
    low = f"greater than {lo:g}" if lo_open else f"at least {lo:g}"
    bounds = low if hi is None else f"{low} and {'less than' if hi_open else 'at most'} {hi:g}"
    want = _or_auto(f"a number {bounds}", auto)

    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if auto and value == AUTO:
            return AUTO
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(f"must be {want} (got {_show(value)})")
        too_low = value <= lo if lo_open else value < lo
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            raise _fail(f"must be {want} (got {value:g})")
        return float(value)

    return PlainValidator(check)


def _choice(options: Iterable[str], *, nullable: bool = False) -> PlainValidator:
    opts = tuple(options)

    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if isinstance(value, str) and value in opts:
            return value
        message = f"must be one of {', '.join(opts)} (got {_show(value)})"
        if isinstance(value, str):
            close = difflib.get_close_matches(value.lower(), opts, n=1, cutoff=0.6)
            if close:
                message += f'; did you mean "{close[0]}"?'
        raise _fail(message)

    return PlainValidator(check)


def backend_names() -> tuple[str, ...]:
    """The backends a spec may name: exactly those the provider registry knows (built-in and plugins)."""
    return tuple(provider_names())


def _backend_choice() -> PlainValidator:
    """``backend``: checked against the registry when a spec is validated, so a plugin backend is accepted."""

    def check(value: Any) -> Any:
        return _choice(backend_names()).func(value)

    return PlainValidator(check)


def _boolean() -> PlainValidator:
    def check(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise _fail(f"must be true or false (got {_show(value)})")

    return PlainValidator(check)


def _text(
    *,
    max_len: int | None = None,
    pattern: re.Pattern[str] | None = None,
    pattern_text: str = "",
    nullable: bool = False,
    what: str = "a non-empty string",
) -> PlainValidator:
    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value:
            raise _fail(f"must be {what} (got {_show(value)})")
        if value != value.strip():
            raise _fail(f"must not start or end with whitespace (got {_show(value)})")
        if max_len is not None and len(value) > max_len:
            raise _fail(f"must be at most {max_len} characters (got {len(value)})")
        if pattern is not None and not pattern.match(value):
            raise _fail(f"{pattern_text} (got {_show(value)})")
        return value

    return PlainValidator(check)


def _packing(value: Any) -> Any:
    if value is True or value is False or value == AUTO:
        return value
    if value in ("true", "false"):
        return value == "true"
    raise _fail(f'must be "auto", true or false (got {_show(value)})')


def _target_modules(value: Any) -> Any:
    if value == "all-linear":
        return value
    if isinstance(value, str):
        # A single module name is a common way to write a one-element list.
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise _fail(f'must be "all-linear" or a non-empty list of module names (got {_show(value)})')
    bad = [v for v in value if not isinstance(v, str) or not v.strip()]
    if bad:
        raise _fail(f"module names must be non-empty strings (got {_show(bad[0])})")
    dupes = sorted({v for v in value if list(value).count(v) > 1})
    if dupes:
        raise _fail(f"lists module {', '.join(dupes)} more than once")
    return list(value)


def _metadata_key(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(f"metadata keys must be non-empty strings (got {_show(value)})")
    if len(value) > METADATA_KEY_MAX:
        raise _fail(f"metadata keys must be at most {METADATA_KEY_MAX} characters (got {len(value)})")
    return value


def _metadata_value(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(f"metadata values must be strings; quote it (got {_show(value)})")
    if len(value) > METADATA_VALUE_MAX:
        raise _fail(f"metadata values must be at most {METADATA_VALUE_MAX} characters (got {len(value)})")
    return value


def _metadata_size(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is not None and len(value) > METADATA_MAX_PAIRS:
        raise _fail(f"at most {METADATA_MAX_PAIRS} key-value pairs (got {len(value)})")
    return value


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(f"must be a list of strings (got {_show(value)})")
    return value


Epochs = Annotated[int | Literal["auto"], _integer(1, 50, auto=True)]
BatchSize = Annotated[int | Literal["auto"], _integer(1, 256, auto=True)]
LRMultiplier = Annotated[float | Literal["auto"], _number(0, None, lo_open=True, auto=True)]
Beta = Annotated[float | Literal["auto"], _number(0, 2, lo_open=True, auto=True)]


class _Model(BaseModel):
    # Frozen: a spec is a value (it is hashed for provenance); forbid: unknown keys are errors.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _null_sections_are_defaults(cls, data: Any) -> Any:
        # "local:" with every line below it commented out is YAML null: read it as the default section.
        if isinstance(data, dict):
            empty = [
                k
                for k, v in data.items()
                if v is None and k in cls.model_fields and cls.model_fields[k].default_factory
            ]
            if empty:
                data = {k: v for k, v in data.items() if k not in empty}
        return data


# --------------------------------------------------------------------------------------------------------------
# OpenAI's part
# --------------------------------------------------------------------------------------------------------------


class SupervisedHyperparameters(_Model):
    """OpenAI's FineTuneSupervisedHyperparameters: each value an explicit number or "auto"."""

    n_epochs: Epochs = AUTO
    batch_size: BatchSize = AUTO
    learning_rate_multiplier: LRMultiplier = AUTO


class DPOHyperparameters(SupervisedHyperparameters):
    """OpenAI's FineTuneDPOHyperparameters: the supervised ones plus ``beta`` (0 < beta <= 2)."""

    beta: Beta = AUTO


class SupervisedMethod(_Model):
    hyperparameters: SupervisedHyperparameters = Field(default_factory=SupervisedHyperparameters)


class DPOMethod(_Model):
    hyperparameters: DPOHyperparameters = Field(default_factory=DPOHyperparameters)


class Method(_Model):
    """OpenAI's FineTuneMethod, limited to the two methods tuneport can run everywhere (supervised, dpo).

    In canonical form exactly the section named by ``type`` is present (filled with defaults when absent).
    """

    type: Annotated[Literal["supervised", "dpo"], _choice(METHOD_TYPES)] = "supervised"
    supervised: SupervisedMethod | None = None
    dpo: DPOMethod | None = None

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, data: Any) -> Any:
        canonical, _, problems = _normalize_method(data)
        if problems:
            loc, message = problems[0]
            raise _fail(f"{_dotted(loc)}: {message}")
        return canonical

    @model_serializer(mode="wrap")
    def _drop_inactive(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # OpenAI's shape has only the active section; "supervised: null" would be noise in dumps and hashes.
        data = handler(self)
        return {k: v for k, v in data.items() if k == "type" or k == self.type}

    @property
    def hyperparameters(self) -> SupervisedHyperparameters | DPOHyperparameters:
        """The active method's hyperparameters."""
        section = self.dpo if self.type == "dpo" else self.supervised
        assert section is not None  # guaranteed by _canonical
        return section.hyperparameters


class WandbIntegration(_Model):
    project: Annotated[str, _text()]
    name: Annotated[str | None, _text(nullable=True)] = None
    entity: Annotated[str | None, _text(nullable=True)] = None
    tags: Annotated[list[str], PlainValidator(_str_list)] = Field(default_factory=list)


class Integration(_Model):
    """OpenAI's job integrations (Weights and Biases). Passed to OpenAI as is; the local trainer ignores them."""

    type: Annotated[Literal["wandb"], _choice(["wandb"])]
    wandb: WandbIntegration


# --------------------------------------------------------------------------------------------------------------
# The local section
# --------------------------------------------------------------------------------------------------------------


class LocalSettings(_Model):
    """Settings only the local trainer reads (transformers + peft). OpenAI never sees them.

    Defaults follow common LoRA recipes: r=16, alpha=32 (alpha = 2r), dropout 0.05, every linear layer targeted.
    ``quantization`` defaults to "4bit" for qlora and "none" otherwise.
    """

    finetuning_type: Annotated[Literal["lora", "qlora", "full"], _choice(FINETUNING_TYPES)] = "lora"
    lora_r: Annotated[int, _integer(1, 1024)] = 16
    lora_alpha: Annotated[int, _integer(1, 4096)] = 32
    lora_dropout: Annotated[float, _number(0, 1, hi_open=True)] = 0.05
    target_modules: Annotated[Literal["all-linear"] | list[str], PlainValidator(_target_modules)] = (
        "all-linear"
    )
    use_dora: Annotated[bool, _boolean()] = False
    quantization: Annotated[Literal["none", "4bit", "8bit"], _choice(QUANTIZATIONS)] = "none"
    max_seq_length: Annotated[int, _integer(16, 262_144)] = 2048
    packing: Annotated[Literal["auto"] | bool, PlainValidator(_packing)] = AUTO
    learning_rate: Annotated[float | None, _number(0, 1, lo_open=True, nullable=True)] = None
    lr_scheduler: Annotated[str, _choice(LR_SCHEDULERS)] = "linear"
    warmup_ratio: Annotated[float, _number(0, 1, hi_open=True)] = 0.0
    weight_decay: Annotated[float, _number(0, 1)] = 0.0
    gradient_accumulation_steps: Annotated[int, _integer(1, 1024)] = 1
    gradient_checkpointing: Annotated[bool, _boolean()] = False
    num_processes: Annotated[int, _integer(1, 64)] = 1
    dtype: Annotated[Literal["auto", "float32", "bfloat16", "float16"], _choice(DTYPES)] = "auto"
    early_stopping_patience: Annotated[int | None, _integer(1, 100, nullable=True)] = None
    save_merged: Annotated[bool, _boolean()] = False
    save_steps: Annotated[int | None, _integer(1, 1_000_000, nullable=True)] = None
    output_dir: Annotated[str | None, _text(nullable=True)] = None
    device: Annotated[Literal["auto", "cpu", "cuda"], _choice(DEVICES)] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _default_quantization(cls, data: Any) -> Any:
        if isinstance(data, dict) and "quantization" not in data and data.get("finetuning_type") == "qlora":
            data = {**data, "quantization": "4bit"}
        return data


# --------------------------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------------------------


class JobSpec(_Model):
    """One fine-tuning job, for any backend. Load with :func:`load_spec` or :meth:`JobSpec.from_dict`.

    Relative ``training_file`` / ``validation_file`` / ``local.output_dir`` values stay as written (so the spec
    hash does not depend on where the file lives); :meth:`resolve_path` turns them into absolute paths against the
    spec file's folder.
    """

    model: Annotated[str, _text()]
    training_file: Annotated[str, _text()]
    validation_file: Annotated[str | None, _text(nullable=True)] = None
    method: Method = Field(default_factory=Method)
    suffix: Annotated[
        str | None,
        _text(
            max_len=SUFFIX_MAX,
            pattern=_SUFFIX,
            pattern_text="may contain only letters, digits, '.', '_' and '-'",
            nullable=True,
        ),
    ] = None
    seed: Annotated[int | None, _integer(0, SEED_MAX, nullable=True)] = None
    metadata: Annotated[
        dict[Annotated[str, PlainValidator(_metadata_key)], Annotated[str, PlainValidator(_metadata_value)]]
        | None,
        AfterValidator(_metadata_size),
    ] = None
    integrations: list[Integration] | None = None
    backend: Annotated[str, _backend_choice()] = "local"
    local: LocalSettings = Field(default_factory=LocalSettings)

    _base_dir: Path | None = PrivateAttr(default=None)
    _source: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        canonical, _, problems = _normalize(data)
        if problems:
            loc, message = problems[0]
            raise _fail(f"{_dotted(loc)}: {message}")
        return canonical

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> JobSpec:
        # from_dict/load_spec run these checks themselves, to report them with paths and line numbers.
        if not (info.context or {}).get("_tuneport_defer_checks"):
            problems = _semantic_problems(self)
            if problems:
                raise _fail("; ".join(f"{_dotted(p.loc)}: {p.message}" for p in problems))
        return self

    # ---- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        base_dir: str | Path | None = None,
        source: str | None = None,
        check_files: bool = False,
    ) -> JobSpec:
        """Validate a parsed spec (a dict from YAML, TOML or JSON).

        ``base_dir`` is where relative paths resolve (the spec file's folder); ``source`` names the file in error
        messages; ``check_files`` also reports local training/validation files that do not exist.
        Raises :class:`~tuneport.errors.SpecError` listing every problem found.
        """
        return _build(data, base_dir=base_dir, source=source, check_files=check_files, lines=None)

    def __eq__(self, other: object) -> bool:
        # Value equality: where the spec was loaded from (a private attribute) does not make it a different job.
        if not isinstance(other, JobSpec):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(spec_hash(self))

    # ---- views --------------------------------------------------------------------------------------------

    @property
    def hyperparameters(self) -> SupervisedHyperparameters | DPOHyperparameters:
        """The hyperparameters of the active method (``method.<type>.hyperparameters``)."""
        return self.method.hyperparameters

    @property
    def base_dir(self) -> Path:
        """Where relative paths in this spec resolve: the spec file's folder (else the working directory)."""
        return self._base_dir if self._base_dir is not None else Path.cwd()

    @property
    def source(self) -> str | None:
        """The file this spec was loaded from, if any."""
        return self._source

    def resolve_path(self, value: str) -> Path:
        """An absolute path for a path written in the spec (relative paths resolve against :attr:`base_dir`)."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def training_path(self) -> Path | None:
        """The training file as a local path, or None when ``training_file`` is an OpenAI file id."""
        return None if is_openai_file_id(self.training_file) else self.resolve_path(self.training_file)

    @property
    def validation_path(self) -> Path | None:
        """The validation file as a local path, or None when absent or an OpenAI file id."""
        if self.validation_file is None or is_openai_file_id(self.validation_file):
            return None
        return self.resolve_path(self.validation_file)

    def to_dict(self) -> dict[str, Any]:
        """The canonical form (every default filled in, shorthands expanded) as plain JSON types."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The canonical form as YAML, with unset optional fields left out (for writing spec files)."""
        import yaml

        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def spec_hash(self) -> str:
        """See :func:`spec_hash`."""
        return spec_hash(self)

    def for_backend(self, backend: str) -> JobSpec:
        """The same spec with ``backend`` replaced (what ``--backend`` on the command line does)."""
        names = backend_names()
        if backend not in names:
            raise SpecError(f'backend: must be one of {", ".join(names)} (got "{backend}")')
        return self.model_copy(update={"backend": backend})


def spec_hash(spec: JobSpec) -> str:
    """The sha256 (hex) of the spec's canonical JSON: sorted keys, no whitespace, defaults filled in.

    Stable across key order, shorthand vs canonical form and explicit vs implicit defaults, and independent of
    where the spec file lives (paths are hashed as written). Stored with every job for provenance.
    """
    canonical = json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Shorthand normalization
# --------------------------------------------------------------------------------------------------------------

Loc = tuple[str | int, ...]


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _normalize_method(raw: Any) -> tuple[Any, dict[Loc, Loc], list[tuple[Loc, str]]]:
    """Expand the method shorthands into OpenAI's shape.

    Returns the canonical value, aliases (canonical loc prefix -> the loc as written, for error messages and
    line numbers) and structural problems (which are removed from the returned value so that validation goes on).
    """
    aliases: dict[Loc, Loc] = {}
    problems: list[tuple[Loc, str]] = []
    if raw is None:
        return {"type": "supervised", "supervised": {}}, aliases, problems
    if isinstance(raw, str):
        if raw in METHOD_TYPES:
            aliases[("method", "type")] = ("method",)
            aliases[("method", raw)] = ("method",)
            return {"type": raw, raw: {}}, aliases, problems
        if raw == "reinforcement":
            problems.append((("method",), _RFT_UNSUPPORTED))
        else:
            problems.append((("method",), _method_type_message(raw)))
        return {"type": "supervised", "supervised": {}}, aliases, problems
    if not isinstance(raw, dict):
        return raw, aliases, problems  # pydantic reports "must be a mapping"
    method = dict(raw)
    kind = method.get("type")
    if kind is None:
        given = [k for k in (*METHOD_TYPES, "reinforcement") if k in method]
        kind = given[0] if len(given) == 1 else "supervised"
        method["type"] = kind
        aliases[("method", "type")] = ("method",)
    if kind == "reinforcement":
        problems.append((("method", "type"), _RFT_UNSUPPORTED))
        method.pop("reinforcement", None)
        method.pop("hyperparameters", None)
        method["type"] = "supervised"
        return method, aliases, problems
    if kind not in METHOD_TYPES:
        method.pop("hyperparameters", None)  # its home is unknown; the bad type is the error to report
        return method, aliases, problems
    if "hyperparameters" in method:
        hyper = method.pop("hyperparameters")
        section = method.get(kind)
        if isinstance(section, dict) and "hyperparameters" in section:
            problems.append(
                (
                    ("method", "hyperparameters"),
                    f"given twice: write either method.hyperparameters or method.{kind}.hyperparameters",
                )
            )
        else:
            method[kind] = {**(section if isinstance(section, dict) else {}), "hyperparameters": hyper}
            aliases[("method", kind, "hyperparameters")] = ("method", "hyperparameters")
    for other in (*METHOD_TYPES, "reinforcement"):
        if other != kind and other in method:
            problems.append(
                (
                    (("method", other)),
                    f'is set but method.type is "{kind}"; remove it or set method.type: {other}',
                )
            )
            method.pop(other)
    if method.get(kind) is None:
        method[kind] = {}
    return method, aliases, problems


_RFT_UNSUPPORTED = (
    "reinforcement fine-tuning is not supported by tuneport (it cannot run locally); use supervised or dpo"
)


def _method_type_message(value: Any) -> str:
    message = f"must be one of {', '.join(METHOD_TYPES)} (got {_show(value)})"
    if isinstance(value, str):
        close = difflib.get_close_matches(value.lower(), METHOD_TYPES, n=1, cutoff=0.5)
        if close:
            message += f'; did you mean "{close[0]}"?'
    return message


def _normalize(data: Any) -> tuple[Any, dict[Loc, Loc], list[tuple[Loc, str]]]:
    """Canonicalize a whole spec: OpenAI's deprecated top-level ``hyperparameters`` and the method shorthands."""
    aliases: dict[Loc, Loc] = {}
    problems: list[tuple[Loc, str]] = []
    if not isinstance(data, dict):
        return data, aliases, problems
    out = dict(data)
    if "hyperparameters" in out:
        hyper = out.pop("hyperparameters")
        if "method" in out and out["method"] is not None:
            problems.append(
                (
                    ("hyperparameters",),
                    "OpenAI's deprecated top-level hyperparameters cannot be combined with method; "
                    "move them to method.<type>.hyperparameters",
                )
            )
        else:
            out["method"] = {"type": "supervised", "supervised": {"hyperparameters": hyper}}
            aliases[("method", "supervised", "hyperparameters")] = ("hyperparameters",)
    if "method" in out:
        method, method_aliases, method_problems = _normalize_method(out["method"])
        out["method"] = method
        # aliases from the top-level form take precedence (they describe an outer rewrite)
        aliases = {**method_aliases, **aliases}
        problems.extend(method_problems)
    return out, aliases, problems


# --------------------------------------------------------------------------------------------------------------
# Cross-field checks (errors). Backend-dependent warnings live in tuneport.spec.mapping.check_spec.
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Semantic:
    loc: Loc
    message: str
    related: tuple[Loc, ...] = ()


def _semantic_problems(spec: JobSpec) -> list[_Semantic]:
    local = spec.local
    found: list[_Semantic] = []
    quantized = local.quantization != "none"
    if local.finetuning_type == "qlora" and local.quantization != "4bit":
        found.append(
            _Semantic(
                ("local", "quantization"),
                f'must be "4bit" for finetuning_type qlora (got "{local.quantization}"); '
                "for an 8-bit or unquantized base use finetuning_type: lora",
                (("local", "finetuning_type"),),
            )
        )
    if local.finetuning_type == "full" and quantized:
        found.append(
            _Semantic(
                ("local", "quantization"),
                f'"{local.quantization}" cannot be combined with finetuning_type full: quantized weights cannot '
                "be trained directly; use finetuning_type: qlora or lora, or quantization: none",
                (("local", "finetuning_type"),),
            )
        )
    if local.device == "cpu" and (local.finetuning_type == "qlora" or quantized):
        what = (
            "finetuning_type qlora"
            if local.finetuning_type == "qlora"
            else f"quantization {local.quantization}"
        )
        where = (
            ("local", "finetuning_type") if local.finetuning_type == "qlora" else ("local", "quantization")
        )
        found.append(
            _Semantic(
                where,
                f"{what} needs a CUDA GPU (bitsandbytes quantization); it is not available with device cpu. "
                "Use finetuning_type: lora with quantization: none on CPU, or device: cuda",
                (("local", "device"), ("local", "quantization"), ("local", "finetuning_type")),
            )
        )
    if local.device == "cpu" and local.dtype == "float16":
        found.append(
            _Semantic(
                ("local", "dtype"),
                "float16 training is not supported on CPU; use bfloat16 (fast on CPUs with AVX-512 bf16) or float32",
                (("local", "device"),),
            )
        )
    if local.use_dora and local.finetuning_type == "full":
        found.append(
            _Semantic(
                ("local", "use_dora"),
                "DoRA is a LoRA variant; it cannot be used with finetuning_type full",
                (("local", "finetuning_type"),),
            )
        )
    if local.early_stopping_patience is not None and spec.validation_file is None:
        found.append(
            _Semantic(
                ("local", "early_stopping_patience"),
                "needs a validation_file: early stopping watches the validation loss",
                (("validation_file",),),
            )
        )
    return found


# --------------------------------------------------------------------------------------------------------------
# Problems, line numbers and the SpecError
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a spec: where (file, line, dotted path) and what."""

    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or ""
        if self.file and self.line is not None:
            where = f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if where else f"{self.path}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class _Lines:
    """Maps a loc (tuple of keys / indexes) to a 1-based line in the source text."""

    def __init__(self, lookup: Callable[[Loc, bool], int | None]) -> None:
        self._lookup = lookup

    def line(self, loc: Loc, *, key: bool = False) -> int | None:
        return self._lookup(loc, key)


def _yaml_lines(root: Any) -> _Lines:
    import yaml

    def lookup(loc: Loc, key: bool) -> int | None:
        node = root
        line: int | None = None
        for depth, part in enumerate(loc):
            last = depth == len(loc) - 1
            if isinstance(node, yaml.MappingNode):
                match = None
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                        match = (k, v)
                if match is None:
                    return line
                k, v = match
                if last and key:
                    return k.start_mark.line + 1
                node = v
                # A block mapping or list value starts on the line after its key: point at the key.
                line = (
                    k.start_mark.line + 1
                    if isinstance(v, (yaml.MappingNode, yaml.SequenceNode))
                    else v.start_mark.line + 1
                )
            elif (
                isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value)
            ):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    return _Lines(lookup)


_TOML_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_TOML_ARRAY_HEADER = re.compile(r"^\s*\[\[")
_TOML_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _toml_key_parts(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def _toml_lines(text: str) -> _Lines:
    """Best-effort key -> line index for TOML (tables, dotted keys); tomllib reports no positions for values."""
    index: dict[Loc, int] = {}
    table: Loc | None = ()
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        if _TOML_ARRAY_HEADER.match(line):
            table = None  # arrays of tables: not used by specs; don't guess
            continue
        header = _TOML_HEADER.match(line)
        if header:
            table = tuple(_toml_key_parts(header.group(1)))
            index.setdefault(table, number)
            continue
        keyed = _TOML_KEY.match(line)
        if keyed and table is not None:
            full = table + tuple(_toml_key_parts(keyed.group(1)))
            for end in range(len(table) + 1, len(full) + 1):
                index.setdefault(full[:end], number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_multiline = quote

    def lookup(loc: Loc, key: bool) -> int | None:
        for end in range(len(loc), 0, -1):
            hit = index.get(tuple(str(p) for p in loc[:end]))
            if hit is not None:
                return hit
        return None

    return _Lines(lookup)


def _translate(loc: Loc, aliases: dict[Loc, Loc]) -> Loc:
    """A canonical loc as the user wrote it (undoing the shorthand expansion)."""
    for end in range(len(loc), 0, -1):
        source = aliases.get(loc[:end])
        if source is not None:
            return source + loc[end:]
    return loc


# ---- unknown keys -------------------------------------------------------------------------------------------


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
    return found


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] = JobSpec
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        inner = _models_in(info.annotation)
        if not inner:
            return None
        model = inner[0]
    return model


def _all_paths(model: type[BaseModel] = None, prefix: Loc = ()) -> list[Loc]:  # type: ignore[assignment]
    model = model or JobSpec
    out: list[Loc] = []
    for name, info in model.model_fields.items():
        out.append(prefix + (name,))
        for inner in _models_in(info.annotation):
            out.extend(_all_paths(inner, prefix + (name,)))
    return out


def _unknown_key_message(canonical: Loc, method_type: str | None) -> str:
    parent, key = canonical[:-1], str(canonical[-1])
    if key == "beta" and parent[:2] == ("method", "supervised"):
        return 'unknown key "beta": beta applies only to DPO; set method.type: dpo to use it'
    model = _model_at(parent)
    valid = list(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f'unknown key "{key}"; did you mean "{close[0]}"?'

    # The right key in the wrong section (e.g. learning_rate at the top level, n_epochs under method)?
    def reachable(p: Loc) -> bool:
        return not (
            p[0] == "method" and len(p) > 1 and p[1] in METHOD_TYPES and p[1] != (method_type or "supervised")
        )

    exact = [p for p in _all_paths() if str(p[-1]) == key and p[:-1] != parent and reachable(p)]
    near = [p for p in _all_paths() if _closest(key, [str(p[-1])]) and p[:-1] != parent and reachable(p)]
    if exact or near:
        return f'unknown key "{key}" here; did you mean {_dotted((exact or near)[0])}?'
    listing = ", ".join(valid) if valid else "none"
    return f'unknown key "{key}"; valid keys here: {listing}'


def _closest(key: str, options: list[str]) -> str | None:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.85)
    return close[0] if close else None


# ---- building -----------------------------------------------------------------------------------------------


_PLACEHOLDERS = {("model",): "<missing>", ("training_file",): "<missing>"}


def _collect(exc: ValidationError, aliases: dict[Loc, Loc], data: Any) -> list[tuple[Loc, Loc, str, bool]]:
    """(canonical loc, loc as written, message, is_key) for each pydantic error."""
    method_type = None
    if isinstance(data, dict) and isinstance(data.get("method"), dict):
        method_type = data["method"].get("type")
    out = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        is_key = False
        if loc and loc[-1] == "[key]":
            loc, is_key = loc[:-1], True
        if kind == "extra_forbidden":
            message, is_key = _unknown_key_message(loc, method_type), True
        elif kind == "missing":
            message = "is required"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = f"must be a mapping (got {_show(err.get('input'))})"
        elif kind == "list_type":
            message = f"must be a list (got {_show(err.get('input'))})"
        elif kind == "tuneport":
            message = err["ctx"]["msg"]
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        out.append((loc, _translate(loc, aliases), message, is_key))
    return out


def _prune(data: dict[str, Any], locs: list[Loc]) -> dict[str, Any]:
    """A copy of ``data`` without the values at ``locs`` (so the rest can still be checked across fields)."""
    data = json.loads(json.dumps(data, default=str))
    for loc in locs:
        if not loc:
            continue
        if loc in _PLACEHOLDERS:
            data[str(loc[0])] = _PLACEHOLDERS[loc]
            continue
        node: Any = data
        for part in loc[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        if isinstance(node, dict):
            node.pop(str(loc[-1]), None)
        elif isinstance(node, list) and isinstance(loc[-1], int) and loc[-1] < len(node):
            # the offending list item: drop the whole list, its default is a valid value
            parent: Any = data
            for part in loc[:-2]:
                parent = parent[part]
            if isinstance(parent, dict):
                parent.pop(str(loc[-2]), None)
    return data


def _build(
    data: Any,
    *,
    base_dir: str | Path | None,
    source: str | None,
    check_files: bool,
    lines: _Lines | None,
    early: list[SpecProblem] | None = None,
) -> JobSpec:
    problems: list[SpecProblem] = list(early or [])

    def add(written: Loc, message: str, *, key: bool = False) -> None:
        line = lines.line(written, key=key) if lines is not None else None
        if line is None and lines is not None and not written:
            line = 1
        problems.append(SpecProblem(_dotted(written), message, source, line))

    if data is None:
        add((), "the spec is empty; it needs at least model and training_file")
        raise _spec_error(problems, source)
    if not isinstance(data, dict):
        add((), f"the spec must be a mapping of keys to values (got {_show(data)})")
        raise _spec_error(problems, source)
    non_str = [k for k in data if not isinstance(k, str)]
    if non_str:
        for k in non_str:
            add((), f"keys must be strings (got {_show(k)})")
        data = {k: v for k, v in data.items() if isinstance(k, str)}

    canonical, aliases, shorthand_problems = _normalize(data)
    for loc, message in shorthand_problems:
        add(loc, message, key=loc[-1] in ("hyperparameters", "dpo", "supervised", "reinforcement"))

    context = {"_tuneport_defer_checks": True}
    spec: JobSpec | None = None
    bad_locs: list[Loc] = []
    attempt = canonical
    for round_ in range(4):
        try:
            spec = JobSpec.model_validate(attempt, context=context)
            break
        except ValidationError as exc:
            collected = _collect(exc, aliases, attempt)
            if round_ == 0:
                for _, written, message, is_key in collected:
                    add(written, message, key=is_key)
            new = [loc for loc, *_ in collected]
            bad_locs.extend(new)
            # Re-validate without the bad values so that cross-field problems among the good ones are found too.
            attempt = _prune(attempt, new)
    if spec is not None:
        bad = {loc for loc in bad_locs}

        def touches(loc: Loc) -> bool:
            return any(loc[: len(b)] == b or b[: len(loc)] == loc for b in bad)

        for semantic in _semantic_problems(spec):
            if touches(semantic.loc) or any(touches(r) for r in semantic.related):
                continue  # its inputs were invalid (replaced by defaults): not a real finding
            add(_translate(semantic.loc, aliases), semantic.message)
        spec._base_dir = Path(base_dir).resolve() if base_dir is not None else None
        spec._source = source
        if check_files and not bad_locs:
            for name in ("training_file", "validation_file"):
                value = getattr(spec, name)
                if value is None or is_openai_file_id(value):
                    continue
                path = spec.resolve_path(value)
                if not path.exists():
                    add((name,), f"file not found: {path}")
                elif not path.is_file():
                    add((name,), f"is not a file: {path}")
    if problems:
        problems.sort(key=lambda p: p.line if p.line is not None else 10**9)
        raise _spec_error(problems, source)
    assert spec is not None
    return spec


def _spec_error(problems: list[SpecProblem], source: str | None) -> SpecError:
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    head = f"invalid job spec {source} ({count}):" if source else f"invalid job spec ({count}):"
    error = SpecError(head + "\n" + "\n".join(f"  {p}" for p in problems))
    error.findings = problems  # type: ignore[attr-defined]  # the CLI prints them under --json
    error.problems = problems  # type: ignore[attr-defined]
    return error


# --------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _yaml_loader() -> type:
    """A SafeLoader that reads ``2e-4`` as a float (YAML 1.1, PyYAML's default, reads it as a string)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return Loader


def _duplicate_keys(root: Any, path: Loc = ()) -> list[tuple[Loc, int, int]]:
    """(loc, line, first line) for each key given twice in a YAML mapping (PyYAML silently keeps the last)."""
    import yaml

    found: list[tuple[Loc, int, int]] = []
    if isinstance(root, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in root.value:
            if isinstance(k, yaml.ScalarNode):
                if k.value in seen:
                    found.append((path + (k.value,), k.start_mark.line + 1, seen[k.value]))
                else:
                    seen[k.value] = k.start_mark.line + 1
                found.extend(_duplicate_keys(v, path + (k.value,)))
    elif isinstance(root, yaml.SequenceNode):
        for i, item in enumerate(root.value):
            found.extend(_duplicate_keys(item, path + (i,)))
    return found


def _parse_yaml(text: str, source: str) -> tuple[Any, _Lines, list[SpecProblem]]:
    import yaml

    loader = _yaml_loader()(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise _spec_error(
            [SpecProblem("(top level)", f"not valid YAML: {what}", source, line)], source
        ) from None
    except yaml.YAMLError as exc:
        raise _spec_error([SpecProblem("(top level)", f"not valid YAML: {exc}", source)], source) from None
    finally:
        loader.dispose()
    problems = [
        SpecProblem(
            _dotted(loc),
            f"duplicate key (first given on line {first}); YAML would keep only the last",
            source,
            line,
        )
        for loc, line, first in (_duplicate_keys(node) if node is not None else [])
    ]
    return data, _yaml_lines(node), problems


def _parse_toml(text: str, source: str) -> tuple[Any, _Lines]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise _spec_error(
            [SpecProblem("(top level)", f"not valid TOML: {exc}", source, line)], source
        ) from None
    return data, _toml_lines(text)


def _parse_json(text: str, source: str) -> tuple[Any, _Lines | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = SpecProblem("(top level)", f"not valid JSON: {exc.msg}", source, exc.lineno)
        raise _spec_error([problem], source) from None
    # JSON is YAML apart from tabs between tokens; YAML's node marks give the line numbers.
    try:
        import yaml

        node = yaml.compose(text.replace("\t", " "), Loader=yaml.SafeLoader)
    except Exception:  # line numbers are a nicety; the data is already parsed
        return data, None
    return data, _yaml_lines(node)


def load_spec(path: str | Path, *, check_files: bool = True) -> JobSpec:
    """Load and validate a job spec from a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON (``.json``) file.

    Relative paths inside resolve against the spec file's folder. With ``check_files`` (the default), local
    training/validation files must exist. Raises :class:`~tuneport.errors.SpecError` listing every problem as
    ``file:line: path: message``.
    """
    file = Path(path)
    source = str(path)
    if not file.exists():
        raise SpecError(
            f"{source}: spec file not found", hint="Check the path; specs are YAML or TOML files."
        )
    if file.is_dir():
        raise SpecError(f"{source}: is a folder, not a spec file")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SpecError(f"{source}: cannot be read ({exc.strerror})") from None
    early: list[SpecProblem] = []
    if file.suffix.lower() == ".toml":
        data, lines = _parse_toml(text, source)
    elif file.suffix.lower() == ".json":
        data, lines = _parse_json(text, source)
    else:
        data, lines, early = _parse_yaml(text, source)
    return _build(
        data, base_dir=file.parent, source=source, check_files=check_files, lines=lines, early=early
    )
