"""Risk figures side by side in compare and report.html, the paired difference of P(loss), and P(first beats
second) on fan.png (docs/compare-blend.md, docs/outputs.md)."""

from __future__ import annotations

import math

import pandas as pd
from clihelp import describe, invoke, read_table, write

import simulator as sim
from simulator.compare import compare
from simulator.plots import fan_figure


def test_compare_shows_risk_figures_and_the_paired_p_loss_difference(scenario, tmp_path):
    calm = dict(scenario, name="calm")
    calm["regimes"] = {
        k: dict(r, vol={"small": r["vol"]["small"] * 0.8, "large": r["vol"]["large"]})
        for k, r in scenario["regimes"].items()
    }
    a, b = write(tmp_path, scenario, "a.yaml"), write(tmp_path, calm, "b.yaml")
    result = invoke("compare", a, b, "--paths", 20000, "--horizons", 12, "--out", tmp_path / "c")
    assert result.exit_code == 0, describe(result)
    for label in ("small VaR95", "small ES95", "small P(loss)", "large max drawdown 95%", "small P(loss) minus"):
        assert f"│ {label}" in result.output, label
    table = read_table(tmp_path / "c" / "compare.csv")
    value = {(r.item, r.metric): r.value for r in table.itertuples() if r.horizon_months == 12}
    assert (
        value[("calm", "diff_small_p_loss")] == value[("calm", "small_p_loss")] - value[("unit-test", "small_p_loss")]
    )
    paired = value[("calm", "diff_small_p_loss_se")]
    p, q = value[("unit-test", "small_p_loss")], value[("calm", "small_p_loss")]
    independent = math.sqrt((p * (1 - p) + q * (1 - q)) / 20000)
    assert 0 < paired < independent  # common random numbers: the same shocks, smaller vols
    page = (tmp_path / "c" / "report.html").read_text()
    assert 'data-metric="small_var95"' in page and 'data-metric="diff_small_p_loss_se"' in page


def test_independent_p_loss_difference_combines_both_errors(scenario, tmp_path):
    sc = sim.parse_scenario(scenario)
    ra = sim.simulate(sc, n_paths=4000, seed=1)
    rb = sim.simulate(sc, n_paths=8000, seed=2)
    c = compare([ra, rb], horizons=[12])
    row = c.table().set_index(["item", "metric"])["value"]
    label = c.items[1].label
    se_a, se_b = (r.summary().set_index("horizon_months").loc[12, "small_p_loss_se"] for r in (ra, rb))
    assert math.isclose(row[(label, "diff_small_p_loss_se")], math.hypot(se_a, se_b))


def test_fan_png_writes_p_outperform_at_each_report_horizon(scenario):
    res = sim.simulate(sim.parse_scenario(scenario), n_paths=2000, seed=0)
    summary = res.summary()
    fig = fan_figure(res.fan(), res.model, "t", summary=summary)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert [f"{p:.2f}" for p in summary["p_outperform"]] == [t for t in texts if not t.startswith("P(")]
    assert any(t.startswith("P(small beats large)") for t in texts)
    assert isinstance(summary, pd.DataFrame)
