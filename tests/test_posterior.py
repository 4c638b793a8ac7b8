"""Bayesian calibration: the forward filter against calibrate's exact likelihood, the posterior file's round
trip and SHA-256 check, interval coverage on synthetic data, and the posterior beside the ML fit."""

from __future__ import annotations

import exact as ex
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from exact_cases import Z_TOL
from posterior_cases import covered, simulate_frame, true_params
from scipy import stats

import simulator as sim
from simulator.cli import main
from simulator.engine import BLOCK_PATHS
from simulator.fit.calibrate import MSParams, calibrate, filter_probabilities, loglikelihood, scenario_text
from simulator.fit.history import log_returns
from simulator.fit.posterior import (
    RERUN_TARGET_ACCEPT,
    TARGET_ACCEPT,
    Diagnostics,
    PosteriorFileError,
    PosteriorFit,
    SamplerProgress,
    comment_lines,
    diagnose,
    file_attrs,
    filtered_draws,
    group,
    load_posterior,
    log_emissions,
    log_filter,
    rerun_reason,
    sample_checked,
    sample_posterior,
    write_posterior,
)


def random_params(K: int, A: int, rng) -> MSParams:
    means = rng.normal(0, 0.02, (K, A))
    B = rng.normal(0, 0.05, (K, A, A))
    covs = B @ np.swapaxes(B, 1, 2) + 0.001 * np.eye(A)
    P = rng.dirichlet(np.ones(K) + 10 * np.eye(K)[0], size=K)
    return MSParams(means, covs, P)


@pytest.mark.parametrize("K", [1, 2, 3])
def test_forward_filter_equals_the_exact_loglikelihood(K):
    rng = np.random.default_rng(K)
    y = rng.normal(0, 0.05, (400, 2))
    p = random_params(K, 2, rng)
    with jax.enable_x64(True):
        ll, lf = log_filter(
            log_emissions(jnp.asarray(y), jnp.asarray(p.means), jnp.asarray(p.covs)), jnp.asarray(p.transition)
        )
    assert abs(float(ll) - loglikelihood(y, p)) < 1e-8
    np.testing.assert_allclose(np.exp(np.asarray(lf)), filter_probabilities(y, p), atol=1e-10)


def fake_fit(seed: int = 0, chains: int = 2, draws: int = 50) -> PosteriorFit:
    """A PosteriorFit of ML parameters jittered per draw (no sampling): for tests of the file, not of NUTS."""
    rng = np.random.default_rng(seed)
    frame = simulate_frame(true_params(), 240, rng)
    cal = calibrate(frame, 2, n_starts=2, with_se=False)
    y = log_returns(frame)
    p, f = cal.fit.params, 12
    sd = np.sqrt(np.diagonal(p.covs, axis1=1, axis2=2))
    C, D = chains, draws
    drift = p.means * f + rng.normal(0, 0.01, (C, D, 2, 2))
    vol = sd * np.sqrt(f) * np.exp(rng.normal(0, 0.02, (C, D, 2, 2)))
    corr = np.broadcast_to(p.covs / (sd[:, :, None] * sd[:, None, :]), (C, D, 2, 2, 2)).copy()
    P = rng.dirichlet(np.ones(2), size=(C, D, 2)) * 0.05 + 0.95 * p.transition
    filt = filtered_draws(y, drift, vol, corr, P, f)
    start = np.einsum("cdk,cdkj->cdj", filt[:, :, -1], P)
    z = np.zeros((C, D))
    return PosteriorFit(drift, vol, corr, P, start, z.astype(bool), z + 7, z + 0.3, z, z, cal, y, 1.0, D)


def test_posterior_file_round_trips_and_a_changed_file_is_refused(tmp_path):
    import arviz as az

    fit = fake_fit()
    nc = tmp_path / "h.posterior.nc"
    sha = write_posterior(fit, nc, attrs={"frequency": "monthly"})
    back = load_posterior(nc, sha)
    for name in ("drift", "vol", "corr", "transition", "start"):
        np.testing.assert_array_equal(
            getattr(back, name), getattr(fit, name).reshape(-1, *getattr(fit, name).shape[2:])
        )
    assert back.regimes == ("bear", "bull") and back.assets == ("small", "large") and back.frequency == "monthly"
    idata = az.from_netcdf(nc)
    for g in ("posterior", "sample_stats", "observed_data"):
        assert len(group(idata, g).data_vars) > 0
    np.testing.assert_array_equal(group(idata, "observed_data")["log_return"].to_numpy(), fit.y)
    # the scenario that points to it validates; after one byte changes, the library and the CLI refuse it
    text = scenario_text(fit.cal, name="h", uncertainty={"posterior": nc.name, "sha256": sha})
    (tmp_path / "h.yaml").write_text(text)
    assert CliRunner().invoke(main, ["validate", str(tmp_path / "h.yaml")]).exit_code == 0
    raw = bytearray(nc.read_bytes())
    raw[-100] ^= 1
    nc.write_bytes(bytes(raw))
    with pytest.raises(PosteriorFileError, match="h.posterior.nc"):
        load_posterior(nc, sha)
    r = CliRunner().invoke(main, ["validate", str(tmp_path / "h.yaml")])
    assert r.exit_code == 2 and "uncertainty.sha256" in r.output and "h.posterior.nc" in r.output
    assert "Traceback" not in r.output


def posterior_scenario(folder, fit: PosteriorFit, **uncertainty):
    """Write ``fit`` as ``folder/h.posterior.nc`` and the scenario pointing to it as ``folder/h.yaml``."""
    nc = folder / "h.posterior.nc"
    sha = write_posterior(fit, nc, attrs={"frequency": "monthly"})
    path = folder / "h.yaml"
    u = {"posterior": nc.name, "sha256": sha, **uncertainty}
    path.write_text(scenario_text(fit.cal, name="h", horizon_months=12, uncertainty=u))
    return path


def as_written(path) -> dict:
    """The scenario file as a mapping, without its ``uncertainty``: the plain scenario of the ML fit."""
    data = yaml.safe_load(path.read_text())
    data.pop("uncertainty")
    return data


def test_point_mass_posterior_reproduces_the_plain_scenario_bit_for_bit(tmp_path):
    """A posterior file whose every draw holds the scenario's own numbers: the run is the plain scenario's."""
    fit = fake_fit(chains=1, draws=6)
    path = posterior_scenario(tmp_path, fit)  # written once to learn the file's rounded numbers
    plain = as_written(path)
    regimes, assets = list(plain["regimes"]), list(plain["assets"])
    field = lambda key: np.array([[plain["regimes"][r][key][a] for a in assets] for r in regimes])  # noqa: E731
    corr = np.array([[[1, c], [c, 1]] for c in (plain["regimes"][r]["corr"] for r in regimes)])
    P = np.array([[plain["transitions"][r][j] for j in regimes] for r in regimes])
    start = np.array([plain["start"][r] for r in regimes])
    same = lambda x: np.broadcast_to(x, (1, 6, *np.shape(x))).copy()  # noqa: E731
    fit = fit._replace(
        drift=same(field("drift")), vol=same(field("vol")), corr=same(corr), transition=same(P), start=same(start)
    )
    for f in tmp_path.iterdir():
        f.unlink()
    path = posterior_scenario(tmp_path, fit)
    n = 3 * BLOCK_PATHS + 99  # 193 groups of 256 paths: all six draws in use
    a = sim.simulate(sim.parse_scenario(plain), n_paths=n, seed=2)
    b = sim.simulate(sim.load_scenario(path), n_paths=n, seed=2)
    assert b.meta["parameter_draws"]["simulated"] == 6 and b.meta["parameter_draws"]["draws"] == 6
    sa, sb = a.summary(), b.summary()
    figures = [c for c in sa.columns if c != "scenario" and not c.endswith("_se")]  # errors: from paths, draws
    pd.testing.assert_frame_equal(sa[figures], sb[figures], check_exact=True)
    pd.testing.assert_frame_equal(a.draws(12), b.draws(12), check_exact=True)


@pytest.fixture(scope="module")
def posterior_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("post")
    fit = fake_fit(chains=2, draws=50)
    path = posterior_scenario(folder, fit, draws=24)
    return fit, path, sim.simulate(sim.load_scenario(path), n_paths=24 * BLOCK_PATHS, seed=4)


def test_each_block_runs_one_posterior_draw_spread_over_the_chains(posterior_run):
    fit, path, res = posterior_run
    table = res.uncertainty()
    assert res.meta["parameter_draws"]["draws"] == 24 and table["draw"].nunique() == 24
    assert (table["n_paths"] == BLOCK_PATHS).all()
    flat = fit.drift.reshape(-1, 2, 2)  # [chain-major draw, regime, asset]
    per_draw = table.groupby("draw").first()
    index = [int(np.flatnonzero(flat[:, 1, 0] == v)[0]) for v in per_draw["regimes.bull.drift.small"]]
    assert len(set(index)) == 24 and {i // 50 for i in index} == {0, 1}  # distinct draws from both chains
    assert index != sorted(index)  # a shuffled order, not the first chain's first draws
    for d, i in enumerate(index):  # every field of block d's draw is file draw i's
        row = per_draw.loc[d]
        c, k = divmod(i, 50)
        assert row["regimes.bear.vol.large"] == fit.vol[c, k, 0, 1]
        assert row["regimes.bull.corr"] == fit.corr[c, k, 1, 0, 1]
        np.testing.assert_allclose(row["transitions.bear.bull"], fit.transition[c, k, 0, 1], rtol=1e-14)
        np.testing.assert_allclose(row["start.bull"], fit.start[c, k, 1] / fit.start[c, k].sum(), rtol=1e-14)


def test_each_posterior_draw_matches_the_exact_value_at_its_parameters(posterior_run):
    """Block d's p_outperform against the exact value (tests/exact.py) of the scenario with draw d's numbers."""
    fit, path, res = posterior_run
    plain = as_written(path)
    bad = []
    for d, rows in res.uncertainty().groupby("draw"):
        sc = yaml.safe_load(yaml.safe_dump(plain))
        first = rows.iloc[0]
        for r in plain["regimes"]:
            for a in plain["assets"]:
                sc["regimes"][r]["drift"][a] = float(first[f"regimes.{r}.drift.{a}"])
                sc["regimes"][r]["vol"][a] = float(first[f"regimes.{r}.vol.{a}"])
            sc["regimes"][r]["corr"] = float(first[f"regimes.{r}.corr"])
            sc["transitions"][r] = {j: float(first[f"transitions.{r}.{j}"]) for j in plain["regimes"]}
        sc["start"] = {r: float(first[f"start.{r}"]) for r in plain["regimes"]}
        model = ex.ExactModel(sc)
        for h, p_hat in zip(rows["horizon_months"], rows["p_outperform"]):
            p = model.mixture(int(h)).p_outperform()
            z = (p_hat - p) / ex.se_prop(p, BLOCK_PATHS)
            if abs(z) >= Z_TOL:
                bad.append(f"draw {d} h={h} est={p_hat:.4f} exact={p:.4f} z={z:+.2f}")
    assert not bad, "\n".join(bad)


def test_a_posterior_scenario_runs_through_compare_and_the_command_line(posterior_run, tmp_path):
    fit, path, res = posterior_run
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", str(path), "--paths", "40000", "--seed", "1", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out / "uncertainty.csv")
    assert table["draw"].nunique() == 24  # 157 groups of 256 paths: every one of the 24 draws
    plain = sim.parse_scenario({**as_written(path), "name": "plain"})
    table = sim.compare([sim.load_scenario(path), plain], n_paths=40_000, seed=1).table()
    intervals = table[table["metric"] == "p_outperform_draws_q05"]
    assert set(intervals["item"]) == {"h"}
    r = CliRunner().invoke(main, ["batch", str(path), "--paths", "20000", "--out", str(tmp_path / "b"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "h" / "uncertainty.csv").is_file()
    mix = sim.blend({sim.load_scenario(path): 0.5, plain: 0.5}, n_paths=40_000, seed=1)
    assert mix.summary()["p_outperform"].between(0, 1).all()


def test_a_sweep_keeps_given_draws_and_refuses_to_sweep_a_field_they_give(posterior_run):
    fit, path, res = posterior_run
    from simulator.sweep import SweepError

    with pytest.raises(SweepError, match="regimes.bull.drift.small: the scenario takes this field"):
        sim.sweep(sim.load_scenario(path), {"regimes.bull.drift.small": [0.1]}, n_paths=1000)
    plain = sim.parse_scenario(as_written(path))
    given = sim.with_parameter_draws(plain, {"regimes.bull.drift.small": [0.05, 0.25]})
    swept = sim.sweep(given, {"regimes.bear.vol.small": [0.3, 0.5]}, n_paths=2 * BLOCK_PATHS, seed=1)
    table = swept.table()  # every point ran both draws: drift 0.05 and 0.25 give different p_outperform
    assert (table["p_outperform_draws_q05"] < table["p_outperform_draws_q95"]).all()


def test_a_posterior_file_of_another_scenario_is_refused(tmp_path):
    fit = fake_fit(chains=1, draws=5)
    path = posterior_scenario(tmp_path, fit, draws=6)
    with pytest.raises(
        sim.ScenarioError, match="uncertainty.draws: the posterior file holds 5 draws, fewer than the 6"
    ):
        sim.simulate(sim.load_scenario(path), n_paths=1000)
    for f in tmp_path.iterdir():
        f.unlink()
    path = posterior_scenario(tmp_path, fit)
    text = path.read_text().replace("bull", "up")  # the scenario's regime renamed; the file keeps 'bull'
    path.write_text(text)
    with pytest.raises(sim.ScenarioError, match="uncertainty.posterior"):
        sim.simulate(sim.load_scenario(path), n_paths=1000)
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 2 and "uncertainty.posterior" in r.output and "regimes" in r.output, r.output
    r = CliRunner().invoke(main, ["run", str(path), "--paths", "1000", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "Traceback" not in r.output and not (tmp_path / "o").exists(), r.output


def test_diagnostics_name_what_failed():
    fit = fake_fit()
    fit = fit._replace(diverging=fit.diverging | (np.arange(50) == 3))
    fails = diagnose(fit).failures()
    assert any("divergent" in f for f in fails)
    stuck = fit._replace(drift=fit.drift + np.array([0.0, 1.0])[:, None, None, None])  # chains disagree
    assert any(f.startswith("R-hat") and "drift[" in f for f in diagnose(stuck).failures())


def test_only_a_handful_of_divergences_with_all_else_passing_earns_a_second_run():
    def diag(divergences, ess=1000.0, rhat=1.002, draws=4000):
        return Diagnostics({"drift[bear,small]": (rhat, ess, ess)}, divergences, draws)

    assert "had 1 divergence(s) of 4000" in rerun_reason(diag(1), TARGET_ACCEPT)
    assert rerun_reason(diag(40), TARGET_ACCEPT)  # 1% of the kept draws
    assert not rerun_reason(diag(41), TARGET_ACCEPT)  # more: the geometry is wrong, not the step size
    assert not rerun_reason(diag(0), TARGET_ACCEPT)
    assert not rerun_reason(diag(1, ess=399.0), TARGET_ACCEPT)  # too few draws as well: more --draws
    assert not rerun_reason(diag(1, rhat=1.02), TARGET_ACCEPT)
    assert not rerun_reason(diag(1), RERUN_TARGET_ACCEPT)  # already the second run's steps


def mixed_fake_fit() -> PosteriorFit:
    """A fake fit of 4 chains x 250 independent draws (every scalar varies) that passes every diagnostic."""
    fit = fake_fit(chains=4, draws=250)
    jitter = np.random.default_rng(1).uniform(-0.01, 0.01, fit.corr.shape[:3])
    corr = fit.corr.copy()
    corr[..., 0, 1] += jitter
    corr[..., 1, 0] += jitter
    return fit._replace(corr=corr, warmup=250)


def test_a_handful_of_divergences_samples_once_more_with_smaller_steps(monkeypatch):
    """sample_checked's policy against a stand-in sampler whose draws diverge ``bad`` times at the first run's
    target acceptance and ``bad_again`` times at the second's."""
    import simulator.fit.posterior as post

    good = mixed_fake_fit()
    assert not diagnose(good).failures()
    calls = []

    def run(bad, bad_again):
        calls.clear()

        def sampler(cal, y, *, draws, chains, seed, warmup=None, target_accept=TARGET_ACCEPT, progress=None, rerun=""):
            calls.append({"warmup": warmup, "target_accept": target_accept, "seed": seed})
            diverging = np.zeros_like(good.diverging)
            diverging.flat[: bad if target_accept < RERUN_TARGET_ACCEPT else bad_again] = True
            return good._replace(
                diverging=diverging, warmup=warmup or draws, target_accept=target_accept, rerun=rerun, wall_seconds=5.0
            )

        monkeypatch.setattr(post, "sample_posterior", sampler)
        return sample_checked(good.cal, good.y, draws=250, chains=4, seed=3)

    fit, diag = run(bad=2, bad_again=0)
    assert calls == [
        {"warmup": None, "target_accept": TARGET_ACCEPT, "seed": 3},
        {"warmup": 500, "target_accept": RERUN_TARGET_ACCEPT, "seed": 3},
    ]
    assert not diag.failures() and fit.wall_seconds == 10.0 and fit.target_accept == RERUN_TARGET_ACCEPT
    assert "had 2 divergence(s) of 1000" in fit.rerun
    assert any(line.startswith("a second run: the first run") for line in comment_lines(fit, diag, 3))
    assert f"target accept {RERUN_TARGET_ACCEPT}, warm-up 500" in file_attrs(fit, diag, 3)["sampler"]
    fit, diag = run(bad=1, bad_again=1)  # the second run diverges too: refused
    assert len(calls) == 2 and any("divergent" in f for f in diag.failures())
    fit, diag = run(bad=11, bad_again=0)  # more than a handful: no second run, refused
    assert len(calls) == 1 and not fit.rerun and any("11 divergent" in f for f in diag.failures())
    fit, diag = run(bad=0, bad_again=5)
    assert len(calls) == 1 and not diag.failures()


def test_sampler_progress_renders_on_a_terminal(monkeypatch):
    import sys

    from simulator.cli.options import sampler_progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar, update = sampler_progress(quiet=False)
    with bar:
        update(SamplerProgress(700, 1000, 2000, 4, 0, TARGET_ACCEPT, ""))
        assert bar.tasks[0].description == "NUTS warm-up" and bar.tasks[0].completed == 700
        update(SamplerProgress(1500, 1000, 2000, 4, 1, TARGET_ACCEPT, ""))
        assert bar.tasks[0].description == "NUTS sampling" and bar.tasks[0].fields["divergences"] == 1
        update(SamplerProgress(10, 2000, 3000, 4, 0, RERUN_TARGET_ACCEPT, "the first run had 1"))
        task = bar.tasks[0]
        assert task.description == f"second run (target acceptance {RERUN_TARGET_ACCEPT}) warm-up"
        assert task.completed == 10 and task.total == 3000 and task.fields["divergences"] == 0
    assert sampler_progress(quiet=True)[1] is None


@pytest.mark.slow
def test_ninety_percent_intervals_cover_the_truth():
    """3 replications x 6 intervals (drift of the first asset, its vol, the stay probability, per regime).
    If the intervals are calibrated the count of covering intervals is Binomial(18, 0.9) (taking the six
    intervals of one replication as independent: they concern different parameters whose posterior
    correlations are small); the test fails when it falls below the binomial's 0.5% quantile (12 or
    fewer of 18). The full version (100 replications) is benchmarks/posterior_coverage.py."""
    hits = np.concatenate([covered(seed, T=240, draws=200) for seed in range(3)])
    low = stats.binom.ppf(0.005, hits.size, 0.9)
    assert hits.sum() >= low, hits


def test_calibrate_posterior_refuses_to_write_when_diagnostics_fail(tmp_path):
    data = tmp_path / "d.csv"
    simulate_frame(true_params(), 150, np.random.default_rng(5)).to_csv(data)
    out = tmp_path / "s.yaml"
    r = CliRunner().invoke(
        main,
        ["calibrate", str(data), "--regimes", "2", "--posterior", "--draws", "20", "--chains", "1", "--out", str(out)],
    )
    assert r.exit_code == 1, r.output
    assert "ESS" in r.output and "--draws" in r.output
    # progress, off a terminal: a line at every tenth of the 40 iterations, the last one
    assert "NUTS warm-up: 1/40 iterations in each of 1 chain(s)" in r.output
    assert "NUTS sampling: 40/40 iterations in each of 1 chain(s)" in r.output
    assert not out.exists() and not (tmp_path / "s.posterior.nc").exists()


@pytest.mark.slow
def test_backtest_scores_three_methods_side_by_side(tmp_path):
    from simulator.fit.backtest import backtest

    frame = simulate_frame(true_params(), 300, np.random.default_rng(9))
    seen = []
    res = backtest(
        frame, 2, "2009-12-31", horizon_months=3, step_months=12, n_paths=400, n_starts=2,
        posterior=True, posterior_draws=4, draws=60, chains=1, sampler_progress=seen.append,
    )  # fmt: skip
    # the sampler reported every iteration: warm-up, then the draws, with the divergences counted in the file
    assert sorted(p.done for p in seen) == list(range(1, 121))
    assert {p.phase for p in seen if p.done <= 60} == {"warm-up"} and {p.phase for p in seen if p.done > 60} == {
        "sampling"
    }
    assert max(p.divergences for p in seen) == res.meta["posterior_diagnostics"]["divergences"]
    assert all(p.chains == 1 and p.total == 120 and not p.rerun for p in seen)
    s = res.summary
    assert list(s["method"][:3]) == ["model", "posterior", "bootstrap"] and (s["n_origins"] == 5).all()
    post = s[s["method"] == "posterior"]
    assert post["crps_diff_t_vs_model"].notna().all() and post["crps_skill_vs_model"].notna().all()
    assert "posterior vs plug-in model" in res.verdict and "best on CRPS" in res.verdict
    for c in ("posterior_pit", "posterior_crps", "posterior_in90"):
        assert res.scores[c].notna().all()
    # each origin pools 4 draws x 100 paths; its fan differs from the plug-in's
    assert not np.allclose(res.scores["posterior_median"], res.scores["model_median"])
    assert res.meta["posterior_draws_used"] == 4
    res.save(tmp_path / "bt")


@pytest.mark.slow
def test_posterior_mean_sits_near_the_ml_fit_on_the_shipped_data():
    """K = 2 on the 1,109 shipped months. With this much data the posterior is close to normal around the
    MLE and the weak priors move it little, so every drift, vol, correlation and transition probability has
    its posterior mean within 0.5 posterior sd of the ML value: that allows 4 Monte Carlo standard errors
    at an ESS of 100 (0.4 sd) and a small shift for skewness and the prior (the full run,
    benchmarks/RESULTS.md, has shifts of at most 0.2 sd); a wrong likelihood, a regime swap or a prior that
    dominates moves the mean by sds."""
    from simulator.fit.history import load_us_size_returns

    frame = load_us_size_returns()
    cal = calibrate(frame, 2)
    fit = sample_posterior(cal, log_returns(frame), draws=250, chains=2, seed=1)
    p, f = cal.fit.params, 12
    sd = np.sqrt(np.diagonal(p.covs, axis1=1, axis2=2))
    ml = {
        "drift": p.means * f,
        "vol": sd * np.sqrt(f),
        "corr": (p.covs / (sd[:, :, None] * sd[:, None, :]))[:, 0, 1],
        "transition": p.transition,
    }
    for name, value in ml.items():
        x = getattr(fit, name)
        x = x[..., 0, 1] if name == "corr" else x
        z = (x.mean(axis=(0, 1)) - value) / x.std(axis=(0, 1))
        assert np.all(np.abs(z) < 0.5), (name, z)
