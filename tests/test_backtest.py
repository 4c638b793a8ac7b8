"""Backtest: scoring rules against closed forms, no look-ahead, a model that must beat the
bootstrap when regimes are predictable, and the `capsim backtest` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from simulator.cli import main
from simulator.fit.backtest import backtest, crps_samples, near_nominal, newey_west_se, pit_value, score
from simulator.fit.calibrate import MSParams
from simulator.fit.history import read_returns

try:  # tests/ as a package or as a plain folder on sys.path
    from .test_calibrate import returns_csv, simulate_chain
except ImportError:
    from test_calibrate import returns_csv, simulate_chain


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --------------------------------------------------------------------------------------------
# scoring rules


def gaussian_crps(mu, sigma, y):
    z = (y - mu) / sigma
    return sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi))


@pytest.mark.parametrize("y", [-0.3, 0.0, 0.05, 0.4])
def test_crps_of_samples_matches_the_gaussian_closed_form(y):
    n = 50_000
    x = stats.norm.ppf((np.arange(n) + 0.5) / n, loc=0.05, scale=0.2)  # an exact quantile grid
    rng = np.random.default_rng(1)
    assert crps_samples(rng.permutation(x), y) == pytest.approx(gaussian_crps(0.05, 0.2, y), rel=2e-3, abs=1e-5)


def test_crps_small_cases():
    assert crps_samples(np.array([0.1]), 0.4) == pytest.approx(0.3)  # a point forecast: |x - y|
    # two equally likely points {0, 1} at y = 0: E|X - y| = 0.5, E|X - X'| = 0.5 -> 0.25
    assert crps_samples(np.array([0.0, 1.0]), 0.0) == pytest.approx(0.25)


def test_pit_is_uniform_for_a_calibrated_forecast_and_not_for_a_narrow_one():
    rng = np.random.default_rng(2)
    draws = rng.normal(size=4000)
    outcomes = rng.normal(size=500)
    pits = np.array([pit_value(draws, y) for y in outcomes])
    assert stats.kstest(pits, "uniform").pvalue > 0.01
    narrow = np.array([pit_value(draws * 0.5, y) for y in outcomes])
    assert stats.kstest(narrow, "uniform").pvalue < 1e-6
    s = score(draws, 0.0)
    assert s["in50"] and s["in90"] and abs(s["pit"] - 0.5) < 0.03
    s = score(draws, 1.2)  # beyond the 75% quantile (0.67), inside the 95% one (1.64)
    assert not s["in50"] and s["in90"]
    assert pit_value(np.array([0.0, 1.0, 1.0, 2.0]), 1.0) == 0.5  # ties count half


def test_newey_west_reduces_to_the_iid_standard_error():
    x = np.random.default_rng(3).normal(size=200)
    assert newey_west_se(x, 0) == pytest.approx(x.std() / math.sqrt(200))
    assert near_nominal(0.86, 0.9, 28) and not near_nominal(0.6, 0.9, 28)


# --------------------------------------------------------------------------------------------
# the backtest itself


PERSISTENT = MSParams(
    means=np.array([[-0.04, -0.03], [0.03, 0.02]]),
    covs=np.array(
        [
            [[0.03**2, 0.5 * 0.03 * 0.025], [0.5 * 0.03 * 0.025, 0.025**2]],
            [[0.02**2, 0.5 * 0.02 * 0.015], [0.5 * 0.02 * 0.015, 0.015**2]],
        ]
    ),
    transition=np.array([[0.95, 0.05], [0.03, 0.97]]),
)


@pytest.fixture(scope="module")
def persistent_data(tmp_path_factory):
    """Monthly data from two well-separated, persistent regimes: knowing today's regime predicts the next
    quarter, which an i.i.d. bootstrap cannot know."""
    y, _ = simulate_chain(PERSISTENT, 720, np.random.default_rng(7))
    return returns_csv(tmp_path_factory.mktemp("bt") / "persistent.csv", y, start="1960-01-31")


def test_model_beats_the_bootstrap_when_regimes_are_predictable(persistent_data, tmp_path):
    frame = read_returns(persistent_data)
    res = backtest(frame, 2, "1999-12-31", horizon_months=3, step_months=3, n_paths=4000, seed=1, n_starts=3)
    m = res.meta
    assert m["origins"] == len(res.scores) // 3 and m["first_origin"] == "1999-12-31"
    assert set(res.scores["series"]) == {"small", "large", "excess"}
    model = res.summary[res.summary["method"] == "model"].set_index("series")
    boot = res.summary[res.summary["method"] == "bootstrap"].set_index("series")
    for s in ("small", "large"):
        assert model.at[s, "crps_mean"] < 0.8 * boot.at[s, "crps_mean"], res.summary
        assert model.at[s, "crps_diff_t"] < -2
        # data from the model itself: coverage near nominal, PIT not far from uniform
        assert near_nominal(model.at[s, "coverage90"], 0.9, m["origins"])
        assert near_nominal(model.at[s, "coverage50"], 0.5, m["origins"])
        assert model.at[s, "pit_ks_pvalue"] > 0.001
    assert res.verdict.startswith("verdict: model beats the bootstrap")
    out = res.save(tmp_path / "bt")
    assert {p.name for p in out.iterdir()} == {"scores.csv", "summary.csv", "pit.png", "model.yaml", "meta.json"}
    scores = pd.read_csv(out / "scores.csv")
    for c in (
        "origin",
        "end",
        "series",
        "realised",
        "model_pit",
        "model_in50",
        "model_in90",
        "model_crps",
        "bootstrap_pit",
        "bootstrap_in50",
        "bootstrap_in90",
        "bootstrap_crps",
        "start_bear",
        "start_bull",
    ):
        assert c in scores.columns
    assert json.loads((out / "meta.json").read_text())["method"].startswith("training-window fit")
    # realised returns are the compounded data over (origin, origin + 3 months]
    row = res.scores.iloc[0]
    i = frame.index.get_loc(pd.Timestamp(row["origin"]))
    assert row["realised"] == pytest.approx(float(np.prod(1 + frame["small"].iloc[i + 1 : i + 4]) - 1), rel=1e-12)
    assert not list(tmp_path.glob(".bt.tmp-*"))


def test_forecasts_never_use_data_after_their_origin(persistent_data):
    frame = read_returns(persistent_data)
    kw = dict(horizon_months=3, step_months=12, n_paths=1000, seed=4, n_starts=2)
    cut = "2009-12-31"
    a = backtest(frame, 2, cut, **kw)
    second_origin = pd.Timestamp(a.scores["origin"].unique()[1])
    changed = frame.copy()
    changed.loc[changed.index > second_origin] *= -3.0  # rewrite history after the second origin
    changed.attrs.update(frame.attrs)
    b = backtest(changed, 2, cut, **kw)
    assert a.meta["training_loglik"] == b.meta["training_loglik"]
    forecast_cols = [c for c in a.scores.columns if c.endswith("_median") or c.startswith("start_")]
    first_two = a.scores["origin"].isin(a.scores["origin"].unique()[:2])
    pd.testing.assert_frame_equal(a.scores.loc[first_two, forecast_cols], b.scores.loc[first_two, forecast_cols])
    # ... while the first origin's realised values are untouched and the second's are not
    first = a.scores["origin"] == a.scores["origin"].iloc[0]
    assert np.array_equal(a.scores.loc[first, "realised"], b.scores.loc[first, "realised"])
    second = a.scores["origin"] == a.scores["origin"].unique()[1]
    assert not np.array_equal(a.scores.loc[second, "realised"], b.scores.loc[second, "realised"])
    # and the training fit did not change when only post-cut data changed
    assert a.model_yaml.split("start:")[0] == b.model_yaml.split("start:")[0]


# --------------------------------------------------------------------------------------------
# the command


def test_backtest_command_on_the_shipped_data(tmp_path):
    data = Path(__file__).resolve().parents[1] / "simulator" / "data" / "us_size_monthly.csv"
    out = tmp_path / "bt"
    r = invoke(
        [
            "backtest",
            data,
            "--regimes",
            2,
            "--train-until",
            "2009-12-31",
            "--horizon",
            12,
            "--step",
            12,
            "--paths",
            2000,
            "--starts",
            3,
            "--out",
            out,
        ]
    )
    assert r.exit_code == 0, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("verdict: ") and "cut 2009-12-31" in last
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["method"]) == {"model", "bootstrap"} and (summary["n_origins"] == 16).all()  # 2009-12 .. 2024-12
    assert (out / "pit.png").stat().st_size > 10_000
    # an existing folder is refused; a cut that leaves nothing to forecast is a clear error
    again = invoke(["backtest", data, "--regimes", 2, "--train-until", "2009-12-31", "--out", out])
    assert again.exit_code == 2 and "exists" in again.output
    late = invoke(["backtest", data, "--regimes", 2, "--train-until", "2025-06-30", "--out", tmp_path / "x"])
    assert late.exit_code == 2 and "no whole 12-month window" in late.output and str(data) in late.output
    early = invoke(["backtest", data, "--regimes", 3, "--train-until", "1930-12-31", "--out", tmp_path / "y"])
    assert early.exit_code == 2 and "too few" in early.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_verdict_counts_the_winners_series():
    """When the bootstrap wins on every series the verdict says so: 3 of 3, not the model's 0."""
    from simulator.fit.backtest import verdict

    rows = []
    for s, (m, b) in {"small": (0.0394, 0.0385), "large": (0.0279, 0.0271), "excess": (0.0240, 0.0236)}.items():
        common = dict(series=s, n_origins=86, coverage50=0.5, coverage90=0.9)
        rows.append(dict(method="model", crps_mean=m, crps_skill_vs_bootstrap=1 - m / b, crps_diff_t=2.3, **common))
        rows.append(dict(method="bootstrap", crps_mean=b, crps_skill_vs_bootstrap=0.0, crps_diff_t=np.nan, **common))
    meta = dict(newey_west_lags=0, first_origin="2018-12-31", train_until="2018-12-31", horizon_months=1)
    text = verdict(pd.DataFrame(rows), meta)
    assert text.startswith("verdict: the bootstrap beats the model on mean CRPS for 3 of 3 series"), text
