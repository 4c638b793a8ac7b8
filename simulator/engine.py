"""The JAX regime-switching engine: simulate path blocks of per-step log returns (SPEC section 3).

Paths come in logical blocks of ``BLOCK_PATHS``. Block b's random numbers come from
``fold_in(fold_in(key(seed), b), t)`` at step t, so a path's values depend on the seed and its block
index only, never on how many blocks are simulated together (``blocks_per_call``) or on the device.

One jitted function per run shape (``simulate_blocks``): ``lax.scan`` over steps, vectorised over the
paths of a block, ``vmap`` over the blocks of one call. Per-regime parameters are selected with chains of
``jnp.where`` (small-table gathers and tiny matrix products are what make a naive scan slow on CPU).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .params import Model, StepParams

BLOCK_PATHS = 8192  # paths per logical block: the unit of randomness; a multiple of 8 for fast sampling


class DeviceError(ValueError):
    """A device was requested that JAX cannot see."""


class PathState(NamedTuple):
    """Per-path state of one block (P paths, A assets; assets-major so each asset is one contiguous vector)."""

    regime: jax.Array      # [P] int32: regime of the last step
    log_wealth: jax.Array  # [A, P] cumulative log return
    peak: jax.Array        # [A, P] running maximum of log_wealth (starts at 0)
    max_dd: jax.Array      # [A, P] running maximum of peak - log_wealth (log drawdown)
    months: jax.Array      # [M + 1, A, P] log_wealth at each month end (slot 0: month 0)
    report_dd: jax.Array   # [R + 1, A, P] max_dd at each report horizon (slot R: past the last report)


class BlockOutput(NamedTuple):
    months: jax.Array      # [M + 1, A, P] cumulative log return at every month end
    report_dd: jax.Array   # [R, A, P] maximum log drawdown up to each report horizon
    occupancy: jax.Array   # [T, K] number of (valid) paths in each regime at each step


def init(n_paths: int, n_assets: int, n_months: int, n_reports: int, dtype) -> PathState:
    zeros = jnp.zeros((n_assets, n_paths), dtype)
    return PathState(
        regime=jnp.zeros(n_paths, jnp.int32), log_wealth=zeros, peak=zeros, max_dd=zeros,
        months=jnp.zeros((n_months + 1, n_assets, n_paths), dtype),
        report_dd=jnp.zeros((n_reports + 1, n_assets, n_paths), dtype),
    )


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
    dtype = state.log_wealth.dtype
    k_move, k_norm, k_tail = jax.random.split(jax.random.fold_in(key, t), 3)

    # Regime move into step t: count the cumulative-row thresholds the uniform passes.
    masks = [state.regime == k for k in range(K)]
    u = jax.random.uniform(k_move, (n_paths,), dtype)
    regime = jnp.zeros(n_paths, jnp.int32)
    for j in range(K - 1):
        regime += (u >= select(masks, p.cum_trans[:, j])).astype(jnp.int32)
    masks = [regime == k for k in range(K)]

    # Correlated innovations: loading (vol * sqrt(dt) * Cholesky) of the regime times unit normals z,
    # scaled by sqrt((nu - 2) / chi2_nu) for Student-t regimes (unit variance, multivariate t).
    z = jax.random.normal(k_norm, (A, n_paths), dtype)
    shock = jnp.stack([sum(select(masks, p.loading[:, a, b, None]) * z[b] for b in range(a + 1)) for a in range(A)])
    if has_tails:
        finite = jnp.isfinite(p.tails)
        # one draw per path (with one regime, select returns an unbroadcast scalar); 4.0: placeholder, Gaussian
        nu = jnp.broadcast_to(select(masks, jnp.where(finite, p.tails, 4.0)), (n_paths,))
        scale = jnp.sqrt((nu - 2.0) / chi2(k_tail, nu))
        shock = shock * jnp.where(select(masks, finite), scale, 1.0)

    log_wealth = state.log_wealth + select(masks, p.drift[:, :, None]) + p.shift[:, None] + shock
    peak = jnp.maximum(state.peak, log_wealth)
    max_dd = jnp.maximum(state.max_dd, peak - log_wealth)
    # Write into the slot of the next month end / report; the last write before it is the right one.
    months = jax.lax.dynamic_update_index_in_dim(state.months, log_wealth, p.month_slot, 0)
    report_dd = jax.lax.dynamic_update_index_in_dim(state.report_dd, max_dd, p.report_slot, 0)
    occupancy = jnp.stack([jnp.sum(jnp.where(m, valid, 0)) for m in masks])
    return PathState(regime, log_wealth, peak, max_dd, months, report_dd), occupancy


def simulate_block(steps: StepParams, key: jax.Array, n_valid: jax.Array, *, n_paths: int, n_months: int,
                   n_reports: int, has_tails: bool) -> BlockOutput:
    """One logical block of ``n_paths`` paths; only the first ``n_valid`` count towards occupancy."""
    dtype = steps.drift.dtype
    state = init(n_paths, steps.drift.shape[-1], n_months, n_reports, dtype)
    valid = (jnp.arange(n_paths) < n_valid).astype(dtype)
    T = steps.drift.shape[0]
    body = partial(step, key=key, valid=valid, has_tails=has_tails)
    state, occupancy = jax.lax.scan(body, state, (jnp.arange(T, dtype=jnp.uint32), steps))
    return BlockOutput(state.months, state.report_dd[:n_reports], occupancy)


@partial(jax.jit, static_argnames=("n_paths", "n_months", "n_reports", "has_tails"))
def simulate_blocks(steps: StepParams, seed_key: jax.Array, block_ids: jax.Array, n_valid: jax.Array, *,
                    n_paths: int, n_months: int, n_reports: int, has_tails: bool) -> BlockOutput:
    """Several logical blocks at once (leading axis: block). The only jitted function of a run."""
    keys = jax.vmap(lambda b: jax.random.fold_in(seed_key, b))(block_ids)
    run = partial(simulate_block, n_paths=n_paths, n_months=n_months, n_reports=n_reports, has_tails=has_tails)
    return jax.vmap(run, in_axes=(None, 0, 0))(steps, keys, n_valid)


def resolve_device(device: str = "cpu") -> jax.Device:
    """'cpu', 'gpu' or 'auto' (a GPU when JAX sees one, else the CPU)."""
    if device not in ("cpu", "gpu", "auto"):
        raise DeviceError(f"device must be 'cpu', 'gpu' or 'auto', got {device!r}")
    if device in ("gpu", "auto"):
        try:
            return jax.devices("gpu")[0]
        except RuntimeError:
            if device == "gpu":
                raise DeviceError(
                    "a GPU was requested but JAX sees none on this machine (backends: "
                    f"{', '.join(sorted({d.platform for d in jax.devices()}))}). Install a CUDA build of jax "
                    "(pip install 'jax[cuda12]') on a machine with an NVIDIA GPU, or use --device cpu."
                ) from None
    return jax.devices("cpu")[0]


def run_blocks(model: Model, seed: int, n_paths: int, *, dtype, device: jax.Device, blocks_per_call: int,
               on_blocks=None):
    """Simulate ``n_paths`` paths in logical blocks; yield (first_path, n_valid_paths, BlockOutput as numpy)
    for every block in order. ``on_blocks(paths_done)`` is called after each jitted call (progress)."""
    n_blocks = -(-n_paths // BLOCK_PATHS)
    blocks_per_call = max(1, min(blocks_per_call, n_blocks))
    steps = jax.device_put(StepParams(*[np.asarray(a, dtype=dtype if a.dtype.kind == "f" else a.dtype)
                                        for a in model.steps]), device)
    seed_key = jax.device_put(jax.random.key(seed), device)
    static = dict(n_paths=BLOCK_PATHS, n_months=len(model.month_steps) - 1, n_reports=len(model.report_months),
                  has_tails=model.has_tails)
    for first_block in range(0, n_blocks, blocks_per_call):
        ids = np.arange(first_block, first_block + blocks_per_call)  # fixed shape: one compile per run shape
        valid = np.clip(n_paths - ids * BLOCK_PATHS, 0, BLOCK_PATHS)
        out = simulate_blocks(steps, seed_key, jax.device_put(ids.astype(np.uint32), device),
                              jax.device_put(valid.astype(np.int32), device), **static)
        out = jax.tree.map(np.asarray, out)
        for i, b in enumerate(ids):
            if valid[i] > 0:
                yield int(b) * BLOCK_PATHS, int(valid[i]), jax.tree.map(lambda x: x[i], out)
        if on_blocks is not None:
            on_blocks(min(n_paths, (first_block + blocks_per_call) * BLOCK_PATHS))
