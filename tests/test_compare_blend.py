"""compare and blend against exact answers: a blend's p_outperform is the path-weighted sum of its components'
exactly and its quantiles are the mixture's (solved from the exact CDFs of tests/exact.py); paired standard
errors of differences are calibrated (z-scores against exact differences); and the command line's outputs,
report page and errors."""

from __future__ import annotations

import base64
import io
import json
import math
import re

import exact as ex
import html5lib
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from exact_cases import Z_TOL, two_regime
from scipy import optimize, stats

import simulator as sim
from simulator.blend import blend, split_paths
from simulator.cli import main
from simulator.compare import compare, independent_differences
from simulator.engine import BLOCK_PATHS
from simulator.output import read_csv_exact

N = 200_000


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def bull_drift(small: float) -> dict:
    """two_regime() with another bull-regime drift for small caps: a known difference from it."""
    sc = two_regime()
    sc["name"] = "bull-lower"
    sc["regimes"]["bull"]["drift"]["small"] = small
    return sc


def write(tmp_path, sc: dict) -> str:
    path = tmp_path / f"{sc['name']}.yaml"
    path.write_text(yaml.safe_dump(sc, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def pair():
    """Two Gaussian scenarios with exact answers, simulated with one seed (common random numbers)."""
    a, b = two_regime(), bull_drift(0.10)
    return a, b, sim.parse_scenario(a), sim.parse_scenario(b)


# --------------------------------------------------------------------------------------------
# blend


def test_split_paths_uses_largest_remainders():
    assert split_paths([0.6, 0.25, 0.15], 10) == [6, 3, 1]
    assert split_paths([1 / 3, 1 / 3, 1 / 3], 10) == [4, 3, 3]
    assert split_paths([0.5, 0.5], 7) == [4, 3]
    assert sum(split_paths([0.123, 0.456, 0.421], 999_983)) == 999_983


def test_blend_p_outperform_is_the_weighted_sum_of_its_components(pair):
    _, _, sa, sb = pair
    res = blend([(sa, 0.7), (sb, 0.3)], n_paths=N, seed=3)
    ns = [c["n_paths"] for c in res.meta["components"]]
    assert ns == [140_000, 60_000]
    summary = res.summary().set_index("horizon_months")
    for h in summary.index:
        parts = [p.summary().set_index("horizon_months").loc[h] for p in res.parts]
        weighted = sum(n * p["p_outperform"] for n, p in zip(ns, parts)) / N
        assert summary.at[h, "p_outperform"] == pytest.approx(weighted, abs=1e-14)
        stratified = math.sqrt(sum((n / N) ** 2 * p["p_outperform_se"] ** 2 for n, p in zip(ns, parts)))
        assert summary.at[h, "p_outperform_se"] == pytest.approx(stratified, rel=1e-12)
        mean = sum(n * p["excess_mean"] for n, p in zip(ns, parts)) / N
        assert summary.at[h, "excess_mean"] == pytest.approx(mean, rel=1e-12)


def test_blend_quantiles_are_the_mixture_quantiles(pair):
    """Solve sum_i w_i F_i(x) = q with the components' exact CDFs; the blend's empirical quantile must sit
    within Z_TOL standard errors: sqrt(sum_i w_i^2 F_i (1 - F_i) / n_i) / f(x), f the mixture density."""
    a, b, sa, sb = pair
    w = [0.6, 0.4]
    res = blend([(sa, w[0]), (sb, w[1])], n_paths=N, seed=11)
    ns = [c["n_paths"] for c in res.meta["components"]]
    summary = res.summary().set_index("horizon_months")
    lines, bad = [], []
    for h in (12, 24):
        mixes = [ex.ExactModel(s).mixture(h) for s in (a, b)]
        for col, q in (("excess_q05", 0.05), ("excess_q25", 0.25), ("excess_median", 0.5), ("excess_q95", 0.95)):
            cdf = lambda x: sum(wi * m.x_cdf(x) for wi, m in zip(w, mixes))  # noqa: E731
            x = optimize.brentq(lambda x: cdf(x) - q, -5, 5, xtol=1e-12)
            density = sum(wi * m.x_pdf(x) for wi, m in zip(w, mixes))
            var_f = sum((wi**2) * m.x_cdf(x) * (1 - m.x_cdf(x)) / n for wi, m, n in zip(w, mixes, ns))
            z = (summary.at[h, col] - x) / (math.sqrt(var_f) / density)
            lines.append(f"h={h} {col}: blend {summary.at[h, col]:+.5f} exact {x:+.5f} z {z:+.2f}")
            if abs(z) >= Z_TOL:
                bad.append(lines[-1])
    print("\n".join(lines))
    assert not bad, bad


def test_a_blend_of_one_scenario_has_that_scenario_s_distribution(pair):
    """Weight 1: the scenario's own law, from another random stream (so not the same paths)."""
    _, _, sa, _ = pair
    alone = blend({sa: 1.0}, n_paths=N, seed=5)
    run = sim.simulate(sa, n_paths=N, seed=5)
    assert list(alone.summary().columns) == list(run.summary().columns)
    for h in (3, 12, 24):
        x, y = alone.draws(h), run.draws(h)
        assert not np.array_equal(x.to_numpy(), y.to_numpy())  # its own stream
        for col in ("small", "large"):
            assert stats.ks_2samp(x[col], y[col]).pvalue > 1e-4, (h, col)
        assert stats.ks_2samp(x["small"] - x["large"], y["small"] - y["large"]).pvalue > 1e-4
    a, b = alone.summary().set_index("horizon_months"), run.summary().set_index("horizon_months")
    se = np.hypot(a["p_outperform_se"], b["p_outperform_se"])
    assert (abs(a["p_outperform"] - b["p_outperform"]) < Z_TOL * se).all()


def test_two_components_from_one_file_share_no_paths(pair):
    _, _, sa, _ = pair
    res = blend([(sa, 0.5), (sa, 0.5)], n_paths=2 * 16_384, seed=1)
    d0, d1 = (p.draws(12).to_numpy() for p in res.parts)
    # no path in common: no row equal in both assets (one asset's float32 values alone coincide by chance,
    # about five times among 16,384 x 16,384 pairs)
    assert not set(map(tuple, d0)) & set(map(tuple, d1))


def test_blend_unites_regimes_and_keeps_common_horizons(tmp_path):
    rate_cut = sim.load_scenario("scenarios/rate_cut.yaml")  # 24 months, expansion/slowdown
    recession = sim.load_scenario("scenarios/recession.yaml")  # 36 months, + recession
    res = blend({rate_cut: 0.5, recession: 0.5}, n_paths=40_000, seed=0)
    s = res.summary()
    assert list(s["horizon_months"]) == [3, 6, 12, 24]
    occ = [c for c in s.columns if c.startswith("occupancy_")]
    assert occ == ["occupancy_expansion", "occupancy_slowdown", "occupancy_recession"]
    assert np.allclose(s[occ].sum(axis=1), 1.0)
    own = res.parts[1].summary().set_index("horizon_months")["occupancy_recession"]
    assert np.allclose(s.set_index("horizon_months")["occupancy_recession"], 0.5 * own)
    out = res.save(tmp_path / "b")
    comp = pd.read_csv(out / "components.csv")
    assert set(comp["component"]) == {"rate-cut", "recession"} and len(comp) == 8
    assert comp["excess_median_percentile_in_blend"].between(0, 100).all()
    loaded = sim.load_result(out)
    assert loaded.scenario is None and loaded.meta["kind"] == "blend"
    pd.testing.assert_frame_equal(loaded.summary(), res.summary(), check_exact=True)


# --------------------------------------------------------------------------------------------
# compare: paired differences


def test_paired_standard_errors_are_calibrated(pair):
    """Over 64 seeds, two common-random-number runs of 32,768 paths each: the paired differences and their
    standard errors give z-scores against the exact differences. About 95% of |z| must fall below 1.96: the
    count is binomial(128, 0.95) over two horizons, so within 4 of its standard errors (0.019) of 0.95; and the
    z-scores' sd must be 1."""
    a, b, sa, sb = pair
    z_p, z_m = [], []
    exact = {h: (ex.ExactModel(a).mixture(h), ex.ExactModel(b).mixture(h)) for h in (12, 24)}
    for seed in range(64):
        c = compare([sa, sb], n_paths=2 * BLOCK_PATHS, seed=seed)
        t = c.table().set_index(["item", "horizon_months", "metric"])["value"]
        label = c.items[1].label
        for h, (ma, mb) in exact.items():
            true_p = mb.p_outperform() - ma.p_outperform()
            true_m = mb.x_quantile(0.5) - ma.x_quantile(0.5)
            assert t[(label, h, "diff_paired")] == 1.0
            z_p.append((t[(label, h, "diff_p_outperform")] - true_p) / t[(label, h, "diff_p_outperform_se")])
            z_m.append((t[(label, h, "diff_excess_median")] - true_m) / t[(label, h, "diff_excess_median_se")])
    tol = 4 * math.sqrt(0.95 * 0.05 / len(z_p))
    for name, z in (("p_outperform", z_p), ("excess_median", z_m)):
        share = np.mean(np.abs(z) < 1.959964)
        print(f"{name}: share of |z| < 1.96 = {share:.3f} (mean z {np.mean(z):+.3f}, sd {np.std(z):.3f})")
        assert abs(share - 0.95) < tol, (name, share)
        # too large an SE passes the share above (it only rises to 1): the z-scores' spread must be 1, within
        # 4 standard errors of a normal sample's sd, 1 / sqrt(2 len(z))
        assert abs(np.std(z) - 1) < 4 / math.sqrt(2 * len(z)), (name, np.std(z))


def test_paired_errors_are_smaller_than_independent_ones(pair):
    _, _, sa, sb = pair
    c = compare([sa, sb], n_paths=N, seed=4)
    t = c.table().set_index(["item", "horizon_months", "metric"])["value"]
    label = c.items[1].label
    for h in c.horizons:
        assert t[(label, h, "diff_paired")] == 1.0
        ra, rb = (i.result.summary().set_index("horizon_months").loc[h] for i in c.items)
        indep = independent_differences(ra, rb, N, N)
        assert t[(label, h, "diff_p_outperform_se")] < 0.6 * indep["diff_p_outperform_se"]
        assert t[(label, h, "diff_excess_median_se")] < 0.6 * indep["diff_excess_median_se"]
        assert t[(label, h, "diff_p_outperform")] == pytest.approx(rb["p_outperform"] - ra["p_outperform"], abs=0)


def test_compare_of_a_result_folder_equals_compare_of_its_scenario(pair, tmp_path):
    _, _, sa, sb = pair
    folder = sim.simulate(sa, n_paths=N, seed=8).save(tmp_path / "a")
    from_scenario = compare([sa, sb], n_paths=N, seed=8).table()
    from_folder = compare([folder, sb], n_paths=N, seed=8).table()
    first = from_scenario["item"] == from_scenario["item"].iloc[0]
    pd.testing.assert_frame_equal(
        from_scenario[first].reset_index(drop=True),
        from_folder[from_folder["item"] == "exact-two"].reset_index(drop=True),
    )
    paired = from_scenario.set_index(["item", "metric", "horizon_months"])["value"].sort_index()
    independent = from_folder.set_index(["item", "metric", "horizon_months"])["value"].sort_index()
    assert (paired["bull-lower", "diff_paired"] == 1).all() and (independent["bull-lower", "diff_paired"] == 0).all()
    pd.testing.assert_series_equal(
        paired["bull-lower", "diff_p_outperform"], independent["bull-lower", "diff_p_outperform"]
    )


# --------------------------------------------------------------------------------------------
# command line


def test_capsim_compare_writes_a_self_contained_report(pair, tmp_path):
    a, b, _, _ = pair
    out = tmp_path / "cmp"
    r = invoke("compare", write(tmp_path, a), write(tmp_path, b), "--paths", 40_000, "--out", out)
    assert r.exit_code == 0, r.output
    assert "paired (common random numbers)" in r.output and "P(small beats large)" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["compare.csv", "compare.png", "meta.json", "report.html"]
    table = read_csv_exact(out / "compare.csv")
    assert list(table.columns) == ["item", "horizon_months", "metric", "value"]
    page = (out / "report.html").read_text()
    doc = html5lib.parse(page, namespaceHTMLElements=False)  # raises on nothing; check the tree instead
    assert doc.find("head/title") is not None and doc.find("body") is not None
    images = doc.findall(".//img")
    assert images
    import matplotlib.image as mpimg

    for img in images:
        src = img.get("src")
        assert src.startswith("data:image/png;base64,")
        picture = mpimg.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert picture.shape[0] > 100 and picture.shape[1] > 100
    for el in doc.iter():
        for attr in ("src", "href"):
            value = el.get(attr)
            assert value is None or value.startswith("data:") or value.startswith("#"), (el.tag, value)
    assert doc.find(".//script") is None and doc.find(".//link") is None
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    cells = [el for el in doc.iter("td") if el.get("data-metric")]
    csv = table.set_index(["item", "horizon_months", "metric"])["value"]
    assert len(cells) > 50
    for el in cells:
        key = (el.get("data-item"), int(el.get("data-horizon")), el.get("data-metric"))
        assert float(el.get("data-value")) == csv[key], key
    for sc in (a, b):
        assert sc["description"] in page or sc["description"].split()[0] in page


def test_capsim_blend_writes_the_run_folder_and_components(tmp_path):
    out = tmp_path / "b"
    r = invoke("blend", "soft_landing=0.6", "rate_cut=0.25", "recession=0.15", "--paths", 40_000, "--out", out)
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} == {
        "summary.csv",
        "summary.json",
        "fan.csv",
        "fan.png",
        "meta.json",
        "components.csv",
    }
    meta = json.loads((out / "meta.json").read_text())
    assert [c["weight"] for c in meta["components"]] == [0.6, 0.25, 0.15]
    assert [c["n_paths"] for c in meta["components"]] == [24_000, 10_000, 6_000]
    assert all(len(c["sha256"]) == 64 for c in meta["components"])
    r = invoke("compare", out, "soft_landing", "--paths", 40_000, "--out", tmp_path / "c")
    assert r.exit_code == 0 and "independent" in r.output, r.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["soft_landing=0", "rate_cut=1"], "soft_landing (shipped): weight 0.0 must be a positive number"),
        (["soft_landing=-0.2", "rate_cut=1.2"], "weight -0.2 must be a positive number"),
        (["soft_landing=abc", "rate_cut=0.5"], "'soft_landing=abc': weight 'abc' is not a number"),
        (["soft_landing=0.5", "rate_cut=0.4"], "weights sum to 0.9, not 1"),
        (["soft_landing", "rate_cut=1"], "'soft_landing': give each component as SCENARIO=WEIGHT"),
        (["nowhere=1"], "nowhere"),
    ],
)
def test_blend_bad_input_is_exit_2_naming_the_item(tmp_path, args, needle):
    r = invoke("blend", *args, "--paths", 40_000, "--out", tmp_path / "b")
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "b").exists()


def test_blend_of_different_compared_pairs_is_refused(tmp_path, pair):
    a, _, _, _ = pair
    flipped = {**two_regime(), "name": "flipped", "compare": ["large", "small"]}
    r = invoke("blend", f"{write(tmp_path, a)}=0.5", f"{write(tmp_path, flipped)}=0.5", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "different pairs" in r.output and "flipped.yaml" in r.output


def test_compare_bad_items_are_exit_2_naming_them(tmp_path, pair):
    a, _, _, _ = pair
    not_yaml = tmp_path / "notes.txt"
    not_yaml.write_text("just words\n")
    r = invoke("compare", write(tmp_path, a), not_yaml, "--out", tmp_path / "c")
    assert r.exit_code == 2 and "notes.txt" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = invoke("compare", write(tmp_path, a), empty, "--out", tmp_path / "c")
    assert r.exit_code == 2 and "empty" in r.output and "not a complete result folder" in r.output
    flipped = {**two_regime(), "name": "flipped", "compare": ["large", "small"]}
    r = invoke("compare", write(tmp_path, a), write(tmp_path, flipped), "--paths", 20_000, "--out", tmp_path / "c")
    assert r.exit_code == 2 and "different pairs" in r.output and "flipped" in r.output
    short = {**two_regime(), "name": "short", "horizon_months": 2, "report_months": [2]}
    r = invoke("compare", write(tmp_path, a), write(tmp_path, short), "--paths", 20_000, "--out", tmp_path / "c")
    assert r.exit_code == 2 and "share no report horizon" in r.output and "short" in r.output
    r = invoke("compare", write(tmp_path, a), "--horizons", "5", "--paths", 20_000, "--out", tmp_path / "c")
    assert r.exit_code == 2 and "--horizons" in r.output
    assert not (tmp_path / "c").exists()
