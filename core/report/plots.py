"""PNG plots for evaluation reports: latency distributions and training loss curves.

Why a separate module: matplotlib is an optional, slow import. It is imported here, inside the functions, only when
a report is rendered; ``tuneport --help`` and every other command never pay for it. The Agg canvas is attached to
a standalone :class:`matplotlib.figure.Figure` (no pyplot), so rendering touches no global backend state and never
needs a display.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["matplotlib_available", "latency_png", "loss_png", "cost_png"]

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def matplotlib_available() -> bool:
    """Whether plots can be drawn (matplotlib is an optional dependency)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    # No metadata: the same data renders to the same bytes, so reports diff cleanly.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def latency_png(latencies: Mapping[str, Sequence[float]]) -> bytes | None:
    """Box plot and overlaid histograms of per-request latency (ms), one per endpoint; ``None`` without data."""
    data = {name: [float(v) for v in values] for name, values in latencies.items() if values}
    if not data:
        return None
    names = list(data)
    fig = _figure(10.0, 1.6 + 0.55 * len(names))
    box_ax, hist_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    # ``vert`` is deprecated from 3.11 in favour of ``orientation`` (added in 3.10).
    flat = {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}
    parts = box_ax.boxplot([data[n] for n in names], patch_artist=True, showmeans=True, **flat)
    for i, patch in enumerate(parts["boxes"]):
        patch.set_facecolor(_COLORS[i % len(_COLORS)])
        patch.set_alpha(0.55)
    box_ax.set_yticks(range(1, len(names) + 1), [_short(n) for n in names])
    box_ax.invert_yaxis()
    box_ax.set_xlabel("latency (ms)")
    box_ax.set_title("per-request latency (box: quartiles, triangle: mean)", fontsize=9)
    lo = min(min(v) for v in data.values())
    hi = max(max(v) for v in data.values())
    bins = 20 if hi > lo else 1
    for i, name in enumerate(names):
        hist_ax.hist(data[name], bins=bins, range=(lo, hi if hi > lo else lo + 1.0), alpha=0.5,
                     color=_COLORS[i % len(_COLORS)], label=_short(name))  # fmt: skip
    hist_ax.set_xlabel("latency (ms)")
    hist_ax.set_ylabel("requests")
    hist_ax.legend(fontsize=8)
    hist_ax.set_title("histogram", fontsize=9)
    return _png(fig)


def loss_png(curve: Mapping[str, Any], title: str) -> bytes | None:
    """Training (and validation, where reported) loss against step; ``None`` when the job reported no losses."""
    train = curve.get("train_loss") or []
    valid = curve.get("valid_loss") or []
    if not train and not valid:
        return None
    fig = _figure(7.5, 3.6)
    ax = fig.subplots()
    if train:
        ax.plot(
            [s for s, _ in train], [v for _, v in train], color=_COLORS[0], linewidth=1.4, label="train loss"
        )
    if valid:
        ax.plot([s for s, _ in valid], [v for _, v in valid], color=_COLORS[1], linewidth=1.4, marker="o",
                markersize=3, label="valid loss")  # fmt: skip
    total = curve.get("total_steps")
    if isinstance(total, (int, float)) and total > 0:
        ax.set_xlim(0, total)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(_short(title, 70), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def cost_png(rows: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Cost per 1,000 items per endpoint (bars) with its 95% interval (whiskers); an endpoint without a price is
    labelled n/a instead of drawn as $0. ``None`` when no endpoint has a price."""
    priced = [r for r in rows if r.get("per_1000") is not None]
    if not priced:
        return None
    names = [str(r["endpoint"]) for r in rows]
    fig = _figure(7.5, 1.4 + 0.5 * len(names))
    ax = fig.subplots()
    values = [float(r["per_1000"]) if r.get("per_1000") is not None else 0.0 for r in rows]
    lows = [v - r["low"] if r.get("low") is not None else 0.0 for v, r in zip(values, rows, strict=True)]
    highs = [r["high"] - v if r.get("high") is not None else 0.0 for v, r in zip(values, rows, strict=True)]
    ys = list(range(len(names)))
    ax.barh(ys, values, xerr=[[max(0.0, x) for x in lows], [max(0.0, x) for x in highs]], capsize=4,
            color=[_COLORS[i % len(_COLORS)] for i in ys], alpha=0.7, error_kw={"elinewidth": 1.2})  # fmt: skip
    top = max([v + h for v, h in zip(values, highs, strict=True)] + [1e-9])
    for y, r, v in zip(ys, rows, values, strict=True):
        text = r.get("per_1000_text") or "n/a"
        ax.text(v + top * 0.02, y, text, va="center", fontsize=8)
    ax.set_yticks(ys, [_short(n) for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.3)
    ax.set_xlabel("USD per 1,000 items")
    ax.set_title("cost per 1,000 items (whiskers: 95% interval over the items)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _short(text: str, limit: int = 28) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
