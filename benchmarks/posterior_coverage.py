"""Coverage of the posterior's 90% intervals on synthetic data from known parameters (the full version of
tests/test_posterior.py::test_ninety_percent_intervals_cover_the_truth).

    python benchmarks/posterior_coverage.py --replications 100 --months 600 --draws 500 --chains 2

Each replication simulates the K = 2 model of tests/posterior_cases.py, fits it (ML, then NUTS) and records for
six parameters (per regime: drift and vol of the first asset, stay probability) whether the central 90%
interval covers the truth. Prints the coverage per parameter and pooled, with the binomial 99% band of a
calibrated interval (pooled: taking a replication's six intervals as independent).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from posterior_cases import covered  # noqa: E402

NAMES = ["drift bear", "drift bull", "vol bear", "vol bull", "stay bear", "stay bull"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replications", type=int, default=100)
    ap.add_argument("--months", type=int, default=600)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    a = ap.parse_args()
    hits = np.array([covered(seed, T=a.months, draws=a.draws, chains=a.chains) for seed in range(a.replications)])
    R = len(hits)
    lo, hi = stats.binom.interval(0.99, R, 0.9)
    print(f"{R} replications, {a.months} months, {a.chains} chains x {a.draws} draws")
    print(f"per parameter (calibrated: {lo / R:.2f} .. {hi / R:.2f} with 99% probability):")
    for name, c in zip(NAMES, hits.mean(axis=0)):
        print(f"  {name:<11} {c:.3f}")
    lo, hi = stats.binom.interval(0.99, hits.size, 0.9)
    print(f"pooled: {hits.mean():.3f} (calibrated: {lo / hits.size:.3f} .. {hi / hits.size:.3f})")


if __name__ == "__main__":
    main()
