"""The exact month-by-month method against the exact reference, and what it can and cannot give."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

import exact as ex
import simulator as sim
from test_exact import ALL_KEYS, RATES, check_rows, occupancy_keys, summary_rows, three_regime, two_regime


def run(sc: dict, n: int, seed: int, method: str = "exact", **kw):
    return sim.simulate(sim.parse_scenario(copy.deepcopy(sc), source="test"), n_paths=n, seed=seed, method=method,
                        **kw)


def check_exact_method(sc: dict, n: int, seed: int, keys, **kw):
    res = run(sc, n, seed, **kw)
    assert res.meta["method"] == "exact" and res.meta["drawdowns_observed"] == "month ends"
    check_rows(summary_rows(res, sc["report_months"]), ex.exact_summary(sc, sc["report_months"]), keys,
               f"{sc['name']} exact method")
    return res


@pytest.mark.parametrize("frequency,horizon,report", [("weekly", 12, [3, 12]), ("daily", 12, [1, 6, 12])])
def test_exact_method_matches_exact_reference(frequency, horizon, report):
    sc = two_regime(name=f"exact-method-{frequency}", frequency=frequency, horizon_months=horizon,
                    report_months=report, start="bear", rates=RATES,
                    phases=[{"until_month": 3, "regimes": {"bear": {"duration_months": 2, "next": {"bull": 1.0}}}}])
    check_exact_method(sc, 200_000, 29, ALL_KEYS + occupancy_keys(sc))


def test_exact_method_three_regimes_and_float64():
    sc = three_regime(name="exact-method-three")
    keys = ["p_outperform", "excess_mean", "excess_median", "excess_q05", "excess_q95", "small_mean",
            "large_q05"]
    check_exact_method(sc, 150_000, 31, keys + occupancy_keys(sc), precision=64)


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
    assert sim.simulate(gaussian, n_paths=1000).meta["method"] == "step"   # the default sees every step
    with pytest.raises(ValueError, match="Student-t"):
        sim.simulate(tails, n_paths=1000, method="exact")
    mid_month = two_regime(frequency="daily", horizon_months=3, report_months=[3],
                           phases=[{"until_month": 1.5, "regimes": {"bear": {"drift": {"small": -0.5}}}}])
    with pytest.raises(ValueError, match="inside month 1"):
        sim.simulate(sim.parse_scenario(mid_month), n_paths=1000, method="exact")


def test_exact_method_is_reproducible_across_batches():
    sc = sim.parse_scenario(two_regime(frequency="weekly", horizon_months=12, report_months=[3, 12]))
    a = sim.simulate(sc, n_paths=70_000, seed=2, method="exact", batch_paths=32768)
    b = sim.simulate(sc, n_paths=70_000, seed=2, method="exact", batch_paths=3 * 32768)
    pd.testing.assert_frame_equal(a.summary(), b.summary(), check_exact=True)
    pd.testing.assert_frame_equal(a.fan(), b.fan(), check_exact=True)
