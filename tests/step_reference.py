"""The per-step tables of one plain scenario, computed the direct way (one scenario at a time, Python loops over
settings and regimes): the reference ``simulator.tables.draw_tables`` is tested against (tests/test_tables.py).
This is capsim's builder before the tables were vectorised over parameter draws."""

from __future__ import annotations

import numpy as np

from simulator.drivers import apply_drivers
from simulator.scenario import (
    Scenario,
    base_matrix,
    corr_matrix,
    merge_override,
    phase_matrix,
    stationary_distribution,
)
from simulator.tables import StepParams, conditional_variances, cumulative_rows, semidefinite_cholesky

# (the three helpers are shared: elementwise formulas, not what the reference checks)


def start_probabilities(sc: Scenario, base: np.ndarray) -> np.ndarray:
    names = sc.regime_names
    if sc.start == "stationary":
        return stationary_distribution(base)
    if isinstance(sc.start, str):
        return np.eye(len(names))[names.index(sc.start)]
    p = np.zeros(len(names))
    for k, w in sc.start.items():
        p[names.index(k)] = w
    return p / p.sum()


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
    sd = np.array([regime.vol[a] for a in assets]) * np.sqrt(dt)
    if np.linalg.eigvalsh(C).min() < 1e-12:  # singular but valid (e.g. corr 1)
        return sd[:, None] * semidefinite_cholesky(C)
    return sd[:, None] * np.linalg.cholesky(C)


def step_params(sc: Scenario, month_steps: tuple[int, ...], pair: tuple[int, int]) -> tuple[StepParams, tuple]:
    """The per-step arrays of a plain scenario (no distributions) over the steps ``month_steps[-1]``, and its
    (start law, base matrix, per-step matrices). ``pair``: the compared assets' indices (``Model.compare``)."""
    f = sc.steps_per_year
    dt = 1.0 / f
    assets, names = sc.asset_keys, sc.regime_names
    K, T = len(names), month_steps[-1]

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

    trans = np.stack([P for P, _ in settings])  # [S, K, K]
    drift = np.array([[[reg[k].drift[a] * dt for a in assets] for k in names] for _, reg in settings])
    loading = np.array([[regime_loading(reg[k], assets, dt) for k in names] for _, reg in settings])
    tails = np.array([[reg[k].tails if reg[k].tails is not None else np.inf for k in names] for _, reg in settings])

    start = start_probabilities(sc, base)
    step_trans = apply_drivers(sc, trans[phase_of_step])  # regimes with `drivers`: their per-month logits
    step_trans[0] = np.tile(start, (K, 1))  # the "move into step 0" draws s_0 from the start law
    month_slot = np.searchsorted(np.asarray(month_steps), np.arange(T) + 1, side="left")

    steps = StepParams(
        cum_trans=cumulative_rows(step_trans),
        drift=drift[phase_of_step],
        loading=loading[phase_of_step],
        tails=tails[phase_of_step],
        shift=rate_shift(sc, T),
        month_slot=month_slot.astype(np.int32),
        cond_var=conditional_variances(loading, pair)[phase_of_step],
    )
    return steps, (start, base, step_trans)
