"""The posterior with driver-dependent transitions (``calibrate --posterior --drivers``): the file carries the
logit draws, a driver scenario runs with them through ``uncertainty.posterior``, mismatches are refused, and on
data with a known driver effect the posterior finds it."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from posterior_cases import TRUE_COEF, simulate_driver_data
from test_posterior import fake_fit, posterior_scenario

import simulator as sim
from simulator.cli import main
from simulator.engine import BLOCK_PATHS
from simulator.fit import tvtp
from simulator.fit.history import log_returns
from simulator.fit.posterior import (
    PosteriorFit,
    coef_table,
    driver_ml_calibration,
    load_posterior,
    sample_posterior,
    write_posterior,
)
from simulator.params import build_model


@pytest.fixture(scope="module")
def driver_fit():
    """A driver calibration on synthetic data and a PosteriorFit of its ML fit with jittered logits per draw (no
    sampling: for tests of the file and the run, not of NUTS)."""
    frame, macro = simulate_driver_data(300, np.random.default_rng(3))
    dc = tvtp.calibrate_drivers(frame, 2, ["credit_spread"], macro, n_starts=2, tvtp_starts=1, with_se=False)
    cal = driver_ml_calibration(dc)
    rng = np.random.default_rng(0)
    C, D, f = 2, 20, 12
    p = cal.fit.params
    sd = np.sqrt(np.diagonal(p.covs, axis1=1, axis2=2))
    coef = dc.fit.coef + rng.normal(0, 0.5, (C, D, 2, 2, 2)) * (1 - np.eye(2))[:, :, None]
    P = tvtp.matrices(coef.reshape(-1, 2, 2, 2), dc.last_month_values[None]).reshape(C, D, 2, 2)
    start = np.einsum("k,cdkj->cdj", dc.fit.filtered[-1], P)
    z = np.zeros((C, D))
    fit = PosteriorFit(
        np.broadcast_to(p.means * f, (C, D, 2, 2)).copy(),
        np.broadcast_to(sd * np.sqrt(f), (C, D, 2, 2)).copy(),
        np.broadcast_to(p.covs / (sd[:, :, None] * sd[:, None, :]), (C, D, 2, 2, 2)).copy(),
        P,
        start,
        z.astype(bool),
        z + 7,
        z + 0.3,
        z,
        z,
        cal,
        log_returns(frame.loc[cal.dates]),
        1.0,
        D,
        drivers=("credit_spread",),
        coef=coef,
        coef_ml=dc.fit.coef,
        coef_se=dc.fit.se_coef,
    )
    return dc, fit


def driver_scenario(folder, dc, fit, **uncertainty):
    nc = folder / "d.posterior.nc"
    sha = write_posterior(fit, nc, attrs={"frequency": "monthly"}, force=True)
    path = folder / "d.yaml"
    u = {"posterior": nc.name, "sha256": sha, **uncertainty}
    path.write_text(tvtp.scenario_text(dc, name="d", horizon_months=12, uncertainty=u))
    return path


def test_the_file_carries_the_logit_draws_and_an_old_file_still_reads(driver_fit, tmp_path):
    dc, fit = driver_fit
    nc = tmp_path / "d.posterior.nc"
    back = load_posterior(nc, write_posterior(fit, nc, attrs={"frequency": "monthly"}))
    np.testing.assert_array_equal(back.coef, fit.coef.reshape(-1, 2, 2, 2))
    np.testing.assert_array_equal(back.transition, fit.transition.reshape(-1, 2, 2))
    assert back.drivers == ("credit_spread",) and back.regimes == dc.regimes
    old = tmp_path / "h.posterior.nc"  # a constant-matrix posterior: no logits
    back = load_posterior(old, write_posterior(fake_fit(chains=1, draws=5), old, attrs={"frequency": "monthly"}))
    assert back.coef is None and back.drivers == () and back.n_draws == 5


def test_each_draw_runs_its_logits(driver_fit, tmp_path):
    """The engine's per-draw monthly matrices are the logit link of that draw's coefficients at the scenario's
    (flat) credit spread, and the draws are the file's."""
    dc, fit = driver_fit
    path = driver_scenario(tmp_path, dc, fit)
    sc = sim.load_scenario(path)
    n = 6 * BLOCK_PATHS
    model = build_model(sc, n_paths=n, seed=5, draw_paths=BLOCK_PATHS)  # a draw per block: six draws
    vals = model.draw_parameters
    names = dc.regimes
    coef = np.zeros((6, 2, 2, 2))
    for i, r in enumerate(names):
        for j, to in enumerate(names):
            if i != j:
                coef[:, i, j, 0] = vals[f"regimes.{r}.drivers.{to}.intercept"]
                coef[:, i, j, 1] = vals[f"regimes.{r}.drivers.{to}.credit_spread"]
    flat = fit.coef.reshape(-1, 2, 2, 2)
    index = [int(np.flatnonzero(np.all(flat == c, axis=(1, 2, 3)))[0]) for c in coef]
    assert len(set(index)) == 6  # six distinct file draws
    x = yaml.safe_load(path.read_text())["macro"]["credit_spread"][0]
    want = tvtp.matrices(coef, np.full((6, 1, 1), x))[:, 0]  # [6, K, K]
    got = np.diff(model.steps.cum_trans[:, 1:], axis=-1, prepend=0.0)[..., :-1]  # moves into steps 1..T-1
    np.testing.assert_allclose(got, np.broadcast_to(want[:, None, :, :-1], got.shape), atol=1e-12)
    assert np.ptp(got[:, 0, 1, 0]) > 0.01  # the draws' bull -> bear odds differ as their logits say
    res = sim.simulate(sc, n_paths=n, seed=5, draw_paths=BLOCK_PATHS)
    table = res.uncertainty()
    assert table["draw"].nunique() == 6 and "regimes.bull.drivers.bear.credit_spread" in table.columns
    assert res.summary()["p_outperform"].between(0, 1).all()


def test_a_mismatched_posterior_is_refused_naming_the_field(driver_fit, tmp_path):
    dc, fit = driver_fit
    path = driver_scenario(tmp_path, dc, fit)
    text = path.read_text()
    data = yaml.safe_load(text)  # the driver scenario without the file's credit_spread slope in one regime
    del data["regimes"]["bull"]["drivers"]["bear"]["credit_spread"]
    path.write_text(yaml.safe_dump(data))
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 2 and "regimes.bull.drivers" in r.output and "Traceback" not in r.output, r.output
    # a constant-matrix posterior file named by a driver scenario
    nc = tmp_path / "d.posterior.nc"
    sha = write_posterior(fake_fit(chains=1, draws=5), nc, attrs={"frequency": "monthly"}, force=True)
    data = yaml.safe_load(text)
    data["uncertainty"]["sha256"] = sha
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(sim.ScenarioError, match="uncertainty.posterior: posterior draws without drivers"):
        sim.simulate(sim.load_scenario(path), n_paths=1000)
    r = CliRunner().invoke(main, ["run", str(path), "--paths", "1000", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "uncertainty.posterior" in r.output and not (tmp_path / "o").exists(), r.output
    # a driver posterior file named by a `transitions` scenario
    for f in tmp_path.iterdir():
        f.unlink()
    plain = posterior_scenario(tmp_path, fake_fit(chains=1, draws=5))
    sha = write_posterior(fit, tmp_path / "h.posterior.nc", attrs={"frequency": "monthly"}, force=True)
    data = yaml.safe_load(plain.read_text())
    data["uncertainty"]["sha256"] = sha
    plain.write_text(yaml.safe_dump(data))
    r = CliRunner().invoke(main, ["validate", str(plain)])
    assert r.exit_code == 2 and "uncertainty.posterior" in r.output and "`drivers` blocks" in r.output, r.output


@pytest.mark.slow
def test_the_posterior_finds_a_known_driver_effect():
    """600 months whose calm-regime exit odds rise with the driver: the posterior mean of that slope sits within 3
    posterior sds of the truth and within half a posterior sd of the ML fit (the priors are weak)."""
    frame, macro = simulate_driver_data(600, np.random.default_rng(1))
    dc = tvtp.calibrate_drivers(frame, 2, ["credit_spread"], macro, n_starts=2, tvtp_starts=2)
    fit = sample_posterior(dc, log_returns(frame.loc[dc.constant.dates]), draws=400, chains=2, seed=0)
    row = coef_table(fit).query("move == 'bull -> bear' and term == 'credit_spread'").iloc[0]
    assert abs(row["mean"] - TRUE_COEF[1, 0, 1]) < 3 * row["sd"], row
    assert abs(row["mean"] - row["ml"]) < 0.5 * row["sd"], row
    assert not fit.diverging.any()


@pytest.mark.slow
def test_calibrate_posterior_drivers_writes_a_scenario_that_runs(tmp_path):
    frame, macro = simulate_driver_data(300, np.random.default_rng(3))
    data, mfile = tmp_path / "r.csv", tmp_path / "m.csv"
    frame.to_csv(data)
    macro.to_timestamp(how="end").rename_axis("date").to_csv(mfile, date_format="%Y-%m-%d")
    out = tmp_path / "s.yaml"
    args = ["calibrate", str(data), "--regimes", "2", "--drivers", "credit_spread", "--macro", str(mfile)]
    args += ["--posterior", "--draws", "30", "--chains", "1", "--out", str(out)]
    r = CliRunner().invoke(main, args)  # 30 draws cannot pass the diagnostics: refused, nothing written
    assert r.exit_code == 1 and "diagnostics failed" in r.output and not out.exists(), r.output
    r = CliRunner().invoke(main, [*args, "--force"])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "logits of leaving" in text and "slope ~ Normal(0, 2.5)" in text
    back = load_posterior(tmp_path / "s.posterior.nc", None)
    assert back.coef.shape == (30, 2, 2, 2) and back.drivers == ("credit_spread",)
    r = CliRunner().invoke(main, ["run", str(out), "--paths", "40000", "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 0, r.output


def test_the_filter_with_monthly_matrices_equals_the_ml_fits_likelihood():
    """posterior.log_filter with one matrix per month (the sampler's likelihood) against tvtp's ``_forward`` (the
    ML fit's): the same log-likelihood and filtered probabilities, s_0 from the first month's stationary law."""
    import jax
    import jax.numpy as jnp

    from simulator.fit.posterior import log_emissions, log_filter
    from simulator.fit.tvtp import _forward, pack

    frame, macro = simulate_driver_data(200, np.random.default_rng(7))
    y = log_returns(frame)
    X = macro["credit_spread"].to_numpy()[:-1, None]
    rng = np.random.default_rng(8)
    means = rng.normal(0, 0.01, (2, 2))
    B = rng.normal(0, 0.03, (2, 2, 2))
    covs = B @ np.swapaxes(B, 1, 2) + 0.001 * np.eye(2)
    coef = TRUE_COEF + rng.normal(0, 0.3, TRUE_COEF.shape) * (1 - np.eye(2))[:, :, None]
    with jax.enable_x64(True):
        ll, lf = log_filter(log_emissions(jnp.asarray(y), means, covs), jnp.asarray(tvtp.matrices(coef, X)))
        ref, filt = _forward(jnp.asarray(pack(means, covs, coef)), jnp.asarray(y), jnp.asarray(X), 2, 2, 1)
    assert abs(float(ll) - float(ref)) < 1e-9 * abs(float(ref))
    np.testing.assert_allclose(np.exp(np.asarray(lf)), np.asarray(filt), atol=1e-12)
