"""What a user gets from the package itself: the JSON Schema of scenario files, the shipped scenarios (by name,
listed, copied by `capsim init`), input errors that map to exit 2 and nothing else, and a built wheel that
works outside the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import simulator as sim
from simulator.cli import main
from simulator.shipped import SCHEMA_FILE, find_shipped, shipped_files

REPO = Path(__file__).resolve().parent.parent
SCHEMA_LINE = "# yaml-language-server: $schema=scenario.schema.json"
OUTPUT_FILES = {"summary.csv", "summary.json", "fan.csv", "fan.png", "meta.json"}
RATE_CUT_FILES = OUTPUT_FILES | {"uncertainty.csv"}  # rate_cut carries parameter uncertainty


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def as_editor_sees(path: Path):
    """The YAML document as a JSON-Schema validator in an editor sees it (mapping keys are strings; YAML 1.2 has
    no timestamps, so a date such as `as_of: 2026-02-01` is the string it spells)."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text()), default=lambda v: v.isoformat()))


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(invoke("schema").output)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"  # what editors' YAML servers read
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


# --------------------------------------------------------------------------------------------
# JSON Schema


def test_committed_schema_equals_capsim_schema():
    r = invoke("schema")
    assert r.exit_code == 0
    assert (REPO / "scenarios" / SCHEMA_FILE).read_text() == r.output, (
        "scenarios/scenario.schema.json is stale: capsim schema > scenarios/scenario.schema.json"
    )


def test_schema_describes_every_field_with_its_unit(validator):
    schema = validator.schema
    regime = schema["$defs"]["RegimeSpec"]["properties"]
    assert "annualised" in regime["drift"]["description"].lower() and "log return" in regime["drift"]["description"]
    assert "months" in regime["duration_months"]["description"]
    assert "percent" in schema["$defs"]["Rates"]["properties"]["path"]["description"]

    def walk(node, where):
        if isinstance(node, dict):
            for name, prop in node.get("properties", {}).items():
                assert prop.get("description"), f"{where}.{name} has no description"
            for key, child in node.items():
                walk(child, f"{where}.{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{where}[{i}]")

    walk(schema, "schema")


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: p.name)
def test_shipped_scenarios_follow_the_schema(validator, path):
    assert path.read_text().splitlines()[0] == SCHEMA_LINE
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(as_editor_sees(path))]
    assert not errors, errors


@pytest.mark.parametrize(
    "mistake, field",
    [
        (
            lambda d: d["regimes"]["expansion"].update(drfit=d["regimes"]["expansion"]["drift"]),
            "regimes.expansion.drfit",
        ),
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d.update(horizon_months="two years"), "horizon_months"),
        (lambda d: d["regimes"]["slowdown"].update(vol="high"), "regimes.slowdown.vol"),
        (lambda d: d["regimes"]["expansion"].pop("drift"), "regimes.expansion.drift"),
        (lambda d: d.pop("frequency"), "frequency"),
        (lambda d: d.update(frequency="hourly"), "frequency"),
        (lambda d: d["rates"].update(sensitivity=[0.1, 0.2]), "rates.sensitivity"),
    ],
    ids=[
        "unknown-regime-key",
        "unknown-top-key",
        "wrong-type",
        "wrong-type-nested",
        "missing-nested",
        "missing-top",
        "bad-choice",
        "list-for-mapping",
    ],
)
def test_structural_mistakes_are_rejected_by_both_schema_and_validate(validator, tmp_path, mistake, field):
    data = as_editor_sees(REPO / "scenarios" / "rate_cut.yaml")
    assert validator.is_valid(data)
    mistake(data)
    assert not validator.is_valid(data)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    r = invoke("validate", bad)
    assert r.exit_code == 2 and f"{bad}" in r.output and field in r.output, r.output


# --------------------------------------------------------------------------------------------
# Shipped scenarios


def test_shipped_scenarios_are_found_by_file_stem_or_name():
    assert find_shipped("rate_cut") == find_shipped("rate-cut") == find_shipped("rate_cut.yaml")
    assert find_shipped("rate_cut").name == "rate_cut.yaml"
    assert find_shipped("no-such-scenario") is None
    assert {f.stem for f in shipped_files()} >= {"rate_cut", "soft_landing", "recession", "baseline", "historical"}


def test_capsim_scenarios_lists_each_with_its_description():
    r = invoke("scenarios")
    assert r.exit_code == 0
    for f in shipped_files():
        sc = sim.load_scenario(f)
        assert f.stem in r.output and sc.name in r.output
        assert " ".join(sc.description.split()[:4]) in " ".join(r.output.split())


def test_run_a_shipped_scenario_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file called rate_cut here
    r = invoke("run", "rate_cut", "--paths", 20_000, "--quiet")
    assert r.exit_code == 0, r.output
    assert {p.name for p in (tmp_path / "results" / "rate-cut").iterdir()} == RATE_CUT_FILES
    shipped = sim.load_scenario(find_shipped("rate_cut"))
    assert (
        json.loads((tmp_path / "results" / "rate-cut" / "meta.json").read_text())["scenario_sha256"] == shipped.sha256
    )


def test_an_unknown_name_lists_the_shipped_scenarios(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("run", "rate-cuts", "--paths", 20_000)
    assert r.exit_code == 2 and "rate-cuts" in r.output and "rate_cut" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "results").exists()


def test_init_copies_scenarios_and_schema_and_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "mine"
    r = invoke("init", out)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted([f.name for f in shipped_files()] + [SCHEMA_FILE])
    assert (out / SCHEMA_FILE).read_text() == invoke("schema").output
    assert invoke("validate", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = invoke("init", out)
    assert r.exit_code == 2 and str(out) in r.output and "empty" in r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (tmp_path / "afile").write_text("x")
    assert invoke("init", tmp_path / "afile").exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke("init", empty).exit_code == 0


# --------------------------------------------------------------------------------------------
# Input errors: exactly CapsimError is exit 2; library messages name arguments, the CLI flags


def test_every_input_error_is_a_capsim_error():
    for cls in (
        sim.ScenarioError,
        sim.DataError,
        sim.FitError,
        sim.OutputExistsError,
        sim.DeviceError,
        sim.MethodError,
    ):
        assert issubclass(cls, sim.CapsimError) and issubclass(cls, ValueError), cls


def test_a_bug_is_not_passed_off_as_a_user_error(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "/internal/lost.bin")

    monkeypatch.setattr("simulator.cli.runs.simulate", broken)
    r = invoke("run", REPO / "scenarios" / "rate_cut.yaml", "--paths", 1000, "--out", tmp_path / "o")
    assert r.exit_code == 1 and isinstance(r.exception, FileNotFoundError)


def test_a_missing_input_file_is_exit_2_naming_it(tmp_path):
    for args in (
        ["run", tmp_path / "nope.yaml"],
        ["validate", tmp_path / "nope.yaml"],
        ["calibrate", tmp_path / "nope.csv", "--regimes", 2, "--out", tmp_path / "o.yaml"],
    ):
        r = invoke(*args)
        assert r.exit_code == 2 and "nope." in r.output and "Traceback" not in r.output, (args, r.output)


def test_library_messages_name_arguments_and_the_cli_names_flags(tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "x").write_text("x")
    sc = sim.load_scenario(REPO / "scenarios" / "rate_cut.yaml")
    res = sim.simulate(sc, n_paths=1000, seed=1)
    with pytest.raises(sim.OutputExistsError) as exc:
        res.save(out)
    assert "force=True" in str(exc.value) and "--force" not in str(exc.value)
    r = invoke("run", REPO / "scenarios" / "rate_cut.yaml", "--paths", 1000, "--out", out)
    assert r.exit_code == 2 and "--force" in r.output and "force=True" not in r.output

    with pytest.raises(sim.MethodError) as exc:
        sim.simulate(sc, n_paths=1000, method="exact")
    assert "method='step'" in str(exc.value)
    r = invoke(
        "run", REPO / "scenarios" / "rate_cut.yaml", "--paths", 1000, "--method", "exact", "--out", tmp_path / "m"
    )
    assert r.exit_code == 2 and "--method step" in r.output and "method='step'" not in r.output


# --------------------------------------------------------------------------------------------
# The built wheel, installed outside the repository


def test_wheel_installed_outside_the_repo_runs_a_shipped_scenario(tmp_path):
    """Build the wheel, install it into a fresh venv in a temporary folder, and run a shipped scenario by name
    from there. The venv reaches its dependencies through a .pth file naming this environment's site folders,
    which come after its own (written after the install, so pip does not see this environment's capsim): its
    `simulator` is the wheel's."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    wheel = next(dist.glob("capsim-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (Path(site) / "capsim_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    located = subprocess.run(
        [str(python), "-c", "import simulator; print(simulator.__file__)"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(located).is_relative_to(site), located  # the wheel's copy, not the repository's
    r = subprocess.run(
        [str(env_dir / "bin" / "capsim"), "run", "rate_cut", "--paths", "20000", "--quiet"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    folder = work / "results" / "rate-cut"
    assert {p.name for p in folder.iterdir()} == RATE_CUT_FILES
    assert len(pd.read_csv(folder / "summary.csv")) == 4
    listed = subprocess.run(
        [str(env_dir / "bin" / "capsim"), "scenarios"], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0 and "soft_landing" in listed.stdout and str(site) in listed.stdout


def test_slow_tests_are_left_out_by_default_and_ci_runs_them():
    """The README's test command leaves the sampler-heavy tests (marked slow) out; `-m slow` runs them, and
    .ci/run does so on the default and the newest Python, with the README's `calibrate --posterior` line."""

    def collected(*args):
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {line.split("::")[1] for line in out.splitlines() if "::" in line}

    heavy = {
        "test_ninety_percent_intervals_cover_the_truth",
        "test_backtest_scores_three_methods_side_by_side",
        "test_posterior_mean_sits_near_the_ml_fit_on_the_shipped_data",
    }
    by_default = collected("tests/test_posterior.py")
    assert not heavy & by_default and "test_calibrate_posterior_refuses_to_write_when_diagnostics_fail" in by_default
    assert collected("-m", "slow", "tests/test_posterior.py") == heavy
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.count("python -m pytest -m slow") + ci.count("-p no:cacheprovider -m slow") == 2
    assert [line.strip() for line in ci.splitlines()].count("readme_posterior") == 2
