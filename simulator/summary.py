"""Summaries of simulated paths: mergeable sums over every path plus kept values for quantiles.

- Exact over all paths (sums and counts at the report horizons, merged block by block in float64):
  p_outperform, excess_mean, excess_sd, <asset>_mean, <asset>_p_loss, occupancy_<regime>.
- From the kept paths, the first ``keep = min(n, MAX_KEEP_PATHS)`` (paths are i.i.d., so a uniform sample):
  every quantile, the HDI, VaR, ES, the drawdown figures, and ``draws(h)``. Up to MAX_KEEP_PATHS these are
  exact for the run; beyond it they carry the sampling error of ``keep`` paths (a q-quantile's standard
  error is sqrt(q (1 - q) / keep) / density).
- The fan (every month end) from the first ``fan_paths`` paths (at most FAN_PATHS, fewer if the months
  would pass FAN_BUDGET_BYTES).
Memory is therefore flat in the number of paths.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .engine import BLOCK_PATHS
from .params import Model

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import arviz as az

MAX_KEEP_PATHS = 2_000_000
FAN_PATHS = 1 << 16
FAN_BUDGET_BYTES = 1 << 29
FAN_QUANTILES = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)


def kept_counts(model: Model, n_paths: int, itemsize: int = 4) -> tuple[int, int]:
    """(paths kept at the report horizons, paths kept at every month end for the fan)."""
    fan_bytes_per_path = itemsize * len(model.asset_keys) * len(model.month_steps)
    keep = min(n_paths, MAX_KEEP_PATHS)
    return keep, int(min(keep, FAN_PATHS, FAN_BUDGET_BYTES // fan_bytes_per_path))


class Accumulator:
    """Per-block statistics of one run: ``add`` blocks in any order (or on several processes), then ``finish``.

    Sums are kept per block and added up in block order at the end, so the result is the same bit for bit
    whichever process or device simulated which block.
    """

    STATS = ("sum_r", "loss", "sum_x", "sum_x2", "wins", "occupancy", "filled")

    def __init__(self, model: Model, n_paths: int, dtype=np.float32):
        M1, A, R = len(model.month_steps), len(model.asset_keys), len(model.report_months)
        K, n_blocks = len(model.regime_names), -(-n_paths // BLOCK_PATHS)
        self.model, self.n_paths = model, n_paths
        self.keep, self.fan_paths = kept_counts(model, n_paths, np.dtype(dtype).itemsize)
        self.kept_reports = np.zeros((R, A, self.keep), dtype)        # log wealth at each report horizon
        self.kept_dd = np.zeros((R, A, self.keep), dtype)             # max log drawdown at each report horizon
        self.fan_months = np.zeros((M1, A, self.fan_paths), dtype)    # log wealth at every month end
        self.sum_r = np.zeros((n_blocks, R, A))     # per block: sum of R_a at each report horizon
        self.loss = np.zeros((n_blocks, R, A))      # count of R_a < 0
        self.sum_x = np.zeros((n_blocks, R))        # sum of X
        self.sum_x2 = np.zeros((n_blocks, R))       # sum of X^2
        self.wins = np.zeros((n_blocks, R))         # count of X > 0
        self.occupancy = np.zeros((n_blocks, R, K))  # path-steps in each regime up to each report horizon
        self.filled = np.zeros(n_blocks)            # paths merged per block

    def add(self, block: int, n_valid: int, out) -> None:
        """Merge block ``block`` (engine.BlockOutput as numpy; its first ``n_valid`` paths count)."""
        R = np.expm1(out.reports[:, :, :n_valid].astype(np.float64))   # [R, A, paths]
        i, j = self.model.compare
        X = R[:, i] - R[:, j]
        self.sum_r[block] = R.sum(axis=2)
        self.loss[block] = (R < 0).sum(axis=2)
        self.sum_x[block] = X.sum(axis=1)
        self.sum_x2[block] = (X * X).sum(axis=1)
        self.wins[block] = (X > 0).sum(axis=1)
        self.occupancy[block] = out.occupancy
        self.filled[block] = n_valid
        first = block * BLOCK_PATHS
        for kept, source, bound in ((self.kept_reports, out.reports, self.keep), (self.kept_dd, out.report_dd, self.keep),
                                    (self.fan_months, out.months, self.fan_paths)):
            hi = min(first + n_valid, bound)
            if hi > first:
                kept[:, :, first:hi] = source[:, :, : hi - first]

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything a block fills (zero where no block of this process wrote), for merging processes."""
        return {name: getattr(self, name) for name in self.STATS + ("kept_reports", "kept_dd", "fan_months")}

    def replace(self, arrays: dict[str, np.ndarray]) -> None:
        for name, value in arrays.items():
            setattr(self, name, value)

    def finish(self) -> "Summaries":
        if self.filled.sum() != self.n_paths:
            raise RuntimeError(f"merged {int(self.filled.sum())} of {self.n_paths} paths")
        return Summaries(self)


class Summaries:
    """Finished statistics of one run; builds the summary and fan tables."""

    def __init__(self, acc: Accumulator):
        self.model, self.n, self.keep, self.fan_paths = acc.model, acc.n_paths, acc.keep, acc.fan_paths
        self.kept_reports, self.kept_dd, self.fan_months = acc.kept_reports, acc.kept_dd, acc.fan_months
        n = float(self.n)
        total = {name: getattr(acc, name).sum(axis=0) for name in acc.STATS}   # in block order
        self.mean_r = total["sum_r"] / n
        self.p_loss = total["loss"] / n
        self.p_win = total["wins"] / n
        self.mean_x = total["sum_x"] / n
        var = (total["sum_x2"] - total["sum_x"] ** 2 / n) / max(n - 1, 1)
        self.sd_x = np.sqrt(np.maximum(var, 0))
        self.occupancy_paths = total["occupancy"]   # [R, K] path-steps in each regime up to each horizon

    def total_returns(self, horizon_months: int) -> np.ndarray:
        """[keep, A] simple total returns R_a(h) of the kept paths (float64) at a report horizon."""
        months = self.model.report_months
        if horizon_months not in months:
            raise ValueError(f"paths are kept at the report horizons {list(months)} only, got {horizon_months}; "
                             "add it to report_months to keep it")
        return np.expm1(self.kept_reports[months.index(horizon_months)].astype(np.float64)).T

    def summary(self, scenario: str) -> pd.DataFrame:
        m = self.model
        i, j = m.compare
        rows = []
        for r, h in enumerate(m.report_months):
            R = self.total_returns(h)
            X = R[:, i] - R[:, j]
            hdi = az.hdi(X, hdi_prob=0.9)
            q = np.quantile(X, [0.05, 0.25, 0.5, 0.75, 0.95], overwrite_input=True)   # X is scratch from here
            p = self.p_win[r]
            row = {
                "scenario": scenario, "horizon_months": h, "n_paths": self.n,
                "p_outperform": p, "p_outperform_se": np.sqrt(p * (1 - p) / self.n),
                "excess_mean": self.mean_x[r], "excess_sd": self.sd_x[r],
                "excess_q05": q[0], "excess_q25": q[1], "excess_median": q[2], "excess_q75": q[3],
                "excess_q95": q[4], "excess_hdi90_low": hdi[0], "excess_hdi90_high": hdi[1],
            }
            mdd = -np.expm1(-self.kept_dd[r].astype(np.float64)).T   # [keep, A]: drawdown as a positive fraction
            for a, key in enumerate(m.asset_keys):
                Ra = R[:, a]
                q05, med, q95 = np.quantile(Ra, [0.05, 0.5, 0.95])
                mdd_median, mdd_q95 = np.quantile(mdd[:, a], [0.5, 0.95])
                row.update({
                    f"{key}_mean": self.mean_r[r, a], f"{key}_median": med, f"{key}_q05": q05,
                    f"{key}_q95": q95, f"{key}_var95": -q05, f"{key}_es95": -Ra[Ra <= q05].mean(),
                    f"{key}_p_loss": self.p_loss[r, a],
                    f"{key}_mdd_median": mdd_median, f"{key}_mdd_q95": mdd_q95,
                })
            occ = self.occupancy_paths[r] / (self.n * m.report_steps[r])
            row.update({f"occupancy_{k}": occ[i] for i, k in enumerate(m.regime_names)})
            rows.append(row)
        return pd.DataFrame(rows)

    def fan(self) -> pd.DataFrame:
        """Quantiles and mean of each asset's total return and of the excess at every month (fan paths)."""
        m = self.model
        i, j = m.compare
        R = np.expm1(self.fan_months)                                   # [M + 1, A, fan_paths]
        series = {**{key: R[:, a] for a, key in enumerate(m.asset_keys)}, "excess": R[:, i] - R[:, j]}
        frames = []
        for name, values in series.items():                             # values: [M + 1, fan_paths]
            qs = np.quantile(values, FAN_QUANTILES, axis=1)             # [Q, M + 1]
            frame = pd.DataFrame({f"q{int(round(100 * q)):02d}": qs[k] for k, q in enumerate(FAN_QUANTILES)})
            frame.insert(0, "series", name)
            frame.insert(0, "month", np.arange(len(m.month_steps)))
            frame["mean"] = values.mean(axis=1, dtype=np.float64)
            frames.append(frame)
        return pd.concat(frames).sort_values(["month", "series"], kind="stable").reset_index(drop=True)
