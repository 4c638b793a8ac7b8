"""CLI contract (docs/outputs.md and docs/cli.md), through click's CliRunner on `simulator.cli.main`.

Exit codes: 0 success, 1 a check failed, 2 bad input or usage (message naming file and field,
never a traceback). Paths are kept small so the whole file runs in a few tens of seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from clihelp import assert_user_error, describe, write

import simulator as sim
from simulator.cli import main

PATHS = "20000"
OUTPUT_FILES = {"summary.csv", "summary.json", "fan.csv", "fan.png", "meta.json"}

SUMMARY_BASE_COLUMNS = [
    "scenario",
    "horizon_months",
    "n_paths",
    "p_outperform",
    "p_outperform_se",
    "p_outperform_count",
    "p_outperform_count_se",
    "excess_mean",
    "excess_sd",
    "excess_q05",
    "excess_q25",
    "excess_median",
    "excess_q75",
    "excess_q95",
    "excess_hdi90_low",
    "excess_hdi90_high",
]
ASSET_SUFFIXES = ["mean", "median", "q05", "q95", "var95", "es95", "p_loss", "p_loss_se", "mdd_median", "mdd_q95"]
FAN_COLUMNS = ["month", "series", "q05", "q10", "q25", "q50", "q75", "q90", "q95", "mean"]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def invoke(args, **kw):
    runner = CliRunner()
    return runner.invoke(main, [str(a) for a in args], **kw)


def snapshot(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


def flatten(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}.{i}")
    else:
        yield prefix, obj


def summary_records(obj) -> list[dict]:
    """summary.json as a list of row dicts, whatever the orientation chosen by the writer."""
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        for key in ("rows", "summary", "records", "data"):
            if isinstance(obj.get(key), list):
                return obj[key]
        if all(isinstance(v, list) for v in obj.values()):  # orient="list"
            cols = list(obj)
            return [dict(zip(cols, vals)) for vals in zip(*obj.values())]
        if all(isinstance(v, dict) for v in obj.values()):  # orient="columns"
            return pd.DataFrame(obj).to_dict(orient="records")
    raise AssertionError(f"cannot read rows from summary.json: {type(obj)}")


def has_gpu() -> bool:
    import jax

    try:
        return len(jax.devices("gpu")) > 0
    except RuntimeError:
        return False


# --------------------------------------------------------------------------------------------
# shared runs (module scope: each simulation once)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, make_scenario):
    """`run` of the three-regime base scenario without report_months (default horizons)."""
    root = tmp_path_factory.mktemp("base")
    data = make_scenario()
    data.pop("report_months")  # default: 3, 6, 12, 24 for a 24-month horizon
    scenario_path = write(root / "scenarios", data, "base.yaml")
    out = root / "runs" / "base"
    result = invoke(["run", scenario_path, "--paths", PATHS, "--seed", "7", "--out", out])
    return scenario_path, out, result


@pytest.fixture(scope="module")
def ok_run(base_run):
    scenario_path, out, result = base_run
    assert result.exit_code == 0, describe(result)
    return scenario_path, out


@pytest.fixture(scope="module")
def neutral_path(tmp_path_factory, make_neutral):
    return write(tmp_path_factory.mktemp("neutral"), make_neutral(), "neutral.yaml")


# --------------------------------------------------------------------------------------------
# run: outputs
# --------------------------------------------------------------------------------------------


class TestRunOutputs:
    def test_exit_zero_and_exact_files(self, base_run):
        _, out, result = base_run
        assert result.exit_code == 0, describe(result)
        assert out.is_dir()
        assert {p.name for p in out.iterdir()} == OUTPUT_FILES

    def test_no_leftover_temp_folder(self, ok_run):
        _, out = ok_run
        assert [p.name for p in out.parent.iterdir()] == [out.name]

    def test_summary_csv(self, ok_run):
        _, out = ok_run
        df = pd.read_csv(out / "summary.csv")
        cols = list(df.columns)
        # the base columns appear, in the documented order
        positions = [cols.index(c) for c in SUMMARY_BASE_COLUMNS if c in cols]
        missing = [c for c in SUMMARY_BASE_COLUMNS if c not in cols]
        assert not missing, f"missing columns {missing}; have {cols}"
        assert positions == sorted(positions), f"base columns out of order: {cols}"
        for asset in ("small", "large"):
            for suffix in ASSET_SUFFIXES:
                assert f"{asset}_{suffix}" in cols, f"missing {asset}_{suffix}; have {cols}"
        for regime in ("expansion", "slowdown", "recession"):
            assert f"occupancy_{regime}" in cols
        assert cols.index("excess_hdi90_high") < cols.index("small_mean") < cols.index("occupancy_expansion")

        assert list(df["horizon_months"]) == [3, 6, 12, 24]
        assert set(df["scenario"]) == {"unit-test"}
        assert set(df["n_paths"]) == {20000}

    def test_summary_numbers_are_consistent(self, ok_run):
        _, out = ok_run
        df = pd.read_csv(out / "summary.csv")
        assert not df.drop(columns=["scenario"]).isna().any().any()
        for _, row in df.iterrows():
            p, n = row["p_outperform_count"], row["n_paths"]
            assert 0.0 < p < 1.0  # no parameter draws: the share of paths has the binomial error
            assert row["p_outperform_count_se"] == pytest.approx(math.sqrt(p * (1 - p) / n), rel=1e-6)
            assert 0.0 < row["p_outperform_se"] < row["p_outperform_count_se"]
            assert abs(row["p_outperform"] - p) < 4.5 * row["p_outperform_count_se"]
            q = [row[c] for c in ("excess_q05", "excess_q25", "excess_median", "excess_q75", "excess_q95")]
            assert q == sorted(q)
            assert row["excess_hdi90_low"] < row["excess_hdi90_high"]
            assert row["excess_sd"] > 0
            for a in ("small", "large"):
                assert row[f"{a}_var95"] == pytest.approx(-row[f"{a}_q05"], abs=1e-12)
                assert row[f"{a}_es95"] >= row[f"{a}_var95"] - 1e-12
                assert 0.0 <= row[f"{a}_p_loss"] <= 1.0
                assert row[f"{a}_mean"] > -1.0  # total return can't be below -100%
                assert 0.0 <= row[f"{a}_mdd_median"] <= row[f"{a}_mdd_q95"] + 1e-12 or (
                    row[f"{a}_mdd_q95"] <= row[f"{a}_mdd_median"] <= 0.0
                )
            occ = sum(row[f"occupancy_{r}"] for r in ("expansion", "slowdown", "recession"))
            assert occ == pytest.approx(1.0, abs=1e-6)

    def test_summary_json_matches_csv(self, ok_run):
        _, out = ok_run
        df = pd.read_csv(out / "summary.csv")
        rows = summary_records(json.loads((out / "summary.json").read_text()))
        assert len(rows) == len(df)
        assert [int(r["horizon_months"]) for r in rows] == list(df["horizon_months"])
        for r, p in zip(rows, df["p_outperform"]):
            assert float(r["p_outperform"]) == pytest.approx(p, rel=1e-9, abs=1e-12)

    def test_fan_csv(self, ok_run):
        _, out = ok_run
        fan = pd.read_csv(out / "fan.csv")
        assert list(fan.columns) == FAN_COLUMNS
        assert set(fan["series"]) == {"small", "large", "excess"}
        for series, grp in fan.groupby("series"):
            assert sorted(grp["month"].tolist()) == list(range(0, 25)), series
            qs = grp[["q05", "q10", "q25", "q50", "q75", "q90", "q95"]].to_numpy()
            assert (qs[:, 1:] >= qs[:, :-1] - 1e-12).all(), f"quantiles not monotone in {series}"
            at0 = grp[grp["month"] == 0][["q05", "q50", "q95", "mean"]].to_numpy()
            assert abs(at0).max() < 1e-9, f"{series} not 0 at month 0"
        assert len(fan) == 3 * 25

    def test_fan_png(self, ok_run):
        _, out = ok_run
        data = (out / "fan.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 1000

    def test_meta_json(self, ok_run):
        scenario_path, out = ok_run
        meta = json.loads((out / "meta.json").read_text())
        flat = list(flatten(meta))
        keys = {k.lower(): v for k, v in flat}

        def find(pred_key, pred_val=lambda v: True):
            return [(k, v) for k, v in keys.items() if pred_key(k.split(".")[-1]) and pred_val(v)]

        assert find(lambda k: "version" in k, lambda v: v == sim.__version__), meta
        assert any(v == "unit-test" for _, v in flat), "scenario name missing"
        digest = hashlib.sha256(scenario_path.read_bytes()).hexdigest()
        assert any(isinstance(v, str) and v.lower().endswith(digest) for _, v in flat), (
            f"sha256 {digest} of the scenario file not in meta.json"
        )
        assert find(lambda k: "seed" in k, lambda v: v == 7), "seed missing"
        assert find(lambda k: "path" in k, lambda v: v == 20000), "n_paths missing"
        assert find(lambda k: "backend" in k, lambda v: bool(v)), "backend missing"
        assert find(lambda k: "precision" in k, lambda v: str(v) in {"32", "64", "float32", "float64"}), (
            "precision missing"
        )
        assert find(lambda k: "wall" in k, lambda v: isinstance(v, (int, float)) and v > 0), "wall time missing"
        assert find(
            lambda k: "per_s" in k or "per_sec" in k or "steps_per" in k or "throughput" in k,
            lambda v: isinstance(v, (int, float)) and v > 0,
        ), "path-steps per second missing"

        def is_ts(v):
            if not isinstance(v, str):
                return False
            try:
                return datetime.fromisoformat(v.replace("Z", "+00:00")).year >= 2020
            except ValueError:
                return False

        assert find(lambda k: "time" in k or "date" in k or "created" in k, is_ts), "timestamp missing"


# --------------------------------------------------------------------------------------------
# run: folder handling, determinism, options
# --------------------------------------------------------------------------------------------


class TestRunBehaviour:
    def test_existing_non_empty_folder_refused_untouched(self, ok_run):
        scenario_path, out = ok_run
        before = snapshot(out)
        result = invoke(["run", scenario_path, "--paths", PATHS, "--seed", "7", "--out", out])
        assert_user_error(result)
        assert snapshot(out) == before
        assert [p.name for p in out.parent.iterdir()] == [out.name]

    def test_force_overwrites(self, tmp_path, neutral_path):
        out = tmp_path / "forced"
        out.mkdir()
        (out / "summary.csv").write_text("stale\n")
        result = invoke(["run", neutral_path, "--paths", PATHS, "--seed", "3", "--out", out])
        assert_user_error(result)
        assert (out / "summary.csv").read_text() == "stale\n"

        result = invoke(["run", neutral_path, "--paths", PATHS, "--seed", "3", "--out", out, "--force"])
        assert result.exit_code == 0, describe(result)
        assert OUTPUT_FILES <= {p.name for p in out.iterdir()}
        assert (out / "summary.csv").read_text() != "stale\n"
        assert json.loads((out / "meta.json").read_text())  # complete
        assert [p.name for p in tmp_path.iterdir()] == ["forced"]

    def test_same_seed_identical_summary(self, ok_run, tmp_path):
        scenario_path, out = ok_run
        out2 = tmp_path / "again"
        result = invoke(["run", scenario_path, "--paths", PATHS, "--seed", "7", "--out", out2])
        assert result.exit_code == 0, describe(result)
        assert (out2 / "summary.csv").read_bytes() == (out / "summary.csv").read_bytes()
        assert (out2 / "fan.csv").read_bytes() == (out / "fan.csv").read_bytes()

    def test_different_seed_differs(self, ok_run, tmp_path):
        scenario_path, out = ok_run
        out2 = tmp_path / "other"
        result = invoke(["run", scenario_path, "--paths", PATHS, "--seed", "8", "--out", out2])
        assert result.exit_code == 0, describe(result)
        a = pd.read_csv(out / "summary.csv")
        b = pd.read_csv(out2 / "summary.csv")
        assert not a["p_outperform"].equals(b["p_outperform"]) or not a["excess_mean"].equals(b["excess_mean"])

    def test_json_output(self, neutral_path, tmp_path):
        out = tmp_path / "j"
        result = invoke(["run", neutral_path, "--paths", PATHS, "--seed", "1", "--out", out, "--json"])
        assert result.exit_code == 0, describe(result)
        payload = json.loads(result.stdout)
        text = json.dumps(payload)
        assert "p_outperform" in text
        assert "neutral" in text

    def test_default_out_folder(self, neutral_path, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        result = invoke(["run", neutral_path, "--paths", PATHS, "--seed", "1"])
        assert result.exit_code == 0, describe(result)
        folder = tmp_path / "results" / "neutral"
        assert {p.name for p in folder.iterdir()} == OUTPUT_FILES
        df = pd.read_csv(folder / "summary.csv")
        assert list(df["horizon_months"]) == [3, 6, 12]

    def test_version(self):
        result = invoke(["--version"])
        assert result.exit_code == 0, describe(result)
        assert sim.__version__ in result.output


# --------------------------------------------------------------------------------------------
# run: user errors
# --------------------------------------------------------------------------------------------


class TestRunErrors:
    def test_bad_scenario_names_file_and_field_and_writes_nothing(self, tmp_path, make_scenario):
        data = make_scenario()
        data["regimes"]["recession"]["vol"]["small"] = -0.1
        path = write(tmp_path / "scen", data, "bad_vol.yaml")
        outs = tmp_path / "outs"
        outs.mkdir()
        result = invoke(["run", path, "--paths", PATHS, "--seed", "1", "--out", outs / "r"])
        assert_user_error(result, "bad_vol.yaml", "regimes.recession.vol.small")
        assert list(outs.iterdir()) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == ["outs", "scen"]

    def test_bad_scenario_default_out_not_created(self, tmp_path, make_scenario, monkeypatch):
        data = make_scenario()
        data["start"] = "boom"
        path = write(tmp_path / "scen", data, "bad_start.yaml")
        monkeypatch.chdir(tmp_path)
        result = invoke(["run", path, "--paths", PATHS])
        assert_user_error(result, "bad_start.yaml", "start")
        assert not (tmp_path / "results" / "unit-test").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) in (["scen"], ["results", "scen"])

    def test_yaml_syntax_error(self, tmp_path):
        path = tmp_path / "broken.yaml"
        path.write_text("name: x\nregimes: {a: [1, 2\n")
        outs = tmp_path / "outs"
        outs.mkdir()
        result = invoke(["run", path, "--paths", PATHS, "--out", outs / "r"])
        assert_user_error(result, "broken.yaml")
        assert list(outs.iterdir()) == []

    def test_missing_file(self, tmp_path):
        outs = tmp_path / "outs"
        outs.mkdir()
        result = invoke(["run", tmp_path / "nope.yaml", "--paths", PATHS, "--out", outs / "r"])
        assert_user_error(result, "nope.yaml")
        assert list(outs.iterdir()) == []

    def test_device_gpu_without_gpu(self, neutral_path, tmp_path):
        if has_gpu():
            pytest.skip("a GPU is present")
        out = tmp_path / "g"
        result = invoke(["run", neutral_path, "--paths", PATHS, "--out", out, "--device", "gpu"])
        assert_user_error(result)
        assert "gpu" in result.output.lower()
        assert not out.exists()

    def test_unknown_device_value(self, neutral_path, tmp_path):
        result = invoke(["run", neutral_path, "--paths", PATHS, "--out", tmp_path / "d", "--device", "tpu9"])
        assert_user_error(result)

    @pytest.mark.parametrize("n", ["0", "-5"])
    def test_non_positive_paths(self, neutral_path, tmp_path, n):
        out = tmp_path / "p"
        result = invoke(["run", neutral_path, "--paths", n, "--out", out])
        assert_user_error(result)
        assert not out.exists()


# --------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------


class TestValidate:
    def test_folder_of_good_files(self, tmp_path, make_scenario, make_neutral):
        folder = tmp_path / "good"
        write(folder, make_scenario(), "a.yaml")
        write(folder, make_neutral(), "b.yaml")
        result = invoke(["validate", folder])
        assert result.exit_code == 0, describe(result)

    def test_single_good_file(self, neutral_path):
        result = invoke(["validate", neutral_path])
        assert result.exit_code == 0, describe(result)

    def test_folder_with_a_bad_file(self, tmp_path, make_scenario, make_neutral):
        folder = tmp_path / "mixed"
        write(folder, make_neutral(), "good.yaml")
        data = make_scenario()
        data["regimes"]["expansion"]["next"] = {"expansion": 0.5, "slowdown": 0.5}
        write(folder, data, "selfloop.yaml")
        result = invoke(["validate", folder])
        assert_user_error(result, "selfloop.yaml", "regimes.expansion.next.expansion")

    def test_bad_file(self, tmp_path, make_scenario):
        data = make_scenario()
        data["regimes"]["slowdown"]["tails"] = 2
        data["start"] = "boom"
        path = write(tmp_path, data, "tails.yaml")
        result = invoke(["validate", path])
        assert_user_error(result, "tails.yaml", "regimes.slowdown.tails", "start")

    def test_missing_path(self, tmp_path):
        result = invoke(["validate", tmp_path / "missing.yaml"])
        assert_user_error(result)

    def test_python_module_entry_point(self, tmp_path, make_scenario):
        """`python -m simulator` is the same CLI; a user error gives exit 2, no traceback."""
        data = make_scenario()
        data["regimes"]["recession"]["vol"]["small"] = float("nan")
        path = write(tmp_path, data, "nanvol.yaml")
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        proc = subprocess.run(
            [sys.executable, "-m", "simulator", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[1],
            env=env,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        assert "nanvol.yaml" in proc.stderr
        assert "regimes.recession.vol.small" in proc.stderr


def test_results_are_readable_as_the_umask_allows(tmp_path):
    """Atomic writes go through mkstemp/mkdtemp (owner-only); the results get the mode a plain write would."""
    from simulator.output import write_folder, write_text_atomic

    old = os.umask(0o022)
    try:
        folder = write_folder(tmp_path / "res", lambda tmp: (tmp / "a.csv").write_text("x\n"))
        text = write_text_atomic(tmp_path / "s.yaml", "name: x\n")
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o755
    assert (folder / "a.csv").stat().st_mode & 0o777 == 0o644
    assert text.stat().st_mode & 0o777 == 0o644


def test_compile_cache_is_kept_and_changes_nothing(tmp_path, make_scenario):
    """`capsim run` keeps compiled kernels in CAPSIM_CACHE_DIR; a second run, served from it, writes the same
    summary."""
    path = write(tmp_path, make_scenario(), "cached.yaml")
    cache = tmp_path / "xla"
    env = dict(os.environ, JAX_PLATFORMS="cpu", CAPSIM_CACHE_DIR=str(cache))
    summaries = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        proc = subprocess.run(
            [sys.executable, "-m", "simulator", "run", str(path), "--paths", "20000", "--quiet", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        summaries.append((out / "summary.csv").read_text())
        assert any(cache.iterdir())
    assert summaries[0] == summaries[1]


# --------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------


PASSING_EXPECTS = [
    {"metric": "p_outperform", "horizon_months": 12, "between": [0.4, 0.6]},
    {"metric": "excess_median", "horizon_months": 12, "between": [-0.05, 0.05]},
    {"metric": "small_q95", "horizon_months": 6, "above": "small_q05"},
    {"metric": "large_p_loss", "horizon_months": 3, "below": 0.9},
]
IMPOSSIBLE = {"metric": "p_outperform", "horizon_months": 12, "between": [0.999, 1.0]}


class TestCheck:
    def test_passing_expects(self, tmp_path, make_neutral):
        data = make_neutral()
        data["expect"] = [dict(e) for e in PASSING_EXPECTS]
        path = write(tmp_path, data, "pass.yaml")
        result = invoke(["check", path, "--paths", PATHS, "--seed", "1"])
        assert result.exit_code == 0, describe(result)
        pass_lines = [ln for ln in result.output.splitlines() if "PASS" in ln]
        assert len(pass_lines) >= len(PASSING_EXPECTS), describe(result)

    def test_failing_expect(self, tmp_path, make_neutral):
        data = make_neutral()
        data["expect"] = [dict(PASSING_EXPECTS[0]), dict(IMPOSSIBLE)]
        path = write(tmp_path, data, "fail.yaml")
        result = invoke(["check", path, "--paths", PATHS, "--seed", "1"])
        assert result.exit_code == 1, describe(result)
        assert "Traceback" not in result.output
        fail_lines = [ln for ln in result.output.splitlines() if "FAIL" in ln]
        assert fail_lines, describe(result)
        assert any("p_outperform" in ln for ln in fail_lines), describe(result)
        assert any("PASS" in ln for ln in result.output.splitlines()), describe(result)

    def test_junit(self, tmp_path, make_neutral):
        data = make_neutral()
        data["expect"] = [dict(PASSING_EXPECTS[0]), dict(IMPOSSIBLE), dict(PASSING_EXPECTS[2])]
        path = write(tmp_path / "scen", data, "junit.yaml")
        report = tmp_path / "reports" / "junit.xml"
        report.parent.mkdir()
        result = invoke(["check", path, "--paths", PATHS, "--seed", "1", "--junit", report])
        assert result.exit_code == 1, describe(result)
        root = ET.parse(report).getroot()
        assert root.tag in {"testsuites", "testsuite"}
        cases = list(root.iter("testcase"))
        assert len(cases) == 3
        failed = [c for c in cases if c.find("failure") is not None]
        assert len(failed) == 1
        assert all(c.get("name") for c in cases)
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        assert sum(int(s.get("tests", 0)) for s in suites) == 3
        assert sum(int(s.get("failures", 0)) for s in suites) == 1

    def test_junit_all_pass(self, tmp_path, make_neutral):
        data = make_neutral()
        data["expect"] = [dict(e) for e in PASSING_EXPECTS[:2]]
        path = write(tmp_path, data, "ok.yaml")
        report = tmp_path / "ok.xml"
        result = invoke(["check", path, "--paths", PATHS, "--seed", "1", "--junit", report])
        assert result.exit_code == 0, describe(result)
        root = ET.parse(report).getroot()
        cases = list(root.iter("testcase"))
        assert len(cases) == 2
        assert not [c for c in cases if c.find("failure") is not None or c.find("error") is not None]

    def test_bad_scenario(self, tmp_path, make_neutral):
        data = make_neutral()
        data["expect"] = [{"metric": "p_win", "horizon_months": 12, "above": 0.5}]
        path = write(tmp_path, data, "badexpect.yaml")
        result = invoke(["check", path, "--paths", PATHS, "--seed", "1"])
        assert_user_error(result, "badexpect.yaml", "expect.0.metric")
