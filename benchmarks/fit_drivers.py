"""Time the K = 2 fit with two drivers (credit_spread, tbill) against the constant-matrix fit on the shipped data.

    PYTHONPATH=. python benchmarks/fit_drivers.py [--repeats 3]

Both are timed in this one process as `capsim calibrate` runs them: ``calibrate(frame, 2)`` (the constant
matrix, 1926-07 .. 2026-02) and ``calibrate_drivers(frame, 2, ["credit_spread", "tbill"])`` (reads the macro
file, cuts the sample to 1934-02 .. 2026-02, fits the constant matrix there for the LR test, then the driver
model with its standard errors). JAX is imported before timing (process start-up, not the fit). The first
pair is cold (the driver fit's JIT compile included); then ``--repeats`` warm pairs, alternating. Target: the
driver fit within 3x of the constant fit (issue 18, part 7).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from simulator.fit.calibrate import calibrate
from simulator.fit.history import load_us_size_returns
from simulator.fit.tvtp import calibrate_drivers

DRIVERS = ["credit_spread", "tbill"]


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with jax.enable_x64(True):
        (jnp.zeros(2) + 1).block_until_ready()
    frame = load_us_size_returns()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    load0 = os.getloadavg()
    const_cold = timed(lambda: calibrate(frame, 2))
    drv_cold = timed(lambda: calibrate_drivers(frame, 2, DRIVERS))
    const, drv = [], []
    for _ in range(args.repeats):
        const.append(timed(lambda: calibrate(frame, 2)))
        drv.append(timed(lambda: calibrate_drivers(frame, 2, DRIVERS)))
    c, d = statistics.median(const), statistics.median(drv)
    print(
        f"commit {commit}, JAX {jax.__version__}, {os.cpu_count()} cores; load average before "
        f"{' '.join(f'{v:.2f}' for v in load0)}, after {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(
        f"cold (first call, JIT compile included): constant {const_cold:.2f} s, drivers {drv_cold:.2f} s, "
        f"ratio {drv_cold / const_cold:.2f}"
    )
    print(
        f"warm (median of {args.repeats}): constant {c:.2f} s, drivers {d:.2f} s, ratio {d / c:.2f} "
        f"(target <= 3: {'met' if max(d / c, drv_cold / const_cold) <= 3 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
