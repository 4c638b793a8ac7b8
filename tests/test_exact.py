"""The engine against the exact reference in tests/exact.py (docs/model.md).

Every comparison is |estimate - exact| < Z_TOL standard errors, where the
standard error is that of a Monte Carlo estimate from n independent paths,
computed from *exact* quantities:

* means: exact sd / sqrt(n);
* proportions: sqrt(p (1 - p) / n) with the exact p;
* quantiles: sqrt(q (1 - q) / n) / exact density at the exact quantile;
* the sample sd: sqrt((mu4 - sigma^4) / n) / (2 sigma) with exact moments;
* occupancy shares: exact sd of the per-path share (from the exact pmf of the
  number of steps spent in the regime) / sqrt(n); this is never larger than the
  bound sqrt(p (1 - p) / n) of a quantity in [0, 1].

Seeds are fixed, so the suite is deterministic.  Z_TOL = 4.5 gives a per-check
false-alarm rate of 7e-6 under a correct engine.

The first block tests exact.py itself (brute force, closed forms, an
independent numpy simulation); it needs no engine.
"""

from __future__ import annotations

import copy
import itertools
import math

import exact as ex
import numpy as np
import pytest
from exact_cases import (
    ALL_KEYS,
    ASSETS,
    BEAR,
    BULL,
    DKW_ALPHA,
    QLEVEL,
    RATES,
    check_rows,
    occupancy_keys,
    summary_rows,
    three_regime,
    two_regime,
    two_regime_matrix,
)
from scipy import integrate, optimize, stats


# --------------------------------------------------------------------------- #
# Part A: the exact reference itself (no engine)
# --------------------------------------------------------------------------- #
def _regime_mu_S(spec, dt):
    mu = np.array([spec["drift"]["small"], spec["drift"]["large"]]) * dt
    vol = np.array([spec["vol"]["small"], spec["vol"]["large"]])
    C = np.array([[1.0, spec["corr"]], [spec["corr"], 1.0]])
    return mu, np.outer(vol, vol) * C * dt


def test_exact_one_regime_closed_form():
    sc = {
        "name": "one",
        "frequency": "weekly",
        "horizon_months": 12,
        "assets": dict(ASSETS),
        "regimes": {"only": copy.deepcopy(BULL)},
        "transitions": {"only": {"only": 1.0}},
        "start": "only",
        "rates": RATES,
    }
    model = ex.ExactModel(sc)
    T = model.n_steps(12)
    assert T == 52
    mu, S = _regime_mu_S(BULL, 1 / 52)
    shift = np.array([-0.06, -0.03]) * (3.25 - 4.00)
    m, V = T * mu + shift, T * S
    mix = model.mixture(12)
    assert len(mix.w) == 1
    np.testing.assert_allclose(mix.mean[0], m, rtol=1e-12)
    np.testing.assert_allclose(mix.cov[0], V, rtol=1e-12)
    # annual figures: T*dt = 1 year
    np.testing.assert_allclose(m, np.array([0.14, 0.10]) + shift, rtol=1e-12)
    sd_d = math.sqrt(V[0, 0] + V[1, 1] - 2 * V[0, 1])
    assert mix.p_outperform() == pytest.approx(stats.norm.cdf((m[0] - m[1]) / sd_d), abs=1e-14)
    for k, a in enumerate(("small", "large")):
        s = math.sqrt(V[k, k])
        assert mix.r_mean(a) == pytest.approx(math.exp(m[k] + s * s / 2) - 1, rel=1e-12)
        var = (math.exp(s * s) - 1) * math.exp(2 * m[k] + s * s)
        assert mix.r_sd(a) == pytest.approx(math.sqrt(var), rel=1e-10)
        for q in (0.05, 0.5, 0.95):
            x = math.exp(m[k] + s * stats.norm.ppf(q)) - 1
            assert mix.r_quantile(a, q) == pytest.approx(x, abs=1e-10)
            dens = stats.lognorm(s, scale=math.exp(m[k])).pdf(1 + x)
            assert mix.r_pdf(a, x) == pytest.approx(dens, rel=1e-10)
    # E[X], Var[X] from lognormal moments
    e1, e2 = math.exp(m[0] + V[0, 0] / 2), math.exp(m[1] + V[1, 1] / 2)
    assert mix.x_mean() == pytest.approx(e1 - e2, rel=1e-12)
    ex2 = (
        math.exp(2 * m[0] + 2 * V[0, 0])
        + math.exp(2 * m[1] + 2 * V[1, 1])
        - 2 * math.exp(m[0] + m[1] + (V[0, 0] + V[1, 1] + 2 * V[0, 1]) / 2)
    )
    assert mix.x_var() == pytest.approx(ex2 - (e1 - e2) ** 2, rel=1e-9)
    # CDF of X = e^{L1} - e^{L2}: grid quadrature vs scipy 2-D integration
    Vinv = np.linalg.inv(V)
    norm = 1 / (2 * math.pi * math.sqrt(np.linalg.det(V)))

    def dens(l1, l2):
        d = np.array([l1, l2]) - m
        return norm * math.exp(-0.5 * d @ Vinv @ d)

    for x in (-0.15, 0.0, 0.08):
        val, _ = integrate.dblquad(
            lambda l1, l2: dens(l1, l2),
            m[1] - 10 * math.sqrt(V[1, 1]),
            m[1] + 10 * math.sqrt(V[1, 1]),
            lambda l2: m[0] - 12 * math.sqrt(V[0, 0]),
            lambda l2: math.log(x + math.exp(l2)) if x + math.exp(l2) > 0 else m[0] - 12 * math.sqrt(V[0, 0]),
            epsabs=1e-11,
        )
        assert mix.x_cdf(x) == pytest.approx(val, abs=1e-8)
        h = 1e-5
        assert mix.x_pdf(x) == pytest.approx((mix.x_cdf(x + h) - mix.x_cdf(x - h)) / (2 * h), rel=1e-6)
    qx = mix.x_quantile(0.3)
    assert mix.x_cdf(qx) == pytest.approx(0.3, abs=1e-11)


def test_exact_two_step_brute_force():
    """T = 2 monthly steps: enumerate the 4 regime sequences by hand."""
    sc = two_regime(horizon_months=2, report_months=[2], start={"bull": 0.3, "bear": 0.7}, rates=RATES)
    model = ex.ExactModel(sc)
    P = np.array([[1 - 1 / 24, 1 / 24], [1 / 8, 7 / 8]])
    np.testing.assert_allclose(model.base, P, atol=1e-15)
    start = np.array([0.3, 0.7])
    dt = 1 / 12
    params = [_regime_mu_S(BULL, dt), _regime_mu_S(BEAR, dt)]
    shift = np.array([-0.06, -0.03]) * (np.interp(2, [0, 6, 12], [4.0, 3.5, 3.25]) - 4.0)
    comps = []  # (prob, mean, cov, n_bull)
    for s0, s1 in itertools.product(range(2), repeat=2):
        p = start[s0] * P[s0, s1]
        mean = params[s0][0] + params[s1][0] + shift
        cov = params[s0][1] + params[s1][1]
        comps.append((p, mean, cov, (s0 == 0) + (s1 == 0)))
    pmf_bf = np.zeros(3)
    for p, *_, nb in comps:
        pmf_bf[nb] += p
    np.testing.assert_allclose(model.count_pmf(2, "bull"), pmf_bf, atol=1e-15)
    occ_bull = sum(p * nb / 2 for p, *_, nb in comps)
    assert model.occupancy(2)["bull"] == pytest.approx(occ_bull, abs=1e-15)
    sd_bf = math.sqrt(sum(p * (nb / 2) ** 2 for p, *_, nb in comps) - occ_bull**2)
    assert model.occupancy_sd(2, "bear") == pytest.approx(sd_bf, abs=1e-14)

    mix = model.mixture(2)
    pout = sum(
        p * stats.norm.cdf((mu[0] - mu[1]) / math.sqrt(C[0, 0] + C[1, 1] - 2 * C[0, 1])) for p, mu, C, _ in comps
    )
    assert mix.p_outperform() == pytest.approx(pout, abs=1e-14)
    for k, a in enumerate(("small", "large")):
        mean_bf = sum(p * (math.exp(mu[k] + C[k, k] / 2) - 1) for p, mu, C, _ in comps)
        assert mix.r_mean(a) == pytest.approx(mean_bf, rel=1e-12)

        def cdf(x):
            return sum(p * stats.norm.cdf((math.log1p(x) - mu[k]) / math.sqrt(C[k, k])) for p, mu, C, _ in comps)

        for q in (0.05, 0.5, 0.95):
            x = optimize.brentq(lambda x: cdf(x) - q, -0.9, 2.0, xtol=1e-14)
            assert mix.r_quantile(a, q) == pytest.approx(x, abs=1e-10)
    xm = sum(p * (math.exp(mu[0] + C[0, 0] / 2) - math.exp(mu[1] + C[1, 1] / 2)) for p, mu, C, _ in comps)
    assert mix.x_mean() == pytest.approx(xm, rel=1e-11)


def test_exact_three_regime_phase_brute_force():
    """T = 3 monthly steps, 3 regimes, a phase [0, 2) overriding slowdown: all 27 sequences."""
    sc = three_regime(
        horizon_months=3,
        report_months=[3],
        phases=[
            {
                "until_month": 2,
                "regimes": {"slowdown": {"duration_months": 2, "next": {"recession": 0.9, "expansion": 0.1}}},
            }
        ],
    )
    model = ex.ExactModel(sc)
    base = np.array(
        [
            [1 - 1 / 30, 0.7 / 30, 0.3 / 30],
            [0.5 / 6, 1 - 1 / 6, 0.5 / 6],
            [0.8 / 9, 0.2 / 9, 1 - 1 / 9],
        ]
    )
    phase = base.copy()
    phase[1] = [0.1 / 2, 1 - 1 / 2, 0.9 / 2]
    np.testing.assert_allclose(model.base, base, atol=1e-15)
    # step 1 is month 1 (in [0, 2)): phase; step 2 is month 2: base
    mats = {1: phase, 2: base}
    for t, M in mats.items():
        np.testing.assert_allclose(model.step_matrix(t), M, atol=1e-15)
    start = np.array([0.2, 0.8, 0.0])
    dt = 1 / 12
    specs = [sc["regimes"][k] for k in ("expansion", "slowdown", "recession")]
    params = [_regime_mu_S(s, dt) for s in specs]
    joint, occ, pout = {}, np.zeros(3), 0.0
    for seq in itertools.product(range(3), repeat=3):
        p = start[seq[0]] * mats[1][seq[0], seq[1]] * mats[2][seq[1], seq[2]]
        counts = tuple(seq.count(k) for k in range(3))
        joint[counts] = joint.get(counts, 0.0) + p
        occ += p * np.array(counts) / 3
        mu = sum(params[s][0] for s in seq)
        C = sum(params[s][1] for s in seq)
        pout += p * stats.norm.cdf((mu[0] - mu[1]) / math.sqrt(C[0, 0] + C[1, 1] - 2 * C[0, 1]))
    counts, pmf = model.count_joint_pmf(3)
    got = {tuple(c): p for c, p in zip(counts, pmf)}
    for c in set(got) | set(joint):
        assert got.get(c, 0.0) == pytest.approx(joint.get(c, 0.0), abs=1e-15)
    np.testing.assert_allclose(list(model.occupancy(3).values()), occ, atol=1e-15)
    assert model.mixture(3).p_outperform() == pytest.approx(pout, abs=1e-14)
    # the 1-D count DP is the marginal of the joint one
    for k, r in enumerate(model.regimes):
        marg = np.zeros(4)
        for c, p in got.items():
            marg[c[k]] += p
        np.testing.assert_allclose(model.count_pmf(3, r), marg, atol=1e-15)


def test_exact_phase_windows_weekly_and_daily():
    ph = [
        {"until_month": 3, "regimes": {"bear": {"duration_months": 2, "next": {"bull": 1.0}}}},
        {"until_month": 6, "regimes": {"bull": {"duration_months": 3, "next": {"bear": 1.0}}}},
    ]
    w = ex.ExactModel(two_regime(frequency="weekly", horizon_months=12, report_months=[3, 12], phases=ph))
    p1, p2 = w.phases[0][2], w.phases[1][2]
    assert p1[1, 0] == pytest.approx(1 / (2 * 52 / 12)) and p2[0, 1] == pytest.approx(1 / (3 * 52 / 12))
    # week t is in month t*12/52: [0, 3) holds t <= 12, [3, 6) holds 13..25
    assert all(w.step_matrix(t) is p1 for t in range(1, 13))
    assert all(w.step_matrix(t) is p2 for t in range(13, 26))
    assert all(w.step_matrix(t) is w.base for t in range(26, 52))
    assert w.n_steps(3) == 13 and w.n_steps(12) == 52
    with pytest.raises(ValueError):
        w.n_steps(1)
    d = ex.ExactModel(two_regime(frequency="daily", horizon_months=6, report_months=[6], phases=ph))
    assert all(d.step_matrix(t) is d.phases[0][2] for t in range(1, 63))
    assert d.step_matrix(63) is d.phases[1][2] and d.step_matrix(126) is d.base
    # per-step leave probability 1/(d*m): expected stay d months at every frequency
    assert d.base[0, 1] == pytest.approx(1 / (24 * 21)) and d.base[1, 0] == pytest.approx(1 / (8 * 21))


def test_exact_matrix_form_equals_durations_form():
    a, b = ex.ExactModel(two_regime()), ex.ExactModel(two_regime_matrix())
    np.testing.assert_allclose(a.base, b.base, atol=1e-15)
    np.testing.assert_allclose(a.stationary(), [0.75, 0.25], atol=1e-14)
    np.testing.assert_allclose(a.count_pmf(12), b.count_pmf(12), atol=1e-14)


def _numpy_mc(sc, n, seed, horizons):
    """A plain numpy simulation of docs/model.md (Gaussian), as a check on exact.py."""
    model = ex.ExactModel(sc)
    rng = np.random.default_rng(seed)
    T = model.n_steps(max(horizons))
    K, A = model.K, len(model.assets)
    chol = []
    for k in model.regimes:
        mu, S = model._regime_params(k)
        chol.append((mu, np.linalg.cholesky(S)))
    s = rng.choice(K, size=n, p=model.start)
    L = np.zeros((n, A))
    occ = np.zeros((n, K))
    rows = {}
    for t in range(T):
        if t > 0:
            cum = np.cumsum(model.step_matrix(t), axis=1)[s]
            s = np.minimum((rng.random(n)[:, None] > cum).sum(1), K - 1)
        e = rng.standard_normal((n, A))
        for k in range(K):
            sel = s == k
            L[sel] += chol[k][0] + e[sel] @ chol[k][1].T
        occ[np.arange(n), s] += 1
        h = (t + 1) / float(model.m)
        if h in horizons:
            R = np.expm1(L + model.rate_shift(h))
            X = R[:, 0] - R[:, 1]
            row = {"n_paths": n, "p_outperform": np.mean(X > 0), "excess_mean": X.mean(), "excess_sd": X.std(ddof=1)}
            for name, q in QLEVEL.items():
                row[f"excess_{name}"] = np.quantile(X, q)
            for i, a in enumerate(model.assets):
                row[f"{a}_mean"] = R[:, i].mean()
                row[f"{a}_p_loss"] = np.mean(R[:, i] < 0)
                for name in ("median", "q05", "q95"):
                    row[f"{a}_{name}"] = np.quantile(R[:, i], QLEVEL[name])
            for k, r in enumerate(model.regimes):
                row[f"occupancy_{r}"] = (occ[:, k] / (t + 1)).mean()
            rows[int(h)] = row
    return rows


@pytest.mark.parametrize(
    "sc",
    [
        two_regime(horizon_months=12, report_months=[3, 12], start="bear", rates=RATES),
        three_regime(horizon_months=6, report_months=[3, 6]),
    ],
    ids=["two-regime", "three-regime-phase"],
)
def test_exact_against_independent_numpy_simulation(sc):
    horizons = sc["report_months"]
    exact = ex.exact_summary(sc, horizons)
    rows = _numpy_mc(sc, 200_000, 20240611, horizons)
    check_rows(rows, exact, ALL_KEYS + occupancy_keys(sc), "numpy-mc " + sc["name"])


# --------------------------------------------------------------------------- #
# Part B: the engine against the exact reference
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def sim():
    try:
        import simulator
    except ModuleNotFoundError as e:  # only while the engine is being written
        if e.name == "simulator":
            pytest.skip("engine package `simulator` not importable yet")
        raise
    if not hasattr(simulator, "simulate"):
        pytest.skip("simulator.simulate not there yet")
    return simulator


def run_engine(sim, sc, n, seed, precision=32):
    scenario = sim.parse_scenario(copy.deepcopy(sc), source="test")
    return sim.simulate(scenario, n_paths=n, seed=seed, precision=precision)


def check_engine(sim, sc, n, seed, keys, precision=32, label=None):
    horizons = sc["report_months"]
    res = run_engine(sim, sc, n, seed, precision)
    rows = summary_rows(res, horizons)
    exact = ex.exact_summary(sc, horizons)
    for h in horizons:
        assert int(rows[h]["n_paths"]) == n
    if "p_outperform" in keys:
        keys = list(keys) + ["p_outperform_count"]
        for h in horizons:  # the share of paths has the binomial se; the conditional estimate a smaller one
            p = float(rows[h]["p_outperform_count"])
            binomial = math.sqrt(p * (1 - p) / n)
            assert float(rows[h]["p_outperform_count_se"]) == pytest.approx(binomial, rel=1e-9)
            assert 0 < float(rows[h]["p_outperform_se"]) < binomial
    check_rows(rows, exact, keys, label or f"{sc['name']} p{precision}")
    return res, exact


def dkw_check(draws, cdf, label):
    """max |F_n - F| over data points vs the DKW bound at level DKW_ALPHA."""
    n = len(draws)
    pts = np.quantile(draws, np.linspace(0.01, 0.99, 49))
    emp = np.searchsorted(np.sort(draws), pts, side="right") / n
    D = max(abs(e - cdf(x)) for e, x in zip(emp, pts))
    eps = math.sqrt(math.log(2 / DKW_ALPHA) / (2 * n))
    print(f"\n{label:>28s} DKW sup|Fn-F|={D:.2e} sqrt(n)*D={D * math.sqrt(n):.2f} bound={eps:.2e}")
    assert D < eps, f"{label}: sup|Fn - F| = {D:.3e} >= DKW bound {eps:.3e}"


def test_engine_durations_form_monthly(sim):
    """1. durations + next, monthly, rates overlay, stationary start, [3, 12, 24]."""
    sc = two_regime(rates=RATES)
    res, exact = check_engine(sim, sc, 200_000, 7, ALL_KEYS + occupancy_keys(sc))
    # the whole 12-month distribution: marginals of R_small, R_large and of X
    d = res.draws(12)
    assert len(d) == 200_000 and {"small", "large"} <= set(d.columns)
    mix = exact[12]["mixture"]
    small, large = d["small"].to_numpy(float), d["large"].to_numpy(float)
    dkw_check(small, lambda x: mix.r_cdf("small", x), "draws(12) small")
    dkw_check(large, lambda x: mix.r_cdf("large", x), "draws(12) large")
    dkw_check(small - large, mix.x_cdf, "draws(12) excess")


def test_engine_matrix_form_monthly(sim):
    """2. the same chain given as a per-step `transitions:` matrix."""
    sc = two_regime_matrix()
    keys = ["p_outperform", "excess_mean", "excess_median", "excess_q05", "small_mean", "large_median"]
    check_engine(sim, sc, 150_000, 11, keys + occupancy_keys(sc))


def test_engine_phase_overrides_duration(sim):
    """3a. phases overriding duration_months (and next) of each regime in turn, bear start."""
    sc = two_regime(
        name="exact-two-phases",
        horizon_months=12,
        report_months=[3, 6, 12],
        start="bear",
        phases=[
            {"until_month": 4, "regimes": {"bear": {"duration_months": 2, "next": {"bull": 1.0}}}},
            {"until_month": 9, "regimes": {"bull": {"duration_months": 3, "next": {"bear": 1.0}}}},
        ],
    )
    check_engine(sim, sc, 150_000, 5, ALL_KEYS + occupancy_keys(sc))


def test_engine_phase_overrides_next_three_regimes(sim):
    """3b. three regimes; a phase overriding slowdown's duration and next; mapping start."""
    sc = three_regime()
    keys = [
        "p_outperform",
        "excess_mean",
        "excess_median",
        "excess_q05",
        "excess_q95",
        "small_mean",
        "small_median",
        "large_mean",
        "large_q05",
    ]
    check_engine(sim, sc, 150_000, 13, keys + occupancy_keys(sc))


@pytest.mark.parametrize(
    "start",
    ["stationary", "bear", {"bull": 0.35, "bear": 0.65}],
    ids=["stationary", "regime-name", "mapping"],
)
def test_engine_start_forms(sim, start):
    """4. occupancy (and p_outperform) for each form of `start`."""
    sc = two_regime(start=start)
    check_engine(sim, sc, 100_000, 17, ["p_outperform"] + occupancy_keys(sc))


@pytest.mark.parametrize(
    "frequency,horizon,report",
    [("weekly", 12, [3, 12]), ("daily", 6, [3, 6])],
)
def test_engine_other_frequencies(sim, frequency, horizon, report):
    """5. durations honoured per step at 52 and 252 steps a year (bear start: not stationary)."""
    sc = two_regime(
        name=f"exact-{frequency}",
        frequency=frequency,
        horizon_months=horizon,
        report_months=report,
        start="bear",
        rates=RATES,
    )
    keys = ["p_outperform", "excess_mean", "excess_median", "small_mean", "small_q05", "large_median"]
    check_engine(sim, sc, 100_000, 19, keys + occupancy_keys(sc))


def test_engine_precision_64(sim):
    """6. precision=64 matches the exact reference too."""
    sc = two_regime(rates=RATES, start={"bull": 0.5, "bear": 0.5})
    keys = [
        "p_outperform",
        "excess_mean",
        "excess_sd",
        "excess_median",
        "excess_q05",
        "excess_q95",
        "small_mean",
        "small_q05",
        "large_mean",
        "large_median",
    ]
    check_engine(sim, sc, 100_000, 23, keys + occupancy_keys(sc), precision=64)
