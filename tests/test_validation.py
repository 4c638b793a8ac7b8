"""Scenario validation (docs/scenarios.md): one test per rule, each asserting the field path reported.

`sim.parse_scenario(dict, source=...)` / `sim.load_scenario(path)` raise `sim.ScenarioError`
(a ValueError) listing every problem as (dotted_field_path, message) pairs.
"""

from __future__ import annotations

import math

import pytest

import simulator as sim

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

CORR3_OK = [[1.0, 0.6, 0.8], [0.6, 1.0, 0.7], [0.8, 0.7, 1.0]]


def three_assets(sc: dict, corr=CORR3_OK) -> dict:
    """Turn the base scenario into a three-asset one (small, mid, large) with a 3x3 corr."""
    sc["assets"] = {"small": "Russell 2000", "mid": "S&P 400", "large": "S&P 500"}
    sc["compare"] = ["small", "large"]
    for reg in sc["regimes"].values():
        reg["drift"]["mid"] = (reg["drift"]["small"] + reg["drift"]["large"]) / 2
        reg["vol"]["mid"] = (reg["vol"]["small"] + reg["vol"]["large"]) / 2
        reg["corr"] = [list(row) for row in corr]
    return sc


def to_transitions(sc: dict, matrix: dict) -> dict:
    """Replace duration_months/next on every regime by a per-step transitions matrix."""
    for reg in sc["regimes"].values():
        reg.pop("duration_months", None)
        reg.pop("next", None)
    sc["transitions"] = matrix
    return sc


TRANSITIONS_OK = {
    "expansion": {"expansion": 0.97, "slowdown": 0.02, "recession": 0.01},
    "slowdown": {"expansion": 0.05, "slowdown": 0.90, "recession": 0.05},
    "recession": {"expansion": 0.10, "recession": 0.90},
}


def single_regime(sc: dict) -> dict:
    only = sc["regimes"]["expansion"]
    only.pop("duration_months")
    only.pop("next")
    sc["regimes"] = {"only": only}
    sc["start"] = "only"
    return sc


def make_regimes(names_next: dict) -> dict:
    """Regimes with identical return parameters and the given `next` rows."""
    return {
        name: {
            "drift": {"small": 0.05, "large": 0.05},
            "vol": {"small": 0.2, "large": 0.15},
            "corr": 0.8,
            "duration_months": 6,
            "next": nxt,
        }
        for name, nxt in names_next.items()
    }


# --------------------------------------------------------------------------------------------
# valid files load
# --------------------------------------------------------------------------------------------


class TestValid:
    def test_base_duration_next_form(self, scenario, accept):
        assert accept(scenario) is not None

    def test_load_scenario_from_file(self, scenario, write_scenario):
        path = write_scenario(scenario)
        assert sim.load_scenario(path) is not None
        assert sim.load_scenario(str(path)) is not None

    def test_minimal_optional_keys_omitted(self, scenario, accept):
        for key in ("description", "sources", "report_months", "compare"):
            scenario.pop(key)
        accept(scenario)

    def test_transitions_matrix_form(self, scenario, accept):
        accept(to_transitions(scenario, TRANSITIONS_OK))

    def test_transitions_row_within_1e9(self, scenario, accept):
        m = {k: dict(v) for k, v in TRANSITIONS_OK.items()}
        m["expansion"]["expansion"] = 0.97 + 1e-12
        accept(to_transitions(scenario, m))

    def test_start_stationary(self, scenario, accept):
        scenario["start"] = "stationary"
        accept(scenario)

    def test_start_regime_name(self, scenario, accept):
        scenario["start"] = "recession"
        accept(scenario)

    def test_start_mapping(self, scenario, accept):
        scenario["start"] = {"expansion": 0.5, "slowdown": 0.3, "recession": 0.2}
        accept(scenario)

    def test_start_mapping_partial(self, scenario, accept):
        scenario["start"] = {"expansion": 1.0}
        accept(scenario)

    def test_three_assets_matrix_corr_and_compare(self, scenario, accept):
        accept(three_assets(scenario))

    def test_three_assets_compare_other_pair(self, scenario, accept):
        sc = three_assets(scenario)
        sc["compare"] = ["mid", "large"]
        accept(sc)

    def test_phases(self, scenario, accept):
        scenario["phases"] = [
            {
                "until_month": 6,
                "regimes": {"slowdown": {"duration_months": 4, "next": {"recession": 0.8, "expansion": 0.2}}},
            },
            {"until_month": 24, "regimes": {"expansion": {"drift": {"small": 0.2, "large": 0.1}}}},
        ]
        accept(scenario)

    def test_rates(self, scenario, accept):
        scenario["rates"] = {
            "path": {0: 4.00, 3: 3.75, 6: 3.50, 12: 3.25},
            "sensitivity": {"small": -0.06, "large": -0.03},
        }
        accept(scenario)

    def test_tails(self, scenario, accept):
        scenario["regimes"]["expansion"]["tails"] = 2.5
        scenario["regimes"]["slowdown"]["tails"] = 30
        accept(scenario)

    def test_single_regime_without_duration_or_next(self, scenario, accept):
        accept(single_regime(scenario))

    def test_single_regime_stationary_start(self, scenario, accept):
        sc = single_regime(scenario)
        sc["start"] = "stationary"
        accept(sc)

    def test_weekly_half_month_duration_is_over_one_step(self, scenario, accept):
        # 0.5 months * 52/12 = 2.17 weekly steps >= 1 step
        scenario["frequency"] = "weekly"
        scenario["regimes"]["slowdown"]["duration_months"] = 0.5
        accept(scenario)

    def test_duration_exactly_one_step(self, scenario, accept):
        scenario["regimes"]["slowdown"]["duration_months"] = 1
        accept(scenario)

    @pytest.mark.parametrize("freq", ["monthly", "weekly", "daily"])
    def test_frequencies(self, scenario, accept, freq):
        scenario["frequency"] = freq
        accept(scenario)

    def test_expect_entries(self, scenario, accept):
        scenario["expect"] = [
            {"metric": "p_outperform", "horizon_months": 12, "between": [0.2, 0.9]},
            {"metric": "excess_median", "horizon_months": 24, "above": -1.0},
            {"metric": "small_q05", "horizon_months": 6, "below": 0.5},
            {"metric": "small_q95", "horizon_months": 12, "above": "small_q05"},
        ]
        accept(scenario)

    def test_report_months_default_horizon_not_in_list(self, scenario, accept):
        scenario.pop("report_months")
        scenario["horizon_months"] = 18
        accept(scenario)


# --------------------------------------------------------------------------------------------
# error container behaviour
# --------------------------------------------------------------------------------------------


class TestErrorObject:
    def test_is_value_error_subclass(self):
        assert issubclass(sim.ScenarioError, ValueError)

    def test_source_name_from_parse(self, scenario):
        scenario["frequency"] = "hourly"
        with pytest.raises(sim.ScenarioError) as ei:
            sim.parse_scenario(scenario, source="my-source")
        assert ei.value.source == "my-source"
        assert "my-source" in str(ei.value)

    def test_source_is_file_path_from_load(self, scenario, write_scenario):
        scenario["regimes"]["recession"]["vol"]["small"] = -0.1
        path = write_scenario(scenario, "bad_vol.yaml")
        with pytest.raises(sim.ScenarioError) as ei:
            sim.load_scenario(path)
        err = ei.value
        assert str(err.source) == str(path)
        assert str(path) in str(err)
        assert "regimes.recession.vol.small" in [str(p) for p, _ in err.problems]
        assert "regimes.recession.vol.small" in str(err)

    def _four_errors(self, sc):
        sc["name"] = "bad name!"
        sc["regimes"]["recession"]["vol"]["small"] = -0.1
        sc["regimes"]["expansion"]["next"] = {"slowdown": 0.5, "recession": 0.3}
        sc["start"] = "boom"
        return ["name", "regimes.recession.vol.small", "regimes.expansion.next", "start"]

    def test_several_errors_reported_together(self, scenario, reject):
        wanted = self._four_errors(scenario)
        err = reject(scenario, *wanted)
        assert len(err.problems) >= 4

    def test_unknown_key_does_not_hide_other_errors(self, scenario, reject):
        # a typo'd key must not mask the remaining problems: EVERY problem at once
        wanted = self._four_errors(scenario)
        scenario["bogus"] = 1
        scenario["regimes"]["slowdown"]["volatility"] = 0.3
        reject(scenario, "bogus", "regimes.slowdown.volatility", *wanted)

    def test_bad_frequency_does_not_hide_frequency_independent_errors(self, scenario, reject):
        wanted = self._four_errors(scenario)
        scenario["frequency"] = "hourly"
        reject(scenario, "frequency", *wanted)

    def test_several_errors_from_file(self, scenario, write_scenario):
        scenario["regimes"]["expansion"]["vol"]["large"] = float("nan")
        scenario["regimes"]["slowdown"]["tails"] = 2
        path = write_scenario(scenario, "two_errors.yaml")
        with pytest.raises(sim.ScenarioError) as ei:
            sim.load_scenario(path)
        paths = [str(p) for p, _ in ei.value.problems]
        assert "regimes.expansion.vol.large" in paths
        assert "regimes.slowdown.tails" in paths
        text = str(ei.value)
        assert str(path) in text
        assert "regimes.expansion.vol.large" in text and "regimes.slowdown.tails" in text


# --------------------------------------------------------------------------------------------
# YAML-level problems
# --------------------------------------------------------------------------------------------


class TestYaml:
    @pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n", ""], ids=["list", "str", "int", "empty"])
    def test_not_a_mapping(self, write_scenario, text):
        path = write_scenario(text, "notmap.yaml")
        with pytest.raises(sim.ScenarioError) as ei:
            sim.load_scenario(path)
        assert str(path) in str(ei.value)

    def test_parse_not_a_mapping(self):
        with pytest.raises(sim.ScenarioError) as ei:
            sim.parse_scenario(["a", "b"], source="listy")
        assert "listy" in str(ei.value)

    def test_syntax_error_names_file(self, write_scenario):
        path = write_scenario("name: x\nregimes: {a: [1, 2\nstart: : :\n", "broken.yaml")
        with pytest.raises(sim.ScenarioError) as ei:
            sim.load_scenario(path)
        assert str(ei.value.source) == str(path)
        assert str(path) in str(ei.value)

    def test_missing_file(self, tmp_path):
        # A missing file is a user error too; either ScenarioError or an OSError is acceptable,
        # but never a silently returned scenario.
        with pytest.raises((sim.ScenarioError, OSError)):
            sim.load_scenario(tmp_path / "nope.yaml")

    @pytest.mark.parametrize("where", ["top", "nested"])
    def test_python_tag_rejected_and_not_executed(self, write_scenario, tmp_path, where):
        marker = tmp_path / "pwned"
        payload = f'!!python/object/apply:os.system ["touch {marker}"]'
        text = payload + "\n" if where == "top" else f"name: {payload}\nfrequency: monthly\n"
        path = write_scenario(text, "evil.yaml")
        with pytest.raises(sim.ScenarioError) as ei:
            sim.load_scenario(path)
        assert str(path) in str(ei.value)
        assert not marker.exists(), "YAML python tag was executed"

    def test_duplicate_key_rejected(self, scenario, write_scenario):
        # PyYAML's safe_load silently keeps the last of two equal keys: a silent wrong answer
        import yaml

        text = yaml.safe_dump(scenario, sort_keys=False) + "frequency: weekly\n"
        path = write_scenario(text, "dup.yaml")
        with pytest.raises(sim.ScenarioError) as ei:
            sim.load_scenario(path)
        assert str(path) in str(ei.value)
        assert "frequency" in str(ei.value)

    def test_nan_and_inf_literals(self, scenario, write_scenario):
        import yaml

        text = yaml.safe_dump(scenario, sort_keys=False)
        text = text.replace("small: 0.35", "small: .nan").replace("large: 0.25", "large: .inf")
        assert ".nan" in text and ".inf" in text
        path = write_scenario(text, "nan.yaml")
        with pytest.raises(sim.ScenarioError) as ei:
            sim.load_scenario(path)
        paths = [str(p) for p, _ in ei.value.problems]
        assert "regimes.recession.vol.small" in paths
        assert "regimes.recession.vol.large" in paths


# --------------------------------------------------------------------------------------------
# one test per rule
# --------------------------------------------------------------------------------------------


class TestUnknownKeys:
    def test_top_level(self, scenario, reject):
        scenario["horizon"] = 12
        reject(scenario, "horizon")

    def test_in_regime(self, scenario, reject):
        scenario["regimes"]["recession"]["volatility"] = 0.3
        reject(scenario, "regimes.recession.volatility")

    def test_in_phase(self, scenario, reject):
        scenario["phases"] = [{"until_month": 6, "regims": {}}]
        reject(scenario, "phases.0.regims")

    def test_in_phase_regime_override(self, scenario, reject):
        scenario["phases"] = [{"until_month": 6, "regimes": {"slowdown": {"duration_months": 4, "nxt": {}}}}]
        reject(scenario, "phases.0.regimes.slowdown.nxt")

    def test_in_rates(self, scenario, reject):
        scenario["rates"] = {
            "path": {0: 4.0, 12: 3.5},
            "sensitivity": {"small": -0.06, "large": -0.03},
            "shock": 1,
        }
        reject(scenario, "rates.shock")

    def test_unknown_asset_in_per_asset_mapping(self, scenario, reject):
        scenario["regimes"]["expansion"]["drift"]["mid"] = 0.1
        reject(scenario, "regimes.expansion.drift.mid")

    def test_in_expect_entry(self, scenario, reject):
        scenario["expect"] = [{"metric": "p_outperform", "horizon_months": 12, "between": [0.1, 0.9], "tol": 1}]
        reject(scenario, "expect.0.tol")


class TestMissingAsset:
    def test_drift(self, scenario, reject):
        del scenario["regimes"]["expansion"]["drift"]["large"]
        reject(scenario, ("regimes.expansion.drift.large", "regimes.expansion.drift"))

    def test_vol(self, scenario, reject):
        del scenario["regimes"]["recession"]["vol"]["small"]
        reject(scenario, ("regimes.recession.vol.small", "regimes.recession.vol"))

    def test_sensitivity(self, scenario, reject):
        scenario["rates"] = {"path": {0: 4.0, 12: 3.5}, "sensitivity": {"small": -0.06}}
        reject(scenario, ("rates.sensitivity.large", "rates.sensitivity"))

    def test_missing_required_regime_field(self, scenario, reject):
        del scenario["regimes"]["slowdown"]["vol"]
        reject(scenario, "regimes.slowdown.vol")


class TestVol:
    def test_negative(self, scenario, reject):
        scenario["regimes"]["recession"]["vol"]["small"] = -0.1
        reject(scenario, "regimes.recession.vol.small")

    def test_nan(self, scenario, reject):
        scenario["regimes"]["recession"]["vol"]["small"] = float("nan")
        reject(scenario, "regimes.recession.vol.small")

    def test_inf(self, scenario, reject):
        scenario["regimes"]["expansion"]["vol"]["large"] = math.inf
        reject(scenario, "regimes.expansion.vol.large")

    @pytest.mark.parametrize("value", ["high", True], ids=["str", "bool"])
    def test_non_numeric(self, scenario, reject, value):
        # YAML `yes`/`true` must not silently become a 100% vol
        scenario["regimes"]["expansion"]["vol"]["large"] = value
        reject(scenario, "regimes.expansion.vol.large")

    def test_nan_drift(self, scenario, reject):
        # "anything else that would produce NaN"
        scenario["regimes"]["slowdown"]["drift"]["small"] = float("nan")
        reject(scenario, "regimes.slowdown.drift.small")

    def test_inf_sensitivity(self, scenario, reject):
        scenario["rates"] = {
            "path": {0: 4.0, 12: 3.5},
            "sensitivity": {"small": -math.inf, "large": -0.03},
        }
        reject(scenario, "rates.sensitivity.small")


class TestCorr:
    def test_two_assets_above_one(self, scenario, reject):
        scenario["regimes"]["expansion"]["corr"] = 1.2
        reject(scenario, "regimes.expansion.corr", prefix=True)

    def test_two_assets_below_minus_one(self, scenario, reject):
        scenario["regimes"]["slowdown"]["corr"] = -1.5
        reject(scenario, "regimes.slowdown.corr", prefix=True)

    def test_two_assets_nan(self, scenario, reject):
        scenario["regimes"]["slowdown"]["corr"] = float("nan")
        reject(scenario, "regimes.slowdown.corr", prefix=True)

    def test_three_assets_not_psd(self, scenario, reject):
        sc = three_assets(scenario)
        # eigenvalues -0.8, 1.9, 1.9: entries in [-1, 1], unit diagonal, symmetric, but not PSD
        sc["regimes"]["recession"]["corr"] = [[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]]
        reject(sc, "regimes.recession.corr", prefix=True)

    def test_three_assets_non_unit_diagonal(self, scenario, reject):
        sc = three_assets(scenario)
        sc["regimes"]["expansion"]["corr"] = [[1, 0.5, 0.2], [0.5, 0.9, 0.3], [0.2, 0.3, 1]]
        reject(sc, "regimes.expansion.corr", prefix=True)

    def test_three_assets_asymmetric(self, scenario, reject):
        sc = three_assets(scenario)
        sc["regimes"]["slowdown"]["corr"] = [[1, 0.5, 0.2], [0.4, 1, 0.3], [0.2, 0.3, 1]]
        reject(sc, "regimes.slowdown.corr", prefix=True)

    def test_three_assets_wrong_shape(self, scenario, reject):
        sc = three_assets(scenario)
        sc["regimes"]["slowdown"]["corr"] = [[1, 0.5], [0.5, 1]]
        reject(sc, "regimes.slowdown.corr", prefix=True)


class TestProbabilities:
    def test_next_probability_above_one(self, scenario, reject):
        scenario["regimes"]["expansion"]["next"] = {"slowdown": 1.2, "recession": -0.2}
        reject(scenario, ("regimes.expansion.next.slowdown", "regimes.expansion.next.recession"))

    def test_next_negative_probability(self, scenario, reject):
        scenario["regimes"]["expansion"]["next"] = {"slowdown": 1.2, "recession": -0.2}
        reject(scenario, "regimes.expansion.next.recession")

    def test_next_row_not_summing_to_one(self, scenario, reject):
        scenario["regimes"]["expansion"]["next"] = {"slowdown": 0.5, "recession": 0.3}
        reject(scenario, "regimes.expansion.next")

    def test_next_unknown_regime(self, scenario, reject):
        scenario["regimes"]["recession"]["next"] = {"boom": 1.0}
        reject(scenario, "regimes.recession.next.boom")

    def test_next_to_itself(self, scenario, reject):
        scenario["regimes"]["expansion"]["next"] = {"expansion": 0.2, "slowdown": 0.8}
        reject(scenario, "regimes.expansion.next.expansion")

    def test_transitions_probability_outside_unit_interval(self, scenario, reject):
        m = {k: dict(v) for k, v in TRANSITIONS_OK.items()}
        m["recession"] = {"expansion": -0.1, "recession": 1.1}
        reject(to_transitions(scenario, m), "transitions.recession", prefix=True)


class TestDuration:
    def test_half_month_at_monthly(self, scenario, reject):
        scenario["regimes"]["slowdown"]["duration_months"] = 0.5
        reject(scenario, "regimes.slowdown.duration_months")

    def test_zero(self, scenario, reject):
        scenario["regimes"]["slowdown"]["duration_months"] = 0
        reject(scenario, "regimes.slowdown.duration_months")

    def test_negative(self, scenario, reject):
        scenario["regimes"]["recession"]["duration_months"] = -3
        reject(scenario, "regimes.recession.duration_months")

    def test_below_one_step_at_daily(self, scenario, reject):
        # 0.02 months * 21 steps/month = 0.42 daily steps
        scenario["frequency"] = "daily"
        scenario["regimes"]["recession"]["duration_months"] = 0.02
        reject(scenario, "regimes.recession.duration_months")

    def test_in_phase_override(self, scenario, reject):
        scenario["phases"] = [{"until_month": 6, "regimes": {"slowdown": {"duration_months": 0.5}}}]
        reject(scenario, "phases.0.regimes.slowdown.duration_months")


class TestTails:
    @pytest.mark.parametrize("value", [2, 1.5, 0, -4])
    def test_tails_at_most_two(self, scenario, reject, value):
        scenario["regimes"]["expansion"]["tails"] = value
        reject(scenario, "regimes.expansion.tails")

    def test_tails_nan(self, scenario, reject):
        scenario["regimes"]["expansion"]["tails"] = float("nan")
        reject(scenario, "regimes.expansion.tails")


class TestTransitionForms:
    def test_both_forms(self, scenario, reject):
        # keep duration_months/next on the regimes and add a matrix too
        scenario["transitions"] = {k: dict(v) for k, v in TRANSITIONS_OK.items()}
        reject(scenario, ("transitions", "regimes"), prefix=True)

    def test_transitions_row_not_summing(self, scenario, reject):
        m = {k: dict(v) for k, v in TRANSITIONS_OK.items()}
        m["expansion"]["recession"] = 0.01 + 1e-7
        reject(to_transitions(scenario, m), "transitions.expansion")

    def test_transitions_unknown_regime_in_row(self, scenario, reject):
        m = {k: dict(v) for k, v in TRANSITIONS_OK.items()}
        m["recession"] = {"expansion": 0.1, "boom": 0.9}
        reject(to_transitions(scenario, m), "transitions.recession.boom")

    def test_transitions_unknown_row(self, scenario, reject):
        m = {k: dict(v) for k, v in TRANSITIONS_OK.items()}
        m["boom"] = {"expansion": 1.0}
        reject(to_transitions(scenario, m), "transitions.boom")

    def test_transitions_missing_row(self, scenario, reject):
        m = {k: dict(v) for k, v in TRANSITIONS_OK.items()}
        del m["slowdown"]
        reject(to_transitions(scenario, m), "transitions.slowdown")

    def test_regime_without_transition_info(self, scenario, reject):
        del scenario["regimes"]["slowdown"]["duration_months"]
        del scenario["regimes"]["slowdown"]["next"]
        reject(scenario, "regimes.slowdown", prefix=True)

    def test_regime_with_duration_but_no_next(self, scenario, reject):
        del scenario["regimes"]["slowdown"]["next"]
        reject(scenario, "regimes.slowdown", prefix=True)

    def test_regime_with_next_but_no_duration(self, scenario, reject):
        del scenario["regimes"]["slowdown"]["duration_months"]
        reject(scenario, "regimes.slowdown", prefix=True)

    def test_single_regime_with_next(self, scenario, reject):
        sc = single_regime(scenario)
        sc["regimes"]["only"]["duration_months"] = 12
        sc["regimes"]["only"]["next"] = {"only": 1.0}
        reject(sc, "regimes.only.next", prefix=True)

    def test_no_regimes(self, scenario, reject):
        scenario["regimes"] = {}
        scenario["start"] = "stationary"
        reject(scenario, "regimes", prefix=True)


class TestPhases:
    def test_out_of_order(self, scenario, reject):
        scenario["phases"] = [
            {"until_month": 12, "regimes": {"slowdown": {"duration_months": 4}}},
            {"until_month": 6, "regimes": {"slowdown": {"duration_months": 6}}},
        ]
        reject(scenario, "phases.1.until_month")

    def test_equal_until_months(self, scenario, reject):
        scenario["phases"] = [
            {"until_month": 6, "regimes": {"slowdown": {"duration_months": 4}}},
            {"until_month": 6, "regimes": {"slowdown": {"duration_months": 6}}},
        ]
        reject(scenario, "phases.1.until_month")

    def test_past_horizon(self, scenario, reject):
        scenario["phases"] = [{"until_month": 30, "regimes": {"slowdown": {"duration_months": 4}}}]
        reject(scenario, "phases.0.until_month")

    def test_non_positive_until(self, scenario, reject):
        scenario["phases"] = [{"until_month": 0, "regimes": {"slowdown": {"duration_months": 4}}}]
        reject(scenario, "phases.0.until_month")

    def test_unknown_regime(self, scenario, reject):
        scenario["phases"] = [{"until_month": 6, "regimes": {"boom": {"duration_months": 4}}}]
        reject(scenario, "phases.0.regimes.boom")

    def test_override_next_unknown_regime(self, scenario, reject):
        scenario["phases"] = [{"until_month": 6, "regimes": {"slowdown": {"next": {"boom": 1.0}}}}]
        reject(scenario, "phases.0.regimes.slowdown.next.boom")

    def test_override_negative_vol(self, scenario, reject):
        scenario["phases"] = [{"until_month": 6, "regimes": {"slowdown": {"vol": {"small": -0.2, "large": 0.2}}}}]
        reject(scenario, "phases.0.regimes.slowdown.vol.small")


class TestStart:
    def test_unknown_regime(self, scenario, reject):
        scenario["start"] = "boom"
        reject(scenario, "start")

    def test_mapping_not_summing(self, scenario, reject):
        scenario["start"] = {"expansion": 0.5, "recession": 0.3}
        reject(scenario, "start")

    def test_mapping_unknown_regime(self, scenario, reject):
        scenario["start"] = {"expansion": 0.5, "boom": 0.5}
        reject(scenario, "start", prefix=True)

    def test_mapping_negative(self, scenario, reject):
        scenario["start"] = {"expansion": 1.5, "recession": -0.5}
        reject(scenario, "start", prefix=True)


class TestStationary:
    def test_reducible_two_groups(self, scenario, reject):
        scenario["regimes"] = make_regimes({"a": {"b": 1.0}, "b": {"a": 1.0}, "c": {"d": 1.0}, "d": {"c": 1.0}})
        scenario["start"] = "stationary"
        reject(scenario, ("start", "regimes", "transitions"), prefix=True)

    def test_reducible_matrix_two_absorbing(self, scenario, reject):
        sc = to_transitions(
            scenario,
            {
                "expansion": {"expansion": 1.0},
                "slowdown": {"slowdown": 1.0},
                "recession": {"expansion": 0.5, "slowdown": 0.5},
            },
        )
        sc["start"] = "stationary"
        reject(sc, ("start", "regimes", "transitions"), prefix=True)

    def test_absorbing_regime(self, scenario, reject):
        sc = to_transitions(
            scenario,
            {
                "expansion": {"expansion": 0.9, "slowdown": 0.1},
                "slowdown": {"expansion": 0.1, "slowdown": 0.8, "recession": 0.1},
                "recession": {"recession": 1.0},
            },
        )
        sc["start"] = "stationary"
        reject(sc, ("start", "regimes", "transitions"), prefix=True)


class TestReportMonths:
    def test_beyond_horizon(self, scenario, reject):
        scenario["report_months"] = [3, 12, 36]
        reject(scenario, "report_months", prefix=True)

    def test_unsorted(self, scenario, reject):
        scenario["report_months"] = [12, 6, 24]
        reject(scenario, "report_months", prefix=True)

    def test_repeated(self, scenario, reject):
        scenario["report_months"] = [6, 6, 12]
        reject(scenario, "report_months", prefix=True)

    @pytest.mark.parametrize("bad", [0, -3])
    def test_non_positive(self, scenario, reject, bad):
        scenario["report_months"] = [bad, 12]
        reject(scenario, "report_months", prefix=True)


class TestScalars:
    @pytest.mark.parametrize("name", ["rate cut", "a/b", "../escape", "café!", ""])
    def test_bad_name(self, scenario, reject, name):
        scenario["name"] = name
        reject(scenario, "name")

    @pytest.mark.parametrize("freq", ["hourly", "Monthly", 12])
    def test_unknown_frequency(self, scenario, reject, freq):
        scenario["frequency"] = freq
        reject(scenario, "frequency")

    @pytest.mark.parametrize("h", [0, -12])
    def test_non_positive_horizon(self, scenario, reject, h):
        scenario["horizon_months"] = h
        scenario.pop("report_months")
        reject(scenario, "horizon_months")


class TestAssets:
    def test_compare_unknown_asset(self, scenario, reject):
        scenario["compare"] = ["small", "mid"]
        reject(scenario, "compare", prefix=True)

    def test_compare_same_asset_twice(self, scenario, reject):
        scenario["compare"] = ["small", "small"]
        reject(scenario, "compare", prefix=True)

    def test_fewer_than_two_assets(self, scenario, reject):
        scenario["assets"] = {"small": "Russell 2000"}
        scenario.pop("compare")
        for reg in scenario["regimes"].values():
            reg["drift"].pop("large")
            reg["vol"].pop("large")
        reject(scenario, "assets")


class TestRates:
    SENS = {"small": -0.06, "large": -0.03}

    def test_negative_month(self, scenario, reject):
        scenario["rates"] = {"path": {-1: 4.0, 6: 3.5}, "sensitivity": dict(self.SENS)}
        reject(scenario, "rates.path", prefix=True)

    def test_only_past_horizon(self, scenario, reject):
        scenario["rates"] = {"path": {30: 4.0, 36: 3.5}, "sensitivity": dict(self.SENS)}
        reject(scenario, "rates.path", prefix=True)

    def test_non_numeric_level(self, scenario, reject):
        scenario["rates"] = {"path": {0: "four", 6: 3.5}, "sensitivity": dict(self.SENS)}
        reject(scenario, "rates.path", prefix=True)

    def test_missing_sensitivity(self, scenario, reject):
        scenario["rates"] = {"path": {0: 4.0, 6: 3.5}}
        reject(scenario, "rates.sensitivity", prefix=True)

    def test_nan_level(self, scenario, reject):
        scenario["rates"] = {"path": {0: float("nan"), 6: 3.5}, "sensitivity": dict(self.SENS)}
        reject(scenario, "rates.path", prefix=True)


class TestExpect:
    GOOD = {"metric": "p_outperform", "horizon_months": 12, "between": [0.1, 0.9]}

    def test_unknown_metric(self, scenario, reject):
        scenario["expect"] = [dict(self.GOOD), {"metric": "p_win", "horizon_months": 12, "above": 0.5}]
        reject(scenario, "expect.1.metric")

    def test_horizon_not_a_report_month(self, scenario, reject):
        scenario["expect"] = [{"metric": "p_outperform", "horizon_months": 9, "above": 0.5}]
        reject(scenario, "expect.0.horizon_months")

    def test_none_of_between_above_below(self, scenario, reject):
        scenario["expect"] = [{"metric": "p_outperform", "horizon_months": 12}]
        reject(scenario, "expect.0", prefix=True)

    def test_several_of_between_above_below(self, scenario, reject):
        scenario["expect"] = [
            dict(self.GOOD),
            {"metric": "p_outperform", "horizon_months": 12, "between": [0.1, 0.9], "above": 0.2},
        ]
        reject(scenario, "expect.1", prefix=True)

    def test_between_reversed(self, scenario, reject):
        scenario["expect"] = [{"metric": "p_outperform", "horizon_months": 12, "between": [0.9, 0.1]}]
        reject(scenario, "expect.0.between", prefix=True)

    @pytest.mark.parametrize("key", ["above", "below"])
    def test_threshold_nan(self, scenario, reject, key):
        # a NaN threshold makes the check fail (or pass) whatever the simulation says
        scenario["expect"] = [{"metric": "p_outperform", "horizon_months": 12, key: float("nan")}]
        reject(scenario, f"expect.0.{key}")

    def test_between_nan(self, scenario, reject):
        scenario["expect"] = [{"metric": "p_outperform", "horizon_months": 12, "between": [float("nan"), 0.9]}]
        reject(scenario, "expect.0.between", prefix=True)

    def test_above_unknown_metric_name(self, scenario, reject):
        scenario["expect"] = [{"metric": "small_q95", "horizon_months": 12, "above": "p_win"}]
        reject(scenario, "expect.0.above")
