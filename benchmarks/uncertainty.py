"""Cost of parameter uncertainty: the benchmark's standard workload (bench.py's ``monthly``: 3 Gaussian regimes,
2 assets, 120 monthly steps) run as it is and with distributions on every regime's drifts and vols and a
Dirichlet transition row, one parameter draw per block (the default), in one process, alternating the two.

Both runs are ``simulate`` + ``summary()`` + ``fan()`` end to end (bench.py's ``capsim_run``), so the figure
includes everything uncertainty adds: drawing the parameters and building one set of tables per draw, the
per-block row pick inside the jitted function, the per-draw medians, the across-draw columns. The ratio is
median time (uncertain) / median time (plain) over ``--repeats`` pairs after a warm-up of each.

    python benchmarks/uncertainty.py                    # 1e6 and 1e7 paths, 5 pairs; updates RESULTS.md
    python benchmarks/uncertainty.py --paths 1e6 --repeats 3 --no-write
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import re
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench  # noqa: E402  (the workload and capsim_run)

BEGIN, END = "<!-- uncertainty:begin -->", "<!-- uncertainty:end -->"


def uncertain_dict() -> dict:
    """The monthly workload with every drift and vol uncertain and the expansion row a Dirichlet."""
    d = copy.deepcopy(bench.scenario_dict("monthly"))
    d["name"] = "bench-monthly-uncertain"
    for r in d["regimes"].values():
        r["drift"] = {a: {"uniform": [v - 0.02, v + 0.02]} for a, v in r["drift"].items()}
        r["vol"] = {a: {"triangular": [0.8 * v, v, 1.2 * v]} for a, v in r["vol"].items()}
    d["transitions"]["expansion"] = {"dirichlet": {k: 200 * p for k, p in d["transitions"]["expansion"].items()}}
    return d


def measure(n: int, repeats: int, seed: int = 1) -> dict:
    import simulator

    plain = simulator.parse_scenario(bench.scenario_dict("monthly"), source="<bench monthly>")
    uncertain = simulator.parse_scenario(uncertain_dict(), source="<bench monthly, uncertain>")
    for sc in (plain, uncertain):
        bench.capsim_run(sc, min(n, 1 << 18), seed + 1000)  # warm-up: compile
    times = {"plain": [], "uncertain": []}
    for r in range(repeats):
        order = ("plain", "uncertain") if r % 2 == 0 else ("uncertain", "plain")  # alternate: drift in load cancels
        for name in order:
            t0 = time.perf_counter()
            res = bench.capsim_run(plain if name == "plain" else uncertain, n, seed + r)
            times[name].append(time.perf_counter() - t0)
            if name == "uncertain":
                draws = res.model.steps.drift.shape[0]
            del res
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"paths": n, "draws": draws, **med, "ratio": med["uncertain"] / med["plain"], "times": times}


def section(rows: list[dict], argv: list[str], info: dict) -> str:
    lines = [
        BEGIN,
        "## Parameter uncertainty: per-block parameters",
        "",
        f"Written by `{' '.join(['python benchmarks/uncertainty.py', *argv])}` on "
        f"{_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC; {info['cpu']}, {info['cores']} cores; capsim source "
        f"{info['source']}; load average {bench.loadavg()}.",
        "",
        "The monthly workload (120 steps) as it is (`plain`) and with every drift (uniform ±0.02), every vol "
        "(triangular ±20%) and the expansion transition row (Dirichlet, concentration 200) uncertain, one "
        "parameter draw per block (`uncertain`); `simulate` + `summary()` + `fan()`, float32, all CPU devices, "
        "median of the timed runs (plain and uncertain alternating) after a warm-up of each.",
        "",
        "| paths | draws | runs | plain s/run | uncertain s/run | uncertain / plain |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {bench.fmt_paths(r['paths'])} | {r['draws']} | {len(r['times']['plain'])} | {r['plain']:.3g} | "
            f"{r['uncertain']:.3g} | {r['ratio']:.3f} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--paths", default="1e6,1e7", help="path counts, comma separated (default 1e6,1e7)")
    p.add_argument("--repeats", type=int, default=5, help="timed pairs per path count (default 5)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args(argv)
    from simulator import use_cpu_cores

    use_cpu_cores()
    info = bench.machine_info()
    rows = []
    for n in bench.parse_counts(args.paths):
        print(f"[uncertainty] {bench.fmt_paths(n)} paths ...", flush=True)
        rows.append(measure(n, args.repeats))
        r = rows[-1]
        print(
            f"[uncertainty]   plain {r['plain']:.3f} s, uncertain {r['uncertain']:.3f} s ({r['draws']} draws): "
            f"ratio {r['ratio']:.3f}",
            flush=True,
        )
    text = section(rows, argv, info)
    print("\n" + text)
    if not args.no_write:
        write_section(HERE / "RESULTS.md", text)
        print(f"\n[uncertainty] wrote its section of {HERE / 'RESULTS.md'}")
    return 0


def write_section(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Put ``text`` (``begin`` ... ``end``) into ``path`` in place of its previous version, else at the end."""
    from simulator.output import write_text_atomic

    old = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text + "\n"
    write_text_atomic(path, new, force=True)


if __name__ == "__main__":
    raise SystemExit(main())
