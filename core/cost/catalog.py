"""The model and price catalog: shipped as data, every number with its ``source`` and ``as_of`` date.

A user file overrides or extends it: ``$TUNEPORT_HOME/catalog.json`` (or the path in ``TUNEPORT_CATALOG``), with the
same shape; models are matched by ``id`` and replace the shipped entry whole. Prices are :class:`~decimal.Decimal`.

Hardware prices (``resources/gpu_prices.json``): on-demand list $/hour ranges per accelerator and cloud, for the
self-hosted side of a cost comparison. The user file's ``hardware`` key overrides them per accelerator and cloud
(``{"hardware": {"h100": {"prices": {"aws": {"min": "...", "max": "...", "source": "...", "as_of": "..."}}}}}``),
or adds new accelerators (which then also need a ``label``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from tuneport.cost.money import HOURLY_USD, PRICE_PER_1M_USD, Range, jsonable
from tuneport.errors import SpecError

__all__ = [
    "ModelInfo",
    "lookup_model",
    "base_model_of",
    "list_models",
    "wind_down",
    "HardwareInfo",
    "HourlyPrice",
    "list_hardware",
    "lookup_hardware",
    "catalog_summary",
    "LIST_PRICE_NOTE",
    "provider_catalog",
]

LIST_PRICE_NOTE = "on-demand list prices at their as_of date, not quotes"

# Encodings of model families, for models the catalog does not list (e.g. a newer snapshot).
_FAMILY_ENCODINGS = [
    (re.compile(r"^(gpt-4\.1|gpt-4o|gpt-4\.5|gpt-5|o\d|chatgpt-4o)"), "o200k_base"),
    (re.compile(r"^(gpt-4|gpt-3\.5|text-embedding-3|text-embedding-ada-002)"), "cl100k_base"),
    (re.compile(r"^(davinci-002|babbage-002)"), "cl100k_base"),
]


@dataclass(frozen=True)
class ModelInfo:
    """What tuneport knows about one fine-tunable model."""

    id: str
    encoding: str
    methods: tuple[str, ...]
    max_example_tokens: int
    training_per_1m: dict[str, Decimal]
    inference_per_1m: dict[str, Decimal]
    source: str
    as_of: str
    aliases: tuple[str, ...] = field(default=())
    #: the base model's own per-token prices (a base endpoint is not billed at fine-tuned rates); {} if unknown
    base_inference_per_1m: dict[str, Decimal] = field(default_factory=dict)
    base_price_source: str = ""


def _user_catalog_path() -> Path | None:
    env = os.environ.get("TUNEPORT_CATALOG")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("TUNEPORT_HOME")
    if home:
        candidate = Path(home).expanduser() / "catalog.json"
        if candidate.exists():
            return candidate
    return None


def _price_out_of_range(value: Decimal, accepted: Range) -> bool:
    return not (value.is_finite() and accepted.low <= value <= accepted.high)


def _prices_per_1m(entry: dict[str, Any], key: str, origin: str) -> dict[str, Decimal]:
    prices = {k: Decimal(str(v)) for k, v in entry.get(key, {}).items()}
    for kind, value in prices.items():
        if _price_out_of_range(value, PRICE_PER_1M_USD):
            raise SpecError(
                f"{origin}: catalog entry {entry.get('id', '?')!r}: {key}.{kind} must be "
                f"{PRICE_PER_1M_USD.describe()}, not {value}",
                hint='Prices are decimal strings in USD per 1M tokens, e.g. "3.00".',
            )
    return prices


def _parse_model(entry: dict[str, Any], origin: str) -> ModelInfo:
    try:
        return ModelInfo(
            id=entry["id"],
            encoding=entry["encoding"],
            methods=tuple(entry.get("methods", ["supervised"])),
            max_example_tokens=int(entry["max_example_tokens"]),
            training_per_1m=_prices_per_1m(entry, "training_per_1m", origin),
            inference_per_1m=_prices_per_1m(entry, "inference_per_1m", origin),
            source=entry["source"],
            as_of=entry["as_of"],
            aliases=tuple(entry.get("aliases", ())),
            base_inference_per_1m=_prices_per_1m(entry, "base_inference_per_1m", origin),
            base_price_source=str(entry.get("base_price_source") or entry["source"]),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise SpecError(
            f"{origin}: catalog entry {entry.get('id', '?')!r} is malformed ({exc!r})",
            hint="Every model needs id, encoding, max_example_tokens, source and as_of; prices are decimal strings.",
        ) from None


@lru_cache(maxsize=4)
def _load(user_path: str | None) -> tuple[dict[str, ModelInfo], dict[str, Any]]:
    shipped = json.loads(
        resources.files("tuneport").joinpath("resources/openai_models.json").read_text("utf-8")
    )
    models = {m["id"]: _parse_model(m, "shipped catalog") for m in shipped["models"]}
    wind = dict(shipped.get("wind_down", {}))
    wind["retirements"] = dict(shipped.get("retirements", {}))
    if user_path:
        try:
            user = json.loads(Path(user_path).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise SpecError(
                f"{user_path}: cannot read the user catalog ({exc})", hint="Fix or remove the file."
            ) from None
        for m in user.get("models", []):
            models[m["id"]] = _parse_model(m, user_path)
        wind.update(user.get("wind_down", {}))
    return models, wind


def _catalog() -> tuple[dict[str, ModelInfo], dict[str, Any]]:
    path = _user_catalog_path()
    return _load(str(path) if path else None)


def base_model_of(model: str) -> str:
    """The base model of a fine-tuned id: ``ft:gpt-4.1-mini-2025-04-14:org::abc`` -> ``gpt-4.1-mini-2025-04-14``.

    Checkpoint ids (``ft:...:ckpt-step-10``) resolve the same way. Other ids are returned unchanged.
    """
    if model.startswith("ft:"):
        parts = model.split(":")
        if len(parts) > 1 and parts[1]:
            return parts[1]
    return model


def lookup_model(model: str) -> ModelInfo | None:
    """Catalog entry for a model id, alias, dated snapshot or ``ft:`` id; None when unknown."""
    models, _ = _catalog()
    base = base_model_of(model)
    if base in models:
        return models[base]
    for info in models.values():
        if base in info.aliases:
            return info
    return None


def encoding_for(model: str) -> str | None:
    """The tiktoken encoding name for a model (resolving ``ft:`` ids to their base first), or None if unknown."""
    info = lookup_model(model)
    if info is not None:
        return info.encoding
    base = base_model_of(model)
    for pattern, encoding in _FAMILY_ENCODINGS:
        if pattern.match(base):
            return encoding
    return None


def list_models() -> list[ModelInfo]:
    """Every catalog model, shipped and user-supplied."""
    return list(_catalog()[0].values())


def wind_down() -> dict[str, Any]:
    """The fine-tuning wind-down facts (dates, note, source, as_of)."""
    return dict(_catalog()[1])


# ------------------------------------------------------------------------------------------------ hardware prices


@dataclass(frozen=True)
class HourlyPrice:
    """One cloud's on-demand list price range for one accelerator, in USD per accelerator-hour."""

    hardware: str
    cloud: str
    min: Decimal
    max: Decimal
    source: str
    as_of: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"hardware": self.hardware, "cloud": self.cloud, "min": str(self.min), "max": str(self.max),
                "source": self.source, "as_of": self.as_of, "note": self.note}  # fmt: skip


@dataclass(frozen=True)
class HardwareInfo:
    """An accelerator (or a CPU VM) and its price range at each cloud that lists it."""

    id: str
    label: str
    memory_gb: int | None
    prices: dict[str, HourlyPrice]
    aliases: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "memory_gb": self.memory_gb, "aliases": list(self.aliases),
                "prices": {cloud: p.to_dict() for cloud, p in self.prices.items()}}  # fmt: skip


def _parse_price(hardware: str, cloud: str, entry: Any, origin: str) -> HourlyPrice:
    where = f"{origin}: hardware.{hardware}.prices.{cloud}"
    if not isinstance(entry, dict):
        raise SpecError(f"{where} must be an object with min, max, source and as_of", hint=_HW_HINT)
    missing = [k for k in ("min", "max", "source", "as_of") if not entry.get(k)]
    if missing:
        raise SpecError(f"{where} is missing {', '.join(missing)}", hint=_HW_HINT)
    try:
        low, high = Decimal(str(entry["min"])), Decimal(str(entry["max"]))
    except ArithmeticError:
        raise SpecError(f"{where}: min/max must be decimal numbers, not {entry['min']!r}/{entry['max']!r}",
                        hint=_HW_HINT) from None  # fmt: skip
    if not (low.is_finite() and high.is_finite()) or low < 0 or low > high:
        raise SpecError(f"{where}: need 0 <= min <= max, got min={low} max={high}", hint=_HW_HINT)
    if high > HOURLY_USD.high:
        raise SpecError(
            f"{where}: max must be at most {HOURLY_USD.high:,f} USD per hour, not {high}", hint=_HW_HINT
        )
    return HourlyPrice(hardware, cloud, low, high, str(entry["source"]), str(entry["as_of"]),
                       str(entry.get("note", "")))  # fmt: skip


_HW_HINT = (
    'Each price is {"min": "2.49", "max": "3.29", "source": "<url>", "as_of": "YYYY-MM-DD"} in USD per '
    "accelerator-hour, with min <= max."
)


def _merge_hardware(into: dict[str, HardwareInfo], raw: Any, origin: str) -> None:
    if not isinstance(raw, dict):
        raise SpecError(f"{origin}: `hardware` must be an object keyed by accelerator id", hint=_HW_HINT)
    for hw_id, entry in raw.items():
        if not isinstance(entry, dict):
            raise SpecError(f"{origin}: hardware.{hw_id} must be an object", hint=_HW_HINT)
        old = into.get(hw_id)
        if old is None and not entry.get("label"):
            raise SpecError(f"{origin}: new hardware {hw_id!r} needs a label", hint=_HW_HINT)
        prices = dict(old.prices) if old else {}
        raw_prices = entry.get("prices", {})
        if not isinstance(raw_prices, dict):
            raise SpecError(
                f"{origin}: hardware.{hw_id}.prices must be an object keyed by cloud", hint=_HW_HINT
            )
        for cloud, price in raw_prices.items():
            prices[cloud] = _parse_price(hw_id, cloud, price, origin)
        memory = entry.get("memory_gb", old.memory_gb if old else None)
        into[hw_id] = HardwareInfo(
            id=hw_id,
            label=str(entry.get("label") or old.label),  # type: ignore[union-attr]
            memory_gb=int(memory) if memory is not None else None,
            prices=prices,
            aliases=tuple(entry.get("aliases", old.aliases if old else ())),
        )


@lru_cache(maxsize=4)
def _load_hardware(user_path: str | None, _mtime: int | None) -> dict[str, HardwareInfo]:
    shipped = json.loads(resources.files("tuneport").joinpath("resources/gpu_prices.json").read_text("utf-8"))
    hardware: dict[str, HardwareInfo] = {}
    _merge_hardware(hardware, shipped["hardware"], "shipped hardware prices")
    if user_path:
        try:
            user = json.loads(Path(user_path).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise SpecError(
                f"{user_path}: cannot read the user catalog ({exc})", hint="Fix or remove the file."
            ) from None
        if "hardware" in user:
            _merge_hardware(hardware, user["hardware"], user_path)
    return hardware


def _hardware() -> dict[str, HardwareInfo]:
    path = _user_catalog_path()
    mtime = None
    if path is not None:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = None
    return _load_hardware(str(path) if path else None, mtime)


def list_hardware() -> list[HardwareInfo]:
    """Every accelerator with list prices (shipped, plus the user file's)."""
    return list(_hardware().values())


def lookup_hardware(name: str) -> HardwareInfo | None:
    """Hardware by id or alias, case-insensitive (``h100``, ``A100-80GB``, ``a100`` = the 40GB one); None if unknown."""
    key = name.strip().lower()
    hardware = _hardware()
    if key in hardware:
        return hardware[key]
    for info in hardware.values():
        if key in (a.lower() for a in info.aliases):
            return info
    return None


def catalog_summary() -> dict[str, Any]:
    """Every price tuneport uses, with its source and as_of date (what ``tuneport cost catalog`` prints)."""
    models = [
        {"id": m.id, "aliases": list(m.aliases), "methods": list(m.methods),
         "training_per_1m_usd": jsonable(m.training_per_1m), "inference_per_1m_usd": jsonable(m.inference_per_1m),
         "base_inference_per_1m_usd": jsonable(m.base_inference_per_1m),
         "source": m.source, "as_of": m.as_of}
        for m in list_models()
    ]  # fmt: skip
    return {
        "models": models,
        "wind_down": wind_down(),
        "hardware": [h.to_dict() for h in list_hardware()],
        "hardware_note": "USD per accelerator-hour, " + LIST_PRICE_NOTE,
    }


def provider_catalog(name: str) -> dict[str, Any]:
    """A hosted backend's own catalog (``resources/{name}_models.json``: its price tiers and models), with the user
    catalog's ``name`` key laid over it: ``training_tiers`` replace the shipped ones whole, ``models`` by ``id``.

    Backends that price by model size (Together) do not fit :class:`ModelInfo`, so each reads its own file here."""
    path = _user_catalog_path()
    return _load_provider_catalog(name, str(path) if path else None)


@lru_cache(maxsize=8)
def _load_provider_catalog(name: str, user_path: str | None) -> dict[str, Any]:
    shipped = json.loads(
        resources.files("tuneport").joinpath(f"resources/{name}_models.json").read_text("utf-8")
    )
    data = {"training_tiers": list(shipped.get("training_tiers", [])),
            "models": {m["id"]: m for m in shipped.get("models", [])}}  # fmt: skip
    if user_path:
        try:
            user = json.loads(Path(user_path).read_text("utf-8")).get(name) or {}
        except (OSError, ValueError, AttributeError) as exc:
            raise SpecError(
                f"{user_path}: cannot read the user catalog ({exc})", hint="Fix or remove the file."
            ) from None
        if "training_tiers" in user:
            data["training_tiers"] = list(user["training_tiers"])
        for m in user.get("models", []):
            data["models"][m["id"]] = m
    for tier in data["training_tiers"]:
        price = Decimal(str(tier.get("per_1m")))
        if _price_out_of_range(price, PRICE_PER_1M_USD) or not tier.get("source") or not tier.get("as_of"):
            raise SpecError(
                f"{user_path or 'shipped catalog'}: {name} training tier {tier!r} needs per_1m "
                f"{PRICE_PER_1M_USD.describe()}, a source and an as_of date",
                hint='Prices are decimal strings in USD per 1M tokens, e.g. "0.48".',
            )
    return data
