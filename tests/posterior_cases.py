"""Shared helpers of the posterior tests: synthetic data from known parameters and the interval-coverage
count (imported by tests/test_posterior.py and benchmarks/posterior_coverage.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.fit.calibrate import MSParams, calibrate
from simulator.fit.history import log_returns
from simulator.fit.posterior import sample_posterior
from simulator.scenario import stationary_distribution

# A well separated K = 2 monthly model (annualised drift / vol as a scenario would say them).
TRUE_DRIFT = np.array([[-0.30, -0.20], [0.15, 0.12]])
TRUE_VOL = np.array([[0.40, 0.30], [0.16, 0.13]])
TRUE_CORR = np.array([0.8, 0.7])
TRUE_P = np.array([[0.85, 0.15], [0.04, 0.96]])


def true_params(f: int = 12) -> MSParams:
    covs = np.empty((2, 2, 2))
    for k in range(2):
        sd = TRUE_VOL[k] / np.sqrt(f)
        covs[k] = np.outer(sd, sd) * np.array([[1, TRUE_CORR[k]], [TRUE_CORR[k], 1]])
    return MSParams(TRUE_DRIFT / f, covs, TRUE_P)


def simulate_frame(params: MSParams, T: int, rng: np.random.Generator) -> pd.DataFrame:
    """T months of simple returns of the model (s_0 stationary), as ``history.read_returns`` returns them."""
    P = params.transition
    K, A = params.means.shape
    s = np.empty(T, int)
    s[0] = rng.choice(K, p=stationary_distribution(P))
    for t in range(1, T):
        s[t] = rng.choice(K, p=P[s[t - 1]])
    L = np.linalg.cholesky(params.covs)
    y = params.means[s] + np.einsum("tab,tb->ta", L[s], rng.standard_normal((T, A)))
    frame = pd.DataFrame(
        np.expm1(y), columns=["small", "large"], index=pd.date_range("1990-01-31", periods=T, freq="ME")
    )
    frame.index.name = "date"
    frame.attrs.update(source="<synthetic>", frequency="monthly")
    return frame


def covered(seed: int, T: int, draws: int, chains: int = 1) -> np.ndarray:
    """One replication: data from the true model, the posterior, and for each of drift (both assets), vol
    (first asset) and stay probability of each regime whether its central 90% interval covers the truth."""
    frame = simulate_frame(true_params(), T, np.random.default_rng(seed))
    cal = calibrate(frame, 2, n_starts=3, seed=seed, with_se=False)
    fit = sample_posterior(cal, log_returns(frame), draws=draws, chains=chains, seed=seed)
    checks = []
    for x, truth in (
        (fit.drift[..., 0], TRUE_DRIFT[:, 0]),
        (fit.vol[..., 0], TRUE_VOL[:, 0]),
        (np.diagonal(fit.transition, axis1=-2, axis2=-1), np.diag(TRUE_P)),
    ):
        lo, hi = np.quantile(x.reshape(-1, 2), [0.05, 0.95], axis=0)
        checks += list((lo <= truth) & (truth <= hi))
    return np.array(checks)


# A K = 2 model whose odds of leaving the calm regime rise with a driver (logits per unit of the driver the
# month before, reference: staying), for the posterior with drivers.
TRUE_COEF = np.array([[[0.0, 0.0], [-2.0, 0.0]], [[-3.5, 1.5], [0.0, 0.0]]])  # [K, K, 1 + 1]: bear, bull


def simulate_driver_data(T: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """T months of simple returns of the model of ``true_params`` with the transitions of ``TRUE_COEF`` driven
    by an AR(1) ``credit_spread`` (pp), and the macro frame (``tvtp.read_macro``'s form) that holds it."""
    from simulator.fit.tvtp import matrices

    params = true_params()
    x = np.empty(T + 1)
    x[0] = 1.0
    for t in range(1, T + 1):
        x[t] = 1.0 + 0.9 * (x[t - 1] - 1.0) + 0.25 * rng.standard_normal()
    P = matrices(TRUE_COEF, x[:T, None])  # row t: the move into month t, from the driver of month t-1
    s = np.empty(T, int)
    s[0] = 1
    for t in range(1, T):
        s[t] = rng.choice(2, p=P[t, s[t - 1]])
    L = np.linalg.cholesky(params.covs)
    y = params.means[s] + np.einsum("tab,tb->ta", L[s], rng.standard_normal((T, 2)))
    frame = pd.DataFrame(
        np.expm1(y), columns=["small", "large"], index=pd.date_range("1990-02-28", periods=T, freq="ME")
    )
    frame.index.name = "date"
    frame.attrs.update(source="<synthetic>", frequency="monthly")
    macro = pd.DataFrame({"credit_spread": x}, index=pd.period_range("1990-01", periods=T + 1, freq="M"))
    macro.attrs.update(source="<synthetic macro>")
    return frame, macro
