"""Parameter uncertainty (docs/scenarios.md, "Distributions"; docs/outputs.md, uncertainty.csv).

- point masses reproduce the plain scenario bit for bit;
- with a uniform drift on a two-regime Gaussian scenario, each draw's p_outperform equals the exact value
  (tests/exact.py) at that draw's drift, and the pooled p_outperform the exact value averaged over the uniform
  (Gauss-Legendre quadrature), within Z_TOL Monte Carlo standard errors;
- Dirichlet, beta and triangular draws have the means and variances of their closed forms, within Z_TOL
  sampling standard errors;
- supports that break a field's rule are refused, naming the field;
- draws depend on the seed and the draw index only; results on neither chunking nor devices;
- externally given draws (``with_parameter_draws``).
Seeds are fixed, so every test is deterministic.
"""

from __future__ import annotations

import copy

import exact as ex
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from conftest import BASE_SCENARIO
from exact_cases import RATES, Z_TOL, two_regime, two_regime_matrix

import simulator as sim
from simulator import summary as summary_module
from simulator.cli import main
from simulator.engine import BLOCK_PATHS
from simulator.scenario import DEFAULT_DRAW_PATHS, DRAW_METRICS, Dirichlet, Dist
from simulator.uncertainty import draw_values, sample


def everything() -> dict:
    """Three regimes, Student-t tails, a phase, a rates overlay and a start mapping."""
    sc = copy.deepcopy(BASE_SCENARIO)
    sc["rates"] = copy.deepcopy(RATES)
    sc["start"] = {"expansion": 0.7, "slowdown": 0.3}
    sc["phases"] = [{"until_month": 6, "regimes": {"slowdown": {"vol": {"small": 0.3}, "duration_months": 4}}}]
    return sc


def point_masses(sc: dict) -> dict:
    """The scenario with (nearly) every kind of field given as a point mass of its own value."""
    u = copy.deepcopy(sc)
    ex_, sl, rc = (u["regimes"][k] for k in ("expansion", "slowdown", "recession"))
    ex_["drift"]["small"] = {"uniform": [0.10, 0.10]}
    ex_["vol"]["large"] = {"triangular": [0.15, 0.15, 0.15]}
    ex_["corr"] = {"uniform": [0.85, 0.85]}
    sl["drift"]["large"] = {"normal": [0.04, 0.0]}
    sl["duration_months"] = {"uniform": [12, 12]}
    rc["vol"]["large"] = {"lognormal": [0.25, 0.0]}
    rc["tails"] = {"uniform": [5, 5]}
    ex_["next"] = {"slowdown": {"uniform": [0.7, 0.7]}, "recession": 0.3}
    u["start"] = {"expansion": {"triangular": [0.7, 0.7, 0.7]}, "slowdown": 0.3}
    u["phases"][0]["regimes"]["slowdown"]["vol"]["small"] = {"uniform": [0.3, 0.3]}
    u["rates"]["path"][6] = {"normal": [3.5, 0.0]}
    u["rates"]["sensitivity"]["small"] = {"uniform": [-0.06, -0.06]}
    return u


N_POINT = 3 * BLOCK_PATHS + 123  # four blocks, the last one partly filled: four parameter draws


def test_point_masses_reproduce_the_plain_scenario_bit_for_bit():
    plain = sim.parse_scenario(everything())
    uncertain = sim.parse_scenario(point_masses(everything()))
    assert uncertain.is_uncertain and not plain.is_uncertain
    a = sim.simulate(plain, n_paths=N_POINT, seed=5)
    b = sim.simulate(uncertain, n_paths=N_POINT, seed=5)
    G = b.model.draw_paths
    assert b.model.steps.drift.shape[0] == -(-N_POINT // G)  # one parameter set per group of G paths, all equal
    sa, sb = a.summary(), b.summary()
    assert list(sb.columns) == list(sa.columns) + list(DRAW_METRICS)
    figures = [c for c in sa.columns if not c.endswith("_se")]  # errors: from paths in a, from draws in b
    pd.testing.assert_frame_equal(sa[figures], sb[figures], check_exact=True)
    pd.testing.assert_frame_equal(a.fan(), b.fan(), check_exact=True)
    pd.testing.assert_frame_equal(a.draws(12), b.draws(12), check_exact=True)
    per_draw = b.uncertainty()
    assert (per_draw["regimes.expansion.drift.small"] == 0.10).all()
    assert (per_draw["rates.path.6"] == 3.5).all()


# --------------------------------------------------------------------------------------------
# A uniform drift against the exact reference

LOW, HIGH = 0.02, 0.26  # bull drift of small caps ~ uniform
N_BLOCKS = 48


def uniform_drift_scenario() -> dict:
    sc = two_regime()
    sc["regimes"]["bull"]["drift"]["small"] = {"uniform": [LOW, HIGH]}
    return sc


def exact_p(drift: float, horizons) -> np.ndarray:
    sc = two_regime()
    sc["regimes"]["bull"]["drift"]["small"] = float(drift)
    m = ex.ExactModel(sc)
    return np.array([m.mixture(h).p_outperform() for h in horizons])


@pytest.fixture(scope="module")
def uniform_run():
    sc = sim.parse_scenario(uniform_drift_scenario())
    return sim.simulate(sc, n_paths=N_BLOCKS * BLOCK_PATHS, seed=11, draw_paths=BLOCK_PATHS)  # a draw per block


def test_each_draw_matches_the_exact_value_at_its_drift(uniform_run):
    res = uniform_run
    horizons = list(res.model.report_months)
    table = res.uncertainty()
    assert table["draw"].nunique() == N_BLOCKS and (table["n_paths"] == BLOCK_PATHS).all()
    drifts = table.groupby("draw")["regimes.bull.drift.small"].first().to_numpy()
    assert drifts.min() >= LOW and drifts.max() <= HIGH and len(set(drifts)) == N_BLOCKS
    lines, bad = [], []
    for d, drift in enumerate(drifts):
        exact = exact_p(drift, horizons)
        rows = table[table["draw"] == d].set_index("horizon_months")
        for h, p in zip(horizons, exact):
            se = ex.se_prop(p, BLOCK_PATHS)
            z = (rows.loc[h, "p_outperform"] - p) / se
            lines.append(
                f"draw {d} drift {drift:.4f} h={h} est={rows.loc[h, 'p_outperform']:.4f} exact={p:.4f} z={z:+.2f}"
            )
            if abs(z) >= Z_TOL:
                bad.append(lines[-1])
    print("\n".join(lines))
    assert not bad, "\n".join(bad)
    # the spread across draws is the parameter's, not Monte Carlo error: it follows the drift
    at_12 = table[table["horizon_months"] == 12]["p_outperform"].to_numpy()
    assert np.corrcoef(drifts, at_12)[0, 1] > 0.95


def test_pooled_p_outperform_is_the_exact_value_averaged_over_the_uniform(uniform_run):
    res = uniform_run
    horizons = list(res.model.report_months)
    x, w = np.polynomial.legendre.leggauss(24)
    nodes = LOW + (HIGH - LOW) * (x + 1) / 2
    values = np.array([exact_p(v, horizons) for v in nodes])  # [nodes, H]
    mean = (w / 2) @ values  # E over the uniform
    var = (w / 2) @ (values - mean) ** 2  # Var over the uniform of the exact p
    binomial = (w / 2) @ (values * (1 - values))
    n, D = N_BLOCKS * BLOCK_PATHS, N_BLOCKS
    se = np.sqrt(var / D + binomial / n)  # D blocks, each one draw of the drift, then its paths
    summary = res.summary().set_index("horizon_months")
    for h, m, s in zip(horizons, mean, se):
        z = (summary.loc[h, "p_outperform"] - m) / s
        print(f"h={h} pooled={summary.loc[h, 'p_outperform']:.5f} averaged exact={m:.5f} se={s:.5f} z={z:+.2f}")
        assert abs(z) < Z_TOL
        # the across-draw columns are the quantiles of the per-draw values
        per_draw = res.uncertainty().query("horizon_months == @h")["p_outperform"]
        assert summary.loc[h, "p_outperform_draws_q50"] == pytest.approx(np.quantile(per_draw, 0.5), abs=0)


@pytest.mark.parametrize("G", [8, 256])
def test_small_draw_groups_average_the_exact_value_over_the_uniform(G):
    """Many draws of G paths each: the pooled p_outperform is the exact value averaged over the uniform drift,
    within the error of D draws of the drift plus the paths' binomial error (an upper bound for the conditional
    estimator), and the reported error is of that size."""
    sc = sim.parse_scenario(uniform_drift_scenario())
    n = 4 * BLOCK_PATHS
    res = sim.simulate(sc, n_paths=n, seed=12, draw_paths=G)
    D = n // G
    assert res.model.n_draws == D and res.meta["parameter_draws"]["draw_paths"] == G
    horizons = list(res.model.report_months)
    x, w = np.polynomial.legendre.leggauss(24)
    values = np.array([exact_p(v, horizons) for v in LOW + (HIGH - LOW) * (x + 1) / 2])
    mean = (w / 2) @ values
    var = (w / 2) @ (values - mean) ** 2
    se = np.sqrt(var / D + ((w / 2) @ (values * (1 - values))) / n)
    summary = res.summary().set_index("horizon_months")
    for h, m, s in zip(horizons, mean, se):
        got, reported = summary.loc[h, "p_outperform"], summary.loc[h, "p_outperform_se"]
        print(f"G={G} h={h} pooled={got:.5f} exact={m:.5f} bound={s:.5f} reported={reported:.5f}")
        assert abs(got - m) < Z_TOL * s
        assert np.sqrt(var[horizons.index(h)] / D) <= reported * 1.3 and reported <= s * 1.3  # between the bounds
    table = res.uncertainty()
    assert table["draw"].nunique() == D and (table["n_paths"] == G).all()


def test_each_group_of_paths_simulates_with_its_draw():
    """Group g of G paths (paths [g G, (g + 1) G)) runs with draw g mod D, across blocks, calls and a partly filled
    last block: with the drift drawn and the volatilities near zero, each path's log return is its draw's drift."""
    base = two_regime()
    for r in base["regimes"].values():
        r["vol"] = {"small": 1e-7, "large": 1e-7}
    D, G, n = 7, 64, 2 * BLOCK_PATHS + 1000
    drifts = np.linspace(-0.3, 0.3, D)
    sc = sim.with_parameter_draws(
        sim.parse_scenario(base), {"regimes.bull.drift.small": drifts, "regimes.bear.drift.small": drifts}
    )
    for per_call in (BLOCK_PATHS, 2 * BLOCK_PATHS):
        res = sim.simulate(sc, n_paths=n, seed=3, draw_paths=G, batch_paths=per_call)
        years = np.array(res.model.report_months) / 12
        got = res._stats.kept_reports[:, 0, :n].astype(np.float64)  # [R, paths] log return of small caps
        want = drifts[(np.arange(n) // G) % D][None, :] * years[:, None]
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert len(res.uncertainty()["draw"].unique()) == D


# --------------------------------------------------------------------------------------------
# Distributions against their closed forms

N_SAMPLE = 200_000


def check_moments(x: np.ndarray, mean: float, var: float, label: str) -> None:
    """Sample mean and variance against closed forms, within Z_TOL sampling standard errors (that of the
    variance from the sample's fourth central moment)."""
    c = x - x.mean()
    se_mean = np.sqrt(var / len(x))
    se_var = np.sqrt((np.mean(c**4) - var**2) / len(x))
    z_mean, z_var = (x.mean() - mean) / se_mean, (x.var(ddof=1) - var) / se_var
    print(
        f"{label}: mean {x.mean():.5f} vs {mean:.5f} (z {z_mean:+.2f}); "
        f"var {x.var(ddof=1):.6f} vs {var:.6f} (z {z_var:+.2f})"
    )
    assert abs(z_mean) < Z_TOL and abs(z_var) < Z_TOL


def test_dirichlet_row_draws_have_the_dirichlet_means_and_variances():
    sc = copy.deepcopy(BASE_SCENARIO)
    alpha = {"slowdown": 7.0, "recession": 3.0}
    sc["regimes"]["expansion"]["next"] = {"dirichlet": alpha}
    sc["start"] = {"dirichlet": {"expansion": 4.0, "slowdown": 1.5, "recession": 0.5}}
    values = draw_values(sim.parse_scenario(sc), seed=3, n_draws=N_SAMPLE)
    for row, conc in (
        ("regimes.expansion.next", alpha),
        ("start", {"expansion": 4.0, "slowdown": 1.5, "recession": 0.5}),
    ):
        a0 = sum(conc.values())
        total = sum(values[f"{row}.{k}"] for k in conc)
        np.testing.assert_allclose(total, 1.0, atol=1e-12)
        for k, a in conc.items():
            check_moments(values[f"{row}.{k}"], a / a0, a * (a0 - a) / (a0**2 * (a0 + 1)), f"{row}.{k}")


@pytest.mark.parametrize("a, b", [(8.0, 2.0), (0.7, 1.3)])
def test_beta_draws_of_a_correlation_and_of_a_probability(a, b):
    rng = np.random.default_rng(1)
    dist = Dist(beta=[a, b])
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    check_moments(sample(dist, "start", rng, N_SAMPLE), mean, var, f"beta({a}, {b}) probability")
    check_moments(sample(dist, "corr", rng, N_SAMPLE), 2 * mean - 1, 4 * var, f"beta({a}, {b}) correlation")


@pytest.mark.parametrize("lo, mode, hi", [(0.085, 0.11, 0.20), (12, 12, 36), (-1.0, 0.5, 0.5)])
def test_triangular_draws(lo, mode, hi):
    x = sample(Dist(triangular=[lo, mode, hi]), "drift", np.random.default_rng(2), N_SAMPLE)
    assert x.min() >= lo and x.max() <= hi
    var = (lo**2 + mode**2 + hi**2 - lo * mode - lo * hi - mode * hi) / 18
    check_moments(x, (lo + mode + hi) / 3, var, f"triangular {lo, mode, hi}")


def test_point_masses_give_the_number_exactly():
    rng = np.random.default_rng(0)
    for dist in (
        Dist(uniform=[0.1, 0.1]),
        Dist(triangular=[0.1, 0.1, 0.1]),
        Dist(normal=[0.1, 0]),
        Dist(lognormal=[0.1, 0]),
    ):
        assert (sample(dist, "drift", rng, 100) == 0.1).all(), dist
    assert sample(Dirichlet(dirichlet={"a": 1, "b": 2}), "next", rng, 5).shape == (5, 2)


def test_draw_d_depends_on_the_seed_and_d_only():
    base = copy.deepcopy(BASE_SCENARIO)
    base["regimes"]["expansion"]["drift"]["small"] = {"normal": [0.1, 0.03]}
    more = copy.deepcopy(base)
    more["regimes"]["slowdown"]["vol"]["small"] = {"uniform": [0.2, 0.3]}
    more["uncertainty"] = {"draws": 7}
    path = "regimes.expansion.drift.small"
    five = draw_values(sim.parse_scenario(base), seed=4, n_draws=5)[path]
    np.testing.assert_array_equal(draw_values(sim.parse_scenario(more), seed=4, n_draws=9)[path][:5], five)
    assert not np.array_equal(draw_values(sim.parse_scenario(base), seed=5, n_draws=5)[path], five)


# --------------------------------------------------------------------------------------------
# Blocks and draws, chunking, devices, kept paths


@pytest.mark.parametrize("G", [BLOCK_PATHS, 256])
def test_draws_d_gives_group_g_draw_g_mod_d_and_the_same_numbers_whatever_the_chunking(G):
    import jax

    d = copy.deepcopy(BASE_SCENARIO)
    d["regimes"]["expansion"]["drift"]["small"] = {"uniform": [0.0, 0.2]}
    d["uncertainty"] = {"draws": 3, "draw_paths": G}
    sc = sim.parse_scenario(d)
    n = 7 * BLOCK_PATHS + 5
    runs = [
        sim.simulate(sc, n_paths=n, seed=2, horizon_months=12, devices=k, batch_paths=b)
        for k, b in ((1, None), (len(jax.devices()), 3 * BLOCK_PATHS))
    ]
    table = runs[0].uncertainty()
    paths = table.groupby("draw")["n_paths"].first().to_numpy()
    group = np.arange(n) // G
    np.testing.assert_array_equal(paths, np.bincount(group % 3))  # G = a block: 0,3,6 | 1,4,7 | 2,5
    assert table.groupby("draw")["regimes.expansion.drift.small"].nunique().eq(1).all()
    paths = runs[0].draws(12)
    excess = (paths["small"] - paths["large"]).to_numpy()
    for d in range(3):  # each draw's figures from its own paths (every path is kept here)
        mine = excess[group % 3 == d]
        row = table[(table["draw"] == d) & (table["horizon_months"] == 12)].iloc[0]
        share = np.mean(mine > 0)  # the conditional estimate agrees with the share within the share's error
        assert row["excess_median"] == np.median(mine)
        assert abs(row["p_outperform"] - share) < 4.5 * np.sqrt(share * (1 - share) / len(mine))
    for other in runs[1:]:
        pd.testing.assert_frame_equal(runs[0].summary(), other.summary(), check_exact=True)
        pd.testing.assert_frame_equal(table, other.uncertainty(), check_exact=True)


def test_per_draw_medians_are_exact_with_one_block_per_draw_beyond_the_kept_paths(monkeypatch):
    """The default (one draw per block) takes a draw's excess median from all its paths, kept or not."""
    d = copy.deepcopy(BASE_SCENARIO)
    d["regimes"]["expansion"]["drift"]["small"] = {"uniform": [0.0, 0.2]}
    sc = sim.parse_scenario(d)
    n = 5 * BLOCK_PATHS + 40
    every = sim.simulate(sc, n_paths=n, seed=8, horizon_months=12).uncertainty()
    monkeypatch.setattr(summary_module, "MAX_KEEP_PATHS", 2 * BLOCK_PATHS + 100)  # blocks 2..5 not kept (whole)
    some = sim.simulate(sc, n_paths=n, seed=8, horizon_months=12)
    assert some.meta["kept_paths"] == 2 * BLOCK_PATHS + 100
    pd.testing.assert_frame_equal(every, some.uncertainty(), check_exact=True)


def test_exact_method_refuses_uncertain_scenarios_and_auto_steps():
    d = two_regime()
    d["regimes"]["bull"]["vol"]["small"] = {"uniform": [0.18, 0.22]}
    sc = sim.parse_scenario(d)
    with pytest.raises(sim.MethodError, match="parameter uncertainty"):
        sim.simulate(sc, n_paths=1000, method="exact")
    assert sim.simulate(sc, n_paths=1000, method="auto").meta["method"] == "step"


# --------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    "edit, field, words",
    [
        (
            lambda s: s["regimes"]["expansion"]["vol"].update(small={"uniform": [-0.1, 0.3]}),
            "regimes.expansion.vol.small",
            "a volatility cannot be negative; uniform [-0.1, 0.3] reaches below 0",
        ),
        (
            lambda s: s["regimes"]["expansion"]["vol"].update(small={"normal": [0.2, 0.05]}),
            "regimes.expansion.vol.small",
            "normal is not allowed",
        ),
        (
            lambda s: s["regimes"]["expansion"].update(corr={"uniform": [0.5, 1.2]}),
            "regimes.expansion.corr",
            "reaches above 1",
        ),
        (
            lambda s: s["regimes"]["recession"].update(tails={"uniform": [2, 6]}),
            "regimes.recession.tails",
            "reaches 2 or below",
        ),
        (
            lambda s: s["regimes"]["slowdown"].update(duration_months={"lognormal": [12, 0.2]}),
            "regimes.slowdown.duration_months",
            "lognormal is not allowed",
        ),
        (
            lambda s: s["regimes"]["slowdown"].update(duration_months={"uniform": [0.5, 6]}),
            "regimes.slowdown.duration_months",
            "at least one step",
        ),
        (
            lambda s: s["regimes"]["slowdown"].update(duration_months={"triangular": [6, 4, 8]}),
            "regimes.slowdown.duration_months",
            "low <= mode <= high",
        ),
        (
            lambda s: s["regimes"]["expansion"]["drift"].update(small={"beta": [2, 2]}),
            "regimes.expansion.drift.small",
            "beta is not allowed",
        ),
        (
            lambda s: s["regimes"]["expansion"].update(next={"slowdown": {"uniform": [0.5, 1.1]}, "recession": 0.3}),
            "regimes.expansion.next.slowdown",
            "a probability must lie in [0, 1]",
        ),
        (
            lambda s: s["regimes"]["expansion"].update(
                next={"slowdown": {"beta": [7, 3]}, "recession": {"beta": [3, 7]}}
            ),
            "regimes.expansion.next",
            "at most one entry",
        ),
        (
            lambda s: s["regimes"]["expansion"].update(next={"dirichlet": {"slowdown": 7, "recession": -1}}),
            "regimes.expansion.next",
            "concentrations",
        ),
        (
            lambda s: s["regimes"]["expansion"].update(next={"dirichlet": {"slowdown": 7, "expansion": 1}}),
            "regimes.expansion.next.expansion",
            "itself",
        ),
        (
            lambda s: s.update(
                phases=[{"until_month": 6, "regimes": {"slowdown": {"vol": {"small": {"uniform": [-0.2, 0.3]}}}}}]
            ),
            "phases.0.regimes.slowdown.vol.small",
            "cannot be negative",
        ),
        (lambda s: s.update(uncertainty={"draws": 0}), "uncertainty.draws", "at least 1"),
        (
            lambda s: s.update(expect=[{"metric": "p_outperform_draws_q05", "horizon_months": 12, "above": 0.5}]),
            "expect.0.metric",
            "unknown metric",
        ),
    ],
)
def test_a_support_that_breaks_a_rule_is_refused_naming_the_field(reject, edit, field, words):
    sc = copy.deepcopy(BASE_SCENARIO)
    edit(sc)
    err = reject(sc, field)
    assert any(path == field and words in msg for path, msg in err.problems), err.problems


def test_valid_distributions_everywhere_are_accepted(accept):
    sc = everything()
    sc["regimes"]["expansion"]["drift"]["small"] = {"normal": [0.11, 0.03]}
    sc["regimes"]["expansion"]["vol"]["small"] = {"lognormal": [0.2, 0.1]}
    sc["regimes"]["expansion"]["corr"] = {"beta": [18, 2]}
    sc["regimes"]["expansion"]["next"] = {"dirichlet": {"slowdown": 7, "recession": 3}}
    sc["regimes"]["slowdown"]["duration_months"] = {"triangular": [6, 12, 24]}
    sc["regimes"]["recession"]["tails"] = {"uniform": [3, 8]}
    sc["start"] = {"expansion": {"beta": [7, 3]}, "slowdown": 0.3}
    sc["rates"]["path"][12] = {"uniform": [3.0, 3.25]}
    sc["rates"]["sensitivity"]["small"] = {"uniform": [-0.10, -0.04]}
    sc["uncertainty"] = {"draws": 64}
    sc["expect"] = [{"metric": "excess_median_draws_q95", "horizon_months": 12, "below": 1.0}]
    parsed = accept(sc)
    assert parsed.is_uncertain and parsed.uncertainty.draws == 64


def test_validate_names_the_field_and_exits_2(write_scenario):
    sc = copy.deepcopy(BASE_SCENARIO)
    sc["regimes"]["expansion"]["vol"]["small"] = {"uniform": [-0.1, 0.3]}
    r = CliRunner().invoke(main, ["validate", str(write_scenario(sc))])
    assert r.exit_code == 2
    assert (
        "regimes.expansion.vol.small: a volatility cannot be negative; uniform [-0.1, 0.3] reaches below 0" in r.output
    )


# --------------------------------------------------------------------------------------------
# Externally given draws, outputs


def test_given_draws_run_group_by_group_and_constant_ones_reproduce_the_file():
    plain = sim.parse_scenario(two_regime())
    n = 3 * BLOCK_PATHS
    same = sim.with_parameter_draws(
        plain, {"regimes.bull.drift.small": [0.14, 0.14], "regimes.bull.duration_months": [24, 24]}
    )
    a, b = sim.simulate(plain, n_paths=n, seed=1), sim.simulate(same, n_paths=n, seed=1)
    assert b.meta["parameter_draws"]["given"]
    figures = [c for c in a.summary().columns if not c.endswith("_se")]  # errors: from paths, from draws
    pd.testing.assert_frame_equal(a.summary()[figures], b.summary()[figures], check_exact=True)
    varied = sim.with_parameter_draws(
        plain, {"regimes.bull.drift.small": [0.0, 0.3], "regimes.bear.vol.small": [0.3, 0.4]}
    )
    table = sim.simulate(varied, n_paths=n, seed=1).uncertainty()
    np.testing.assert_array_equal(table.groupby("draw")["regimes.bull.drift.small"].first(), [0.0, 0.3])
    np.testing.assert_array_equal(table.groupby("draw")["n_paths"].first(), [n // 2, n // 2])  # groups alternate
    p = table[table["horizon_months"] == 24]["p_outperform"].to_numpy()
    assert p[1] > p[0] + 0.1


def test_given_draws_are_checked_naming_the_field():
    plain = sim.parse_scenario(two_regime())
    cases = {
        "regimes.bull.vol.small": (
            [0.2, -0.1],
            "a volatility cannot be negative; the range [-0.1, 0.2] of the draws reaches below 0",
        ),
        "regimes.bull.drift.tiny": ([0.1, 0.2], "not a field"),
        "regimes.bull.next.bear": ([0.5, 1.5], "a probability must lie in [0, 1]"),
    }
    for path, (values, words) in cases.items():
        with pytest.raises(sim.ScenarioError) as err:
            sim.with_parameter_draws(plain, {path: values})
        assert any(p == path and words in m for p, m in err.value.problems), err.value.problems
    matrix = sim.parse_scenario(two_regime_matrix())
    ok = sim.with_parameter_draws(matrix, {"transitions.bull.bull": [0.9, 0.95], "transitions.bull.bear": [0.1, 0.05]})
    assert ok.draw_values["transitions.bull.bear"].tolist() == [0.1, 0.05]
    with pytest.raises(sim.ScenarioError, match="transitions.bull: the given draws must sum to 1.*draw 1 sums to 1.05"):
        sim.with_parameter_draws(matrix, {"transitions.bull.bull": [0.9, 0.95], "transitions.bull.bear": [0.1, 0.1]})
    with pytest.raises(sim.ScenarioError, match="same number of draws"):
        sim.with_parameter_draws(plain, {"regimes.bull.drift.small": [0.1, 0.2], "regimes.bear.drift.small": [0.1]})


def test_run_writes_uncertainty_csv_and_shows_the_interval(tmp_path, write_scenario):
    sc = uniform_drift_scenario()
    sc["expect"] = [{"metric": "p_outperform_draws_q95", "horizon_months": 12, "above": "p_outperform_draws_q05"}]
    path = write_scenario(sc)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(path), "--paths", str(3 * BLOCK_PATHS), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "draws 5%" in r.output and "draws 95%" in r.output
    table = pd.read_csv(out / "uncertainty.csv")
    assert list(table.columns[:6]) == ["scenario", "draw", "horizon_months", "n_paths", "p_outperform", "excess_median"]
    G = DEFAULT_DRAW_PATHS
    assert "regimes.bull.drift.small" in table.columns and table["draw"].nunique() == 3 * BLOCK_PATHS // G
    summary = pd.read_csv(out / "summary.csv")
    assert set(DRAW_METRICS) <= set(summary.columns)
    assert (summary["p_outperform_draws_q05"] <= summary["p_outperform_draws_q95"]).all()
    r = CliRunner().invoke(main, ["check", str(path), "--paths", str(3 * BLOCK_PATHS)])
    assert r.exit_code == 0 and "PASS" in r.output, r.output
    meta = yaml.safe_load((out / "meta.json").read_text())
    assert meta["parameters"]["regimes"]["bull"]["drift"]["small"] == {"uniform": [LOW, HIGH]}


def test_a_run_without_fan_paths_has_the_same_figures_and_refuses_the_fan():
    sc = sim.parse_scenario(uniform_drift_scenario())
    a = sim.simulate(sc, n_paths=5 * BLOCK_PATHS, seed=4, draw_paths=64)
    b = sim.simulate(sc, n_paths=5 * BLOCK_PATHS, seed=4, draw_paths=64, fan=False)
    pd.testing.assert_frame_equal(a.summary(), b.summary(), check_exact=True)
    pd.testing.assert_frame_equal(a.uncertainty(), b.uncertainty(), check_exact=True)
    assert b.meta["fan_paths"] == 0
    with pytest.raises(sim.CapsimError, match="no fan paths"):
        b.fan()
