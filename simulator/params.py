"""Model parameters: a validated scenario resolved into per-step arrays for the engine (SPEC section 3).

Step t covers months [t/m, (t+1)/m) with m = steps per month; phase overrides apply to the steps whose
start month t/m lies in the phase window. Every array is indexed by step first, so the engine scans over
them without ever looking up a phase.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .scenario import (Scenario, base_matrix, corr_matrix, merge_override, phase_matrix, stationary_distribution)


class StepParams(NamedTuple):
    """Per-step arrays (leading axis: step t = 0..T-1). Float arrays are float64 here; the engine casts."""

    cum_trans: np.ndarray   # [T, K, K] cumulative rows of the move INTO step t (row t=0: the start law)
    drift: np.ndarray       # [T, K, A] drift * dt: mean log return per step
    loading: np.ndarray     # [T, K, A, A] vol * sqrt(dt) * Cholesky factor of corr: log return = drift + loading @ e
    tails: np.ndarray       # [T, K] Student-t degrees of freedom; inf = Gaussian
    shift: np.ndarray       # [T, A] rate-overlay log return: sensitivity * (rate(t+1) - rate(t))
    month_slot: np.ndarray  # [T] int: index of the first month end at or after the end of step t
    report_slot: np.ndarray  # [T] int: same for report horizons (R = after the last report)


class Model(NamedTuple):
    """Everything the engine and the summaries need to know about one run shape."""

    steps: StepParams
    steps_per_year: int
    horizon_months: int
    report_months: tuple[int, ...]
    report_steps: tuple[int, ...]   # steps up to each report horizon
    month_steps: tuple[int, ...]    # steps up to each month 0..horizon
    asset_keys: tuple[str, ...]
    regime_names: tuple[str, ...]
    compare: tuple[int, int]        # indices of (first, second) asset: excess = R_first - R_second
    has_tails: bool
    start_probs: np.ndarray         # [K]
    base_matrix: np.ndarray         # [K, K] per-step matrix without phase overrides

    @property
    def n_steps(self) -> int:
        return self.month_steps[-1]


def steps_to_month(month: float, steps_per_year: int) -> int:
    """Number of steps that make up the first ``month`` months (rounded for weekly steps)."""
    return int(round(month * steps_per_year / 12))


def start_probabilities(sc: Scenario, base: np.ndarray) -> np.ndarray:
    names = sc.regime_names
    if sc.start == "stationary":
        return stationary_distribution(base) if len(names) > 1 else np.ones(1)
    if isinstance(sc.start, str):
        return np.eye(len(names))[names.index(sc.start)]
    p = np.zeros(len(names))
    for k, w in sc.start.items():
        p[names.index(k)] = w
    return p / p.sum()


def cumulative_rows(P: np.ndarray) -> np.ndarray:
    """Cumulative sums of each row; entries whose remaining mass is zero are set to 2 so that a
    uniform draw in [0, 1) can never select a zero-probability regime through rounding."""
    cum = np.cumsum(P, axis=-1)
    tail = np.cumsum(P[..., ::-1], axis=-1)[..., ::-1]   # mass at or after each column
    remaining = np.concatenate([tail[..., 1:], np.zeros(P.shape[:-1] + (1,))], axis=-1)
    return np.where(remaining <= 0, 2.0, cum)


def rate_shift(sc: Scenario, n_steps: int) -> np.ndarray:
    """[T, A] deterministic log-return per step from the policy-rate overlay (zeros without one)."""
    A = len(sc.asset_keys)
    if sc.rates is None:
        return np.zeros((n_steps, A))
    knots = sorted(sc.rates.path.items())
    months = np.arange(n_steps + 1) * 12 / sc.steps_per_year
    rate = np.interp(months, [k for k, _ in knots], [v for _, v in knots])  # flat outside the knots
    sens = np.array([sc.rates.sensitivity[a] for a in sc.asset_keys])
    return np.diff(rate)[:, None] * sens[None, :]


def regime_loading(regime, assets: list[str], dt: float) -> np.ndarray:
    """[A, A] lower-triangular L with L L^T = per-step covariance of the log returns (vol^2 * corr * dt)."""
    C = corr_matrix(regime.corr, len(assets))
    w, V = np.linalg.eigh(C)
    if w.min() < 1e-12:  # singular but valid (e.g. corr 1): Cholesky of the nearest positive-definite matrix
        C = (V * np.maximum(w, 1e-12)) @ V.T
    sd = np.array([regime.vol[a] for a in assets]) * np.sqrt(dt)
    return sd[:, None] * np.linalg.cholesky(C)


def build_model(sc: Scenario, horizon_months: int | None = None) -> Model:
    """Resolve ``sc`` into per-step arrays for a run of ``horizon_months`` (default: the file's)."""
    H = int(horizon_months or sc.horizon_months)
    if H < 1:
        raise ValueError(f"horizon_months must be at least 1, got {H}")
    f = sc.steps_per_year
    dt = 1.0 / f
    assets, names = sc.asset_keys, sc.regime_names
    A, K = len(assets), len(names)
    month_steps = tuple(steps_to_month(h, f) for h in range(H + 1))
    T = month_steps[-1]
    reports = tuple(sc.report_months_for(H))
    report_steps = tuple(month_steps[h] for h in reports)

    # Phase settings for every step: (transition matrix, regimes with overrides).
    base = base_matrix(sc)
    settings = [(base, sc.regimes)]
    bounds = []
    for ph in sc.phases:
        merged = {k: merge_override(r, ph.regimes[k]) if k in ph.regimes else r for k, r in sc.regimes.items()}
        settings.append((phase_matrix(sc, ph), merged))
        bounds.append(ph.until_month)
    start_month = np.arange(T) * 12 / f
    # phase index of step t: first phase whose until_month is beyond the step's start month; base after all.
    phase_of_step = np.searchsorted(np.asarray(bounds, dtype=float), start_month, side="right")
    phase_of_step = np.where(phase_of_step < len(bounds), phase_of_step + 1, 0)

    n_set = len(settings)
    trans = np.stack([P for P, _ in settings])                                   # [S, K, K]
    drift = np.array([[[reg[k].drift[a] * dt for a in assets] for k in names] for _, reg in settings])
    loading = np.array([[regime_loading(reg[k], assets, dt) for k in names] for _, reg in settings])
    tails = np.array([[reg[k].tails if reg[k].tails is not None else np.inf for k in names] for _, reg in settings])
    assert trans.shape[0] == n_set

    start = start_probabilities(sc, base)
    step_trans = trans[phase_of_step]
    step_trans[0] = np.tile(start, (K, 1))  # the "move into step 0" draws s_0 from the start law
    month_slot = np.searchsorted(np.asarray(month_steps), np.arange(T) + 1, side="left")
    report_slot = np.searchsorted(np.asarray(report_steps), np.arange(T) + 1, side="left")

    steps = StepParams(
        cum_trans=cumulative_rows(step_trans),
        drift=drift[phase_of_step],
        loading=loading[phase_of_step],
        tails=tails[phase_of_step],
        shift=rate_shift(sc, T),
        month_slot=month_slot.astype(np.int32),
        report_slot=report_slot.astype(np.int32),
    )
    first, second = sc.compare_pair
    return Model(
        steps=steps, steps_per_year=f, horizon_months=H, report_months=reports, report_steps=report_steps,
        month_steps=month_steps, asset_keys=tuple(assets), regime_names=tuple(names),
        compare=(assets.index(first), assets.index(second)), has_tails=bool(np.isfinite(tails).any()),
        start_probs=start, base_matrix=base,
    )
