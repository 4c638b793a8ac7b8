"""Engine properties against exact answers: innovations, correlation, rate overlay, drawdowns,
determinism. Fixed seeds; tolerances are multiples of the Monte Carlo standard error (Z)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import simulator as sim
from simulator.engine import BLOCK_PATHS, chi2, run_blocks, tail_pairs
from simulator.params import build_model, exact_segment_months

Z = 4.5  # standard errors allowed: a false alarm about once in 150,000 comparisons


def one_regime(
    tails=None, corr=0.6, drift=(0.0, 0.0), vol=(0.2, 0.15), horizon=1, rates=None, report_months=None, **extra
):
    regime = {"drift": {"small": drift[0], "large": drift[1]}, "vol": {"small": vol[0], "large": vol[1]}, "corr": corr}
    if tails is not None:
        regime["tails"] = tails
    data = {
        "name": "one",
        "frequency": "monthly",
        "horizon_months": horizon,
        "report_months": report_months or [horizon],
        "assets": {"small": "Russell 2000", "large": "S&P 500"},
        "regimes": {"only": regime},
        **extra,
    }
    if rates is not None:
        data["rates"] = rates
    return sim.parse_scenario(data, source="test")


def innovations(res, vol=(0.2, 0.15)) -> np.ndarray:
    """Unit innovations e[path, asset] of a one-step, zero-drift run: log(1 + R) / (vol sqrt(dt))."""
    return np.log1p(res.draws(1).to_numpy()) / (np.asarray(vol) * np.sqrt(1 / 12))


@pytest.mark.parametrize("nu", [2.5, 5.0, 30.0])
def test_chi2_sampler_matches_scipy(nu):
    import jax

    with jax.enable_x64(True):
        x = np.asarray(chi2(jax.random.key(3), np.full(200_000, nu)))
    assert stats.kstest(x, stats.chi2(nu).cdf).pvalue > 1e-4


@pytest.mark.parametrize("precision", [32, 64])
def test_integer_chi2_sampler_matches_scipy(precision):
    """The rejection-free sampler for integer degrees of freedom (sums of exponentials, plus Z^2 when odd),
    with per-path dof mixed in one draw as the engine's regimes mix them."""
    import jax

    dofs = np.repeat([3.0, 4.0, 5.0, 6.0, 7.0, 10.0], 100_000)
    assert tail_pairs(np.array([np.inf, 3.0, 10.0])) == 5
    with jax.enable_x64(precision == 64):
        x = np.asarray(
            chi2(jax.random.key(4), dofs.astype(np.float32 if precision == 32 else np.float64), tail_pairs(dofs))
        )
    for nu in np.unique(dofs):
        assert stats.kstest(x[dofs == nu], stats.chi2(nu).cdf).pvalue > 1e-4, nu
    assert np.all(np.isfinite(x) & (x > 0))


def test_tail_pairs_picks_the_sampler():
    assert tail_pairs(np.array([[np.inf, 6.0], [np.inf, 4.0]])) == 3  # integers up to 10: no rejection
    assert tail_pairs(np.array([np.inf, 4.5])) == 0  # a fractional dof: Marsaglia-Tsang
    assert tail_pairs(np.array([np.inf, 12.0])) == 0  # large dof: Marsaglia-Tsang is cheaper
    assert tail_pairs(np.array([np.inf, np.inf])) == 0  # Gaussian


def test_student_t_innovations_unit_variance_and_kurtosis():
    nu, n = 12.0, 400_000
    e = innovations(sim.simulate(one_regime(tails=nu), n_paths=n, seed=11, precision=64))
    # Standardised t: E e^2 = 1, E e^4 = 3 (nu-2)/(nu-4), E e^8 = 105 (nu-2)^3 / ((nu-4)(nu-6)(nu-8)).
    m4 = 3 * (nu - 2) / (nu - 4)
    m8 = 105 * (nu - 2) ** 3 / ((nu - 4) * (nu - 6) * (nu - 8))
    for a in range(2):
        assert abs(np.mean(e[:, a] ** 2) - 1) < Z * np.sqrt((m4 - 1) / n)
        assert abs(np.mean(e[:, a] ** 4) - m4) < Z * np.sqrt((m8 - m4**2) / n)
        # and the whole marginal law is the rescaled t
        assert stats.kstest(e[:, a], stats.t(nu, scale=np.sqrt((nu - 2) / nu)).cdf).pvalue > 1e-4
    excess_kurtosis = stats.kurtosis(e[:, 0])
    assert excess_kurtosis > 0.4  # Gaussian would be 0; t_12 gives 6 / (nu - 4) = 0.75


def test_gaussian_innovations_and_correlation():
    n, rho = 300_000, 0.6
    e = innovations(sim.simulate(one_regime(corr=rho), n_paths=n, seed=5, precision=64))
    for a in range(2):
        assert abs(np.mean(e[:, a] ** 2) - 1) < Z * np.sqrt(2 / n)
        assert abs(stats.kurtosis(e[:, a])) < Z * np.sqrt(24 / n)
    r = np.corrcoef(e[:, 0], e[:, 1])[0, 1]
    assert abs(r - rho) < Z * (1 - rho**2) / np.sqrt(n)


def test_three_assets_correlation_matrix():
    C = [[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]]
    data = {
        "name": "three",
        "frequency": "monthly",
        "horizon_months": 1,
        "report_months": [1],
        "assets": {"small": "R2000", "large": "SPX", "mid": "S&P 400"},
        "compare": ["small", "large"],
        "regimes": {
            "only": {
                "drift": {"small": 0, "large": 0, "mid": 0},
                "vol": {"small": 0.2, "large": 0.15, "mid": 0.18},
                "corr": C,
            }
        },
    }
    n = 200_000
    res = sim.simulate(sim.parse_scenario(data), n_paths=n, seed=2, precision=64)
    e = np.log1p(res.draws(1)[["small", "large", "mid"]].to_numpy()) / (np.array([0.2, 0.15, 0.18]) * np.sqrt(1 / 12))
    R = np.corrcoef(e.T)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert abs(R[i, j] - C[i][j]) < Z * (1 - C[i][j] ** 2) / np.sqrt(n)


def test_rate_overlay_shifts_every_path_exactly():
    rates = {"path": {0: 4.0, 3: 3.75, 6: 3.5, 12: 3.25}, "sensitivity": {"small": -0.06, "large": -0.03}}
    kw = dict(drift=(0.08, 0.07), horizon=12, tails=6.0, report_months=[3, 6, 9, 12])
    with_rates = sim.simulate(one_regime(rates=rates, **kw), n_paths=20_000, seed=9, precision=64)
    without = sim.simulate(one_regime(**kw), n_paths=20_000, seed=9, precision=64)
    for h, rate_change in [(3, -0.25), (6, -0.5), (9, -0.625), (12, -0.75)]:  # report months below
        shift = np.log1p(with_rates.draws(h).to_numpy()) - np.log1p(without.draws(h).to_numpy())
        np.testing.assert_allclose(
            shift, np.broadcast_to([-0.06 * rate_change, -0.03 * rate_change], shift.shape), rtol=0, atol=1e-12
        )


def test_drawdowns_match_brute_force_on_the_monthly_path():
    # Monthly steps: the kept month-end values are every step, so the maximum drawdown can be recomputed.
    sc = one_regime(tails=5.0, drift=(0.02, 0.05), vol=(0.3, 0.2), horizon=12, report_months=list(range(1, 13)))
    res = sim.simulate(sc, n_paths=30_000, seed=4, precision=64)
    wealth = np.stack(
        [np.ones((30_000, 2))] + [1 + res.draws(m).to_numpy() for m in range(1, 13)]
    )  # [month, path, asset]
    mdd = (1 - wealth / np.maximum.accumulate(wealth, axis=0)).max(axis=0)  # positive fractions
    row = res.summary().iloc[-1]
    for a, key in enumerate(["small", "large"]):
        assert row[f"{key}_mdd_median"] == pytest.approx(np.median(mdd[:, a]), abs=1e-12)
        assert row[f"{key}_mdd_q95"] == pytest.approx(np.quantile(mdd[:, a], 0.95), abs=1e-12)


def test_risk_figures_follow_their_definitions():
    res = sim.simulate(one_regime(tails=5.0, drift=(0.05, 0.06), horizon=12), n_paths=50_000, seed=8)
    row, R = res.summary().iloc[0], res.draws(12)
    for key in ["small", "large"]:
        q05 = np.quantile(R[key], 0.05)
        assert row[f"{key}_var95"] == pytest.approx(-q05)
        assert row[f"{key}_es95"] == pytest.approx(-R[key][R[key] <= q05].mean())
        share = (R[key] < 0).mean()  # the conditional estimate agrees with the share within the share's error
        assert abs(row[f"{key}_p_loss"] - share) < 4.5 * np.sqrt(share * (1 - share) / len(R))
        assert row[f"{key}_mean"] == pytest.approx(R[key].mean(), rel=1e-9)
    X = R["small"] - R["large"]
    assert row["p_outperform_count"] == pytest.approx((X > 0).mean())
    assert row["excess_sd"] == pytest.approx(X.std(ddof=1), rel=1e-9)
    assert row["excess_hdi90_high"] - row["excess_hdi90_low"] <= row["excess_q95"] - row["excess_q05"] + 1e-12


def scenario_with_everything(tails: float | None = 5):
    """Duration-based regimes, a phase, a rate path; Student-t in 'down' unless ``tails`` is None."""
    return sim.parse_scenario(
        {
            "name": "mix",
            "frequency": "weekly",
            "horizon_months": 12,
            "report_months": [3, 12],
            "assets": {"small": "R2000", "large": "SPX"},
            "regimes": {
                "up": {
                    "drift": {"small": 0.1, "large": 0.08},
                    "vol": {"small": 0.2, "large": 0.15},
                    "corr": 0.8,
                    "duration_months": 18,
                    "next": {"down": 1.0},
                },
                "down": {
                    "drift": {"small": -0.2, "large": -0.1},
                    "vol": {"small": 0.35, "large": 0.25},
                    "corr": 0.9,
                    "duration_months": 6,
                    "next": {"up": 1.0},
                    **({"tails": tails} if tails else {}),
                },
            },
            "phases": [{"until_month": 3, "regimes": {"up": {"duration_months": 4}}}],
            "rates": {"path": {0: 4.0, 12: 3.25}, "sensitivity": {"small": -0.06, "large": -0.03}},
        }
    )


def test_summary_is_identical_whatever_the_batch_size():
    sc = scenario_with_everything()
    n = 3 * BLOCK_PATHS + 1234  # a partial last block too
    runs = [sim.simulate(sc, n_paths=n, seed=21, batch_paths=b) for b in (BLOCK_PATHS, 2 * BLOCK_PATHS, 1 << 17)]
    for other in runs[1:]:
        pd.testing.assert_frame_equal(runs[0].summary(), other.summary(), check_exact=True)
        pd.testing.assert_frame_equal(runs[0].fan(), other.fan(), check_exact=True)
        pd.testing.assert_frame_equal(runs[0].draws(12), other.draws(12), check_exact=True)


@pytest.mark.parametrize("method, tails", [("step", 5), ("step", 5.5), ("exact", None)])
def test_blocks_side_by_side_give_the_same_numbers(method, tails):
    """Accelerators vmap many blocks per call (``side_by_side``); every number must be the same as one block
    at a time, for the step kernel (phases, rates, both chi-square samplers) and the segment kernel alike."""
    import jax

    model = build_model(scenario_with_everything(tails), None)
    segment = exact_segment_months(model) if method == "exact" else 1
    n = 5 * BLOCK_PATHS + 77
    runs = [
        list(
            run_blocks(
                model,
                9,
                n,
                list(range(6)),
                dtype=np.float32,
                devices=tuple(jax.devices()[:1]),
                blocks_per_call=4,
                month_paths=2 * BLOCK_PATHS,
                method=method,
                segment_months=segment,
                side_by_side=k,
            )
        )
        for k in (False, True)
    ]
    for (b1, v1, out1), (b4, v4, out4) in zip(*runs):
        assert (b1, v1) == (b4, v4)
        for x, y in zip(out1, out4):
            np.testing.assert_array_equal(x, y)


def test_paths_depend_on_seed_and_block_only():
    sc = scenario_with_everything()
    small = sim.simulate(sc, n_paths=BLOCK_PATHS + 10, seed=3).draws(12)
    large = sim.simulate(sc, n_paths=3 * BLOCK_PATHS, seed=3).draws(12)
    pd.testing.assert_frame_equal(small, large.iloc[: len(small)], check_exact=True)
    other_seed = sim.simulate(sc, n_paths=BLOCK_PATHS + 10, seed=4).draws(12)
    assert not np.allclose(small.to_numpy(), other_seed.to_numpy())


def test_float32_agrees_with_float64_within_monte_carlo_error():
    sc = scenario_with_everything()
    n = 100_000
    s32 = sim.simulate(sc, n_paths=n, seed=13, precision=32).summary()
    s64 = sim.simulate(sc, n_paths=n, seed=13, precision=64).summary()
    for (_, a), (_, b) in zip(s32.iterrows(), s64.iterrows()):
        # the two runs' differences stay within the error of two independent runs
        se_p = np.sqrt(2 * b.p_outperform * (1 - b.p_outperform) / n)
        assert abs(a.p_outperform - b.p_outperform) < Z * se_p
        assert abs(a.excess_mean - b.excess_mean) < Z * np.sqrt(2 / n) * b.excess_sd


def test_occupancy_shares_sum_to_one():
    s = sim.simulate(scenario_with_everything(), n_paths=20_000, seed=1).summary()
    np.testing.assert_allclose(s[["occupancy_up", "occupancy_down"]].sum(axis=1), 1.0, atol=1e-12)


def test_gpu_request_without_gpu_is_a_clear_error():
    import jax

    try:
        jax.devices("gpu")
        pytest.skip("a GPU is present")
    except RuntimeError:
        pass
    with pytest.raises(sim.DeviceError, match="device='cpu'"):
        sim.simulate(one_regime(), n_paths=100, device="gpu")


@pytest.mark.parametrize("start,nu", [("calm", None), ("wild", 8.0)])
def test_mixed_gaussian_and_student_t_regimes(start, nu):
    """Each regime keeps its own innovation law when Gaussian and Student-t regimes are mixed."""

    def regime(**kw):
        return {
            "drift": {"small": 0, "large": 0},
            "vol": {"small": 0.2, "large": 0.15},
            "corr": 0.5,
            "duration_months": 600,
            **kw,
        }

    sc = sim.parse_scenario(
        {
            "name": "mixed",
            "frequency": "monthly",
            "horizon_months": 1,
            "report_months": [1],
            "assets": {"small": "R2000", "large": "SPX"},
            "start": start,
            "regimes": {"calm": regime(next={"wild": 1.0}), "wild": regime(tails=8.0, next={"calm": 1.0})},
        }
    )
    n = 300_000
    e = innovations(sim.simulate(sc, n_paths=n, seed=17, precision=64))[:, 0]
    if nu is None:  # Gaussian: E e^4 = 3, Var(e^4) = 105 - 9
        m4, var4 = 3.0, 96.0
    else:  # standardised t_nu
        m4 = 3 * (nu - 2) / (nu - 4)
        var4 = 105 * (nu - 2) ** 3 / ((nu - 4) * (nu - 6) * (nu - 8)) - m4**2 if nu > 8 else None
    assert abs(np.mean(e**2) - 1) < Z * np.sqrt((m4 - 1) / n)
    if var4 is not None:
        assert abs(np.mean(e**4) - m4) < Z * np.sqrt(var4 / n)
    law = stats.norm() if nu is None else stats.t(nu, scale=np.sqrt((nu - 2) / nu))
    assert stats.kstest(e, law.cdf).pvalue > 1e-4
