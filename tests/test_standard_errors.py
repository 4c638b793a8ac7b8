"""The reported standard errors are right: over many seeds, the spread of the estimates matches the mean reported
standard error, for a plain scenario (independent paths) and for one with parameter uncertainty (paths of a draw
share it: batch means over draws); and the conditional estimator is unbiased and much sharper than the share of
paths.

The spread is the sample sd of S estimates (S seeds); for a normal sample its relative standard error is
1 / sqrt(2 (S - 1)). A reported error from U independent units with U - 1 degrees of freedom averages
c4(U) sigma (c4: the bias of a sample sd), so the ratio sd / (mean reported se / c4) must be 1 within four of
those relative errors.
"""

from __future__ import annotations

import copy
import math

import exact as ex
import numpy as np
import pytest
from exact_cases import two_regime
from scipy.special import gammaln

import simulator as sim
from simulator.engine import BLOCK_PATHS, run_blocks
from simulator.shipped import find_shipped
from simulator.summary import batch_means_se

SEEDS = 200


def c4(n: int) -> float:
    """E[sample sd] / sigma for n normal values."""
    return math.sqrt(2 / (n - 1)) * math.exp(gammaln(n / 2) - gammaln((n - 1) / 2))


def short(sc: dict) -> dict:
    """The scenario over 12 months, reported at 3 and 12."""
    sc = copy.deepcopy(sc)
    sc.update(horizon_months=12, report_months=[3, 12])
    return sc


def spread_over_seeds(scenario, n_paths: int, columns) -> dict:
    """column -> (estimates [S, R], reported standard errors [S, R]) over SEEDS seeds."""
    out = {c: ([], []) for c in columns}
    for seed in range(SEEDS):
        s = sim.simulate(scenario, n_paths=n_paths, seed=seed, fan_in_background=False).summary()
        for c in columns:
            out[c][0].append(s[c].to_numpy())
            out[c][1].append(s[f"{c}_se"].to_numpy())
    return {c: (np.array(v), np.array(e)) for c, (v, e) in out.items()}


def assert_calibrated(values, ses, units: int, label: str):
    band = 4 / math.sqrt(2 * (SEEDS - 1))
    ratio = values.std(axis=0, ddof=1) / (ses.mean(axis=0) / c4(units))
    print(f"{label}: sd / mean se = {np.round(ratio, 3)} (band 1 +- {band:.3f})")
    assert np.all(np.abs(ratio - 1) < band), (label, ratio)


def test_standard_errors_match_the_spread_over_seeds_without_uncertainty():
    """Plain scenario, two blocks a run: the conditional estimate's and the share's errors are both right,
    and the conditional estimate is unbiased against the exact answer within its (small) error."""
    data = short(two_regime())
    scenario = sim.parse_scenario(data, source="test")
    n = 2 * BLOCK_PATHS
    runs = spread_over_seeds(scenario, n, ["p_outperform", "p_outperform_count", "small_p_loss"])
    for column, (values, ses) in runs.items():
        assert_calibrated(values, ses, n, column)
    exact = ex.exact_summary(data, [3, 12])
    values, ses = runs["p_outperform"]
    for r, h in enumerate((3, 12)):  # the mean of 200 seeds: its error is the reported one / sqrt(200)
        z = (values[:, r].mean() - exact[h]["p_outperform"]) / (ses[:, r].mean() / math.sqrt(SEEDS))
        assert abs(z) < 4.5, (h, z)
    counts, count_ses = runs["p_outperform_count"]
    assert np.all(ses.mean(axis=0) < count_ses.mean(axis=0) / 3)  # the variance falls 9x or more


@pytest.mark.parametrize("G, blocks", [(BLOCK_PATHS, 6), (64, 2)])
def test_standard_errors_match_the_spread_over_seeds_with_parameter_draws(G, blocks):
    """Uncertain bull drift, a draw per group of G paths: paths of a draw share it, so the error comes from the
    draws (batch means): 6 draws of a block each, or 512 draws of 64 paths. With few draws the binomial error
    of the share of paths would be several times too small."""
    data = short(two_regime())
    data["regimes"]["bull"]["drift"]["small"] = {"uniform": [0.0, 0.3]}
    data["uncertainty"] = {"draw_paths": G}
    scenario = sim.parse_scenario(data, source="test")
    n = blocks * BLOCK_PATHS
    runs = spread_over_seeds(scenario, n, ["p_outperform", "p_outperform_count"])
    for column, (values, ses) in runs.items():
        assert_calibrated(values, ses, n // G, column)
    values, _ = runs["p_outperform_count"]
    p = values.mean(axis=0)
    binomial = np.sqrt(p * (1 - p) / n)
    if G == BLOCK_PATHS:
        assert np.all(values.std(axis=0) > 3 * binomial)  # what the old, path-level error got wrong


@pytest.mark.parametrize("name", ["rate_cut", "soft_landing", "recession", "baseline", "historical"])
def test_conditional_and_count_estimates_agree_on_shipped_scenarios(name):
    """Both estimate the same probability with common random numbers: their difference is within 4.5 of its
    standard error. Both are unbiased given each parameter draw, so the per-path differences have mean zero
    within every draw and are uncorrelated even where paths share a draw: cells of paths are valid units."""
    scenario = sim.load_scenario(find_shipped(name))
    res = sim.simulate(scenario, n_paths=8 * BLOCK_PATHS, seed=3, fan_in_background=False)
    stats = res._stats
    paths, fig, wins = stats.unit_sums(None)
    diff = stats.p_outperform - stats.p_count

    se = batch_means_se(fig[:, :, 0] - wins, paths, diff)
    assert np.all(np.abs(diff) < 4.5 * se), (name, diff, se)


def test_estimates_do_not_depend_on_chunking():
    scenario = sim.parse_scenario(short(two_regime()), source="test")
    a = sim.simulate(scenario, n_paths=3 * BLOCK_PATHS, seed=5, batch_paths=BLOCK_PATHS).summary()
    b = sim.simulate(scenario, n_paths=3 * BLOCK_PATHS, seed=5, batch_paths=3 * BLOCK_PATHS).summary()
    cols = ["p_outperform", "p_outperform_se", "p_outperform_count_se", "small_p_loss", "small_p_loss_se"]
    np.testing.assert_array_equal(a[cols].to_numpy(), b[cols].to_numpy())


@pytest.mark.parametrize("method", ["step", "exact"])
def test_conditional_figures_follow_the_regime_counts(method):
    """Without phases or tails, a path's conditional mean and variance are sums over regimes of its steps
    there times the regime's per-step drift and variance, plus the rate term. The engine's per-path figures
    (both kernels, float32 sums over 10 years of monthly steps) equal Phi of that float64 brute force to float32
    rounding."""
    import jax
    from scipy.special import ndtr

    from simulator.params import build_model, exact_segment_months

    data = two_regime(rates={"path": {0: 4.0, 6: 3.5, 12: 3.25}, "sensitivity": {"small": -0.06, "large": -0.03}})
    data.update(horizon_months=120, report_months=[12, 120])
    model = build_model(sim.parse_scenario(data, source="test"), None)
    segment = exact_segment_months(model) if method == "exact" else 1
    [(_, n, out)] = run_blocks(
        model,
        4,
        BLOCK_PATHS,
        [0],
        dtype=np.float32,
        devices=tuple(jax.devices()[:1]),
        blocks_per_call=1,
        month_paths=0,
        method=method,
        segment_months=segment,
    )
    p = model.point_steps
    steps = out.report_steps_in.astype(np.float64)  # [R, K, P]
    assert np.all(steps.sum(axis=1) == np.array(model.report_steps)[:, None])
    for r, H in enumerate(model.report_steps):
        mean = np.einsum("kp,ka->ap", steps[r], p.drift[0]) + p.shift[:H].sum(axis=0)[:, None]
        var = np.einsum("kp,kc->cp", steps[r], p.cond_var[0])
        beats = ndtr((mean[0] - mean[1]) / np.sqrt(var[2]))
        loss = ndtr(-mean / np.sqrt(var[:2]))
        np.testing.assert_allclose(out.report_fig[r], np.concatenate([beats[None], loss]), rtol=0, atol=2e-6)
