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
