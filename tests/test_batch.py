"""`capsim batch` and ``sim.batch`` (docs/batch-sweep.md): the same numbers as one-by-one runs, one compile per
run shape, the combined files and the manifest, resume after Ctrl-C or kill -9, shards, and every input error."""

from __future__ import annotations

import importlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import pandas as pd
import pytest
from clihelp import assert_user_error, describe, invoke, read_table, tree, variant, write

import simulator as sim

PATHS = "20000"
FOLDER_FILES = {"summary.csv", "summary.json", "fan.csv", "fan.png", "meta.json"}


@pytest.fixture(scope="module")
def book(tmp_path_factory, make_scenario, make_neutral):
    """Three scenario files: alpha and gamma share a run shape, beta has other regimes."""
    folder = tmp_path_factory.mktemp("book")
    write(folder, variant(make_scenario(), "alpha"), "a.yaml")
    write(folder, variant(make_neutral(), "beta"), "b.yaml")
    write(folder, variant(make_scenario(), "gamma", small_drift=0.12), "c.yaml")
    return folder


@pytest.fixture(scope="module")
def batched(book, tmp_path_factory):
    out = tmp_path_factory.mktemp("batched") / "out"
    result = invoke("batch", book, "--paths", PATHS, "--seed", "5", "--out", out)
    assert result.exit_code == 0, describe(result)
    return out


def test_folders_are_bit_identical_to_one_by_one_runs(book, batched, tmp_path):
    assert {p.name for p in batched.iterdir()} == {
        "alpha",
        "beta",
        "gamma",
        "summary.csv",
        "summary.json",
        "batch.json",
    }
    for name, file in (("alpha", "a.yaml"), ("beta", "b.yaml"), ("gamma", "c.yaml")):
        result = invoke("run", book / file, "--paths", PATHS, "--seed", "5", "--out", tmp_path / name, "--quiet")
        assert result.exit_code == 0, describe(result)
        assert {p.name for p in (batched / name).iterdir()} == FOLDER_FILES
        for f in ("summary.csv", "summary.json", "fan.csv"):
            assert (batched / name / f).read_bytes() == (tmp_path / name / f).read_bytes(), (name, f)
        meta = json.loads((batched / name / "meta.json").read_text())
        assert meta["seed"] == 5 and meta["n_paths"] == 20000


def test_combined_summary(batched):
    table = read_table(batched / "summary.csv")
    assert list(table.columns[:2]) == ["scenario", "horizon_months"]
    occupancy = [c for c in table.columns if c.startswith("occupancy_")]
    assert occupancy == [f"occupancy_{k}" for k in ("expansion", "slowdown", "recession", "calm", "stormy")]
    assert list(table.columns[-5:]) == occupancy  # the union of regimes, last
    for name in ("alpha", "beta", "gamma"):
        own = read_table(batched / name / "summary.csv")
        rows = table[table["scenario"] == name].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows[own.columns], own, check_exact=True)
        absent = [c for c in occupancy if c not in own.columns]
        assert rows[absent].isna().all().all()  # empty where a scenario lacks the regime
    assert "beta,3,20000," in (batched / "summary.csv").read_text()
    records = json.loads((batched / "summary.json").read_text())
    assert len(records) == len(table) and records[-1]["occupancy_calm"] is None


def test_manifest(book, batched):
    manifest = json.loads((batched / "batch.json").read_text())
    assert manifest["seed"] == 5 and manifest["n_paths"] == 20000 and manifest["shard"] is None
    entries = manifest["scenarios"]
    assert [e["name"] for e in entries] == ["alpha", "beta", "gamma"]
    for e in entries:
        assert e["status"] == "done" and e["error"] is None and e["wall_seconds"] > 0
        assert e["sha256"] == sim.load_scenario(e["file"]).sha256
        assert Path(e["file"]).parent == book


def test_one_compile_per_run_shape(tmp_path, make_scenario):
    """Scenarios of a shape already compiled in this process compile nothing more."""
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: (
            compiles.append(event) if event == "/jax/core/compile/backend_compile_duration" else None
        )
    )
    shape = variant(make_scenario(), "first", horizon=7)  # a shape no other test uses
    write(tmp_path / "one", shape, "first.yaml")
    for i, drift in enumerate((0.0, 0.05, 0.2)):
        write(tmp_path / "three", variant(shape, f"more-{i}", small_drift=drift), f"{i}.yaml")
    sim.batch([tmp_path / "one"], tmp_path / "out1", n_paths=20_000)
    assert compiles, "the first scenario of a new shape compiles"
    compiles.clear()
    report = sim.batch([tmp_path / "three"], tmp_path / "out3", n_paths=20_000)
    assert [e.status for e in report.entries] == ["done"] * 3
    assert compiles == []


def test_resume_keeps_finished_folders_and_reruns_the_rest(book, batched, tmp_path):
    out = tmp_path / "out"
    first = invoke("batch", book / "a.yaml", book / "c.yaml", "--paths", PATHS, "--seed", "5", "--out", out)
    assert first.exit_code == 0, describe(first)
    before = {name: tree(out / name) for name in ("alpha", "gamma")}
    (out / "gamma" / "fan.png").unlink()  # incomplete: run again
    result = invoke("batch", book, "--paths", PATHS, "--seed", "5", "--out", out, "--resume")
    assert result.exit_code == 0, describe(result)
    assert tree(out / "alpha") == before["alpha"]  # kept: not even touched
    assert tree(out / "gamma") != before["gamma"]
    assert "kept" in result.output
    assert (out / "summary.csv").read_bytes() == (batched / "summary.csv").read_bytes()
    entries = json.loads((out / "batch.json").read_text())["scenarios"]
    assert [(e["name"], e["status"], e["kept"]) for e in entries] == [
        ("alpha", "done", True),
        ("beta", "done", False),
        ("gamma", "done", False),
    ]


@pytest.mark.parametrize("change", [["--seed", "6"], ["--paths", "20001"], ["--horizon", "6"], ["--precision", "64"]])
def test_resume_reruns_folders_made_with_other_settings(book, tmp_path, change):
    out = tmp_path / "out"
    assert invoke("batch", book / "b.yaml", "--paths", PATHS, "--seed", "5", "--out", out).exit_code == 0
    before = tree(out / "beta")
    args = {"--paths": PATHS, "--seed": "5"} | dict([change])
    result = invoke("batch", book / "b.yaml", *[x for kv in args.items() for x in kv], "--out", out, "--resume")
    assert result.exit_code == 0, describe(result)
    assert tree(out / "beta") != before
    meta = json.loads((out / "beta" / "meta.json").read_text())
    assert (
        str(
            {"--seed": meta["seed"], "--paths": meta["n_paths"], "--precision": meta["precision"]}.get(
                change[0], meta["parameters"]["horizon_months"]
            )
        )
        == change[1]
    )


def test_resume_reruns_a_changed_file(book, tmp_path, make_neutral):
    out = tmp_path / "out"
    file = write(tmp_path / "in", variant(make_neutral(), "beta"), "b.yaml")
    assert invoke("batch", file, "--paths", PATHS, "--out", out).exit_code == 0
    write(tmp_path / "in", variant(make_neutral(), "beta", small_drift=0.07), "b.yaml")
    result = invoke("batch", file, "--paths", PATHS, "--out", out, "--resume")
    assert result.exit_code == 0, describe(result)
    assert json.loads((out / "beta" / "meta.json").read_text())["scenario_sha256"] == sim.load_scenario(file).sha256


def test_shards_then_resume_equal_one_batch(book, batched, tmp_path):
    out = tmp_path / "out"
    for shard in ("0/2", "1/2"):
        result = invoke("batch", book, "--paths", PATHS, "--seed", "5", "--out", out, "--shard", shard)
        assert result.exit_code == 0, describe(result)
    shards = [json.loads((out / f"batch-shard-{i}-of-2.json").read_text())["scenarios"] for i in (0, 1)]
    assert [[e["name"] for e in s] for s in shards] == [["alpha", "gamma"], ["beta"]]  # sorted position mod 2
    assert not (out / "summary.csv").exists()  # the final --resume writes the combined files
    before = tree(out)
    result = invoke("batch", book, "--paths", PATHS, "--seed", "5", "--out", out, "--resume")
    assert result.exit_code == 0, describe(result)
    after = tree(out)
    assert {k: v for k, v in after.items() if "/" in k} == {k: v for k, v in before.items() if "/" in k}
    assert (out / "summary.csv").read_bytes() == (batched / "summary.csv").read_bytes()
    assert (out / "summary.json").read_bytes() == (batched / "summary.json").read_bytes()


def test_a_scenario_failing_while_running_is_recorded_and_the_others_go_on(book, tmp_path, monkeypatch):
    batch_module = importlib.import_module("simulator.batch")  # sim.batch is the function

    real = batch_module.simulate

    def simulate(sc, **kw):
        if sc.name == "beta":
            raise RuntimeError("device lost")
        return real(sc, **kw)

    monkeypatch.setattr(batch_module, "simulate", simulate)
    out = tmp_path / "out"
    result = invoke("batch", book, "--paths", PATHS, "--out", out)
    assert result.exit_code == 1, describe(result)
    assert "failed: beta" in result.output and "device lost" in result.output
    entries = {e["name"]: e for e in json.loads((out / "batch.json").read_text())["scenarios"]}
    assert entries["beta"]["status"] == "failed" and entries["beta"]["error"] == "RuntimeError: device lost"
    assert entries["alpha"]["status"] == entries["gamma"]["status"] == "done"
    assert set(read_table(out / "summary.csv")["scenario"]) == {"alpha", "gamma"}
    assert not (out / "beta").exists()


def test_interrupt_in_the_library_writes_the_manifest(book, tmp_path):
    def progress(name, done, total, paths):
        if name == "beta":
            raise KeyboardInterrupt

    with pytest.raises(sim.BatchInterrupted) as err:
        sim.batch([book], tmp_path / "out", n_paths=20_000, progress=progress)
    statuses = [(e.name, e.status) for e in err.value.report.entries]
    assert statuses == [("alpha", "done"), ("beta", "pending"), ("gamma", "pending")]
    on_disk = json.loads((tmp_path / "out" / "batch.json").read_text())["scenarios"]
    assert [(e["name"], e["status"]) for e in on_disk] == statuses
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["alpha", "batch.json"]  # no temporary left


# --------------------------------------------------------------------------------------------
# Interrupted processes: SIGKILL and Ctrl-C (SIGINT) in the middle of a batch


@pytest.fixture(scope="module")
def long_book(tmp_path_factory, make_scenario):
    """Four scenarios of four shapes (each compiles), and their uninterrupted batch."""
    folder = tmp_path_factory.mktemp("long")
    for i, horizon in enumerate((24, 18, 12, 9)):
        write(folder, variant(make_scenario(), f"s{i}", horizon=horizon), f"s{i}.yaml")
    out = tmp_path_factory.mktemp("long-ref") / "out"
    result = invoke("batch", folder, "--paths", PATHS, "--out", out)
    assert result.exit_code == 0, describe(result)
    return folder, out


def start_batch(folder: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "simulator", "batch", str(folder), "--paths", PATHS, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CAPSIM_CACHE_DIR": ""},
    )


def wait_for_first_done(proc: subprocess.Popen, out: Path) -> list[dict]:
    """Poll batch.json until a scenario is done; return its entries."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        try:
            entries = json.loads((out / "batch.json").read_text())["scenarios"]
        except (OSError, ValueError):
            entries = []
        if any(e["status"] == "done" for e in entries):
            return entries
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no scenario finished in time: {proc.communicate()}")


def test_kill_9_then_resume_equals_an_uninterrupted_batch(long_book, tmp_path):
    folder, reference = long_book
    out = tmp_path / "out"
    proc = start_batch(folder, out)
    wait_for_first_done(proc, out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    entries = json.loads((out / "batch.json").read_text())["scenarios"]
    done = [e["name"] for e in entries if e["status"] == "done"]
    assert done and len(done) < 4, entries  # killed in the middle
    for name in done:  # every finished folder is complete; nothing else is visible
        assert {p.name for p in (out / name).iterdir()} == FOLDER_FILES
    visible = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert visible == {"batch.json", *done}
    before = {name: (tree(out / name), (out / name).stat().st_mtime_ns) for name in done}
    result = invoke("batch", folder, "--paths", PATHS, "--out", out, "--resume")
    assert result.exit_code == 0, describe(result)
    assert {name: (tree(out / name), (out / name).stat().st_mtime_ns) for name in done} == before  # not recomputed
    assert (out / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # the killed run's temporary is gone


def test_ctrl_c_exits_130_and_prints_the_command_that_resumes(long_book, tmp_path):
    folder, reference = long_book
    out = tmp_path / "out"
    proc = start_batch(folder, out)
    wait_for_first_done(proc, out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted:" in err and "scenarios done" in err
    command = err.strip().splitlines()[-1]
    assert command.strip().startswith("capsim batch") and "--resume" in command
    result = invoke(*shlex.split(command)[1:])
    assert result.exit_code == 0, describe(result)
    assert (out / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()


# --------------------------------------------------------------------------------------------
# Input errors: exit 2, a message naming the file, nothing written


def test_every_bad_file_is_listed_and_nothing_written(book, tmp_path, make_scenario):
    bad = make_scenario()
    bad["regimes"]["expansion"]["vol"]["small"] = -0.2
    write(tmp_path / "in", bad, "bad1.yaml")
    bad2 = variant(make_scenario(), "other")
    bad2["regimes"]["recession"]["tails"] = 1.5
    write(tmp_path / "in", bad2, "bad2.yaml")
    out = tmp_path / "out"
    result = invoke("batch", book, tmp_path / "in", "--paths", PATHS, "--out", out)
    assert_user_error(result, "bad1.yaml", "regimes.expansion.vol.small", "bad2.yaml", "regimes.recession.tails")
    assert not out.exists()


def test_duplicate_names_name_both_files(book, tmp_path, make_neutral):
    other = write(tmp_path, variant(make_neutral(), "beta"), "another-beta.yaml")
    result = invoke("batch", book, other, "--paths", PATHS, "--out", tmp_path / "out")
    assert_user_error(result, "b.yaml", "another-beta.yaml", "'beta'")
    assert not (tmp_path / "out").exists()


def test_non_empty_out_is_refused_without_resume_or_force(book, batched, tmp_path):
    before = tree(batched)
    result = invoke("batch", book, "--paths", PATHS, "--seed", "5", "--out", batched)
    assert_user_error(result, str(batched), "--resume", "--force")
    assert tree(batched) == before


def test_force_runs_everything_again(book, tmp_path):
    out = tmp_path / "out"
    assert invoke("batch", book / "b.yaml", "--paths", PATHS, "--out", out).exit_code == 0
    before = tree(out / "beta")
    result = invoke("batch", book / "b.yaml", "--paths", PATHS, "--out", out, "--force")
    assert result.exit_code == 0, describe(result)
    assert tree(out / "beta") != before  # written again (same numbers, new files)
    assert (out / "beta" / "summary.csv").read_bytes() == before["summary.csv"][0]


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["--resume", "--force"], ["--resume or --force"]),
        (["--shard", "2/2"], ["'2/2'", "I/N"]),
        (["--shard", "one/two"], ["'one/two'"]),
        (["--method", "exact"], ["a.yaml", "Student-t", "--method step"]),
        (["--devices", "99"], ["--devices all"]),
        (["--device", "tpu"], ["tpu"]),
    ],
)
def test_bad_options(book, tmp_path, args, mentions):
    result = invoke("batch", book, "--paths", PATHS, "--out", tmp_path / "out", *args)
    assert_user_error(result, *mentions)
    assert not (tmp_path / "out").exists()


def test_missing_path_and_empty_folder(tmp_path):
    assert_user_error(invoke("batch", tmp_path / "nope.yaml"), "nope.yaml")
    (tmp_path / "empty").mkdir()
    assert_user_error(invoke("batch", tmp_path / "empty"), "empty", "no *.yaml")


def test_json_output(book, tmp_path):
    result = invoke("batch", book / "b.yaml", "--paths", PATHS, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, describe(result)
    records = json.loads(result.output)
    assert {r["scenario"] for r in records} == {"beta"} and len(records) == 3
