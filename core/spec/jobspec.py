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

This module holds the top level (:class:`JobSpec`, :func:`load_spec`, :func:`spec_hash`); the sections are in
:mod:`tuneport.spec.sections`, value rules in :mod:`tuneport.spec.fields`, shorthands in
:mod:`tuneport.spec.shorthands`, cross-field checks in :mod:`tuneport.spec.checks`, problem collection in
:mod:`tuneport.spec.build` and safe file parsing in :mod:`tuneport.spec.parsing`. The format reference is
``docs/spec.md``; the mapping to each backend is :mod:`tuneport.spec.mapping`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainValidator, PrivateAttr, ValidationInfo, model_validator

from tuneport.cost.retirements import warn_if_retiring
from tuneport.errors import SpecError
from tuneport.providers.registry import provider_names
from tuneport.spec.build import DEFER_CHECKS, build_spec
from tuneport.spec.checks import semantic_problems
from tuneport.spec.fields import (
    DTYPES,
    LR_SCHEDULERS,
    METHOD_TYPES,
    SEED_MAX,
    SUFFIX_MAX,
    SUFFIX_PATTERN,
    choice,
    fail,
    integer,
    is_openai_file_id,
    metadata_key,
    metadata_size,
    metadata_value,
    text,
)
from tuneport.spec.parsing import parse_json, parse_toml, parse_yaml
from tuneport.spec.problems import SpecProblem, dotted
from tuneport.spec.sections import (
    DPOHyperparameters,
    DPOMethod,
    Integration,
    LocalSettings,
    Method,
    SpecModel,
    SupervisedHyperparameters,
    SupervisedMethod,
    WandbIntegration,
)
from tuneport.spec.shorthands import normalize

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
    "SEED_MAX",
    "DTYPES",
    "LR_SCHEDULERS",
]


def backend_names() -> tuple[str, ...]:
    """The backends a spec may name: exactly those the provider registry knows (built-in and plugins)."""
    return tuple(provider_names())


def _backend_choice() -> PlainValidator:
    """``backend``: checked against the registry when a spec is validated, so a plugin backend is accepted."""

    def check(value: Any) -> Any:
        return choice(backend_names()).func(value)

    return PlainValidator(check)


class JobSpec(SpecModel):
    """One fine-tuning job, for any backend. Load with :func:`load_spec` or :meth:`JobSpec.from_dict`.

    Relative ``training_file`` / ``validation_file`` / ``local.output_dir`` values stay as written (so the spec
    hash does not depend on where the file lives); :meth:`resolve_path` turns them into absolute paths against the
    spec file's folder.
    """

    model: Annotated[str, text()]
    training_file: Annotated[str, text()]
    validation_file: Annotated[str | None, text(nullable=True)] = None
    method: Method = Field(default_factory=Method)
    suffix: Annotated[
        str | None,
        text(
            max_len=SUFFIX_MAX,
            pattern=SUFFIX_PATTERN,
            pattern_text="may contain only letters, digits, '.', '_' and '-'",
            nullable=True,
        ),
    ] = None
    seed: Annotated[int | None, integer(0, SEED_MAX, nullable=True)] = None
    metadata: Annotated[
        dict[Annotated[str, PlainValidator(metadata_key)], Annotated[str, PlainValidator(metadata_value)]]
        | None,
        AfterValidator(metadata_size),
    ] = None
    integrations: list[Integration] | None = None
    backend: Annotated[str, _backend_choice()] = "local"
    local: LocalSettings = Field(default_factory=LocalSettings)

    _base_dir: Path | None = PrivateAttr(default=None)
    _source: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        canonical, _, problems = normalize(data)
        if problems:
            loc, message = problems[0]
            raise fail(f"{dotted(loc)}: {message}")
        return canonical

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> JobSpec:
        # from_dict/load_spec run these checks themselves, to report them with paths and line numbers.
        if not (info.context or {}).get(DEFER_CHECKS):
            problems = semantic_problems(self.local, method=self.method, validation_file=self.validation_file)
            if problems:
                raise fail("; ".join(f"{dotted(p.loc)}: {p.message}" for p in problems))
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
        return build_spec(cls, data, base_dir=base_dir, source=source, check_files=check_files, lines=None)

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
        spec = self.model_copy(update={"backend": backend})
        warn_if_retiring(spec.model, spec.backend)  # a hosted model near its deadline: said once per process
        return spec


def spec_hash(spec: JobSpec) -> str:
    """The sha256 (hex) of the spec's canonical JSON: sorted keys, no whitespace, defaults filled in.

    Stable across key order, shorthand vs canonical form and explicit vs implicit defaults, and independent of
    where the spec file lives (paths are hashed as written). Stored with every job for provenance.
    """
    canonical = json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_spec(path: str | Path, *, check_files: bool = True) -> JobSpec:
    """Load and validate a job spec from a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON (``.json``) file.

    Relative paths inside resolve against the spec file's folder. With ``check_files`` (the default), local
    training/validation files must exist. Raises :class:`~tuneport.errors.SpecError` listing every problem as
    ``file:line: path: message``; a file nested too deeply or whose YAML aliases expand too far is one of them.
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
        content = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SpecError(f"{source}: cannot be read ({exc.strerror})") from None
    early: list[SpecProblem] = []
    if file.suffix.lower() == ".toml":
        data, lines = parse_toml(content, source)
    elif file.suffix.lower() == ".json":
        data, lines = parse_json(content, source)
    else:
        data, lines, early = parse_yaml(content, source)
    spec = build_spec(
        JobSpec, data, base_dir=file.parent, source=source, check_files=check_files, lines=lines, early=early
    )
    warn_if_retiring(spec.model, spec.backend)  # a hosted model near its deadline: said once per process
    return spec
