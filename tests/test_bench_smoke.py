"""Smoke test of the benchmark (benchmarks/bench.py): every peer implementation, on a tiny path count,
agrees with the exact moments of the benchmark model; the check has power; the table renders.
No timing assertions. Peers that are not installed (pip install ".[bench]") are skipped."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("capsim_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


bench = _load_bench()
HAS_DYNAMAX = importlib.util.find_spec("dynamax") is not None
HAS_HMMLEARN = importlib.util.find_spec("hmmlearn") is not None


def short(workload: str, months: int) -> dict:
    d = bench.scenario_dict(workload)
    d["horizon_months"], d["report_months"] = months, [months]
    return d


@pytest.fixture(scope="module")
def dynamax_proc():
    """The dynamax worker (a subprocess: ~10 s of imports and compiling) starts first and runs beside
    the other tests; ``test_dynamax_peer`` collects it."""
    if not HAS_DYNAMAX:
        yield None
        return
    proc = bench.start_dynamax_subprocess(short("monthly", 12), [2048], seed=3, repeats=1, budget_s=60)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_start_dynamax_early(dynamax_proc):
    assert dynamax_proc is None or dynamax_proc.pid > 0


def test_workloads_shape_and_exact_moments():
    for w, T in (("monthly", 120), ("daily", 252)):
        m = bench.hmm_from_dict(bench.scenario_dict(w))
        assert m.n_steps == T and m.mu.shape == (3, 2) and m.cov.shape == (3, 2, 2)
        np.testing.assert_allclose(m.P.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(m.p0 @ m.P, m.p0, atol=1e-12)  # stationary start
    # one regime: L ~ N(T mu, T s2) exactly
    d = bench.scenario_dict("monthly")
    d["regimes"] = {"only": d["regimes"]["expansion"]}
    d["transitions"] = {"only": {"only": 1.0}}
    m = bench.hmm_from_dict(d)
    mu, s2 = m.mu[0, 0], m.cov[0, 0, 0]
    mean, var = bench.exact_log_moments(m, 0)
    assert mean == pytest.approx(120 * mu) and var == pytest.approx(120 * s2)
    smean, svar = bench.exact_simple_moments(m, 0)
    assert smean == pytest.approx(math.exp(120 * (mu + s2 / 2)) - 1)
    assert svar == pytest.approx(math.exp(240 * mu + 240 * s2) - math.exp(240 * mu + 120 * s2))


def test_exact_log_moments_against_brute_force():
    """Two steps, enumerated regime paths: mean and variance of L by hand."""
    d = short("monthly", 12)
    m = bench.hmm_from_dict(d)
    m.n_steps = 2
    mu, v, P, p0 = m.mu[:, 0], m.cov[:, 0, 0], m.P, m.p0
    e1 = e2 = 0.0
    for i in range(3):
        for j in range(3):
            w = p0[i] * P[i, j]
            e1 += w * (mu[i] + mu[j])
            e2 += w * ((mu[i] + mu[j]) ** 2 + v[i] + v[j])
    mean, var = bench.exact_log_moments(m, 0)
    assert mean == pytest.approx(e1, rel=1e-12) and var == pytest.approx(e2 - e1 * e1, rel=1e-12)


@pytest.mark.parametrize("workload", ["monthly", "daily"])
def test_numpy_peer(workload):
    m = bench.hmm_from_dict(short(workload, 6))
    L = bench.numpy_paths(m, 6000, seed=5, chunk=4096)  # two chunks, the second partial
    assert L.shape == (6000, 2) and L.dtype == np.float32
    chk = bench.check_log_returns(m, L)
    assert chk.ok, chk.details


def test_check_has_power():
    """Paths simulated with twice the variance, or the wrong start law, fail the check."""
    m = bench.hmm_from_dict(short("monthly", 24))
    wrong = bench.hmm_from_dict(short("monthly", 24))
    wrong.cov = wrong.cov * 2.0
    assert not bench.check_log_returns(m, bench.numpy_paths(wrong, 8192, seed=6)).ok
    wrong = bench.hmm_from_dict(short("monthly", 24))
    wrong.p0 = np.array([0.0, 0.0, 1.0])  # start in recession
    assert not bench.check_log_returns(m, bench.numpy_paths(wrong, 8192, seed=6)).ok


@pytest.mark.skipif(not HAS_HMMLEARN, reason="hmmlearn not installed (pip install '.[bench]')")
def test_hmmlearn_peer():
    m = bench.hmm_from_dict(short("monthly", 12))
    L = bench.hmmlearn_paths(m, 150, seed=7)
    chk = bench.check_log_returns(m, L)
    assert chk.ok, chk.details


def test_capsim_matches_exact():
    import simulator

    # per-step on monthly steps; the exact path (when simulate has one) on daily steps, where it aggregates
    for method, d in (("per-step", short("monthly", 12)), ("exact", short("daily", 2))):
        if method not in bench.capsim_methods():
            continue
        res = bench.capsim_run(simulator.parse_scenario(d), 8192, seed=11, method=method)
        chk = bench.check_capsim(bench.hmm_from_dict(d), res)
        assert chk.ok, (method, chk.details)


def test_limit_kernel_runs():
    rate, c = bench.normal_rate(total=1 << 18, log2_chunks=(17,), repeats=1)
    assert rate > 0 and c == 17


def test_table_and_targets():
    rows = [
        bench.Row("monthly", 10**6, "limit", 10**6, [2.0], 120),
        bench.Row("monthly", 10**6, "capsim", 10**6, [1.0, 1.2, 0.9], 120, "ok (max |z| 1.0)"),
        bench.Row("monthly", 10**6, "numpy", 10**5, [0.5], 120, "ok (max |z| 1.0)"),
        bench.Row("monthly", 10**6, "dynamax", 10**6, [5.0], 120, "FAIL (max |z| 9.0)", check_ok=False),
    ]
    limit = 10**6 * 120 / 2.0
    cells = bench.build_table(rows, limit)
    cap, numpy_row, dyn = cells[1], cells[2], cells[3]
    assert cap[7] == "2.00" and cap[8] == "1.00"  # x limit; capsim / itself
    assert numpy_row[3] == "1e5†" and numpy_row[8] == "5.00"  # extrapolated; 1.2e8 / 2.4e7
    assert dyn[6].startswith("(") and dyn[8] == ""  # a failed check is shown but not compared
    text = "\n".join(bench.targets(rows, limit))
    assert "limit at every path count: monthly **met** (worst 2.00" in text
    assert "capsim >= 6 x numpy: monthly **NOT met** (worst 5.00" in text
    assert "FAILED" in text and "dynamax" in text
    assert bench.markdown_table(cells).count("\n") == len(rows) + 1
    # the exact-path target applies to both workloads (12-month and 3-month segments)
    ex = [
        bench.Row("monthly", 10**6, "capsim exact", 10**6, [4.0], 120, "ok"),
        bench.Row("daily", 10**6, "limit", 10**6, [2.0], 252),
        bench.Row("daily", 10**6, "capsim exact", 10**6, [0.4], 252, "ok"),
    ]
    text = "\n".join(bench.targets(rows + ex, limit))
    assert "monthly **NOT met** (worst 0.50" in text and "daily **met** (worst 5.00" in text


@pytest.mark.skipif(not HAS_DYNAMAX, reason="dynamax not installed (pip install '.[bench]')")
def test_dynamax_peer(dynamax_proc):
    res = bench.finish_dynamax(dynamax_proc, timeout_s=120)
    assert "error" not in res, res
    r = res["results"]["2048"]
    assert r["check_ok"], r["check_details"]
