"""Time `capsim calibrate --posterior` on the shipped data and report ESS per second.

    python benchmarks/posterior_bench.py                  # K = 2, 4 chains x 1000 draws after 1000 warm-up
    python benchmarks/posterior_bench.py --regimes 3

Prints a Markdown block (machine, load, wall time, diagnostics, ESS per second, and the posterior beside the ML
fit) to paste into benchmarks/RESULTS.md. The wall time covers the whole command after the data are read: the
ML fit, compiling and running NUTS, the per-draw start probabilities and the diagnostics.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpyro

import simulator  # noqa: F401  (sets one JAX CPU device per core, as the command does)
from simulator.devices import cpu_cores
from simulator.fit.calibrate import calibrate
from simulator.fit.history import load_us_size_returns, log_returns
from simulator.fit.posterior import diagnose, sample_posterior, summary_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regimes", type=int, default=2)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    load0 = os.getloadavg()
    frame = load_us_size_returns()
    t0 = time.perf_counter()
    cal = calibrate(frame, a.regimes)
    t_ml = time.perf_counter() - t0
    fit = sample_posterior(cal, log_returns(frame), draws=a.draws, chains=a.chains, seed=a.seed)
    diag = diagnose(fit)
    wall = time.perf_counter() - t0
    rhat, bulk, tail = diag.worst()
    print(f"### calibrate --posterior, K = {a.regimes}, {a.chains} chains x {a.draws} draws after {fit.warmup} warm-up")
    print()
    print(
        f"- machine: {platform.processor() or platform.machine()}, {cpu_cores()} cores; Python "
        f"{platform.python_version()}, JAX {jax.__version__}, numpyro {numpyro.__version__}"
    )
    print(
        f"- load average before / after: {' '.join(f'{v:.2f}' for v in load0)} / "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} (the CPU is shared: other work slows this down)"
    )
    print(
        f"- wall time: {wall:.0f} s in all (ML fit {t_ml:.0f} s, NUTS with compile and starts {fit.wall_seconds:.0f} s)"
    )
    print(
        f"- diagnostics: max R-hat {rhat:.4f}, min bulk ESS {bulk:.0f}, min tail ESS {tail:.0f}, divergences "
        f"{diag.divergences}; {'pass' if not diag.failures() else 'FAIL: ' + '; '.join(diag.failures())}"
    )
    print(f"- ESS per second (min bulk ESS / whole wall time): {bulk / wall:.2f}; tail: {tail / wall:.2f}")
    print()
    t = summary_table(fit)
    print(
        "| regime | asset | drift ML | drift mean [90%] | vol ML | vol mean [90%] | duration ML | duration mean [90%] |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in t.itertuples():
        print(
            f"| {r.regime} | {r.asset} | {r.drift_ml:.3f} | {r.drift_mean:.3f} [{r.drift_q05:.3f}, {r.drift_q95:.3f}] "
            f"| {r.vol_ml:.3f} | {r.vol_mean:.3f} [{r.vol_q05:.3f}, {r.vol_q95:.3f}] | {r.duration_months_ml:.1f} | "
            f"{r.duration_months_mean:.1f} [{r.duration_months_q05:.1f}, {r.duration_months_q95:.1f}] |"
        )


if __name__ == "__main__":
    main()
