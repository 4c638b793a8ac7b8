"""The vectorised per-draw tables (simulator/tables.py) against the direct per-scenario builder
(tests/step_reference.py) run on each draw's plain scenario: equal to float64 rounding, for every kind of
uncertain field, phases in both transition forms, weekly steps, rates, drivers and given draws."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import BASE_SCENARIO
from exact_cases import RATES, two_regime_matrix
from step_reference import step_params

import simulator as sim
from simulator.params import steps_to_month
from simulator.tables import draw_tables
from simulator.uncertainty import draw_scenarios, draw_values

ROOT = Path(__file__).resolve().parents[1]
DRAWS = 40


def everything_uncertain(frequency: str = "monthly") -> dict:
    """Three regimes, tails, a phase, rates, a start mapping: every kind of field drawn somewhere."""
    sc = copy.deepcopy(BASE_SCENARIO)
    sc["frequency"] = frequency
    sc["rates"] = copy.deepcopy(RATES)
    ex, sl, rc = (sc["regimes"][k] for k in ("expansion", "slowdown", "recession"))
    ex["drift"]["small"] = {"uniform": [0.05, 0.15]}
    ex["vol"]["large"] = {"triangular": [0.12, 0.15, 0.2]}
    ex["corr"] = {"uniform": [0.6, 0.95]}
    ex["next"] = {"slowdown": {"uniform": [0.5, 0.9]}, "recession": 0.3}  # a row given in part: refilled
    sl["drift"]["large"] = {"normal": [0.04, 0.02]}
    sl["duration_months"] = {"uniform": [8, 16]}
    rc["vol"]["large"] = {"lognormal": [0.25, 0.1]}
    rc["tails"] = {"uniform": [4, 8]}
    rc["next"] = {"dirichlet": {"expansion": 3, "slowdown": 1}}
    sc["start"] = {"expansion": {"uniform": [0.5, 0.8]}, "slowdown": 0.3}
    sc["phases"] = [
        {
            "until_month": 6,
            "regimes": {
                "slowdown": {"vol": {"small": {"uniform": [0.25, 0.35]}}, "duration_months": {"uniform": [3, 5]}},
                "expansion": {"corr": 0.7, "tails": 6, "next": {"recession": 1.0}},
            },
        }
    ]
    sc["rates"]["path"][6] = {"normal": [3.5, 0.3]}
    sc["rates"]["sensitivity"]["small"] = {"uniform": [-0.08, -0.04]}
    return sc


def matrix_uncertain() -> dict:
    """The `transitions` form, stationary start, a phase overriding a row, drawn entries."""
    sc = two_regime_matrix()
    sc["transitions"]["bull"] = {"bull": {"uniform": [0.9, 0.98]}, "bear": 0.05}
    sc["phases"] = [{"until_month": 4, "transitions": {"bear": {"bull": {"uniform": [0.2, 0.4]}, "bear": 0.7}}}]
    sc["regimes"]["bear"]["drift"]["small"] = {"uniform": [-0.3, -0.1]}
    return sc


def drivers_uncertain() -> dict:
    sc = yaml.safe_load((ROOT / "docs" / "examples" / "spreads_narrow.yaml").read_text())
    sc["macro"]["credit_spread"][12] = {"uniform": [0.5, 0.9]}
    sc["regimes"]["calm"]["drivers"]["turbulent"]["credit_spread"] = {"normal": [1.9, 0.4]}
    sc["regimes"]["calm"]["drivers"]["turbulent"]["intercept"] = {"uniform": [-5.2, -4.6]}
    return sc


CASES = {
    "rate_cut": lambda: sim.load_scenario(ROOT / "scenarios" / "rate_cut.yaml"),
    "soft_landing": lambda: sim.load_scenario(ROOT / "scenarios" / "soft_landing.yaml"),
    "recession": lambda: sim.load_scenario(ROOT / "scenarios" / "recession.yaml"),
    "everything": lambda: sim.parse_scenario(everything_uncertain()),
    "everything weekly": lambda: sim.parse_scenario(everything_uncertain("weekly")),
    "matrix form": lambda: sim.parse_scenario(matrix_uncertain()),
    "drivers": lambda: sim.parse_scenario(drivers_uncertain()),
    "given draws": lambda: sim.with_parameter_draws(
        sim.parse_scenario(two_regime_matrix()),
        {
            "transitions.bull.bull": np.linspace(0.9, 0.99, DRAWS),
            "transitions.bull.bear": 1 - np.linspace(0.9, 0.99, DRAWS),
            "regimes.bear.vol.large": np.linspace(0.2, 0.4, DRAWS),
        },
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_draw_tables_equal_the_per_scenario_builder(name):
    sc = CASES[name]()
    assert sc.is_uncertain
    values = sc.draw_values or draw_values(sc, seed=3, n_draws=DRAWS)
    month_steps = tuple(steps_to_month(h, sc.steps_per_year) for h in range(sc.horizon_months + 1))
    first, second = sc.compare_pair
    pair = (sc.asset_keys.index(first), sc.asset_keys.index(second))
    got = draw_tables(sc, values, month_steps, pair)
    reference = [step_params(s, month_steps, pair) for s in draw_scenarios(sc, values)]
    assert len(reference) == DRAWS
    for field in got.steps._fields:
        want = np.stack([getattr(p, field) for p, _ in reference])
        np.testing.assert_allclose(getattr(got.steps, field), want, rtol=1e-12, atol=1e-15, err_msg=field)
    for i, what in enumerate(("start", "base", "step_trans")):
        want = np.stack([law[i] for _, law in reference])
        np.testing.assert_allclose(getattr(got, what), want, rtol=1e-12, atol=1e-15, err_msg=what)
    spread = {k: np.ptp(v) for k, v in values.items()}  # the draws do differ: a check with power
    assert all(s > 0 for s in spread.values()), spread
    assert not np.allclose(got.steps.cum_trans, got.steps.cum_trans[:1]) or name == "drivers"


def test_a_point_mass_draw_gives_the_plain_scenario_tables_bit_for_bit():
    data = everything_uncertain()
    plain = copy.deepcopy(data)
    centred = sim.parse_scenario(data)
    values = {k: np.full(5, v.mean()) for k, v in draw_values(centred, seed=1, n_draws=5).items()}
    month_steps = tuple(range(25))
    one = draw_tables(centred, {k: v[:1] for k, v in values.items()}, month_steps, (0, 1))
    five = draw_tables(centred, values, month_steps, (0, 1))
    for a, b in zip(one.steps, five.steps):
        np.testing.assert_array_equal(np.broadcast_to(a, b.shape), b)  # D = 1 and D = 5: the same arithmetic
    assert plain  # the scenario itself was not changed by building its tables
