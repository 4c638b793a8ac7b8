"""Summaries of simulated paths: mergeable sums over every path plus kept values for quantiles.

- Over all paths (sums and counts at the report horizons, merged block by block in float64):
  p_outperform, p_outperform_count, excess_mean, excess_sd, <asset>_mean, <asset>_p_loss, occupancy_<regime>.
- p_outperform and <asset>_p_loss are conditional Monte Carlo estimates (docs/methods.md): given a path's
  regimes (and Student-t scales) its log returns are Gaussian with the mean and variance the engine adds up,
  so P(small beats large | path) = Phi(m / s) exactly; the estimate is the path mean of that, with the time
  spent in each regime as a control variate (its expectation is exact). p_outperform_count is the share of
  paths. Standard errors come from independent units: paths without parameter uncertainty, else the groups
  of blocks that share a parameter draw (batch means; ``Summaries.unit_sums``).
- From the kept paths, the first ``keep = min(n, MAX_KEEP_PATHS)`` (paths are i.i.d., so a uniform sample):
  every quantile, the HDI, VaR, ES, the drawdown figures, and ``draws(h)``. Up to MAX_KEEP_PATHS these are
  exact for the run; beyond it they carry the sampling error of ``keep`` paths (a q-quantile's standard
  error is sqrt(q (1 - q) / keep) / density).
- Per parameter draw (scenarios with parameter uncertainty; group g of G paths has draw g mod D): p_outperform,
  the conditional estimate over the draw's paths; the excess median from the draw's groups kept whole, else (a
  draw whose first group lies past them) from its first group, whose median is taken as its block is merged.
  It is therefore exact (over every path of the draw) when each draw's groups are all kept or a draw is one
  group (the default); otherwise it is the median of the draw's kept groups, at least its first G paths.
- The fan (every month end) from the first ``fan_paths`` paths (at most FAN_PATHS, fewer if the months
  would pass FAN_BUDGET_BYTES). They are the first blocks simulated, so the fan table is made in a background
  thread while the engine simulates the rest.
Memory is therefore flat in the number of paths.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pandas as pd

from .devices import cpu_cores
from .engine import BLOCK_PATHS
from .errors import CapsimError
from .params import Model
from .scenario import DRAW_METRICS
from .uncertainty import across_draws


@functools.cache
def arviz():
    """arviz, imported on first use (it brings matplotlib and scipy.stats), so that ``import simulator`` and
    `capsim validate` stay quick. Call it once outside threads. arviz 0.x announces its 1.0 refactor with a
    FutureWarning on import; ``hdi`` below serves both major versions, so that notice is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz as az
    return az


def hdi(values: np.ndarray, prob: float) -> np.ndarray:
    """arviz's highest-density interval ``[low, high]`` of a 1-d sample. The probability argument is
    ``prob`` in arviz 1.x (arviz-stats) and ``hdi_prob`` in 0.x; the interval is the same."""
    az = arviz()
    keyword = "prob" if "prob" in inspect.signature(az.hdi).parameters else "hdi_prob"
    return np.asarray(az.hdi(values, **{keyword: prob}))


MAX_KEEP_PATHS = 2_000_000
FAN_PATHS = 1 << 16
FAN_BUDGET_BYTES = 1 << 29
FAN_QUANTILES = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)


def kept_counts(model: Model, n_paths: int, itemsize: int = 4, fan: bool = True) -> tuple[int, int]:
    """(paths kept at the report horizons, paths kept at every month end for the fan: none without ``fan``)."""
    fan_bytes_per_path = itemsize * len(model.asset_keys) * len(model.month_steps)
    keep = min(n_paths, MAX_KEEP_PATHS)
    return keep, int(min(keep, FAN_PATHS, FAN_BUDGET_BYTES // fan_bytes_per_path)) if fan else 0


def sorted_quantiles(values: np.ndarray, probs) -> np.ndarray:
    """``np.quantile(values, probs, axis=-1)`` (its default 'linear' method, the same numbers and dtype) of
    ``values`` already sorted along the last axis, read off at the order statistics instead of partitioning
    again: [len(probs), ...]. A row holding a NaN (sorted last) gives NaN, as in np.quantile."""
    n = values.shape[-1]
    pos = np.asarray(probs, np.float64) * (n - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    t = pos - lo
    a, b = values[..., lo], values[..., hi]
    d = b - a
    out = np.where(t >= 0.5, b - d * (1 - t), a + d * t)  # numpy's interpolation, exact at both ends
    out = np.where(np.isnan(values[..., -1:]), np.nan, out)
    return np.moveaxis(out, -1, 0)


def cell_sums(values: np.ndarray, cell_paths: int) -> np.ndarray:
    """[cells, ...] sums of ``values`` [..., paths] over each cell of ``cell_paths`` consecutive paths of a
    block (``Model.cell_paths``; paths past the last one count as zeros)."""
    padded = np.zeros(values.shape[:-1] + (BLOCK_PATHS,))
    padded[..., : values.shape[-1]] = values
    cells = padded.reshape(values.shape[:-1] + (BLOCK_PATHS // cell_paths, cell_paths)).sum(axis=-1)
    return np.moveaxis(cells, -1, 0)


def group_draws(model: Model, first_group: int, n_groups: int) -> np.ndarray:
    """[n_groups] parameter draw (row of ``model.steps``) of groups first_group, first_group + 1, ...: g mod D."""
    return (first_group + np.arange(n_groups)) % model.n_draws % len(model.expected_steps_in)


class Accumulator:
    """Per-block statistics of one run: ``add`` blocks in any order (or on several processes), then ``finish``.

    Sums are kept per block and added up in block order at the end, so the result is the same bit for bit
    whichever process or device simulated which block. Conditional figures (``engine.conditional_figures``: F of them)
    and the controls (steps in regimes 0..K-2 minus their expectation under the path's draw: C of them) are
    kept as sums per cell of ``Model.cell_paths`` paths (each in one draw), with their squares and
    cross-products per block.
    """

    STATS = (
        "sum_r",
        "sum_x",
        "sum_x2",
        "occupancy",
        "filled",
        "draw_median",
        "cell_paths",
        "cell_fig",
        "cell_ctrl",
        "cell_wins",
        "block_fig",
        "block_ctrl",
        "block_wins",
        "fig_sq",
        "ctrl_cross",
        "ctrl_fig",
    )

    def __init__(self, model: Model, n_paths: int, dtype=np.float32, fan_in_background: bool = True, fan: bool = True):
        M1, A, R = len(model.month_steps), len(model.asset_keys), len(model.report_months)
        K, n_blocks = len(model.regime_names), -(-n_paths // BLOCK_PATHS)
        self.model, self.n_paths = model, n_paths
        self.keep, self.fan_paths = kept_counts(model, n_paths, np.dtype(dtype).itemsize, fan)
        self.kept_reports = np.zeros((R, A, self.keep), dtype)  # log wealth at each report horizon
        self.kept_dd = np.zeros((R, A, self.keep), dtype)  # max log drawdown at each report horizon
        self.fan_shape, self.dtype = (M1, A, self.fan_paths), dtype
        self.fan_parts: dict[int, np.ndarray] = {}  # first path of a block -> its fan paths' month ends
        self.fan_job: Future | None = None  # the fan table, made once every fan path is in (if in background)
        self.fan_in_background = fan_in_background
        self.sum_r = np.zeros((n_blocks, R, A))  # per block: sum of R_a at each report horizon
        self.sum_x = np.zeros((n_blocks, R))  # sum of X
        self.sum_x2 = np.zeros((n_blocks, R))  # sum of X^2
        self.occupancy = np.zeros((n_blocks, R, K))  # path-steps in each regime up to each report horizon
        self.filled = np.zeros(n_blocks)  # paths merged per block
        # excess median of each draw's first group (draw d's first group is group d)
        self.draw_median = np.zeros((len(model.expected_steps_in) if model.uncertain else 0, R))
        F, C, cells = 1 + A, K - 1, BLOCK_PATHS // model.cell_paths
        self.cell_paths = np.zeros((n_blocks, cells))  # paths per cell
        self.cell_fig = np.zeros((n_blocks, cells, R, F))  # per cell: sum of the conditional figures
        self.cell_ctrl = np.zeros((n_blocks, cells, R, C))  # sum of the controls
        self.cell_wins = np.zeros((n_blocks, cells, R))  # count of X > 0
        self.block_fig = np.zeros((n_blocks, R, F))  # per block: sum of the conditional figures (the estimates use
        self.block_ctrl = np.zeros((n_blocks, R, C))  # these, summed over paths the same way whatever the cells,
        self.block_wins = np.zeros((n_blocks, R))  # so that the figures do not depend on the draw groups' size)
        self.fig_sq = np.zeros((n_blocks, R, F))  # per block: sum of squared figures
        self.ctrl_cross = np.zeros((n_blocks, R, C, C))  # sum of control x control
        self.ctrl_fig = np.zeros((n_blocks, R, C, F))  # sum of control x figure

    def add(self, block: int, n_valid: int, out) -> None:
        """Merge block ``block`` (engine.BlockOutput as numpy; its first ``n_valid`` paths count)."""
        R = np.expm1(out.reports[:, :, :n_valid].astype(np.float64))  # [R, A, paths]
        i, j = self.model.compare
        X = R[:, i] - R[:, j]
        self.sum_r[block] = R.sum(axis=2)
        self.sum_x[block] = X.sum(axis=1)
        self.sum_x2[block] = (X * X).sum(axis=1)
        steps = out.report_steps_in[:, :, :n_valid].astype(np.float64)  # [R, K, paths]
        self.occupancy[block] = steps.sum(axis=2)
        self.filled[block] = n_valid
        fig = out.report_fig[:, :, :n_valid].astype(np.float64)  # [R, F, paths] conditional figures
        m = self.model
        G, Q = m.draw_paths, BLOCK_PATHS // m.draw_paths
        if len(m.expected_steps_in) == 1:  # one parameter set: the same expectation for every path
            expected = m.expected_steps_in[0, :, :-1, None]  # [R, C, 1]
        else:
            draws = np.repeat(group_draws(m, block * Q, Q), G)[:n_valid]  # [paths] each path's draw
            expected = np.moveaxis(m.expected_steps_in[draws][:, :, :-1], 0, -1)  # [R, C, paths]
        ctrl = steps[:, :-1] - expected  # mean zero under the path's draw
        cells = functools.partial(cell_sums, cell_paths=m.cell_paths)
        self.cell_paths[block] = cells(np.ones(n_valid))
        self.cell_fig[block] = cells(fig)
        self.cell_ctrl[block] = cells(ctrl)
        self.cell_wins[block] = cells((X > 0).astype(np.float64))
        self.block_fig[block], self.block_ctrl[block] = fig.sum(axis=-1), ctrl.sum(axis=-1)
        self.block_wins[block] = (X > 0).sum(axis=-1)
        self.fig_sq[block] = np.einsum("rfp,rfp->rf", fig, fig)
        self.ctrl_cross[block] = np.einsum("rcp,rdp->rcd", ctrl, ctrl)
        self.ctrl_fig[block] = np.einsum("rcp,rfp->rcf", ctrl, fig)
        first = block * BLOCK_PATHS
        g0, g1 = block * Q, min((block + 1) * Q, len(self.draw_median))  # groups g < D: draw g's first group
        full = min(g1, g0 + n_valid // G)  # of those, the groups whose paths are all valid
        if full > g0:
            self.draw_median[g0:full] = np.median(X[:, : (full - g0) * G].reshape(len(X), -1, G), axis=2).T
        if full < g1 and (full - g0) * G < n_valid:  # a last group partly filled
            self.draw_median[full] = np.median(X[:, (full - g0) * G : n_valid], axis=1)
        for kept, source in ((self.kept_reports, out.reports), (self.kept_dd, out.report_dd)):
            hi = min(first + n_valid, self.keep)
            if hi > first:
                kept[:, :, first:hi] = source[:, :, : hi - first]
        if first < self.fan_paths:  # kept as it is (no copy) until the fan table is made
            self.fan_parts[first] = out.months[:, :, : min(first + n_valid, self.fan_paths) - first]
            if self.fan_in_background and sum(part.shape[-1] for part in self.fan_parts.values()) == self.fan_paths:
                # every fan path is in (the first blocks): make the fan table while the engine goes on
                pool = ThreadPoolExecutor(max_workers=1)
                self.fan_job = pool.submit(lambda: fan_table(self.model, self.fan_months()))
                pool.shutdown(wait=False)

    def fan_months(self) -> np.ndarray:
        """[M + 1, A, fan_paths] log wealth at every month end of the fan paths (a new array; zero where no
        block of this process wrote)."""
        months = np.zeros(self.fan_shape, self.dtype)
        for first, part in self.fan_parts.items():
            months[:, :, first : first + part.shape[-1]] = part
        return months

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything a block fills (zero where no block of this process wrote), for merging processes."""
        return {
            "fan_months": self.fan_months(),
            **{name: getattr(self, name) for name in self.STATS + ("kept_reports", "kept_dd")},
        }

    def replace(self, arrays: dict[str, np.ndarray]) -> None:
        """Take the merged ``arrays`` (as from ``arrays``) in place of this process's."""
        arrays = dict(arrays)
        self.fan_parts = {0: arrays.pop("fan_months")}  # one part holding every fan path
        self.fan_job = None  # made again from the merged paths
        for name, value in arrays.items():
            setattr(self, name, value)

    def finish(self) -> Summaries:
        if self.filled.sum() != self.n_paths:
            raise RuntimeError(f"merged {int(self.filled.sum())} of {self.n_paths} paths")
        return Summaries(self)


class Summaries:
    """Finished statistics of one run; builds the summary and fan tables."""

    def __init__(self, acc: Accumulator):
        self.model, self.n, self.keep, self.fan_paths = acc.model, acc.n_paths, acc.keep, acc.fan_paths
        self.kept_reports, self.kept_dd = acc.kept_reports, acc.kept_dd
        self.fan_months, self.fan_job = acc.fan_months, acc.fan_job  # [M + 1, A, fan_paths] on demand
        n = float(self.n)
        total = {name: getattr(acc, name).sum(axis=0) for name in acc.STATS}  # in block order
        self.mean_r = total["sum_r"] / n
        self.mean_x = total["sum_x"] / n
        var = (total["sum_x2"] - total["sum_x"] ** 2 / n) / max(n - 1, 1)
        self.sd_x = np.sqrt(np.maximum(var, 0))
        steps = np.asarray(self.model.report_steps, np.float64)[:, None]
        self.occupancy = total["occupancy"] / (n * steps)  # [R, K] share of the steps up to each horizon

        self.draw_median = acc.draw_median  # [D_used, R] excess median of each draw's first group
        self.n_groups = -(-self.n // self.model.draw_paths)  # groups of paths that share a draw
        self.cells = {name: getattr(acc, name) for name in ("cell_paths", "cell_fig", "cell_ctrl", "cell_wins")}
        fig, ctrl = total["block_fig"], total["block_ctrl"]  # [R, F], [R, C]
        self.beta = control_coefficients(fig, ctrl, total["ctrl_cross"], total["ctrl_fig"], n)  # [R, C, F]
        value = (fig - np.einsum("rc,rcf->rf", ctrl, self.beta)) / n  # [R, F]
        wins = total["block_wins"][:, None] / n  # [R, 1] share of paths with X > 0
        # Independent units: paths without parameter uncertainty; else the draws in use (batch means), unless
        # a single draw is in use: then its paths, and the error is of the figure given that draw.
        self.unit_draws = (
            self.model.n_draws if self.model.uncertain and min(self.model.n_draws, self.n_groups) > 1 else None
        )
        if self.unit_draws is None:
            resid_sq = residual_squares(fig, ctrl, total["fig_sq"], total["ctrl_cross"], total["ctrl_fig"], self.beta)
            dof = max(n - 1 - ctrl.shape[-1], 1)
            se = np.sqrt(np.maximum(resid_sq - n * value**2, 0) / dof / n)
            se_count = np.sqrt(wins * (1 - wins) / n)
        else:
            paths, fig_u, wins_u = self.unit_sums(self.unit_draws)
            se = batch_means_se(fig_u, paths, value)
            se_count = batch_means_se(wins_u[..., None], paths, wins)
        self.p_outperform, self.p_outperform_se = value[:, 0], se[:, 0]
        self.p_loss, self.p_loss_se = value[:, 1:], se[:, 1:]  # [R, A]
        self.p_count, self.p_count_se = wins[:, 0], se_count[:, 0]

    def unit_sums(self, draws: int | None, draw_paths: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(paths [U], control-variate residual sums of the conditional figures [U, R, F], wins [U, R]) per
        unit: per parameter draw (groups g of ``draw_paths`` paths, default this run's, taken mod ``draws``;
        U = min(draws, groups)) or, with ``draws`` None, per cell of ``Model.cell_paths`` paths. Each unit's sum
        minus estimate x paths has mean zero; units are independent. (A paired run's draws group paths by the
        other run's G, a multiple of this run's cells: ``compare.paired_units``.)"""
        flat = {name: x.reshape((-1,) + x.shape[2:]) for name, x in self.cells.items()}
        if draws is not None:
            G = draw_paths or self.model.draw_paths
            group = np.arange(len(flat["cell_paths"])) * self.model.cell_paths // G
            used = group < -(-self.n // G)  # cells past the run's last path belong to no draw
            flat = {name: group_sum(x[used], group[used] % draws) for name, x in flat.items()}
        fig = flat["cell_fig"] - np.einsum("urc,rcf->urf", flat["cell_ctrl"], self.beta)
        return flat["cell_paths"], fig, flat["cell_wins"]

    @functools.cached_property
    def per_draw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(paths [U], p_outperform [U, R], excess median [U, R]) of each parameter draw that has paths
        (U = min(D, groups)); p_outperform is the conditional estimate with the run's control variate; see the
        module's docstring for what is exact."""
        m, G = self.model, self.model.draw_paths
        U = min(m.n_draws, self.n_groups)
        paths, fig, _ = self.unit_sums(m.n_draws)
        median = self.draw_median[:U].copy()  # each draw's first group
        ends = np.minimum((np.arange(self.n_groups) + 1) * G, self.n)  # one past each group's last path
        whole = int(np.sum(ends <= self.keep))  # groups kept whole: the first ones
        i, j = m.compare
        for d in range(min(U, whole - m.n_draws)):  # draws with several groups kept whole: all of those
            cols = np.concatenate([np.arange(g * G, ends[g]) for g in range(d, whole, m.n_draws)])
            R_d = np.expm1(self.kept_reports[:, :, cols].astype(np.float64))
            median[d] = np.median(R_d[:, i] - R_d[:, j], axis=1)
        return paths, fig[:, :, 0] / paths[:, None], median

    @classmethod
    def pooled(cls, model: Model, parts: list[tuple[Summaries, list[int], int, int]]) -> Summaries:
        """The statistics of the paths of several runs taken together (a stratified mixture: each run's share
        of the paths is fixed). ``parts``: (a run's statistics, the indices of ``model``'s assets among its
        assets, its kept paths to use, its fan paths to use); ``model`` describes the pool (common report
        horizons; regimes the union, a run lacking one spends no time in it). Sums over every path combine
        exactly; kept and fan paths are the first ones of each run (i.i.d., so uniform samples of it)."""
        self = cls.__new__(cls)
        ns = np.array([p.n for p, *_ in parts], np.float64)
        self.model, self.n = model, int(ns.sum())
        self.keep, self.fan_paths = sum(k for *_, k, _ in parts), sum(f for *_, f in parts)
        self.kept_reports = np.concatenate([p.kept_reports[:, idx, :k] for p, idx, k, _ in parts], axis=2)
        self.kept_dd = np.concatenate([p.kept_dd[:, idx, :k] for p, idx, k, _ in parts], axis=2)
        self.fan_job = None
        self.fan_months = lambda: np.concatenate([p.fan_months()[:, idx, :f] for p, idx, _, f in parts], axis=2)
        w = ns / ns.sum()

        def mix(values):  # path-weighted mean of per-run figures
            return sum(wi * v for wi, v in zip(w, values))

        def mix_se(values):  # standard error of a stratified mixture of independent runs' figures
            return np.sqrt(sum(wi * wi * v**2 for wi, v in zip(w, values)))

        self.mean_r = mix([p.mean_r[:, idx] for p, idx, *_ in parts])
        self.p_loss = mix([p.p_loss[:, idx] for p, idx, *_ in parts])
        self.p_loss_se = mix_se([p.p_loss_se[:, idx] for p, idx, *_ in parts])
        for name in ("p_outperform", "p_count"):
            setattr(self, name, mix([getattr(p, name) for p, *_ in parts]))
            setattr(self, f"{name}_se", mix_se([getattr(p, f"{name}_se") for p, *_ in parts]))
        self.mean_x = mix([p.mean_x for p, *_ in parts])
        second_moment = mix([(p.n - 1) / p.n * p.sd_x**2 + p.mean_x**2 for p, *_ in parts])
        self.sd_x = np.sqrt(np.maximum(second_moment - self.mean_x**2, 0) * self.n / max(self.n - 1, 1))
        self.occupancy = mix([regime_columns(p.occupancy, p.model.regime_names, model.regime_names) for p, *_ in parts])
        return self

    def total_returns(self, horizon_months: int) -> np.ndarray:
        """[keep, A] simple total returns R_a(h) of the kept paths (float64) at a report horizon."""
        months = self.model.report_months
        if horizon_months not in months:
            raise CapsimError(
                f"paths are kept at the report horizons {list(months)} only, got {horizon_months}; "
                "add it to report_months to keep it"
            )
        return np.expm1(self.kept_reports[months.index(horizon_months)].astype(np.float64)).T

    def summary(self, scenario: str) -> pd.DataFrame:
        """One row per report horizon. The excess and each asset of each horizon are summarised in parallel
        threads (NumPy's sorts and ufuncs release the GIL)."""
        m = self.model
        pairs = [(r, a) for r in range(len(m.report_months)) for a in range(len(m.asset_keys))]
        arviz()
        with ThreadPoolExecutor(max_workers=cpu_cores()) as pool:
            excess = list(pool.map(self._excess, range(len(m.report_months))))
            assets = dict(zip(pairs, pool.map(self._asset, *zip(*pairs))))
        rows = []
        for r, h in enumerate(m.report_months):
            row = {"scenario": scenario, "horizon_months": h, "n_paths": self.n, **excess[r]}
            for a in range(len(m.asset_keys)):
                row.update(assets[r, a])
            rows.append({**row, **{f"occupancy_{k}": self.occupancy[r, i] for i, k in enumerate(m.regime_names)}})
        if m.uncertain:
            _, p, median = self.per_draw
            spread = np.concatenate([across_draws(p), across_draws(median)])  # [6, R] in DRAW_METRICS order
            for r, row in enumerate(rows):
                row.update(zip(DRAW_METRICS, spread[:, r]))
        return pd.DataFrame(rows)

    def uncertainty(self, scenario: str) -> pd.DataFrame:
        """uncertainty.csv: one row per parameter draw and report horizon: the draw's paths, p_outperform and
        excess median, then the draw's value of every uncertain field (columns named by field path)."""
        m = self.model
        paths, p, median = self.per_draw
        U, R = p.shape
        frame = pd.DataFrame(
            {
                "scenario": scenario,
                "draw": np.repeat(np.arange(U), R),
                "horizon_months": np.tile(m.report_months, U),
                "n_paths": np.repeat(paths.astype(np.int64), R),
                "p_outperform": p.ravel(),
                "excess_median": median.ravel(),
            }
        )
        for path, values in m.draw_parameters.items():
            frame[path] = np.repeat(np.asarray(values)[:U], R)
        return frame

    def _excess(self, r: int) -> dict:
        """Excess-return columns at report horizon index ``r`` (X sorted once: quantiles and HDI)."""
        i, j = self.model.compare
        R = self.kept_reports[r]
        X = np.expm1(R[i].astype(np.float64)) - np.expm1(R[j].astype(np.float64))
        X.sort()
        low, high = hdi(X, 0.9)
        q = sorted_quantiles(X, [0.05, 0.25, 0.5, 0.75, 0.95])
        return {
            "p_outperform": self.p_outperform[r],
            "p_outperform_se": self.p_outperform_se[r],
            "p_outperform_count": self.p_count[r],
            "p_outperform_count_se": self.p_count_se[r],
            "excess_mean": self.mean_x[r],
            "excess_sd": self.sd_x[r],
            "excess_q05": q[0],
            "excess_q25": q[1],
            "excess_median": q[2],
            "excess_q75": q[3],
            "excess_q95": q[4],
            "excess_hdi90_low": low,
            "excess_hdi90_high": high,
        }

    def _asset(self, r: int, a: int) -> dict:
        """Columns of asset ``a`` at report horizon index ``r``. The log values are sorted (float32 sorts are
        the faster ones) before the increasing maps to simple return and drawdown, so both come out sorted."""
        key = self.model.asset_keys[a]
        R = np.expm1(np.sort(self.kept_reports[r, a]).astype(np.float64))  # sorted simple total returns
        mdd = -np.expm1(-np.sort(self.kept_dd[r, a]).astype(np.float64))  # sorted drawdowns (positive)
        q05, med, q95 = sorted_quantiles(R, [0.05, 0.5, 0.95])
        mdd_median, mdd_q95 = sorted_quantiles(mdd, [0.5, 0.95])
        return {
            f"{key}_mean": self.mean_r[r, a],
            f"{key}_median": med,
            f"{key}_q05": q05,
            f"{key}_q95": q95,
            f"{key}_var95": -q05,
            f"{key}_es95": -R[: np.searchsorted(R, q05, side="right")].mean(),
            f"{key}_p_loss": self.p_loss[r, a],
            f"{key}_p_loss_se": self.p_loss_se[r, a],
            f"{key}_mdd_median": mdd_median,
            f"{key}_mdd_q95": mdd_q95,
        }

    def fan(self) -> pd.DataFrame:
        """Quantiles and mean of each asset's total return and of the excess at every month (fan paths)."""
        if not self.fan_paths:
            raise CapsimError("this run kept no fan paths (simulate(..., fan=False)): run it with fan=True")
        return self.fan_job.result() if self.fan_job is not None else fan_table(self.model, self.fan_months())


def control_coefficients(fig, ctrl, cross, ctrl_fig, n: float) -> np.ndarray:
    """[R, C, F] least-squares coefficients of the figures on the controls, from the sums over n paths of the
    figures ``fig`` [R, F], the controls ``ctrl`` [R, C], their cross-products ``cross`` [R, C, C] and
    ``ctrl_fig`` [R, C, F] (a pseudo-inverse: a control that never varies gets coefficient 0)."""
    f_bar, c_bar = fig / n, ctrl / n
    s_cc = cross - n * np.einsum("rc,rd->rcd", c_bar, c_bar)
    s_cf = ctrl_fig - n * np.einsum("rc,rf->rcf", c_bar, f_bar)
    return np.linalg.pinv(s_cc, hermitian=True) @ s_cf


def residual_squares(fig, ctrl, fig_sq, cross, ctrl_fig, beta) -> np.ndarray:
    """[R, F] sum over paths of (figure - beta' control)^2, from the sums that ``control_coefficients`` takes
    and the figures' squares ``fig_sq`` [R, F]."""
    return fig_sq - 2 * np.einsum("rcf,rcf->rf", beta, ctrl_fig) + np.einsum("rcf,rcd,rdf->rf", beta, cross, beta)


def group_sum(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Sums of ``values`` [B, ...] over the rows of each group 0..max(groups) (in row order)."""
    out = np.zeros((groups.max() + 1,) + values.shape[1:])
    np.add.at(out, groups, values)
    return out


def batch_means_se(sums: np.ndarray, paths: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Standard error of a ratio estimate ``value`` = sum of ``sums`` / sum of ``paths`` over U independent
    units (batch means): sqrt(U / (U - 1) * sum_u (sums_u - value paths_u)^2) / total paths."""
    U, n = len(paths), paths.sum()
    dev = sums - value[None] * paths.reshape((-1,) + (1,) * value.ndim)
    return np.sqrt(U / max(U - 1, 1) * np.sum(dev**2, axis=0)) / n


def regime_columns(values: np.ndarray, names, union) -> np.ndarray:
    """``values`` [..., len(names)] laid out over the regimes ``union`` (zero for a regime not in ``names``)."""
    out = np.zeros(values.shape[:-1] + (len(union),))
    for i, k in enumerate(names):
        out[..., list(union).index(k)] = values[..., i]
    return out


def fan_table(model: Model, months: np.ndarray) -> pd.DataFrame:
    """The fan table from the fan paths' log wealth ``months`` [M + 1, A, fan_paths] (overwritten)."""
    i, j = model.compare
    R = np.expm1(months, out=months)  # simple total returns
    series = {**{key: R[:, a] for a, key in enumerate(model.asset_keys)}, "excess": R[:, i] - R[:, j]}
    means = {name: values.mean(axis=1, dtype=np.float64) for name, values in series.items()}
    workers = cpu_cores()
    cuts = np.linspace(0, len(model.month_steps), workers + 1).astype(int)
    bands = [values[lo:hi] for values in series.values() for lo, hi in zip(cuts[:-1], cuts[1:])]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # sort each row along paths, in place
        list(pool.map(lambda band: band.sort(axis=1), bands))
    frames = []
    for name, values in series.items():  # values: [M + 1, fan_paths], sorted
        qs = sorted_quantiles(values, FAN_QUANTILES)  # [Q, M + 1]
        frame = pd.DataFrame({f"q{int(round(100 * q)):02d}": qs[k] for k, q in enumerate(FAN_QUANTILES)})
        frame.insert(0, "series", name)
        frame.insert(0, "month", np.arange(len(model.month_steps)))
        frame["mean"] = means[name]
        frames.append(frame)
    return pd.concat(frames).sort_values(["month", "series"], kind="stable").reset_index(drop=True)


def draw_metric_names(model: Model) -> list[str]:
    """The per-draw figures ``draw_metrics`` gives: p_outperform, excess_median, then each asset's var95."""
    return ["p_outperform", "excess_median", *(f"{key}_var95" for key in model.asset_keys)]


def draw_metrics(stats: Summaries, draw_paths: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per parameter draw of a run whose draw d holds paths [d G, (d + 1) G) (G = ``draw_paths``; n = D G paths,
    all kept): (figures, noise), each metric name (``draw_metric_names``) -> [D, R] at the report horizons.

    Figures: p_outperform (``per_draw``'s conditional estimate), the excess median (simple total returns,
    decimals) and each asset's 95% value at risk (-q05 of its simple total return) over the draw's G paths.
    Noise: the Monte Carlo variance of each figure within its draw: for p_outperform the batch-means variance
    over the draw's cells (``Model.cell_paths`` paths: at least two per draw when G is the run's draw_paths); for the
    quantiles, (m_even - m_odd)^2 / 4 from the figure on the draw's even and odd paths (each half has twice
    the variance of the whole; unbiased for a mean, asymptotically for a quantile)."""
    m = stats.model
    D, G = len(stats.per_draw[0]), int(draw_paths)
    if stats.n != D * G or stats.keep < D * G:
        raise ValueError(f"draw_metrics needs the D x G = {D} x {G} paths all kept, got {stats.n} ({stats.keep} kept)")
    i, j = m.compare
    R = np.expm1(stats.kept_reports[:, :, : D * G].astype(np.float64)).reshape(len(m.report_months), -1, D, G)

    def figures(X):  # [R, A, D, g] -> {metric: [D, R]}
        out = {"excess_median": np.median(X[:, i] - X[:, j], axis=-1).T}
        q05 = np.quantile(X, 0.05, axis=-1)  # [R, A, D]
        out.update({f"{key}_var95": -q05[:, a].T for a, key in enumerate(m.asset_keys)})
        return out

    values = {"p_outperform": stats.per_draw[1], **figures(R)}
    even, odd = figures(R[..., 0::2]), figures(R[..., 1::2])
    noise = {name: (even[name] - odd[name]) ** 2 / 4 for name in even}
    noise["p_outperform"] = _cell_noise(stats, D, G)
    return values, noise


def _cell_noise(stats: Summaries, D: int, G: int) -> np.ndarray:
    """[D, R] batch-means variance of each draw's p_outperform over its cells (NaN if a draw holds fewer than two
    whole cells of ``Model.cell_paths`` paths)."""
    cell = stats.model.cell_paths
    per = G // cell
    R = len(stats.model.report_months)
    if G % cell or per < 2:
        return np.full((D, R), np.nan)
    c = stats.cells
    paths = c["cell_paths"].reshape(-1)[: D * per].reshape(D, per)
    fig = c["cell_fig"][..., 0].reshape(-1, R)[: D * per]  # [cells, R]
    ctrl = c["cell_ctrl"].reshape(-1, R, c["cell_ctrl"].shape[-1])[: D * per]
    resid = (fig - np.einsum("urc,rc->ur", ctrl, stats.beta[:, :, 0])).reshape(D, per, R)
    means = resid / paths[..., None]  # each cell's estimate of the draw's p_outperform
    return means.var(axis=1, ddof=1) / per
