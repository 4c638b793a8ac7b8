"""The exact method (segments of whole months drawn at once) against the exact reference and brute force,
and what it can and cannot give."""

from __future__ import annotations

import copy

import exact as ex
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from exact_cases import ALL_KEYS, RATES, check_rows, occupancy_keys, summary_rows, three_regime, two_regime

import simulator as sim
from simulator.engine import lower_cholesky
from simulator.params import alias_table, build_model, end_bits, exact_segment_months, outcome_code, segment_outcomes


def run(sc: dict, n: int, seed: int, method: str = "exact", **kw):
    return sim.simulate(sim.parse_scenario(copy.deepcopy(sc), source="test"), n_paths=n, seed=seed, method=method, **kw)


def check_exact_method(sc: dict, n: int, seed: int, keys, observed: str, **kw):
    res = run(sc, n, seed, **kw)
    assert res.meta["method"] == "exact" and res.meta["drawdowns_observed"] == observed
    check_rows(
        summary_rows(res, sc["report_months"]),
        ex.exact_summary(sc, sc["report_months"]),
        keys,
        f"{sc['name']} exact method",
    )
    return res


@pytest.mark.parametrize(
    "frequency,horizon,report,observed",
    [
        ("weekly", 12, [3, 12], "every 3 months"),
        ("daily", 12, [1, 6, 12], "month ends"),
        ("monthly", 24, [12, 24], "every 12 months"),
    ],
)
def test_exact_method_matches_exact_reference(frequency, horizon, report, observed):
    sc = two_regime(
        name=f"exact-method-{frequency}",
        frequency=frequency,
        horizon_months=horizon,
        report_months=report,
        start="bear",
        rates=RATES,
        phases=[{"until_month": 3, "regimes": {"bear": {"duration_months": 2, "next": {"bull": 1.0}}}}],
    )
    check_exact_method(sc, 200_000, 29, ALL_KEYS + occupancy_keys(sc), observed)


def test_exact_method_three_regimes_and_float64():
    sc = three_regime(name="exact-method-three")  # monthly, reports 3, 6, 12: segments of 3 months
    keys = ["p_outperform", "excess_mean", "excess_median", "excess_q05", "excess_q95", "small_mean", "large_q05"]
    check_exact_method(sc, 150_000, 31, keys + occupancy_keys(sc), "every 3 months", precision=64)


def test_exact_method_drawdowns_are_month_end_drawdowns():
    sc = two_regime(name="exact-method-dd", frequency="daily", horizon_months=6, report_months=[1, 2, 3, 4, 5, 6])
    res = run(sc, 40_000, 3)
    wealth = np.stack([np.ones((40_000, 2))] + [1 + res.draws(m).to_numpy() for m in range(1, 7)])
    mdd = (1 - wealth / np.maximum.accumulate(wealth, axis=0)).max(axis=0)
    row = res.summary().iloc[-1]
    assert row["small_mdd_median"] == pytest.approx(np.median(mdd[:, 0]), rel=1e-5)
    assert row["large_mdd_q95"] == pytest.approx(np.quantile(mdd[:, 1], 0.95), rel=1e-5)
    # the per-step method sees the drawdowns inside the months too, so its medians are deeper
    step = sim.simulate(sim.parse_scenario(copy.deepcopy(sc)), n_paths=40_000, seed=3, method="step").summary()
    assert step.iloc[-1]["small_mdd_median"] > row["small_mdd_median"]


def test_which_method_runs():
    gaussian = sim.parse_scenario(two_regime(frequency="daily", horizon_months=3, report_months=[3]))
    tails = copy.deepcopy(two_regime(frequency="daily", horizon_months=3, report_months=[3]))
    tails["regimes"]["bear"]["tails"] = 5
    tails = sim.parse_scenario(tails)
    assert sim.simulate(gaussian, n_paths=1000, method="auto").meta["method"] == "exact"
    assert sim.simulate(tails, n_paths=1000, method="auto").meta["method"] == "step"
    assert sim.simulate(gaussian, n_paths=1000).meta["method"] == "step"  # the default sees every step
    with pytest.raises(ValueError, match="Student-t"):
        sim.simulate(tails, n_paths=1000, method="exact")
    mid_month = two_regime(
        frequency="daily",
        horizon_months=3,
        report_months=[3],
        phases=[{"until_month": 1.5, "regimes": {"bear": {"drift": {"small": -0.5}}}}],
    )
    with pytest.raises(ValueError, match="inside month 1"):
        sim.simulate(sim.parse_scenario(mid_month), n_paths=1000, method="exact")


def test_exact_method_drawdowns_are_segment_end_drawdowns():
    """Segments of 2 months: drawdowns are seen at months 2, 4, 6, in the month-by-month blocks that keep the
    fan (the first 65,536 paths) and in the others alike."""
    sc = two_regime(name="exact-method-dd2", frequency="daily", horizon_months=6, report_months=[2, 4, 6])
    n = 100_000
    res = run(sc, n, 4)
    assert res.meta["drawdowns_observed"] == "every 2 months"
    wealth = np.stack([np.ones((n, 2))] + [1 + res.draws(m).to_numpy() for m in (2, 4, 6)])
    mdd = (1 - wealth / np.maximum.accumulate(wealth, axis=0)).max(axis=0)
    expect = np.stack([np.median(mdd[:, 0]), np.quantile(mdd[:, 1], 0.95)])
    got = res.summary().iloc[-1][["small_mdd_median", "large_mdd_q95"]].to_numpy(float)
    np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_exact_method_is_reproducible_across_batches():
    sc = sim.parse_scenario(two_regime(frequency="weekly", horizon_months=12, report_months=[3, 12]))
    a = sim.simulate(sc, n_paths=70_000, seed=2, method="exact", batch_paths=32768)
    b = sim.simulate(sc, n_paths=70_000, seed=2, method="exact", batch_paths=3 * 32768)
    pd.testing.assert_frame_equal(a.summary(), b.summary(), check_exact=True)
    pd.testing.assert_frame_equal(a.fan(), b.fan(), check_exact=True)


def brute_force_outcomes(matrices: np.ndarray) -> dict:
    """P(regime counts, end regime | regime before) by summing over all K^L regime paths of a segment:
    {(before, counts, end): probability}."""
    L, K = matrices.shape[:2]
    law = {}
    for before in range(K):
        for path in np.ndindex(*(K,) * L):
            p = np.prod([matrices[t][([before] + list(path))[t], path[t]] for t in range(L)])
            key = (before, tuple(np.bincount(path, minlength=K)), path[-1])
            law[key] = law.get(key, 0.0) + p
    return law


@pytest.mark.parametrize("K,L", [(1, 4), (2, 6), (3, 5), (4, 3)])
def test_segment_law_matches_brute_force(K, L):
    matrices = np.random.default_rng(K * 10 + L).dirichlet(np.ones(K), size=(L, K))  # a new matrix each step
    prob, counts, end = segment_outcomes(matrices)
    law = brute_force_outcomes(matrices)
    assert prob.shape[1] == len({(c, e) for _, c, e in law})  # every reachable outcome, nothing pruned
    assert np.all(counts.sum(axis=1) == L)
    for i in range(prob.shape[1]):
        for before in range(K):
            assert prob[before, i] == pytest.approx(law.get((before, tuple(counts[i]), end[i]), 0.0), abs=1e-13)


@pytest.mark.parametrize("A", [1, 2, 3])
def test_lower_cholesky_matches_numpy(A):
    rng = np.random.default_rng(A)
    X = rng.normal(size=(50, A, A + 2))
    cov = X @ X.transpose(0, 2, 1)  # 50 positive-definite matrices
    cov[0] = 0.0  # and a zero one (a regime with zero volatility)
    rows = [[jnp.asarray(cov[:, a, b]) for b in range(a + 1)] for a in range(A)]
    got = np.zeros_like(cov)
    for a, row in enumerate(lower_cholesky(rows)):
        for b, x in enumerate(row):
            got[:, a, b] = np.asarray(x)
    np.testing.assert_allclose(got[1:], np.linalg.cholesky(cov[1:]), rtol=1e-5, atol=1e-6)
    assert np.all(got[0] == 0)


def test_outcome_codes_hold_counts_and_end_regime():
    K, L = 3, 40
    prob, counts, end = segment_outcomes(np.tile(np.full((K, K), 1 / K), (L, 1, 1)))
    bits = L.bit_length()
    code = outcome_code(counts, end, bits)
    low = end_bits(K)
    assert np.all(code & ((1 << low) - 1) == end)
    for k in range(K):
        assert np.all((code >> (low + k * bits)) & ((1 << bits) - 1) == counts[:, k])
    assert len(np.unique(code)) == len(code)


@pytest.mark.parametrize("sizes", [(1, 2), (3, 4), (7, 8), (100, 128), (1000, 4096)])
def test_alias_table_gives_the_law_exactly(sizes):
    m, n = sizes
    prob = np.random.default_rng(m).dirichlet(np.full(m, 0.3))
    prob[::3] *= 1e-9  # tiny masses too
    prob /= prob.sum()
    accept, alias = alias_table(prob, n)
    implied = (accept + np.bincount(alias, weights=1 - accept, minlength=n)) / n
    np.testing.assert_allclose(implied[:m], prob, rtol=1e-9, atol=1e-15)
    assert np.all(implied[m:] == 0) and np.all((accept >= 0) & (accept <= 1))


def test_segment_length_follows_report_horizons_and_phases():
    def months(make=two_regime, **kw):
        return exact_segment_months(build_model(sim.parse_scenario(make(**kw))))

    drift_phase = [{"until_month": 2, "regimes": {"bear": {"drift": {"small": -0.5}}}}]
    assert months(frequency="monthly", horizon_months=24, report_months=[12, 24]) == 12
    assert months(frequency="daily", horizon_months=12, report_months=[6, 12]) == 6
    assert months(frequency="daily", horizon_months=12, report_months=[3, 12], phases=drift_phase) == 1
    assert months(frequency="daily", horizon_months=12, report_months=[4, 12], phases=drift_phase) == 2
    assert months(frequency="daily", horizon_months=24, report_months=[24]) == 24
    # 3 regimes over 24 months of daily steps: too many (counts, end) outcomes, so 12-month segments
    assert months(three_regime, frequency="daily", horizon_months=24, report_months=[24]) == 12
