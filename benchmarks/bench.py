"""capsim speed benchmark: capsim's engine against its peers and the random-number limit, in one run.

Every method simulates the same model: a 3-regime, 2-asset Gaussian regime-switching chain given in
capsim's scenario format (docs/scenarios.md, per-step ``transitions`` matrix, ``start: stationary``):

- ``capsim``        ``simulator.simulate(sc, n_paths, seed)`` end to end, then ``.summary()`` and ``.fan()``
                    (all timed: the tables a run writes);
- ``capsim exact``  the same with ``method="exact"``, when ``simulate`` accepts a ``method`` argument;
- ``numpy``         NumPy, vectorised over paths, Python loop over steps, one PCG64 ``Generator`` (one thread);
- ``hmmlearn``      ``GaussianHMM.sample(n_steps)``, one path per call (as its users do), timed on a few
                    hundred paths and extrapolated;
- ``dynamax``       ``GaussianHMM.sample`` ``vmap``-ped over paths in chunks of 1e5, in a subprocess with
                    ``XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false`` (its batched
                    Cholesky can deadlock on 2 cores without it);
- ``limit``         the backend's raw random-number rate: the best JAX (threefry) float32 normal rate
                    (chunks of 2^14..2^21 inside a jitted ``fori_loop``, on every CPU device at once: one
                    device per core, as capsim runs) divided by 3, since a per-step simulation draws one
                    uniform and two normals per path-step.

Before a time counts, the output of the timed run is checked against exact moments of the model (mean
and variance of the accumulated log return of each asset at the horizon; for capsim's summary the mean
of the simple total return): every statistic must lie within 5 Monte Carlo standard errors.

Rate = path-steps per second = paths x steps / seconds; median of ``--repeats`` runs after a warm-up.

    python benchmarks/bench.py                      # 1e5, 1e6, 1e7 paths; monthly and daily; 3 repeats
    python benchmarks/bench.py --quick              # smoke run (small counts, prints only)
    python benchmarks/bench.py --paths 1e6 --workloads daily --peers numpy

Peers are optional (``pip install ".[bench]"``); a peer that is not installed is skipped with a note.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import inspect
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = ("numpy", "hmmlearn", "dynamax")
DYNAMAX_ENV = {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=false", "JAX_PLATFORMS": "cpu"}
Z_MAX = 5.0  # a check passes when every statistic lies within this many standard errors of the exact value

# ---------------------------------------------------------------------------------------------------------
# The workload: one scenario per frequency, in capsim's YAML format (as a dict).

_REGIMES = {
    "expansion": {"drift": {"small": 0.12, "large": 0.10}, "vol": {"small": 0.20, "large": 0.15}, "corr": 0.85},
    "slowdown": {"drift": {"small": 0.02, "large": 0.04}, "vol": {"small": 0.24, "large": 0.17}, "corr": 0.88},
    "recession": {"drift": {"small": -0.25, "large": -0.15}, "vol": {"small": 0.38, "large": 0.26}, "corr": 0.92},
}
# Per-step transition matrices at each frequency (rows sum to 1).
_TRANSITIONS = {
    "monthly": {
        "expansion": {"expansion": 0.97, "slowdown": 0.025, "recession": 0.005},
        "slowdown": {"expansion": 0.08, "slowdown": 0.88, "recession": 0.04},
        "recession": {"expansion": 0.10, "slowdown": 0.05, "recession": 0.85},
    },
    "daily": {
        "expansion": {"expansion": 0.9985, "slowdown": 0.0012, "recession": 0.0003},
        "slowdown": {"expansion": 0.004, "slowdown": 0.994, "recession": 0.002},
        "recession": {"expansion": 0.005, "slowdown": 0.0025, "recession": 0.9925},
    },
}
_SHAPE = {
    "monthly": dict(frequency="monthly", horizon_months=120, report_months=[12, 60, 120]),
    "daily": dict(frequency="daily", horizon_months=12, report_months=[3, 6, 12]),
}
WORKLOADS = ("monthly", "daily")
STEPS_PER_YEAR = {"monthly": 12, "weekly": 52, "daily": 252}


def scenario_dict(workload: str) -> dict:
    """The benchmark scenario for ``workload`` ('monthly': 120 steps, 'daily': 252 steps), as YAML would load it."""
    return {
        "name": f"bench-{workload}",
        "description": "Benchmark workload: 3 Gaussian regimes, 2 assets, per-step transition matrix.",
        "sources": ["made-up numbers, for timing only"],
        **_SHAPE[workload],
        "assets": {"small": "small caps", "large": "large caps"},
        "compare": ["small", "large"],
        "regimes": {k: dict(v) for k, v in _REGIMES.items()},
        "transitions": {k: dict(v) for k, v in _TRANSITIONS[workload].items()},
        "start": "stationary",
    }


@dataclass
class HMM:
    """The model every method simulates, read from the scenario dict independently of capsim.

    Step t = 0..T-1: s_0 ~ p0, s_t ~ P[s_{t-1}]; log return r_t ~ N(mu[s_t], cov[s_t]) (per step)."""

    P: np.ndarray  # [K, K] per-step transition matrix
    p0: np.ndarray  # [K] law of s_0
    mu: np.ndarray  # [K, A] mean log return per step
    cov: np.ndarray  # [K, A, A] covariance of the log return per step
    n_steps: int
    horizon_months: int
    assets: tuple[str, ...]
    regimes: tuple[str, ...]

    @property
    def chol(self) -> np.ndarray:
        return np.linalg.cholesky(self.cov)


def hmm_from_dict(d: dict) -> HMM:
    from simulator.scenario import stationary_distribution

    f = STEPS_PER_YEAR[d["frequency"]]
    dt = 1.0 / f
    assets, names = tuple(d["assets"]), tuple(d["regimes"])
    P = np.array([[d["transitions"][i].get(j, 0.0) for j in names] for i in names], dtype=float)
    start = d.get("start", "stationary")
    if start == "stationary":
        p0 = stationary_distribution(P)
    elif isinstance(start, str):
        p0 = np.eye(len(names))[names.index(start)]
    else:
        p0 = np.array([start.get(k, 0.0) for k in names], dtype=float)
        p0 = p0 / p0.sum()
    mu = np.array([[d["regimes"][k]["drift"][a] * dt for a in assets] for k in names])
    cov = []
    for k in names:
        r = d["regimes"][k]
        assert len(assets) == 2 and not isinstance(r["corr"], list), "benchmark workloads have 2 assets"
        C = np.array([[1.0, r["corr"]], [r["corr"], 1.0]])
        sd = np.array([r["vol"][a] for a in assets]) * math.sqrt(dt)
        cov.append(C * np.outer(sd, sd))
    T = int(round(d["horizon_months"] * f / 12))
    return HMM(P, p0, mu, np.array(cov), T, int(d["horizon_months"]), assets, names)


# ---------------------------------------------------------------------------------------------------------
# Exact moments and the correctness check


def exact_log_moments(m: HMM, a: int) -> tuple[float, float]:
    """Mean and variance of L_a = sum over the T steps of asset a's log return (exact)."""
    T, P = m.n_steps, m.P
    mu, var = m.mu[:, a], m.cov[:, a, a]
    probs = [m.p0]
    for _ in range(T - 1):
        probs.append(probs[-1] @ P)
    probs = np.array(probs)  # [T, K]: law of s_t
    mean = float((probs @ mu).sum())
    # E[(sum_t mu_{s_t})^2] = sum_t E[mu_{s_t}^2] + 2 sum_t E[mu_{s_t} h_t(s_t)], h_t(i) = E[sum_{u>t} mu_{s_u} | s_t=i]
    h = np.zeros_like(mu)
    second = 0.0
    for t in range(T - 1, -1, -1):
        second += probs[t] @ (mu * mu + 2.0 * mu * h)
        h = P @ (mu + h)
    return mean, float((probs @ var).sum() + second - mean * mean)


def exact_simple_moments(m: HMM, a: int) -> tuple[float, float]:
    """Mean and variance of the simple total return R_a = exp(L_a) - 1 (exact, by the moment recursion)."""
    mu, var = m.mu[:, a], m.cov[:, a, a]

    def mgf(theta):
        g = np.exp(theta * mu + 0.5 * theta * theta * var)
        w = m.p0 * g
        for _ in range(m.n_steps - 1):
            w = (w @ m.P) * g
        return float(w.sum())

    e1, e2 = mgf(1.0), mgf(2.0)
    return e1 - 1.0, e2 - e1 * e1


@dataclass
class Check:
    ok: bool
    worst_z: float
    details: list[str] = field(default_factory=list)

    def text(self) -> str:
        return f"{'ok' if self.ok else 'FAIL'} (max |z| {self.worst_z:.1f})"


def _z(label: str, est: float, exact: float, se: float, out: list) -> float:
    z = (est - exact) / se if se > 0 else (0.0 if est == exact else math.inf)
    out.append(f"{label}: {est:.6g} vs exact {exact:.6g} (z = {z:+.2f})")
    return abs(z)


def check_log_returns(m: HMM, L: np.ndarray) -> Check:
    """``L`` [n, A]: accumulated log return of each asset at the horizon. Mean and variance of every asset
    against their exact values, within ``Z_MAX`` standard errors (SE of the variance from the sample 4th moment)."""
    L = np.asarray(L, dtype=np.float64)
    n = L.shape[0]
    details, zs = [], []
    for a, name in enumerate(m.assets):
        mean, var = exact_log_moments(m, a)
        x = L[:, a]
        xm = x.mean()
        dev = x - xm
        s2 = float((dev * dev).mean())
        m4 = float((dev**4).mean())
        zs.append(_z(f"mean L_{name}", float(xm), mean, math.sqrt(var / n), details))
        zs.append(_z(f"var L_{name}", s2, var, math.sqrt(max(m4 - s2 * s2, 0.0) / n), details))
    worst = max(zs) if zs else math.inf
    return Check(bool(worst <= Z_MAX and np.isfinite(L).all()), worst, details)


def check_capsim(m: HMM, res) -> Check:
    """capsim's summary at the horizon (``<asset>_mean`` over every path, simple return) against the exact
    mean, plus the log-return check on the kept paths (``res.draws``)."""
    row = res.summary().set_index("horizon_months").loc[m.horizon_months]
    n = int(row["n_paths"])
    details, zs = [], []
    for a, name in enumerate(m.assets):
        mean, var = exact_simple_moments(m, a)
        zs.append(
            _z(f"{name}_mean (summary, {n} paths)", float(row[f"{name}_mean"]), mean, math.sqrt(var / n), details)
        )
    kept = np.log1p(res.draws(m.horizon_months).to_numpy(dtype=np.float64))
    sub = check_log_returns(m, kept)
    details += [f"kept {kept.shape[0]} paths: {s}" for s in sub.details]
    worst = max(max(zs), sub.worst_z)
    return Check(worst <= Z_MAX, worst, details)


# ---------------------------------------------------------------------------------------------------------
# Peers: each returns L [n, A], the accumulated log return of each asset at the horizon (float32 work).


def numpy_paths(m: HMM, n_paths: int, seed: int, chunk: int = 1 << 16) -> np.ndarray:
    """NumPy baseline: vectorised over (chunks of) paths, a Python loop over steps, one PCG64 Generator.

    Per step: one uniform picks the regime (count of cumulative-row thresholds passed), two normals make the
    correlated shock through the regime's Cholesky factor, the log return is added. float32 throughout."""
    f32 = np.float32
    rng = np.random.Generator(np.random.PCG64(seed))
    K, A = m.mu.shape
    cum = np.cumsum(m.P, axis=1)[:, :-1].astype(f32)  # [K, K-1] thresholds of each row
    cum0 = np.cumsum(m.p0)[:-1].astype(f32)
    mu = [np.ascontiguousarray(m.mu[:, a], dtype=f32) for a in range(A)]
    chol = m.chol
    load = {(a, b): np.ascontiguousarray(chol[:, a, b], dtype=f32) for a in range(A) for b in range(a + 1)}
    thr = [np.ascontiguousarray(cum[:, j]) for j in range(K - 1)]
    out = np.empty((n_paths, A), f32)
    for first in range(0, n_paths, chunk):
        c = min(chunk, n_paths - first)
        u = np.empty(c, f32)
        z = np.empty((A, c), f32)
        acc = np.zeros((A, c), f32)
        tmp = np.empty(c, f32)
        s = np.zeros(c, np.intp)
        for t in range(m.n_steps):
            rng.random(dtype=f32, out=u)
            if t == 0:
                s = np.zeros(c, np.intp)
                for j in range(K - 1):
                    s += u >= cum0[j]
            else:
                new = np.zeros(c, np.intp)
                for j in range(K - 1):
                    new += u >= thr[j][s]
                s = new
            rng.standard_normal(dtype=f32, out=z)
            for a in range(A):
                acc[a] += mu[a][s]
                for b in range(a + 1):
                    np.multiply(load[a, b][s], z[b], out=tmp)
                    acc[a] += tmp
        out[first : first + c] = acc.T
    return out


def hmmlearn_model(m: HMM, seed: int):
    from hmmlearn.hmm import GaussianHMM

    K, A = m.mu.shape
    h = GaussianHMM(n_components=K, covariance_type="full", random_state=seed)
    h.n_features = A
    h.startprob_ = m.p0
    h.transmat_ = m.P
    h.means_ = m.mu
    h.covars_ = m.cov
    return h


def hmmlearn_paths(m: HMM, n_paths: int, seed: int) -> np.ndarray:
    """hmmlearn: ``GaussianHMM.sample(n_steps)`` once per path (float64, its only precision)."""
    h = hmmlearn_model(m, seed)
    rs = np.random.RandomState(seed)
    out = np.empty((n_paths, m.mu.shape[1]))
    for i in range(n_paths):
        X, _ = h.sample(m.n_steps, random_state=rs)
        out[i] = X.sum(axis=0)
    return out


def dynamax_sampler(m: HMM, chunk: int):
    """A jitted function key -> L [chunk, A]: dynamax ``GaussianHMM.sample`` vmapped over ``chunk`` paths."""
    import jax
    import jax.numpy as jnp
    from dynamax.hidden_markov_model import GaussianHMM
    from dynamax.hidden_markov_model.models.gaussian_hmm import ParamsGaussianHMM, ParamsGaussianHMMEmissions
    from dynamax.hidden_markov_model.models.initial import ParamsStandardHMMInitialState
    from dynamax.hidden_markov_model.models.transitions import ParamsStandardHMMTransitions

    K, A = m.mu.shape
    hmm = GaussianHMM(K, A)
    # The parameter tuple that ``hmm.initialize(initial_probs=..., ...)`` returns, built directly: initialize
    # first draws every parameter from the prior op by op (~7 s of dispatch) before overriding them.
    params = ParamsGaussianHMM(
        initial=ParamsStandardHMMInitialState(probs=jnp.asarray(m.p0, jnp.float32)),
        transitions=ParamsStandardHMMTransitions(transition_matrix=jnp.asarray(m.P, jnp.float32)),
        emissions=ParamsGaussianHMMEmissions(
            means=jnp.asarray(m.mu, jnp.float32), covs=jnp.asarray(m.cov, jnp.float32)
        ),
    )
    T = m.n_steps

    @jax.jit
    def sample(key):
        keys = jax.random.split(key, chunk)
        return jax.vmap(lambda k: hmm.sample(params, k, T)[1].sum(axis=0))(keys)

    return sample


def dynamax_paths(m: HMM, n_paths: int, seed: int, chunk: int = 100_000, sampler=None) -> np.ndarray:
    """dynamax: vmapped ``GaussianHMM.sample`` in chunks of ``chunk`` paths (every chunk full size, one
    compile; the last one trimmed). Run it in a process started with ``DYNAMAX_ENV``."""
    import jax

    sampler = sampler or dynamax_sampler(m, chunk)
    key = jax.random.PRNGKey(seed)
    parts = [np.asarray(sampler(jax.random.fold_in(key, c))) for c in range(-(-n_paths // chunk))]
    return np.concatenate(parts)[:n_paths]


def _dynamax_worker(args: dict) -> dict:
    """Run in the subprocess: for each path count, a warm-up (compile, once per chunk size), the timed runs
    and the check of the first timed run. Answers {str(n): {...}}."""
    import dynamax
    import jax

    m = hmm_from_dict(args["scenario"])
    samplers, out = {}, {}
    for n in args["counts"]:
        n = int(n)
        chunk = min(int(args["chunk"]), -(-n // 8) * 8)
        compile_s = 0.0
        if chunk not in samplers:
            samplers[chunk] = dynamax_sampler(m, chunk)
            t0 = time.perf_counter()
            np.asarray(samplers[chunk](jax.random.PRNGKey(12345)))
            compile_s = time.perf_counter() - t0
        times, check = [], None
        for r in range(int(args["repeats"])):
            t0 = time.perf_counter()
            L = dynamax_paths(m, n, int(args["seed"]) + r, chunk, samplers[chunk])
            times.append(time.perf_counter() - t0)
            if check is None:
                check = check_log_returns(m, L)
            del L
            if sum(times) > float(args["budget_s"]):
                break
        out[str(n)] = {
            "times": times,
            "compile_s": compile_s,
            "check_ok": check.ok,
            "check_z": check.worst_z,
            "check_details": check.details,
            "chunk": chunk,
        }
    return {"results": out, "version": getattr(dynamax, "__version__", "?"), "jax": jax.__version__}


def start_dynamax_subprocess(
    scenario: dict, counts: list[int], seed: int, repeats: int, budget_s: float, chunk: int = 100_000
) -> subprocess.Popen:
    """Start ``_dynamax_worker`` in a fresh Python with ``DYNAMAX_ENV`` (collect it with ``finish_dynamax``)."""
    payload = json.dumps(
        {
            "scenario": scenario,
            "counts": [int(n) for n in counts],
            "seed": seed,
            "repeats": repeats,
            "budget_s": budget_s,
            "chunk": chunk,
        }
    )
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--dynamax-worker", payload],
        env={**os.environ, **DYNAMAX_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_dynamax(proc: subprocess.Popen, timeout_s: float = 900) -> dict:
    """The worker's JSON answer, or {'error': ...} (a worker still running after ``timeout_s`` is killed)."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"timed out after {timeout_s:.0f} s (deadlock?)"}
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (err or out).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def run_dynamax_subprocess(
    scenario: dict,
    counts: list[int],
    seed: int,
    repeats: int,
    budget_s: float,
    chunk: int = 100_000,
    timeout_s: float = 900,
) -> dict:
    """``_dynamax_worker`` in a subprocess: {'results': {str(n): {...}}, ...} or {'error': ...}."""
    return finish_dynamax(start_dynamax_subprocess(scenario, counts, seed, repeats, budget_s, chunk), timeout_s)


# ---------------------------------------------------------------------------------------------------------
# The random-number limit


_DRAW = {}


def _draw_kernel(uniform: bool):
    """Jitted (keys [D], n_chunks, chunk) -> per-device sums of n_chunks * chunk float32 draws: each of the
    D CPU devices (one per core, as capsim runs) draws its own chunks, side by side (built once per kind)."""
    if uniform not in _DRAW:
        from functools import partial

        import jax
        import jax.numpy as jnp

        mesh = jax.sharding.Mesh(np.array(jax.devices("cpu")), ("d",))

        def draw_one(keys, n_chunks, chunk):
            def body(i, acc):
                k = jax.random.fold_in(keys[0], i)
                x = (
                    jax.random.uniform(k, (chunk,), jnp.float32)
                    if uniform
                    else jax.random.normal(k, (chunk,), jnp.float32)
                )
                return acc + x.sum()

            return jax.lax.fori_loop(0, n_chunks, body, jnp.float32(0))[None]

        @partial(jax.jit, static_argnums=(1, 2))
        def draw(keys, n_chunks, chunk):
            spec = jax.sharding.PartitionSpec("d")
            return jax.shard_map(
                partial(draw_one, n_chunks=n_chunks, chunk=chunk),
                mesh=mesh,
                in_specs=spec,
                out_specs=spec,
                check_vma=False,
            )(keys)

        _DRAW[uniform] = (draw, mesh)
    return _DRAW[uniform]


def normal_rate(total: int = 1 << 27, log2_chunks=(14, 17, 19, 21), repeats: int = 3, uniform: bool = False):
    """Best float32 jax.random (default threefry) rate, numbers per second: ``total`` numbers drawn in chunks
    of 2^c inside a jitted ``fori_loop`` on every CPU device at once (one per core: the way capsim uses the
    CPU; each chunk summed so nothing is optimised away); median of ``repeats`` per chunk size after a
    compile run, best chunk size. Returns (rate, log2 chunk)."""
    import jax

    draw, mesh = _draw_kernel(uniform)
    n_dev = mesh.devices.size
    spread = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    best = (0.0, None)
    for c in log2_chunks:
        chunk = 1 << c
        n_chunks = max(1, total // (chunk * n_dev))
        keys = [jax.device_put(jax.random.split(jax.random.key(r), n_dev), spread) for r in range(repeats + 1)]
        draw(keys[0], n_chunks, chunk).block_until_ready()
        times = []
        for r in range(repeats):
            t0 = time.perf_counter()
            draw(keys[r + 1], n_chunks, chunk).block_until_ready()
            times.append(time.perf_counter() - t0)
        rate = n_dev * n_chunks * chunk / statistics.median(times)
        if rate > best[0]:
            best = (rate, c)
    return best


# ---------------------------------------------------------------------------------------------------------
# capsim


def capsim_methods() -> list[str]:
    """'per-step' always; 'exact' too when ``simulate`` has a ``method`` parameter."""
    import simulator

    return ["per-step", "exact"] if "method" in inspect.signature(simulator.simulate).parameters else ["per-step"]


def capsim_run(sc, n_paths: int, seed: int, method: str = "per-step"):
    """``simulate``, then ``summary()`` and ``fan()``. With a ``method`` parameter: 'step' for the per-step
    row (named, so that a default of 'auto' could not silently time the exact path), 'exact' for the exact row."""
    import simulator

    kw = {}
    if "method" in inspect.signature(simulator.simulate).parameters:
        kw["method"] = "exact" if method == "exact" else "step"
    res = simulator.simulate(sc, n_paths=n_paths, seed=seed, device="cpu", **kw)
    t0 = time.perf_counter()
    res.summary()  # the summary table (quantiles, HDI, ...) and the fan table are part of the timed work
    res.fan()
    res.bench_summary_s = time.perf_counter() - t0
    return res


def capsim_scenario(workload: str):
    import simulator

    return simulator.parse_scenario(scenario_dict(workload), source=f"<bench {workload}>")


# ---------------------------------------------------------------------------------------------------------
# Timing and the table


@dataclass
class Row:
    workload: str
    paths: int
    method: str
    measured_paths: int = 0
    times: list = field(default_factory=list)
    n_steps: int = 0
    check: str = ""
    check_ok: bool = True
    note: str = ""

    @property
    def seconds(self) -> float:
        return statistics.median(self.times) if self.times else math.nan

    @property
    def rate(self) -> float:
        return self.measured_paths * self.n_steps / self.seconds if self.times else math.nan

    @property
    def extrapolated(self) -> bool:
        return bool(self.times) and self.measured_paths < self.paths

    @property
    def valid(self) -> bool:
        return bool(self.times) and self.check_ok


def timed_runs(fn, repeats: int, budget_s: float):
    """Call ``fn(r)`` up to ``repeats`` times (fewer once their total passes ``budget_s``); (times, first output)."""
    times, first = [], None
    for r in range(repeats):
        t0 = time.perf_counter()
        out = fn(r)
        times.append(time.perf_counter() - t0)
        if r == 0:
            first = out
        del out
        if sum(times) > budget_s:
            break
    return times, first


def fmt_paths(n: int) -> str:
    e = int(round(math.log10(n))) if n > 0 else 0
    return f"1e{e}" if n == 10**e else f"{n:,}"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}" if x >= 0.01 or x == 0 else f"{x:.1e}"


def fmt_rate(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.3g}"


def machine_info() -> dict:
    import jax
    import jaxlib

    from simulator.devices import cpu_cores

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    cores = cpu_cores()
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
    }
    for mod in ("hmmlearn", "dynamax"):
        if importlib.util.find_spec(mod) is not None:
            try:
                versions[mod] = __import__(mod).__version__
            except Exception:  # noqa: BLE001 - a broken install is reported, not fatal
                versions[mod] = "broken install"
    try:
        import simulator

        versions["capsim"] = simulator.__version__
    except Exception as exc:  # noqa: BLE001
        versions["capsim"] = f"(import failed: {type(exc).__name__})"
    return {
        "source": source_state(),
        "cpu": cpu,
        "cores": cores,
        "cpu_devices": len(jax.devices("cpu")),
        "memory": mem,
        "versions": versions,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_backend": jax.default_backend(),
    }


def source_state() -> str:
    """The commit of the working tree and whether simulator/ differs from it (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "simulator"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown (not a git checkout)"
    return f"commit {head}" + (" with uncommitted changes in simulator/" if dirty else "")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def build_table(rows: list[Row], limit_rate: float) -> list[list[str]]:
    """Rows of cells: workload, paths, method, measured on, runs, s/run, path-steps/s, x limit,
    capsim / row, capsim exact / row, check."""
    ref = {(r.workload, r.paths, r.method): r for r in rows}
    out = []
    for r in rows:
        cap = ref.get((r.workload, r.paths, "capsim"))
        ex = ref.get((r.workload, r.paths, "capsim exact"))
        lim = ref.get((r.workload, r.paths, "limit"))
        lim_rate = lim.rate if lim is not None else limit_rate

        def ratio(base):
            return fmt_ratio(base.rate / r.rate) if base is not None and base.valid and r.valid else ""

        mark = "†" if r.extrapolated else ""
        rate = fmt_rate(r.rate) + mark if r.times else "n/a"
        if r.times and not r.check_ok:
            rate = f"({rate})"
        measured = r.times and r.method != "limit"
        out.append(
            [
                r.workload,
                fmt_paths(r.paths),
                r.method,
                (fmt_paths(r.measured_paths) if measured else "") + mark,
                str(len(r.times)) if measured else "",
                f"{r.seconds:.3g}" if r.times else "",
                rate,
                fmt_ratio(r.rate / lim_rate) if r.valid and lim_rate > 0 else "",
                ratio(cap) if r.method != "capsim" else "1.00" if r.valid else "",
                ratio(ex) if r.method != "capsim exact" else "1.00" if r.valid else "",
                r.check or r.note,
            ]
        )
    return out


HEADER = [
    "workload",
    "paths",
    "method",
    "measured on",
    "runs",
    "s/run (median)",
    "path-steps/s",
    "x limit",
    "capsim / row",
    "capsim exact / row",
    "check",
]


def markdown_table(cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def text_table(cells: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(HEADER)]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths))  # noqa: E731
    return "\n".join([fmt(HEADER), fmt(["-" * w for w in widths])] + [fmt(r) for r in cells])


def targets(rows: list[Row], limit_rate: float) -> list[str]:
    """The project's CPU speed targets, each met or not per workload, with the worst cell."""
    by = {(r.workload, r.paths, r.method): r for r in rows}
    workloads = list(dict.fromkeys(r.workload for r in rows))
    lines = []

    def verdict(name, ratio_of, method, need):
        parts = []
        for w in workloads:
            vals = []
            for r in rows:
                if r.workload == w and r.method == method and r.valid:
                    v = ratio_of(r)
                    if v is not None and np.isfinite(v):
                        vals.append((v, fmt_paths(r.paths)))
            if vals:
                worst, at = min(vals)
                parts.append(
                    f"{w} **{'met' if worst >= need else 'NOT met'}** (worst {worst:.2f}, at {at}; "
                    f"{len(vals)} path count(s))"
                )
        lines.append(f"- {name}: " + ("; ".join(parts) if parts else "not measured in this run"))

    def vs(peer):  # capsim's rate over the peer's (or the limit's) in the same cell
        def ratio(r):
            p = by.get((r.workload, r.paths, peer))
            return r.rate / p.rate if p is not None and p.valid else None

        return ratio

    counts = sorted({r.paths for r in rows})
    lines.append(
        f"Path counts in this run: {', '.join(fmt_paths(n) for n in counts)} (the limit target is set for 1e5 to 1e8)."
    )
    lines.append("")
    verdict("capsim `simulate` >= 0.75 x limit at every path count", vs("limit"), "capsim", 0.75)
    verdict("capsim >= 6 x numpy", vs("numpy"), "capsim", 6.0)
    verdict("capsim >= 10 x dynamax", vs("dynamax"), "capsim", 10.0)
    if any(r.method == "capsim exact" for r in rows):
        # both workloads allow it: Gaussian regimes; segments of 12 months (monthly) or 3 months (daily)
        verdict("capsim exact path >= 4 x limit (where the model allows it)", vs("limit"), "capsim exact", 4.0)
    else:
        lines.append("- capsim exact path >= 4 x limit: `simulate` has no `method` argument in this version")
    bad = [f"{r.workload} {fmt_paths(r.paths)} {r.method}" for r in rows if r.times and not r.check_ok]
    if bad:
        lines.append(f"- correctness check FAILED (time not counted): {', '.join(bad)}")
    return lines


def report(rows, limit, info, args, load_before, load_after, notes, elapsed) -> str:
    rate, chunk, urate = limit
    cells = build_table(rows, rate / 3)
    v = info["versions"]
    lines = [
        "# capsim benchmark results",
        "",
        f"Written by `{' '.join(['python benchmarks/bench.py', *args.argv])}`, started {info['date']}, "
        f"in {elapsed / 60:.1f} min.",
        "",
        "## Machine",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores available; memory {info['memory']}",
        f"- JAX {v['jax']} / jaxlib {v['jaxlib']} (backend {info['jax_backend']}), NumPy {v['numpy']}, "
        f"Python {v['python']}" + "".join(f", {k} {v[k]}" for k in ("hmmlearn", "dynamax") if k in v),
        f"- capsim {v.get('capsim', '?')}, source {info['source']}",
        f"- XLA_FLAGS for capsim and the limit: `{info['xla_flags'] or '(none)'}`; dynamax subprocess: "
        f"`{DYNAMAX_ENV['XLA_FLAGS']}`",
        f"- load average before / after: {load_before} / {load_after} (other work on the machine skews timings; "
        "compare ratios from one run)",
        f"- JAX CPU devices: {info['cpu_devices']} (capsim gives JAX one per core; capsim and the limit use them all)",
        f"- random-number limit at the start: JAX threefry float32 normals {rate / 1e6:.0f} M/s on every CPU device "
        f"at once (best of chunks 2^14, 2^17, 2^19, 2^21: 2^{chunk}), uniforms {urate / 1e6:.0f} M/s; "
        f"limit = normals/s / 3 = {rate / 3:.3g} path-steps/s. Each cell's `limit` row is measured again right "
        "before that cell (same kernel and chunk) and its `x limit` ratios use that one.",
        "",
        "## Results",
        "",
        "float32; 3 Gaussian regimes, 2 assets; monthly = 120 steps (horizon 120 months), daily = 252 steps "
        f"(horizon 12 months); path-steps/s = paths x steps / seconds, median of up to {args.repeats} runs after a "
        f"warm-up (fewer when a cell's runs pass {args.cell_budget:.0f} s: see `runs`).",
        "",
        markdown_table(cells),
        "",
        "- `†`: measured on fewer paths (`measured on`) and extrapolated at the same rate (slow peers are capped: "
        f"numpy and dynamax at {fmt_paths(args.numpy_cap)} / {fmt_paths(args.dynamax_cap)} paths, hmmlearn at "
        f"{args.hmmlearn_paths} paths).",
        "- `x limit`: the row's rate / the limit. `capsim / row`: capsim `simulate`'s rate / the row's, same "
        'workload and path count; `capsim exact / row` likewise for `method="exact"`.',
        "- A rate in parentheses failed its correctness check and is not used in any ratio.",
        "- capsim rows include everything `simulate` does (monthly values, drawdowns, occupancy, all summaries); "
        "the peers only produce each path's accumulated log return at the horizon.",
        "",
        "## Targets (CPU)",
        "",
        *targets(rows, rate / 3),
        "",
        "## GPU",
        "",
        "Not yet measured (target: 1e11 path-steps/s for the per-step model at 1e7+ paths). This script times "
        "the CPU backend only so far.",
    ]
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def parse_counts(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--dynamax-worker"]:
        print(json.dumps(_dynamax_worker(json.loads(argv[1]))))
        return 0
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--paths", default=None, help="path counts, comma separated (default 1e5,1e6,1e7)")
    p.add_argument("--workloads", default="monthly,daily", help="monthly (120 steps), daily (252 steps)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median reported)")
    p.add_argument("--peers", default=",".join(PEERS), help="numpy,hmmlearn,dynamax (or 'none')")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: small counts; prints, writes nothing unless --out is given"
    )
    p.add_argument("--numpy-cap", type=float, default=1e6, help="most paths the NumPy baseline runs (default 1e6)")
    p.add_argument("--dynamax-cap", type=float, default=2e5, help="most paths dynamax runs (default 2e5)")
    p.add_argument("--hmmlearn-paths", type=int, default=200, help="paths hmmlearn is timed on (default 200)")
    p.add_argument(
        "--cell-budget",
        type=float,
        default=150.0,
        help="stop repeating a cell once its timed runs pass this many seconds (default 150)",
    )
    p.add_argument("--no-capsim", action="store_true", help="time the peers and the limit only")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=None, help="results file (default benchmarks/RESULTS.md; none with --quick)")
    args = p.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.paths = args.paths or "1e4,1e5"
        args.repeats = min(args.repeats, 2)
        args.numpy_cap, args.dynamax_cap = min(args.numpy_cap, 1e5), min(args.dynamax_cap, 1e5)
        args.hmmlearn_paths = min(args.hmmlearn_paths, 20)
    counts = parse_counts(args.paths or "1e5,1e6,1e7")
    args.numpy_cap, args.dynamax_cap = int(args.numpy_cap), int(args.dynamax_cap)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}; use {', '.join(WORKLOADS)}")
    peers = [] if args.peers.strip() == "none" else [x.strip() for x in args.peers.split(",") if x.strip()]
    for x in peers:
        if x not in PEERS:
            p.error(f"unknown peer {x!r}; use {', '.join(PEERS)}")
    out_path = Path(args.out) if args.out else (None if args.quick else HERE / "RESULTS.md")

    notes = []
    for x in list(peers):
        if x != "numpy" and importlib.util.find_spec(x) is None:
            notes.append(f'{x}: not installed, skipped (pip install ".[bench]")')
            print(f"[bench] {notes[-1]}", flush=True)
            peers.remove(x)

    from simulator import use_cpu_cores

    use_cpu_cores()  # one JAX CPU device per core before any JAX call (import simulator does it): capsim's setup

    started = time.perf_counter()
    load_before = loadavg()
    info = machine_info()
    print(
        f"[bench] {info['cpu']}, {info['cores']} cores, {info['memory']}; jax {info['versions']['jax']}; "
        f"load {load_before}",
        flush=True,
    )

    print("[bench] random-number limit ...", flush=True)
    nrate, nchunk = normal_rate()
    urate, _ = normal_rate(uniform=True, log2_chunks=(nchunk,))
    limit = (nrate, nchunk, urate)
    print(
        f"[bench] normals {nrate / 1e6:.0f} M/s (chunk 2^{nchunk}), uniforms {urate / 1e6:.0f} M/s, "
        f"limit {nrate / 3:.3g} path-steps/s",
        flush=True,
    )

    methods = [] if args.no_capsim else capsim_methods()
    if not args.no_capsim and "exact" not in methods:
        notes.append("capsim `simulate` has no `method` argument: no exact-path row")
    rows: list[Row] = []
    cache: dict = {}
    failed: set = set()
    cell_rates: list = []
    for w in workloads:
        d = scenario_dict(w)
        m = hmm_from_dict(d)
        sc = None if args.no_capsim else capsim_scenario(w)
        if "dynamax" in peers:
            need = sorted({min(n, args.dynamax_cap) for n in counts})
            print(f"[bench] {w} dynamax on {', '.join(map(fmt_paths, need))} paths (subprocess) ...", flush=True)
            res = run_dynamax_subprocess(d, need, args.seed, args.repeats, args.cell_budget)
            for nm in need:
                if "error" in res:
                    cache[(w, "dynamax", nm)] = ([], None, f"error: {res['error']}")
                else:
                    r = res["results"][str(nm)]
                    cache[(w, "dynamax", nm)] = (
                        r["times"],
                        Check(r["check_ok"], r["check_z"], r["check_details"]),
                        f"chunks of {fmt_paths(r['chunk'])}",
                    )
        for n in counts:
            # The limit again right before the cell's rows (2^26 normals, best chunk): the load on a shared
            # machine drifts, and each cell's "x limit" compares with the limit measured beside it.
            cell_rate, _ = normal_rate(total=1 << 26, log2_chunks=(nchunk,))
            cell_rates.append(cell_rate)
            rows.append(
                Row(
                    w,
                    n,
                    "limit",
                    measured_paths=n,
                    times=[n * m.n_steps / (cell_rate / 3)],
                    n_steps=m.n_steps,
                    check=f"{cell_rate / 1e6:.0f} M normals/s measured before this cell / 3 randoms per path-step",
                )
            )
            for meth in methods:
                name = "capsim" if meth == "per-step" else "capsim exact"
                row = Row(w, n, name, measured_paths=n, n_steps=m.n_steps)
                print(f"[bench] {w} {fmt_paths(n)} {name} ...", flush=True)
                try:
                    capsim_run(sc, min(n, 1 << 18), args.seed + 1000, meth)  # warm-up: compile
                    summary_s = []

                    def one(r):
                        res = capsim_run(sc, n, args.seed + r, meth)
                        summary_s.append(res.bench_summary_s)
                        return res

                    times, res = timed_runs(one, args.repeats, args.cell_budget)
                    chk = check_capsim(m, res)
                    del res
                    row.times, row.check_ok = times, chk.ok
                    row.check = f"{chk.text()}; tables {statistics.median(summary_s):.2g} s of it"
                    if not chk.ok:
                        notes.append(f"{w} {fmt_paths(n)} {name} check: " + "; ".join(chk.details))
                except Exception as exc:  # noqa: BLE001 - e.g. the exact path refusing this model
                    msg = str(exc).splitlines()[0] if str(exc) else ""
                    if type(exc).__name__ == "MethodError":  # simulate's word: the model does not allow it
                        why = msg.split(": ", 1)[-1].split(". Use ")[0].rstrip(".")
                        row.note = f"not available for this model: {why[:140]}"
                    else:
                        row.note = f"error: {type(exc).__name__}: {msg[:120]}"
                rows.append(row)
                print(f"[bench]   {fmt_rate(row.rate)} path-steps/s {row.check or row.note}", flush=True)
            for peer in peers:
                cap = {"numpy": args.numpy_cap, "dynamax": args.dynamax_cap, "hmmlearn": args.hmmlearn_paths}[peer]
                nm = min(n, cap)
                key = (w, peer, nm)
                if key not in cache:
                    print(f"[bench] {w} {fmt_paths(nm)} {peer} ...", flush=True)
                    cache[key] = run_peer(peer, d, m, nm, args)
                times, chk, note = cache[key]
                row = Row(
                    w,
                    n,
                    peer,
                    measured_paths=nm,
                    times=list(times),
                    n_steps=m.n_steps,
                    check=chk.text() if chk else "",
                    check_ok=bool(chk and chk.ok),
                    note=note,
                )
                rows.append(row)
                print(f"[bench]   {fmt_rate(row.rate)} path-steps/s {row.check or row.note}", flush=True)
                if chk is not None and not chk.ok and key not in failed:
                    failed.add(key)
                    notes.append(f"{w} {fmt_paths(nm)} {peer} check: " + "; ".join(chk.details))
    elapsed = time.perf_counter() - started
    load_after = loadavg()
    if cell_rates:
        notes.insert(
            0,
            f"limit per cell (measured right before each workload x paths group): "
            f"{min(cell_rates) / 1e6:.0f} to {max(cell_rates) / 1e6:.0f} M normals/s; a wide range means "
            "the machine's load changed during the run",
        )
    if "hmmlearn" in peers:
        notes.insert(
            0,
            f"hmmlearn: `GaussianHMM.sample` one path per call, timed on {args.hmmlearn_paths} paths "
            "and extrapolated (a Python loop over steps in float64; it draws each emission with "
            "`RandomState.multivariate_normal`, an SVD per step)",
        )
    if "dynamax" in peers:
        notes.insert(
            0,
            "dynamax: `GaussianHMM.sample` vmapped over chunks of 1e5 paths, jitted, in a subprocess "
            f"with `XLA_FLAGS={DYNAMAX_ENV['XLA_FLAGS']}`; compile time excluded",
        )
    cells = build_table(rows, nrate / 3)
    print()
    print(text_table(cells))
    print()
    for line in targets(rows, nrate / 3):
        print(line)
    if out_path is not None:
        from simulator.output import write_text_atomic

        text = report(rows, limit, info, args, load_before, load_after, notes, elapsed)
        old = out_path.read_text(encoding="utf-8") if out_path.exists() else ""
        # the sections other scripts write stay: each <!-- NAME:begin --> ... <!-- NAME:end --> block
        # (uncertainty.py's, posterior_bench.py's), then benchmarks/many.py's (to the end)
        for block in re.finditer(r"<!-- (\w+):begin -->.*?<!-- \1:end -->", old, re.S):
            text = text.rstrip("\n") + "\n\n" + block.group(0) + "\n"
        if MANY_SECTION in old:
            text = text.rstrip("\n") + "\n\n" + old[old.index(MANY_SECTION) :]
        write_text_atomic(out_path, text, force=True)
        print(f"\n[bench] wrote {out_path}")
    return 0


MANY_SECTION = "<!-- benchmarks/many.py"  # where many.py's section of RESULTS.md starts


def run_peer(peer: str, d: dict, m: HMM, n: int, args):
    """(times, Check or None, note) for one peer on ``n`` paths."""
    try:
        fn = {"numpy": numpy_paths, "hmmlearn": hmmlearn_paths}[peer]
        fn(m, min(n, 1 << 12 if peer == "numpy" else 2), args.seed + 1000)  # warm-up: imports, caches
        times, L = timed_runs(lambda r: fn(m, n, args.seed + r), args.repeats, args.cell_budget)
        return times, check_log_returns(m, L), ""
    except Exception as exc:  # noqa: BLE001
        return [], None, f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
