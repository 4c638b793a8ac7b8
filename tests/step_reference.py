"""The per-step tables of one plain scenario, computed the direct way (one scenario at a time, Python loops over
settings and regimes): the reference ``simulator.tables.draw_tables`` is tested against (tests/test_tables.py).
This is capsim's builder before the tables were vectorised over parameter draws."""

from __future__ import annotations

import math

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
from simulator.tables import StepParams


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


def cumulative_rows(P: np.ndarray) -> np.ndarray:
    """Cumulative sums of each row; entries whose remaining mass is zero are set to 2 so that a
    uniform draw in [0, 1) can never select a zero-probability regime through rounding."""
    cum = np.cumsum(P, axis=-1)
    tail = np.cumsum(P[..., ::-1], axis=-1)[..., ::-1]  # mass at or after each column
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
    sd = np.array([regime.vol[a] for a in assets]) * np.sqrt(dt)
    if np.linalg.eigvalsh(C).min() < 1e-12:  # singular but valid (e.g. corr 1)
        return sd[:, None] * semidefinite_cholesky(C)
    return sd[:, None] * np.linalg.cholesky(C)


def semidefinite_cholesky(C: np.ndarray) -> np.ndarray:
    """Lower-triangular L with L L^T = C for a positive semi-definite C, a zero pivot giving a zero column:
    with a correlation of 1 two rows are equal, so identical assets get identical shocks (a tie, never a win
    either way) rather than shocks differing by rounding noise."""
    n = len(C)
    L = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1):
            rest = C[a, b] - L[a, :b] @ L[b, :b]
            if a == b:
                L[a, a] = math.sqrt(max(rest, 0.0))
            else:
                L[a, b] = rest / L[b, b] if L[b, b] > 1e-12 else 0.0
    return L


def expected_steps_in(start: np.ndarray, step_trans: np.ndarray, report_steps) -> np.ndarray:
    """[R, K] expected steps spent in each regime up to each report step: the sum over steps t < H of the
    regime law P(s_t = k), with s_0 ~ ``start`` and s_t ~ P(s_{t-1}) @ ``step_trans[t]`` (exact, float64)."""
    laws = np.empty((step_trans.shape[0], len(start)))
    law = np.asarray(start, np.float64)
    for t in range(step_trans.shape[0]):
        if t:
            law = law @ step_trans[t]
        laws[t] = law
    cumulative = np.concatenate([np.zeros((1, len(start))), np.cumsum(laws, axis=0)])
    return cumulative[list(report_steps)]


def conditional_variances(loading: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    """[..., A + 1] per-step variance of each asset's Gaussian log-return shock, then of the compared pair's
    log difference (first minus second), from ``loading`` [..., A, A] (rows: assets)."""
    i, j = pair
    own = np.sum(loading**2, axis=-1)
    difference = np.sum((loading[..., i, :] - loading[..., j, :]) ** 2, axis=-1)
    return np.concatenate([own, difference[..., None]], axis=-1)


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
