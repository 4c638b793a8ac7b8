"""Summaries of simulated paths: mergeable sums over every path plus kept values for quantiles.

Exact over all paths (sums and counts, merged block by block in float64): p_outperform, excess_mean,
excess_sd, <asset>_mean, <asset>_p_loss, occupancy_<regime>, and the fan's `mean` column.
From the kept paths (the first ``keep`` paths; paths are i.i.d., so they are a uniform sample): every
quantile, the HDI, VaR, ES and drawdown figures. ``keep`` = all paths up to ``MAX_KEEP_PATHS`` and a memory
budget of ``KEEP_BUDGET_BYTES``; beyond it those figures carry the sampling error of ``keep`` paths.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .params import Model

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import arviz as az

MAX_KEEP_PATHS = 2_000_000
KEEP_BUDGET_BYTES = 1 << 30
FAN_QUANTILES = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)


def keep_paths(model: Model, n_paths: int, itemsize: int = 4) -> int:
    """How many paths keep their per-month values (bounded in count and bytes)."""
    A = len(model.asset_keys)
    bytes_per_path = itemsize * A * (len(model.month_steps) + len(model.report_months))
    return int(min(n_paths, MAX_KEEP_PATHS, KEEP_BUDGET_BYTES // bytes_per_path))


class Accumulator:
    """Merges block outputs in path order: ``add`` each block, then ``finish``."""

    def __init__(self, model: Model, n_paths: int, dtype=np.float32):
        M1, A, R = len(model.month_steps), len(model.asset_keys), len(model.report_months)
        self.model, self.n_paths = model, n_paths
        self.keep = keep_paths(model, n_paths, np.dtype(dtype).itemsize)
        self.kept_months = np.empty((M1, A, self.keep), dtype)   # log wealth per month (engine precision)
        self.kept_dd = np.empty((R, A, self.keep), dtype)        # max log drawdown per report
        self.sum_r = np.zeros((M1, A))       # sum of R_a
        self.loss = np.zeros((M1, A))        # count of R_a < 0
        self.sum_x = np.zeros(M1)            # sum of X
        self.sum_x2 = np.zeros(M1)           # sum of X^2
        self.wins = np.zeros(M1)             # count of X > 0
        self.occupancy = np.zeros((model.n_steps, len(model.regime_names)))
        self.seen = 0

    def add(self, first_path: int, n_valid: int, block) -> None:
        """Merge one block (engine.BlockOutput as numpy; its first ``n_valid`` paths count)."""
        assert first_path == self.seen, "blocks must be merged in path order"
        R = np.expm1(block.months[:, :, :n_valid].astype(np.float64))   # [M + 1, A, paths]
        i, j = self.model.compare
        X = R[:, i] - R[:, j]
        self.sum_r += R.sum(axis=2)
        self.loss += (R < 0).sum(axis=2)
        self.sum_x += X.sum(axis=1)
        self.sum_x2 += (X * X).sum(axis=1)
        self.wins += (X > 0).sum(axis=1)
        self.occupancy += block.occupancy
        lo, hi = first_path, min(first_path + n_valid, self.keep)
        if hi > lo:
            self.kept_months[:, :, lo:hi] = block.months[:, :, : hi - lo]
            self.kept_dd[:, :, lo:hi] = block.report_dd[:, :, : hi - lo]
        self.seen += n_valid

    def finish(self) -> "Summaries":
        assert self.seen == self.n_paths
        return Summaries(self)


class Summaries:
    """Finished statistics of one run; builds the summary and fan tables."""

    def __init__(self, acc: Accumulator):
        self.model, self.n, self.keep = acc.model, acc.n_paths, acc.keep
        self.kept_months, self.kept_dd = acc.kept_months, acc.kept_dd
        n = float(self.n)
        self.mean_r = acc.sum_r / n
        self.p_loss = acc.loss / n
        self.p_win = acc.wins / n
        self.mean_x = acc.sum_x / n
        var = (acc.sum_x2 - acc.sum_x ** 2 / n) / max(n - 1, 1)
        self.sd_x = np.sqrt(np.maximum(var, 0))
        self.occupancy_counts = acc.occupancy

    def total_returns(self, month: int) -> np.ndarray:
        """[keep, A] simple total returns R_a(month) of the kept paths (float64)."""
        return np.expm1(self.kept_months[month].astype(np.float64)).T

    def excess(self, month: int) -> np.ndarray:
        R = self.total_returns(month)
        i, j = self.model.compare
        return R[:, i] - R[:, j]

    def summary(self, scenario: str) -> pd.DataFrame:
        m = self.model
        rows = []
        for r, h in enumerate(m.report_months):
            R, X = self.total_returns(h), self.excess(h)
            q = np.quantile(X, [0.05, 0.25, 0.5, 0.75, 0.95])
            hdi = az.hdi(X, hdi_prob=0.9)
            p = self.p_win[h]
            row = {
                "scenario": scenario, "horizon_months": h, "n_paths": self.n,
                "p_outperform": p, "p_outperform_se": np.sqrt(p * (1 - p) / self.n),
                "excess_mean": self.mean_x[h], "excess_sd": self.sd_x[h],
                "excess_q05": q[0], "excess_q25": q[1], "excess_median": q[2], "excess_q75": q[3],
                "excess_q95": q[4], "excess_hdi90_low": hdi[0], "excess_hdi90_high": hdi[1],
            }
            mdd = -np.expm1(-self.kept_dd[r].astype(np.float64)).T   # [keep, A]: drawdown as a positive fraction
            for a, key in enumerate(m.asset_keys):
                Ra = R[:, a]
                q05, med, q95 = np.quantile(Ra, [0.05, 0.5, 0.95])
                row.update({
                    f"{key}_mean": self.mean_r[h, a], f"{key}_median": med, f"{key}_q05": q05,
                    f"{key}_q95": q95, f"{key}_var95": -q05, f"{key}_es95": -Ra[Ra <= q05].mean(),
                    f"{key}_p_loss": self.p_loss[h, a],
                    f"{key}_mdd_median": np.median(mdd[:, a]), f"{key}_mdd_q95": np.quantile(mdd[:, a], 0.95),
                })
            steps = m.report_steps[r]
            occ = self.occupancy_counts[:steps].sum(axis=0) / (self.n * steps)
            row.update({f"occupancy_{k}": occ[i] for i, k in enumerate(m.regime_names)})
            rows.append(row)
        return pd.DataFrame(rows)

    def fan(self) -> pd.DataFrame:
        """Quantiles and mean of each asset's total return and of the excess at every month."""
        m = self.model
        rows = []
        for month in range(len(m.month_steps)):
            R = self.total_returns(month)
            series = {key: (R[:, a], self.mean_r[month, a]) for a, key in enumerate(m.asset_keys)}
            i, j = m.compare
            series["excess"] = (R[:, i] - R[:, j], self.mean_x[month])
            for name, (values, mean) in series.items():
                qs = np.quantile(values, FAN_QUANTILES)
                rows.append({"month": month, "series": name,
                             **{f"q{int(round(100 * q)):02d}": v for q, v in zip(FAN_QUANTILES, qs)}, "mean": mean})
        return pd.DataFrame(rows)
