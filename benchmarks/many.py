"""capsim batch and sweep speed: ratios against baselines measured in the same run (no timed tests).

1. Batch: the shipped scenarios as one `capsim batch` against as many separate `capsim run` commands, same
   path count and seed, each a fresh process (imports, compile, writing the folder: what a user waits for).
   Target: batch <= 0.5 x the separate runs at 200,000 paths.
2. Sweep: ``sim.sweep`` over N points of one field, in a process that has not compiled the shape yet (its one
   compile is timed), against the sum over the points of ``sim.simulate``'s steady-state time (each point run
   once to warm up, then timed). The sweep also makes every point's summary table; ``simulate`` alone does not.
   Target: sweep <= 1.25 x the sum at 100,000 paths and 50 points.
3. `capsim batch scenarios/` at 1e6 paths, end to end.

The XLA compile cache on disk is off (CAPSIM_CACHE_DIR empty) for every command, so every process compiles
what it runs, as on a first use; the batch comparison is also made with the cache on and filled (as on the
next day's run of the same book), where no process compiles.

    python benchmarks/many.py                 # the figures above; prints them
    python benchmarks/many.py --write         # and records them in benchmarks/RESULTS.md (its own section)
    python benchmarks/many.py --batch-paths 20000 --sweep-points 5 --big-paths 0   # a quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SECTION = "<!-- benchmarks/many.py: everything below is written by it -->"
ENV = {**os.environ, "CAPSIM_CACHE_DIR": ""}


def capsim(*args, cache: str = "") -> float:
    """Seconds for one `capsim ...` command in a fresh process (it must succeed); ``cache``: the on-disk compile
    cache folder (empty: off)."""
    t0 = time.perf_counter()
    env = {**ENV, "CAPSIM_CACHE_DIR": cache}
    subprocess.run([sys.executable, "-m", "simulator", *map(str, args), "--quiet"], check=True, env=env, cwd=REPO)
    return time.perf_counter() - t0


def batch_vs_runs(paths: int, tmp: Path, cache: str = "") -> dict:
    from simulator.shipped import shipped_files

    files = shipped_files()
    if cache:  # filled by an untimed batch first: every kernel is on disk for both
        capsim("batch", *files, "--paths", paths, "--out", tmp / "fill", cache=cache)
    separate = [capsim("run", f, "--paths", paths, "--out", tmp / "runs" / f.stem, cache=cache) for f in files]
    batch = capsim("batch", *files, "--paths", paths, "--out", tmp / "batch", cache=cache)
    for f in files:  # the same numbers
        name = (tmp / "runs" / f.stem / "summary.csv").read_bytes()
        assert name in [(d / "summary.csv").read_bytes() for d in (tmp / "batch").iterdir() if d.is_dir()], f
    return {"scenarios": len(files), "separate": separate, "batch": batch}


SWEEP_SCRIPT = """
import sys, time, json
import numpy as np
import simulator as sim
from simulator.shipped import find_shipped
n, points = int(sys.argv[1]), int(sys.argv[2])
sc = sim.load_scenario(find_shipped("rate_cut"))
field = "regimes.expansion.drift.small"
values = [float(f"{v:.12g}") for v in np.linspace(0.0, 0.2, points)]
t0 = time.perf_counter()
res = sim.sweep(sc, {field: values}, n_paths=n, seed=1)
sweep = time.perf_counter() - t0
steady, tables = [], []
for p in res.table()[field].unique():
    from simulator.sweep import with_field
    point = sim.parse_scenario(with_field(sc.model_dump(), field, p))
    sim.simulate(point, n_paths=n, seed=1).summary()  # warm-up
    t0 = time.perf_counter()
    run = sim.simulate(point, n_paths=n, seed=1)
    t1 = time.perf_counter()
    run.summary()
    steady.append(t1 - t0)
    tables.append(time.perf_counter() - t1)
print(json.dumps({"sweep": sweep, "steady": steady, "summary": tables}))
"""


def sweep_vs_simulate(paths: int, points: int) -> dict:
    """Run in a fresh process, so that the sweep's compile is its own."""
    import json

    out = subprocess.run(
        [sys.executable, "-c", SWEEP_SCRIPT, str(paths), str(points)],
        check=True,
        env=ENV,
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-paths", type=float, default=200_000, help="0: skip")
    p.add_argument("--sweep-paths", type=float, default=100_000)
    p.add_argument("--sweep-points", type=int, default=50, help="0: skip")
    p.add_argument(
        "--big-paths", type=float, default=1e6, help="paths of the `capsim batch scenarios/` timing (0: skip)"
    )
    p.add_argument("--write", action="store_true", help="record the figures in benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    from simulator import __version__
    from simulator.devices import cpu_cores

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        caches = [("", "compile cache off (every kernel compiled)")]
        caches += [(str(Path(tmp) / "xla"), "compile cache on disk, filled by an earlier batch (kernels loaded)")]
        for cache, how in caches if args.batch_paths else []:
            b = batch_vs_runs(int(args.batch_paths), Path(tmp) / f"b{bool(cache)}", cache)
            ratio = b["batch"] / sum(b["separate"])
            lines.append(
                f"- batch, {how}: {b['scenarios']} shipped scenarios at {int(args.batch_paths):,} paths: one "
                f"`capsim batch` {b['batch']:.1f} s; {b['scenarios']} separate `capsim run` "
                f"{sum(b['separate']):.1f} s ({', '.join(f'{t:.1f}' for t in b['separate'])}); ratio "
                f"**{ratio:.2f}** (target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'}); the same summary.csv bytes"
            )
            print(lines[-1], flush=True)
        if args.sweep_points:
            s = sweep_vs_simulate(int(args.sweep_paths), args.sweep_points)
            simulate, summary = sum(s["steady"]), sum(s["summary"])
            ratio = s["sweep"] / simulate
            lines.append(
                f"- sweep: {args.sweep_points} points of `regimes.expansion.drift.small` (rate_cut) at "
                f"{int(args.sweep_paths):,} paths: `sim.sweep` {s['sweep']:.1f} s (its compile and every "
                f"point's summary table included); sum of the points' steady-state `simulate` {simulate:.1f} s; "
                f"ratio **{ratio:.2f}** (target <= 1.25: {'met' if ratio <= 1.25 else 'NOT met'}). With each "
                f"point's `.summary()` added to the baseline ({summary:.1f} s more): ratio "
                f"**{s['sweep'] / (simulate + summary):.2f}**"
            )
            print(lines[-1], flush=True)
        if args.big_paths:
            t = capsim("batch", REPO / "scenarios", "--paths", int(args.big_paths), "--out", Path(tmp) / "big")
            lines.append(f"- `capsim batch scenarios/ --paths {int(args.big_paths):,}`: {t:.1f} s end to end")
            print(lines[-1], flush=True)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.write:
        import jax

        from simulator.output import write_text_atomic

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
        section = [
            SECTION,
            "",
            "## Batch and sweep",
            "",
            f"Written by `python benchmarks/many.py {' '.join(argv or sys.argv[1:])}`, started {started}; capsim "
            f"{__version__} at {commit.stdout.strip() or '?'}, JAX {jax.__version__}, Python "
            f"{platform.python_version()}, {cpu_cores()} CPU cores; load average before / after {load_before} / "
            f"{load_after}. Every command is a fresh process; the on-disk compile cache is off unless said; ratios "
            "compare timings from this one run.",
            "",
            *lines,
            "",
        ]
        results = HERE / "RESULTS.md"
        text = results.read_text(encoding="utf-8") if results.exists() else ""
        text = text.split(SECTION)[0].rstrip("\n") + "\n\n" + "\n".join(section)
        write_text_atomic(results, text, force=True)
        print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
