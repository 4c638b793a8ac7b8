"""``blend``: the probability-weighted mixture of scenarios as one result.

An exact stratified mixture: component i gets n_i = round(w_i n) paths (largest remainders, so the n_i add up
to n) from its own random stream, and every figure is computed on the pooled paths. So p_outperform is
sum_i n_i p_i / n exactly, with the stratified standard error sqrt(sum_i (n_i / n)^2 p_i (1 - p_i) / n_i);
quantiles, HDI, VaR, ES and drawdowns are those of the pooled sample (the kept and fan paths are shared out
in the same proportions). Components run to their common horizon and report at their common report months;
they must compare the same pair of assets; regimes are the union (a component spends no time in a regime it
lacks).
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .errors import CapsimError
from .run import Result, simulate, undefined_means
from .scenario import BLOCK_PATHS, NAME_RE, Scenario, load_scenario
from .shipped import display_source
from .summary import Summaries, kept_counts

WEIGHT_TOL = 1e-9


class BlendError(CapsimError):
    """Blend components or weights that cannot be mixed."""


def split_paths(weights: Sequence[float], n: int) -> list[int]:
    """round(w_i n) by largest remainders: non-negative integers summing to ``n`` (ties to the first)."""
    exact = [w * n for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def blend_components(components) -> list[tuple[Scenario, float]]:
    """(scenario, weight) pairs from a mapping or a sequence of pairs; a scenario may be given as a file path.
    Weights must be positive numbers summing to 1 (within 1e-9)."""
    pairs = list(components.items() if isinstance(components, Mapping) else components)
    if not pairs:
        raise BlendError("a blend needs at least one component")
    out = []
    for sc, w in pairs:
        sc = sc if isinstance(sc, Scenario) else load_scenario(sc)
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise BlendError(f"{display_source(sc.source)}: weight {w!r} is not a number") from None
        if not (math.isfinite(w) and w > 0):
            raise BlendError(f"{display_source(sc.source)}: weight {w!r} must be a positive number")
        out.append((sc, w))
    total = sum(w for _, w in out)
    if abs(total - 1) > WEIGHT_TOL:
        listed = ", ".join(f"{display_source(sc.source)}={w:g}" for sc, w in out)
        raise BlendError(f"weights sum to {total:.12g}, not 1 ({listed})", ("make them sum to 1", "make them sum to 1"))
    pairs = {sc.compare_pair for sc, _ in out}
    if len(pairs) > 1:
        listed = "; ".join(f"{display_source(sc.source)}: {' - '.join(sc.compare_pair)}" for sc, _ in out)
        raise BlendError(f"components compare different pairs of assets ({listed}): a blend needs one pair")
    return out


def default_name(scenarios: Sequence[Scenario]) -> str:
    """'blend-' and the components' names, joined by '-'."""
    return "blend-" + "-".join(sc.name for sc in scenarios)


class BlendResult(Result):
    """A blend's result: a ``Result`` of the pooled paths, plus ``components()`` (each component's own figures
    per horizon and where its median excess sits in the blend), written as components.csv by ``save``."""

    def __init__(self, scenario, model, stats, meta, parts: list[Result]):
        super().__init__(scenario, model, stats, meta)
        self.parts = parts

    def components(self) -> pd.DataFrame:
        """One row per component and report horizon: weight, paths, p_outperform (± SE) and excess median
        from the component's own paths, and ``excess_median_percentile_in_blend``: the percentage of the
        blend's (kept) excess returns at or below that median."""
        i, j = self.model.compare
        months = list(self.model.report_months)
        rows = []
        for info, part in zip(self.meta["components"], self.parts):
            own = part.summary().set_index("horizon_months")
            for r, h in enumerate(months):
                R = np.expm1(self._stats.kept_reports[r].astype(np.float64))
                X = np.sort(R[i] - R[j])
                median = own.at[h, "excess_median"]
                rows.append(
                    {
                        "component": info["name"],
                        "file": info["file"],
                        "weight": info["weight"],
                        "n_paths": info["n_paths"],
                        "horizon_months": h,
                        "p_outperform": own.at[h, "p_outperform"],
                        "p_outperform_se": own.at[h, "p_outperform_se"],
                        "excess_median": median,
                        "excess_median_percentile_in_blend": 100 * np.searchsorted(X, median, "right") / len(X),
                    }
                )
        return pd.DataFrame(rows)

    def _write_extra(self, tmp: Path) -> None:
        self.components().to_csv(tmp / "components.csv", index=False)


def blend(
    components,
    n_paths: int = 1_000_000,
    seed: int = 0,
    *,
    name: str | None = None,
    horizon_months: int | None = None,
    device: str = "cpu",
    devices: int | str = "all",
    precision: int = 32,
    method: str = "step",
    batch_paths: int | None = None,
    progress=None,
) -> BlendResult:
    """Simulate the mixture of ``components`` ({scenario or file: weight}, or (scenario, weight) pairs) with
    ``n_paths`` paths in all. Component i runs round(w_i n_paths) paths (largest remainders) on random stream i
    of ``seed``, to the components' common horizon (or ``horizon_months``, at most that) at their common report
    months. The other arguments are ``simulate``'s. ``name``: the result's name (default 'blend-' and the
    components' names)."""
    pairs = blend_components(components)
    scenarios, weights = [sc for sc, _ in pairs], [w for _, w in pairs]
    name = name or default_name(scenarios)
    if not NAME_RE.match(name):
        raise BlendError(f"name {name!r} may hold letters, digits, '-' and '_' only")
    common_h = min(sc.horizon_months for sc in scenarios)
    if horizon_months is not None and not 1 <= horizon_months <= common_h:
        raise BlendError(
            f"horizon_months {horizon_months} is beyond the components' common horizon of {common_h} months",
            (f"give horizon_months <= {common_h}", f"give --horizon <= {common_h}"),
        )
    H = horizon_months or common_h
    months = sorted(set.intersection(*(set(sc.report_months_for(H)) for sc in scenarios)))
    counts = split_paths(weights, int(n_paths))
    for sc, n in zip(scenarios, counts):
        if n < 2:
            raise BlendError(
                f"{display_source(sc.source)}: its weight gives {n} of {n_paths} paths; a component needs at least 2",
                ("raise n_paths", "raise --paths"),
            )

    t0, done, parts = time.perf_counter(), 0, []
    for i, (sc, n) in enumerate(zip(scenarios, counts)):
        report = None if progress is None else (lambda d, before=done: progress(before + d))
        at_horizon = sc.model_copy(update={"horizon_months": H, "report_months": months})
        parts.append(
            simulate(
                at_horizon,
                n,
                seed,
                horizon_months=H,
                device=device,
                devices=devices,
                precision=precision,
                method=method,
                batch_paths=batch_paths,
                progress=report,
                stream=i,
            )
        )
        done += n

    first = parts[0].model
    pair = scenarios[0].compare_pair
    assets = [a for a in first.asset_keys if all(a in p.model.asset_keys for p in parts)]
    regimes = list(dict.fromkeys(k for p in parts for k in p.model.regime_names))
    model = first._replace(  # one pool: no per-draw figures even where components carry parameter uncertainty
        uncertain=False,
        n_draws=1,
        draw_paths=BLOCK_PATHS,
        draw_parameters={},
        asset_keys=tuple(assets),
        regime_names=tuple(regimes),
        compare=(assets.index(pair[0]), assets.index(pair[1])),
    )
    keep, fan = kept_counts(model, int(n_paths), 4 if precision == 32 else 8)
    keeps = [min(k, p._stats.keep) for k, p in zip(split_paths(weights, keep), parts)]
    fans = [min(f, p._stats.fan_paths) for f, p in zip(split_paths(weights, fan), parts)]
    stats = Summaries.pooled(
        model,
        [(p._stats, [p.model.asset_keys.index(a) for a in assets], k, f) for p, k, f in zip(parts, keeps, fans)],
    )
    wall = time.perf_counter() - t0
    label = ", ".join(f"{100 * w:g}% {sc.name}" for sc, w in pairs)
    scenario = scenarios[0].model_copy(
        update={
            "name": name,
            "description": f"Blend of {label}.",
            "sources": [f"{sc.name}: {src}" for sc in scenarios for src in sc.sources],
        }
    )
    meta = {
        "version": __version__,
        "kind": "blend",
        "scenario": name,
        "description": scenario.description,
        "sources": scenario.sources,
        "components": [
            {
                "name": sc.name,
                "file": sc.source,
                "sha256": sc.sha256,
                "as_of": sc.as_of.isoformat() if sc.as_of else None,
                "weight": w,
                "n_paths": n,
                "stream": i,
                "description": sc.description,
            }
            for i, ((sc, w), n) in enumerate(zip(pairs, counts))
        ],
        "compare": list(pair),
        "seed": int(seed),
        "n_paths": int(n_paths),
        "horizon_months": H,
        "report_months": months,
        "dropped_horizons": {  # each component's report horizons the blend leaves out (not common, or past H)
            sc.name: dropped
            for sc in scenarios
            if (dropped := [h for h in sc.report_months_for(sc.horizon_months) if h not in months])
        },
        "kept_paths": stats.keep,
        "fan_paths": stats.fan_paths,
        "precision": precision,
        "method": sorted({p.meta["method"] for p in parts}),
        "backend": parts[0].meta["backend"],
        "devices": parts[0].meta["devices"],
        "wall_seconds": round(wall, 4),
        "undefined_means": undefined_means(assets, any(p.model.has_tails for p in parts)),
        "warnings": list(dict.fromkeys(w for p in parts for w in p.meta["warnings"])),
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    return BlendResult(scenario, model, stats, meta, parts)
