"""``compare``: several results side by side, with differences from the first and their standard errors.

Items are results (simulated, blended or loaded from a folder) or scenarios simulated here with one seed and
path count (common random numbers). Differences from the first item, per common report horizon:

- ``diff_p_outperform`` and its standard error: **paired** when both items were simulated with the same seed
  and path count on the seed's own stream and their statistics are at hand (path j of one item and path j of
  the other share their random numbers): batch means of the difference of the two conditional estimates over
  independent units, the parameter draws of an uncertain item, else cells of 128 paths
  (``summary.Summaries.unit_sums``). Otherwise **independent**: sqrt(se_a^2 + se_b^2).
- ``diff_excess_median`` and its standard error: paired, from the Bahadur representation of the two sample
  medians (the influence values 1[x <= median] / f of the kept paths, summed per independent unit as above;
  the densities at the medians by the Hall-Sheather difference quotient of the empirical quantile function);
  independent, each median's variance 0.25 / (n_kept f^2) with f from the quartiles, 0.5 / (q75 - q25)
  (exact for a uniform law, 7% high for a normal one).

``balance_of_risks`` = excess_mean - excess_median: positive when the upside tail of the excess return is the
longer one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .errors import CapsimError
from .scenario import Scenario, load_scenario
from .shipped import display_source
from .summary import batch_means_se

FIGURES = ("p_outperform", "excess_mean", "excess_median", "excess_q05", "excess_q95", "balance_of_risks")
Z95 = 1.959963984540054


class CompareError(CapsimError):
    """Items that cannot be compared."""


class Item(NamedTuple):
    """One compared result: its label, the result (``summary()``, ``fan()``, ``meta``), the scenario text
    shown in reports, and whether its kept paths can be paired with other items' (``draws`` is not None)."""

    label: str
    result: object
    description: str
    sources: list[str]
    source: str
    draws: object  # callable horizon -> DataFrame of kept total returns, or None
    stats: object  # summary.Summaries of a pairable result, else None


def _pairable(result) -> bool:
    meta = result.meta
    return hasattr(result, "draws") and meta.get("kind", "run") == "run" and "stream" not in meta


def as_item(obj, label: str | None = None) -> Item:
    """An ``Item`` from a Result (simulated, a blend, or loaded from a folder)."""
    sc = getattr(obj, "scenario", None)
    meta = obj.meta
    if sc is not None:
        description, sources = sc.description, list(sc.sources)
    else:
        description, sources = meta.get("description", ""), list(meta.get("sources", []))
    return Item(
        label or meta["scenario"],
        obj,
        " ".join(str(description).split()),
        sources,
        display_source(meta.get("scenario_file", meta.get("folder", ""))),
        obj.draws if _pairable(obj) else None,
        obj._stats if _pairable(obj) else None,
    )


def hall_sheather(n: int, q: float = 0.5, alpha: float = 0.05) -> float:
    """The Hall-Sheather bandwidth (in probability) for the density of the q-quantile from n draws."""
    from scipy.stats import norm

    x = norm.ppf(q)
    return n ** (-1 / 3) * norm.ppf(1 - alpha / 2) ** (2 / 3) * (1.5 * norm.pdf(x) ** 2 / (2 * x**2 + 1)) ** (1 / 3)


def density_at_median(sorted_x: np.ndarray) -> float:
    """f(median) by the difference quotient 2h / (Q(0.5 + h) - Q(0.5 - h)), h the Hall-Sheather bandwidth."""
    h = min(hall_sheather(len(sorted_x)), 0.49)
    lo, hi = np.quantile(sorted_x, [0.5 - h, 0.5 + h])
    return 2 * h / (hi - lo) if hi > lo else math.inf


def paired_units(sa, sb) -> int | None | bool:
    """The independent units two paired runs' statistics (``Summaries``) share: a number of parameter draws D
    (groups g of G paths, g mod D; G that of the run with draws), None for cells of paths (neither has several
    draws in use), or False when they cannot share units (then they are not paired): their draws group paths
    differently (another D or G), or one run's cells do not fit whole in the other's groups or cells."""
    da, db = sa.unit_draws, sb.unit_draws
    if da is None and db is None:
        return None if sa.model.cell_paths == sb.model.cell_paths else False
    if da is not None and db is not None:
        return da if (da, sa.model.draw_paths) == (db, sb.model.draw_paths) else False
    units, other = (sa, sb) if da is not None else (sb, sa)
    return units.unit_draws if units.model.draw_paths % other.model.cell_paths == 0 else False


def paired_differences(sa, sb, xa: np.ndarray, xb: np.ndarray, h: int, draws: int | None, first: str) -> dict:
    """Standard errors of p_outperform(b) - p_outperform(a), of asset ``first``'s p_loss(b) - p_loss(a) and
    of median(b) - median(a) (over the kept paths) of two runs of common random numbers: their statistics
    ``sa``, ``sb``, the kept excess returns ``xa``, ``xb`` at report horizon ``h`` (months), and their units
    ``draws`` (``paired_units``)."""
    ra, rb = sa.model.report_months.index(h), sb.model.report_months.index(h)
    fa_, fb_ = 1 + sa.model.asset_keys.index(first), 1 + sb.model.asset_keys.index(first)  # p_loss columns
    units = sa if sa.unit_draws is not None else sb  # the run whose groups of paths give the draws
    G = units.model.draw_paths if draws is not None else None
    paths, fig_a, _ = sa.unit_sums(draws, G)
    _, fig_b, _ = sb.unit_sums(draws, G)
    out = {}
    for name, ia, ib, value in (
        ("diff_p_outperform_se", 0, 0, sb.p_outperform[rb] - sa.p_outperform[ra]),
        (f"diff_{first}_p_loss_se", fa_, fb_, sb.p_loss[rb, fb_ - 1] - sa.p_loss[ra, fa_ - 1]),
    ):
        out[name] = float(batch_means_se(fig_b[:, rb, ib] - fig_a[:, ra, ia], paths, np.asarray(value)))
    k = len(xa)
    ma, mb = np.median(xa), np.median(xb)
    fa, fb = density_at_median(np.sort(xa)), density_at_median(np.sort(xb))
    influence = (xb <= mb) / fb - (xa <= ma) / fa  # the medians' difference is -mean(influence) + const
    path = np.arange(k)
    unit = path // units.model.cell_paths if draws is None else (path // G) % draws
    sums, counts = np.bincount(unit, weights=influence), np.bincount(unit).astype(np.float64)
    out["diff_excess_median_se"] = float(batch_means_se(sums, counts, np.asarray(influence.mean())))
    return out


def independent_differences(a: pd.Series, b: pd.Series, kept_a: int, kept_b: int, first=None) -> dict:
    """Standard errors of the differences of two independent runs' figures (one summary row each); with the
    first asset ``first``, that of its p_loss too."""

    def median_var(row, kept):
        spread = row["excess_q75"] - row["excess_q25"]
        return math.inf if spread <= 0 else 0.25 / (kept * (0.5 / spread) ** 2)

    return {
        "diff_p_outperform_se": math.hypot(a["p_outperform_se"], b["p_outperform_se"]),
        "diff_excess_median_se": math.sqrt(median_var(a, kept_a) + median_var(b, kept_b)),
        **(
            {f"diff_{first}_p_loss_se": math.hypot(a[f"{first}_p_loss_se"], b[f"{first}_p_loss_se"])}
            if first is not None
            else {}
        ),
    }


class Comparison:
    """Items side by side at their common report horizons. ``table()`` is the tidy compare.csv (item,
    horizon_months, metric, value); ``wide()`` the side-by-side table (rows: figure x horizon; columns:
    items); ``save(dir)`` writes compare.csv, compare.png, report.html and meta.json."""

    def __init__(self, items: list[Item], horizons: list[int], meta: dict):
        self.items, self.horizons, self.meta = items, horizons, meta
        first = items[0]
        rows = []
        for k, item in enumerate(items):
            summary = item.result.summary().set_index("horizon_months")
            for h in horizons:
                row = summary.loc[h]
                figures = {name: float(row[name]) for name in summary.columns if name != "scenario"}
                figures["balance_of_risks"] = figures["excess_mean"] - figures["excess_median"]
                if k > 0:
                    figures.update(self._difference(first, item, h))
                rows += [(item.label, h, name, value) for name, value in figures.items()]
        self._table = pd.DataFrame(rows, columns=["item", "horizon_months", "metric", "value"])

    def _difference(self, a: Item, b: Item, h: int) -> dict:
        ra, rb = (i.result.summary().set_index("horizon_months").loc[h] for i in (a, b))
        paired = (
            a.draws is not None
            and b.draws is not None
            and a.result.meta["seed"] == b.result.meta["seed"]
            and a.result.meta["n_paths"] == b.result.meta["n_paths"]
            and paired_units(a.stats, b.stats) is not False
        )
        first = a.result.meta["compare"][0]
        if paired:
            xa, xb = (self._excess(i, h) for i in (a, b))
            se = paired_differences(a.stats, b.stats, xa, xb, h, paired_units(a.stats, b.stats), first)
        else:
            ma, mb = a.result.meta, b.result.meta
            se = independent_differences(ra, rb, ma["kept_paths"], mb["kept_paths"], first)
        return {
            "diff_p_outperform": rb["p_outperform"] - ra["p_outperform"],
            "diff_excess_median": rb["excess_median"] - ra["excess_median"],
            f"diff_{first}_p_loss": rb[f"{first}_p_loss"] - ra[f"{first}_p_loss"],
            **se,
            "diff_paired": float(paired),
        }

    @staticmethod
    def _excess(item: Item, h: int) -> np.ndarray:
        draws = item.draws(h)
        first, second = item.result.meta["compare"]
        return (draws[first] - draws[second]).to_numpy()

    def table(self) -> pd.DataFrame:
        """compare.csv: one row per item, horizon and metric (tidy)."""
        return self._table.copy()

    def wide(self, metrics=None) -> pd.DataFrame:
        """Rows (metric, horizon_months), columns the items in order."""
        t = self._table if metrics is None else self._table[self._table["metric"].isin(metrics)]
        wide = t.pivot_table(index=["metric", "horizon_months"], columns="item", values="value", sort=False)
        return wide[[i.label for i in self.items if i.label in wide.columns]]

    def save(self, out_dir, force: bool = False) -> Path:
        """Write compare.csv, compare.png, report.html and meta.json into ``out_dir`` atomically."""
        import json

        from .output import write_folder
        from .report import compare_figure, report_html

        def write(tmp: Path) -> None:
            self.table().to_csv(tmp / "compare.csv", index=False)
            figure = compare_figure(self)
            figure.savefig(tmp / "compare.png", dpi=110)
            import matplotlib.pyplot as plt

            plt.close(figure)
            (tmp / "report.html").write_text(report_html(self, tmp / "compare.png"), encoding="utf-8")
            (tmp / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))

        return write_folder(out_dir, write, force)


def common_horizons(items: list[Item], horizons=None) -> list[int]:
    """The report horizons every item has (those of ``horizons`` only, when given); an error names the items
    when there are none, or when they compare different pairs of assets."""
    pairs = {tuple(i.result.meta["compare"]) for i in items}
    if len(pairs) > 1:
        listed = "; ".join(f"{i.label}: {' - '.join(i.result.meta['compare'])}" for i in items)
        raise CompareError(f"the items compare different pairs of assets ({listed})")
    sets = [set(i.result.summary()["horizon_months"]) for i in items]
    common = sorted(set.intersection(*sets))
    if horizons is not None:
        missing = sorted(set(horizons) - set(common))
        if missing:
            raise CompareError(
                f"horizons {missing} are not report horizons of every item (common: {common})",
                ("choose horizons among them", "choose --horizons among them"),
            )
        common = sorted(set(horizons))
    if not common:
        listed = "; ".join(f"{i.label}: {sorted(s)}" for i, s in zip(items, sets))
        raise CompareError(f"the items share no report horizon ({listed})")
    return common


def compare(
    items,
    n_paths: int = 1_000_000,
    seed: int = 0,
    *,
    horizons=None,
    load=None,
    progress=None,
    **run_options,
) -> Comparison:
    """Compare ``items``: Results, Scenarios, scenario files or result folders (``load(folder)`` reads one;
    default ``simulator.load_result``). Scenarios and files are simulated here with ``n_paths`` and ``seed``
    (common random numbers; ``run_options`` go to ``simulate``). ``horizons``: report horizons to keep
    (default: every common one). ``progress(paths_done)`` counts the paths simulated here."""
    from .run import simulate

    if load is None:
        from . import load_result as load
    if len(items) < 1:
        raise CompareError("give at least one item to compare")
    resolved, labels, done = [], [], 0
    for obj in items:
        if isinstance(obj, (str, Path)) and Path(obj).is_dir():
            result = load(obj)
        elif isinstance(obj, (str, Path, Scenario)):
            sc = obj if isinstance(obj, Scenario) else load_scenario(obj)
            report = None if progress is None else (lambda d, before=done: progress(before + d))
            result = simulate(sc, n_paths, seed, progress=report, **run_options)
            done += n_paths
        elif hasattr(obj, "summary") and hasattr(obj, "meta"):
            result = obj
        else:
            raise CompareError(f"{obj!r} is neither a result, a scenario, a scenario file nor a result folder")
        label = result.meta["scenario"]
        while label in labels:  # the same scenario twice (another seed, a folder and its file, ...)
            label += "'"
        labels.append(label)
        resolved.append(as_item(result, label))
    hs = common_horizons(resolved, horizons)
    everyone = common_horizons(resolved)
    meta = {
        "items": [
            {
                "label": i.label,
                "source": i.source,
                "seed": i.result.meta.get("seed"),
                "n_paths": i.result.meta.get("n_paths"),
                "kind": i.result.meta.get("kind", "run"),
                "version": i.result.meta.get("version"),
            }
            for i in resolved
        ],
        "horizons": hs,
        "dropped_horizons": {  # each item's report horizons that not every item has
            i.label: dropped
            for i in resolved
            if (dropped := [int(h) for h in i.result.summary()["horizon_months"] if h not in everyone])
        },
        "seed": seed,
        "n_paths": n_paths,
    }
    return Comparison(resolved, hs, meta)
