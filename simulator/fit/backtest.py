"""An honest backtest of calibrated scenarios: fit on data up to a cut, forecast every later origin, score.

Method (one, stated in every output): the K-regime model is fitted once, on the rows dated up to the cut
(``train_until``). At each forecast origin (the cut, then every ``step`` months while a whole horizon of
realised data remains) the regime probabilities are filtered with those fixed training-fit parameters
through the data up to and including the origin, moved one step on, and used as the scenario's ``start``;
``simulate`` then draws the predictive distribution of the h-month total returns of each asset and of the
excess (first asset minus second). Nothing dated after an origin enters its forecast; parameters never see
data after the cut. The baseline is an i.i.d. bootstrap of the training rows (whole rows, so the assets'
co-movement is kept): h months drawn with replacement and compounded.

Scores per origin and series: the realised return, its PIT (share of the forecast draws below it, ties
counted half), whether it fell in the central 50% and 90% intervals, and the CRPS of the draws (the exact
CRPS of their empirical distribution, in return units: lower is better). Summaries per method and series:
mean CRPS, the skill 1 - CRPS_model / CRPS_bootstrap with a t statistic of the mean CRPS difference
(Newey-West standard error with h/step - 1 lags when windows overlap), the two coverages, and a KS test of
PIT uniformity (its p-value assumes independent PITs, true only when step >= horizon).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .. import __version__
from ..engine import BLOCK_PATHS
from ..errors import CapsimError
from ..output import write_folder
from ..params import steps_to_month
from ..run import simulate
from ..summary import MAX_KEEP_PATHS
from ..uncertainty import model_draws_table, with_parameter_draws
from .calibrate import Calibration, calibrate, filter_probabilities, scenario_text, to_scenario
from .history import DataError, log_returns

METHOD = (
    "training-window fit, fixed parameters; start = regime probabilities filtered with those parameters "
    "through the origin, moved one step on (no re-fitting)"
)
BASELINE = "i.i.d. bootstrap of whole training rows, compounded over the horizon"
POSTERIOR_METHOD = (
    "posterior predictive: NUTS posterior of the same model on the training window (fitted once); at each "
    "origin, each of the thinned draws gets its own filtered start and one block of 16,384 paths, all draws in "
    "one run (the engine's per-block parameters; the plug-in model's seed, so common random numbers)"
)
NOMINAL = {"in50": 0.5, "in90": 0.9}


# --------------------------------------------------------------------------------------------
# Scoring rules from samples


def crps_samples(samples: np.ndarray, y: float) -> float:
    """CRPS of the empirical distribution of ``samples`` at the outcome ``y``:
    E|X - y| - E|X - X'| / 2, with E|X - X'| = (2 / n^2) sum_i (2i - n - 1) x_(i) over the sorted draws."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    spread = 2.0 * np.dot(2 * np.arange(1, n + 1) - n - 1, x) / (n * n)
    return float(np.mean(np.abs(x - y)) - 0.5 * spread)


def pit_value(samples: np.ndarray, y: float) -> float:
    """Share of draws below ``y``, ties counted half."""
    x = np.asarray(samples, dtype=float)
    return float((np.sum(x < y) + 0.5 * np.sum(x == y)) / len(x))


def score(samples: np.ndarray, y: float) -> dict:
    q05, q25, q50, q75, q95 = np.quantile(samples, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "median": float(q50),
        "pit": pit_value(samples, y),
        "in50": bool(q25 <= y <= q75),
        "in90": bool(q05 <= y <= q95),
        "crps": crps_samples(samples, y),
    }


def with_excess(draws: dict) -> dict:
    """``draws`` (series -> simple returns, the assets first) with "excess" = first asset - second added."""
    first, second = list(draws)[:2]
    return {**draws, "excess": draws[first] - draws[second]}


def simulated_draws(sc, assets: list[str], horizon_months: int, n_paths: int, seed: int, device: str, batch: int):
    """The ``horizon_months`` simple returns of ``n_paths`` paths of ``sc``, by series (assets, excess)."""
    d = simulate(sc, n_paths=n_paths, seed=seed, device=device, batch_paths=batch).draws(horizon_months)
    return with_excess({a: d[a].to_numpy() for a in assets})


def bootstrap_draws(rng, train_log: np.ndarray, n_paths: int, H: int, assets: list[str]) -> dict:
    """``n_paths`` i.i.d. bootstrap simple returns over ``H`` steps, each the sum of ``H`` whole rows of the
    training log returns ``train_log`` [rows, A] drawn with replacement, by series (assets, excess)."""
    idx = rng.integers(0, len(train_log), size=(n_paths, H))
    return with_excess(dict(zip(assets, np.expm1(train_log[idx].sum(axis=1)).T)))


def origin_rows(frame: pd.DataFrame, y: np.ndarray, i: int, H: int, forecasts: dict, extra: dict) -> list[dict]:
    """The score rows of the origin at row ``i`` of ``frame`` (log returns ``y``): one per series (the assets,
    then excess) with the origin and end dates, the realised simple return over the ``H`` steps after the
    origin, each forecast's ``score`` as ``{method}_{pit,crps,in50,in90}`` (``forecasts``: method -> series ->
    draws, in column order), then ``extra``."""
    real = with_excess(dict(zip(map(str, frame.columns), np.expm1(y[i + 1 : i + 1 + H].sum(axis=0)))))
    rows = []
    for s, value in real.items():
        row = {"origin": frame.index[i].date(), "end": frame.index[i + H].date(), "series": s, "realised": float(value)}
        for m, draws in forecasts.items():
            row.update({f"{m}_{k}": v for k, v in score(draws[s], value).items()})
        rows.append(row | extra)
    return rows


def newey_west_se(x: np.ndarray, lags: int) -> float:
    """Standard error of the mean of ``x`` allowing autocorrelation up to ``lags`` (Bartlett weights)."""
    x = np.asarray(x, float) - np.mean(x)
    n = len(x)
    if n < 2:
        return float("nan")
    v = np.dot(x, x) / n
    for lag in range(1, min(lags, n - 1) + 1):
        v += 2 * (1 - lag / (lags + 1)) * np.dot(x[lag:], x[:-lag]) / n
    return float(math.sqrt(max(v, 0.0) / n))


# --------------------------------------------------------------------------------------------
# The backtest


class BacktestResult(NamedTuple):
    scores: pd.DataFrame  # one row per origin and series
    summary: pd.DataFrame  # one row per method and series
    verdict: str
    training: Calibration  # the fit on data up to the cut
    model_yaml: str  # that fit as a scenario file (start at the cut)
    meta: dict

    def save(self, out_dir: str | Path, force: bool = False) -> Path:
        """scores.csv, summary.csv, pit.png, model.yaml, meta.json; atomic (temporary folder, then rename)."""

        def write(tmp: Path) -> None:
            self.scores.to_csv(tmp / "scores.csv", index=False)
            self.summary.to_csv(tmp / "summary.csv", index=False)
            pit_figure(self.scores, self.summary, self.meta).savefig(tmp / "pit.png", dpi=110)
            (tmp / "model.yaml").write_text(self.model_yaml, encoding="utf-8")
            (tmp / "meta.json").write_text(json.dumps({**self.meta, "verdict": self.verdict}, indent=2, default=str))

        return write_folder(out_dir, write, force)


def backtest(
    frame: pd.DataFrame,
    n_regimes: int,
    train_until,
    *,
    horizon_months: int = 12,
    step_months: int = 12,
    n_paths: int = 20_000,
    seed: int = 0,
    n_starts: int = 10,
    device: str = "cpu",
    posterior: bool = False,
    posterior_draws: int = 64,
    draws: int = 1000,
    chains: int = 4,
    progress=None,
    sampler_progress=None,
) -> BacktestResult:
    """Fit on ``frame`` up to ``train_until``, forecast each origin's ``horizon_months`` returns, score them
    beside the bootstrap. ``progress(done, total)`` is called after each origin, ``sampler_progress``
    (``posterior.SamplerProgress``) as NUTS runs.

    ``posterior``: also sample the posterior on the training window (``chains`` x ``draws``, once) and score
    its predictive distribution: ``posterior_draws`` draws, evenly thinned over all chains, each simulated with
    one block of ``BLOCK_PATHS`` paths (so ``posterior_draws`` x 16,384 paths an origin, whatever ``n_paths``)
    from its own start (its filtered law at the origin, one step on), in one run per origin."""
    t0 = time.perf_counter()
    source = frame.attrs.get("source", "<data>")
    if frame.shape[1] < 2:
        raise DataError(source, "a backtest needs at least two asset columns (small, large: excess = first - second)")
    if posterior and posterior_draws * BLOCK_PATHS > MAX_KEEP_PATHS:
        raise CapsimError(
            f"posterior_draws must be at most {MAX_KEEP_PATHS // BLOCK_PATHS} (one block of {BLOCK_PATHS} paths "
            f"each, all kept for scoring), got {posterior_draws}",
            ("lower posterior_draws", "lower --posterior-draws"),
        )
    if horizon_months < 1 or step_months < 1:
        raise CapsimError(f"horizon and step must be at least 1 month, got {horizon_months} and {step_months}")
    freq = frame.attrs.get("frequency", "monthly")
    f = {"monthly": 12, "weekly": 52, "daily": 252}[freq]
    H = steps_to_month(horizon_months, f)
    S = max(1, steps_to_month(step_months, f))
    cut = pd.Timestamp(train_until)
    n_train = int((frame.index <= cut).sum())
    if n_train == 0:
        raise DataError(source, f"no rows on or before the cut {cut.date()} (data start {frame.index[0].date()})")
    last_origin = len(frame) - 1 - H
    origins = list(range(n_train - 1, last_origin + 1, S))
    if not origins:
        raise DataError(
            source,
            f"the cut {cut.date()} leaves no whole {horizon_months}-month window to forecast: "
            f"the data end {frame.index[-1].date()}",
            ("cut earlier or shorten horizon_months", "cut earlier or shorten --horizon"),
        )
    train = frame.iloc[:n_train].copy()
    train.attrs.update(frame.attrs)
    cal = calibrate(train, n_regimes, n_starts=n_starts, seed=seed)
    assets = list(map(str, frame.columns))
    first, second = assets[0], assets[1]
    series = assets + ["excess"]
    y = log_returns(frame)
    filtered = filter_probabilities(y, cal.fit.params)  # row t uses rows 0..t only
    P = cal.fit.params.transition
    train_log = y[:n_train]
    rng = np.random.default_rng(seed)
    batch = -(-n_paths // BLOCK_PATHS) * BLOCK_PATHS  # every origin in one jitted call of one shape
    post = (
        _posterior_setup(cal, y, n_train, draws, chains, posterior_draws, seed, sampler_progress) if posterior else None
    )

    rows = []
    for j, i in enumerate(origins):
        start = filtered[i] @ P
        sc = to_scenario(cal, name="backtest", horizon_months=horizon_months, start=start)
        forecasts = {"model": simulated_draws(sc, assets, horizon_months, n_paths, seed + j, device, batch)}
        if post is not None:
            pp = _posterior_predictive(cal, post, i, horizon_months, seed + j, device)
            forecasts["posterior"] = with_excess(dict(zip(assets, pp.T)))
        forecasts["bootstrap"] = bootstrap_draws(rng, train_log, n_paths, H, assets)
        rows += origin_rows(frame, y, i, H, forecasts, {f"start_{r}": float(p) for r, p in zip(cal.regimes, start)})
        if progress:
            progress(j + 1, len(origins))
    scores = pd.DataFrame(rows)
    lags = max(0, math.ceil(H / S) - 1)
    summary = summarise(scores, series, lags)
    meta = {
        "version": __version__,
        "data": source,
        "frequency": freq,
        "assets": assets,
        "compare": [first, second],
        "regimes": n_regimes,
        "train_until": str(cut.date()),
        "training_sample": f"{frame.index[0].date()} .. {frame.index[n_train - 1].date()} ({n_train} rows)",
        "training_loglik": cal.fit.loglik,
        "training_bic": cal.fit.bic,
        "horizon_months": horizon_months,
        "step_months": step_months,
        "origins": len(origins),
        "first_origin": str(frame.index[origins[0]].date()),
        "last_origin": str(frame.index[origins[-1]].date()),
        "overlapping_windows": S < H,
        "newey_west_lags": lags,
        "n_paths": n_paths,
        "seed": seed,
        "n_starts": n_starts,
        "method": METHOD,
        "baseline": BASELINE,
        **(post["meta"] if post is not None else {}),
        "device": device,
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }
    model_yaml = scenario_text(cal, name="backtest-training-fit", horizon_months=horizon_months)
    return BacktestResult(scores, summary, verdict(summary, meta), cal, model_yaml, meta)


def _diff_t(d: pd.DataFrame, a: str, b: str, lags: int) -> float:
    """t statistic of the mean CRPS difference a - b (Newey-West standard error)."""
    diff = (d[f"{a}_crps"] - d[f"{b}_crps"]).to_numpy()
    se = newey_west_se(diff, lags)
    return diff.mean() / se if se > 0 else float("nan")


def summarise(scores: pd.DataFrame, series: list[str], lags: int) -> pd.DataFrame:
    """Per method and series: n, mean CRPS, CRPS skill against the bootstrap with the t statistic of the mean
    CRPS difference (and, for the posterior, against the plug-in model), coverage of the 50% and 90%
    intervals, PIT mean and KS p-value. Methods: model (the plug-in ML fit), posterior (when scored) and
    bootstrap."""
    from scipy import stats  # here: scipy.stats is slow to import, and only a backtest needs it

    methods = [m for m in ("model", "posterior", "bootstrap") if f"{m}_crps" in scores.columns]
    nan = float("nan")
    out = []
    for s in series:
        d = scores[scores["series"] == s]
        boot_crps = d["bootstrap_crps"].mean()
        for m in methods:
            pit = d[f"{m}_pit"].to_numpy()
            crps = d[f"{m}_crps"].mean()
            out.append(
                {
                    "method": m,
                    "series": s,
                    "n_origins": len(d),
                    "crps_mean": crps,
                    "crps_skill_vs_bootstrap": 1 - crps / boot_crps if boot_crps > 0 else nan,
                    "crps_diff_t": _diff_t(d, m, "bootstrap", lags) if m != "bootstrap" else nan,
                    **(
                        {
                            "crps_skill_vs_model": 1 - crps / d["model_crps"].mean(),
                            "crps_diff_t_vs_model": _diff_t(d, m, "model", lags) if m == "posterior" else nan,
                        }
                        if "posterior" in methods
                        else {}
                    ),
                    "coverage50": d[f"{m}_in50"].mean(),
                    "coverage90": d[f"{m}_in90"].mean(),
                    "pit_mean": pit.mean(),
                    "pit_sd": pit.std(ddof=1) if len(pit) > 1 else float("nan"),
                    "pit_ks_pvalue": stats.kstest(pit, "uniform").pvalue if len(pit) else float("nan"),
                }
            )
    return pd.DataFrame(out)


def near_nominal(coverage: float, nominal: float, n_eff: float) -> bool:
    """Within two binomial standard errors of the nominal rate."""
    return abs(coverage - nominal) <= 2 * math.sqrt(nominal * (1 - nominal) / max(n_eff, 1))


def verdict(summary: pd.DataFrame, meta: dict) -> str:
    """One line: which method wins on CRPS per series (and whether the gap is beyond 2 standard errors), and
    whether each method's interval coverage is near nominal."""
    frame_of = lambda m: summary[summary["method"] == m].set_index("series")  # noqa: E731
    model, boot = frame_of("model"), frame_of("bootstrap")
    n = int(model["n_origins"].iloc[0])
    n_eff = n / (1 + meta["newey_west_lags"])
    wins = [s for s in model.index if model.at[s, "crps_mean"] < boot.at[s, "crps_mean"]]
    sig = [s for s in model.index if abs(model.at[s, "crps_diff_t"]) > 2]
    parts = ", ".join(f"{s} {100 * model.at[s, 'crps_skill_vs_bootstrap']:+.1f}%" for s in model.index)
    head = (
        "model beats the bootstrap"
        if len(wins) > len(model) / 2
        else "the bootstrap beats the model"
        if len(wins) < len(model) / 2
        else "model and bootstrap tie"
    )

    def coverage(frame):
        ok = all(
            near_nominal(frame.at[s, f"coverage{c}"], NOMINAL[f"in{c}"], n_eff) for s in frame.index for c in (50, 90)
        )
        c50 = "/".join(f"{frame.at[s, 'coverage50']:.2f}" for s in frame.index)
        c90 = "/".join(f"{frame.at[s, 'coverage90']:.2f}" for s in frame.index)
        return f"{'near' if ok else 'NOT near'} nominal (50%: {c50}; 90%: {c90})"

    three = ""
    if "posterior" in set(summary["method"]):
        post = summary[summary["method"] == "posterior"].set_index("series")
        best = {
            s: min(("model", "posterior", "bootstrap"), key=lambda m, s=s: frame_of(m).at[s, "crps_mean"])
            for s in model.index
        }
        psig = [s for s in post.index if abs(post.at[s, "crps_diff_t_vs_model"]) > 2]
        skill = lambda col: ", ".join(f"{s} {100 * post.at[s, col]:+.1f}%" for s in post.index)  # noqa: E731
        three = (
            f"; posterior vs plug-in model: skill {skill('crps_skill_vs_model')} "
            f"({'beyond 2 SE for ' + ', '.join(psig) if psig else 'no difference beyond 2 SE'}), posterior vs "
            f"bootstrap {skill('crps_skill_vs_bootstrap')}; best on CRPS: "
            f"{', '.join(f'{s} {m}' for s, m in best.items())}; coverage posterior {coverage(post)}"
        )

    return (
        f"verdict: {head} on mean CRPS for {max(len(wins), len(model) - len(wins))} of {len(model)} series "
        f"(skill {parts}; "
        f"{'significant at 2 SE for ' + ', '.join(sig) if sig else 'no difference beyond 2 SE'}); "
        f"coverage model {coverage(model)}, bootstrap {coverage(boot)}{three} [{n} origins from "
        f"{meta['first_origin']}, cut {meta['train_until']}, {meta['horizon_months']}-month horizon, series "
        f"{'/'.join(model.index)}]"
    )


def _posterior_setup(cal, y, n_train, draws, chains, n_keep, seed, progress=None) -> dict:
    """Sample the posterior on the training rows once (``posterior.sample_checked``: a second run when the
    first leaves a handful of divergences); keep ``n_keep`` draws evenly spaced over all chains, with each
    draw's filtered regime probabilities at every date (row t uses data up to t only)."""
    from .posterior import filtered_draws, sample_checked

    fit, diag = sample_checked(cal, y[:n_train], draws=draws, chains=chains, seed=seed, progress=progress)
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    keep = np.unique(np.linspace(0, draws * chains - 1, n_keep).round().astype(int))
    pick = {k: flat(getattr(fit, k))[keep] for k in ("drift", "vol", "corr", "transition")}
    filtered = filtered_draws(y, pick["drift"], pick["vol"], pick["corr"], pick["transition"], cal.steps_per_year)
    rhat, bulk, tail = diag.worst()
    meta = {
        "posterior_method": POSTERIOR_METHOD,
        "posterior_sampler": f"{chains} chains x {draws} draws after {fit.warmup} warm-up, target acceptance "
        f"{fit.target_accept}, seed {seed}" + (f"; a second run: {fit.rerun}" if fit.rerun else ""),
        "posterior_draws_used": len(keep),
        "posterior_diagnostics": {
            "max_rhat": rhat,
            "min_ess_bulk": bulk,
            "min_ess_tail": tail,
            "divergences": diag.divergences,
            "failures": diag.failures(),
        },
    }
    return {**pick, "filtered": filtered, "meta": meta}


def _posterior_predictive(cal, post, i, horizon_months, seed, device) -> np.ndarray:
    """[paths, A] ``horizon_months`` total simple returns from origin row ``i``: one block of
    ``BLOCK_PATHS`` paths per kept draw, each with that draw's parameters and its own start (its filtered law at
    the origin, moved one step on), all in one ``simulate`` call (the engine's per-group parameters)."""
    n = len(post["drift"])
    start = np.einsum("dk,dkj->dj", post["filtered"][:, i], post["transition"])
    table = model_draws_table(
        cal.regimes, cal.assets, post["drift"], post["vol"], post["corr"], post["transition"], start
    )
    sc = to_scenario(cal, name="backtest-posterior", horizon_months=horizon_months, start=start.mean(axis=0))
    res = simulate(with_parameter_draws(sc, table), n_paths=n * BLOCK_PATHS, seed=seed, device=device)
    return res.draws(horizon_months).to_numpy()


def pit_figure(scores: pd.DataFrame, summary: pd.DataFrame, meta: dict):
    """PIT histograms: one column per series, a row per method (model, posterior when scored, bootstrap);
    uniform = flat at 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys(scores["series"]))
    rows = [(m, c) for m, c in (("model", "tab:blue"), ("posterior", "tab:green"), ("bootstrap", "tab:gray"))]
    rows = [(m, c) for m, c in rows if f"{m}_pit" in scores.columns]
    fig, axes = plt.subplots(
        len(rows), len(series), figsize=(3.6 * len(series), 3 * len(rows)), sharex=True, squeeze=False
    )
    bins = np.linspace(0, 1, 11)
    for r, (m, color) in enumerate(rows):
        for c, s in enumerate(series):
            ax = axes[r, c]
            pit = scores.loc[scores["series"] == s, f"{m}_pit"]
            ax.hist(pit, bins=bins, density=True, color=color, alpha=0.75, edgecolor="white")
            ax.axhline(1.0, color="k", linewidth=0.9, linestyle="--")
            row = summary[(summary["method"] == m) & (summary["series"] == s)].iloc[0]
            ax.set_title(
                f"{m}: {s}\nCRPS {row['crps_mean']:.4f}, KS p {row['pit_ks_pvalue']:.2f}, "
                f"cov50/90 {row['coverage50']:.2f}/{row['coverage90']:.2f}",
                fontsize=9,
            )
            ax.set_xlim(0, 1)
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel("density")
            if r == len(rows) - 1:
                ax.set_xlabel("PIT")
    fig.suptitle(
        f"PIT of {meta['horizon_months']}-month returns: {meta['origins']} origins "
        f"{meta['first_origin']} .. {meta['last_origin']} (fit up to {meta['train_until']}, "
        f"{meta['regimes']} regimes)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


__all__ = [
    "BASELINE",
    "METHOD",
    "BacktestResult",
    "backtest",
    "crps_samples",
    "newey_west_se",
    "pit_value",
    "summarise",
    "verdict",
]
