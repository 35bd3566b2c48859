"""Exact money: user- and file-given numbers as bounded :class:`~decimal.Decimal` values, and their display.

Why bounds: every cost is a product of a few inputs (tokens, $/hour, tokens/s, replicas), and Decimal refuses to
round a 40-digit amount to cents (``InvalidOperation``). Each input therefore has an accepted range, far wider than
any real price or machine, and is refused outside it with the option's name and the range; within the ranges no
computed amount can overflow, and :func:`money` displays any finite amount.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tuneport.errors import SpecError

__all__ = [
    "MILLION",
    "SECONDS_PER_HOUR",
    "HOURS_PER_MONTH",
    "Range",
    "HOURLY_USD",
    "TOKENS_PER_SECOND",
    "SECONDS",
    "PRICE_PER_1M_USD",
    "MAX_TOKENS_PER_MONTH",
    "MAX_ACCELERATORS",
    "to_decimal",
    "bounded",
    "money",
    "dstr",
    "jsonable",
]

MILLION = Decimal(1_000_000)
SECONDS_PER_HOUR = Decimal(3600)
#: Hours in an average month (365 x 24 / 12), the usual basis of cloud monthly prices.
HOURS_PER_MONTH = Decimal(730)


@dataclass(frozen=True)
class Range:
    """An accepted range of one kind of input, both ends included."""

    low: Decimal
    high: Decimal
    unit: str

    def describe(self) -> str:
        return f"between {self.low:,f} and {self.high:,f} {self.unit}"


#: A user's own $/hour for the machine (all accelerators of it together, before ``--gpus``).
HOURLY_USD = Range(Decimal("0.0001"), Decimal(1_000_000), "USD per hour")
#: Measured throughput of one training run or one serving replica.
TOKENS_PER_SECOND = Range(Decimal("0.001"), Decimal(1_000_000_000), "tokens per second")
#: A measured run time (about 317 years at the top).
SECONDS = Range(Decimal("0.000001"), Decimal(10_000_000_000), "seconds")
#: A price per 1M tokens in a catalog file.
PRICE_PER_1M_USD = Range(Decimal(0), Decimal(1_000_000), "USD per 1M tokens")
#: Monthly token volume of one kind (input, cached input, output).
MAX_TOKENS_PER_MONTH = 10**15
#: Accelerators billed together (``--gpus``).
MAX_ACCELERATORS = 100_000


def to_decimal(value: Any, what: str) -> Decimal:
    """A user- or file-given number as an exact, finite Decimal (floats go through their shortest repr)."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise SpecError(
            f"{what} must be a number, not {value!r}", hint=f"Give {what} as e.g. 2.50."
        ) from None
    if not number.is_finite():
        raise SpecError(f"{what} must be a finite number, not {value!r}", hint=f"Give {what} as e.g. 2.50.")
    return number


def bounded(value: Any, what: str, accepted: Range) -> Decimal:
    """A finite number within ``accepted``; outside it a :class:`SpecError` names ``what`` and the range."""
    number = to_decimal(value, what)
    if number <= 0 < accepted.low:
        raise SpecError(
            f"{what} must be greater than 0 ({accepted.describe()}), not {value}",
            hint=f"Give a positive {what}.",
        )
    if not accepted.low <= number <= accepted.high:
        raise SpecError(
            f"{what} must be {accepted.describe()}, not {value}",
            hint=f"Give {what} within that range (it is far wider than any real machine or price).",
        )
    return number


def money(amount: Decimal, places: int = 2) -> str:
    """Display an amount (the only place money is rounded): ``$1,234.57``; small amounts keep more digits.

    The rounding runs with as many digits as the amount needs, so no finite amount makes it raise.
    """
    if not amount.is_finite():
        return "n/a"
    if amount != 0 and abs(amount) < Decimal("0.01"):
        places = max(places, 6)
    digits = max(28, amount.adjusted() + places + 2)
    q = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=Context(prec=digits))
    return f"${q:,.{places}f}"


def dstr(value: Decimal) -> str:
    """An exact decimal string without exponent notation (``730000000``, not ``7.3000E+8``)."""
    return format(value, "f")


def jsonable(value: Any) -> Any:
    """``value`` with Decimals as exact strings and paths as text, ready for ``json.dumps``."""
    if isinstance(value, Decimal):
        return dstr(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
