"""Probability-fan pictures (Bank-of-England style nested bands) from a fan table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .params import Model  # noqa: E402

BANDS = (("q05", "q95", 0.18), ("q10", "q90", 0.30), ("q25", "q75", 0.50))


def save_figure(fig, path, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` and close it (pyplot keeps every open figure: a batch would pile them up)."""
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def draw_fan(ax, fan: pd.DataFrame, series: str, color: str, label: str | None = None) -> None:
    """Nested 5-95, 10-90, 25-75 bands and the median of one series, in percent."""
    d = fan[fan["series"] == series].sort_values("month")
    for lo, hi, alpha in BANDS:
        ax.fill_between(d["month"], 100 * d[lo], 100 * d[hi], color=color, alpha=alpha, linewidth=0)
    ax.plot(d["month"], 100 * d["q50"], color=color, linewidth=1.8, label=label)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.grid(alpha=0.3)
    ax.set_xlabel("months")


def fan_figure(
    fan: pd.DataFrame,
    model: Model,
    title: str,
    labels: dict[str, str] | None = None,
    summary: pd.DataFrame | None = None,
):
    """The excess-return fan (large, left) with each asset's total-return fan beside it (shared scale); with
    ``summary`` (summary.csv), P(first beats second) written at each report horizon of the excess fan."""
    labels = labels or {}
    assets = list(model.asset_keys)
    first, second = (assets[i] for i in model.compare)
    fig = plt.figure(figsize=(5.5 + 3.2 * len(assets), 4.6), layout="constrained")
    grid = fig.add_gridspec(1, 1 + len(assets), width_ratios=[1.7] + [1] * len(assets))
    ax = fig.add_subplot(grid[0, 0])
    draw_fan(ax, fan, "excess", "tab:red")
    ax.set_title(f"excess return {first} - {second} (%)\nbands 5-95, 10-90, 25-75; line: median", fontsize=10)
    if summary is not None:
        for h, p in zip(summary["horizon_months"], summary["p_outperform"]):
            ax.axvline(h, color="0.6", linewidth=0.6, linestyle=":")
            ax.annotate(f"{p:.2f}", (h, 1.0), xycoords=("data", "axes fraction"), ha="center", va="top", fontsize=8)
        ax.text(0.01, 0.90, f"P({first} beats {second}) at each report horizon", transform=ax.transAxes, fontsize=8)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    first_asset_ax = None
    for i, a in enumerate(assets):
        axa = fig.add_subplot(grid[0, 1 + i], sharey=first_asset_ax)  # one scale for all assets
        first_asset_ax = first_asset_ax or axa
        draw_fan(axa, fan, a, colors[i % len(colors)])
        axa.set_title(f"{a} ({labels.get(a, a)}) total return (%)", fontsize=10)
    fig.suptitle(title)
    return fig


def sweep_figure(
    table: pd.DataFrame, fields: list[str], title: str, pair: tuple[str, str], labels: dict[str, str] | None = None
):
    """The figure of a sweep table (sweep.csv). One field: P(first beats second) with a +-2 standard error band
    and the median excess return with its 25% and 75% points (dashed), against the value, one line per report
    horizon. Two fields: a heat map of P(first beats second) per report horizon, with its 0.5 contour.
    ``pair``: (first, second), the compared assets; ``labels``: field path -> axis label (default: the path)."""
    labels = labels or {}
    beats = f"P({pair[0]} beats {pair[1]})"
    horizons = sorted(table["horizon_months"].unique())
    if len(fields) == 1:
        (x,) = fields
        fig, (ax_p, ax_x) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
        for h in horizons:
            d = table[table["horizon_months"] == h].sort_values(x)
            line = ax_p.plot(d[x], d["p_outperform"], marker=".", label=f"{h} months")[0]
            band = 2 * d["p_outperform_se"]
            ax_p.fill_between(
                d[x], d["p_outperform"] - band, d["p_outperform"] + band, color=line.get_color(), alpha=0.2
            )
            ax_x.plot(d[x], 100 * d["excess_median"], marker=".", color=line.get_color(), label=f"{h} months")
            for q in ("excess_q25", "excess_q75"):
                ax_x.plot(d[x], 100 * d[q], color=line.get_color(), linewidth=0.8, linestyle="--")
        ax_p.axhline(0.5, color="0.3", linewidth=0.8)
        ax_p.set_title(f"{beats}, band: +-2 standard errors", fontsize=10)
        ax_x.axhline(0, color="0.3", linewidth=0.8)
        ax_x.set_title(f"excess return {pair[0]} - {pair[1]} (%): median, dashed 25% and 75%", fontsize=10)
        for ax in (ax_p, ax_x):
            ax.set_xlabel(labels.get(x, x))
            ax.grid(alpha=0.3)
        ax_p.legend(fontsize=8, title="horizon")
    else:
        x, y = fields
        fig, axes = plt.subplots(
            1, len(horizons), figsize=(1.5 + 4 * len(horizons), 4), layout="constrained", squeeze=False
        )
        spread = max(float((table["p_outperform"] - 0.5).abs().max()), 1e-3)
        for ax, h in zip(axes[0], horizons):
            grid = table[table["horizon_months"] == h].pivot(index=y, columns=x, values="p_outperform")
            mesh = ax.pcolormesh(
                grid.columns,
                grid.index,
                grid.values,
                cmap="RdBu",
                vmin=0.5 - spread,
                vmax=0.5 + spread,
                shading="nearest",
            )
            if min(grid.shape) > 1 and grid.values.min() < 0.5 < grid.values.max():
                ax.contour(grid.columns, grid.index, grid.values, levels=[0.5], colors="k", linewidths=1.2)
            ax.set_title(f"{h} months", fontsize=10)
            ax.set_xlabel(labels.get(x, x))
            ax.set_ylabel(labels.get(y, y))
        fig.colorbar(mesh, ax=axes[0].tolist(), label=f"{beats}; black line: 0.5")
    fig.suptitle(title)
    return fig


def tornado_figure(tornado: pd.DataFrame, metric: str, horizon: int, title: str):
    """Tornado chart of ``metric`` at ``horizon`` (rows of tornado.csv): one bar per field from the metric with
    the field at its 5% quantile to the metric at its 95% quantile (the others at their medians), the widest
    swing on top, the baseline (every field at its median) as a vertical line."""
    d = tornado[(tornado["metric"] == metric) & (tornado["horizon_months"] == horizon)]
    d = d.sort_values("swing").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(d)))
    base = float(d["baseline"].iloc[0]) if len(d) else 0.0
    for k, row in d.iterrows():
        for value, q, color in ((row["metric_q05"], "5%", "tab:blue"), (row["metric_q95"], "95%", "tab:orange")):
            ax.barh(k, value - base, left=base, color=color, alpha=0.8, label=f"field at its {q} quantile")
    ax.axvline(base, color="0.2", linewidth=1.2, label=f"baseline (medians) {base:.4g}")
    ax.set_yticks(range(len(d)), d["field"])
    ax.set_xlabel(metric)
    ax.set_title(title, fontsize=9)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="best")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def solve_figure(table: pd.DataFrame, meta: dict, title: str):
    """The metric along a reverse-stress search (solve.csv): one field: the metric (+- 1.96 SE) at each value
    tried, numbered in order, the target and the answer with its interval; several fields: the path in the
    first two fields' plane, then the metric at each HL-RF iterate against the target."""
    metric, target, answer = meta["metric"], meta["target"], meta["answer"]
    fields = list(meta["ranges"])
    se = table[f"{metric}_se"] * 1.96
    if len(fields) == 1:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        x = table[fields[0]]
        ax.errorbar(x, table[metric], yerr=se, fmt="o", color="tab:blue", capsize=3, label=f"{metric} (+- 1.96 SE)")
        for k, (xi, yi) in enumerate(zip(x, table[metric])):
            ax.annotate(str(k), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axhline(target, color="0.3", linestyle="--", linewidth=1, label=f"target {target:g}")
        if answer.get("crossed"):
            ax.axvspan(answer["low"], answer["high"], color="tab:orange", alpha=0.25, label="95% interval")
            ax.axvline(answer["value"], color="tab:orange", label=f"crossing {answer['value']:.4g}")
        ax.set_xlabel(fields[0])
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    else:
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
        it = table[table["iterate"].notna()]
        ax.scatter(table[fields[0]], table[fields[1]], c=table[metric], cmap="viridis", s=18)
        ax.plot(it[fields[0]], it[fields[1]], "-o", color="tab:red", label="HL-RF iterates")
        ax.set_xlabel(fields[0])
        ax.set_ylabel(fields[1])
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        bx.errorbar(it["iterate"], it[metric], yerr=se[it.index], fmt="o-", capsize=3, label=metric)
        bx.axhline(target, color="0.3", linestyle="--", linewidth=1, label=f"target {target:g}")
        bx.set_xlabel("iterate")
        bx.set_ylabel(metric)
        bx.legend(fontsize=7)
        bx.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
