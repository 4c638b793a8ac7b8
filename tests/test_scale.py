"""Past the kept-path bound: all-path figures keep the error of n paths, quantiles the error of the kept ones.

The bound (2e6 paths in production) is lowered here so that a small run crosses it."""

from __future__ import annotations

import exact as ex
import numpy as np
import pytest
from exact_cases import check_rows, summary_rows, two_regime

import simulator as sim
import simulator.summary as summary

N, KEEP, FAN = 200_000, 40_000, 20_000


@pytest.fixture
def small_bounds(monkeypatch):
    monkeypatch.setattr(summary, "MAX_KEEP_PATHS", KEEP)
    monkeypatch.setattr(summary, "FAN_PATHS", FAN)


def test_quantiles_from_kept_paths_all_path_figures_from_every_path(small_bounds):
    sc = two_regime(name="scale", horizon_months=12, report_months=[6, 12], start="bear")
    res = sim.simulate(sim.parse_scenario(sc), n_paths=N, seed=37)
    assert res.meta["kept_paths"] == KEEP and res.meta["fan_paths"] == FAN
    assert len(res.draws(12)) == KEEP
    exact = ex.exact_summary(sc, [6, 12])
    rows = summary_rows(res, [6, 12])
    # figures over every path: standard errors at n = N
    check_rows(rows, exact, ["p_outperform", "excess_mean", "small_mean", "large_p_loss"], "all paths")
    # quantiles from the kept paths: standard errors at n = KEEP (check_rows reads n from the row)
    kept_rows = {h: {**row, "n_paths": KEEP} for h, row in rows.items()}
    check_rows(
        kept_rows, exact, ["excess_q05", "excess_median", "excess_q95", "small_median", "large_q05"], "kept paths"
    )
    # ... and they really are the kept paths' quantiles
    d = res.draws(12)
    assert rows[12]["excess_median"] == pytest.approx(np.median(d["small"] - d["large"]))


def test_fan_from_the_fan_paths(small_bounds):
    sc = sim.parse_scenario(two_regime(name="scale-fan", horizon_months=6, report_months=[6]))
    res = sim.simulate(sc, n_paths=N, seed=3)
    fan = res.fan()
    at6 = fan[(fan["month"] == 6) & (fan["series"] == "small")].iloc[0]
    first = res.draws(6)["small"].to_numpy()[:FAN]
    assert at6["q50"] == pytest.approx(np.median(first), rel=1e-5)
    assert at6["mean"] == pytest.approx(first.mean(), rel=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sorted_quantiles_are_numpys(dtype):
    """The summaries read quantiles off sorted values: the same numbers and dtype as np.quantile, with ties,
    infinities, NaN rows and every length."""
    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 1000, 65_537):
        for probs in (summary.FAN_QUANTILES, [0.0, 1.0, 0.5], [0.3]):
            x = rng.standard_normal((4, n)).astype(dtype)
            x[1, : n // 2] = 0.5
            if n > 3:
                x[2, 3], x[3, 1] = np.nan, np.inf
            with np.errstate(invalid="ignore"):
                want = np.quantile(x, probs, axis=1)
                got = summary.sorted_quantiles(np.sort(x, axis=1), probs)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
