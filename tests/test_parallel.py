"""Several devices and several processes give the same numbers, bit for bit, as one.

Each case runs in fresh Python processes: the CPU device count (XLA_FLAGS) and jax.distributed must be
set before JAX starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import simulator as sim

SCENARIO = textwrap.dedent("""\
    name: parallel
    frequency: weekly
    horizon_months: 12
    report_months: [3, 12]
    assets: {small: Russell 2000, large: S&P 500}
    regimes:
      up:   {drift: {small: 0.1, large: 0.08}, vol: {small: 0.2, large: 0.15}, corr: 0.8,
             duration_months: 18, next: {down: 1.0}}
      down: {drift: {small: -0.2, large: -0.1}, vol: {small: 0.35, large: 0.25}, corr: 0.9, tails: 5,
             duration_months: 6, next: {up: 1.0}}
    """)
N_PATHS = 5 * 16384 + 1000  # six blocks, the last one partial


def run_python(code: str, env: dict | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "parallel.yaml"
    path.write_text(SCENARIO)
    return path


def one_device_summary(path: Path) -> pd.DataFrame:
    return sim.simulate(sim.load_scenario(path), n_paths=N_PATHS, seed=5, devices=1).summary()


def test_several_cpu_devices_match_one_device(scenario_file):
    code = textwrap.dedent(f"""
        import json, simulator as sim
        sc = sim.load_scenario({str(scenario_file)!r})
        out = {{}}
        for d in (2, 4, "all", "default"):
            res = sim.simulate(sc, n_paths={N_PATHS}, seed=5, **({{}} if d == "default" else {{"devices": d}}))
            out[str(d)] = [res.summary().to_dict(orient="list"), res.meta["devices"]]  # floats by repr: exact
        print(json.dumps(out))
        """)
    runs = json.loads(run_python(code, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
    expected = one_device_summary(scenario_file)
    for count, (table, devices) in runs.items():
        assert len(devices) == (4 if count in ("all", "default") else int(count))
        pd.testing.assert_frame_equal(pd.DataFrame(table), expected, check_exact=True, check_dtype=False)


def test_import_gives_one_cpu_device_per_core_unless_chosen():
    code = "import jax, simulator, json; print(json.dumps([len(jax.devices('cpu')), simulator.devices.cpu_cores()]))"
    devices, cores = json.loads(run_python(code, {"XLA_FLAGS": ""}))
    assert devices == cores
    devices, _ = json.loads(run_python(code, {"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}))
    assert devices == 3
    late = "import jax; jax.numpy.zeros(1); " + code  # JAX started before capsim: its devices are kept
    devices, _ = json.loads(run_python(late, {"XLA_FLAGS": ""}))
    assert devices == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(scenario_file, tmp_path):
    port = free_port()
    out = tmp_path / "two"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simulator",
                "run",
                str(scenario_file),
                "--paths",
                str(N_PATHS),
                "--seed",
                "5",
                "--out",
                str(out),
                "--quiet",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["processes"] == 2
    got = pd.read_csv(out / "summary.csv")
    single = tmp_path / "one"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "run",
            str(scenario_file),
            "--paths",
            str(N_PATHS),
            "--seed",
            "5",
            "--out",
            str(single),
            "--quiet",
        ],
        check=True,
        timeout=300,
    )
    pd.testing.assert_frame_equal(got, pd.read_csv(single / "summary.csv"), check_exact=True)
    assert (out / "fan.csv").read_text() == (single / "fan.csv").read_text()


def test_device_count_errors_are_clear():
    with pytest.raises(sim.DeviceError, match="device count must be a number"):
        sim.simulate(sim.parse_scenario(__import__("yaml").safe_load(SCENARIO)), n_paths=100, devices=64)
