"""Cost figures and the $/hour they are computed at.

Why this shape: a cost report is only as believable as its inputs. Every number is a :class:`Figure` -- an exact
:class:`~decimal.Decimal` amount plus the formula and the inputs (token counts, measured seconds, prices with their
``source`` and ``as_of`` date) that produced it -- so a report can show its working and a later reader can redo the
arithmetic. Money is never a float; amounts are rounded only when displayed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tuneport.cost.catalog import LIST_PRICE_NOTE, list_hardware, lookup_hardware
from tuneport.cost.money import HOURLY_USD, MAX_ACCELERATORS, bounded, dstr, jsonable, money
from tuneport.errors import SpecError

__all__ = ["Figure", "HourlyRate", "hourly_rate", "rate_figure"]


@dataclass(frozen=True)
class Figure:
    """An amount of money, exact, with what it was computed from.

    ``low``/``high`` are set when a price was a range (the list prices of several instance shapes or clouds):
    ``amount`` is then computed at the range's midpoint.
    """

    label: str
    amount: Decimal
    formula: str
    inputs: dict[str, Any]
    currency: str = "USD"
    low: Decimal | None = None
    high: Decimal | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: amounts as exact decimal strings, plus a rounded ``display``."""
        out: dict[str, Any] = {
            "label": self.label,
            "amount": dstr(self.amount),
            "currency": self.currency,
            "display": self.display(),
            "formula": self.formula,
            "inputs": jsonable(self.inputs),
        }
        if self.low is not None and self.high is not None:
            out["low"], out["high"] = dstr(self.low), dstr(self.high)
        out["notes"] = list(self.notes)
        return out

    def display(self) -> str:
        text = money(self.amount)
        if self.low is not None and self.high is not None and self.low != self.high:
            text += f" (range {money(self.low)} to {money(self.high)})"
        return text


@dataclass(frozen=True)
class HourlyRate:
    """The $/hour used for self-hosted figures: a catalog range (one cloud, or all that list the hardware) or a
    user-given rate. ``amount`` is the range midpoint; ``count`` accelerators are billed together."""

    amount: Decimal
    low: Decimal
    high: Decimal
    inputs: dict[str, Any]

    @property
    def is_range(self) -> bool:
        return self.low != self.high


def hourly_rate(
    gpu: str | None = None, cloud: str | None = None, hourly: Any = None, *, count: int = 1
) -> HourlyRate:
    """Resolve ``--gpu X [--cloud Y]`` or ``--hourly Z`` to a $/hour for ``count`` accelerators.

    Without ``cloud`` the range spans every cloud that lists the hardware. Unknown names raise a
    :class:`SpecError` that lists the known ones; ``hourly`` and ``count`` outside their accepted ranges
    (:data:`~tuneport.cost.money.HOURLY_USD`, 1 to :data:`~tuneport.cost.money.MAX_ACCELERATORS`) too.
    """
    if not 1 <= count <= MAX_ACCELERATORS:
        raise SpecError(
            f"the number of accelerators (--gpus) must be between 1 and {MAX_ACCELERATORS:,}, not {count}",
            hint="Give --gpus 1 or more, per replica.",
        )
    if hourly is not None:
        if gpu is not None or cloud is not None:
            raise SpecError(
                "give either --hourly or --gpu/--cloud, not both",
                hint="--hourly is your own $/hour; --gpu/--cloud look up list prices in the catalog.",
            )
        rate = bounded(hourly, "--hourly", HOURLY_USD)
        total = rate * count
        return HourlyRate(
            total, total, total, {"hourly_usd": rate, "count": count, "source": "given by the user"}
        )
    if gpu is None:
        raise SpecError(
            "no hardware price: give --gpu (with an optional --cloud) or --hourly",
            hint=f"Known hardware: {', '.join(h.id for h in list_hardware())}; or --hourly 2.50 for your own rate.",
        )
    info = lookup_hardware(gpu)
    if info is None:
        known = ", ".join(f"{h.id} ({h.label})" for h in list_hardware())
        raise SpecError(
            f"unknown GPU {gpu!r}; known hardware: {known}",
            hint="Pick one of those, add it to your catalog file (TUNEPORT_CATALOG), or give --hourly.",
        )
    if cloud is not None:
        price = info.prices.get(cloud.strip().lower())
        if price is None:
            raise SpecError(
                f"no list price for {info.id} at cloud {cloud!r}; clouds with {info.id} prices: "
                f"{', '.join(sorted(info.prices))}",
                hint="Pick one of those clouds, leave --cloud out for the range over all of them, or give --hourly.",
            )
        prices = [price]
    else:
        prices = [info.prices[c] for c in sorted(info.prices)]
        if not prices:
            raise SpecError(
                f"the catalog has no prices for {info.id}", hint="Give --cloud with a price, or --hourly."
            )
    low = min(p.min for p in prices) * count
    high = max(p.max for p in prices) * count
    inputs = {
        "hardware": info.id,
        "label": info.label,
        "cloud": cloud.strip().lower() if cloud else "any (" + ", ".join(p.cloud for p in prices) + ")",
        "count": count,
        "per_accelerator_hour": [p.to_dict() for p in prices],
        "price_kind": LIST_PRICE_NOTE,
    }
    return HourlyRate((low + high) / 2, low, high, inputs)


def rate_figure(
    label: str,
    formula: str,
    rate: HourlyRate,
    compute: Callable[[Decimal], Decimal],
    inputs: dict[str, Any],
    notes: list[str],
) -> Figure:
    """A figure computed at the rate's midpoint, low and high (``compute(hourly) -> Decimal``)."""
    inputs = {**inputs, "hourly": rate.inputs, "hourly_usd": rate.amount}
    if rate.is_range:
        notes = [
            *notes,
            f"$/hour is the midpoint of the list-price range {money(rate.low)} to {money(rate.high)}",
        ]
        return Figure(label, compute(rate.amount), formula, inputs, low=compute(rate.low), high=compute(rate.high),
                      notes=tuple(notes))  # fmt: skip
    return Figure(label, compute(rate.amount), formula, inputs, notes=tuple(notes))
