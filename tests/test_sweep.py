"""`capsim sweep` and ``sim.sweep`` (docs/batch-sweep.md): field paths and probability rows, the file's own value
reproducing `capsim run` exactly, monotone curves under common random numbers, and every input error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from clihelp import assert_user_error, describe, invoke, read_table, write

import simulator as sim
from simulator.sweep import parse_set, with_field

PATHS = "20000"


@pytest.fixture
def data(make_scenario):
    d = make_scenario()
    d["rates"] = {"path": {0: 4.0, 12: 3.0}, "sensitivity": {"small": -0.06, "large": -0.03}}
    d["phases"] = [{"until_month": 6, "regimes": {"slowdown": {"next": {"expansion": 0.2, "recession": 0.8}}}}]
    d["start"] = {"expansion": 0.5, "slowdown": 0.3, "recession": 0.2}
    return sim.parse_scenario(d).model_dump()


# --------------------------------------------------------------------------------------------
# Fields and values


@pytest.mark.parametrize(
    "text, field, values",
    [
        ("regimes.expansion.drift.small=0.05:0.15:3", "regimes.expansion.drift.small", [0.05, 0.1, 0.15]),
        ("start.expansion=0:0.3:4", "start.expansion", [0.0, 0.1, 0.2, 0.3]),  # 0.1 + 0.2 is 0.3 here
        ("rates.path.12=2.5,3, 3.5", "rates.path.12", [2.5, 3.0, 3.5]),
        ("horizon_months=12", "horizon_months", [12.0]),
    ],
)
def test_parse_set(text, field, values):
    assert parse_set(text) == (field, values)


@pytest.mark.parametrize(
    "text", ["regimes.x.drift.small", "=1,2", "a=", "a=1:2", "a=1:2:0", "a=1:2:x", "a=1,x", "a=1,1"]
)
def test_parse_set_errors(text):
    with pytest.raises(sim.SweepError, match="FIELD=START:STOP:COUNT|repeated"):
        parse_set(text)


def test_plain_fields(data):
    assert with_field(data, "regimes.expansion.drift.small", 0.2)["regimes"]["expansion"]["drift"]["small"] == 0.2
    assert with_field(data, "rates.path.12", 2.5)["rates"]["path"] == {0.0: 4.0, 12.0: 2.5}
    assert with_field(data, "rates.sensitivity.small", -0.1)["rates"]["sensitivity"]["small"] == -0.1
    assert with_field(data, "horizon_months", 12.0)["horizon_months"] == 12
    assert data["regimes"]["expansion"]["drift"]["small"] == 0.10  # the original is left alone


def test_probability_rows_rescale_the_other_entries(data):
    row = with_field(data, "regimes.expansion.next.recession", 0.65)["regimes"]["expansion"]["next"]
    assert row == pytest.approx({"slowdown": 0.35, "recession": 0.65}, abs=1e-15)
    start = with_field(data, "start.expansion", 0.8)["start"]
    assert start == pytest.approx({"expansion": 0.8, "slowdown": 0.12, "recession": 0.08}, abs=1e-15)  # 3:2 kept
    phase = with_field(data, "phases.0.regimes.slowdown.next.recession", 0.5)["phases"][0]["regimes"]["slowdown"]
    assert phase["next"] == pytest.approx({"expansion": 0.5, "recession": 0.5}, abs=1e-15)
    added = with_field(data, "regimes.recession.next.slowdown", 0.25)["regimes"]["recession"]["next"]
    assert added == pytest.approx({"expansion": 0.75, "slowdown": 0.25}, abs=1e-15)  # an entry the row lacked
    same = with_field(data, "regimes.expansion.next.slowdown", 0.7)["regimes"]["expansion"]["next"]
    assert same == data["regimes"]["expansion"]["next"]  # the file's own value: the row exactly as it was


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("regimes.boom.drift.small", 0.1, "no 'boom' under regimes"),
        ("rates.path.7", 3.0, "no '7' under rates.path"),
        ("phases.3.until_month", 3.0, "no '3' under phases"),
        ("frequency", 1.0, "frequency: is not a number"),
        ("horizon_months", 12.5, "whole numbers"),
        ("regimes.expansion.drift", 0.1, "is not a number"),
    ],
)
def test_field_errors(data, field, value, message):
    with pytest.raises(sim.SweepError, match=message):
        with_field(data, field, value)


# --------------------------------------------------------------------------------------------
# Runs


@pytest.fixture(scope="module")
def base_file(tmp_path_factory, make_scenario):
    return write(tmp_path_factory.mktemp("sweep"), make_scenario(), "base.yaml")


@pytest.fixture(scope="module")
def grid(base_file, tmp_path_factory):
    """A 2 x 2 grid through the file's own values (drift 0.10, next.slowdown 0.7)."""
    out = tmp_path_factory.mktemp("grid") / "out"
    result = invoke(
        "sweep",
        base_file,
        "--set",
        "regimes.expansion.drift.small=0.06,0.10",
        "--set",
        "regimes.expansion.next.slowdown=0.5:0.7:2",
        "--paths",
        PATHS,
        "--seed",
        "3",
        "--out",
        out,
    )
    assert result.exit_code == 0, describe(result)
    return out


def test_the_files_own_value_reproduces_capsim_run(base_file, grid, tmp_path):
    result = invoke("run", base_file, "--paths", PATHS, "--seed", "3", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, describe(result)
    run = read_table(tmp_path / "run" / "summary.csv")
    table = read_table(grid / "sweep.csv")
    own = table[(table["regimes.expansion.drift.small"] == 0.10) & (table["regimes.expansion.next.slowdown"] == 0.7)]
    pd.testing.assert_frame_equal(own[run.columns].reset_index(drop=True), run, check_exact=True)
    other = table[table["regimes.expansion.drift.small"] == 0.06]
    assert not np.isin(other["p_outperform"], run["p_outperform"]).all()


def test_grid_files(grid):
    assert {p.name for p in grid.iterdir()} == {"sweep.csv", "sweep.json", "sweep.png", "meta.json"}
    table = read_table(grid / "sweep.csv")
    assert list(table.columns[:4]) == [
        "regimes.expansion.drift.small",
        "regimes.expansion.next.slowdown",
        "scenario",
        "horizon_months",
    ]
    assert len(table) == 2 * 2 * 4  # points x report horizons
    assert json.loads((grid / "sweep.json").read_text()) == json.loads(table.to_json(orient="records"))
    meta = json.loads((grid / "meta.json").read_text())
    assert meta["fields"] == {
        "regimes.expansion.drift.small": [0.06, 0.1],
        "regimes.expansion.next.slowdown": [0.5, 0.7],
    }
    assert meta["seed"] == 3 and meta["n_paths"] == 20000 and meta["points"] == 4
    assert sim.parse_scenario(meta["scenario_data"]).name == "unit-test"
    assert (grid / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_monotone_in_small_cap_drift_under_common_random_numbers(make_neutral):
    """With the same random numbers, a higher small-cap drift in a regime raises every path's small-cap return
    and leaves the regime paths alone: P(small beats large) and the median excess cannot fall at any horizon
    (they rise strictly for steps this large)."""
    sc = sim.parse_scenario(make_neutral())
    drifts = [0.0, 0.03, 0.06, 0.09, 0.12]
    res = sim.sweep(sc, {"regimes.calm.drift.small": drifts}, n_paths=20_000, seed=1)
    table = res.table()
    for h, rows in table.groupby("horizon_months"):
        p = rows.sort_values("regimes.calm.drift.small")["p_outperform"].to_numpy()
        assert np.all(np.diff(p) > 0), (h, p)
        assert np.all(np.diff(rows["excess_median"].to_numpy()) > 0), h


def test_library_rejects_no_fields_and_empty_values(make_neutral):
    sc = sim.parse_scenario(make_neutral())
    with pytest.raises(sim.SweepError, match="one or two fields"):
        sim.sweep(sc, {}, n_paths=100)
    with pytest.raises(sim.SweepError, match="regimes.calm.corr: give at least one value"):
        sim.sweep(sc, {"regimes.calm.corr": []}, n_paths=100)


def test_invalid_point_exits_2_names_field_and_value_and_writes_nothing(base_file, tmp_path):
    out = tmp_path / "out"
    result = invoke("sweep", base_file, "--set", "regimes.expansion.vol.small=0.3,-0.1", "--paths", PATHS, "--out", out)
    assert_user_error(
        result, "regimes.expansion.vol.small=-0.1", "a volatility cannot be negative", "base.yaml", "nothing was run"
    )
    assert "=0.3:" not in result.output  # the valid point is not reported
    assert not out.exists()


def test_invalid_probability_point(base_file, tmp_path):
    result = invoke(
        "sweep",
        base_file,
        "--set",
        "regimes.slowdown.next.recession=0.5,1.2",
        "--paths",
        PATHS,
        "--out",
        tmp_path / "o",
    )
    assert_user_error(result, "regimes.slowdown.next.recession=1.2", "[0, 1]")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "sets, mentions",
    [
        (["regimes.expansion.drift.small"], ["FIELD=START:STOP:COUNT"]),
        (["regimes.nope.drift.small=1,2"], ["regimes.nope.drift.small", "no 'nope'"]),
        (["a.b=1,2", "c.d=1,2", "e.f=1,2"], ["one or two fields", "--set once or twice"]),
        (["horizon_months=6,12", "horizon_months=3,6"], ["given twice"]),
        (["name=1,2"], ["name: is not a number"]),
    ],
)
def test_bad_set(base_file, tmp_path, sets, mentions):
    args = [x for s in sets for x in ("--set", s)]
    result = invoke("sweep", base_file, *args, "--paths", PATHS, "--out", tmp_path / "out")
    assert_user_error(result, *mentions)
    assert not (tmp_path / "out").exists()


def test_method_exact_on_student_t_names_the_file(base_file, tmp_path):
    result = invoke(
        "sweep", base_file, "--set", "horizon_months=24", "--method", "exact", "--paths", PATHS, "--out", tmp_path / "o"
    )
    assert_user_error(result, "base.yaml", "horizon_months=24", "Student-t", "--method step")


def test_bad_scenario_file_and_missing_set(tmp_path, make_scenario, base_file):
    bad = make_scenario()
    bad["regimes"]["recession"]["tails"] = 1
    result = invoke("sweep", write(tmp_path, bad, "bad.yaml"), "--set", "horizon_months=12", "--paths", PATHS)
    assert_user_error(result, "bad.yaml", "regimes.recession.tails")
    assert invoke("sweep", base_file).exit_code == 2  # --set is required


def test_existing_out_refused_then_forced(grid, base_file):
    before = (grid / "sweep.csv").read_bytes()
    args = ["sweep", base_file, "--set", "regimes.expansion.drift.small=0.1", "--paths", PATHS, "--seed", "3"]
    assert_user_error(invoke(*args, "--out", grid), str(grid), "--force")
    assert (grid / "sweep.csv").read_bytes() == before
    result = invoke(*args, "--out", grid, "--force", "--json")
    assert result.exit_code == 0, describe(result)
    assert [r["regimes.expansion.drift.small"] for r in json.loads(result.output)] == [0.1] * 4


def test_default_out_folder(base_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("sweep", base_file, "--set", "regimes.recession.duration_months=6,12", "--paths", PATHS, "--quiet")
    assert result.exit_code == 0, describe(result)
    assert (tmp_path / "results" / "unit-test-sweep" / "sweep.csv").is_file()


@pytest.mark.parametrize(
    "path, words",
    [
        ("regimes.expansion.drift.small", "small drift in expansion (annualised log return)"),
        ("regimes.recession.vol.large", "large vol in recession (annualised)"),
        ("regimes.recession.duration_months", "expected stay in recession (months)"),
        ("rates.path.12", "policy rate at month 12 (%)"),
        ("rates.sensitivity.small", "small rate sensitivity (log return per +1 pp)"),
        ("phases.0.until_month", "end of phase 0 (months)"),
        ("phases.0.regimes.slowdown.next.recession", "P(slowdown -> recession on leaving) (phase 0)"),
        ("transitions.calm.stress", "P(calm -> stress) per step"),
        ("start.expansion", "P(start in expansion)"),
        ("horizon_months", "horizon (months)"),
    ],
)
def test_swept_fields_are_labelled_in_words_with_units(path, words):
    from simulator.sweep import field_label

    assert field_label(path) == words


def test_sweep_png_axes_carry_the_words(scenario):
    from simulator.plots import sweep_figure
    from simulator.sweep import field_label

    sc = sim.parse_scenario(scenario)
    res = sim.sweep(sc, {"regimes.expansion.drift.small": [0.05, 0.10]}, n_paths=2000, seed=0)
    field = "regimes.expansion.drift.small"
    fig = sweep_figure(res.table(), [field], "t", ("small", "large"), {field: field_label(field)})
    assert [ax.get_xlabel() for ax in fig.axes] == [field_label(field)] * 2
    assert not fig.axes[1].collections  # the 25% and 75% points are lines, not overlapping bands
