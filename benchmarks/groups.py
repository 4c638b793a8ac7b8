"""Draw groups: the standard error of p_outperform against the paths per parameter draw G, at equal wall time.

For each shipped scenario with parameter uncertainty and each G (``--draw-paths``, the first being a whole
block of 16,384 paths, capsim's runs before draw groups), ``simulate`` + ``summary()`` at ``--paths`` paths is
timed in this process (a warm-up run of the same G compiles first; the G runs alternate, ``--repeats`` times,
the median taken). Reported per scenario, G and report horizon:

- ``cost``: median time at G / median time at a whole block (the baseline, measured in the same run);
- ``draws``: parameter draws in use;
- ``se``: the reported standard error of p_outperform (batch means over the draws; tests/test_standard_errors.py
  checks it against the spread over seeds);
- ``se / binomial``: se over sqrt(p (1 - p) / n), the error capsim reported before issue 17;
- ``at equal time``: se x sqrt(cost) / binomial: the error reached in the time the baseline takes.

    python benchmarks/groups.py                             # 1e6 paths; updates RESULTS.md
    python benchmarks/groups.py --paths 2e5 --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench  # noqa: E402  (machine_info, loadavg, fmt_paths)
import uncertainty  # noqa: E402  (write_section)

import simulator  # noqa: E402
from simulator.shipped import find_shipped  # noqa: E402

BEGIN, END = "<!-- groups:begin -->", "<!-- groups:end -->"
SCENARIOS = ("rate_cut", "soft_landing", "recession")
DRAW_PATHS = (16384, 1024, 256, 64, 8)


def timed(sc, n: int, seed: int, G: int):
    t0 = time.perf_counter()
    res = simulator.simulate(sc, n_paths=n, seed=seed, draw_paths=G, fan_in_background=False)
    summary = res.summary()
    return time.perf_counter() - t0, res.model.n_draws, summary


def measure(name: str, n: int, repeats: int, sizes) -> list[dict]:
    sc = simulator.load_scenario(find_shipped(name))
    for G in sizes:  # compile every shape first: blocks that keep the fan's month ends, and the others
        simulator.simulate(sc, n_paths=min(n, 1 << 17), seed=1000, draw_paths=G, fan_in_background=False)
    walls = {G: [] for G in sizes}
    out = {}
    for r in range(repeats):
        for G in sizes:
            wall, draws, summary = timed(sc, n, r, G)
            walls[G].append(wall)
            out[G] = (draws, summary)
    base = statistics.median(walls[sizes[0]])
    rows = []
    for G in sizes:
        draws, summary = out[G]
        cost = statistics.median(walls[G]) / base
        for _, s in summary.iterrows():
            p, se = s["p_outperform"], s["p_outperform_se"]
            binomial = math.sqrt(p * (1 - p) / n)
            rows.append(
                {
                    "scenario": name,
                    "G": G,
                    "h": int(s["horizon_months"]),
                    "wall": statistics.median(walls[G]),
                    "cost": cost,
                    "draws": draws,
                    "p": p,
                    "se": se,
                    "ratio": se / binomial,
                    "equal_time": se * math.sqrt(cost) / binomial,
                }
            )
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| scenario | G | draws | wall s | cost | horizon | p_outperform | se | se / binomial | at equal time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['G']:,} | {r['draws']:,} | {r['wall']:.2f} | {r['cost']:.2f}x | {r['h']}m "
            f"| {r['p']:.4f} | {r['se']:.5f} | {r['ratio']:.2f} | {r['equal_time']:.2f} |"
        )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", type=float, default=1e6)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--draw-paths", default=",".join(map(str, DRAW_PATHS)), help="comma-separated, baseline first")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = ap.parse_args(argv)
    simulator.use_cpu_cores()
    n, sizes = int(args.paths), tuple(int(g) for g in args.draw_paths.split(","))
    info, load_before = bench.machine_info(), bench.loadavg()
    rows = [r for name in args.scenarios.split(",") for r in measure(name, n, args.repeats, sizes)]
    lines = table(rows)
    print("\n".join(lines))
    if not args.no_write:
        text = "\n".join(
            [
                BEGIN,
                "## Draw groups: standard error against paths per draw (benchmarks/groups.py)",
                "",
                f"Written by `python benchmarks/groups.py {' '.join(argv or sys.argv[1:])}`; {info['cpu']}, "
                f"{info['cores']} cores, capsim source {info['source']}; load average {load_before} before, "
                f"{bench.loadavg()} after. "
                f"{bench.fmt_paths(n)} paths a run, median of {args.repeats}; cost against G = {sizes[0]:,} "
                "(a draw per block, as before draw groups) measured in the same run.",
                "",
                *lines,
                END,
            ]
        )
        uncertainty.write_section(HERE / "RESULTS.md", text, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
