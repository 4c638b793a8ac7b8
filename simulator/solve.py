"""Reverse stress: where a field (or two or three) makes a figure cross a target (`capsim solve`,
docs/sensitivity.md).

Every evaluation is one run of the same paths (one seed: common random numbers), the scenario with the
``--set`` fields fixed at the values tried (their distributions, if any, replaced by the value; the file's
other distributions drawn as usual), so the figure moves smoothly with the fields and its differences are
the fields' doing.

One field: the ends of [LO, HI], then the Illinois variant of regula falsi on the bracket, stopping as
soon as the figure is within one Monte Carlo standard error of the target (no further step could be told
from noise), the bracket is narrower than 1e-6 of the range, or MAX_EVALS runs are spent. The answer is the
secant root of the last bracket; its interval is +- 1.96 SE / |slope| (the whole curve shifts with the
shared paths' noise, by about one SE). Two or three fields, each with a distribution: the most plausible
crossing (Breuer et al., 2009): the point of smallest distance sqrt(sum z_i^2) from the medians in the fields'
normal scores z_i = Phi^-1(F_i(x_i)) on which the figure equals the target, found by the Hasofer-Lind /
Rackwitz-Fiessler iteration with gradients from forward differences under common random numbers.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from . import __version__
from .errors import CapsimError
from .output import write_folder
from .run import plan, run_settings, scenario_meta, simulate
from .scenario import Dirichlet, Scenario, ScenarioError, distributions, parse_scenario, posterior_path
from .sweep import with_field
from .uncertainty import law, with_parameter_draws

MAX_EVALS = 10  # runs of one field's search, the ends included
MAX_ITERATIONS = 8  # HL-RF steps of the most plausible point
Z_LIMIT = 4.0  # normal scores searched (|z| at most this, inside the --set range)
FD_STEP = 0.1  # forward-difference step in normal scores
Z95 = 1.959963984540054


class SolveError(CapsimError):
    """A reverse stress test that cannot run: a bad metric, target, range or field."""


def metric_names(sc: Scenario) -> list[str]:
    """The figures ``solve`` can aim at: those with a Monte Carlo standard error (probabilities)."""
    return ["p_outperform", "p_outperform_count", *(f"{a}_p_loss" for a in sc.asset_keys)]


def figure(res, metric: str) -> tuple[float, float]:
    """(value, standard error) of ``metric`` at the run's horizon (its last report horizon)."""
    s = res._stats
    if metric == "p_outperform":
        return float(s.p_outperform[-1]), float(s.p_outperform_se[-1])
    if metric == "p_outperform_count":
        return float(s.p_count[-1]), float(s.p_count_se[-1])
    a = list(res.model.asset_keys).index(metric.removesuffix("_p_loss"))
    return float(s.p_loss[-1, a]), float(s.p_loss_se[-1, a])


class Problem:
    """The scenario with its ``--set`` fields to be fixed, and the run settings of every evaluation."""

    def __init__(self, sc: Scenario, ranges: dict[str, tuple[float, float]], metric: str, target: float, settings):
        self.sc, self.ranges, self.metric, self.target, self.settings = sc, ranges, metric, target, settings
        dists = distributions(sc)
        self.laws = {f: law(dists[f][1], dists[f][0]) if f in dists else None for f in ranges}
        data = sc.model_dump()
        for f in ranges:
            if f in dists:  # the distribution gives way to a number (its range's midpoint) set at each evaluation
                data = _put_number(data, f, 0.5 * sum(ranges[f]))
        self.data = data
        self.evaluations: list[dict] = []
        self.cache: dict[tuple, tuple[float, float]] = {}

    def at(self, x: dict[str, float]) -> tuple[float, float]:
        """(metric, SE) with the fields at ``x``, from one run (recorded in ``evaluations``; a point run before
        is not run again)."""
        key = tuple(round(float(v), 12) for v in x.values())
        if key in self.cache:
            return self.cache[key]
        point = self.data
        for f, v in x.items():
            point = with_field(point, f, float(v))
        label = ", ".join(f"{f}={v:.6g}" for f, v in x.items())
        sc = parse_scenario(point, source=f"{self.sc.source} with {label}")
        sc._sha256 = self.sc.sha256
        res = simulate(sc, **self.settings, fan=False)
        value, se = figure(res, self.metric)
        self.evaluations.append({**x, self.metric: value, f"{self.metric}_se": se})
        self.cache[key] = value, se
        return value, se


def _put_number(data: dict, field: str, value: float) -> dict:
    """``data`` with the distribution at dotted ``field`` replaced by ``value``."""
    keys, node = field.split("."), data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[_dict_key(node, key)]
    node[_dict_key(node, keys[-1])] = float(value)
    return data


def _dict_key(node: dict, key: str):
    if key in node:
        return key
    return next(k for k in node if isinstance(k, int | float) and f"{k:g}" == key)


def check(
    sc: Scenario, ranges: dict[str, tuple[float, float]], metric: str, target: float
) -> dict[str, tuple[float, float]]:
    """Refuse, before any run, what ``solve`` cannot do, naming the field: an unknown metric, a target outside
    [0, 1], no field or more than three, an empty range, a field the scenario lacks or that parameter draws
    cannot set, a range breaking the field's rule, an entry of a Dirichlet row, or (with several fields) a
    field without a distribution."""
    if metric not in metric_names(sc):
        raise SolveError(f"metric {metric!r}: choose one of {', '.join(metric_names(sc))} (a figure with an SE)")
    if not (math.isfinite(target) and 0 <= target <= 1):
        raise SolveError(f"target {target:g} for {metric}: a probability's target must lie in [0, 1]")
    if not 1 <= len(ranges) <= 3:
        raise SolveError(f"give one, two or three fields to set, got {len(ranges)}")
    if posterior_path(sc) is not None or sc.draw_values is not None:
        raise ScenarioError(sc.source, [("uncertainty.posterior", "solve needs a scenario without given draws")])
    dists = distributions(sc)
    problems = []
    for f, (lo, hi) in ranges.items():
        row = f.rsplit(".", 1)[0]
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            problems.append((f, f"the range [{lo:g}, {hi:g}] is empty; give LO < HI"))
        elif row in dists and isinstance(dists[row][1], Dirichlet):
            problems.append((f, f"its row {row} has a Dirichlet law; give the row fixed numbers to solve for one"))
        elif len(ranges) > 1 and (f not in dists or law(dists[f][1], dists[f][0]) is None):
            problems.append(
                (f, "has no distribution: the most plausible point of several fields needs each one's distribution")
            )
    if problems:
        raise ScenarioError(sc.source, problems)
    with_parameter_draws(sc, {f: np.array(r, float) for f, r in ranges.items()})  # exists, takes draws, rules
    return ranges


def solve(
    scenario: Scenario,
    ranges: dict[str, tuple[float, float]],
    metric: str = "p_outperform",
    target: float = 0.5,
    n_paths: int = 1_000_000,
    seed: int = 0,
    *,
    horizon_months: int | None = None,
    device: str = "cpu",
    devices: int | str = "all",
    precision: int = 32,
    method: str = "step",
    progress=None,
) -> SolveResult:
    """Where ``metric`` at the horizon (default: the file's) crosses ``target`` as the fields of ``ranges``
    (dotted path -> (LO, HI)) move in their ranges (module docstring). Every run has ``n_paths`` paths and
    ``seed``. ``progress(evaluations_done)``."""
    ranges = {f: (float(lo), float(hi)) for f, (lo, hi) in ranges.items()}
    check(scenario, ranges, metric, float(target))
    settings = run_settings(n_paths, seed, horizon_months, device, devices, precision, method)
    plan(scenario, **settings)
    prob = Problem(scenario, ranges, metric, float(target), settings)
    t0 = time.perf_counter()
    if len(ranges) == 1:
        answer = one_field(prob, progress)
    else:
        answer = most_plausible(prob, progress)
    wall = time.perf_counter() - t0
    meta = {
        "version": __version__,
        "kind": "solve",
        **scenario_meta(scenario),
        "ranges": ranges,
        "metric": metric,
        "target": float(target),
        "horizon_months": horizon_months or scenario.horizon_months,
        "answer": answer,
        "evaluations": len(prob.evaluations),
        "simulated_paths": len(prob.evaluations) * int(n_paths),
        **{k: v for k, v in settings.items() if k not in ("device", "devices", "horizon_months")},
        "wall_seconds": round(wall, 4),
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }
    table = pd.DataFrame(prob.evaluations)
    table.insert(0, "evaluation", np.arange(len(table)))
    return SolveResult(scenario, table, meta)


def one_field(prob: Problem, progress=None) -> dict:
    """The crossing of one field (module docstring): a dict with ``crossed`` and, when crossed, ``value``,
    ``low``, ``high`` (the 95% interval), ``slope`` and ``converged``; else the metric at both ends."""
    (field, (lo, hi)), t = next(iter(prob.ranges.items())), prob.target

    def g(x):
        v, se = prob.at({field: x})
        if progress is not None:
            progress(len(prob.evaluations))
        return v - t, se

    (ga, sa), (gb, sb) = g(lo), g(hi)
    if ga * gb > 0:
        return {
            "crossed": False,
            "field": field,
            "metric_at_low": ga + t,
            "metric_at_high": gb + t,
            "se_at_low": sa,
            "se_at_high": sb,
        }
    a, b, fa, fb = lo, hi, ga, gb  # fa, fb: the true values; wa: a's value as the Illinois rule weighs it
    wa = fa
    x, gx, sx = (a, ga, sa) if abs(ga) <= abs(gb) else (b, gb, sb)
    while abs(gx) > sx and len(prob.evaluations) < MAX_EVALS and abs(b - a) > 1e-6 * (hi - lo):
        x = b - fb * (b - a) / (fb - wa)
        gx, sx = g(x)
        if gx * fb < 0:  # the root lies between x and b: b becomes the other end
            a, fa, wa = b, fb, fb
        else:  # Illinois: halve the weight of the end that stays, so that it moves next time
            wa /= 2
        b, fb = x, gx
    converged = abs(gx) <= sx
    slope = (fb - fa) / (b - a)
    root = b - fb * (b - a) / (fb - fa) if fb != fa else b
    half = Z95 * sx / abs(slope) if slope and math.isfinite(slope) else math.inf
    return {
        "crossed": True,
        "field": field,
        "value": float(root),
        "low": float(max(root - half, min(lo, hi))),
        "high": float(min(root + half, max(lo, hi))),
        "slope": float(slope),
        "metric_se": float(sx),
        "converged": bool(converged),
    }


def most_plausible(prob: Problem, progress=None) -> dict:
    """The most plausible crossing of two or three fields (module docstring): a dict with ``found``, the
    fields' values and normal scores there, the distance, the metric and its SE, and the iterations."""
    fields = list(prob.ranges)
    laws = [prob.laws[f] for f in fields]
    z_lo = np.array([max(-Z_LIMIT, _score(L, lo)) for L, (lo, _) in zip(laws, prob.ranges.values())])
    z_hi = np.array([min(Z_LIMIT, _score(L, hi)) for L, (_, hi) in zip(laws, prob.ranges.values())])
    if np.any(z_lo >= z_hi):
        bad = fields[int(np.argmax(z_lo >= z_hi))]
        raise SolveError(f"{bad}: the range holds no probability under the field's distribution")

    def x_of(z):
        return {f: float(L.ppf(_cdf(zi))) for f, L, zi in zip(fields, laws, z)}

    def g(z, iterate=None):
        n = len(prob.evaluations)
        v, se = prob.at(x_of(z))
        if len(prob.evaluations) > n:  # a new run: its normal scores, distance and HL-RF iterate
            row = prob.evaluations[-1]
            row.update({f"z_{f}": float(zi) for f, zi in zip(fields, z)}, distance=float(np.linalg.norm(z)))
            row["iterate"] = iterate
        if progress is not None:
            progress(len(prob.evaluations))
        return v - prob.target, se

    z = np.clip(np.zeros(len(fields)), z_lo, z_hi)
    found, iterations = False, 0
    for iterations in range(1, MAX_ITERATIONS + 1):
        g0, se = g(z, iterations)
        grad = np.zeros(len(z))
        for i in range(len(z)):
            step = FD_STEP if z[i] + FD_STEP <= z_hi[i] else -FD_STEP
            zi = z.copy()
            zi[i] += step
            grad[i] = (g(zi)[0] - g0) / step
        if not np.any(grad):
            break
        new = np.clip(((grad @ z - g0) / (grad @ grad)) * grad, z_lo, z_hi)  # HL-RF step
        if abs(g0) <= se and np.linalg.norm(new - z) < 0.05:
            found = True
            break
        z = new
    if not found:
        g0, se = g(z, iterations + 1)
        found = abs(g0) <= 2 * se
    return {
        "found": bool(found),
        "fields": x_of(z),
        "normal_scores": dict(zip(fields, map(float, z))),
        "distance": float(np.linalg.norm(z)),
        "metric": float(g0 + prob.target),
        "metric_se": float(se),
        "iterations": iterations,
    }


def _cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def _score(L, x: float) -> float:
    """Phi^-1(F(x)) of the frozen law ``L`` (+-inf at the support's ends)."""
    from scipy import stats

    return float(stats.norm.ppf(L.cdf(x)))


class SolveResult:
    """A finished reverse stress test: ``table`` (solve.csv, one row per run), ``meta`` (with ``answer``),
    ``save``."""

    def __init__(self, scenario: Scenario, table: pd.DataFrame, meta: dict):
        self.scenario, self.table, self.meta = scenario, table, meta

    @property
    def answer(self) -> dict:
        return self.meta["answer"]

    def save(self, out_dir: str | os.PathLike, force: bool = False) -> Path:
        """Write solve.csv, solve.png and meta.json into ``out_dir`` atomically."""
        from .plots import save_figure, solve_figure

        def write(tmp: Path) -> None:
            self.table.to_csv(tmp / "solve.csv", index=False)
            m = self.meta
            title = f"{self.scenario.name}: {m['metric']} at {m['horizon_months']} months, target {m['target']:g}"
            save_figure(solve_figure(self.table, m, title), tmp / "solve.png")
            (tmp / "meta.json").write_text(json.dumps(m, indent=2, default=str))

        return write_folder(out_dir, write, force)
