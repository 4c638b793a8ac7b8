"""Calibration: the likelihood machinery, recovery of a known model, agreement with statsmodels,
the calibrate -> scenario -> simulate round trip, the shipped data and scenario, and bad input.

Tolerances come from standard errors: the fit's own (observed information, checked against closed forms
and against statsmodels) or Monte Carlo ones. Seeds are fixed.
"""

from __future__ import annotations

import itertools
import shlex
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from scipy import stats

import simulator as sim
from simulator.cli import main
from simulator.fit.calibrate import (
    FitError,
    MSParams,
    _degeneracy,
    calibrate,
    expected_duration_months,
    fit_ms,
    forward_backward,
    loglik_and_grad,
    n_free_params,
    pack,
    scenario_text,
    start_probabilities,
    unpack,
)
from simulator.fit.history import DataError, load_us_size_returns, read_returns, us_size_path
from simulator.scenario import stationary_distribution

REPO = Path(__file__).resolve().parents[1]


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def simulate_chain(params: MSParams, T: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """T steps of the model (s_0 from the stationary law): (log returns [T, A], regimes [T])."""
    P = params.transition
    K, A = params.means.shape
    s = np.empty(T, int)
    s[0] = rng.choice(K, p=stationary_distribution(P))
    u = rng.random(T)
    cum = np.cumsum(P, axis=1)
    for t in range(1, T):
        s[t] = min(int(np.searchsorted(cum[s[t - 1]], u[t], side="right")), K - 1)
    L = np.linalg.cholesky(params.covs)
    y = params.means[s] + np.einsum("tab,tb->ta", L[s], rng.standard_normal((T, A)))
    return y, s


def returns_csv(path: Path, y: np.ndarray, columns=("small", "large"), freq="ME", start="1990-01-31") -> Path:
    dates = pd.date_range(start, periods=len(y), freq=freq)
    df = pd.DataFrame(np.expm1(y), columns=list(columns))
    df.insert(0, "date", dates.strftime("%Y-%m-%d"))
    df.to_csv(path, index=False, float_format="%.10f")
    return path


TRUE = MSParams(
    means=np.array([[-0.012, -0.008], [0.012, 0.009]]),
    covs=np.array(
        [
            [[0.060**2, 0.8 * 0.060 * 0.045], [0.8 * 0.060 * 0.045, 0.045**2]],
            [[0.035**2, 0.6 * 0.035 * 0.025], [0.6 * 0.035 * 0.025, 0.025**2]],
        ]
    ),
    transition=np.array([[0.90, 0.10], [0.04, 0.96]]),
)


# --------------------------------------------------------------------------------------------
# likelihood machinery


def brute_force(y, params):
    """Log-likelihood, filtered/smoothed probabilities and pair counts by enumerating every regime path."""
    T = len(y)
    K = len(params.means)
    pi = stationary_distribution(params.transition)
    b = np.array(
        [[stats.multivariate_normal(params.means[k], params.covs[k]).pdf(y[t]) for k in range(K)] for t in range(T)]
    )
    total, gam, xi = 0.0, np.zeros((T, K)), np.zeros((K, K))
    filt = np.zeros((T, K))
    for path in itertools.product(range(K), repeat=T):
        p = pi[path[0]] * b[0, path[0]]
        prefix = [p]
        for t in range(1, T):
            p *= params.transition[path[t - 1], path[t]] * b[t, path[t]]
            prefix.append(p)
        total += p
        for t in range(T):
            gam[t, path[t]] += p
            # prefix probabilities are summed over the paths' futures: divide by the K^(T-1-t) repeats
            filt[t, path[t]] += prefix[t] / K ** (T - 1 - t)
        for t in range(1, T):
            xi[path[t - 1], path[t]] += p
    return np.log(total), filt / filt.sum(1, keepdims=True), gam / total, xi / total


@pytest.mark.parametrize("T", [1, 2, 7])
def test_forward_backward_matches_enumeration(T):
    rng = np.random.default_rng(3)
    K, A = 3, 2
    params = MSParams(
        rng.normal(size=(K, A)) * 0.7,
        np.array([np.eye(A) * (0.4 + k) + 0.15 for k in range(K)]),
        rng.dirichlet(np.full(K, 2.0), size=K),
    )
    y = rng.normal(size=(T, A))
    post = forward_backward(y, params)
    ll, filt, smooth, pairs = brute_force(y, params)
    assert post.loglik == pytest.approx(ll, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(post.filtered, filt, atol=1e-12)
    np.testing.assert_allclose(post.smoothed, smooth, atol=1e-12)
    np.testing.assert_allclose(post.pair_counts, pairs, atol=1e-12)


def test_long_series_does_not_underflow():
    rng = np.random.default_rng(4)
    y, _ = simulate_chain(TRUE, 20_000, rng)
    post = forward_backward(y, TRUE)
    assert np.isfinite(post.loglik) and np.all(np.isfinite(post.smoothed))
    np.testing.assert_allclose(post.smoothed.sum(1), 1.0, atol=1e-12)
    assert post.pair_counts.sum() == pytest.approx(len(y) - 1, rel=1e-12)


def test_analytic_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    y, _ = simulate_chain(TRUE, 300, rng)
    z = (y - y.mean(0)) / y.std(0)
    start = MSParams(
        np.array([[-0.5, -0.4], [0.3, 0.2], [0.1, 0.0]]),
        np.array([np.eye(2) * 1.5 + 0.3, np.eye(2) * 0.6 + 0.2, np.eye(2)]),
        np.array([[0.8, 0.15, 0.05], [0.1, 0.85, 0.05], [0.2, 0.2, 0.6]]),
    )
    theta = pack(start)
    np.testing.assert_allclose(unpack(theta, 3, 2)[0].covs, start.covs, atol=1e-14)
    _, grad = loglik_and_grad(theta, z, 3)
    eps = 1e-6
    num = np.array(
        [
            (loglik_and_grad(theta + e, z, 3)[0] - loglik_and_grad(theta - e, z, 3)[0]) / (2 * eps)
            for e in np.eye(len(theta)) * eps
        ]
    )
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-5)


def test_one_regime_is_the_gaussian_mle_with_textbook_standard_errors():
    rng = np.random.default_rng(6)
    y = rng.normal([0.01, 0.005], [0.05, 0.03], size=(800, 2))
    fit = fit_ms(y, 1, n_starts=2)
    np.testing.assert_allclose(fit.params.means[0], y.mean(0), rtol=1e-9)
    np.testing.assert_allclose(fit.params.covs[0], np.cov(y.T, bias=True), rtol=1e-7)
    sd = y.std(0)
    # observed information of i.i.d. Gaussian data at the MLE: se(mean) = sd / sqrt(T), se(sd) = sd / sqrt(2T)
    np.testing.assert_allclose(fit.se.means[0], sd / np.sqrt(800), rtol=1e-4)
    np.testing.assert_allclose(fit.se.sds[0], sd / np.sqrt(1600), rtol=1e-4)
    assert fit.n_params == n_free_params(1, 2) == 5


# --------------------------------------------------------------------------------------------
# recovery of a known model


@pytest.fixture(scope="module")
def synthetic_fit():
    rng = np.random.default_rng(2024)
    y, s = simulate_chain(TRUE, 3000, rng)
    return fit_ms(y, 2, n_starts=6, seed=1), y, s


def test_known_model_is_recovered_within_standard_errors(synthetic_fit):
    fit, y, s = synthetic_fit
    p, se = fit.params, fit.se
    true_sd = np.sqrt(np.diagonal(TRUE.covs, axis1=1, axis2=2))
    true_corr = TRUE.covs[:, 0, 1] / (true_sd[:, 0] * true_sd[:, 1])
    sd = np.sqrt(np.diagonal(p.covs, axis1=1, axis2=2))
    corr = p.covs[:, 0, 1] / (sd[:, 0] * sd[:, 1])
    z = np.concatenate(
        [
            ((p.means - TRUE.means) / se.means).ravel(),
            ((sd - true_sd) / se.sds).ravel(),
            (corr - true_corr) / se.corrs[:, 0, 1],
            [(p.transition[0, 1] - 0.10) / se.transition[0, 1], (p.transition[1, 0] - 0.04) / se.transition[1, 0]],
        ]
    )
    assert np.all(np.isfinite(z)) and np.all(se.means > 0)
    assert np.abs(z).max() < 3.5, f"a parameter is more than 3.5 standard errors off: z = {np.round(z, 2)}"
    # jointly: 14 z-scores; their sum of squares is roughly chi-square(14) (they are not independent, so
    # this is a sanity bound, not a test size)
    assert (z**2).sum() < stats.chi2.ppf(0.999, len(z))
    # the regimes are identified: the smoothed bear probability tracks the true bear regime
    assert np.mean((fit.smoothed[:, 0] > 0.5) == (s == 0)) > 0.85
    assert fit.converged and fit.grad_max < 1e-5


def test_standard_errors_match_their_sampling_spread(synthetic_fit):
    """Parametric bootstrap, small: refit 12 series simulated from the fitted model; the spread of the
    bull-regime mean of asset 1 matches the observed-information SE within the bootstrap's own error."""
    fit, y, _ = synthetic_fit
    rng = np.random.default_rng(11)
    est = []
    for _ in range(12):
        yb, _ = simulate_chain(fit.params, 3000, rng)
        est.append(fit_ms(yb, 2, n_starts=1, seed=0, with_se=False).params.means[1, 0])
    ratio = np.std(est, ddof=1) / fit.se.means[1, 0]
    lo, hi = np.sqrt(stats.chi2.ppf([0.001, 0.999], 11) / 11)  # sd ratio of 12 draws, 99.8% range
    assert lo < ratio < hi, f"bootstrap sd / SE = {ratio:.2f} outside [{lo:.2f}, {hi:.2f}]"


# --------------------------------------------------------------------------------------------
# agreement with statsmodels' MarkovRegression


@pytest.mark.parametrize("column", ["large", "small"])
def test_loglik_and_parameters_agree_with_statsmodels(column):
    sm = pytest.importorskip("statsmodels.api")
    y = np.log1p(load_us_size_returns()[column].to_numpy())
    mine = fit_ms(y, 2, n_starts=4)
    mod = sm.tsa.MarkovRegression(y, k_regimes=2, trend="c", switching_variance=True)
    np.random.seed(0)  # statsmodels' random search uses the global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mod.fit(search_reps=20, disp=False)
    # agree to 1e-4 relative, or ours is higher (then the parameter checks below would fail loudly)
    assert mine.loglik >= res.llf - 1e-4 * abs(res.llf), (mine.loglik, res.llf)
    # statsmodels' regimes in our order (lower mean first); its p[i->j] is P(s_t = j | s_t-1 = i)
    names = list(mod.param_names)
    sp = dict(zip(names, res.params))
    sse = dict(zip(names, res.bse))
    order = np.argsort([sp["const[0]"], sp["const[1]"]])
    p01 = {0: 1 - sp["p[0->0]"], 1: sp["p[1->0]"]}  # P(to the other regime)
    for mine_k, their_k in enumerate(order):
        other = 1 - mine_k
        pairs = [
            (mine.params.means[mine_k, 0], sp[f"const[{their_k}]"], mine.se.means[mine_k, 0]),
            (mine.params.covs[mine_k, 0, 0], sp[f"sigma2[{their_k}]"], sse[f"sigma2[{their_k}]"]),
            (mine.params.transition[mine_k, other], p01[their_k], mine.se.transition[mine_k, other]),
        ]
        for ours, theirs, se in pairs:
            assert abs(ours - theirs) < 0.05 * se, (ours, theirs, se)
        # the standard errors agree too (both from the observed information)
        assert mine.se.means[mine_k, 0] == pytest.approx(sse[f"const[{their_k}]"], rel=0.03)


# --------------------------------------------------------------------------------------------
# calibrate -> scenario -> simulate


def test_round_trip_scenario_reproduces_the_fitted_moments():
    frame = load_us_size_returns()
    cal = calibrate(frame, 2, n_starts=3)
    text = scenario_text(cal, name="roundtrip", horizon_months=12)
    data = yaml.safe_load(text)
    data["report_months"] = [1, 12]  # draws are kept at report horizons
    sc = sim.parse_scenario(data, source="roundtrip")
    p, f = cal.fit.params, 12
    for k, r in enumerate(cal.regimes):
        np.testing.assert_allclose([sc.regimes[r].drift[a] for a in cal.assets], p.means[k] * f, atol=1e-6)
        np.testing.assert_allclose(
            [sc.regimes[r].vol[a] for a in cal.assets], np.sqrt(np.diag(p.covs[k]) * f), atol=1e-6
        )
    start = start_probabilities(cal)
    np.testing.assert_allclose(list(sc.start.values()), start, atol=1e-6)
    res = sim.simulate(sc, n_paths=200_000, seed=3, precision=64)
    for h in (1, 12):
        logs = np.log1p(res.draws(h).to_numpy())  # [n, A] h-month log returns
        # exact mean of the h-month log return: sum over steps of (start P^t) mu
        dist, mean = start.copy(), np.zeros(2)
        for _ in range(h):
            mean += dist @ p.means
            dist = dist @ p.transition
        se = logs.std(0) / np.sqrt(len(logs))
        assert np.all(np.abs(logs.mean(0) - mean) < 4 * se), (h, logs.mean(0), mean, se)
    # one month: the law is the start-weighted Gaussian mixture; its variance is exact too
    one = np.log1p(res.draws(1).to_numpy())
    mu1 = start @ p.means
    var1 = start @ (np.diagonal(p.covs, axis1=1, axis2=2) + p.means**2) - mu1**2
    np.testing.assert_allclose(one.var(0), var1, rtol=0.02)  # sd of a variance estimate here is < 0.5%


def test_weekly_data_scenario_is_at_weekly_frequency(tmp_path):
    rng = np.random.default_rng(8)
    weekly = MSParams(TRUE.means / 4, TRUE.covs / 4, np.array([[0.97, 0.03], [0.01, 0.99]]))
    y, _ = simulate_chain(weekly, 700, rng)
    data = returns_csv(tmp_path / "weekly.csv", y, freq="W-FRI")
    out = tmp_path / "w.yaml"
    r = invoke(["calibrate", data, "--regimes", 2, "--out", out, "--starts", 3])
    assert r.exit_code == 0, r.output
    sc = sim.load_scenario(out)
    assert sc.frequency == "weekly"
    frame = read_returns(data)
    assert frame.attrs["frequency"] == "weekly"
    fit = calibrate(frame, 2, n_starts=3).fit
    np.testing.assert_allclose(sc.regimes["bull"].drift["small"], fit.params.means[1, 0] * 52, atol=1e-6)
    # durations in the comment are in months: 1 / (1 - P_kk) weeks * 12 / 52
    np.testing.assert_allclose(
        expected_duration_months(fit.params.transition, 52), 1 / (1 - np.diag(fit.params.transition)) * 12 / 52
    )


# --------------------------------------------------------------------------------------------
# shipped data and the historical scenario


def test_shipped_data_is_the_documented_derivation():
    """Ken French's size portfolios, CRSP 202602 vintage: small = Lo 30, large = Hi 30 (value-weighted); the
    file is rebuilt byte for byte from the publisher's file in tests/test_data_sources.py."""
    frame = load_us_size_returns()
    assert list(frame.columns) == ["small", "large"] and frame.attrs["frequency"] == "monthly"
    assert str(frame.index[0].date()) == "1926-07-31" and str(frame.index[-1].date()) == "2026-02-28"
    assert len(frame) == 1196 and us_size_path().stat().st_size < 64_000
    # first and last months of "Average Value Weight Returns -- Monthly": Lo 30 0.06 / 0.97, Hi 30 3.40 / -1.06
    assert frame["small"].iloc[0] == 0.0006 and frame["large"].iloc[0] == 0.034
    assert frame["small"].iloc[-1] == 0.0097 and frame["large"].iloc[-1] == -0.0106
    prov = frame.attrs["provenance"]
    assert prov["vintage"] == "CRSP 202602"
    assert prov["sha256"] == "2db5e0f42e6ed6c6f2d984697927e46f2e01fa1ae9b9e26f400c0dbd8eba1060"


def _numbers_close(a, b, path=""):
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            _numbers_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _numbers_close(x, y, f"{path}.{i}")
    elif isinstance(a, float):
        assert b == pytest.approx(a, abs=2e-6), path  # values are written to 6-8 decimals
    else:
        assert a == b, path


def test_historical_scenario_is_reproduced_by_its_command(tmp_path, monkeypatch):
    shipped = REPO / "scenarios" / "historical.yaml"
    text = shipped.read_text()
    command = next(ln for ln in text.splitlines() if ln.startswith("# command: "))[len("# command: ") :]
    args = shlex.split(command)[2:]  # drop 'capsim calibrate'
    out = args.index("--out")
    args[out + 1] = str(tmp_path / "historical.yaml")
    monkeypatch.chdir(REPO)  # the data path in the command is relative to the repo
    r = invoke(["calibrate", *args, "--name", "no-schema-here"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "historical.yaml").read_text().startswith("# yaml-language-server")
    (tmp_path / "scenario.schema.json").write_text((REPO / "scenarios" / "scenario.schema.json").read_text())
    r = invoke(["calibrate", *args, "--force"])  # with the schema beside it, the file names it as the shipped one does
    assert r.exit_code == 0, r.output
    again = (tmp_path / "historical.yaml").read_text()
    assert again.splitlines()[0] == text.splitlines()[0] == "# yaml-language-server: $schema=scenario.schema.json"
    _numbers_close(yaml.safe_load(text), yaml.safe_load(again))
    ll = lambda t: float(t.split("log-likelihood: ")[1].split()[0])  # noqa: E731
    assert ll(again) == pytest.approx(ll(text), abs=1e-3)
    sc = sim.load_scenario(shipped)
    assert sc.regime_names == ["bear", "neutral", "bull"] and sc.transitions is not None
    assert invoke(["validate", shipped]).exit_code == 0


def test_three_regimes_win_on_bic_for_the_shipped_data():
    """Why scenarios/historical.yaml has three regimes (README): BIC falls from K=2 to K=3."""
    text = (REPO / "scenarios" / "historical.yaml").read_text()
    bic3 = float(text.split("BIC: ")[1].split()[0])
    fit2 = calibrate(load_us_size_returns(), 2, n_starts=3, with_se=False).fit
    assert bic3 < fit2.bic


# --------------------------------------------------------------------------------------------
# bad data and degenerate fits


def _write(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _good_rows(n, start="2000-01-31", seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=n, freq="ME").strftime("%Y-%m-%d")
    r = rng.normal(0.01, 0.05, size=(n, 2))
    return [f"{d},{a:.5f},{b:.5f}" for d, (a, b) in zip(dates, r)]


BAD_CASES = {
    "missing value": (
        lambda rows: rows[:4] + [rows[4].rsplit(",", 1)[0] + ","] + rows[5:],
        ["line 6", "'large'", "missing value"],
    ),
    "non-numeric": (
        lambda rows: rows[:9] + [rows[9].split(",")[0] + ",abc," + rows[9].split(",")[2]] + rows[10:],
        ["line 11", "'small'", "'abc'"],
    ),
    "unsorted dates": (lambda rows: rows[:20] + [rows[21], rows[20]] + rows[22:], ["line 23", "sorted by date"]),
    "repeated date": (lambda rows: rows[:30] + [rows[29]] + rows[31:], ["line 32", "repeats"]),
    "bad date": (lambda rows: rows[:3] + ["31/04/2000" + rows[3][10:]] + rows[4:], ["line 5", "not a date"]),
    "gap": (lambda rows: rows[:50] + rows[52:], ["line 52", "no missing periods"]),
    "constant column": (lambda rows: [r.rsplit(",", 1)[0] + ",0.01" for r in rows], ["column 'large'", "constant"]),
    "percent in a decimal file": (
        lambda rows: [
            f"{r.split(',')[0]},{float(r.split(',')[1]) * 100:.3f},{float(r.split(',')[2]) * 100:.3f}" for r in rows
        ],
        ["--percent"],
    ),
    "too few rows": (lambda rows: rows[:40], ["40 rows", "too few", "need at least 60"]),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_data_is_a_clear_error_naming_row_or_column(tmp_path, case):
    change, needles = BAD_CASES[case]
    data = _write(tmp_path, "date,small,large\n" + "\n".join(change(_good_rows(120))) + "\n")
    out = tmp_path / "out.yaml"
    r = invoke(["calibrate", data, "--regimes", 2, "--out", out])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)
    assert str(data) in r.output
    for n in needles:
        assert n in r.output, (n, r.output)
    assert not out.exists()


def test_other_input_errors(tmp_path):
    data = _write(tmp_path, "date,small,large\n" + "\n".join(_good_rows(120)) + "\n")
    cases = [
        (["--columns", "small,mid"], ["'mid'", "not in the file"]),
        (["--start-date", "2030-01-31"], ["start date 2030-01-31 is after end date 2009-12-31"]),
        (["--start-date", "2005-01-31", "--end-date", "2005-12-31"], ["12 rows (2005-01-31 .. 2005-12-31)", "too few"]),
        (["--frequency", "weekly"], ["does not match the dates"]),
    ]
    for extra, needles in cases:
        r = invoke(["calibrate", data, "--regimes", 2, "--out", tmp_path / "o.yaml", *extra])
        assert r.exit_code == 2 and all(n in r.output for n in needles), (extra, r.output)
    nodate = _write(tmp_path, "when,small,large\n2000-01-31,0.1,0.2\n", "nodate.csv")
    r = invoke(["calibrate", nodate, "--regimes", 2, "--out", tmp_path / "o.yaml"])
    assert r.exit_code == 2 and "`date` column" in r.output
    r = invoke(["calibrate", data, "--regimes", 2, "--columns", "small", "--out", tmp_path / "o.yaml"])
    assert r.exit_code == 2 and "two assets" in r.output
    r = invoke(["calibrate", tmp_path / "missing.csv", "--regimes", 2, "--out", tmp_path / "o.yaml"])
    assert r.exit_code == 2 and "no such file" in r.output
    with pytest.raises(DataError, match="line 4, column 'small'"):
        read_returns(
            _write(tmp_path, "date,small\n2000-01-31,0.1\n2000-02-29,0.1\n2000-03-31,-1.5\n", "neg.csv"), percent=False
        )


def test_collapsing_variance_is_caught_and_nothing_written(tmp_path):
    """Stale prices: each column takes two values only, so the data are four points. Any split of four points
    between two Gaussian regimes leaves a regime on a line or a point: its covariance collapses (the
    likelihood is unbounded there). The fit is refused, with the reason."""
    rng = np.random.default_rng(9)
    small, large = rng.choice([0.01, 0.03], size=200), rng.choice([0.0, 0.02], size=200)
    dates = pd.date_range("2000-01-31", periods=200, freq="ME").strftime("%Y-%m-%d")
    lines = [f"{d},{a},{b}" for d, a, b in zip(dates, small, large)]
    data = _write(tmp_path, "date,small,large\n" + "\n".join(lines) + "\n")
    out = tmp_path / "o.yaml"
    res = invoke(["calibrate", data, "--regimes", 2, "--out", out])
    assert res.exit_code == 2, res.output
    assert "degenerate" in res.output and "collapsing variance" in res.output and str(data) in res.output
    assert not out.exists()


def test_empty_regime_and_non_convergence_are_caught():
    counts = np.array([500.0, 3.0])
    ok = MSParams(np.zeros((2, 2)), np.array([np.eye(2), np.eye(2)]), np.eye(2))
    assert "empty regime" in _degeneracy(ok, counts, min_obs=10, var_floor=1e-4)
    assert _degeneracy(ok, np.array([400.0, 100.0]), min_obs=10, var_floor=1e-4) is None
    rng = np.random.default_rng(10)
    y, _ = simulate_chain(TRUE, 500, rng)
    with pytest.raises(FitError, match="did not converge"):
        fit_ms(y, 2, n_starts=1, max_iter=3, polish_fit=False)
    # i.i.d. data asked for four regimes of one asset with few rows: regimes empty out or collapse
    x = rng.normal(size=(60, 1))
    with pytest.raises(FitError, match="degenerate"):
        fit_ms(x, 4, n_starts=3, min_regime_obs=12)


def test_start_is_the_filtered_law_moved_one_step():
    cal = calibrate(load_us_size_returns(end_date="1990-12-31"), 2, n_starts=2, with_se=False)
    np.testing.assert_allclose(start_probabilities(cal), cal.fit.filtered[-1] @ cal.fit.params.transition)
    assert cal.fit.starts.logliks.shape == (2,)
