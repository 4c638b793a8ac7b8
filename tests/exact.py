"""Exact reference for the capsim model (docs/model.md), independent of the engine.

Pure numpy/scipy; it never imports ``simulator``.  It reads the *scenario dict*
(the YAML structure of docs/scenarios.md) itself and builds everything from it.

Scope: Gaussian regimes (no ``tails``) whose return parameters (drift, vol, corr)
do not vary with phase.  Phases may override ``duration_months`` / ``next`` (or a
``transitions`` matrix) and therefore the chain.  Regimes with ``drivers`` (docs/drivers.md)
leave by a multinomial logit of the ``macro`` paths (and ``policy_rate``, the rate path).  Any number of regimes: the
return law is a Gaussian mixture over the vector of step counts per regime,
whose exact joint pmf comes from a dynamic programme over (regime, counts).

Model facts used (docs/model.md):

* f steps per year, dt = 1/f, m = f/12 steps per month, T(h) = h*m steps.
* s_0 ~ start; the move into step t (t >= 1) uses the per-step matrix of the
  phase that contains step t; a phase window [prev until_month, until_month)
  contains step t iff its month t/m lies in it.
* durations form: P[k,k] = 1 - 1/(d_k m), P[k,j] = w_kj / (d_k m).
* drivers: the move into step t uses month n = floor(t/m)'s monthly matrix, whose row k is
  softmax(0 for staying, intercept_kj + sum_d beta_kjd x_d(n - 1) for each listed j) with the
  drivers interpolated linearly between knots, flat outside them; per step, the exits are
  divided by m and the stay takes the rest.
* step t's log return is Gaussian with mean drift_{s_t} dt + sens*(rate(t+1)-rate(t))
  and covariance vol vol' * corr * dt of regime s_t.  Summed over the first T
  steps the rate terms telescope to sens * (rate(h) - rate(0)).

Given the counts N_k = #steps in regime k among steps 0..T-1, the accumulated
log-return vector L is N(sum_k N_k mu_k + shift, sum_k N_k S_k).  With two regimes
N = N_0 and this is N(N mu0 + (T-N) mu1 + shift, N S0 + (T-N) S1).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import optimize, special, stats

FREQ = {"monthly": 12, "weekly": 52, "daily": 252}
DEFAULT_REPORT = (3, 6, 12, 24, 36, 60)


# --------------------------------------------------------------------------- #
# Scenario -> chain
# --------------------------------------------------------------------------- #
class ExactModel:
    """Exact chain and return mixture for a scenario dict."""

    def __init__(self, scenario: dict):
        self.sc = scenario
        self.f = FREQ[scenario.get("frequency", "monthly")]
        self.dt = 1.0 / self.f
        self.m = Fraction(self.f, 12)  # steps per month (exact)
        self.regimes = list(scenario["regimes"].keys())
        self.K = len(self.regimes)
        self.idx = {r: i for i, r in enumerate(self.regimes)}
        self.assets = list(scenario["assets"].keys())
        self.compare = list(scenario.get("compare", self.assets[:2]))
        self.horizon = int(scenario["horizon_months"])
        self.driven = {k: r["drivers"] for k, r in scenario["regimes"].items() if "drivers" in r}
        self.base = self._with_drivers(self._base_matrix(), 0)
        self.phases = self._phase_matrices()
        self.start = self._start()

    # ---- chain ---------------------------------------------------------------
    def _row_from_durations(self, k: str, d: float, nxt: dict) -> np.ndarray:
        row = np.zeros(self.K)
        if not nxt:  # nowhere to go (a single regime): it stays
            row[self.idx[k]] = 1.0
            return row
        leave = 1.0 / (float(d) * float(self.m))
        if not (0.0 < leave <= 1.0):
            raise ValueError(f"duration of {k} shorter than one step")
        for j, w in nxt.items():
            if j == k:
                raise ValueError(f"next of {k} points at itself")
            row[self.idx[j]] += leave * float(w)
        row[self.idx[k]] += 1.0 - leave
        return row

    def _row_from_mapping(self, mapping: dict) -> np.ndarray:
        row = np.zeros(self.K)
        for j, p in mapping.items():
            row[self.idx[j]] = float(p)
        return row

    def _base_matrix(self) -> np.ndarray:
        sc = self.sc
        P = np.zeros((self.K, self.K))
        if "transitions" in sc:
            for k in self.regimes:
                P[self.idx[k]] = self._row_from_mapping(sc["transitions"][k])
        else:
            for k, spec in sc["regimes"].items():
                if k not in self.driven:
                    P[self.idx[k]] = self._row_from_durations(k, spec["duration_months"], spec.get("next", {}))
        return P

    def driver(self, name: str, month: float) -> float:
        """A driver path's value at ``month``: linear between knots, flat outside them."""
        path = self.sc["rates"]["path"] if name == "policy_rate" else self.sc["macro"][name]
        x, y = zip(*sorted((float(k), float(v)) for k, v in path.items()))
        return float(np.interp(month, x, y))

    def _with_drivers(self, P: np.ndarray, t: int) -> np.ndarray:
        """``P`` with the driven regimes' rows of the move into step t (per step)."""
        if not self.driven:
            assert np.allclose(P.sum(1), 1.0, atol=1e-9), P
            return P
        P = P.copy()
        month = max(int(Fraction(t) / self.m) - 1, 0)  # floor(t / m) - 1: the drivers a month before
        for k, dests in self.driven.items():
            logits = {k: 0.0}
            for j, coef in dests.items():
                logits[j] = float(coef["intercept"]) + sum(
                    float(b) * self.driver(d, month) for d, b in coef.items() if d != "intercept"
                )
            names = list(logits)
            monthly = special.softmax([logits[j] for j in names])
            row = np.zeros(self.K)
            for j, p in zip(names[1:], monthly[1:]):
                row[self.idx[j]] = p / float(self.m)
            row[self.idx[k]] = 1.0 - row.sum()
            P[self.idx[k]] = row
        assert np.allclose(P.sum(1), 1.0, atol=1e-9), P
        return P

    def _phase_matrices(self):
        """List of (start_month, end_month, matrix) windows."""
        out = []
        prev = 0
        base_regs = self.sc["regimes"]
        for ph in self.sc.get("phases", []) or []:
            until = ph["until_month"]
            P = self.base.copy()
            for k, ov in (ph.get("regimes") or {}).items():
                for key in ("drift", "vol", "corr", "tails"):
                    if key in ov and ov[key] != base_regs[k].get(key):
                        raise NotImplementedError("exact reference: phase-varying return parameters")
                if "duration_months" in ov or "next" in ov:
                    d = ov.get("duration_months", base_regs[k].get("duration_months"))
                    nxt = ov.get("next", base_regs[k].get("next", {}))
                    P[self.idx[k]] = self._row_from_durations(k, d, nxt)
            for k, row in (ph.get("transitions") or {}).items():
                P[self.idx[k]] = self._row_from_mapping(row)
            out.append((prev, until, P))
            prev = until
        return out

    def step_matrix(self, t: int) -> np.ndarray:
        """Per-step matrix used for the move into step t (t >= 1)."""
        # step t's month is t/m = 12 t / f; window [a, b) contains it iff a f <= 12 t < b f
        for a, b, P in self.phases:
            if a * self.f <= 12 * t < b * self.f:
                return self._with_drivers(P, t)
        return self._with_drivers(self.base, t)

    def stationary(self) -> np.ndarray:
        P = self.base
        A = np.vstack([P.T - np.eye(self.K), np.ones(self.K)])
        b = np.zeros(self.K + 1)
        b[-1] = 1.0
        pi, *_ = np.linalg.lstsq(A, b, rcond=None)
        assert np.allclose(pi @ P, pi, atol=1e-12)
        return pi

    def _start(self) -> np.ndarray:
        st = self.sc.get("start", "stationary")
        if isinstance(st, str):
            if st == "stationary":
                return self.stationary()
            v = np.zeros(self.K)
            v[self.idx[st]] = 1.0
            return v
        v = np.zeros(self.K)
        for k, p in st.items():
            v[self.idx[k]] = float(p)
        assert abs(v.sum() - 1) < 1e-9
        return v

    def n_steps(self, h) -> int:
        T = Fraction(h) * self.m
        if T.denominator != 1:
            raise ValueError(f"{h} months is not a whole number of steps")
        return int(T)

    def marginals(self, T: int) -> np.ndarray:
        """pi_t for t = 0..T-1, shape (T, K)."""
        out = np.empty((T, self.K))
        p = self.start.copy()
        for t in range(T):
            if t > 0:
                p = p @ self.step_matrix(t)
            out[t] = p
        return out

    def occupancy(self, h) -> dict:
        """Exact expected share of steps 0..T(h)-1 spent in each regime."""
        pi = self.marginals(self.n_steps(h))
        return dict(zip(self.regimes, pi.mean(0)))

    def count_pmf(self, h, regime=None) -> np.ndarray:
        """Exact pmf of N = #steps among 0..T-1 spent in `regime` (default: the first)."""
        k = self.idx[regime] if regime is not None else 0
        T = self.n_steps(h)
        p = np.zeros((self.K, T + 1))  # p[s, c]
        p[:, 0] = self.start
        p[k] = np.roll(p[k], 1)  # step 0 counts if s_0 = k
        for t in range(1, T):
            q = self.step_matrix(t).T @ p
            q[k] = np.roll(q[k], 1)  # count <= t+1 <= T, never wraps
            p = q
        pmf = p.sum(0)
        assert abs(pmf.sum() - 1) < 1e-10
        return np.clip(pmf, 0.0, None)

    def occupancy_sd(self, h, regime) -> float:
        """Exact sd (over paths) of the share of steps spent in `regime`."""
        T = self.n_steps(h)
        pmf = self.count_pmf(h, regime)
        share = np.arange(T + 1) / T
        mean = pmf @ share
        return float(np.sqrt(max(pmf @ share**2 - mean**2, 0.0)))

    # ---- returns -------------------------------------------------------------
    def _regime_params(self, k: str):
        spec = self.sc["regimes"][k]
        if spec.get("tails") is not None:
            raise NotImplementedError("exact reference: Gaussian regimes only")
        A = len(self.assets)
        mu = np.array([float(spec["drift"][a]) for a in self.assets]) * self.dt
        vol = np.array([float(spec["vol"][a]) for a in self.assets])
        c = spec.get("corr", 0.0)
        if np.ndim(c) == 0:
            C = np.full((A, A), float(c))
            np.fill_diagonal(C, 1.0)
        else:
            C = np.asarray(c, float)
        S = np.outer(vol, vol) * C * self.dt
        return mu, S

    def rate(self, month: float) -> float:
        r = self.sc.get("rates")
        if not r:
            return 0.0
        knots = sorted((float(k), float(v)) for k, v in r["path"].items())
        x, y = zip(*knots)
        return float(np.interp(month, x, y))  # flat outside the knots

    def rate_shift(self, h) -> np.ndarray:
        r = self.sc.get("rates")
        if not r:
            return np.zeros(len(self.assets))
        sens = np.array([float(r.get("sensitivity", {}).get(a, 0.0)) for a in self.assets])
        return sens * (self.rate(h) - self.rate(0))

    def count_joint_pmf(self, h):
        """Exact joint pmf of the step counts (N_0, ..., N_{K-1}) over steps 0..T-1.

        Returns (counts, pmf): counts is an int array (J, K), rows summing to T.
        DP over (regime, N_0, ..., N_{K-2}); N_{K-1} = T - the others.
        """
        T = self.n_steps(h)
        K = self.K
        p = np.zeros((K,) + (T + 1,) * (K - 1))
        p[(slice(None),) + (0,) * (K - 1)] = self.start

        def count(arr):
            for k in range(K - 1):
                arr[k] = np.roll(arr[k], 1, axis=k)  # counts never exceed T
            return arr

        p = count(p)
        for t in range(1, T):
            p = count(np.tensordot(self.step_matrix(t).T, p, axes=(1, 0)))
        joint = p.sum(0)
        idx = np.argwhere(joint > 0)
        pmf = joint[tuple(idx.T)]
        counts = np.column_stack([idx, T - idx.sum(1)]) if K > 1 else np.full((1, 1), T)
        if K == 1:
            pmf = np.array([1.0])
        assert np.all(counts >= 0) and abs(pmf.sum() - 1) < 1e-10
        return counts, pmf

    def mixture(self, h, cutoff: float = 1e-15) -> Mixture:
        counts, pmf = self.count_joint_pmf(h)
        keep = pmf > cutoff
        counts, w = counts[keep], pmf[keep] / pmf[keep].sum()
        params = [self._regime_params(k) for k in self.regimes]
        mu = np.stack([p[0] for p in params])  # (K, A)
        S = np.stack([p[1] for p in params])  # (K, A, A)
        mean = counts @ mu + self.rate_shift(h)
        cov = np.einsum("jk,kab->jab", counts.astype(float), S)
        i, j = (self.assets.index(a) for a in self.compare)
        return Mixture(w, mean, cov, self.assets, i, j)


# --------------------------------------------------------------------------- #
# Gaussian mixture of accumulated log returns
# --------------------------------------------------------------------------- #
@dataclass
class Mixture:
    w: np.ndarray  # (J,) weights
    mean: np.ndarray  # (J, A)
    cov: np.ndarray  # (J, A, A)
    assets: list
    i: int = 0  # first of the compared pair
    j: int = 1  # second

    # -- per asset R_a = exp(L_a) - 1 ----------------------------------------
    def _ms(self, a):
        k = self.assets.index(a) if isinstance(a, str) else a
        return self.mean[:, k], np.sqrt(self.cov[:, k, k])

    def r_moment(self, a, p: int) -> float:
        """E[exp(p L_a)]."""
        m, s = self._ms(a)
        return float(self.w @ np.exp(p * m + 0.5 * p * p * s * s))

    def r_mean(self, a) -> float:
        return self.r_moment(a, 1) - 1.0

    def r_sd(self, a) -> float:
        return float(np.sqrt(self.r_moment(a, 2) - self.r_moment(a, 1) ** 2))

    def r_cdf(self, a, x) -> float:
        if x <= -1.0:
            return 0.0
        m, s = self._ms(a)
        return float(self.w @ special.ndtr((np.log1p(x) - m) / s))

    def r_pdf(self, a, x) -> float:
        if x <= -1.0:
            return 0.0
        m, s = self._ms(a)
        z = (np.log1p(x) - m) / s
        return float(self.w @ (stats.norm.pdf(z) / (s * (1.0 + x))))

    def r_quantile(self, a, q) -> float:
        m, s = self._ms(a)
        lo = np.expm1(np.min(m - 12 * s))
        hi = np.expm1(np.max(m + 12 * s))
        return optimize.brentq(lambda x: self.r_cdf(a, x) - q, lo, hi, xtol=1e-13, rtol=1e-13)

    def p_loss(self, a) -> float:
        return self.r_cdf(a, 0.0)

    # -- the compared pair ----------------------------------------------------
    def p_outperform(self) -> float:
        """P(L_i > L_j) = P(X > 0)."""
        i, j = self.i, self.j
        d = self.mean[:, i] - self.mean[:, j]
        v = self.cov[:, i, i] + self.cov[:, j, j] - 2 * self.cov[:, i, j]
        return float(self.w @ special.ndtr(d / np.sqrt(v)))

    def _mgf2(self, a: float, b: float) -> float:
        """E[exp(a L_i + b L_j)]."""
        i, j = self.i, self.j
        m = a * self.mean[:, i] + b * self.mean[:, j]
        v = a * a * self.cov[:, i, i] + 2 * a * b * self.cov[:, i, j] + b * b * self.cov[:, j, j]
        return float(self.w @ np.exp(m + 0.5 * v))

    def x_raw_moment(self, p: int) -> float:
        """E[X^p] with X = e^{L_i} - e^{L_j}."""
        return sum(special.comb(p, k, exact=True) * (-1) ** (p - k) * self._mgf2(k, p - k) for k in range(p + 1))

    def x_mean(self) -> float:
        return self.x_raw_moment(1)

    def x_var(self) -> float:
        return self.x_raw_moment(2) - self.x_raw_moment(1) ** 2

    def x_sd(self) -> float:
        return float(np.sqrt(self.x_var()))

    def x_central4(self) -> float:
        mu = self.x_mean()
        e2, e3, e4 = (self.x_raw_moment(p) for p in (2, 3, 4))
        return e4 - 4 * mu * e3 + 6 * mu * mu * e2 - 3 * mu**4

    # conditional law of L_i given L_j = m_j + s_j z
    _Z = None

    @classmethod
    def _grid(cls):
        if cls._Z is None:
            # Gauss-Legendre on [-10, 10] split into 40 panels of 40 nodes each
            x, wt = np.polynomial.legendre.leggauss(40)
            edges = np.linspace(-10.0, 10.0, 41)
            h = np.diff(edges) / 2
            mid = (edges[:-1] + edges[1:]) / 2
            z = (mid[:, None] + h[:, None] * x[None, :]).ravel()
            wz = (h[:, None] * wt[None, :]).ravel() * stats.norm.pdf(z)
            cls._Z = (z, wz)
        return cls._Z

    def _cond(self):
        i, j = self.i, self.j
        mj = self.mean[:, j]
        sj = np.sqrt(self.cov[:, j, j])
        beta = self.cov[:, i, j] / self.cov[:, j, j]
        sc = np.sqrt(np.maximum(self.cov[:, i, i] - beta * self.cov[:, i, j], 0.0))
        return mj, sj, beta, sc

    def _x_terms(self, x, density: bool):
        z, wz = self._grid()
        mj, sj, beta, sc = self._cond()
        lj = mj[:, None] + sj[:, None] * z[None, :]  # (J, Z)
        mu_c = self.mean[:, self.i, None] + beta[:, None] * (lj - mj[:, None])
        y = x + np.exp(lj)  # need e^{L_i} <= y
        pos = y > 0
        ly = np.log(np.where(pos, y, 1.0))
        u = (ly - mu_c) / sc[:, None]
        if density:
            g = np.where(pos, stats.norm.pdf(u) / (sc[:, None] * np.where(pos, y, 1.0)), 0.0)
        else:
            g = np.where(pos, special.ndtr(u), 0.0)
        return float(self.w @ (g @ wz))

    def x_cdf(self, x: float) -> float:
        """P(X <= x) by quadrature over L_j (conditional Gaussian L_i | L_j)."""
        return self._x_terms(x, density=False)

    def x_pdf(self, x: float) -> float:
        return self._x_terms(x, density=True)

    def x_quantile(self, q: float) -> float:
        lo, hi = -1.0, 1.0
        while self.x_cdf(lo) > q:
            lo *= 2
        while self.x_cdf(hi) < q:
            hi *= 2
        return optimize.brentq(lambda x: self.x_cdf(x) - q, lo, hi, xtol=1e-12, rtol=1e-12)


# --------------------------------------------------------------------------- #
# Standard errors for Monte Carlo estimates of the above
# --------------------------------------------------------------------------- #
def se_mean(sd: float, n: int) -> float:
    return sd / np.sqrt(n)


def se_prop(p: float, n: int) -> float:
    return float(np.sqrt(p * (1 - p) / n))


def se_quantile(q: float, density: float, n: int) -> float:
    return float(np.sqrt(q * (1 - q) / n) / density)


def se_sd(sd: float, central4: float, n: int) -> float:
    """Asymptotic se of the sample sd: sqrt((mu4 - sigma^4)/n) / (2 sigma)."""
    return float(np.sqrt((central4 - sd**4) / n) / (2 * sd))


def report_months(sc: dict) -> list:
    if "report_months" in sc:
        return list(sc["report_months"])
    H = sc["horizon_months"]
    return sorted({h for h in DEFAULT_REPORT if h <= H} | {H})


def exact_summary(sc: dict, horizons=None) -> dict:
    """Exact values (and the pieces needed for standard errors) per horizon."""
    model = ExactModel(sc)
    a1, a2 = model.compare
    out = {}
    for h in horizons or report_months(sc):
        mix = model.mixture(h)
        d = {"mixture": mix, "p_outperform": mix.p_outperform()}
        d["excess_mean"] = mix.x_mean()
        d["excess_sd"] = mix.x_sd()
        d["excess_central4"] = mix.x_central4()
        for name, q in (("q05", 0.05), ("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("q95", 0.95)):
            x = mix.x_quantile(q)
            d[f"excess_{name}"] = x
            d[f"excess_{name}_pdf"] = mix.x_pdf(x)
        for a in model.assets:
            d[f"{a}_mean"] = mix.r_mean(a)
            d[f"{a}_sd"] = mix.r_sd(a)
            d[f"{a}_p_loss"] = mix.p_loss(a)
            for name, q in (("q05", 0.05), ("median", 0.5), ("q95", 0.95)):
                x = mix.r_quantile(a, q)
                d[f"{a}_{name}"] = x
                d[f"{a}_{name}_pdf"] = mix.r_pdf(a, x)
        for k, v in model.occupancy(h).items():
            d[f"occupancy_{k}"] = v
            d[f"occupancy_{k}_sd"] = model.occupancy_sd(h, k)
        out[h] = d
    return out
