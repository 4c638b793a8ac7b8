"""Model parameters: a validated scenario resolved into per-step arrays for the engine (docs/model.md).

Step t covers months [t/m, (t+1)/m) with m = steps per month; phase overrides apply to the steps whose
start month t/m lies in the phase window. Every array is indexed by parameter draw, then step: a group of paths
gets its draw's arrays and the engine scans over steps without ever looking up a phase.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .errors import CapsimError
from .scenario import BLOCK_PATHS, DEFAULT_DRAW_PATHS, Scenario, draw_paths_problem
from .tables import StepParams, draw_tables, expected_steps_in
from .uncertainty import draw_values, n_draws

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
    G = draw_paths_for(sc, draw_paths)
    groups = -(-int(n_paths) // G)
    D = n_draws(sc, groups)
    values = draw_values(sc, seed, min(D, groups)) if sc.is_uncertain else {}
    first, second = sc.compare_pair
    pair = (assets.index(first), assets.index(second))
    report_steps = [month_steps[h] for h in reports]
    tables = draw_tables(sc, values, month_steps, pair)  # [D_used, ...]; one set without uncertainty
    centre = draw_tables(sc, {}, month_steps, pair) if sc.is_uncertain else tables  # distributions at centres
    steps = tables.steps
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
        start_probs=centre.start[0],
        base_matrix=centre.base[0],
        step_matrices=centre.step_trans[0],
        expected_steps_in=expected_steps_in(tables.start, tables.step_trans, report_steps),
    )


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
