"""The per-draw step tables built over the draw axis (``simulator.tables.draw_tables``) equal what the scalar
reference gives draw by draw (``uncertainty.draw_scenarios`` then ``params.step_params``), to float64 rounding
(rtol 1e-12, atol 1e-15), for every kind of drawn field: shipped scenarios, phases in both forms, weekly and daily
steps, Dirichlet and partly given rows, three assets, rates, drivers and externally given draws."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from conftest import BASE_SCENARIO
from exact_cases import RATES, two_regime, two_regime_matrix
from step_reference import step_params
from test_drivers import driven, three

import simulator as sim
from simulator.params import build_model, steps_to_month
from simulator.tables import StepParams, draw_tables
from simulator.uncertainty import draw_scenarios, draw_values

ROOT = Path(__file__).resolve().parents[1]
N_DRAWS = 200
FIELDS = (*StepParams._fields, "start", "step_trans")


def draw_step_params(sc, values, month_steps, pair):
    """The builder's (StepParams [D, T, ...], start laws [D, K], matrices [D, T, K, K])."""
    tables = draw_tables(sc, values, month_steps, pair)
    return tables.steps, tables.start, tables.step_trans


def reference(sc, values, month_steps, pair):
    """The scalar builder, draw by draw: (StepParams [D, T, ...], start laws [D, K], matrices [D, T, K, K])."""
    sets = [step_params(s, month_steps, pair) for s in draw_scenarios(sc, values)]
    steps = StepParams(*(np.stack(x) for x in zip(*(p for p, _ in sets))))
    return steps, np.stack([law[0] for _, law in sets]), np.stack([law[2] for _, law in sets])


def shape_of(sc):
    month_steps = tuple(steps_to_month(h, sc.steps_per_year) for h in range(sc.horizon_months + 1))
    first, second = sc.compare_pair
    return month_steps, (sc.asset_keys.index(first), sc.asset_keys.index(second))


def check(sc, values=None) -> None:
    """The builder equals the reference on ``values`` (default: 200 draws of the scenario's distributions)."""
    values = draw_values(sc, 7, N_DRAWS) if values is None else values
    month_steps, pair = shape_of(sc)
    want = reference(sc, values, month_steps, pair)
    got = draw_step_params(sc, values, month_steps, pair)
    for name, w, g in zip(FIELDS, (*want[0], *want[1:]), (*got[0], *got[1:])):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15, err_msg=name)


# --------------------------------------------------------------------------------------------
# Shipped scenarios and examples


def uncertain_files() -> list[Path]:
    files = sorted((ROOT / "scenarios").glob("*.yaml")) + sorted((ROOT / "docs" / "examples").glob("*.yaml"))
    return [p for p in files if sim.load_scenario(p).is_uncertain]


def test_some_shipped_files_carry_uncertainty():
    assert len(uncertain_files()) >= 3


@pytest.mark.parametrize("path", uncertain_files(), ids=lambda p: p.name)
def test_uncertain_files(path):
    check(sim.load_scenario(path))


# --------------------------------------------------------------------------------------------
# Hand-made cases


def everything(frequency: str = "monthly") -> dict:
    """Three regimes in the durations form, a drawn field of every kind, a phase overriding each field."""
    sc = copy.deepcopy(BASE_SCENARIO)
    sc["frequency"] = frequency
    sc["rates"] = copy.deepcopy(RATES)
    ex, sl, rc = (sc["regimes"][k] for k in ("expansion", "slowdown", "recession"))
    ex["drift"]["small"] = {"normal": [0.10, 0.05]}
    ex["vol"]["large"] = {"lognormal": [0.15, 0.2]}
    ex["corr"] = {"beta": [20, 2]}
    ex["next"] = {"slowdown": {"uniform": [0.5, 0.8]}, "recession": 0.3}  # given in part: recession rescaled
    sl["duration_months"] = {"triangular": [6, 12, 20]}
    sl["next"] = {"dirichlet": {"expansion": 6, "recession": 4}}
    rc["tails"] = {"uniform": [4, 8]}
    sc["start"] = {"expansion": {"uniform": [0.5, 0.8]}, "slowdown": 0.2, "recession": 0.1}
    sc["rates"]["path"][6] = {"normal": [3.5, 0.2]}
    sc["rates"]["sensitivity"]["small"] = {"uniform": [-0.08, -0.04]}
    sc["phases"] = [
        {
            "until_month": 5.5,  # ends inside a month: weekly and daily steps split it
            "regimes": {
                "slowdown": {"vol": {"small": {"uniform": [0.25, 0.35]}}, "duration_months": {"uniform": [3, 5]}},
                "expansion": {"drift": {"large": -0.02}, "corr": 0.6, "tails": {"uniform": [5, 9]}},
                "recession": {"next": {"expansion": {"uniform": [0.6, 0.9]}, "slowdown": 0.1}},
            },
        },
        {
            "until_month": 9,
            "regimes": {
                "recession": {"corr": {"uniform": [0.7, 0.95]}, "duration_months": 4},
                "expansion": {"next": {"dirichlet": {"slowdown": 3, "recession": 1}}},
            },
        },
    ]
    return sc


@pytest.mark.parametrize("frequency", ["monthly", "weekly", "daily"])
def test_durations_form_with_phases(frequency):
    check(sim.parse_scenario(everything(frequency)))


def test_stationary_start_with_drawn_durations():
    sc = everything("weekly")
    sc["start"] = "stationary"
    check(sim.parse_scenario(sc))


def test_transitions_form_with_phases():
    sc = two_regime_matrix(frequency="weekly", start="stationary")
    sc["regimes"]["bull"]["drift"]["small"] = {"uniform": [0.0, 0.2]}
    sc["regimes"]["bear"]["corr"] = {"triangular": [0.5, 0.8, 0.95]}
    sc["transitions"]["bull"] = {"bull": {"beta": [200, 2]}, "bear": 1 / 24}  # bear rescaled to fill the row
    sc["transitions"]["bear"] = {"dirichlet": {"bull": 1, "bear": 30}}
    sc["phases"] = [
        {
            "until_month": 4,
            "transitions": {"bull": {"bull": 0.9, "bear": {"uniform": [0.05, 0.15]}}},
            "regimes": {"bear": {"vol": {"large": {"uniform": [0.2, 0.3]}}}},
        }
    ]
    check(sim.parse_scenario(sc))


def test_three_assets_with_a_fixed_matrix():
    sc = copy.deepcopy(BASE_SCENARIO)
    sc["assets"] = {"small": "Russell 2000", "large": "S&P 500", "mid": "S&P 400"}
    sc["compare"] = ["mid", "large"]
    corr = [[1.0, 0.8, 0.9], [0.8, 1.0, 0.85], [0.9, 0.85, 1.0]]
    for r in sc["regimes"].values():
        r["drift"]["mid"], r["vol"]["mid"], r["corr"] = 0.05, {"uniform": [0.15, 0.25]}, corr
    sc["regimes"]["recession"]["corr"] = [[1.0, 1.0, 0.9], [1.0, 1.0, 0.9], [0.9, 0.9, 1.0]]  # singular
    sc["regimes"]["expansion"]["drift"]["mid"] = {"triangular": [0.0, 0.05, 0.1]}
    check(sim.parse_scenario(sc))


def test_rate_knots_and_sensitivities():
    sc = two_regime(frequency="daily", horizon_months=13, report_months=[13])
    sc["rates"] = {
        "path": {0: {"uniform": [3.8, 4.2]}, 2.5: 3.9, 6: {"normal": [3.5, 0.3]}, 12: {"triangular": [2, 3, 4]}},
        "sensitivity": {"small": {"normal": [-0.06, 0.02]}, "large": -0.03},
    }
    check(sim.parse_scenario(sc))


@pytest.mark.parametrize("name", ["spreads_flat.yaml", "spreads_narrow.yaml"])
def test_driver_examples_with_drawn_knots_and_coefficients(name):
    sc = sim.load_scenario(ROOT / "docs" / "examples" / name).model_dump(mode="json", exclude_none=True)
    sc["macro"]["credit_spread"]["12"] = {"uniform": [0.4, 1.2]}
    sc["regimes"]["calm"]["drivers"]["turbulent"]["credit_spread"] = {"normal": [1.9, 0.5]}
    sc["regimes"]["calm"]["drivers"]["turbulent"]["intercept"] = {"uniform": [-5.5, -4.5]}
    sc["regimes"]["turbulent"]["duration_months"] = {"uniform": [3, 6]}
    sc["start"] = "stationary"
    check(sim.parse_scenario(sc))


@pytest.mark.parametrize("frequency", ["monthly", "weekly"])
def test_drivers_with_the_policy_rate_and_phases(frequency):
    sc = three(frequency=frequency)
    sc["macro"]["credit_spread"][5] = {"normal": [2.6, 0.5]}
    sc["rates"]["path"][6] = {"uniform": [2.5, 3.5]}
    sc["regimes"]["expansion"]["drivers"]["recession"]["intercept"] = {"triangular": [-6, -5, -4]}
    sc["regimes"]["slowdown"]["next"] = {"expansion": {"uniform": [0.4, 0.8]}, "recession": 0.4}
    sc["phases"] = [{"until_month": 3, "regimes": {"slowdown": {"duration_months": {"uniform": [2, 6]}}}}]
    check(sim.parse_scenario(sc))
    check(sim.parse_scenario({**driven(frequency=frequency), "start": "stationary"}), values={})


def test_drivers_in_the_transitions_form():
    sc = driven(frequency="weekly")
    del sc["regimes"]["bear"]["drivers"]
    sc["transitions"] = {"bear": {"bull": {"uniform": [0.02, 0.06]}, "bear": 0.96}}
    sc["regimes"]["bull"]["drivers"]["bear"]["policy_rate"] = {"normal": [0.2, 0.1]}
    sc["phases"] = [{"until_month": 2, "transitions": {"bear": {"bull": 0.1, "bear": 0.9}}}]
    check(sim.parse_scenario(sc))


def test_a_row_with_one_uncertain_entry_is_filled_without_draws():
    sc = sim.parse_scenario(everything())
    check(sc, values={})


def test_given_draws_of_transition_rows():
    """A posterior-like table: drifts, vols, correlations and whole transition rows per draw."""
    plain = sim.parse_scenario(two_regime_matrix(start={"bull": 0.6, "bear": 0.4}))
    rng = np.random.default_rng(3)
    stay = rng.uniform(0.8, 0.99, (N_DRAWS, 2))
    table = {
        "regimes.bull.drift.small": rng.normal(0.1, 0.05, N_DRAWS),
        "regimes.bear.vol.large": rng.uniform(0.2, 0.3, N_DRAWS),
        "regimes.bull.corr": rng.uniform(0.5, 0.99, N_DRAWS),
        "transitions.bull.bull": stay[:, 0],
        "transitions.bull.bear": 1 - stay[:, 0],
        "transitions.bear.bull": 1 - stay[:, 1],
        "transitions.bear.bear": stay[:, 1],
        "start.bull": stay[:, 0] - 0.3,  # given in part: bear rescaled
    }
    sc = sim.with_parameter_draws(plain, table)
    check(sc, draw_values(sc, 0, N_DRAWS))


def test_point_masses_give_the_plain_tables_bit_for_bit():
    plain = sim.parse_scenario(two_regime(frequency="weekly", rates=RATES))
    table = {"regimes.bull.duration_months": [24.0] * 3, "regimes.bear.corr": [0.9] * 3, "rates.path.6": [3.5] * 3}
    a, b = build_model(plain), build_model(sim.with_parameter_draws(plain, table), n_paths=1 << 16)
    assert b.steps.drift.shape[0] == 3
    for x, y in zip(a.steps, b.steps):
        np.testing.assert_array_equal(np.broadcast_to(x, y.shape), y)
