"""Hostile and absurd input: every attack ends in exit 0 or 2 within seconds, never a hang, a traceback, a NaN
passed off as a number or a half-written folder (docs/scenarios.md "Limits", docs/outputs.md)."""

from __future__ import annotations

import time

import pytest
import yaml
from clihelp import assert_user_error, describe, invoke

import simulator as sim
from simulator.run import held_bytes
from simulator.scenario import MAX_YAML_DEPTH, MAX_YAML_NODES


def problems(path) -> list[tuple[str, str]]:
    with pytest.raises(sim.ScenarioError) as info:
        sim.load_scenario(path)
    assert str(path) in str(info.value)
    return info.value.problems


def only_problem(path) -> str:
    (problem,) = problems(path)
    return problem[1]


# --------------------------------------------------------------------------------------------
# YAML attacks: alias bombs, nesting, complex keys, merge keys, size, binary and empty files


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("field", ["description", "sources", "name", "assets"])
def test_alias_bomb_is_refused_at_once(write_scenario, scenario, field):
    bomb = billion_laughs()
    text = bomb.replace("l0:", "x0:", 1)  # the bomb in a mapping of its own, then used by a field
    data = yaml.safe_dump({k: v for k, v in scenario.items() if k != field}, sort_keys=False)
    path = write_scenario(f"bomb:\n{_indent(text)}{field}: *l9\n{data}")
    t0 = time.perf_counter()
    message = only_problem(path)
    assert time.perf_counter() - t0 < 2
    assert f"more than {MAX_YAML_NODES:,} values" in message and "line" in message


def test_alias_bomb_in_a_drift(write_scenario, scenario):
    text = yaml.safe_dump(scenario, sort_keys=False).replace("small: 0.1\n", "small: *l9\n", 1)
    message = only_problem(write_scenario(f"bomb:\n{_indent(billion_laughs())}{text}"))
    assert "more than" in message


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


def test_a_few_aliases_are_fine(write_scenario, scenario):
    text = yaml.safe_dump(scenario, sort_keys=False)
    text = text.replace("description:", "description: &d", 1) + "sources: [*d, *d]\n"
    text = text.replace("sources:\n- test fixture, made-up numbers\n", "", 1)
    assert sim.load_scenario(write_scenario(text)).sources == [scenario["description"]] * 2


def test_recursive_alias(write_scenario):
    assert "recursive alias" in only_problem(write_scenario("name: &a [1, *a]\n"))


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "{a: " * 2000 + "1" + "}" * 2000])
def test_deep_nesting(write_scenario, text):
    message = only_problem(write_scenario(f"name: x\nsources: {text}\n"))
    # ours past 64 levels, or libyaml's own past 1,000 when its scanner reads that far ahead
    assert f"more than {MAX_YAML_DEPTH} deep" in message or "maximum nesting depth" in message


@pytest.mark.parametrize("text", ["? [a, b]\n: 1\nname: x\n", "{a: 1}: 2\n", "name: x\n? {b: 1}\n: 2\n"])
def test_complex_keys(write_scenario, text):
    message = only_problem(write_scenario(text))
    assert "a key must be a name or a number" in message and "line" in message


def test_merge_keys_are_accepted(write_scenario, scenario):
    base = scenario["regimes"]["expansion"]
    text = yaml.safe_dump(scenario, sort_keys=False)
    text = text.replace("  expansion:\n", "  expansion: &base\n", 1)
    text = text.replace("  slowdown:\n", "  slowdown:\n    <<: *base\n", 1)
    sc = sim.load_scenario(write_scenario(text))
    assert sc.regimes["slowdown"].drift == scenario["regimes"]["slowdown"]["drift"]  # its own keys win
    assert sc.regimes["expansion"].drift == base["drift"]


def test_merge_keys_keep_the_duplicate_rule(write_scenario, scenario):
    text = yaml.safe_dump(scenario, sort_keys=False).replace("  expansion:\n", "  expansion: &base\n", 1)
    text = text.replace("  slowdown:\n", "  slowdown:\n    <<: *base\n    corr: 0.5\n", 1)
    assert "duplicate key 'corr'" in only_problem(write_scenario(text))


def test_file_size_bound(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("description: '" + "x" * 2_000_000 + "'\n")
    assert "larger than 1,000,000 bytes" in only_problem(path)


def test_device_files_are_read_bounded():
    assert "larger than" in only_problem("/dev/zero") or "NUL" in only_problem("/dev/zero")


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "the file is empty"),
        (b"# only a comment\n", "the file is empty"),
        (b"just text\n", "holds a single text value"),
        (b"- a\n- b\n", "holds a list"),
        (b"42\n", "holds a single number"),
        (bytes(range(256)), "binary file"),
        (b"name: \xff\xfe\n", "not UTF-8 text"),
        (b"name: a\x01b\n", "#x0001"),
        (b"name: [\n", "not valid YAML at line 2, column 1"),
    ],
)
def test_file_level_messages(tmp_path, content, expected):
    path = tmp_path / "f.yaml"
    path.write_bytes(content)
    message = only_problem(path)
    assert expected in message
    assert "NoneType" not in message and "<byte string>" not in message and "<unicode string>" not in message


def test_long_values_are_abridged_in_messages(write_scenario, scenario):
    scenario["name"] = "a b" * 100_000
    (message,) = [m for p, m in problems(write_scenario(scenario)) if p == "name"]
    assert len(message) < 300


def test_cli_validate_bomb_exit_2(write_scenario):
    result = invoke("validate", write_scenario(billion_laughs() + "name: *l9\n"))
    assert_user_error(result, "more than")


# --------------------------------------------------------------------------------------------
# Size limits: refused before any work, with the limit in the message


def test_huge_horizon_in_the_file(scenario):
    scenario["horizon_months"] = 10**30
    with pytest.raises(sim.ScenarioError, match="at most 1,200 months"):
        sim.parse_scenario(scenario)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--horizon", "1000000000000"], "at most 1,200 months"),
        (["--paths", "20000000000000000000"], "the most one run can number"),
        (["--paths", str(10**13)], "GB held at once"),
    ],
)
def test_cli_size_limits(tmp_path, args, expected):
    t0 = time.perf_counter()
    result = invoke("run", "baseline", *args, "--out", tmp_path / "out", "--quiet")
    assert_user_error(result, expected)
    assert time.perf_counter() - t0 < 20 and not (tmp_path / "out").exists()


def test_memory_estimate_grows_with_the_held_parts(scenario):
    sc = sim.parse_scenario(scenario)
    small, big = (held_bytes(sc, n, 24, 32) for n in (10**6, 10**12))
    assert small < 1e8 and big > 2e10  # 360 bytes of per-block sums per block of 16,384 paths


@pytest.mark.parametrize("what, n", [("regimes", 17), ("assets", 17)])
def test_regime_and_asset_limits(scenario, what, n):
    if what == "regimes":
        only = scenario["regimes"]["expansion"]
        names = [f"r{i}" for i in range(n)]
        scenario["regimes"] = {k: {**only, "next": {j: 1 / (n - 1) for j in names if j != k}} for k in names}
    else:
        scenario["assets"] = {f"a{i}": "x" for i in range(n)}
    with pytest.raises(sim.ScenarioError, match=f"at most 16 {what}"):
        sim.parse_scenario(scenario)


@pytest.mark.parametrize(
    "spec",
    ["regimes.expansion.drift.small=0:1:100000000", "regimes.expansion.drift.small=" + ",".join(map(str, range(1001)))],
)
def test_sweep_points_limit(tmp_path, spec):
    result = invoke("sweep", "baseline", "--set", spec, "--out", tmp_path / "out")
    assert_user_error(result, "at most 1,000 values")


def test_sweep_grid_limit(tmp_path):
    result = invoke(
        "sweep",
        "baseline",
        "--set",
        "regimes.expansion.drift.small=0:0.1:40",
        "--set",
        "regimes.expansion.drift.large=0:0.1:30",
    )
    assert_user_error(result, "1,200 points, more than the limit of 1,000")


# --------------------------------------------------------------------------------------------
# Overflow: refused at validation, and a run never hands out a non-finite figure


@pytest.mark.parametrize(
    "field, value",
    [("drift", 50.0), ("drift", 1e308), ("vol", 20.0), ("vol", 1e308), ("vol", 1e30)],
)
def test_overflowing_parameters_are_refused(scenario, field, value):
    scenario["regimes"]["slowdown"][field]["small"] = value
    with pytest.raises(sim.ScenarioError) as info:
        sim.parse_scenario(scenario)
    ((path, message),) = info.value.problems
    assert path.startswith("regimes.slowdown.") and path.endswith(".small") and "overflow" in message


def test_huge_rate_knot_is_refused(scenario):
    scenario["rates"] = {"path": {0: 4.0, 12: 1e308}, "sensitivity": {"small": -0.05, "large": -0.03}}
    with pytest.raises(sim.ScenarioError, match="rates.path.12: the rate must be a number of percent within"):
        sim.parse_scenario(scenario)


def test_longer_horizon_that_overflows_is_refused(scenario):
    scenario["regimes"]["recession"]["drift"]["small"] = -3.0  # fine over 24 months, not over 600
    sc = sim.parse_scenario(scenario)
    with pytest.raises(sim.ScenarioError, match="with horizon 600"):
        sim.simulate(sc, n_paths=1000, horizon_months=600)


def test_non_finite_statistics_end_the_run(tmp_path, scenario, write_scenario):
    scenario["regimes"]["slowdown"]["drift"]["small"] = {"uniform": [-1000.0, 1000.0]}  # draws overflow
    path = write_scenario(scenario)
    result = invoke("run", path, "--paths", 20000, "--out", tmp_path / "out", "--quiet")
    assert_user_error(result, "not finite", "annualised decimals")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


# --------------------------------------------------------------------------------------------
# Tracebacks that were: every one now exit 2 with a message naming the file and the field


def test_huge_draws_and_long_name(scenario):
    scenario["uncertainty"] = {"draws": int("9" * 400)}
    scenario["name"] = "n" * 300
    with pytest.raises(sim.ScenarioError) as info:
        sim.parse_scenario(scenario)
    paths = dict(info.value.problems)
    assert "at most 64 characters" in paths["name"] and "at most 1,000,000" in paths["uncertainty.draws"]


def test_name_with_a_trailing_newline(scenario):
    scenario["name"] = "evil\n"
    with pytest.raises(sim.ScenarioError, match="name: use letters"):
        sim.parse_scenario(scenario)


@pytest.fixture
def neutral_file(write_scenario, neutral_scenario):
    return write_scenario(neutral_scenario, "neutral.yaml")


def test_out_under_a_file_is_refused_before_simulating(tmp_path, neutral_file):
    (tmp_path / "afile").write_text("x")
    result = invoke("run", neutral_file, "--paths", 1000, "--out", tmp_path / "afile" / "sub")
    assert_user_error(result, "afile is a file, not a folder")


def test_read_only_destination(tmp_path, neutral_file, monkeypatch):
    import os

    ro, access = tmp_path / "ro", os.access
    ro.mkdir()  # as on a read-only mount (root passes a chmod)
    monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and not str(path).startswith(str(ro)))
    result = invoke("run", neutral_file, "--paths", 1000, "--out", ro / "out")
    assert_user_error(result, "cannot write in", "read-only file system")


def test_full_disk_is_refused_before_simulating(tmp_path, neutral_file, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    result = invoke("run", neutral_file, "--paths", 1000, "--out", tmp_path / "out")
    assert_user_error(result, "no space left")


def test_os_error_while_writing_is_a_clear_message(tmp_path, neutral_file, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr("simulator.output.sync", full)
    result = invoke("run", neutral_file, "--paths", 1000, "--out", tmp_path / "out")
    assert_user_error(result, "cannot write: No space left on device")
    assert list(tmp_path.iterdir()) == [tmp_path / "scenarios"]  # no temporary folder left


def test_out_dot_is_refused(tmp_path, neutral_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("run", neutral_file, "--paths", 1000, "--out", ".", "--force")
    assert_user_error(result, "is the current folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenarios"]


def test_duplicate_csv_column(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("date,small,small\n2000-01-31,0.01,0.02\n2000-02-29,0.01,0.02\n")
    result = invoke("calibrate", data, "--regimes", 1, "--out", tmp_path / "f.yaml")
    assert_user_error(result, "column name(s) given twice: ['small']")


def test_identical_columns_do_not_break_calibrate(tmp_path):
    import numpy as np

    r = np.random.default_rng(0).normal(0.01, 0.04, 120)
    dates = [f"{2000 + i // 12}-{i % 12 + 1:02d}-28" for i in range(120)]
    data = tmp_path / "d.csv"
    data.write_text("date,small,large\n" + "".join(f"{d},{v},{v}\n" for d, v in zip(dates, r)))
    result = invoke("calibrate", data, "--regimes", 1, "--out", tmp_path / "f.yaml")
    assert_user_error(result, "linearly dependent")


# --------------------------------------------------------------------------------------------
# Interruptions: SIGINT exits 130, SIGTERM 143, nothing half-written stays, stale temporaries go


def test_ctrl_c_in_run_exits_130(tmp_path, neutral_file, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("simulator.cli.runs.simulate", interrupted)
    result = invoke("run", neutral_file, "--paths", 1000, "--out", tmp_path / "out")
    assert result.exit_code == 130 and "Aborted" not in result.output and "interrupted" in result.output


def test_sigterm_while_writing_leaves_no_temporary(tmp_path, neutral_file, monkeypatch):
    from simulator.cli.options import Terminated

    def terminated(*args, **kwargs):
        raise Terminated  # what the SIGTERM handler raises, here in the middle of writing the folder

    monkeypatch.setattr("simulator.run.save_figure", terminated, raising=False)
    monkeypatch.setattr("simulator.plots.save_figure", terminated)
    result = invoke("run", neutral_file, "--paths", 1000, "--out", tmp_path / "out")
    assert result.exit_code == 143, describe(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenarios"]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path, neutral_file):
    import os
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    stale = tmp_path / f".out.tmp-{dead.stdout.strip()}@{host}-abc123"
    live = tmp_path / f".out.tmp-{os.getpid()}@{host}-def456"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "fan.csv").write_bytes(b"")
    result = invoke("run", neutral_file, "--paths", 1000, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, describe(result)
    assert not stale.exists() and live.exists()


def test_sigterm_in_a_batch_exits_143_with_the_resume_command(tmp_path, neutral_scenario):
    import json
    import os
    import signal
    import subprocess
    import sys

    from clihelp import variant, write

    book = tmp_path / "book"
    for name in ("a1", "a2", "a3"):
        write(book, variant(neutral_scenario, name, horizon=12), f"{name}.yaml")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "simulator", "batch", str(book), "--paths", "300000", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
    first = proc.stdout.readline()  # flushed as soon as the first scenario is done, though stdout is a pipe
    assert first.startswith("done") and "a1" in first, proc.stderr.read() if not first else first
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "interrupted:" in err and "--resume" in err.splitlines()[-1]
    entries = json.loads((out / "batch.json").read_text())["scenarios"]
    done = {e["name"] for e in entries if e["status"] == "done"}
    assert done == {p.name for p in out.iterdir() if not p.name.startswith(".")} - {"batch.json"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folder, no lock


def test_interrupt_just_after_a_scenario_is_written(tmp_path, neutral_scenario, monkeypatch):
    from clihelp import variant, write

    from simulator.run import Result

    book = tmp_path / "book"
    for name in ("b1", "b2"):
        write(book, variant(neutral_scenario, name), f"{name}.yaml")
    save = Result.save

    def save_then_interrupt(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt  # after the folder is in place, before the batch records it

    monkeypatch.setattr(Result, "save", save_then_interrupt)
    result = invoke("batch", book, "--paths", 2000, "--out", tmp_path / "out")
    assert result.exit_code == 130
    assert "interrupted: 1 of 2 scenarios done (b1)" in result.output
    import json

    entries = json.loads((tmp_path / "out" / "batch.json").read_text())["scenarios"]
    assert [(e["name"], e["status"]) for e in entries] == [("b1", "done"), ("b2", "pending")]


# --------------------------------------------------------------------------------------------
# Results are verified: SHA-256 of every file in meta.json, checked on load and on resume


@pytest.fixture
def saved_folder(tmp_path, neutral_scenario):
    sc = sim.parse_scenario(neutral_scenario)
    return sim.simulate(sc, n_paths=2000, seed=3).save(tmp_path / "res")


def test_meta_records_every_file(saved_folder):
    import json

    meta = json.loads((saved_folder / "meta.json").read_text())
    assert set(meta["sha256"]) == {"summary.csv", "summary.json", "fan.csv", "fan.png", "meta.json"}
    assert sim.load_result(saved_folder).summary().shape[0] == 3


@pytest.mark.parametrize(
    "file, edit, expected",
    [
        ("summary.csv", lambda t: t.replace("0.", "0.9", 1), "summary.csv was changed"),
        ("summary.csv", lambda t: t.splitlines()[0] + "\n", "summary.csv was changed"),
        ("meta.json", lambda t: t.replace('"drift": {', '"drift": {"x": 0.99, ', 1), "meta.json was changed"),
        ("meta.json", lambda t: t.replace('"parameters": {', '"parameters": [], "_": {', 1), "parameters"),
        ("meta.json", lambda t: t.replace('"wall_seconds": ', '"wall_seconds": "abc", "_": ', 1), "wall_seconds"),
        ("meta.json", lambda t: t.replace('"sha256": {', '"_": {', 1), "records no SHA-256 sums"),
    ],
)
def test_a_changed_result_is_refused(saved_folder, file, edit, expected):
    path = saved_folder / file
    path.write_text(edit(path.read_text()))
    with pytest.raises(sim.ResultError, match=expected):
        sim.load_result(saved_folder)


def test_resume_runs_a_changed_folder_again(tmp_path, neutral_scenario):
    from clihelp import variant, write

    book = tmp_path / "book"
    for name in ("c1", "c2"):
        write(book, variant(neutral_scenario, name), f"{name}.yaml")
    out = tmp_path / "out"
    first = sim.batch([book], out, n_paths=2000)
    summary = out / "c1" / "summary.csv"
    honest = summary.read_text()
    summary.write_text(honest.replace(",0.", ",0.999", 1))
    again = sim.batch([book], out, n_paths=2000, resume=True)
    assert [(e.name, e.kept) for e in again.entries] == [("c1", False), ("c2", True)]
    assert summary.read_text() == honest
    assert again.summary().equals(first.summary())


# --------------------------------------------------------------------------------------------
# One writer per batch folder


def test_a_second_batch_on_one_folder_is_refused(tmp_path, neutral_file):
    from simulator.output import folder_lock

    out = tmp_path / "out"
    with folder_lock(out):
        result = invoke("batch", neutral_file, "--paths", 2000, "--out", out, "--resume")
    assert_user_error(result, "is writing this folder", f"PID {__import__('os').getpid()}")
    assert not (out / "batch.json").exists()
    result = invoke("batch", neutral_file, "--paths", 2000, "--out", out, "--resume")
    assert result.exit_code == 0, describe(result)  # released on exit
    assert not (out / ".capsim.lock").exists()


# --------------------------------------------------------------------------------------------
# Posterior files and parameter draws


def test_posterior_at_dev_null_names_the_scenario_and_the_field(scenario, write_scenario):
    scenario["uncertainty"] = {
        "posterior": "/dev/null",
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }
    path = write_scenario(scenario)
    ((field, message),) = problems(path)
    assert field == "uncertainty.posterior" and "/dev/null" in message and "not a regular file" in message


def test_posterior_file_without_a_variable(tmp_path):
    import numpy as np
    import xarray as xr

    from simulator.fit.posterior import PosteriorFileError, inference_data, load_posterior

    dims = {"drift": ("chain", "draw", "regime", "asset"), "vol": ("chain", "draw", "regime", "asset")}
    data = {k: (d, np.zeros((1, 4, 2, 2))) for k, d in dims.items()}
    ds = xr.Dataset(data, coords={"regime": ["a", "b"], "asset": ["small", "large"]})
    path = tmp_path / "p.nc"
    inference_data({"posterior": ds}).to_netcdf(str(path), engine="h5netcdf")  # arviz 0.x and 1.x alike
    with pytest.raises(PosteriorFileError, match="lacks the variable.s. corr, transition, start"):
        load_posterior(path, None)


def test_nan_draws_say_where(scenario):
    import numpy as np

    sc = sim.parse_scenario(scenario)
    x = np.full(600, 0.05)
    x[[7, 9]] = np.nan
    with pytest.raises(
        sim.ScenarioError, match=r"2 of the 600 draws are not finite numbers \(NaN or infinity\), draw 7"
    ):
        sim.with_parameter_draws(sc, {"regimes.slowdown.drift.small": x})


def test_overflowing_draws_are_refused(scenario):
    import numpy as np

    sc = sim.parse_scenario(scenario)
    with pytest.raises(sim.ScenarioError, match="regimes.slowdown.vol.small: draw 1 .1e.30"):
        sim.with_parameter_draws(sc, {"regimes.slowdown.vol.small": np.array([0.2, 1e30])})


# --------------------------------------------------------------------------------------------
# Ties: "beats" is strict, and two identical assets with correlation 1 never beat each other


def test_identical_assets_tie_exactly(neutral_scenario):
    for regime in neutral_scenario["regimes"].values():
        regime["corr"] = 1.0
    res = sim.simulate(sim.parse_scenario(neutral_scenario), n_paths=20_000, seed=5)
    summary = res.summary()
    assert (summary["p_outperform"] == 0).all() and (summary["excess_mean"] == 0).all()
    draws = res.draws(12)
    assert (draws["small"] == draws["large"]).all()
