"""Calibration: a K-regime Markov-switching Gaussian model fitted to historical log returns, as a scenario.

Model (per step t = 0..T-1 of the data's frequency): a hidden regime chain s_t with per-step transition
matrix P, s_0 drawn from the stationary distribution of P (as in Hamilton 1989 and statsmodels'
``MarkovRegression``), and log returns y_t = log(1 + r_t) | s_t = k ~ N(mu_k, Sigma_k) with a regime-specific
mean vector and full covariance matrix.

Fit: maximum likelihood. Each of several starts (fixed seed) runs EM, whose E-step is a scaled
forward-backward pass vectorised over time (the forward and backward recursions are products of K x K
matrices, computed as prefix products by a doubling scan with a log scale per step, so no Python loop runs
over the observations); the best start is then polished by BFGS on the exact log-likelihood with its analytic
gradient (Fisher's identity: the score is the posterior expectation of the complete-data score). Standard
errors come from the observed information (finite differences of that gradient), mapped to the reported
parameters by the delta method. The data are standardised per asset and whitened before fitting (the fit is
affine equivariant; this only conditions the optimisation) and the results mapped back.

Degenerate fits (a regime whose covariance collapses, a regime that holds almost no observations, EM or BFGS
that does not converge) raise ``FitError`` and nothing is written. ``scenario_text`` renders a fit as a
scenario file (docs/scenarios.md, ``transitions`` form) and validates it with ``parse_scenario`` before any
caller writes it.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import yaml
from scipy import linalg, optimize

from .. import __version__
from ..errors import CapsimError
from ..scenario import NAME_RE, STEPS_PER_YEAR, Scenario, parse_scenario, stationary_distribution
from .history import DataError, check_enough_rows, log_returns

LOG_2PI = float(np.log(2 * np.pi))
VAR_FLOOR = 1e-4  # smallest eigenvalue of a regime covariance relative to the sample covariance (whitened)
EM_TOL = 1e-9  # EM stops when the log-likelihood changes by less than this, relative
EM_MAX_ITER = 1000
GRAD_TOL = 1e-5  # converged when every |d loglik / d theta| per observation is below this (standardised data)
MIN_OBS_PER_PARAM = 5  # rows needed per free parameter


class FitError(DataError):
    """A fit that must not be written: degenerate (collapsing variance, empty regime) or not converged; the
    data do not support the model asked for (``str`` names the data file and says why)."""


# --------------------------------------------------------------------------------------------
# Results


class MSParams(NamedTuple):
    """Parameters of a K-regime model of A assets' per-step log returns."""

    means: np.ndarray  # [K, A] per-step mean of the log return
    covs: np.ndarray  # [K, A, A] per-step covariance of the log return
    transition: np.ndarray  # [K, K] per-step matrix, rows sum to 1 (row: from, column: to)


class Posterior(NamedTuple):
    loglik: float
    filtered: np.ndarray  # [T, K] P(s_t = k | y_0..y_t)
    smoothed: np.ndarray  # [T, K] P(s_t = k | y_0..y_{T-1})
    pair_counts: np.ndarray  # [K, K] sum over t >= 1 of P(s_{t-1} = i, s_t = j | all data)


class StandardErrors(NamedTuple):
    """Standard errors (observed information, delta method), per step; NaN where not available."""

    means: np.ndarray  # [K, A]
    sds: np.ndarray  # [K, A] of the per-step standard deviation sqrt(Sigma_aa)
    corrs: np.ndarray  # [K, A, A]
    transition: np.ndarray  # [K, K]


class StartReport(NamedTuple):
    """What each EM start reached: log-likelihood (NaN when degenerate) and a status word."""

    logliks: np.ndarray  # [n_starts]
    status: tuple[str, ...]  # "ok" | "degenerate: ..." | "not converged"
    iterations: tuple[int, ...]


class MSFit(NamedTuple):
    """A maximum-likelihood fit; regimes ordered by their mean log return (averaged over assets), lowest first."""

    params: MSParams
    loglik: float
    n_obs: int
    n_params: int
    aic: float
    bic: float
    filtered: np.ndarray  # [T, K]
    smoothed: np.ndarray  # [T, K]
    se: StandardErrors
    converged: bool
    grad_max: float  # largest |d loglik / d theta| per observation at the optimum (standardised data)
    starts: StartReport
    best_start: int

    @property
    def n_regimes(self) -> int:
        return self.params.means.shape[0]

    @property
    def stationary(self) -> np.ndarray:
        return stationary_distribution(self.params.transition)


class Calibration(NamedTuple):
    """A fit with what it was fitted to."""

    fit: MSFit
    regimes: tuple[str, ...]
    assets: tuple[str, ...]
    dates: pd.DatetimeIndex
    frequency: str
    source: str
    method: str = "EM (scaled forward-backward) + BFGS polish"
    provenance: str = ""  # the data file's vintage and SHA-256 (its `# vintage:`/`# sha256:` lines), if stated

    @property
    def steps_per_year(self) -> int:
        return STEPS_PER_YEAR[self.frequency]

    def annualised(self) -> pd.DataFrame:
        """One row per regime and asset: annualised drift and vol (with SEs), durations and shares."""
        f = self.steps_per_year
        p, se = self.fit.params, self.fit.se
        rows = []
        for k, name in enumerate(self.regimes):
            for a, asset in enumerate(self.assets):
                rows.append(
                    {
                        "regime": name,
                        "asset": asset,
                        "drift": p.means[k, a] * f,
                        "drift_se": se.means[k, a] * f,
                        "vol": np.sqrt(p.covs[k, a, a] * f),
                        "vol_se": se.sds[k, a] * np.sqrt(f),
                        "duration_months": expected_duration_months(p.transition, f)[k],
                        "smoothed_share": self.fit.smoothed[:, k].mean(),
                        "stationary_share": self.fit.stationary[k],
                    }
                )
        return pd.DataFrame(rows)


def n_free_params(K: int, A: int) -> int:
    """Means, covariances and transition probabilities (the initial law is the stationary one: not free)."""
    return K * A + K * A * (A + 1) // 2 + K * (K - 1)


def regime_names(K: int) -> tuple[str, ...]:
    return {1: ("single",), 2: ("bear", "bull"), 3: ("bear", "neutral", "bull")}.get(
        K, tuple(f"regime_{k + 1}" for k in range(K))
    )


def expected_duration_months(P: np.ndarray, steps_per_year: int) -> np.ndarray:
    """Expected stay in each regime once entered, in months: 1 / (1 - P_kk) steps; [..., K] for transition
    matrices [..., K, K] (leading axes, e.g. posterior chains and draws, carried through)."""
    stay = np.diagonal(P, axis1=-2, axis2=-1)
    with np.errstate(divide="ignore"):
        steps = np.where(stay < 1, 1.0 / (1.0 - stay), np.inf)
    return steps * 12.0 / steps_per_year


# --------------------------------------------------------------------------------------------
# Likelihood: emissions, scaled forward-backward by prefix products


def log_emissions(y: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """[T, K] log N(y_t; mu_k, Sigma_k). Raises ``np.linalg.LinAlgError`` for a covariance that is not PD."""
    T, A = y.shape
    out = np.empty((T, len(means)))
    for k in range(len(means)):  # K is small; each line is vectorised over time
        L = np.linalg.cholesky(covs[k])
        z = (y - means[k]) @ np.linalg.inv(L).T  # A x A inverse: cheaper than a solve with T right sides
        out[:, k] = -0.5 * (A * LOG_2PI + 2 * np.log(np.diag(L)).sum() + (z * z).sum(axis=1))
    return out


def _prefix_products(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive prefix products X_0 X_1 ... X_t of nonnegative K x K matrices stored as [K, K, T] (time
    last, so each entry is a contiguous series), by a doubling scan: log2 T vectorised steps. Each product
    is returned divided by its largest entry; ``logscale[t]`` is the log of what was divided out, so the
    true product is out[:, :, t] * exp(logscale[t])."""
    X = X.copy()
    T = X.shape[2]
    logscale = np.zeros(T)
    d = 1
    while d < T:
        prod = np.einsum("imt,mjt->ijt", X[:, :, :-d], X[:, :, d:])
        mx = prod.max(axis=(0, 1))
        if not np.all(mx > 0):
            raise FloatingPointError("the data have zero probability under these parameters")
        X[:, :, d:] = prod / mx
        logscale[d:] = logscale[:-d] + logscale[d:] + np.log(mx)
        d *= 2
    return X, logscale


def forward_backward(y: np.ndarray, params: MSParams, init: np.ndarray | None = None, smooth: bool = True) -> Posterior:
    """Log-likelihood, filtered and smoothed regime probabilities and expected transition counts.

    ``init`` is the law of s_0 (default: the stationary distribution of the transition matrix).
    Forward: alpha_t = alpha_{t-1} P diag(b_t), i.e. alpha_t = (1 alpha_0) M_1 ... M_t with M_t = P diag(b_t),
    all t at once by prefix products; backward: beta_t = M_{t+1} ... M_{T-1} 1, by the same scan run on the
    reversed, transposed matrices. Emission densities b_t are scaled by their largest entry per step.
    """
    P = params.transition
    K = len(P)
    logb = log_emissions(y, params.means, params.covs)
    shift = logb.max(axis=1)
    b = np.exp(logb - shift[:, None])
    delta = stationary_distribution(P) if init is None else np.asarray(init, float)
    T = len(y)
    M = P[:, :, None] * b.T[None, :, :]  # [K, K, T]: M_t = P diag(b_t)
    M[:, :, 0] = (delta * b[0])[None, :]  # every row = alpha_0, so each prefix row = alpha_t
    Xf, sf = _prefix_products(M)
    alpha = Xf[0].T  # [T, K]
    norm = alpha.sum(axis=1)
    loglik = float(np.log(norm[-1]) + sf[-1] + shift.sum())
    filtered = alpha / norm[:, None]
    if not smooth:
        return Posterior(loglik, filtered, filtered, np.zeros((K, K)))
    beta = np.ones((T, K))
    if T > 1:
        N = M[:, :, :0:-1].transpose(1, 0, 2)  # N_u = M_{T-1-u}^T, u = 0..T-2
        Xb, _ = _prefix_products(N)
        beta[:-1] = Xb.sum(axis=0)[:, ::-1].T  # beta_t = (1^T N_0 ... N_{T-2-t})^T, up to scale
        beta[:-1] /= beta[:-1].max(axis=1, keepdims=True)
    g = filtered * beta
    smoothed = g / g.sum(axis=1, keepdims=True)
    if T > 1:
        w = b[1:] * beta[1:]  # [T-1, K]
        xi = filtered[:-1, :, None] * P[None] * w[:, None, :]
        xi /= xi.sum(axis=(1, 2), keepdims=True)
        pairs = xi.sum(axis=0)
    else:
        pairs = np.zeros((K, K))
    return Posterior(loglik, filtered, smoothed, pairs)


def loglikelihood(y: np.ndarray, params: MSParams) -> float:
    """Exact log-likelihood of the data (s_0 from the stationary distribution)."""
    return forward_backward(np.atleast_2d(np.asarray(y, float).T).T, params, smooth=False).loglik


def filter_probabilities(y: np.ndarray, params: MSParams) -> np.ndarray:
    """[T, K] filtered regime probabilities P(s_t | y_0..y_t) under fixed parameters."""
    return forward_backward(np.atleast_2d(np.asarray(y, float).T).T, params, smooth=False).filtered


# --------------------------------------------------------------------------------------------
# EM


def m_step(y: np.ndarray, post: Posterior) -> MSParams:
    """Weighted moments and normalised transition counts (the stationary law of s_0 carries the weight of
    one observation and is left out of the transition update; the BFGS polish maximises the exact
    likelihood)."""
    w = post.smoothed
    n = w.sum(axis=0)
    means = (w.T @ y) / n[:, None]
    d = y[None] - means[:, None, :]  # [K, T, A]
    covs = np.einsum("kt,kta,ktb->kab", w.T, d, d) / n[:, None, None]
    covs = 0.5 * (covs + np.swapaxes(covs, 1, 2))
    rows = post.pair_counts.sum(axis=1, keepdims=True)
    P = post.pair_counts / np.where(rows > 0, rows, 1.0)
    P[rows[:, 0] <= 0] = np.eye(len(P))[rows[:, 0] <= 0]
    return MSParams(means, covs, P)


def _degeneracy(params: MSParams, counts: np.ndarray, min_obs: float, var_floor: float) -> str | None:
    """Why a fit on whitened data (sample covariance = identity) is degenerate, or None."""
    for k in range(len(params.means)):
        if not np.all(np.isfinite(params.covs[k])) or not np.all(np.isfinite(params.means[k])):
            return f"regime {k + 1}: non-finite parameters"
        if counts[k] < min_obs:
            return f"empty regime (regime {k + 1} holds {counts[k]:.2f} expected observations, fewer than {min_obs:g})"
        ev = np.linalg.eigvalsh(params.covs[k]).min()
        if ev < var_floor:
            return (
                f"collapsing variance (regime {k + 1}: smallest eigenvalue of its covariance relative to the "
                f"sample's {max(ev, 0.0):.2g}, below {var_floor:g})"
            )
    return None


def run_em(
    y: np.ndarray,
    params: MSParams,
    *,
    max_iter: int = EM_MAX_ITER,
    tol: float = EM_TOL,
    min_obs: float = 1.0,
    var_floor: float = 1e-8,
) -> tuple[MSParams, Posterior, int, str]:
    """EM from ``params``: returns (params, posterior at them, iterations, status)."""
    prev = -np.inf
    post = None
    for it in range(1, max_iter + 1):
        try:
            post = forward_backward(y, params)
        except (np.linalg.LinAlgError, FloatingPointError) as exc:
            return params, post, it, f"degenerate: {exc}"
        if not np.isfinite(post.loglik):
            return params, post, it, "degenerate: non-finite log-likelihood"
        if abs(post.loglik - prev) <= tol * (1 + abs(post.loglik)):
            return params, post, it, "ok"
        prev = post.loglik
        new = m_step(y, post)
        why = _degeneracy(new, post.smoothed.sum(axis=0), min_obs, var_floor)
        if why:
            return new, post, it, f"degenerate: {why}"
        params = new
    return params, post, max_iter, "not converged"


def initial_params(z: np.ndarray, K: int, start: int, rng: np.random.Generator) -> MSParams:
    """Start ``start`` (0: split by the average return; 1: split by the squared size of the return;
    later: split by a random direction in (return, squared size) at random proportions)."""
    T, A = z.shape
    size = (z * z).sum(axis=1)
    if start == 0:
        score, cuts = z.mean(axis=1), np.arange(1, K) / K
        stay = np.full(K, 0.9)
    elif start == 1:
        score, cuts = size, np.arange(1, K) / K
        stay = np.full(K, 0.9)
    else:
        u = rng.normal(size=2)
        score = u[0] * z.mean(axis=1) + u[1] * (size - size.mean()) / (size.std() + 1e-12)
        share = 0.1 + 0.9 * rng.dirichlet(np.ones(K)) if K > 1 else np.ones(1)
        cuts = np.cumsum(share / share.sum())[:-1]
        stay = rng.uniform(0.7, 0.98, size=K)
    order = np.argsort(score, kind="stable")
    edges = np.concatenate([[0], np.round(cuts * T).astype(int), [T]])
    means, covs = np.empty((K, A)), np.empty((K, A, A))
    for k in range(K):
        grp = z[order[edges[k] : edges[k + 1]]]
        if len(grp) < 2:
            grp = z
        means[k] = grp.mean(axis=0)
        covs[k] = np.cov(grp.T, bias=True).reshape(A, A) + 1e-3 * np.eye(A)
    P = np.full((K, K), 0.0)
    for k in range(K):
        P[k] = (1 - stay[k]) / max(K - 1, 1)
        P[k, k] = stay[k] if K > 1 else 1.0
    return MSParams(means, covs, P)


# --------------------------------------------------------------------------------------------
# Unconstrained parameter vector, analytic gradient, BFGS polish, observed information


def _tril(A: int):
    return np.tril_indices(A)


def pack(params: MSParams) -> np.ndarray:
    """theta = [means; per regime the Cholesky factor's lower triangle with log diagonal; per row the
    logits log(P_ij / P_ii) for j != i]."""
    K, A = params.means.shape
    r, c = _tril(A)
    parts = [params.means.ravel()]
    for k in range(K):
        L = np.linalg.cholesky(params.covs[k])
        v = L[r, c].copy()
        v[r == c] = np.log(v[r == c])
        parts.append(v)
    P = np.clip(params.transition, 1e-300, None)
    for i in range(K):
        parts.append(np.log(np.delete(P[i], i) / P[i, i]))
    return np.concatenate(parts)


def unpack(theta: np.ndarray, K: int, A: int) -> tuple[MSParams, np.ndarray]:
    """(params, Cholesky factors [K, A, A]) from ``pack``'s vector."""
    r, c = _tril(A)
    m = A * (A + 1) // 2
    means = theta[: K * A].reshape(K, A)
    Ls = np.zeros((K, A, A))
    pos = K * A
    for k in range(K):
        v = theta[pos : pos + m].copy()
        v[r == c] = np.exp(v[r == c])
        Ls[k][r, c] = v
        pos += m
    P = np.empty((K, K))
    for i in range(K):
        eta = np.insert(theta[pos : pos + K - 1], i, 0.0)
        e = np.exp(eta - eta.max())
        P[i] = e / e.sum()
        pos += K - 1
    covs = Ls @ np.swapaxes(Ls, 1, 2)
    return MSParams(means, covs, P), Ls


def _init_term_grad(theta: np.ndarray, K: int, A: int, gamma0: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Gradient of sum_k gamma0_k log pi_k(P(theta)) over the logits (central differences; no data involved)."""
    out = np.zeros(K * (K - 1))
    if K == 1:
        return out
    start = len(theta) - K * (K - 1)

    def h(th):
        pi = stationary_distribution(unpack(th, K, A)[0].transition)
        return float(gamma0 @ np.log(np.clip(pi, 1e-300, None)))

    for i in range(K * (K - 1)):
        e = np.zeros_like(theta)
        e[start + i] = eps
        out[i] = (h(theta + e) - h(theta - e)) / (2 * eps)
    return out


def loglik_and_grad(theta: np.ndarray, y: np.ndarray, K: int) -> tuple[float, np.ndarray]:
    """Exact log-likelihood and its gradient in ``theta`` (Fisher's identity)."""
    T, A = y.shape
    params, Ls = unpack(theta, K, A)
    post = forward_backward(y, params)
    g = post.smoothed
    r, c = _tril(A)
    grad_mu, grad_L = [], []
    for k in range(K):
        Sinv = np.linalg.inv(params.covs[k])
        d = y - params.means[k]
        nk = g[:, k].sum()
        grad_mu.append(Sinv @ (g[:, k] @ d))
        S = (d * g[:, k, None]).T @ d
        G = 0.5 * Sinv @ (S - nk * params.covs[k]) @ Sinv
        dL = (2 * G @ Ls[k])[r, c]
        dL[r == c] *= Ls[k][r, c][r == c]
        grad_L.append(dL)
    n = post.pair_counts
    P = params.transition
    grad_eta = np.concatenate([np.delete(n[i] - P[i] * n[i].sum(), i) for i in range(K)]) if K > 1 else np.zeros(0)
    grad_eta = grad_eta + _init_term_grad(theta, K, A, g[0])
    return post.loglik, np.concatenate([np.ravel(grad_mu), np.ravel(grad_L), grad_eta])


def polish(y: np.ndarray, params: MSParams, max_iter: int = 500) -> tuple[MSParams, float, float]:
    """BFGS on the exact log-likelihood from ``params``: (params, loglik, largest |gradient| per observation)."""
    T, A = y.shape
    K = len(params.means)
    theta0 = pack(params)

    def f(th):
        try:
            ll, gr = loglik_and_grad(th, y, K)
        except (np.linalg.LinAlgError, FloatingPointError):
            return np.inf, np.zeros_like(th)
        if not np.isfinite(ll):
            return np.inf, np.zeros_like(th)
        return -ll / T, -gr / T

    with np.errstate(over="ignore", invalid="ignore"):
        res = optimize.minimize(f, theta0, jac=True, method="BFGS", options={"maxiter": max_iter, "gtol": 1e-9})
    theta = res.x if np.isfinite(res.fun) and res.fun <= f(theta0)[0] else theta0
    ll, gr = loglik_and_grad(theta, y, K)
    return unpack(theta, K, A)[0], ll, float(np.abs(gr / T).max())


def _natural(theta: np.ndarray, K: int, A: int, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Reported parameters in data units: per-step means, sds, correlations (upper triangle), P (all entries)."""
    p, _ = unpack(theta, K, A)
    means = loc + p.means * scale
    sd = np.sqrt(np.diagonal(p.covs, axis1=1, axis2=2))
    corr = p.covs / (sd[:, :, None] * sd[:, None, :])
    iu = np.triu_indices(A, 1)
    return np.concatenate([means.ravel(), (sd * scale).ravel(), corr[:, iu[0], iu[1]].ravel(), p.transition.ravel()])


def standard_errors(
    y: np.ndarray, params: MSParams, loc: np.ndarray, scale: np.ndarray, h: float = 1e-4
) -> StandardErrors:
    """From the observed information: Hessian of the log-likelihood in theta by central differences of the
    analytic gradient, inverted, mapped to the reported parameters by the delta method. Transition
    probabilities within 1e-6 of 0 sit on the boundary: their logits are held fixed and their SEs are NaN."""
    T, A = y.shape
    K = len(params.means)
    theta = pack(params)
    n = len(theta)
    free = np.ones(n, bool)
    if K > 1:
        off = np.array([P_ij for i in range(K) for P_ij in np.delete(params.transition[i], i)])
        free[n - K * (K - 1) :] = off > 1e-6
    idx = np.nonzero(free)[0]
    H = np.zeros((len(idx), len(idx)))
    for col, i in enumerate(idx):
        e = np.zeros(n)
        e[i] = h
        H[:, col] = (loglik_and_grad(theta + e, y, K)[1][idx] - loglik_and_grad(theta - e, y, K)[1][idx]) / (2 * h)
    H = 0.5 * (H + H.T)
    iu = np.triu_indices(A, 1)
    n_nat = K * A * 2 + K * len(iu[0]) + K * K
    try:
        ev = np.linalg.eigvalsh(-H)
        if ev.min() <= 0:
            raise np.linalg.LinAlgError("observed information not positive definite")
        cov = np.linalg.inv(-H)
        J = np.zeros((n_nat, len(idx)))
        for col, i in enumerate(idx):
            e = np.zeros(n)
            step = 1e-6
            e[i] = step
            J[:, col] = (_natural(theta + e, K, A, loc, scale) - _natural(theta - e, K, A, loc, scale)) / (2 * step)
        se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", J, cov, J), 0, None))
    except np.linalg.LinAlgError:
        se = np.full(n_nat, np.nan)
    pos = 0
    se_means = se[pos : pos + K * A].reshape(K, A)
    pos += K * A
    se_sds = se[pos : pos + K * A].reshape(K, A)
    pos += K * A
    se_corrs = np.full((K, A, A), np.nan)
    m = len(iu[0])
    for k in range(K):
        se_corrs[k][iu] = se[pos + k * m : pos + (k + 1) * m]
        se_corrs[k][(iu[1], iu[0])] = se[pos + k * m : pos + (k + 1) * m]
        np.fill_diagonal(se_corrs[k], 0.0)
    pos += K * m
    se_P = se[pos : pos + K * K].reshape(K, K).copy()
    se_P[params.transition <= 1e-6] = np.nan
    return StandardErrors(se_means, se_sds, se_corrs, se_P)


# --------------------------------------------------------------------------------------------
# The fit


def fit_ms(
    y: np.ndarray,
    n_regimes: int,
    *,
    n_starts: int = 10,
    seed: int = 0,
    max_iter: int = EM_MAX_ITER,
    tol: float = EM_TOL,
    polish_fit: bool = True,
    min_regime_obs: float | None = None,
    var_floor: float = VAR_FLOOR,
    with_se: bool = True,
    source: str = "<data>",
) -> MSFit:
    """Maximum-likelihood fit of a K-regime Markov-switching Gaussian model to log returns ``y`` [T, A].

    Every start runs EM to ``tol``; the best non-degenerate one is polished by BFGS. Raises ``FitError``
    when no start gives a usable fit or the best one is degenerate or not converged (the message says why).
    ``min_regime_obs`` (default 2 x the parameters of one regime) is the fewest expected observations a
    regime may hold; ``var_floor`` the smallest covariance eigenvalue of a regime relative to the sample's.
    """
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    T, A = y.shape
    K = int(n_regimes)
    if K < 1:
        raise CapsimError(f"the number of regimes must be at least 1, got {n_regimes}")
    if n_starts < 1:
        raise CapsimError(f"n_starts must be at least 1, got {n_starts}")
    if min_regime_obs is None:
        min_regime_obs = 2.0 * (A + A * (A + 1) / 2)
    loc, scale = y.mean(axis=0), y.std(axis=0)
    if np.any(scale <= 0):
        raise FitError(source, "a constant series cannot be fitted")
    z = (y - loc) / scale
    try:
        W = np.linalg.cholesky(np.cov(z.T, bias=True).reshape(A, A))  # whitening: sample covariance = W W^T
    except np.linalg.LinAlgError:
        raise FitError(
            source,
            "the columns are linearly dependent (two identical columns, or one a multiple or sum of others): "
            "their covariance is singular; drop one",
        ) from None
    zw = linalg.solve_triangular(W, z.T, lower=True).T
    rng = np.random.default_rng(seed)

    results, logliks, status, iters = [], [], [], []
    for s in range(n_starts):
        p0 = initial_params(zw, K, s, rng)
        p, post, it, st = run_em(zw, p0, max_iter=max_iter, tol=tol)
        if st == "ok" or st == "not converged":
            why = _degeneracy(p, post.smoothed.sum(axis=0), min_regime_obs, var_floor)
            if why:
                st = f"degenerate: {why}"
        results.append((p, post))
        logliks.append(post.loglik if (post is not None and not st.startswith("degenerate")) else np.nan)
        status.append(st)
        iters.append(it)
    logliks = np.array(logliks)
    usable = [i for i in range(n_starts) if not status[i].startswith("degenerate")]
    if not usable:
        kinds: dict[str, list[str]] = {}
        for st in status:
            detail = st.removeprefix("degenerate: ")
            kinds.setdefault(detail.split(" (")[0], []).append(detail)
        summary = "; ".join(f"{kind} in {len(v)} start(s), e.g. {v[0]}" for kind, v in sorted(kinds.items()))
        raise FitError(
            source,
            f"every one of {n_starts} starts gave a degenerate {K}-regime fit: {summary}; "
            "try fewer regimes or more data",
        )
    best = max(usable, key=lambda i: logliks[i])
    p, post = results[best]
    em_ok = status[best] == "ok"
    p_pol, ll, grad_pol = polish(zw, p) if polish_fit else (p, -np.inf, np.inf)
    if ll >= post.loglik - 1e-9 * abs(post.loglik):
        p, grad_max = p_pol, grad_pol
    else:  # no polish, or BFGS went nowhere better: judge the EM result by its own score
        grad_max = float(np.abs(loglik_and_grad(pack(p), zw, K)[1] / T).max())
    post = forward_backward(zw, p)
    converged = grad_max < GRAD_TOL or (em_ok and not polish_fit)
    why = _degeneracy(p, post.smoothed.sum(axis=0), min_regime_obs, var_floor)
    if why:
        raise FitError(source, f"degenerate {K}-regime fit: {why}; try fewer regimes or more data")
    if not converged:
        raise FitError(
            source,
            f"the {K}-regime fit did not converge (EM: {status[best]} after {iters[best]} "
            f"iterations; largest gradient per observation {grad_max:.2g} > {GRAD_TOL:g})",
        )

    # order regimes by mean log return (averaged over assets), map back to data units
    means_w = p.means @ W.T  # standardised units
    order = np.argsort((loc + means_w * scale).mean(axis=1), kind="stable")
    pz = MSParams(means_w[order], (W @ p.covs @ W.T)[order], p.transition[np.ix_(order, order)])
    params = MSParams(loc + pz.means * scale, pz.covs * scale[:, None] * scale[None, :], pz.transition)
    shift = -T * float(np.log(np.abs(np.linalg.det(W)))) - T * float(np.log(scale).sum())  # Jacobian of z -> y
    loglik = post.loglik + shift
    se = (
        standard_errors(z, pz, loc, scale)
        if with_se
        else StandardErrors(
            np.full((K, A), np.nan), np.full((K, A), np.nan), np.full((K, A, A), np.nan), np.full((K, K), np.nan)
        )
    )
    k_par = n_free_params(K, A)
    return MSFit(
        params=params,
        loglik=loglik,
        n_obs=T,
        n_params=k_par,
        aic=2 * k_par - 2 * loglik,
        bic=k_par * np.log(T) - 2 * loglik,
        filtered=post.filtered[:, order],
        smoothed=post.smoothed[:, order],
        se=se,
        converged=converged,
        grad_max=grad_max,
        starts=StartReport(logliks + shift, tuple(status), tuple(iters)),
        best_start=best,
    )


def calibrate(frame: pd.DataFrame, n_regimes: int, *, n_starts: int = 10, seed: int = 0, **kwargs) -> Calibration:
    """Fit ``n_regimes`` regimes to a validated returns frame (``history.read_returns``)."""
    K, A = int(n_regimes), frame.shape[1]
    need = max(MIN_OBS_PER_PARAM * n_free_params(K, A), 2)
    check_enough_rows(
        frame,
        need,
        f"fit {K} regime(s) to {A} asset(s) ({n_free_params(K, A)} free parameters, {MIN_OBS_PER_PARAM} rows each)",
    )
    source = frame.attrs.get("source", "<data>")
    fit = fit_ms(log_returns(frame), K, n_starts=n_starts, seed=seed, source=source, **kwargs)
    return Calibration(
        fit=fit,
        regimes=regime_names(K),
        assets=tuple(map(str, frame.columns)),
        dates=frame.index,
        frequency=frame.attrs.get("frequency", "monthly"),
        source=source,
        provenance=", ".join(
            f"{k} {v}" for k, v in frame.attrs.get("provenance", {}).items() if k in ("vintage", "sha256")
        ),
    )


def start_probabilities(cal: Calibration) -> np.ndarray:
    """Law of the regime of the first simulated step: the filtered probabilities at the last date moved one
    step on by the transition matrix."""
    return cal.fit.filtered[-1] @ cal.fit.params.transition


# --------------------------------------------------------------------------------------------
# Scenario rendering


def _round_probs(p: np.ndarray, decimals: int) -> list[float]:
    """Probabilities rounded so that they still sum to 1 (the largest absorbs the rounding)."""
    q = np.round(np.asarray(p, float), decimals)
    q = np.clip(q, 0, 1)
    i = int(np.argmax(q))
    q[i] = round(1.0 - (q.sum() - q[i]), decimals)
    return [float(v) for v in q]


def scenario_dict(
    cal: Calibration,
    *,
    name: str,
    horizon_months: int = 24,
    start: np.ndarray | None = None,
    description: str | None = None,
    sources: list[str] | None = None,
    labels: dict[str, str] | None = None,
    uncertainty: dict | None = None,
) -> dict:
    """The scenario (docs/scenarios.md, ``transitions`` form) as a mapping; annualised drift/vol/corr rounded to
    six decimals, transition probabilities to eight, start probabilities to six. ``uncertainty``: the
    ``{posterior, sha256}`` mapping of a posterior file, when there is one."""
    fit, f = cal.fit, cal.steps_per_year
    p = fit.params
    A = len(cal.assets)
    regimes = {}
    for k, rname in enumerate(cal.regimes):
        sd = np.sqrt(np.diag(p.covs[k]))
        C = p.covs[k] / np.outer(sd, sd)
        corr = (
            round(float(C[0, 1]), 6)
            if A == 2
            else [[1.0 if i == j else round(float(C[i, j]), 6) for j in range(A)] for i in range(A)]
        )
        regimes[rname] = {
            "drift": {a: round(float(p.means[k, i] * f), 6) for i, a in enumerate(cal.assets)},
            "vol": {a: round(float(sd[i] * np.sqrt(f)), 6) for i, a in enumerate(cal.assets)},
            "corr": corr,
        }
    start = start_probabilities(cal) if start is None else np.asarray(start, float)
    return {
        "name": name,
        "description": description or default_description(cal),
        "sources": sources or default_sources(cal),
        "as_of": pd.Timestamp(cal.dates[-1]).date(),
        "frequency": cal.frequency,
        "horizon_months": int(horizon_months),
        "assets": {a: (labels or {}).get(a, a) for a in cal.assets},
        "compare": list(cal.assets[:2]),
        "regimes": regimes,
        "transitions": {r: dict(zip(cal.regimes, _round_probs(p.transition[k], 8))) for k, r in enumerate(cal.regimes)},
        "start": dict(zip(cal.regimes, _round_probs(start, 6))),
        **({"uncertainty": uncertainty} if uncertainty else {}),
    }


def default_description(cal: Calibration) -> str:
    K = len(cal.regimes)
    return (
        f"{K}-regime Markov-switching Gaussian model of the log returns of {', '.join(cal.assets)}, fitted by "
        f"maximum likelihood to {cal.frequency} data {_day(cal.dates[0])} .. {_day(cal.dates[-1])}; "
        "regimes ordered by mean return; started from the regime probabilities filtered at the last date."
    )


def default_sources(cal: Calibration) -> list[str]:
    fit = cal.fit
    return [
        f"data: {cal.source} (columns {', '.join(cal.assets)}; simple returns -> log returns)"
        + (f"; {cal.provenance}" if cal.provenance else ""),
        f"sample: {_day(cal.dates[0])} .. {_day(cal.dates[-1])}, {fit.n_obs} {cal.frequency} observations",
        f"method: capsim calibrate {__version__}, maximum likelihood by {cal.method}, {len(fit.starts.logliks)} "
        f"starts; log-likelihood {fit.loglik:.4f}, BIC {fit.bic:.2f}",
    ]


def comment_block(cal: Calibration, command: str | None = None) -> str:
    """The '#' header of a calibrated scenario file: fit statistics, regimes, durations, shares."""
    fit = cal.fit
    p, se = fit.params, fit.se
    K = len(cal.regimes)
    ok = np.isfinite(fit.starts.logliks)
    lls = fit.starts.logliks[ok]
    same = int(np.sum(lls >= lls.max() - 0.01)) if len(lls) else 0
    fmt_se = lambda v: f"({v:.4f})" if np.isfinite(v) else "(boundary)"  # noqa: E731
    lines = [
        f"Calibrated by `capsim calibrate` (capsim {__version__}): re-run it to refresh; do not edit by hand.",
        *([f"command: {command}"] if command else []),
        f"data: {cal.source}; columns {', '.join(cal.assets)} (simple returns; fitted to log returns)",
        *([f"data provenance: {cal.provenance}"] if cal.provenance else []),
        f"sample: {period_text_from(cal)}",
        f"model: {K}-regime Markov-switching Gaussian, regime-specific mean vector and full covariance; "
        "s_0 from the stationary law",
        f"fit: maximum likelihood, {cal.method}; converged (every |score| per observation < {GRAD_TOL:g})",
        f"log-likelihood: {fit.loglik:.4f}   free parameters: {fit.n_params}   AIC: {fit.aic:.2f}   BIC: {fit.bic:.2f}",
        f"starts: {len(fit.starts.logliks)} (seed fixed), {int((~ok).sum())} degenerate; log-likelihood after EM "
        + (
            f"min {lls.min():.4f} / median {np.median(lls):.4f} / max {lls.max():.4f}, {same} start(s) within 0.01 "
            f"of the max; BFGS from the best (start {fit.best_start}) adds {fit.loglik - lls.max():.4f}"
            if len(lls)
            else ""
        ),
        "",
        "regime       asset       drift/yr (se)        vol/yr (se)        duration (months)  smoothed share  stationary",  # noqa: E501
    ]
    previous = None
    for row in cal.annualised().itertuples():
        first = row.regime != previous
        previous = row.regime
        head = f"{row.regime:<12} " if first else " " * 13
        tail = (
            (f"   {row.duration_months:>10.1f}        {row.smoothed_share:>8.3f}      {row.stationary_share:>8.3f}")
            if first
            else ""
        )
        lines.append(
            f"{head}{row.asset:<11} {row.drift:>8.4f} {fmt_se(row.drift_se)}   "
            f"{row.vol:>7.4f} {fmt_se(row.vol_se)}{tail}"
        )
    lines.append("")
    lines.append(
        "transition matrix per step, rows from, columns to (se): "
        + "; ".join(
            f"{r}: " + ", ".join(f"{p.transition[k, j]:.4f} {fmt_se(se.transition[k, j])}" for j in range(K))
            for k, r in enumerate(cal.regimes)
        )
    )
    last = fit.filtered[-1]
    lines.append(
        f"filtered regime probabilities at {_day(cal.dates[-1])}: "
        + ", ".join(f"{r} {last[k]:.4f}" for k, r in enumerate(cal.regimes))
        + "; `start` = these moved one step on (the first simulated step follows the last date)"
    )
    return "".join(f"# {ln}".rstrip() + "\n" for ln in lines)


def period_text_from(cal: Calibration) -> str:
    return f"{_day(cal.dates[0])} .. {_day(cal.dates[-1])} ({cal.fit.n_obs} {cal.frequency} observations)"


def scenario_text(
    cal: Calibration,
    *,
    name: str,
    horizon_months: int = 24,
    command: str | None = None,
    notes: list[str] | None = None,
    schema: str | None = None,
    **kwargs,
) -> str:
    """The scenario file's text (comment block + YAML), validated by ``parse_scenario``; raises
    ``ScenarioError`` if the result would not be a valid scenario (nothing is written). ``command``, when
    given, is recorded in the comment block (how to reproduce the file); ``notes``, lines added to it;
    ``schema``, the JSON Schema's path relative to the file, for the first line
    ``# yaml-language-server: $schema=...`` (docs/editors.md)."""
    data = scenario_dict(cal, name=name, horizon_months=horizon_months, **kwargs)
    extra = "".join(f"# {ln}".rstrip() + "\n" for ln in ["", *notes]) if notes else ""
    head = f"# yaml-language-server: $schema={schema}\n" if schema else ""
    text = head + comment_block(cal, command) + extra + render_yaml(data)
    if yaml.safe_load(text) != data:  # the emitter below must say exactly what the mapping says
        raise AssertionError("scenario rendering does not round-trip; please report this")
    parse_scenario(yaml.safe_load(text), source=f"<calibrated scenario {name}>")
    return text


def render_yaml(data: dict) -> str:
    """A calibrated scenario mapping as readable YAML: block lists, one regime field per line in flow style."""

    def flow(v) -> str:
        if not isinstance(v, (dict, list)):
            return flow([v])[1:-1]
        return yaml.safe_dump(v, default_flow_style=True, sort_keys=False, width=10**6, allow_unicode=True).strip()

    scalar = flow
    out = [f"name: {scalar(data['name'])}", "description: >-"]
    out += ["  " + ln for ln in textwrap.wrap(data["description"], 108)]
    out.append("sources:")
    out += [f"  - {json.dumps(src)}" for src in data["sources"]]
    out.append(f"as_of: {data['as_of'].isoformat()}")
    out += [f"frequency: {data['frequency']}", f"horizon_months: {data['horizon_months']}", "assets:"]
    out += [f"  {scalar(k)}: {scalar(v)}" for k, v in data["assets"].items()]
    out.append(f"compare: {flow(data['compare'])}")
    if "macro" in data:  # a fit with drivers (simulator/fit/tvtp.py)
        out.append("macro:")
        out += [f"  {scalar(k)}: {flow(v)}" for k, v in data["macro"].items()]
    out.append("regimes:")
    for r, spec in data["regimes"].items():
        out.append(f"  {scalar(r)}:")
        out += [f"    {field}: {flow(v)}" for field, v in spec.items()]
    if "transitions" in data:
        out.append("transitions:")
        out += [f"  {scalar(r)}: {flow(row)}" for r, row in data["transitions"].items()]
    out.append(f"start: {flow(data['start'])}")
    if "uncertainty" in data:
        out.append(f"uncertainty: {flow(data['uncertainty'])}")
    return "\n".join(out) + "\n"


def to_scenario(cal: Calibration, *, name: str = "calibrated", horizon_months: int = 24, **kwargs) -> Scenario:
    """The calibrated scenario, validated, without going through a file."""
    return parse_scenario(
        scenario_dict(cal, name=name, horizon_months=horizon_months, **kwargs), source=f"<calibrated scenario {name}>"
    )


def scenario_name(path: str | Path) -> str:
    """A scenario name from a file name: its stem with anything but letters, digits, '-', '_' made '-'."""
    stem = Path(path).stem
    name = "".join(ch if (ch.isalnum() and ch.isascii()) or ch in "-_" else "-" for ch in stem).strip("-")
    return name if name and NAME_RE.match(name) else "calibrated"


def _day(x) -> str:
    return str(pd.Timestamp(x).date())


__all__ = [
    "Calibration",
    "DataError",
    "FitError",
    "MSFit",
    "MSParams",
    "Posterior",
    "StandardErrors",
    "calibrate",
    "expected_duration_months",
    "filter_probabilities",
    "fit_ms",
    "forward_backward",
    "loglikelihood",
    "n_free_params",
    "regime_names",
    "scenario_dict",
    "scenario_name",
    "scenario_text",
    "start_probabilities",
    "to_scenario",
]
