"""Validation that goes on past type errors, plausibility warnings (docs/scenarios.md, "Warnings"), and means that
do not exist under Student-t tails marked where they are shown (docs/outputs.md, "Means under fat tails")."""

from __future__ import annotations

import json

import pytest
from clihelp import describe, invoke, write

import simulator as sim
from simulator.shipped import shipped_scenarios

# --------------------------------------------------------------------------------------------
# every problem at once, past type errors


@pytest.mark.parametrize(
    "field, wrong",
    [("frequency", 12), ("horizon_months", "12"), ("name", 7)],
)
def test_a_wrong_type_does_not_hide_the_other_problems(scenario, reject, field, wrong):
    scenario[field] = wrong
    scenario["assets"] = {"small": "Russell 2000"}
    scenario["compare"] = None
    for regime in scenario["regimes"].values():
        regime["drift"].pop("large")
        regime["vol"].pop("large")
    scenario["regimes"]["expansion"]["corr"] = 1.5
    err = reject(scenario, field, "assets", "regimes.expansion.corr")
    assert "got 1.5" in dict(err.problems)["regimes.expansion.corr"]


def test_a_wrong_type_inside_a_regime_does_not_hide_the_others(scenario, reject):
    scenario["regimes"]["expansion"]["drift"] = "0.1"
    scenario["regimes"]["slowdown"]["vol"]["small"] = -0.2
    scenario["phases"] = [{"until_month": 100}]
    reject(scenario, "regimes.expansion.drift", "regimes.slowdown.vol.small", "phases.0.until_month")


def test_a_stand_in_horizon_raises_no_horizon_problems_of_its_own(scenario, reject):
    scenario["horizon_months"] = 24.5
    scenario["expect"] = [{"metric": "p_outperform", "horizon_months": 12, "above": 0.1}]
    err = reject(scenario, "horizon_months")
    assert [p for p, _ in err.problems] == ["horizon_months"]


# --------------------------------------------------------------------------------------------
# plausibility warnings


def warnings_of(data) -> dict[str, tuple[str, str]]:
    return {w.path: (w.check, w.message) for w in sim.parse_scenario(data).warnings}


def test_shipped_scenarios_raise_no_warning():
    for sc in shipped_scenarios():
        assert sc.warnings == [], sc.name


def test_plausible_values_raise_no_warning(scenario):
    assert warnings_of(scenario) == {}


def test_a_drift_in_percent_is_named_with_its_likely_meaning(scenario):
    scenario["regimes"]["expansion"]["drift"]["large"] = 8.5
    check, message = warnings_of(scenario)["regimes.expansion.drift.large"]
    assert check == "drift"
    assert "850% a year" in message and "did you mean 0.085?" in message


def test_a_vol_and_a_sensitivity_in_percent_warn(scenario):
    scenario["regimes"]["recession"]["vol"]["small"] = 8  # 35 would overflow the run: refused, not warned
    scenario["rates"] = {"path": {0: 4.0, 12: 3.0}, "sensitivity": {"small": -8, "large": -0.03}}
    found = warnings_of(scenario)
    assert found["regimes.recession.vol.small"][0] == "vol"
    assert "did you mean 0.08?" in found["regimes.recession.vol.small"][1]
    assert found["rates.sensitivity.small"][0] == "sensitivity"
    assert set(found) == {"regimes.recession.vol.small", "rates.sensitivity.small"}


def test_a_phase_override_is_checked_too(scenario):
    scenario["phases"] = [{"until_month": 6, "regimes": {"slowdown": {"drift": {"small": -4.0}}}}]
    assert warnings_of(scenario)["phases.0.regimes.slowdown.drift.small"][0] == "drift"


def test_rates_written_as_decimals_warn(scenario):
    scenario["rates"] = {"path": {0: 0.04, 12: 0.0325}, "sensitivity": {"small": -0.08, "large": -0.03}}
    check, message = warnings_of(scenario)["rates.path"]
    assert check == "rates"
    assert "look like decimals; capsim's rates are in percent" in message and "did you mean 4, 3.25?" in message


def test_a_rate_path_at_zero_raises_no_warning(scenario):
    scenario["rates"] = {"path": {0: 0.0, 12: 0.0}, "sensitivity": {"small": -0.08, "large": -0.03}}
    assert warnings_of(scenario) == {}


def test_a_distribution_is_checked_at_its_centre(scenario):
    scenario["regimes"]["expansion"]["drift"]["small"] = {"uniform": [5.0, 7.0]}
    assert "did you mean 0.06?" in warnings_of(scenario)["regimes.expansion.drift.small"][1]


def test_an_expect_on_a_mean_that_does_not_exist_warns(scenario):
    scenario["expect"] = [
        {"metric": "excess_mean", "horizon_months": 12, "above": 0},
        {"metric": "small_median", "horizon_months": 12, "above": "large_mean"},
        {"metric": "excess_median", "horizon_months": 12, "above": 0},
    ]
    found = warnings_of(scenario)  # the recession regime has tails
    assert set(found) == {"expect.0", "expect.1"}
    assert found["expect.1"][0] == "undefined_mean" and "large_mean" in found["expect.1"][1]
    for regime in scenario["regimes"].values():
        regime.pop("tails", None)
    assert warnings_of(scenario) == {}


def test_silence_warnings_silences_the_named_check_only(scenario):
    scenario["regimes"]["expansion"]["drift"]["large"] = 8.5
    scenario["regimes"]["recession"]["vol"]["small"] = 8
    scenario["silence_warnings"] = ["drift"]
    assert set(warnings_of(scenario)) == {"regimes.recession.vol.small"}


def test_silence_warnings_takes_known_checks_only(scenario, reject):
    scenario["silence_warnings"] = ["drfit"]
    reject(scenario, "silence_warnings.0")


def test_validate_and_run_show_the_warning_and_meta_json_keeps_it(scenario, tmp_path, monkeypatch):
    scenario["regimes"]["expansion"]["drift"]["large"] = 8.5
    path = write(tmp_path, scenario, "slip.yaml")
    monkeypatch.chdir(tmp_path)
    result = invoke("validate", path)
    assert result.exit_code == 0, describe(result)
    assert f"warning: {path}: regimes.expansion.drift.large: drift 8.5 is 850% a year" in result.output
    assert "silence_warnings: [drift]" in result.output
    result = invoke("run", path, "--paths", 2000, "--horizon", 3, "--out", tmp_path / "out")
    assert result.exit_code == 0, describe(result)
    assert "regimes.expansion.drift.large: drift 8.5 is 850% a year" in result.output
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert any(w.startswith("regimes.expansion.drift.large: drift 8.5") for w in meta["warnings"])


# --------------------------------------------------------------------------------------------
# means that do not exist: marked where they are shown


def test_run_marks_the_means_of_a_scenario_with_tails(scenario, tmp_path):
    path = write(tmp_path, scenario, "tails.yaml")
    result = invoke("run", path, "--paths", 2000, "--out", tmp_path / "out", "--wide")
    assert result.exit_code == 0, describe(result)
    lines = result.output.splitlines()
    assert any(line.startswith("│ excess mean *") for line in lines)
    assert any(line.startswith("│ small mean *") for line in lines)
    assert not any(line.startswith("│ excess median *") for line in lines)
    assert "* no mean exists with Student-t tails" in result.output
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["undefined_means"] == ["excess_mean", "excess_sd", "small_mean", "large_mean"]


def test_run_marks_nothing_without_tails(scenario, tmp_path):
    for regime in scenario["regimes"].values():
        regime.pop("tails", None)
    path = write(tmp_path, scenario, "gauss.yaml")
    result = invoke("run", path, "--paths", 2000, "--out", tmp_path / "out", "--wide")
    assert result.exit_code == 0, describe(result)
    assert " *" not in result.output
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["undefined_means"] == []


def test_compare_marks_mean_cells_of_the_items_with_tails(scenario, tmp_path):
    tails = write(tmp_path, scenario, "tails.yaml")
    for regime in scenario["regimes"].values():
        regime.pop("tails", None)
    scenario["name"] = "gauss"
    gauss = write(tmp_path, scenario, "gauss.yaml")
    result = invoke("compare", gauss, tails, "--paths", 2000, "--horizons", 12, "--out", tmp_path / "cmp")
    assert result.exit_code == 0, describe(result)
    row = next(line for line in result.output.splitlines() if line.startswith("│ excess mean"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert not cells[2].endswith("*") and cells[3].endswith(" *")
    assert "no mean exists with Student-t tails" in result.output
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert "no mean exists with Student-t tails" in page
    assert page.count("% *</td>") == 2  # excess mean and balance of risks of the item with tails


def test_check_warns_on_an_expect_of_an_undefined_mean(scenario, tmp_path):
    scenario["expect"] = [{"metric": "excess_mean", "horizon_months": 12, "between": [-1, 1]}]
    path = write(tmp_path, scenario, "tails.yaml")
    result = invoke("check", path, "--paths", 2000)
    assert result.exit_code == 0, describe(result)
    assert f"warning: {path}: expect.0: excess_mean is a sample mean of returns that have no mean" in result.output


# --------------------------------------------------------------------------------------------
# as_of: the date of a scenario's facts, shown in its outputs


def test_shipped_scenarios_carry_their_date():
    dates = {sc.name: sc.as_of for sc in shipped_scenarios()}
    assert all(dates.values()), dates
    assert str(dates["historical"]) == "2026-02-28"  # the last date of the data it was fitted to


def test_as_of_is_a_date(scenario, reject, accept):
    scenario["as_of"] = "2026-13-01"
    reject(scenario, "as_of")
    scenario["as_of"] = 20260201
    assert "YYYY-MM-DD" in dict(reject(scenario, "as_of").problems)["as_of"]
    scenario["as_of"] = "2026-02-01"
    assert str(accept(scenario).as_of) == "2026-02-01"


def test_as_of_is_shown_in_the_table_meta_json_and_report(scenario, tmp_path):
    scenario["as_of"] = "2026-02-01"
    path = write(tmp_path, scenario, "dated.yaml")
    result = invoke("run", path, "--paths", 2000, "--horizon", 3, "--out", tmp_path / "out")
    assert result.exit_code == 0, describe(result)
    assert "facts as of 2026-02-01" in " ".join(result.output.split())  # the title may fold
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["as_of"] == "2026-02-01"
    assert sim.load_result(tmp_path / "out").scenario.as_of == scenario_date("2026-02-01")
    result = invoke("compare", tmp_path / "out", path, "--paths", 2000, "--horizon", 3, "--out", tmp_path / "c")
    assert result.exit_code == 0, describe(result)
    assert "as_of: 2026-02-01" in (tmp_path / "c" / "report.html").read_text()


def scenario_date(text: str):
    import datetime

    return datetime.date.fromisoformat(text)


# --------------------------------------------------------------------------------------------
# figures left out, and intervals on few draws, are said


def test_compare_and_blend_say_which_horizons_they_leave_out(tmp_path):
    result = invoke("compare", "soft_landing", "recession", "--paths", 2000, "--out", tmp_path / "c")
    assert result.exit_code == 0, describe(result)
    assert "note: recession's 36m left out: not a report horizon of every item" in result.output
    assert json.loads((tmp_path / "c" / "meta.json").read_text())["dropped_horizons"] == {"recession": [36]}
    page = (tmp_path / "c" / "report.html").read_text()
    assert "recession (shipped);" in page and "recession.yaml" not in page  # its name, not its installed path
    result = invoke("blend", "soft_landing=0.5", "recession=0.5", "--paths", 2000, "--out", tmp_path / "b")
    assert result.exit_code == 0, describe(result)
    assert "note: recession's 36m left out: a blend reports at its components' common report months" in result.output


def test_an_interval_across_few_draws_is_flagged(scenario, tmp_path):
    scenario["regimes"]["expansion"]["drift"]["small"] = {"uniform": [0.05, 0.15]}
    path = write(tmp_path, scenario, "uncertain.yaml")
    result = invoke("run", path, "--paths", 2000, "--out", tmp_path / "out")
    assert result.exit_code == 0, describe(result)
    assert "rest on 8 parameter draw(s)" in result.output and "--paths 5,120 or more" in result.output  # G = 256


# --------------------------------------------------------------------------------------------
# the printed table fits an 80-column terminal; --wide shows every figure


def test_the_summary_table_fits_80_columns_and_wide_shows_every_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    for name in ("baseline", "rate_cut"):  # six report horizons; parameter draws
        result = invoke("run", name, "--paths", 2000, "--out", tmp_path / name)
        assert result.exit_code == 0, describe(result)
        table = [line for line in result.output.splitlines() if line[:1] in "┏┃┡│├└"]
        assert table and max(len(line) for line in table) <= 80, result.output
        assert "│ excess mean *" in result.output and "│ excess 90% HDI" not in result.output
        assert "--wide: every figure" in result.output
    result = invoke("run", "baseline", "--paths", 2000, "--out", tmp_path / "w", "--wide")
    assert result.exit_code == 0, describe(result)
    assert "│ excess 90% HDI" in result.output and "│ small max drawdown median / q95" in result.output
