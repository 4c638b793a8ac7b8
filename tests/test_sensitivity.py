"""`capsim sensitivity` and `capsim solve` (docs/sensitivity.md) against exact answers.

Exact per-draw p_outperform comes from tests/exact.py (Gaussian regimes): the exact Sobol indices of two
uniform drifts by Gauss-Legendre quadrature of it, the exact crossing of a drift by brentq on it. Estimates
must lie within Z_TOL of their reported standard errors (SALib's interval half-width / 1.96; solve's
interval half-width / 1.96), Z_TOL as in the exact tests.
"""

from __future__ import annotations

import copy
import json

import exact as ex
import numpy as np
import pytest
from click.testing import CliRunner
from exact_cases import Z_TOL, two_regime
from scipy import optimize

from simulator.cli import main
from simulator.scenario import parse_scenario
from simulator.sensitivity import sensitivity
from simulator.solve import solve

SMALL = (0.0, 0.3)  # bull small drift, uniform (annualised log return)
LARGE = (0.0, 0.15)  # bull large drift, uniform
H = 3
RATES_CASE = {"path": {0: 4.0, 3: 3.5, 12: 3.0}, "sensitivity": {"small": -0.06, "large": -0.03}}  # knot 12: no
# effect on the first three months


def case(**kw) -> dict:
    """Two Gaussian regimes over three months, monthly."""
    return two_regime(horizon_months=H, report_months=[H], **kw)


def exact_p(small: float, large: float, h: int = H, **kw) -> float:
    sc = case(**kw) if h == H else two_regime(horizon_months=h, report_months=[h], **kw)
    sc["regimes"]["bull"]["drift"] = {"small": small, "large": large}
    return ex.ExactModel(sc).mixture(h).p_outperform()


def exact_indices(n: int = 16) -> dict:
    """Exact S1 and ST of the two drifts (independent uniforms) for p_outperform at H months."""
    x, w = np.polynomial.legendre.leggauss(n)
    u, w = (x + 1) / 2, w / 2
    xs, xl = SMALL[0] + (SMALL[1] - SMALL[0]) * u, LARGE[0] + (LARGE[1] - LARGE[0]) * u
    F = np.array([[exact_p(a, b, rates=RATES_CASE) for b in xl] for a in xs])  # [small, large]
    mean = w @ F @ w
    V = w @ F**2 @ w - mean**2
    v_small = w @ (F @ w) ** 2 - mean**2  # Var E[f | small]
    v_large = w @ (w @ F) ** 2 - mean**2
    return {
        ("regimes.bull.drift.small", "S1"): v_small / V,
        ("regimes.bull.drift.small", "ST"): 1 - v_large / V,
        ("regimes.bull.drift.large", "S1"): v_large / V,
        ("regimes.bull.drift.large", "ST"): 1 - v_small / V,
    }


def uncertain_case(**kw) -> dict:
    sc = case(**kw)
    sc["regimes"]["bull"]["drift"] = {"small": {"uniform": list(SMALL)}, "large": {"uniform": list(LARGE)}}
    return sc


@pytest.fixture(scope="module")
def analysis():
    """The two uniform drifts, plus the rate knot at 12 months (past the horizon: no effect) brought in."""
    sc = uncertain_case(rates=RATES_CASE)
    scenario = parse_scenario(sc, source="<test>")
    metrics = ["p_outperform", "excess_median"]  # 1,024 paths a draw: the median's even/odd noise estimate holds
    return sensitivity(scenario, 64, 3, metrics=metrics, vary={"rates.path.12": (2.0, 4.0)}, draw_paths=1024)


def test_indices_cover_the_exact_ones(analysis):
    exact = exact_indices()
    t = analysis.table.set_index(["field", "metric"])
    for (field, index), value in exact.items():
        row = t.loc[(field, "p_outperform")]
        se = (row[f"{index}_high"] - row[f"{index}_low"]) / 2 / 1.96
        assert abs(row[index] - value) < Z_TOL * se, (field, index, row[index], value, se)
    assert exact[("regimes.bull.drift.small", "ST")] > 0.5  # the case is not trivial: both fields matter
    assert exact[("regimes.bull.drift.large", "ST")] > 0.1


def test_a_field_without_effect_gets_zero_within_its_interval(analysis):
    t = analysis.table
    rows = t[t["field"] == "rates.path.12"]
    assert len(rows) == 2  # both metrics
    for _, row in rows.iterrows():
        for index in ("S1", "ST"):
            assert row[f"{index}_low"] <= 0 <= row[f"{index}_high"], (row["metric"], index, row[index])
    # the excess median's noise share is estimated (even/odd halves) and small but not zero
    med = t[(t["metric"] == "excess_median")]
    assert (med["noise_share"] > 0).all() and (med["noise_share"] < 0.2).all()


def test_tornado_moves_each_field_between_its_quantiles(analysis):
    tor = analysis.tornado.set_index(["field", "metric"])
    row = tor.loc[("regimes.bull.drift.small", "p_outperform")]
    assert row["value_q05"] == pytest.approx(SMALL[0] + 0.05 * (SMALL[1] - SMALL[0]))
    assert row["value_q95"] == pytest.approx(SMALL[0] + 0.95 * (SMALL[1] - SMALL[0]))
    mid = (LARGE[0] + LARGE[1]) / 2
    for q in ("q05", "q95"):  # the mean of 4 draws of 16,384 paths each: conditional estimate, tiny error
        assert row[f"metric_{q}"] == pytest.approx(exact_p(row[f"value_{q}"], mid, rates=RATES_CASE), abs=0.01)
    swings = analysis.tornado[analysis.tornado["metric"] == "p_outperform"].set_index("field")["swing"]
    assert swings["regimes.bull.drift.small"] > swings["regimes.bull.drift.large"] > swings["rates.path.12"]


def test_saved_folder(analysis, tmp_path):
    out = analysis.save(tmp_path / "s")
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "sensitivity.csv", "tornado.csv", "tornado.png"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["plan_draws"] == 64 * (2 * 3 + 2) and meta["draw_paths"] == 1024


def crossing(lo: float, hi: float, h: int) -> float:
    """The bull small drift at which the exact p_outperform at h months is 0.5 (large drift 0.10)."""
    return optimize.brentq(lambda x: exact_p(x, 0.10, h) - 0.5, lo, hi, xtol=1e-10)


def test_solve_recovers_the_exact_crossing():
    sc = parse_scenario(two_regime(horizon_months=12, report_months=[12]), source="<test>")
    res = solve(sc, {"regimes.bull.drift.small": (-0.1, 0.3)}, "p_outperform", 0.5, 200_000, 1)
    a = res.answer
    assert a["crossed"] and a["converged"]
    exact = crossing(-0.1, 0.3, 12)
    se = (a["high"] - a["low"]) / 2 / 1.96
    assert abs(a["value"] - exact) < Z_TOL * se, (a, exact)
    assert res.meta["evaluations"] <= 10  # within ten runs' worth of paths
    assert se < 0.01  # an interval that says something


def test_solve_says_not_crossed_with_both_ends():
    sc = parse_scenario(two_regime(horizon_months=12, report_months=[12]), source="<test>")
    res = solve(sc, {"regimes.bull.drift.small": (0.3, 0.5)}, "p_outperform", 0.5, 100_000, 1)
    a = res.answer
    assert not a["crossed"] and res.meta["evaluations"] == 2
    for end, x in (("low", 0.3), ("high", 0.5)):
        exact = exact_p(x, 0.10, 12)
        assert exact > 0.5
        assert abs(a[f"metric_at_{end}"] - exact) < Z_TOL * a[f"se_at_{end}"]


def test_solve_most_plausible_point_of_two_fields():
    sc = parse_scenario(uncertain_case(), source="<test>")
    res = solve(
        sc,
        {"regimes.bull.drift.small": SMALL, "regimes.bull.drift.large": LARGE},
        "p_outperform",
        0.5,
        65_536,
        2,
        horizon_months=H,
    )
    a = res.answer
    assert a["found"]
    x = a["fields"]
    exact = exact_p(x["regimes.bull.drift.small"], x["regimes.bull.drift.large"])
    assert abs(exact - 0.5) < Z_TOL * a["metric_se"]

    # on the crossing line p = 0.5 (small drift ~ large drift + c), the closest point to the medians in normal
    # scores: no point of the exact line is nearer
    def distance_on_line(zl):
        xl = LARGE[0] + (LARGE[1] - LARGE[0]) * ex.stats.norm.cdf(zl)
        xs = optimize.brentq(lambda s: exact_p(s, xl) - 0.5, -1.0, 1.0)
        us = (xs - SMALL[0]) / (SMALL[1] - SMALL[0])
        return np.hypot(zl, ex.stats.norm.ppf(us)) if 0 < us < 1 else np.inf

    best = optimize.minimize_scalar(distance_on_line, bounds=(-3, 3), method="bounded").fun
    assert a["distance"] == pytest.approx(best, abs=0.1)
    assert {"iterate", "distance", "z_regimes.bull.drift.small"} <= set(res.table.columns)


BAD = [
    (["solve", "--set", "regimes.bull.nope.small=0:1"], "regimes.bull.nope.small"),
    (["solve", "--set", "regimes.bull.drift.small=0.3:0.1"], "regimes.bull.drift.small"),
    (["solve", "--set", "regimes.bull.drift.small=0:0.3", "--target", "1.5"], "p_outperform"),
    (
        ["solve", "--set", "regimes.bull.drift.small=0:0.3", "--set", "regimes.bear.vol.small=0.2:0.4"],
        "regimes.bear.vol.small",
    ),
    (["solve", "--set", "regimes.bull.vol.small=-0.1:0.3"], "regimes.bull.vol.small"),
    (["sensitivity", "--vary", "regimes.bull.nope.small=0:1"], "regimes.bull.nope.small"),
    (["sensitivity", "--vary", "regimes.bear.vol.small"], "regimes.bear.vol.small"),
    (["sensitivity", "--vary", "regimes.bear.vol.small=0.4:0.2"], "regimes.bear.vol.small"),
    (["sensitivity", "--metric", "small_var99"], "small_var99"),
]


@pytest.mark.parametrize("args,field", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_naming_the_field(tmp_path, args, field):
    import yaml

    path = tmp_path / "case.yaml"
    sc = copy.deepcopy(uncertain_case()) if args[0] == "sensitivity" else case()
    path.write_text(yaml.safe_dump(sc))
    out = tmp_path / "out"
    size = ["--paths", "20000"] if args[0] == "solve" else ["--samples", "2"]
    res = CliRunner().invoke(main, [args[0], str(path), *args[1:], *size, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert field in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_sensitivity_without_uncertain_field_exits_2(tmp_path):
    import yaml

    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(case()))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--samples", "2", "--out", str(out)])
    assert res.exit_code == 2 and "no uncertain field" in res.output and "--vary" in res.output
    assert not out.exists()


def test_a_horizon_that_is_not_kept_exits_2(tmp_path):
    import yaml

    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(uncertain_case()))
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--samples", "2", "--horizon", "2", "--horizon", "3"])
    assert res.exit_code == 2 and "horizon 2 months" in res.output
