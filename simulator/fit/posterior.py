"""Bayesian calibration: the maximum-likelihood fit's K-regime model (simulator/calibrate.py) sampled with
numpyro's NUTS, its posterior written as an arviz InferenceData (netCDF) and read back per draw.

Model, per step t = 0..T-1 at the data's frequency (f steps a year): a hidden regime chain s_t with per-step
transition matrix P, s_0 from P's stationary law, and log returns y_t | s_t = k ~ N(drift_k / f,
diag(vol_k) C_k diag(vol_k) / f), drift and vol annualised as in a scenario file. The regimes are summed out
by a forward filter in log space (``log_filter``, a ``lax.scan``).

Priors (weakly informative; ``PRIORS`` holds the numbers, the written file's comment block states them):

- drift_k,a ~ Normal(0, 0.5) a year, independently, restricted to regimes ordered by their drift averaged
  over assets, lowest first (as the ML fit orders them). Sampled as the ordered average (an ordered
  transform) and the deviations from it in an orthonormal basis of the sum-zero subspace, which is the
  same normal prior written in rotated coordinates;
- vol_k,a ~ HalfNormal(1.0) a year;
- C_k ~ LKJ(2) (through its Cholesky factor);
- row k of P ~ Dirichlet(1, ..., 1, f, 1, ..., 1), f on the diagonal: sticky, a prior mean stay of
  f / (f + K - 1) per step (about a year), worth f + K - 1 transitions of data.

With drivers (``calibrate --posterior --drivers``, ``tvtp``): P is the matrix of each month, a multinomial logit of
the drivers the month before (``tvtp.transition_matrices``, reference: staying), s_0 from the stationary law of
the first month's matrix, as in the ML fit. The logits are sampled on standardised drivers (centred, divided by
their sample sd) in place of the Dirichlet rows:

- intercept_ij ~ Normal(-log f, 2.5), the logit of moving i -> j against staying at the drivers' sample means:
  centred on the Dirichlet prior's mean odds 1 / f (a stay of about a year), 2.5 wide on the logit scale;
- slope_ijd ~ Normal(0, 2.5) per sample sd of driver d (Gelman et al. 2008's weakly informative logit prior);

the draws are written per unit of each driver (``tvtp.rescale_coef``), as the scenario's ``drivers`` blocks.

The chains start at the ML fit (``init_to_value``). Diagnostics (arviz on plain arrays, so the same on
arviz 0.x and 1.x): rank-normalised split R-hat, bulk and tail ESS of every scalar written, and NUTS
divergences; ``failures`` says which of R-hat <= 1.01, ESS >= 400 and no divergence fail. ``sample_checked``
samples, diagnoses, and samples once more with smaller steps and a longer warm-up when a handful of
divergences is the only failure.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..errors import CapsimError
from ..output import readable_by_all, refuse_existing_file
from ..posterior_file import PosteriorDraws, PosteriorFileError, group, load_posterior, sha256_of  # noqa: F401
from .calibrate import Calibration, expected_duration_months

PRIORS = {
    "drift_sd": 0.5,
    "vol_scale": 1.0,
    "lkj_eta": 2.0,
    "stay_concentration": "steps per year",
    "logit_sd": 2.5,  # intercepts (centred at -log f) and slopes per driver sd, with drivers
}
MAX_RHAT, MIN_ESS = 1.01, 400
TARGET_ACCEPT = 0.98  # NUTS step-size adaptation target: 0.9 and 0.95 left a divergence or more on the shipped data
RERUN_TARGET_ACCEPT = 0.995  # the second run's, when the first leaves a handful of divergences
RERUN_MAX_DIVERGENCES = 0.01  # a handful: at most this fraction of the kept draws
TAIL_PROB = (0.05, 0.95)  # tail ESS: of the 5% and 95% quantiles
EXTRA_FIELDS = ("diverging", "num_steps", "energy", "potential_energy", "adapt_state")


def prior_lines(steps_per_year: int, drivers: tuple[str, ...] = ()) -> list[str]:
    """The priors in words (docs/calibrate.md, the written file's comment block), annualised units."""
    f, s = steps_per_year, PRIORS["logit_sd"]
    rows = (
        [
            f"logit of leaving i for j (reference: staying), drivers standardised: intercept ~ Normal(-log {f}, "
            f"{s:g}) (odds 1/{f} at the drivers' sample means), slope ~ Normal(0, {s:g}) per sample sd of "
            f"{', '.join(drivers)}",
        ]
        if drivers
        else [
            f"transition row k ~ Dirichlet(1 off the diagonal, {f} on it): sticky, prior mean stay "
            f"{f}/({f} + K - 1) per step",
        ]
    )
    return [
        f"drift_k,a ~ Normal(0, {PRIORS['drift_sd']}) a year, regimes ordered by drift averaged over assets",
        f"vol_k,a ~ HalfNormal({PRIORS['vol_scale']}) a year; correlation C_k ~ LKJ({PRIORS['lkj_eta']:g})",
        *rows,
    ]


class DiagnosticsError(Exception):
    """The sampler's diagnostics fail the thresholds; ``str`` says which and what to try (exit 1)."""


# --------------------------------------------------------------------------------------------
# Forward filter in log space (JAX)


def stationary(P):
    """pi with pi P = pi, sum 1 (JAX, differentiable): the linear system with one equation replaced by
    the sum."""
    K = P.shape[0]
    A = (P.T - jnp.eye(K)).at[-1].set(1.0)
    return jnp.linalg.solve(A, jnp.zeros(K).at[-1].set(1.0))


def log_emissions(y, means, covs):
    """[T, K] log N(y_t; means_k, covs_k), per-step units (JAX)."""
    L = jnp.linalg.cholesky(covs)  # [K, A, A]
    d = y[None] - means[:, None, :]  # [K, T, A]
    z = jax.scipy.linalg.solve_triangular(L, jnp.swapaxes(d, 1, 2), lower=True)  # [K, A, T]
    logdet = jnp.log(jnp.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    A = y.shape[1]
    return (-0.5 * (z * z).sum(axis=1) - logdet[:, None] - 0.5 * A * math.log(2 * math.pi)).T


def log_filter(logb, P, init=None):
    """Log-likelihood and log filtered probabilities log P(s_t = k | y_0..y_t) [T, K] of an HMM with log
    emission densities ``logb`` [T, K] and per-step transition matrix ``P`` [K, K], or one per step [T, K, K]
    (row t: the move into step t; P[0] gives only the default law of s_0) (JAX).

    The forward recursion in log space, log alpha_t = logsumexp_i(log alpha_{t-1,i} + log P_ij) + log b_t,
    by ``lax.scan`` (on a CPU a sequential scan is far faster than an associative one, whose O(log T) depth
    costs many more small operations). ``init``: the law of s_0 (default: stationary)."""
    varying = P.ndim == 3
    init = stationary(P[0] if varying else P) if init is None else init
    logP = jnp.log(P)

    def step(la, x):
        lb, lP = x if varying else (x, logP)
        la = jax.nn.logsumexp(la[:, None] + lP, axis=0) + lb
        return la, la

    la0 = jnp.log(init) + logb[0]
    _, rest = jax.lax.scan(step, la0, (logb[1:], logP[1:]) if varying else logb[1:])
    la = jnp.concatenate([la0[None], rest])
    norm = jax.nn.logsumexp(la, axis=1)
    return norm[-1], la - norm[:, None]


# --------------------------------------------------------------------------------------------
# The numpyro model


def _sum_zero_basis(A: int) -> np.ndarray:
    """[A, A-1] orthonormal basis of the vectors whose entries sum to zero."""
    q, _ = np.linalg.qr(np.eye(A) - 1.0 / A)
    return q[:, : A - 1]


def _off_to_full(off):
    """[..., K, K - 1, 1 + D] off-diagonal logit rows -> [..., K, K, 1 + D] with zeros on the diagonal (JAX)."""
    K = off.shape[-3]
    rows = [jnp.insert(off[..., i, :, :], i, 0.0, axis=-2) for i in range(K)]
    return jnp.stack(rows, axis=-3)


def model(y, K: int, steps_per_year: int, X=None):
    """numpyro model of log returns ``y`` [T, A] (per step); sites in annualised units (module docstring).
    ``X`` [T, D]: standardised drivers (row t: those the move into step t uses), or None for a constant P."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    A = y.shape[1]
    f = steps_per_year
    s = PRIORS["drift_sd"]
    level = numpyro.sample("drift_level", dist.ImproperUniform(constraints.ordered_vector, (), (K,)))
    numpyro.factor("drift_level_prior", dist.Normal(0.0, s / math.sqrt(A)).log_prob(level).sum())
    dev = numpyro.sample("drift_dev", dist.Normal(0.0, s).expand([K, A - 1]).to_event(2))
    drift = numpyro.deterministic("drift", level[:, None] + dev @ jnp.asarray(_sum_zero_basis(A)).T)
    vol = numpyro.sample("vol", dist.HalfNormal(PRIORS["vol_scale"]).expand([K, A]).to_event(2))
    Lc = numpyro.sample("corr_chol", dist.LKJCholesky(A, PRIORS["lkj_eta"]).expand([K]).to_event(1))
    if X is None:
        alpha = jnp.ones((K, K)) + (f - 1.0) * jnp.eye(K)
        P = numpyro.sample("transition", dist.Dirichlet(alpha).to_event(1))
    else:
        from .tvtp import transition_matrices

        D, sd = X.shape[1], PRIORS["logit_sd"]
        loc = jnp.zeros((K, K - 1, 1 + D)).at[..., 0].set(-math.log(f))
        off = numpyro.sample("logit", dist.Normal(loc, sd).to_event(3))  # off-diagonal rows, standardised
        coef = _off_to_full(off)
        P = transition_matrices(coef, X)  # [T, K, K]
    L = vol[:, :, None] * Lc / math.sqrt(f)  # Cholesky factor of the per-step covariance
    covs = L @ jnp.swapaxes(L, 1, 2)
    loglik, _ = log_filter(log_emissions(y, drift / f, covs), P)
    numpyro.factor("loglik", loglik)


# --------------------------------------------------------------------------------------------
# Sampling


class PosteriorFit(NamedTuple):
    """Posterior draws in annualised scenario units, [chain, draw, ...], with the sampler's statistics."""

    drift: np.ndarray  # [C, D, K, A] annualised mean of the log return
    vol: np.ndarray  # [C, D, K, A] annualised sd of the log return
    corr: np.ndarray  # [C, D, K, A, A]
    transition: np.ndarray  # [C, D, K, K] per step at the data's frequency
    start: np.ndarray  # [C, D, K] filtered law at the last date moved one step on
    diverging: np.ndarray  # [C, D] bool
    n_steps: np.ndarray  # [C, D] leapfrog steps per draw
    step_size: np.ndarray  # [C, D]
    energy: np.ndarray  # [C, D]
    lp: np.ndarray  # [C, D] log density (potential energy negated)
    cal: Calibration
    y: np.ndarray  # [T, A] the log returns fitted
    wall_seconds: float
    warmup: int
    target_accept: float = TARGET_ACCEPT
    rerun: str = ""  # why this is a second run (the first run's divergences); empty for a first run
    drivers: tuple[str, ...] = ()  # with drivers (``calibrate --posterior --drivers``): their names
    coef: np.ndarray | None = None  # [C, D, K, K, 1 + n] logits of leaving (diagonal 0): intercept, per unit
    coef_ml: np.ndarray | None = None  # [K, K, 1 + n] the ML fit's
    coef_se: np.ndarray | None = None  # [K, K, 1 + n] its standard errors

    @property
    def steps_per_year(self) -> int:
        return self.cal.steps_per_year

    def durations(self) -> np.ndarray:
        """[C, D, K] expected stay in each regime once entered, in months."""
        return expected_duration_months(self.transition, self.steps_per_year)

    def scalars(self) -> dict[str, np.ndarray]:
        """Every scalar written to the file, named, as [chain, draw] arrays (what diagnostics check)."""
        out = {}
        K, A = self.drift.shape[2:]
        reg, ast = self.cal.regimes, self.cal.assets
        for k in range(K):
            for a in range(A):
                out[f"drift[{reg[k]},{ast[a]}]"] = self.drift[:, :, k, a]
                out[f"vol[{reg[k]},{ast[a]}]"] = self.vol[:, :, k, a]
                for b in range(a + 1, A):
                    out[f"corr[{reg[k]},{ast[a]},{ast[b]}]"] = self.corr[:, :, k, a, b]
            for j in range(K):
                out[f"transition[{reg[k]},{reg[j]}]"] = self.transition[:, :, k, j]
                for t, term in enumerate(("intercept", *self.drivers) if j != k and self.coef is not None else ()):
                    out[f"coef[{reg[k]},{reg[j]},{term}]"] = self.coef[:, :, k, j, t]
        return out


class SamplerProgress(NamedTuple):
    """Where the sampler is, passed to ``sample_posterior``'s ``progress`` as it runs (``_nuts`` says when; all
    chains advance together)."""

    done: int  # iterations done per chain, warm-up included
    warmup: int  # warm-up iterations per chain (the first ``warmup`` of ``total``)
    total: int  # warm-up + kept draws per chain
    chains: int
    divergences: int  # divergent transitions among the kept draws so far, all chains
    target_accept: float
    rerun: str  # empty on a first run; on a second run, why (``PosteriorFit.rerun``)

    @property
    def phase(self) -> str:
        return "warm-up" if self.done <= self.warmup else "sampling"


PROGRESS_REPORTS = 200  # about this many progress reports a run, plus one at each divergence


class DriverData(NamedTuple):
    """What the sampler needs of a fit with drivers (``tvtp.DriverCalibration``): standardised drivers and the
    map back to per-unit coefficients."""

    names: tuple[str, ...]
    X: np.ndarray  # [T, n] standardised: (raw - loc) / scale, row t the drivers of the move into month t
    loc: np.ndarray  # [n]
    scale: np.ndarray  # [n]
    last: np.ndarray  # [n] raw drivers at the last month (they move it into the first simulated month)
    coef_ml: np.ndarray  # [K, K, 1 + n] per unit
    coef_se: np.ndarray


def driver_data(dcal) -> DriverData:
    X = np.asarray(dcal.X, float)
    loc, scale = X.mean(0), X.std(0)
    return DriverData(
        tuple(dcal.drivers),
        (X - loc) / scale,
        loc,
        scale,
        np.asarray(dcal.last_month_values, float),
        dcal.fit.coef,
        dcal.fit.se_coef,
    )


def driver_ml_calibration(dcal) -> Calibration:
    """The constant fit's ``Calibration`` carrying the driver fit's means, covariances, log-likelihood and, as
    its matrix, the matrix of the move into the first simulated month (the ML column of the summaries)."""
    from .calibrate import MSParams
    from .tvtp import matrices

    fit, const = dcal.fit, dcal.constant
    P = matrices(fit.coef, np.asarray(dcal.last_month_values)[None])[0]
    return const._replace(
        fit=const.fit._replace(params=MSParams(fit.means, fit.covs, P), loglik=fit.loglik, n_params=fit.n_params)
    )


def _nuts(progress, report: SamplerProgress, **kwargs):
    """numpyro's NUTS; with ``progress``, one that calls ``progress(SamplerProgress)`` on the host
    (``jax.debug.callback``; the draws are the same as without) after every iteration that ends a
    1/``PROGRESS_REPORTS`` of the run, is the last, or diverges (so the count of divergences is exact)."""
    from numpyro.infer import NUTS

    if progress is None:
        return NUTS(model, **kwargs)
    counted = {"divergences": 0}
    every = max(1, report.total // PROGRESS_REPORTS)

    def host(i, diverging):
        done = int(np.max(i))
        if done > report.warmup:
            counted["divergences"] += int(np.sum(diverging))
        progress(report._replace(done=done, divergences=counted["divergences"]))

    class ReportingNUTS(NUTS):
        def sample(self, state, model_args, model_kwargs):
            state = super().sample(state, model_args, model_kwargs)
            i = jnp.max(state.i)
            jax.lax.cond(
                (i % every == 0) | (i == report.total) | jnp.any(state.diverging),
                lambda: jax.debug.callback(host, state.i, state.diverging),
                lambda: None,
            )
            return state

    return ReportingNUTS(model, **kwargs)


def init_values(cal: Calibration, drivers: DriverData | None = None) -> dict:
    """The ML fit as values of the model's sites (numpyro ``init_to_value``); with ``drivers``, ``cal`` is
    ``driver_ml_calibration``'s and the logits start at the driver fit's."""
    p, f = cal.fit.params, cal.steps_per_year
    A = p.means.shape[1]
    drift = p.means * f
    sd = np.sqrt(np.diagonal(p.covs, axis1=1, axis2=2))
    corr = p.covs / (sd[:, :, None] * sd[:, None, :])
    P = np.clip(p.transition, 1e-6, None)
    out = {
        "drift_level": jnp.asarray(drift.mean(axis=1)),
        "drift_dev": jnp.asarray(drift @ _sum_zero_basis(A)),
        "vol": jnp.asarray(sd * math.sqrt(f)),
        "corr_chol": jnp.asarray(np.linalg.cholesky(corr)),
    }
    if drivers is None:
        return out | {"transition": jnp.asarray(P / P.sum(axis=1, keepdims=True))}
    from .tvtp import standardise_coef

    c = standardise_coef(drivers.coef_ml, drivers.loc, drivers.scale)
    K = len(c)
    return out | {"logit": jnp.asarray(np.stack([np.delete(c[i], i, axis=0) for i in range(K)]))}


def sample_posterior(
    cal: Calibration,
    y: np.ndarray,
    *,
    draws: int = 1000,
    chains: int = 4,
    warmup: int | None = None,
    seed: int = 0,
    target_accept: float = TARGET_ACCEPT,
    progress=None,
    rerun: str = "",
) -> PosteriorFit:
    """NUTS on the model of ``cal`` (its K and frequency) for the log returns ``y`` [T, A] it was fitted to
    (``history.log_returns`` of the same frame), ``chains`` chains (vectorised) of ``warmup`` (default
    ``draws``) adaptation steps and ``draws`` kept draws each, started at the ML fit. Float64 throughout.
    ``cal`` may be a ``tvtp.DriverCalibration`` (``calibrate_drivers``): the logits of the transitions are
    sampled too, and ``y`` are the returns of its sample (``dcal.constant.dates``).
    ``progress(SamplerProgress)`` is called as it runs (``_nuts``); ``rerun`` (why this is a second run) is
    passed on to it and kept in the fit."""
    from numpyro.infer import MCMC, init_to_value

    if draws < 1 or chains < 1:
        raise CapsimError(f"draws and chains must be at least 1, got {draws} and {chains}")
    warmup = draws if warmup is None else int(warmup)
    y_np = np.asarray(y, float)
    from .tvtp import DriverCalibration

    drv = None
    if isinstance(cal, DriverCalibration):
        drv, cal = driver_data(cal), driver_ml_calibration(cal)
        if len(drv.X) != len(y_np):
            raise CapsimError(f"the returns have {len(y_np)} rows, the drivers {len(drv.X)}: give the fit's sample")
    K, f = len(cal.regimes), cal.steps_per_year
    t0 = time.perf_counter()
    with jax.enable_x64(True):
        y = jnp.asarray(y_np)
        X = None if drv is None else jnp.asarray(drv.X)
        init = init_to_value(values=init_values(cal, drv))
        kernel = _nuts(
            progress,
            SamplerProgress(0, warmup, warmup + draws, chains, 0, target_accept, rerun),
            init_strategy=init,
            target_accept_prob=target_accept,
            dense_mass=True,
            inverse_mass_matrix=_curvature_mass(y, K, f, init, X),
        )
        mcmc = MCMC(
            kernel,
            num_warmup=warmup,
            num_samples=draws,
            num_chains=chains,
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(seed), y, K, f, X, extra_fields=EXTRA_FIELDS)
        sm = mcmc.get_samples(group_by_chain=True)
        ex = mcmc.get_extra_fields(group_by_chain=True)
        drift, vol, Lc = sm["drift"], sm["vol"], sm["corr_chol"]
        corr = np.asarray(Lc @ jnp.swapaxes(Lc, -1, -2))
        extra = {}
        if drv is None:
            P = np.asarray(sm["transition"])
            last = filtered_draws(y_np, drift, vol, corr, P, f)[:, :, -1]
        else:
            from .tvtp import matrices, rescale_coef

            coef_std = np.asarray(_off_to_full(sm["logit"]))
            coef = rescale_coef(coef_std, drv.loc, drv.scale)
            P = matrices(coef.reshape(-1, K, K, coef.shape[-1]), drv.last[None]).reshape(coef.shape[:2] + (K, K))
            last = _filtered_last_drivers(y_np, drift, vol, corr, coef_std, drv.X, f)
            extra = {"drivers": drv.names, "coef": coef, "coef_ml": drv.coef_ml, "coef_se": drv.coef_se}
    return PosteriorFit(
        drift=np.asarray(drift),
        vol=np.asarray(vol),
        corr=corr,
        transition=P,
        start=np.einsum("cdk,cdkj->cdj", last, P),
        diverging=np.asarray(ex["diverging"], bool),
        n_steps=np.asarray(ex["num_steps"]),
        step_size=np.asarray(ex["adapt_state"].step_size),
        energy=np.asarray(ex["energy"]),
        lp=-np.asarray(ex["potential_energy"]),
        cal=cal,
        y=y_np,
        wall_seconds=time.perf_counter() - t0,
        warmup=warmup,
        target_accept=target_accept,
        rerun=rerun,
        **extra,
    )


def rerun_reason(diag: Diagnostics, target_accept: float) -> str:
    """Why a second run is worth it, or "" when it is not: the divergences are the only failure and a
    handful (at most ``RERUN_MAX_DIVERGENCES`` of the kept draws), and the steps can still shrink."""
    handful = 0 < diag.divergences <= RERUN_MAX_DIVERGENCES * diag.draws
    rhat, bulk, tail = diag.worst()
    if not handful or not (rhat <= MAX_RHAT and min(bulk, tail) >= MIN_ESS) or target_accept >= RERUN_TARGET_ACCEPT:
        return ""
    return f"the first run, at target acceptance {target_accept}, had {diag.divergences} divergence(s) of {diag.draws}"


def sample_checked(
    cal: Calibration, y: np.ndarray, *, draws: int = 1000, chains: int = 4, seed: int = 0, progress=None
):
    """``sample_posterior`` and ``diagnose``; when a handful of divergences is the only failure
    (``rerun_reason``), sample once more, same seed, with twice the warm-up at target acceptance
    ``RERUN_TARGET_ACCEPT``: smaller steps follow the posterior where its curvature changes fast (on the
    shipped data, around the barely identified bear drift). Returns (fit, diagnostics) of the last run; its
    ``rerun`` says why it ran and ``wall_seconds`` counts both runs."""
    fit = sample_posterior(cal, y, draws=draws, chains=chains, seed=seed, progress=progress)
    diag = diagnose(fit)
    why = rerun_reason(diag, fit.target_accept)
    if not why:
        return fit, diag
    second = sample_posterior(
        cal,
        y,
        draws=draws,
        chains=chains,
        warmup=2 * fit.warmup,
        seed=seed,
        target_accept=RERUN_TARGET_ACCEPT,
        progress=progress,
        rerun=why,
    )
    second = second._replace(wall_seconds=fit.wall_seconds + second.wall_seconds)
    return second, diagnose(second)


def _curvature_mass(y, K: int, f: int, init, X=None) -> np.ndarray | None:
    """The inverse Hessian of the potential (negative log posterior, in the sampler's unconstrained
    coordinates) at the ML start: a first inverse mass matrix on the posterior's scale, so that warm-up does
    not begin with the identity (units that differ a hundredfold). None when it is not positive definite."""
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import initialize_model

    info = initialize_model(jax.random.PRNGKey(0), model, model_args=(y, K, f, X), init_strategy=init)
    flat, unravel = ravel_pytree(info.param_info.z)
    H = np.asarray(jax.jit(jax.hessian(lambda v: info.potential_fn(unravel(v))))(flat))  # eager: 10x slower
    H = 0.5 * (H + H.T)
    if not np.all(np.isfinite(H)) or np.linalg.eigvalsh(H).min() <= 0:
        return None
    return np.linalg.inv(H)


@jax.jit
def _filtered_flat(y, drift, vol, corr, P, f):
    def one(d, v, c, p):
        covs = v[:, :, None] * c * v[:, None, :] / f
        return jnp.exp(log_filter(log_emissions(y, d / f, covs), p)[1])

    return jax.vmap(one)(drift, vol, corr, P)


@jax.jit
def _filtered_last_flat(y, drift, vol, corr, coef, X, f):
    from .tvtp import transition_matrices

    def one(d, v, c, b):
        covs = v[:, :, None] * c * v[:, None, :] / f
        return jnp.exp(log_filter(log_emissions(y, d / f, covs), transition_matrices(b, X))[1][-1])

    return jax.vmap(one)(drift, vol, corr, coef)


def _filtered_last_drivers(y, drift, vol, corr, coef, X, steps_per_year: int) -> np.ndarray:
    """[..., K] filtered regime probabilities at the last step under each draw's parameters, with the
    transitions of logits ``coef`` [..., K, K, 1 + n] of standardised drivers ``X`` [T, n]; float64."""
    lead = np.shape(drift)[:-2]
    flat = lambda x: jnp.asarray(np.reshape(x, (-1, *np.shape(x)[len(lead) :])))  # noqa: E731
    with jax.enable_x64(True):
        out = _filtered_last_flat(
            jnp.asarray(y), flat(drift), flat(vol), flat(corr), flat(coef), jnp.asarray(X), float(steps_per_year)
        )
        out = np.asarray(out)
    return out.reshape(*lead, out.shape[-1])


def filtered_draws(y, drift, vol, corr, P, steps_per_year: int) -> np.ndarray:
    """[..., T, K] filtered regime probabilities P(s_t | y_0..y_t) under each draw's parameters (annualised
    drift and vol [..., K, A], correlations [..., K, A, A], per-step P [..., K, K]); float64."""
    lead = np.shape(drift)[:-2]
    flat = lambda x: jnp.asarray(np.reshape(x, (-1, *np.shape(x)[len(lead) :])))  # noqa: E731
    with jax.enable_x64(True):
        out = _filtered_flat(jnp.asarray(y), flat(drift), flat(vol), flat(corr), flat(P), float(steps_per_year))
        out = np.asarray(out)
    return out.reshape(*lead, *out.shape[1:])


# --------------------------------------------------------------------------------------------
# Diagnostics


class Diagnostics(NamedTuple):
    """Per written scalar: R-hat, bulk and tail ESS; and the number of divergent transitions."""

    table: dict[str, tuple[float, float, float]]  # name -> (rhat, ess_bulk, ess_tail)
    divergences: int
    draws: int  # kept draws in all chains

    def worst(self) -> tuple[float, float, float]:
        """Largest R-hat, smallest bulk ESS, smallest tail ESS (NaN if any is NaN)."""
        v = np.array(list(self.table.values()))
        return float(np.max(v[:, 0])), float(np.min(v[:, 1])), float(np.min(v[:, 2]))  # NaN (one short chain) fails

    def failures(self) -> list[str]:
        """Each threshold that fails, with the scalar that fails it worst and what to try (empty: all pass)."""
        out = []
        arg = lambda col, fn: max(self.table, key=lambda n: fn(self.table[n][col]))  # noqa: E731
        rhat, bulk, tail = self.worst()
        if not rhat <= MAX_RHAT:
            n = arg(0, lambda v: v)
            out.append(
                f"R-hat {rhat:.4f} > {MAX_RHAT} ({n}): the chains disagree; run longer (more --draws) or check "
                "that the regimes are identified (fewer --regimes)"
            )
        if not min(bulk, tail) >= MIN_ESS:
            n = arg(1 if bulk <= tail else 2, lambda v: -v)
            which = "bulk" if bulk <= tail else "tail"
            out.append(
                f"{which} ESS {min(bulk, tail):.0f} < {MIN_ESS} ({n}): too few effective draws; raise --draws "
                "or --chains"
            )
        if self.divergences:
            out.append(
                f"{self.divergences} divergent transition(s) of {self.draws}: the sampler cannot follow the "
                "posterior's geometry; try fewer --regimes or more data"
            )
        return out

    def text(self) -> str:
        """A table of the diagnostics, one scalar a line."""
        lines = [f"{'parameter':<34} {'r_hat':>7} {'ess_bulk':>9} {'ess_tail':>9}"]
        lines += [f"{n:<34} {r:>7.4f} {b:>9.0f} {t:>9.0f}" for n, (r, b, t) in self.table.items()]
        lines.append(f"divergences: {self.divergences} of {self.draws} draws")
        return "\n".join(lines)


def diagnose(fit: PosteriorFit) -> Diagnostics:
    """arviz's rank-normalised split R-hat and bulk/tail ESS of every scalar in the file (the same functions
    and numbers on arviz 0.x and 1.x), and the NUTS divergences. One chain: R-hat is that of its split
    halves."""
    import arviz as az

    table = {}
    for name, x in fit.scalars().items():
        x = np.asarray(x, float)
        table[name] = (
            float(az.rhat(x)),
            float(az.ess(x, method="bulk")),
            float(az.ess(x, method="tail", prob=TAIL_PROB)),
        )
    return Diagnostics(table, int(fit.diverging.sum()), int(fit.diverging.size))


# --------------------------------------------------------------------------------------------
# The file: an arviz InferenceData (arviz 0.x) or xarray DataTree (arviz 1.x) in netCDF


def inference_data(groups: dict):
    """An arviz InferenceData of the named ``xarray.Dataset`` groups: ``az.InferenceData`` on arviz 0.x, the
    ``xarray.DataTree`` that replaces it on arviz 1.x."""
    import arviz as az

    if int(az.__version__.split(".")[0]) >= 1:
        import xarray as xr

        return xr.DataTree.from_dict(groups)
    return az.InferenceData(**groups)


def to_inference_data(fit: PosteriorFit, attrs: dict | None = None):
    """posterior (drift, vol, corr, transition, start, duration_months; with drivers also coef, the logits of
    leaving, and the drivers as observed_data's ``driver``), sample_stats (diverging, n_steps, tree_depth,
    energy, step_size, lp) and observed_data (the log returns, per step)."""
    import xarray as xr

    cal = fit.cal
    C, D, K, A = fit.drift.shape
    coords = {
        "chain": np.arange(C),
        "draw": np.arange(D),
        "regime": list(cal.regimes),
        "regime_to": list(cal.regimes),
        "asset": list(cal.assets),
        "asset_b": list(cal.assets),
    }
    cd = ("chain", "draw")

    def dims(*names):
        return {k: coords[k] for k in (*cd, *names)}

    posterior = xr.Dataset(
        {
            "drift": (cd + ("regime", "asset"), fit.drift, {"units": "annualised mean of the log return"}),
            "vol": (cd + ("regime", "asset"), fit.vol, {"units": "annualised sd of the log return"}),
            "corr": (cd + ("regime", "asset", "asset_b"), fit.corr),
            "transition": (cd + ("regime", "regime_to"), fit.transition, {"units": "per step, rows from"}),
            "start": (cd + ("regime",), fit.start, {"units": "law of the first simulated step's regime"}),
            "duration_months": (cd + ("regime",), fit.durations(), {"units": "months"}),
        },
        coords=dims("regime", "regime_to", "asset", "asset_b"),
        attrs=attrs or {},
    )
    if fit.coef is not None:
        posterior["coef"] = xr.DataArray(
            fit.coef,
            dims=cd + ("regime", "regime_to", "term"),
            coords={"term": ["intercept", *fit.drivers]},
            attrs={
                "units": "logit of moving regime -> regime_to against staying (0 on the diagonal): the intercept, "
                "then per unit of each driver the month before"
            },
        )
        posterior["transition"].attrs["units"] = "per month, rows from: the move into the first simulated month"
    stats = xr.Dataset(
        {
            "diverging": (cd, fit.diverging),
            "n_steps": (cd, fit.n_steps),
            "tree_depth": (cd, np.ceil(np.log2(fit.n_steps + 1)).astype(int)),
            "energy": (cd, fit.energy),
            "step_size": (cd, fit.step_size),
            "lp": (cd, fit.lp),
        },
        coords=dims(),
    )
    observed = xr.Dataset(
        {"log_return": (("time", "asset"), fit.y, {"units": "log(1 + simple return) per step"})},
        coords={"time": [str(d.date()) for d in cal.dates], "asset": list(cal.assets)},
    )
    return inference_data({"posterior": posterior, "sample_stats": stats, "observed_data": observed})


def write_posterior(fit: PosteriorFit, path: str | Path, *, attrs: dict | None = None, force: bool = False) -> str:
    """Write ``fit`` as netCDF (h5netcdf) atomically (temporary file, then rename); return its SHA-256."""
    path = Path(path)
    refuse_existing_file(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        to_inference_data(fit, attrs).to_netcdf(tmp, engine="h5netcdf")
        readable_by_all(Path(tmp))
        digest = sha256_of(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


# --------------------------------------------------------------------------------------------
# Reporting


def summary_table(fit: PosteriorFit) -> pd.DataFrame:
    """One row per regime and asset: posterior mean and 90% interval (5%, 95%) of the annualised drift and vol
    and of the expected duration in months, beside the ML fit."""
    ml = fit.cal.annualised()
    dur = fit.durations()
    rows = []
    for k, regime in enumerate(fit.cal.regimes):
        for a, asset in enumerate(fit.cal.assets):
            row = ml[(ml["regime"] == regime) & (ml["asset"] == asset)].iloc[0]
            out = {"regime": regime, "asset": asset}
            for name, x, ml_value in (
                ("drift", fit.drift[:, :, k, a], row["drift"]),
                ("vol", fit.vol[:, :, k, a], row["vol"]),
                ("duration_months", dur[:, :, k], row["duration_months"]),
            ):
                q05, q95 = np.quantile(x, [0.05, 0.95])
                out.update({f"{name}_ml": ml_value, f"{name}_mean": x.mean(), f"{name}_q05": q05, f"{name}_q95": q95})
            rows.append(out)
    return pd.DataFrame(rows)


def coef_table(fit: PosteriorFit) -> pd.DataFrame:
    """With drivers: one row per logit coefficient (move i -> j, term): the ML fit and its se, the posterior
    mean and 90% interval (5%, 95%); per unit of the driver the month before."""
    reg = fit.cal.regimes
    rows = []
    for i in range(len(reg)):
        for j in range(len(reg)):
            for t, term in enumerate(("intercept", *fit.drivers) if i != j else ()):
                x = fit.coef[:, :, i, j, t]
                q05, q95 = np.quantile(x, [0.05, 0.95])
                ml, se = fit.coef_ml[i, j, t], fit.coef_se[i, j, t]
                rows.append(
                    {"move": f"{reg[i]} -> {reg[j]}", "term": term, "ml": ml, "se": se}
                    | {"mean": x.mean(), "sd": x.std(), "q05": q05, "q95": q95}
                )
    return pd.DataFrame(rows)


def comment_lines(fit: PosteriorFit, diag: Diagnostics, seed: int) -> list[str]:
    """What the written scenario's comment block says about the posterior: sampler, priors, diagnostics, and
    the posterior beside the ML fit."""
    C, D = fit.drift.shape[:2]
    rhat, bulk, tail = diag.worst()
    lines = [
        f"posterior: numpyro NUTS, {C} chains x {D} draws after {fit.warmup} warm-up, target acceptance "
        f"{fit.target_accept}, started at the ML fit, seed {seed}, {fit.wall_seconds:.0f} s; the regimes summed "
        "out by a forward filter in log space",
        *([f"a second run: {fit.rerun}"] if fit.rerun else []),
        "priors (annualised units):",
        *[f"  {ln}" for ln in prior_lines(fit.steps_per_year, fit.drivers)],
        f"diagnostics: max R-hat {rhat:.4f} (<= {MAX_RHAT}), min bulk ESS {bulk:.0f}, min tail ESS {tail:.0f} "
        f"(>= {MIN_ESS}), divergences {diag.divergences}"
        + ("" if not diag.failures() else "  -- FAILED, written with --force"),
        "posterior mean [90% interval] beside the ML fit:",
        "regime       asset       drift/yr: ML, mean [5%, 95%]          vol/yr: ML, mean [5%, 95%]"
        "           duration (months): ML, mean [5%, 95%]",
    ]
    previous = None
    for r in summary_table(fit).itertuples():
        head = f"{r.regime:<12} " if r.regime != previous else " " * 13
        dur = (
            f"   {r.duration_months_ml:6.1f}, {r.duration_months_mean:6.1f} [{r.duration_months_q05:5.1f}, "
            f"{r.duration_months_q95:6.1f}]"
            if r.regime != previous
            else ""
        )
        previous = r.regime
        lines.append(
            f"{head}{r.asset:<11} {r.drift_ml:7.4f}, {r.drift_mean:7.4f} [{r.drift_q05:7.4f}, {r.drift_q95:7.4f}]"
            f"   {r.vol_ml:6.4f}, {r.vol_mean:6.4f} [{r.vol_q05:6.4f}, {r.vol_q95:6.4f}]{dur}"
        )
    if fit.coef is not None:
        lines += [
            "logits of leaving (durations above: at the drivers of the last month); ML (se), mean [5%, 95%]:",
            *[
                f"  {r.move:<22} {r.term:<16} {r.ml:8.4f} ({r.se:.4f}), {r.mean:8.4f} [{r.q05:8.4f}, {r.q95:8.4f}]"
                for r in coef_table(fit).itertuples()
            ],
        ]
    lines.append(
        "the numbers below are the ML fit; `uncertainty` points to the posterior draws, which the scenario runs "
        "with (block b of 16,384 paths takes draw b mod D, each draw with its own `start`: its filtered regime law "
        "at the last date, moved one step on); delete that line to run the ML fit alone"
    )
    return lines


def file_attrs(fit: PosteriorFit, diag: Diagnostics, seed: int) -> dict:
    """netCDF attributes of the posterior group: what a reader needs to use the draws."""
    from .. import __version__

    rhat, bulk, tail = diag.worst()
    return {
        "capsim_version": __version__,
        "frequency": fit.cal.frequency,
        "steps_per_year": fit.steps_per_year,
        "data": fit.cal.source,
        "sample": f"{fit.cal.dates[0].date()} .. {fit.cal.dates[-1].date()}",
        "model": f"{len(fit.cal.regimes)}-regime Markov-switching Gaussian of log returns, s_0 stationary"
        + (f"; transitions multinomial logits of {', '.join(fit.drivers)} the month before" if fit.drivers else ""),
        "priors": "; ".join(prior_lines(fit.steps_per_year, fit.drivers)),
        **({"drivers": ",".join(fit.drivers), "reference": "staying"} if fit.drivers else {}),
        "sampler": f"numpyro NUTS, dense mass, target accept {fit.target_accept}, warm-up {fit.warmup}, seed {seed}"
        + (f"; a second run: {fit.rerun}" if fit.rerun else ""),
        "ml_loglik": fit.cal.fit.loglik,
        "max_rhat": rhat,
        "min_ess_bulk": bulk,
        "min_ess_tail": tail,
        "divergences": diag.divergences,
        "diagnostics_passed": int(not diag.failures()),
    }


def draw_scenario(cal: Calibration, drift, vol, corr, P, start, *, name: str, horizon_months: int):
    """A plain scenario from one draw's parameters (annualised drift and vol [K, A], correlations [K, A, A],
    per-step P [K, K], start law [K]), through calibrate's ``to_scenario``."""
    from .calibrate import MSParams, to_scenario

    f = cal.steps_per_year
    covs = np.asarray(vol)[:, :, None] * np.asarray(corr) * np.asarray(vol)[:, None, :] / f
    params = MSParams(np.asarray(drift) / f, covs, np.asarray(P))
    one = cal._replace(fit=cal.fit._replace(params=params))
    return to_scenario(one, name=name, horizon_months=horizon_months, start=np.asarray(start))
