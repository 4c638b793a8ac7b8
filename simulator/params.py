"""Model parameters: a validated scenario resolved into per-step arrays for the engine (SPEC section 3).

Step t covers months [t/m, (t+1)/m) with m = steps per month; phase overrides apply to the steps whose
start month t/m lies in the phase window. Every array is indexed by step first, so the engine scans over
them without ever looking up a phase.
"""

from __future__ import annotations

from typing import NamedTuple

import math

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


class MonthParams(NamedTuple):
    """Per-month tables of the exact month-by-month method (leading axis: month s = 0..H-1; N outcomes).

    An outcome is (steps spent in each regime during the month, regime at the month's last step). Given it,
    the month's log return is exactly Gaussian for Gaussian regimes: mean and Cholesky factor below.
    """

    cdf: np.ndarray       # [S, K, N] P(outcome <= i | regime before the month), cumulative; 2 past the last
    counts: np.ndarray    # [S, K, N] steps spent in regime k under outcome i
    end: np.ndarray       # [S, N] int: regime at the month's last step
    mean: np.ndarray      # [S, A, N] mean log return of the month (drift part)
    chol: np.ndarray      # [S, A, A, N] Cholesky factor of its covariance
    shift: np.ndarray     # [S, A] rate-overlay log return of the month
    month_slot: np.ndarray   # [S] int: s + 1


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
    step_matrices: np.ndarray       # [T, K, K] per-step transition matrices (row t=0: the start law)

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
    K = len(names)
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

    steps = StepParams(
        cum_trans=cumulative_rows(step_trans),
        drift=drift[phase_of_step],
        loading=loading[phase_of_step],
        tails=tails[phase_of_step],
        shift=rate_shift(sc, T),
        month_slot=month_slot.astype(np.int32),
    )
    first, second = sc.compare_pair
    return Model(
        steps=steps, steps_per_year=f, horizon_months=H, report_months=reports, report_steps=report_steps,
        month_steps=month_steps, asset_keys=tuple(assets), regime_names=tuple(names),
        compare=(assets.index(first), assets.index(second)), has_tails=bool(np.isfinite(tails).any()),
        start_probs=start, base_matrix=base, step_matrices=step_trans,
    )


MAX_MONTH_OUTCOMES = 100_000


def exact_method_problem(model: Model) -> str | None:
    """Why the exact month-by-month method cannot run ``model`` (None when it can)."""
    if model.has_tails:
        return "Student-t regimes: a month's return given the regime counts is not Gaussian"
    K = len(model.regime_names)
    for s in range(len(model.month_steps) - 1):
        t0, t1 = model.month_steps[s], model.month_steps[s + 1]
        p = model.steps
        if not (np.all(p.drift[t0:t1] == p.drift[t0]) and np.all(p.loading[t0:t1] == p.loading[t0])):
            return f"regime returns change inside month {s} (a phase boundary that is not a whole month)"
        if math.comb(t1 - t0 + K - 1, K - 1) * K > MAX_MONTH_OUTCOMES:
            return f"too many (regime counts, end regime) outcomes per month for {K} regimes"
    return None


def month_tables(model: Model) -> MonthParams:
    """Exact joint law of (steps in each regime, end regime) for every month, by dynamic programming over
    the month's steps, from each regime the chain is in before the month."""
    reason = exact_method_problem(model)
    if reason:
        raise ValueError(f"the exact method cannot run this scenario: {reason}; use the per-step method")
    K, A = len(model.regime_names), len(model.asset_keys)
    cov = np.einsum("tkab,tkcb->tkac", model.steps.loading, model.steps.loading)   # per-step covariance
    cache, months = {}, []
    for s in range(len(model.month_steps) - 1):
        t0, t1 = model.month_steps[s], model.month_steps[s + 1]
        key = (model.step_matrices[t0:t1].tobytes(), model.steps.drift[t0].tobytes(), cov[t0].tobytes())
        if key not in cache:
            cache[key] = month_outcomes(model.step_matrices[t0:t1], model.steps.drift[t0], cov[t0])
        months.append(cache[key])
    N = max(len(m[1]) for m in months)
    cdf = np.full((len(months), K, N), 2.0)
    counts, end = np.zeros((len(months), K, N)), np.zeros((len(months), N), np.int32)
    mean, chol = np.zeros((len(months), A, N)), np.zeros((len(months), A, A, N))
    for s, (prob, cnt, last, mu, L) in enumerate(months):
        n = len(cnt)
        cdf[s, :, :n] = cumulative_rows(prob)
        counts[s, :, :n], end[s, :n], mean[s, :, :n], chol[s, :, :, :n] = cnt.T, last, mu.T, L.transpose(1, 2, 0)
    step_shift = model.steps.shift
    shift = np.stack([step_shift[model.month_steps[s]:model.month_steps[s + 1]].sum(axis=0) for s in range(len(months))])
    return MonthParams(cdf, counts, end, mean, chol, shift, np.arange(1, len(months) + 1, dtype=np.int32))


def month_outcomes(matrices: np.ndarray, drift: np.ndarray, cov: np.ndarray):
    """One month of L steps with per-step matrices [L, K, K]: returns (prob [K_before, N], counts [N, K],
    end regime [N], mean [N, A], Cholesky [N, A, A]) over the N = C(L+K-1, K-1) * K outcomes."""
    L, K = matrices.shape[0], matrices.shape[1]
    levels = [[(0,) * K]]
    for _ in range(L):
        levels.append(sorted({tuple(c[i] + (i == k) for i in range(K)) for c in levels[-1] for k in range(K)}))
    index = [{c: i for i, c in enumerate(level)} for level in levels]
    state = np.zeros((K, 1, K))                      # [before, count vector, current regime]
    state[np.arange(K), 0, np.arange(K)] = 1.0
    for j, P in enumerate(matrices):
        nxt = np.zeros((K, len(levels[j + 1]), K))
        for k in range(K):
            plus = np.array([index[j + 1][tuple(c[i] + (i == k) for i in range(K))] for c in levels[j]])
            nxt[:, plus, k] += state @ P[:, k]
        state = nxt
    cnt = np.array(levels[-1], dtype=float)          # [n_counts, K]
    prob = state.reshape(K, -1)                      # outcome i = count_index * K + end regime
    counts = np.repeat(cnt, K, axis=0)
    end = np.tile(np.arange(K), len(cnt))
    mean = counts @ drift                            # [N, A]
    C = np.einsum("nk,kab->nab", counts, cov)
    w, V = np.linalg.eigh(C)
    C = np.einsum("nab,nb,ncb->nac", V, np.maximum(w, 1e-18), V)   # zero-vol outcomes stay factorisable
    return prob, counts, end, mean, np.linalg.cholesky(C)
