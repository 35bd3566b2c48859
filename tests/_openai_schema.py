"""Validate request and response bodies against OpenAI's published schema, carried in the repository.

The schema (OpenAI's MIT-licensed OpenAPI description, fine-tuning subset) lives in ``tests/contracts/openai``
with its licence and where it came from, so the contract checks need nothing outside the repository.

The document says ``openapi: 3.1.0`` but still uses OpenAPI 3.0 idioms that JSON Schema 2020-12 reads differently:
``nullable: true`` (3.0's "may be null") and boolean ``exclusiveMinimum: true`` next to ``minimum`` (2020-12 wants
the bound itself; a boolean would be compared as the number 1 and reject 0.5). :func:`_convert` rewrites both, once.

``live=True`` applies the documented differences between the schema and the live service (README there): a job's
status may also be ``"paused"``. Nothing else is relaxed.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent / "contracts" / "openai" / "openapi-finetuning.json"
_URI = "urn:openai-finetuning"


def _convert(node: Any) -> Any:
    """OpenAPI 3.0-isms -> JSON Schema 2020-12, recursively."""
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _convert(value) for key, value in node.items()}
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(node.get(exclusive), bool) and node.pop(exclusive) and bound in node:
            node[exclusive] = node.pop(bound)
    if node.get("nullable") is True:
        node.pop("nullable")
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        else:  # $ref / allOf / anyOf: "this, or null"
            node = {"anyOf": [node, {"type": "null"}]}
    if "allOf" in node:
        # {"allOf": [{$ref}, {"nullable": true, ...}]} means "the ref, or null" (Upload.file).
        parts = node["allOf"]
        nullable = [
            p for p in parts if isinstance(p, dict) and set(p) == {"anyOf"} and {"type": "null"} in p["anyOf"]
        ]
        if nullable:
            rest = [p["anyOf"][0] if p in nullable else p for p in parts]
            node = {
                **{k: v for k, v in node.items() if k != "allOf"},
                "anyOf": [{"allOf": rest}, {"type": "null"}],
            }
    return node


@lru_cache(maxsize=2)
def _document(live: bool) -> dict[str, Any]:
    doc = _convert(json.loads(SPEC_PATH.read_text("utf-8")))
    if live:
        doc = copy.deepcopy(doc)
        status = doc["components"]["schemas"]["FineTuningJob"]["properties"]["status"]
        status["enum"] = [*status["enum"], "paused"]
    return doc


@lru_cache(maxsize=2)
def _registry(live: bool) -> Registry:
    return Registry().with_resource(
        _URI, Resource.from_contents(_document(live), default_specification=DRAFT202012)
    )


def _validate(instance: Any, pointer: str, live: bool) -> None:
    schema = {"$ref": f"{_URI}#{pointer}"}
    validator = jsonschema.Draft202012Validator(schema, registry=_registry(live))
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [
            f"  at {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errors[:10]
        ]
        raise AssertionError(f"body does not match {pointer}:\n" + "\n".join(lines))


def _escape(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


def validate_component(instance: Any, name: str, *, live: bool = False) -> None:
    """Assert ``instance`` matches ``#/components/schemas/<name>``."""
    _validate(instance, f"/components/schemas/{name}", live)


def request_schema_pointer(path: str, method: str) -> tuple[str, str]:
    """(content type, pointer) of an operation's request body schema."""
    content = _document(False)["paths"][path][method.lower()]["requestBody"]["content"]
    (content_type,) = content
    return (
        content_type,
        f"/paths/{_escape(path)}/{method.lower()}/requestBody/content/{_escape(content_type)}/schema",
    )


def validate_request(instance: Any, path: str, method: str) -> None:
    """Assert ``instance`` (a JSON body, or a multipart form as a dict) matches the operation's request body."""
    _, pointer = request_schema_pointer(path, method)
    _validate(instance, pointer, False)


def validate_response(
    instance: Any, path: str, method: str, status: str = "200", *, live: bool = True
) -> None:
    """Assert ``instance`` matches the operation's JSON response for ``status``."""
    pointer = f"/paths/{_escape(path)}/{method.lower()}/responses/{status}/content/application~1json/schema"
    _validate(instance, pointer, live)


def validate_error(instance: Any) -> None:
    """Assert ``instance`` is OpenAI's error body."""
    validate_component(instance, "ErrorResponse")


def validate_query(params: dict[str, str], path: str, method: str) -> None:
    """Assert every query parameter is one the operation declares, with a value its schema accepts.

    ``metadata[key]=value`` (``style: deepObject``) is checked as the object ``{key: value}``.
    """
    op = _document(False)["paths"][path][method.lower()]
    declared = {p["name"]: (i, p) for i, p in enumerate(op.get("parameters", [])) if p["in"] == "query"}

    def check(name: str, value: Any) -> None:
        index, _ = declared[name]
        _validate(value, f"/paths/{_escape(path)}/{method.lower()}/parameters/{index}/schema", False)

    objects: dict[str, dict[str, str]] = {}
    for name, value in params.items():
        if "[" in name and name.endswith("]"):
            base, key = name[:-1].split("[", 1)
            assert base in declared and declared[base][1].get("style") == "deepObject", (
                f"undeclared query parameter {name!r} for {method} {path}"
            )
            objects.setdefault(base, {})[key] = value
            continue
        assert name in declared, f"undeclared query parameter {name!r} for {method} {path}"
        schema = declared[name][1]["schema"]
        typed: Any = value
        if schema.get("type") == "integer":
            assert value.lstrip("-").isdigit(), f"{name}={value!r} is not an integer"
            typed = int(value)
        check(name, typed)
    for base, obj in objects.items():
        check(base, obj)
