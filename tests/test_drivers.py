"""Regime odds driven by macro paths (docs/drivers.md): the format's rules, the per-step matrices against an
independent logit (tests/exact.py), the engine's results against the exact reference for both methods,
constant-matrix scenarios reproduced bit for bit, and uncertain coefficients drawn per block."""

from __future__ import annotations

import copy

import exact as ex
import jax
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from exact_cases import ASSETS, BEAR, BULL, check_rows, occupancy_keys, summary_rows

import simulator as sim
from simulator.cli import main
from simulator.drivers import driver_step_matrices, step_months
from simulator.params import BLOCK_PATHS, build_model
from simulator.scenario import ScenarioError


def driven(**kw) -> dict:
    """bull leaves for bear on a logit of the credit spread and the policy rate; bear returns on one of the
    spread; the spread widens from 1.0 to 2.6 pp by month 5, then narrows to 0.7 by month 10."""
    sc = {
        "name": "drivers-two",
        "frequency": "monthly",
        "horizon_months": 12,
        "report_months": [3, 6, 9, 12],
        "assets": dict(ASSETS),
        "macro": {"credit_spread": {0: 1.0, 5: 2.6, 10: 0.7}},
        "rates": {"path": {0: 4.0, 6: 3.0}, "sensitivity": {"small": -0.04, "large": -0.02}},
        "regimes": {
            "bull": {
                **copy.deepcopy(BULL),
                "drivers": {"bear": {"intercept": -4.0, "credit_spread": 1.3, "policy_rate": 0.2}},
            },
            "bear": {**copy.deepcopy(BEAR), "drivers": {"bull": {"intercept": 0.5, "credit_spread": -1.4}}},
        },
        "start": "stationary",
    }
    sc.update(copy.deepcopy(kw))
    return sc


def three(**kw) -> dict:
    """Three regimes: expansion leaves by the spread's logits to two destinations; the others keep durations."""
    sc = driven(name="drivers-three", **kw)
    sc["regimes"] = {
        "expansion": {
            **copy.deepcopy(BULL),
            "drivers": {
                "slowdown": {"intercept": -3.0, "credit_spread": 0.8},
                "recession": {"intercept": -5.0, "credit_spread": 1.5},
            },
        },
        "slowdown": {
            "drift": {"small": 0.02, "large": 0.04},
            "vol": {"small": 0.24, "large": 0.17},
            "corr": 0.8,
            "duration_months": 4,
            "next": {"expansion": 0.6, "recession": 0.4},
        },
        "recession": {**copy.deepcopy(BEAR), "duration_months": 6, "next": {"expansion": 1.0}},
    }
    sc["start"] = {"expansion": 0.7, "slowdown": 0.3}
    return sc


def simulate(sc: dict, n: int, seed: int, **kw):
    return sim.simulate(sim.parse_scenario(copy.deepcopy(sc), source="test"), n_paths=n, seed=seed, **kw)


# --------------------------------------------------------------------------------------------
# The core function


def test_driver_step_matrices_are_the_logit_with_a_draw_axis():
    rng = np.random.default_rng(0)
    K, n, M = 3, 2, 5
    coef = rng.normal(size=(4, K, K, 1 + n))
    drivers = rng.normal(size=(4, M, n))
    listed = np.array([[False, True, True], [True, False, False], [False, False, False]])
    month = np.array([0, 0, 1, 2, 3, 4, 4])
    got = driver_step_matrices(coef, drivers, listed, month, 52 / 12)
    assert got.shape == (4, len(month), K, K)
    for d in range(4):  # the leading axis is the per-draw function
        np.testing.assert_array_equal(got[d], driver_step_matrices(coef[d], drivers[d], listed, month, 52 / 12))
    for t, mo in enumerate(month):  # row 0 by hand: softmax of (0, eta_01, eta_02), exits / m
        eta = coef[1, 0, 1:, 0] + coef[1, 0, 1:, 1:] @ drivers[1, mo]
        monthly = np.exp(eta) / (1 + np.exp(eta).sum())
        np.testing.assert_allclose(got[1, t, 0, 1:], monthly * 12 / 52, rtol=1e-13)
        assert got[1, t, 1, 2] == 0.0 and got[1, t, 2, 2] == 1.0  # unlisted: 0; no listed: stays
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, atol=1e-15)
    # huge logits stay finite: the stable softmax
    big = driver_step_matrices(np.full((2, 2, 1), 800.0), np.zeros((1, 0)), ~np.eye(2, dtype=bool), [0], 1.0)
    np.testing.assert_allclose(big[0], [[0.0, 1.0], [1.0, 0.0]], atol=1e-300)


def test_step_months_lag_the_drivers_one_month():
    np.testing.assert_array_equal(step_months(5, 12), [0, 0, 1, 2, 3])  # move into month t: drivers at t - 1
    weekly = step_months(13, 52)  # steps 0..4 start in month 0, 5..8 in month 1, 9..12 in month 2
    np.testing.assert_array_equal(weekly, [0] * 9 + [1] * 4)


@pytest.mark.parametrize("make", [driven, three], ids=["two", "three"])
@pytest.mark.parametrize("frequency", ["monthly", "weekly"])
def test_per_step_matrices_and_regime_law_equal_the_exact_reference(make, frequency):
    sc = make(frequency=frequency)
    model = build_model(sim.parse_scenario(copy.deepcopy(sc)))
    ref = ex.ExactModel(sc)
    T = model.n_steps
    expected = np.stack([ref.start[None].repeat(ref.K, 0)] + [ref.step_matrix(t) for t in range(1, T)])
    np.testing.assert_allclose(model.step_matrices, expected, rtol=0, atol=1e-14)
    law = ref.marginals(T)  # the regime law at every step: the start law times the per-step matrices
    np.testing.assert_allclose(
        model.expected_steps_in[0], np.cumsum(law, 0)[np.array(model.report_steps) - 1], atol=1e-12
    )
    assert not np.allclose(
        model.step_matrices[1], model.step_matrices[model.month_steps[6]]
    )  # the drivers move the odds


# --------------------------------------------------------------------------------------------
# The engine against the exact reference

KEYS = ["p_outperform", "excess_mean", "excess_median", "excess_q05", "excess_q95", "small_mean", "large_median"]


@pytest.mark.parametrize(
    "frequency,method",
    [("monthly", "step"), ("monthly", "exact"), ("weekly", "step"), ("weekly", "exact")],
)
def test_p_outperform_and_occupancy_equal_the_exact_answer(frequency, method):
    sc = driven(frequency=frequency, report_months=list(range(2, 13)) if frequency == "monthly" else [3, 6, 9, 12])
    res = simulate(sc, 100_000, 41, method=method)
    assert res.meta["method"] == method
    rows = summary_rows(res, sc["report_months"])
    check_rows(rows, ex.exact_summary(sc, sc["report_months"]), KEYS + occupancy_keys(sc), f"drivers {method}")


def test_three_regimes_with_two_logits_equal_the_exact_answer():
    sc = three()
    res = simulate(sc, 100_000, 43, method="exact")
    check_rows(summary_rows(res, sc["report_months"]), ex.exact_summary(sc), KEYS + occupancy_keys(sc), "three")


# --------------------------------------------------------------------------------------------
# Constant matrices reproduced bit for bit


def halves(frequency: str, form: str) -> dict:
    """bull and bear each leave with probability 1/2 a month: duration_months 2 with next, or drivers with
    intercept 0 (exp(0) / (1 + exp(0)) = 1/2 exactly) and zero coefficients on a moving spread."""
    sc = driven(frequency=frequency, report_months=[3, 12], start="bull")
    for k, other in (("bull", "bear"), ("bear", "bull")):
        r = sc["regimes"][k]
        if form == "durations":
            del r["drivers"]
            r.update(duration_months=2, next={other: 1.0})
        else:
            r["drivers"] = {other: {"intercept": 0.0, "credit_spread": 0.0, "policy_rate": 0.0}}
    return sc


@pytest.mark.parametrize("frequency", ["monthly", "weekly"])
def test_zero_coefficients_reproduce_the_duration_scenario_bit_for_bit(frequency):
    """The per-step exits are (1/2) / m and the stay 1 - (1/2) / m, the very float64 numbers duration_months 2
    gives (1 / (2 m) rounds as (1/2) / m: doubling is exact); so every table and figure is the same."""
    const, drv = halves(frequency, "durations"), halves(frequency, "drivers")
    a = build_model(sim.parse_scenario(const))
    b = build_model(sim.parse_scenario(drv))
    np.testing.assert_array_equal(a.step_matrices, b.step_matrices)
    for method in ("step", "exact"):
        ra, rb = simulate(const, 40_000, 7, method=method), simulate(drv, 40_000, 7, method=method)
        pd.testing.assert_frame_equal(ra.summary(), rb.summary(), check_exact=True)
        pd.testing.assert_frame_equal(ra.draws(12), rb.draws(12), check_exact=True)


def test_zero_coefficients_reproduce_the_matrix_scenario_bit_for_bit():
    """Any intercepts: the constant scenario's `transitions` rows are the float64 numbers the drivers give (the
    logit of the intercepts), so the per-step tables are equal and so is every figure."""
    drv = three(frequency="weekly", report_months=[3, 12])
    for row in drv["regimes"]["expansion"]["drivers"].values():
        row["credit_spread"] = 0.0
    P = build_model(sim.parse_scenario(copy.deepcopy(drv))).step_matrices[1]
    const = copy.deepcopy(drv)
    names = list(const["regimes"])
    const["transitions"] = {k: {j: float(P[i, jj]) for jj, j in enumerate(names)} for i, k in enumerate(names)}
    for r in const["regimes"].values():
        for key in ("drivers", "duration_months", "next"):
            r.pop(key, None)
    a, b = build_model(sim.parse_scenario(copy.deepcopy(const))), build_model(sim.parse_scenario(copy.deepcopy(drv)))
    np.testing.assert_array_equal(a.step_matrices, b.step_matrices)
    ra, rb = simulate(const, 30_000, 9), simulate(drv, 30_000, 9)
    pd.testing.assert_frame_equal(ra.summary(), rb.summary(), check_exact=True)


# --------------------------------------------------------------------------------------------
# Uncertain coefficients and knots


def test_uncertain_coefficient_and_knot_run_per_block_with_one_compile():
    sc = driven(report_months=[12], uncertainty={"draws": 3})
    sc["regimes"]["bull"]["drivers"]["bear"]["credit_spread"] = {"normal": [1.3, 0.4]}
    sc["macro"]["credit_spread"][10] = {"uniform": [0.5, 0.9]}
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiles.append(event) if event.endswith("backend_compile_duration") else None
    )
    res = simulate(sc, 4 * BLOCK_PATHS, 3)
    table = res.uncertainty().groupby("draw").first()
    coef, knot = table["regimes.bull.drivers.bear.credit_spread"], table["macro.credit_spread.10"]
    assert len(coef) == 3 and coef.nunique() == 3 and knot.between(0.5, 0.9).all()
    for d in range(3):  # draw d's matrices are the plain scenario's at its values
        plain = driven(report_months=[12])
        plain["regimes"]["bull"]["drivers"]["bear"]["credit_spread"] = float(coef[d])
        plain["macro"]["credit_spread"][10] = float(knot[d])
        want = build_model(sim.parse_scenario(plain)).steps.cum_trans[0]
        np.testing.assert_array_equal(res.model.steps.cum_trans[d], want)
    compiles.clear()
    sc["uncertainty"]["draws"] = 7  # another number of draws: nothing more to compile
    simulate(sc, 4 * BLOCK_PATHS, 4)
    assert compiles == []


def test_given_draws_of_a_coefficient_and_a_knot():
    plain = sim.parse_scenario(driven())
    given = sim.with_parameter_draws(
        plain, {"regimes.bear.drivers.bull.credit_spread": [-1.4, 3.0], "macro.credit_spread.5": [2.6, 2.6]}
    )
    res = sim.simulate(given, n_paths=2 * BLOCK_PATHS, seed=1)
    p = res.uncertainty().query("horizon_months == 12")["p_outperform"].to_numpy()
    assert p[1] > p[0] + 0.1  # wider spreads now end bear sooner: more months in bull, where small caps lead
    with pytest.raises(ScenarioError, match="regimes.bear.drivers.bull.credit_spread"):
        sim.with_parameter_draws(plain, {"regimes.bear.drivers.bull.credit_spread": [np.nan]})


# --------------------------------------------------------------------------------------------
# The rules


def edit(path: str, value):
    def apply(sc):
        *parents, last = path.split(".")
        node = sc
        for key in parents:
            node = node[int(key) if isinstance(node, list) else key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value

    return apply


DELETE = object()


@pytest.mark.parametrize(
    "change,field,words",
    [
        (edit("regimes.bull.drivers.bear.vix", 1.0), "regimes.bull.drivers.bear.vix", "unknown driver 'vix'"),
        (edit("rates", DELETE), "regimes.bull.drivers.bear.policy_rate", "needs a `rates` section"),
        (
            edit("regimes.bull.drivers.bear.credit_spread", float("nan")),
            "regimes.bull.drivers.bear.credit_spread",
            "finite",
        ),
        (edit("macro.credit_spread", {1: 1.0, 12: 0.7}), "macro.credit_spread", "knots must start at month 0"),
        (edit("macro.credit_spread.5", float("inf")), "macro.credit_spread.5", "finite"),
        (edit("macro.policy_rate", {0: 1.0}), "macro.policy_rate", "reserved"),
        (edit("regimes.bull.duration_months", 3), "regimes.bull", "not both"),
        (edit("regimes.bull.drivers.bull", {"intercept": 0.0}), "regimes.bull.drivers.bull", "reference is staying"),
        (edit("regimes.bull.drivers.crash", {"intercept": 0.0}), "regimes.bull.drivers.crash", "unknown regime"),
        (edit("regimes.bull.drivers.bear.intercept", DELETE), "regimes.bull.drivers.bear.intercept", "required"),
        (edit("regimes.bull.drivers", {}), "regimes.bull.drivers", "at least one destination"),
        (
            edit("regimes.bull.drivers.bear.credit_spread", {"beta": [1, 2]}),
            "regimes.bull.drivers.bear.credit_spread",
            "beta is not allowed",
        ),
        (
            edit("phases", [{"until_month": 6, "regimes": {"bull": {"drivers": {}}}}]),
            "phases.0.regimes.bull.drivers",
            "a phase cannot override `drivers`",
        ),
        (
            edit("phases", [{"until_month": 6, "regimes": {"bear": {"duration_months": 3}}}]),
            "phases.0.regimes.bear",
            "cannot override its duration_months/next",
        ),
        (
            edit("transitions", {"bull": {"bull": 0.9, "bear": 0.1}, "bear": {"bull": 0.5, "bear": 0.5}}),
            "transitions.bull",
            "not both",
        ),
    ],
)
def test_bad_drivers_are_refused_naming_the_field(change, field, words):
    sc = driven()
    change(sc)
    with pytest.raises(ScenarioError) as err:
        sim.parse_scenario(sc, source="bad.yaml")
    assert any(path == field and words in msg for path, msg in err.value.problems), err.value.problems


def test_valid_forms_are_accepted():
    sc = driven()
    sc["macro"]["credit_spread"] = {"0": 1.0, "12.0": 0.7}  # JSON's string keys
    sc["regimes"]["bear"] = {**copy.deepcopy(BEAR)}
    sc["transitions"] = {"bear": {"bull": 0.2, "bear": 0.8}}  # matrix form: the driven regime has no row
    parsed = sim.parse_scenario(sc)
    assert sorted(parsed.macro["credit_spread"]) == [0.0, 12.0]
    assert build_model(parsed).step_matrices[1:, 1].tolist() == [[0.2, 0.8]] * 11


def test_validate_exits_2_naming_file_and_field(write_scenario):
    sc = driven()
    sc["macro"]["credit_spread"] = {3: 1.0}
    path = write_scenario(sc)
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 2 and str(path) in r.output and "Traceback" not in r.output
    assert "macro.credit_spread: knots must start at month 0" in r.output
