"""Model parameters: a validated scenario resolved into per-step arrays for the engine (docs/model.md).

Step t covers months [t/m, (t+1)/m) with m = steps per month; phase overrides apply to the steps whose
start month t/m lies in the phase window. Every array is indexed by parameter draw, then step: a group of paths
gets its draw's arrays and the engine scans over steps without ever looking up a phase.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .drivers import apply_drivers
from .errors import CapsimError
from .scenario import (
    BLOCK_PATHS,
    DEFAULT_DRAW_PATHS,
    Scenario,
    base_matrix,
    corr_matrix,
    draw_paths_problem,
    merge_override,
    phase_matrix,
    resolve,
    stationary_distribution,
)
from .uncertainty import draw_scenarios, draw_values, n_draws

CELL_PATHS = 128  # paths per cell (summaries' unit of paired standard errors) when a draw holds more


def n_blocks(n_paths: int) -> int:
    """Blocks of ``BLOCK_PATHS`` that hold ``n_paths`` paths (the last one may be partly filled)."""
    return -(-int(n_paths) // BLOCK_PATHS)


def draw_paths_for(sc: Scenario, draw_paths: int | None = None) -> int:
    """G, the paths per parameter draw: ``draw_paths``, else the file's ``uncertainty.draw_paths``, else
    DEFAULT_DRAW_PATHS; a whole block (``BLOCK_PATHS``) for a scenario without uncertainty."""
    if not sc.is_uncertain:
        return BLOCK_PATHS
    if draw_paths is None and sc.uncertainty is not None:
        draw_paths = sc.uncertainty.draw_paths
    G = DEFAULT_DRAW_PATHS if draw_paths is None else draw_paths
    if problem := draw_paths_problem(G):
        raise CapsimError(f"draw_paths: {problem}")
    return int(G)


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


class SegmentParams(NamedTuple):
    """Tables of the exact method over segments of G whole months (leading axis: segment s = 0..S-1).

    An outcome is (steps spent in each regime during the segment, regime at its last step), packed into an
    int32 code (``outcome_code``); given it, the segment's log return is exactly Gaussian for Gaussian regimes,
    with mean sum_k n_k drift_k and covariance sum_k n_k cov_k. Outcomes are drawn by Walker's alias method
    over N slots (a power of two): slot i, uniform on 0..N-1, gives ``code[s, i]`` with probability
    ``accept[s, k, i]``, else ``alias[s, k, i]``; k is the regime before the segment.
    """

    accept: np.ndarray  # [S, K, N] probability of keeping slot i's own outcome
    alias: np.ndarray  # [S, K, N] int32: outcome code slot i gives when not kept
    code: np.ndarray  # [S, N] int32: outcome code of slot i
    drift: np.ndarray  # [S, K, A] mean log return per step in regime k
    cov: np.ndarray  # [S, K, A, A] covariance of the log return per step in regime k
    shift: np.ndarray  # [S, A] rate-overlay log return of the segment
    month_slot: np.ndarray  # [S] int32: month end at the segment's end, (s + 1) * G
    cond_var: np.ndarray  # [S, K, A + 1] per-step variances as StepParams.cond_var


class Model(NamedTuple):
    """Everything the engine and the summaries need to know about one run shape.

    Paths come in groups of ``draw_paths`` (G) consecutive paths, a whole number of them per block; ``steps``
    holds one parameter set per draw (leading axis, D_used = min(D, groups) sets; one without uncertainty), and
    group g of a run (paths [g G, (g + 1) G)) simulates with set g mod ``n_draws``. The matrices below are those
    of the scenario with every distribution at its centre (docs/scenarios.md)."""

    steps: StepParams  # [D_used, T, ...]
    n_draws: int  # D: group g uses draw g mod D
    draw_paths: int  # G: paths per group (BLOCK_PATHS without uncertainty)
    uncertain: bool  # whether the scenario carries parameter uncertainty
    draw_parameters: dict  # dotted field path -> [D_used] values of each draw (empty without uncertainty)
    steps_per_year: int
    horizon_months: int
    report_months: tuple[int, ...]
    report_steps: tuple[int, ...]  # steps up to each report horizon
    month_steps: tuple[int, ...]  # steps up to each month 0..horizon
    asset_keys: tuple[str, ...]
    regime_names: tuple[str, ...]
    compare: tuple[int, int]  # indices of (first, second) asset: excess = R_first - R_second
    has_tails: bool
    start_probs: np.ndarray  # [K]
    base_matrix: np.ndarray  # [K, K] per-step matrix without phase overrides
    step_matrices: np.ndarray  # [T, K, K] per-step transition matrices (row t=0: the start law)
    expected_steps_in: np.ndarray  # [D_used, R, K] expected steps in each regime up to each report horizon

    @property
    def n_steps(self) -> int:
        return self.month_steps[-1]

    @property
    def cell_paths(self) -> int:
        """Paths per cell of the summaries: CELL_PATHS, or half a group when a group is smaller (every cell
        then lies in one draw, and every draw holds at least two cells)."""
        return min(CELL_PATHS, self.draw_paths // 2)

    @property
    def point_steps(self) -> StepParams:
        """The per-step arrays of the first parameter set (the only one without uncertainty)."""
        return StepParams(*(x[0] for x in self.steps))


def steps_to_month(month: float, steps_per_year: int) -> int:
    """Number of steps that make up the first ``month`` months (rounded for weekly steps)."""
    return int(round(month * steps_per_year / 12))


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


def build_model(
    sc: Scenario, horizon_months: int | None = None, *, n_paths: int = 1, seed: int = 0, draw_paths: int | None = None
) -> Model:
    """Resolve ``sc`` into per-step arrays for a run of ``horizon_months`` (default: the file's). With parameter
    uncertainty, one set of arrays per draw that a run of ``n_paths`` paths with ``seed`` uses, a draw per group
    of ``draw_paths`` paths (``draw_paths_for``; ``simulator.uncertainty``)."""
    H = int(horizon_months or sc.horizon_months)
    if H < 1:
        raise CapsimError(f"horizon_months must be at least 1, got {H}")
    f = sc.steps_per_year
    assets, names = sc.asset_keys, sc.regime_names
    month_steps = tuple(steps_to_month(h, f) for h in range(H + 1))
    reports = tuple(sc.report_months_for(H))
    centre = resolve(sc, {})  # the scenario itself when it has no distributions
    G = draw_paths_for(sc, draw_paths)
    groups = -(-int(n_paths) // G)
    D = n_draws(sc, groups)
    values = draw_values(sc, seed, min(D, groups)) if sc.is_uncertain else {}
    first, second = sc.compare_pair
    pair = (assets.index(first), assets.index(second))
    report_steps = [month_steps[h] for h in reports]
    sets = [step_params(s, month_steps, pair) for s in (draw_scenarios(sc, values) if sc.is_uncertain else [centre])]
    steps = StepParams(*(np.stack(x) for x in zip(*(p for p, _ in sets))))  # [D_used, T, ...]
    start, base, step_trans = (step_params(centre, month_steps, pair) if sc.is_uncertain else sets[0])[1]
    expected = np.stack([expected_steps_in(law[0], law[2], report_steps) for _, law in sets])
    return Model(
        steps=steps,
        n_draws=D,
        draw_paths=G,
        uncertain=sc.is_uncertain,
        draw_parameters=values,
        steps_per_year=f,
        horizon_months=H,
        report_months=reports,
        report_steps=tuple(month_steps[h] for h in reports),
        month_steps=month_steps,
        asset_keys=tuple(assets),
        regime_names=tuple(names),
        compare=pair,
        has_tails=bool(np.isfinite(steps.tails).any()),
        start_probs=start,
        base_matrix=base,
        step_matrices=step_trans,
        expected_steps_in=expected,
    )


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


MAX_SEGMENT_OUTCOMES = 1 << 17  # (regime counts, end regime) outcomes a segment may have before pruning
PRUNED_MASS = 1e-13  # largest total probability of the outcomes dropped from one table row


def exact_method_problem(model: Model) -> str | None:
    """Why the exact method cannot run ``model`` even month by month (None when it can)."""
    if model.uncertain:
        return "parameter uncertainty (its tables are built for one parameter set)"
    if model.has_tails:
        names = [k for k, t in zip(model.regime_names, np.isfinite(model.point_steps.tails).any(axis=0)) if t]
        return (
            f"Student-t regimes (tails in: {', '.join(names)}): a segment's return given the regime counts "
            "is not Gaussian"
        )
    return segment_problem(model, 1)


def segment_problem(model: Model, months: int) -> str | None:
    """Why the exact method cannot draw ``months``-month segments of ``model`` at once (None when it can)."""
    K, p, ends = len(model.regime_names), model.point_steps, model.month_steps
    for s in range(model.horizon_months // months):
        t0, t1 = ends[s * months], ends[(s + 1) * months]
        if not (np.all(p.drift[t0:t1] == p.drift[t0]) and np.all(p.loading[t0:t1] == p.loading[t0])):
            where = f"month {s}" if months == 1 else f"months {s * months}-{(s + 1) * months}"
            return f"regime returns change inside {where} (a phase boundary that is not a whole month)"
        if (
            math.comb(t1 - t0 + K - 1, K - 1) * K > MAX_SEGMENT_OUTCOMES
            or end_bits(K) + K * (t1 - t0).bit_length() > 31
        ):
            return f"too many (regime counts, end regime) outcomes per {months}-month segment for {K} regimes"
    return None


def end_bits(n_regimes: int) -> int:
    """Low bits of an outcome code that hold the end regime."""
    return max(1, (n_regimes - 1).bit_length())


def outcome_code(counts: np.ndarray, end: np.ndarray, count_bits: int) -> np.ndarray:
    """Outcome codes: the end regime in the low ``end_bits(K)`` bits, then the counts of regimes 0..K-1 in
    ``count_bits`` bits each. (Every count is coded, none derived from the segment length: a per-segment
    integer in the kernel's arithmetic costs XLA on CPU a third of the kernel's time.)"""
    K = counts.shape[-1]
    code = end.astype(np.int64)
    for k in range(K):
        code |= counts[..., k].astype(np.int64) << (end_bits(K) + k * count_bits)
    return code.astype(np.int32)


def exact_segment_months(model: Model) -> int | None:
    """Months per segment of the exact method: the largest divisor of the report horizons' gcd whose
    segments it can draw at once (every report horizon is then a segment end); None if not even one month."""
    g = math.gcd(*model.report_months)
    for months in (d for d in range(g, 0, -1) if g % d == 0):
        if segment_problem(model, months) is None:
            return months
    return None


def segment_tables(model: Model, months: int) -> tuple[SegmentParams, int]:
    """Exact joint law of (steps in each regime, end regime) for every ``months``-month segment, from each
    regime the chain is in before it, as alias tables; and the bits per count in the outcome codes.
    Outcomes of negligible probability (at most ``PRUNED_MASS`` in all per table row) are dropped and the
    rest renormalised."""
    reason = exact_method_problem(model) or segment_problem(model, months)
    if reason:
        raise CapsimError(f"the exact method cannot run this scenario: {reason}; use the per-step method")
    K = len(model.regime_names)
    bounds = model.month_steps[::months]
    spans = list(zip(bounds[:-1], bounds[1:]))
    steps = np.diff(bounds).astype(np.int32)
    count_bits = int(steps.max()).bit_length()
    keys = [model.step_matrices[t0:t1].tobytes() for t0, t1 in spans]  # segments with the same matrices
    laws = {}  # share one law
    for key, (t0, t1) in zip(keys, spans):
        if key not in laws:
            laws[key] = segment_outcomes(model.step_matrices[t0:t1])
    N = 1 << max(1, int(np.ceil(np.log2(max(len(end) for _, _, end in laws.values())))))
    tables = {}
    for key, (prob, counts, end) in laws.items():
        code = np.zeros(N, np.int32)
        code[: len(end)] = outcome_code(counts, end, count_bits)
        rows = [alias_table(prob[k], N) for k in range(K)]
        tables[key] = (np.stack([a for a, _ in rows]), np.stack([code[i] for _, i in rows]), code)
    accept, alias, code = (np.stack(x) for x in zip(*[tables[key] for key in keys]))
    first, p = np.asarray(bounds[:-1]), model.point_steps
    cov = np.einsum("tkab,tkcb->tkac", p.loading[first], p.loading[first])
    shift = np.stack([p.shift[t0:t1].sum(axis=0) for t0, t1 in spans])
    params = SegmentParams(
        accept,
        alias,
        code,
        p.drift[first],
        cov,
        shift,
        np.arange(1, len(steps) + 1, dtype=np.int32) * months,
        p.cond_var[first],
    )
    return params, count_bits


def segment_outcomes(matrices: np.ndarray):
    """The N outcomes of one segment of L steps with per-step matrices [L, K, K]: returns (prob [K_before, N],
    counts [N, K] int, end regime [N] int), after pruning (``PRUNED_MASS``).

    Dynamic programme over the steps on a dense array [before, count_1, ..., count_{K-1}, current regime]
    (the last regime's count is L minus the others)."""
    L, K = matrices.shape[0], matrices.shape[1]
    state = np.zeros((K,) + (L + 1,) * (K - 1) + (K,))
    for k in range(K):
        state[(k,) + (0,) * (K - 1) + (k,)] = 1.0
    for P in matrices:
        state = state @ P  # move: [..., i] x P[i, k] -> [..., k]
        for k in range(K - 1):  # a step in regime k adds one to its count (never wraps: count < L)
            state[..., k] = np.roll(state[..., k], 1, axis=1 + k)
    grid = np.indices((L + 1,) * (K - 1)).reshape(K - 1, (L + 1) ** (K - 1)).T  # [counts_1..K-1 combos, K-1]
    possible = grid.sum(axis=1) <= L
    cnt = np.concatenate([grid[possible], L - grid[possible].sum(axis=1, keepdims=True)], axis=1)
    prob = state.reshape(K, -1, K)[:, possible].reshape(K, -1)  # outcome i = count index * K + end regime
    counts, end = np.repeat(cnt, K, axis=0), np.tile(np.arange(K), len(cnt))
    # keep an outcome unless it lies in the smallest PRUNED_MASS of every row
    order = np.argsort(prob, axis=1)
    dropped = np.zeros(prob.shape, bool)
    np.put_along_axis(dropped, order, np.cumsum(np.take_along_axis(prob, order, axis=1), axis=1) <= PRUNED_MASS, axis=1)
    keep = ~dropped.all(axis=0)
    prob = prob[:, keep]
    return prob / prob.sum(axis=1, keepdims=True), counts[keep], end[keep]


def alias_table(prob: np.ndarray, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table (Vose's construction) of the law ``prob`` [m] over ``n_slots`` >= m slots: draw
    slot i uniformly, keep it with probability accept[i], else take alias[i]. Slots past m have probability 0."""
    q = np.zeros(n_slots)
    q[: len(prob)] = prob * (n_slots / prob.sum())
    small, large = np.flatnonzero(q < 1.0).tolist(), np.flatnonzero(q >= 1.0).tolist()
    q, alias = q.tolist(), list(range(n_slots))  # Python floats and lists: the loop is scalar work
    while small and large:
        i, j = small.pop(), large[-1]
        alias[i] = j
        q[j] -= 1.0 - q[i]
        if q[j] < 1.0:
            small.append(large.pop())
    for i in large + small:  # slots left in either list keep accept 1 (rounding leftovers)
        q[i] = 1.0
    return np.asarray(q), np.asarray(alias, np.int32)  # accept[i] = q[i] when slot i left the small list
