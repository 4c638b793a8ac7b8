"""The JAX regime-switching engine: simulate path blocks of per-step log returns (SPEC section 3).

Paths come in logical blocks of ``BLOCK_PATHS``. Block b's random numbers come from
``fold_in(fold_in(key(seed), b), t)`` at step t (threefry, non-partitionable form: the faster one on CPU),
so a path's values depend on the seed and its block index only, never on how many blocks are simulated
together (``blocks_per_call``) or on the devices they are spread over.

One jitted function per run shape (``block_runner``): ``lax.scan`` over steps (or months, for the exact
method), vectorised over the paths of a block, ``lax.map`` over the blocks of a call, ``shard_map`` over
devices. Per-regime parameters are selected with chains of ``jnp.where`` and enter as scalars per asset row
(small-table gathers, tiny matrix products and [A, 1] broadcasts are what make a naive scan slow on CPU).
"""

from __future__ import annotations

import functools
import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .params import Model, month_tables

BLOCK_PATHS = 1 << 14  # paths per logical block: the unit of randomness; a multiple of 8 for fast sampling


class PathState(NamedTuple):
    """Per-path state of one block (P paths, A assets; assets-major so each asset is one contiguous vector)."""

    regime: jax.Array      # [P] int32: regime of the last step
    log_wealth: jax.Array  # [A, P] cumulative log return
    peak: jax.Array        # [A, P] running maximum of log_wealth (starts at 0)
    max_dd: jax.Array      # [A, P] running maximum of peak - log_wealth (log drawdown)
    months: jax.Array      # [M + 1, A, P] log_wealth at each month end (slot 0: month 0); [0, A, P] if not kept


class BlockOutput(NamedTuple):
    reports: jax.Array     # [R, A, P] cumulative log return at each report horizon
    report_dd: jax.Array   # [R, A, P] maximum log drawdown up to each report horizon
    months: jax.Array      # [M + 1, A, P] cumulative log return at every month end (empty unless kept)
    occupancy: jax.Array   # [T, K] (valid) paths in each regime at each step; [H, K] path-steps per month (exact)


def init(n_paths: int, n_assets: int, n_months: int, keep_months: bool, dtype) -> PathState:
    zeros = jnp.zeros((n_assets, n_paths), dtype)
    return PathState(regime=jnp.zeros(n_paths, jnp.int32), log_wealth=zeros, peak=zeros, max_dd=zeros,
                     months=jnp.zeros((n_months + 1 if keep_months else 0, n_assets, n_paths), dtype))


def uniforms(bits: jax.Array, dtype) -> jax.Array:
    """Uniform [0, 1) floats from random bits (the mantissa trick of ``jax.random.uniform``)."""
    nbits, mant, one = (32, 23, 0x3F800000) if dtype == jnp.float32 else (64, 52, 0x3FF0000000000000)
    utype = jnp.uint32 if nbits == 32 else jnp.uint64
    return jax.lax.bitcast_convert_type((bits >> (nbits - mant)) | utype(one), dtype) - 1.0


def normals(u: jax.Array) -> jax.Array:
    """Standard normals from uniforms on [0, 1) by the inverse error function (as ``jax.random.normal``)."""
    lo = np.nextafter(np.array(-1.0, u.dtype), np.array(0.0, u.dtype))
    return np.sqrt(2.0).astype(u.dtype) * jax.lax.erf_inv(jnp.maximum(lo, u * (1.0 - lo) + lo))


def draw(key: jax.Array, n_assets: int, n_paths: int, dtype) -> tuple[jax.Array, jax.Array]:
    """One draw of random bits for a step (or month): a uniform [P] that moves the chain and unit normals
    [A, P] for the assets."""
    bits = jax.random.bits(key, (n_assets + 1, n_paths), jnp.uint32 if dtype == jnp.float32 else jnp.uint64)
    u = uniforms(bits, dtype)
    return u[0], normals(u[1:])


def select(masks: list[jax.Array], table: jax.Array) -> jax.Array:
    """Per-path value of a per-regime ``table`` [K, ...]: ``table[regime]`` as a chain of selects
    (much faster than a gather on CPU). ``masks[k]`` is ``regime == k`` and broadcasts against table[k]."""
    value = table[-1]
    for k in range(len(masks) - 2, -1, -1):
        value = jnp.where(masks[k], table[k], value)
    return value


def chi2(key: jax.Array, dof: jax.Array) -> jax.Array:
    """Chi-square draws with per-path degrees of freedom ``dof`` (> 2), as 2 * Gamma(dof / 2).

    Marsaglia-Tsang (shape >= 1): every path draws a candidate each round until all are accepted
    (acceptance > 98% per round for shape > 1, so a block needs a few rounds). Round i uses
    ``fold_in(key, i)``, so the draws depend on the key alone.
    """
    d = dof / 2.0 - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)

    def candidate(i):
        k_x, k_u = jax.random.split(jax.random.fold_in(key, i))
        x = jax.random.normal(k_x, dof.shape, dof.dtype)
        u = jax.random.uniform(k_u, dof.shape, dof.dtype)
        v = (1.0 + c * x) ** 3
        log_v = jnp.log(jnp.where(v > 0, v, 1.0))
        ok = (v > 0) & (jnp.log(u) < 0.5 * x * x + d - d * v + d * log_v)
        return ok, d * v

    def body(carry):
        ok, g, i = carry
        ok_i, g_i = candidate(i)
        return ok | ok_i, jnp.where(ok, g, g_i), i + 1

    ok, g = candidate(0)
    _, g, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[0]), body, (ok, g, 1))
    return 2.0 * g


def step(state: PathState, xs, *, key: jax.Array, valid: jax.Array, has_tails: bool):
    """Advance every path of a block by one step. ``xs`` = (t, StepParams slice for step t)."""
    t, p = xs
    K, A = p.drift.shape
    n_paths = state.regime.shape[0]
    key_t = jax.random.fold_in(key, t)
    u, z = draw(key_t, A, n_paths, state.log_wealth.dtype)

    # Regime move into step t: count the cumulative-row thresholds the uniform passes.
    masks = [state.regime == k for k in range(K)]
    regime = jnp.zeros(n_paths, jnp.int32)
    for j in range(K - 1):
        regime += (u >= select(masks, p.cum_trans[:, j])).astype(jnp.int32)
    masks = [regime == k for k in range(K)]

    # Per asset row a: drift + rate shift + sum_b loading[a, b] z_b, where loading = vol * sqrt(dt) * Cholesky
    # factor of corr, scaled by sqrt((nu - 2) / chi2_nu) for Student-t regimes (unit-variance multivariate t).
    # Parameters enter as scalars per row: broadcasting an [A, 1] parameter over [A, P] is several times slower.
    if has_tails:
        finite = jnp.isfinite(p.tails)
        # one draw per path (with one regime, select returns an unbroadcast scalar); 4.0: placeholder, Gaussian
        nu = jnp.broadcast_to(select(masks, jnp.where(finite, p.tails, 4.0)), (n_paths,))
        scale = jnp.where(select(masks, finite), jnp.sqrt((nu - 2.0) / chi2(jax.random.fold_in(key_t, 1), nu)), 1.0)
    rows = []
    for a in range(A):
        shock = sum(select(masks, p.loading[:, a, b]) * z[b] for b in range(a + 1))
        if has_tails:
            shock = shock * scale
        rows.append(state.log_wealth[a] + select(masks, p.drift[:, a]) + p.shift[a] + shock)
    occupancy = jnp.stack([jnp.sum(jnp.where(m, valid, 0)) for m in masks])
    return advance(state, regime, jnp.stack(rows), p.month_slot), occupancy


def advance(state: PathState, regime, log_wealth, month_slot) -> PathState:
    """The new state after a step (or month): drawdowns updated and, when month ends are kept, log wealth
    written into the slot of the next month end (the last write before it is the right one)."""
    peak = jnp.maximum(state.peak, log_wealth)
    max_dd = jnp.maximum(state.max_dd, peak - log_wealth)
    months = state.months
    if months.shape[0]:
        months = jax.lax.dynamic_update_index_in_dim(months, log_wealth, month_slot, 0)
    return PathState(regime, log_wealth, peak, max_dd, months)


def find_outcome(cdf: jax.Array, row: jax.Array, u: jax.Array) -> jax.Array:
    """Per path, the first index i with cdf[row, i] > u (binary search in the path's own row of [K, N])."""
    n = cdf.shape[1]
    flat = cdf.reshape(-1)
    lo, hi = row * n, row * n + n - 1

    def halve(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) // 2
        right = jnp.take(flat, mid) <= u
        return jnp.where(right, mid + 1, lo), jnp.where(right, hi, mid)

    lo, _ = jax.lax.fori_loop(0, max(1, int(np.ceil(np.log2(n))) + 1), halve, (lo, hi))
    return lo - row * n


def month_step(state: PathState, xs, *, key: jax.Array, valid: jax.Array, has_tails: bool):
    """Advance every path by one whole month with the exact method (Gaussian regimes): draw the month's
    (regime counts, end regime) outcome from its exact law, then the Gaussian log return given it.
    ``xs`` = (s, MonthParams slice for month s). Drawdowns are observed at month ends only."""
    del has_tails
    s, q = xs
    K, A = q.cdf.shape[0], q.mean.shape[0]
    u, z = draw(jax.random.fold_in(key, s), A, state.regime.shape[0], state.log_wealth.dtype)
    outcome = find_outcome(q.cdf, state.regime, u)
    take = lambda table: jnp.take(table, outcome)  # noqa: E731
    rows = []
    for a in range(A):
        shock = sum(take(q.chol[a, b]) * z[b] for b in range(a + 1))
        rows.append(state.log_wealth[a] + take(q.mean[a]) + q.shift[a] + shock)
    occupancy = jnp.stack([jnp.sum(take(q.counts[k]) * valid) for k in range(K)])
    return advance(state, take(q.end), jnp.stack(rows), q.month_slot), occupancy


def simulate_block(params, key: jax.Array, n_valid: jax.Array, *, n_paths: int, n_months: int,
                   report_ends: tuple[int, ...], has_tails: bool, keep_months: bool, method: str) -> BlockOutput:
    """One logical block of ``n_paths`` paths; only the first ``n_valid`` count towards occupancy.
    ``method`` 'step' scans StepParams over steps; 'exact' scans MonthParams over months. The state is
    recorded at ``report_ends`` (steps or months) only, so no per-step write is spent on report horizons."""
    dtype = params.shift.dtype
    state = init(n_paths, params.shift.shape[-1], n_months, keep_months, dtype)
    valid = (jnp.arange(n_paths) < n_valid).astype(dtype)
    body = partial(step if method == "step" else month_step, key=key, valid=valid, has_tails=has_tails)
    # Outer scan over chunks of G = gcd(report ends) steps, inner scan over a chunk's steps: one loop body,
    # and the state is recorded only at chunk ends (every report end is one).
    G = math.gcd(*report_ends)
    chunks = report_ends[-1] // G
    xs = jax.tree.map(lambda x: x.reshape((chunks, G) + x.shape[1:]),
                      (jnp.arange(params.shift.shape[0], dtype=jnp.uint32), params))

    def chunk(state, xs_chunk):
        state, occupancy = jax.lax.scan(body, state, xs_chunk)
        return state, (state.log_wealth, state.max_dd, occupancy)

    state, (log_wealth, max_dd, occupancy) = jax.lax.scan(chunk, state, xs)
    picks = np.asarray(report_ends) // G - 1
    return BlockOutput(log_wealth[picks], max_dd[picks], state.months,
                       occupancy.reshape((-1,) + occupancy.shape[2:]))


@functools.lru_cache(maxsize=32)
def block_runner(devices: tuple, **static):
    """The jitted function of a run shape: each device of ``devices`` simulates its share of the blocks
    (leading axis) one after the other with ``lax.map``; returns BlockOutput with a leading block axis."""
    mesh = jax.sharding.Mesh(np.array(devices), ("blocks",))
    blocks, same = jax.sharding.PartitionSpec("blocks"), jax.sharding.PartitionSpec()

    def on_device(params, seed_key, block_ids, n_valid):
        run = partial(simulate_block, params, **static)
        return jax.lax.map(lambda b: run(jax.random.fold_in(seed_key, b[0]), b[1]), (block_ids, n_valid))

    return mesh, jax.jit(jax.shard_map(on_device, mesh=mesh, in_specs=(same, same, blocks, blocks),
                                       out_specs=blocks, check_vma=False))


def run_blocks(model: Model, seed: int, n_paths: int, blocks, *, dtype, devices: tuple, blocks_per_call: int,
               month_paths: int, method: str = "step", on_blocks=None):
    """Simulate the logical ``blocks`` (indices into the ceil(n_paths / BLOCK_PATHS) blocks of the run).

    Yields (block index, n_valid_paths, BlockOutput as numpy) per block. Blocks holding any of the first
    ``month_paths`` paths also return every month end (a separate compile; other blocks skip that buffer).
    Each call gives every device ``blocks_per_call`` blocks. ``method``: 'step' (per-step scan, any
    scenario) or 'exact' (month-by-month, Gaussian regimes; see ``params.month_tables``). Occupancy comes
    back per step ('step') or per month ('exact'). ``on_blocks(paths_done)`` reports progress.
    """
    per_call = max(1, blocks_per_call) * len(devices)
    report_ends = model.report_steps if method == "step" else model.report_months
    static = dict(n_paths=BLOCK_PATHS, n_months=len(model.month_steps) - 1, report_ends=tuple(report_ends),
                  has_tails=model.has_tails, method=method)
    tables = model.steps if method == "step" else month_tables(model)
    cast = type(tables)(*[np.asarray(a, dtype=dtype if a.dtype.kind == "f" else a.dtype) for a in tables])
    month_blocks = -(-month_paths // BLOCK_PATHS)
    done = 0
    with jax.threefry_partitionable(False):  # the faster threefry on CPU; a block is never split
        for group, keep_months in (([b for b in blocks if b < month_blocks], True),
                                   ([b for b in blocks if b >= month_blocks], False)):
            if not group:
                continue
            mesh, runner = block_runner(tuple(devices), keep_months=keep_months, **static)
            same = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            spread = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("blocks"))
            params = jax.device_put(cast, same)
            seed_key = jax.device_put(jax.random.key(seed), same)
            for i in range(0, len(group), per_call):
                ids = np.asarray(group[i:i + per_call])
                ids = np.concatenate([ids, np.full(per_call - len(ids), ids[-1])])  # fixed shape: one compile
                valid = np.clip(n_paths - ids * BLOCK_PATHS, 0, BLOCK_PATHS)
                out = runner(params, seed_key, jax.device_put(ids.astype(np.uint32), spread),
                             jax.device_put(valid.astype(np.int32), spread))
                out = jax.tree.map(np.asarray, out)
                for j, b in enumerate(group[i:i + per_call]):
                    done += int(valid[j])
                    yield int(b), int(valid[j]), jax.tree.map(lambda x: x[j], out)
                if on_blocks is not None:
                    on_blocks(done)
