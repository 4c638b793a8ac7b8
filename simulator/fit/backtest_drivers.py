"""Backtest of the driver model against the constant-matrix model on the same origins (``backtest --drivers``).

Both models are fitted once on the training rows (``tvtp.calibrate_drivers``: the constant fit and the driver
fit share the sample, which starts one month after every driver is known). At each origin (the cut, then every
``step`` months while a whole horizon of realised data remains) each model's regime law is filtered with its
fixed training parameters through the origin and moved one month on (the driver model with the matrix of the
drivers at the origin month), and ``simulate`` draws the h-month returns. The driver model is scored twice:

- ``frozen``: the drivers held at their value in the origin month (what a forecaster knows then);
- ``realised``: the drivers' realised path over the horizon (a conditional forecast: had you known the
  spreads); the move into forecast month n uses the realised value of the month before, as in the fit.

The constant-matrix model (``constant``) and the i.i.d. bootstrap of whole training rows (``bootstrap``) are
scored on the same origins, every model with the same seed per origin (common random numbers). Scores as in
``backtest``: PIT, coverage of the central 50% and 90% intervals, CRPS; summaries per method and series with
the CRPS skill against the constant model and the t statistic of the mean CRPS difference (Newey-West with
h/step - 1 lags when windows overlap).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from .. import __version__
from ..engine import BLOCK_PATHS
from ..errors import CapsimError
from ..params import steps_to_month
from ..scenario import parse_scenario
from . import tvtp
from .backtest import (
    BacktestResult,
    bootstrap_draws,
    near_nominal,
    newey_west_se,
    origin_rows,
    simulated_draws,
)
from .calibrate import filter_probabilities, to_scenario
from .history import DataError, log_returns

METHODS = ("constant", "frozen", "realised", "bootstrap")
METHOD = (
    "constant-matrix and driver models fitted once on the training window (same sample), fixed parameters; "
    "start = each model's regime law filtered through the origin, moved one month on; driver model scored "
    "with the drivers frozen at the origin month (frozen) and along their realised path (realised)"
)


def filter_tvtp(y: np.ndarray, X: np.ndarray, fit: tvtp.TVTPFit) -> np.ndarray:
    """[T, K] filtered regime probabilities of log returns ``y`` [T, A] with lagged drivers ``X`` [T, D] under
    the fixed parameters of ``fit`` (row t uses rows 0..t only)."""
    from .calibrate import log_emissions

    P = tvtp.matrices(fit.coef, X)  # [T, K, K]
    logb = log_emissions(y, fit.means, fit.covs)
    b = np.exp(logb - logb.max(axis=1, keepdims=True))
    P0 = P[0]
    w, v = np.linalg.eig(P0.T)
    pi = np.abs(np.real(v[:, np.argmin(np.abs(w - 1))]))
    out = np.empty_like(b)
    a = pi / pi.sum() * b[0]
    out[0] = a / a.sum()
    for t in range(1, len(y)):  # K x K per month: the fitting side's filter, not a hot path
        a = (out[t - 1] @ P[t]) * b[t]
        out[t] = a / a.sum()
    return out


def _driver_scenario(dc: tvtp.DriverCalibration, start: np.ndarray, paths: np.ndarray, horizon_months: int):
    """The driver model as a scenario from ``start`` with driver paths [months, D] (knots at months 0..)."""
    data = tvtp.scenario_dict(dc, name="backtest-drivers", horizon_months=horizon_months)
    data["macro"] = {n: {m: float(paths[m, d]) for m in range(len(paths))} for d, n in enumerate(dc.drivers)}
    data["start"] = dict(zip(dc.regimes, (float(p) for p in start / start.sum())))
    return parse_scenario(data, source="<backtest driver scenario>")


def backtest_drivers(
    frame: pd.DataFrame,
    n_regimes: int,
    train_until,
    drivers: list[str],
    macro: pd.DataFrame | None = None,
    *,
    horizon_months: int = 12,
    step_months: int = 12,
    n_paths: int = 20_000,
    seed: int = 0,
    n_starts: int = 10,
    device: str = "cpu",
    progress=None,
) -> BacktestResult:
    """Fit both models on ``frame`` up to ``train_until``; score constant, frozen, realised and bootstrap
    forecasts of each origin's ``horizon_months`` returns (monthly data)."""
    t0 = time.perf_counter()
    source = frame.attrs.get("source", "<data>")
    if frame.shape[1] < 2:
        raise DataError(source, "a backtest needs at least two asset columns (small, large: excess = first - second)")
    if frame.attrs.get("frequency", "monthly") != "monthly":
        raise DataError(source, "backtest --drivers needs monthly data (the drivers are monthly)")
    if horizon_months < 1 or step_months < 1:
        raise CapsimError(f"horizon and step must be at least 1 month, got {horizon_months} and {step_months}")
    macro = tvtp.read_macro() if macro is None else macro
    first, last = tvtp.driver_span(macro, drivers)
    months = pd.PeriodIndex(pd.DatetimeIndex(frame.index), freq="M")
    frame_all = frame
    frame = frame.loc[(months - 1 >= first) & (months - 1 <= last)]
    frame.attrs.update(frame_all.attrs)
    H, S = steps_to_month(horizon_months, 12), steps_to_month(step_months, 12)
    cut = pd.Timestamp(train_until)
    n_train = int((frame.index <= cut).sum())
    if n_train == 0:
        raise DataError(source, f"no rows with drivers on or before the cut {cut.date()}")
    origins = list(range(n_train - 1, len(frame) - 1 - H + 1, S))
    if not origins:
        raise DataError(
            source,
            f"the cut {cut.date()} leaves no whole {horizon_months}-month window to forecast: "
            f"the data end {frame.index[-1].date()}",
        )
    train = frame.iloc[:n_train].copy()
    train.attrs.update(frame.attrs)
    dc = tvtp.calibrate_drivers(train, n_regimes, drivers, macro, n_starts=n_starts, seed=seed)
    cal = dc.constant
    # drivers by data month: X[t] = month t-1 (what the move into t uses); level[t] = month t itself
    X = tvtp.lagged_drivers(macro, drivers, frame.index)
    level = np.vstack([X[1:], [[macro[tvtp.driver_column(n, macro)].get(months[-1], np.nan) for n in drivers]]])
    if not np.all(np.isfinite(level[: origins[-1] + H])):
        raise DataError(dc.macro_source, "the drivers do not cover every forecast window")
    assets = list(map(str, frame.columns))
    series = assets + ["excess"]
    y = log_returns(frame)
    filt_c = filter_probabilities(y, cal.fit.params)
    filt_d = filter_tvtp(y, X, dc.fit)
    P = cal.fit.params.transition
    rng = np.random.default_rng(seed)
    batch = -(-n_paths // BLOCK_PATHS) * BLOCK_PATHS
    train_log = y[:n_train]

    rows = []
    for j, i in enumerate(origins):
        scenarios = {
            "constant": to_scenario(cal, name="backtest", horizon_months=horizon_months, start=filt_c[i] @ P),
        }
        start_d = filt_d[i] @ tvtp.matrices(dc.fit.coef, level[i][None])[0]
        frozen = level[i][None]  # flat at the origin month's value
        realised = level[i + 1 : i + H] if H > 1 else frozen  # sim month m = data row i + 1 + m
        scenarios["frozen"] = _driver_scenario(dc, start_d, frozen, horizon_months)
        scenarios["realised"] = _driver_scenario(dc, start_d, realised, horizon_months)
        fc = {
            m: simulated_draws(sc, assets, horizon_months, n_paths, seed + j, device, batch)
            for m, sc in scenarios.items()
        }
        fc["bootstrap"] = bootstrap_draws(rng, train_log, n_paths, H, assets)
        rows += origin_rows(frame, y, i, H, fc, {f"driver_{n}": float(level[i, d]) for d, n in enumerate(drivers)})
        if progress:
            progress(j + 1, len(origins))
    scores = pd.DataFrame(rows)
    lags = max(0, math.ceil(H / S) - 1)
    summary = summarise(scores, series, lags)
    meta = {
        "version": __version__,
        "data": source,
        "macro": dc.macro_source,
        "drivers": list(drivers),
        "assets": assets,
        "regimes": n_regimes,
        "train_until": str(cut.date()),
        "training_sample": f"{frame.index[0].date()} .. {frame.index[n_train - 1].date()} ({n_train} rows)",
        "training_loglik_constant": cal.fit.loglik,
        "training_loglik_drivers": dc.fit.loglik,
        "training_lr": dc.lr,
        "training_lr_pvalue": dc.lr_pvalue,
        "horizon_months": horizon_months,
        "step_months": step_months,
        "origins": len(origins),
        "first_origin": str(frame.index[origins[0]].date()),
        "last_origin": str(frame.index[origins[-1]].date()),
        "newey_west_lags": lags,
        "n_paths": n_paths,
        "seed": seed,
        "method": METHOD,
        "device": device,
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }
    model_yaml = tvtp.scenario_text(dc, name="backtest-training-fit", horizon_months=horizon_months)
    return BacktestResult(scores, summary, verdict(summary, meta), cal, model_yaml, meta)


def summarise(scores: pd.DataFrame, series: list[str], lags: int) -> pd.DataFrame:
    """Per method and series: mean CRPS, skill against the constant model and the t statistic of the mean
    CRPS difference (Newey-West), coverage of the 50% and 90% intervals, PIT mean and KS p-value."""
    from scipy import stats

    out = []
    for s in series:
        d = scores[scores["series"] == s]
        base = d["constant_crps"].mean()
        for m in METHODS:
            diff = (d[f"{m}_crps"] - d["constant_crps"]).to_numpy()
            se = newey_west_se(diff, lags)
            pit = d[f"{m}_pit"].to_numpy()
            out.append(
                {
                    "method": m,
                    "series": s,
                    "n_origins": len(d),
                    "crps_mean": d[f"{m}_crps"].mean(),
                    "crps_skill_vs_constant": 1 - d[f"{m}_crps"].mean() / base if base > 0 else float("nan"),
                    "crps_diff_t": diff.mean() / se if m != "constant" and se > 0 else float("nan"),
                    "coverage50": d[f"{m}_in50"].mean(),
                    "coverage90": d[f"{m}_in90"].mean(),
                    "pit_mean": pit.mean(),
                    "pit_ks_pvalue": stats.kstest(pit, "uniform").pvalue,
                }
            )
    return pd.DataFrame(out)


def verdict(summary: pd.DataFrame, meta: dict) -> str:
    """One line: frozen and realised against the constant model on CRPS (and whether beyond 2 standard errors),
    and each method's coverage against nominal."""
    by = {m: summary[summary["method"] == m].set_index("series") for m in METHODS}
    n = int(by["constant"]["n_origins"].iloc[0])
    n_eff = n / (1 + meta["newey_west_lags"])
    parts = []
    for m in ("frozen", "realised"):
        f = by[m]
        skill = ", ".join(
            f"{s} {100 * f.at[s, 'crps_skill_vs_constant']:+.1f}% (t {f.at[s, 'crps_diff_t']:+.2f})" for s in f.index
        )
        better = sum(f.at[s, "crps_skill_vs_constant"] > 0 for s in f.index)
        sig = [s for s in f.index if abs(f.at[s, "crps_diff_t"]) > 2]
        parts.append(
            f"drivers {m} vs constant: better on {better} of {len(f)} series ({skill}; "
            f"{'beyond 2 SE for ' + ', '.join(sig) if sig else 'no difference beyond 2 SE'})"
        )
    cover = []
    for m in METHODS:
        f = by[m]
        ok = all(near_nominal(f.at[s, f"coverage{c}"], c / 100, n_eff) for s in f.index for c in (50, 90))
        cover.append(f"{m} {'near' if ok else 'NOT near'} nominal")
    return (
        f"verdict: {'; '.join(parts)}; coverage: {', '.join(cover)} [{n} origins from {meta['first_origin']}, "
        f"cut {meta['train_until']}, {meta['horizon_months']}-month horizon, drivers {', '.join(meta['drivers'])}]"
    )
