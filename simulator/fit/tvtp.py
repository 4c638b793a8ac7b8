"""Calibration with driver-dependent transitions (TVTP): the K-regime model of ``calibrate`` whose monthly
transition probabilities are multinomial logits of macro drivers (credit spread, T-bill rate, ...).

Model (docs/drivers.md, "Fitting"): log returns y_t | s_t = k ~ N(mu_k, Sigma_k) as in ``calibrate``; the move
into month t (t >= 1) uses the drivers of month t-1 (lag one month): for regime i and every destination j != i,
eta_ij(t) = a_ij + sum_d b_ijd x_d(t-1), eta_ii = 0 (the reference is staying) and
P_ij(t) = exp(eta_ij) / sum_l exp(eta_il). s_0 is drawn from the stationary law of the matrix of the move into
month 0 (it uses the drivers of the month before the sample), as statsmodels' ``MarkovRegression(...,
exog_tvtp=...)`` does with its default steady-state initialisation, so at zero slopes the model is exactly the
constant-matrix one and the likelihood-ratio test against it is a nested test with K (K - 1) D degrees of
freedom.

Fit: direct maximisation of the exact log-likelihood (Hamilton's scaled forward filter as one jitted scan over
the months, gradient by JAX) by BFGS from several starts, the first of them the
constant-matrix fit with zero slopes, then Newton steps on the observed information (central differences of
the JAX gradient), which also gives the standard errors (delta method for the reported parameters). The
returns are standardised per asset and the drivers centred and scaled before fitting; results are mapped
back (coefficients per unit of the driver: per percentage point for spreads and rates).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..errors import CapsimError
from .calibrate import GRAD_TOL, Calibration, FitError, MSParams, calibrate, regime_names
from .history import DataError, check_enough_rows, log_returns, provenance

US_MACRO_FILE = "us_macro_monthly.csv"
ALIASES = {"tbill": "TB3MS", "fedfunds": "FEDFUNDS", "gs10": "GS10"}  # driver name -> column of the macro file
UNITS = {"credit_spread": "pp", "term_spread": "pp", "TB3MS": "%", "FEDFUNDS": "%", "GS10": "%"}
QUANTILES = (0.1, 0.5, 0.9)
N_STARTS = 4
NEWTON_STEPS = 5


# --------------------------------------------------------------------------------------------
# Macro data


def us_macro_path() -> Path:
    """Path of the shipped monthly US macro series (FRED; see scripts/build_macro_data.py)."""
    return Path(str(resources.files("simulator") / "data" / US_MACRO_FILE))


def read_macro(path: str | Path | None = None) -> pd.DataFrame:
    """A macro CSV (``date`` column of month ends, one column per series, percent or pp; empty = missing) as
    a float frame indexed by monthly periods; ``attrs``: ``source``, ``provenance`` (its ``# key: value``
    lines). Raises ``DataError`` naming the file and line."""
    path = Path(path) if path is not None else us_macro_path()
    src = str(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise DataError(src, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(src, f"cannot read the file: {exc}") from None
    n_comments = next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines))
    body = lines[n_comments:]
    if not body or "date" not in [c.strip().lower() for c in body[0].split(",")]:
        raise DataError(src, [(f"line {n_comments + 1}", "expected a header line: date,<series>,...")])
    header = [c.strip() for c in body[0].split(",")]
    problems, index, rows = [], [], []
    dcol = [c.lower() for c in header].index("date")
    for n, line in enumerate(body[1:], start=n_comments + 2):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(header):
            problems.append((f"line {n}", f"{len(cells)} fields, the header has {len(header)}"))
            continue
        try:
            index.append(pd.Period(cells[dcol][:7], freq="M"))
        except ValueError:
            problems.append((f"line {n}", f"date {cells[dcol]!r} is not YYYY-MM-DD or YYYY-MM"))
            continue
        row = []
        for c, cell in enumerate(cells):
            if c == dcol:
                continue
            try:
                row.append(float(cell) if cell else np.nan)
            except ValueError:
                problems.append((f"line {n}, column {header[c]!r}", f"{cell!r} is not a number"))
                row.append(np.nan)
        rows.append(row)
    if not problems and (len(set(index)) != len(index) or index != sorted(index)):
        problems.append(("date", "months out of order or repeated"))
    if problems:
        raise DataError(src, problems)
    frame = pd.DataFrame(rows, index=pd.PeriodIndex(index, freq="M"), columns=[c for c in header if c != header[dcol]])
    if np.any(~np.isfinite(frame.to_numpy()) & ~np.isnan(frame.to_numpy())):
        raise DataError(src, "a value is infinite")
    frame.attrs.update(source=src, provenance=provenance(lines[:n_comments]))
    return frame


def driver_column(name: str, macro: pd.DataFrame) -> str:
    """The macro file's column for a driver name (``tbill`` -> TB3MS; otherwise the name, any case)."""
    want = ALIASES.get(name, name)
    for c in macro.columns:
        if c.lower() == want.lower():
            return c
    known = sorted(set(macro.columns) | {a for a, c in ALIASES.items() if c in macro.columns})
    raise DataError(macro.attrs.get("source", "<macro>"), f"no driver {name!r}; the file has {known}")


def lagged_drivers(macro: pd.DataFrame, names: list[str], dates) -> np.ndarray:
    """[T, D] drivers of the month before each date (lag one month: the move into month t uses month t-1).
    Raises ``DataError`` naming the driver and the first months that have no value."""
    months = pd.PeriodIndex(pd.DatetimeIndex(dates), freq="M") - 1
    out = np.empty((len(months), len(names)))
    for d, name in enumerate(names):
        col = macro[driver_column(name, macro)].reindex(months)
        missing = col.index[col.isna()]
        if len(missing):
            raise DataError(
                macro.attrs.get("source", "<macro>"),
                f"driver {name!r} has no value for {len(missing)} month(s) the fit needs (the month before each "
                f"return), first {missing[0]}; cut the sample with --start-date",
            )
        out[:, d] = col.to_numpy()
    return out


def driver_span(macro: pd.DataFrame, names: list[str]) -> tuple[pd.Period, pd.Period]:
    """First and last month at which every driver has a value."""
    cols = [driver_column(n, macro) for n in names]
    ok = macro[cols].notna().all(axis=1)
    if not ok.any():
        raise DataError(macro.attrs.get("source", "<macro>"), f"no month has every driver of {names}")
    first = ok.idxmax()
    return first, ok[::-1].idxmax()


# --------------------------------------------------------------------------------------------
# Link and likelihood (JAX)


def transition_matrices(coef, X):
    """[..., T, K, K] monthly matrices from capsim coefficients ``coef`` [..., K, K, 1 + D] (row i: logits of
    leaving i for each j, [intercept, slopes]; the diagonal is ignored: staying is the reference) and
    drivers ``X`` [..., T, D] (the values each move uses: month t-1 for the move into month t)."""
    import jax
    import jax.numpy as jnp

    eta = coef[..., None, :, :, 0] + jnp.einsum("...kjd,...td->...tkj", coef[..., 1:], X)
    K = coef.shape[-2]
    eta = jnp.where(jnp.eye(K, dtype=bool), 0.0, eta)
    return jax.nn.softmax(eta, axis=-1)


def _stationary(P):
    """Stationary law of a positive K x K matrix (closed form for K = 2; a linear solve otherwise)."""
    import jax.numpy as jnp

    K = P.shape[-1]
    if K == 2:
        return jnp.stack([P[1, 0], P[0, 1]]) / (P[0, 1] + P[1, 0])
    return jnp.linalg.solve((jnp.eye(K) - P + 1.0).T, jnp.ones(K))


def _selectors(K: int, A: int):
    """One-hot tensors that place the Cholesky entries [m] in [A, A] and the off-diagonal logit rows [K - 1]
    in [K] (so that ``_unpack`` is the same code under numpy and JAX)."""
    r, c = np.tril_indices(A)
    E = np.zeros((len(r), A, A))
    E[np.arange(len(r)), r, c] = 1.0
    S = np.zeros((K, K - 1, K))
    for i in range(K):
        S[i, np.arange(K - 1), [j for j in range(K) if j != i]] = 1.0
    return (r == c), E, S


def _unpack(theta, K: int, A: int, D: int, xp=np):
    """(means [K, A], Cholesky factors [K, A, A], coef [K, K, 1 + D]) from the parameter vector; ``xp`` is
    numpy or jax.numpy."""
    diag, E, S = _selectors(K, A)
    m = A * (A + 1) // 2
    means = theta[: K * A].reshape(K, A)
    pos = K * A
    v = theta[pos : pos + K * m].reshape(K, m)
    v = xp.where(diag, xp.exp(v), v)
    Ls = xp.einsum("km,mab->kab", v, E)
    off = theta[pos + K * m :].reshape(K, K - 1, 1 + D)
    coef = xp.einsum("ijd,ijk->ikd", off, S)
    return means, Ls, coef


def _forward(theta, y, X, K: int, A: int, D: int):
    """JAX: (log-likelihood, [T, K] filtered probabilities) of standardised returns ``y`` [T, A] with drivers
    ``X`` [T, D] (row t: the drivers the move into month t uses)."""
    import jax
    import jax.numpy as jnp

    means, Ls, coef = _unpack(theta, K, A, D, jnp)
    d = y[:, None, :] - means[None]  # [T, K, A]
    z = jax.scipy.linalg.solve_triangular(jnp.broadcast_to(Ls, (len(y), K, A, A)), d[..., None], lower=True)[..., 0]
    logdet = jnp.log(jnp.diagonal(Ls, axis1=1, axis2=2)).sum(-1)
    logb = -0.5 * (A * np.log(2 * np.pi) + (z * z).sum(-1)) - logdet  # [T, K]
    P = transition_matrices(coef, X)  # [T, K, K]
    shift = logb.max(axis=1)
    b = jnp.exp(logb - shift[:, None])  # scaled per month

    def step(p, Pb):  # Hamilton's filter: predict, weigh by the emission density, normalise
        Pt, bt = Pb
        a = (p @ Pt) * bt
        c = a.sum()
        return a / c, (a / c, jnp.log(c))

    a0 = _stationary(P[0]) * b[0]
    p0 = a0 / a0.sum()
    _, (filt, logc) = jax.lax.scan(step, p0, (P[1:], b[1:]))
    loglik = jnp.log(a0.sum()) + logc.sum() + shift.sum()
    return loglik, jnp.concatenate([p0[None], filt])


COMPILER_OPTIONS = {"xla_llvm_disable_expensive_passes": True}  # halves the compile, same run time (CPU)


@functools.cache
def _value_grad_fn(K: int, A: int, D: int, T: int):
    """Compiled (log-likelihood, filtered), gradient of ``_forward`` in theta, float64; once per shape."""
    import jax

    n = K * A + K * A * (A + 1) // 2 + K * (K - 1) * (1 + D)
    f = jax.value_and_grad(lambda th, y, X: _forward(th, y, X, K, A, D), has_aux=True)
    spec = [jax.ShapeDtypeStruct(shape, np.float64) for shape in [(n,), (T, A), (T, D)]]
    with jax.enable_x64(True):
        return jax.jit(f).lower(*spec).compile(compiler_options=COMPILER_OPTIONS)


class _Objective:
    """Log-likelihood and gradient (JAX, float64) for one standardised data set."""

    def __init__(self, y: np.ndarray, X: np.ndarray, K: int):
        self.y, self.X, self.K = y, X, K
        self._vg = _value_grad_fn(K, y.shape[1], X.shape[1], len(y))
        self.n_evals = 0

    def _eval(self, theta: np.ndarray):
        import jax

        self.n_evals += 1
        with jax.enable_x64(True):
            (v, filt), g = self._vg(np.asarray(theta, float), self.y, self.X)
        return float(v), np.asarray(g, float), filt

    def value_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        return self._eval(theta)[:2]

    def filtered(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(self._eval(theta)[2])

    def hessian(self, theta: np.ndarray, h: float = 1e-5) -> np.ndarray:
        """Central differences of the JAX gradient, symmetrised."""
        n = len(theta)
        H = np.empty((n, n))
        for i in range(n):
            e = np.zeros(n)
            e[i] = h
            H[:, i] = (self.value_grad(theta + e)[1] - self.value_grad(theta - e)[1]) / (2 * h)
        return 0.5 * (H + H.T)


def pack(means: np.ndarray, covs: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Parameter vector (standardised units): means, Cholesky factors (log diagonal), off-diagonal coef rows."""
    K, A = means.shape
    r, c = np.tril_indices(A)
    parts = [means.ravel()]
    for k in range(K):
        L = np.linalg.cholesky(covs[k])
        v = L[r, c].copy()
        v[r == c] = np.log(v[r == c])
        parts.append(v)
    parts += [np.delete(coef[i], i, axis=0).ravel() for i in range(K)]
    return np.concatenate(parts)


def unpack(theta: np.ndarray, K: int, A: int, D: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(means, covs, coef) as numpy arrays from ``pack``'s vector."""
    means, Ls, coef = _unpack(np.asarray(theta, float), K, A, D)
    return means, Ls @ np.swapaxes(Ls, 1, 2), coef


def coef_from_matrix(P: np.ndarray, D: int) -> np.ndarray:
    """[K, K, 1 + D] coefficients of a constant matrix: intercepts log(P_ij / P_ii), zero slopes."""
    K = len(P)
    coef = np.zeros((K, K, 1 + D))
    Pc = np.clip(P, 1e-12, None)
    coef[..., 0] = np.log(Pc / np.diag(Pc)[:, None])
    coef[np.arange(K), np.arange(K), 0] = 0.0
    return coef


def rescale_coef(coef: np.ndarray, x_loc: np.ndarray, x_scale: np.ndarray) -> np.ndarray:
    """Coefficients on standardised drivers (x - loc) / scale -> per unit of the raw drivers."""
    out = coef.copy()
    out[..., 1:] = coef[..., 1:] / x_scale
    out[..., 0] = coef[..., 0] - (coef[..., 1:] * x_loc / x_scale).sum(-1)
    return out


def standardise_coef(coef: np.ndarray, x_loc: np.ndarray, x_scale: np.ndarray) -> np.ndarray:
    """Inverse of ``rescale_coef``."""
    out = coef.copy()
    out[..., 1:] = coef[..., 1:] * x_scale
    out[..., 0] = coef[..., 0] + (coef[..., 1:] * x_loc).sum(-1)
    return out


# --------------------------------------------------------------------------------------------
# The fit


class TVTPFit(NamedTuple):
    """A maximum-likelihood fit with driver-dependent transitions, in data units (per step = per month)."""

    means: np.ndarray  # [K, A] per-month mean log return
    covs: np.ndarray  # [K, A, A]
    coef: np.ndarray  # [K, K, 1 + D] logits of leaving row i for column j (diagonal 0): [intercept, per unit]
    loglik: float
    n_obs: int
    n_params: int
    filtered: np.ndarray  # [T, K]
    se_means: np.ndarray  # [K, A]
    se_sds: np.ndarray  # [K, A]
    se_coef: np.ndarray  # [K, K, 1 + D], NaN on the diagonal
    grad_max: float  # largest |d loglik / d theta| per observation (standardised units)
    start_logliks: np.ndarray  # [n_starts] after BFGS, before Newton
    best_start: int


def fit_tvtp(
    y: np.ndarray,
    X: np.ndarray,
    n_regimes: int,
    start: MSParams,
    *,
    n_starts: int = N_STARTS,
    seed: int = 0,
    with_se: bool = True,
    source: str = "<data>",
) -> TVTPFit:
    """ML fit of the TVTP model to log returns ``y`` [T, A] (per month) with drivers ``X`` [T, D] (row t: what
    the move into month t uses, i.e. month t-1). ``start``: a constant-matrix fit (data units), the first
    start with zero slopes; the others add random slopes (sd 0.5 per driver sd) to it. Raises ``FitError``
    when the best start has not converged."""
    y = np.asarray(y, float).reshape(len(y), -1)
    X = np.asarray(X, float).reshape(len(X), -1)
    T, A = y.shape
    D = X.shape[1]
    K = int(n_regimes)
    if K < 2:
        raise CapsimError("driver-dependent transitions need at least 2 regimes")
    loc, scale = y.mean(0), y.std(0)
    x_loc, x_scale = X.mean(0), X.std(0)
    if np.any(x_scale <= 0):
        raise FitError(source, "a driver is constant over the sample: it cannot move the transition odds")
    z, xs = (y - loc) / scale, (X - x_loc) / x_scale
    obj = _Objective(z, xs, K)
    means0 = (start.means - loc) / scale
    covs0 = start.covs / np.outer(scale, scale)
    coef0 = coef_from_matrix(start.transition, D)
    rng = np.random.default_rng(seed)

    def f(th):
        v, g = obj.value_grad(th)
        if not np.isfinite(v) or not np.all(np.isfinite(g)):
            return np.inf, np.zeros_like(th)
        return -v / T, -g / T

    results = []
    for s in range(n_starts):
        c = coef0.copy()
        if s:
            c[..., 1:] += rng.normal(scale=0.5, size=c[..., 1:].shape)
            c[np.arange(K), np.arange(K)] = 0.0
        th0 = pack(means0, covs0, c)
        with np.errstate(over="ignore", invalid="ignore"):
            res = optimize.minimize(f, th0, jac=True, method="BFGS", options={"maxiter": 2000, "gtol": 1e-7})
        results.append(res.x if np.isfinite(res.fun) else th0)
    lls = np.array([obj.value_grad(th)[0] for th in results])
    lls = np.where(np.isfinite(lls), lls, -np.inf)
    best = int(np.argmax(lls))
    theta = results[best]
    ll, g = obj.value_grad(theta)
    H = None
    for _ in range(NEWTON_STEPS):  # Newton steps on the observed information: converge to ~1e-10
        H = obj.hessian(theta)
        try:
            if np.linalg.eigvalsh(-H).min() <= 0:
                break
            step = np.linalg.solve(-H, g)
        except np.linalg.LinAlgError:
            break
        ll_new, g_new = obj.value_grad(theta + step)
        if not ll_new >= ll - 1e-12 * abs(ll):
            break
        theta, ll, g = theta + step, ll_new, g_new
        if np.abs(g / T).max() < 1e-12:
            break
    grad_max = float(np.abs(g / T).max())
    if not grad_max < GRAD_TOL:
        raise FitError(
            source,
            f"the {K}-regime fit with drivers did not converge (largest gradient per observation {grad_max:.2g} "
            f"> {GRAD_TOL:g})",
        )

    def natural(th):
        means, covs, coef = unpack(th, K, A, D)
        sd = np.sqrt(np.diagonal(covs, axis1=1, axis2=2))
        return np.concatenate(
            [(loc + means * scale).ravel(), (sd * scale).ravel(), rescale_coef(coef, x_loc, x_scale).ravel()]
        )

    n_nat = 2 * K * A + K * K * (1 + D)
    se = np.full(n_nat, np.nan)
    if with_se:
        H = obj.hessian(theta)
        if np.linalg.eigvalsh(-H).min() > 0:
            cov = np.linalg.inv(-H)
            J = np.empty((n_nat, len(theta)))
            for i in range(len(theta)):
                e = np.zeros(len(theta))
                e[i] = 1e-6
                J[:, i] = (natural(theta + e) - natural(theta - e)) / 2e-6
            se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", J, cov, J), 0, None))
    means, covs, coef = unpack(theta, K, A, D)
    filtered = obj.filtered(theta)
    order = np.argsort((loc + means * scale).mean(1), kind="stable")
    coef = rescale_coef(coef, x_loc, x_scale)
    se_coef = se[2 * K * A :].reshape(K, K, 1 + D)
    se_coef[np.arange(K), np.arange(K)] = np.nan
    ix = np.ix_(order, order)
    return TVTPFit(
        means=(loc + means * scale)[order],
        covs=(covs * np.outer(scale, scale))[order],
        coef=coef[ix],
        loglik=ll - T * float(np.log(scale).sum()),
        n_obs=T,
        n_params=len(theta),
        filtered=filtered[:, order],
        se_means=se[: K * A].reshape(K, A)[order],
        se_sds=se[K * A : 2 * K * A].reshape(K, A)[order],
        se_coef=se_coef[ix],
        grad_max=grad_max,
        start_logliks=lls - T * float(np.log(scale).sum()),
        best_start=best,
    )


def matrices(coef: np.ndarray, X: np.ndarray) -> np.ndarray:
    """numpy [T, K, K] monthly matrices from data-unit coefficients and drivers [T, D]."""
    import jax

    with jax.enable_x64(True):
        return np.asarray(transition_matrices(np.asarray(coef, float), np.atleast_2d(np.asarray(X, float))))


# --------------------------------------------------------------------------------------------
# Calibration with drivers: data, constant fit on the same sample, LR test, stay probabilities


class DriverCalibration(NamedTuple):
    """A TVTP fit beside the constant-matrix fit on the same sample."""

    constant: Calibration
    fit: TVTPFit
    drivers: tuple[str, ...]
    X: np.ndarray  # [T, D] lagged drivers used by the fit
    last_values: dict  # driver -> (period, value): the latest observation in the macro file
    last_month_values: np.ndarray  # [D] the drivers at the last return month (they move it into the next month)
    macro_source: str

    @property
    def regimes(self) -> tuple[str, ...]:
        return self.constant.regimes

    @property
    def lr(self) -> float:
        return 2.0 * (self.fit.loglik - self.constant.fit.loglik)

    @property
    def df(self) -> int:
        K = len(self.regimes)
        return K * (K - 1) * len(self.drivers)

    @property
    def lr_pvalue(self) -> float:
        return float(stats.chi2.sf(max(self.lr, 0.0), self.df))

    def stay_table(self) -> pd.DataFrame:
        """Monthly stay probabilities of each regime with one driver at its 10/50/90% sample quantile (the
        others at their medians): rows driver x quantile."""
        med = np.median(self.X, axis=0)
        rows = []
        for d, name in enumerate(self.drivers):
            for q in QUANTILES:
                x = med.copy()
                x[d] = np.quantile(self.X[:, d], q)
                P = matrices(self.fit.coef, x[None])[0]
                rows.append(
                    {"driver": name, "quantile": q, "value": x[d]}
                    | {f"stay_{r}": P[k, k] for k, r in enumerate(self.regimes)}
                )
        return pd.DataFrame(rows)

    def start(self) -> np.ndarray:
        """Law of the first simulated month's regime: filtered at the last month, moved on by the matrix of the
        drivers at that month."""
        P = matrices(self.fit.coef, self.last_month_values[None])[0]
        return self.fit.filtered[-1] @ P


def calibrate_drivers(
    frame: pd.DataFrame,
    n_regimes: int,
    drivers: list[str],
    macro: pd.DataFrame | None = None,
    *,
    n_starts: int = 10,
    seed: int = 0,
    tvtp_starts: int = N_STARTS,
    with_se: bool = True,
) -> DriverCalibration:
    """Constant-matrix and driver fits of a monthly returns frame on the months where every driver is known
    the month before (the sample is cut to them)."""
    macro = read_macro() if macro is None else macro
    msrc = macro.attrs.get("source", "<macro>")
    if Path(msrc) == us_macro_path():
        msrc = f"simulator/data/{US_MACRO_FILE} (shipped)"
    src = frame.attrs.get("source", "<data>")
    drivers = list(drivers)
    if not drivers:
        raise CapsimError("--drivers: name at least one driver, e.g. --drivers credit_spread,tbill")
    if len(set(drivers)) != len(drivers):
        raise CapsimError(f"--drivers: a driver named twice: {drivers}")
    if frame.attrs.get("frequency", "monthly") != "monthly":
        raise DataError(src, "driver-dependent transitions are fitted to monthly data (the drivers are monthly)")
    first, last = driver_span(macro, drivers)
    months = pd.PeriodIndex(pd.DatetimeIndex(frame.index), freq="M")
    keep = (months - 1 >= first) & (months - 1 <= last)
    cut = frame.loc[keep]
    cut.attrs.update(frame.attrs)
    K, A, D = int(n_regimes), frame.shape[1], len(drivers)
    n_par = K * A + K * A * (A + 1) // 2 + K * (K - 1) * (1 + D)
    check_enough_rows(cut, 5 * n_par, f"fit {K} regimes with {D} driver(s) ({n_par} free parameters, 5 rows each)")
    X = lagged_drivers(macro, drivers, cut.index)
    const = calibrate(cut, K, n_starts=n_starts, seed=seed)
    fit = fit_tvtp(
        log_returns(cut), X, K, const.fit.params, n_starts=tvtp_starts, seed=seed, with_se=with_se, source=src
    )
    last_month = pd.Period(cut.index[-1], freq="M")
    lastvals = {}
    for n in drivers:
        col = macro[driver_column(n, macro)].dropna()
        lastvals[n] = (col.index[-1], float(col.iloc[-1]))
    at_last = np.array([macro[driver_column(n, macro)].get(last_month, np.nan) for n in drivers])
    if not np.all(np.isfinite(at_last)):
        raise DataError(msrc, f"the drivers have no value at the last return month {last_month}")
    return DriverCalibration(const, fit, tuple(drivers), X, lastvals, at_last, msrc)


__all__ = [
    "DriverCalibration",
    "TVTPFit",
    "calibrate_drivers",
    "driver_column",
    "fit_tvtp",
    "lagged_drivers",
    "matrices",
    "read_macro",
    "regime_names",
    "transition_matrices",
    "us_macro_path",
]


# --------------------------------------------------------------------------------------------
# statsmodels' parametrisation (reference: the last regime) <-> capsim's (reference: staying)


def from_statsmodels(b: np.ndarray) -> np.ndarray:
    """statsmodels ``exog_tvtp`` coefficients ``b`` [K, K - 1, 1 + D] (b[i, j]: logit of moving i -> j against
    i -> K-1) to capsim's [K, K, 1 + D]: beta_ij = b_ij - b_ii with b_i,K-1 = 0."""
    K = b.shape[0]
    full = np.concatenate([b, np.zeros((K, 1, b.shape[2]))], axis=1)
    return full - full[np.arange(K), np.arange(K)][:, None, :]


def to_statsmodels(coef: np.ndarray) -> np.ndarray:
    """capsim coefficients [K, K, 1 + D] to statsmodels' [K, K - 1, 1 + D]: b_ij = beta_ij - beta_i,K-1."""
    K = coef.shape[0]
    return coef[:, : K - 1, :] - coef[:, K - 1 : K, :]


# --------------------------------------------------------------------------------------------
# Printout and scenario file


def _fmt(v: float, se: float) -> str:
    return f"{v:.4f} ({se:.4f})" if np.isfinite(se) else f"{v:.4f} (n/a)"


def fit_lines(dc: DriverCalibration) -> list[str]:
    """The fit table: constant vs drivers (log-likelihood, LR test), coefficients with SEs, stay probabilities
    at the drivers' 10/50/90% quantiles, the drivers' last values and the filtered start."""
    fit, const = dc.fit, dc.constant.fit
    names = dc.regimes
    K = len(names)
    unit = lambda n: UNITS.get(ALIASES.get(n, n), "unit")  # noqa: E731
    lines = [
        f"drivers: {', '.join(f'{n} ({ALIASES.get(n, n)}, per {unit(n)})' for n in dc.drivers)}"
        f" from {dc.macro_source}; the move into month t uses month t-1",
        "transition logits (reference: staying): eta_ij = intercept + sum_d coef_d x_d(t-1); "
        "P_ij = exp(eta_ij) / (1 + sum_l exp(eta_il))",
        f"constant matrix: log-likelihood {const.loglik:.4f} ({const.n_params} parameters)",
        f"with drivers:    log-likelihood {fit.loglik:.4f} ({fit.n_params} parameters); "
        f"starts {len(fit.start_logliks)} (the first: the constant fit, zero slopes), "
        f"{int(np.sum(fit.start_logliks >= fit.start_logliks.max() - 0.01))} within 0.01 of the best",
        f"likelihood-ratio test: LR = {dc.lr:.3f} on {dc.df} df, p = {dc.lr_pvalue:.4g}",
        "",
        "logit of leaving (se)   " + "   ".join(f"{h:>20}" for h in ("intercept", *dc.drivers)),
    ]
    for i in range(K):
        for j in range(K):
            if i != j:
                cells = [_fmt(fit.coef[i, j, d], fit.se_coef[i, j, d]) for d in range(1 + len(dc.drivers))]
                lines.append(f"{names[i] + ' -> ' + names[j]:<22}   " + "   ".join(f"{c:>20}" for c in cells))
    lines += ["", "monthly stay probability at driver quantiles (other drivers at their medians):"]
    tab = dc.stay_table()
    lines.append("driver           quantile    value   " + "   ".join(f"stay {r:<8}" for r in names))
    for row in tab.itertuples(index=False):
        stays = [getattr(row, f"stay_{r}") for r in names]
        lines.append(
            f"{row.driver:<16} {row.quantile:>7.0%} {row.value:>8.3f}   " + "   ".join(f"{s:>13.4f}" for s in stays)
        )
    P_const = const.params.transition
    lines.append(
        "constant matrix stay probabilities: " + ", ".join(f"{r} {P_const[k, k]:.4f}" for k, r in enumerate(names))
    )
    lines += [
        "",
        "macro paths: flat at each driver's last observed value ("
        + ", ".join(f"{n} {v:g} in {p}" for n, (p, v) in dc.last_values.items())
        + ")",
        "filtered regime probabilities at the last month: "
        + ", ".join(f"{r} {fit.filtered[-1, k]:.4f}" for k, r in enumerate(names))
        + "; `start` = these moved one month on by the matrix of the drivers at that month ("
        + ", ".join(f"{n} {v:g}" for n, v in zip(dc.drivers, dc.last_month_values))
        + ")",
    ]
    return lines


def scenario_dict(dc: DriverCalibration, *, name: str, horizon_months: int = 24, **kwargs) -> dict:
    """The driver scenario (docs/drivers.md) as a mapping: the regimes of the fit, each with its ``drivers``
    block, ``macro`` flat at the drivers' last values, ``start`` filtered at the last month."""
    from .calibrate import scenario_dict as base_dict

    fit, const = dc.fit, dc.constant
    P0 = matrices(fit.coef, dc.X[-1:])[0]
    cal = const._replace(fit=const.fit._replace(params=MSParams(fit.means, fit.covs, P0)))
    data = base_dict(
        cal,
        name=name,
        horizon_months=horizon_months,
        start=dc.start(),
        description=kwargs.pop("description", None) or description(dc),
        sources=kwargs.pop("sources", None) or sources(dc),
        **kwargs,
    )
    del data["transitions"]
    names = dc.regimes
    for i, r in enumerate(names):
        data["regimes"][r]["drivers"] = {
            names[j]: {"intercept": round(float(fit.coef[i, j, 0]), 6)}
            | {n: round(float(fit.coef[i, j, 1 + d]), 6) for d, n in enumerate(dc.drivers)}
            for j in range(len(names))
            if j != i
        }
    out = {}
    for key, value in data.items():  # ``macro`` goes before ``regimes``
        if key == "regimes":
            out["macro"] = {n: {0: round(v, 6)} for n, (_, v) in dc.last_values.items()}
        out[key] = value
    return out


def description(dc: DriverCalibration) -> str:
    cal = dc.constant
    K = len(dc.regimes)
    return (
        f"{K}-regime Markov-switching Gaussian model of the log returns of {', '.join(cal.assets)} whose monthly "
        f"transition probabilities are logits of {', '.join(dc.drivers)} (the month before), fitted by maximum "
        f"likelihood to monthly data {_day(cal.dates[0])} .. {_day(cal.dates[-1])}; regimes ordered by mean "
        "return; drivers flat at their last observed values; started from the regime probabilities filtered at "
        "the last month."
    )


def sources(dc: DriverCalibration) -> list[str]:
    from .. import __version__

    cal, fit = dc.constant, dc.fit
    return [
        f"data: {cal.source} (columns {', '.join(cal.assets)}; simple returns -> log returns)"
        + (f"; {cal.provenance}" if cal.provenance else ""),
        f"drivers: {dc.macro_source} ({', '.join(dc.drivers)}, lagged one month)",
        f"sample: {_day(cal.dates[0])} .. {_day(cal.dates[-1])}, {fit.n_obs} monthly observations",
        f"method: capsim calibrate --drivers {__version__}, maximum likelihood (JAX gradient, BFGS from "
        f"{len(fit.start_logliks)} starts, Newton polish); log-likelihood {fit.loglik:.4f} against "
        f"{cal.fit.loglik:.4f} with a constant matrix, LR {dc.lr:.2f} on {dc.df} df (p = {dc.lr_pvalue:.3g})",
    ]


def _day(x) -> str:
    return str(pd.Timestamp(x).date())


def scenario_text(
    dc: DriverCalibration,
    *,
    name: str,
    horizon_months: int = 24,
    command: str | None = None,
    schema: str | None = None,
    notes: list[str] | None = None,
    **kwargs,
) -> str:
    """The driver scenario file's text: the constant fit's comment block, the driver fit's table, ``notes`` (lines
    added to the comments: the posterior's), the YAML; validated by ``parse_scenario`` (raises ``ScenarioError``:
    nothing is written)."""
    import yaml

    from ..scenario import parse_scenario
    from .calibrate import comment_block, render_yaml

    data = scenario_dict(dc, name=name, horizon_months=horizon_months, **kwargs)
    head = f"# yaml-language-server: $schema={schema}\n" if schema else ""
    const_block = comment_block(dc.constant, command).replace(
        "# Calibrated by", "# Constant-matrix fit on the same sample, then the fit with drivers below. Calibrated by", 1
    )
    comments = ["", *fit_lines(dc), *(["", *notes] if notes else [])]
    text = head + const_block + "".join(f"# {ln}".rstrip() + "\n" for ln in comments) + render_yaml(data)
    if yaml.safe_load(text) != data:
        raise AssertionError("scenario rendering does not round-trip; please report this")
    parse_scenario(yaml.safe_load(text), source=f"<calibrated scenario {name}>")
    return text
