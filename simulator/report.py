"""The pictures and the page of a comparison: compare.png (each item's excess-return fan on one scale, and a
forest plot of p_outperform per horizon) and report.html (one self-contained page: inline CSS, the figure
embedded as a data URI, no script and no reference outside the file)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from . import __version__  # noqa: E402
from .plots import draw_fan  # noqa: E402

ROWS = (  # (metric, label, format) of the side-by-side table; {first}, {second}: the compared assets
    ("p_outperform", "P({first} beats {second})", "prob"),
    ("p_outperform_se", "  standard error", "se"),
    ("excess_mean", "excess mean", "pct"),
    ("excess_median", "excess median", "pct"),
    ("balance_of_risks", "balance of risks (mean - median)", "pct"),
    ("excess_q05", "excess 5%", "pct"),
    ("excess_q95", "excess 95%", "pct"),
    ("excess_hdi90_low", "excess 90% HDI low", "pct"),
    ("excess_hdi90_high", "excess 90% HDI high", "pct"),
    *(  # risk figures of the two compared assets (total returns; VaR, ES and drawdowns as positive losses)
        row
        for asset in ("first", "second")
        for row in (
            (f"{{{asset}}}_var95", f"{{{asset}}} VaR95", "loss"),
            (f"{{{asset}}}_es95", f"{{{asset}}} ES95", "loss"),
            (f"{{{asset}}}_p_loss", f"{{{asset}}} P(loss)", "prob"),
            (f"{{{asset}}}_mdd_median", f"{{{asset}}} max drawdown median", "loss"),
            (f"{{{asset}}}_mdd_q95", f"{{{asset}}} max drawdown 95%", "loss"),
        )
    ),
)
DIFF_ROWS = (  # {base}: the first item, which the others are compared with
    ("diff_p_outperform", "P({first} beats {second}) minus {base}'s", "prob"),
    ("diff_p_outperform_se", "  standard error", "se"),
    ("diff_excess_median", "excess median minus {base}'s", "pct"),
    ("diff_excess_median_se", "  standard error", "pp"),
    ("diff_{first}_p_loss", "{first} P(loss) minus {base}'s", "prob"),
    ("diff_{first}_p_loss_se", "  standard error", "prob"),
)


MEAN_ROWS = ("excess_mean", "balance_of_risks")  # rows built on the excess mean
NO_MEAN_NOTE = (
    "* no mean exists with Student-t tails: the sample mean (and the balance of risks built on it) jumps as rare "
    "extremes arrive; read the medians, quantiles and P(beats) instead"
)


def no_mean(item, metric: str) -> bool:
    """Whether ``metric`` of ``item`` rests on a mean that does not exist (meta.json's ``undefined_means``)."""
    return metric in MEAN_ROWS and "excess_mean" in item.result.meta.get("undefined_means", [])


def fmt(value: float, kind: str) -> str:
    """A probability to 4 decimals, a return as a signed percentage, a loss (VaR, ES, drawdown: positive) or a
    return's standard error ('pp') in percent, a probability's standard error to two significant digits ('se')."""
    if value != value:  # NaN
        return "-"
    return {
        "prob": f"{value:.4f}",
        "pct": f"{100 * value:+.2f}%",
        "loss": f"{100 * value:.2f}%",
        "pp": f"{100 * value:.3f}%",
        "se": f"{value:.2g}",
    }[kind]


def row_labels(rows, comparison) -> list[tuple[str, str, str]]:
    """``rows`` with the compared assets and the first item named in their labels."""
    first, second = comparison.items[0].result.meta["compare"]
    names = {"first": first, "second": second, "base": comparison.items[0].label}
    return [(metric.format(**names), label.format(**names), kind) for metric, label, kind in rows]


def interval(summary_row, z: float = 1.959963984540054) -> tuple[float, float, str]:
    """p_outperform's interval: the 90% interval across parameter draws where the row has one, else +-1.96 SE."""
    low = summary_row.get("p_outperform_draws_q05", float("nan"))
    if low == low:
        return low, summary_row["p_outperform_draws_q95"], "90% across draws"
    p, se = summary_row["p_outperform"], summary_row["p_outperform_se"]
    return p - z * se, p + z * se, "±1.96 SE"


def compare_figure(comparison):
    """Top: each item's excess-return fan (bands 5-95, 10-90, 25-75, median), one y scale for all. Bottom: a
    forest plot of p_outperform with its interval, per horizon and item."""
    items, horizons = comparison.items, comparison.horizons
    n = len(items)
    fig = plt.figure(figsize=(max(8.0, 3.6 * n), 4.2 + 0.32 * n * len(horizons)), layout="constrained")
    grid = fig.add_gridspec(2, n, height_ratios=[1.0, 0.35 + 0.09 * n * len(horizons)])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    first_ax = None
    for k, item in enumerate(items):
        ax = fig.add_subplot(grid[0, k], sharex=first_ax, sharey=first_ax)  # one scale for every fan
        first_ax = first_ax or ax
        draw_fan(ax, item.result.fan(), "excess", colors[k % len(colors)])
        ax.set_title(f"{item.label}\nexcess return (%)", fontsize=10)
    forest = fig.add_subplot(grid[1, :])
    y, ticks, labels = 0, [], []
    kinds = set()
    for h in horizons:
        for k, item in enumerate(items):
            row = item.result.summary().set_index("horizon_months").loc[h]
            lo, hi, kind = interval(row)
            kinds.add(kind)
            p = row["p_outperform"]
            forest.errorbar(p, y, xerr=[[p - lo], [hi - p]], fmt="o", color=colors[k % len(colors)], capsize=3)
            ticks.append(y)
            labels.append(f"{h}m  {item.label}")
            y -= 1
        y -= 0.6
    forest.axvline(0.5, color="0.3", linewidth=0.8)
    forest.set_yticks(ticks, labels, fontsize=8)
    forest.set_xlabel(f"P(excess > 0), interval: {', '.join(sorted(kinds))}")
    forest.grid(axis="x", alpha=0.3)
    first, second = items[0].result.meta["compare"]
    fig.suptitle(f"{first} - {second}: " + ", ".join(i.label for i in items))
    return fig


CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #1f2328; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.6em; }
th { background: #f6f8fa; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.first td { border-top: 2px solid #8c959f; }
img { max-width: 100%; border: 1px solid #d0d7de; }
.note { color: #57606a; font-size: 0.85em; }
"""


def report_html(comparison, figure_png: Path) -> str:
    """The comparison as one self-contained HTML page. Every number in its tables carries ``data-item``,
    ``data-horizon``, ``data-metric`` and ``data-value`` (the exact value of compare.csv)."""
    e = html.escape
    table = comparison.table()
    value = {(r.item, r.horizon_months, r.metric): r.value for r in table.itertuples()}
    items, horizons = comparison.items, comparison.horizons
    first, second = items[0].result.meta["compare"]

    def cell(item, h, metric, kind):
        v = value.get((item.label, h, metric))
        if v is None:
            return "<td></td>"
        mark = " *" if no_mean(item, metric) else ""
        return (
            f'<td class="num" data-item="{e(item.label)}" data-horizon="{h}" data-metric="{e(metric)}" '
            f'data-value="{v!r}">{e(fmt(v, kind))}{mark}</td>'
        )

    def block(rows, members):
        out = []
        for metric, label, kind in row_labels(rows, comparison):
            for r, h in enumerate(horizons):
                cells = "".join(cell(i, h, metric, kind) for i in members)
                head = f'<tr class="first"><th rowspan="{len(horizons)}">{e(label)}</th>' if r == 0 else "<tr>"
                out.append(f"{head}<td>{h}</td>{cells}</tr>")
        return "\n".join(out)

    head = "".join(f"<th>{e(i.label)}</th>" for i in items)
    side = f"<table><tr><th>figure</th><th>months</th>{head}</tr>\n{block(ROWS, items)}\n</table>"
    if any(no_mean(i, "excess_mean") for i in items):
        side += f'<p class="note">{e(NO_MEAN_NOTE)}</p>'
    diffs = ""
    if len(items) > 1:
        pairing = []
        for i in items[1:]:
            kinds = {value.get((i.label, h, "diff_paired")) for h in horizons}
            pairing.append(f"{e(i.label)}: {'paired (common random numbers)' if kinds == {1.0} else 'independent'}")
        head2 = "".join(f"<th>{e(i.label)}</th>" for i in items[1:])
        diffs = (
            f"<h2>Differences from {e(items[0].label)}</h2>"
            f"<table><tr><th>figure</th><th>months</th>{head2}</tr>\n{block(DIFF_ROWS, items[1:])}\n</table>"
            f'<p class="note">Standard errors: {"; ".join(pairing)}.</p>'
        )
    picture = base64.b64encode(Path(figure_png).read_bytes()).decode("ascii")
    scenarios = []
    for i in items:
        meta = i.result.meta
        sources = "".join(f"<li>{e(s)}</li>" for s in i.sources) or "<li>none given</li>"
        run = ", ".join(
            f"{k}: {e(str(meta[k]))}"
            for k in ("as_of", "n_paths", "seed", "backend", "precision", "method", "version", "timestamp")
            if meta.get(k) is not None
        )
        scenarios.append(
            f"<h3>{e(i.label)}</h3><p>{e(i.description) or '(no description)'}</p>"
            f'<p class="note">{e(i.source)}; {run}</p><ul>{sources}</ul>'
        )
    made = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>capsim compare: {e(", ".join(i.label for i in items))}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{e(first)} against {e(second)}: {e(", ".join(i.label for i in items))}</h1>
<p class="note">Excess return = total return of {e(first)} minus that of {e(second)} over the horizon (simple
returns). Balance of risks = excess mean minus excess median. Made by capsim {e(__version__)} on {made}.</p>
<h2>Side by side</h2>
{side}
{diffs}
<h2>Fans and P(excess &gt; 0)</h2>
<img alt="excess-return fans and a forest plot of p_outperform" src="data:image/png;base64,{picture}">
<h2>Scenarios</h2>
{"".join(scenarios)}
</body>
</html>
"""
