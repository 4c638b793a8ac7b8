"""The JAX regime-switching engine: simulate path blocks of per-step log returns (docs/model.md).

Paths come in logical blocks of ``BLOCK_PATHS``. Block b's random numbers come from
``fold_in(fold_in(key(seed), b), t)`` at step t (threefry, non-partitionable form: the faster one on CPU),
so a path's values depend on the seed and its block index only, never on how many blocks are simulated
together (``blocks_per_call``) or on the devices they are spread over.

One jitted function per run shape (``block_runner``): ``lax.scan`` over steps (or segments of whole months,
for the exact method), vectorised over the paths of a block, ``lax.map`` (CPU) or ``vmap`` (GPU) over the
blocks of a call, ``shard_map`` over devices. Per-regime parameters are selected with chains of ``jnp.where``
and enter as scalars per asset row (small-table gathers, tiny matrix products and [A, 1] broadcasts are what
make a naive scan slow on CPU). With parameter draws a block's paths are laid out [Q, G], Q groups of G paths
with a draw each, and a parameter enters as a [Q, 1] column that broadcasts over each group's paths.
"""

from __future__ import annotations

import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .params import BLOCK_PATHS, Model, end_bits, segment_tables

STREAM_BASE = 1 << 31  # first key tag of a random stream; a run has fewer blocks than this (3.5e13 paths)


class PathState(NamedTuple):
    """Per-path state of one block (A assets; assets-major so each asset is one contiguous array). The block's
    paths have shape ``P``: (Q, G) in the step kernel, Q groups of G paths that each share a parameter draw
    (path q G + i is [q, i]), and (P,) in the segment kernel."""

    regime: jax.Array  # [*P] int32: regime of the last step
    log_wealth: jax.Array  # [A, *P] cumulative log return
    peak: jax.Array  # [A, *P] running maximum of log_wealth (starts at 0)
    max_dd: jax.Array  # [A, *P] running maximum of peak - log_wealth (log drawdown)
    steps_in: jax.Array  # [K, *P] int32: steps spent in each regime so far
    months: jax.Array  # [M + 1, A, *P] log_wealth at each month end (slot 0: month 0); [0, A, *P] if not kept
    cond_mean: jax.Array  # [A, *P] mean of log_wealth given the path's regimes (and t scales): drifts + rate term
    cond_var: jax.Array  # [A + 1, *P] its variance given them, per asset, then of the compared pair's difference


class BlockOutput(NamedTuple):
    reports: jax.Array  # [R, A, P] cumulative log return at each report horizon
    report_dd: jax.Array  # [R, A, P] maximum log drawdown up to each report horizon
    months: jax.Array  # [M + 1, A, P] cumulative log return at every month end (empty unless kept)
    report_fig: jax.Array  # [R, 1 + A, P] P(first beats second | path), then each asset's P(loss | path)
    report_steps_in: jax.Array  # [R, K, P] int32: steps spent in each regime up to each report horizon


def init(shape: tuple, n_assets: int, n_regimes: int, n_months: int, keep_months: bool, dtype) -> PathState:
    """The state before step 0 of a block whose paths have ``shape`` (see ``PathState``)."""
    zeros = jnp.zeros((n_assets, *shape), dtype)
    return PathState(
        regime=jnp.zeros(shape, jnp.int32),
        log_wealth=zeros,
        peak=zeros,
        max_dd=zeros,
        steps_in=jnp.zeros((n_regimes, *shape), jnp.int32),
        months=jnp.zeros((n_months + 1 if keep_months else 0, n_assets, *shape), dtype),
        cond_mean=zeros,
        cond_var=jnp.zeros((n_assets + 1, *shape), dtype),
    )


def uniforms(bits: jax.Array, dtype) -> jax.Array:
    """Uniform [0, 1) floats from random bits (the mantissa trick of ``jax.random.uniform``)."""
    nbits, mant, one = (32, 23, 0x3F800000) if dtype == jnp.float32 else (64, 52, 0x3FF0000000000000)
    utype = jnp.uint32 if nbits == 32 else jnp.uint64
    return jax.lax.bitcast_convert_type((bits >> (nbits - mant)) | utype(one), dtype) - 1.0


def normals(u: jax.Array) -> jax.Array:
    """Standard normals from uniforms on [0, 1) by the inverse error function (as ``jax.random.normal``)."""
    lo = np.nextafter(np.array(-1.0, u.dtype), np.array(0.0, u.dtype))
    return np.sqrt(2.0).astype(u.dtype) * jax.lax.erf_inv(jnp.maximum(lo, u * (1.0 - lo) + lo))


def random_words(key: jax.Array, n_words: int, n_paths: int, dtype) -> jax.Array:
    """[n_words, P] random bits: uint32 for float32 runs, uint64 for float64."""
    return jax.random.bits(key, (n_words, n_paths), jnp.uint32 if dtype == jnp.float32 else jnp.uint64)


def draw(key: jax.Array, n_uniforms: int, n_normals: int, n_paths: int, dtype) -> tuple[jax.Array, jax.Array]:
    """One draw of random bits for a step (or segment): uniforms [n_uniforms, P] that move the chain and unit
    normals [n_normals, P] for the assets."""
    u = uniforms(random_words(key, n_uniforms + n_normals, n_paths, dtype), dtype)
    return u[:n_uniforms], normals(u[n_uniforms:])


def select(masks: list[jax.Array], table: jax.Array) -> jax.Array:
    """Per-path value of a per-regime ``table`` [K, ...]: ``table[regime]`` as a chain of selects
    (much faster than a gather on CPU). ``masks[k]`` is ``regime == k`` and broadcasts against table[k]."""
    value = table[-1]
    for k in range(len(masks) - 2, -1, -1):
        value = jnp.where(masks[k], table[k], value)
    return value


MAX_INTEGER_TAILS = 10  # integer degrees of freedom up to this draw chi-square without rejection


def tail_pairs(tails: np.ndarray) -> int:
    """How ``chi2`` draws for these per-step, per-regime ``tails`` (inf: Gaussian): floor(max nu / 2) when every
    finite one is an integer no larger than MAX_INTEGER_TAILS (sums of exponentials, no rejection), else 0
    (Marsaglia-Tsang)."""
    nu = tails[np.isfinite(tails)]
    if nu.size and np.all(nu == np.round(nu)) and nu.max() <= MAX_INTEGER_TAILS:
        return int(nu.max()) // 2
    return 0


def chi2(key: jax.Array, dof: jax.Array, pairs: int = 0) -> jax.Array:
    """Chi-square draws with per-path degrees of freedom ``dof`` (> 2).

    ``pairs`` > 0 (every dof an integer, none above 2 * pairs + 1): the exact sum of floor(dof / 2)
    exponentials of mean 2, -2 log(1 - U), plus Z^2 for odd dof. The uniforms are taken at the midpoints of
    their 2^-23 (2^-52) grid, so no term is zero or infinite. No rejection: faster than the sampler below for
    these small dof (benchmarks/README.md).

    ``pairs`` = 0: 2 * Gamma(dof / 2) by Marsaglia-Tsang (shape >= 1, acceptance > 95% per candidate).
    Round 0 draws a candidate for every path; each later round i redraws, with ``fold_in(key, i)``, for the
    first ``retry`` paths still waiting (found with a fixed-size ``nonzero``), until none waits. A path keeps
    its first accepted candidate, so the draws are exact and depend on the key alone.
    """
    dof = jnp.asarray(dof)
    if pairs:
        u, z = draw(key, pairs, 1, dof.shape[0], dof.dtype)
        half_grid = 2.0 ** -(24 if dof.dtype == jnp.float32 else 53)
        terms = -2.0 * jnp.log1p(-(u + half_grid))  # [pairs, P]
        k = jnp.floor(dof / 2.0)
        total = sum(jnp.where(i < k, terms[i], 0.0) for i in range(pairs))
        return total + (dof - 2.0 * k) * z[0] * z[0]
    d = dof / 2.0 - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    n = dof.shape[0]
    retry = min(n, max(1024, n // 8))

    def candidate(i, d, c):
        u, x = draw(jax.random.fold_in(key, i), 1, 1, d.shape[0], dof.dtype)
        u, x = u[0], x[0]
        v = (1.0 + c * x) ** 3
        log_v = jnp.log(jnp.where(v > 0, v, 1.0))
        ok = (v > 0) & (jnp.log(u) < 0.5 * x * x + d - d * v + d * log_v)
        return ok, d * v

    def body(carry):
        ok, g, i = carry
        waiting = jnp.nonzero(~ok, size=retry, fill_value=n)[0]  # n: padding, dropped by the scatters
        ok_i, g_i = candidate(i, d[waiting], c[waiting])
        return ok.at[waiting].set(ok_i, mode="drop"), g.at[waiting].set(g_i, mode="drop"), i + 1

    ok, g = candidate(0, d, c)
    _, g, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[0]), body, (ok, g, 1))
    return 2.0 * g


def step(state: PathState, xs, *, key: jax.Array, has_tails: bool, chi2_pairs: int = 0, drawdowns: bool = True):
    """Advance every path of a block by one step. ``xs`` = (t, StepParams slice for step t, each table with
    trailing axes [Q, 1]: group q's parameter draw; ``month_slot`` a scalar). The paths are [Q, G] (``PathState``);
    their random numbers are drawn flat, path q G + i at [q, i], so they do not depend on G. ``chi2_pairs``: see
    ``chi2``. ``drawdowns``: update them after the step (else the caller does, less often)."""
    t, p = xs
    K, A = p.drift.shape[:2]
    shape = state.regime.shape
    n_paths = state.regime.size
    key_t = jax.random.fold_in(key, t)
    u, z = draw(key_t, 1, A, n_paths, state.log_wealth.dtype)
    u, z = u[0].reshape(shape), z.reshape((A, *shape))

    # Regime move into step t: count the cumulative-row thresholds the uniform passes. The count is a reduction
    # (over a zero row too, so that it stays one when K = 2) and XLA materialises it once; an elementwise count
    # is recomputed inside every consumer, where the per-step threshold lookup stops LLVM vectorising (2x slower).
    masks = [state.regime == k for k in range(K)]
    passed = [u >= select(masks, p.cum_trans[:, j]) for j in range(K - 1)]
    regime = jnp.sum(jnp.stack(passed + [jnp.zeros(shape, bool)]), axis=0, dtype=jnp.int32)
    masks = [regime == k for k in range(K)]

    # Per asset row a: drift + rate shift + sum_b loading[a, b] z_b, where loading = vol * sqrt(dt) * Cholesky
    # factor of corr, scaled by sqrt((nu - 2) / chi2_nu) for Student-t regimes (unit-variance multivariate t).
    # Parameters enter as scalars per row: broadcasting an [A, 1] parameter over [A, P] is several times slower.
    if has_tails:
        finite = jnp.isfinite(p.tails)
        # one draw per path (with one regime, select returns an unbroadcast scalar); 4.0: placeholder, Gaussian
        nu = jnp.broadcast_to(select(masks, jnp.where(finite, p.tails, 4.0)), shape)
        w = chi2(jax.random.fold_in(key_t, 1), nu.reshape(-1), chi2_pairs).reshape(shape)
        scale2 = jnp.where(select(masks, finite), (nu - 2.0) / w, 1.0)
        scale = jnp.sqrt(scale2)
    rows, means, variances = [], [], []
    for a in range(A):
        shock = sum(select(masks, p.loading[:, a, b]) * z[b] for b in range(A))  # zeros above the diagonal
        if has_tails:
            shock = shock * scale
        mean = select(masks, p.drift[:, a]) + p.shift[a]
        rows.append(state.log_wealth[a] + mean + shock)
        means.append(state.cond_mean[a] + mean)
    for c in range(A + 1):  # given the regimes and scales the step's shocks are Gaussian: variances add up
        var = select(masks, p.cond_var[:, c])
        variances.append(state.cond_var[c] + (var * scale2 if has_tails else var))
    steps_in = jnp.stack([state.steps_in[k] + masks[k] for k in range(K)])
    state = advance(state, regime, jnp.stack(rows), steps_in, p.month_slot, jnp.stack(means), jnp.stack(variances))
    return (observe_drawdowns(state) if drawdowns else state), None


def advance(state: PathState, regime, log_wealth, steps_in, month_slot, cond_mean, cond_var) -> PathState:
    """The new state after a step (or segment): when month ends are kept, log wealth is written into the slot
    of the next month end (the last write before it is the right one). Drawdowns are not updated."""
    months = state.months
    if months.shape[0]:
        months = jax.lax.dynamic_update_index_in_dim(months, log_wealth, month_slot, 0)
    return state._replace(
        regime=regime, log_wealth=log_wealth, steps_in=steps_in, months=months, cond_mean=cond_mean, cond_var=cond_var
    )


def observe_drawdowns(state: PathState) -> PathState:
    """Running peak and maximum drawdown updated with the current log wealth."""
    peak = jnp.maximum(state.peak, state.log_wealth)
    return state._replace(peak=peak, max_dd=jnp.maximum(state.max_dd, peak - state.log_wealth))


def segment_step(state: PathState, xs, *, key: jax.Array, count_bits: int):
    """Advance every path by one segment of whole months with the exact method (Gaussian regimes): draw the
    segment's (regime counts, end regime) outcome from its exact law by the alias method, then the Gaussian
    log return given it. ``xs`` = (s, SegmentParams slice for segment s); ``count_bits``: bits per count in
    the outcome codes (``params.outcome_code``). Drawdowns are left to the caller."""
    s, q = xs
    (K, N), A = q.accept.shape, q.drift.shape[-1]
    dtype = state.log_wealth.dtype
    # The alias draw needs log2(N) bits for the slot and a uniform with the full mantissa (23 bits in float32,
    # 52 in float64) for the accept test: one word when they fit in it (N <= 512 in float32), else two.
    nbits, mant = (32, 23) if dtype == jnp.float32 else (64, 52)
    slot_bits = N.bit_length() - 1
    n_alias = 1 if slot_bits <= nbits - mant else 2
    words = random_words(jax.random.fold_in(key, s), n_alias + A, state.regime.shape[0], dtype)
    slot = (words[0] >> (nbits - slot_bits)).astype(jnp.int32)
    u = uniforms(words[0] << slot_bits if n_alias == 1 else words[1], dtype)
    z = normals(uniforms(words[n_alias:], dtype))
    row = state.regime * N + slot
    code = jnp.where(
        u < jnp.take(q.accept.reshape(-1), row), jnp.take(q.code, slot), jnp.take(q.alias.reshape(-1), row)
    )
    low = end_bits(K)
    counts = [(code >> (low + k * count_bits)) & ((1 << count_bits) - 1) for k in range(K)]
    n = [c.astype(dtype) for c in counts]
    cov = [[sum(n[k] * q.cov[k, a, b] for k in range(K)) for b in range(a + 1)] for a in range(A)]
    chol = lower_cholesky(cov)
    rows, means = [], []
    for a in range(A):
        mean = sum(n[k] * q.drift[k, a] for k in range(K)) + q.shift[a]
        rows.append(state.log_wealth[a] + mean + sum(chol[a][b] * z[b] for b in range(a + 1)))
        means.append(state.cond_mean[a] + mean)
    variances = [state.cond_var[c] + sum(n[k] * q.cond_var[k, c] for k in range(K)) for c in range(A + 1)]
    steps_in = jnp.stack([state.steps_in[k] + counts[k] for k in range(K)])
    regime = code & ((1 << low) - 1)
    return advance(state, regime, jnp.stack(rows), steps_in, q.month_slot, jnp.stack(means), jnp.stack(variances)), None


def lower_cholesky(cov: list[list[jax.Array]]) -> list[list[jax.Array]]:
    """Elementwise Cholesky factor of small covariance matrices given as rows ``cov[a][b]`` (b <= a) of
    per-path arrays: L[a][b] with L L^T = cov. A zero pivot (zero variance) gives a zero column."""
    L = []
    for a, row in enumerate(cov):
        L.append([])
        for b in range(a + 1):
            rest = row[b] - sum(L[a][k] * L[b][k] for k in range(b))
            if b == a:
                L[a].append(jnp.sqrt(jnp.maximum(rest, 0.0)))
            else:
                pivot = L[b][b]
                L[a].append(jnp.where(pivot > 0, rest / jnp.where(pivot > 0, pivot, 1.0), 0.0))
    return L


def positive_probability(mean: jax.Array, var: jax.Array) -> jax.Array:
    """P(Y > 0) for Y ~ N(mean, var), elementwise; a zero variance gives 1[mean > 0] ("beats" is strict)."""
    positive = var > 0
    z = mean / jnp.sqrt(jnp.where(positive, var, 1.0))
    return jnp.where(positive, jax.scipy.special.ndtr(z), (mean > 0).astype(mean.dtype))


def conditional_figures(cond_mean: jax.Array, cond_var: jax.Array, pair: tuple[int, int]) -> jax.Array:
    """[..., 1 + A, P] from PathState.cond_mean [..., A, P] and cond_var [..., A + 1, P]: P(first beats second
    | path) (the compared ``pair``'s log difference is positive), then each asset's P(loss | path)."""
    i, j = pair
    A = cond_mean.shape[-2]
    beats = positive_probability(cond_mean[..., i, :] - cond_mean[..., j, :], cond_var[..., A, :])
    return jnp.concatenate([beats[..., None, :], positive_probability(-cond_mean, cond_var[..., :A, :])], axis=-2)


def simulate_block(
    params,
    key: jax.Array,
    n_valid: jax.Array,
    *,
    n_paths: int,
    n_months: int,
    report_ends: tuple[int, ...],
    chunk: int,
    has_tails: bool,
    keep_months: bool,
    kernel: str,
    drawdowns_each_step: bool,
    pair: tuple[int, int],
    chi2_pairs: int = 0,
    count_bits: int = 0,
) -> BlockOutput:
    """One logical block of ``n_paths`` paths (the caller uses the first ``n_valid``).

    ``kernel`` 'step' scans StepParams over steps (``chi2_pairs``: see ``chi2``); 'segment' scans SegmentParams
    over segments (``count_bits``: see ``segment_step``). ``report_ends`` and ``chunk`` are in scan units: an
    outer scan runs over chunks of ``chunk`` units (every report end is a chunk end), an inner scan over a
    chunk's units, so there is one loop body and the state is recorded at chunk ends only. Drawdowns are seen
    after every step with ``drawdowns_each_step`` (step kernel only), else at chunk ends. ``pair``: the
    compared assets' indices (``conditional_figures``).
    """
    if kernel == "step":  # tables [T, ..., Q, 1]: paths [Q, G]
        shape = (params.shift.shape[-2], n_paths // params.shift.shape[-2])
        body = partial(step, key=key, has_tails=has_tails, chi2_pairs=chi2_pairs, drawdowns=drawdowns_each_step)
    else:
        shape = (n_paths,)
        body = partial(segment_step, key=key, count_bits=count_bits)
    state = init(shape, params.shift.shape[1], params.drift.shape[1], n_months, keep_months, params.shift.dtype)
    xs = jax.tree.map(
        lambda x: x.reshape((report_ends[-1] // chunk, chunk) + x.shape[1:]),
        (jnp.arange(params.shift.shape[0], dtype=jnp.uint32), params),
    )

    def run_chunk(state, xs_chunk):
        state, _ = jax.lax.scan(body, state, xs_chunk)
        if not drawdowns_each_step:
            state = observe_drawdowns(state)
        return state, (state.log_wealth, state.max_dd, state.cond_mean, state.cond_var, state.steps_in)

    state, recorded = jax.lax.scan(run_chunk, state, xs)
    flat = partial(jax.tree.map, lambda x: x.reshape(x.shape[: x.ndim - len(shape)] + (n_paths,)))  # paths [P]
    at_reports = [x[np.asarray(report_ends) // chunk - 1] for x in recorded]
    log_wealth, max_dd, cond_mean, cond_var, steps_in = flat(at_reports)
    return BlockOutput(log_wealth, max_dd, flat(state.months), conditional_figures(cond_mean, cond_var, pair), steps_in)


@functools.lru_cache(maxsize=32)
def block_runner(devices: tuple, side_by_side: bool = False, per_block: bool = False, **static):
    """The jitted function of a run shape: each device of ``devices`` simulates its share of the blocks
    (leading axis) one after the other (``lax.map``: fastest on a CPU) or all side by side (``vmap``: a GPU
    needs millions of paths in flight). ``per_block``: the parameter tables have a leading block axis too, and
    each block simulates with its own row (its parameter draw's tables); else every block shares them. Returns
    BlockOutput with a leading block axis. The numbers are the same either way: each block has its own key."""
    mesh = jax.sharding.Mesh(np.array(devices), ("blocks",))
    blocks, same = jax.sharding.PartitionSpec("blocks"), jax.sharding.PartitionSpec()

    def on_device(params, seed_key, block_ids, n_valid):
        def one(b):
            block, valid, p = b if per_block else (*b, params)
            return simulate_block(p, jax.random.fold_in(seed_key, block), valid, **static)

        xs = (block_ids, n_valid, params) if per_block else (block_ids, n_valid)
        return (jax.vmap(one) if side_by_side else partial(jax.lax.map, one))(xs)

    specs = (blocks if per_block else same, same, blocks, blocks)
    return mesh, jax.jit(jax.shard_map(on_device, mesh=mesh, in_specs=specs, out_specs=blocks, check_vma=False))


class GroupCall(NamedTuple):
    """How one group of blocks is simulated: the jitted runner, its parameter tables, blocks per call, the
    shardings of replicated and per-block arguments, and ``per_block``: the tables are per parameter draw (on
    the host, [D_used, T, ...]; a call gets each block's groups' rows, see ``call_params``), else shared (on
    the devices). ``groups``: parameter groups per block (Q = BLOCK_PATHS / Model.draw_paths)."""

    runner: object
    params: object
    per_call: int
    same: jax.sharding.NamedSharding
    spread: jax.sharding.NamedSharding
    per_block: bool
    groups: int


def grouped(x: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Per-draw table ``x`` [D_used, T, ...] as the step kernel takes it for the groups' ``draws`` [..., Q]:
    [..., T, ..., Q, 1] (each step's slice ends in the groups' axis, broadcasting over the G paths of a group)."""
    return np.moveaxis(x[draws], draws.ndim - 1, -1)[..., None]


def call_params(call: GroupCall, ids: np.ndarray, n_draws: int):
    """The parameter tables of one call of blocks ``ids``: group g (= b Q + q) of block b gets row g mod
    ``n_draws`` of the per-draw tables, gathered here so that the compiled shape does not depend on the number of
    draws (groups past the run's paths, which simulate only padding, take any row); shared tables as they are."""
    if not call.per_block:
        return call.params
    Q, x = call.groups, call.params
    draws = (ids[:, None].astype(np.int64) * Q + np.arange(Q)) % n_draws % len(x.drift)  # [per_call, Q]
    tables = x._replace(**{k: grouped(v, draws) for k, v in x._asdict().items() if k != "month_slot"})
    tables = tables._replace(month_slot=np.broadcast_to(x.month_slot[0], (len(ids),) + x.month_slot.shape[1:]))
    return jax.device_put(tables, call.spread)


def block_groups(blocks, month_paths: int) -> list[tuple[list[int], bool]]:
    """The blocks that keep every month end (those holding any of the first ``month_paths`` paths) and the
    others, as (blocks, keep_months) pairs, empty groups left out."""
    month_blocks = -(-month_paths // BLOCK_PATHS)
    groups = [([b for b in blocks if b < month_blocks], True), ([b for b in blocks if b >= month_blocks], False)]
    return [(group, keep) for group, keep in groups if group]


def group_call(
    model: Model,
    n_blocks: int,
    keep_months: bool,
    dtype,
    devices,
    blocks_per_call: int,
    method: str,
    G: int,
    side_by_side: bool,
) -> GroupCall:
    """The runner and tables for a group of ``n_blocks`` blocks (see ``run_blocks``); ``G``: segment months."""
    if method == "step":
        kernel, tables, count_bits, ends, chunk = (
            "step",
            model.steps,
            0,
            model.report_steps,
            math.gcd(*model.report_steps),
        )
    elif keep_months and model.n_steps == model.horizon_months:  # a month is one step
        kernel, tables, count_bits, ends, chunk = "step", model.steps, 0, model.report_steps, G
    elif keep_months:
        kernel, (tables, count_bits), ends, chunk = "segment", segment_tables(model, 1), model.report_months, G
    else:
        kernel, (tables, count_bits) = "segment", segment_tables(model, G)
        ends, chunk = tuple(m // G for m in model.report_months), 1
    used = tuple(devices)[:n_blocks]  # no device left with only padding to simulate
    per_device = max(1, min(blocks_per_call, -(-n_blocks // len(used))))
    # StepParams of an uncertain scenario: a set per parameter draw, gathered per call. Else one set shared by
    # every block (the segment tables too: the exact method runs one parameter set).
    per_block = kernel == "step" and model.uncertain
    if kernel == "step" and not per_block:  # one group of a whole block: tables [T, ..., 1, 1]
        p = model.point_steps
        tables = p._replace(**{k: v[..., None, None] for k, v in p._asdict().items() if k != "month_slot"})
    mesh, runner = block_runner(
        used,
        side_by_side,
        per_block,
        n_paths=BLOCK_PATHS,
        n_months=model.horizon_months,
        report_ends=tuple(ends),
        chunk=chunk,
        has_tails=model.has_tails,
        chi2_pairs=tail_pairs(model.steps.tails),
        keep_months=keep_months,
        kernel=kernel,
        drawdowns_each_step=method == "step",
        pair=model.compare,
        count_bits=count_bits,
    )
    same = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    spread = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("blocks"))
    params = type(tables)(*[np.asarray(a, dtype=dtype if a.dtype.kind == "f" else a.dtype) for a in tables])
    if not per_block:
        params = jax.device_put(params, same)
    return GroupCall(runner, params, per_device * len(used), same, spread, per_block, BLOCK_PATHS // model.draw_paths)


_compiling: dict = {}  # kernel and argument shapes -> set once compiled (compile_blocks)
_compiling_lock = threading.Lock()


def compile_blocks(
    model: Model,
    n_paths: int,
    blocks,
    *,
    dtype,
    devices: tuple,
    blocks_per_call: int,
    month_paths: int,
    method: str = "step",
    segment_months: int = 1,
    side_by_side: bool = False,
) -> None:
    """Compile, without running, the kernels that ``run_blocks`` with the same arguments calls, so that it
    finds them compiled. The kernels of the groups compile side by side in threads (XLA compiles outside the
    GIL), and so may several callers: a kernel that another thread is compiling is waited for, not compiled
    twice."""
    with jax.threefry_partitionable(False):
        calls = [
            group_call(model, len(group), keep, dtype, devices, blocks_per_call, method, segment_months, side_by_side)
            for group, keep in block_groups(blocks, month_paths)
        ]

    def compile_call(call: GroupCall) -> None:
        params = call_params(call, np.zeros(call.per_call, np.int64), 1)
        key = (call.runner, tuple((a.shape, a.dtype.str) for a in params))
        with _compiling_lock:
            done = _compiling.get(key)
            mine = done is None
            if mine:
                done = _compiling[key] = threading.Event()
        if not mine:
            done.wait()
            return
        try:  # the configuration run_blocks traces under (a thread starts with the defaults)
            with jax.threefry_partitionable(False), jax.enable_x64(np.dtype(dtype) == np.float64):
                call.runner.lower(
                    params,
                    jax.device_put(jax.random.key(0), call.same),
                    jax.device_put(np.zeros(call.per_call, np.uint32), call.spread),
                    jax.device_put(np.zeros(call.per_call, np.int32), call.spread),
                ).compile()
        finally:
            done.set()

    with ThreadPoolExecutor(max_workers=max(1, len(calls))) as pool:
        list(pool.map(compile_call, calls))


def run_blocks(
    model: Model,
    seed: int,
    n_paths: int,
    blocks,
    *,
    dtype,
    devices: tuple,
    blocks_per_call: int,
    month_paths: int,
    method: str = "step",
    segment_months: int = 1,
    side_by_side: bool = False,
    on_blocks=None,
    stream: int | None = None,
):
    """Simulate the logical ``blocks`` (indices into the ceil(n_paths / BLOCK_PATHS) blocks of the run).

    Yields (block index, n_valid_paths, BlockOutput as numpy) per block. Group g of paths (paths [g G, (g + 1) G)
    of the run, G = ``model.draw_paths``) simulates with parameter draw g mod D: row g mod D of ``model.steps``,
    passed in with its block (``call_params``). Blocks holding any of the first ``month_paths`` paths also return
    every month end (a separate compile; other blocks skip that buffer).
    Each call gives every device ``blocks_per_call`` blocks (fewer if the group has fewer; a group of fewer
    blocks than devices uses as many devices as blocks), one after the other or all ``side_by_side`` (see
    ``block_runner``). ``method``: 'step' (per-step scan, any scenario) or 'exact' (Gaussian regimes; see
    ``params.segment_tables``): segments of ``segment_months`` months, one month at a time in the blocks that
    keep month ends (one step at a time where a month is one step: the same law, and the step kernel is
    faster), drawdowns seen at segment ends in all.
    ``on_blocks(paths_done)`` reports progress. ``stream`` (a blend's component): the run's key is
    ``fold_in(key(seed), STREAM_BASE + stream)`` instead of ``key(seed)``, so runs of one seed on different
    streams share no random numbers (block indices, folded into the same key, stay below STREAM_BASE).
    """
    done = 0
    with jax.threefry_partitionable(False):  # the faster threefry on CPU; a block is never split
        for group, keep_months in block_groups(blocks, month_paths):
            call = group_call(
                model, len(group), keep_months, dtype, devices, blocks_per_call, method, segment_months, side_by_side
            )
            runner, per_call, spread = call.runner, call.per_call, call.spread
            seed_key = jax.random.key(seed)
            if stream is not None:
                seed_key = jax.random.fold_in(seed_key, STREAM_BASE + stream)
            seed_key = jax.device_put(seed_key, call.same)

            def dispatch(i):
                ids = np.asarray(group[i : i + per_call])
                ids = np.concatenate([ids, np.full(per_call - len(ids), ids[-1])])  # fixed shape: one compile
                valid = np.clip(n_paths - ids * BLOCK_PATHS, 0, BLOCK_PATHS)
                out = runner(
                    call_params(call, ids, model.n_draws),
                    seed_key,
                    jax.device_put(ids.astype(np.uint32), spread),
                    jax.device_put(valid.astype(np.int32), spread),
                )
                return group[i : i + per_call], valid, out

            pending = dispatch(0)
            for i in range(per_call, len(group) + per_call, per_call):
                queued = dispatch(i) if i < len(group) else None  # queued before the host waits on pending:
                call_blocks, valid, out = pending  # the device works while the host merges
                out = jax.tree.map(np.asarray, out)
                for j, b in enumerate(call_blocks):
                    done += int(valid[j])
                    yield int(b), int(valid[j]), jax.tree.map(lambda x: x[j], out)
                if on_blocks is not None:
                    on_blocks(done)
                pending = queued
