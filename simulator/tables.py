"""Per-step tables of every parameter draw at once: numpy over a leading draw axis (docs/model.md).

A scenario with D parameter draws (``uncertainty.draw_values`` or given draws) is D plain scenarios that differ
only in their numbers. ``draw_tables`` reads each number the tables need as a [D] array (``Leaves``: the draws'
values where a field is drawn, probability rows refilled per draw as ``scenario.resolve`` does, else the
centred scenario's number) and computes the per-step arrays for all draws with array arithmetic: no Python
loop over draws, so 100,000 draws cost a fraction of a second. A scenario without uncertainty is the case
D = 1, so both run the same arithmetic (a draw at a point mass gives the plain scenario's tables bit for bit).
``tests/step_reference.py`` holds the per-scenario reference these are tested against.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import drivers as _drivers
from .scenario import ROW_TOL, Scenario, _join, _key, _node, centred_copy, corr_matrix, row_fills


class StepParams(NamedTuple):
    """Per-step arrays (leading axis: step t = 0..T-1; in ``Model.steps`` a parameter-draw axis comes first).
    Float arrays are float64 here; the engine casts."""

    cum_trans: np.ndarray  # [T, K, K] cumulative rows of the move INTO step t (row t=0: the start law)
    drift: np.ndarray  # [T, K, A] drift * dt: mean log return per step
    loading: np.ndarray  # [T, K, A, A] vol * sqrt(dt) * Cholesky factor of corr: log return = drift + loading @ e
    tails: np.ndarray  # [T, K] Student-t degrees of freedom; inf = Gaussian
    shift: np.ndarray  # [T, A] rate-overlay log return: sensitivity * (rate(t+1) - rate(t))
    month_slot: np.ndarray  # [T] int: index of the first month end at or after the end of step t
    cond_var: np.ndarray  # [T, K, A + 1] Gaussian variance per step of each log return, then of the compared
    # pair's log difference (``conditional_variances``); a Student-t step scales it by (nu - 2) / chi2


class Tables(NamedTuple):
    """What ``draw_tables`` gives, each with a leading draw axis D."""

    steps: StepParams  # [D, T, ...]
    start: np.ndarray  # [D, K] start law
    base: np.ndarray  # [D, K, K] per-step matrix without phase overrides (driven rows at the month-0 drivers)
    step_trans: np.ndarray  # [D, T, K, K] per-step matrices (row t = 0: the start law in every row)


class Leaves:
    """The numbers of D parameter draws of ``sc``: ``get(path)`` -> [D] float64 at a dotted field path.

    ``values``: field path -> [D] drawn (or given) values. A probability row of which some entries are drawn
    is refilled per draw as ``scenario._fill_row`` does (the other entries rescaled to fill the rest); any
    other number is the centred scenario's (``scenario.centred_copy``)."""

    def __init__(self, sc: Scenario, values: dict[str, np.ndarray]):
        self.centred = centred_copy(sc)
        self.D = len(next(iter(values.values()))) if values else 1
        self.table = {path: np.asarray(v, np.float64) for path, v in values.items()}
        for row, given in row_fills(sc, self.centred, values).items():
            self._fill(row, given)

    def get(self, path: str) -> np.ndarray:
        if path in self.table:
            return self.table[path]
        return np.full(self.D, float(_node(self.centred, path)))

    def _fill(self, row: str, given: set) -> None:
        """``scenario._fill_row`` per draw: where the entries do not sum to 1 within ROW_TOL, rescale those not
        in ``given`` to fill 1 - (sum of the given ones)."""
        keys = [_key(k) for k in _node(self.centred, row)]
        x = {k: self.get(_join(row, k)) for k in keys}
        rest = [k for k in keys if k not in given]
        if not rest:
            return
        total = sum(x.values())
        others = sum(x[k] for k in rest)
        positive = others > 0
        scale = np.where(positive, (1 - (total - others)) / np.where(positive, others, 1.0), math.nan)
        refill = ~(np.abs(total - 1) <= ROW_TOL)
        for k in rest:
            self.table[_join(row, k)] = np.where(refill, x[k] * scale, x[k])


def interp(x: np.ndarray, xp: list[float], fp: np.ndarray) -> np.ndarray:
    """Linear interpolation of knots (``xp`` increasing, values ``fp`` [..., n]) at ``x`` [M], flat beyond the
    ends (as ``np.interp``): [..., M]. Exact at the knots."""
    x, xp = np.asarray(x, np.float64), np.asarray(xp, np.float64)
    if len(xp) == 1:
        return np.broadcast_to(fp[..., :1], fp.shape[:-1] + x.shape).copy()
    j = np.clip(np.searchsorted(xp, x, side="right") - 1, 0, len(xp) - 2)
    t = np.clip((x - xp[j]) / (xp[j + 1] - xp[j]), 0.0, 1.0)
    return fp[..., j] * (1.0 - t) + fp[..., j + 1] * t


def knot_path(L: Leaves, prefix: str, months: np.ndarray) -> np.ndarray:
    """[D, M] the knot path at ``prefix`` (``rates.path``, ``macro.<name>``) at ``months``, each draw's knots."""
    path = _node(L.centred, prefix)
    knots = sorted(path)
    # a knot's value read from the mapping itself: a month such as 2.5 is no dotted path (only whole months
    # can be drawn)
    drawn = [L.table.get(_join(prefix, _key(k))) for k in knots]
    values = np.stack([np.full(L.D, float(path[k])) if x is None else x for k, x in zip(knots, drawn)], axis=-1)
    return interp(months, [float(k) for k in knots], values)


def cholesky_factor(C: np.ndarray) -> np.ndarray:
    """Lower-triangular L with L L^T = C for a valid correlation matrix, a singular one (e.g. a correlation
    of 1) by ``semidefinite_cholesky``."""
    if np.linalg.eigvalsh(C).min() < 1e-12:
        return semidefinite_cholesky(C)
    return np.linalg.cholesky(C)


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


def correlation_factor(corr, rho: np.ndarray | None, n_assets: int) -> np.ndarray:
    """[D, A, A] (or [A, A] when it is the same for every draw) Cholesky factor of a regime's correlation:
    ``corr`` the centred scenario's (a number or a fixed matrix), ``rho`` [D] its draws when it is a drawn
    number (two assets only, the closed form [[1, 0], [rho, sqrt(1 - rho^2)]])."""
    if rho is None or np.all(rho == rho[0]):
        return cholesky_factor(corr_matrix(corr if rho is None else float(rho[0]), n_assets))
    L = np.zeros((len(rho), 2, 2))
    L[:, 0, 0] = 1.0
    L[:, 1, 0] = rho
    L[:, 1, 1] = np.sqrt(np.maximum(1.0 - rho * rho, 0.0))
    return L


def conditional_variances(loading: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    """[..., A + 1] per-step variance of each asset's Gaussian log-return shock, then of the compared pair's
    log difference (first minus second), from ``loading`` [..., A, A] (rows: assets)."""
    i, j = pair
    own = np.sum(loading**2, axis=-1)
    difference = np.sum((loading[..., i, :] - loading[..., j, :]) ** 2, axis=-1)
    return np.concatenate([own, difference[..., None]], axis=-1)


def cumulative_rows(P: np.ndarray) -> np.ndarray:
    """Cumulative sums of each row; entries whose remaining mass is zero are set to 2 so that a
    uniform draw in [0, 1) can never select a zero-probability regime through rounding."""
    cum = np.cumsum(P, axis=-1)
    tail = np.cumsum(P[..., ::-1], axis=-1)[..., ::-1]  # mass at or after each column
    remaining = np.concatenate([tail[..., 1:], np.zeros(P.shape[:-1] + (1,))], axis=-1)
    return np.where(remaining <= 0, 2.0, cum)


def stationary_laws(P: np.ndarray) -> np.ndarray:
    """[..., K] pi with pi P = pi, sum 1, for irreducible per-step matrices ``P`` [..., K, K]: the linear system
    (P^T - I) pi = 0 with its last equation replaced by sum(pi) = 1 (nonsingular for an irreducible chain)."""
    K = P.shape[-1]
    A = np.swapaxes(P, -1, -2) - np.eye(K)
    A[..., -1, :] = 1.0
    b = np.zeros(P.shape[:-1])
    b[..., -1] = 1.0
    pi = np.clip(np.linalg.solve(A, b[..., None])[..., 0], 0, None)
    return pi / pi.sum(axis=-1, keepdims=True)


def phase_of_steps(sc: Scenario, n_steps: int) -> np.ndarray:
    """[T] int: the setting of each step: 0 outside every phase, else 1 + the index of the first phase whose
    ``until_month`` lies beyond the step's start month t / m."""
    bounds = np.asarray([ph.until_month for ph in sc.phases], dtype=float)
    start_month = np.arange(n_steps) * 12 / sc.steps_per_year
    phase = np.searchsorted(bounds, start_month, side="right")
    return np.where(phase < len(bounds), phase + 1, 0)


class _Setting:
    """Where a regime's fields are read in one setting (the base, or phase ``p`` overriding some of them)."""

    def __init__(self, L: Leaves, p: int | None):
        self.L, self.p = L, p

    def override(self, k: str, field: str, key: str | None = None):
        """The phase's path for regime ``k``'s ``field`` (and per-asset ``key``) when the phase overrides it."""
        if self.p is None:
            return None
        o = self.L.centred.phases[self.p].regimes.get(k)
        v = getattr(o, field, None) if o is not None else None
        if v is None or (key is not None and key not in v):
            return None
        return f"phases.{self.p}.regimes.{k}.{field}"

    def path(self, k: str, field: str, key: str | None = None) -> str:
        base = self.override(k, field, key) or f"regimes.{k}.{field}"
        return base if key is None else _join(base, key)

    def node(self, k: str, field: str):
        """The centred value (number, matrix or mapping) of regime ``k``'s ``field`` in this setting."""
        return _node(self.L.centred, self.path(k, field))


def setting_matrix(s: _Setting, sc: Scenario, base: np.ndarray | None) -> np.ndarray:
    """[D, K, K] per-step transition matrix of a setting, driven regimes left as identity rows (durations
    form) or as written (``transitions`` form); ``base``: the base setting's matrix, for a phase's
    ``transitions`` rows to override."""
    L, names = s.L, sc.regime_names
    K, D = len(names), L.D
    c = L.centred
    if c.transitions is not None:
        rows, prefix = (c.transitions, "transitions") if s.p is None else (c.phases[s.p].transitions or {}, None)
        P = np.zeros((D, K, K)) if base is None else base.copy()
        prefix = prefix or f"phases.{s.p}.transitions"
        for k, row in rows.items():
            i = names.index(k)
            P[:, i] = 0.0
            for j in row:
                P[:, i, names.index(j)] = L.get(f"{prefix}.{k}.{_key(j)}")
        return P
    P = np.broadcast_to(np.eye(K), (D, K, K)).copy()
    if K == 1:
        return P
    m = sc.steps_per_year / 12
    for i, k in enumerate(names):
        if c.regimes[k].drivers is not None:  # set from its drivers
            continue
        q = 1.0 / (L.get(s.path(k, "duration_months")) * m)
        P[:, i, i] = 1.0 - q
        for j in s.node(k, "next"):
            P[:, i, names.index(j)] = q * L.get(_join(s.path(k, "next"), _key(j)))
    return P


def driver_matrices(L: Leaves, sc: Scenario, n_steps: int) -> np.ndarray | None:
    """[D, T, K, K] the per-step matrices of the driven regimes' logits (``drivers.driver_step_matrices``) at
    each draw's coefficients and driver paths; None without driven regimes."""
    c = L.centred
    driven = _drivers.driven(c)
    if not driven:
        return None
    names, drivers = sc.regime_names, _drivers.driver_names(c)
    K = len(names)
    month = _drivers.step_months(n_steps, sc.steps_per_year)
    months = np.arange(month.max() + 1, dtype=float)
    paths = [knot_path(L, "rates.path" if d == _drivers.POLICY_RATE else f"macro.{d}", months) for d in drivers]
    x = np.stack(paths, axis=-1) if paths else np.zeros((L.D, len(months), 0))  # [D, M, n]
    coef = np.zeros((L.D, K, K, 1 + len(drivers)))
    listed = np.zeros((K, K), bool)
    for k in driven:
        for j, row in c.regimes[k].drivers.items():
            i, jj = names.index(k), names.index(j)
            listed[i, jj] = True
            for d in row:
                at = 0 if d == _drivers.INTERCEPT else 1 + drivers.index(d)
                coef[:, i, jj, at] = L.get(f"regimes.{k}.drivers.{j}.{d}")
    return _drivers.driver_step_matrices(coef, x, listed, month, sc.steps_per_year / 12)


def draw_tables(sc: Scenario, values: dict[str, np.ndarray], month_steps: tuple[int, ...], pair) -> Tables:
    """The per-step tables of every parameter draw of ``sc`` over the steps ``month_steps[-1]``: ``values``
    field path -> [D] values (empty: the scenario with every distribution at its centre, D = 1). ``pair``: the
    compared assets' indices. Step t covers months [t/m, (t+1)/m); phase settings apply by the step's start
    month (``phase_of_steps``)."""
    L = Leaves(sc, values)
    f = sc.steps_per_year
    dt = 1.0 / f
    assets, names = sc.asset_keys, sc.regime_names
    A, K, T, D = len(assets), len(names), month_steps[-1], L.D
    settings = [_Setting(L, None)] + [_Setting(L, p) for p in range(len(sc.phases))]
    S = len(settings)

    drift = np.zeros((D, S, K, A))
    loading = np.zeros((D, S, K, A, A))
    tails = np.full((D, S, K), np.inf)
    for s, setting in enumerate(settings):
        for i, k in enumerate(names):
            drift[:, s, i] = np.stack([L.get(setting.path(k, "drift", a)) * dt for a in assets], axis=-1)
            sd = np.stack([L.get(setting.path(k, "vol", a)) for a in assets], axis=-1) * np.sqrt(dt)  # [D, A]
            corr_path = setting.path(k, "corr")
            rho = L.table.get(corr_path)
            loading[:, s, i] = sd[:, :, None] * correlation_factor(_node(L.centred, corr_path), rho, A)
            if setting.node(k, "tails") is not None:
                tails[:, s, i] = L.get(setting.path(k, "tails"))

    base = setting_matrix(settings[0], sc, None)
    trans = np.stack([base] + [setting_matrix(s, sc, base) for s in settings[1:]], axis=1)  # [D, S, K, K]
    phase = phase_of_steps(sc, T)
    step_trans = trans[:, phase]  # [D, T, K, K]
    driven = driver_matrices(L, sc, T)
    if driven is not None:  # the driven regimes' rows: their per-month logits (the base: at month 0)
        rows = np.isin(names, _drivers.driven(L.centred))[:, None]
        step_trans = np.where(rows, driven, step_trans)
        base = np.where(rows, driven[:, 1 if T > 1 else 0], base)

    start = start_laws(L, sc, base)
    step_trans[:, 0] = start[:, None, :]  # the "move into step 0" draws s_0 from the start law
    month_slot = np.searchsorted(np.asarray(month_steps), np.arange(T) + 1, side="left").astype(np.int32)
    steps = StepParams(
        cum_trans=cumulative_rows(step_trans),
        drift=drift[:, phase],
        loading=loading[:, phase],
        tails=tails[:, phase],
        shift=rate_shifts(L, sc, T),
        month_slot=np.broadcast_to(month_slot, (D, T)),
        cond_var=conditional_variances(loading, pair)[:, phase],
    )
    return Tables(steps, start, base, step_trans)


def start_laws(L: Leaves, sc: Scenario, base: np.ndarray) -> np.ndarray:
    """[D, K] each draw's start law: the stationary law of its base matrix, one regime, or given weights
    (normalised)."""
    names, start = sc.regime_names, L.centred.start
    D, K = L.D, len(names)
    if start == "stationary":
        return stationary_laws(base) if K > 1 else np.ones((D, 1))
    if isinstance(start, str):
        return np.broadcast_to(np.eye(K)[names.index(start)], (D, K)).copy()
    p = np.zeros((D, K))
    for k in start:
        p[:, names.index(k)] = L.get(f"start.{_key(k)}")
    return p / p.sum(axis=-1, keepdims=True)


def rate_shifts(L: Leaves, sc: Scenario, n_steps: int) -> np.ndarray:
    """[D, T, A] deterministic log return per step from the policy-rate overlay, sensitivity x (rate at the
    step's end - rate at its start), percent points; zeros without one."""
    A = len(sc.asset_keys)
    if L.centred.rates is None:
        return np.zeros((L.D, n_steps, A))
    months = np.arange(n_steps + 1) * 12 / sc.steps_per_year
    rate = knot_path(L, "rates.path", months)  # [D, T + 1]
    sens = np.stack([L.get(f"rates.sensitivity.{a}") for a in sc.asset_keys], axis=-1)  # [D, A]
    return np.diff(rate, axis=-1)[:, :, None] * sens[:, None, :]


def expected_steps_in(start: np.ndarray, step_trans: np.ndarray, report_steps) -> np.ndarray:
    """[D, R, K] expected steps spent in each regime up to each report step: the sum over steps t < H of the
    regime law P(s_t = k), with s_0 ~ ``start`` [D, K] and s_t ~ P(s_{t-1}) @ ``step_trans[:, t]`` (float64)."""
    D, T, K = step_trans.shape[0], step_trans.shape[1], start.shape[-1]
    laws = np.empty((D, T, K))
    law = np.asarray(start, np.float64)
    for t in range(T):
        if t:
            law = np.einsum("dk,dkj->dj", law, step_trans[:, t])
        laws[:, t] = law
    cumulative = np.concatenate([np.zeros((D, 1, K)), np.cumsum(laws, axis=1)], axis=1)
    return cumulative[:, list(report_steps)]
