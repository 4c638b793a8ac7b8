"""Cost of macro drivers (docs/drivers.md): the benchmark's standard monthly workload (bench.py's ``monthly``: 3
Gaussian regimes, 2 assets, 120 monthly steps, report months 12, 60, 120) run with its constant transition
matrix and with the expansion and recession rows set by logits of a credit-spread path that moves for five
years (a different matrix every month until month 60), in one process, alternating the two, for both methods.

The logits give the constant rows at a spread of 1.0 pp, so both versions simulate alike. Each run is
``simulate`` + ``summary()`` + ``fan()`` end to end (bench.py's ``capsim_run``): the figure includes what the
drivers add on the host (the per-month matrices; for the exact method, one segment law per distinct segment
instead of one in all). The ratio is median time (drivers) / median time (constant) over ``--repeats`` pairs
after a warm-up of each; target <= 1.10.

    python benchmarks/drivers.py                    # 1e6 paths, 3 pairs, step and exact; updates RESULTS.md
    python benchmarks/drivers.py --paths 2e5 --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import math
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench  # noqa: E402  (the workload and capsim_run)
from uncertainty import write_section  # noqa: E402

BEGIN, END = "<!-- drivers:begin -->", "<!-- drivers:end -->"
SPREAD = {0: 1.0, 12: 2.0, 36: 0.8, 60: 1.2}  # pp: widens, narrows, settles; flat after month 60
SLOPES = {("expansion", "slowdown"): 0.8, ("expansion", "recession"): 1.5, ("recession", "expansion"): -0.7}


def driven_dict() -> dict:
    """The monthly workload with the expansion and recession rows as logits of the spread (the constant rows at
    1.0 pp: intercept_ij = log(P_ij / P_ii) - slope_ij)."""
    d = copy.deepcopy(bench.scenario_dict("monthly"))
    d["name"] = "bench-monthly-drivers"
    d["macro"] = {"credit_spread": dict(SPREAD)}
    for k in ("expansion", "recession"):
        row = d["transitions"].pop(k)
        d["regimes"][k]["drivers"] = {
            j: {
                "intercept": math.log(p / row[k]) - SLOPES.get((k, j), 0.0),
                "credit_spread": SLOPES.get((k, j), 0.0),
            }
            for j, p in row.items()
            if j != k
        }
    return d


def measure(n: int, repeats: int, method: str, seed: int = 1) -> dict:
    import simulator

    const = simulator.parse_scenario(bench.scenario_dict("monthly"), source="<bench monthly>")
    driven = simulator.parse_scenario(driven_dict(), source="<bench monthly, drivers>")
    for sc in (const, driven):
        bench.capsim_run(sc, min(n, 1 << 18), seed + 1000, method)  # warm-up: compile
    times = {"constant": [], "drivers": []}
    for r in range(repeats):
        order = ("constant", "drivers") if r % 2 == 0 else ("drivers", "constant")  # alternate: load drift cancels
        for name in order:
            t0 = time.perf_counter()
            res = bench.capsim_run(const if name == "constant" else driven, n, seed + r, method)
            times[name].append(time.perf_counter() - t0)
            assert res.meta["method"] == method
            del res
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"paths": n, "method": method, **med, "ratio": med["drivers"] / med["constant"], "times": times}


def section(rows: list[dict], argv: list[str], info: dict) -> str:
    lines = [
        BEGIN,
        "## Macro drivers: per-month matrices from a driver path",
        "",
        f"Written by `{' '.join(['python benchmarks/drivers.py', *argv])}` on "
        f"{_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC; {info['cpu']}, {info['cores']} cores; capsim source "
        f"{info['source']}; load average {bench.loadavg()}.",
        "",
        "The monthly workload (120 steps, 3 regimes) with its constant transition matrix (`constant`) and with the "
        "expansion and recession rows set by logits of a credit-spread path that changes every month until month "
        "60 (`drivers`); `simulate` + `summary()` + `fan()`, float32, all CPU devices, median of the timed runs "
        "(the two alternating) after a warm-up of each. Target: drivers / constant <= 1.10.",
        "",
        "| method | paths | runs | constant s/run | drivers s/run | drivers / constant | runs (constant; drivers) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        each = "; ".join(", ".join(f"{t:.2f}" for t in r["times"][k]) for k in ("constant", "drivers"))
        lines.append(
            f"| {r['method']} | {bench.fmt_paths(r['paths'])} | {len(r['times']['constant'])} | "
            f"{r['constant']:.3g} | {r['drivers']:.3g} | {r['ratio']:.3f} | {each} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--paths", default="1e6", help="path counts, comma separated (default 1e6)")
    p.add_argument("--repeats", type=int, default=3, help="timed pairs per path count and method (default 3)")
    p.add_argument("--methods", default="step,exact", help="step, exact or both (default step,exact)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args(argv)
    from simulator import use_cpu_cores

    use_cpu_cores()
    info = bench.machine_info()
    rows = []
    for method in args.methods.split(","):
        for n in bench.parse_counts(args.paths):
            print(f"[drivers] {method}, {bench.fmt_paths(n)} paths ...", flush=True)
            rows.append(measure(n, args.repeats, method))
            r = rows[-1]
            print(
                f"[drivers]   constant {r['constant']:.3f} s, drivers {r['drivers']:.3f} s: ratio {r['ratio']:.3f}",
                flush=True,
            )
    text = section(rows, argv, info)
    print("\n" + text)
    if not args.no_write:
        write_section(HERE / "RESULTS.md", text, BEGIN, END)
        print(f"\n[drivers] wrote its section of {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
