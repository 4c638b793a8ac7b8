"""Cost of `capsim sensitivity` and `capsim solve` (issue 19, part 4), in one process, ratios against a baseline
measured in the same run.

- Sobol: the shipped rate_cut over all its uncertain fields at 12 months, ``--samples`` base samples
  (N (2F + 2) draws, second order) of ``--draw-paths`` paths each, plus the tornado draws, against one
  million-path ``simulate`` of rate_cut (its file's horizon, 24 months, the file's 256 paths a draw) with
  ``summary()``: each timed first (its compiles included) and warm (median of ``--repeats``). Target: ratio
  <= 3.
- solve: rate_cut's ``regimes.expansion.drift.small`` in [0.0, 0.2] for p_outperform = 0.5 at 12 months, at
  ``--solve-paths`` paths per run: the runs it takes, in runs' worth of paths. Target: <= 10.

    python benchmarks/sensitivity.py                              # 512 samples, 256 paths a draw
    python benchmarks/sensitivity.py --samples 64 --draw-paths 256 --no-write
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

BEGIN, END = "<!-- sensitivity:begin -->", "<!-- sensitivity:end -->"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--draw-paths", type=int, default=256)
    ap.add_argument("--solve-paths", type=float, default=1e6)
    ap.add_argument("--repeats", type=int, default=3, help="timed warm runs of each (median)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from simulator.run import simulate
    from simulator.sensitivity import sensitivity
    from simulator.shipped import shipped_files
    from simulator.solve import solve

    path = next(p for p in shipped_files() if p.stem == "rate_cut")
    from simulator.scenario import load_scenario

    sc = load_scenario(path)
    load = os.getloadavg()

    def baseline():
        simulate(sc, 1_000_000, 0).summary()

    def analysis():
        return sensitivity(sc, args.samples, 0, horizons=[12], draw_paths=args.draw_paths)

    base_cold = timed(baseline)  # the first run: its compiles included
    base = statistics.median(timed(baseline) for _ in range(args.repeats))
    t0 = time.perf_counter()
    res = analysis()  # the first analysis: its compiles (and SALib's import) included
    sens_cold = time.perf_counter() - t0
    sens = statistics.median(timed(analysis) for _ in range(args.repeats))
    n_solve = int(args.solve_paths)
    t0 = time.perf_counter()
    solved = solve(
        sc, {"regimes.expansion.drift.small": (0.0, 0.2)}, "p_outperform", 0.5, n_solve, 0, horizon_months=12
    )
    solve_wall = time.perf_counter() - t0
    m = res.meta
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout
    p = res.table[res.table["metric"] == "p_outperform"].sort_values("ST", ascending=False)
    a = solved.answer
    lines = [
        "## Sensitivity and reverse stress (issue 19)",
        "",
        f"Written by `python benchmarks/sensitivity.py --samples {args.samples} --draw-paths {args.draw_paths}` on "
        f"{_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit.strip()}, {os.cpu_count()} CPU cores, "
        f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after.",
        "",
        "| what | figure |",
        "|---|---|",
        f"| baseline: rate_cut, 1,000,000 paths, 24 months, `simulate` + `summary()` | {base:.2f} s warm, "
        f"{base_cold:.2f} s first (compiles included) |",
        f"| Sobol: rate_cut, {len(m['factors'])} fields, N = {m['samples']}: {m['plan_draws']:,} plan + "
        f"{m['tornado_draws']:,} tornado draws, 12 months | {sens:.2f} s warm, {sens_cold:.2f} s first |",
        f"| draw paths used (asked {args.draw_paths:,}) | {m['draw_paths']:,} |",
        f"| paths simulated by the analysis | {m['simulated_paths']:,} in {m['passes']} pass(es) |",
        f"| **ratio Sobol / baseline** (target <= 3), warm / warm | **{sens / base:.2f}** "
        f"({'met' if sens <= 3 * base else 'NOT met'}) |",
        f"| ratio, first / first (each with its compiles) | {sens_cold / base_cold:.2f} |",
        f"| solve: expansion small drift in [0, 0.2], p_outperform = 0.5 at 12 months, {n_solve:,} paths per run | "
        f"{solved.meta['evaluations']} runs ({solve_wall:.1f} s), crossing {a.get('value', float('nan')):.4f} "
        f"[{a.get('low', float('nan')):.4f}, {a.get('high', float('nan')):.4f}] |",
        f"| **solve in runs' worth of paths** (target <= 10) | **{solved.meta['evaluations']}** |",
        "",
        "S_T of p_outperform at 12 months (95% intervals): "
        + "; ".join(f"{r.field} {r.ST:.3f} [{r.ST_low:.3f}, {r.ST_high:.3f}]" for r in p.itertuples()),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        results = HERE / "RESULTS.md"
        body = results.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in body:
            body = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, body, flags=re.S)
        else:
            body = body.rstrip("\n") + "\n\n" + block + "\n"
        results.write_text(body)


if __name__ == "__main__":
    main()
