"""The break-even plot: monthly cost against monthly token volume, hosted against self-hosted.

matplotlib is optional and slow to import, so it loads inside :func:`plot_inference` only.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tuneport.cost.inference import InferenceComparison
from tuneport.errors import TuneportError

__all__ = ["plot_inference"]


def plot_inference(comparison: InferenceComparison, path: str | Path, *, points: int = 400) -> Path:
    """Save a PNG of monthly cost against monthly token volume: hosted (a line) vs self-hosted (steps of
    always-on replicas, shaded over the $/hour range), with the break-even marked. Needs matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise TuneportError(
            "the cost plot needs matplotlib, which is not installed",
            hint="pip install matplotlib (or pip install 'tuneport[report]').",
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    c = comparison
    be = c.break_even.get("tokens_per_month")
    candidates = [Decimal(1_000_000)]
    if be is not None:
        candidates.append(be * 2)
    if c.volume is not None:
        candidates.append(Decimal(sum(c.volume.values())) * Decimal("1.5"))
    if be is None:
        candidates.append(c.capacity_output_tokens_per_month / max(c.mix["output"], Decimal("0.01")) * 2)
    top = max(candidates)
    xs = [top * i / points for i in range(points + 1)]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    try:
        scale = Decimal(1_000_000)
        xf = [float(x / scale) for x in xs]  # floats only for drawing
        ax.plot(xf, [float(c.hosted_cost(x)) for x in xs], label=f"hosted {c.model}", color="tab:blue")
        label = "self-hosted (" + str(c.rate.inputs.get("hardware") or "given $/h") + ", always on)"
        ax.step(xf, [float(c.self_hosted_cost(x)) for x in xs], where="post", label=label, color="tab:orange")
        if c.rate.is_range:
            ax.fill_between(xf, [float(c.self_hosted_cost(x, c.rate.low)) for x in xs],
                            [float(c.self_hosted_cost(x, c.rate.high)) for x in xs], step="post",
                            color="tab:orange", alpha=0.2, label="self-hosted list-price range")  # fmt: skip
        if be is not None:
            ax.axvline(float(be / scale), color="grey", linestyle="--",
                       label=f"break-even {float(be / scale):,.0f}M tokens/month")  # fmt: skip
        if c.volume is not None:
            ax.axvline(float(Decimal(sum(c.volume.values())) / scale), color="green", linestyle=":",
                       label="your volume")  # fmt: skip
        ax.set_xlabel("tokens per month (millions)")
        ax.set_ylabel("USD per month")
        ax.set_title(
            f"Inference cost: hosted vs self-hosted ({float(c.tokens_per_second):,.0f} output tokens/s)"
        )
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(True, alpha=0.3)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out
