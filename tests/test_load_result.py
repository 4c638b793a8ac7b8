"""Result folders load back (``sim.load_result``): the same tables, the meta, and the scenario that was run,
parsed back from meta.json; a folder that is missing, incomplete or unreadable is a ``ResultError`` naming it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import simulator as sim
from simulator.run import RESULT_FILES
from simulator.scenario import Dist
from simulator.shipped import find_shipped


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    sc = sim.load_scenario(find_shipped("rate_cut"))  # rates.path: numeric knot months
    res = sim.simulate(sc, n_paths=20_000, seed=3)
    out = res.save(tmp_path_factory.mktemp("saved") / "rate-cut")
    return sc, res, out


def test_tables_meta_and_scenario_come_back(saved):
    sc, res, out = saved
    loaded = sim.load_result(out)
    pd.testing.assert_frame_equal(loaded.summary(), res.summary(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.fan(), res.fan(), check_exact=True)
    assert loaded.meta == json.loads(json.dumps(res.meta, default=str))
    assert loaded.scenario == sc  # fields, source file and SHA-256
    assert loaded.name == sc.name == "rate-cut"


def test_json_scenario_block_parses_to_the_same_scenario(saved):
    sc, _, out = saved
    block = json.loads((out / "meta.json").read_text())["scenario_data"]
    assert set(block["rates"]["path"]) == {"0.0", "3.0", "6.0", "12.0"}  # JSON keys are strings
    again = sim.parse_scenario(block, source=sc.source)
    assert again.rates.path == sc.rates.path  # numbers, and the month-12 knot's distribution
    assert again.rates.path[3.0] == 3.75 and again.rates.path[12.0] == Dist(uniform=[3.0, 3.25])
    assert again.model_dump() == sc.model_dump()


def test_non_numeric_knot_is_still_an_error(reject, scenario):
    scenario["rates"] = {"path": {"soon": 3.0}, "sensitivity": {"small": -0.05, "large": -0.02}}
    reject(scenario, "rates.path.soon")


def test_missing_folder(tmp_path):
    with pytest.raises(sim.ResultError, match="nowhere: no such result folder"):
        sim.load_result(tmp_path / "nowhere")


def test_incomplete_folder(saved, tmp_path):
    _, _, out = saved
    part = tmp_path / "part"
    part.mkdir()
    (part / "summary.csv").write_bytes((out / "summary.csv").read_bytes())
    with pytest.raises(sim.ResultError, match=r"part: not a complete result folder \(missing summary.json"):
        sim.load_result(part)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"version": "0.1.0"}', '{"scenario_data": {"name": 1}}'])
def test_unreadable_meta(saved, tmp_path, text):
    _, _, out = saved
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in RESULT_FILES:
        (bad / f).write_bytes((out / f).read_bytes())
    (bad / "meta.json").write_text(text)
    with pytest.raises(sim.ResultError, match="bad") as err:
        sim.load_result(bad)
    assert isinstance(err.value, sim.CapsimError)


def test_results_have_a_useful_repr_and_a_saved_folder_gives_its_uncertainty(tmp_path):
    res = sim.simulate(sim.load_scenario(find_shipped("rate_cut")), n_paths=2000, seed=3)
    assert repr(res) == "<Result rate-cut: 2,000 paths, seed 3, report months 3, 6, 12, 24>"
    res.save(tmp_path / "r")
    saved = sim.load_result(tmp_path / "r")
    assert (
        repr(saved) == f"<SavedResult rate-cut: 2,000 paths, seed 3, report months 3, 6, 12, 24 from {tmp_path / 'r'}>"
    )
    assert saved.uncertainty().equals(res.uncertainty())
    plain = sim.simulate(sim.load_scenario(find_shipped("historical")), n_paths=2000, seed=3)
    plain.save(tmp_path / "p")
    assert sim.load_result(tmp_path / "p").uncertainty() is None
