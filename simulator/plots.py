"""Probability-fan pictures (Bank-of-England style nested bands) from a fan table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .params import Model  # noqa: E402

BANDS = (("q05", "q95", 0.18), ("q10", "q90", 0.30), ("q25", "q75", 0.50))


def draw_fan(ax, fan: pd.DataFrame, series: str, color: str, label: str | None = None) -> None:
    """Nested 5-95, 10-90, 25-75 bands and the median of one series, in percent."""
    d = fan[fan["series"] == series].sort_values("month")
    for lo, hi, alpha in BANDS:
        ax.fill_between(d["month"], 100 * d[lo], 100 * d[hi], color=color, alpha=alpha, linewidth=0)
    ax.plot(d["month"], 100 * d["q50"], color=color, linewidth=1.8, label=label)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.grid(alpha=0.3)
    ax.set_xlabel("months")


def fan_figure(fan: pd.DataFrame, model: Model, title: str, labels: dict[str, str] | None = None):
    """The excess-return fan (large, left) with each asset's total-return fan beside it (shared scale)."""
    labels = labels or {}
    assets = list(model.asset_keys)
    first, second = (assets[i] for i in model.compare)
    fig = plt.figure(figsize=(5.5 + 3.2 * len(assets), 4.6), layout="constrained")
    grid = fig.add_gridspec(1, 1 + len(assets), width_ratios=[1.7] + [1] * len(assets))
    ax = fig.add_subplot(grid[0, 0])
    draw_fan(ax, fan, "excess", "tab:red")
    ax.set_title(f"excess return {first} - {second} (%)\nbands 5-95, 10-90, 25-75; line: median", fontsize=10)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    first_asset_ax = None
    for i, a in enumerate(assets):
        axa = fig.add_subplot(grid[0, 1 + i], sharey=first_asset_ax)  # one scale for all assets
        first_asset_ax = first_asset_ax or axa
        draw_fan(axa, fan, a, colors[i % len(colors)])
        axa.set_title(f"{a} ({labels.get(a, a)}) total return (%)", fontsize=10)
    fig.suptitle(title)
    return fig
