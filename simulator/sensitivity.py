"""Variance-based sensitivity of a scenario's per-draw figures to its uncertain fields (`capsim sensitivity`,
docs/sensitivity.md).

Each factor is one uncertain field in its own distribution (a Dirichlet row is one factor: a SALib group),
or a point field brought in over a uniform range (``vary``). SALib's Saltelli/Sobol plan (N (2F + 2) rows
for F factors, second order on) gives uniforms, which each field's quantile function turns into values; the
rows are run as parameter draws (``with_parameter_draws``) of G paths each, and SALib's estimators give the
first-order and total indices with bootstrap intervals. The tornado points (each factor at its 5% and 95%
quantiles, the others at their medians) run in the same pass.

Monte Carlo noise within draws adds its variance to the figures' and biases every total index up by its
share; the indices here are corrected for it (``noise_share``, the estimated noise variance over the
figures' variance, is reported beside them): S = S_raw / (1 - s) and ST = (ST_raw - s) / (1 - s).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from . import __version__
from .errors import CapsimError
from .output import write_folder
from .run import scenario_meta, simulate
from .scenario import (
    DEFAULT_DRAW_PATHS,
    Dirichlet,
    Scenario,
    ScenarioError,
    distributions,
    draw_paths_problem,
    posterior_path,
)
from .summary import MAX_KEEP_PATHS, draw_metrics
from .uncertainty import quantile, with_parameter_draws

TORNADO_QUANTILES = (0.05, 0.95)
TORNADO_PATHS = 1 << 16  # paths behind each tornado point (whole draws of G paths)
CONF_LEVEL = 0.95
RESAMPLES = 200  # bootstrap resamples of SALib's intervals
MAX_SAMPLES = 1 << 16


class SensitivityError(CapsimError):
    """A sensitivity analysis that cannot run: no uncertain field, a bad --vary, a bad sample size or metric."""


@dataclass
class Factor:
    """One factor of the analysis: ``name`` (a field path, or a probability row's path for a Dirichlet row),
    the field paths it sets, and ``values(u)``: plan uniforms [n, len(paths)] -> field values [n, len(paths)]."""

    name: str
    paths: list[str]
    values: object
    describe: str

    def at(self, q: float) -> np.ndarray:
        """The factor's field values at quantile ``q`` (a Dirichlet row: its first entry at that quantile of its
        beta marginal, the others in proportion to their means)."""
        return self.values(np.full((1, len(self.paths)), q), tornado=True)[0]


def dist_factor(path: str, field: str, dist) -> Factor:
    """The factor of the distribution ``dist`` on ``field`` at ``path``."""
    if isinstance(dist, Dirichlet):
        from scipy import stats

        alpha = np.array(list(dist.dirichlet.values()), float)

        def values(u, tornado=False):
            if tornado:  # entry 0 at its beta marginal's quantile, the rest at their means rescaled
                first = stats.beta(alpha[0], alpha.sum() - alpha[0]).ppf(u[:, 0])
                rest = alpha[1:] / alpha[1:].sum()
                return np.column_stack([first, (1 - first)[:, None] * rest])
            g = stats.gamma(alpha).ppf(u)  # independent gammas, normalised: a Dirichlet row
            return g / g.sum(axis=1, keepdims=True)

        return Factor(path, [f"{path}.{k}" for k in dist.dirichlet], values, str(dist))
    return Factor(path, [path], lambda u, tornado=False: quantile(dist, field, u), str(dist))


def uniform_factor(path: str, lo: float, hi: float) -> Factor:
    return Factor(path, [path], lambda u, tornado=False: lo + (hi - lo) * u, f"uniform [{lo:g}, {hi:g}] (--vary)")


def parse_vary(text: str) -> tuple[str, float, float]:
    """'FIELD=LO:HI' -> (field, lo, hi); ``SensitivityError`` naming the text when it is not that or LO >= HI."""
    field, sep, spec = str(text).partition("=")
    field = field.strip()
    try:
        lo, hi = (float(v) for v in spec.split(":"))
    except ValueError:
        raise SensitivityError(f"{text!r}: give FIELD=LO:HI (e.g. regimes.expansion.drift.large=0.06:0.11)") from None
    if not sep or not field:
        raise SensitivityError(f"{text!r}: give FIELD=LO:HI (e.g. regimes.expansion.drift.large=0.06:0.11)")
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise SensitivityError(f"{field}: the range [{lo:g}, {hi:g}] is empty; give LO < HI")
    return field, lo, hi


def factors(sc: Scenario, vary: dict[str, tuple[float, float]] | None = None) -> list[Factor]:
    """The factors of ``sc``: every distribution in file order, then each ``vary`` field (path -> (lo, hi)),
    a point field brought in over a uniform range. ``ScenarioError`` naming the field when a ``vary`` field
    already has a distribution or is not one that parameter draws can set, or its range breaks the field's
    rule; ``SensitivityError`` when there is no factor or the scenario takes posterior draws."""
    vary = dict(vary or {})
    if posterior_path(sc) is not None or sc.draw_values is not None:
        raise ScenarioError(
            sc.source,
            [("uncertainty.posterior", "sensitivity needs distributions in the file, not given parameter draws")],
        )
    dists = distributions(sc)
    out = [dist_factor(path, field, dist) for path, (field, dist) in dists.items()]
    problems = []
    for path, (lo, hi) in vary.items():
        if lo >= hi:
            problems.append((path, f"the range [{lo:g}, {hi:g}] is empty; give LO < HI"))
        elif path in dists or any(path.startswith(p + ".") for p in dists):
            problems.append((path, "has a distribution in the file already; it is a factor in its own law"))
    if problems:
        raise ScenarioError(sc.source, problems)
    if vary:  # the field must exist and take draws; its range must keep the field's rules (both ends checked)
        with_parameter_draws(sc, {path: np.array(bounds, float) for path, bounds in vary.items()})
    out += [uniform_factor(path, lo, hi) for path, (lo, hi) in vary.items()]
    if not out:
        raise SensitivityError(
            f"{sc.source}: no uncertain field: give fields distributions in the file, or bring point fields in "
            "with vary (--vary FIELD=LO:HI)"
        )
    return out


def sobol_plan(fs: list[Factor], n_samples: int, seed: int) -> tuple[dict, np.ndarray]:
    """SALib's problem and its Sobol plan of uniforms [N (2F + 2), columns] (second order; scrambled with
    ``seed``)."""
    from SALib.sample import sobol

    names = [p for f in fs for p in f.paths]
    groups = [f.name for f in fs for _ in f.paths]
    problem = {"num_vars": len(names), "names": names, "bounds": [[0.0, 1.0]] * len(names), "groups": groups}
    return problem, sobol.sample(problem, n_samples, calc_second_order=True, seed=seed)


def field_table(fs: list[Factor], u: np.ndarray) -> dict[str, np.ndarray]:
    """Field path -> values [n] of the plan's uniforms ``u`` [n, columns] (columns in factor order)."""
    table, col = {}, 0
    for f in fs:
        k = len(f.paths)
        x = np.asarray(f.values(u[:, col : col + k]), float).reshape(len(u), k)
        table.update({p: x[:, i] for i, p in enumerate(f.paths)})
        col += k
    return table


def tornado_table(fs: list[Factor]) -> tuple[dict[str, np.ndarray], list[tuple[str, float]]]:
    """The tornado points (all at the medians, then each factor at its 5% and 95% quantiles, the others at their
    medians) as a field table, and each point's (factor, quantile) label ('' and 0.5 for the baseline)."""
    median = {p: v for f in fs for p, v in zip(f.paths, f.at(0.5))}
    rows, labels = [median], [("", 0.5)]
    for f in fs:
        for q in TORNADO_QUANTILES:
            rows.append({**median, **dict(zip(f.paths, f.at(q)))})
            labels.append((f.name, q))
    return {p: np.array([r[p] for r in rows]) for p in median}, labels


def run_draws(
    sc: Scenario,
    table: dict[str, np.ndarray],
    draw_paths: int,
    seed: int,
    horizon_months: int | None,
    device: str = "cpu",
    progress=None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[int], dict]:
    """Simulate every row of ``table`` (field path -> [D] values) as a parameter draw of ``draw_paths`` paths:
    (figures, noise variances) as ``summary.draw_metrics`` ([D, R] each), the report months, and facts for
    meta.json. Draws run in passes of at most MAX_KEEP_PATHS paths (every path kept for the per-draw
    quantiles), each pass on its own random stream and all of one shape: one compile."""
    D = len(next(iter(table.values())))
    per_pass = max(1, MAX_KEEP_PATHS // draw_paths)
    passes = -(-D // per_pass)
    size = -(-D // passes)  # draws per pass, balanced; the last pass is padded with repeats of its last draw
    values, noise = {}, {}
    months, backend, done = None, None, 0
    for k in range(passes):
        idx = np.minimum(np.arange(k * size, (k + 1) * size), D - 1)
        part = with_parameter_draws(sc, {p: v[idx] for p, v in table.items()})
        res = simulate(
            part,
            size * draw_paths,
            seed,
            horizon_months=horizon_months,
            device=device,
            fan_in_background=False,
            stream=k,
            draw_paths=draw_paths,
            fan=False,
        )
        got, var = draw_metrics(res._stats, draw_paths)
        n_real = min(size, D - k * size)
        for name in got:
            values.setdefault(name, []).append(got[name][:n_real])
            noise.setdefault(name, []).append(var[name][:n_real])
        months, backend = list(res.model.report_months), res.meta["backend"]
        done += size * draw_paths
        if progress is not None:
            progress(done)
    facts = {"passes": passes, "simulated_paths": done, "backend": backend}
    cat = {name: np.concatenate(v) for name, v in values.items()}
    return cat, {name: np.concatenate(v) for name, v in noise.items()}, months, facts


class SensitivityResult:
    """A finished analysis: ``table`` (sensitivity.csv), ``tornado`` (tornado.csv), ``meta``, ``save``."""

    def __init__(self, scenario: Scenario, table: pd.DataFrame, tornado: pd.DataFrame, meta: dict):
        self.scenario, self.table, self.tornado, self.meta = scenario, table, tornado, meta

    def save(self, out_dir: str | os.PathLike, force: bool = False) -> Path:
        """Write sensitivity.csv, tornado.csv, tornado.png and meta.json into ``out_dir`` atomically."""
        from .plots import save_figure, tornado_figure

        def write(tmp: Path) -> None:
            self.table.to_csv(tmp / "sensitivity.csv", index=False)
            self.tornado.to_csv(tmp / "tornado.csv", index=False)
            m = self.meta
            title = (
                f"{self.scenario.name}: {m['tornado_metric']} at {m['tornado_horizon']} months, "
                f"fields from their 5% to 95% quantiles"
            )
            figure = tornado_figure(self.tornado, m["tornado_metric"], m["tornado_horizon"], title)
            save_figure(figure, tmp / "tornado.png")
            (tmp / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))

        return write_folder(out_dir, write, force)


def check_metrics(sc: Scenario, metrics: list[str]) -> list[str]:
    """``metrics`` (default: all per-draw figures), each one of p_outperform, excess_median, <asset>_var95."""
    allowed = ["p_outperform", "excess_median", *(f"{a}_var95" for a in sc.asset_keys)]
    bad = [m for m in metrics if m not in allowed]
    if bad:
        raise SensitivityError(f"metric {bad[0]!r} is not a per-draw figure; choose from {', '.join(allowed)}")
    return list(metrics) or allowed


def sensitivity(
    scenario: Scenario,
    n_samples: int = 512,
    seed: int = 0,
    *,
    metrics: list[str] | tuple = (),
    horizons: list[int] | tuple = (),
    vary: dict[str, tuple[float, float]] | None = None,
    draw_paths: int | None = None,
    device: str = "cpu",
    progress=None,
) -> SensitivityResult:
    """First-order and total Sobol indices of each factor (``factors``) for the per-draw ``metrics`` (default:
    p_outperform, excess_median, each asset's var95) at ``horizons`` (months; default: every report horizon
    of the file), from ``n_samples`` base samples (a power of two; N (2F + 2) draws) of ``draw_paths`` paths
    each (default 256, ``scenario.DEFAULT_DRAW_PATHS``). The run goes to the
    largest horizon asked. ``progress(paths_done, paths_total)``."""
    from SALib.analyze import sobol

    n_samples = int(n_samples)
    if n_samples < 2 or n_samples > MAX_SAMPLES or n_samples & (n_samples - 1):
        raise SensitivityError(
            f"samples must be a power of two in 2..{MAX_SAMPLES:,} (the Sobol sequence's balance), got {n_samples}"
        )
    metrics = check_metrics(scenario, list(metrics))
    H = max(horizons) if horizons else scenario.horizon_months
    wanted = sorted(set(horizons)) if horizons else scenario.report_months_for(H)
    if not 1 <= H <= scenario.horizon_months:
        raise SensitivityError(f"horizon {H} months: give horizons in 1..{scenario.horizon_months} (the file's)")
    kept = scenario.report_months_for(H)
    if missing := [h for h in wanted if h not in kept]:
        raise SensitivityError(
            f"horizon {missing[0]} months: paths are kept at the report horizons {kept} of a run to {H} months; "
            "choose among them, or add it to the file's report_months"
        )
    G = int(draw_paths or DEFAULT_DRAW_PATHS)
    if problem := draw_paths_problem(G):
        raise SensitivityError(f"draw_paths: {problem}")
    fs = factors(scenario, vary)
    problem, u = sobol_plan(fs, n_samples, seed)
    plan_table = field_table(fs, u)
    tornado, labels = tornado_table(fs)
    reps = max(1, TORNADO_PATHS // G)
    table = {p: np.concatenate([plan_table[p], np.repeat(tornado[p], reps)]) for p in plan_table}
    n_plan, total = len(u), len(u) + reps * len(labels)
    t0 = time.perf_counter()
    on_paths = None if progress is None else (lambda done: progress(done, total * G))
    values, noise, months, facts = run_draws(scenario, table, G, seed, H, device, on_paths)
    wall = time.perf_counter() - t0
    rows, steps = [], len(u) // n_samples
    for name in metrics:
        for h in wanted:
            r = months.index(h)
            y, s2 = values[name][:n_plan, r], noise[name][:n_plan, r]
            AB = np.concatenate([y[0::steps], y[steps - 1 :: steps]])
            var = float(np.var(AB))
            share = float(np.nanmean(s2) / var) if var > 0 else math.nan
            if var > 0:
                res = sobol.analyze(
                    problem, y, calc_second_order=True, num_resamples=RESAMPLES, conf_level=CONF_LEVEL, seed=seed
                )
            for i, f in enumerate(fs):
                row = {"field": f.name, "metric": name, "horizon_months": h, "distribution": f.describe}
                if var > 0:
                    row.update(corrected(res, i, share))
                else:  # the figure does not move at all: no field moves it
                    row.update(dict.fromkeys(("S1", "S1_low", "S1_high", "ST", "ST_low", "ST_high"), 0.0))
                row["noise_share"] = share
                row["metric_sd"] = math.sqrt(var)
                rows.append(row)
    frame = pd.DataFrame(rows)
    tornado_rows = tornado_frame(fs, labels, tornado, values, n_plan, reps, metrics, wanted, months)
    meta = {
        "version": __version__,
        "kind": "sensitivity",
        **scenario_meta(scenario),
        "factors": {f.name: {"fields": f.paths, "distribution": f.describe} for f in fs},
        "metrics": metrics,
        "horizons": wanted,
        "samples": n_samples,
        "plan_draws": n_plan,
        "tornado_draws": reps * len(labels),
        "draw_paths": G,
        "second_order": True,
        "conf_level": CONF_LEVEL,
        "bootstrap_resamples": RESAMPLES,
        "noise_corrected": True,
        "tornado_metric": metrics[0],
        "tornado_horizon": wanted[-1],
        "seed": seed,
        **facts,
        "wall_seconds": round(wall, 4),
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }
    return SensitivityResult(scenario, frame, tornado_rows, meta)


def corrected(res: dict, i: int, share: float) -> dict:
    """Factor ``i``'s indices from SALib's ``res``, corrected for the noise share ``share`` (module docstring),
    with their intervals (index -+ SALib's half-width, scaled alike)."""
    s = share if math.isfinite(share) and share < 1 else 0.0
    scale = 1 / (1 - s)
    s1, s1c = res["S1"][i] * scale, res["S1_conf"][i] * scale
    st, stc = (res["ST"][i] - s) * scale, res["ST_conf"][i] * scale
    return {"S1": s1, "S1_low": s1 - s1c, "S1_high": s1 + s1c, "ST": st, "ST_low": st - stc, "ST_high": st + stc}


def tornado_frame(fs, labels, tornado, values, n_plan, reps, metrics, horizons, months) -> pd.DataFrame:
    """tornado.csv: per metric, horizon and factor, the factor's values at its 5% and 95% quantiles, the metric
    there (mean over the point's draws) and at the baseline (every factor at its median), and the swing."""
    rows = []
    for name in metrics:
        for h in horizons:
            r = months.index(h)
            y = values[name][n_plan:, r].reshape(len(labels), reps).mean(axis=1)
            for k, f in enumerate(fs):
                lo, hi = 1 + 2 * k, 2 + 2 * k
                rows.append(
                    {
                        "field": f.name,
                        "metric": name,
                        "horizon_months": h,
                        "value_q05": tornado[f.paths[0]][lo],
                        "value_q95": tornado[f.paths[0]][hi],
                        "metric_q05": y[lo],
                        "metric_q95": y[hi],
                        "baseline": y[0],
                        "swing": abs(y[hi] - y[lo]),
                    }
                )
    return pd.DataFrame(rows)
